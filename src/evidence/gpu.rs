//! NVIDIA Hopper (H100) confidential-computing attestation reports: an SPDM
//! 1.1 GET_MEASUREMENTS request and its signed MEASUREMENTS response, as
//! NVML's `nvmlDeviceGetConfComputeGpuAttestationReport` returns them.
//!
//! | part | bytes | fields |
//! |---|---|---|
//! | request | 37 | version 0x11, code 0xE0, param1 (1: signature wanted), param2 (0xFF: all blocks), requester nonce 32, slot id |
//! | response header | 8 | version 0x11, code 0x60, param1, param2, number of blocks u8, record length u24 LE |
//! | measurement record | record length | blocks: index u8, spec u8 (1 = DMTF), size u16 LE, then DMTF type u8, value size u16 LE, value |
//! | responder nonce | 32 | |
//! | opaque data | u16 LE length, then entries | NVIDIA fields: type u16 LE, size u16 LE, value (3 driver version, 6 VBIOS version, ...) |
//! | signature | 96 | ECDSA P-384 r ‖ s over SHA-384 of everything before it (request and response) |
//!
//! The signing key is the leaf of the GPU's certificate chain
//! (`nvmlDeviceGetConfComputeGpuCertificate`), which must chain to NVIDIA's
//! device identity root ([`NVIDIA_ROOT_PEM`], built in). The requester
//! nonce is what binds a report to a session. Layout checked against
//! Trustee's Hopper samples (`testdata/evidence/gpu/`).

use p384::ecdsa::signature::Verifier;
use p384::ecdsa::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};

use super::EvidenceError;

const REQUEST_LEN: usize = 37;
const RESPONSE_HEADER_LEN: usize = 8;
const NONCE_LEN: usize = 32;
const SIGNATURE_LEN: usize = 96;
const SPDM_VERSION: u8 = 0x11;
const GET_MEASUREMENTS: u8 = 0xE0;
const MEASUREMENTS: u8 = 0x60;
/// ecdsa-with-SHA384.
const ECDSA_SHA384_OID: &str = "1.2.840.10045.4.3.3";

/// NVIDIA Device Identity CA (self-signed, P-384), the root of every
/// Hopper device certificate chain; SHA-256 of its DER
/// [`NVIDIA_ROOT_SHA256`].
pub const NVIDIA_ROOT_PEM: &str = include_str!("nvidia-device-identity-ca.pem");
pub const NVIDIA_ROOT_SHA256: &str =
    "102bf659d5419614c9d8e6aecebc80454eb26b1df6a769ac720b9a690b167b48";

fn pem_err(reason: impl Into<String>) -> EvidenceError {
    EvidenceError::Invalid {
        what: "PEM certificates",
        reason: reason.into(),
    }
}

fn err(reason: impl Into<String>) -> EvidenceError {
    EvidenceError::Invalid {
        what: "GPU attestation report",
        reason: reason.into(),
    }
}

/// One DMTF measurement block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeasurementBlock {
    pub index: u8,
    pub dmtf_type: u8,
    pub value: Vec<u8>,
}

/// A decoded GPU report. `signed` is the byte range the signature covers.
#[derive(Debug, Clone)]
pub struct GpuReport {
    pub raw: Vec<u8>,
    pub requester_nonce: [u8; NONCE_LEN],
    pub responder_nonce: [u8; NONCE_LEN],
    pub blocks: Vec<MeasurementBlock>,
    /// NVIDIA opaque fields: (type, value).
    pub opaque: Vec<(u16, Vec<u8>)>,
    pub signature: [u8; SIGNATURE_LEN],
}

fn le16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

