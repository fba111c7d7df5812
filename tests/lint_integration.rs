//! Checks for the integration files that cannot run here (they run in
//! initrds, image builders and booted VMs): shellcheck on every shell
//! script, `systemd-analyze verify` on the units and their drop-ins, and
//! the opt-in behaviour of the dracut module and the initramfs-tools hook.
//!
//! A missing tool skips its check with a loud message, unless
//! `CVM_LINT_REQUIRED=1`, which makes it a failure (CI sets it once
//! scripts/setup installs shellcheck and systemd).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn lint_required() -> bool {
    std::env::var("CVM_LINT_REQUIRED").as_deref() == Ok("1")
}

/// Whether `tool` runs; if not, skip loudly or (when required) fail.
fn have(tool: &str, package: &str) -> bool {
    let runs = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !runs {
        assert!(
            !lint_required(),
            "{tool} is not installed and CVM_LINT_REQUIRED=1: apt-get install {package}"
        );
        eprintln!(
            "\n*** SKIPPED: {tool} is not installed (apt-get install {package}); \
             set CVM_LINT_REQUIRED=1 to make this a failure ***\n"
        );
    }
    runs
}

fn show(out: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A file is a shell script if it is named *.sh or its `#!` line runs
/// sh, bash or dash (directly or through env).
fn is_shell_script(path: &Path) -> bool {
    if path.extension().is_some_and(|e| e == "sh") {
        return true;
    }
    let Ok(text) = fs::read(path) else {
        return false;
    };
    let first = text.split(|&b| b == b'\n').next().unwrap_or_default();
    let Some(line) = std::str::from_utf8(first)
        .ok()
        .and_then(|l| l.strip_prefix("#!"))
    else {
        return false;
    };
    let mut words = line.split_whitespace();
    let mut interp = words.next().unwrap_or_default();
    if interp.ends_with("/env") {
        interp = words.next().unwrap_or_default();
    }
    matches!(
        interp.rsplit('/').next().unwrap_or_default(),
        "sh" | "bash" | "dash"
    )
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        // Build outputs and local package drops are not ours to lint.
        if name == "mkosi.packages" || name == "mkosi.output" || name == "target" {
            continue;
        }
        if path.is_dir() {
            collect(&path, out);
        } else if path.is_file() && is_shell_script(&path) {
            out.push(path);
        }
    }
}

fn shell_scripts() -> Vec<PathBuf> {
    let root = repo();
    let mut scripts = Vec::new();
    for dir in ["scripts", "image-build", "initramfs"] {
        collect(&root.join(dir), &mut scripts);
    }
    scripts.push(root.join(".ci/run"));
    scripts.sort();
    scripts
}

#[test]
fn the_script_list_finds_the_known_scripts() {
    // Guards the discovery: a lint that finds nothing passes vacuously.
    let scripts = shell_scripts();
    let root = repo();
    for known in [
        ".ci/run",
        "scripts/test",
        "initramfs/dracut/90cvm-init/module-setup.sh",
        "initramfs/initramfs-tools/hooks/cvm-init",
        "initramfs/initramfs-tools/scripts/local-bottom/cvm-init",
        "initramfs/dracut/90cvm-init/cvm-init-emergency.sh",
        "initramfs/initramfs-tools/cvm-init-functions",
        "image-build/packer/provision.sh",
        "image-build/mkosi/mkosi.postinst",
        "image-build/mkosi/mkosi.postoutput",
        "image-build/mkosi/mkosi.sync",
        "image-build/mkosi/mkosi.extra/usr/local/sbin/cvm-demo-workload",
    ] {
        assert!(
            scripts.contains(&root.join(known)),
            "{known} not found among the shell scripts: {scripts:?}"
        );
    }
}

#[test]
fn shellcheck_passes_on_every_shell_script() {
    if !have("shellcheck", "shellcheck") {
        return;
    }
    let scripts = shell_scripts();
    let out = Command::new("shellcheck")
        .current_dir(repo())
        .arg("--")
        .args(&scripts)
        .output()
        .expect("run shellcheck");
    assert!(
        out.status.success() && out.stdout.is_empty(),
        "shellcheck found problems in {} scripts:\n{}",
        scripts.len(),
        show(&out)
    );
}

const UNITS: [&str; 2] = ["cvm-init.service", "cvm-init-secrets.service"];

