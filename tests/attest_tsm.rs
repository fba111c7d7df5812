//! configfs-tsm attesters against a kernel emulator on a temporary directory.
//!
//! `FakeKernel` implements `TsmFs` the way configfs-tsm behaves: `mkdir` of
//! a report entry makes `provider`, `generation`, `inblob`, `outblob` (and
//! `auxblob`) appear; a write to `inblob` increments `generation` and makes
//! the report readable; `rmdir` removes the entry. The "TEE" returns a real
//! sample report/quote from `testdata/evidence`, patched by each test.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use cvm_init::attest::snp::SnpAttester;
use cvm_init::attest::tdx::TdxAttester;
use cvm_init::attest::{
    report_data, select_with, AttestError, Attester, AttesterKind, Paths, Tsm, TsmFs,
};
use sev::firmware::guest::AttestationReport;

fn evidence_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/evidence")
}

fn read_sample(rel: &str) -> Vec<u8> {
    std::fs::read(evidence_dir().join(rel)).expect("sample evidence file")
}

const DIGEST: [u8; 48] = [0x5a; 48];
const SNP_REPORT_DATA: std::ops::Range<usize> = 0x50..0x90;

#[derive(Debug)]
struct FakeKernel {
    provider: String,
    outblob: Vec<u8>,
    auxblob: Option<Vec<u8>>,
    /// Extra generation bumps for successive inblob writes (a racing writer).
    race: Mutex<Vec<u64>>,
    /// Every attribute write, in order: (attribute, bytes).
    writes: Mutex<Vec<(String, Vec<u8>)>>,
    /// `mkdir` fails like the kernel does without a provider (ENXIO).
    no_provider: bool,
    /// SNP under an SVSM: the lowest VMPL the guest may ask for.
    privlevel_floor: Option<u64>,
}

impl FakeKernel {
    fn new(provider: &str, outblob: Vec<u8>, auxblob: Option<Vec<u8>>) -> Self {
        FakeKernel {
            provider: provider.into(),
            outblob,
            auxblob,
            race: Mutex::new(Vec::new()),
            writes: Mutex::new(Vec::new()),
            no_provider: false,
            privlevel_floor: None,
        }
    }

    fn written(&self, attr: &str) -> Vec<Vec<u8>> {
        let writes = self.writes.lock().expect("lock");
        writes
            .iter()
            .filter(|(a, _)| a == attr)
            .map(|(_, d)| d.clone())
            .collect()
    }

    fn generation(entry: &Path) -> u64 {
        std::fs::read_to_string(entry.join("generation"))
            .expect("generation")
            .trim()
            .parse()
            .expect("number")
    }
}

impl TsmFs for FakeKernel {
    fn create_dir(&self, path: &Path) -> std::io::Result<()> {
        if self.no_provider {
            return Err(std::io::Error::from_raw_os_error(6)); // ENXIO
        }
        std::fs::create_dir(path)?;
        std::fs::write(path.join("provider"), format!("{}\n", self.provider))?;
        std::fs::write(path.join("generation"), "0\n")?;
        std::fs::write(path.join("inblob"), b"")?;
        std::fs::write(path.join("outblob"), b"")?;
        if self.auxblob.is_some() {
            std::fs::write(path.join("auxblob"), b"")?;
        }
        if let Some(floor) = self.privlevel_floor {
            std::fs::write(path.join("privlevel_floor"), format!("{floor}\n"))?;
            std::fs::write(path.join("privlevel"), format!("{floor}\n"))?;
        }
        Ok(())
    }

    fn remove_dir(&self, path: &Path) -> std::io::Result<()> {
        std::fs::remove_dir_all(path)
    }

    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn write(&self, path: &Path, data: &[u8]) -> std::io::Result<()> {
        std::fs::write(path, data)?;
        let attr = path.file_name().and_then(|n| n.to_str()).expect("attr");
        let entry = path.parent().expect("entry");
        self.writes
            .lock()
            .expect("lock")
            .push((attr.to_owned(), data.to_vec()));
        // Every attribute write bumps generation, as in the kernel.
        let g = Self::generation(entry) + 1;
        std::fs::write(entry.join("generation"), format!("{g}\n"))?;
        if attr == "inblob" {
            let mut race = self.race.lock().expect("lock");
            let extra = if race.is_empty() { 0 } else { race.remove(0) };
            std::fs::write(entry.join("generation"), format!("{}\n", g + extra))?;
            std::fs::write(entry.join("outblob"), &self.outblob)?;
            if let Some(aux) = &self.auxblob {
                std::fs::write(entry.join("auxblob"), aux)?;
            }
        }
        Ok(())
    }
}

