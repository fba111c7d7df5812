//! What is on a device, read-only: libblkid signatures, then the zero
//! check that makes "blank" mean blank. Nothing here writes.
//!
//! A device is blank only if libblkid finds no signature and all of these
//! are zero: the first 16 MiB (where LUKS2 keeps its headers and key
//! material), the last MiB, [`SPREAD_SAMPLES`] blocks evenly spaced over
//! the rest and [`RANDOM_SAMPLES`] blocks at random offsets (a host cannot
//! know in advance which ones are read). Two exceptions, both left by our
//! own interrupted first format and neither able to hide key material:
//!
//! * bytes 4096..16384 may hold JSON text (the primary LUKS2 JSON area is
//!   written before the binary header that commits it, see
//!   `commit::commit_new_header`);
//! * for a volume with integrity, a dm-integrity superblock exactly at
//!   16 MiB, and the samples in the [`INTEGRITY_WINDOW_BYTES`] from there
//!   (its journal), are tolerated: libcryptsetup formats them before our
//!   header is written.
//!
//! Why formatting such a device loses nothing: with the first 16 MiB zero,
//! no keyslot exists, so whatever was encrypted there is already beyond
//! anyone's reach; data of any other kind shows up in the samples.

use std::io::{Seek, SeekFrom};
use std::path::Path;

use libblkid_rs::{BlkidProbe, BlkidProbeRet, BlkidSublks, BlkidSublksFlags};
use rand::Rng;

use super::direct;
use super::header::params::{DATA_OFFSET, HDR_SIZE};

/// The start of a device that must be zero (the LUKS2 metadata area).
pub const HEAD_BYTES: u64 = DATA_OFFSET;
/// The end of a device that must be zero.
pub const TAIL_BYTES: u64 = 1 << 20;
/// Evenly spaced sample blocks between the two.
pub const SPREAD_SAMPLES: u64 = 64;
/// Sample blocks at random offsets between the two.
pub const RANDOM_SAMPLES: u64 = 16;
pub const SAMPLE_BYTES: u64 = 4096;
/// How far past 16 MiB an interrupted dm-integrity format may have written:
/// its superblock and journal (the kernel's default journal is at most
/// 64 MiB).
pub const INTEGRITY_WINDOW_BYTES: u64 = 80 << 20;
const INTEGRITY_MAGIC: &[u8; 8] = b"integrt\0";

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
    Data { region: String },
}

