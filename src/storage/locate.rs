//! Finding a volume's device from its config reference, without udev.
//!
//! A busybox initramfs has no `/dev/disk/by-*` links, so `UUID=`,
//! `PARTUUID=` and `PARTLABEL=` are resolved by walking
//! `<sys>/class/block` and probing the device nodes with libblkid. Both
//! roots come from [`StorageEnv`], so tests lay out a fake sysfs whose
//! "device nodes" are image files.

use std::os::unix::fs::FileTypeExt;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use libblkid_rs::{BlkidProbe, BlkidSafeprobeRet, BlkidSublks, BlkidSublksFlags};

use super::{StorageEnv, StorageError};
use crate::retry::{retry, Attempt, Backoff, GaveUp};

/// A parsed `device` reference.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Spec {
    /// Relative to the `/dev` root.
    Path(PathBuf),
    Uuid(String),
    PartUuid(String),
    PartLabel(String),
}

impl Spec {
    fn parse(spec: &str) -> Result<Self, StorageError> {
        let bad = |problem: &str| StorageError::DeviceLookup {
            spec: spec.to_owned(),
            problem: problem.to_owned(),
        };
        if let Some(rest) = spec.strip_prefix("/dev/") {
            let rel = PathBuf::from(rest);
            if rest.is_empty() || rel.components().any(|c| !matches!(c, Component::Normal(_))) {
                return Err(bad("must be a plain path below /dev, without `..`"));
            }
            return Ok(Spec::Path(rel));
        }
        for (prefix, make) in [
            ("UUID=", Spec::Uuid as fn(String) -> Spec),
            ("PARTUUID=", Spec::PartUuid),
            ("PARTLABEL=", Spec::PartLabel),
        ] {
            if let Some(v) = spec.strip_prefix(prefix) {
                if v.is_empty() {
                    return Err(bad("has an empty value"));
                }
                return Ok(make(v.to_owned()));
            }
        }
        Err(bad(
            "is not /dev/..., UUID=..., PARTUUID=... or PARTLABEL=...",
        ))
    }

    fn describe(&self, env: &StorageEnv) -> String {
        let classes = env.sys.join("class/block");
        match self {
            Spec::Path(p) => format!("at {}", env.dev.join(p).display()),
            Spec::Uuid(_) => format!(
                "by probing filesystem/LUKS UUIDs of the devices in {}",
                classes.display()
            ),
            Spec::PartUuid(_) | Spec::PartLabel(_) => format!(
                "by probing the partition tables of the disks in {}",
                classes.display()
            ),
        }
    }
}

/// Resolves `spec` (`/dev/...`, `UUID=`, `PARTUUID=`, `PARTLABEL=`) to a
/// device path, waiting up to `env.device_wait` for it to appear.
pub fn locate_device(spec: &str, env: &StorageEnv) -> Result<PathBuf, StorageError> {
    let parsed = Spec::parse(spec)?;
    let backoff = Backoff {
        initial: Duration::from_millis(100),
        max: Duration::from_secs(1),
        deadline: env.device_wait,
    };
    let outcome = retry(
        backoff,
        |_, _| find_once(spec, &parsed, env),
        |n, e: &StorageError, wait| {
            log::info!("waiting for device {spec} (attempt {n}, next in {wait:?}): {e}")
        },
    );
    match outcome {
        Ok(p) => {
            log::info!("device {spec} is {}", p.display());
            Ok(p)
        }
        Err(GaveUp::Permanent(e)) => Err(e),
        Err(GaveUp::Deadline { .. }) => Err(StorageError::DeviceNotFound {
            spec: spec.to_owned(),
            how: parsed.describe(env),
            waited: env.device_wait,
        }),
    }
}

fn find_once(
    spec: &str,
    parsed: &Spec,
    env: &StorageEnv,
) -> Result<PathBuf, Attempt<StorageError>> {
    let not_yet = || {
        Attempt::Transient(StorageError::DeviceLookup {
            spec: spec.to_owned(),
            problem: "not present yet".to_owned(),
        })
    };
    let found = match parsed {
        Spec::Path(rel) => {
            let path = env.dev.join(rel);
            match std::fs::metadata(&path) {
                // Block devices in production; regular files are image files
                // in tests (and harmless: libcryptsetup attaches a loop).
                Ok(m) if m.file_type().is_block_device() || m.is_file() => Some(path),
                Ok(_) => {
                    return Err(Attempt::Permanent(StorageError::DeviceLookup {
                        spec: spec.to_owned(),
                        problem: format!("{} is not a block device", path.display()),
                    }))
                }
                Err(_) => None,
            }
        }
        Spec::Uuid(want) => {
            let mut hits = Vec::new();
            for node in block_entries(env).into_iter().map(|e| e.node) {
                if fs_uuid(&node).is_some_and(|u| u.eq_ignore_ascii_case(want)) {
                    hits.push(node);
                }
            }
            one_of(spec, hits)?
        }
        Spec::PartUuid(want) => find_partition(spec, env, |p| p.uuid.eq_ignore_ascii_case(want))?,
        Spec::PartLabel(want) => find_partition(spec, env, |p| p.label.as_deref() == Some(want))?,
    };
    found.ok_or_else(not_yet)
}