/// Decodes a report (binary, or the hex text NVML tools save).
pub fn parse_report(input: &[u8]) -> Result<GpuReport, EvidenceError> {
    let text = std::str::from_utf8(input).ok().map(str::trim);
    let raw = match text.and_then(|t| hex::decode(t).ok()) {
        Some(b) => b,
        None => input.to_vec(),
    };
    let need = REQUEST_LEN + RESPONSE_HEADER_LEN + NONCE_LEN + 2 + SIGNATURE_LEN;
    if raw.len() < need {
        return Err(err(format!(
            "{} bytes, shorter than the {need} of an SPDM request and an empty signed response",
            raw.len()
        )));
    }
    if raw[0] != SPDM_VERSION || raw[1] != GET_MEASUREMENTS {
        return Err(err(format!(
            "starts {:02x} {:02x}, not an SPDM 1.1 GET_MEASUREMENTS request (11 e0)",
            raw[0], raw[1]
        )));
    }
    let mut requester_nonce = [0u8; NONCE_LEN];
    requester_nonce.copy_from_slice(&raw[4..4 + NONCE_LEN]);
    let r = &raw[REQUEST_LEN..];
    if r[0] != SPDM_VERSION || r[1] != MEASUREMENTS {
        return Err(err(format!(
            "response starts {:02x} {:02x}, not SPDM 1.1 MEASUREMENTS (11 60)",
            r[0], r[1]
        )));
    }
    let count = r[4] as usize;
    let record_len = u32::from_le_bytes([r[5], r[6], r[7], 0]) as usize;
    let record = r
        .get(RESPONSE_HEADER_LEN..RESPONSE_HEADER_LEN + record_len)
        .ok_or_else(|| {
            err(format!(
                "measurement record of {record_len} bytes is truncated"
            ))
        })?;
    let mut blocks = Vec::with_capacity(count);
    let mut at = 0;
    while at < record.len() {
        let size = le16(record, at + 2).ok_or_else(|| err("truncated measurement block"))? as usize;
        let block = record
            .get(at + 4..at + 4 + size)
            .ok_or_else(|| err(format!("measurement block at {at} overruns the record")))?;
        if record[at + 1] != 1 || size < 3 {
            return Err(err(format!(
                "measurement block {} is not a DMTF measurement",
                record[at]
            )));
        }
        let value_len = le16(block, 1).unwrap_or(0) as usize;
        let value = block.get(3..3 + value_len).ok_or_else(|| {
            err(format!(
                "measurement {} value overruns its block",
                record[at]
            ))
        })?;
        blocks.push(MeasurementBlock {
            index: record[at],
            dmtf_type: block[0],
            value: value.to_vec(),
        });
        at += 4 + size;
    }
    if blocks.len() != count {
        return Err(err(format!(
            "{} measurement blocks, the header says {count}",
            blocks.len()
        )));
    }
    let mut p = RESPONSE_HEADER_LEN + record_len;
    let mut responder_nonce = [0u8; NONCE_LEN];
    responder_nonce.copy_from_slice(
        r.get(p..p + NONCE_LEN)
            .ok_or_else(|| err("truncated before the responder nonce"))?,
    );
    p += NONCE_LEN;
    let opaque_len = le16(r, p).ok_or_else(|| err("truncated before the opaque data"))? as usize;
    p += 2;
    let opaque_bytes = r
        .get(p..p + opaque_len)
        .ok_or_else(|| err("opaque data overruns the report"))?;
    p += opaque_len;
    if r.len() != p + SIGNATURE_LEN {
        return Err(err(format!(
            "{} bytes after the opaque data, expected the {SIGNATURE_LEN}-byte signature",
            r.len() - p
        )));
    }
    let mut opaque = Vec::new();
    let mut o = 0;
    while o + 4 <= opaque_bytes.len() {
        let ty = le16(opaque_bytes, o).unwrap_or(0);
        let size = le16(opaque_bytes, o + 2).unwrap_or(0) as usize;
        let v = opaque_bytes
            .get(o + 4..o + 4 + size)
            .ok_or_else(|| err(format!("opaque field {ty} overruns the opaque data")))?;
        opaque.push((ty, v.to_vec()));
        o += 4 + size;
    }
    let mut signature = [0u8; SIGNATURE_LEN];
    signature.copy_from_slice(&r[p..]);
    Ok(GpuReport {
        raw,
        requester_nonce,
        responder_nonce,
        blocks,
        opaque,
        signature,
    })
}

impl GpuReport {
    fn field(&self, ty: u16) -> Option<&[u8]> {
        self.opaque
            .iter()
            .find(|(t, _)| *t == ty)
            .map(|(_, v)| v.as_slice())
    }

    /// Opaque field 3, e.g. `550.90.07`.
    pub fn driver_version(&self) -> Option<String> {
        self.field(3).map(|v| {
            let end = v.iter().position(|&b| b == 0).unwrap_or(v.len());
            String::from_utf8_lossy(&v[..end]).into_owned()
        })
    }

