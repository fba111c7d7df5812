//! The simulated TEE (Trustee's `sample`): development only.
//!
//! Its evidence is made up and proves nothing. [`super::select`] refuses it
//! unless the operator opted in (`--allow-simulated-tee` or
//! `attester.allow_simulated = true`), `auto` never chooses it, and every
//! use logs a loud warning (invariant 6). Trustee rates `sample` evidence
//! `Contraindicated`: its stock policy, and any policy that requires an
//! affirming result, refuses it. An allow-all policy does release secrets
//! to it (seen against a real Trustee KBS), so never run one.

use base64::Engine as _;

use super::{AttestError, Attester, HostData, RawEvidence, DIGEST_LEN};

/// Marker at the start of the fake raw report.
pub const FAKE_REPORT_MARKER: &[u8] =
    b"CVM-INIT SIMULATED TEE REPORT - NOT SECURE - NOT HARDWARE EVIDENCE\n";

/// The simulated attester. Built only through [`super::select`] with the
/// opt-in, or directly by tests.
#[derive(Debug)]
pub struct SimAttester {
    /// What a hypervisor would have put in HOST_DATA / MRCONFIGID; empty
    /// when the simulated launch set none.
    host_data: Vec<u8>,
}

impl SimAttester {
    pub(super) fn new() -> Self {
        Self::with_host_data(Vec::new())
    }

    pub(super) fn with_host_data(host_data: Vec<u8>) -> Self {
        SimAttester { host_data }
    }
}

fn warn_loudly(what: &str, bound_hex: &str) {
    log::warn!(
        "!!! SIMULATED TEE: {what} is FAKE (bound {bound_hex}); this VM is NOT attested and \
         secrets released to it are NOT protected. Development only !!!"
    );
}

impl Attester for SimAttester {
    fn tee(&self) -> kbs_types::Tee {
        kbs_types::Tee::Sample
    }

    /// `{"svn":"1","report_data":"<base64 std of the 48-byte digest>"}`:
    /// exactly 48 bytes, standard alphabet, 64 characters (KBS-PROTOCOL.md);
    /// with host data, also `"init_data":"<base64 std>"`. Trustee's sample
    /// verifier ignores that field (it only hashes the init-data document
    /// the client sends), so with the simulated TEE cvm-init's own check
    /// against it ([`crate::initdata::InitData::verify`]) is the only one.
    fn evidence(&self, digest: &[u8; DIGEST_LEN]) -> Result<serde_json::Value, AttestError> {
        warn_loudly("evidence", &hex::encode(digest));
        log::info!(
            "attestation: TEE sample, provider simulated (NOT SECURE), runtime-data digest {}, \
             host data {}",
            hex::encode(digest),
            if self.host_data.is_empty() {
                "none".to_owned()
            } else {
                hex::encode(&self.host_data)
            }
        );
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut evidence = serde_json::json!({
            "svn": "1",
            "report_data": b64.encode(digest),
        });
        if !self.host_data.is_empty() {
            evidence["init_data"] = b64.encode(&self.host_data).into();
        }
        Ok(evidence)
    }

    fn raw(&self, report_data: &[u8; 64]) -> Result<RawEvidence, AttestError> {
        let rd_hex = hex::encode(report_data);
        warn_loudly("raw report", &rd_hex);
        let mut report = FAKE_REPORT_MARKER.to_vec();
        report.extend_from_slice(format!("report_data={rd_hex}\n").as_bytes());
        Ok(RawEvidence {
            report,
            aux: None,
            provider: "simulated (NOT SECURE)".into(),
        })
    }

    fn describe(&self) -> String {
        "SIMULATED TEE (not secure)".into()
    }

    fn host_data(&self) -> Result<HostData, AttestError> {
        warn_loudly("host data", &hex::encode(&self.host_data));
        Ok(HostData {
            register: "simulated host data",
            value: self.host_data.clone(),
            width: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evidence_is_exact_sample_format() {
        let digest: [u8; 48] = std::array::from_fn(|i| i as u8 ^ 0xa5);
        let v = SimAttester::new().evidence(&digest).expect("evidence");
        let obj = v.as_object().expect("object");
        assert_eq!(obj.len(), 2, "{v}");
        assert_eq!(v["svn"], "1");
        let rd = v["report_data"].as_str().expect("string");
        assert_eq!(rd.len(), 64);
        assert!(!rd.contains('=') && !rd.contains('-') && !rd.contains('_'));
        let back = base64::engine::general_purpose::STANDARD
            .decode(rd)
            .expect("std base64");
        assert_eq!(back, digest);
        // The '+' and '/' of the standard alphabet, not '-' '_'.
        let v = SimAttester::new().evidence(&[0xfb; 48]).expect("evidence");
        assert_eq!(v["report_data"], "+/v7".repeat(16));
    }

    #[test]
    fn host_data_is_carried_in_the_evidence() {
        let sim = SimAttester::with_host_data(vec![0xab; 48]);
        let v = sim.evidence(&[1; 48]).expect("evidence");
        assert_eq!(v["init_data"], "q6ur".repeat(16));
        assert_eq!(sim.host_data().expect("host data").value, vec![0xab; 48]);
        let v = SimAttester::new().evidence(&[1; 48]).expect("evidence");
        assert!(v.get("init_data").is_none(), "{v}");
    }

    #[test]
    fn raw_is_marked_fake() {
        let r = SimAttester::new().raw(&[1; 64]).expect("raw");
        assert!(r.report.starts_with(FAKE_REPORT_MARKER));
        assert!(r.provider.contains("NOT SECURE"));
        assert_eq!(SimAttester::new().tee(), kbs_types::Tee::Sample);
    }
}
