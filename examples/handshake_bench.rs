//! Handshake benchmark: the agent's whole attested fetch (auth, attest,
//! one JWE resource, fresh key and fresh TLS connection) against the
//! floor of one pinned TLS connection plus one request to the same broker,
//! measured in the same run. Prints milliseconds and the ratio, twice:
//! warm (in this process, one-time costs paid before the rounds) and as
//! whole processes (`cvm-init fetch` against this example run with
//! `--once`: one pinned connection and one request, built the same way),
//! which is where a one-time initialisation shows.
//!
//! `cargo build --release --bins && cargo run --release --example handshake_bench`

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use cvm_init::attest::{self, Paths};
use cvm_init::broker::jwe::{EphemeralKey, KeyAlg};
use cvm_init::broker::tls::{client_config, Pin};
use cvm_init::broker::BrokerClient;
use cvm_init::config::{AttesterKind, Config};

const ROUNDS: u32 = 50;

/// `--once URL CA`: one pinned TLS connection and one request, then exit.
fn once(url: &str, ca: &std::path::Path) -> Result<()> {
    let http = reqwest::blocking::Client::builder()
        .tls_backend_preconfigured(client_config(&Pin::ca_file(ca)?)?)
        .no_proxy()
        .build()?;
    let status = http
        .get(format!("{url}/kbs/v0/resource/a/b/c"))
        .send()?
        .status();
    if status.as_u16() != 401 {
        bail!("unexpected status {status}");
    }
    Ok(())
}

/// Processes run per side in the process comparison.
const PROCESSES: u32 = 20;

/// Median milliseconds of `cmd` run as a whole process.
fn process_ms(mut cmd: impl FnMut() -> Command) -> Result<f64> {
    let mut times = Vec::new();
    for _ in 0..PROCESSES {
        let t = Instant::now();
        let status = cmd().stdout(Stdio::null()).stderr(Stdio::null()).status()?;
        if !status.success() {
            bail!("{:?} failed: {status}", cmd());
        }
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, url, ca] = args.as_slice() {
        if flag == "--once" {
            return once(url, std::path::Path::new(ca));
        }
    }
    let exe = std::env::current_exe()?;
    let bin = exe
        .parent()
        .and_then(|p| p.parent())
        .context("no target directory")?
        .join("kbs-dev");
    if !bin.exists() {
        bail!(
            "{} missing: cargo build --release -p kbs-dev",
            bin.display()
        );
    }
    // tmpfs: `cvm-init fetch` writes secrets nowhere else.
    let dir = tempfile::tempdir_in("/dev/shm")?;
    std::fs::create_dir_all(dir.path().join("res/default/tls"))?;
    std::fs::write(dir.path().join("res/default/tls/key"), [7u8; 64])?;
    let ready = dir.path().join("url");
    let mut broker = Command::new(&bin)
        .arg("--resources")
        .arg(dir.path().join("res"))
        .arg("--tls-dir")
        .arg(dir.path().join("tls"))
        .arg("--ready-file")
        .arg(&ready)
        .stderr(Stdio::null())
        .spawn()?;
    let start = Instant::now();
    while !ready.exists() {
        if start.elapsed() > Duration::from_secs(20) {
            bail!("kbs-dev did not start");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let url = std::fs::read_to_string(&ready)?;
    let ca = dir.path().join("tls/ca.pem");
    let config = Config::from_toml(&format!(
        "[broker]\nurl = \"{url}\"\nca_cert = \"{}\"\n",
        ca.display()
    ))?;
    let log = log::LevelFilter::Warn;
    cvm_init::logging::init(log, false);

    // Baseline: a fresh pinned TLS connection and one request.
    let baseline = time(|| once(&url, &ca))?;

    // The agent: fresh key, fresh client, auth + attest + one resource.
    let attester = attest::select(AttesterKind::Simulated, true, &Paths::default())?;
    let resources = ["default/tls/key".parse().map_err(anyhow::Error::msg)?];
    let agent = time(|| {
        let key = EphemeralKey::generate(KeyAlg::EcdhEsA256Kw)?;
        let client = BrokerClient::new(&config.broker)?;
        let got = client.fetch_all(attester.as_ref(), &key, &resources)?;
        if got.len() != 1 {
            bail!("expected one resource");
        }
        Ok(())
    })?;

    // Whole processes: `cvm-init fetch` vs `--once`, same profile.
    let cvm_init = bin.with_file_name("cvm-init");
    if !cvm_init.exists() {
        bail!(
            "{} missing: cargo build --release --bins",
            cvm_init.display()
        );
    }
    let config_file = dir.path().join("config.toml");
    std::fs::write(
        &config_file,
        format!(
            "[broker]\nurl = \"{url}\"\nca_cert = \"{}\"\n\n[attester]\nkind = \"simulated\"\n",
            ca.display()
        ),
    )?;
    let out = dir.path().join("out/key");
    let fetch_process = process_ms(|| {
        let mut c = Command::new(&cvm_init);
        c.arg("--config")
            .arg(&config_file)
            .arg("--allow-simulated-tee")
            // The host's own command line is not a CVM's (it may name
            // an rdinit= that a boot would refuse).
            .args(["--cmdline", "/dev/null"])
            .args(["fetch", "default/tls/key", "--output"])
            .arg(&out);
        c
    })?;
    let once_process = process_ms(|| {
        let mut c = Command::new(&exe);
        c.arg("--once").arg(&url).arg(&ca);
        c
    })?;
    let _ = broker.kill();
    let _ = broker.wait();

    println!("rounds: {ROUNDS} each, loopback, kbs-dev (release)");
    println!("baseline  (pinned TLS connect + 1 request): {baseline:8.2} ms");
    println!("agent     (key + TLS + auth + attest + JWE): {agent:8.2} ms");
    println!("ratio agent/baseline: {:.2}", agent / baseline);
    println!("processes: median of {PROCESSES} each");
    println!("baseline process (--once: pinned TLS + 1 request): {once_process:8.2} ms");
    println!("cvm-init fetch process:                            {fetch_process:8.2} ms");
    println!(
        "ratio fetch/baseline process: {:.2} (target <= 1.5)",
        fetch_process / once_process
    );
    Ok(())
}

/// Mean milliseconds of `f` over ROUNDS, after one warm-up call.
fn time(mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    let start = Instant::now();
    for _ in 0..ROUNDS {
        f()?;
    }
    Ok(start.elapsed().as_secs_f64() * 1000.0 / f64::from(ROUNDS))
}
