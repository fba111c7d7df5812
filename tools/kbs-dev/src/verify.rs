//! What kbs-dev checks in evidence: that it binds the session's runtime-data
//! digest, and the init-data against the launch register. It does not check
//! hardware signatures (no AMD, Intel or NVIDIA collateral here); the real
//! broker's verifiers do.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use cvm_init::broker::binding::report_data;
use cvm_init::initdata::InitData;

/// What kbs-dev reads from evidence (it does not check hardware signatures).
pub struct Claims {
    /// Sample and Azure (the quote's extraData): the 48-byte digest; SNP and
    /// TDX: the 64-byte REPORT_DATA.
    pub report_data: Vec<u8>,
    pub measurement: String,
    /// `SNP HOST_DATA`, `TDX MRCONFIGID` or `sample init_data`.
    pub register: &'static str,
    /// Its value; empty for sample evidence without `init_data`.
    pub host_data: Vec<u8>,
}

fn b64_field(evidence: &serde_json::Value, tee: &str, field: &str) -> Result<Vec<u8>, String> {
    let v = evidence
        .get(field)
        .and_then(|v| v.as_str())
        .ok_or(format!("{tee} evidence has no {field} string"))?;
    STANDARD
        .decode(v)
        .map_err(|e| format!("{tee} {field} is not standard base64: {e}"))
}

fn claims(tee: &str, evidence: &serde_json::Value) -> Result<Claims, String> {
    match tee {
        "sample" => Ok(Claims {
            report_data: b64_field(evidence, tee, "report_data")?,
            measurement: "sample".to_owned(),
            register: "sample init_data",
            host_data: match evidence.get("init_data") {
                Some(_) => b64_field(evidence, tee, "init_data")?,
                None => Vec::new(),
            },
        }),
        "snp" => {
            let report: sev::firmware::guest::AttestationReport = serde_json::from_value(
                evidence
                    .get("attestation_report")
                    .cloned()
                    .ok_or("snp evidence has no attestation_report")?,
            )
            .map_err(|e| format!("snp attestation_report: {e}"))?;
            Ok(Claims {
                report_data: report.report_data.to_vec(),
                measurement: hex::encode(report.measurement),
                register: "SNP HOST_DATA",
                host_data: report.host_data.to_vec(),
            })
        }
        "tdx" => {
            let quote = b64_field(evidence, tee, "quote")?;
            let quote = cvm_init::evidence::tdx::parse_quote(&quote).map_err(|e| e.to_string())?;
            Ok(Claims {
                report_data: quote.report_data().to_vec(),
                measurement: hex::encode(quote.measurement()),
                register: "TDX MRCONFIGID",
                host_data: quote.mr_config_id().to_vec(),
            })
        }
        "az-snp-vtpm" | "az-tdx-vtpm" => azure_claims(tee, evidence),
        other => Err(format!("TEE {other} is not supported by kbs-dev")),
    }
}

/// Azure vTPM evidence: the claims bind the AK, the AK signed the quote,
/// the PCRs hash to it (all in `parse_evidence`); the nonce is the quote's
/// extraData, and in v2 also the HCL report's `user-data`, whose SHA-256
/// is in the hardware report. Not checked: the AMD/Intel signature over
/// the hardware report (kbs-dev has no collateral; the test rigs use
/// stand-in reports).
fn azure_claims(tee: &str, evidence: &serde_json::Value) -> Result<Claims, String> {
    let ev = cvm_init::evidence::azure::parse_evidence(evidence).map_err(|e| e.to_string())?;
    if ev.tee() != tee {
        return Err(format!("{tee} evidence holds a {} report", ev.tee()));
    }
    if ev.version == 2 {
        let user = ev.hcl.user_data().unwrap_or_default();
        let n = ev.quote.extra_data.len();
        if user.get(..n) != Some(&ev.quote.extra_data[..]) {
            return Err(format!(
                "{tee} v2: the HCL report's user-data {} does not carry the quoted nonce",
                hex::encode(&user)
            ));
        }
    }
    let measurement = match (&ev.hcl.hw, &ev.td_quote) {
        (cvm_init::evidence::azure::HwReport::Snp(r), _) => hex::encode(r.measurement()),
        (_, Some(q)) => {
            let q = cvm_init::evidence::tdx::parse_quote(q).map_err(|e| e.to_string())?;
            hex::encode(q.measurement())
        }
        _ => return Err(format!("{tee} evidence has no td_quote")),
    };
    Ok(Claims {
        report_data: ev.quote.extra_data.clone(),
        measurement,
        register: "Azure paravisor (no host data)",
        host_data: Vec::new(),
    })
}

/// Checks the evidence binds `digest`; returns its claims.
pub fn verify(
    tee: &str,
    evidence: &serde_json::Value,
    digest: &[u8; 48],
) -> Result<Claims, String> {
    let c = claims(tee, evidence)?;
    let expected = if matches!(tee, "sample" | "az-snp-vtpm" | "az-tdx-vtpm") {
        digest.to_vec()
    } else {
        report_data(digest).to_vec()
    };
    if c.report_data != expected {
        return Err(format!(
            "{tee} REPORT_DATA {} does not bind the runtime-data digest {}",
            hex::encode(&c.report_data),
            hex::encode(digest)
        ));
    }
    Ok(c)
}

/// Checks the init-data's digest (by its own algorithm) against the
/// evidence's HOST_DATA / MRCONFIGID / sample `init_data`, zero-padded or
/// truncated to the hardware register's width, as Trustee does.
pub fn verify_init_data(
    claims: &Claims,
    init_data: &kbs_types::InitData,
) -> Result<String, String> {
    if init_data.format != "toml" {
        return Err(format!(
            "init-data format {:?} is not toml",
            init_data.format
        ));
    }
    let doc = InitData::parse(std::path::Path::new("<init-data>"), init_data.body.clone())
        .map_err(|e| e.to_string())?;
    let register = claims.register;
    if claims.host_data.is_empty() {
        return Err(format!("init-data sent but the evidence has no {register}"));
    }
    let expected = if register == "sample init_data" {
        doc.digest().to_vec()
    } else {
        doc.register_value(claims.host_data.len())
    };
    if claims.host_data != expected {
        return Err(format!(
            "init-data {} digest {} does not match {register} {}",
            doc.algorithm().name(),
            hex::encode(&expected),
            hex::encode(&claims.host_data)
        ));
    }
    Ok(format!(
        "init-data ({}) matches {register} {}",
        doc.algorithm().name(),
        hex::encode(&claims.host_data)
    ))
}
