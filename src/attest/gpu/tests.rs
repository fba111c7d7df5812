#![allow(clippy::unwrap_used)]

use std::cell::Cell;

use super::*;

const REPORT_HEX: &str = include_str!("../../../testdata/evidence/gpu/hopperAttestationReport.txt");
const CHAIN: &str = include_str!("../../../testdata/evidence/gpu/hopper_cert_chain_case1.txt");
const SAMPLE_NONCE: &str = "931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb";

fn sample_nonce() -> [u8; 32] {
    hex::decode(SAMPLE_NONCE).unwrap().try_into().unwrap()
}

/// NVML as a value: the sample report (signed over its own nonce) and chain.
struct Fake {
    count: u32,
    cc: CcState,
    report: Vec<u8>,
    ready: std::rc::Rc<Cell<bool>>,
    arch: u32,
}

impl Fake {
    fn new() -> Self {
        Fake {
            count: 1,
            cc: CcState {
                environment: 2,
                cc_feature: 1,
                dev_tools_mode: 0,
            },
            report: hex::decode(REPORT_HEX.trim()).unwrap(),
            ready: Default::default(),
            arch: ARCH_HOPPER,
        }
    }
}

impl Gpus for Fake {
    fn describe(&self) -> String {
        "fake".into()
    }
    fn list(&self) -> Result<Vec<GpuId>, GpuError> {
        Ok((0..self.count)
            .map(|index| GpuId {
                index,
                uuid: format!("GPU-fake-{index}"),
                arch: self.arch,
            })
            .collect())
    }
    fn cc_state(&self) -> Result<CcState, GpuError> {
        Ok(self.cc)
    }
    fn ready(&self) -> Result<bool, GpuError> {
        Ok(self.ready.get())
    }
    fn set_ready(&self) -> Result<(), GpuError> {
        self.ready.set(true);
        Ok(())
    }
    fn report(&self, _: &GpuId, _: &[u8; 32]) -> Result<Vec<u8>, GpuError> {
        Ok(self.report.clone())
    }
    fn cert_chain(&self, _: &GpuId) -> Result<Vec<u8>, GpuError> {
        Ok(CHAIN.as_bytes().to_vec())
    }
}

fn collector(policy: GpuPolicy, fake: Fake) -> Result<Option<GpuCollector>, GpuError> {
    GpuCollector::with_gpus(policy, Box::new(fake))
}

#[test]
fn the_sample_collects_into_trustee_evidence_json() {
    let c = collector(GpuPolicy::Required, Fake::new())
        .unwrap()
        .unwrap();
    let v = c.collect(&sample_nonce()).unwrap();
    let list = v["device_evidence_list"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["arch"], "HOPPER");
    assert_eq!(list[0]["uuid"], "GPU-fake-0");
    let report = STANDARD
        .decode(list[0]["evidence"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        hex::encode(spdm::parse_report(&report).unwrap().requester_nonce),
        SAMPLE_NONCE
    );
    let chain = STANDARD
        .decode(list[0]["certificate"].as_str().unwrap())
        .unwrap();
    assert_eq!(chain, CHAIN.as_bytes());
}

#[test]
fn a_report_over_another_nonce_is_refused_naming_the_gpu() {
    let mut fake = Fake::new();
    fake.count = 2;
    let c = collector(GpuPolicy::IfPresent, fake).unwrap().unwrap();
    let e = c.collect(&[7; 32]).unwrap_err();
    assert!(matches!(e, GpuError::NonceMismatch { .. }), "{e}");
    let e = e.to_string();
    assert!(
        e.contains("GPU 0 (GPU-fake-0)") && e.contains(SAMPLE_NONCE),
        "{e}"
    );
}

#[test]
fn a_report_that_does_not_verify_locally_is_still_sent() {
    let mut fake = Fake::new();
    let n = fake.report.len();
    fake.report[n - 1] ^= 1; // the signature
    let c = collector(GpuPolicy::Required, fake).unwrap().unwrap();
    c.collect(&sample_nonce()).unwrap();
}

#[test]
fn a_malformed_report_is_refused_naming_the_gpu() {
    let mut fake = Fake::new();
    fake.report.truncate(100);
    let c = collector(GpuPolicy::Required, fake).unwrap().unwrap();
    let e = c.collect(&sample_nonce()).unwrap_err().to_string();
    assert!(
        e.starts_with("GPU 0 (GPU-fake-0): GPU attestation report"),
        "{e}"
    );
}

#[test]
fn cc_off_devtools_and_sim_are_refused_naming_every_gpu_and_the_fix() {
    let with = |f: fn(&mut CcState)| {
        let mut fake = Fake::new();
        fake.count = 2;
        f(&mut fake.cc);
        collector(GpuPolicy::IfPresent, fake)
            .unwrap_err()
            .to_string()
    };
    let e = with(|s| s.cc_feature = 0);
    assert!(e.contains("GPU 0 (GPU-fake-0), GPU 1 (GPU-fake-1)"), "{e}");
    assert!(e.contains("nvidia-smi conf-compute -scc on"), "{e}");
    let e = with(|s| s.dev_tools_mode = 1);
    assert!(
        e.contains("devtools") && e.contains("GPU 1 (GPU-fake-1)"),
        "{e}"
    );
    let e = with(|s| s.environment = 1);
    assert!(e.contains("SIM") && e.contains("not PROD"), "{e}");
}

#[test]
fn no_gpu_is_an_error_only_when_required() {
    let mut fake = Fake::new();
    fake.count = 0;
    let e = collector(GpuPolicy::Required, fake).unwrap_err();
    assert!(matches!(e, GpuError::NoGpu), "{e}");
    let mut fake = Fake::new();
    fake.count = 0;
    assert!(collector(GpuPolicy::IfPresent, fake).unwrap().is_none());
    assert!(collector(GpuPolicy::None, Fake::new()).unwrap().is_none());
}

#[test]
fn policy_none_never_loads_nvml_and_a_missing_library_depends_on_the_policy() {
    let missing = Path::new("/nonexistent/libnvidia-ml.so.1");
    assert!(GpuCollector::open(GpuPolicy::None, missing)
        .unwrap()
        .is_none());
    assert!(GpuCollector::open(GpuPolicy::IfPresent, missing)
        .unwrap()
        .is_none());
    let e = GpuCollector::open(GpuPolicy::Required, missing).unwrap_err();
    assert!(matches!(e, GpuError::LibraryMissing { .. }), "{e}");
    assert!(
        e.to_string().contains("/nonexistent/libnvidia-ml.so.1"),
        "{e}"
    );
}

#[test]
fn set_ready_sets_the_ready_state_once() {
    let fake = Fake::new();
    let ready = fake.ready.clone();
    let c = collector(GpuPolicy::Required, fake).unwrap().unwrap();
    assert!(!ready.get());
    c.set_ready().unwrap();
    assert!(ready.get());
    c.set_ready().unwrap();
}

#[test]
fn a_gpu_without_confidential_computing_is_named() {
    let fake = Fake {
        arch: 7, // Ampere
        ..Fake::new()
    };
    let err =
        GpuCollector::with_gpus(GpuPolicy::IfPresent, Box::new(fake)).expect_err("ampere refused");
    let msg = err.to_string();
    assert!(msg.contains("GPU 0 (GPU-fake-0)"), "{msg}");
    assert!(msg.contains("code 7"), "{msg}");
}