/// A temporary root with `<tsm>/report/` laid out, plus `dev/` and the CCEL path.
struct Fixture {
    _dir: tempfile::TempDir,
    paths: Paths,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let paths = Paths {
            tsm: dir.path().join("tsm"),
            dev: dir.path().join("dev"),
            ccel: dir.path().join("CCEL"),
            tpm: dir.path().join("dev/tpmrm0"),
            imds: "http://127.0.0.1:9".into(),
        };
        std::fs::create_dir_all(paths.tsm.join("report")).expect("report dir");
        std::fs::create_dir_all(&paths.dev).expect("dev dir");
        Fixture { _dir: dir, paths }
    }

    fn tsm(&self, k: &Arc<FakeKernel>) -> Tsm {
        Tsm::new(self.paths.tsm.clone(), k.clone())
    }

    /// Every report entry must have been removed.
    fn assert_clean(&self) {
        let left: Vec<_> = std::fs::read_dir(self.paths.tsm.join("report"))
            .expect("report dir")
            .collect();
        assert!(left.is_empty(), "entries left behind: {left:?}");
    }
}

fn snp_report_bound_to(digest: &[u8; 48]) -> Vec<u8> {
    let mut r = read_sample("snp/trustee-genoa-vcek-report.bin");
    r[SNP_REPORT_DATA].copy_from_slice(&report_data(digest));
    r
}

/// The GHCB certificate table built by hand: VCEK entry, zero entry, DER.
fn aux_with_vcek(vcek: &[u8]) -> Vec<u8> {
    let mut t = hex::decode("63da758de6644564adc5f4b93be8accd").expect("guid");
    t.extend_from_slice(&48u32.to_le_bytes());
    t.extend_from_slice(&(vcek.len() as u32).to_le_bytes());
    t.extend_from_slice(&[0u8; 24]);
    t.extend_from_slice(vcek);
    t.resize(8192, 0); // whole pages, as the kernel returns them
    t
}

// ---------------------------------------------------------------- SNP

#[test]
fn snp_foreign_report_data_is_refused() {
    let fx = Fixture::new();
    let k = Arc::new(FakeKernel::new(
        "sev_guest",
        read_sample("snp/trustee-genoa-vcek-report.bin"),
        None,
    ));
    let a = SnpAttester::with_tsm(fx.tsm(&k));
    let err = a.evidence(&DIGEST).expect_err("foreign report");
    assert!(
        matches!(err, AttestError::ReportDataMismatch { .. }),
        "{err}"
    );
    let msg = err.to_string();
    assert!(msg.contains(&hex::encode(report_data(&DIGEST))), "{msg}");
    assert!(msg.contains("7e7320889600c7ac"), "{msg}"); // the sample's own REPORT_DATA
    assert!(a.raw(&report_data(&DIGEST)).is_err());
    fx.assert_clean();
}

#[test]
fn snp_evidence_with_vcek_matches_trustee_form() {
    let fx = Fixture::new();
    let vcek = read_sample("snp/trustee-genoa-vcek.der");
    let k = Arc::new(FakeKernel::new(
        "sev_guest",
        snp_report_bound_to(&DIGEST),
        Some(aux_with_vcek(&vcek)),
    ));
    let a = SnpAttester::with_tsm(fx.tsm(&k));
    assert_eq!(a.tee(), kbs_types::Tee::Snp);
    let v = a.evidence(&DIGEST).expect("evidence");

    // We wrote exactly the REPORT_DATA, once.
    assert_eq!(k.written("inblob"), [report_data(&DIGEST).to_vec()]);
    assert!(
        k.written("privlevel").is_empty(),
        "no floor, no privlevel write"
    );

    // Same JSON as Trustee's sample evidence, but for the REPORT_DATA we bound.
    let mut trustee: serde_json::Value =
        serde_json::from_slice(&read_sample("snp/trustee-snp-evidence-with-certchain.json"))
            .expect("trustee json");
    trustee["attestation_report"]["report_data"] =
        serde_json::to_value(report_data(&DIGEST).to_vec()).expect("json");
    // sev 8 adds the v5 mitigation-vector fields (null for a v3 report); the
    // sample predates them, and serde treats a missing Option as None.
    let mut ours = v.clone();
    let report = ours["attestation_report"].as_object_mut().expect("object");
    for k in ["launch_mit_vector", "current_mit_vector"] {
        assert_eq!(report.remove(k), Some(serde_json::Value::Null), "{k}");
    }
    assert!(
        ours == trustee,
        "evidence differs from Trustee's sample form"
    );

    // Spot checks, independent of the sample JSON.
    let measurement = hex::decode(
        "6a6519d757e68c2e939c9dbbbc1828498e8de35d2766dd05f1a2cca5059d0cf4ae62a36d75c837974dd50b315506e73e",
    )
    .expect("hex");
    assert_eq!(
        v["attestation_report"]["measurement"],
        serde_json::to_value(&measurement).expect("json")
    );
    assert_eq!(v["cert_chain"][0]["cert_type"], "VCEK");
    assert_eq!(
        v["cert_chain"][0]["data"],
        serde_json::to_value(&vcek).expect("json")
    );
    assert_eq!(v["cert_chain"].as_array().expect("array").len(), 1);

    // The verifier side deserialises it with the same crate.
    let back: AttestationReport =
        serde_json::from_value(v["attestation_report"].clone()).expect("sev serde");
    assert_eq!(back.report_data, report_data(&DIGEST));
    fx.assert_clean();
}

