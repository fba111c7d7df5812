//! What a LUKS2 header of ours looks like, and the strict check of a header
//! the host handed us.
//!
//! The host controls the disk, so it can write any header it likes: a
//! `cipher_null` segment that "encrypts" nothing, a second keyslot it holds
//! the passphrase for, a token that makes some other tool unlock the disk,
//! integrity silently switched off. libcryptsetup accepts all of these as
//! valid LUKS2. [`validate_header`] accepts only the exact shape that
//! [`super::luks`] writes, and it runs on the JSON that libcryptsetup loaded
//! from our private tmpfs copy of the header (see `luks::open_header_copy`),
//! before any key is used.

use serde_json::{Map, Value};

/// Every LUKS2 parameter we write and accept, in one place.
pub mod params {
    /// Data segment and keyslot-area cipher. Anything else (above all
    /// `cipher_null`) is refused.
    pub const CIPHER: &str = "aes-xts-plain64";
    /// `crypt_format` takes the cipher and the mode separately.
    pub const CIPHER_NAME: &str = "aes";
    pub const CIPHER_MODE: &str = "xts-plain64";
    /// AES-256-XTS: two 256-bit keys.
    pub const VOLUME_KEY_BYTES: usize = 64;
    /// dm-integrity tag algorithm when a volume asks for integrity.
    pub const INTEGRITY: &str = "hmac(sha256)";
    /// The HMAC key is appended to the volume key when integrity is on, so
    /// the keyslot then stores 64 + 32 bytes.
    pub const INTEGRITY_KEY_BYTES: usize = 32;
    /// The keyslot area is always encrypted with AES-XTS-512, integrity or
    /// not (libcryptsetup's default keyslot cipher for integrity volumes).
    pub const KEYSLOT_AREA_KEY_BYTES: u64 = 64;
    pub const SECTOR_SIZE: u64 = 4096;
    pub const PBKDF: &str = "pbkdf2";
    pub const PBKDF_HASH: &str = "sha256";
    /// The minimum libcryptsetup allows. Why the minimum: see
    /// `luks::keyslot_pbkdf`.
    pub const PBKDF2_ITERATIONS: u32 = 1000;
    /// Anti-forensic splitter of the keyslot (libcryptsetup's only one).
    pub const AF_TYPE: &str = "luks1";
    pub const AF_STRIPES: u64 = 4000;
    /// Type of our state token, and the LUKS2 subsystem label that marks a
    /// header as ours from its very first write (before the token exists).
    pub const TOKEN_TYPE: &str = "cvm-init";
    pub const SUBSYSTEM: &str = "cvm-init";
    /// The metadata layout we write: two 16 KiB header copies (4 KiB
    /// binary header + 12 KiB JSON each), the keyslot area up to 1 MiB
    /// (room for two keyslots of the largest key, 375 KiB each), our
    /// padding ([`PADDING_LINE`]) up to 16 MiB, the data segment from
    /// 16 MiB on.
    pub const HDR_SIZE: u64 = 16 << 10;
    pub const JSON_SIZE: u64 = HDR_SIZE - 4096;
    pub const DATA_OFFSET: u64 = 16 << 20;
    pub const KEYSLOTS_END: u64 = 1 << 20;
    pub const KEYSLOTS_SIZE: u64 = KEYSLOTS_END - 2 * HDR_SIZE;
    /// The keyslot area of volumes formatted before 2026-12 (libcryptsetup's
    /// default, up to [`DATA_OFFSET`]); still accepted. libcryptsetup fills
    /// a keyslot area with random bytes from the kernel when it formats,
    /// 0.8 s for this one under emulation, where the padding costs nothing.
    pub const LEGACY_KEYSLOTS_SIZE: u64 = DATA_OFFSET - 2 * HDR_SIZE;
    /// What fills `KEYSLOTS_END..DATA_OFFSET` of a new volume, repeated:
    /// text, so a hex dump says what it is. It is there to be non-zero: a
    /// host that wipes the header must wipe all 16 MiB before the blank
    /// probe accepts the disk (`probe`), as with the old random-filled
    /// keyslot area. Nothing reads it and nothing trusts it; it is not
    /// secret, so it need not be random.
    pub const PADDING_LINE: &[u8; 64] =
        b"cvm-init LUKS2 padding: non-zero so a wiped header is not blank\n";
    /// Persistent activation flags we set. `allow-discards` is accepted only
    /// when the volume's config says `discard = true`: in a header the host
    /// wrote, it would tell the host which blocks are in use.
    pub const ALLOWED_FLAGS: &[&str] = &["no-read-workqueue", "no-write-workqueue"];
    pub const DISCARD_FLAG: &str = "allow-discards";
}

