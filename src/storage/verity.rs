//! The workload's root through dm-verity, with every parameter from the
//! measured config (PID-1 mode).
//!
//! The host writes the root disk, hash tree included. Nothing is read from
//! it to decide how to verify it: no verity superblock is loaded
//! (`CRYPT_VERITY_NO_HEADER`), the hash algorithm, salt, block sizes, data
//! size and offset come from `[boot.verity]`. Before the table is loaded the
//! top hash block is read and checked against the root hash, so a wrong
//! root hash (or a tree that is not this image's) stops the boot with a
//! clear error instead of a kernel panic on the first read. After that the
//! kernel checks every block when it is read and panics or reboots on the
//! first mismatch (`panic_on_corruption` / `restart_on_corruption`).

use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use libcryptsetup_rs::consts::flags::{CryptActivate, CryptVerity};
use libcryptsetup_rs::consts::vals::{CryptStatusInfo, EncryptionFormat};
use libcryptsetup_rs::{CryptInit, CryptParamsVerity, CryptParamsVerityRef, Either};
use sha2::Digest as _;

use super::StorageError;
use crate::config::{CorruptionAction, VerityConfig, VerityHash};

/// dm-verity hash format 1 (the only one `veritysetup` makes by default):
/// each hash is H(salt || block).
const HASH_TYPE: u32 = 1;

/// `H(salt || block)` with the configured algorithm.
fn salted_hash(hash: VerityHash, salt: &[u8], block: &[u8]) -> Vec<u8> {
    match hash {
        VerityHash::Sha256 => sha2::Sha256::new()
            .chain_update(salt)
            .chain_update(block)
            .finalize()
            .to_vec(),
        VerityHash::Sha512 => sha2::Sha512::new()
            .chain_update(salt)
            .chain_update(block)
            .finalize()
            .to_vec(),
    }
}

/// Reads the top block of the hash tree (the first hash block at
/// `hash_offset`: dm-verity stores the levels top-down) and checks that it
/// hashes to the configured root hash. Plain reads, nothing is written.
pub fn check_root_hash(hash_device: &Path, v: &VerityConfig) -> Result<(), StorageError> {
    let fail = |problem: String| StorageError::VerityRoot {
        device: hash_device.to_owned(),
        problem,
    };
    let file = std::fs::File::open(hash_device)
        .map_err(|e| fail(format!("cannot open the hash device: {e}")))?;
    let mut block = vec![0u8; v.hash_block_size as usize];
    file.read_exact_at(&mut block, v.hash_offset).map_err(|e| {
        fail(format!(
            "cannot read the top hash block at byte {}: {e}",
            v.hash_offset
        ))
    })?;
    let found = salted_hash(v.hash, &v.salt_bytes(), &block);
    if found != v.root_hash_bytes() {
        return Err(fail(format!(
            "the hash tree at byte {} hashes to {}, not to the root hash {} in [boot.verity]: \
             the disk is not the image this config was built for (or the host changed it)",
            v.hash_offset,
            hex::encode(&found),
            v.root_hash
        )));
    }
    Ok(())
}

/// Activates `/dev/mapper/<name>`: `data` verified by the tree on `hash`,
/// read-only, stopping the VM on the first corrupted block. Returns the
/// mapping's path.
pub fn activate_root(
    name: &str,
    data: &Path,
    hash: &Path,
    v: &VerityConfig,
) -> Result<PathBuf, StorageError> {
    check_root_hash(hash, v)?;
    let crypt = |op: &'static str| {
        let device = data.to_owned();
        move |source| StorageError::Crypt {
            volume: name.to_owned(),
            device,
            op,
            source,
        }
    };
    let mut cd = CryptInit::init(hash).map_err(crypt("open the verity hash device"))?;
    let params = CryptParamsVerity {
        hash_name: v.hash.name().to_owned(),
        data_device: data.to_owned(),
        hash_device: None,
        fec_device: None,
        salt: v.salt_bytes(),
        hash_type: HASH_TYPE,
        data_block_size: v.data_block_size,
        hash_block_size: v.hash_block_size,
        data_size: v.data_blocks,
        hash_area_offset: v.hash_offset,
        fec_area_offset: 0,
        fec_roots: 0,
        // Only describe the device: no superblock is read or written, no
        // hash is created.
        flags: CryptVerity::NO_HEADER,
    };
    let mut params_ref: CryptParamsVerityRef<'_> = (&params)
        .try_into()
        .map_err(crypt("prepare the verity parameters"))?;
    cd.context_handle()
        .format(
            EncryptionFormat::Verity,
            ("", ""),
            None,
            Either::Right(0),
            Some(&mut params_ref),
        )
        .map_err(crypt("describe the verity device"))?;
    let on_corruption = match v.on_corruption {
        CorruptionAction::Panic => CryptActivate::PANIC_ON_CORRUPTION,
        CorruptionAction::Restart => CryptActivate::RESTART_ON_CORRUPTION,
    };
    cd.activate_handle()
        .activate_by_volume_key(
            Some(name),
            Some(&v.root_hash_bytes()),
            CryptActivate::READONLY | on_corruption,
        )
        .map_err(crypt("activate the verity mapping"))?;
    let mapper = PathBuf::from("/dev/mapper").join(name);
    match libcryptsetup_rs::status(Some(&mut cd), name) {
        Ok(CryptStatusInfo::Active | CryptStatusInfo::Busy) => Ok(mapper),
        other => {
            super::luks::deactivate(name);
            Err(StorageError::NotActive {
                volume: name.to_owned(),
                mapper,
                status: format!("{other:?}"),
            })
        }
    }
}

