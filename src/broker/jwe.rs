//! The broker's resource replies: flattened JSON JWE with A256GCM content
//! encryption and `ECDH-ES+A256KW` (P-256) or `RSA-OAEP-256` key management.
//!
//! Wire facts (KBS-PROTOCOL.md, "Resource replies"): the reply is a JSON
//! object with exactly `protected`, `encrypted_key`, `iv`, `ciphertext` and
//! `tag`, each base64url without padding. The AES-GCM additional data is the
//! ASCII of `protected` *as received*; the header is never re-serialised.
//!
//! Every primitive comes from a RustCrypto crate: `p256` (ECDH),
//! `concat-kdf` (RFC 7518 §4.6.2), `aes-kw` (RFC 3394), `rsa` (OAEP),
//! `aes-gcm`. Key material in between lives in `Zeroizing` buffers.

use std::fmt;

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use aes_kw::KekAes256;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use kbs_types::TeePubKey;
use p256::elliptic_curve::sec1::{FromEncodedPoint, ToEncodedPoint};
use p256::{EncodedPoint, FieldBytes, PublicKey, SecretKey};
use rand::rngs::OsRng;
use rand::RngCore;
use rsa::traits::PublicKeyParts;
use rsa::{BigUint, Oaep, RsaPrivateKey, RsaPublicKey};
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::secrets::Secret;

/// JWA name of ECDH-ES with Concat KDF and AES-256 key wrap.
pub const ALG_ECDH_ES_A256KW: &str = "ECDH-ES+A256KW";
/// JWA name of RSAES-OAEP with SHA-256 and MGF1-SHA-256.
pub const ALG_RSA_OAEP_256: &str = "RSA-OAEP-256";
/// JWA name of the only content encryption accepted.
pub const ENC_A256GCM: &str = "A256GCM";
/// Modulus length of the RSA keys [`EphemeralKey::generate`] makes.
pub const RSA_BITS: usize = 3072;

/// The members of a flattened JWE as the broker sends it, in wire order.
pub const JWE_MEMBERS: [&str; 5] = ["protected", "encrypted_key", "iv", "ciphertext", "tag"];

const CEK_LEN: usize = 32;
const IV_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// RFC 3394 key wrap adds one 8-byte block to the 32-byte CEK.
const WRAPPED_CEK_LEN: usize = CEK_LEN + 8;
const P256_COORD_LEN: usize = 32;
/// Smallest RSA modulus accepted anywhere here.
const RSA_MIN_BITS: usize = 2048;

#[derive(Debug, thiserror::Error)]
pub enum JweError {
    #[error("cannot generate the ephemeral {alg} key: {reason}")]
    KeyGeneration { alg: &'static str, reason: String },
    #[error("the resource reply is not JSON ({len} bytes): {source}")]
    NotJson {
        len: usize,
        #[source]
        source: serde_json::Error,
    },
    #[error("the resource reply is JSON but not a JWE object: it is {found}")]
    NotAnObject { found: &'static str },
    #[error("the JWE has no `{0}` member")]
    MissingField(&'static str),
    #[error(
        "the JWE has an unexpected member {0:?} (a flattened JWE from the broker has only \
         protected, encrypted_key, iv, ciphertext and tag)"
    )]
    UnexpectedField(String),
    #[error("the JWE member `{0}` is not a string")]
    NotAString(&'static str),
    #[error("the JWE member `{field}` is not base64url without padding: {source}")]
    Base64 {
        field: &'static str,
        #[source]
        source: base64::DecodeError,
    },
    #[error("the JWE protected header is not a JSON object: {0}")]
    BadHeader(String),
    #[error("the JWE protected header has no `{0}`")]
    HeaderMissing(&'static str),
    #[error(
        "unsupported JWE key-management algorithm {0:?} \
         (supported: ECDH-ES+A256KW, RSA-OAEP-256)"
    )]
    UnsupportedAlg(String),
    #[error("the reply uses JWE algorithm {got:?} but this boot's key is for {expected}")]
    AlgMismatch { got: String, expected: &'static str },
    #[error("unsupported JWE content encryption {0:?} (supported: A256GCM)")]
    UnsupportedEnc(String),
    #[error("unsupported JWE header parameter `{0}`")]
    UnsupportedHeader(&'static str),
    #[error("the JWE's ephemeral public key (epk) is not usable: {0}")]
    BadEpk(String),
    #[error("the JWE's {field} is {got} bytes; expected {expected}")]
    Size {
        field: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("the reply was not encrypted to this boot's key, or was corrupted")]
    WrongKey,
    #[error("cannot encrypt to the recipient key: {0}")]
    BadRecipient(String),
    #[error("Concat KDF failed: {0}")]
    Kdf(String),
    #[error("AES-GCM encryption failed")]
    Encrypt,
}

/// Which key-management algorithm the ephemeral key uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyAlg {
    /// `ECDH-ES+A256KW` on P-256 (default).
    #[default]
    EcdhEsA256Kw,
    /// `RSA-OAEP-256` with a 3072-bit key.
    RsaOaep256,
}

impl KeyAlg {
    /// The JWA `alg` name, as it appears in the JWK and the JWE header.
    pub fn jwa_name(self) -> &'static str {
        match self {
            KeyAlg::EcdhEsA256Kw => ALG_ECDH_ES_A256KW,
            KeyAlg::RsaOaep256 => ALG_RSA_OAEP_256,
        }
    }
}

impl fmt::Display for KeyAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.jwa_name())
    }
}

