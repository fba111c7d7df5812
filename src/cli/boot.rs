//! `cvm-init boot` (a oneshot under systemd) and PID-1 mode (`/init` of a
//! minimal initramfs).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use cvm_init::attest::Paths;
use cvm_init::boot::{self, BootEnv};
use cvm_init::config::{BootConfig, Config, FailureAction};
use cvm_init::handoff;
use cvm_init::storage::{self, RootCheckEnv, StorageEnv};
use cvm_init::timing;

use super::{load, Common};

/// Private tmpfs directory for header copies.
const LUKS_RUN_DIR: &str = "/run/cvm-init/luks";
const VOLUME_STATUS_DIR: &str = "/run/cvm-init/volumes";

/// The real devices and run directories.
pub fn storage_env(device_wait: Duration) -> StorageEnv {
    StorageEnv {
        dev: "/dev".into(),
        sys: "/sys".into(),
        run_dir: LUKS_RUN_DIR.into(),
        status_dir: VOLUME_STATUS_DIR.into(),
        device_wait,
    }
}

fn env(config: &Config, allow_simulated: bool, cmdline: &Path) -> BootEnv {
    let wait = config.boot.as_ref().map_or(30, |b| b.device_wait_secs);
    // Under systemd the root was mounted by another unit and is checked;
    // as PID 1 cvm-init mounted it through dm-verity itself.
    let check_root = config.boot.is_none().then(|| {
        PathBuf::from(if Path::new("/etc/initrd-release").exists() {
            "/sysroot"
        } else {
            "/"
        })
    });
    BootEnv {
        attest: Paths::default(),
        storage: storage_env(Duration::from_secs(wait)),
        allow_simulated,
        cmdline: cmdline.to_owned(),
        check_root,
        root_env: RootCheckEnv::default(),
    }
}

/// Systemd mode: attest, unlock and mount, deliver secrets, exit. The
/// unit's ordering and `FailureAction=` handle the rest.
pub fn boot(common: &Common<'_>) -> Result<()> {
    let config = load(common.config, common.cmdline)?;
    let report = boot::run(
        &config,
        &env(&config, common.allow_simulated_tee, common.cmdline),
    );
    cvm_init::timing::finish(report.is_ok());
    let report = report?;
    log::info!("boot stage done in {} ms", report.total.as_millis());
    Ok(())
}

/// PID 1: everything, then `switch_root` into the workload. Never returns.
/// The simulated TEE is allowed only by the measured config here: PID 1
/// takes no flags.
pub fn init(config_path: &Path) -> ! {
    let started = Instant::now();
    // Before anything else: the kernel built this environment from the
    // host-written command line. Children get PID1_ENV only.
    let dropped = handoff::clean_environment();
    // Nothing is known about the failure action before the config is read:
    // the safe default (power off) applies.
    if let Err(e) = handoff::early_mounts() {
        // No logger yet: the console is stderr.
        eprintln!("cvm-init: ERROR: {e}");
        handoff::fail(FailureAction::Halt, false, &format!("{e}"));
    }
    cvm_init::logging::init(log::LevelFilter::Info, true);
    log::info!("cvm-init {} as PID 1", env!("CARGO_PKG_VERSION"));
    if !dropped.is_empty() {
        log::warn!(
            "dropped {} environment variable(s) set on the kernel command line: {}; child processes get only {}",
            dropped.len(),
            dropped.join(", "),
            handoff::PID1_ENV
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    let config = match load(config_path, Path::new(CMDLINE)) {
        Ok(c) => c,
        Err(e) => handoff::fail(
            FailureAction::Halt,
            false,
            &cvm_init::logging::error_line(e.as_ref()),
        ),
    };
    let action = config.failure.action;
    let debug = config.failure.debug_image;
    if debug {
        log::warn!(
            "this is a debug image (failure.debug_image = true): never give it production keys"
        );
    }
    match init_steps(&config, started) {
        Ok(never) => match never {},
        Err(e) => {
            cvm_init::timing::finish(false);
            handoff::fail(action, debug, &cvm_init::logging::error_line(e.as_ref()))
        }
    }
}

/// The kernel command line PID 1 reads.
const CMDLINE: &str = "/proc/cmdline";

fn init_steps(config: &Config, started: Instant) -> Result<std::convert::Infallible> {
    let boot_cfg = config
        .boot
        .as_ref()
        .context("PID-1 mode needs a [boot] section in the config (root, init)")?;
    let n = timing::timed("modules", || handoff::load_modules(&boot_cfg.modules_list))?;
    log::info!("loaded {n} kernel modules");
    let env = env(config, false, Path::new(CMDLINE));
    timing::timed("root", || mount_root(boot_cfg, &env.storage))?;
    if let Some(net) = &config.network {
        // Init-data may add volumes and secrets the broker holds.
        if !config.plan().resources.is_empty() || config.init_data.is_some() {
            timing::timed("network", || {
                handoff::network_up(net, Duration::from_secs(boot_cfg.device_wait_secs))
            })?;
        }
    }
    let report = boot::run(config, &env)?;
    timing::finish(true);
    log::info!(
        "timing: agent start to handoff {} ms (broker {} ms); switching to {}",
        started.elapsed().as_millis(),
        report.broker_time.as_millis(),
        boot_cfg.init.display()
    );
    Err(handoff::switch_root(&boot_cfg.sysroot, &boot_cfg.init).into())
}

/// Mounts the real root on the sysroot: through dm-verity with the
/// measured root hash, then reads the workload's init through it, so a
/// changed init stops the boot before any key is fetched. Unverified only
/// in a debug image (the config validator refuses it otherwise).
fn mount_root(boot_cfg: &BootConfig, env: &StorageEnv) -> Result<()> {
    let t = Instant::now();
    let root = storage::locate_device(&boot_cfg.root, env)
        .with_context(|| format!("finding the root device {}", boot_cfg.root))?;
    let source = match &boot_cfg.verity {
        Some(v) => {
            let hash = match &v.hash_device {
                Some(spec) => storage::locate_device(spec, env)
                    .with_context(|| format!("finding the root's hash device {spec}"))?,
                None => root.clone(),
            };
            storage::activate_root(ROOT_MAPPING, &root, &hash, v)
                .with_context(|| format!("verifying the root {}", root.display()))?
        }
        None => {
            log::warn!(
                "root {} is mounted UNVERIFIED (debug image): the host can change what runs after the keys are here",
                root.display()
            );
            root.clone()
        }
    };
    storage::mount_device(
        "root",
        &source,
        &boot_cfg.sysroot,
        boot_cfg.root_fstype,
        &boot_cfg.root_options,
    )
    .with_context(|| {
        format!(
            "mounting the root {} on {}",
            source.display(),
            boot_cfg.sysroot.display()
        )
    })?;
    if boot_cfg.verity.is_some() {
        let bytes =
            storage::read_through(&boot_cfg.sysroot, &boot_cfg.init).with_context(|| {
                format!(
                    "reading the workload's init {} in {} through dm-verity",
                    boot_cfg.init.display(),
                    boot_cfg.sysroot.display()
                )
            })?;
        log::info!(
            "root {}: dm-verity {} on {}, root hash matches; {} ({bytes} bytes) verified in {} ms",
            root.display(),
            source.display(),
            boot_cfg.sysroot.display(),
            boot_cfg.init.display(),
            t.elapsed().as_millis()
        );
    }
    Ok(())
}

/// The device-mapper name of the verified root (`/dev/mapper/root`).
const ROOT_MAPPING: &str = "root";
