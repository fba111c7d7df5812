//! Typed decoders for hardware evidence: SNP attestation reports and TDX
//! quotes. Shared by the agent (logging what policies check), the operator's
//! `evidence decode` command and the development broker.
//!
//! [`decode`] sniffs the format; [`snp::parse_report`] and
//! [`tdx::parse_quote`] parse one format; [`snp::verify_report`] checks an
//! SNP report against the AMD certificate chain. Nothing here trusts the
//! input: sizes are checked before any field is read, and every error says
//! what was wrong and what the caller can do about it.

pub mod azure;
pub mod gpu;
pub mod hcl_stand_in;
pub mod snp;
pub mod tdx;

use std::fmt;

pub use snp::{SnpReport, SnpSummary};
pub use tdx::{TdxQuote, TdxSummary};

/// A link of the SNP chain of trust, named in verification errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChainLink {
    /// The ARK must be self-signed.
    ArkSelfSigned,
    /// The ARK must sign the ASK (VCEK chains) or the ASVK (VLEK chains).
    ArkSignsAsk,
    /// The ASK (or ASVK) must sign the VCEK (or VLEK).
    AskSignsVek,
    /// The VCEK (or VLEK) must sign the report.
    VekSignsReport,
}

impl ChainLink {
    /// What a failure of this link usually means, for the error message.
    pub fn hint(&self) -> &'static str {
        match self {
            ChainLink::ArkSelfSigned => "the ARK given is not a valid AMD root; use AMD's ARK",
            ChainLink::ArkSignsAsk => {
                "the ASK/ASVK and the ARK belong to different products, or one is not AMD's"
            }
            ChainLink::AskSignsVek => {
                "the VCEK/VLEK was not issued by this ASK/ASVK: it is for another product or not \
                 a genuine AMD certificate"
            }
            ChainLink::VekSignsReport => {
                "the report was not signed by this VCEK/VLEK: wrong chip or TCB, or the report \
                 was modified"
            }
        }
    }
}

impl fmt::Display for ChainLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChainLink::ArkSelfSigned => "ARK is self-signed",
            ChainLink::ArkSignsAsk => "ARK signs ASK/ASVK",
            ChainLink::AskSignsVek => "ASK/ASVK signs VCEK/VLEK",
            ChainLink::VekSignsReport => "VCEK/VLEK signs the report",
        })
    }
}