/// Reads `path` inside `root` to the end, resolving symlinks as a process
/// chrooted there would (`openat2` with `RESOLVE_IN_ROOT`: `/sbin/init ->
/// /lib/systemd/systemd` stays inside the root), so that dm-verity checks
/// every block of it now: a changed workload init stops the boot before
/// any key is fetched. Returns the number of bytes read.
pub fn read_through(root: &Path, path: &Path) -> std::io::Result<u64> {
    use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
    use nix::sys::stat::Mode;

    let dir = std::fs::File::open(root)?;
    let fd = openat2(
        &dir,
        path,
        OpenHow::new()
            .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC)
            .mode(Mode::empty())
            .resolve(ResolveFlag::RESOLVE_IN_ROOT),
    )
    .map_err(std::io::Error::from)?;
    let mut file = std::fs::File::from(fd);
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        match file.read(&mut buf)? {
            0 => return Ok(total),
            n => total += n as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn config(root_hash: &str, salt: &str) -> VerityConfig {
        toml::from_str(&format!(
            "root_hash = \"{root_hash}\"\ndata_blocks = 1\nhash_offset = 4096\nsalt = \"{salt}\"\n"
        ))
        .unwrap()
    }

    /// One data block and its one-block tree, laid out as
    /// `veritysetup format --no-superblock --hash-offset 4096` does.
    fn image(salt: &[u8]) -> (tempfile::NamedTempFile, String) {
        let data = vec![0x5au8; 4096];
        let mut tree = salted_hash(VerityHash::Sha256, salt, &data);
        tree.resize(4096, 0);
        let root = hex::encode(salted_hash(VerityHash::Sha256, salt, &tree));
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), [data, tree].concat()).unwrap();
        (f, root)
    }

    #[test]
    fn the_root_hash_of_the_top_block_is_accepted() {
        let (img, root) = image(b"salt");
        check_root_hash(img.path(), &config(&root, &hex::encode(b"salt"))).unwrap();
    }

    #[test]
    fn a_wrong_root_hash_salt_or_tree_is_refused_naming_the_device() {
        let (img, root) = image(b"salt");
        let e = check_root_hash(img.path(), &config(&"00".repeat(32), &hex::encode(b"salt")))
            .unwrap_err()
            .to_string();
        assert!(e.contains(&img.path().display().to_string()), "{e}");
        assert!(e.contains("not to the root hash"), "{e}");
        assert!(check_root_hash(img.path(), &config(&root, "")).is_err());
        let mut bytes = std::fs::read(img.path()).unwrap();
        bytes[4096] ^= 1;
        std::fs::write(img.path(), bytes).unwrap();
        assert!(check_root_hash(img.path(), &config(&root, &hex::encode(b"salt"))).is_err());
    }

    #[test]
    fn read_through_resolves_absolute_symlinks_inside_the_root() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("lib/systemd")).unwrap();
        std::fs::create_dir_all(root.path().join("sbin")).unwrap();
        std::fs::write(root.path().join("lib/systemd/systemd"), b"12345").unwrap();
        std::os::unix::fs::symlink("/lib/systemd/systemd", root.path().join("sbin/init")).unwrap();
        assert_eq!(
            read_through(root.path(), Path::new("/sbin/init")).unwrap(),
            5
        );
        std::os::unix::fs::symlink("/../../etc/passwd", root.path().join("sbin/escape")).unwrap();
        assert!(read_through(root.path(), Path::new("/sbin/escape")).is_err());
    }

    #[test]
    fn a_short_hash_device_is_an_error_not_a_panic() {
        let f = tempfile::NamedTempFile::new().unwrap();
        let e = check_root_hash(f.path(), &config(&"00".repeat(32), ""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot read the top hash block"), "{e}");
    }
}
