//! Forging LUKS2 headers the way a hostile host would: edit the JSON
//! metadata of both header copies in a disk image and fix their SHA-256
//! checksums, so libcryptsetup itself accepts the result. Used to prove
//! cvm-init refuses such headers before a key touches them.
//!
//! On-disk format (LUKS2 specification): each copy starts with a 4096-byte
//! binary header (magic, version, `hdr_size` u64 BE at 8, ..., `csum[64]`
//! at 0x1C0) followed by the JSON area up to `hdr_size`; the checksum is
//! over the whole `hdr_size` bytes with `csum` zeroed. The secondary copy
//! starts at `hdr_size`.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::Value;
use sha2::{Digest, Sha256};

const BINARY_HDR: usize = 4096;
const CSUM_OFFSET: usize = 0x1C0;
const CSUM_LEN: usize = 64;

/// Applies `edit` to the JSON metadata (read from the primary copy) and
/// writes the result into both header copies of `image`; with
/// `fix_checksum` their checksums are recomputed so libcryptsetup accepts
/// the forgery, without it they are left stale (libcryptsetup must then
/// refuse the header itself).
pub fn forge(image: &Path, fix_checksum: bool, edit: impl FnOnce(&mut Value)) -> Result<()> {
    forge_copies(image, fix_checksum, false, edit)
}

/// Like [`forge`] with checksums fixed, but writes only the secondary copy
/// and gives it the primary's seqid + 1, so a LUKS2 reader prefers it over
/// the untouched, valid primary.
pub fn forge_secondary(image: &Path, edit: impl FnOnce(&mut Value)) -> Result<()> {
    forge_copies(image, true, true, edit)
}

const SEQID_OFFSET: usize = 16;

fn forge_copies(
    image: &Path,
    fix_checksum: bool,
    secondary_only: bool,
    edit: impl FnOnce(&mut Value),
) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(image)
        .with_context(|| format!("opening {}", image.display()))?;
    let mut head = [0u8; 16];
    f.read_exact(&mut head)?;
    if &head[..6] != b"LUKS\xba\xbe" {
        bail!("{} has no LUKS2 primary header", image.display());
    }
    let hdr_size = u64::from_be_bytes(head[8..16].try_into()?) as usize;
    let mut primary = vec![0u8; hdr_size];
    f.seek(SeekFrom::Start(0))?;
    f.read_exact(&mut primary)?;
    let json_area = &primary[BINARY_HDR..];
    let end = json_area
        .iter()
        .position(|b| *b == 0)
        .unwrap_or(json_area.len());
    let mut json: Value =
        serde_json::from_slice(&json_area[..end]).context("JSON area of the primary header")?;
    edit(&mut json);
    let text = serde_json::to_vec(&json)?;
    if text.len() >= hdr_size - BINARY_HDR {
        bail!("forged JSON does not fit the JSON area");
    }
    let seqid = u64::from_be_bytes(primary[SEQID_OFFSET..SEQID_OFFSET + 8].try_into()?);
    for (offset, magic) in [(0, b"LUKS\xba\xbe"), (hdr_size, b"SKUL\xba\xbe")] {
        if secondary_only && offset == 0 {
            continue;
        }
        let mut hdr = vec![0u8; hdr_size];
        f.seek(SeekFrom::Start(offset as u64))?;
        f.read_exact(&mut hdr)?;
        if &hdr[..6] != magic {
            bail!("no LUKS2 header copy at offset {offset}");
        }
        hdr[BINARY_HDR..].fill(0);
        hdr[BINARY_HDR..BINARY_HDR + text.len()].copy_from_slice(&text);
        if secondary_only {
            hdr[SEQID_OFFSET..SEQID_OFFSET + 8].copy_from_slice(&(seqid + 1).to_be_bytes());
        }
        if fix_checksum {
            hdr[CSUM_OFFSET..CSUM_OFFSET + CSUM_LEN].fill(0);
            let sum = Sha256::digest(&hdr);
            hdr[CSUM_OFFSET..CSUM_OFFSET + sum.len()].copy_from_slice(&sum);
        }
        f.seek(SeekFrom::Start(offset as u64))?;
        f.write_all(&hdr)?;
    }
    f.sync_all()?;
    Ok(())
}

/// One forgery: its name, the edit, and a word cvm-init's refusal names.
pub type Forgery = (&'static str, fn(&mut Value), &'static str);

/// The forgeries a hostile host might try.
pub fn forgeries() -> Vec<Forgery> {
    vec![
        (
            "null cipher",
            |j| {
                j["segments"]["0"]["encryption"] = "cipher_null-ecb".into();
            },
            "cipher_null",
        ),
        (
            "second keyslot",
            |j| {
                // A copy of slot 0 in the next free part of the keyslot
                // area, bound to the digest: a valid second way in.
                let mut slot = j["keyslots"]["0"].clone();
                let num = |v: &Value| v.as_str().and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
                let end = num(&slot["area"]["offset"]) + num(&slot["area"]["size"]);
                slot["area"]["offset"] = end.to_string().into();
                j["keyslots"]["1"] = slot;
                if let Some(list) = j["digests"]["0"]["keyslots"].as_array_mut() {
                    list.push("1".into());
                }
            },
            "keyslot",
        ),
        (
            "unknown token",
            |j| {
                j["tokens"]["7"] = serde_json::json!({"type": "evil-unlock", "keyslots": []});
            },
            "token",
        ),
        (
            "integrity added",
            |j| {
                j["segments"]["0"]["integrity"] = serde_json::json!({
                    "type": "hmac(sha256)", "journal_encryption": "none", "journal_integrity": "none"
                });
            },
            "integrity",
        ),
    ]
}
