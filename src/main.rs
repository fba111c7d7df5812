//! `cvm-init`: parses arguments, sets up logging, runs one command.

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cvm-init",
    version,
    about = "Attested key delivery and encrypted storage for confidential VMs"
)]
struct Args {
    /// Config file (normally part of the measured image).
    #[arg(long, global = true, default_value = cvm_init::config::DEFAULT_PATH)]
    config: PathBuf,
    /// Kernel command line to read the allowed overrides from.
    #[arg(long, global = true, default_value = "/proc/cmdline", hide = true)]
    cmdline: PathBuf,
    /// Allow the simulated TEE (development and tests only; never secure).
    #[arg(long, global = true)]
    allow_simulated_tee: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the config and print what a boot would do.
    CheckConfig,
    /// Attest, unlock or provision the volumes, mount them and deliver the
    /// secrets (the initrd oneshot under systemd).
    Boot,
    /// Attest and fetch one broker resource into a file on tmpfs.
    Fetch {
        /// Resource path, REPO/TYPE/TAG.
        resource: String,
        /// Output file (must be on tmpfs or ramfs).
        #[arg(long)]
        output: PathBuf,
        /// Allow an output file on a disk-backed filesystem.
        #[arg(long)]
        allow_persistent_output: bool,
    },
    /// Say what a boot would do with a disk (blank, provisioned, interrupted
    /// first boot, refused and why), without a key and without writing it.
    ///
    /// Exit status 0 when it could tell, non-zero when the device cannot be
    /// read. With --volume, the disk is checked against that volume of the
    /// config given with --config.
    InspectVolume {
        /// The block device or image file.
        device: PathBuf,
        /// A volume name of the config to check the header against.
        #[arg(long)]
        volume: Option<String>,
    },
    /// Decode, verify or collect attestation evidence (SNP reports, TDX
    /// quotes, NVIDIA GPU reports).
    ///
    /// These commands do not read the config.
    Evidence {
        #[command(subcommand)]
        command: EvidenceCommand,
    },
}

#[derive(Subcommand)]
enum EvidenceCommand {
    /// Decode a saved SNP report (raw or hex text) or TDX quote (v4/v5), and
    /// optionally verify an SNP report against its VCEK/VLEK.
    Decode {
        /// The report or quote file.
        file: PathBuf,
        /// Print the summary as JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Verify the SNP report against this VCEK or VLEK (DER or PEM); the
        /// chain is checked against the built-in AMD roots unless --ask/--ark
        /// are given. SNP only: TDX quote verification needs Intel collateral.
        #[arg(long, value_name = "FILE")]
        vcek: Option<PathBuf>,
        /// ASK or ASVK (DER or PEM; a KDS cert_chain file holds ASK and ARK).
        #[arg(long, value_name = "FILE", requires = "vcek")]
        ask: Option<PathBuf>,
        /// ARK (DER or PEM).
        #[arg(long, value_name = "FILE", requires = "vcek")]
        ark: Option<PathBuf>,
        /// Verify an NVIDIA GPU report against this PEM certificate chain
        /// (leaf first), up to NVIDIA's built-in device identity root.
        #[arg(long, value_name = "FILE", conflicts_with = "vcek")]
        gpu_chain: Option<PathBuf>,
    },
    /// Read the live hardware report for diagnosis, print it decoded and
    /// optionally save the raw bytes.
    Collect {
        /// Which attester: auto, snp, tdx, az-snp-vtpm, az-tdx-vtpm or simulated (simulated also needs
        /// --allow-simulated-tee).
        #[arg(long, default_value = "auto", value_name = "KIND")]
        attester: cvm_init::config::AttesterKind,
        /// REPORT_DATA to request: up to 64 bytes of hex, left-aligned and
        /// zero-padded (default: 64 zero bytes).
        #[arg(long, value_name = "HEX")]
        report_data: Option<String>,
        /// Write the raw report to FILE (and the aux blob, if any, to FILE.aux).
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Print the summary as JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Read every NVIDIA confidential-computing GPU's attestation report
    /// and certificate chain through NVML (libnvidia-ml.so.1), checked as
    /// `attester.gpus = "required"` checks them, and print the `nvidia`
    /// evidence JSON the broker would get. Does not set the GPUs ready.
    CollectGpu {
        /// The 32-byte nonce to request, hex (default: 32 zero bytes).
        #[arg(long, value_name = "HEX")]
        nonce: Option<String>,
        /// Write the evidence JSON to FILE instead of stdout.
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    cvm_init::timing::start();
    // As /init of a minimal initramfs: no arguments are trusted (the kernel
    // passes unknown command-line words to init), everything comes from the
    // measured config.
    if std::process::id() == 1 {
        cli::boot::init(std::path::Path::new(cvm_init::config::DEFAULT_PATH));
    }
    let args = Args::parse();
    cvm_init::logging::init(log::LevelFilter::Info, false);
    let common = cli::Common {
        config: &args.config,
        cmdline: &args.cmdline,
        allow_simulated_tee: args.allow_simulated_tee,
    };
    let result = match args.command {
        Command::CheckConfig => cli::check_config(&args.config, &args.cmdline),
        Command::Boot => cli::boot::boot(&common),
        Command::Fetch {
            ref resource,
            ref output,
            allow_persistent_output,
        } => cli::fetch(&common, resource, output, allow_persistent_output),
        Command::InspectVolume {
            ref device,
            ref volume,
        } => cli::inspect_volume(&common, device, volume.as_deref()),
        Command::Evidence {
            command:
                EvidenceCommand::Decode {
                    ref file,
                    json,
                    ref vcek,
                    ref ask,
                    ref ark,
                    ref gpu_chain,
                },
        } => {
            let certs = vcek.as_deref().map(|vcek| cli::evidence::SnpCerts {
                vcek,
                ask: ask.as_deref(),
                ark: ark.as_deref(),
            });
            cli::evidence::decode(file, json, certs.as_ref(), gpu_chain.as_deref())
        }
        Command::Evidence {
            command:
                EvidenceCommand::Collect {
                    attester,
                    ref report_data,
                    ref output,
                    json,
                },
        } => cli::evidence::collect(
            attester,
            args.allow_simulated_tee,
            report_data.as_deref(),
            output.as_deref(),
            json,
        ),
        Command::Evidence {
            command:
                EvidenceCommand::CollectGpu {
                    ref nonce,
                    ref output,
                },
        } => cli::evidence::collect_gpu(nonce.as_deref(), output.as_deref()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{}", cvm_init::logging::error_line(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}
