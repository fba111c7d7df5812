//! The image builders' integrations, built for real and booted under QEMU
//! (TCG): the mkosi image of `image-build/mkosi` (mkosi 24 from Debian's
//! bookworm-backports) with the cvm-init package, its dracut initrd and a
//! dm-verity root. Skipped loudly when host packages are missing, unless
//! VM_BENCH_REQUIRED=1.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use vm_bench::agent::{file_digest, AgentBench, Options};
use vm_bench::mkosi::{self, Image, Request};
use vm_bench::qemu::Vm;

fn ready(test: &str) -> bool {
    if !vm_bench::tools_present(test) {
        return false;
    }
    let missing = mkosi::missing_tools();
    if missing.is_empty() && vm_bench::package::cargo_deb_present() {
        return true;
    }
    let msg = format!(
        "{test}: missing {} {} (scripts/setup installs them)",
        missing.join(", "),
        if vm_bench::package::cargo_deb_present() {
            ""
        } else {
            "cargo-deb"
        }
    );
    assert!(std::env::var_os("VM_BENCH_REQUIRED").is_none(), "{msg}");
    eprintln!("SKIPPED {msg}");
    false
}

/// Every console line that cvm-init logged as an error.
fn errors(vm: &Vm) -> String {
    vm.lines()
        .into_iter()
        .filter(|l| l.contains("cvm-init: ERROR"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// What ends a good boot early. Not every "Failed to start": units of the
/// booted system that have nothing to do with cvm-init (systemd-logind on
/// the read-only root) may fail without harm.
const FAILURES: &[&str] = &[
    "cvm-init: ERROR",
    "Failed to start cvm-init",
    "WORKLOAD: FAIL",
    "Kernel panic",
    "emergency",
    "cvm-init-secrets",
];

/// Waits for one of `wanted`, failing on any of [`FAILURES`].
fn expect_any(vm: &mut Vm, wanted: &[&str]) -> String {
    let mut patterns = wanted.to_vec();
    patterns.extend_from_slice(FAILURES);
    let (i, line) = vm
        .wait_for_any(&patterns, Duration::from_secs(240))
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(
        i < wanted.len(),
        "expected {wanted:?}, got {line:?}\n{}",
        vm.output()
    );
    line
}

fn expect(vm: &mut Vm, pattern: &str) -> String {
    expect_any(vm, &[pattern])
}

/// One good boot: the volume line, then the workload's proof that it got
/// its disk and its TLS key (on tmpfs, 0600); returns the volume line and
/// the workload's file line.
fn good_boot(image: &Image, data: &Path, log: &Path) -> (String, String) {
    let mut vm = image.boot(data, "", log).unwrap();
    let volume = expect_any(
        &mut vm,
        &["volume data: Provisioned ", "volume data: Unlocked "],
    );
    let status = expect(&mut vm, "WORKLOAD: volume ");
    let file = expect(&mut vm, "WORKLOAD: ");
    let key = expect(&mut vm, "WORKLOAD: tls key ");
    assert!(key.contains("tls key 600 on tmpfs"), "{key}");
    expect(&mut vm, "WORKLOAD: ready");
    assert!(
        !vm.output().contains("cvm-init-secrets"),
        "the booted system started cvm-init-secrets.service too (a preset enabled it):\n{}",
        vm.output()
    );
    let action = if volume.contains("Provisioned") {
        "provisioned"
    } else {
        "unlocked"
    };
    assert!(
        status.ends_with(&format!("volume {action}")),
        "{status} after {volume}"
    );
    eprintln!("timing: boot to workload ready {:.1?}", vm.elapsed());
    vm.kill().unwrap();
    let file = file.split("WORKLOAD: ").nth(1).unwrap().trim().to_owned();
    (volume, file)
}

#[test]
fn vm_mkosi_image_is_built_then_provisions_unlocks_and_refuses_a_foreign_disk() {
    let test = "mkosi image VM test";
    if !ready(test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bench = AgentBench::with_options(
        dir.path(),
        Options {
            external_image: true,
            ..Options::default()
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    let deb = vm_bench::package::build_deb(&bench.bins, &dir.path().join("deb")).unwrap();
    let config = mkosi::test_config(&format!("https://10.0.2.2:{}", bench.broker_port)).unwrap();
    let ca = dir.path().join("broker-tls/ca.pem");
    let cache = dir.path().join("mkosi-cache");

    // Built without the broker's CA: the build fails, naming it.
    let err = mkosi::build(&Request {
        deb: &deb,
        config: &config,
        broker_ca: None,
        scratch: &dir.path().join("no-ca"),
        cache: &cache,
    })
    .expect_err("an image without the broker's CA was built")
    .to_string();
    assert!(
        err.contains("broker-ca.pem") && err.contains("check-config refused"),
        "the build failure does not name the missing CA:\n{err}"
    );

    let image = mkosi::build(&Request {
        deb: &deb,
        config: &config,
        broker_ca: Some(&ca),
        scratch: &dir.path().join("image"),
        cache: &cache,
    })
    .unwrap_or_else(|e| panic!("{e:#}"));
    eprintln!(
        "timing: mkosi build {:.1?}; disk {} MiB, initrd {} MiB, kernel {} MiB; cmdline {}",
        image.took,
        image.disk_mib().unwrap(),
        std::fs::metadata(&image.initrd).unwrap().len() >> 20,
        std::fs::metadata(&image.kernel).unwrap().len() >> 20,
        image.cmdline
    );
    assert!(image.cmdline.contains("roothash="), "{}", image.cmdline);
    let disk_before = file_digest(&image.disk).unwrap();

    let data = bench.blank_disk("data.img", 64).unwrap();
    let (volume, wrote) = good_boot(&image, &data, &dir.path().join("boot1.log"));
    assert!(volume.contains("Provisioned"), "{volume}");
    let text = wrote
        .strip_prefix("wrote ")
        .unwrap_or_else(|| panic!("{wrote}"));
    let (volume, read) = good_boot(&image, &data, &dir.path().join("boot2.log"));
    assert!(volume.contains("Unlocked"), "{volume}");
    assert_eq!(
        read,
        format!("read {text}"),
        "the second boot reads the first's file"
    );
    assert_eq!(
        bench.leaked_secrets(&data).unwrap(),
        Vec::<&str>::new(),
        "the data disk holds a secret in the clear"
    );
    assert!(
        !vm_bench::scan::image_contains(&data, text.as_bytes()).unwrap(),
        "the data disk holds the workload's plaintext"
    );
    assert_eq!(file_digest(&image.disk).unwrap(), disk_before);

    // A data disk with a foreign file system: not formatted, a clear
    // message, the failure action (power off).
    let foreign = bench.blank_disk("foreign.img", 64).unwrap();
    agent_mkfs(&foreign);
    let before = file_digest(&foreign).unwrap();
    let mut vm = image
        .boot(&foreign, "", &dir.path().join("foreign.log"))
        .unwrap();
    let (i, line) = vm
        .wait_for_any(&["Failed to start", "WORKLOAD: "], Duration::from_secs(240))
        .unwrap();
    assert_eq!(i, 0, "the boot went on: {line}\n{}", vm.output());
    vm.wait_exit(Duration::from_secs(60))
        .expect("the VM did not power off after the refusal");
    let errors = errors(&vm);
    assert!(
        errors.contains("is not blank") && errors.contains("ext4"),
        "the refusal does not say the disk holds data:\n{errors}"
    );
    assert_eq!(
        file_digest(&foreign).unwrap(),
        before,
        "a foreign disk was written"
    );
}

/// An ext4 file system with one file: someone's data.
fn agent_mkfs(disk: &Path) {
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("theirs.txt"), "not cvm-init's").unwrap();
    let out = std::process::Command::new(vm_bench::find_tool("mkfs.ext4").unwrap())
        .args(["-q", "-F", "-d"])
        .arg(src.path())
        .arg(disk)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}