use params::*;

/// What the config says the header must contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected {
    /// `vol.integrity`: the segment must carry `hmac(sha256)` integrity, and
    /// must not carry any when this is false.
    pub integrity: bool,
    /// `vol.discard`: the header may (and, when we format it, does) carry
    /// the persistent flag `allow-discards`.
    pub discard: bool,
}

impl Expected {
    /// What the config says about `vol`'s header.
    pub fn for_volume(vol: &crate::config::VolumeConfig) -> Self {
        Self {
            integrity: vol.integrity,
            discard: vol.discard,
        }
    }

    /// Size of the key stored in the keyslot (volume key + integrity key).
    pub fn keyslot_key_bytes(&self) -> u64 {
        let extra = if self.integrity {
            INTEGRITY_KEY_BYTES
        } else {
            0
        };
        (VOLUME_KEY_BYTES + extra) as u64
    }
}

/// Why a header was refused. Each names the field and what was found; the
/// caller adds the volume and device.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("metadata field `{at}`: {problem}")]
    Malformed { at: String, problem: String },
    #[error("unexpected metadata field `{at}` (not written by cvm-init)")]
    UnknownField { at: String },
    #[error("{found} keyslots, expected exactly 1 (an extra keyslot lets whoever holds its passphrase unlock the disk)")]
    KeyslotCount { found: usize },
    #[error("keyslot {id}: {problem}")]
    Keyslot { id: String, problem: String },
    #[error("{found} data segments, expected exactly 1")]
    SegmentCount { found: usize },
    #[error("segment {id} is of type {found:?}, expected \"crypt\"")]
    SegmentType { id: String, found: String },
    #[error("segment {id} cipher is {found:?}, expected exactly \"{CIPHER}\" (a host-written header may use cipher_null, which stores plaintext)")]
    Cipher { id: String, found: String },
    #[error("segment {id} sector size is {found}, expected {SECTOR_SIZE}")]
    SectorSize { id: String, found: u64 },
    #[error("segment {id} has no integrity protection but the volume is configured with integrity = true (integrity stripped)")]
    IntegrityMissing { id: String },
    #[error("segment {id} has integrity {found} but the volume is configured without integrity")]
    IntegrityUnexpected { id: String, found: String },
    #[error("segment {id} integrity is {found}, expected {{\"type\":\"{INTEGRITY}\"}} without journal encryption or journal integrity")]
    IntegrityType { id: String, found: String },
    #[error("segment {id}: {problem}")]
    Segment { id: String, problem: String },
    #[error("{found} digests, expected exactly 1")]
    DigestCount { found: usize },
    #[error("digest {id}: {problem}")]
    Digest { id: String, problem: String },
    #[error("token {id} has type {found:?}; only the \"{TOKEN_TYPE}\" state token is allowed (another token type could unlock or re-key the disk outside cvm-init)")]
    ForeignToken { id: String, found: String },
    #[error("{found} cvm-init tokens, expected exactly 1")]
    TokenCount { found: usize },
    #[error("no cvm-init state token: this LUKS2 header was not provisioned by cvm-init")]
    MissingStateToken,
    #[error("cvm-init token {id}: {problem}")]
    StateToken { id: String, problem: String },
    #[error(
        "header has LUKS2 requirements {found} (e.g. online reencryption); cvm-init never sets any"
    )]
    Requirements { found: String },
    #[error("header has persistent flag {found:?}; allowed: {ALLOWED_FLAGS:?} (and {DISCARD_FLAG:?} only with discard = true in the volume's config)")]
    UnknownFlag { found: String },
    #[error("keyslot {id} holds a {found}-byte key, expected {expected} (AES-256-XTS{integrity})", integrity = if *expected > VOLUME_KEY_BYTES as u64 { " + HMAC-SHA256" } else { "" })]
    VolumeKeySize {
        id: String,
        found: u64,
        expected: u64,
    },
}

fn malformed(at: impl Into<String>, problem: impl Into<String>) -> HeaderError {
    HeaderError::Malformed {
        at: at.into(),
        problem: problem.into(),
    }
}

fn object<'a>(v: &'a Value, at: &str) -> Result<&'a Map<String, Value>, HeaderError> {
    v.as_object()
        .ok_or_else(|| malformed(at, "is not a JSON object"))
}

fn field<'a>(m: &'a Map<String, Value>, at: &str, key: &str) -> Result<&'a Value, HeaderError> {
    m.get(key)
        .ok_or_else(|| malformed(format!("{at}.{key}"), "is missing"))
}