    /// Opaque field 6 as NVIDIA prints it, e.g. `96.00.9f.00.01`.
    pub fn vbios_version(&self) -> Option<String> {
        self.field(6).filter(|v| v.len() >= 5).map(|v| {
            format!(
                "{:02x}.{:02x}.{:02x}.{:02x}.{:02x}",
                v[3], v[2], v[1], v[0], v[4]
            )
        })
    }

    /// Checks the signature with the P-384 key of `leaf_der`.
    pub fn verify_signature(&self, leaf_der: &[u8]) -> Result<(), EvidenceError> {
        let (_, cert) = x509_parser::parse_x509_certificate(leaf_der)
            .map_err(|e| err(format!("the signing certificate does not parse: {e}")))?;
        let key = VerifyingKey::from_sec1_bytes(&cert.public_key().subject_public_key.data)
            .map_err(|_| err("the signing certificate's key is not P-384"))?;
        let sig = Signature::from_slice(&self.signature)
            .map_err(|_| err("the signature is not a P-384 r || s"))?;
        let signed = &self.raw[..self.raw.len() - SIGNATURE_LEN];
        key.verify(signed, &sig).map_err(|_| {
            err("the ECDSA P-384 signature does not verify with the leaf certificate's key: the report was altered or comes from another GPU")
        })
    }
}

/// The DER certificates of a PEM text, in order (text around them, such as
/// comments, is skipped).
pub fn pem_chain(text: &str) -> Result<Vec<Vec<u8>>, EvidenceError> {
    use base64::Engine as _;
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(b) = rest.find("-----BEGIN CERTIFICATE-----") {
        let body_at = b + "-----BEGIN CERTIFICATE-----".len();
        let e = rest[body_at..]
            .find("-----END CERTIFICATE-----")
            .ok_or_else(|| pem_err("a PEM certificate has no END line"))?
            + body_at;
        let body: String = rest[body_at..e].split_whitespace().collect();
        out.push(
            base64::engine::general_purpose::STANDARD
                .decode(body)
                .map_err(|e| pem_err(format!("a PEM certificate is not base64: {e}")))?,
        );
        rest = &rest[e..];
    }
    if out.is_empty() {
        return Err(pem_err("no PEM certificate in the chain"));
    }
    Ok(out)
}

/// Checks that `chain` (leaf first, as NVML returns it) is signed link by
/// link and ends at NVIDIA's built-in device identity root. Returns the
/// leaf's DER.
pub fn verify_chain(chain: &[Vec<u8>]) -> Result<Vec<u8>, EvidenceError> {
    let root = pem_chain(NVIDIA_ROOT_PEM)?.remove(0);
    let mut certs: Vec<Vec<u8>> = chain.to_vec();
    if certs.last().is_some_and(|c| *c == root) {
        certs.pop();
    }
    if certs.is_empty() {
        return Err(err(
            "the chain holds only NVIDIA's root: the GPU's own certificates are missing",
        ));
    }
    certs.push(root);
    for pair in certs.windows(2) {
        let (_, child) = x509_parser::parse_x509_certificate(&pair[0])
            .map_err(|e| err(format!("a chain certificate does not parse: {e}")))?;
        let (_, issuer) = x509_parser::parse_x509_certificate(&pair[1])
            .map_err(|e| err(format!("a chain certificate does not parse: {e}")))?;
        let name = child.subject().to_string();
        if child.issuer() != issuer.subject() {
            return Err(err(format!(
                "{name} is issued by {}, but the next certificate is {}: the chain does not reach NVIDIA's device identity root",
                child.issuer(),
                issuer.subject()
            )));
        }
        if child.signature_algorithm.algorithm.to_id_string() != ECDSA_SHA384_OID {
            return Err(err(format!(
                "{name} is not signed with ECDSA P-384/SHA-384"
            )));
        }
        let key = VerifyingKey::from_sec1_bytes(&issuer.public_key().subject_public_key.data)
            .map_err(|_| err(format!("the key of {}'s issuer is not P-384", name)))?;
        let sig = Signature::from_der(&child.signature_value.data)
            .map_err(|_| err(format!("{name}'s signature is not ECDSA")))?;
        key.verify(child.tbs_certificate.as_ref(), &sig)
            .map_err(|_| err(format!("{name} is not signed by {}", issuer.subject())))?;
    }
    certs
        .into_iter()
        .next()
        .ok_or_else(|| err("empty certificate chain"))
}

/// SHA-256 of a DER certificate, hex.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}
