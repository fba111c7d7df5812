//! `cvm-init check-config`, run as the real binary: what image builds run
//! (image-build/mkosi's postinst, Packer's provision.sh) so that a config
//! the boot would refuse stops the build instead.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

fn check(config: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cvm-init"))
        .arg("--config")
        .arg(config)
        .args(["--cmdline", "/dev/null", "check-config"])
        .output()
        .unwrap()
}

const CONFIG: &str = r#"
[broker]
url = "https://kbs.example.com:8080"
ca_cert = "broker-ca.pem"

[attester]
kind = "snp"
"#;

/// A self-signed certificate (any will do: check-config only loads it).
fn write_ca(path: &Path) {
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args([
            "-nodes",
            "-keyout",
            "/dev/null",
            "-subj",
            "/CN=test-broker-ca",
            "-days",
            "1",
        ])
        .arg("-out")
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn check_config_loads_the_pinned_ca_and_names_it_when_it_is_missing_or_bad() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let ca = dir.path().join("broker-ca.pem");

    let o = check(&config);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        o.status.code(),
        Some(1),
        "a config without its CA file passed: {err}"
    );
    assert!(
        err.contains(&ca.display().to_string()) && err.contains("broker.ca_cert"),
        "the error does not name the missing CA: {err}"
    );

    std::fs::write(&ca, "not a certificate\n").unwrap();
    let o = check(&config);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        o.status.code(),
        Some(1),
        "a CA file without a certificate passed: {err}"
    );
    assert!(err.contains(&ca.display().to_string()), "{err}");

    write_ca(&ca);
    let o = check(&config);
    assert!(
        o.status.success(),
        "a valid config failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("is valid"));
}
