//! TDX quotes (v4, v5).
//!
//! A hand-written, bounds-checked parser: every field is copied out of the
//! input by offset into a typed struct field (no casts of the buffer, no
//! `unsafe`). Layout from Intel's "TDX DCAP Quote Generation Library and
//! Quote Verification Library" spec, cross-checked against go-tdx-guest
//! `abi/abi.go` and the samples in `testdata/evidence/tdx` (see SOURCES.md):
//!
//! ```text
//! v4: header[48] | TD quote body[584]                         | sig_data_len u32 | sig_data
//! v5: header[48] | body_type u16 | body_size u32 | body[584|648] | sig_data_len u32 | sig_data
//! ```
//!
//! The signature data (ECDSA signature, attestation key, QE report and PCK
//! chain) is kept as raw bytes; this module checks only that its declared
//! length fits in the input. Verifying it is the broker's job.

use std::fmt;

use serde::Serialize;

use super::EvidenceError;

/// Largest quote we accept. Real quotes are 5-8 KiB (most of it the PCK
/// chain); anything much bigger is not a quote.
pub const MAX_QUOTE_LEN: usize = 64 * 1024;

/// TEE type of a TDX quote (the header's `tee_type`); 0x00 is SGX.
pub const TEE_TYPE_TDX: u32 = 0x81;

/// Header size, common to v4 and v5.
pub const HEADER_LEN: usize = 48;
/// TD quote body of TDX 1.0 (v4 quotes, v5 body type 2).
pub const TD_BODY_10_LEN: usize = 584;
/// TD quote body of TDX 1.5 (v5 body type 3): the 1.0 body plus
/// `tee_tcb_svn2` and `mr_servicetd`.
pub const TD_BODY_15_LEN: usize = 648;
/// v5 only: `body_type` u16 + `body_size` u32 before the body.
const V5_BODY_DESCRIPTOR_LEN: usize = 6;

// Header offsets.
const H_VERSION: usize = 0;
const H_ATT_KEY_TYPE: usize = 2;
const H_TEE_TYPE: usize = 4;
const H_QE_VENDOR_ID: usize = 12;
const H_USER_DATA: usize = 28;

// Body offsets (relative to the start of the body).
const B_TEE_TCB_SVN: usize = 0;
const B_MR_SEAM: usize = 16;
const B_MR_SIGNER_SEAM: usize = 64;
const B_SEAM_ATTRIBUTES: usize = 112;
const B_TD_ATTRIBUTES: usize = 120;
const B_XFAM: usize = 128;
const B_MR_TD: usize = 136;
const B_MR_CONFIG_ID: usize = 184;
const B_MR_OWNER: usize = 232;
const B_MR_OWNER_CONFIG: usize = 280;
const B_RTMR0: usize = 328;
const B_REPORT_DATA: usize = 520;
const B_TEE_TCB_SVN2: usize = 584;
const B_MR_SERVICETD: usize = 600;

// The offset tables must add up to the spec's sizes.
const _: () = assert!(H_USER_DATA + 20 == HEADER_LEN);
const _: () = assert!(B_RTMR0 + 4 * 48 == B_REPORT_DATA);
const _: () = assert!(B_REPORT_DATA + 64 == TD_BODY_10_LEN);
const _: () = assert!(B_TEE_TCB_SVN2 == TD_BODY_10_LEN);
const _: () = assert!(B_MR_SERVICETD + 48 == TD_BODY_15_LEN);
// SOURCES.md: "MRTD is at quote offset 184 and REPORT_DATA at quote offset 568" (v4).
const _: () = assert!(HEADER_LEN + B_MR_TD == 184);
const _: () = assert!(HEADER_LEN + B_REPORT_DATA == 568);

/// TD_ATTRIBUTES bit 0: the TD is debuggable (the host can read its memory).
pub const TD_ATTR_DEBUG: u64 = 1 << 0;
/// TD_ATTRIBUTES bit 28: EPT violations are not converted to #VE.
pub const TD_ATTR_SEPT_VE_DISABLE: u64 = 1 << 28;
/// TD_ATTRIBUTES bit 30: protection keys for supervisor pages.
pub const TD_ATTR_PKS: u64 = 1 << 30;
/// TD_ATTRIBUTES bit 31: key locker.
pub const TD_ATTR_KL: u64 = 1 << 31;
/// TD_ATTRIBUTES bit 63: the TD may use perfmon.
pub const TD_ATTR_PERFMON: u64 = 1 << 63;

