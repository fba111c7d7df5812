//! What is on a device, read-only: libblkid signatures and a check that the
//! first and last MiB are zero. Nothing here writes.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use libblkid_rs::{BlkidProbe, BlkidProbeRet, BlkidSublks, BlkidSublksFlags};

/// How much of each end of a device must be zero for it to count as blank.
pub const BLANK_CHECK_BYTES: u64 = 1 << 20;

/// What a device holds, as far as formatting decisions go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contents {
    /// No signature of any kind, no partition table, and the first and last
    /// MiB are all zero: safe to format when the config allows it.
    Blank,
    /// A LUKS2 header and nothing else: it may be ours; the header decides.
    Luks2,
    /// One or more signatures (filesystem, LUKS1, RAID, swap, partition
    /// table...), e.g. `["ext4"]` or `["gpt", "PMBR"]`.
    Signatures(Vec<String>),
    /// No signature, but data: plain dm-crypt, random fill, or a filesystem
    /// libblkid does not know. `region` says where non-zero bytes were seen.
    Data { region: &'static str },
}

/// Probes `device` with libblkid (superblocks, including ones with bad
/// checksums, and partition tables) and reads both ends.
pub fn inspect(device: &Path) -> Result<Contents, String> {
    let found = signatures(device)?;
    if found.len() == 1 && found[0] == "crypto_LUKS2" {
        return Ok(Contents::Luks2);
    }
    if !found.is_empty() {
        return Ok(Contents::Signatures(found));
    }
    match nonzero_region(device).map_err(|e| format!("cannot read {}: {e}", device.display()))? {
        Some(region) => Ok(Contents::Data { region }),
        None => Ok(Contents::Blank),
    }
}

/// Every signature libblkid sees, like `wipefs` lists them. A LUKS header is
/// reported as `crypto_LUKS1` or `crypto_LUKS2`.
pub fn signatures(device: &Path) -> Result<Vec<String>, String> {
    let ctx = |what: &str, e: libblkid_rs::BlkidErr| {
        format!("libblkid {what} on {} failed: {e}", device.display())
    };
    let mut probe = BlkidProbe::new_from_filename(device).map_err(|e| ctx("open", e))?;
    probe
        .enable_superblocks(true)
        .map_err(|e| ctx("enable superblocks", e))?;
    probe
        .set_superblock_flags(BlkidSublksFlags::new(vec![
            BlkidSublks::Type,
            BlkidSublks::Version,
            BlkidSublks::Usage,
            BlkidSublks::Magic,
            BlkidSublks::Badcsum,
        ]))
        .map_err(|e| ctx("set flags", e))?;
    probe
        .enable_partitions(true)
        .map_err(|e| ctx("enable partitions", e))?;
    let mut found = Vec::new();
    // Like wipefs: each do_probe step yields the next signature.
    loop {
        match probe.do_probe().map_err(|e| ctx("probe", e))? {
            BlkidProbeRet::Done => break,
            BlkidProbeRet::Success => {
                let ty = if probe.has_value("TYPE").unwrap_or(false) {
                    probe.lookup_value("TYPE").ok()
                } else if probe.has_value("PTTYPE").unwrap_or(false) {
                    probe.lookup_value("PTTYPE").ok()
                } else {
                    None
                };
                let mut ty = ty.unwrap_or_else(|| "unknown signature".to_owned());
                if ty == "crypto_LUKS" {
                    let v = probe.lookup_value("VERSION").unwrap_or_default();
                    ty = format!("crypto_LUKS{v}");
                }
                if !found.contains(&ty) {
                    found.push(ty);
                }
            }
        }
        if found.len() > 16 {
            break;
        }
    }
    Ok(found)
}

/// `Some("first MiB")`/`Some("last MiB")` if that end holds a non-zero byte.
pub fn nonzero_region(device: &Path) -> std::io::Result<Option<&'static str>> {
    let mut f = std::fs::File::open(device)?;
    let size = f.seek(SeekFrom::End(0))?;
    let span = BLANK_CHECK_BYTES.min(size);
    for (region, start) in [("first MiB", 0), ("last MiB", size - span)] {
        f.seek(SeekFrom::Start(start))?;
        let mut buf = vec![0u8; span as usize];
        f.read_exact(&mut buf)?;
        if buf.iter().any(|&b| b != 0) {
            return Ok(Some(region));
        }
    }
    Ok(None)
}
