//! `cvm-init boot` (a oneshot under systemd) and PID-1 mode (`/init` of a
//! minimal initramfs).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use cvm_init::attest::Paths;
use cvm_init::boot::{self, BootEnv};
use cvm_init::config::{Config, FailureAction};
use cvm_init::handoff;
use cvm_init::storage::{self, StorageEnv};

use super::{load, Common};

/// Private tmpfs directory for header copies.
const LUKS_RUN_DIR: &str = "/run/cvm-init/luks";

fn env(config: &Config, allow_simulated: bool) -> BootEnv {
    let wait = config.boot.as_ref().map_or(30, |b| b.device_wait_secs);
    BootEnv {
        attest: Paths::default(),
        storage: StorageEnv {
            dev: "/dev".into(),
            sys: "/sys".into(),
            run_dir: LUKS_RUN_DIR.into(),
            device_wait: Duration::from_secs(wait),
        },
        allow_simulated,
    }
}

/// Systemd mode: attest, unlock and mount, deliver secrets, exit. The
/// unit's ordering and `FailureAction=` handle the rest.
pub fn boot(common: &Common<'_>) -> Result<()> {
    let config = load(common.config, common.cmdline)?;
    let report = boot::run(&config, &env(&config, common.allow_simulated_tee))?;
    log::info!("boot stage done in {} ms", report.total.as_millis());
    Ok(())
}

/// PID 1: everything, then `switch_root` into the workload. Never returns.
/// The simulated TEE is allowed only by the measured config here: PID 1
/// takes no flags.
pub fn init(config_path: &Path) -> ! {
    let started = Instant::now();
    // The kernel starts init with no PATH; mkfs is found through it.
    std::env::set_var("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    // Nothing is known about the failure action before the config is read:
    // the safe default (power off) applies.
    if let Err(e) = handoff::early_mounts() {
        // No logger yet: the console is stderr.
        eprintln!("cvm-init: ERROR: {e}");
        handoff::fail(FailureAction::Halt, false, &format!("{e}"));
    }
    cvm_init::logging::init(log::LevelFilter::Info, true);
    log::info!("cvm-init {} as PID 1", env!("CARGO_PKG_VERSION"));
    let config = match load(config_path, Path::new("/proc/cmdline")) {
        Ok(c) => c,
        Err(e) => handoff::fail(FailureAction::Halt, false, &format!("{e:#}")),
    };
    let action = config.failure.action;
    let debug = config.failure.debug_image;
    match init_steps(&config, started) {
        Ok(never) => match never {},
        Err(e) => handoff::fail(action, debug, &format!("{e:#}")),
    }
}

fn init_steps(config: &Config, started: Instant) -> Result<std::convert::Infallible> {
    let boot_cfg = config
        .boot
        .as_ref()
        .context("PID-1 mode needs a [boot] section in the config (root, init)")?;
    let n = handoff::load_modules(&boot_cfg.modules_list)?;
    log::info!("loaded {n} kernel modules");
    if let Some(net) = &config.network {
        // Init-data may add volumes and secrets the broker holds.
        if !config.plan().resources.is_empty() || config.init_data.is_some() {
            handoff::network_up(net, Duration::from_secs(boot_cfg.device_wait_secs))?;
        }
    }
    let env = env(config, false);
    let root = storage::locate_device(&boot_cfg.root, &env.storage)
        .with_context(|| format!("finding the root device {}", boot_cfg.root))?;
    storage::mount_device(
        "root",
        &root,
        &boot_cfg.sysroot,
        boot_cfg.root_fstype,
        &boot_cfg.root_options,
    )
    .with_context(|| {
        format!(
            "mounting the root {} on {}",
            root.display(),
            boot_cfg.sysroot.display()
        )
    })?;
    let report = boot::run(config, &env)?;
    log::info!(
        "timing: agent start to handoff {} ms (broker {} ms); switching to {}",
        started.elapsed().as_millis(),
        report.broker_time.as_millis(),
        boot_cfg.init.display()
    );
    Err(handoff::switch_root(&boot_cfg.sysroot, &boot_cfg.init).into())
}
