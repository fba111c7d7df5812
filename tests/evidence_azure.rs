//! Azure vTPM evidence (HCL reports, TPM quotes, Trustee's evidence JSON)
//! from real Azure CVMs, `testdata/evidence/other/`, decoding to the values
//! SOURCES.md lists; and each kind of tampering refused with a clear error.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use cvm_init::evidence::azure::{self, HwReport};
use serde_json::Value;

fn sample(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/evidence/other")
        .join(rel)
}

fn bytes(rel: &str) -> Vec<u8> {
    std::fs::read(sample(rel)).unwrap()
}

fn json(rel: &str) -> Value {
    serde_json::from_slice(&bytes(rel)).unwrap()
}

fn quote_parts(q: &Value) -> (Vec<u8>, Vec<u8>, Vec<Vec<u8>>) {
    let h = |k: &str| hex::decode(q[k].as_str().unwrap()).unwrap();
    let pcrs = q["pcrs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| hex::decode(p.as_str().unwrap()).unwrap())
        .collect();
    (h("message"), h("signature"), pcrs)
}

#[test]
fn snp_hcl_report_binds_its_claims_and_the_ak_signs_the_quote() {
    let hcl = azure::parse_hcl(&bytes("azure-snp-vtpm/hcl-report.bin")).unwrap();
    assert_eq!(hcl.report_type, 2);
    let HwReport::Snp(report) = &hcl.hw else {
        panic!("not SNP")
    };
    let m = hex::encode(report.measurement());
    assert!(m.starts_with("9ac48fca") && m.ends_with("6d17c315"), "{m}");
    assert!(
        report.summary().policy.raw.ends_with("3001f"),
        "{}",
        report.summary().policy.raw
    );
    let (message, signature, pcrs) = quote_parts(&json("azure-snp-vtpm/tpm-quote-v1.json"));
    let quote = azure::verify_quote(&message, &signature, &hcl.ak().unwrap(), &pcrs).unwrap();
    assert_eq!(quote.extra_data, b"challenge");
    assert_eq!(
        quote.selections,
        vec![(0x000b, (0u8..24).collect::<Vec<_>>())]
    );
}

#[test]
fn tdx_hcl_report_carries_a_tdreport_bound_to_its_claims_and_the_td_quote() {
    let hcl = azure::parse_hcl(&bytes("azure-tdx-vtpm/hcl-report.bin")).unwrap();
    assert_eq!(hcl.report_type, 4);
    assert!(matches!(hcl.hw, HwReport::TdReport(_)));
    let quote = cvm_init::evidence::decode(&bytes("azure-tdx-vtpm/td-quote.bin")).unwrap();
    assert_eq!(quote.report_data(), &hcl.report_data());
    let (message, signature, pcrs) = quote_parts(&json("azure-tdx-vtpm/tpm-quote-v1.json"));
    let q = azure::verify_quote(&message, &signature, &hcl.ak().unwrap(), &pcrs).unwrap();
    assert_eq!(q.extra_data, b"challenge");
    assert_eq!(
        hex::encode(&pcrs[0]),
        "782b20b10f55cc46e2142cc2145d548698073e5beb82752c8d7f9279f0d8a273"
    );
}

#[test]
fn trustee_evidence_json_of_every_version_decodes_to_the_upstream_values() {
    let cases = [
        ("azure-snp-vtpm/evidence-v0.json", 0, "e15c44796beabf46abcec7c57e590942041e47497e4ec27571c8b7664f48dced", Some("6368616c6c656e6765")),
        ("azure-snp-vtpm/evidence-v1.json", 1, "e15c44796beabf46abcec7c57e590942041e47497e4ec27571c8b7664f48dced", Some("6368616c6c656e6765")),
        ("azure-snp-vtpm/evidence-v2.json", 2, "84275b2f4312cd4fc6cbe6b152ad3c3683e513d9f1e23c34fca160c8cca7a6a7", Some("982f5c6e45df0ed3f10b6f60b02f0c8390e281300f3805e2279c16168cd6ae9aa398f647caa2338748cd0fd9f5f819ef")),
        ("azure-snp-vtpm/evidence-genoa.json", 0, "afd689d0bb1c5f36f023fbaf574135f555a28a10c1f6b938d2a25e70c7783338", Some("0218488bae25d2509232bf676f1a66a30d7372add909109b36016ef136f2938ca05475f8b46094de6b64270ea35d950f")),
        ("azure-tdx-vtpm/evidence-v1.json", 1, "782b20b10f55cc46e2142cc2145d548698073e5beb82752c8d7f9279f0d8a273", Some("6368616c6c656e6765")),
    ];
    for (file, version, pcr0, nonce) in cases {
        let e = azure::parse_evidence(&json(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(e.version, version, "{file}");
        assert_eq!(hex::encode(&e.pcrs[0]), pcr0, "{file}");
        if let Some(n) = nonce {
            assert_eq!(hex::encode(&e.quote.extra_data), n, "{file}");
        }
        if version == 2 {
            // v2 binds the nonce through the HCL report's user-data too
            // (64 bytes, the nonce zero-padded).
            let user = e.hcl.user_data().unwrap();
            assert_eq!(
                &user[..e.quote.extra_data.len()],
                e.quote.extra_data,
                "{file}"
            );
            assert!(user[e.quote.extra_data.len()..].iter().all(|&b| b == 0));
        }
        if file.contains("tdx") {
            let td = cvm_init::evidence::decode(e.td_quote.as_ref().unwrap()).unwrap();
            assert_eq!(td.report_data(), &e.hcl.report_data());
        } else {
            assert!(e.vcek.is_some(), "{file}");
        }
    }
}

#[test]
fn tampering_is_refused_with_a_clear_error_never_a_panic() {
    let hcl_bytes = bytes("azure-snp-vtpm/hcl-report.bin");
    let hcl = azure::parse_hcl(&hcl_bytes).unwrap();
    let ak = hcl.ak().unwrap();
    let (message, signature, pcrs) = quote_parts(&json("azure-snp-vtpm/tpm-quote-v1.json"));
    let err =
        |r: Result<azure::TpmQuote, cvm_init::evidence::EvidenceError>| r.unwrap_err().to_string();

    // A signed byte flipped (the nonce), the signature flipped, a PCR changed.
    let mut m = message.clone();
    m[40] ^= 1;
    assert!(err(azure::verify_quote(&m, &signature, &ak, &pcrs)).contains("does not verify"));
    let mut s = signature.clone();
    s[10] ^= 1;
    assert!(err(azure::verify_quote(&message, &s, &ak, &pcrs)).contains("does not verify"));
    let mut p = pcrs.clone();
    p[7][0] ^= 1;
    assert!(err(azure::verify_quote(&message, &signature, &ak, &p)).contains("pcrDigest"));
    // Another VM's AK.
    let other = azure::parse_hcl(&bytes("azure-tdx-vtpm/hcl-report.bin"))
        .unwrap()
        .ak()
        .unwrap();
    assert!(err(azure::verify_quote(&message, &signature, &other, &pcrs)).contains("AK"));
    // Truncated quote and report, every length.
    for n in (0..message.len()).step_by(7) {
        assert!(azure::parse_quote(&message[..n]).is_err());
    }
    // (Bytes after the claims are padding: cutting those is harmless.)
    let claims_end = 0x4d4 + hcl.claims.len();
    for n in (0..claims_end).step_by(97) {
        assert!(azure::parse_hcl(&hcl_bytes[..n]).is_err(), "{n}");
    }
    // A claims byte changed: REPORT_DATA no longer binds them (the AK).
    let mut h = hcl_bytes.clone();
    let at = h.windows(8).position(|w| w == b"HCLAkPub").unwrap();
    h[at + 20] ^= 1;
    let e = azure::parse_hcl(&h).unwrap_err().to_string();
    assert!(e.contains("REPORT_DATA"), "{e}");
    // Not an HCL report at all.
    assert!(azure::parse_hcl(&[0u8; 3000])
        .unwrap_err()
        .to_string()
        .contains("HCLA"));
}
