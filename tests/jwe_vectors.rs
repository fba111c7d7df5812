//! The broker's JWE replies, checked against an independent implementation
//! (josekit, which does its cryptography with OpenSSL) and against the
//! RFC 7518 Appendix C key-agreement example.
//!
//! RSA keys here are 2048-bit (`EphemeralKey::generate_rsa(2048)`), made
//! once per test binary: RSA key generation in a debug build takes seconds.
//! Production uses `generate(KeyAlg::RsaOaep256)` (3072 bits), exercised by
//! the ignored test `rsa_3072_production_key_round_trips`.

#![allow(clippy::unwrap_used)]

use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use josekit::jwe::{self, JweHeaderSet};
use josekit::jwk::{Jwk, KeyPair as _};
use kbs_types::TeePubKey;
use serde_json::Value;

use cvm_init::broker::jwe::{
    encrypt, jwa_concat_kdf, EphemeralKey, JweError, KeyAlg, ALG_ECDH_ES_A256KW, ALG_RSA_OAEP_256,
    JWE_MEMBERS,
};

const PLAINTEXT: &[u8] = b"luks passphrase \x00\xff with binary bytes";

fn ec_key() -> EphemeralKey {
    EphemeralKey::generate(KeyAlg::EcdhEsA256Kw).unwrap()
}

fn rsa_key() -> &'static EphemeralKey {
    static KEY: OnceLock<EphemeralKey> = OnceLock::new();
    KEY.get_or_init(|| EphemeralKey::generate_rsa(2048).unwrap())
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn unb64(text: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(text).unwrap()
}

/// Our public key as a josekit JWK (via its JSON form).
fn josekit_jwk(key: &TeePubKey) -> Jwk {
    Jwk::from_bytes(serde_json::to_vec(key).unwrap()).unwrap()
}

/// josekit encrypts `plaintext` to `recipient` as a flattened JSON JWE with
/// the given `alg` and `enc` in the protected header.
fn josekit_encrypt(recipient: &TeePubKey, alg: &str, enc: &str, plaintext: &[u8]) -> String {
    let mut header = JweHeaderSet::new();
    header.set_content_encryption(enc, true);
    let jwk = josekit_jwk(recipient);
    match alg {
        "ECDH-ES+A256KW" => {
            let encrypter = jwe::ECDH_ES_A256KW.encrypter_from_jwk(&jwk).unwrap();
            jwe::serialize_flattened_json(plaintext, Some(&header), None, None, &encrypter)
        }
        "RSA-OAEP-256" => {
            let encrypter = jwe::RSA_OAEP_256.encrypter_from_jwk(&jwk).unwrap();
            jwe::serialize_flattened_json(plaintext, Some(&header), None, None, &encrypter)
        }
        other => panic!("no josekit encrypter wired up for {other}"),
    }
    .unwrap()
}

fn protected_header(jwe: &Value) -> Value {
    serde_json::from_slice(&unb64(jwe["protected"].as_str().unwrap())).unwrap()
}

fn to_bytes(jwe: &Value) -> Vec<u8> {
    serde_json::to_vec(jwe).unwrap()
}

/// A fresh ECDH JWE to `key`, ours, as a JSON value.
fn our_jwe(key: &EphemeralKey) -> Value {
    encrypt(&key.public_jwk(), PLAINTEXT).unwrap()
}

/// Flips one bit of the base64url-decoded member `name`.
fn flip_bit(jwe: &mut Value, name: &str, index: usize) {
    let mut bytes = unb64(jwe[name].as_str().unwrap());
    bytes[index] ^= 0x01;
    jwe[name] = b64(&bytes).into();
}

/// Replaces the protected header with `header`, re-encoded.
fn set_protected(jwe: &mut Value, header: &Value) {
    jwe["protected"] = b64(&serde_json::to_vec(header).unwrap()).into();
}

// --- (a) josekit -> ours ----------------------------------------------------

#[test]
fn josekit_ecdh_es_a256kw_decrypts_with_our_key() {
    let key = ec_key();
    let jwe = josekit_encrypt(&key.public_jwk(), ALG_ECDH_ES_A256KW, "A256GCM", PLAINTEXT);
    let parsed: Value = serde_json::from_str(&jwe).unwrap();
    assert_eq!(protected_header(&parsed)["alg"], ALG_ECDH_ES_A256KW);
    assert_eq!(key.decrypt(jwe.as_bytes()).unwrap().expose(), PLAINTEXT);
}