#[test]
fn snp_without_auxblob_sends_null_cert_chain() {
    let fx = Fixture::new();
    let k = Arc::new(FakeKernel::new(
        "sev_guest",
        snp_report_bound_to(&DIGEST),
        None,
    ));
    let v = SnpAttester::with_tsm(fx.tsm(&k))
        .evidence(&DIGEST)
        .expect("evidence");
    assert!(v["cert_chain"].is_null(), "{v}");
    assert!(v["attestation_report"].is_object());
    fx.assert_clean();
}

#[test]
fn snp_raw_returns_report_and_auxblob() {
    let fx = Fixture::new();
    let report = snp_report_bound_to(&DIGEST);
    let aux = aux_with_vcek(&read_sample("snp/trustee-genoa-vcek.der"));
    let k = Arc::new(FakeKernel::new(
        "sev_guest",
        report.clone(),
        Some(aux.clone()),
    ));
    let raw = SnpAttester::with_tsm(fx.tsm(&k))
        .raw(&report_data(&DIGEST))
        .expect("raw");
    assert_eq!(raw.report, report);
    assert_eq!(raw.aux, Some(aux));
    assert!(raw.provider.contains("sev_guest"), "{}", raw.provider);
    fx.assert_clean();
}

#[test]
fn snp_malformed_cert_table_is_an_error() {
    let fx = Fixture::new();
    let mut aux = aux_with_vcek(&[1, 2, 3]);
    aux[16..20].copy_from_slice(&u32::MAX.to_le_bytes()); // offset out of bounds
    let k = Arc::new(FakeKernel::new(
        "sev_guest",
        snp_report_bound_to(&DIGEST),
        Some(aux),
    ));
    let err = SnpAttester::with_tsm(fx.tsm(&k))
        .evidence(&DIGEST)
        .expect_err("bad table");
    assert!(matches!(err, AttestError::CertTable { .. }), "{err}");
    fx.assert_clean();
}

// ---------------------------------------------------------------- TDX

fn tdx_quote_bound_to(file: &str, offset: usize, digest: &[u8; 48]) -> Vec<u8> {
    let mut q = read_sample(file);
    q[offset..offset + 64].copy_from_slice(&report_data(digest));
    q
}

#[test]
fn tdx_v4_and_v5_evidence() {
    for (file, offset) in [
        ("tdx/trustee-tdx-quote-v4.dat", 568),
        ("tdx/teekit-gcp-tdx-quote-v4.dat", 568),
        ("tdx/trustee-tdx-quote-v5.dat", 574),
        ("tdx/gotdxguest-quote-v5-sample.dat", 574),
    ] {
        let fx = Fixture::new();
        let quote = tdx_quote_bound_to(file, offset, &DIGEST);
        let k = Arc::new(FakeKernel::new("tdx_guest", quote.clone(), None));
        let a = TdxAttester::new(fx.tsm(&k), fx.paths.ccel.clone());
        assert_eq!(a.tee(), kbs_types::Tee::Tdx);

        // No CCEL: null.
        let v = a.evidence(&DIGEST).expect(file);
        assert_eq!(v.as_object().expect("object").len(), 2, "{file}");
        let b64 = base64::engine::general_purpose::STANDARD;
        assert_eq!(v["quote"], b64.encode(&quote), "{file}");
        assert!(v["cc_eventlog"].is_null(), "{file}");

        // With CCEL: its bytes, standard base64.
        let log = vec![0xfbu8, 0xff, 0x00, 0x01];
        std::fs::write(&fx.paths.ccel, &log).expect("ccel");
        let v = a.evidence(&DIGEST).expect(file);
        assert_eq!(v["cc_eventlog"], "+/8AAQ==", "{file}");

        let raw = a.raw(&report_data(&DIGEST)).expect(file);
        assert_eq!(raw.report, quote);
        assert_eq!(raw.aux, None);
        fx.assert_clean();
    }
}

