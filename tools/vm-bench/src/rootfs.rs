//! ext4 disk images made without mounting anything (`mke2fs -d`), and the
//! demo workload's root image.

use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};

use crate::initramfs::Initramfs;

/// Size of [`workload_image`] in MiB.
pub const WORKLOAD_IMAGE_MB: u64 = 48;

/// Writes the directory `dir` as a fresh ext4 image of `size_mb` MiB at
/// `image` (replaced if it exists), 4096-byte blocks, root-owned.
pub fn write_ext4(dir: &Path, image: &Path, size_mb: u64, label: &str) -> Result<()> {
    if image.exists() {
        fs::remove_file(image)?;
    }
    let mke2fs = crate::find_tool("mke2fs").context("mke2fs (package e2fsprogs)")?;
    crate::run(
        Command::new(mke2fs)
            .args([
                "-q",
                "-F",
                "-t",
                "ext4",
                "-b",
                "4096",
                "-E",
                "root_owner=0:0",
                "-L",
                label,
            ])
            .arg("-d")
            .arg(dir)
            .arg(image)
            .arg(format!("{size_mb}M")),
    )
    .with_context(|| format!("making {}", image.display()))
}

/// The demo workload's file tree: busybox, `openssl` with its libraries
/// and config, and `/sbin/init` = `image-build/workload/init.sh`, which
/// expects the encrypted data volume at `/data` and the TLS key and
/// certificate at `/run/cvm-init/tls/{key,cert}.pem`, then serves HTTPS
/// on port 8443 (see the script).
pub fn workload_tree() -> Result<Initramfs> {
    let mut t = Initramfs::new()?;
    t.add_busybox()?;
    let openssl = crate::find_tool("openssl").context("openssl (package openssl)")?;
    t.add_binary_with_libs(&openssl, "/usr/bin/openssl")?;
    let cnf = Path::new("/usr/lib/ssl/openssl.cnf");
    if cnf.is_file() {
        t.add_file(cnf, "/usr/lib/ssl/openssl.cnf", 0o644)?;
    }
    // For the unlock benchmark (`cvm_bench=1` on the kernel command line).
    let cryptsetup =
        crate::find_tool("cryptsetup").context("cryptsetup (package cryptsetup-bin)")?;
    t.add_binary_with_libs(&cryptsetup, "/sbin/cryptsetup")?;
    let init = crate::image_build_dir().join("workload/init.sh");
    t.add_file(&init, "/sbin/init", 0o755)?;
    t.add_dir("/data", 0o755)?.add_dir("/run/cvm-init", 0o700)?;
    // A systemd initrd (dracut) switches only into an OS tree: systemd's
    // SwitchRoot refuses a root without os-release when no init= is given.
    t.add_bytes(OS_RELEASE.as_bytes(), "/usr/lib/os-release", 0o644)?
        .add_symlink("../usr/lib/os-release", "/etc/os-release")?;
    Ok(t)
}

/// The workload image's os-release.
const OS_RELEASE: &str = "ID=cvm-init-workload\nNAME=\"cvm-init demo workload\"\nPRETTY_NAME=\"cvm-init demo workload (busybox)\"\n";

/// Writes the workload's root image ([`workload_tree`]) to `image`.
pub fn workload_image(image: &Path) -> Result<()> {
    let t = workload_tree()?;
    write_ext4(t.root(), image, WORKLOAD_IMAGE_MB, "workload")
}

/// A dm-verity hash tree appended to an image, as `[boot.verity]` in the
/// measured config describes it.
#[derive(Debug, Clone)]
pub struct VerityRoot {
    pub root_hash: String,
    pub salt: String,
    pub data_blocks: u64,
    /// Byte offset of the tree: the end of the filesystem.
    pub hash_offset: u64,
}

impl VerityRoot {
    /// The config section for cvm-init as PID 1.
    pub fn config(&self) -> String {
        format!(
            "\n[boot.verity]\nroot_hash = \"{}\"\nsalt = \"{}\"\ndata_blocks = {}\nhash_offset = {}\n",
            self.root_hash, self.salt, self.data_blocks, self.hash_offset
        )
    }
}

/// Appends a dm-verity hash tree (no superblock) to `image`, right after
/// its data, with `veritysetup format` (package cryptsetup-bin).
pub fn append_verity(image: &Path) -> Result<VerityRoot> {
    let size = fs::metadata(image)?.len();
    anyhow::ensure!(
        size % 4096 == 0,
        "{} is not a whole number of 4 KiB blocks",
        image.display()
    );
    let veritysetup =
        crate::find_tool("veritysetup").context("veritysetup (package cryptsetup-bin)")?;
    let out = crate::output(
        Command::new(veritysetup)
            .args(["format", "--no-superblock"])
            .arg(format!("--hash-offset={size}"))
            .arg(format!("--data-blocks={}", size / 4096))
            .arg(image)
            .arg(image),
    )?;
    let field = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_owned())
            .with_context(|| format!("veritysetup printed no {name:?}: {out}"))
    };
    Ok(VerityRoot {
        root_hash: field("Root hash:")?,
        salt: field("Salt:")?,
        data_blocks: size / 4096,
        hash_offset: size,
    })
}

/// The workload image with its verity tree appended.
pub fn verity_workload_image(image: &Path) -> Result<VerityRoot> {
    workload_image(image)?;
    append_verity(image)
}