/// Two devices answering to one name is refused: the host could attach a
/// look-alike disk and let us pick it.
fn one_of(spec: &str, mut hits: Vec<PathBuf>) -> Result<Option<PathBuf>, Attempt<StorageError>> {
    match hits.len() {
        0 => Ok(None),
        1 => Ok(hits.pop()),
        _ => Err(Attempt::Permanent(StorageError::DeviceLookup {
            spec: spec.to_owned(),
            problem: format!(
                "matches several devices ({}); detach the duplicate or name the device by path",
                hits.iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })),
    }
}

/// One entry of `<sys>/class/block`.
#[derive(Debug)]
struct BlockEntry {
    /// Canonical sysfs directory of the device.
    sysdir: PathBuf,
    /// The device node below the `/dev` root.
    node: PathBuf,
    /// `Some(n)` for partition n, `None` for a whole disk.
    partition: Option<u32>,
}

fn block_entries(env: &StorageEnv) -> Vec<BlockEntry> {
    let Ok(dir) = std::fs::read_dir(env.sys.join("class/block")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let sysdir = std::fs::canonicalize(entry.path()).unwrap_or_else(|_| entry.path());
        let devname = std::fs::read_to_string(sysdir.join("uevent"))
            .ok()
            .and_then(|u| {
                u.lines()
                    .find_map(|l| l.strip_prefix("DEVNAME=").map(str::to_owned))
            })
            .unwrap_or(name);
        let node = env.dev.join(devname);
        if !node.exists() {
            continue;
        }
        let partition = std::fs::read_to_string(sysdir.join("partition"))
            .ok()
            .and_then(|p| p.trim().parse().ok());
        out.push(BlockEntry {
            sysdir,
            node,
            partition,
        });
    }
    out.sort_by(|a, b| a.node.cmp(&b.node));
    out
}

/// The filesystem / LUKS UUID libblkid reads from the superblock.
fn fs_uuid(node: &Path) -> Option<String> {
    let mut probe = BlkidProbe::new_from_filename(node).ok()?;
    probe.enable_superblocks(true).ok()?;
    probe
        .set_superblock_flags(BlkidSublksFlags::new(vec![
            BlkidSublks::Uuid,
            BlkidSublks::Type,
        ]))
        .ok()?;
    probe.enable_partitions(false).ok()?;
    match probe.do_safeprobe().ok()? {
        BlkidSafeprobeRet::Success => probe.lookup_value("UUID").ok(),
        _ => None,
    }
}

/// A partition as its disk's partition table describes it.
#[derive(Debug, Clone)]
struct PartInfo {
    partno: u32,
    /// GPT partition GUID, or `<disk id>-<nn>` for an MBR table (as udev and
    /// blkid spell PARTUUID).
    uuid: String,
    /// GPT partition name; MBR has none.
    label: Option<String>,
}

fn partitions(disk: &Path) -> Vec<PartInfo> {
    let mut out = Vec::new();
    let Ok(mut probe) = BlkidProbe::new_from_filename(disk) else {
        return out;
    };
    if probe.enable_superblocks(false).is_err() || probe.enable_partitions(true).is_err() {
        return out;
    }
    if !matches!(probe.do_safeprobe(), Ok(BlkidSafeprobeRet::Success)) {
        return out;
    }
    let Ok(mut list) = probe.get_partitions() else {
        return out;
    };
    let table_id = list
        .get_table()
        .and_then(|t| t.get_id())
        .unwrap_or_default();
    let n = list.number_of_partitions().unwrap_or(0);
    for i in 0..n {
        let Ok(p) = list.get_partition(i) else {
            continue;
        };
        let Ok(partno) = p.get_partno() else {
            continue;
        };
        let uuid = match p.get_uuid() {
            Ok(Some(u)) => u.to_string(),
            _ => format!("{table_id}-{partno:02x}"),
        };
        let label = p.get_name().ok().flatten();
        out.push(PartInfo {
            partno,
            uuid,
            label,
        });
    }
    out
}

fn find_partition(
    spec: &str,
    env: &StorageEnv,
    matches: impl Fn(&PartInfo) -> bool,
) -> Result<Option<PathBuf>, Attempt<StorageError>> {
    let entries = block_entries(env);
    let mut hits = Vec::new();
    for disk in entries.iter().filter(|e| e.partition.is_none()) {
        for part in partitions(&disk.node).into_iter().filter(|p| matches(p)) {
            // The partition's sysfs directory sits inside its disk's.
            let node = entries.iter().find(|e| {
                e.partition == Some(part.partno) && e.sysdir.parent() == Some(&disk.sysdir)
            });
            match node {
                Some(e) => hits.push(e.node.clone()),
                // The table names it but the kernel has not created the
                // partition device yet: keep waiting.
                None => log::debug!(
                    "{spec}: partition {} of {} has no device node yet",
                    part.partno,
                    disk.node.display()
                ),
            }
        }
    }
    one_of(spec, hits)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_every_reference_kind() {
        assert_eq!(Spec::parse("/dev/vdb").unwrap(), Spec::Path("vdb".into()));
        assert_eq!(
            Spec::parse("/dev/disk/by-id/x").unwrap(),
            Spec::Path("disk/by-id/x".into())
        );
        assert_eq!(Spec::parse("UUID=ab").unwrap(), Spec::Uuid("ab".into()));
        assert_eq!(
            Spec::parse("PARTUUID=ab").unwrap(),
            Spec::PartUuid("ab".into())
        );
        assert_eq!(
            Spec::parse("PARTLABEL=data").unwrap(),
            Spec::PartLabel("data".into())
        );
        for bad in ["/dev/../etc/shadow", "/dev/", "LABEL=x", "UUID=", "vdb"] {
            assert!(Spec::parse(bad).is_err(), "{bad}");
        }
    }
}
