//! The image builders' integrations, built for real and booted under QEMU
//! (TCG):
//!
//! - the mkosi image of `image-build/mkosi` (mkosi 24 from Debian's
//!   bookworm-backports) with the cvm-init package, its dracut initrd and
//!   a dm-verity root;
//! - Packer's `image-build/packer/provision.sh`, run in a copy of that
//!   image's root, and the initrd it made, booted;
//! - the image's cloud-init variant (`mkosi.profiles/cloud-init`) with a
//!   NoCloud seed made from `image-build/cloud-init/user-data.yaml`.
//!
//! Skipped loudly when host packages are missing, unless
//! VM_BENCH_REQUIRED=1.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use sha2::{Digest, Sha384};
use vm_bench::agent::{file_digest, AgentBench, Options};
use vm_bench::mkosi::{self, Image, Request};
use vm_bench::qemu::Vm;

/// Two cores: one image build or boot at a time, whatever the test
/// harness's thread count.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Host programs the cloud-init seed needs, with their Debian packages.
const SEED_TOOLS: &[(&str, &str)] = &[("mkfs.vfat", "dosfstools"), ("mcopy", "mtools")];

fn ready(test: &str) -> bool {
    if !vm_bench::tools_present(test) {
        return false;
    }
    let mut missing = mkosi::missing_tools();
    missing.extend(
        SEED_TOOLS
            .iter()
            .filter(|(t, _)| vm_bench::find_tool(t).is_err())
            .map(|(t, p)| format!("{t} ({p})")),
    );
    if !vm_bench::package::cargo_deb_present() {
        missing.push("cargo-deb".into());
    }
    if missing.is_empty() {
        return true;
    }
    let msg = format!(
        "{test}: missing {} (scripts/setup installs them)",
        missing.join(", ")
    );
    assert!(std::env::var_os("VM_BENCH_REQUIRED").is_none(), "{msg}");
    eprintln!("SKIPPED {msg}");
    false
}

/// The bench (broker, binaries), the package and what a build needs.
struct Setup {
    dir: tempfile::TempDir,
    bench: AgentBench,
    deb: PathBuf,
    url: String,
    ca: PathBuf,
}

/// Skips `test` when tools are missing; else takes the one-at-a-time lock
/// and sets up the bench.
fn start(test: &str) -> Option<(MutexGuard<'static, ()>, Setup)> {
    if !ready(test) {
        return None;
    }
    let one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    Some((one, setup()))
}

fn setup() -> Setup {
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
    let url = format!("https://10.0.2.2:{}", bench.broker_port);
    let ca = dir.path().join("broker-tls/ca.pem");
    Setup {
        dir,
        bench,
        deb,
        url,
        ca,
    }
}

impl Setup {
    /// mkosi's package cache, shared by the builds of a run.
    fn cache() -> PathBuf {
        vm_bench::cache_dir().join("mkosi")
    }

    fn build(&self, config: &str, profile: Option<&str>) -> Image {
        let image = mkosi::build(&Request {
            deb: &self.deb,
            config,
            broker_ca: Some(&self.ca),
            scratch: &self.dir.path().join(profile.unwrap_or("image")),
            cache: &Setup::cache(),
            profile,
        })
        .unwrap_or_else(|e| panic!("{e:#}"));
        eprintln!(
            "timing: mkosi build{} {:.1?}; disk {} MiB, initrd {} MiB, kernel {} MiB; cmdline {}",
            profile
                .map(|p| format!(" --profile {p}"))
                .unwrap_or_default(),
            image.took,
            image.disk_mib().unwrap(),
            std::fs::metadata(&image.initrd).unwrap().len() >> 20,
            std::fs::metadata(&image.kernel).unwrap().len() >> 20,
            image.cmdline
        );
        assert!(image.cmdline.contains("roothash="), "{}", image.cmdline);
        image
    }

