//! Stand-in HCL reports for test rigs: what Azure's paravisor would put in
//! the vTPM, built around an attestation key the rig created.
//!
//! The hardware report inside is a real sample's with its REPORT_DATA
//! replaced by SHA-256 of the new runtime claims, so its AMD or Intel
//! signature no longer verifies: no real verifier accepts it, and cvm-init
//! never builds one itself. It lets the swtpm VM test and the attester's
//! unit tests run the vTPM protocol (claims bind the AK, the AK signs the
//! quote) end to end; kbs-dev checks those bindings, not the vendor
//! signature.

use serde_json::json;

use sha2::{Digest, Sha256};

use super::azure::HCL_MAGIC;
use super::EvidenceError;

/// Where the claims start, and the runtime-data header before them.
const RUNTIME_AT: usize = 0x4C0;
const CLAIMS_AT: usize = 0x4D4;
/// REPORT_DATA inside the HCL report: SNP report + 0x50, TDREPORT + 128.
const SNP_REPORT_DATA_AT: usize = 0x20 + 0x50;
const TDX_REPORT_DATA_AT: usize = 0x20 + 128;

fn bad(reason: impl Into<String>) -> EvidenceError {
    EvidenceError::Invalid {
        what: "HCL stand-in template",
        reason: reason.into(),
    }
}

/// Runtime claims in the paravisor's form: the AK (modulus and exponent,
/// big-endian) as JWK `HCLAkPub`, a fixed VM configuration, and
/// `user-data` (hex of the 64 bytes the guest wrote).
pub fn claims(ak_modulus: &[u8], ak_exponent: &[u8], user_data: &[u8; 64]) -> Vec<u8> {
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    json!({
        "keys": [{
            "kid": "HCLAkPub",
            "key_ops": ["sign"],
            "kty": "RSA",
            "e": b64(ak_exponent),
            "n": b64(ak_modulus),
        }],
        "vm-configuration": {
            "console-enabled": false,
            "secure-boot": true,
            "tpm-enabled": true,
            "vmUniqueId": "cvm-init-stand-in",
        },
        "user-data": hex::encode_upper(user_data),
    })
    .to_string()
    .into_bytes()
}

/// `template` (a real HCL report) with `claims` as its runtime claims and
/// REPORT_DATA = SHA-256(claims) followed by zeros. The result is exactly
/// as long as its `report_size` says.
pub fn report(template: &[u8], claims: &[u8]) -> Result<Vec<u8>, EvidenceError> {
    if template.len() < CLAIMS_AT || &template[..4] != HCL_MAGIC {
        return Err(bad("not an HCL report"));
    }
    let rd_at = match template[RUNTIME_AT + 8] {
        2 => SNP_REPORT_DATA_AT,
        4 => TDX_REPORT_DATA_AT,
        t => return Err(bad(format!("report type {t}"))),
    };
    let len = u32::try_from(claims.len()).map_err(|_| bad("claims too long"))?;
    let mut out = template[..CLAIMS_AT].to_vec();
    out.extend_from_slice(claims);
    let put = |out: &mut Vec<u8>, at: usize, v: u32| {
        out[at..at + 4].copy_from_slice(&v.to_le_bytes());
    };
    put(&mut out, 8, CLAIMS_AT as u32 + len);
    put(&mut out, RUNTIME_AT, 20 + len);
    put(&mut out, RUNTIME_AT + 16, len);
    out[rd_at..rd_at + 64].fill(0);
    out[rd_at..rd_at + 32].copy_from_slice(&Sha256::digest(claims));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::traits::PublicKeyParts as _;

    #[test]
    fn stand_in_decodes_and_binds_its_claims() {
        for dir in ["azure-snp-vtpm", "azure-tdx-vtpm"] {
            let path = format!(
                "{}/testdata/evidence/other/{dir}/hcl-report.bin",
                env!("CARGO_MANIFEST_DIR")
            );
            let template = std::fs::read(&path).expect("sample");
            let c = claims(&[0xc5; 256], &[1, 0, 1], &[7; 64]);
            let r = report(&template, &c).expect("stand-in");
            let hcl = super::super::azure::parse_hcl(&r).expect("decodes");
            assert_eq!(hcl.claims, c);
            assert_eq!(hcl.user_data(), Some(vec![7; 64]));
            assert_eq!(hcl.ak().expect("ak").n().to_bytes_be(), vec![0xc5; 256]);
        }
    }
}
