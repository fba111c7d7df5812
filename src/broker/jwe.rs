//! The broker's resource replies: flattened JSON JWE with A256GCM content
//! encryption and `ECDH-ES+A256KW` (P-256) or `RSA-OAEP-256` key management.

use kbs_types::TeePubKey;

use crate::secrets::Secret;

#[derive(Debug, thiserror::Error)]
pub enum JweError {
    #[error("placeholder")]
    Todo,
}

/// Which key-management algorithm the ephemeral key uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlg {
    /// `ECDH-ES+A256KW` on P-256 (default).
    EcdhEsA256Kw,
    /// `RSA-OAEP-256` with a 3072-bit key.
    RsaOaep256,
}

/// The per-boot ephemeral private key the broker wraps secrets to. Lives in
/// memory only; its `Debug` is redacted.
pub struct EphemeralKey {
    _private: (),
}

impl EphemeralKey {
    /// A fresh key from the OS RNG.
    pub fn generate(alg: KeyAlg) -> Result<Self, JweError> {
        let _ = alg;
        todo!("helper: jwe")
    }

    /// The public JWK, holding exactly the members the broker hashes.
    pub fn public_jwk(&self) -> TeePubKey {
        todo!("helper: jwe")
    }

    /// Decrypts one flattened JWE (the body of a resource reply).
    pub fn decrypt(&self, jwe_json: &[u8]) -> Result<Secret, JweError> {
        let _ = jwe_json;
        todo!("helper: jwe")
    }
}

/// Encrypts `plaintext` to `recipient` as a flattened JWE (the broker side;
/// used by the development broker and the tests).
pub fn encrypt(recipient: &TeePubKey, plaintext: &[u8]) -> Result<serde_json::Value, JweError> {
    let _ = (recipient, plaintext);
    todo!("helper: jwe")
}
