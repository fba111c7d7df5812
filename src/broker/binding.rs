//! Binding the evidence to this session: REPORT_DATA commits to the broker's
//! nonce and to the ephemeral public key the secrets are wrapped to.
//!
//! `digest = SHA-384(RFC 8785 canonical JSON of
//!  {"additional-evidence": "", "nonce": <nonce>, "tee-pubkey": <JWK>})`.
//! See KBS-PROTOCOL.md, "Binding the evidence to this session".

use kbs_types::TeePubKey;

/// Length of the runtime-data digest (SHA-384).
pub const DIGEST_LEN: usize = 48;

#[derive(Debug, thiserror::Error)]
pub enum BindingError {
    #[error("cannot serialise the runtime data to canonical JSON (RFC 8785): {0}")]
    Canonical(String),
}

/// SHA-384 over the RFC 8785 form of the runtime data the broker rebuilds.
pub fn runtime_data_digest(
    nonce: &str,
    tee_pubkey: &TeePubKey,
    additional_evidence: &str,
) -> Result<[u8; DIGEST_LEN], BindingError> {
    let _ = (nonce, tee_pubkey, additional_evidence);
    todo!("helper: binding")
}

/// The 64-byte REPORT_DATA for SNP and TDX: the digest, then 16 zero bytes.
pub fn report_data(digest: &[u8; DIGEST_LEN]) -> [u8; 64] {
    let mut out = [0u8; 64];
    out[..DIGEST_LEN].copy_from_slice(digest);
    out
}