pub(crate) enum PrivateKey {
    /// Zeroized on drop by `p256`.
    Ec(SecretKey),
    /// Zeroized on drop by `rsa` (`ZeroizeOnDrop`).
    Rsa(Box<RsaPrivateKey>),
}

/// The per-boot ephemeral private key the broker wraps secrets to. Lives in
/// memory only; its `Debug` is redacted.
pub struct EphemeralKey {
    pub(crate) key: PrivateKey,
}

impl fmt::Debug for EphemeralKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EphemeralKey")
            .field("alg", &self.alg().jwa_name())
            .field("private", &"[REDACTED]")
            .finish()
    }
}

impl EphemeralKey {
    /// A fresh key from the OS RNG: P-256, or RSA with [`RSA_BITS`] bits.
    pub fn generate(alg: KeyAlg) -> Result<Self, JweError> {
        match alg {
            KeyAlg::EcdhEsA256Kw => Ok(Self {
                key: PrivateKey::Ec(SecretKey::random(&mut OsRng)),
            }),
            KeyAlg::RsaOaep256 => Self::generate_rsa(RSA_BITS),
        }
    }

    /// A fresh `RSA-OAEP-256` key with a modulus of `bits` (2048, 3072 or
    /// 4096). [`generate`](Self::generate) uses [`RSA_BITS`]; a smaller key
    /// is for tests, where RSA key generation in a debug build is slow.
    pub fn generate_rsa(bits: usize) -> Result<Self, JweError> {
        if ![2048, 3072, 4096].contains(&bits) {
            return Err(JweError::KeyGeneration {
                alg: ALG_RSA_OAEP_256,
                reason: format!("{bits}-bit modulus; use 2048, 3072 or 4096"),
            });
        }
        let key = RsaPrivateKey::new(&mut OsRng, bits).map_err(|e| JweError::KeyGeneration {
            alg: ALG_RSA_OAEP_256,
            reason: e.to_string(),
        })?;
        Ok(Self {
            key: PrivateKey::Rsa(Box::new(key)),
        })
    }

    /// The key-management algorithm this key is for.
    pub fn alg(&self) -> KeyAlg {
        match self.key {
            PrivateKey::Ec(_) => KeyAlg::EcdhEsA256Kw,
            PrivateKey::Rsa(_) => KeyAlg::RsaOaep256,
        }
    }

