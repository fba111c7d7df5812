//! Azure confidential VMs: the paravisor's HCL report and the vTPM quote.
//!
//! On Azure the guest never sees the SNP report or TDX quote interface. The
//! paravisor (HCL) puts an *HCL report* in the vTPM (NV index 0x01400001):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0x000 | 4 | magic `HCLA` |
//! | 0x004 | 4 | version (u32 LE) |
//! | 0x008 | 4 | report size |
//! | 0x00C | 4 | request type |
//! | 0x010 | 4 | status |
//! | 0x014 | 12 | reserved |
//! | 0x020 | 1184 | hardware report: an SNP report, or a 1024-byte TDREPORT zero-padded |
//! | 0x4C0 | 20 | runtime data header: data size, version, report type (2 SNP, 4 TDX), hash type (1 SHA-256), claims size |
//! | 0x4D4 | claims size | runtime claims JSON: `keys` (JWKs `HCLAkPub`, `HCLEkPub`), `vm-configuration`, `user-data` |
//!
//! The hardware report's REPORT_DATA is SHA-256(claims) followed by 32 zero
//! bytes: that binds the attestation key (AK) to the hardware report. The
//! guest proves freshness with a TPM2_Quote by that AK over the PCRs, whose
//! `extraData` carries the verifier's nonce ([`TpmQuote`]).
//!
//! Layouts checked against Trustee's `az-snp-vtpm` / `az-tdx-vtpm` samples
//! (`testdata/evidence/other/`).

use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::signature::Verifier;
use rsa::{BigUint, RsaPublicKey};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::snp::{self, SnpReport};
use super::EvidenceError;

pub const HCL_MAGIC: &[u8; 4] = b"HCLA";
const HW_REPORT_AT: usize = 0x20;
const HW_REPORT_LEN: usize = 0x4C0 - 0x20;
const RUNTIME_AT: usize = 0x4C0;
const RUNTIME_HEADER_LEN: usize = 20;
const TDREPORT_LEN: usize = 1024;
/// REPORTMACSTRUCT: type 8, reserved 8, cpusvn 16, tee_tcb_info_hash 48,
/// tee_info_hash 48, then report_data 64.
const TDREPORT_DATA_AT: usize = 128;
/// Claims JSON larger than this is not an HCL report's.
const MAX_CLAIMS: usize = 64 << 10;

/// What the paravisor's report carries.
#[derive(Debug, Clone)]
pub enum HwReport {
    Snp(Box<SnpReport>),
    /// The raw TDREPORT (its quote comes separately, from the host's quote
    /// service).
    TdReport(Box<[u8; TDREPORT_LEN]>),
}

/// A decoded HCL report.
#[derive(Debug, Clone)]
pub struct HclReport {
    pub version: u32,
    pub request_type: u32,
    pub report_type: u32,
    pub hw: HwReport,
    /// The runtime claims exactly as hashed into REPORT_DATA.
    pub claims: Vec<u8>,
    pub claims_json: Value,
}

impl HclReport {
    /// The hardware report's REPORT_DATA.
    pub fn report_data(&self) -> [u8; 64] {
        hw_report_data(&self.hw)
    }

    /// The attestation key from the claims (`HCLAkPub`).
    pub fn ak(&self) -> Result<RsaPublicKey, EvidenceError> {
        jwk(&self.claims_json, "HCLAkPub")
    }

    /// `user-data` from the claims, hex-decoded (the paravisor copies what
    /// the guest wrote to NV index 0x01400002 there).
    pub fn user_data(&self) -> Option<Vec<u8>> {
        self.claims_json
            .get("user-data")
            .and_then(Value::as_str)
            .and_then(|h| hex::decode(h).ok())
    }
}

fn hcl_err(reason: impl Into<String>) -> EvidenceError {
    EvidenceError::Invalid {
        what: "HCL report",
        reason: reason.into(),
    }
}

fn le32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

