//! Writing secrets where they can never reach a disk: tmpfs or ramfs only,
//! private modes, atomically (temp name, fsync, rename).

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::sys::statfs::{statfs, FsType, TMPFS_MAGIC};

/// `RAMFS_MAGIC` from linux/magic.h (nix does not export it).
const RAMFS_MAGIC: FsType = FsType(0x8584_58f6);

use super::Secret;

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("refusing to write a secret to {path}: {dir} is on a persistent filesystem (type 0x{fs_type:x}), where it could reach a disk; write below /run (tmpfs), or pass --allow-persistent-output if you accept that")]
    NotTmpfs {
        path: PathBuf,
        dir: PathBuf,
        fs_type: i64,
    },
    #[error("cannot write secret to {path}: {what}: {source}")]
    Io {
        path: PathBuf,
        what: &'static str,
        source: std::io::Error,
    },
}

/// Where a secret may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// tmpfs or ramfs only (the default).
    MemoryOnly,
    /// Any filesystem: an operator's explicit choice for diagnosis.
    AllowPersistent,
}

/// File mode, owner and where the file may live.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    pub mode: u32,
    pub owner: Option<(u32, u32)>,
    pub storage: Storage,
}

impl Default for Target {
    fn default() -> Self {
        Self {
            mode: 0o600,
            owner: None,
            storage: Storage::MemoryOnly,
        }
    }
}

/// Writes `secret` to `path`: missing parent directories are made with mode
/// 0700; the file appears complete or not at all.
pub fn write_secret(path: &Path, secret: &Secret, target: Target) -> Result<(), DeliveryError> {
    let io = |what: &'static str| {
        move |source| DeliveryError::Io {
            path: path.to_owned(),
            what,
            source,
        }
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    if target.storage == Storage::MemoryOnly {
        check_memory_backed(path, &dir)?;
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(io("creating its directory"))?;
    if let Some((_, gid)) = target.owner.filter(|(uid, _)| *uid != 0) {
        open_for_owner(&dir, gid).map_err(io("letting its owner reach it"))?;
    }

    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "secret".to_owned());
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io("creating a temporary file"))?;
        file.write_all(secret.expose()).map_err(io("writing"))?;
        if let Some((uid, gid)) = target.owner {
            nix::unistd::fchown(
                &file,
                Some(nix::unistd::Uid::from_raw(uid)),
                Some(nix::unistd::Gid::from_raw(gid)),
            )
            .map_err(|e| io("setting the owner")(e.into()))?;
        }
        nix::sys::stat::fchmod(&file, nix::sys::stat::Mode::from_bits_truncate(target.mode))
            .map_err(|e| io("setting the mode")(e.into()))?;
        file.sync_all().map_err(io("syncing"))?;
        std::fs::rename(&tmp, path).map_err(io("renaming into place"))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// A secret owned by a non-root user must be reachable by that user: its
/// directory becomes `root:<gid>` 0750, and the private 0700 root-owned
/// directories above it (ours, e.g. `/run/cvm-init`) become 0711, which
/// lets others pass through but not list them. Files keep their own modes.
fn open_for_owner(dir: &Path, gid: u32) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    std::os::unix::fs::chown(dir, Some(0), Some(gid))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o750))?;
    for ancestor in dir.ancestors().skip(1) {
        let meta = std::fs::metadata(ancestor)?;
        if meta.uid() != 0 || meta.mode() & 0o7777 != 0o700 {
            break;
        }
        std::fs::set_permissions(ancestor, std::fs::Permissions::from_mode(0o711))?;
    }
    Ok(())
}

/// Checks, before any work is done, that `path` may receive a secret.
pub fn check_target(path: &Path, storage: Storage) -> Result<(), DeliveryError> {
    match (storage, path.parent()) {
        (Storage::AllowPersistent, _) => Ok(()),
        (Storage::MemoryOnly, Some(dir)) if !dir.as_os_str().is_empty() => {
            check_memory_backed(path, dir)
        }
        (Storage::MemoryOnly, _) => check_memory_backed(path, Path::new(".")),
    }
}