#[test]
fn josekit_rsa_oaep_256_decrypts_with_our_key() {
    let key = rsa_key();
    let jwe = josekit_encrypt(&key.public_jwk(), ALG_RSA_OAEP_256, "A256GCM", PLAINTEXT);
    let parsed: Value = serde_json::from_str(&jwe).unwrap();
    assert_eq!(protected_header(&parsed)["alg"], ALG_RSA_OAEP_256);
    assert_eq!(key.decrypt(jwe.as_bytes()).unwrap().expose(), PLAINTEXT);
}

#[test]
fn josekit_empty_and_large_plaintexts_decrypt() {
    let key = ec_key();
    let large: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    for plaintext in [&b""[..], &large[..]] {
        let jwe = josekit_encrypt(&key.public_jwk(), ALG_ECDH_ES_A256KW, "A256GCM", plaintext);
        assert_eq!(key.decrypt(jwe.as_bytes()).unwrap().expose(), plaintext);
    }
}

// --- (b) ours -> josekit ----------------------------------------------------

#[test]
fn our_ecdh_jwe_decrypts_with_josekit() {
    let pair = jwe::ECDH_ES_A256KW
        .generate_ec_key_pair(josekit::jwk::alg::ec::EcCurve::P256)
        .unwrap();
    let public = pair.to_jwk_public_key();
    let recipient = TeePubKey::EC {
        crv: "P-256".into(),
        alg: ALG_ECDH_ES_A256KW.into(),
        x: public.parameter("x").unwrap().as_str().unwrap().into(),
        y: public.parameter("y").unwrap().as_str().unwrap().into(),
    };
    let ours = encrypt(&recipient, PLAINTEXT).unwrap();
    let decrypter = jwe::ECDH_ES_A256KW
        .decrypter_from_jwk(&pair.to_jwk_private_key())
        .unwrap();
    let (plaintext, header) = jwe::deserialize_json(&ours.to_string(), &decrypter).unwrap();
    assert_eq!(plaintext, PLAINTEXT);
    assert_eq!(header.content_encryption(), Some("A256GCM"));
}

#[test]
fn our_rsa_jwe_decrypts_with_josekit() {
    let pair = jwe::RSA_OAEP_256.generate_key_pair(2048).unwrap();
    let public = pair.to_jwk_public_key();
    let recipient = TeePubKey::RSA {
        alg: ALG_RSA_OAEP_256.into(),
        k_mod: public.parameter("n").unwrap().as_str().unwrap().into(),
        k_exp: public.parameter("e").unwrap().as_str().unwrap().into(),
    };
    let ours = encrypt(&recipient, PLAINTEXT).unwrap();
    let decrypter = jwe::RSA_OAEP_256
        .decrypter_from_jwk(&pair.to_jwk_private_key())
        .unwrap();
    let (plaintext, _) = jwe::deserialize_json(&ours.to_string(), &decrypter).unwrap();
    assert_eq!(plaintext, PLAINTEXT);
}

/// The shape KBS-PROTOCOL.md describes: exactly five members; the header
/// `{"alg":..,"enc":"A256GCM","epk":{"crv":"P-256","kty":"EC","x":..,"y":..}}`
/// byte for byte; encrypted_key 40 bytes, iv 12, tag 16.
#[test]
fn our_ecdh_jwe_has_the_wire_shape() {
    let key = ec_key();
    let jwe = our_jwe(&key);
    let obj = jwe.as_object().unwrap();
    let mut names: Vec<&str> = obj.keys().map(String::as_str).collect();
    names.sort_unstable();
    let mut expected = JWE_MEMBERS.to_vec();
    expected.sort_unstable();
    assert_eq!(names, expected);

    let header = protected_header(&jwe);
    let epk = &header["epk"];
    let expected_header = format!(
        r#"{{"alg":"ECDH-ES+A256KW","enc":"A256GCM","epk":{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}}}"#,
        epk["x"].as_str().unwrap(),
        epk["y"].as_str().unwrap()
    );
    let raw_header = String::from_utf8(unb64(jwe["protected"].as_str().unwrap())).unwrap();
    assert_eq!(raw_header, expected_header);
    assert_eq!(unb64(epk["x"].as_str().unwrap()).len(), 32);
    assert_eq!(unb64(epk["y"].as_str().unwrap()).len(), 32);

    for (name, len) in [("encrypted_key", 40), ("iv", 12), ("tag", 16)] {
        assert_eq!(unb64(jwe[name].as_str().unwrap()).len(), len, "{name}");
    }
    assert_eq!(
        unb64(jwe["ciphertext"].as_str().unwrap()).len(),
        PLAINTEXT.len()
    );
    for name in JWE_MEMBERS {
        let text = jwe[name].as_str().unwrap();
        assert!(
            !text.contains(['=', '+', '/']),
            "{name} is not base64url without padding: {text}"
        );
    }
}