    /// The public JWK, holding exactly the members the broker hashes:
    /// `kty`, `crv`, `alg`, `x`, `y` (EC) or `kty`, `alg`, `n`, `e` (RSA),
    /// base64url without padding.
    pub fn public_jwk(&self) -> TeePubKey {
        match &self.key {
            PrivateKey::Ec(sk) => {
                let point = sk.public_key().to_encoded_point(false);
                TeePubKey::EC {
                    crv: "P-256".to_string(),
                    alg: ALG_ECDH_ES_A256KW.to_string(),
                    // An uncompressed, non-identity point always has both
                    // coordinates; the fallbacks are unreachable.
                    x: b64(point.x().map(|x| &x[..]).unwrap_or_default()),
                    y: b64(point.y().map(|y| &y[..]).unwrap_or_default()),
                }
            }
            PrivateKey::Rsa(sk) => TeePubKey::RSA {
                alg: ALG_RSA_OAEP_256.to_string(),
                k_mod: b64(sk.n().to_bytes_be()),
                k_exp: b64(sk.e().to_bytes_be()),
            },
        }
    }

    /// Decrypts one flattened JWE (the body of a resource reply).
    pub fn decrypt(&self, jwe_json: &[u8]) -> Result<Secret, JweError> {
        let value: Value =
            serde_json::from_slice(jwe_json).map_err(|source| JweError::NotJson {
                len: jwe_json.len(),
                source,
            })?;
        let jwe = FlattenedJwe::from_value(&value)?;
        // Kept exactly as received: its ASCII is the AES-GCM AAD.
        let protected = jwe.text("protected")?;
        let header = ProtectedHeader::parse(protected)?;

        let expected = self.alg().jwa_name();
        match header.alg.as_str() {
            ALG_ECDH_ES_A256KW | ALG_RSA_OAEP_256 if header.alg != expected => {
                return Err(JweError::AlgMismatch {
                    got: header.alg,
                    expected,
                })
            }
            ALG_ECDH_ES_A256KW | ALG_RSA_OAEP_256 => {}
            _ => return Err(JweError::UnsupportedAlg(header.alg)),
        }
        if header.enc != ENC_A256GCM {
            return Err(JweError::UnsupportedEnc(header.enc));
        }

        let encrypted_key = jwe.bytes("encrypted_key")?;
        let iv: [u8; IV_LEN] = sized("iv", &jwe.bytes("iv")?)?;
        let tag: [u8; TAG_LEN] = sized("tag", &jwe.bytes("tag")?)?;
        let ciphertext = jwe.bytes("ciphertext")?;

        let cek = match &self.key {
            PrivateKey::Ec(sk) => ecdh_unwrap_cek(sk, &header, &encrypted_key)?,
            PrivateKey::Rsa(sk) => rsa_decrypt_cek(sk, &encrypted_key)?,
        };

        let cipher = aes_gcm_cipher(&cek)?;
        let mut plaintext = Zeroizing::new(ciphertext);
        cipher
            .decrypt_in_place_detached(
                &Nonce::from(iv),
                protected.as_bytes(),
                &mut plaintext,
                &Tag::from(tag),
            )
            .map_err(|_| JweError::WrongKey)?;
        Ok(Secret::new(std::mem::take(&mut *plaintext)))
    }
}

