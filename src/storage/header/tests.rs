#![allow(clippy::unwrap_used)]
//! The validator on crafted metadata. `tests/loop_storage.rs` runs the same
//! checks on real headers written by libcryptsetup and forged on disk.

use serde_json::json;

use super::*;
use crate::storage::state::{header_token, TokenState};

/// Our token's shape with a placeholder MAC (the MAC itself is
/// `state::tests`' business).
fn token(state: TokenState) -> Value {
    json!({"type": "cvm-init", "keyslots": [], "state": state.as_str(), "version": 2, "mac": "ab".repeat(32)})
}

fn header_token_state(v: &Value) -> Result<Option<TokenState>, HeaderError> {
    header_token(v).map(|t| t.map(|t| t.state))
}

/// The metadata libcryptsetup 2.6.1 writes for a cvm-init volume (from
/// `cryptsetup luksDump --dump-json-metadata` of one, salts shortened).
fn ours(integrity: bool) -> Value {
    let mut v = json!({
        "keyslots": {"0": {
            "type": "luks2", "key_size": 64,
            "af": {"type": "luks1", "stripes": 4000, "hash": "sha256"},
            "area": {"type": "raw", "offset": "32768", "size": "258048",
                     "encryption": "aes-xts-plain64", "key_size": 64},
            "kdf": {"type": "pbkdf2", "hash": "sha256", "iterations": 1000, "salt": "kCirSw=="}
        }},
        "tokens": {},
        "segments": {"0": {
            "type": "crypt", "offset": "16777216", "size": "dynamic", "iv_tweak": "0",
            "encryption": "aes-xts-plain64", "sector_size": 4096
        }},
        "digests": {"0": {
            "type": "pbkdf2", "keyslots": ["0"], "segments": ["0"], "hash": "sha256",
            "iterations": 1000, "salt": "pvxi==", "digest": "X81R=="
        }},
        "config": {"json_size": "12288", "keyslots_size": "1015808",
                   "flags": ["no-read-workqueue", "no-write-workqueue"]}
    });
    v["tokens"]["0"] = token(TokenState::Ready);
    if integrity {
        v["segments"]["0"]["integrity"] = json!({"type": "hmac(sha256)", "journal_encryption": "none", "journal_integrity": "none"});
        v["keyslots"]["0"]["key_size"] = json!(96);
    }
    v
}

const PLAIN: Expected = Expected {
    integrity: false,
    discard: false,
};
const INTEG: Expected = Expected {
    integrity: true,
    discard: false,
};

fn refuse(v: &Value, e: &Expected) -> HeaderError {
    let err = validate_header(v, e).unwrap_err();
    assert!(!err.to_string().is_empty());
    err
}

#[test]
fn accepts_exactly_our_shape() {
    validate_header(&ours(false), &PLAIN).unwrap();
    validate_header(&ours(true), &INTEG).unwrap();
    assert_eq!(
        header_token_state(&ours(false)).unwrap(),
        Some(TokenState::Ready)
    );
}

#[test]
fn keyslot_area_is_ours_or_the_one_before_2026_12() {
    let mut v = ours(false);
    v["config"]["keyslots_size"] = json!("16744448");
    validate_header(&v, &PLAIN).unwrap();
    for odd in ["1019904", "4194304", "0"] {
        v["config"]["keyslots_size"] = json!(odd);
        let e = refuse(&v, &PLAIN);
        assert!(e.to_string().contains("config.keyslots_size"), "{e}");
    }
}

#[test]
fn refuses_null_and_other_ciphers() {
    for c in [
        "cipher_null-ecb",
        "aes-cbc-essiv:sha256",
        "aes-xts-plain",
        "AES-XTS-PLAIN64",
    ] {
        let mut v = ours(false);
        v["segments"]["0"]["encryption"] = json!(c);
        assert!(matches!(refuse(&v, &PLAIN), HeaderError::Cipher { found, .. } if found == c));
    }
    let mut v = ours(false);
    v["keyslots"]["0"]["area"]["encryption"] = json!("cipher_null-ecb");
    assert!(matches!(refuse(&v, &PLAIN), HeaderError::Keyslot { .. }));
}