/// Copies of the units in a temporary directory, runnable by
/// `systemd-analyze verify` on a machine without cvm-init installed:
/// ExecStart points at /bin/true (the check that the binary exists is the
/// only one that depends on the machine), and sysroot.mount, which exists
/// only in an initrd, is a stub.
fn unit_dir(drop_ins: &[(&str, &Path)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let systemd = repo().join("systemd");
    for unit in UNITS {
        let text = fs::read_to_string(systemd.join(unit)).expect("read unit");
        assert!(
            text.contains("ExecStart=/usr/bin/cvm-init "),
            "{unit}: ExecStart no longer runs /usr/bin/cvm-init"
        );
        let text = text.replace("ExecStart=/usr/bin/cvm-init ", "ExecStart=/bin/true ");
        fs::write(dir.path().join(unit), text).expect("write unit");
    }
    fs::write(
        dir.path().join("sysroot.mount"),
        "[Unit]\nDescription=stub of the initrd's root mount\n\
         [Mount]\nWhat=tmpfs\nWhere=/sysroot\nType=tmpfs\n",
    )
    .expect("write stub");
    for (unit, conf) in drop_ins {
        let d = dir.path().join(format!("{unit}.d"));
        fs::create_dir_all(&d).expect("drop-in dir");
        fs::copy(conf, d.join(conf.file_name().expect("name"))).expect("copy drop-in");
    }
    dir
}

/// `systemd-analyze verify` exits 0 on unknown keys and bad values (it
/// only warns), so any output at all is a failure.
fn verify(dir: &Path, units: &[&str]) {
    let out = Command::new("systemd-analyze")
        .current_dir(dir)
        .args(["verify", "--man=no"])
        .args(units.iter().map(|u| dir.join(u)))
        .output()
        .expect("run systemd-analyze");
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "systemd-analyze verify {units:?}:\n{}",
        show(&out)
    );
}

#[test]
fn systemd_units_verify_with_their_network_drop_in() {
    if !have("systemd-analyze", "systemd") {
        return;
    }
    let network = repo().join("systemd/cvm-init.service.d/network.conf");
    let dir = unit_dir(&[("cvm-init.service", &network)]);
    verify(dir.path(), &UNITS);
}

#[test]
fn failure_drop_ins_verify_on_both_units() {
    if !have("systemd-analyze", "systemd") {
        return;
    }
    for example in ["failure-reboot.conf", "failure-shell-debug.conf"] {
        let conf = repo().join("systemd/examples").join(example);
        let dir = unit_dir(&[(UNITS[0], &conf), (UNITS[1], &conf)]);
        verify(dir.path(), &UNITS);
    }
}

#[test]
fn gpu_drop_in_verifies_on_the_booted_system_unit() {
    if !have("systemd-analyze", "systemd") {
        return;
    }
    let conf = repo().join("systemd/examples/gpus-after-driver.conf");
    let dir = unit_dir(&[(UNITS[1], &conf)]);
    // The driver's unit, as the NVIDIA packages install it.
    fs::write(
        dir.path().join("nvidia-persistenced.service"),
        "[Unit]\nDescription=stub of the NVIDIA persistence daemon\n\
         [Service]\nType=forking\nExecStart=/bin/true\n",
    )
    .expect("write stub");
    verify(dir.path(), &[UNITS[1]]);
}

#[test]
fn workload_drop_in_verifies_on_a_workload() {
    if !have("systemd-analyze", "systemd") {
        return;
    }
    let conf = repo().join("systemd/examples/workload-after-cvm-init.conf");
    let dir = unit_dir(&[("workload.service", &conf)]);
    fs::write(
        dir.path().join("workload.service"),
        "[Unit]\nDescription=stub workload\n\
         [Service]\nType=oneshot\nExecStart=/bin/true\n",
    )
    .expect("write workload");
    verify(dir.path(), &["workload.service", UNITS[1]]);
}

fn run_bash(script: &str) -> Output {
    Command::new("bash")
        .args(["-c", script])
        .output()
        .expect("run bash")
}

const HOST_CONFIG: &str = "/etc/cvm-init/config.toml";

