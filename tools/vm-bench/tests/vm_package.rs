//! The Debian package, for real: built with cargo-deb from the `vm`
//! profile binary, installed on this host with `dpkg -i` (root, on a
//! throwaway CI machine) and purged at the end of each test. Checks that
//! every file lands where `docs/debian-package.md` says and that installing
//! changes no boot; then makes initrds from the installed package with
//! dracut and with initramfs-tools against the bench's Debian kernel and
//! boots each through the first-boot / second-boot scenario of the busybox
//! initramfs (`demo::provision_then_unlock`).
//!
//! Skipped loudly when cargo-deb, dracut, initramfs-tools or the VM tools
//! are missing, unless VM_BENCH_REQUIRED=1 (`scripts/setup` installs them);
//! and when not run as root, unless VM_PACKAGE_REQUIRED=1 (`scripts/test`
//! sets it when run as root, as CI is). Refuses to run when the package is
//! already installed (it would be purged).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use vm_bench::agent::{self, AgentBench, Options};
use vm_bench::distro_initrd::{self, Generator};
use vm_bench::package::{self, HostState, Installed};

/// The package is host state: one test at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Whether everything the test needs is here; otherwise skips loudly, or
/// fails when VM_BENCH_REQUIRED is set.
fn ready(test: &str, generators: &[Generator]) -> Option<MutexGuard<'static, ()>> {
    if !vm_bench::tools_present(test) {
        return None;
    }
    let mut missing: Vec<String> = Vec::new();
    if !package::cargo_deb_present() {
        missing.push("cargo-deb (cargo install cargo-deb --locked)".into());
    }
    for g in generators {
        missing.extend(g.missing_packages().iter().map(|p| p.to_string()));
    }
    for (tool, pkg) in [("dpkg", "dpkg"), ("systemctl", "systemd")] {
        if vm_bench::find_tool(tool).is_err() {
            missing.push(pkg.into());
        }
    }
    // /proc/self belongs to the effective user. Not being root is no
    // missing package: scripts/test sets VM_PACKAGE_REQUIRED=1 only as root.
    if std::fs::metadata("/proc/self").map_or(true, |m| m.uid() != 0) {
        let msg = format!("{test}: needs root (dpkg -i, mount namespaces)");
        assert!(std::env::var_os("VM_PACKAGE_REQUIRED").is_none(), "{msg}");
        eprintln!("\n*** SKIPPED {msg} ***\n");
        return None;
    }
    missing.dedup();
    if !missing.is_empty() {
        let msg = format!(
            "{test}: missing {} (scripts/setup installs them)",
            missing.join(", ")
        );
        assert!(std::env::var_os("VM_BENCH_REQUIRED").is_none(), "{msg}");
        eprintln!("\n*** SKIPPED {msg} ***\n");
        return None;
    }
    Some(ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner()))
}

/// The `.deb`, built once per test process from the `vm` profile binary.
fn deb() -> &'static Path {
    static DEB: OnceLock<PathBuf> = OnceLock::new();
    DEB.get_or_init(|| {
        let bins = agent::build_binaries().unwrap_or_else(|e| panic!("{e:#}"));
        let t = Instant::now();
        let deb = package::build_deb(&bins, &vm_bench::cache_dir().join("deb"))
            .unwrap_or_else(|e| panic!("{e:#}"));
        eprintln!(
            "timing: cargo deb --no-build --profile vm: {:.1?} ({} KiB)",
            t.elapsed(),
            std::fs::metadata(&deb).unwrap().len() / 1024
        );
        deb
    })
}

fn install() -> Installed {
    let deb = deb();
    let t = Instant::now();
    let installed = Installed::install(deb).unwrap_or_else(|e| panic!("{e:#}"));
    eprintln!("timing: dpkg -i: {:.1?}", t.elapsed());
    installed
}

