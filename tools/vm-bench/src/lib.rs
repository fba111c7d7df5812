//! vm-bench: boots a Debian kernel with a hand-built initramfs under QEMU
//! (software emulation, `-accel tcg -cpu max`) for cvm-init's VM tests and
//! the README's demo. Nothing is installed on the host and nothing needs
//! root mounts.
//!
//! The pieces, in the order a test uses them:
//!
//! 1. [`kernel::fetch_kernel`] unpacks Debian's current kernel into a cache
//!    ([`cache_dir`]); [`kernel::module_closure`] turns module names (e.g.
//!    [`kernel::GUEST_MODULES`]) into `.ko` files in load order.
//! 2. [`initramfs::Initramfs`] stages a file tree: any `/init` binary with
//!    its shared libraries ([`initramfs::Initramfs::add_binary_with_libs`]
//!    always adds `libgcc_s.so.1`), busybox, config files, the modules and
//!    their ordered list at `/etc/cvm-init/modules`; then writes a newc
//!    cpio archive.
//! 3. [`rootfs`] writes a staged tree as an ext4 image without mounting
//!    (`mke2fs -d`); [`rootfs::workload_image`] is the demo workload.
//! 4. [`qemu::Vm`] boots it, records the serial console, waits for lines,
//!    kills QEMU (a power cut) or waits for it to power off.
//! 5. [`scan::image_contains`] checks that secrets are absent from disks.
//!
//! [`smoke::run`] ties them together; `tests/vm_smoke.rs` and
//! `vm-bench smoke` call it.
//!
//! For the Debian package ([`package`]: cargo-deb, `dpkg -i`, what it may
//! change on the host) the initrd is made instead by dracut or
//! initramfs-tools from the installed package ([`distro_initrd`]) and
//! booted by the same [`agent::AgentBench`]; `tests/vm_package.rs`.
//!
//! Host tools used: `apt-get`, `apt-cache`, `dpkg-deb`, `depmod` (kmod),
//! `ldd`, `mke2fs` (e2fsprogs), `qemu-system-x86_64` (qemu-system-x86),
//! `/bin/busybox` (busybox-static), `cryptsetup` (cryptsetup-bin) and
//! `openssl` for the smoke test and the workload. [`missing_tools`]
//! reports which are absent; `scripts/setup` installs them.

pub mod agent;
pub mod bench;
pub mod demo;
pub mod distro_initrd;
pub mod initramfs;
pub mod kernel;
pub mod luks2;
pub mod mkosi;
pub mod package;
pub mod packer;
pub mod qemu;
pub mod rootfs;
pub mod scan;
pub mod smoke;
pub mod vtpm;
pub mod workload;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// Directory of the repository's `image-build/` (scripts, workload files).
pub fn image_build_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../image-build")
}

/// Where kernels and other downloads are cached: `$VM_BENCH_CACHE`, else
/// `$CARGO_TARGET_DIR/vm-cache`, else `<workspace>/target/vm-cache`.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("VM_BENCH_CACHE") {
        return PathBuf::from(d);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("vm-cache")
}

/// Host programs the bench runs, with the Debian package providing each.
pub const HOST_TOOLS: &[(&str, &str)] = &[
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("busybox", "busybox-static"),
    ("depmod", "kmod"),
    ("mke2fs", "e2fsprogs"),
    ("cryptsetup", "cryptsetup-bin"),
    ("veritysetup", "cryptsetup-bin"),
    ("openssl", "openssl"),
    ("apt-get", "apt"),
    ("dpkg-deb", "dpkg"),
    ("ldd", "libc-bin"),
    ("xz", "xz-utils"),
    ("swtpm", "swtpm"),
    ("tpm2_createprimary", "tpm2-tools"),
];

/// The Debian packages providing the [`HOST_TOOLS`] that are not on PATH
/// (`/usr/sbin` and `/sbin` included). Empty when everything is there.
pub fn missing_tools() -> Vec<&'static str> {
    HOST_TOOLS
        .iter()
        .filter(|(tool, _)| find_tool(tool).is_err())
        .map(|(_, pkg)| *pkg)
        .collect()
}

/// For VM tests: true when the host tools are there; otherwise says the
/// test is skipped, or fails it when `VM_BENCH_REQUIRED` is set (CI sets
/// it, since `scripts/setup` installs the tools).
pub fn tools_present(test: &str) -> bool {
    let missing = missing_tools();
    if missing.is_empty() {
        return true;
    }
    let msg = format!(
        "{test}: missing host packages {} (scripts/setup installs them)",
        missing.join(" ")
    );
    assert!(std::env::var_os("VM_BENCH_REQUIRED").is_none(), "{msg}");
    eprintln!("SKIPPED {msg}");
    false
}

/// Finds a host program on PATH, also looking in the sbin directories that a
/// non-root PATH may lack.
pub fn find_tool(name: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let extra = ["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from);
    std::env::split_paths(&path)
        .chain(extra)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .with_context(|| format!("{name} not found on PATH"))
}

/// Runs a command; fails with its stderr if it exits non-zero.
pub(crate) fn run(cmd: &mut Command) -> Result<()> {
    output(cmd).map(|_| ())
}

/// Runs a command and returns its stdout; fails with its stderr if it
/// exits non-zero.
pub(crate) fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("starting {:?}", cmd.get_program()))?;
    if !out.status.success() {
        bail!(
            "{:?} failed ({}): {}",
            cmd,
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