#[test]
fn dracut_module_is_opt_in_and_reads_the_config() {
    let module = repo().join("initramfs/dracut/90cvm-init/module-setup.sh");
    let module = module.display();
    if Path::new(HOST_CONFIG).exists() {
        eprintln!("*** SKIPPED the unconfigured case: this machine has {HOST_CONFIG} ***");
    } else {
        let out = run_bash(&format!("source '{module}'; check; echo \"check=$?\""));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("check=255"),
            "check() must return 255 without a config:\n{}",
            show(&out)
        );
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.toml");
    let probe = |toml: &str| -> String {
        fs::write(&config, toml).expect("write config");
        let out = run_bash(&format!(
            "source '{module}'; cvm_init_config='{}'; \
             if cvm_init_needs_network; then echo net=yes; else echo net=no; fi; \
             echo \"action=$(cvm_init_toml_get failure action)\"",
            config.display()
        ));
        assert!(out.status.success(), "{}", show(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let remote = probe(
        "[broker]\nurl = \"https://kbs.example.com:8080\"  # remote\n\
         [failure]\naction = \"reboot\"\n",
    );
    assert!(
        remote.contains("net=yes") && remote.contains("action=reboot"),
        "{remote}"
    );
    let local = probe("[broker]\nurl = \"http://127.0.0.1:8080\"\n[ failure ]\n");
    assert!(
        local.contains("net=no") && local.contains("action=\n"),
        "{local}"
    );
    // A url in another section is not the broker's.
    let other =
        probe("[x]\nurl = \"https://kbs.example.com\"\n[broker]\nurl = \"https://localhost:1\"\n");
    assert!(other.contains("net=no"), "{other}");
}

#[test]
fn initramfs_tools_hook_does_nothing_unconfigured() {
    if Path::new(HOST_CONFIG).exists() {
        eprintln!("*** SKIPPED: this machine has {HOST_CONFIG} ***");
        return;
    }
    // Without a config the hook must exit 0 before it touches the
    // initramfs (it runs on every update-initramfs once installed).
    let dest = tempfile::tempdir().expect("tempdir");
    for script in [
        "initramfs/initramfs-tools/hooks/cvm-init",
        "initramfs/initramfs-tools/scripts/local-bottom/cvm-init",
    ] {
        let out = Command::new("sh")
            .arg(repo().join(script))
            .env("DESTDIR", dest.path())
            .output()
            .expect("run sh");
        assert!(
            out.status.success() && out.stdout.is_empty(),
            "{script}:\n{}",
            show(&out)
        );
        let out = Command::new("sh")
            .arg(repo().join(script))
            .arg("prereqs")
            .output()
            .expect("run sh");
        assert!(out.status.success(), "{script} prereqs:\n{}", show(&out));
    }
    assert!(
        fs::read_dir(dest.path()).expect("read").next().is_none(),
        "the hook wrote into DESTDIR without a config"
    );
}

/// The dracut module's hardening: every stock initrd unit that would go to
/// an emergency target gets the drop-in that powers off instead, and
/// switch-root needs cvm-init; all of it verifies against this machine's
/// systemd units.
#[test]
fn initrd_hardening_drop_ins_verify_on_the_stock_units() {
    if !have("systemd-analyze", "systemd") {
        return;
    }
    let dir = unit_dir(&[]);
    let d = dir.path();
    let initrd = repo().join("systemd/initrd");
    fs::copy(
        initrd.join("cvm-init-poweroff.service"),
        d.join("cvm-init-poweroff.service"),
    )
    .expect("copy cvm-init-poweroff.service");
    let onfailure = [
        "initrd.target",
        "initrd-fs.target",
        "initrd-root-fs.target",
        "initrd-root-device.target",
        "initrd-usr-fs.target",
        "local-fs.target",
        "initrd-parse-etc.service",
        "initrd-cleanup.service",
        "systemd-fsck-root.service",
        "sysinit.target",
        "basic.target",
    ];
    let own = [
        (
            "initrd-switch-root.target",
            "initrd-switch-root-target.conf",
        ),
        (
            "initrd-switch-root.service",
            "initrd-switch-root-service.conf",
        ),
    ];
    let mut units: Vec<String> = vec!["cvm-init-poweroff.service".into(), UNITS[0].into()];
    for (u, conf) in onfailure
        .iter()
        .map(|u| (*u, "initrd-onfailure.conf"))
        .chain(own)
    {
        fs::copy(Path::new("/usr/lib/systemd/system").join(u), d.join(u)).expect("stock unit");
        fs::create_dir_all(d.join(format!("{u}.d"))).expect("drop-in directory");
        fs::copy(initrd.join(conf), d.join(format!("{u}.d/cvm-init.conf"))).expect("drop-in");
        units.push(u.into());
    }
    let units: Vec<&str> = units.iter().map(String::as_str).collect();
    verify(d, &units);
}