/// Encrypts `plaintext` to `recipient` as a flattened JWE (the broker side;
/// used by the development broker and the tests).
///
/// For an EC key the protected header is
/// `{"alg":"ECDH-ES+A256KW","enc":"A256GCM","epk":{"crv":"P-256","kty":"EC","x":..,"y":..}}`,
/// for RSA `{"alg":"RSA-OAEP-256","enc":"A256GCM"}`. The result has exactly
/// the members in [`JWE_MEMBERS`].
pub fn encrypt(recipient: &TeePubKey, plaintext: &[u8]) -> Result<serde_json::Value, JweError> {
    let mut cek = Zeroizing::new([0u8; CEK_LEN]);
    OsRng.fill_bytes(&mut cek[..]);

    let (header, encrypted_key) = match recipient {
        TeePubKey::EC { crv, alg, x, y } => {
            if alg != ALG_ECDH_ES_A256KW {
                return Err(JweError::BadRecipient(format!(
                    "EC key with alg {alg:?}; expected {ALG_ECDH_ES_A256KW}"
                )));
            }
            if crv != "P-256" {
                return Err(JweError::BadRecipient(format!(
                    "EC key on curve {crv:?}; expected P-256"
                )));
            }
            let x = b64_decode("x", x)?;
            let y = b64_decode("y", y)?;
            let recipient_key = p256_point(&x, &y).map_err(JweError::BadRecipient)?;

            let ephemeral = p256::ecdh::EphemeralSecret::random(&mut OsRng);
            let epk = ephemeral.public_key().to_encoded_point(false);
            let shared = ephemeral.diffie_hellman(&recipient_key);
            let mut kek = Zeroizing::new([0u8; CEK_LEN]);
            jwa_concat_kdf(
                shared.raw_secret_bytes(),
                ALG_ECDH_ES_A256KW,
                b"",
                b"",
                &mut kek[..],
            )?;
            let mut wrapped = vec![0u8; WRAPPED_CEK_LEN];
            aes_kw(&kek)?
                .wrap(&cek[..], &mut wrapped)
                .map_err(|_| JweError::Encrypt)?;
            let header = HeaderOut {
                alg: ALG_ECDH_ES_A256KW,
                enc: ENC_A256GCM,
                epk: Some(EpkOut {
                    crv: "P-256",
                    kty: "EC",
                    x: b64(epk.x().map(|c| &c[..]).unwrap_or_default()),
                    y: b64(epk.y().map(|c| &c[..]).unwrap_or_default()),
                }),
            };
            (header, wrapped)
        }
        TeePubKey::RSA { alg, k_mod, k_exp } => {
            if alg != ALG_RSA_OAEP_256 {
                return Err(JweError::BadRecipient(format!(
                    "RSA key with alg {alg:?}; expected {ALG_RSA_OAEP_256}"
                )));
            }
            let n = BigUint::from_bytes_be(&b64_decode("n", k_mod)?);
            let e = BigUint::from_bytes_be(&b64_decode("e", k_exp)?);
            let key = RsaPublicKey::new(n, e).map_err(|e| JweError::BadRecipient(e.to_string()))?;
            if key.size() * 8 < RSA_MIN_BITS {
                return Err(JweError::BadRecipient(format!(
                    "{}-bit RSA modulus; at least {RSA_MIN_BITS} required",
                    key.size() * 8
                )));
            }
            let wrapped = key
                .encrypt(&mut OsRng, Oaep::new::<Sha256>(), &cek[..])
                .map_err(|e| JweError::BadRecipient(e.to_string()))?;
            let header = HeaderOut {
                alg: ALG_RSA_OAEP_256,
                enc: ENC_A256GCM,
                epk: None,
            };
            (header, wrapped)
        }
        TeePubKey::AKP { alg, .. } => {
            return Err(JweError::BadRecipient(format!(
                "AKP key ({alg}) is not supported"
            )))
        }
    };

    let header_json = serde_json::to_vec(&header).map_err(|_| JweError::Encrypt)?;
    let protected = b64(header_json);
    let mut iv = [0u8; IV_LEN];
    OsRng.fill_bytes(&mut iv);
    let cipher = aes_gcm_cipher(&cek)?;
    let mut buf = Zeroizing::new(plaintext.to_vec());
    let tag = cipher
        .encrypt_in_place_detached(&Nonce::from(iv), protected.as_bytes(), &mut buf)
        .map_err(|_| JweError::Encrypt)?;

    let mut out = Map::new();
    out.insert("protected".into(), Value::String(protected));
    out.insert("encrypted_key".into(), Value::String(b64(encrypted_key)));
    out.insert("iv".into(), Value::String(b64(iv)));
    out.insert("ciphertext".into(), Value::String(b64(&buf[..])));
    out.insert("tag".into(), Value::String(b64(tag)));
    Ok(Value::Object(out))
}

