//! The fuzz targets' inputs without the fuzzer (docs/fuzzing.md): every
//! file in `fuzz/regressions/<target>/` (inputs that once crashed a
//! target) and `fuzz/corpus/<target>/` (the committed seeds) goes through
//! the same entry point the fuzz target calls, `cvm_init::fuzzing::<target>`.
//! A panic fails the test and names the file.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use cvm_init::fuzzing::TARGETS;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn run_all(kind: &str) -> usize {
    // The LUKS2 target's device file goes here, not in /dev/shm.
    let scratch = tempfile::tempdir().unwrap();
    std::env::set_var("CVM_FUZZ_DIR", scratch.path());
    let mut count = 0;
    for (name, target) in TARGETS {
        for file in inputs(&root().join(kind).join(name)) {
            let data = std::fs::read(&file).unwrap();
            let outcome = std::panic::catch_unwind(|| target(&data));
            assert!(outcome.is_ok(), "{name}: {} panics", file.display());
            count += 1;
        }
    }
    count
}

#[test]
fn crashing_inputs_found_by_the_fuzzer_no_longer_crash() {
    let n = run_all("regressions");
    eprintln!("{n} regression inputs");
}

#[test]
fn every_seed_of_the_corpus_runs() {
    let n = run_all("corpus");
    assert!(n >= TARGETS.len(), "only {n} seeds under fuzz/corpus");
}

#[test]
fn every_target_has_seeds_and_a_fuzz_target() {
    for (name, _) in TARGETS {
        assert!(
            !inputs(&root().join("corpus").join(name)).is_empty(),
            "fuzz/corpus/{name} is empty"
        );
        assert!(
            root()
                .join("fuzz_targets")
                .join(format!("{name}.rs"))
                .is_file(),
            "no fuzz/fuzz_targets/{name}.rs"
        );
    }
}

/// The JWE seeds are real ciphertexts to the target's fixed keys, so the
/// fuzzer starts from inputs that get through to AES-GCM.
#[test]
fn the_jwe_seeds_decrypt_with_the_fixed_keys() {
    let rsa = cvm_init::fuzzing::jwe_rsa_key().unwrap();
    for file in inputs(&root().join("corpus").join("jwe")) {
        let data = std::fs::read(&file).unwrap();
        let ec = cvm_init::fuzzing::jwe_ec_key().decrypt(&data);
        assert!(
            ec.is_ok() || rsa.decrypt(&data).is_ok(),
            "{} decrypts with neither key",
            file.display()
        );
    }
}

/// Writes the JWE seeds (encrypted to the target's fixed keys): run with
/// `cargo test --test fuzz_regressions -- --ignored write_jwe_seeds`.
#[test]
#[ignore]
fn write_jwe_seeds() {
    let dir = root().join("corpus").join("jwe");
    std::fs::create_dir_all(&dir).unwrap();
    for (rsa, name) in [(false, "ec"), (true, "rsa")] {
        for (i, pt) in [&b"secret"[..], &[0u8; 64][..]].iter().enumerate() {
            let jwe = cvm_init::fuzzing::jwe_seed(rsa, pt).unwrap();
            std::fs::write(dir.join(format!("{name}-{i}.json")), jwe).unwrap();
        }
    }
}