/// Decodes an HCL report and checks that REPORT_DATA binds its claims.
pub fn parse_hcl(bytes: &[u8]) -> Result<HclReport, EvidenceError> {
    if bytes.len() < RUNTIME_AT + RUNTIME_HEADER_LEN {
        return Err(hcl_err(format!(
            "{} bytes, shorter than the {} of the header, hardware report and runtime header",
            bytes.len(),
            RUNTIME_AT + RUNTIME_HEADER_LEN
        )));
    }
    if &bytes[..4] != HCL_MAGIC {
        return Err(hcl_err("does not start with \"HCLA\""));
    }
    let report_type = le32(bytes, RUNTIME_AT + 8);
    let hash_type = le32(bytes, RUNTIME_AT + 12);
    let claims_len = le32(bytes, RUNTIME_AT + 16) as usize;
    let claims_at = RUNTIME_AT + RUNTIME_HEADER_LEN;
    if claims_len > MAX_CLAIMS || bytes.len() < claims_at + claims_len {
        return Err(hcl_err(format!(
            "runtime claims of {claims_len} bytes do not fit the {}-byte report",
            bytes.len()
        )));
    }
    if hash_type != 1 {
        return Err(hcl_err(format!(
            "runtime data hash type {hash_type}, expected 1 (SHA-256)"
        )));
    }
    let hw_area = &bytes[HW_REPORT_AT..HW_REPORT_AT + HW_REPORT_LEN];
    let hw = match report_type {
        2 => HwReport::Snp(Box::new(snp::parse_report(hw_area)?)),
        4 => {
            if hw_area[0] != 0x81 {
                return Err(hcl_err(format!(
                    "report type 4 (TDX) but the TDREPORT type byte is {:#04x}, not 0x81",
                    hw_area[0]
                )));
            }
            let mut t = Box::new([0u8; TDREPORT_LEN]);
            t.copy_from_slice(&hw_area[..TDREPORT_LEN]);
            HwReport::TdReport(t)
        }
        other => {
            return Err(hcl_err(format!(
                "runtime report type {other}, expected 2 (SNP) or 4 (TDX)"
            )))
        }
    };
    let claims = bytes[claims_at..claims_at + claims_len].to_vec();
    // The binding first: bytes REPORT_DATA does not bind are not read.
    let digest = Sha256::digest(&claims);
    let rd = hw_report_data(&hw);
    if rd[..32] != digest[..] || rd[32..].iter().any(|&b| b != 0) {
        return Err(hcl_err(format!(
            "REPORT_DATA {} is not SHA-256 of the runtime claims ({}) followed by zeros: the claims (and the AK in them) are not the ones the hardware report binds",
            hex::encode(rd),
            hex::encode(digest)
        )));
    }
    let claims_json: Value = serde_json::from_slice(&claims)
        .map_err(|e| hcl_err(format!("runtime claims are not JSON: {e}")))?;
    Ok(HclReport {
        version: le32(bytes, 4),
        request_type: le32(bytes, 12),
        report_type,
        hw,
        claims,
        claims_json,
    })
}

fn hw_report_data(hw: &HwReport) -> [u8; 64] {
    match hw {
        HwReport::Snp(r) => *r.report_data(),
        HwReport::TdReport(t) => {
            let mut rd = [0u8; 64];
            rd.copy_from_slice(&t[TDREPORT_DATA_AT..TDREPORT_DATA_AT + 64]);
            rd
        }
    }
}