#[test]
fn our_rsa_jwe_header_is_alg_and_enc_only() {
    let jwe = encrypt(&rsa_key().public_jwk(), PLAINTEXT).unwrap();
    let raw_header = String::from_utf8(unb64(jwe["protected"].as_str().unwrap())).unwrap();
    assert_eq!(raw_header, r#"{"alg":"RSA-OAEP-256","enc":"A256GCM"}"#);
    assert_eq!(unb64(jwe["encrypted_key"].as_str().unwrap()).len(), 256);
}

// --- (c) ours -> ours -------------------------------------------------------

#[test]
fn round_trip_ecdh() {
    let key = ec_key();
    let jwe = our_jwe(&key);
    assert_eq!(key.decrypt(&to_bytes(&jwe)).unwrap().expose(), PLAINTEXT);
}

#[test]
fn round_trip_rsa() {
    let key = rsa_key();
    let jwe = encrypt(&key.public_jwk(), PLAINTEXT).unwrap();
    assert_eq!(key.decrypt(&to_bytes(&jwe)).unwrap().expose(), PLAINTEXT);
}

#[test]
#[ignore = "RSA-3072 key generation takes tens of seconds in a debug build"]
fn rsa_3072_production_key_round_trips() {
    let key = EphemeralKey::generate(KeyAlg::RsaOaep256).unwrap();
    let TeePubKey::RSA { k_mod, k_exp, .. } = key.public_jwk() else {
        panic!("expected an RSA JWK")
    };
    assert_eq!(unb64(&k_mod).len(), 384);
    assert_eq!(k_exp, "AQAB");
    let jwe = josekit_encrypt(&key.public_jwk(), ALG_RSA_OAEP_256, "A256GCM", PLAINTEXT);
    assert_eq!(key.decrypt(jwe.as_bytes()).unwrap().expose(), PLAINTEXT);
}

#[test]
fn public_jwks_hold_exactly_the_hashed_members() {
    let ec = serde_json::to_value(ec_key().public_jwk()).unwrap();
    let mut names: Vec<&str> = ec.as_object().unwrap().keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["alg", "crv", "kty", "x", "y"]);
    assert_eq!(ec["alg"], ALG_ECDH_ES_A256KW);

    let rsa = serde_json::to_value(rsa_key().public_jwk()).unwrap();
    let mut names: Vec<&str> = rsa
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["alg", "e", "kty", "n"]);
    assert_eq!(rsa["alg"], ALG_RSA_OAEP_256);
    assert_eq!(rsa["e"], "AQAB");
}

// --- (d) negatives ----------------------------------------------------------

#[test]
fn ecdh_jwe_for_another_key_is_wrong_key() {
    let ours = ec_key();
    let other = ec_key();
    for jwe in [
        to_bytes(&our_jwe(&other)),
        josekit_encrypt(
            &other.public_jwk(),
            ALG_ECDH_ES_A256KW,
            "A256GCM",
            PLAINTEXT,
        )
        .into_bytes(),
    ] {
        let err = ours.decrypt(&jwe).unwrap_err();
        assert!(matches!(err, JweError::WrongKey), "{err}");
        assert_eq!(
            err.to_string(),
            "the reply was not encrypted to this boot's key, or was corrupted"
        );
    }
}