#[test]
fn refuses_extra_keyslots_segments_digests() {
    let mut v = ours(false);
    v["keyslots"]["1"] = v["keyslots"]["0"].clone();
    assert_eq!(refuse(&v, &PLAIN), HeaderError::KeyslotCount { found: 2 });
    let mut v = ours(false);
    v["keyslots"] = json!({});
    assert_eq!(refuse(&v, &PLAIN), HeaderError::KeyslotCount { found: 0 });
    let mut v = ours(false);
    v["segments"]["1"] = v["segments"]["0"].clone();
    assert_eq!(refuse(&v, &PLAIN), HeaderError::SegmentCount { found: 2 });
    let mut v = ours(false);
    v["digests"]["1"] = v["digests"]["0"].clone();
    assert_eq!(refuse(&v, &PLAIN), HeaderError::DigestCount { found: 2 });
}

#[test]
fn refuses_weak_or_foreign_keyslot_and_digest() {
    let cases: Vec<(&str, Value)> = vec![
        ("/keyslots/0/kdf/type", json!("argon2id")),
        ("/keyslots/0/kdf/hash", json!("sha1")),
        ("/keyslots/0/kdf/iterations", json!(1)),
        ("/keyslots/0/type", json!("reencrypt")),
        ("/keyslots/0/af/stripes", json!(1)),
        ("/digests/0/type", json!("argon2")),
        ("/digests/0/keyslots", json!(["1"])),
        ("/digests/0/segments", json!([])),
    ];
    for (ptr, val) in cases {
        let mut v = ours(false);
        *v.pointer_mut(ptr).unwrap() = val;
        validate_header(&v, &PLAIN).expect_err(ptr);
    }
    let mut v = ours(false);
    v["keyslots"]["0"]["key_size"] = json!(32);
    assert!(matches!(
        refuse(&v, &PLAIN),
        HeaderError::VolumeKeySize {
            found: 32,
            expected: 64,
            ..
        }
    ));
}

#[test]
fn integrity_must_match_the_config() {
    assert!(matches!(
        refuse(&ours(false), &INTEG),
        HeaderError::IntegrityMissing { .. }
    ));
    // Integrity on, key size right, but the segment's integrity removed.
    let mut stripped = ours(true);
    stripped["segments"]["0"]
        .as_object_mut()
        .unwrap()
        .remove("integrity");
    assert!(matches!(
        refuse(&stripped, &INTEG),
        HeaderError::IntegrityMissing { .. }
    ));
    let mut added = ours(false);
    added["segments"]["0"]["integrity"] = json!({"type": "hmac(sha256)"});
    assert!(matches!(
        refuse(&added, &PLAIN),
        HeaderError::IntegrityUnexpected { .. }
    ));
    for bad in [
        json!({"type": "crc32c"}),
        json!({"type": "hmac(sha256)", "journal_encryption": "cbc(aes)"}),
        json!("hmac(sha256)"),
    ] {
        let mut v = ours(true);
        v["segments"]["0"]["integrity"] = bad;
        assert!(matches!(
            refuse(&v, &INTEG),
            HeaderError::IntegrityType { .. }
        ));
    }
}

#[test]
fn refuses_segment_changes() {
    let mut v = ours(false);
    v["segments"]["0"]["sector_size"] = json!(512);
    assert!(matches!(
        refuse(&v, &PLAIN),
        HeaderError::SectorSize { found: 512, .. }
    ));
    let mut v = ours(false);
    v["segments"]["0"]["type"] = json!("linear");
    assert!(matches!(
        refuse(&v, &PLAIN),
        HeaderError::SegmentType { .. }
    ));
    let mut v = ours(false);
    v["segments"]["0"]["offset"] = json!("4096");
    assert!(matches!(refuse(&v, &PLAIN), HeaderError::Segment { .. }));
    let mut v = ours(false);
    v["segments"]["0"]["flags"] = json!(["in-reencryption"]);
    assert!(matches!(
        refuse(&v, &PLAIN),
        HeaderError::UnknownField { .. }
    ));
    let mut v = ours(false);
    v["segments"]["0"]["size"] = json!("4096");
    assert!(matches!(refuse(&v, &PLAIN), HeaderError::Segment { .. }));
}