/// The key-derivation step of `ECDH-ES` (RFC 7518 §4.6.2): Concat KDF
/// (NIST SP 800-56A §5.8.1) with SHA-256 over the shared secret `z`, with
/// `OtherInfo = AlgorithmID || PartyUInfo || PartyVInfo || SuppPubInfo`,
/// where the first three are 32-bit big-endian length-prefixed and
/// SuppPubInfo is the output length in bits (32-bit big-endian). Fills
/// `out` (its length is the key data length).
///
/// For `ECDH-ES+A256KW`, `alg_id` is `"ECDH-ES+A256KW"` and `out` is 32
/// bytes; for direct `ECDH-ES` it would be the `enc` name.
pub fn jwa_concat_kdf(
    z: &[u8],
    alg_id: &str,
    apu: &[u8],
    apv: &[u8],
    out: &mut [u8],
) -> Result<(), JweError> {
    let keydatalen_bits = out
        .len()
        .checked_mul(8)
        .and_then(|bits| u32::try_from(bits).ok())
        .ok_or_else(|| JweError::Kdf(format!("{}-byte output is too long", out.len())))?;
    let mut other_info = Vec::with_capacity(16 + alg_id.len() + apu.len() + apv.len());
    for field in [alg_id.as_bytes(), apu, apv] {
        let len = u32::try_from(field.len())
            .map_err(|_| JweError::Kdf("an OtherInfo field is too long".into()))?;
        other_info.extend_from_slice(&len.to_be_bytes());
        other_info.extend_from_slice(field);
    }
    other_info.extend_from_slice(&keydatalen_bits.to_be_bytes());
    concat_kdf::derive_key_into::<Sha256>(z, &other_info, out)
        .map_err(|e| JweError::Kdf(e.to_string()))
}

/// ECDH with the header's `epk`, Concat KDF, AES key unwrap.
fn ecdh_unwrap_cek(
    sk: &SecretKey,
    header: &ProtectedHeader,
    encrypted_key: &[u8],
) -> Result<Zeroizing<[u8; CEK_LEN]>, JweError> {
    let epk = header.epk()?;
    check_size("encrypted_key", encrypted_key, WRAPPED_CEK_LEN)?;
    let shared = p256::ecdh::diffie_hellman(sk.to_nonzero_scalar(), epk.as_affine());
    let mut kek = Zeroizing::new([0u8; CEK_LEN]);
    jwa_concat_kdf(
        shared.raw_secret_bytes(),
        ALG_ECDH_ES_A256KW,
        &header.apu,
        &header.apv,
        &mut kek[..],
    )?;
    let mut cek = Zeroizing::new([0u8; CEK_LEN]);
    aes_kw(&kek)?
        .unwrap(encrypted_key, &mut cek[..])
        .map_err(|_| JweError::WrongKey)?;
    Ok(cek)
}

/// RSAES-OAEP with SHA-256 and MGF1-SHA-256, with blinding.
fn rsa_decrypt_cek(
    sk: &RsaPrivateKey,
    encrypted_key: &[u8],
) -> Result<Zeroizing<[u8; CEK_LEN]>, JweError> {
    check_size("encrypted_key", encrypted_key, sk.size())?;
    let decrypted = Zeroizing::new(
        sk.decrypt_blinded(&mut OsRng, Oaep::new::<Sha256>(), encrypted_key)
            .map_err(|_| JweError::WrongKey)?,
    );
    let mut cek = Zeroizing::new([0u8; CEK_LEN]);
    if decrypted.len() != CEK_LEN {
        return Err(JweError::Size {
            field: "content encryption key",
            expected: CEK_LEN,
            got: decrypted.len(),
        });
    }
    cek.copy_from_slice(&decrypted);
    Ok(cek)
}

/// A flattened JWE object whose member names have been checked; members
/// are looked up on use, so a header naming an unsupported `alg` (say
/// `dir`, which has no `encrypted_key`) is reported as such.
struct FlattenedJwe<'a> {
    obj: &'a Map<String, Value>,
}

impl<'a> FlattenedJwe<'a> {
    fn from_value(value: &'a Value) -> Result<Self, JweError> {
        let obj = value.as_object().ok_or(JweError::NotAnObject {
            found: json_kind(value),
        })?;
        if let Some(extra) = obj.keys().find(|k| !JWE_MEMBERS.contains(&k.as_str())) {
            return Err(JweError::UnexpectedField(extra.clone()));
        }
        Ok(Self { obj })
    }

