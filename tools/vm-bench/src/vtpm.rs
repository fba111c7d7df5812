//! An Azure-like vTPM for the guest: `swtpm` provisioned on the host the
//! way Azure's paravisor provisions its vTPM, and a stand-in IMDS.
//!
//! Provisioning (tpm2-tools against swtpm's TCP port, before any boot):
//! an RSA-2048 restricted signing key (RSASSA-SHA256) made persistent at
//! 0x81000003, the paravisor's AK handle, and NV index 0x01400001 holding
//! a stand-in HCL report ([`cvm_init::evidence::hcl_stand_in`]) whose
//! runtime claims carry that AK. The inner SNP report is the Azure sample's
//! with REPORT_DATA = SHA-256(claims): its AMD signature does not verify,
//! which kbs-dev does not check. swtpm does not regenerate the report when
//! the guest writes user-data (Azure's paravisor does), so the guest sends
//! evidence version 1, bound by the quote.
//!
//! swtpm 0.7 caps an NV index at 2048 bytes (Azure's is 2600), so the
//! claims hold only the AK, not the EK: the report is about 1.8 KB.
//!
//! Each boot gets its own swtpm process on the same state directory,
//! through a UNIX socket QEMU's `tpm-tis` device talks to.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// The Azure SNP sample the stand-in report is built from.
const TEMPLATE: &str = "testdata/evidence/other/azure-snp-vtpm/hcl-report.bin";
/// The sample VCEK the stand-in IMDS serves.
const VCEK: &str = "testdata/evidence/other/azure-snp-vtpm/vcek.pem";

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

/// A provisioned vTPM state directory.
pub struct Vtpm {
    pub state: PathBuf,
    /// The HCL report written to NV index 0x01400001.
    pub hcl_report: Vec<u8>,
}

/// A swtpm process serving one VM.
pub struct Running {
    child: Child,
    pub socket: PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    /// QEMU arguments attaching it as a TPM 2.0 (TIS).
    pub fn qemu_args(&self) -> Vec<String> {
        vec![
            "-chardev".into(),
            format!("socket,id=chrtpm,path={}", self.socket.display()),
            "-tpmdev".into(),
            "emulator,id=tpm0,chardev=chrtpm".into(),
            "-device".into(),
            "tpm-tis,tpmdev=tpm0".into(),
        ]
    }
}

