//! Binding the evidence to this session: REPORT_DATA commits to the broker's
//! nonce and to the ephemeral public key the secrets are wrapped to.
//!
//! `digest = SHA-384(RFC 8785 canonical JSON of
//!  {"additional-evidence": <str>, "nonce": <nonce>, "tee-pubkey": <JWK>})`.
//! See KBS-PROTOCOL.md, "Binding the evidence to this session".
//!
//! The broker does not hash what we sent: it parses the attestation request,
//! rebuilds this object from the key it parsed and hashes that. So the JWK
//! must hold exactly the members `kbs_types::TeePubKey` serialises (`kty`,
//! `crv`, `alg`, `x`, `y` for EC; `kty`, `alg`, `n`, `e` for RSA), and we hash
//! the serde form of that same type rather than a JSON object of our own.

use kbs_types::TeePubKey;
use serde::Serialize;
use sha2::{Digest, Sha384};

/// Length of the runtime-data digest (SHA-384).
pub const DIGEST_LEN: usize = 48;

#[derive(Debug, thiserror::Error)]
pub enum BindingError {
    #[error("cannot serialise the runtime data to canonical JSON (RFC 8785): {0}")]
    Canonical(String),
}

/// The object the broker rebuilds and hashes. Member order here does not
/// matter: RFC 8785 sorts members by their UTF-16 code units.
#[derive(Serialize)]
struct RuntimeData<'a> {
    #[serde(rename = "additional-evidence")]
    additional_evidence: &'a str,
    nonce: &'a str,
    #[serde(rename = "tee-pubkey")]
    tee_pubkey: &'a TeePubKey,
}

/// The RFC 8785 (JSON Canonicalization Scheme) form of `value`: members
/// sorted by UTF-16 code units, no whitespace, ECMAScript number formatting,
/// minimal string escaping. NaN and infinities are refused.
///
/// This is the one canonicaliser the binding uses; it is public so the
/// RFC's own vectors can be run through exactly this function.
pub fn canonical_json<T: Serialize>(value: &T) -> Result<Vec<u8>, BindingError> {
    serde_json_canonicalizer::to_vec(value).map_err(|e| BindingError::Canonical(e.to_string()))
}

/// The canonical runtime-data JSON that [`runtime_data_digest`] hashes, for
/// logging on the agent's side when the broker refuses an attestation.
pub fn runtime_data_json(
    nonce: &str,
    tee_pubkey: &TeePubKey,
    additional_evidence: &str,
) -> Result<String, BindingError> {
    let bytes = canonical_json(&RuntimeData {
        additional_evidence,
        nonce,
        tee_pubkey,
    })?;
    String::from_utf8(bytes).map_err(|e| BindingError::Canonical(e.to_string()))
}

/// SHA-384 over the RFC 8785 form of the runtime data the broker rebuilds.
///
/// `additional_evidence` must be the exact string sent as
/// `tee-evidence.additional_evidence` (usually `""`).
pub fn runtime_data_digest(
    nonce: &str,
    tee_pubkey: &TeePubKey,
    additional_evidence: &str,
) -> Result<[u8; DIGEST_LEN], BindingError> {
    let json = runtime_data_json(nonce, tee_pubkey, additional_evidence)?;
    Ok(Sha384::digest(json.as_bytes()).into())
}

/// What the broker rebuilds for each additional (device) evidence: the
/// runtime data without `additional-evidence`, which cannot contain itself.
#[derive(Serialize)]
struct DeviceRuntimeData<'a> {
    nonce: &'a str,
    #[serde(rename = "tee-pubkey")]
    tee_pubkey: &'a TeePubKey,
}

/// SHA-384 over the RFC 8785 form of `{"nonce", "tee-pubkey"}`: the
/// runtime data a device's evidence (a GPU's, in `additional_evidence`)
/// binds. Trustee rebuilds it for every additional entry
/// (kbs/src/attestation/backend.rs) and the NVIDIA verifier compares its
/// first [`GPU_NONCE_LEN`] bytes with the SPDM request nonce
/// (docs/gpu-evidence.md, section 1).
pub fn device_data_digest(
    nonce: &str,
    tee_pubkey: &TeePubKey,
) -> Result<[u8; DIGEST_LEN], BindingError> {
    let json = canonical_json(&DeviceRuntimeData { nonce, tee_pubkey })?;
    Ok(Sha384::digest(&json).into())
}

