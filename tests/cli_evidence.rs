//! `cvm-init evidence decode|collect`, run as the real binary on the public
//! samples in `testdata/evidence` (see SOURCES.md there for where
//! each expected value comes from).

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/evidence")
}

fn sample(rel: &str) -> String {
    let p = samples().join(rel);
    assert!(p.exists(), "missing sample {}", p.display());
    p.display().to_string()
}

/// Runs `cvm-init ARGS` with a config path that does not exist, so a test
/// fails if an evidence command starts needing the config.
fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cvm-init"))
        .args(["--config", "/nonexistent/cvm-init-test.toml"])
        .args(args)
        .output()
        .expect("run cvm-init")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts success and returns the parsed JSON on stdout.
fn run_json(args: &[&str]) -> serde_json::Value {
    let o = run(args);
    assert!(
        o.status.success(),
        "{args:?} failed: {}\n{}",
        stderr(&o),
        stdout(&o)
    );
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: stdout is not JSON ({e}): {}", stdout(&o)))
}

fn decode_json(rel: &str) -> serde_json::Value {
    run_json(&["evidence", "decode", &sample(rel), "--json"])
}

/// Asserts exit code 1 (not 0, and not clap's usage error 2); returns stderr.
fn assert_fails(o: &Output) -> String {
    assert_eq!(
        o.status.code(),
        Some(1),
        "expected exit 1; stdout: {} stderr: {}",
        stdout(o),
        stderr(o)
    );
    stderr(o)
}

// ---- decode --json: field values from SOURCES.md ---------------------------

#[test]
fn decode_json_snp_v2_gosevguest_debug() {
    let v = decode_json("snp/gosevguest-milan-report.bin");
    assert_eq!(v["tee"], "snp");
    assert_eq!(v["version"], 2);
    assert_eq!(
        v["measurement"],
        "b07af9620f3b839b47996422ddec6058338951d984e312115131ea82705eaf5b6bdf8a9ece31a5a608eb0cf2e4872b01"
    );
    assert_eq!(
        v["report_data"],
        format!("0102030405{}", "00".repeat(59)).as_str()
    );
    assert_eq!(
        v["report_id"],
        "8edc638e1857c555d21f6b11bda3c8b1b5a09dba4852b4c8ee7aa2f16f22cc0a"
    );
    assert_eq!(v["debug"], true);
    assert_eq!(v["policy"]["debug"], true);
    assert_eq!(v["policy"]["smt"], true);
    assert!(v.get("verification").is_none());
}

#[test]
fn decode_json_snp_v2_trustee_id_block() {
    let v = decode_json("snp/trustee-milan-vcek-report.bin");
    assert_eq!(v["version"], 2);
    assert_eq!(v["guest_svn"], 4);
    assert_eq!(v["family_id"], "01000000000000000000000000000000");
    assert_eq!(v["image_id"], "02000000000000000000000000000000");
    assert_eq!(
        v["measurement"],
        "a1f3930413247bb38cfc171579ea3c12d5fe4901f0c792f63fd75d98f1ef827c23500644e0e692e6be917f9050d3d38c"
    );
    assert_eq!(v["debug"], false);
}

#[test]
fn decode_json_snp_v2_hex_text() {
    let v = decode_json("snp/virtee-milan-report.hex");
    assert_eq!(v["version"], 2);
    assert_eq!(
        v["measurement"],
        "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f"
    );
    // Same report as the binary file.
    assert_eq!(v, decode_json("snp/virtee-milan-report.bin"));
}

#[test]
fn decode_json_snp_v3_vlek() {
    let v = decode_json("snp/trustee-milan-vlek-report.bin");
    assert_eq!(v["version"], 3);
    assert_eq!(v["signing_key"], "vlek");
    assert_eq!(v["vmpl"], 1);
    assert_eq!(v["product"], "milan");
    assert_eq!(
        v["measurement"],
        "8922ebbdd00ec2c541f36a6e7a82a8773a7accb451ed67bc94e740dbe92c93c4e8c9af857f5ceeb5a493df2a570d7bf0"
    );
    assert_eq!(
        v["report_data"],
        "819770b7e6ea6df8dd8fd4dd146b073c0bf4f3ce5b0977ecac486e3a05ed1bd54e2a7ac1f5d1ca02e7d7d5ef9f73b8574fd9359e3a480d741a4478e8a7bc27ca"
    );
    assert_eq!(v["debug"], false);
}