// ---------------------------------------------------------------------------
// Field helpers: read a fixed-size field at an offset, or say what is missing.

fn field<const N: usize>(
    buf: &[u8],
    off: usize,
    name: &'static str,
) -> Result<[u8; N], EvidenceError> {
    off.checked_add(N)
        .and_then(|end| buf.get(off..end))
        .and_then(|s| <[u8; N]>::try_from(s).ok())
        .ok_or(EvidenceError::TdxTruncated {
            field: name,
            needed: off.saturating_add(N),
            actual: buf.len(),
        })
}

fn u16_le(buf: &[u8], off: usize, name: &'static str) -> Result<u16, EvidenceError> {
    field::<2>(buf, off, name).map(u16::from_le_bytes)
}

fn u32_le(buf: &[u8], off: usize, name: &'static str) -> Result<u32, EvidenceError> {
    field::<4>(buf, off, name).map(u32::from_le_bytes)
}

// ---------------------------------------------------------------------------
// Typed quote.

/// Quote header (48 bytes, identical in v4 and v5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuoteHeader {
    /// 4 or 5.
    pub version: u16,
    /// 2 = ECDSA-256 with P-256, 3 = ECDSA-384 with P-384.
    pub att_key_type: u16,
    /// Always [`TEE_TYPE_TDX`] here (checked).
    pub tee_type: u32,
    /// Intel's QE is `939a7233f79c4ca9940a0db3957f0607`.
    pub qe_vendor_id: [u8; 16],
    /// Platform-defined; the first 16 bytes are usually the QE's platform id.
    pub user_data: [u8; 20],
}

/// Which TD quote body the quote carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BodyKind {
    /// TDX 1.0 body, 584 bytes (v4, or v5 body type 2).
    Tdx10,
    /// TDX 1.5 body, 648 bytes (v5 body type 3).
    Tdx15,
}

/// TD quote body (the TD report as the QE signed it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TdQuoteBody {
    /// TDX module TCB SVN.
    pub tee_tcb_svn: [u8; 16],
    /// Measurement of the TDX module.
    pub mr_seam: [u8; 48],
    /// Signer of the TDX module (zero for Intel's).
    pub mr_signer_seam: [u8; 48],
    /// TDX module attributes (zero for now).
    pub seam_attributes: [u8; 8],
    /// TD attributes, little-endian bit field (see the `TD_ATTR_*` constants).
    pub td_attributes: [u8; 8],
    /// XSAVE feature mask.
    pub xfam: [u8; 8],
    /// Build-time measurement of the TD (MRTD).
    pub mr_td: [u8; 48],
    /// Software-defined config id, set by the host at TD creation.
    pub mr_config_id: [u8; 48],
    /// Software-defined owner id.
    pub mr_owner: [u8; 48],
    /// Software-defined owner config.
    pub mr_owner_config: [u8; 48],
    /// Run-time measurement registers 0..3.
    pub rtmr: [[u8; 48]; 4],
    /// The 64 bytes the guest asked to be bound into the quote.
    pub report_data: [u8; 64],
    /// TDX 1.5 only.
    pub tee_tcb_svn2: Option<[u8; 16]>,
    /// TDX 1.5 only: measurement of the service TD bound to this TD.
    pub mr_servicetd: Option<[u8; 48]>,
}

