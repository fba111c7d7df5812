//! The simulated TEE (Trustee's `sample`): development only.
//!
//! Its evidence is made up and proves nothing. [`super::select`] refuses it
//! unless the operator opted in (`--allow-simulated-tee` or
//! `attester.allow_simulated = true`), `auto` never chooses it, and every
//! use logs a loud warning (invariant 6). Trustee's default policy rejects
//! `sample`, so a real broker will not release secrets to it.

use base64::Engine as _;

use super::{AttestError, Attester, RawEvidence, DIGEST_LEN};

/// Marker at the start of the fake raw report.
pub const FAKE_REPORT_MARKER: &[u8] =
    b"CVM-INIT SIMULATED TEE REPORT - NOT SECURE - NOT HARDWARE EVIDENCE\n";

/// The simulated attester. Built only through [`super::select`] with the
/// opt-in, or directly by tests.
#[derive(Debug)]
pub struct SimAttester {
    _private: (),
}

impl SimAttester {
    pub(super) fn new() -> Self {
        SimAttester { _private: () }
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
    /// exactly 48 bytes, standard alphabet, 64 characters (KBS-PROTOCOL.md).
    fn evidence(&self, digest: &[u8; DIGEST_LEN]) -> Result<serde_json::Value, AttestError> {
        warn_loudly("evidence", &hex::encode(digest));
        log::info!(
            "attestation: TEE sample, provider simulated (NOT SECURE), runtime-data digest {}",
            hex::encode(digest)
        );
        Ok(serde_json::json!({
            "svn": "1",
            "report_data": base64::engine::general_purpose::STANDARD.encode(digest),
        }))
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
    fn raw_is_marked_fake() {
        let r = SimAttester::new().raw(&[1; 64]).expect("raw");
        assert!(r.report.starts_with(FAKE_REPORT_MARKER));
        assert!(r.provider.contains("NOT SECURE"));
        assert_eq!(SimAttester::new().tee(), kbs_types::Tee::Sample);
    }
}
