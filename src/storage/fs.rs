//! mkfs and mount on an opened mapping. Both act on `/dev/mapper/<name>`,
//! so they run in the VM tier only; the option parsing is unit-tested.

use std::path::{Path, PathBuf};
use std::process::Command;

use nix::mount::MsFlags;

use super::StorageError;
use crate::config::Filesystem;

pub(crate) fn fstype(fs: Filesystem) -> &'static str {
    match fs {
        Filesystem::Ext4 => "ext4",
        Filesystem::Xfs => "xfs",
    }
}

/// `program` from `PATH`, or from /usr/sbin, /sbin (an initramfs may run us
/// without `PATH`).
pub(crate) fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// The mkfs command for a fresh mapping of `bytes` bytes. `-F`/`-f` are
/// safe and needed: the mapping was just created under a new random
/// volume key, so whatever it "contains" is noise (possibly a leftover of
/// an interrupted first boot).
///
/// Nothing is zeroed or discarded that need not be: on an 8 GiB volume,
/// zeroing ext4's 128 MiB journal through dm-crypt took 1.4 s of a 1.6 s
/// mkfs under emulation. `lazy_journal_init` is safe here, though the
/// mke2fs manual warns of stale journal blocks: jbd2 replays only blocks
/// with its magic, the journal's sequence numbers and (metadata_csum)
/// checksums, and no block under this volume key was ever a journal block:
/// the key is new, and a filesystem is mounted (and can write
/// transactions) only after the `ready` state, so an interrupted first boot
/// never wrote one. The host cannot forge one without the key. Inode
/// tables are initialised by the kernel after mount (`lazy_itable_init`,
/// ext4's default where supported). No discard: dm-crypt passes none
/// (`allow_discards` is off) and a fresh sparse disk has nothing to free.
///
/// The descriptor blocks reserved for growing the filesystem online
/// (`resize=`) cover [`EXT4_GROWTH`] times its size instead of mke2fs's
/// 1024: mke2fs zeroes each reserved block with its own write, 1023 of
/// its 1059 writes on 8 GiB (0.2 s through dm-crypt under emulation).
/// Growing further still works online: the kernel then switches the new
/// groups to `meta_bg`, as it does for every ext4 past its reserve.
pub(crate) fn mkfs_args(fs: Filesystem, mapper: &Path, bytes: u64) -> (&'static str, Vec<String>) {
    let dev = mapper.display().to_string();
    let args = |a: &[&str]| {
        a.iter()
            .map(|s| (*s).to_owned())
            .chain([dev.clone()])
            .collect()
    };
    match fs {
        // ext4 refuses 1024-byte blocks on 4096-byte LUKS sectors.
        Filesystem::Ext4 => {
            // mke2fs caps the reserve at 2^32 blocks itself; so does this.
            let grown = (bytes / 4096)
                .saturating_mul(EXT4_GROWTH)
                .min(u64::from(u32::MAX));
            let extended =
                format!("lazy_itable_init=1,lazy_journal_init=1,nodiscard,resize={grown}");
            (
                program(fs),
                args(&["-q", "-F", "-b", "4096", "-E", &extended]),
            )
        }
        // xfs picks up the 4096-byte logical sector size of the mapping.
        Filesystem::Xfs => (program(fs), args(&["-q", "-f", "-K"])),
    }
}

fn program(fs: Filesystem) -> &'static str {
    match fs {
        Filesystem::Ext4 => "mkfs.ext4",
        Filesystem::Xfs => "mkfs.xfs",
    }
}

/// How many times its first size an ext4 volume can grow online into the
/// descriptor blocks mkfs reserves (see [`mkfs_args`]).
pub const EXT4_GROWTH: u64 = 64;