    /// The member's string exactly as received.
    fn text(&self, name: &'static str) -> Result<&'a str, JweError> {
        match self.obj.get(name) {
            None => Err(JweError::MissingField(name)),
            Some(Value::String(s)) => Ok(s.as_str()),
            Some(_) => Err(JweError::NotAString(name)),
        }
    }

    /// The member, base64url-decoded.
    fn bytes(&self, name: &'static str) -> Result<Vec<u8>, JweError> {
        b64_decode(name, self.text(name)?)
    }
}

/// The parts of the protected header this module acts on.
struct ProtectedHeader {
    alg: String,
    enc: String,
    epk: Option<Value>,
    apu: Vec<u8>,
    apv: Vec<u8>,
}

impl ProtectedHeader {
    fn parse(protected: &str) -> Result<Self, JweError> {
        let bytes = b64_decode("protected", protected)?;
        let value: Value =
            serde_json::from_slice(&bytes).map_err(|e| JweError::BadHeader(e.to_string()))?;
        let Value::Object(mut obj) = value else {
            return Err(JweError::BadHeader(format!("it is {}", json_kind(&value))));
        };
        // Critical extensions must be understood (RFC 7515 §4.1.11); we
        // understand none. Compressed plaintext is not part of the protocol.
        for name in ["crit", "zip"] {
            if obj.contains_key(name) {
                return Err(JweError::UnsupportedHeader(name));
            }
        }
        let mut string = |name: &'static str| match obj.remove(name) {
            None => Err(JweError::HeaderMissing(name)),
            Some(Value::String(s)) => Ok(s),
            Some(_) => Err(JweError::BadHeader(format!("`{name}` is not a string"))),
        };
        let alg = string("alg")?;
        let enc = string("enc")?;
        let mut party_info = |name: &'static str, field: &'static str| match obj.remove(name) {
            None => Ok(Vec::new()),
            Some(Value::String(s)) => b64_decode(field, &s),
            Some(_) => Err(JweError::BadHeader(format!("`{name}` is not a string"))),
        };
        let apu = party_info("apu", "header apu")?;
        let apv = party_info("apv", "header apv")?;
        Ok(Self {
            alg,
            enc,
            epk: obj.remove("epk"),
            apu,
            apv,
        })
    }

    /// The `epk` member as a P-256 point on the curve.
    fn epk(&self) -> Result<PublicKey, JweError> {
        let epk = self.epk.as_ref().ok_or(JweError::HeaderMissing("epk"))?;
        let obj = epk
            .as_object()
            .ok_or_else(|| JweError::BadEpk(format!("it is {}", json_kind(epk))))?;
        let field = |name: &str| obj.get(name).and_then(Value::as_str);
        if field("kty") != Some("EC") || field("crv") != Some("P-256") {
            return Err(JweError::BadEpk(format!(
                "kty {:?}, crv {:?}; expected EC, P-256",
                field("kty"),
                field("crv")
            )));
        }
        let x = b64_decode("epk x", field("x").ok_or(JweError::HeaderMissing("epk.x"))?)?;
        let y = b64_decode("epk y", field("y").ok_or(JweError::HeaderMissing("epk.y"))?)?;
        p256_point(&x, &y).map_err(JweError::BadEpk)
    }
}

#[derive(Serialize)]
struct HeaderOut {
    alg: &'static str,
    enc: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    epk: Option<EpkOut>,
}

#[derive(Serialize)]
struct EpkOut {
    crv: &'static str,
    kty: &'static str,
    x: String,
    y: String,
}

/// A P-256 public key from affine coordinates, refusing points off the curve.
fn p256_point(x: &[u8], y: &[u8]) -> Result<PublicKey, String> {
    let (Ok(xa), Ok(ya)) = (
        <[u8; P256_COORD_LEN]>::try_from(x),
        <[u8; P256_COORD_LEN]>::try_from(y),
    ) else {
        return Err(format!(
            "coordinates are {} and {} bytes; expected {P256_COORD_LEN}",
            x.len(),
            y.len()
        ));
    };
    let point =
        EncodedPoint::from_affine_coordinates(&FieldBytes::from(xa), &FieldBytes::from(ya), false);
    Option::from(PublicKey::from_encoded_point(&point))
        .ok_or_else(|| "the point is not on the P-256 curve".to_string())
}