impl TdQuoteBody {
    /// Parse a body of `kind` starting at `off` in `buf`.
    fn parse(buf: &[u8], off: usize, kind: BodyKind) -> Result<Self, EvidenceError> {
        let (tee_tcb_svn2, mr_servicetd) = match kind {
            BodyKind::Tdx10 => (None, None),
            BodyKind::Tdx15 => (
                Some(field(buf, off + B_TEE_TCB_SVN2, "tee_tcb_svn2")?),
                Some(field(buf, off + B_MR_SERVICETD, "mr_servicetd")?),
            ),
        };
        Ok(Self {
            tee_tcb_svn: field(buf, off + B_TEE_TCB_SVN, "tee_tcb_svn")?,
            mr_seam: field(buf, off + B_MR_SEAM, "mr_seam")?,
            mr_signer_seam: field(buf, off + B_MR_SIGNER_SEAM, "mr_signer_seam")?,
            seam_attributes: field(buf, off + B_SEAM_ATTRIBUTES, "seam_attributes")?,
            td_attributes: field(buf, off + B_TD_ATTRIBUTES, "td_attributes")?,
            xfam: field(buf, off + B_XFAM, "xfam")?,
            mr_td: field(buf, off + B_MR_TD, "mr_td")?,
            mr_config_id: field(buf, off + B_MR_CONFIG_ID, "mr_config_id")?,
            mr_owner: field(buf, off + B_MR_OWNER, "mr_owner")?,
            mr_owner_config: field(buf, off + B_MR_OWNER_CONFIG, "mr_owner_config")?,
            rtmr: [
                field(buf, off + B_RTMR0, "rtmr0")?,
                field(buf, off + B_RTMR0 + 48, "rtmr1")?,
                field(buf, off + B_RTMR0 + 96, "rtmr2")?,
                field(buf, off + B_RTMR0 + 144, "rtmr3")?,
            ],
            report_data: field(buf, off + B_REPORT_DATA, "report_data")?,
            tee_tcb_svn2,
            mr_servicetd,
        })
    }

    /// TD_ATTRIBUTES as a number (the field is little-endian).
    pub fn td_attributes_u64(&self) -> u64 {
        u64::from_le_bytes(self.td_attributes)
    }
}

/// A parsed TDX quote. The signed region (header + body) and the signature
/// data are kept so a verifier can check them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TdxQuote {
    /// Quote header.
    pub header: QuoteHeader,
    /// TDX 1.0 or 1.5 body.
    pub body_kind: BodyKind,
    /// The TD quote body.
    pub body: TdQuoteBody,
    signed: Vec<u8>,
    signature_data: Vec<u8>,
    trailing_len: usize,
    trailing_nonzero: bool,
}

/// Parse a TDX quote (v4, or v5 with a TDX 1.0 or 1.5 body).
///
/// Bytes after the declared signature data are tolerated (configfs-tsm and
/// some quote services pad the buffer); [`TdxQuote::trailing_len`] says how
/// many there were. They are not covered by any signature.
pub fn parse_quote(bytes: &[u8]) -> Result<TdxQuote, EvidenceError> {
    if bytes.len() > MAX_QUOTE_LEN {
        return Err(EvidenceError::TdxTooLarge {
            actual: bytes.len(),
            max: MAX_QUOTE_LEN,
        });
    }
    let version = u16_le(bytes, H_VERSION, "header.version")?;
    let att_key_type = u16_le(bytes, H_ATT_KEY_TYPE, "header.att_key_type")?;
    let tee_type = u32_le(bytes, H_TEE_TYPE, "header.tee_type")?;
    if version != 4 && version != 5 {
        return Err(EvidenceError::TdxUnsupportedVersion { version });
    }
    if tee_type != TEE_TYPE_TDX {
        return Err(EvidenceError::TdxWrongTeeType { tee_type });
    }
    let header = QuoteHeader {
        version,
        att_key_type,
        tee_type,
        qe_vendor_id: field(bytes, H_QE_VENDOR_ID, "header.qe_vendor_id")?,
        user_data: field(bytes, H_USER_DATA, "header.user_data")?,
    };

    let (body_kind, body_off, body_len) = if version == 4 {
        (BodyKind::Tdx10, HEADER_LEN, TD_BODY_10_LEN)
    } else {
        let body_type = u16_le(bytes, HEADER_LEN, "v5 body_type")?;
        let body_size = u32_le(bytes, HEADER_LEN + 2, "v5 body_size")?;
        let (kind, expected) = match body_type {
            2 => (BodyKind::Tdx10, TD_BODY_10_LEN),
            3 => (BodyKind::Tdx15, TD_BODY_15_LEN),
            other => return Err(EvidenceError::TdxUnsupportedBodyType { body_type: other }),
        };
        if usize::try_from(body_size).ok() != Some(expected) {
            return Err(EvidenceError::TdxBodySizeMismatch {
                body_type,
                body_size,
                expected,
            });
        }
        (kind, HEADER_LEN + V5_BODY_DESCRIPTOR_LEN, expected)
    };

    let signed_end = body_off + body_len;
    if bytes.len() < signed_end + 4 {
        return Err(EvidenceError::TdxTruncated {
            field: "quote body and signature data length",
            needed: signed_end + 4,
            actual: bytes.len(),
        });
    }
    let body = TdQuoteBody::parse(bytes, body_off, body_kind)?;

    let sig_len = u32_le(bytes, signed_end, "signature data length")?;
    let sig_start = signed_end + 4;
    let available = bytes.len() - sig_start;
    let sig_data = usize::try_from(sig_len)
        .ok()
        .and_then(|n| bytes.get(sig_start..sig_start.checked_add(n)?))
        .ok_or(EvidenceError::TdxSignatureDataOverrun {
            declared: sig_len,
            available,
        })?;
    let trailing = &bytes[sig_start + sig_data.len()..];

    Ok(TdxQuote {
        header,
        body_kind,
        body,
        signed: bytes[..signed_end].to_vec(),
        signature_data: sig_data.to_vec(),
        trailing_len: trailing.len(),
        trailing_nonzero: trailing.iter().any(|b| *b != 0),
    })
}