pub(crate) fn mkfs(volume: &str, fs: Filesystem, mapper: &Path) -> Result<(), StorageError> {
    let bytes = super::mapping::device_bytes(mapper).map_err(|e| StorageError::Mkfs {
        volume: volume.to_owned(),
        program: program(fs),
        mapper: mapper.to_owned(),
        status: "could not read the mapping's size".to_owned(),
        stderr: e.to_string(),
    })?;
    let (program, args) = mkfs_args(fs, mapper, bytes);
    let exe = find_program(program).ok_or_else(|| StorageError::ToolMissing {
        volume: volume.to_owned(),
        program,
    })?;
    log::info!("volume {volume}: {program} {}", args.join(" "));
    let out = Command::new(&exe)
        .args(&args)
        .output()
        .map_err(|e| StorageError::Mkfs {
            volume: volume.to_owned(),
            program,
            mapper: mapper.to_owned(),
            status: "could not start".to_owned(),
            stderr: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(StorageError::Mkfs {
            volume: volume.to_owned(),
            program,
            mapper: mapper.to_owned(),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(())
}

/// Splits fstab-style options into mount(2) flags and the filesystem's data
/// string (`noatime,nodev,errors=remount-ro` -> NOATIME|NODEV, "errors=remount-ro").
pub(crate) fn mount_flags(options: &[String]) -> (MsFlags, String) {
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    for opt in options
        .iter()
        .flat_map(|o| o.split(','))
        .filter(|o| !o.is_empty())
    {
        let (set, clear) = match opt {
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "lazytime" => (MsFlags::MS_LAZYTIME, MsFlags::empty()),
            "defaults" => (MsFlags::empty(), MsFlags::empty()),
            other => {
                data.push(other.to_owned());
                continue;
            }
        };
        flags.remove(clear);
        flags.insert(set);
    }
    (flags, data.join(","))
}

/// Creates `mountpoint` one component at a time without following a
/// symbolic link anywhere on the way: a host-supplied `/sysroot/srv/x`
/// whose `srv` is a link to `/etc` is refused, not mounted over `/etc`.
pub(crate) fn make_mountpoint(mountpoint: &Path) -> std::io::Result<()> {
    let mut at = PathBuf::new();
    for c in mountpoint.components() {
        at.push(c);
        match std::fs::symlink_metadata(&at) {
            Ok(md) if md.file_type().is_symlink() => {
                return Err(std::io::Error::other(format!(
                    "{} is a symbolic link; a mountpoint is never reached through one",
                    at.display()
                )))
            }
            Ok(md) if md.is_dir() => {}
            Ok(_) => {
                return Err(std::io::Error::other(format!(
                    "{} exists and is not a directory",
                    at.display()
                )))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::create_dir(&at)?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

pub(crate) fn mount(
    volume: &str,
    fs: Filesystem,
    mapper: &Path,
    mountpoint: &Path,
    options: &[String],
) -> Result<(), StorageError> {
    make_mountpoint(mountpoint).map_err(|source| StorageError::Mountpoint {
        volume: volume.to_owned(),
        mountpoint: mountpoint.to_owned(),
        hint: match source.raw_os_error() {
            Some(libc::EROFS) => {
                "; the root is read-only (as a dm-verity root is), so the image must ship this \
                 directory: create it when the image is built"
            }
            _ => "",
        },
        source,
    })?;
    let (flags, data) = mount_flags(options);
    let fstype = fstype(fs);
    nix::mount::mount(
        Some(mapper),
        mountpoint,
        Some(fstype),
        flags,
        (!data.is_empty()).then_some(data.as_str()),
    )
    .map_err(|source| StorageError::Mount {
        volume: volume.to_owned(),
        mapper: mapper.to_owned(),
        mountpoint: mountpoint.to_owned(),
        fstype,
        options: options.join(","),
        source,
    })?;
    log::info!(
        "volume {volume}: {} mounted on {} ({fstype})",
        mapper.display(),
        mountpoint.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn mountpoints_are_never_reached_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        make_mountpoint(&root.join("srv/a/b")).unwrap();
        assert!(root.join("srv/a/b").is_dir());
        std::fs::create_dir(root.join("etc")).unwrap();
        std::os::unix::fs::symlink(root.join("etc"), root.join("srv/link")).unwrap();
        let e = make_mountpoint(&root.join("srv/link/x")).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert!(!root.join("etc/x").exists());
        std::fs::write(root.join("srv/file"), b"").unwrap();
        assert!(make_mountpoint(&root.join("srv/file/x")).is_err());
    }

    #[test]
    fn mount_options_split_into_flags_and_data() {
        let opts = vec![
            "noatime,nodev".to_owned(),
            "errors=remount-ro".to_owned(),
            "ro".to_owned(),
            "rw".to_owned(),
        ];
        let (flags, data) = mount_flags(&opts);
        assert_eq!(flags, MsFlags::MS_NOATIME | MsFlags::MS_NODEV);
        assert_eq!(data, "errors=remount-ro");
        assert_eq!(mount_flags(&[]), (MsFlags::empty(), String::new()));
    }

    #[test]
    fn ext4_gets_4k_blocks() {
        let (prog, args) = mkfs_args(Filesystem::Ext4, Path::new("/dev/mapper/data"), 8 << 30);
        assert_eq!(prog, "mkfs.ext4");
        assert_eq!(
            args,
            [
                "-q",
                "-F",
                "-b",
                "4096",
                "-E",
                "lazy_itable_init=1,lazy_journal_init=1,nodiscard,resize=134217728",
                "/dev/mapper/data"
            ]
        );
        // The reserve stops at ext4's 2^32 blocks.
        let (_, args) = mkfs_args(Filesystem::Ext4, Path::new("/dev/mapper/data"), 1 << 50);
        assert!(args.contains(
            &"lazy_itable_init=1,lazy_journal_init=1,nodiscard,resize=4294967295".to_owned()
        ));
        let (prog, args) = mkfs_args(Filesystem::Xfs, Path::new("/dev/mapper/data"), 8 << 30);
        assert_eq!(prog, "mkfs.xfs");
        assert_eq!(args.last().map(String::as_str), Some("/dev/mapper/data"));
    }
}