#[test]
fn tdx_foreign_report_data_is_refused() {
    let fx = Fixture::new();
    let k = Arc::new(FakeKernel::new(
        "tdx_guest",
        read_sample("tdx/trustee-tdx-quote-v5.dat"),
        None,
    ));
    let err = TdxAttester::new(fx.tsm(&k), fx.paths.ccel.clone())
        .evidence(&DIGEST)
        .expect_err("foreign quote");
    assert!(
        matches!(err, AttestError::ReportDataMismatch { .. }),
        "{err}"
    );
    fx.assert_clean();
}

#[test]
fn tdx_patched_at_v4_offset_in_a_v5_quote_is_refused() {
    // Guards the v5 offset: patching 568 (the v4 place) must not pass.
    let fx = Fixture::new();
    let q = tdx_quote_bound_to("tdx/trustee-tdx-quote-v5.dat", 568, &DIGEST);
    let k = Arc::new(FakeKernel::new("tdx_guest", q, None));
    let err = TdxAttester::new(fx.tsm(&k), fx.paths.ccel.clone())
        .evidence(&DIGEST)
        .expect_err("wrong offset");
    assert!(
        matches!(err, AttestError::ReportDataMismatch { .. }),
        "{err}"
    );
}

// ---------------------------------------------------------------- provider, race

#[test]
fn provider_mismatch_is_an_error() {
    let fx = Fixture::new();
    let snp = Arc::new(FakeKernel::new(
        "sev_guest",
        snp_report_bound_to(&DIGEST),
        None,
    ));
    let err = TdxAttester::new(fx.tsm(&snp), fx.paths.ccel.clone())
        .evidence(&DIGEST)
        .expect_err("tdx on sev_guest");
    let AttestError::ProviderMismatch {
        expected, found, ..
    } = &err
    else {
        panic!("wrong error: {err}");
    };
    assert_eq!(
        (expected.as_str(), found.as_str()),
        ("tdx_guest", "sev_guest")
    );
    assert!(snp.written("inblob").is_empty(), "no request made");

    let tdx = Arc::new(FakeKernel::new("tdx_guest", vec![1], None));
    let err = SnpAttester::with_tsm(fx.tsm(&tdx))
        .evidence(&DIGEST)
        .expect_err("snp on tdx_guest");
    assert!(matches!(err, AttestError::ProviderMismatch { .. }), "{err}");

    // select with an explicit kind says so too.
    let err = select_with(AttesterKind::Tdx, false, &fx.paths, snp.clone())
        .err()
        .expect("tdx on sev_guest");
    assert!(matches!(err, AttestError::ProviderMismatch { .. }), "{err}");
    let err = select_with(AttesterKind::Snp, false, &fx.paths, tdx)
        .err()
        .expect("snp on tdx_guest");
    assert!(matches!(err, AttestError::ProviderMismatch { .. }), "{err}");
    fx.assert_clean();
}

#[test]
fn generation_race_retries_once_then_fails() {
    let fx = Fixture::new();
    // One racing write: the retry with a fresh entry succeeds.
    let k = Arc::new(FakeKernel::new(
        "sev_guest",
        snp_report_bound_to(&DIGEST),
        None,
    ));
    *k.race.lock().expect("lock") = vec![1];
    SnpAttester::with_tsm(fx.tsm(&k))
        .evidence(&DIGEST)
        .expect("retry succeeds");
    assert_eq!(k.written("inblob").len(), 2);
    fx.assert_clean();

    // A racing writer on both attempts: refused.
    let k = Arc::new(FakeKernel::new("tdx_guest", vec![0; 8], None));
    *k.race.lock().expect("lock") = vec![1, 5];
    let err = TdxAttester::new(fx.tsm(&k), fx.paths.ccel.clone())
        .evidence(&DIGEST)
        .expect_err("race");
    let AttestError::GenerationRace { before, after, .. } = err else {
        panic!("wrong error: {err}");
    };
    assert_eq!((before, after), (0, 6));
    fx.assert_clean();
}

// ---------------------------------------------------------------- selection

