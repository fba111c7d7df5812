//! What kbs-dev checks in evidence: that it binds the session's runtime-data
//! digest, and the init-data against the launch register. It does not check
//! SNP or TDX signatures (no AMD or Intel collateral here); the real
//! broker's verifiers do.
//!
//! Additional evidence (`additional_evidence`, a JSON object `{tee:
//! evidence}`): only `nvidia` is known. Every GPU report must decode and
//! carry the session's GPU nonce (the first 32 bytes of SHA-384 of the
//! canonical `{"nonce","tee-pubkey"}`). Its signature and certificate chain
//! to NVIDIA's root (built into cvm-init) are checked too, but by default
//! ([`GpuSignatures::Warn`]) a failure is only logged: tests drive the
//! agent with a stand-in NVML whose sample report was signed over another
//! nonce. `--gpu-signatures require` refuses it.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use cvm_init::broker::binding::{gpu_nonce, report_data, GPU_NONCE_LEN};
use cvm_init::evidence::gpu as spdm;
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

/// Whether a GPU report's signature and chain must verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum GpuSignatures {
    /// Check them and log the result; accept either way.
    Warn,
    /// Refuse a report whose signature or chain does not verify.
    Require,
}

/// Checks `additional_evidence` against the session's runtime data;
/// returns a line for the log per device.
pub fn verify_additional(
    additional: &str,
    nonce: &str,
    tee_pubkey: &kbs_types::TeePubKey,
    signatures: GpuSignatures,
) -> Result<Vec<String>, String> {
    if additional.is_empty() {
        return Ok(Vec::new());
    }
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(additional)
        .map_err(|e| format!("additional_evidence is not a JSON object {{tee: evidence}}: {e}"))?;
    let expected = gpu_nonce(nonce, tee_pubkey).map_err(|e| e.to_string())?;
    let mut notes = Vec::new();
    for (tee, evidence) in &map {
        match tee.as_str() {
            "nvidia" => notes.extend(verify_nvidia(evidence, &expected, signatures)?),
            other => {
                return Err(format!(
                    "additional evidence for {other:?} is not supported by kbs-dev (it checks only \"nvidia\")"
                ))
            }
        }
    }
    Ok(notes)
}