fn string<'a>(m: &'a Map<String, Value>, at: &str, key: &str) -> Result<&'a str, HeaderError> {
    field(m, at, key)?
        .as_str()
        .ok_or_else(|| malformed(format!("{at}.{key}"), "is not a string"))
}

/// LUKS2 stores 64-bit values as decimal strings and small ones as numbers.
fn number(m: &Map<String, Value>, at: &str, key: &str) -> Result<u64, HeaderError> {
    let v = field(m, at, key)?;
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .ok_or_else(|| {
            malformed(
                format!("{at}.{key}"),
                format!("{v} is not an unsigned number"),
            )
        })
}

fn only_fields(m: &Map<String, Value>, at: &str, allowed: &[&str]) -> Result<(), HeaderError> {
    match m.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(HeaderError::UnknownField {
            at: format!("{at}.{k}"),
        }),
        None => Ok(()),
    }
}

fn expect_str(m: &Map<String, Value>, at: &str, key: &str, want: &str) -> Result<(), String> {
    match m.get(key).and_then(Value::as_str) {
        Some(s) if s == want => Ok(()),
        Some(s) => Err(format!("{key} is {s:?}, expected {want:?}")),
        None => Err(format!(
            "{at}.{key} is missing or not a string, expected {want:?}"
        )),
    }
}

/// The ids of a JSON array of id strings, as LUKS2 writes them (`["0"]`).
fn id_list(m: &Map<String, Value>, at: &str, key: &str) -> Result<Vec<String>, HeaderError> {
    let arr = field(m, at, key)?
        .as_array()
        .ok_or_else(|| malformed(format!("{at}.{key}"), "is not an array"))?;
    arr.iter()
        .map(|v| {
            v.as_str()
                .map(str::to_owned)
                .ok_or_else(|| malformed(format!("{at}.{key}"), "holds a non-string id"))
        })
        .collect()
}

