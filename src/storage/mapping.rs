//! After activation: is the mapping the kernel built the one the config and
//! the validated header describe? Read from the device-mapper tables
//! (`dmtable`), never from libcryptsetup's idea of what it asked for.

use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use super::dmtable::{self, Query};
use super::header::params::{DATA_OFFSET, INTEGRITY_KEY_BYTES, SECTOR_SIZE, VOLUME_KEY_BYTES};
use super::StorageError;
use crate::config::VolumeConfig;

const PLAIN_CIPHER: &str = "aes-xts-plain64";
const AEAD_CIPHER: &str = "capi:authenc(hmac(sha256),xts(aes))-plain64";
/// dm-integrity tag bytes for hmac(sha256).
const TAG_BYTES: u64 = 32;
const DATA_OFFSET_SECTORS: u64 = DATA_OFFSET / 512;

/// What the check learnt: the size of the dm-integrity mapping, which the
/// `ready` token records and every later boot compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckedMapping {
    pub integrity_sectors: Option<u64>,
}

/// Checks the active mapping of `vol` on `device`. `recorded`: the
/// integrity size in the volume's `ready` token (`None` when provisioning).
pub(crate) fn check(
    vol: &VolumeConfig,
    device: &Path,
    dev_dir: &Path,
    recorded: Option<u64>,
) -> Result<CheckedMapping, StorageError> {
    let mismatch = |problem: String| StorageError::MappingMismatch {
        volume: vol.name.clone(),
        mapper: dev_dir.join("mapper").join(&vol.name),
        problem,
    };
    let control = dev_dir.join("mapper/control");
    let one = |name: &str, what: Query, kind: &str| -> Result<dmtable::Target, StorageError> {
        let mut t = dmtable::query(&control, name, what)
            .map_err(|e| mismatch(format!("cannot read the {what:?} of {name}: {e}")))?;
        match (t.len(), t.first()) {
            (1, Some(first)) if first.kind == kind && first.start == 0 => Ok(t.remove(0)),
            _ => Err(mismatch(format!(
                "{name} has targets {:?}, expected one {kind} target",
                t.iter().map(|t| t.kind.as_str()).collect::<Vec<_>>()
            ))),
        }
    };
    let ours = dev_numbers(device)
        .map_err(|e| mismatch(format!("cannot stat {}: {e}", device.display())))?;

    let crypt_target = one(&vol.name, Query::Table, "crypt")?;
    let crypt = dmtable::parse_crypt(&crypt_target.params).map_err(mismatch)?;
    let (cipher, key_bytes) = if vol.integrity {
        (AEAD_CIPHER, VOLUME_KEY_BYTES + INTEGRITY_KEY_BYTES)
    } else {
        (PLAIN_CIPHER, VOLUME_KEY_BYTES)
    };
    if crypt.cipher != cipher {
        return Err(mismatch(format!(
            "cipher {:?}, expected {cipher:?}",
            crypt.cipher
        )));
    }
    if crypt.key_bytes != key_bytes {
        return Err(mismatch(format!(
            "{}-byte key, expected {key_bytes}",
            crypt.key_bytes
        )));
    }
    if crypt.iv_offset != 0 {
        return Err(mismatch(format!(
            "IV offset {}, expected 0",
            crypt.iv_offset
        )));
    }
    let sector_opt = format!("sector_size:{SECTOR_SIZE}");
    let tag_opt = format!("integrity:{TAG_BYTES}:aead");
    check_options(
        "dm-crypt",
        &crypt.options,
        &[sector_opt.as_str()],
        &[
            "no_read_workqueue",
            "no_write_workqueue",
            "iv_large_sectors",
            if vol.discard { "allow_discards" } else { "" },
            if vol.integrity { tag_opt.as_str() } else { "" },
        ],
    )
    .map_err(&mismatch)?;
    if vol.integrity != crypt.options.contains(&tag_opt) {
        return Err(mismatch(format!(
            "dm-crypt options {:?} {} {tag_opt}",
            crypt.options,
            if vol.integrity { "lack" } else { "include" }
        )));
    }

    if !vol.integrity {
        let size = device_bytes(device)
            .map_err(|e| mismatch(format!("cannot size {}: {e}", device.display())))?;
        let want = size.saturating_sub(DATA_OFFSET) / SECTOR_SIZE * (SECTOR_SIZE / 512);
        if crypt.device != ours
            || crypt.offset != DATA_OFFSET_SECTORS
            || crypt_target.length != want
        {
            return Err(mismatch(format!(
                "maps {} sectors of {} from sector {}, expected {want} of {ours} from {DATA_OFFSET_SECTORS}",
                crypt_target.length, crypt.device, crypt.offset
            )));
        }
        return Ok(CheckedMapping {
            integrity_sectors: None,
        });
    }

    let dif = format!("{}_dif", vol.name);
    let integrity_target = one(&dif, Query::Table, "integrity")?;
    let integrity = dmtable::parse_integrity(&integrity_target.params).map_err(mismatch)?;
    if integrity.device != ours
        || integrity.offset != DATA_OFFSET_SECTORS
        || integrity.tag_size != TAG_BYTES
        || integrity.mode != "J"
    {
        return Err(mismatch(format!(
            "dm-integrity on {} from sector {} with {}-byte tags in mode {}, expected {ours} from {DATA_OFFSET_SECTORS}, {TAG_BYTES}-byte tags, journal mode J",
            integrity.device, integrity.offset, integrity.tag_size, integrity.mode
        )));
    }
    let block_opt = format!("block_size:{SECTOR_SIZE}");
    check_options(
        "dm-integrity",
        &integrity.options,
        &[block_opt.as_str()],
        &[
            "journal_sectors:",
            "interleave_sectors:",
            "buffer_sectors:",
            "journal_watermark:",
            "commit_time:",
            "fix_padding",
            if vol.discard { "allow_discards" } else { "" },
        ],
    )
    .map_err(&mismatch)?;
    let status = one(&dif, Query::Status, "integrity")?;
    let status = dmtable::parse_integrity_status(&status.params).map_err(mismatch)?;
    if let Some(from) = status.recalculating_from {
        return Err(mismatch(format!(
            "its dm-integrity superblock says tags are being recalculated from sector {from}, so reads there are not checked"
        )));
    }
    let sectors = status.provided_data_sectors;
    if integrity_target.length != sectors || crypt_target.length != sectors || crypt.offset != 0 {
        return Err(mismatch(format!(
            "dm-integrity provides {sectors} sectors but maps {} and dm-crypt maps {} from sector {}",
            integrity_target.length, crypt_target.length, crypt.offset
        )));
    }
    if let Some(want) = recorded {
        if want != sectors {
            return Err(mismatch(format!(
                "dm-integrity provides {sectors} data sectors, but the volume was provisioned with {want} (its superblock was altered)"
            )));
        }
    }
    Ok(CheckedMapping {
        integrity_sectors: Some(sectors),
    })
}

