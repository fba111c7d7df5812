//! kbs-dev: a DEVELOPMENT key broker speaking the Trustee KBS protocol
//! 0.4.0, for tests and demos on a loopback address. NOT FOR PRODUCTION:
//! it keeps resources as plain files, its TLS CA key lives only in memory
//! for one run, and it does not check SNP/TDX signatures against AMD or
//! Intel roots (only the REPORT_DATA binding and the measurement). NVIDIA
//! GPU evidence: the nonce binding always, signatures as
//! `--gpu-signatures` says.
//!
//! It shares the wire types, the JWE code and the evidence decoders with
//! the agent, nothing else.

mod faults;
mod policy;
mod server;
mod tls;
mod verify;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "kbs-dev",
    about = "DEVELOPMENT ONLY Trustee-KBS-compatible broker (protocol 0.4.0). Never use in production."
)]
pub struct Args {
    /// Address to listen on (loopback only unless --any-address).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Allow a non-loopback listen address (e.g. for a QEMU guest: use 127.0.0.1 and QEMU's 10.0.2.2 instead).
    #[arg(long)]
    any_address: bool,
    /// Directory of resources: <dir>/<repo>/<type>/<tag> files.
    #[arg(long)]
    resources: PathBuf,
    /// Policy file (TOML); without it every verified TEE may read everything.
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Directory where the generated CA (ca.pem), and the server key's
    /// SPKI SHA-256 (spki-sha256) are written for the agent to pin.
    #[arg(long)]
    tls_dir: Option<PathBuf>,
    /// Reuse the CA saved in --tls-dir by an earlier run (its key is kept
    /// there as ca-key.pem), so an agent that pinned it keeps working
    /// across broker restarts.
    #[arg(long, requires = "tls_dir")]
    keep_ca: bool,
    /// Serve plain HTTP instead of TLS.
    #[arg(long)]
    insecure_http: bool,
    /// Write the base URL here once listening (for scripts and tests).
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// Inject faults for tests (repeatable): delay=MS, status=CODE, deny,
    /// wrong-nonce, corrupt-jwe, wrong-key, html, expire-session,
    /// replay-nonce, bad-nonce=empty|binary|long, nested-json,
    /// jwe=tag|iv|aad|alg|enc, reset, big-body, endless-body, drip,
    /// endless-headers (TLS only), version. See src/faults.rs.
    #[arg(long = "fault")]
    faults: Vec<faults::Fault>,
    /// Apply status/html faults only to the first N requests (default: all).
    #[arg(long)]
    fault_count: Option<u64>,
    /// NVIDIA GPU reports in additional_evidence: their nonce must always
    /// bind the session; `warn` only logs a signature or chain to NVIDIA's
    /// root that does not verify (tests use a stand-in NVML), `require`
    /// refuses it.
    #[arg(long, value_enum, default_value_t = verify::GpuSignatures::Warn)]
    gpu_signatures: verify::GpuSignatures,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if !args.listen.ip().is_loopback() && !args.any_address {
        anyhow::bail!(
            "refusing to listen on {}: this is a development broker; use a loopback address or pass --any-address",
            args.listen
        );
    }
    eprintln!("kbs-dev: DEVELOPMENT BROKER - NOT FOR PRODUCTION - do not give it real secrets");
    let policy = match &args.policy {
        Some(p) => policy::Policy::load(p)?,
        None => {
            eprintln!(
                "kbs-dev: no --policy: every TEE that passes verification may read every resource"
            );
            policy::Policy::allow_all()
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(server::run(args, policy))
}
