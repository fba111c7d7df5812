//! Host-side helpers around the demo workload ([`crate::rootfs::workload_image`]):
//! a TLS key and certificate for it, a look at the certificate it serves,
//! and a busybox stand-in for cvm-init (`image-build/fake-agent-init.sh`)
//! so the workload can be booted without the agent.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::initramfs::Initramfs;
use crate::kernel::{self, Kernel};

/// Port the workload serves HTTPS on inside the guest.
pub const HTTPS_PORT: u16 = 8443;

/// A TLS key and certificate in PEM files.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Certificate (self-signed, CN=workload, SAN IP:127.0.0.1).
    pub cert: PathBuf,
    /// PKCS#8 P-256 private key.
    pub key: PathBuf,
}

/// Makes a self-signed P-256 key and certificate in `dir` with `openssl`.
pub fn make_tls(dir: &Path) -> Result<TlsFiles> {
    let files = TlsFiles {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    let openssl = crate::find_tool("openssl").context("openssl (package openssl)")?;
    crate::run(
        Command::new(openssl)
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ])
            .args(["-nodes", "-days", "2", "-subj", "/CN=workload"])
            .args(["-addext", "subjectAltName=IP:127.0.0.1"])
            .arg("-keyout")
            .arg(&files.key)
            .arg("-out")
            .arg(&files.cert),
    )?;
    Ok(files)
}

/// The PEM certificate a TLS server on `127.0.0.1:port` presents
/// (`openssl s_client`), retrying until `timeout`.
pub fn peer_certificate(port: u16, timeout: Duration) -> Result<String> {
    let openssl = crate::find_tool("openssl").context("openssl (package openssl)")?;
    let deadline = Instant::now() + timeout;
    loop {
        let out = Command::new(&openssl)
            .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        if let (Some(b), Some(e)) = (
            text.find("-----BEGIN CERTIFICATE-----"),
            text.find("-----END CERTIFICATE-----"),
        ) {
            let end = e + "-----END CERTIFICATE-----".len();
            return Ok(format!("{}\n", &text[b..end]));
        }
        if Instant::now() >= deadline {
            bail!("no TLS server answered on 127.0.0.1:{port}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Builds the initramfs of the stand-in agent at `out`: busybox,
/// cryptsetup, mkfs.ext4, the guest modules, `data_key` as the LUKS key
/// file and `tls` as the key and certificate to hand over. Boot it with
/// the workload image as `/dev/vda` and the data disk as `/dev/vdb`.
pub fn build_fake_agent_initramfs(
    kernel: &Kernel,
    data_key: &[u8],
    tls: &TlsFiles,
    out: &Path,
) -> Result<()> {
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
    let init = crate::image_build_dir().join("fake-agent-init.sh");
    t.add_file(&init, "/init", 0o755)?
        .add_bytes(data_key, "/etc/fake-agent/data.key", 0o600)?
        .add_file(&tls.cert, "/etc/fake-agent/tls/cert.pem", 0o644)?
        .add_file(&tls.key, "/etc/fake-agent/tls/key.pem", 0o600)?
        .add_modules(kernel, &modules)?;
    t.write_cpio(out)
}