impl TdxQuote {
    /// Quote version (4 or 5).
    pub fn version(&self) -> u16 {
        self.header.version
    }

    /// REPORT_DATA: the 64 bytes the guest bound into the quote.
    pub fn report_data(&self) -> &[u8; 64] {
        &self.body.report_data
    }

    /// MRTD, the build-time measurement of the TD.
    pub fn measurement(&self) -> &[u8; 48] {
        &self.body.mr_td
    }

    /// MRCONFIGID: host-chosen at TD creation, so usable to bind host config.
    pub fn mr_config_id(&self) -> &[u8; 48] {
        &self.body.mr_config_id
    }

    /// RTMR `i` (0..=3).
    pub fn rtmr(&self, i: usize) -> Option<&[u8; 48]> {
        self.body.rtmr.get(i)
    }

    /// The TD may be debugged by the host (TD_ATTRIBUTES.DEBUG): its memory
    /// and registers are not confidential.
    pub fn debug(&self) -> bool {
        self.body.td_attributes_u64() & TD_ATTR_DEBUG != 0
    }

    /// The bytes the attestation key signed: header, v5 body descriptor, body.
    pub fn signed_bytes(&self) -> &[u8] {
        &self.signed
    }

    /// The signature data (signature, attestation key, certification data).
    pub fn signature_data(&self) -> &[u8] {
        &self.signature_data
    }

    /// Number of bytes after the signature data (padding; not signed).
    pub fn trailing_len(&self) -> usize {
        self.trailing_len
    }

    /// Operator-facing summary (serializable).
    pub fn summary(&self) -> TdxSummary {
        let b = &self.body;
        let attrs = b.td_attributes_u64();
        TdxSummary {
            tee: "tdx",
            version: self.header.version,
            att_key_type: self.header.att_key_type,
            att_key: match self.header.att_key_type {
                2 => "ecdsa-p256",
                3 => "ecdsa-p384",
                _ => "unknown",
            },
            tee_type: format!("{:#x}", self.header.tee_type),
            qe_vendor_id: hex::encode(self.header.qe_vendor_id),
            user_data: hex::encode(self.header.user_data),
            body: self.body_kind,
            tee_tcb_svn: hex::encode(b.tee_tcb_svn),
            mr_seam: hex::encode(b.mr_seam),
            mr_signer_seam: hex::encode(b.mr_signer_seam),
            seam_attributes: hex::encode(b.seam_attributes),
            td_attributes: TdAttributes {
                raw: hex::encode(b.td_attributes),
                debug: attrs & TD_ATTR_DEBUG != 0,
                sept_ve_disable: attrs & TD_ATTR_SEPT_VE_DISABLE != 0,
                pks: attrs & TD_ATTR_PKS != 0,
                kl: attrs & TD_ATTR_KL != 0,
                perfmon: attrs & TD_ATTR_PERFMON != 0,
            },
            xfam: hex::encode(b.xfam),
            mr_td: hex::encode(b.mr_td),
            mr_config_id: hex::encode(b.mr_config_id),
            mr_owner: hex::encode(b.mr_owner),
            mr_owner_config: hex::encode(b.mr_owner_config),
            rtmr0: hex::encode(b.rtmr[0]),
            rtmr1: hex::encode(b.rtmr[1]),
            rtmr2: hex::encode(b.rtmr[2]),
            rtmr3: hex::encode(b.rtmr[3]),
            report_data: hex::encode(b.report_data),
            tee_tcb_svn2: b.tee_tcb_svn2.map(hex::encode),
            mr_servicetd: b.mr_servicetd.map(hex::encode),
            signature_data_len: self.signature_data.len(),
            trailing_bytes: self.trailing_len,
            trailing_bytes_nonzero: self.trailing_nonzero,
            debug: self.debug(),
        }
    }
}

