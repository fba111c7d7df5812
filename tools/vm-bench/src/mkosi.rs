//! The mkosi image of `image-build/mkosi`, built for real with mkosi 24
//! (Debian's bookworm-backports) and booted under QEMU: what a user who
//! adopts cvm-init through mkosi builds, with two test-only changes made
//! to a copy of the tree, never to the shipped files:
//!
//! - `mkosi.packages/` gets the `.deb` just built ([`crate::package`]);
//! - `mkosi.extra/etc/cvm-init/` gets the bench's broker CA, and the
//!   shipped `config.toml` with the broker's URL pointed at the bench's
//!   kbs-dev and the simulated TEE selected (there is no SEV-SNP or TDX
//!   here). Everything else in it (the data volume, the secret, the
//!   failure action) is the shipped file's.
//!
//! With `profile: Some("cloud-init")` the variant of
//! `mkosi.profiles/cloud-init` is built the same way (its own config file).
//!
//! The image boots as a measured direct boot would: the kernel, initrd and
//! command line (with `roothash=`) are mkosi's outputs, the disk holds the
//! dm-verity root, and the blank data disk has the serial the config names
//! (`/dev/disk/by-id/virtio-cvmdata`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::qemu::{Vm, VmSpec};

/// The image's name (`ImageId=`): the outputs are `NAME.raw`, `.vmlinuz`,
/// `.initrd` and `.cmdline`.
pub const IMAGE_ID: &str = "cvm-init-debian";

/// The data disk's serial, as `image-build/mkosi`'s config names it.
pub const DATA_SERIAL: &str = "cvmdata";

/// Host programs the build needs, with their Debian packages.
pub const TOOLS: &[(&str, &str)] = &[
    ("mkosi", "mkosi (bookworm-backports)"),
    ("reprepro", "reprepro"),
    ("bwrap", "bubblewrap"),
    ("systemd-repart", "systemd (254, bookworm-backports)"),
    ("veritysetup", "cryptsetup-bin"),
    ("sfdisk", "fdisk"),
    ("mkfs.ext4", "e2fsprogs"),
];

/// The missing [`TOOLS`], as "tool (package)".
pub fn missing_tools() -> Vec<String> {
    TOOLS
        .iter()
        .filter(|(t, _)| crate::find_tool(t).is_err())
        .map(|(t, p)| format!("{t} ({p})"))
        .collect()
}

/// The profile of the cloud-init variant (`mkosi.profiles/cloud-init`).
pub const CLOUD_INIT: &str = "cloud-init";

/// A built image.
#[derive(Debug, Clone)]
pub struct Image {
    pub disk: PathBuf,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// The kernel command line mkosi.postoutput wrote (with `roothash=`).
    pub cmdline: String,
    /// mkosi's output (stdout and stderr).
    pub log: String,
    pub took: Duration,
}

/// What to build.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// The cvm-init `.deb`.
    pub deb: &'a Path,
    /// `/etc/cvm-init/config.toml` of the image.
    pub config: &'a str,
    /// The broker's CA (`broker-ca.pem`); `None`: built without it.
    pub broker_ca: Option<&'a Path>,
    /// Scratch directory: the copied tree, mkosi's workspace and output.
    pub scratch: &'a Path,
    /// mkosi's package cache, shared by the builds of one test run.
    pub cache: &'a Path,
    /// `mkosi --profile`: `None` builds the base image.
    pub profile: Option<&'a str>,
}

/// Where a profile's (or the base's) `/etc/cvm-init/config.toml` is, below
/// the mkosi tree.
fn config_path(profile: Option<&str>) -> PathBuf {
    let extra = Path::new("mkosi.extra/etc/cvm-init/config.toml");
    match profile {
        Some(p) => Path::new("mkosi.profiles").join(p).join(extra),
        None => extra.to_owned(),
    }
}

/// The shipped `config.toml` (of `profile`, or the base's) with the broker
/// at `url` and the simulated TEE. Fails if the shipped file no longer has
/// the lines this replaces.
pub fn test_config(url: &str, profile: Option<&str>) -> Result<String> {
    let shipped = std::fs::read_to_string(shipped_dir().join(config_path(profile)))?;
    let replace = |text: String, from: &str, to: &str| -> Result<String> {
        if !text.contains(from) {
            bail!("image-build/mkosi's config.toml has no line {from:?} to replace");
        }
        Ok(text.replacen(from, to, 1))
    };
    let c = replace(
        shipped,
        "url = \"https://kbs.example.com:8080\"",
        &format!("url = \"{url}\""),
    )?;
    replace(
        c,
        "kind = \"auto\"",
        "kind = \"simulated\"\nallow_simulated = true",
    )
}

