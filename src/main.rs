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
}

fn main() -> ExitCode {
    let args = Args::parse();
    cvm_init::logging::init(log::LevelFilter::Info, std::process::id() == 1);
    let result = match args.command {
        Command::CheckConfig => cli::check_config(&args.config, &args.cmdline),
        Command::Fetch {
            ref resource,
            ref output,
            allow_persistent_output,
        } => cli::fetch(
            &cli::Common {
                config: &args.config,
                cmdline: &args.cmdline,
                allow_simulated_tee: args.allow_simulated_tee,
            },
            resource,
            output,
            allow_persistent_output,
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}