// Keys are handed over by reference (`new_from_slice`, `try_from(&[u8])`)
// so no unzeroized copy of them is made on the way into the cipher.

fn aes_gcm_cipher(cek: &[u8; CEK_LEN]) -> Result<Aes256Gcm, JweError> {
    Aes256Gcm::new_from_slice(cek).map_err(|_| JweError::Size {
        field: "content encryption key",
        expected: CEK_LEN,
        got: cek.len(),
    })
}

fn aes_kw(kek: &[u8; CEK_LEN]) -> Result<KekAes256, JweError> {
    KekAes256::try_from(&kek[..]).map_err(|_| JweError::Size {
        field: "key encryption key",
        expected: CEK_LEN,
        got: kek.len(),
    })
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn b64_decode(field: &'static str, text: &str) -> Result<Vec<u8>, JweError> {
    URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|source| JweError::Base64 { field, source })
}

fn sized<const N: usize>(field: &'static str, bytes: &[u8]) -> Result<[u8; N], JweError> {
    <[u8; N]>::try_from(bytes).map_err(|_| JweError::Size {
        field,
        expected: N,
        got: bytes.len(),
    })
}

fn check_size(field: &'static str, bytes: &[u8], expected: usize) -> Result<(), JweError> {
    if bytes.len() == expected {
        Ok(())
    } else {
        Err(JweError::Size {
            field,
            expected,
            got: bytes.len(),
        })
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let key = EphemeralKey::generate(KeyAlg::EcdhEsA256Kw).unwrap();
        let PrivateKey::Ec(sk) = &key.key else {
            panic!("expected an EC key")
        };
        let d = sk.to_bytes();
        let shown = format!("{key:?}");
        assert!(shown.contains("REDACTED"), "{shown}");
        assert!(shown.contains(ALG_ECDH_ES_A256KW), "{shown}");
        for needle in [hex::encode(d), b64(d), format!("{:?}", &d[..4])] {
            assert!(!shown.contains(&needle), "{shown}");
        }
    }

    #[test]
    fn ec_public_jwk_has_fixed_width_coordinates() {
        let key = EphemeralKey::generate(KeyAlg::EcdhEsA256Kw).unwrap();
        let TeePubKey::EC { crv, alg, x, y } = key.public_jwk() else {
            panic!("expected an EC JWK")
        };
        assert_eq!(crv, "P-256");
        assert_eq!(alg, ALG_ECDH_ES_A256KW);
        // 32 bytes base64url without padding: 43 characters.
        assert_eq!((x.len(), y.len()), (43, 43));
        assert!(p256_point(&b64_decode("x", &x).unwrap(), &b64_decode("y", &y).unwrap()).is_ok());
    }

    #[test]
    fn round_trip_ec_in_module() {
        let key = EphemeralKey::generate(KeyAlg::EcdhEsA256Kw).unwrap();
        let jwe = encrypt(&key.public_jwk(), b"disk key").unwrap();
        let secret = key.decrypt(jwe.to_string().as_bytes()).unwrap();
        assert_eq!(secret.expose(), b"disk key");
    }

    #[test]
    fn concat_kdf_other_info_layout() {
        // Same inputs, two different AlgorithmIDs: the ID is bound.
        let mut a = [0u8; 32];
        let mut b = [0u8; 32];
        jwa_concat_kdf(&[7u8; 32], "ECDH-ES+A256KW", b"", b"", &mut a).unwrap();
        jwa_concat_kdf(&[7u8; 32], "ECDH-ES+A128KW", b"", b"", &mut b).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn rsa_bits_are_limited() {
        let err = EphemeralKey::generate_rsa(1024).unwrap_err();
        assert!(matches!(err, JweError::KeyGeneration { .. }), "{err}");
    }
}