fn wait_for(path: &Path) -> Result<()> {
    let start = Instant::now();
    while !path.exists() {
        if start.elapsed() > Duration::from_secs(10) {
            bail!("swtpm did not create {}", path.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn tpm2(tcti: &str, args: &[&str]) -> Result<String> {
    let mut cmd = Command::new(crate::find_tool(args[0])?);
    cmd.args(&args[1..]).env("TPM2TOOLS_TCTI", tcti);
    crate::output(&mut cmd)
}

impl Vtpm {
    /// Provisions a fresh vTPM state in `dir`.
    pub fn provision(dir: &Path) -> Result<Vtpm> {
        let state = dir.join("vtpm-state");
        std::fs::create_dir_all(&state)?;
        let port = crate::qemu::free_port()?;
        // tpm2-tss's swtpm TCTI finds the control channel at port + 1.
        let ctrl = port + 1;
        let mut swtpm = Command::new(crate::find_tool("swtpm")?)
            .args(["socket", "--tpm2", "--flags", "startup-clear"])
            .arg("--tpmstate")
            .arg(format!("dir={}", state.display()))
            .args([
                "--server",
                &format!("type=tcp,port={port},bindaddr=127.0.0.1"),
            ])
            .args([
                "--ctrl",
                &format!("type=tcp,port={ctrl},bindaddr=127.0.0.1"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting swtpm (package swtpm)")?;
        let result = (|| {
            let start = Instant::now();
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                if start.elapsed() > Duration::from_secs(10) {
                    bail!("swtpm did not listen on port {port}");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let tcti = format!("swtpm:host=127.0.0.1,port={port}");
            let ctx = dir.join("ak.ctx");
            let pem = dir.join("ak.pem");
            let ctx_s = ctx.display().to_string();
            let pem_s = pem.display().to_string();
            tpm2(
                &tcti,
                &[
                    "tpm2_createprimary",
                    "-Q",
                    "-C",
                    "o",
                    "-G",
                    "rsa2048:rsassa-sha256:null",
                    "-a",
                    "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|restricted|sign|noda",
                    "-c",
                    &ctx_s,
                ],
            )?;
            tpm2(
                &tcti,
                &[
                    "tpm2_evictcontrol",
                    "-Q",
                    "-C",
                    "o",
                    "-c",
                    &ctx_s,
                    "0x81000003",
                ],
            )?;
            tpm2(
                &tcti,
                &[
                    "tpm2_readpublic",
                    "-Q",
                    "-c",
                    "0x81000003",
                    "-f",
                    "pem",
                    "-o",
                    &pem_s,
                ],
            )?;
            let modulus = crate::output(
                Command::new(crate::find_tool("openssl")?)
                    .args(["rsa", "-pubin", "-noout", "-modulus", "-in"])
                    .arg(&pem),
            )?;
            let modulus = hex_decode(modulus.trim().trim_start_matches("Modulus="))
                .context("openssl's modulus")?;
            let claims = cvm_init::evidence::hcl_stand_in::claims(&modulus, &[1, 0, 1], &[0; 64]);
            let template = std::fs::read(repo_file(TEMPLATE))?;
            let hcl_report = cvm_init::evidence::hcl_stand_in::report(&template, &claims)?;
            let hcl_file = dir.join("hcl-report.bin");
            std::fs::write(&hcl_file, &hcl_report)?;
            let size = hcl_report.len().to_string();
            tpm2(
                &tcti,
                &[
                    "tpm2_nvdefine",
                    "-Q",
                    "0x01400001",
                    "-C",
                    "o",
                    "-s",
                    &size,
                    "-a",
                    "ownerread|ownerwrite|authread|authwrite",
                ],
            )?;
            let hcl_s = hcl_file.display().to_string();
            tpm2(
                &tcti,
                &["tpm2_nvwrite", "-Q", "0x01400001", "-C", "o", "-i", &hcl_s],
            )?;
            Ok(Vtpm { state, hcl_report })
        })();
        let _ = swtpm.kill();
        let _ = swtpm.wait();
        result
    }

    /// Starts swtpm on this state for one boot.
    pub fn start(&self, dir: &Path) -> Result<Running> {
        let socket = dir.join("swtpm.sock");
        let _ = std::fs::remove_file(&socket);
        let child = Command::new(crate::find_tool("swtpm")?)
            .args(["socket", "--tpm2", "--terminate"])
            .arg("--tpmstate")
            .arg(format!("dir={}", self.state.display()))
            .arg("--ctrl")
            .arg(format!("type=unixio,path={}", socket.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting swtpm")?;
        let running = Running { child, socket };
        wait_for(&running.socket)?;
        Ok(running)
    }
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
        .collect()
}

/// A stand-in for Azure's IMDS on 127.0.0.1 (the guest reaches it at
/// 10.0.2.2): serves the sample VCEK at `/metadata/THIM/amd/certification`
/// to requests carrying `Metadata: true`. Returns the port; the thread
/// lives as long as the process.
pub fn spawn_imds() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let pem = std::fs::read_to_string(repo_file(VCEK))?;
    let body = serde_json::json!({"vcekCert": pem, "certificateChain": ""}).to_string();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut r = BufReader::new(conn);
            let mut request = String::new();
            let _ = r.read_line(&mut request);
            let mut metadata = false;
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).is_err() || h.trim().is_empty() {
                    break;
                }
                metadata |= h.to_ascii_lowercase().starts_with("metadata: true");
            }
            let ok = request.starts_with("GET /metadata/THIM/amd/certification") && metadata;
            let (status, answer) = if ok {
                ("200 OK", body.as_str())
            } else {
                ("400 Bad Request", "")
            };
            let mut conn = r.into_inner();
            let _ = conn.write_all(
                format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n{answer}",
                    answer.len()
                )
                .as_bytes(),
            );
        }
    });
    Ok(port)
}
