//! Is the workload's root a filesystem the host cannot change? Under
//! systemd (`cvm-init boot`, in an initrd or in the booted system) another
//! unit mounted the root; before any key is fetched, cvm-init checks that
//! the block device under it is a dm-verity mapping (systemd-veritysetup,
//! `veritysetup open`: both through libcryptsetup, whose device-mapper UUIDs
//! start with `CRYPT-VERITY-`) or one of this config's own LUKS2 volumes.
//!
//! Everything is read from the guest kernel (mountinfo and sysfs, both
//! injectable), never from a disk the host writes.

use std::path::{Path, PathBuf};

use super::StorageError;

/// What protects a root that passed the check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootProtection {
    /// A dm-verity mapping (its device-mapper name).
    Verity(String),
    /// One of this config's cvm-init volumes.
    Volume(String),
}

/// Where the check reads the kernel's view; all injectable for tests.
#[derive(Debug, Clone)]
pub struct RootCheckEnv {
    /// `/proc/self/mountinfo`.
    pub mountinfo: PathBuf,
    /// `/sys`.
    pub sys: PathBuf,
}

impl Default for RootCheckEnv {
    fn default() -> Self {
        Self {
            mountinfo: "/proc/self/mountinfo".into(),
            sys: "/sys".into(),
        }
    }
}

/// The `major:minor` of the filesystem mounted last on `mountpoint`
/// (the one a path lookup sees), from mountinfo text.
fn mounted_device(mountinfo: &str, mountpoint: &Path) -> Option<String> {
    let want = mountpoint.to_str()?;
    mountinfo.lines().rev().find_map(|line| {
        let mut f = line.split(' ');
        let (_id, _parent, dev, _root, point) =
            (f.next()?, f.next()?, f.next()?, f.next()?, f.next()?);
        (point == want).then(|| dev.to_owned())
    })
}

/// Checks that `root` is on a dm-verity mapping or on one of `volumes`.
pub fn check_root(
    root: &Path,
    volumes: &[String],
    env: &RootCheckEnv,
) -> Result<RootProtection, StorageError> {
    let refuse = |found: String| StorageError::RootUnverified {
        root: root.to_owned(),
        found,
    };
    let mountinfo = std::fs::read_to_string(&env.mountinfo)
        .map_err(|e| refuse(format!("cannot read {}: {e}", env.mountinfo.display())))?;
    let dev = mounted_device(&mountinfo, root)
        .ok_or_else(|| refuse(format!("nothing is mounted on {}", root.display())))?;
    let dm = env.sys.join("dev/block").join(&dev).join("dm");
    let read = |f: &str| {
        std::fs::read_to_string(dm.join(f))
            .map(|s| s.trim().to_owned())
            .ok()
    };
    let (Some(uuid), Some(name)) = (read("uuid"), read("name")) else {
        return Err(refuse(format!(
            "it is device {dev}, which is not a device-mapper device (a plain disk, or a filesystem without one such as overlayfs or tmpfs)"
        )));
    };
    if uuid.starts_with("CRYPT-VERITY-") {
        return Ok(RootProtection::Verity(name));
    }
    if uuid.starts_with("CRYPT-LUKS2-") && volumes.contains(&name) {
        return Ok(RootProtection::Volume(name));
    }
    Err(refuse(format!(
        "it is /dev/mapper/{name} (device-mapper UUID {uuid:?}), neither dm-verity nor a volume of this config"
    )))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    struct Fake {
        dir: tempfile::TempDir,
        env: RootCheckEnv,
    }

    /// A kernel view with `/sysroot` on device 254:0, which is the
    /// device-mapper device `name` with `uuid` (or no dm at all).
    fn fake(dm: Option<(&str, &str)>) -> Fake {
        let dir = tempfile::tempdir().unwrap();
        let mountinfo = dir.path().join("mountinfo");
        std::fs::write(
            &mountinfo,
            "22 1 0:21 / /proc rw,nosuid - proc proc rw\n\
             30 1 253:0 / /sysroot ro - ext4 /dev/vda ro\n\
             31 1 254:0 / /sysroot ro,relatime - ext4 /dev/mapper/root ro\n",
        )
        .unwrap();
        let sys = dir.path().join("sys");
        let dev = sys.join("dev/block/254:0");
        std::fs::create_dir_all(&dev).unwrap();
        if let Some((name, uuid)) = dm {
            std::fs::create_dir_all(dev.join("dm")).unwrap();
            std::fs::write(dev.join("dm/name"), format!("{name}\n")).unwrap();
            std::fs::write(dev.join("dm/uuid"), format!("{uuid}\n")).unwrap();
        }
        Fake {
            env: RootCheckEnv { mountinfo, sys },
            dir,
        }
    }

    #[test]
    fn a_verity_root_passes_and_the_last_mount_counts() {
        let f = fake(Some(("root", "CRYPT-VERITY-6f1b-root")));
        assert_eq!(
            check_root(Path::new("/sysroot"), &[], &f.env).unwrap(),
            RootProtection::Verity("root".into())
        );
        assert!(f.dir.path().exists());
    }

    #[test]
    fn only_our_own_luks_volumes_count() {
        let f = fake(Some(("data", "CRYPT-LUKS2-0123-data")));
        assert_eq!(
            check_root(Path::new("/sysroot"), &["data".into()], &f.env).unwrap(),
            RootProtection::Volume("data".into())
        );
        let e = check_root(Path::new("/sysroot"), &["other".into()], &f.env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("neither dm-verity nor a volume"), "{e}");
    }

    #[test]
    fn a_plain_disk_or_a_missing_mount_is_refused_naming_the_root() {
        let f = fake(None);
        let e = check_root(Path::new("/sysroot"), &[], &f.env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("/sysroot"), "{e}");
        assert!(e.contains("not a device-mapper device"), "{e}");
        assert!(e.contains("root_integrity") || e.contains("[root]"), "{e}");
        let e = check_root(Path::new("/"), &[], &f.env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("nothing is mounted on /"), "{e}");
    }

    #[test]
    fn a_dm_crypt_mapping_made_by_someone_else_is_refused() {
        let f = fake(Some(("root", "CRYPT-PLAIN-root")));
        assert!(check_root(Path::new("/sysroot"), &[], &f.env).is_err());
    }
}
