//! The LUKS2 binary header (the 4096 bytes in front of each JSON area),
//! decoded into a typed struct. libcryptsetup-rs exposes no getter for the
//! subsystem label, so we read it from our tmpfs copy of the header after
//! libcryptsetup has loaded and accepted that copy.
//!
//! Layout (LUKS2 On-Disk Format Specification, section 2.1; all integers
//! big-endian): magic\[6] @0, version u16 @6, hdr_size u64 @8, seqid u64
//! @16, label\[48] @24, checksum_alg\[32] @72, salt\[64] @104, uuid\[40] @168,
//! subsystem\[48] @208, hdr_offset u64 @256, padding\[184], csum\[64] @448,
//! padding to 4096. The checksum covers the binary header and its JSON area
//! (`hdr_size` bytes) with the csum field zeroed. The primary header is at
//! offset 0, the secondary at `hdr_size`; the valid one with the higher
//! seqid wins, as in libcryptsetup.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use sha2::{Digest, Sha256};

pub const BINARY_HEADER_BYTES: usize = 4096;
const MAGIC_PRIMARY: &[u8; 6] = b"LUKS\xba\xbe";
const MAGIC_SECONDARY: &[u8; 6] = b"SKUL\xba\xbe";
const CSUM_OFFSET: usize = 448;
const CSUM_BYTES: usize = 64;
/// JSON area sizes the specification allows (16 KiB .. 4 MiB in total).
const HDR_SIZES: &[u64] = &[
    0x4000, 0x8000, 0x10000, 0x20000, 0x40000, 0x80000, 0x100000, 0x200000, 0x400000,
];

/// The fields of one binary header copy that we use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinaryHeader {
    pub hdr_size: u64,
    pub seqid: u64,
    pub label: String,
    pub uuid: String,
    pub subsystem: String,
    pub hdr_offset: u64,
}

fn be64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

fn c_string(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// Decodes and checksums one copy. `area` must hold at least the 4096-byte
/// binary header; the checksum is checked only if it holds `hdr_size`.
fn decode(area: &[u8], magic: &[u8; 6], at_offset: u64) -> Option<BinaryHeader> {
    if area.len() < BINARY_HEADER_BYTES || &area[..6] != magic {
        return None;
    }
    if u16::from_be_bytes([area[6], area[7]]) != 2 {
        return None;
    }
    let hdr_size = be64(area, 8);
    if !HDR_SIZES.contains(&hdr_size) || area.len() < hdr_size as usize {
        return None;
    }
    if be64(area, 256) != at_offset {
        return None;
    }
    // Only sha256 is ever written by libcryptsetup for LUKS2.
    if c_string(&area[72..104]) != "sha256" {
        return None;
    }
    let mut hasher = Sha256::new();
    hasher.update(&area[..CSUM_OFFSET]);
    hasher.update([0u8; CSUM_BYTES]);
    hasher.update(&area[CSUM_OFFSET + CSUM_BYTES..hdr_size as usize]);
    if hasher.finalize()[..] != area[CSUM_OFFSET..CSUM_OFFSET + 32] {
        return None;
    }
    Some(BinaryHeader {
        hdr_size,
        seqid: be64(area, 16),
        label: c_string(&area[24..72]),
        uuid: c_string(&area[168..208]),
        subsystem: c_string(&area[208..256]),
        hdr_offset: at_offset,
    })
}

/// Both binary header copies of a metadata image, each `None` when absent
/// or invalid (bad magic, version, size, offset or checksum).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HeaderPair {
    pub primary: Option<BinaryHeader>,
    pub secondary: Option<BinaryHeader>,
}

impl HeaderPair {
    /// The valid copy with the higher seqid (the primary on a tie), as
    /// libcryptsetup picks it.
    pub fn active(&self) -> Option<&BinaryHeader> {
        match (&self.primary, &self.secondary) {
            (Some(p), Some(s)) => Some(if s.seqid > p.seqid { s } else { p }),
            (p, s) => p.as_ref().or(s.as_ref()),
        }
    }
}

/// Decodes both copies from an image of the start of a device.
pub fn decode_pair(image: &[u8]) -> HeaderPair {
    let primary = decode(image, MAGIC_PRIMARY, 0);
    // The secondary sits right after the primary area; its size is the
    // primary's hdr_size, or any allowed size when the primary is damaged.
    let candidates: Vec<u64> = match &primary {
        Some(p) => vec![p.hdr_size],
        None => HDR_SIZES.to_vec(),
    };
    let secondary = candidates.into_iter().find_map(|off| {
        let area = image.get(off as usize..)?;
        decode(area, MAGIC_SECONDARY, off)
    });
    HeaderPair { primary, secondary }
}

/// How much of the device's start holds the two metadata areas: twice the
/// primary's `hdr_size` (from its first 4096 bytes), or `all` when there is
/// no readable primary (then the secondary may sit at any allowed offset).
pub fn metadata_len(first: &[u8], all: u64) -> u64 {
    match first.get(..16) {
        Some(b) if &b[..6] == MAGIC_PRIMARY && HDR_SIZES.contains(&be64(b, 8)) => {
            (2 * be64(b, 8)).min(all)
        }
        _ => all,
    }
}

/// Reads the LUKS2 metadata areas at the start of `device`
/// ([`metadata_len`]) with plain `read()` calls from an `O_RDONLY`
/// descriptor: nothing in this path can write the device (libcryptsetup's
/// loader repairs a header copy it thinks is damaged, so it only ever sees
/// our private copy of these bytes). The device must hold at least `all`
/// bytes (the metadata and the keyslot area in front of the data).
pub fn read_metadata(device: &Path, all: u64) -> std::io::Result<Vec<u8>> {
    let mut f = std::fs::OpenOptions::new().read(true).open(device)?;
    let size = f.seek(SeekFrom::End(0))?;
    if size < all {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!(
                "the device holds {size} bytes, fewer than the {all} of cvm-init's LUKS2 metadata"
            ),
        ));
    }
    f.seek(SeekFrom::Start(0))?;
    let mut first = vec![0u8; BINARY_HEADER_BYTES];
    f.read_exact(&mut first)?;
    let len = metadata_len(&first, all) as usize;
    let mut buf = vec![0u8; len];
    buf[..BINARY_HEADER_BYTES].copy_from_slice(&first);
    f.read_exact(&mut buf[BINARY_HEADER_BYTES..])?;
    Ok(buf)
}

/// Reads `len` bytes at `offset` of `device` (`O_RDONLY`).
pub fn read_range(device: &Path, offset: u64, len: u64) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().read(true).open(device)?;
    let mut buf = vec![0u8; usize::try_from(len).map_err(std::io::Error::other)?];
    f.read_exact_at(&mut buf, offset)?;
    Ok(buf)
}