/// Fails unless the nearest existing ancestor of `dir` is tmpfs or ramfs.
fn check_memory_backed(path: &Path, dir: &Path) -> Result<(), DeliveryError> {
    let mut probe = dir;
    loop {
        if probe.exists() {
            break;
        }
        match probe.parent() {
            Some(p) if !p.as_os_str().is_empty() => probe = p,
            _ => {
                probe = Path::new(".");
                break;
            }
        }
    }
    let st = statfs(probe).map_err(|e| DeliveryError::Io {
        path: path.to_owned(),
        what: "checking the filesystem type",
        source: e.into(),
    })?;
    let ty = st.filesystem_type();
    if ty == TMPFS_MAGIC || ty == RAMFS_MAGIC {
        Ok(())
    } else {
        Err(DeliveryError::NotTmpfs {
            path: path.to_owned(),
            dir: probe.to_owned(),
            fs_type: ty.0 as i64,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// /dev/shm is tmpfs on Linux hosts and CI machines.
    fn shm_dir() -> tempfile::TempDir {
        tempfile::tempdir_in("/dev/shm").unwrap()
    }

    #[test]
    fn writes_private_file_and_dirs_on_tmpfs() {
        let dir = shm_dir();
        let path = dir.path().join("tls/sub/key.pem");
        write_secret(&path, &Secret::new(b"k3y".to_vec()), Target::default()).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"k3y");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o600);
        let dmode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o7777;
        assert_eq!(dmode, 0o700);
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "temporary file left behind");
    }

    #[test]
    fn a_secret_for_another_user_is_reachable_by_its_group_only() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("SKIPPED: needs root (chown)");
            return;
        }
        let dir = shm_dir();
        let path = dir.path().join("cvm-init/app/token");
        let target = Target {
            mode: 0o640,
            owner: Some((1000, 1000)),
            ..Target::default()
        };
        write_secret(&path, &Secret::new(b"t".to_vec()), target).unwrap();
        let meta = |p: &Path| {
            use std::os::unix::fs::MetadataExt;
            let m = std::fs::metadata(p).unwrap();
            (m.uid(), m.gid(), m.mode() & 0o7777)
        };
        assert_eq!(meta(&path), (1000, 1000, 0o640));
        assert_eq!(meta(path.parent().unwrap()), (0, 1000, 0o750));
        assert_eq!(meta(&dir.path().join("cvm-init")), (0, 0, 0o711));
        // A root-owned secret next to it keeps its private directory.
        let key = dir.path().join("cvm-init/tls/key.pem");
        write_secret(&key, &Secret::new(b"k".to_vec()), Target::default()).unwrap();
        assert_eq!(meta(key.parent().unwrap()), (0, 0, 0o700));
    }

    #[test]
    fn configured_mode_is_applied() {
        let dir = shm_dir();
        let path = dir.path().join("cert.pem");
        let target = Target {
            mode: 0o640,
            ..Target::default()
        };
        write_secret(&path, &Secret::new(b"c".to_vec()), target).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o640);
    }

    #[test]
    fn refuses_a_persistent_filesystem_and_writes_nothing() {
        // The crate directory lives on a disk-backed filesystem.
        let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        let path = dir.path().join("new/key.pem");
        let e = write_secret(&path, &Secret::new(b"k".to_vec()), Target::default()).unwrap_err();
        assert!(matches!(e, DeliveryError::NotTmpfs { .. }), "{e}");
        assert!(e.to_string().contains("--allow-persistent-output"), "{e}");
        assert!(!dir.path().join("new").exists());
        let allowed = Target {
            storage: Storage::AllowPersistent,
            ..Target::default()
        };
        write_secret(&path, &Secret::new(b"k".to_vec()), allowed).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"k");
    }
}
