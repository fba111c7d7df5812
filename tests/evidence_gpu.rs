//! NVIDIA Hopper attestation reports and certificate chains from Trustee's
//! samples (`testdata/evidence/gpu/`): decoded to the values its upstream
//! test asserts, signature and chain verified; tampering refused.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use cvm_init::evidence::gpu;
use serde_json::Value;

fn read(rel: &str) -> Vec<u8> {
    std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("testdata/evidence/gpu")
            .join(rel),
    )
    .unwrap()
}

fn chain(rel: &str) -> Vec<Vec<u8>> {
    gpu::pem_chain(&String::from_utf8(read(rel)).unwrap()).unwrap()
}

#[test]
fn hopper_report_decodes_to_the_upstream_claims_and_verifies() {
    let r = gpu::parse_report(&read("hopperAttestationReport.txt")).unwrap();
    assert_eq!(
        hex::encode(r.requester_nonce),
        "931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb"
    );
    let claims: Value =
        serde_json::from_slice(&read("hopperAttestationReport-claims.txt")).unwrap();
    assert_eq!(
        r.driver_version().unwrap(),
        claims["config"]["driver_version"]
    );
    assert_eq!(
        r.vbios_version().unwrap(),
        claims["config"]["vbios_version"]
    );
    assert_eq!(r.blocks.len(), 64);
    for b in &r.blocks {
        assert_eq!(
            hex::encode(&b.value),
            claims["measurements"][b.index.to_string()],
            "measurement {}",
            b.index
        );
    }
    let leaf = gpu::verify_chain(&chain("hopper_cert_chain_case1.txt")).unwrap();
    r.verify_signature(&leaf).unwrap();
    // The signing certificate alone is the chain's leaf.
    assert_eq!(chain("hopper_signing_cert.pem")[0], leaf);
    assert_eq!(
        gpu::fingerprint(&gpu::pem_chain(gpu::NVIDIA_ROOT_PEM).unwrap()[0]),
        gpu::NVIDIA_ROOT_SHA256
    );
}

#[test]
fn tampered_reports_and_chains_are_refused() {
    let text = read("hopperAttestationReport.txt");
    let raw = hex::decode(String::from_utf8(text).unwrap().trim()).unwrap();
    let leaf = gpu::verify_chain(&chain("hopper_cert_chain_case1.txt")).unwrap();
    // A signed byte (a measurement), the nonce, the signature.
    for at in [100, 10, raw.len() - 5] {
        let mut b = raw.clone();
        b[at] ^= 1;
        let e = gpu::parse_report(&b)
            .unwrap()
            .verify_signature(&leaf)
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not verify"), "{at}: {e}");
    }
    for n in (0..raw.len()).step_by(131) {
        assert!(gpu::parse_report(&raw[..n]).is_err(), "{n}");
    }
    // A chain missing a link does not reach the root.
    let mut c = chain("hopper_cert_chain_case1.txt");
    c.remove(2);
    let e = gpu::verify_chain(&c).unwrap_err().to_string();
    assert!(e.contains("does not reach"), "{e}");
    // A chain whose root is not NVIDIA's: only the leaf and its issuer.
    let c = chain("hopper_cert_chain_case1.txt")[..1].to_vec();
    assert!(gpu::verify_chain(&c).is_err());
    // Trustee's other sample chains: case 3 lacks the GH100 Identity link
    // order (refused), case 2 is NVIDIA's root alone (no device: refused),
    // case 4 is another complete chain.
    let verdict = |case: &str| {
        gpu::verify_chain(&chain(case))
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    assert!(verdict("hopper_cert_chain_case2.txt")
        .unwrap_err()
        .contains("only NVIDIA's root"));
    assert!(verdict("hopper_cert_chain_case3.txt")
        .unwrap_err()
        .contains("does not reach"));
    verdict("hopper_cert_chain_case4.txt").unwrap();
}