/// Length of an SPDM (GPU) nonce.
pub const GPU_NONCE_LEN: usize = 32;

/// The nonce a GPU report must carry: the first 32 bytes of
/// [`device_data_digest`].
pub fn gpu_nonce(nonce: &str, tee_pubkey: &TeePubKey) -> Result<[u8; GPU_NONCE_LEN], BindingError> {
    let d = device_data_digest(nonce, tee_pubkey)?;
    let mut out = [0u8; GPU_NONCE_LEN];
    out.copy_from_slice(&d[..GPU_NONCE_LEN]);
    Ok(out)
}

/// The 64-byte REPORT_DATA for SNP and TDX: the digest, then 16 zero bytes.
pub fn report_data(digest: &[u8; DIGEST_LEN]) -> [u8; 64] {
    let mut out = [0u8; 64];
    out[..DIGEST_LEN].copy_from_slice(digest);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Bob's public key from RFC 7518 Appendix C: a real P-256 point, so the
    /// vectors below describe a key the broker would accept.
    fn ec_key() -> TeePubKey {
        TeePubKey::EC {
            crv: "P-256".into(),
            alg: "ECDH-ES+A256KW".into(),
            x: "weNJy2HscCSM6AEDTDg04biOvhFhyyWvOHQfeF_PxMQ".into(),
            y: "e8lnCO-AlStT-NJVX-crhB7QRYhiix03illJOVAOyck".into(),
        }
    }

    /// 32 bytes 0x00..0x1f, standard base64 with padding (44 characters), as
    /// the broker's nonce is.
    const NONCE: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    fn canon_str(v: &serde_json::Value) -> String {
        String::from_utf8(canonical_json(v).unwrap()).unwrap()
    }

    fn member_names(v: &serde_json::Value) -> Vec<&str> {
        let mut names: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    // --- The JWK shape kbs-types produces -------------------------------

    #[test]
    fn ec_jwk_serialises_exactly_kty_crv_alg_x_y() {
        let v = serde_json::to_value(ec_key()).unwrap();
        assert_eq!(member_names(&v), ["alg", "crv", "kty", "x", "y"]);
        assert_eq!(v["kty"], "EC");
    }

    #[test]
    fn rsa_jwk_serialises_exactly_kty_alg_n_e() {
        let key = TeePubKey::RSA {
            alg: "RSA-OAEP-256".into(),
            k_mod: "xQ".into(),
            k_exp: "AQAB".into(),
        };
        let v = serde_json::to_value(key).unwrap();
        assert_eq!(member_names(&v), ["alg", "e", "kty", "n"]);
        assert_eq!(v["kty"], "RSA");
    }

    #[test]
    fn runtime_data_has_the_exact_canonical_form() {
        let json = runtime_data_json(NONCE, &ec_key(), "").unwrap();
        assert_eq!(
            json,
            concat!(
                r#"{"additional-evidence":"","#,
                r#""nonce":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=","#,
                r#""tee-pubkey":{"alg":"ECDH-ES+A256KW","crv":"P-256","kty":"EC","#,
                r#""x":"weNJy2HscCSM6AEDTDg04biOvhFhyyWvOHQfeF_PxMQ","#,
                r#""y":"e8lnCO-AlStT-NJVX-crhB7QRYhiix03illJOVAOyck"}}"#
            )
        );
    }

    // --- Digests computed independently -----------------------------------
    //
    // Each expected value was computed once with Python 3 (not with this
    // crate), for these ASCII-only objects where sorted-key compact JSON and
    // RFC 8785 coincide:
    //
    //   python3 -c 'import hashlib,json; print(hashlib.sha384(json.dumps(OBJ,
    //     sort_keys=True, separators=(",",":"), ensure_ascii=False)
    //     .encode()).hexdigest())'
    //
    // with OBJ = {"additional-evidence": AE, "nonce": NONCE, "tee-pubkey": JWK}.

    /// AE = "", JWK = `ec_key()`.
    const EC_DIGEST: &str = "d59c5ca13c55df86b2fc4ce983ae8f26d00a1082f3acf26d\
                             7b077c4a7a264e44b4b1f8cce97801cfba202e3197d053ef";
    /// AE = '{"tpm":"quote"}', JWK = `ec_key()`.
    const EC_AE_DIGEST: &str = "dcd2dee4b4e529f88024397054ae18811a2294b91afc93eb\
                                3baeb5732a46a5ee83fe0499a153c4f5176d4b1fb81b2340";
    /// AE = "", JWK = `ec_key()` plus `"use":"enc"`.
    const EC_USE_DIGEST: &str = "00a18b74914acd3ea1c0ef8347666cfacc8ce487b230ae61\
                                 396faf28445516bbd2e4295f8e3ac4a79a31265f0be99444";
    /// AE = "", JWK = {"kty":"RSA","alg":"RSA-OAEP-256","n": base64url of
    /// bytes [0xc5, 1, 2, ..., 255], "e":"AQAB"}.
    const RSA_DIGEST: &str = "c7becda71b6036c0dbc4d90afcbd191b8275e69b5b500cd8\
                              1faddba51c7a4e2c184c34fb6eda8a8bf69989c6ef7cbf20";

    fn rsa_key() -> TeePubKey {
        let mut n = vec![0xc5u8];
        n.extend(1..=255u8);
        use base64::Engine as _;
        TeePubKey::RSA {
            alg: "RSA-OAEP-256".into(),
            k_mod: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(n),
            k_exp: "AQAB".into(),
        }
    }

    #[test]
    fn ec_digest_matches_independent_reference() {
        let d = runtime_data_digest(NONCE, &ec_key(), "").unwrap();
        assert_eq!(hex::encode(d), EC_DIGEST);
    }

    #[test]
    fn additional_evidence_is_bound() {
        let d = runtime_data_digest(NONCE, &ec_key(), r#"{"tpm":"quote"}"#).unwrap();
        assert_eq!(hex::encode(d), EC_AE_DIGEST);
        assert_ne!(hex::encode(d), EC_DIGEST);
    }

    #[test]
    fn rsa_digest_matches_independent_reference() {
        let d = runtime_data_digest(NONCE, &rsa_key(), "").unwrap();
        assert_eq!(hex::encode(d), RSA_DIGEST);
    }

    /// An extra JWK member (here `use`) changes the digest; the broker
    /// rebuilds the JWK without it, so such a key would break the binding.
    #[test]
    fn extra_jwk_member_changes_the_digest() {
        let mut jwk = serde_json::to_value(ec_key()).unwrap();
        jwk["use"] = "enc".into();
        let runtime = serde_json::json!({
            "additional-evidence": "",
            "nonce": NONCE,
            "tee-pubkey": jwk,
        });
        let with_use: [u8; DIGEST_LEN] = Sha384::digest(canonical_json(&runtime).unwrap()).into();
        assert_eq!(hex::encode(with_use), EC_USE_DIGEST);
        let ours = runtime_data_digest(NONCE, &ec_key(), "").unwrap();
        assert_ne!(with_use, ours);
    }

    /// OBJ = {"nonce": NONCE, "tee-pubkey": `ec_key()`} (no
    /// additional-evidence member), computed as above.
    const EC_DEVICE_DIGEST: &str = "aa29da4707a36a4cdb112f5ba622c8d08443b311fd3985eb\
                                    197711c8fa3db695fbc4c0d05ec867f41e656490aee5120d";

    #[test]
    fn device_digest_omits_additional_evidence_and_matches_reference() {
        let d = device_data_digest(NONCE, &ec_key()).unwrap();
        assert_eq!(hex::encode(d), EC_DEVICE_DIGEST);
        assert_ne!(hex::encode(d), EC_DIGEST);
        let n = gpu_nonce(NONCE, &ec_key()).unwrap();
        assert_eq!(n[..], d[..GPU_NONCE_LEN]);
    }

    #[test]
    fn report_data_is_digest_then_16_zero_bytes() {
        let d = runtime_data_digest(NONCE, &ec_key(), "").unwrap();
        let rd = report_data(&d);
        assert_eq!(&rd[..DIGEST_LEN], &d[..]);
        assert_eq!(&rd[DIGEST_LEN..], &[0u8; 16]);
    }

    // --- RFC 8785 vectors, through `canonical_json` -----------------------

    /// RFC 8785 §3.2.3 (sorting of object members by UTF-16 code units):
    /// the emoji U+1F600 (surrogates D83D DE00) sorts before U+FB33.
    #[test]
    fn rfc8785_sorting_example() {
        let input = r#"{
            "\u20ac": "Euro Sign",
            "\r": "Carriage Return",
            "\ufb33": "Hebrew Letter Dalet With Dagesh",
            "1": "One",
            "\ud83d\ude00": "Emoji: Grinning Face",
            "\u0080": "Control",
            "\u00f6": "Latin Small Letter O With Diaeresis"
        }"#;
        let v: serde_json::Value = serde_json::from_str(input).unwrap();
        let expected = "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u{80}\":\"Control\",\
                        \"\u{f6}\":\"Latin Small Letter O With Diaeresis\",\
                        \"\u{20ac}\":\"Euro Sign\",\"\u{1f600}\":\"Emoji: Grinning Face\",\
                        \"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}";
        assert_eq!(canon_str(&v), expected);
    }

    /// RFC 8785 §3.2.2 (the sample input of §3.2.2 and its canonical output
    /// in §3.2.4): number formatting, string escaping, literals, sorting.
    #[test]
    fn rfc8785_serialisation_example() {
        let input = r#"{
            "numbers": [333333333.33333329, 1E30, 4.50,
                        2e-3, 0.000000000000000000000000001],
            "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
            "literals": [null, true, false]
        }"#;
        let v: serde_json::Value = serde_json::from_str(input).unwrap();
        let expected = concat!(
            r#"{"literals":[null,true,false],"#,
            r#""numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"#,
            "\"string\":\"\u{20ac}$\\u000f\\nA'B\\\"\\\\\\\\\\\"/\"}"
        );
        assert_eq!(canon_str(&v), expected);
    }

    /// RFC 8785 Appendix B: IEEE 754 bit patterns and their canonical
    /// number text. (The list was also checked against Node's
    /// `JSON.stringify`, which implements the same ECMAScript algorithm.)
    #[test]
    fn rfc8785_appendix_b_numbers() {
        let cases: &[(u64, &str)] = &[
            (0x0000000000000000, "0"),
            (0x8000000000000000, "0"), // minus zero
            (0x0000000000000001, "5e-324"),
            (0x8000000000000001, "-5e-324"),
            (0x7fefffffffffffff, "1.7976931348623157e+308"),
            (0xffefffffffffffff, "-1.7976931348623157e+308"),
            (0x4340000000000000, "9007199254740992"),
            (0xc340000000000000, "-9007199254740992"),
            (0x4430000000000000, "295147905179352830000"),
            (0x44b52d02c7e14af5, "9.999999999999997e+22"),
            (0x44b52d02c7e14af6, "1e+23"),
            (0x44b52d02c7e14af7, "1.0000000000000001e+23"),
            (0x444b1ae4d6e2ef4e, "999999999999999700000"),
            (0x444b1ae4d6e2ef4f, "999999999999999900000"),
            (0x444b1ae4d6e2ef50, "1e+21"),
            (0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"),
            (0x3eb0c6f7a0b5ed8d, "0.000001"),
            (0x41b3de4355555553, "333333333.3333332"),
            (0x41b3de4355555554, "333333333.33333325"),
            (0x41b3de4355555555, "333333333.3333333"),
            (0x41b3de4355555556, "333333333.3333334"),
            (0x41b3de4355555557, "333333333.33333343"),
            (0xbecbf647612f3696, "-0.0000033333333333333333"),
            (0x43143ff3c1cb0959, "1424953923781206.2"),
        ];
        for &(bits, text) in cases {
            let got = canonical_json(&f64::from_bits(bits)).unwrap();
            assert_eq!(
                String::from_utf8(got).unwrap(),
                text,
                "IEEE 754 {bits:016x}"
            );
        }
    }

    /// RFC 8785 Appendix B: NaN and Infinity must be rejected.
    #[test]
    fn rfc8785_rejects_nan_and_infinity() {
        for bits in [0x7fffffffffffffff_u64, 0x7ff0000000000000] {
            let err = canonical_json(&f64::from_bits(bits)).unwrap_err();
            assert!(matches!(err, BindingError::Canonical(_)), "{err}");
        }
    }
}
