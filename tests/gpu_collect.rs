//! NVIDIA GPU evidence through the real dlopen/FFI path, against the
//! stand-in NVML (`tools/nvml-stub`, built here): the collector's checks
//! in-process, and the agent binary against the development broker with
//! the simulated CPU TEE and a GPU in the stub's `echo` mode.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use cvm_init::attest::gpu::{GpuCollector, GpuError};
use cvm_init::config::GpuPolicy;
use cvm_init::evidence::gpu as spdm;

const SAMPLE_NONCE: &str = "931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb";
const STUB_UUID: &str = "GPU-00000000-stub-0000-0000-000000000000";
const SECRET: &[u8] = b"gpu-gated secret\n";

mod support;
use support::{build, Broker};

fn stub() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| build("nvml-stub", "libnvml_stub.so"))
}

fn kbs_dev() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| build("kbs-dev", "kbs-dev"))
}

fn sample_nonce() -> [u8; 32] {
    hex::decode(SAMPLE_NONCE).unwrap().try_into().unwrap()
}

/// Opens the stub in `mode`. The stub reads NVML_STUB_MODE at every call,
/// so all in-process scenarios run in this one test, one after the other;
/// the other tests here pass the mode to child processes only.
fn open(mode: &str, policy: GpuPolicy) -> Result<Option<GpuCollector>, GpuError> {
    std::env::set_var("NVML_STUB_MODE", mode);
    GpuCollector::open(policy, stub())
}

#[test]
fn the_collector_through_nvml_ffi() {
    // ok: the sample, over its own nonce, which the caller passes as ours.
    let c = open("ok", GpuPolicy::Required).unwrap().unwrap();
    assert_eq!(c.devices()[0].uuid, STUB_UUID);
    let v = c.collect(&sample_nonce()).unwrap();
    let dev = &v["device_evidence_list"][0];
    assert_eq!(dev["arch"], "HOPPER");
    assert_eq!(dev["uuid"], STUB_UUID);
    let report = STANDARD.decode(dev["evidence"].as_str().unwrap()).unwrap();
    let report = spdm::parse_report(&report).unwrap();
    assert_eq!(hex::encode(report.requester_nonce), SAMPLE_NONCE);
    let chain = STANDARD
        .decode(dev["certificate"].as_str().unwrap())
        .unwrap();
    let leaf = spdm::verify_chain(&spdm::pem_chain(std::str::from_utf8(&chain).unwrap()).unwrap())
        .unwrap();
    report.verify_signature(&leaf).unwrap();

    // A report over another nonce than ours is refused, naming the GPU.
    let e = c.collect(&[1; 32]).unwrap_err();
    assert!(matches!(e, GpuError::NonceMismatch { .. }), "{e}");
    assert!(
        e.to_string().contains(&format!("GPU 0 ({STUB_UUID})")),
        "{e}"
    );
    drop(c);

    // echo: the report carries whatever nonce we ask for.
    let c = open("echo", GpuPolicy::Required).unwrap().unwrap();
    let v = c.collect(&[9; 32]).unwrap();
    let report = STANDARD
        .decode(v["device_evidence_list"][0]["evidence"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        spdm::parse_report(&report).unwrap().requester_nonce,
        [9; 32]
    );
    drop(c);

    // CC off, devtools, SIM: refused for either policy, naming the GPU.
    for (mode, what) in [
        ("cc-off", "nvidia-smi conf-compute -scc on"),
        ("devtools", "devtools mode"),
        ("sim", "not PROD"),
        ("ampere", "not Hopper (9) or Blackwell (10)"),
    ] {
        for policy in [GpuPolicy::IfPresent, GpuPolicy::Required] {
            let e = open(mode, policy).unwrap_err().to_string();
            assert!(e.contains(&format!("GPU 0 ({STUB_UUID})")), "{mode}: {e}");
            assert!(e.contains(what), "{mode}: {e}");
        }
    }

    // No GPU, or the library present without a driver: nothing for
    // if-present, an error for required.
    assert!(open("no-gpu", GpuPolicy::IfPresent).unwrap().is_none());
    let e = open("no-gpu", GpuPolicy::Required).unwrap_err();
    assert!(matches!(e, GpuError::NoGpu), "{e}");
    assert!(open("no-driver", GpuPolicy::IfPresent).unwrap().is_none());
    let e = open("no-driver", GpuPolicy::Required)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("nvmlInit_v2") && e.contains("Driver Not Loaded"),
        "{e}"
    );

    // No library at all.
    let missing = Path::new("/nonexistent/libnvidia-ml.so.1");
    assert!(GpuCollector::open(GpuPolicy::IfPresent, missing)
        .unwrap()
        .is_none());
    let e = GpuCollector::open(GpuPolicy::Required, missing).unwrap_err();
    assert!(matches!(e, GpuError::LibraryMissing { .. }), "{e}");
    // none never loads NVML, not even a library that is not there.
    assert!(GpuCollector::open(GpuPolicy::None, missing)
        .unwrap()
        .is_none());
    std::env::remove_var("NVML_STUB_MODE");
}

/// kbs-dev on plain HTTP (loopback), serving `SECRET` as `default/gpu/key`.
fn start(extra: &[&str]) -> Broker {
    Broker::start(kbs_dev(), "gpu/key", SECRET, false, extra)
}

/// `cvm-init fetch default/gpu/key` with `gpus = "<policy>"`, the dynamic
/// loader pointed at a directory where `libnvidia-ml.so.1` is the stub
/// (or at an empty one: `mode` None), the stub in `mode`.
struct Run {
    out: Output,
    target: PathBuf,
    calls: PathBuf,
    _dir: tempfile::TempDir,
}