#[test]
fn rsa_jwe_for_another_key_is_wrong_key() {
    let other = jwe::RSA_OAEP_256.generate_key_pair(2048).unwrap();
    let jwk = other.to_jwk_public_key();
    let recipient = TeePubKey::RSA {
        alg: ALG_RSA_OAEP_256.into(),
        k_mod: jwk.parameter("n").unwrap().as_str().unwrap().into(),
        k_exp: jwk.parameter("e").unwrap().as_str().unwrap().into(),
    };
    let jwe = encrypt(&recipient, PLAINTEXT).unwrap();
    let err = rsa_key().decrypt(&to_bytes(&jwe)).unwrap_err();
    assert!(matches!(err, JweError::WrongKey), "{err}");
}

#[test]
fn flipped_bits_are_wrong_key() {
    let key = ec_key();
    let original = our_jwe(&key);
    for (name, index) in [
        ("ciphertext", 0),
        ("ciphertext", PLAINTEXT.len() - 1),
        ("tag", 0),
        ("tag", 15),
        ("iv", 3),
        ("encrypted_key", 0),
        ("encrypted_key", 39),
    ] {
        let mut jwe = original.clone();
        flip_bit(&mut jwe, name, index);
        let err = key.decrypt(&to_bytes(&jwe)).unwrap_err();
        assert!(matches!(err, JweError::WrongKey), "{name}[{index}]: {err}");
    }
}

#[test]
fn rsa_flipped_encrypted_key_is_wrong_key() {
    let key = rsa_key();
    let mut jwe = encrypt(&key.public_jwk(), PLAINTEXT).unwrap();
    flip_bit(&mut jwe, "encrypted_key", 100);
    let err = key.decrypt(&to_bytes(&jwe)).unwrap_err();
    assert!(matches!(err, JweError::WrongKey), "{err}");
}

/// The AAD is `protected` as received: the same header in other bytes (a
/// trailing space, or re-serialised with a harmless extra member) fails the
/// GCM tag. Decrypting via a re-serialised header would accept these.
#[test]
fn protected_header_bytes_are_authenticated_as_received() {
    let key = ec_key();
    let original = our_jwe(&key);

    let mut spaced = original.clone();
    let mut raw = unb64(original["protected"].as_str().unwrap());
    raw.push(b' ');
    spaced["protected"] = b64(&raw).into();

    let mut extra = original.clone();
    let mut header = protected_header(&original);
    header["kid"] = "k1".into();
    set_protected(&mut extra, &header);

    for jwe in [spaced, extra] {
        let err = key.decrypt(&to_bytes(&jwe)).unwrap_err();
        assert!(matches!(err, JweError::WrongKey), "{err}");
    }
    // The untouched original still decrypts.
    assert!(key.decrypt(&to_bytes(&original)).is_ok());
}

#[test]
fn alg_dir_is_rejected_by_name() {
    let key = ec_key();
    // A real `dir` JWE from josekit (no encrypted_key; the CEK is shared).
    let mut header = JweHeaderSet::new();
    header.set_content_encryption("A256GCM", true);
    let encrypter = jwe::Dir.encrypter_from_bytes([7u8; 32]).unwrap();
    let jwe =
        jwe::serialize_flattened_json(PLAINTEXT, Some(&header), None, None, &encrypter).unwrap();
    let err = key.decrypt(jwe.as_bytes()).unwrap_err();
    assert!(
        matches!(&err, JweError::UnsupportedAlg(a) if a == "dir"),
        "{err}"
    );
    assert!(err.to_string().contains("\"dir\""), "{err}");
}

#[test]
fn alg_rsa1_5_is_rejected_by_name() {
    // The header of a protocol 0.1.x reply, on an otherwise valid JWE.
    for key in [&ec_key(), rsa_key()] {
        let mut jwe = encrypt(&key.public_jwk(), PLAINTEXT).unwrap();
        let mut header = protected_header(&jwe);
        header["alg"] = "RSA1_5".into();
        set_protected(&mut jwe, &header);
        let err = key.decrypt(&to_bytes(&jwe)).unwrap_err();
        assert!(
            matches!(&err, JweError::UnsupportedAlg(a) if a == "RSA1_5"),
            "{err}"
        );
        assert!(err.to_string().contains("RSA1_5"), "{err}");
    }
}

