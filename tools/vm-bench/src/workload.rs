//! Host-side helpers around the demo workload ([`crate::rootfs::workload_image`]):
//! a TLS key and certificate for it, and a look at the certificate it
//! serves.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

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