/// Checks the LUKS2 metadata JSON of a header against the one shape cvm-init
/// writes. Pure: no I/O. Any deviation is an error naming the field; the
/// first of [`header_problems`].
pub fn validate_header(json: &Value, expect: &Expected) -> Result<(), HeaderError> {
    match header_problems(json, expect).into_iter().next() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Every deviation of `json` from our shape, most important first (the
/// data segment: a wrong cipher or missing integrity is the attack that
/// matters most). Empty when the header is ours. `inspect-volume` shows
/// them all.
pub fn header_problems(json: &Value, expect: &Expected) -> Vec<HeaderError> {
    let mut found = Vec::new();
    let top = match object(json, "metadata") {
        Ok(t) => t,
        Err(e) => return vec![e],
    };
    let mut keep = |r: Result<(), HeaderError>| {
        if let Err(e) = r {
            found.push(e);
        }
    };
    keep(only_fields(
        top,
        "metadata",
        &["keyslots", "tokens", "segments", "digests", "config"],
    ));
    let section = |key: &str| object(field(top, "metadata", key)?, key);
    let (keyslots, segments, digests, config, tokens) = (
        section("keyslots"),
        section("segments"),
        section("digests"),
        section("config"),
        section("tokens"),
    );
    let first = |s: &Result<&Map<String, Value>, HeaderError>| {
        s.as_ref()
            .ok()
            .and_then(|m| m.iter().next())
            .map(|(k, v)| (k.clone(), v.clone()))
    };
    let (slot, seg, dig) = (first(&keyslots), first(&segments), first(&digests));
    match &config {
        Ok(config) => {
            keep(check_config(config, expect));
            if let Some((id, seg)) = &seg {
                keep(check_segment(id, seg, expect));
            }
        }
        Err(e) => keep(Err(e.clone())),
    }
    type Count = fn(usize) -> HeaderError;
    let counts: [(_, Count); 3] = [
        (&segments, |n| HeaderError::SegmentCount { found: n }),
        (&keyslots, |n| HeaderError::KeyslotCount { found: n }),
        (&digests, |n| HeaderError::DigestCount { found: n }),
    ];
    for (s, count) in counts {
        match s {
            Ok(m) if m.len() == 1 => {}
            Ok(m) => keep(Err(count(m.len()))),
            Err(e) => keep(Err(e.clone())),
        }
    }
    if let Some((id, slot)) = &slot {
        keep(check_keyslot(id, slot, expect));
    }
    if let (Some((id, d)), Some((slot_id, _)), Some((seg_id, _))) = (&dig, &slot, &seg) {
        keep(check_digest(id, d, slot_id, seg_id));
    }
    match &tokens {
        Ok(t) => keep(check_tokens(t)),
        Err(e) => keep(Err(e.clone())),
    }
    found
}

fn check_keyslot(id: &str, slot: &Value, expect: &Expected) -> Result<(), HeaderError> {
    let at = format!("keyslots.{id}");
    let bad = |problem: String| HeaderError::Keyslot {
        id: id.to_owned(),
        problem,
    };
    let slot = object(slot, &at)?;
    only_fields(
        slot,
        &at,
        &["type", "key_size", "af", "area", "kdf", "priority"],
    )?;
    expect_str(slot, &at, "type", "luks2").map_err(bad)?;
    let key_size = number(slot, &at, "key_size")?;
    if key_size != expect.keyslot_key_bytes() {
        return Err(HeaderError::VolumeKeySize {
            id: id.to_owned(),
            found: key_size,
            expected: expect.keyslot_key_bytes(),
        });
    }

    let kdf_at = format!("{at}.kdf");
    let kdf = object(field(slot, &at, "kdf")?, &kdf_at)?;
    only_fields(kdf, &kdf_at, &["type", "hash", "iterations", "salt"])?;
    expect_str(kdf, &kdf_at, "type", PBKDF).map_err(|p| bad(format!("kdf {p}")))?;
    expect_str(kdf, &kdf_at, "hash", PBKDF_HASH).map_err(|p| bad(format!("kdf {p}")))?;
    let iterations = number(kdf, &kdf_at, "iterations")?;
    if iterations != u64::from(PBKDF2_ITERATIONS) {
        return Err(bad(format!(
            "kdf iterations is {iterations}, expected {PBKDF2_ITERATIONS}"
        )));
    }
    string(kdf, &kdf_at, "salt")?;

    let af_at = format!("{at}.af");
    let af = object(field(slot, &at, "af")?, &af_at)?;
    only_fields(af, &af_at, &["type", "stripes", "hash"])?;
    expect_str(af, &af_at, "type", AF_TYPE).map_err(|p| bad(format!("af {p}")))?;
    expect_str(af, &af_at, "hash", PBKDF_HASH).map_err(|p| bad(format!("af {p}")))?;
    if number(af, &af_at, "stripes")? != AF_STRIPES {
        return Err(bad(format!("af stripes is not {AF_STRIPES}")));
    }

    let area_at = format!("{at}.area");
    let area = object(field(slot, &at, "area")?, &area_at)?;
    only_fields(
        area,
        &area_at,
        &["type", "offset", "size", "encryption", "key_size"],
    )?;
    expect_str(area, &area_at, "type", "raw").map_err(|p| bad(format!("area {p}")))?;
    expect_str(area, &area_at, "encryption", CIPHER).map_err(|p| bad(format!("area {p}")))?;
    if number(area, &area_at, "key_size")? != KEYSLOT_AREA_KEY_BYTES {
        return Err(bad(format!(
            "area key_size is not {KEYSLOT_AREA_KEY_BYTES}"
        )));
    }
    number(area, &area_at, "offset")?;
    number(area, &area_at, "size")?;
    Ok(())
}

fn check_config(config: &Map<String, Value>, expect: &Expected) -> Result<(), HeaderError> {
    only_fields(
        config,
        "config",
        &["json_size", "keyslots_size", "flags", "requirements"],
    )?;
    let json_size = number(config, "config", "json_size")?;
    if json_size != JSON_SIZE {
        return Err(malformed(
            "config.json_size",
            format!("is {json_size}, expected {JSON_SIZE} (cvm-init's layout)"),
        ));
    }
    let keyslots_size = number(config, "config", "keyslots_size")?;
    if keyslots_size != KEYSLOTS_SIZE && keyslots_size != LEGACY_KEYSLOTS_SIZE {
        return Err(malformed(
            "config.keyslots_size",
            format!(
                "is {keyslots_size}, expected {KEYSLOTS_SIZE} (or {LEGACY_KEYSLOTS_SIZE} before 2026-12; cvm-init's layout)"
            ),
        ));
    }
    if let Some(req) = config.get("requirements") {
        let empty = match req {
            Value::Object(r) => r.values().all(|v| match v {
                Value::Array(a) => a.is_empty(),
                _ => false,
            }),
            _ => false,
        };
        if !empty {
            return Err(HeaderError::Requirements {
                found: req.to_string(),
            });
        }
    }
    if let Some(flags) = config.get("flags") {
        let flags = flags
            .as_array()
            .ok_or_else(|| malformed("config.flags", "is not an array"))?;
        for f in flags {
            match f.as_str() {
                Some(s) if ALLOWED_FLAGS.contains(&s) => {}
                Some(DISCARD_FLAG) if expect.discard => {}
                _ => {
                    return Err(HeaderError::UnknownFlag {
                        found: f.as_str().map_or_else(|| f.to_string(), str::to_owned),
                    })
                }
            }
        }
    }
    Ok(())
}

fn check_segment(id: &str, seg: &Value, expect: &Expected) -> Result<(), HeaderError> {
    let at = format!("segments.{id}");
    let bad = |problem: String| HeaderError::Segment {
        id: id.to_owned(),
        problem,
    };
    let seg = object(seg, &at)?;
    let ty = string(seg, &at, "type")?;
    if ty != "crypt" {
        return Err(HeaderError::SegmentType {
            id: id.to_owned(),
            found: ty.to_owned(),
        });
    }
    only_fields(
        seg,
        &at,
        &[
            "type",
            "offset",
            "size",
            "iv_tweak",
            "encryption",
            "sector_size",
            "integrity",
        ],
    )?;
    let enc = string(seg, &at, "encryption")?;
    if enc != CIPHER {
        return Err(HeaderError::Cipher {
            id: id.to_owned(),
            found: enc.to_owned(),
        });
    }
    let sector = number(seg, &at, "sector_size")?;
    if sector != SECTOR_SIZE {
        return Err(HeaderError::SectorSize {
            id: id.to_owned(),
            found: sector,
        });
    }
    match (seg.get("integrity"), expect.integrity) {
        (None, false) => {}
        (None, true) => return Err(HeaderError::IntegrityMissing { id: id.to_owned() }),
        (Some(found), false) => {
            return Err(HeaderError::IntegrityUnexpected {
                id: id.to_owned(),
                found: found.to_string(),
            })
        }
        (Some(found), true) => {
            let ok = found.as_object().is_some_and(|i| {
                i.get("type").and_then(Value::as_str) == Some(INTEGRITY)
                    && i.keys().all(|k| {
                        k == "type" || (k == "journal_encryption" || k == "journal_integrity")
                    })
                    && ["journal_encryption", "journal_integrity"]
                        .iter()
                        .all(|k| i.get(*k).is_none_or(|v| v.as_str() == Some("none")))
            });
            if !ok {
                return Err(HeaderError::IntegrityType {
                    id: id.to_owned(),
                    found: found.to_string(),
                });
            }
        }
    }
    if number(seg, &at, "iv_tweak")? != 0 {
        return Err(bad("iv_tweak is not 0".to_owned()));
    }
    if string(seg, &at, "size")? != "dynamic" {
        return Err(bad(
            "size is not \"dynamic\" (the segment must cover the whole device)".to_owned(),
        ));
    }
    // The data starts right after our metadata layout; anything else would
    // put writes to the volume on the header, or leave room for host data.
    let offset = number(seg, &at, "offset")?;
    if offset != DATA_OFFSET {
        return Err(bad(format!(
            "data offset is {offset}, expected {DATA_OFFSET} (cvm-init's layout)"
        )));
    }
    Ok(())
}

fn check_digest(id: &str, digest: &Value, slot_id: &str, seg_id: &str) -> Result<(), HeaderError> {
    let at = format!("digests.{id}");
    let bad = |problem: String| HeaderError::Digest {
        id: id.to_owned(),
        problem,
    };
    let d = object(digest, &at)?;
    only_fields(
        d,
        &at,
        &[
            "type",
            "keyslots",
            "segments",
            "hash",
            "iterations",
            "salt",
            "digest",
        ],
    )?;
    expect_str(d, &at, "type", PBKDF).map_err(bad)?;
    expect_str(d, &at, "hash", PBKDF_HASH).map_err(bad)?;
    if id_list(d, &at, "keyslots")? != [slot_id] {
        return Err(bad(format!("does not bind exactly keyslot {slot_id}")));
    }
    if id_list(d, &at, "segments")? != [seg_id] {
        return Err(bad(format!("does not bind exactly segment {seg_id}")));
    }
    number(d, &at, "iterations")?;
    string(d, &at, "salt")?;
    string(d, &at, "digest")?;
    Ok(())
}

fn check_tokens(tokens: &Map<String, Value>) -> Result<(), HeaderError> {
    for (id, tok) in tokens {
        let ty = tok.get("type").and_then(Value::as_str).unwrap_or("<none>");
        if ty != TOKEN_TYPE {
            return Err(HeaderError::ForeignToken {
                id: id.clone(),
                found: ty.to_owned(),
            });
        }
    }
    match super::state::find_token(tokens)? {
        Some(_) => Ok(()),
        None => Err(HeaderError::MissingStateToken),
    }
}

#[cfg(test)]
mod tests;