#[test]
fn enc_a128gcm_is_rejected_by_name() {
    let key = ec_key();
    let jwe = josekit_encrypt(&key.public_jwk(), ALG_ECDH_ES_A256KW, "A128GCM", PLAINTEXT);
    let err = key.decrypt(jwe.as_bytes()).unwrap_err();
    assert!(
        matches!(&err, JweError::UnsupportedEnc(e) if e == "A128GCM"),
        "{err}"
    );
    assert!(err.to_string().contains("A128GCM"), "{err}");
}

#[test]
fn alg_for_the_other_key_type_is_a_mismatch() {
    let jwe = josekit_encrypt(
        &rsa_key().public_jwk(),
        ALG_RSA_OAEP_256,
        "A256GCM",
        PLAINTEXT,
    );
    let err = ec_key().decrypt(jwe.as_bytes()).unwrap_err();
    assert!(
        matches!(&err, JweError::AlgMismatch { got, expected }
            if got == ALG_RSA_OAEP_256 && *expected == ALG_ECDH_ES_A256KW),
        "{err}"
    );
}

#[test]
fn garbage_and_html_bodies_are_not_json() {
    let key = ec_key();
    for body in [
        &b"<html><body><h1>502 Bad Gateway</h1></body></html>"[..],
        b"",
        b"\xff\xfe\x00garbage",
        b"eyJhbGciOiJFQ0RILUVTK0EyNTZLVyJ9.a.b.c.d", // compact, not JSON
    ] {
        let err = key.decrypt(body).unwrap_err();
        assert!(matches!(err, JweError::NotJson { .. }), "{err}");
    }
    for body in [&b"[1,2]"[..], b"\"a string\"", b"null"] {
        let err = key.decrypt(body).unwrap_err();
        assert!(matches!(err, JweError::NotAnObject { .. }), "{err}");
    }
}

#[test]
fn missing_members_are_named() {
    let key = ec_key();
    let original = our_jwe(&key);
    for name in JWE_MEMBERS {
        let mut jwe = original.clone();
        jwe.as_object_mut().unwrap().remove(name);
        let err = key.decrypt(&to_bytes(&jwe)).unwrap_err();
        assert!(
            matches!(err, JweError::MissingField(n) if n == name),
            "{name}: {err}"
        );
        assert!(err.to_string().contains(name), "{err}");
    }
}

#[test]
fn unexpected_members_are_named() {
    let key = ec_key();
    for extra in ["aad", "header", "recipients", "unprotected"] {
        let mut jwe = our_jwe(&key);
        jwe[extra] = "eyJ9".into();
        let err = key.decrypt(&to_bytes(&jwe)).unwrap_err();
        assert!(
            matches!(&err, JweError::UnexpectedField(n) if n == extra),
            "{extra}: {err}"
        );
    }
}

#[test]
fn non_string_member_is_named() {
    let key = ec_key();
    let mut jwe = our_jwe(&key);
    jwe["iv"] = 12.into();
    let err = key.decrypt(&to_bytes(&jwe)).unwrap_err();
    assert!(matches!(err, JweError::NotAString("iv")), "{err}");
}

#[test]
fn bad_base64_is_named_per_member() {
    let key = ec_key();
    let original = our_jwe(&key);
    for name in JWE_MEMBERS {
        for spoil in ["!!", "=", "+/"] {
            let mut jwe = original.clone();
            let text = format!("{}{spoil}", jwe[name].as_str().unwrap());
            jwe[name] = text.into();
            let err = key.decrypt(&to_bytes(&jwe)).unwrap_err();
            assert!(
                matches!(err, JweError::Base64 { field, .. } if field == name),
                "{name} + {spoil:?}: {err}"
            );
        }
    }
    // Standard-alphabet padding where base64url without padding is required.
    // (The 12-byte iv needs no padding, so use the 16-byte tag.)
    let mut jwe = original.clone();
    let tag = unb64(jwe["tag"].as_str().unwrap());
    jwe["tag"] = base64::engine::general_purpose::STANDARD
        .encode(&tag)
        .into();
    let err = key.decrypt(&to_bytes(&jwe)).unwrap_err();
    assert!(
        matches!(err, JweError::Base64 { field: "tag", .. }),
        "{err}"
    );
}

