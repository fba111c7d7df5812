//! `image-build/packer/provision.sh`, run for real. There is no Packer
//! (nor KVM for its QEMU builder) here, so the script runs where Packer's
//! shell provisioner would run it, as root inside the image, with the same
//! arguments `cvm-init.pkr.hcl` passes: `provision.sh DEB CONFIG_DIR
//! initrd`. The image is a copy of the mkosi image's root file system
//! ([`crate::mkosi`]) with cvm-init purged and its initrd removed, i.e. a
//! Debian 12 image with dracut that has never seen cvm-init; the script
//! runs in a chroot of it (loop mount, `/dev`, `/dev/pts`, `/proc`, `/sys` bound), and
//! the initrd it made is what [`Provisioned::initrd`] returns, to be booted
//! with the image's kernel and verified root like mkosi's own.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::mkosi::Image;

/// Discoverable Partitions Specification: the x86-64 root partition.
const ROOT_X86_64: &str = "4f68bce3-e8cd-4db1-96e7-fbcaf984b709";

/// Room for the package and a second initrd in the copied root.
const GROW_MIB: u64 = 256;

/// What `provision.sh` made.
#[derive(Debug)]
pub struct Provisioned {
    /// The initrd `provision.sh` regenerated (`/boot/initrd.img-*`).
    pub initrd: PathBuf,
    /// The script's output (stdout and stderr).
    pub log: String,
    pub took: Duration,
}

/// The shipped script.
pub fn script() -> PathBuf {
    crate::image_build_dir().join("packer/provision.sh")
}

/// Runs `provision.sh deb config_dir initrd` in a chroot of a copy of
/// `image`'s root file system below `scratch`. Needs root (loop mount,
/// chroot). An error carries the script's output.
pub fn provision(
    image: &Image,
    deb: &Path,
    config_dir: &Path,
    scratch: &Path,
) -> Result<Provisioned> {
    std::fs::create_dir_all(scratch)?;
    let root_img = scratch.join("root.img");
    copy_partition(&image.disk, ROOT_X86_64, &root_img)?;
    // The copy is ours to change: check it, then make room.
    crate::run(
        Command::new(crate::find_tool("e2fsck")?)
            .arg("-fp")
            .arg(&root_img),
    )?;
    let size = std::fs::metadata(&root_img)?.len() + (GROW_MIB << 20);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&root_img)?
        .set_len(size)?;
    crate::run(Command::new(crate::find_tool("resize2fs")?).arg(&root_img))?;

    let root = scratch.join("root");
    std::fs::create_dir_all(&root)?;
    let mut mounts = Mounts::default();
    mounts.mount(&["-o", "loop"], &root_img, &root)?;
    for api in ["dev", "dev/pts", "proc", "sys"] {
        mounts.mount(
            &["--bind"],
            Path::new("/").join(api).as_path(),
            &root.join(api),
        )?;
    }

    // Packer's file provisioners: the package, the config directory and
    // the script, in /tmp of the image.
    let inside = root.join("tmp/provision");
    std::fs::create_dir_all(inside.join("config"))?;
    std::fs::copy(deb, inside.join("cvm-init.deb"))?;
    for entry in std::fs::read_dir(config_dir)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            std::fs::copy(entry.path(), inside.join("config").join(entry.file_name()))?;
        }
    }
    std::fs::copy(script(), inside.join("provision.sh"))?;

    // An image that has never seen cvm-init.
    chroot(&root, &["dpkg", "--purge", "cvm-init"])?;
    let _ = std::fs::remove_dir_all(root.join("etc/cvm-init"));
    remove_initrds(&root.join("boot"))?;

    let start = Instant::now();
    let out = Command::new(crate::find_tool("chroot")?)
        .arg(&root)
        .args([
            "/bin/bash",
            "/tmp/provision/provision.sh",
            "/tmp/provision/cvm-init.deb",
            "/tmp/provision/config",
            "initrd",
        ])
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .output()
        .context("running provision.sh in the chroot")?;
    let took = start.elapsed();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        bail!(
            "provision.sh failed ({}) after {took:.1?}:\n{log}",
            out.status
        );
    }
    let initrds = initrds(&root.join("boot"))?;
    let [made] = initrds.as_slice() else {
        bail!("provision.sh left {initrds:?} in /boot, expected one initrd:\n{log}");
    };
    let initrd = scratch.join("provisioned.initrd");
    std::fs::copy(made, &initrd)?;
    drop(mounts);
    Ok(Provisioned { initrd, log, took })
}

fn chroot(root: &Path, args: &[&str]) -> Result<()> {
    crate::run(
        Command::new(crate::find_tool("chroot")?)
            .arg(root)
            .args(args)
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
    )
}

fn initrds(boot: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(boot)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("initrd.img-") || name.starts_with("initramfs-") {
            found.push(boot.join(name.as_ref()));
        }
    }
    found.sort();
    Ok(found)
}

fn remove_initrds(boot: &Path) -> Result<()> {
    for initrd in initrds(boot)? {
        std::fs::remove_file(initrd)?;
    }
    Ok(())
}

/// Copies the partition of GPT type `type_uuid` out of `disk`.
fn copy_partition(disk: &Path, type_uuid: &str, to: &Path) -> Result<()> {
    let json = crate::output(
        Command::new(crate::find_tool("sfdisk")?)
            .arg("--json")
            .arg(disk),
    )?;
    let table: serde_json::Value = serde_json::from_str(&json)?;
    let table = &table["partitiontable"];
    let sector = table["sectorsize"].as_u64().unwrap_or(512);
    let part = table["partitions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["type"].as_str().map(str::to_lowercase).as_deref() == Some(type_uuid))
        .with_context(|| format!("{} has no partition of type {type_uuid}", disk.display()))?;
    let (start, size) = (
        part["start"].as_u64().context("partition start")?,
        part["size"].as_u64().context("partition size")?,
    );
    crate::run(
        Command::new(crate::find_tool("dd")?)
            .arg(format!("if={}", disk.display()))
            .arg(format!("of={}", to.display()))
            .args(["bs=4M", "iflag=skip_bytes,count_bytes", "status=none"])
            .arg(format!("skip={}", start * sector))
            .arg(format!("count={}", size * sector)),
    )
}

/// Mounts undone in reverse order when dropped (lazily, so that a failed
/// test leaves no busy mount behind).
#[derive(Default)]
struct Mounts(Vec<PathBuf>);

impl Mounts {
    fn mount(&mut self, opts: &[&str], what: &Path, at: &Path) -> Result<()> {
        crate::run(
            Command::new(crate::find_tool("mount")?)
                .args(opts)
                .arg(what)
                .arg(at),
        )?;
        self.0.push(at.to_owned());
        Ok(())
    }
}

impl Drop for Mounts {
    fn drop(&mut self) {
        for at in self.0.iter().rev() {
            let _ = Command::new("umount").arg("-l").arg(at).status();
        }
    }
}