/// Decoded TD_ATTRIBUTES.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TdAttributes {
    /// The 8 bytes as they appear in the quote, hex.
    pub raw: String,
    /// Bit 0: the TD is debuggable; nothing in it is confidential.
    pub debug: bool,
    /// Bit 28.
    pub sept_ve_disable: bool,
    /// Bit 30.
    pub pks: bool,
    /// Bit 31.
    pub kl: bool,
    /// Bit 63.
    pub perfmon: bool,
}

/// What an operator (or a policy) looks at in a TDX quote. Byte strings are
/// lower-case hex in quote byte order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TdxSummary {
    /// Always "tdx".
    pub tee: &'static str,
    pub version: u16,
    pub att_key_type: u16,
    /// "ecdsa-p256", "ecdsa-p384" or "unknown".
    pub att_key: &'static str,
    pub tee_type: String,
    pub qe_vendor_id: String,
    pub user_data: String,
    pub body: BodyKind,
    pub tee_tcb_svn: String,
    pub mr_seam: String,
    pub mr_signer_seam: String,
    pub seam_attributes: String,
    pub td_attributes: TdAttributes,
    pub xfam: String,
    pub mr_td: String,
    pub mr_config_id: String,
    pub mr_owner: String,
    pub mr_owner_config: String,
    pub rtmr0: String,
    pub rtmr1: String,
    pub rtmr2: String,
    pub rtmr3: String,
    pub report_data: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tee_tcb_svn2: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mr_servicetd: Option<String>,
    pub signature_data_len: usize,
    /// Unsigned bytes after the signature data (usually zero padding).
    pub trailing_bytes: usize,
    pub trailing_bytes_nonzero: bool,
    /// TD_ATTRIBUTES.DEBUG: if true, the TD's memory is readable by the host.
    pub debug: bool,
}