/// An RSA JWK from the claims' `keys` by `kid`.
fn jwk(claims: &Value, kid: &str) -> Result<RsaPublicKey, EvidenceError> {
    let key = claims
        .get("keys")
        .and_then(Value::as_array)
        .and_then(|keys| {
            keys.iter()
                .find(|k| k.get("kid").and_then(Value::as_str) == Some(kid))
        })
        .ok_or_else(|| hcl_err(format!("runtime claims hold no key {kid:?}")))?;
    if key.get("kty").and_then(Value::as_str) != Some("RSA") {
        return Err(hcl_err(format!("{kid} is not an RSA key")));
    }
    let part = |name: &str| {
        key.get(name)
            .and_then(Value::as_str)
            .and_then(base64url)
            .map(|b| BigUint::from_bytes_be(&b))
            .ok_or_else(|| hcl_err(format!("{kid}.{name} is not base64url")))
    };
    RsaPublicKey::new(part("n")?, part("e")?)
        .map_err(|e| hcl_err(format!("{kid} is not a usable RSA key: {e}")))
}

fn base64url(s: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .ok()
}

/// A TPM2_Quote as Trustee's vTPM evidence carries it: the `TPMS_ATTEST`
/// message, the raw RSASSA-PKCS1-v1_5/SHA-256 signature and the PCR values.
///
/// `TPMS_ATTEST` (big-endian): magic 0xff544347, type 0x8018 (quote),
/// `qualifiedSigner` (TPM2B_NAME), `extraData` (TPM2B: the nonce),
/// `clockInfo` (clock u64, resetCount u32, restartCount u32, safe u8),
/// `firmwareVersion` u64, then `TPMS_QUOTE_INFO`: `TPML_PCR_SELECTION`
/// (count u32, each: hash alg u16, size u8, bitmap) and `pcrDigest`
/// (TPM2B): the hash of the selected PCR values, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpmQuote {
    pub qualified_signer: Vec<u8>,
    pub extra_data: Vec<u8>,
    pub clock: u64,
    pub reset_count: u32,
    pub restart_count: u32,
    pub firmware_version: u64,
    /// (hash algorithm, selected PCR indices).
    pub selections: Vec<(u16, Vec<u8>)>,
    pub pcr_digest: Vec<u8>,
}

pub const TPM_GENERATED: u32 = 0xff54_4347;
pub const TPM_ST_ATTEST_QUOTE: u16 = 0x8018;
pub const TPM_ALG_SHA256: u16 = 0x000b;

fn quote_err(reason: impl Into<String>) -> EvidenceError {
    EvidenceError::Invalid {
        what: "TPM quote",
        reason: reason.into(),
    }
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], EvidenceError> {
        let s = self
            .b
            .get(self.at..self.at + n)
            .ok_or_else(|| quote_err(format!("truncated at {what} (offset {})", self.at)))?;
        self.at += n;
        Ok(s)
    }
    fn u8(&mut self, what: &str) -> Result<u8, EvidenceError> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &str) -> Result<u16, EvidenceError> {
        let s = self.take(2, what)?;
        Ok(u16::from_be_bytes([s[0], s[1]]))
    }
    fn u32(&mut self, what: &str) -> Result<u32, EvidenceError> {
        let s = self.take(4, what)?;
        Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn u64(&mut self, what: &str) -> Result<u64, EvidenceError> {
        let hi = u64::from(self.u32(what)?);
        Ok(hi << 32 | u64::from(self.u32(what)?))
    }
    fn sized(&mut self, what: &str) -> Result<Vec<u8>, EvidenceError> {
        let n = self.u16(what)? as usize;
        Ok(self.take(n, what)?.to_vec())
    }
}