/// Probes `device` with libblkid (superblocks, including ones with bad
/// checksums, and partition tables), then runs the zero check. `integrity`:
/// the volume is configured with integrity, so an interrupted dm-integrity
/// format of ours is tolerated.
pub fn inspect(device: &Path, integrity: bool) -> Result<Contents, String> {
    let found = crate::timing::timed("signatures", || signatures(device))?;
    if found.len() == 1 && found[0] == "crypto_LUKS2" {
        return Ok(Contents::Luks2);
    }
    if !found.is_empty() {
        return Ok(Contents::Signatures(found));
    }
    match crate::timing::timed("zero check", || nonzero_region(device, integrity))
        .map_err(|e| format!("cannot read {}: {e}", device.display()))?
    {
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

/// Where `device` holds a byte the blank rule does not allow (see the
/// module documentation), or `None` when it is blank.
pub fn nonzero_region(device: &Path, integrity: bool) -> std::io::Result<Option<String>> {
    let mut disk = Reader::open(device)?;
    let size = disk.size;
    let head = HEAD_BYTES.min(size);
    let mut at = 0;
    while at < head {
        let n = (head - at).min(CHUNK);
        if let Some(i) = forbidden_in_head(at, disk.read(at, n)?) {
            return Ok(Some(format!("first 16 MiB (byte {})", at + i as u64)));
        }
        at += n;
    }
    let tail_start = size.saturating_sub(TAIL_BYTES).max(head);
    if disk.nonzero(tail_start, size - tail_start)? {
        return Ok(Some("last MiB".to_owned()));
    }
    if tail_start <= head {
        return Ok(None);
    }
    let integrity_window =
        integrity && &disk.read(DATA_OFFSET, SAMPLE_BYTES)?[..8] == INTEGRITY_MAGIC;
    for off in sample_offsets(head, tail_start) {
        if integrity_window && off < DATA_OFFSET + INTEGRITY_WINDOW_BYTES {
            continue;
        }
        if disk.nonzero(off, SAMPLE_BYTES.min(tail_start - off))? {
            return Ok(Some(format!("sample block at byte {off}")));
        }
    }
    Ok(None)
}

/// The zero check's reads, in pieces of at most this.
const CHUNK: u64 = 1 << 20;

/// Reads a device for the zero check with `O_DIRECT` where it can
/// ([`super::direct`]): without the copy through the page cache (and the
/// readahead around each sample), which under emulation was most of the
/// check's 0.4 s on a blank disk. Files on tmpfs, and any unaligned range,
/// are read the ordinary way. Both descriptors are read-only.
struct Reader {
    buffered: std::fs::File,
    direct: Option<std::fs::File>,
    size: u64,
    buf: direct::Buffer,
}

impl Reader {
    fn open(device: &Path) -> std::io::Result<Self> {
        let mut buffered = std::fs::File::open(device)?;
        let size = buffered.seek(SeekFrom::End(0))?;
        Ok(Reader {
            buffered,
            direct: direct::open(device, false),
            size,
            buf: direct::Buffer::new(CHUNK as usize),
        })
    }

    /// `len` (at most [`CHUNK`]) bytes at `at`.
    fn read(&mut self, at: u64, len: u64) -> std::io::Result<&[u8]> {
        use std::os::unix::fs::FileExt;
        let len = len.min(CHUNK) as usize;
        let buf = &mut self.buf.as_mut_slice()[..len];
        match &self.direct {
            Some(d) if direct::aligned(at) && direct::aligned(len as u64) => {
                match d.read_exact_at(buf, at) {
                    Ok(()) => {}
                    // A device that takes O_DIRECT opens but refuses this read
                    // (a larger logical block size): the ordinary way.
                    Err(e) if e.raw_os_error() == Some(nix::libc::EINVAL) => {
                        self.direct = None;
                        self.buffered.read_exact_at(buf, at)?;
                    }
                    Err(e) => return Err(e),
                }
            }
            _ => self.buffered.read_exact_at(buf, at)?,
        }
        Ok(buf)
    }

    /// Whether `len` bytes at `at` hold a non-zero byte.
    fn nonzero(&mut self, at: u64, len: u64) -> std::io::Result<bool> {
        let mut done = 0;
        while done < len {
            let n = (len - done).min(CHUNK);
            if first_nonzero(self.read(at + done, n)?).is_some() {
                return Ok(true);
            }
            done += n;
        }
        Ok(false)
    }
}

/// The first byte in a chunk of the head (starting at `at`) that may not
/// be there: anything but zero, except JSON text in the primary JSON area.
fn forbidden_in_head(at: u64, chunk: &[u8]) -> Option<usize> {
    let end = at + chunk.len() as u64;
    // The part of the chunk inside the JSON area, as indices into it.
    let json = (4096u64.clamp(at, end) - at) as usize..(HDR_SIZE.clamp(at, end) - at) as usize;
    let text = |b: u8| b == 0 || b == b'\n' || (0x20..0x7f).contains(&b);
    let nonzero = |from: usize, part: &[u8]| first_nonzero(part).map(|i| from + i);
    nonzero(0, &chunk[..json.start])
        .or_else(|| {
            chunk[json.clone()]
                .iter()
                .position(|&b| !text(b))
                .map(|i| json.start + i)
        })
        .or_else(|| nonzero(json.end, &chunk[json.end..]))
}

/// The index of the first non-zero byte. Scans 64-byte blocks without an
/// exit inside each (the compiler makes it vector code): a byte at a time,
/// the 17 MiB of a blank disk's check took about 0.2 s under emulation.
fn first_nonzero(bytes: &[u8]) -> Option<usize> {
    const BLOCK: usize = 64;
    let block = bytes
        .chunks(BLOCK)
        .position(|c| c.iter().fold(0u8, |acc, &b| acc | b) != 0)?;
    let at = block * BLOCK;
    bytes[at..].iter().position(|&b| b != 0).map(|i| at + i)
}

/// Block-aligned sample offsets in `start..end`: evenly spaced, then random.
pub fn sample_offsets(start: u64, end: u64) -> Vec<u64> {
    let blocks = (end - start) / SAMPLE_BYTES;
    if blocks == 0 {
        return vec![start];
    }
    let mut rng = rand::thread_rng();
    let spread = (0..SPREAD_SAMPLES).map(|i| i * blocks / SPREAD_SAMPLES);
    let random: Vec<u64> = (0..RANDOM_SAMPLES)
        .map(|_| rng.gen_range(0..blocks))
        .collect();
    let mut all: Vec<u64> = spread
        .chain(random)
        .map(|b| start + b * SAMPLE_BYTES)
        .collect();
    all.dedup();
    all
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn first_nonzero_finds_the_first_set_byte_anywhere() {
        assert_eq!(first_nonzero(&[]), None);
        assert_eq!(first_nonzero(&[0u8; 1000]), None);
        for at in [0, 1, 63, 64, 65, 998] {
            let mut b = vec![0u8; 1000];
            b[at] = 0x80;
            b[999] = 1;
            assert_eq!(first_nonzero(&b), Some(at), "{at}");
        }
    }
}