/// Everything that can be wrong with a piece of evidence or its certificates.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    // ---- SNP report -------------------------------------------------------
    /// An SNP report is exactly 1184 bytes.
    #[error(
        "SNP attestation report is {actual} bytes, expected exactly {expected}: the input is \
         truncated or has extra data (pass the raw report, e.g. configfs-tsm `outblob`, not an \
         extended report or a certificate table)"
    )]
    SnpWrongSize { actual: usize, expected: usize },

    /// Version outside 2, 3, 5.
    #[error(
        "SNP attestation report version {version} is not supported (supported: 2, 3, 5); the \
         input may not be an SNP report, or it comes from newer firmware than this decoder knows"
    )]
    SnpUnsupportedVersion { version: u32 },

    /// The `sev` crate refused a report we had accepted by size and version.
    #[error(
        "SNP attestation report v{version} could not be decoded: {reason} (reserved fields must \
         be zero; the report is malformed or from firmware newer than this decoder)"
    )]
    SnpDecode { version: u32, reason: String },

    // ---- TDX quote --------------------------------------------------------
    /// Input too short for a field.
    #[error(
        "TDX quote is truncated: reading {field} needs {needed} bytes but the input has {actual}"
    )]
    TdxTruncated {
        field: &'static str,
        needed: usize,
        actual: usize,
    },

    /// Input larger than any quote.
    #[error(
        "TDX quote is {actual} bytes, more than the {max}-byte limit; this is not a single quote"
    )]
    TdxTooLarge { actual: usize, max: usize },

    /// Version other than 4 or 5.
    #[error("TDX quote version {version} is not supported (supported: 4, 5)")]
    TdxUnsupportedVersion { version: u16 },

    /// The header's tee_type is not TDX.
    #[error(
        "quote header tee_type is {tee_type:#x}, not 0x81 (TDX); 0x0 would be an SGX enclave quote"
    )]
    TdxWrongTeeType { tee_type: u32 },

    /// v5 body type other than 2 (TDX 1.0) or 3 (TDX 1.5).
    #[error(
        "TDX quote v5 body type {body_type} is not supported (2 = TDX 1.0, 3 = TDX 1.5; 1 is an \
         SGX enclave report)"
    )]
    TdxUnsupportedBodyType { body_type: u16 },

    /// v5 body size disagrees with the body type.
    #[error(
        "TDX quote v5 body type {body_type} declares body_size {body_size}, expected {expected}; \
         the quote is malformed"
    )]
    TdxBodySizeMismatch {
        body_type: u16,
        body_size: u32,
        expected: usize,
    },

    /// Signature data length points past the end of the input.
    #[error(
        "TDX quote declares {declared} bytes of signature data but only {available} follow the \
         length field; the quote is truncated"
    )]
    TdxSignatureDataOverrun { declared: u32, available: usize },

    // ---- Azure vTPM evidence, GPU reports -----------------------------------
    #[error("{what}: {reason}")]
    Invalid { what: &'static str, reason: String },

    // ---- format sniffing --------------------------------------------------
    /// Neither an SNP report nor a TDX quote.
    #[error("unrecognised evidence ({len} bytes): {detail}")]
    UnrecognizedFormat { len: usize, detail: String },

    // ---- SNP certificates and verification --------------------------------
    /// A certificate input could not be parsed.
    #[error("{what}: cannot parse certificate: {reason} (expected DER or PEM X.509)")]
    Certificate { what: &'static str, reason: String },

    /// A required certificate was not given and has no built-in.
    #[error("no {what} certificate: {hint}")]
    MissingCertificate { what: &'static str, hint: String },

    /// A signature in the chain did not verify.
    #[error("SNP verification failed at \"{link}\" ({product}): {detail}; {}", .link.hint())]
    ChainLinkFailed {
        link: ChainLink,
        product: String,
        detail: String,
    },

    /// No built-in AMD chain verifies the VCEK/VLEK.
    #[error(
        "the {vek} is not signed by any built-in AMD chain (tried {tried}); pass the ASK and ARK \
         for its product explicitly, or check the certificate is a genuine AMD {vek}"
    )]
    NoBuiltinChain { vek: &'static str, tried: String },

    /// The report says it is signed by one key type, the certificate is the other.
    #[error(
        "the report says it is signed by the {report}, but the certificate given is a {cert}; \
         fetch the {report} for this platform"
    )]
    SigningKeyMismatch { report: String, cert: String },

    /// The report is not signed at all.
    #[error("the report is not signed (key_info signing_key = {signing_key}, mask_chip_key = {mask_chip_key}); request a signed report")]
    ReportNotSigned {
        signing_key: u32,
        mask_chip_key: bool,
    },

    /// The VCEK's hwID differs from the report's CHIP_ID.
    #[error(
        "the VCEK is for chip {cert_hwid} but the report is from chip {report_chip_id}; fetch the \
         VCEK for this chip"
    )]
    ChipIdMismatch {
        cert_hwid: String,
        report_chip_id: String,
    },

    /// The VCEK/VLEK was issued for a different TCB than the report's REPORTED_TCB.
    #[error(
        "the {vek}'s {field} is {cert} but the report's reported_tcb has {report}; fetch the \
         {vek} for the report's reported_tcb"
    )]
    TcbMismatch {
        vek: &'static str,
        field: &'static str,
        cert: u8,
        report: u8,
    },
}

/// Evidence of either kind.
#[derive(Clone, Debug)]
pub enum Decoded {
    /// An SEV-SNP attestation report.
    Snp(SnpReport),
    /// A TDX quote.
    Tdx(TdxQuote),
}