#[test]
fn refuses_foreign_tokens_and_missing_state() {
    for ty in ["systemd-tpm2", "clevis", "luks2-keyring"] {
        let mut v = ours(false);
        v["tokens"]["1"] = json!({"type": ty, "keyslots": ["0"]});
        assert!(
            matches!(refuse(&v, &PLAIN), HeaderError::ForeignToken { found, .. } if found == ty)
        );
    }
    let mut v = ours(false);
    v["tokens"] = json!({});
    assert_eq!(refuse(&v, &PLAIN), HeaderError::MissingStateToken);
    assert_eq!(header_token_state(&v).unwrap(), None);
    let mut v = ours(false);
    v["tokens"]["1"] = v["tokens"]["0"].clone();
    assert_eq!(refuse(&v, &PLAIN), HeaderError::TokenCount { found: 2 });
    for (k, val) in [
        ("state", json!("done")),
        ("version", json!(1)),
        ("version", json!(3)),
        ("keyslots", json!(["0"])),
        ("mac", json!("short")),
    ] {
        let mut v = ours(false);
        v["tokens"]["0"][k] = val;
        assert!(
            matches!(refuse(&v, &PLAIN), HeaderError::StateToken { .. }),
            "{k}"
        );
    }
}

#[test]
fn token_states() {
    let mut v = ours(false);
    v["tokens"]["0"] = token(TokenState::Provisioning);
    assert_eq!(
        header_token_state(&v).unwrap(),
        Some(TokenState::Provisioning)
    );
    v["tokens"]["0"] = token(TokenState::Ready);
    assert_eq!(header_token_state(&v).unwrap(), Some(TokenState::Ready));
}

#[test]
fn refuses_requirements_and_unknown_flags() {
    let mut v = ours(false);
    v["config"]["requirements"] = json!({"mandatory": ["online-reencrypt-v2"]});
    assert!(matches!(
        refuse(&v, &PLAIN),
        HeaderError::Requirements { .. }
    ));
    v["config"]["requirements"] = json!({"mandatory": []});
    validate_header(&v, &PLAIN).unwrap();
    let mut v = ours(false);
    v["config"]["flags"] = json!(["no-read-workqueue", "no-journal"]);
    assert_eq!(
        refuse(&v, &PLAIN),
        HeaderError::UnknownFlag {
            found: "no-journal".into()
        }
    );
    // allow-discards forged into a header tells the host the free-block
    // map: accepted only when the config asks for discards.
    let mut v = ours(false);
    v["config"]["flags"] = json!(["no-read-workqueue", "allow-discards"]);
    assert_eq!(
        refuse(&v, &PLAIN),
        HeaderError::UnknownFlag {
            found: "allow-discards".into()
        }
    );
    let discard = Expected {
        discard: true,
        ..PLAIN
    };
    validate_header(&v, &discard).unwrap();
}

#[test]
fn refuses_unknown_fields_and_non_objects() {
    let mut v = ours(false);
    v["extra"] = json!(1);
    assert!(
        matches!(refuse(&v, &PLAIN), HeaderError::UnknownField { at } if at == "metadata.extra")
    );
    let mut v = ours(false);
    v["keyslots"]["0"]["kdf"]["memory"] = json!(1048576);
    assert!(matches!(
        refuse(&v, &PLAIN),
        HeaderError::UnknownField { .. }
    ));
    refuse(&json!([]), &PLAIN);
    refuse(&json!({}), &PLAIN);
}
