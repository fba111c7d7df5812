//! The bench's own end-to-end check: one boot whose `/init` is
//! `image-build/test-init.sh` (busybox sh). It loads
//! [`crate::kernel::GUEST_MODULES`] from the ordered list, reaches an HTTP
//! server on the host through 10.0.2.2, makes LUKS2 + ext4 on a blank
//! virtio disk with the host's `cryptsetup` and `mkfs.ext4` (copied in
//! with their libraries) and writes a file. The disk is then scanned: it
//! must hold a LUKS2 header and not the plaintext.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};

use crate::initramfs::Initramfs;
use crate::kernel::{self, Kernel};
use crate::qemu::{Vm, VmSpec};

/// Size of the blank data disk.
pub const DISK_MB: u64 = 64;

/// What a smoke run measured.
#[derive(Debug)]
pub struct SmokeReport {
    /// Kernel release booted.
    pub kernel: String,
    /// In-guest module paths, in load order.
    pub modules: Vec<String>,
    /// Time to fetch (or find) the kernel and build the initramfs.
    pub prepare: Duration,
    /// QEMU start to the first line of `/init`.
    pub to_init: Duration,
    /// QEMU start to `SMOKE: ok`.
    pub to_ok: Duration,
    /// QEMU start to QEMU exit.
    pub boot_total: Duration,
    /// Console log path.
    pub log: PathBuf,
}

/// A unique-enough token (no randomness needed: it only has to be absent
/// from a fresh disk by chance).
fn token(prefix: &str) -> String {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{prefix}{:x}{:x}", t, std::process::id())
}

/// Builds the smoke initramfs for `kernel` at `out`.
pub fn build_initramfs(kernel: &Kernel, out: &Path) -> Result<Initramfs> {
    let modules = kernel::module_closure(kernel, kernel::GUEST_MODULES)?;
    let mut t = Initramfs::new()?;
    t.add_busybox()?;
    let cryptsetup =
        crate::find_tool("cryptsetup").context("cryptsetup (package cryptsetup-bin)")?;
    let mkfs = crate::find_tool("mkfs.ext4").context("mkfs.ext4 (package e2fsprogs)")?;
    t.add_binary_with_libs(&cryptsetup, "/sbin/cryptsetup")?
        .add_binary_with_libs(&mkfs, "/sbin/mkfs.ext4")?;
    if Path::new("/etc/mke2fs.conf").is_file() {
        t.add_file(Path::new("/etc/mke2fs.conf"), "/etc/mke2fs.conf", 0o644)?;
    }
    t.add_file(
        &crate::image_build_dir().join("test-init.sh"),
        "/init",
        0o755,
    )?
    .add_bytes(token("smoke-key-").as_bytes(), "/etc/smoke.key", 0o600)?
    .add_modules(kernel, &modules)?;
    t.write_cpio(out)?;
    Ok(t)
}

/// Serves one HTTP request on 127.0.0.1 with `body`; gives up after `timeout`.
fn serve_once(body: String, timeout: Duration) -> Result<(u16, JoinHandle<Result<()>>)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    listener.set_nonblocking(true)?;
    let handle = std::thread::spawn(move || -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut stream = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() > deadline {
                        bail!("no HTTP request from the guest");
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(e.into()),
            }
        };
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut req = Vec::new();
        let mut buf = [0u8; 1024];
        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf)?;
            if n == 0 {
                break;
            }
            req.extend_from_slice(&buf[..n]);
        }
        if !req.starts_with(b"GET /ping ") {
            bail!("unexpected request {:?}", String::from_utf8_lossy(&req));
        }
        write!(
            stream,
            "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        Ok(())
    });
    Ok((port, handle))
}

/// Runs the smoke boot with files in `workdir` (initrd, disk, console
/// log); `cache` is where the kernel is kept (see [`crate::cache_dir`]).
pub fn run(cache: &Path, workdir: &Path) -> Result<SmokeReport> {
    let t0 = Instant::now();
    let kernel = kernel::fetch_kernel(cache)?;
    fs::create_dir_all(workdir)?;
    let initrd = workdir.join("smoke-initrd.cpio");
    let tree = build_initramfs(&kernel, &initrd)?;
    let disk = workdir.join("smoke-disk.img");
    fs::File::create(&disk)?.set_len(DISK_MB << 20)?;
    let prepare = t0.elapsed();

    let pong = token("pong-");
    let secret = token("smoke-plaintext-");
    let (port, server) = serve_once(pong.clone(), Duration::from_secs(120))?;
    let log = workdir.join("smoke-console.log");
    let mut spec = VmSpec::new(kernel.boot_image(), &initrd);
    spec.disks = vec![disk.clone()];
    spec.append = format!("smoke_port={port} smoke_secret={secret}");
    spec.log = Some(log.clone());
    let mut vm = Vm::boot(spec)?;
    let wait = Duration::from_secs(120);
    vm.wait_for("SMOKE: init started", wait)?;
    let to_init = vm.elapsed();
    let (i, line) = vm.wait_for_any(&["SMOKE: http reply", "SMOKE: FAIL"], wait)?;
    if i != 0 {
        bail!("{line}\n(console log: {})", log.display());
    }
    if !line.ends_with(&pong) {
        bail!("guest got a wrong HTTP reply: {line}");
    }
    let (i, line) = vm.wait_for_any(&["SMOKE: ok", "SMOKE: FAIL"], wait)?;
    if i != 0 {
        bail!("{line}\n(console log: {})", log.display());
    }
    let to_ok = vm.elapsed();
    let status = vm.wait_exit(Duration::from_secs(30))?;
    let boot_total = vm.elapsed();
    if !status.success() {
        bail!("QEMU exited with {status}");
    }
    server
        .join()
        .map_err(|_| anyhow!("HTTP server thread panicked"))??;

    let mut head = [0u8; 6];
    fs::File::open(&disk)?.read_exact(&mut head)?;
    if &head != b"LUKS\xba\xbe" {
        bail!("no LUKS header on the disk after the boot");
    }
    if crate::scan::image_contains(&disk, secret.as_bytes())? {
        bail!("the plaintext is readable on the disk image");
    }
    Ok(SmokeReport {
        kernel: kernel.version,
        modules: tree.modules().to_vec(),
        prepare,
        to_init,
        to_ok,
        boot_total,
        log,
    })
}
