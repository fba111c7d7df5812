//! Everything that only PID 1 does: the early mounts of a minimal
//! initramfs, kernel modules, the network the broker needs, the switch to
//! the real root, and the failure action. Under systemd none of this runs:
//! the initrd's own units do it and `cvm-init boot` is a oneshot ordered
//! before the mounts it feeds.

pub mod modules;
pub mod netdev;

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::mount::{mount, MsFlags};

use crate::config::{FailureAction, NetworkConfig};
use crate::retry::{retry, Attempt, Backoff};

#[derive(Debug, thiserror::Error)]
pub enum HandoffError {
    #[error("cannot mount {what} on {target}: {source}")]
    Mount {
        what: String,
        target: PathBuf,
        source: nix::Error,
    },
    #[error("cannot read the module list {path}: {source}; the initramfs builder must write it")]
    ModuleList { path: PathBuf, source: io::Error },
    #[error("network: {what} on {interface}: {source}")]
    Network {
        interface: String,
        what: &'static str,
        source: io::Error,
    },
    #[error("network: the DHCP command {command:?} failed: {reason}")]
    Dhcp {
        command: Vec<String>,
        reason: String,
    },
    #[error("switch_root to {sysroot}: {what}: {source}")]
    SwitchRoot {
        sysroot: PathBuf,
        what: String,
        source: nix::Error,
    },
    #[error(
        "the workload's init {init} does not exist in the real root {sysroot}; check boot.init"
    )]
    NoInit { init: PathBuf, sysroot: PathBuf },
}

fn mount_fs(
    source: &str,
    target: &str,
    fstype: &str,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), HandoffError> {
    let _ = std::fs::create_dir_all(target);
    match mount(Some(source), target, Some(fstype), flags, data) {
        Ok(()) | Err(nix::Error::EBUSY) => Ok(()),
        Err(source_err) => Err(HandoffError::Mount {
            what: fstype.to_owned(),
            target: PathBuf::from(target),
            source: source_err,
        }),
    }
}

/// The whole environment of PID 1 and everything it starts: the kernel
/// builds init's environment from `a=b` words on the command line, which
/// the host writes (`LD_PRELOAD=`, `HTTPS_PROXY=`, ...).
pub const PID1_ENV: &[(&str, &str)] = &[
    ("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
    ("HOME", "/"),
    ("TERM", "linux"),
];

/// Replaces the environment the kernel gave PID 1 with [`PID1_ENV`], so
/// children (mkfs, the DHCP client, the workload's init) inherit nothing
/// the host chose. Returns the names of the variables that were dropped.
/// Call first, while PID 1 has one thread.
pub fn clean_environment() -> Vec<String> {
    let mut dropped = Vec::new();
    for (name, value) in std::env::vars_os() {
        let keep = PID1_ENV
            .iter()
            .any(|(k, v)| name.as_os_str() == *k && value.as_os_str() == *v);
        if !keep {
            dropped.push(name.to_string_lossy().into_owned());
        }
        std::env::remove_var(&name);
    }
    for (k, v) in PID1_ENV {
        std::env::set_var(k, v);
    }
    dropped
}

/// Mounts /proc, /sys, /dev, /run and configfs (for configfs-tsm).
pub fn early_mounts() -> Result<(), HandoffError> {
    let hardened = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount_fs("proc", "/proc", "proc", hardened, None)?;
    mount_fs("sysfs", "/sys", "sysfs", hardened, None)?;
    mount_fs(
        "devtmpfs",
        "/dev",
        "devtmpfs",
        MsFlags::MS_NOSUID,
        Some("mode=0755"),
    )?;
    mount_fs(
        "tmpfs",
        "/run",
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0755"),
    )?;
    // configfs-tsm needs configfs (Linux >= 6.7); older kernels lack it.
    if let Err(e) = mount_fs("configfs", "/sys/kernel/config", "configfs", hardened, None) {
        log::info!("{e} (needed only for configfs-tsm attestation)");
    }
    Ok(())
}

/// Loads the kernel modules listed (one path per line, dependency order),
/// in parallel where their `.modinfo` dependencies allow ([`modules`]).
/// A module that is already loaded or built in is fine; one that fails to
/// load is logged and the boot goes on: the step that needs it fails later
/// with a precise error.
pub fn load_modules(list: &Path) -> Result<usize, HandoffError> {
    let text = match std::fs::read_to_string(list) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            log::info!("no module list at {}; loading no modules", list.display());
            return Ok(0);
        }
        Err(source) => {
            return Err(HandoffError::ModuleList {
                path: list.to_owned(),
                source,
            })
        }
    };
    let list: Vec<_> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| modules::describe(Path::new(l)))
        .collect();
    Ok(modules::load_all(&list, &|m| {
        let _phase = crate::timing::phase_at(format!("module {}", m.name), 1);
        let result = std::fs::File::open(&m.path)
            .map_err(|e| nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
            .and_then(|f| nix::kmod::finit_module(&f, c"", nix::kmod::ModuleInitFlags::empty()));
        match result {
            Ok(()) => true,
            Err(nix::Error::EEXIST) => false,
            Err(e) => {
                log::warn!("module {}: {e}", m.path.display());
                false
            }
        }
    }))
}