/// Decodes a `TPMS_ATTEST` of a quote.
pub fn parse_quote(message: &[u8]) -> Result<TpmQuote, EvidenceError> {
    let mut r = Reader { b: message, at: 0 };
    let magic = r.u32("magic")?;
    if magic != TPM_GENERATED {
        return Err(quote_err(format!(
            "magic {magic:#010x}, expected {TPM_GENERATED:#010x} (TPM_GENERATED_VALUE)"
        )));
    }
    let ty = r.u16("type")?;
    if ty != TPM_ST_ATTEST_QUOTE {
        return Err(quote_err(format!(
            "type {ty:#06x}, expected {TPM_ST_ATTEST_QUOTE:#06x} (a quote)"
        )));
    }
    let qualified_signer = r.sized("qualifiedSigner")?;
    let extra_data = r.sized("extraData")?;
    let clock = r.u64("clock")?;
    let reset_count = r.u32("resetCount")?;
    let restart_count = r.u32("restartCount")?;
    r.u8("safe")?;
    let firmware_version = r.u64("firmwareVersion")?;
    let count = r.u32("pcrSelect count")?;
    if count > 16 {
        return Err(quote_err(format!("{count} PCR selections")));
    }
    let mut selections = Vec::new();
    for _ in 0..count {
        let alg = r.u16("pcrSelect hash")?;
        let size = r.u8("sizeofSelect")? as usize;
        let bitmap = r.take(size, "pcrSelect")?;
        let pcrs = (0..size * 8)
            .filter(|i| bitmap[i / 8] & (1 << (i % 8)) != 0)
            .map(|i| i as u8)
            .collect();
        selections.push((alg, pcrs));
    }
    let pcr_digest = r.sized("pcrDigest")?;
    if r.at != message.len() {
        return Err(quote_err(format!(
            "{} bytes after the quote info",
            message.len() - r.at
        )));
    }
    Ok(TpmQuote {
        qualified_signer,
        extra_data,
        clock,
        reset_count,
        restart_count,
        firmware_version,
        selections,
        pcr_digest,
    })
}

/// Checks the quote's signature with `ak`, and that `pcrs` (SHA-256 PCR
/// values, indexed by PCR number) hash to its `pcrDigest`.
pub fn verify_quote(
    message: &[u8],
    signature: &[u8],
    ak: &RsaPublicKey,
    pcrs: &[Vec<u8>],
) -> Result<TpmQuote, EvidenceError> {
    let quote = parse_quote(message)?;
    let sig = Signature::try_from(signature)
        .map_err(|e| quote_err(format!("signature is not an RSA signature: {e}")))?;
    VerifyingKey::<Sha256>::new(ak.clone())
        .verify(message, &sig)
        .map_err(|_| {
            quote_err("the signature does not verify with the AK from the HCL report's runtime claims: the quote was made by another key or altered")
        })?;
    let mut h = Sha256::new();
    for (alg, selected) in &quote.selections {
        if *alg != TPM_ALG_SHA256 {
            return Err(quote_err(format!(
                "PCR bank {alg:#06x}; only SHA-256 ({TPM_ALG_SHA256:#06x}) is read"
            )));
        }
        for &i in selected {
            let v = pcrs
                .get(i as usize)
                .ok_or_else(|| quote_err(format!("PCR {i} is selected but not given")))?;
            h.update(v);
        }
    }
    if h.finalize()[..] != quote.pcr_digest[..] {
        return Err(quote_err(
            "the PCR values given do not hash to the quote's pcrDigest: they are not the quoted PCRs",
        ));
    }
    Ok(quote)
}

/// Trustee's evidence for the `az-snp-vtpm` and `az-tdx-vtpm` TEEs, decoded
/// and checked as far as it can be without the AMD/Intel signatures: the
/// claims bind the AK, the AK signed the quote, the PCRs match it.
#[derive(Debug, Clone)]
pub struct AzureEvidence {
    /// 0 (legacy byte arrays), 1 or 2.
    pub version: u64,
    pub hcl: HclReport,
    pub quote: TpmQuote,
    pub pcrs: Vec<Vec<u8>>,
    /// The VCEK (SNP, DER) when the evidence carries one.
    pub vcek: Option<Vec<u8>>,
    /// The TD quote (TDX).
    pub td_quote: Option<Vec<u8>>,
}

fn json_err(reason: impl Into<String>) -> EvidenceError {
    EvidenceError::Invalid {
        what: "Azure vTPM evidence JSON",
        reason: reason.into(),
    }
}

