//! Initramfs images made by the distribution's generators, dracut and
//! initramfs-tools' `mkinitramfs`, from the installed Debian package
//! ([`crate::package`]) and the bench's unpacked Debian kernel: what a
//! user's image build does, run in `image-build/initrd-sandbox.sh` (a
//! private mount namespace) so that the test's `/etc/cvm-init` and the
//! kernel's modules are visible to the generator and nothing on the host
//! changes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::kernel::Kernel;

/// Which generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generator {
    /// dracut (`dracut-core`, and `dracut-network` for a broker across the
    /// network): systemd is the initrd's PID 1, `cvm-init.service` runs
    /// `cvm-init boot` after `sysroot.mount`.
    Dracut,
    /// initramfs-tools' `mkinitramfs` (`initramfs-tools-core`): busybox sh
    /// `/init`; the package's `local-bottom` script runs `cvm-init boot`
    /// with the root mounted at `/root`.
    InitramfsTools,
}

impl Generator {
    /// Host programs it needs, with their Debian packages.
    pub fn tools(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Generator::Dracut => &[
                ("dracut", "dracut-core"),
                ("lsinitrd", "dracut-core"),
                ("unshare", "util-linux"),
            ],
            Generator::InitramfsTools => &[
                ("mkinitramfs", "initramfs-tools-core"),
                ("lsinitramfs", "initramfs-tools-core"),
                ("unshare", "util-linux"),
                ("zstd", "zstd"),
            ],
        }
    }

    /// The Debian packages of missing [`tools`](Self::tools), plus
    /// `dracut-network` for dracut (its `network` module is what the
    /// cvm-init module needs for a broker across the network; without it
    /// dracut leaves cvm-init out with a mere warning).
    pub fn missing_packages(self) -> Vec<&'static str> {
        let mut missing: Vec<&str> = self
            .tools()
            .iter()
            .filter(|(t, _)| crate::find_tool(t).is_err())
            .map(|(_, p)| *p)
            .collect();
        if self == Generator::Dracut && !Path::new("/usr/lib/dracut/modules.d/40network").is_dir() {
            missing.push("dracut-network");
        }
        missing.dedup();
        missing
    }

    /// Where cvm-init's config puts volumes: below the root as this
    /// initrd mounts it before cvm-init runs.
    pub fn sysroot(self) -> &'static str {
        match self {
            Generator::Dracut => "/sysroot",
            Generator::InitramfsTools => "/root",
        }
    }

    /// Lists the files in an image this generator made.
    pub fn list(self, image: &Path) -> Result<String> {
        let tool = match self {
            Generator::Dracut => "lsinitrd",
            Generator::InitramfsTools => "lsinitramfs",
        };
        crate::output(Command::new(tool).arg(image)).with_context(|| format!("{tool} failed"))
    }
}

/// What a generator run needs besides the kernel.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub generator: Generator,
    /// Files for `/etc/cvm-init` (config.toml, the broker CA); `None`: an
    /// unconfigured machine.
    pub config_dir: Option<&'a Path>,
    /// A systemd-networkd `.network` file for the dracut initrd (the
    /// image's network configuration; dracut copies `/etc/systemd/network`
    /// only in host-only mode, so it is `--include`d).
    pub network_file: Option<&'a Path>,
    /// Scratch directory (overlay upper dirs, temporary files).
    pub scratch: &'a Path,
    /// The image to write.
    pub out: &'a Path,
}

/// A generator run's result.
#[derive(Debug)]
pub struct Built {
    pub image: PathBuf,
    /// The generator's output (stdout and stderr).
    pub log: String,
    pub took: Duration,
}

/// Drivers the root needs in this VM: QEMU's virtio disks and ext4. The
/// rest (dm-crypt, virtio_net, sev-guest, ...) must come from the cvm-init
/// module / hook itself, as in a host-only image of a real CVM.
pub const ROOT_DRIVERS: &[&str] = &["virtio_pci", "virtio_blk", "ext4"];

/// Runs the generator; see the module documentation.
///
/// dracut: `--no-hostonly` (this host is not the guest) with the drivers
/// limited to [`ROOT_DRIVERS`] and without dracut's `crypt` module, which a
/// host-only image without `/etc/crypttab` would not have either: whatever
/// cvm-init needs beyond that must come from its own module. Uncompressed
/// (the kernel under TCG unpacks it faster than it decompresses zstd),
/// with dracut's host configuration ignored (`--conf /dev/null`).
///
/// mkinitramfs: `MODULES=list` with [`ROOT_DRIVERS`], busybox, zstd.
pub fn build(kernel: &Kernel, req: &Request<'_>) -> Result<Built> {
    let script = crate::image_build_dir().join("initrd-sandbox.sh");
    let kernel_root = kernel.modules_dir.ancestors().nth(3).ok_or_else(|| {
        anyhow!(
            "{} is not <root>/lib/modules/<version>",
            kernel.modules_dir.display()
        )
    })?;
    std::fs::create_dir_all(req.scratch)?;
    let mut cmd = Command::new("bash");
    cmd.arg(&script)
        .arg(req.scratch)
        .arg(kernel_root)
        .arg(
            req.config_dir
                .map_or_else(|| "none".into(), |d| d.as_os_str().to_owned()),
        )
        .arg("--");
    match req.generator {
        Generator::Dracut => {
            let confdir = req.scratch.join("dracut.conf.d");
            std::fs::create_dir_all(&confdir)?;
            cmd.args([
                "dracut",
                "--force",
                "--no-hostonly",
                "--kver",
                &kernel.version,
            ])
            .args(["--conf", "/dev/null", "--confdir"])
            .arg(&confdir)
            .args(["--tmpdir"])
            .arg(req.scratch)
            .args(["--no-compress", "--no-early-microcode", "--omit", "crypt"])
            .args(["--drivers", &ROOT_DRIVERS.join(" ")]);
            if let Some(net) = req.network_file {
                cmd.arg("--include")
                    .arg(net)
                    .arg("/etc/systemd/network/10-vm-bench.network");
            }
            cmd.arg(req.out);
        }
        Generator::InitramfsTools => {
            let conf = req.scratch.join("initramfs-tools");
            for d in ["conf.d", "hooks", "scripts"] {
                std::fs::create_dir_all(conf.join(d))?;
            }
            std::fs::write(
                conf.join("initramfs.conf"),
                "MODULES=list\nBUSYBOX=y\nCOMPRESS=zstd\nKEYMAP=n\nRUNSIZE=10%\nFSTYPE=auto\n",
            )?;
            let mut modules = ROOT_DRIVERS.join("\n");
            modules.push('\n');
            std::fs::write(conf.join("modules"), modules)?;
            cmd.arg("mkinitramfs")
                .arg("-d")
                .arg(&conf)
                .arg("-o")
                .arg(req.out)
                .arg(&kernel.version);
        }
    }
    let start = Instant::now();
    let out = cmd
        .output()
        .context("running image-build/initrd-sandbox.sh")?;
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() || !req.out.is_file() {
        bail!("{:?} failed ({}):\n{log}", req.generator, out.status);
    }
    Ok(Built {
        image: req.out.to_owned(),
        log,
        took: start.elapsed(),
    })
}