#[test]
fn wrong_sizes_are_reported() {
    let key = ec_key();
    let original = our_jwe(&key);
    for (name, len, expected) in [
        ("iv", 16, 12),
        ("iv", 0, 12),
        ("tag", 12, 16),
        ("encrypted_key", 32, 40),
    ] {
        let mut jwe = original.clone();
        jwe[name] = b64(&vec![0u8; len]).into();
        let err = key.decrypt(&to_bytes(&jwe)).unwrap_err();
        assert!(
            matches!(err, JweError::Size { field, expected: e, got }
                if field == name && e == expected && got == len),
            "{name}: {err}"
        );
    }
    let mut jwe = encrypt(&rsa_key().public_jwk(), PLAINTEXT).unwrap();
    jwe["encrypted_key"] = b64(&[1u8; 40]).into();
    let err = rsa_key().decrypt(&to_bytes(&jwe)).unwrap_err();
    assert!(
        matches!(
            err,
            JweError::Size {
                field: "encrypted_key",
                expected: 256,
                got: 40
            }
        ),
        "{err}"
    );
}

#[test]
fn epk_off_the_curve_or_malformed_is_rejected() {
    let key = ec_key();
    let original = our_jwe(&key);
    let header = protected_header(&original);

    // Flipping y's low bit leaves the curve: the only other point with this x
    // has y' = p - y, which differs from y only in the low bit for a
    // negligible handful of points.
    let mut off = header.clone();
    let mut y = unb64(header["epk"]["y"].as_str().unwrap());
    y[31] ^= 0x01;
    off["epk"]["y"] = b64(&y).into();

    let mut p384 = header.clone();
    p384["epk"]["crv"] = "P-384".into();

    let mut short = header.clone();
    short["epk"]["x"] = b64(&[1u8; 31]).into();

    for bad in [off, p384, short] {
        let mut jwe = original.clone();
        set_protected(&mut jwe, &bad);
        let err = key.decrypt(&to_bytes(&jwe)).unwrap_err();
        assert!(matches!(err, JweError::BadEpk(_)), "{err}");
    }

    let mut no_epk = header.clone();
    no_epk.as_object_mut().unwrap().remove("epk");
    let mut jwe = original.clone();
    set_protected(&mut jwe, &no_epk);
    let err = key.decrypt(&to_bytes(&jwe)).unwrap_err();
    assert!(matches!(err, JweError::HeaderMissing("epk")), "{err}");
}

#[test]
fn header_problems_are_reported() {
    let key = ec_key();
    let original = our_jwe(&key);
    let header = protected_header(&original);

    let mut jwe = original.clone();
    jwe["protected"] = b64(b"not json").into();
    let err = key.decrypt(&to_bytes(&jwe)).unwrap_err();
    assert!(matches!(err, JweError::BadHeader(_)), "{err}");

    for (member, variant) in [("alg", "alg"), ("enc", "enc")] {
        let mut h = header.clone();
        h.as_object_mut().unwrap().remove(member);
        let mut jwe = original.clone();
        set_protected(&mut jwe, &h);
        let err = key.decrypt(&to_bytes(&jwe)).unwrap_err();
        assert!(
            matches!(err, JweError::HeaderMissing(n) if n == variant),
            "{err}"
        );
    }

    for (member, value) in [("crit", serde_json::json!(["exp"])), ("zip", "DEF".into())] {
        let mut h = header.clone();
        h[member] = value;
        let mut jwe = original.clone();
        set_protected(&mut jwe, &h);
        let err = key.decrypt(&to_bytes(&jwe)).unwrap_err();
        assert!(
            matches!(err, JweError::UnsupportedHeader(n) if n == member),
            "{err}"
        );
    }
}