impl Decoded {
    /// "snp" or "tdx".
    pub fn tee(&self) -> &'static str {
        match self {
            Decoded::Snp(_) => "snp",
            Decoded::Tdx(_) => "tdx",
        }
    }

    /// REPORT_DATA (64 bytes), which the broker checks against the session.
    pub fn report_data(&self) -> &[u8; 64] {
        match self {
            Decoded::Snp(r) => r.report_data(),
            Decoded::Tdx(q) => q.report_data(),
        }
    }

    /// Launch measurement: SNP MEASUREMENT, TDX MRTD (48 bytes each).
    pub fn measurement(&self) -> &[u8; 48] {
        match self {
            Decoded::Snp(r) => r.measurement(),
            Decoded::Tdx(q) => q.measurement(),
        }
    }

    /// Whether the TEE allows the host to debug the guest (SNP policy DEBUG,
    /// TDX TD_ATTRIBUTES.DEBUG). Such a guest has no confidentiality.
    pub fn debug(&self) -> bool {
        match self {
            Decoded::Snp(r) => r.debug(),
            Decoded::Tdx(q) => q.debug(),
        }
    }

    /// The operator-facing summary as JSON.
    pub fn summary_json(&self) -> serde_json::Value {
        let v = match self {
            Decoded::Snp(r) => serde_json::to_value(r.summary()),
            Decoded::Tdx(q) => serde_json::to_value(q.summary()),
        };
        // The summaries hold only strings, integers, booleans and options,
        // which always serialize; keep the failure visible rather than panic.
        v.unwrap_or_else(
            |e| serde_json::json!({ "error": format!("cannot serialize summary: {e}") }),
        )
    }
}

impl fmt::Display for Decoded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decoded::Snp(r) => r.fmt(f),
            Decoded::Tdx(q) => q.fmt(f),
        }
    }
}

/// Is this a TDX quote header? version 4/5, a non-zero attestation key type
/// and tee_type 0x81. (An SNP report's first u32 is its version, so bytes
/// 2..4 are zero there: the key-type check keeps a v5 SNP report whose
/// guest_svn happens to be 0x81 from looking like a quote.)
fn looks_like_tdx(b: &[u8]) -> bool {
    matches!(
        b.get(..8),
        Some([4 | 5, 0, akt_lo, akt_hi, 0x81, 0, 0, 0]) if (*akt_lo, *akt_hi) != (0, 0)
    )
}

/// Input that is entirely hex text (whitespace allowed) is decoded first, as
/// tools and upstream test data often carry reports as hex. Binary evidence
/// never qualifies: its first bytes are not ASCII hex digits.
fn unhex(bytes: &[u8]) -> Option<Vec<u8>> {
    let text: Vec<u8> = bytes
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    if text.is_empty() || !text.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    hex::decode(text).ok()
}

/// Decode evidence of either kind, sniffing the format:
/// * TDX quote: u16 version 4/5 at 0, tee_type 0x81 at 4;
/// * SNP report: 1184 bytes with u32 version 2, 3 or 5 at 0;
/// * hex text of either is decoded first.
pub fn decode(bytes: &[u8]) -> Result<Decoded, EvidenceError> {
    if let Some(raw) = unhex(bytes) {
        return decode_binary(&raw);
    }
    decode_binary(bytes)
}