impl Run {
    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }
    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(&self.calls)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

fn fetch(broker: &Broker, policy: &str, mode: Option<&str>) -> Run {
    let dir = tempfile::tempdir_in("/dev/shm").unwrap();
    let lib = dir.path().join("lib");
    std::fs::create_dir(&lib).unwrap();
    if mode.is_some() {
        std::os::unix::fs::symlink(stub(), lib.join("libnvidia-ml.so.1")).unwrap();
    }
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "[broker]\nurl = \"{}\"\ninsecure_http = true\nrequest_timeout_secs = 5\ndeadline_secs = 10\n\
             [attester]\nkind = \"simulated\"\nallow_simulated = true\ngpus = \"{policy}\"\n",
            broker.url
        ),
    )
    .unwrap();
    let cmdline = dir.path().join("cmdline");
    std::fs::write(&cmdline, "console=ttyS0 ro\n").unwrap();
    let target = dir.path().join("out/key");
    let calls = dir.path().join("calls");
    let out = Command::new(env!("CARGO_BIN_EXE_cvm-init"))
        .arg("--config")
        .arg(&cfg)
        .arg("--cmdline")
        .arg(&cmdline)
        .args(["fetch", "default/gpu/key", "--output"])
        .arg(&target)
        // The loader's own search finds the fixed name NVML_LIBRARY here.
        .env("LD_LIBRARY_PATH", &lib)
        .env("NVML_STUB_MODE", mode.unwrap_or("ok"))
        .env("NVML_STUB_LOG", &calls)
        .output()
        .unwrap();
    Run {
        out,
        target,
        calls,
        _dir: dir,
    }
}

#[test]
fn kbs_dev_accepts_gpu_evidence_bound_to_the_session_and_the_gpu_is_then_set_ready() {
    let b = start(&[]);
    let r = fetch(&b, "required", Some("echo"));
    assert!(r.out.status.success(), "{}\n{}", r.stderr(), b.log());
    assert_eq!(std::fs::read(&r.target).unwrap(), SECRET);
    let log = b.log();
    assert!(
        log.contains(&format!(
            "nvidia device 0 ({STUB_UUID}): nonce binds the session"
        )),
        "{log}"
    );
    assert!(log.contains("/attest ok"), "{log}");
    // The spliced report no longer verifies: the agent says so, and sends it.
    assert!(
        r.stderr().contains("NOT verified locally"),
        "{}",
        r.stderr()
    );
    // The ready state is set last, after the report went to the broker.
    let calls = r.calls();
    let report = calls
        .iter()
        .position(|c| c == "nvmlDeviceGetConfComputeGpuAttestationReport")
        .unwrap();
    let ready = calls
        .iter()
        .position(|c| c == "nvmlSystemSetConfComputeGpusReadyState 1")
        .unwrap();
    assert!(report < ready, "{calls:?}");
}

#[test]
fn a_broker_requiring_gpu_signatures_refuses_the_spliced_report_and_no_gpu_is_set_ready() {
    let b = start(&["--gpu-signatures", "require"]);
    let r = fetch(&b, "required", Some("echo"));
    assert!(!r.out.status.success(), "{}", r.stderr());
    assert!(!r.target.exists());
    assert!(b.log().contains("--gpu-signatures require"), "{}", b.log());
    assert!(
        !r.calls()
            .iter()
            .any(|c| c.starts_with("nvmlSystemSetConfComputeGpusReadyState")),
        "{:?}",
        r.calls()
    );
}

#[test]
fn the_sample_over_its_own_nonce_is_refused_by_the_agent_before_it_is_sent() {
    let b = start(&[]);
    let r = fetch(&b, "required", Some("ok"));
    assert!(!r.out.status.success());
    assert!(r.stderr().contains("not this session's"), "{}", r.stderr());
    assert!(!b.log().contains("/attest"), "{}", b.log());
}

#[test]
fn required_without_library_or_gpu_fails_before_any_network() {
    let b = start(&[]);
    for (mode, what) in [
        (None, "cannot load the NVIDIA NVML library"),
        (Some("no-gpu"), "lists no GPU"),
    ] {
        let r = fetch(&b, "required", mode);
        assert!(!r.out.status.success(), "{mode:?}");
        assert!(r.stderr().contains(what), "{mode:?}: {}", r.stderr());
        assert!(!r.target.exists());
    }
    let r = fetch(&b, "if-present", Some("cc-off"));
    assert!(!r.out.status.success());
    assert!(
        r.stderr().contains(&format!("GPU 0 ({STUB_UUID})")),
        "{}",
        r.stderr()
    );
    assert!(!b.log().contains("/auth"), "{}", b.log());
}

#[test]
fn if_present_without_a_library_fetches_without_gpu_evidence() {
    let b = start(&[]);
    let r = fetch(&b, "if-present", None);
    assert!(r.out.status.success(), "{}\n{}", r.stderr(), b.log());
    assert!(r.stderr().contains("GPUs: none attested"), "{}", r.stderr());
    assert!(!b.log().contains("nvidia"), "{}", b.log());
}

#[test]
fn evidence_collect_gpu_prints_the_nvidia_evidence() {
    let lib = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(stub(), lib.path().join("libnvidia-ml.so.1")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cvm-init"))
        .args(["evidence", "collect-gpu", "--nonce", SAMPLE_NONCE])
        .env("LD_LIBRARY_PATH", lib.path())
        .env("NVML_STUB_MODE", "ok")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("verified locally"), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["device_evidence_list"][0]["uuid"], STUB_UUID);
}