#[test]
fn decode_json_snp_v3_genoa() {
    let v = decode_json("snp/trustee-genoa-vcek-report.bin");
    assert_eq!(v["version"], 3);
    assert_eq!(v["product"], "genoa");
    assert_eq!(v["signing_key"], "vcek");
    assert_eq!(
        v["measurement"],
        "6a6519d757e68c2e939c9dbbbc1828498e8de35d2766dd05f1a2cca5059d0cf4ae62a36d75c837974dd50b315506e73e"
    );
    assert_eq!(
        v["report_data"],
        "7e7320889600c7ac133aea7b896c51f41026002982292a7369559796999c1bf929eef3ff23c46e858f0b1982f9a92b17c51b578d958cde6b0c92978f150cf9b0"
    );
    assert_eq!(
        v["chip_id"],
        "371c55d6d15cb50f16dc31d39a24e300caaabff4431e841111429b73ec45ad67ea6e687ffae7bf84b54a5d0e6d79b3ef6ff0bd8b4cff94c2163af5c5de8718e8"
    );
    assert_eq!(v["debug"], false);
}

#[test]
fn decode_json_snp_v5_gcp() {
    let v = decode_json("snp/teekit-sev-gcp.bin");
    assert_eq!(v["version"], 5);
    assert_eq!(v["report_data"], "00".repeat(64).as_str());
    assert_eq!(
        v["measurement"],
        "b747d55452e0b9e9079770a49e397c5e6d9573581e246da7baac4f28b5cdc5b1b6d19251b8ee600fd16a3708f58406f3"
    );
    assert_eq!(v["launch_mit_vector"], "0xb");
}

#[test]
fn decode_json_tdx_v4_debug_td() {
    let v = decode_json("tdx/trustee-tdx-quote-v4.dat");
    assert_eq!(v["tee"], "tdx");
    assert_eq!(v["version"], 4);
    assert_eq!(v["body"], "tdx10");
    assert_eq!(
        v["mr_td"],
        "705ee9381b8633a9fbe532b52345e8433343d2868959f57889d84ca377c395b689cac1599ccea1b7d420483a9ce5f031"
    );
    assert_eq!(
        v["report_data"],
        "7c71fe2c86eff65a7cf8dbc22b3275689fd0464a267baced1bf94fc1324656aeb755da3d44d098c0c87382f3a5f85b45c8a28fee1d3bdb38342bf96671501429"
    );
    assert_eq!(v["td_attributes"]["raw"], "0100001000000000");
    assert_eq!(v["td_attributes"]["debug"], true);
    assert_eq!(v["td_attributes"]["sept_ve_disable"], true);
    assert_eq!(v["debug"], true);
}

#[test]
fn decode_json_tdx_v4_cos_padded() {
    let v = decode_json("tdx/cos-113/cos-113-tdx-quote.dat");
    assert_eq!(v["version"], 4);
    assert_eq!(
        v["mr_td"],
        "dae67181d3d65e073ad8f95b7907d5e927bfe9761c9ff3e9b89734a45d8954dba41394c7717cb2735396c1d04231f94a"
    );
    assert_eq!(v["report_data"], "00".repeat(64).as_str());
    assert_eq!(v["signature_data_len"], 4299);
    assert_eq!(v["trailing_bytes"], 3065);
    assert_eq!(v["trailing_bytes_nonzero"], false);
    assert_eq!(v["debug"], false);
}

#[test]
fn decode_json_tdx_v5() {
    let v = decode_json("tdx/trustee-tdx-quote-v5.dat");
    assert_eq!(v["tee"], "tdx");
    assert_eq!(v["version"], 5);
    assert_eq!(v["body"], "tdx15");
    assert_eq!(
        v["mr_td"],
        "dfba221b48a22af8511542ee796603f37382800840dcd978703909bf8e64d4c8a1e9de86e7c9638bfcba422f3886400a"
    );
    assert_eq!(
        v["report_data"],
        "6d6ab13b046cff606ac0074be13981b07b6325dba10b5facc96febf551c0c3be2b75f92fe1f88f4bb996969ad0174b4b7a70261b7b85c844f4b33a4674fd049f"
    );
    assert_eq!(
        v["mr_servicetd"],
        "383c87d3bbb047b2d171eaca95312ede99f258088dc788f6ae2ccf8b6dd848fe8d47629e08b3f6cbd4a00dd47a5a033d"
    );
    assert_eq!(v["debug"], false);
}

// ---- decode, text mode ------------------------------------------------------