    fn log(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
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
    "Failed to start cloud-init",
    "Failed to start cvm-demo-workload",
    "WORKLOAD: FAIL",
    "Kernel panic",
    "emergency",
];

/// Waits for one of `wanted`, failing on any of [`FAILURES`].
fn expect_any(vm: &mut Vm, wanted: &[&str]) -> String {
    let mut patterns = wanted.to_vec();
    patterns.extend_from_slice(FAILURES);
    let (i, line) = vm
        .wait_for_any(&patterns, Duration::from_secs(480))
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

/// What a good boot showed.
struct GoodBoot {
    /// cvm-init's volume line.
    volume: String,
    /// The workload's file line: "wrote <text>" or "read <text>".
    file: String,
    /// The workload's init-data token line, if it printed one.
    token: Option<String>,
    /// The whole console.
    console: String,
}

/// Follows one good boot of `vm`: the volume line, then the workload's
/// proof that it got its disk and its TLS key (on tmpfs, 0600).
fn good_boot_of(mut vm: Vm) -> GoodBoot {
    let volume = expect_any(
        &mut vm,
        &["volume data: Provisioned ", "volume data: Unlocked "],
    );
    let status = expect(&mut vm, "WORKLOAD: volume ");
    let file = expect(&mut vm, "WORKLOAD: ");
    let key = expect(&mut vm, "WORKLOAD: tls key ");
    assert!(key.contains("tls key 600 on tmpfs"), "{key}");
    let last = expect_any(&mut vm, &["WORKLOAD: init-data token ", "WORKLOAD: ready"]);
    let token = last.contains("init-data token").then(|| {
        expect(&mut vm, "WORKLOAD: ready");
        last.clone()
    });
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
    GoodBoot {
        volume,
        file,
        token,
        console: vm.output(),
    }
}

/// A good boot of the base image (cvm-init in the initrd): the booted
/// system's unit never starts.
fn good_boot(image: &Image, data: &Path, log: &Path) -> GoodBoot {
    let boot = good_boot_of(image.boot(data, "", log).unwrap());
    assert!(
        !boot.console.contains("cvm-init-secrets"),
        "the booted system started cvm-init-secrets.service too (a preset enabled it):\n{}",
        boot.console
    );
    boot
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}

#[test]
fn vm_mkosi_image_is_built_then_provisions_unlocks_and_refuses_a_foreign_disk() {
    let test = "mkosi image VM test";
    let Some((_one, s)) = start(test) else {
        return;
    };
    let config = mkosi::test_config(&s.url, None).unwrap();

    // Built without the broker's CA: the build fails, naming it.
    let err = mkosi::build(&Request {
        deb: &s.deb,
        config: &config,
        broker_ca: None,
        scratch: &s.dir.path().join("no-ca"),
        cache: &Setup::cache(),
        profile: None,
    })
    .expect_err("an image without the broker's CA was built")
    .to_string();
    assert!(
        err.contains("broker-ca.pem") && err.contains("check-config refused"),
        "the build failure does not name the missing CA:\n{err}"
    );

    let image = s.build(&config, None);
    let disk_before = file_digest(&image.disk).unwrap();

    let data = s.bench.blank_disk("data.img", 64).unwrap();
    let boot = good_boot(&image, &data, &s.log("boot1.log"));
    assert!(boot.volume.contains("Provisioned"), "{}", boot.volume);
    let text = boot
        .file
        .strip_prefix("wrote ")
        .unwrap_or_else(|| panic!("{}", boot.file))
        .to_owned();
    let boot = good_boot(&image, &data, &s.log("boot2.log"));
    assert!(boot.volume.contains("Unlocked"), "{}", boot.volume);
    assert_eq!(
        boot.file,
        format!("read {text}"),
        "the second boot reads the first's file"
    );
    assert_eq!(
        s.bench.leaked_secrets(&data).unwrap(),
        Vec::<&str>::new(),
        "the data disk holds a secret in the clear"
    );
    assert!(
        !vm_bench::scan::image_contains(&data, text.as_bytes()).unwrap(),
        "the data disk holds the workload's plaintext"
    );
    assert_eq!(file_digest(&image.disk).unwrap(), disk_before);

    // Packer's provisioner, run for real in a copy of the image's root
    // (chroot: root only), with the config a Packer user would pass; its
    // initrd unlocks the same disk.
    if running_as_root() {
        let config_dir = s.dir.path().join("packer-config");
        std::fs::create_dir_all(&config_dir).unwrap();
        std::fs::write(config_dir.join("config.toml"), &config).unwrap();
        std::fs::copy(&s.ca, config_dir.join("broker-ca.pem")).unwrap();
        let made =
            vm_bench::packer::provision(&image, &s.deb, &config_dir, &s.dir.path().join("packer"))
                .unwrap_or_else(|e| panic!("{e:#}"));
        eprintln!("timing: provision.sh in the chroot {:.1?}", made.took);
        assert!(
            made.log.contains("carries cvm-init"),
            "provision.sh did not check its initrd:\n{}",
            made.log
        );
        let packer = Image {
            initrd: made.initrd,
            ..image.clone()
        };
        let boot = good_boot(&packer, &data, &s.log("packer.log"));
        assert!(boot.volume.contains("Unlocked"), "{}", boot.volume);
        assert_eq!(boot.file, format!("read {text}"));
        assert_eq!(file_digest(&image.disk).unwrap(), disk_before);
    } else {
        assert!(
            std::env::var_os("VM_PACKAGE_REQUIRED").is_none(),
            "provision.sh runs in a chroot: root only"
        );
        eprintln!("SKIPPED the provision.sh part of {test}: not root");
    }

    // A data disk with a foreign file system: not formatted, a clear
    // message, the failure action (power off).
    let foreign = s.bench.blank_disk("foreign.img", 64).unwrap();
    agent_mkfs(&foreign);
    let before = file_digest(&foreign).unwrap();
    let mut vm = image.boot(&foreign, "", &s.log("foreign.log")).unwrap();
    let (i, line) = vm
        .wait_for_any(&["Failed to start", "WORKLOAD: "], Duration::from_secs(480))
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

#[test]
fn vm_mkosi_cloud_init_variant_uses_init_data_only_when_host_data_binds_it() {
    let test = "mkosi cloud-init VM test";
    let Some((_one, s)) = start(test) else {
        return;
    };
    // The shipped example, as the seed; the launch binds its document.
    let user_data =
        std::fs::read_to_string(vm_bench::image_build_dir().join("cloud-init/user-data.yaml"))
            .unwrap();
    let document = write_files_content(&user_data);
    let digest = hex(&Sha384::digest(document.as_bytes()));
    let config = mkosi::test_config(&s.url, Some(mkosi::CLOUD_INIT))
        .unwrap()
        .replacen(
            "allow_simulated = true",
            &format!("allow_simulated = true\nsimulated_host_data = \"{digest}\""),
            1,
        );
    let image = s.build(&config, Some(mkosi::CLOUD_INIT));
    let seed_img = seed(s.dir.path(), "seed.img", &user_data);

    // The workload runs after cvm-init-secrets, with the token the
    // document asked for.
    let data = s.bench.blank_disk("data.img", 64).unwrap();
    let log = s.log("cloud1.log");
    let boot = good_boot_of(image.boot_with(&data, &[&seed_img], "", &log).unwrap());
    assert!(boot.volume.contains("Provisioned"), "{}", boot.volume);
    let console = &boot.console;
    assert!(
        console.contains("init-data: /run/cvm-init-data/init-data.toml")
            && console.contains("matches this VM's simulated host data"),
        "cvm-init did not check the document against the host data:\n{console}"
    );
    assert_eq!(
        boot.token
            .as_deref()
            .map(|t| t.contains("init-data token 600 on tmpfs")),
        Some(true),
        "the init-data secret did not arrive (0600, tmpfs): {:?}\n{console}",
        boot.token
    );
    // cloud-init's hotplug hook would run it outside the sandbox.
    assert!(
        !console.contains("hotplug hook socket"),
        "cloud-init's hotplug socket is listening:\n{console}"
    );
    // cvm-init-secrets' last line comes before the workload's first.
    let done = console
        .find("cvm-init: INFO: boot stage done in")
        .unwrap_or_else(|| panic!("cvm-init-secrets never finished:\n{console}"));
    let workload = console.find("WORKLOAD: ").unwrap();
    assert!(
        done < workload,
        "the workload ran before cvm-init-secrets finished:\n{console}"
    );
    assert!(
        s.bench.broker_log().contains("init-data (sha384) matches"),
        "the broker did not see the document:\n{}",
        s.bench.broker_log()
    );

    // The host swaps the seed: same boot, a document asking for the disk
    // key in a file. HOST_DATA does not bind it: refused before the broker
    // is asked, nothing written, the machine powers off.
    let swapped = user_data.replace(
        "resource = \"default/app/token\"",
        "resource = \"default/disk/data\"",
    );
    assert_ne!(swapped, user_data);
    let swapped_img = seed(s.dir.path(), "swapped.img", &swapped);
    let before = file_digest(&data).unwrap();
    let auths = s.bench.broker_log().matches("/auth: session").count();
    let mut vm = image
        .boot_with(&data, &[&swapped_img], "", &s.log("cloud2.log"))
        .unwrap();
    let (i, line) = vm
        .wait_for_any(
            &["Refusing to use any of it", "WORKLOAD: "],
            Duration::from_secs(480),
        )
        .unwrap();
    assert_eq!(i, 0, "the boot went on: {line}\n{}", vm.output());
    vm.wait_exit(Duration::from_secs(60))
        .expect("the VM did not power off after the refusal");
    // systemd's status line ("Failed to start cvm-init-s…", colours
    // between the words).
    assert!(
        vm.lines()
            .iter()
            .any(|l| l.contains("Failed to start") && l.contains("cvm-init-s")),
        "cvm-init-secrets did not fail:\n{}",
        vm.output()
    );
    let errors = errors(&vm);
    assert!(
        errors.contains("Refusing to use any of it") && errors.contains(&digest[..16]),
        "the refusal does not name the document and the digest it needs:\n{errors}"
    );
    assert_eq!(
        file_digest(&data).unwrap(),
        before,
        "the data disk was written"
    );
    assert_eq!(
        s.bench.broker_log().matches("/auth: session").count(),
        auths,
        "the broker was asked despite the refused document"
    );
}

/// The `content: |` block of the example's one `write_files` entry, as
/// cloud-init writes it (indentation removed, trailing newline kept).
fn write_files_content(user_data: &str) -> String {
    let mut lines = user_data.lines().skip_while(|l| l.trim() != "content: |");
    assert!(lines.next().is_some(), "no content block in user-data.yaml");
    let mut out = String::new();
    for line in lines {
        let Some(text) = line.strip_prefix("      ") else {
            assert!(
                line.trim().is_empty(),
                "a second entry after the content block: {line}"
            );
            continue;
        };
        out.push_str(text);
        out.push('\n');
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A NoCloud seed: a vfat volume labelled CIDATA with `user-data` and a
/// `meta-data` naming the instance.
fn seed(dir: &Path, name: &str, user_data: &str) -> PathBuf {
    let files = dir.join(format!("{name}.d"));
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("user-data"), user_data).unwrap();
    std::fs::write(files.join("meta-data"), "instance-id: iid-cvm-init-test\n").unwrap();
    let img = dir.join(name);
    let _ = std::fs::remove_file(&img);
    let run = |cmd: &mut Command| {
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{cmd:?}: {out:?}");
    };
    run(Command::new(vm_bench::find_tool("mkfs.vfat").unwrap())
        .args(["-n", "CIDATA", "-C"])
        .arg(&img)
        .arg("2048"));
    for f in ["user-data", "meta-data"] {
        run(Command::new(vm_bench::find_tool("mcopy").unwrap())
            .arg("-i")
            .arg(&img)
            .arg(files.join(f))
            .arg("::"));
    }
    img
}

/// An ext4 file system with one file: someone's data.
fn agent_mkfs(disk: &Path) {
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("theirs.txt"), "not cvm-init's").unwrap();
    let out = Command::new(vm_bench::find_tool("mkfs.ext4").unwrap())
        .args(["-q", "-F", "-d"])
        .arg(src.path())
        .arg(disk)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}