impl fmt::Display for TdxQuote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.summary();
        let body = match s.body {
            BodyKind::Tdx10 => "TDX 1.0",
            BodyKind::Tdx15 => "TDX 1.5",
        };
        writeln!(
            f,
            "TDX quote v{} ({body} body, attestation key {}, {} bytes of signature data)",
            s.version, s.att_key, s.signature_data_len
        )?;
        if s.debug {
            writeln!(
                f,
                "  WARNING: TD_ATTRIBUTES.DEBUG is set: the host can read this TD's memory"
            )?;
        }
        writeln!(f, "  qe_vendor_id    {}", s.qe_vendor_id)?;
        writeln!(f, "  tee_tcb_svn     {}", s.tee_tcb_svn)?;
        if let Some(svn2) = &s.tee_tcb_svn2 {
            writeln!(f, "  tee_tcb_svn2    {svn2}")?;
        }
        writeln!(f, "  mr_seam         {}", s.mr_seam)?;
        writeln!(
            f,
            "  td_attributes   {} (debug={} sept_ve_disable={} pks={} kl={} perfmon={})",
            s.td_attributes.raw,
            s.td_attributes.debug,
            s.td_attributes.sept_ve_disable,
            s.td_attributes.pks,
            s.td_attributes.kl,
            s.td_attributes.perfmon
        )?;
        writeln!(f, "  xfam            {}", s.xfam)?;
        writeln!(f, "  mr_td           {}", s.mr_td)?;
        writeln!(f, "  mr_config_id    {}", s.mr_config_id)?;
        writeln!(f, "  mr_owner        {}", s.mr_owner)?;
        writeln!(f, "  mr_owner_config {}", s.mr_owner_config)?;
        for (i, r) in [&s.rtmr0, &s.rtmr1, &s.rtmr2, &s.rtmr3].iter().enumerate() {
            writeln!(f, "  rtmr{i}           {r}")?;
        }
        if let Some(m) = &s.mr_servicetd {
            writeln!(f, "  mr_servicetd    {m}")?;
        }
        write!(f, "  report_data     {}", s.report_data)?;
        if s.trailing_bytes > 0 {
            write!(
                f,
                "\n  ({} unsigned trailing bytes{})",
                s.trailing_bytes,
                if s.trailing_bytes_nonzero {
                    ", not all zero"
                } else {
                    " of zero padding"
                }
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn field_reads_at_offset_and_reports_shortfall() {
        let buf: Vec<u8> = (0u8..10).collect();
        assert_eq!(field::<3>(&buf, 2, "x").unwrap(), [2, 3, 4]);
        assert_eq!(field::<2>(&buf, 8, "x").unwrap(), [8, 9]);
        match field::<2>(&buf, 9, "thing") {
            Err(EvidenceError::TdxTruncated {
                field,
                needed,
                actual,
            }) => {
                assert_eq!((field, needed, actual), ("thing", 11, 10));
            }
            other => panic!("expected TdxTruncated, got {other:?}"),
        }
        // Offsets near usize::MAX must not overflow.
        assert!(field::<4>(&buf, usize::MAX - 1, "x").is_err());
    }

    #[test]
    fn integers_are_little_endian() {
        let buf = [0x34, 0x12, 0x78, 0x56, 0x34, 0x12];
        assert_eq!(u16_le(&buf, 0, "x").unwrap(), 0x1234);
        assert_eq!(u32_le(&buf, 2, "x").unwrap(), 0x1234_5678);
    }

    /// A minimal synthetic v4 quote: header, body with marker bytes, an
    /// empty signature data section.
    fn synthetic_v4(sig: &[u8]) -> Vec<u8> {
        let mut q = vec![0u8; HEADER_LEN + TD_BODY_10_LEN];
        q[0..2].copy_from_slice(&4u16.to_le_bytes());
        q[2..4].copy_from_slice(&2u16.to_le_bytes());
        q[4..8].copy_from_slice(&TEE_TYPE_TDX.to_le_bytes());
        q[HEADER_LEN + B_TD_ATTRIBUTES] = 0x01; // DEBUG
        q[HEADER_LEN + B_TD_ATTRIBUTES + 3] = 0x10; // SEPT_VE_DISABLE
        q[HEADER_LEN + B_MR_TD] = 0xAA;
        q[HEADER_LEN + B_REPORT_DATA + 63] = 0xBB;
        q.extend_from_slice(&u32::try_from(sig.len()).unwrap().to_le_bytes());
        q.extend_from_slice(sig);
        q
    }

    #[test]
    fn synthetic_v4_fields_land_where_expected() {
        let q = parse_quote(&synthetic_v4(&[1, 2, 3])).unwrap();
        assert_eq!(q.measurement()[0], 0xAA);
        assert_eq!(q.report_data()[63], 0xBB);
        assert!(q.debug());
        assert!(q.summary().td_attributes.sept_ve_disable);
        assert_eq!(q.signature_data(), &[1, 2, 3]);
        assert_eq!(q.signed_bytes().len(), HEADER_LEN + TD_BODY_10_LEN);
        assert_eq!(q.trailing_len(), 0);
    }

    #[test]
    fn signature_length_beyond_buffer_is_rejected() {
        let mut q = synthetic_v4(&[1, 2, 3]);
        q.truncate(q.len() - 1);
        match parse_quote(&q) {
            Err(EvidenceError::TdxSignatureDataOverrun {
                declared,
                available,
            }) => assert_eq!((declared, available), (3, 2)),
            other => panic!("expected overrun, got {other:?}"),
        }
    }

    #[test]
    fn wrong_tee_type_and_version_are_named() {
        let mut q = synthetic_v4(&[]);
        q[4] = 0x00;
        assert!(matches!(
            parse_quote(&q),
            Err(EvidenceError::TdxWrongTeeType { tee_type: 0 })
        ));
        let mut q = synthetic_v4(&[]);
        q[0] = 3;
        assert!(matches!(
            parse_quote(&q),
            Err(EvidenceError::TdxUnsupportedVersion { version: 3 })
        ));
    }

    #[test]
    fn oversized_input_is_rejected() {
        let mut q = synthetic_v4(&[]);
        q.resize(MAX_QUOTE_LEN + 1, 0);
        assert!(matches!(
            parse_quote(&q),
            Err(EvidenceError::TdxTooLarge { actual, max }) if actual == MAX_QUOTE_LEN + 1 && max == MAX_QUOTE_LEN
        ));
    }
}