/// Bytes from a JSON value: a byte array, hex text, or base64(url) text.
fn bytes_of(v: &Value, what: &str) -> Result<Vec<u8>, EvidenceError> {
    use base64::Engine as _;
    match v {
        Value::Array(a) => a
            .iter()
            .map(|x| x.as_u64().and_then(|n| u8::try_from(n).ok()))
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(|| json_err(format!("{what} is an array but not of bytes"))),
        Value::String(s) => hex::decode(s)
            .ok()
            .or_else(|| base64url(s))
            .or_else(|| base64::engine::general_purpose::STANDARD.decode(s).ok())
            .ok_or_else(|| json_err(format!("{what} is neither hex nor base64"))),
        _ => Err(json_err(format!("{what} is not bytes"))),
    }
}

/// Decodes Trustee's `az-snp-vtpm` (v0, v1, v2) or `az-tdx-vtpm` (v0, v1)
/// evidence JSON and checks its internal bindings.
pub fn parse_evidence(json: &Value) -> Result<AzureEvidence, EvidenceError> {
    let field = |k: &str| {
        json.get(k)
            .ok_or_else(|| json_err(format!("no `{k}` field")))
    };
    let version = json.get("version").and_then(Value::as_u64).unwrap_or(0);
    let (hcl_bytes, quote) = if version == 0 && json.get("report").is_some() {
        (bytes_of(field("report")?, "report")?, field("quote")?)
    } else {
        (
            bytes_of(field("hcl_report")?, "hcl_report")?,
            field("tpm_quote")?,
        )
    };
    let hcl = parse_hcl(&hcl_bytes)?;
    let message = bytes_of(
        quote
            .get("message")
            .ok_or_else(|| json_err("no quote message"))?,
        "quote message",
    )?;
    let signature = bytes_of(
        quote
            .get("signature")
            .ok_or_else(|| json_err("no quote signature"))?,
        "quote signature",
    )?;
    let pcrs = quote
        .get("pcrs")
        .and_then(Value::as_array)
        .ok_or_else(|| json_err("no quote pcrs"))?
        .iter()
        .map(|p| bytes_of(p, "PCR value"))
        .collect::<Result<Vec<_>, _>>()?;
    let quote = verify_quote(&message, &signature, &hcl.ak()?, &pcrs)?;
    let vcek = match json.get("vcek") {
        None => None,
        Some(Value::String(s)) if s.contains("-----BEGIN") => Some(
            super::gpu::pem_chain(s)?
                .into_iter()
                .next()
                .ok_or_else(|| json_err("vcek PEM has no certificate"))?,
        ),
        Some(v) => Some(bytes_of(v, "vcek")?),
    };
    let td_quote = json
        .get("td_quote")
        .map(|v| bytes_of(v, "td_quote"))
        .transpose()?;
    Ok(AzureEvidence {
        version,
        hcl,
        quote,
        pcrs,
        vcek,
        td_quote,
    })
}

impl HclReport {
    /// The hardware report as the generic decoder shows it (SNP only).
    fn hw_decoded(&self) -> Option<super::Decoded> {
        match &self.hw {
            HwReport::Snp(r) => Some(super::Decoded::Snp((**r).clone())),
            HwReport::TdReport(_) => None,
        }
    }

    /// Snake-case JSON for `evidence decode --json`.
    pub fn summary_json(&self) -> Value {
        let ak_bits = self
            .ak()
            .ok()
            .map(|k| rsa::traits::PublicKeyParts::size(&k) * 8);
        serde_json::json!({
            "format": "azure-hcl-report",
            "version": self.version,
            "request_type": self.request_type,
            "tee": if self.report_type == 2 { "snp" } else { "tdx" },
            "claims_bytes": self.claims.len(),
            "claims_bound_by_report_data": true,
            "ak_rsa_bits": ak_bits,
            "user_data": self.user_data().map(hex::encode),
            "vm_configuration": self.claims_json.get("vm-configuration"),
            "hardware_report": self.hw_decoded().map(|d| d.summary_json()),
            "tdreport_report_data": matches!(self.hw, HwReport::TdReport(_)).then(|| hex::encode(self.report_data())),
        })
    }
}