fn decode_binary(bytes: &[u8]) -> Result<Decoded, EvidenceError> {
    if looks_like_tdx(bytes) {
        return tdx::parse_quote(bytes).map(Decoded::Tdx);
    }
    let first_u32 = bytes
        .get(..4)
        .and_then(|s| <[u8; 4]>::try_from(s).ok())
        .map(u32::from_le_bytes);
    if let Some(v @ (2 | 3 | 5)) = first_u32 {
        if bytes.len() == snp::REPORT_LEN {
            return snp::parse_report(bytes).map(Decoded::Snp);
        }
        // Near the right size: treat as a damaged SNP report so the error
        // names the sizes rather than "unrecognised".
        if bytes.len().abs_diff(snp::REPORT_LEN) <= 64 {
            return Err(EvidenceError::SnpWrongSize {
                actual: bytes.len(),
                expected: snp::REPORT_LEN,
            });
        }
        return Err(EvidenceError::UnrecognizedFormat {
            len: bytes.len(),
            detail: format!(
                "starts like an SNP report (version {v}) but an SNP report is exactly {} bytes",
                snp::REPORT_LEN
            ),
        });
    }
    Err(EvidenceError::UnrecognizedFormat {
        len: bytes.len(),
        detail: sniff_hint(bytes),
    })
}

/// Say what the input looks like, for inputs that are neither format.
fn sniff_hint(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "the input is empty".into();
    }
    if bytes.starts_with(b"HCLA") {
        return "this is an Azure HCL report; the SNP report is at bytes 0x20..0x4C0 (or a \
                TDREPORT for TDX), and the guest nonce is in the vTPM quote"
            .into();
    }
    if bytes.len() == 1024 && bytes[0] == 0x81 {
        return "this looks like a 1024-byte TDREPORT (from /dev/tdx_guest), not a quote; get a \
                quote via configfs-tsm or the host's quote service"
            .into();
    }
    if matches!(bytes.first(), Some(b'{' | b'[')) {
        return "this looks like JSON; pass the raw report or quote (for KBS evidence JSON, \
                extract the `quote` or `attestation_report` field first)"
            .into();
    }
    let head = hex::encode(&bytes[..bytes.len().min(8)]);
    format!(
        "first bytes {head}; expected a TDX quote (04 00 or 05 00, then tee_type 81 00 00 00 at \
         offset 4) or a {}-byte SNP report (version 02/03/05 00 00 00)",
        snp::REPORT_LEN
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn tdx_sniff_needs_key_type_and_tee_type() {
        assert!(looks_like_tdx(&[4, 0, 2, 0, 0x81, 0, 0, 0]));
        assert!(looks_like_tdx(&[5, 0, 3, 0, 0x81, 0, 0, 0]));
        // SNP v5 report with guest_svn 0x81: not TDX.
        assert!(!looks_like_tdx(&[5, 0, 0, 0, 0x81, 0, 0, 0]));
        // SGX quote.
        assert!(!looks_like_tdx(&[4, 0, 2, 0, 0, 0, 0, 0]));
        assert!(!looks_like_tdx(&[4, 0, 2]));
    }

    #[test]
    fn unhex_accepts_only_hex_text() {
        assert_eq!(unhex(b"0a0B\n ff").unwrap(), vec![0x0a, 0x0b, 0xff]);
        assert!(unhex(&[2, 0, 0, 0]).is_none());
        assert!(unhex(b"").is_none());
        assert!(unhex(b"abc").is_none()); // odd length
    }

    #[test]
    fn unrecognised_inputs_get_a_hint() {
        let e = decode(b"{\"tee\": 1}").unwrap_err().to_string();
        assert!(e.contains("JSON"), "{e}");
        let e = decode(&[]).unwrap_err().to_string();
        assert!(e.contains("empty"), "{e}");
        let mut tdreport = vec![0u8; 1024];
        tdreport[0] = 0x81;
        let e = decode(&tdreport).unwrap_err().to_string();
        assert!(e.contains("TDREPORT"), "{e}");
        let e = decode(&[9, 9, 9, 9, 9]).unwrap_err().to_string();
        assert!(e.contains("0909090909"), "{e}");
    }

    #[test]
    fn near_snp_size_reports_sizes() {
        let mut b = vec![0u8; snp::REPORT_LEN - 1];
        b[0] = 2;
        let e = decode(&b).unwrap_err();
        assert!(matches!(
            e,
            EvidenceError::SnpWrongSize { actual, expected } if actual == 1183 && expected == 1184
        ));
    }
}