/// Brings up the network the broker needs.
pub fn network_up(net: &NetworkConfig, deadline: Duration) -> Result<(), HandoffError> {
    let err = |what: &'static str| {
        move |source| HandoffError::Network {
            interface: net.interface.clone(),
            what,
            source,
        }
    };
    if let Err(e) = netdev::link_up("lo") {
        log::warn!("network: cannot bring up lo: {e}");
    }
    if let Some(cmd) = &net.dhcp_command {
        return run_dhcp(cmd, deadline);
    }
    let (addr, prefix) = net
        .address
        .as_deref()
        .and_then(crate::config::parse_cidr)
        .ok_or_else(|| {
            err("no address configured")(io::Error::from(io::ErrorKind::InvalidInput))
        })?;
    // The interface appears when its driver has probed the device, which
    // can lag behind the module load.
    retry(
        Backoff {
            initial: Duration::from_millis(50),
            max: Duration::from_millis(500),
            deadline,
        },
        |_, _| match netdev::set_address(&net.interface, addr, prefix) {
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Err(Attempt::Transient(e)),
            Err(e) => Err(Attempt::Permanent(e)),
            Ok(()) => Ok(()),
        },
        |_, _, _| {},
    )
    .map_err(|e| err("setting the address")(e.into_inner()))?;
    if let Some(gw) = &net.gateway {
        let gw = gw.parse().map_err(|_| {
            err("parsing the gateway")(io::Error::from(io::ErrorKind::InvalidInput))
        })?;
        netdev::add_default_route(gw).map_err(err("adding the default route"))?;
    }
    log::info!(
        "network: {} is {addr}/{prefix}{}",
        net.interface,
        net.gateway
            .as_deref()
            .map(|g| format!(" via {g}"))
            .unwrap_or_default()
    );
    Ok(())
}

fn run_dhcp(cmd: &[String], deadline: Duration) -> Result<(), HandoffError> {
    let fail = |reason: String| HandoffError::Dhcp {
        command: cmd.to_vec(),
        reason,
    };
    let (prog, args) = cmd.split_first().ok_or_else(|| fail("empty".to_owned()))?;
    let mut child = std::process::Command::new(prog)
        .args(args)
        .spawn()
        .map_err(|e| fail(e.to_string()))?;
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(fail(format!("exited with {status}"))),
            Ok(None) if start.elapsed() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(fail(format!("no lease within {} s", deadline.as_secs())));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(fail(e.to_string())),
        }
    }
}

/// Moves the API filesystems into `sysroot`, makes it `/` and execs
/// `init` as PID 1. Returns only on failure.
pub fn switch_root(sysroot: &Path, init: &Path) -> HandoffError {
    let fail = |what: String| {
        let sysroot = sysroot.to_owned();
        move |source| HandoffError::SwitchRoot {
            sysroot,
            what,
            source,
        }
    };
    let init_in_root = sysroot.join(init.strip_prefix("/").unwrap_or(init));
    if !init_in_root.exists() {
        return HandoffError::NoInit {
            init: init.to_owned(),
            sysroot: sysroot.to_owned(),
        };
    }
    for api in ["/dev", "/proc", "/sys", "/run"] {
        let target = sysroot.join(&api[1..]);
        if let Err(e) = mount(
            Some(api),
            &target,
            None::<&str>,
            MsFlags::MS_MOVE,
            None::<&str>,
        ) {
            return fail(format!("moving {api} to {}", target.display()))(e);
        }
    }
    let steps = || -> Result<std::convert::Infallible, HandoffError> {
        nix::unistd::chdir(sysroot).map_err(fail("chdir".to_owned()))?;
        mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
            .map_err(fail("moving the real root onto /".to_owned()))?;
        nix::unistd::chroot(".").map_err(fail("chroot".to_owned()))?;
        nix::unistd::chdir("/").map_err(fail("chdir /".to_owned()))?;
        let path = CString::new(init.as_os_str().as_bytes())
            .map_err(|_| fail("init path".to_owned())(nix::Error::EINVAL))?;
        nix::unistd::execv(&path, &[&path]).map_err(fail(format!("exec {}", init.display())))
    };
    match steps() {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

/// PID 1's last word: say why on the console, then do the configured
/// action. Never returns.
pub fn fail(action: FailureAction, debug_image: bool, reason: &str) -> ! {
    log::error!("BOOT FAILED: {reason}");
    log::error!("failure action: {action:?}");
    nix::unistd::sync();
    if action == FailureAction::Shell && debug_image {
        let sh = c"/bin/sh";
        let err = nix::unistd::execv(sh, &[sh]);
        log::error!("cannot start the debug shell: {err:?}; halting");
    }
    let how = match action {
        FailureAction::Reboot => nix::sys::reboot::RebootMode::RB_AUTOBOOT,
        _ => nix::sys::reboot::RebootMode::RB_POWER_OFF,
    };
    let err = nix::sys::reboot::reboot(how);
    log::error!("reboot(2) failed: {err:?}; halting here");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