#[test]
fn auto_picks_the_provider_found() {
    let fx = Fixture::new();
    let snp = Arc::new(FakeKernel::new(
        "sev_guest",
        snp_report_bound_to(&DIGEST),
        None,
    ));
    let a = select_with(AttesterKind::Auto, true, &fx.paths, snp).expect("snp");
    assert_eq!(a.tee(), kbs_types::Tee::Snp);
    assert!(a.describe().contains("configfs-tsm"), "{}", a.describe());
    assert!(a.evidence(&DIGEST).is_ok());

    let tdx = Arc::new(FakeKernel::new("tdx_guest", vec![], None));
    let a = select_with(AttesterKind::Auto, true, &fx.paths, tdx).expect("tdx");
    assert_eq!(a.tee(), kbs_types::Tee::Tdx);
    fx.assert_clean();
}

#[test]
fn auto_with_unknown_provider_or_none_registered_lists_what_it_saw() {
    let fx = Fixture::new();
    let other = Arc::new(FakeKernel::new("arm_cca_guest", vec![], None));
    let err = select_with(AttesterKind::Auto, true, &fx.paths, other)
        .err()
        .expect("no usable TEE");
    assert!(matches!(err, AttestError::NoTee { .. }), "{err}");
    assert!(err.to_string().contains("arm_cca_guest"), "{err}");

    let mut k = FakeKernel::new("sev_guest", vec![], None);
    k.no_provider = true;
    let err = select_with(AttesterKind::Auto, true, &fx.paths, Arc::new(k))
        .err()
        .expect("no provider");
    let msg = err.to_string();
    assert!(msg.contains("present but unusable"), "{msg}");
    assert!(
        msg.contains(&fx.paths.dev.join("sev-guest").display().to_string()),
        "{msg}"
    );
    fx.assert_clean();
}

#[test]
fn snp_under_svsm_requests_at_privlevel_floor() {
    let fx = Fixture::new();
    let mut k = FakeKernel::new("sev_guest", snp_report_bound_to(&DIGEST), None);
    k.privlevel_floor = Some(2);
    let k = Arc::new(k);
    SnpAttester::with_tsm(fx.tsm(&k))
        .evidence(&DIGEST)
        .expect("two writes, generation +2, no race");
    let writes = k.writes.lock().expect("lock").clone();
    let attrs: Vec<_> = writes.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(attrs, ["privlevel", "inblob"]);
    assert_eq!(writes[0].1, b"2\n");
    fx.assert_clean();
}

// ------------------------------------------------- host data (init-data)

#[test]
fn host_data_comes_from_a_fresh_report_snp_host_data_and_tdx_mrconfigid() {
    let fx = Fixture::new();
    let mut r = read_sample("snp/trustee-genoa-vcek-report.bin");
    r[SNP_REPORT_DATA].fill(0); // the probe binds nothing
    r[0xC0..0xE0].copy_from_slice(&[0x42; 32]);
    let k = Arc::new(FakeKernel::new("sev_guest", r, None));
    let h = SnpAttester::with_tsm(fx.tsm(&k))
        .host_data()
        .expect("snp host data");
    assert_eq!(
        (h.register, h.value, h.width),
        ("SNP HOST_DATA", vec![0x42; 32], Some(32))
    );
    fx.assert_clean();

    for (file, body) in [
        ("tdx/trustee-tdx-quote-v4.dat", 48),
        ("tdx/trustee-tdx-quote-v5.dat", 54),
    ] {
        let fx = Fixture::new();
        let mut q = read_sample(file);
        q[body + 520..body + 584].fill(0);
        q[body + 184..body + 232].copy_from_slice(&[0x24; 48]);
        let k = Arc::new(FakeKernel::new("tdx_guest", q, None));
        let h = TdxAttester::new(fx.tsm(&k), fx.paths.ccel.clone())
            .host_data()
            .expect(file);
        assert_eq!(
            (h.register, h.value, h.width),
            ("TDX MRCONFIGID", vec![0x24; 48], Some(48)),
            "{file}"
        );
        fx.assert_clean();
    }

    // A report that binds something else is not ours: refused as always.
    let fx = Fixture::new();
    let k = Arc::new(FakeKernel::new(
        "sev_guest",
        read_sample("snp/trustee-genoa-vcek-report.bin"),
        None,
    ));
    let err = SnpAttester::with_tsm(fx.tsm(&k))
        .host_data()
        .expect_err("foreign report");
    assert!(
        matches!(err, AttestError::ReportDataMismatch { .. }),
        "{err}"
    );
}