/// `image-build/mkosi`.
pub fn shipped_dir() -> PathBuf {
    crate::image_build_dir().join("mkosi")
}

/// Copies the shipped tree to `req.scratch/mkosi`, adds the package, the
/// config and the CA, and runs `mkosi --force build` there. An error
/// carries mkosi's output.
pub fn build(req: &Request<'_>) -> Result<Image> {
    let tree = req.scratch.join("mkosi");
    if tree.exists() {
        std::fs::remove_dir_all(&tree)?;
    }
    std::fs::create_dir_all(req.scratch)?;
    std::fs::create_dir_all(req.cache)?;
    crate::run(Command::new("cp").arg("-a").arg(shipped_dir()).arg(&tree))?;
    for generated in ["mkosi.output", "mkosi.cache"] {
        let _ = std::fs::remove_dir_all(tree.join(generated));
    }
    let packages = tree.join("mkosi.packages");
    std::fs::create_dir_all(&packages)?;
    let deb_name = req
        .deb
        .file_name()
        .context("the .deb path has no file name")?;
    std::fs::copy(req.deb, packages.join(deb_name))?;
    std::fs::write(tree.join(config_path(req.profile)), req.config)?;
    if let Some(ca) = req.broker_ca {
        std::fs::copy(ca, tree.join("mkosi.extra/etc/cvm-init/broker-ca.pem"))?;
    }

    let start = Instant::now();
    let mut mkosi = Command::new(crate::find_tool("mkosi")?);
    if let Some(profile) = req.profile {
        mkosi.arg("--profile").arg(profile);
    }
    let out = mkosi
        .arg("--force")
        .arg("--cache-dir")
        .arg(req.cache)
        .arg("build")
        .current_dir(&tree)
        .output()
        .context("running mkosi")?;
    let took = start.elapsed();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let output = tree.join("mkosi.output");
    let file = |ext: &str| output.join(format!("{IMAGE_ID}.{ext}"));
    if !out.status.success() {
        bail!(
            "mkosi build failed ({}) after {took:.1?}:\n{log}",
            out.status
        );
    }
    let cmdline = std::fs::read_to_string(file("cmdline"))
        .with_context(|| format!("mkosi wrote no {IMAGE_ID}.cmdline:\n{log}"))?
        .trim()
        .to_owned();
    Ok(Image {
        disk: file("raw"),
        kernel: file("vmlinuz"),
        initrd: file("initrd"),
        cmdline,
        log,
        took,
    })
}

impl Image {
    /// Boots the image with `data` as the disk of serial [`DATA_SERIAL`]
    /// (the image's disk read-only: its root is verified anyway, and a
    /// test must not change it between boots); `append` adds words to the
    /// command line.
    pub fn boot(&self, data: &Path, append: &str, log: &Path) -> Result<Vm> {
        self.boot_with(data, &[], append, log)
    }

    /// [`Image::boot`] with more raw disks (e.g. a cloud-init seed),
    /// attached read-only after the data disk.
    pub fn boot_with(
        &self,
        data: &Path,
        more_disks: &[&Path],
        append: &str,
        log: &Path,
    ) -> Result<Vm> {
        let mut spec = VmSpec::new(&self.kernel, &self.initrd);
        spec.append = format!("{} {append}", self.cmdline).trim().to_owned();
        // Generous: a booted-system boot under TCG took up to 210 s to its
        // workload (README, the cloud-init figures).
        spec.timeout = Duration::from_secs(600);
        spec.log = Some(log.to_owned());
        let path = |p: &Path| p.display().to_string().replace(',', ",,");
        spec.extra_args = vec![
            "-drive".into(),
            format!("file={},format=raw,if=virtio,readonly=on", path(&self.disk)),
            "-drive".into(),
            format!("file={},format=raw,if=none,id=data", path(data)),
            "-device".into(),
            format!("virtio-blk-pci,drive=data,serial={DATA_SERIAL}"),
        ];
        for disk in more_disks {
            spec.extra_args.push("-drive".into());
            spec.extra_args.push(format!(
                "file={},format=raw,if=virtio,readonly=on",
                path(disk)
            ));
        }
        Vm::boot(spec)
    }

    /// Size of the disk image in MiB.
    pub fn disk_mib(&self) -> Result<u64> {
        Ok(std::fs::metadata(&self.disk)?.len() >> 20)
    }
}