impl std::fmt::Display for HclReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tee = if self.report_type == 2 {
            "SNP report"
        } else {
            "TDREPORT"
        };
        writeln!(
            f,
            "Azure HCL report v{} (request type {}), holding a {tee}",
            self.version, self.request_type
        )?;
        writeln!(
            f,
            "  runtime claims: {} bytes; REPORT_DATA = SHA-256 of them: ok",
            self.claims.len()
        )?;
        match self.ak() {
            Ok(k) => writeln!(
                f,
                "  AK (HCLAkPub): RSA-{}",
                rsa::traits::PublicKeyParts::size(&k) * 8
            )?,
            Err(e) => writeln!(f, "  AK: {e}")?,
        }
        if let Some(u) = self.user_data() {
            writeln!(f, "  user-data: {}", hex::encode(u))?;
        }
        if let Some(c) = self.claims_json.get("vm-configuration") {
            writeln!(f, "  vm-configuration: {c}")?;
        }
        match self.hw_decoded() {
            Some(d) => write!(f, "{d}"),
            None => write!(
                f,
                "  TDREPORT report_data: {}",
                hex::encode(self.report_data())
            ),
        }
    }
}

impl AzureEvidence {
    pub fn tee(&self) -> &'static str {
        if self.hcl.report_type == 2 {
            "az-snp-vtpm"
        } else {
            "az-tdx-vtpm"
        }
    }

    pub fn summary_json(&self) -> Value {
        let td = self.td_quote.as_ref().map(|q| {
            super::decode(q)
                .map(|d| d.summary_json())
                .unwrap_or_else(|e| Value::String(e.to_string()))
        });
        serde_json::json!({
            "format": self.tee(),
            "version": self.version,
            "tpm_quote": {
                "signed_by_hcl_ak": true,
                "pcr_digest_matches": true,
                "extra_data": hex::encode(&self.quote.extra_data),
                "pcr_selection": self.quote.selections.iter().map(|(alg, p)| serde_json::json!({"hash_alg": alg, "pcrs": p})).collect::<Vec<_>>(),
                "pcrs": self.pcrs.iter().map(hex::encode).collect::<Vec<_>>(),
                "clock": self.quote.clock,
                "reset_count": self.quote.reset_count,
                "restart_count": self.quote.restart_count,
                "firmware_version": format!("{:#018x}", self.quote.firmware_version),
            },
            "hcl_report": self.hcl.summary_json(),
            "vcek_bytes": self.vcek.as_ref().map(Vec::len),
            "td_quote": td,
        })
    }
}

impl std::fmt::Display for AzureEvidence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "Trustee {} evidence, version {}",
            self.tee(),
            self.version
        )?;
        writeln!(
            f,
            "  TPM quote: signed by the HCL report's AK: ok; PCR digest matches the {} PCR values: ok",
            self.pcrs.len()
        )?;
        writeln!(
            f,
            "  nonce (extraData): {}",
            hex::encode(&self.quote.extra_data)
        )?;
        for (i, p) in self.pcrs.iter().enumerate().take(24) {
            writeln!(f, "  PCR{i:<2} {}", hex::encode(p))?;
        }
        if let Some(v) = &self.vcek {
            writeln!(
                f,
                "  VCEK: {} bytes (verify with `evidence decode` on the inner report and --vcek)",
                v.len()
            )?;
        }
        if let Some(q) = &self.td_quote {
            match super::decode(q) {
                Ok(d) => writeln!(f, "  TD quote:\n{d}")?,
                Err(e) => writeln!(f, "  TD quote: {e}")?,
            }
        }
        write!(f, "{}", self.hcl)
    }
}