/// Every option must be required or allowed (an allowed entry ending in
/// `:` allows any value); every required one must be present.
fn check_options(
    what: &str,
    found: &[String],
    required: &[&str],
    allowed: &[&str],
) -> Result<(), String> {
    if let Some(missing) = required.iter().find(|r| !found.iter().any(|f| f == *r)) {
        return Err(format!("{what} options {found:?} lack {missing}"));
    }
    let ok = |f: &str| {
        required.contains(&f)
            || allowed
                .iter()
                .any(|a| !a.is_empty() && (f == *a || (a.ends_with(':') && f.starts_with(a))))
    };
    match found.iter().find(|f| !ok(f)) {
        Some(f) => Err(format!("{what} option {f:?} is not one cvm-init sets")),
        None => Ok(()),
    }
}

/// `major:minor` of a block device, as device-mapper tables print it.
pub(super) fn dev_numbers(device: &Path) -> std::io::Result<String> {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(device)?;
    if !md.file_type().is_block_device() {
        return Err(std::io::Error::other("not a block device"));
    }
    let rdev = md.rdev();
    Ok(format!("{}:{}", libc::major(rdev), libc::minor(rdev)))
}

pub(super) fn device_bytes(device: &Path) -> std::io::Result<u64> {
    use std::io::Seek;
    std::fs::File::open(device)?.seek(std::io::SeekFrom::End(0))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn opts(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn options_are_an_allow_list() {
        let allowed = ["no_read_workqueue", "journal_sectors:", ""];
        let req = ["sector_size:4096"];
        check_options(
            "x",
            &opts(&["sector_size:4096", "journal_sectors:88"]),
            &req,
            &allowed,
        )
        .unwrap();
        assert!(check_options("x", &opts(&["no_read_workqueue"]), &req, &allowed).is_err());
        let e = check_options(
            "x",
            &opts(&["sector_size:4096", "allow_discards"]),
            &req,
            &allowed,
        )
        .unwrap_err();
        assert!(e.contains("allow_discards"), "{e}");
        assert!(check_options("x", &opts(&["sector_size:4096", ""]), &req, &allowed).is_err());
    }
}