#[test]
fn decode_text_prints_measurement_snp() {
    let o = run(&[
        "evidence",
        "decode",
        &sample("snp/gosevguest-milan-report.bin"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("SEV-SNP report v2"), "{out}");
    assert!(
        out.contains(
            "b07af9620f3b839b47996422ddec6058338951d984e312115131ea82705eaf5b6bdf8a9ece31a5a608eb0cf2e4872b01"
        ),
        "{out}"
    );
    assert!(out.contains("DEBUG"), "{out}");
    assert!(!out.contains("verified"), "{out}");
}

#[test]
fn decode_text_prints_mr_td_tdx() {
    let o = run(&[
        "evidence",
        "decode",
        &sample("tdx/gotdxguest-quote-v5-sample.dat"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("TDX quote v5"), "{out}");
    assert!(
        out.contains(
            "7348651a34b2d2d3462822e3a750ec6110125f36757c78480bbfc69cc0d21fb001a1ced3ee19747dda8f750c3bc8f876"
        ),
        "{out}"
    );
}

// ---- decode --vcek ------------------------------------------------------------

#[test]
fn verify_genoa_vcek_builtin_roots_json() {
    let v = run_json(&[
        "evidence",
        "decode",
        &sample("snp/trustee-genoa-vcek-report.bin"),
        "--json",
        "--vcek",
        &sample("snp/trustee-genoa-vcek.der"),
    ]);
    let ver = &v["verification"];
    assert_eq!(ver["product"], "genoa", "{v}");
    assert_eq!(ver["signing_key"], "vcek", "{v}");
    assert_eq!(ver["roots"], "built_in", "{v}");
    assert_eq!(ver["vek_product_name"], "Genoa", "{v}");
    // The summary is still there.
    assert_eq!(
        v["measurement"],
        "6a6519d757e68c2e939c9dbbbc1828498e8de35d2766dd05f1a2cca5059d0cf4ae62a36d75c837974dd50b315506e73e"
    );
}

#[test]
fn verify_genoa_vcek_text() {
    let o = run(&[
        "evidence",
        "decode",
        &sample("snp/trustee-genoa-vcek-report.bin"),
        "--vcek",
        &sample("snp/trustee-genoa-vcek.der"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("verified"), "{out}");
    assert!(out.contains("Genoa"), "{out}");
    assert!(out.contains("built-in"), "{out}");
}

#[test]
fn verify_hex_report_with_supplied_chain() {
    let v = run_json(&[
        "evidence",
        "decode",
        &sample("snp/virtee-milan-report.hex"),
        "--json",
        "--vcek",
        &sample("snp/virtee-milan-vcek.der"),
        "--ask",
        &sample("snp/amd-milan-ask.pem"),
        "--ark",
        &sample("snp/amd-milan-ark.pem"),
    ]);
    assert_eq!(v["verification"]["product"], "milan", "{v}");
    assert_eq!(v["verification"]["roots"], "supplied", "{v}");
}

#[test]
fn verify_vlek_needs_and_accepts_the_asvk() {
    let report = sample("snp/trustee-milan-vlek-report.bin");
    let vlek = sample("snp/trustee-milan-vlek.der");
    // No built-in ASVK: the error says what to pass.
    let o = run(&["evidence", "decode", &report, "--vcek", &vlek]);
    let err = assert_fails(&o);
    assert!(err.contains("ASVK"), "{err}");
    let v = run_json(&[
        "evidence",
        "decode",
        &report,
        "--json",
        "--vcek",
        &vlek,
        "--ask",
        &sample("snp/amd-milan-ask-ark-asvk.pem"),
    ]);
    assert_eq!(v["verification"]["signing_key"], "vlek", "{v}");
    assert_eq!(v["verification"]["product"], "milan", "{v}");
}

#[test]
fn verify_invalid_vcek_names_failing_link() {
    for bad in [
        "snp/trustee-vcek-invalid-legacy.der",
        "snp/trustee-vcek-invalid-new.der",
    ] {
        let o = run(&[
            "evidence",
            "decode",
            &sample("snp/trustee-milan-vcek-report.bin"),
            "--vcek",
            &sample(bad),
        ]);
        let err = assert_fails(&o);
        assert!(err.contains("ASK/ASVK signs VCEK/VLEK"), "{bad}: {err}");
        assert!(err.contains(bad.trim_start_matches("snp/")), "{bad}: {err}");
        assert!(stdout(&o).is_empty(), "{}", stdout(&o));
    }
}

#[test]
fn verify_wrong_vcek_fails() {
    // A genuine Milan VCEK, but for another chip.
    let o = run(&[
        "evidence",
        "decode",
        &sample("snp/trustee-milan-vcek-report.bin"),
        "--json",
        "--vcek",
        &sample("snp/virtee-milan-vcek.der"),
    ]);
    let err = assert_fails(&o);
    assert!(err.contains("SNP verification failed"), "{err}");
    assert!(err.contains("VCEK/VLEK signs the report"), "{err}");
}

#[test]
fn verify_with_wrong_product_chain_fails() {
    // Genoa VCEK checked against the Milan ASK/ARK given explicitly.
    let o = run(&[
        "evidence",
        "decode",
        &sample("snp/trustee-genoa-vcek-report.bin"),
        "--vcek",
        &sample("snp/trustee-genoa-vcek.der"),
        "--ask",
        &sample("snp/amd-milan-ask.pem"),
        "--ark",
        &sample("snp/amd-milan-ark.pem"),
    ]);
    let err = assert_fails(&o);
    assert!(err.contains("ASK/ASVK signs VCEK/VLEK"), "{err}");
}

#[test]
fn verify_tdx_is_refused_clearly() {
    let o = run(&[
        "evidence",
        "decode",
        &sample("tdx/trustee-tdx-quote-v4.dat"),
        "--vcek",
        &sample("snp/trustee-genoa-vcek.der"),
    ]);
    let err = assert_fails(&o);
    assert!(err.contains("TDX quote"), "{err}");
    assert!(err.contains("Intel collateral"), "{err}");
    assert!(err.contains("not supported"), "{err}");
}

#[test]
fn verify_missing_vcek_file_names_it() {
    let o = run(&[
        "evidence",
        "decode",
        &sample("snp/trustee-genoa-vcek-report.bin"),
        "--vcek",
        "/nonexistent/vcek.der",
    ]);
    let err = assert_fails(&o);
    assert!(err.contains("/nonexistent/vcek.der"), "{err}");
}

#[test]
fn ask_without_vcek_is_a_usage_error() {
    let o = run(&[
        "evidence",
        "decode",
        &sample("snp/trustee-genoa-vcek-report.bin"),
        "--ask",
        &sample("snp/amd-genoa-ask.pem"),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--vcek"), "{}", stderr(&o));
}

// ---- decode errors ------------------------------------------------------------

#[test]
fn truncated_report_mentions_expected_size() {
    let full = std::fs::read(sample("snp/trustee-genoa-vcek-report.bin")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("truncated.bin");
    std::fs::write(&path, &full[..1183]).unwrap();
    let o = run(&["evidence", "decode", path.to_str().unwrap()]);
    let err = assert_fails(&o);
    assert!(err.contains("1184"), "{err}");
    assert!(err.contains("1183"), "{err}");
    assert!(err.contains("truncated.bin"), "{err}");
}

#[test]
fn missing_file_is_named() {
    let o = run(&[
        "evidence",
        "decode",
        "/nonexistent/report-does-not-exist.bin",
    ]);
    let err = assert_fails(&o);
    assert!(
        err.contains("/nonexistent/report-does-not-exist.bin"),
        "{err}"
    );
}

#[test]
fn tdreport_is_not_a_quote() {
    let o = run(&[
        "evidence",
        "decode",
        &sample("tdx/guestcomponents-tdreport.bin"),
    ]);
    let err = assert_fails(&o);
    assert!(err.contains("TDREPORT"), "{err}");
}

// ---- collect ------------------------------------------------------------------

#[test]
fn collect_simulated_needs_opt_in() {
    let o = run(&["evidence", "collect", "--attester", "simulated"]);
    let err = assert_fails(&o);
    assert!(err.contains("--allow-simulated-tee"), "{err}");
    assert!(stdout(&o).is_empty(), "{}", stdout(&o));
}

#[test]
fn collect_simulated_with_opt_in_text_and_output() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report.bin");
    let o = run(&[
        "--allow-simulated-tee",
        "evidence",
        "collect",
        "--attester",
        "simulated",
        "--report-data",
        "0102ff",
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("SIMULATED"), "{text}");
    assert!(text.contains("NOT secure"), "{text}");
    let rd = format!("0102ff{}", "00".repeat(61));
    assert!(text.contains(&rd), "{text}");
    let saved = std::fs::read(&out).unwrap();
    assert!(saved.starts_with(b"CVM-INIT SIMULATED TEE REPORT"));
    assert!(String::from_utf8_lossy(&saved).contains(&rd));
    assert!(!dir.path().join("report.bin.aux").exists());
}

#[test]
fn collect_simulated_json_is_marked() {
    // The global flag also works after the subcommand.
    let v = run_json(&[
        "evidence",
        "collect",
        "--attester",
        "simulated",
        "--allow-simulated-tee",
        "--json",
    ]);
    assert_eq!(v["simulated"], true, "{v}");
    assert_eq!(v["tee"], "sample", "{v}");
    assert_eq!(v["report_data"], "00".repeat(64).as_str(), "{v}");
    assert_eq!(v["collection"]["simulated"], true, "{v}");
}

#[test]
fn collect_rejects_oversized_report_data() {
    let long = "00".repeat(65);
    let o = run(&[
        "--allow-simulated-tee",
        "evidence",
        "collect",
        "--attester",
        "simulated",
        "--report-data",
        &long,
    ]);
    let err = assert_fails(&o);
    assert!(err.contains("--report-data"), "{err}");
    assert!(err.contains("64"), "{err}");
}

/// True if this machine might have a TEE interface, where `collect` could
/// succeed.
fn tee_present() -> bool {
    [
        "/sys/kernel/config/tsm/report",
        "/dev/sev-guest",
        "/dev/tdx_guest",
    ]
    .iter()
    .any(|p| Path::new(p).exists())
}

#[test]
fn collect_auto_without_tee_lists_probes() {
    if tee_present() {
        eprintln!("skipped: this machine has a TEE interface");
        return;
    }
    for args in [
        &["evidence", "collect"][..],
        &["--allow-simulated-tee", "evidence", "collect", "--json"][..],
    ] {
        let o = run(args);
        let err = assert_fails(&o);
        assert!(err.contains("no TEE found"), "{err}");
        for probed in [
            "/sys/kernel/config/tsm/report",
            "/dev/sev-guest",
            "/dev/tdx_guest",
        ] {
            assert!(err.contains(probed), "{probed}: {err}");
        }
        assert!(stdout(&o).is_empty(), "{}", stdout(&o));
    }
}

#[test]
fn collect_explicit_snp_without_tee_fails() {
    if tee_present() {
        eprintln!("skipped: this machine has a TEE interface");
        return;
    }
    let o = run(&["evidence", "collect", "--attester", "snp"]);
    let err = assert_fails(&o);
    assert!(err.contains("/dev/sev-guest"), "{err}");
}

#[test]
fn decode_azure_hcl_reports_and_vtpm_evidence() {
    let v = decode_json("other/azure-snp-vtpm/evidence-v1.json");
    assert_eq!(v["format"], "az-snp-vtpm");
    assert_eq!(v["tpm_quote"]["extra_data"], "6368616c6c656e6765");
    assert_eq!(v["tpm_quote"]["signed_by_hcl_ak"], true);
    assert_eq!(
        v["tpm_quote"]["pcrs"][0],
        "e15c44796beabf46abcec7c57e590942041e47497e4ec27571c8b7664f48dced"
    );
    let v = decode_json("other/azure-tdx-vtpm/evidence-v1.json");
    assert_eq!(v["format"], "az-tdx-vtpm");
    assert!(v["td_quote"].is_object(), "{v}");
    let v = decode_json("other/azure-snp-vtpm/hcl-report.bin");
    assert_eq!(v["tee"], "snp");
    assert_eq!(v["ak_rsa_bits"], 2048);
    let o = run(&[
        "evidence",
        "decode",
        &sample("other/azure-tdx-vtpm/hcl-report.bin"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("TDREPORT report_data: 9734504f"),
        "{}",
        stdout(&o)
    );
    // --vcek is for plain SNP reports: say how to use it here.
    let o = run(&[
        "evidence",
        "decode",
        &sample("other/azure-snp-vtpm/hcl-report.bin"),
        "--vcek",
        &sample("other/azure-snp-vtpm/vcek.pem"),
    ]);
    assert!(assert_fails(&o).contains("0x20..0x4C0"));
}

#[test]
fn decode_and_verify_an_nvidia_gpu_report() {
    let report = sample("gpu/hopperAttestationReport.txt");
    let v = run_json(&[
        "evidence",
        "decode",
        &report,
        "--json",
        "--gpu-chain",
        &sample("gpu/hopper_cert_chain_case1.txt"),
    ]);
    assert_eq!(
        v["requester_nonce"],
        "931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb"
    );
    assert_eq!(v["driver_version"], "550.90.07");
    assert_eq!(v["vbios_version"], "96.00.9f.00.01");
    assert!(v["verified_leaf_sha256"].is_string());
    let o = run(&[
        "evidence",
        "decode",
        &report,
        "--gpu-chain",
        &sample("gpu/hopper_cert_chain_case3.txt"),
    ]);
    assert!(assert_fails(&o).contains("does not reach"));
    // --gpu-chain on something else says what it is for.
    let o = run(&[
        "evidence",
        "decode",
        &sample("other/azure-snp-vtpm/hcl-report.bin"),
        "--gpu-chain",
        &sample("gpu/hopper_cert_chain_case1.txt"),
    ]);
    assert!(assert_fails(&o).contains("NVIDIA GPU attestation report"));
}