#[test]
fn package_installs_documented_files_and_enables_nothing() {
    let gens = [Generator::Dracut, Generator::InitramfsTools];
    let Some(_g) = ready("package test", &gens) else {
        return;
    };
    let deb = deb();
    let members = package::control_members(deb).unwrap();
    assert!(
        members.iter().any(|m| m == "control")
            && members.iter().all(|m| m == "control" || m == "md5sums"),
        "the package must have no maintainer scripts, triggers or conffiles: {members:?}"
    );

    let before = HostState::capture().unwrap();
    let installed = install();
    let after = HostState::capture().unwrap();

    // dpkg ran nothing on the package's behalf.
    for word in ["initramfs", "dracut", "systemctl", "Processing triggers"] {
        assert!(
            !installed.dpkg_output.contains(word),
            "dpkg -i mentions {word:?}:\n{}",
            installed.dpkg_output
        );
    }

    // Exactly the documented files, with their modes and contents.
    let repo = package::repo_dir();
    let documented = package::documented_files(&repo.join("docs/debian-package.md")).unwrap();
    let listed = installed.listed_paths().unwrap();
    let listed_files: BTreeSet<&Path> = listed
        .iter()
        .filter(|p| !p.is_dir())
        .map(PathBuf::as_path)
        .collect();
    let documented_paths: BTreeSet<&Path> = documented.iter().map(|d| d.path.as_path()).collect();
    assert_eq!(
        listed_files, documented_paths,
        "dpkg -L cvm-init (left) differs from docs/debian-package.md (right)"
    );
    for d in &documented {
        let meta = std::fs::symlink_metadata(&d.path)
            .unwrap_or_else(|e| panic!("{}: {e}", d.path.display()));
        assert!(meta.is_file(), "{} is not a regular file", d.path.display());
        assert_eq!(
            meta.permissions().mode() & 0o7777,
            d.mode,
            "{}: mode {:o}, documented {:o}",
            d.path.display(),
            meta.permissions().mode() & 0o7777,
            d.mode
        );
        assert_eq!((meta.uid(), meta.gid()), (0, 0), "{}", d.path.display());
        if let Some(src) = &d.source {
            assert!(
                std::fs::read(&d.path).unwrap() == std::fs::read(repo.join(src)).unwrap(),
                "{} differs from {}",
                d.path.display(),
                src.display()
            );
        }
    }
    for dir in listed.iter().filter(|p| p.is_dir()) {
        let mode = std::fs::metadata(dir).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o755, "directory {} has mode {mode:o}", dir.display());
    }
    // The installed binary runs with the host's libraries and accepts the
    // example config once the broker's CA is next to it, as the example
    // says; without it, it names the missing file.
    let etc = tempfile::tempdir().unwrap();
    let example = etc.path().join("config.toml");
    std::fs::copy("/usr/share/doc/cvm-init/examples/config.toml", &example).unwrap();
    let check = || {
        Command::new("/usr/bin/cvm-init")
            .arg("--config")
            .arg(&example)
            .args(["--cmdline", "/dev/null", "check-config"])
            .output()
            .unwrap()
    };
    let out = check();
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("broker-ca.pem"),
        "check-config of the example without its CA: {out:?}"
    );
    vm_bench::workload::make_tls(etc.path()).unwrap();
    std::fs::rename(
        etc.path().join("cert.pem"),
        etc.path().join("broker-ca.pem"),
    )
    .unwrap();
    let out = check();
    assert!(
        out.status.success(),
        "installed cvm-init check-config of the example: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Nothing enabled, nothing in /boot, /etc or the generators' config.
    let changes = after.changes_since(&before, &listed);
    assert!(
        changes.is_empty(),
        "installing changed the host:\n{}",
        changes.join("\n")
    );
    for unit in ["cvm-init.service", "cvm-init-secrets.service"] {
        assert_eq!(
            package::unit_enablement(unit).unwrap(),
            "disabled",
            "{unit}"
        );
    }

    // An initramfs regenerated on the unconfigured machine does not carry
    // cvm-init: the dracut module and the hook are opt-in.
    let kernel = vm_bench::kernel::fetch_kernel(&vm_bench::cache_dir()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for g in gens {
        let out = dir.path().join(format!("{g:?}.img"));
        let built = distro_initrd::build(
            &kernel,
            &distro_initrd::Request {
                generator: g,
                config_dir: None,
                network_file: None,
                scratch: &dir.path().join(format!("{g:?}-scratch")),
                out: &out,
            },
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
        let listing = g.list(&out).unwrap();
        // mkinitramfs copies every boot script into every image; ours exits
        // at once without /etc/cvm-init/config.toml
        // (tests/lint_integration.rs), which only the configured hook adds.
        let inert: &[&str] = match g {
            Generator::Dracut => &[],
            Generator::InitramfsTools => &["scripts/local-bottom/cvm-init"],
        };
        let ours: Vec<&str> = listing
            .lines()
            .filter(|l| l.contains("cvm-init") && !l.starts_with("Arguments:"))
            .collect();
        assert_eq!(
            ours, inert,
            "{g:?} on an unconfigured machine:\n{listing}\n--- log ---\n{}",
            built.log
        );
        eprintln!("timing: {g:?} unconfigured: {:.1?}", built.took);
    }

    drop(installed);
    let purged = HostState::capture().unwrap();
    let changes = purged.changes_since(&before, &[]);
    assert!(
        changes.is_empty(),
        "dpkg --purge left changes:\n{}",
        changes.join("\n")
    );
}

/// Makes the initrd with `generator` from the installed package, checks
/// what went into it, and runs the two-boot scenario.
fn boot_twice(generator: Generator, expected_in_initrd: &[&str], dracut_modules: &[&str]) {
    let test = format!("{generator:?} VM test");
    let Some(_g) = ready(&test, &[generator]) else {
        return;
    };
    let _installed = install();
    let dir = tempfile::tempdir().unwrap();
    let bench = AgentBench::with_options(
        dir.path(),
        Options {
            generator: Some(generator),
            ..Options::default()
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    let built = bench.generated.as_ref().unwrap();
    eprintln!(
        "timing: {generator:?} initrd: {:.1?}, {} MiB",
        built.took,
        std::fs::metadata(&built.image).unwrap().len() >> 20
    );
    let listing = generator.list(&built.image).unwrap();
    for want in expected_in_initrd {
        assert!(
            listing.contains(want),
            "{generator:?} initrd lacks {want}:\n{listing}\n--- log ---\n{}",
            built.log
        );
    }
    // lsinitrd lists dracut's modules one per line after "dracut modules:".
    let modules: Vec<&str> = listing
        .lines()
        .skip_while(|l| !l.starts_with("dracut modules:"))
        .skip(1)
        .take_while(|l| !l.starts_with('='))
        .map(str::trim)
        .collect();
    for m in dracut_modules {
        assert!(
            modules.contains(m),
            "dracut module {m} missing from {modules:?}\n--- log ---\n{}",
            built.log
        );
    }

    let data = bench.blank_disk("data.img", 64).unwrap();
    let (first, second) = vm_bench::demo::provision_then_unlock(&bench, &data, 1)
        .unwrap_or_else(|e| panic!("{generator:?}: {e:#}"));
    eprintln!(
        "timing: {generator:?} boot 1 to serving {:.1?} (cvm-init {:?} ms, volume {:?} ms), \
         boot 2 to serving {:.1?} (cvm-init {:?} ms, volume {:?} ms)",
        first.to_serving,
        first.handoff_ms,
        first.volume_ms,
        second.to_serving,
        second.handoff_ms,
        second.volume_ms
    );
    hostile_command_lines(&bench, &data, generator);
}

/// What a console shows when a shell is offered: systemd's emergency and
/// rescue modes, dracut's shell, initramfs-tools' `(initramfs)` prompt,
/// busybox ash and bash prompts.
const SHELL_MARKERS: &[&str] = &[
    "emergency mode",
    "rescue mode",
    "maintenance",
    "Dropping to debug shell",
    "dracut:/#",
    "(initramfs)",
    "built-in shell",
    "can't access tty",
    "job control",
    "sh-5",
    "Spawning shell",
    "debug shell",
];

/// The host adds words to the kernel command line that open a shell or
/// skip cvm-init: no shell appears on the console, the broker is not even
/// asked to attest, the VM powers off by itself and the disk is unchanged.
fn hostile_command_lines(bench: &AgentBench, data: &Path, generator: Generator) {
    let words: &[&str] = match generator {
        Generator::Dracut => &[
            "rd.systemd.unit=emergency.target",
            "rd.systemd.mask=cvm-init.service",
            "rd.break",
        ],
        Generator::InitramfsTools => &["break=init", "init=/bin/sh"],
    };
    for word in words {
        let before = agent::file_digest(data).unwrap();
        let auths = bench.broker_log().matches("/auth").count();
        let log = format!("hostile-{}.log", word.replace(['=', '/', '.'], "_"));
        let (mut vm, _) = bench.boot_with(&[data], word, 1024, &log).unwrap();
        let exited = vm.wait_exit(std::time::Duration::from_secs(300));
        let console = vm.output();
        assert!(
            exited.is_ok(),
            "{generator:?} with {word}: the VM did not power off\n{console}"
        );
        for marker in SHELL_MARKERS {
            assert!(
                !console.contains(marker),
                "{generator:?} with {word}: the console offers a shell ({marker:?})\n{console}"
            );
        }
        assert!(
            !console.contains("WORKLOAD: started"),
            "{generator:?} with {word}: the workload ran\n{console}"
        );
        assert_eq!(
            bench.broker_log().matches("/auth").count(),
            auths,
            "{generator:?} with {word}: the broker was contacted\n{console}"
        );
        assert_eq!(
            agent::file_digest(data).unwrap(),
            before,
            "{generator:?} with {word}: the disk was written"
        );
        let refused = console
            .lines()
            .find(|l| l.contains("The host wrote it"))
            .unwrap_or("(cvm-init did not run)");
        eprintln!(
            "{generator:?} with {word}: powered off after {:.1?}; {refused}",
            vm.elapsed()
        );
    }
}

#[test]
fn vm_dracut_initrd_provisions_then_unlocks() {
    boot_twice(
        Generator::Dracut,
        &[
            "usr/bin/cvm-init",
            "etc/cvm-init/config.toml",
            "etc/cvm-init/broker-ca.pem",
            "initrd-fs.target.requires/cvm-init.service",
            "usr/lib/systemd/system/cvm-init.service",
            "cvm-init.service.d/network.conf",
            "etc/systemd/network/10-vm-bench.network",
            "usr/sbin/mkfs.ext4",
            "95-dm-notify.rules",
            "dm-crypt.ko",
            "initrd-switch-root.service.d/cvm-init.conf",
            "cvm-init-poweroff.service",
            "etc/systemd/system/emergency.target",
            "shutdown-emergency/00-cvm-init-emergency.sh",
        ],
        &["cvm-init", "systemd", "network", "systemd-networkd", "dm"],
    );
}

#[test]
fn vm_initramfs_tools_initrd_provisions_then_unlocks() {
    boot_twice(
        Generator::InitramfsTools,
        &[
            "usr/bin/cvm-init",
            "etc/cvm-init/config.toml",
            "etc/cvm-init/broker-ca.pem",
            "scripts/local-bottom/cvm-init",
            "conf/conf.d/cvm-init",
            "mkfs.ext4",
            "95-dm-notify.rules",
            "dm-crypt.ko",
            "virtio_net.ko",
        ],
        &[],
    );
}