#[test]
fn encrypt_refuses_unusable_recipients() {
    let TeePubKey::EC { x, y, .. } = ec_key().public_jwk() else {
        panic!("expected an EC JWK")
    };
    let cases = [
        TeePubKey::EC {
            crv: "P-256".into(),
            alg: "ECDH-ES".into(),
            x: x.clone(),
            y: y.clone(),
        },
        TeePubKey::EC {
            crv: "P-384".into(),
            alg: ALG_ECDH_ES_A256KW.into(),
            x: x.clone(),
            y: y.clone(),
        },
        TeePubKey::EC {
            crv: "P-256".into(),
            alg: ALG_ECDH_ES_A256KW.into(),
            x: x.clone(),
            y: x.clone(),
        },
        TeePubKey::RSA {
            alg: ALG_RSA_OAEP_256.into(),
            k_mod: b64(&[0xc5; 128]),
            k_exp: "AQAB".into(),
        },
        TeePubKey::AKP {
            alg: "ML-KEM-768".into(),
            public_key: "AAAA".into(),
        },
    ];
    for recipient in cases {
        let err = encrypt(&recipient, PLAINTEXT).unwrap_err();
        assert!(matches!(err, JweError::BadRecipient(_)), "{err}");
    }
}

// --- (e) RFC 7518 Appendix C ------------------------------------------------

/// RFC 7518 Appendix C, "Example ECDH-ES Key Agreement Computation": Alice's
/// ephemeral key, Bob's static key, `enc` A128GCM, apu "Alice", apv "Bob".
/// The RFC gives Z and the 128-bit derived key; Z is computed here with
/// `p256` (both ways round) and the key with the very function `decrypt`
/// uses for ECDH-ES+A256KW, with AlgorithmID "A128GCM" as in direct mode.
#[test]
fn rfc7518_appendix_c_ecdh_es_key_agreement() {
    let alice = Jwk::from_bytes(
        r#"{"kty":"EC","crv":"P-256",
            "x":"gI0GAILBdu7T53akrFmMyGcsF3n5dO7MmwNBHKW5SV0",
            "y":"SLW_xSffzlPWrHEVI30DHM_4egVwt3NQqeUD7nMFpps",
            "d":"0_NxaRPUMQoAJt50Gz8YiTr8gRTwyEaCumd-MToTmIo"}"#,
    )
    .unwrap();
    let bob = Jwk::from_bytes(
        r#"{"kty":"EC","crv":"P-256",
            "x":"weNJy2HscCSM6AEDTDg04biOvhFhyyWvOHQfeF_PxMQ",
            "y":"e8lnCO-AlStT-NJVX-crhB7QRYhiix03illJOVAOyck",
            "d":"VEmDZpDXXK8p8N0Cndsxs924q6nS1RXFASRl6BfUqdw"}"#,
    )
    .unwrap();
    let secret = |jwk: &Jwk| {
        p256::SecretKey::from_slice(&unb64(jwk.parameter("d").unwrap().as_str().unwrap())).unwrap()
    };
    let public = |jwk: &Jwk| {
        let sec1 = [
            &[4u8][..],
            &unb64(jwk.parameter("x").unwrap().as_str().unwrap()),
            &unb64(jwk.parameter("y").unwrap().as_str().unwrap()),
        ]
        .concat();
        p256::PublicKey::from_sec1_bytes(&sec1).unwrap()
    };

    const Z: [u8; 32] = [
        158, 86, 217, 29, 129, 113, 53, 211, 114, 131, 66, 131, 191, 132, 38, 156, 251, 49, 110,
        163, 218, 128, 106, 72, 246, 218, 167, 121, 140, 254, 144, 196,
    ];
    const DERIVED_KEY: [u8; 16] = [
        86, 170, 141, 234, 248, 35, 109, 32, 92, 34, 40, 205, 113, 167, 16, 26,
    ];

    let z_alice =
        p256::ecdh::diffie_hellman(secret(&alice).to_nonzero_scalar(), public(&bob).as_affine());
    let z_bob =
        p256::ecdh::diffie_hellman(secret(&bob).to_nonzero_scalar(), public(&alice).as_affine());
    assert_eq!(z_alice.raw_secret_bytes()[..], Z[..]);
    assert_eq!(z_bob.raw_secret_bytes()[..], Z[..]);

    let mut key = [0u8; 16];
    jwa_concat_kdf(&Z, "A128GCM", b"Alice", b"Bob", &mut key).unwrap();
    assert_eq!(key, DERIVED_KEY);
    assert_eq!(b64(&key), "VqqN6vgjbSBcIijNcacQGg");
}
