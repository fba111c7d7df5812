//! What the loopback tests share: building the workspace's other binaries
//! and running the development broker.

// Each test crate uses its own part of this.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Builds workspace package `package` and returns its output `file` (next
/// to the `cvm-init` binary the test runs).
pub fn build(package: &str, file: &str) -> PathBuf {
    let status = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "-p", package])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .unwrap();
    assert!(status.success(), "cargo build -p {package} failed");
    let path = Path::new(env!("CARGO_BIN_EXE_cvm-init")).with_file_name(file);
    assert!(path.exists(), "{} missing", path.display());
    path
}

/// A running development broker; killed on drop.
pub struct Broker {
    child: Child,
    pub url: String,
    pub dir: tempfile::TempDir,
}

impl Broker {
    /// `kbs` serving `secret` as resource `default/<resource>`, over TLS
    /// (its CA in `ca()`) or, with `tls` false, plain HTTP on loopback.
    pub fn start(kbs: &Path, resource: &str, secret: &[u8], tls: bool, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let res = dir.path().join("resources/default").join(resource);
        std::fs::create_dir_all(res.parent().unwrap()).unwrap();
        std::fs::write(&res, secret).unwrap();
        let ready = dir.path().join("url");
        let mut cmd = Command::new(kbs);
        cmd.arg("--resources").arg(dir.path().join("resources"));
        if tls {
            cmd.arg("--tls-dir").arg(dir.path().join("tls"));
        } else {
            cmd.arg("--insecure-http");
        }
        cmd.arg("--ready-file")
            .arg(&ready)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("broker.log")).unwrap());
        let child = cmd.spawn().unwrap();
        let start = Instant::now();
        while !ready.exists() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "kbs-dev did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let url = std::fs::read_to_string(&ready).unwrap();
        Broker { child, url, dir }
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("tls/ca.pem")
    }

    pub fn spki(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("tls/spki-sha256")).unwrap()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("broker.log")).unwrap()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
