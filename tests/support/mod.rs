//! What the loopback tests share: building the workspace's other binaries
//! and running the development broker.

// Each test crate uses its own part of this.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
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

/// A finished `cvm-init fetch`: its output, the path it was asked to write
/// (on tmpfs), its peak RSS and how long it ran.
pub struct Fetch {
    pub out: Output,
    pub target: PathBuf,
    pub max_rss_kib: u64,
    pub elapsed: Duration,
    _shm: tempfile::TempDir,
}

impl Fetch {
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }

    /// Failed, and wrote neither the file nor its directory.
    pub fn assert_failed_and_wrote_nothing(&self) {
        assert!(
            !self.out.status.success(),
            "expected failure; stderr: {}",
            self.stderr()
        );
        assert!(
            !self.target.exists(),
            "a file was written despite the failure"
        );
        assert!(
            !self.target.parent().unwrap().exists(),
            "the output directory was created despite the failure"
        );
    }
}

/// `cvm-init fetch RESOURCE` with `config`, the kernel command line
/// `cmdline` (as `/proc/cmdline` would read) and extra arguments and
/// environment variables.
pub fn fetch_with(
    config: &str,
    resource: &str,
    extra: &[&str],
    cmdline: &str,
    env: &[(&str, &str)],
) -> Fetch {
    let shm = tempfile::tempdir_in("/dev/shm").unwrap();
    let cfg = shm.path().join("config.toml");
    std::fs::write(&cfg, config).unwrap();
    let cmdline_file = shm.path().join("cmdline");
    std::fs::write(&cmdline_file, format!("{cmdline}\n")).unwrap();
    let target = shm.path().join("out/key.pem");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cvm-init"));
    cmd.arg("--config")
        .arg(&cfg)
        .arg("--cmdline")
        .arg(&cmdline_file)
        .args(["fetch", resource, "--output"])
        .arg(&target)
        .args(extra)
        .envs(env.iter().copied());
    let started = Instant::now();
    let (out, max_rss_kib) = run_measured(&mut cmd);
    Fetch {
        out,
        target,
        max_rss_kib,
        elapsed: started.elapsed(),
        _shm: shm,
    }
}

/// Runs `cmd` to completion; returns its output and its peak RSS in KiB.
///
/// The peak is the new program's `VmHWM` (/proc/PID/status), sampled every
/// 2 ms until it exits: a high-water mark, so only growth in its last
/// moments could be missed. (`wait4`'s `ru_maxrss` cannot be used: it
/// keeps the RSS of the 50 MB test process the child was spawned from.)
pub fn run_measured(cmd: &mut Command) -> (Output, u64) {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let status_file = format!("/proc/{}/status", child.id());
    let exe = std::fs::canonicalize(cmd.get_program()).unwrap_or_default();
    let exe_link = format!("/proc/{}/exe", child.id());
    let mut peak = 0u64;
    let status = loop {
        // Only once the exec happened: before it, the numbers are ours.
        if std::fs::read_link(&exe_link).is_ok_and(|l| l == exe) {
            if let Ok(text) = std::fs::read_to_string(&status_file) {
                let hwm = text
                    .lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok());
                peak = peak.max(hwm.unwrap_or(0));
            }
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let out = Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    };
    (out, peak)
}