/// Checks NVIDIA device evidence (`{"device_evidence_list": [...]}`)
/// against the expected GPU nonce.
pub fn verify_nvidia(
    evidence: &serde_json::Value,
    expected: &[u8; GPU_NONCE_LEN],
    signatures: GpuSignatures,
) -> Result<Vec<String>, String> {
    let list = evidence
        .get("device_evidence_list")
        .and_then(|l| l.as_array())
        .filter(|l| !l.is_empty())
        .ok_or("nvidia evidence has no non-empty device_evidence_list")?;
    let mut notes = Vec::new();
    for (i, dev) in list.iter().enumerate() {
        let uuid = dev
            .get("uuid")
            .and_then(|u| u.as_str())
            .unwrap_or("unknown");
        let name = format!("nvidia device {i} ({uuid})");
        match dev.get("arch").and_then(|a| a.as_str()) {
            Some("HOPPER" | "Hopper") => {}
            other => {
                return Err(format!(
                    "{name}: arch {other:?} is not supported (HOPPER only)"
                ))
            }
        }
        let report = b64_field(dev, &name, "evidence")?;
        let report = spdm::parse_report(&report).map_err(|e| format!("{name}: {e}"))?;
        if report.requester_nonce != *expected {
            return Err(format!(
                "{name}: report nonce {} does not bind the session's GPU nonce {}",
                hex::encode(report.requester_nonce),
                hex::encode(expected)
            ));
        }
        let chain = b64_field(dev, &name, "certificate")?;
        let chain = String::from_utf8(chain)
            .map_err(|_| format!("{name}: the certificate chain is not PEM text"))?;
        let certs = spdm::pem_chain(&chain).map_err(|e| format!("{name}: {e}"))?;
        let verdict = spdm::verify_chain(&certs).and_then(|leaf| report.verify_signature(&leaf));
        match (verdict, signatures) {
            (Ok(()), _) => notes.push(format!(
                "{name}: nonce binds the session; signature and chain to NVIDIA's root verify"
            )),
            (Err(e), GpuSignatures::Require) => {
                return Err(format!("{name}: {e} (--gpu-signatures require)"))
            }
            (Err(e), GpuSignatures::Warn) => notes.push(format!(
                "{name}: nonce binds the session; signature NOT verified ({e}), accepted because --gpu-signatures warn"
            )),
        }
    }
    Ok(notes)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const REPORT_HEX: &str =
        include_str!("../../../testdata/evidence/gpu/hopperAttestationReport.txt");
    const CHAIN: &str = include_str!("../../../testdata/evidence/gpu/hopper_cert_chain_case1.txt");

    fn sample(report: &[u8]) -> serde_json::Value {
        serde_json::json!({"device_evidence_list": [{
            "arch": "HOPPER", "uuid": "GPU-x",
            "evidence": STANDARD.encode(report),
            "certificate": STANDARD.encode(CHAIN),
        }]})
    }

    fn raw() -> Vec<u8> {
        hex::decode(REPORT_HEX.trim()).unwrap()
    }

    fn nonce(r: &[u8]) -> [u8; 32] {
        r[4..36].try_into().unwrap()
    }

    #[test]
    fn the_signed_sample_passes_even_when_signatures_are_required() {
        let r = raw();
        let notes = verify_nvidia(&sample(&r), &nonce(&r), GpuSignatures::Require).unwrap();
        assert!(notes[0].contains("verify"), "{notes:?}");
    }

    #[test]
    fn another_nonce_is_refused_and_a_spliced_one_needs_warn() {
        let r = raw();
        let e = verify_nvidia(&sample(&r), &[0; 32], GpuSignatures::Warn).unwrap_err();
        assert!(e.contains("does not bind"), "{e}");
        let mut spliced = r.clone();
        spliced[4..36].copy_from_slice(&[7; 32]);
        let notes = verify_nvidia(&sample(&spliced), &[7; 32], GpuSignatures::Warn).unwrap();
        assert!(notes[0].contains("NOT verified"), "{notes:?}");
        let e = verify_nvidia(&sample(&spliced), &[7; 32], GpuSignatures::Require).unwrap_err();
        assert!(e.contains("does not verify"), "{e}");
    }

    #[test]
    fn unknown_tees_and_non_objects_are_refused() {
        let key = cvm_init::broker::jwe::EphemeralKey::generate(
            cvm_init::broker::jwe::KeyAlg::EcdhEsA256Kw,
        )
        .unwrap()
        .public_jwk();
        let e = verify_additional(r#"{"tpm":{}}"#, "n", &key, GpuSignatures::Warn).unwrap_err();
        assert!(e.contains("\"tpm\" is not supported"), "{e}");
        let e = verify_additional("[1]", "n", &key, GpuSignatures::Warn).unwrap_err();
        assert!(e.contains("not a JSON object"), "{e}");
        assert!(verify_additional("", "n", &key, GpuSignatures::Warn)
            .unwrap()
            .is_empty());
    }

    fn azure(name: &str) -> serde_json::Value {
        let path = format!(
            "{}/../../testdata/evidence/other/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }

    #[test]
    fn azure_v2_sample_binds_its_nonce_and_no_other() {
        let ev = azure("azure-snp-vtpm/evidence-v2.json");
        let quoted = cvm_init::evidence::azure::parse_evidence(&ev)
            .unwrap()
            .quote
            .extra_data;
        let digest: [u8; 48] = quoted.clone().try_into().unwrap();
        let c = verify("az-snp-vtpm", &ev, &digest).unwrap();
        assert_eq!(c.report_data, quoted);
        assert!(!c.measurement.is_empty());
        let mut other = digest;
        other[0] ^= 1;
        let e = verify("az-snp-vtpm", &ev, &other).err().unwrap();
        assert!(e.contains("does not bind"), "{e}");
        // The same evidence under the other Azure TEE name is refused.
        let e = verify("az-tdx-vtpm", &ev, &digest).err().unwrap();
        assert!(e.contains("az-snp-vtpm report"), "{e}");
    }

    #[test]
    fn azure_quote_signed_by_another_key_is_refused() {
        let mut ev = azure("azure-snp-vtpm/evidence-v1.json");
        let sig = ev["tpm_quote"]["signature"].as_str().unwrap().to_owned();
        let flipped = format!(
            "{}{}",
            if sig.starts_with('0') { "1" } else { "0" },
            &sig[1..]
        );
        ev["tpm_quote"]["signature"] = serde_json::Value::String(flipped);
        let e = verify("az-snp-vtpm", &ev, &[0; 48]).err().unwrap();
        assert!(e.contains("AK"), "{e}");
    }
}
