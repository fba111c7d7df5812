//! A staged file tree for a guest, written out as an initramfs (newc cpio,
//! uncompressed) with [`Initramfs::write_cpio`] or as an ext4 image with
//! [`crate::rootfs::write_ext4`].
//!
//! Destinations are absolute paths inside the guest (`"/init"`,
//! `"/etc/cvm-init/config.toml"`); parent directories are made as needed
//! and an existing entry at the destination is replaced. Everything is
//! owned by root in the archive, with mtime 0, so archives are
//! reproducible.

use std::fs;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, Context, Result};

use crate::kernel::Kernel;

/// Where [`Initramfs::add_modules`] writes the ordered module list: one
/// absolute in-guest `.ko` path a line, dependencies first. cvm-init
/// loads its modules from this file.
pub const MODULE_LIST: &str = "/etc/cvm-init/modules";

/// Places `libgcc_s.so.1` is found on Debian amd64.
const LIBGCC_S: &[&str] = &[
    "/lib/x86_64-linux-gnu/libgcc_s.so.1",
    "/usr/lib/x86_64-linux-gnu/libgcc_s.so.1",
];

/// Directories every tree starts with (mount points and PATH entries).
const BASE_DIRS: &[&str] = &[
    "bin", "sbin", "usr/bin", "usr/sbin", "etc", "lib", "lib64", "dev", "proc", "sys", "run",
    "tmp", "mnt", "root",
];

/// Builder of a guest file tree; see the module documentation.
///
/// ```no_run
/// # fn main() -> anyhow::Result<()> {
/// use std::path::Path;
/// use vm_bench::{initramfs::Initramfs, kernel};
/// let k = kernel::fetch_kernel(&vm_bench::cache_dir())?;
/// let mods = kernel::module_closure(&k, kernel::GUEST_MODULES)?;
/// let mut tree = Initramfs::new()?;
/// tree.add_binary_with_libs(Path::new("target/debug/cvm-init"), "/init")?
///     .add_binary_with_libs(Path::new("/usr/sbin/cryptsetup"), "/sbin/cryptsetup")?
///     .add_bytes(b"...", "/etc/cvm-init/config.toml", 0o600)?
///     .add_modules(&k, &mods)?;
/// tree.write_cpio(Path::new("/tmp/initrd.cpio"))?;
/// # Ok(()) }
/// ```
pub struct Initramfs {
    dir: tempfile::TempDir,
    modules: Vec<String>,
}

impl Initramfs {
    /// An empty tree with the usual top-level directories.
    pub fn new() -> Result<Initramfs> {
        let dir = tempfile::Builder::new()
            .prefix("vm-bench-tree-")
            .tempdir()
            .context("creating a staging directory")?;
        for d in BASE_DIRS {
            fs::create_dir_all(dir.path().join(d))?;
        }
        Ok(Initramfs {
            dir,
            modules: Vec::new(),
        })
    }

    /// The staging directory on the host, for callers who want to lay out
    /// files themselves.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Host path of an in-guest destination; refuses `..` and relative paths.
    fn host_path(&self, dest: &str) -> Result<PathBuf> {
        let p = Path::new(dest);
        if !p.is_absolute() || p.components().any(|c| c == Component::ParentDir) {
            bail!("destination {dest:?} must be an absolute path without `..`");
        }
        let rel = p.strip_prefix("/")?;
        if rel.as_os_str().is_empty() {
            bail!("destination {dest:?} names the root");
        }
        let host = self.dir.path().join(rel);
        if let Some(parent) = host.parent() {
            fs::create_dir_all(parent)
                .with_context(|| format!("creating the parent of {dest} in the tree"))?;
        }
        if host.symlink_metadata().is_ok() && !host.is_dir() {
            fs::remove_file(&host)?;
        }
        Ok(host)
    }

    /// Creates a directory (and its parents).
    pub fn add_dir(&mut self, dest: &str, mode: u32) -> Result<&mut Self> {
        let host = self.host_path(dest)?;
        fs::create_dir_all(&host)?;
        fs::set_permissions(&host, fs::Permissions::from_mode(mode))?;
        Ok(self)
    }

    /// Copies a host file (following symlinks) to `dest` with `mode`.
    pub fn add_file(&mut self, src: &Path, dest: &str, mode: u32) -> Result<&mut Self> {
        let host = self.host_path(dest)?;
        fs::copy(src, &host).with_context(|| format!("copying {} to {dest}", src.display()))?;
        fs::set_permissions(&host, fs::Permissions::from_mode(mode))?;
        Ok(self)
    }

    /// Writes `contents` to `dest` with `mode`.
    pub fn add_bytes(&mut self, contents: &[u8], dest: &str, mode: u32) -> Result<&mut Self> {
        let host = self.host_path(dest)?;
        fs::write(&host, contents).with_context(|| format!("writing {dest}"))?;
        fs::set_permissions(&host, fs::Permissions::from_mode(mode))?;
        Ok(self)
    }

    /// Creates a symbolic link `dest` -> `target`.
    pub fn add_symlink(&mut self, target: &str, dest: &str) -> Result<&mut Self> {
        let host = self.host_path(dest)?;
        symlink(target, &host).with_context(|| format!("linking {dest}"))?;
        Ok(self)
    }

    /// Copies an executable to `dest` with the shared libraries `ldd`
    /// lists (each at the same path in the tree, the dynamic loader
    /// included) and, always, `libgcc_s.so.1`: glibc loads it at run time
    /// for thread exit and Rust's unwinder needs it, yet `ldd` does not
    /// list it. A static executable is copied alone (plus libgcc_s).
    pub fn add_binary_with_libs(&mut self, src: &Path, dest: &str) -> Result<&mut Self> {
        self.add_file(src, dest, 0o755)?;
        for lib in shared_libs(src)? {
            let dest = lib
                .to_str()
                .ok_or_else(|| anyhow!("non-UTF-8 library path {}", lib.display()))?
                .to_string();
            if !self.dir.path().join(dest.trim_start_matches('/')).exists() {
                self.add_file(&lib, &dest, 0o755)?;
            }
        }
        let libgcc = LIBGCC_S
            .iter()
            .map(Path::new)
            .find(|p| p.is_file())
            .ok_or_else(|| anyhow!("libgcc_s.so.1 not found on the host (package libgcc-s1)"))?;
        self.add_file(libgcc, LIBGCC_S[0], 0o755)?;
        Ok(self)
    }

    /// Adds the host's static busybox (`busybox-static`) as `/bin/busybox`
    /// and a symlink for each of its applets (`busybox --list-full`) whose
    /// path is still free, so files added before or after it win.
    pub fn add_busybox(&mut self) -> Result<&mut Self> {
        let bb = crate::find_tool("busybox").context("busybox (package busybox-static)")?;
        let ldd = Command::new("ldd").arg(&bb).output()?;
        if ldd.status.success() && !String::from_utf8_lossy(&ldd.stdout).contains("statically") {
            bail!(
                "{} is dynamically linked: install busybox-static",
                bb.display()
            );
        }
        self.add_file(&bb, "/bin/busybox", 0o755)?;
        let list = crate::output(Command::new(&bb).arg("--list-full"))?;
        for applet in list.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let dest = format!("/{applet}");
            if self.dir.path().join(applet).symlink_metadata().is_err() {
                self.add_symlink("/bin/busybox", &dest)?;
            }
        }
        Ok(self)
    }

    /// Copies kernel modules (absolute host paths from
    /// [`crate::kernel::module_closure`], in load order) to
    /// `/lib/modules/<version>/<same relative path>`, decompressing
    /// `.ko.xz`/`.ko.zst`/`.ko.gz`, and appends their in-guest paths to
    /// [`MODULE_LIST`] (rewritten on each call, in call order).
    pub fn add_modules(&mut self, kernel: &Kernel, modules: &[PathBuf]) -> Result<&mut Self> {
        for m in modules {
            let rel = m.strip_prefix(&kernel.modules_dir).with_context(|| {
                format!(
                    "{} is not under {}",
                    m.display(),
                    kernel.modules_dir.display()
                )
            })?;
            let rel = rel
                .to_str()
                .ok_or_else(|| anyhow!("non-UTF-8 module path {}", m.display()))?;
            let (rel_out, decompressor) = match rel.rsplit_once(".ko.") {
                Some((stem, "xz")) => (format!("{stem}.ko"), Some("xz")),
                Some((stem, "zst")) => (format!("{stem}.ko"), Some("zstd")),
                Some((stem, "gz")) => (format!("{stem}.ko"), Some("gzip")),
                _ => (rel.to_string(), None),
            };
            let dest = format!("/lib/modules/{}/{rel_out}", kernel.version);
            match decompressor {
                None => {
                    self.add_file(m, &dest, 0o644)?;
                }
                Some(tool) => {
                    let data = Command::new(tool).arg("-dc").arg(m).output()?;
                    if !data.status.success() {
                        bail!("{tool} -dc {} failed", m.display());
                    }
                    self.add_bytes(&data.stdout, &dest, 0o644)?;
                }
            }
            self.modules.push(dest);
        }
        let mut list = self.modules.join("\n");
        list.push('\n');
        self.add_bytes(list.as_bytes(), MODULE_LIST, 0o644)
    }

    /// The in-guest module paths added so far, in load order.
    pub fn modules(&self) -> &[String] {
        &self.modules
    }

    /// Writes the tree as an uncompressed newc cpio archive (what the
    /// kernel's initramfs unpacker reads), with a `/dev/console` node so the
    /// init has a console even before it mounts devtmpfs.
    pub fn write_cpio(&self, out: &Path) -> Result<()> {
        let file = fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
        let mut w = Newc::new(BufWriter::new(file));
        let mut entries = Vec::new();
        walk(self.dir.path(), self.dir.path(), &mut entries)?;
        for (name, path) in &entries {
            let meta = path.symlink_metadata()?;
            let ft = meta.file_type();
            if ft.is_dir() {
                w.entry(name, 0o040000 | (meta.mode() & 0o7777), 0, &[])?;
            } else if ft.is_symlink() {
                let target = fs::read_link(path)?;
                w.entry(name, 0o120777, 0, target.as_os_str().as_encoded_bytes())?;
            } else if ft.is_file() {
                let data = fs::read(path)?;
                w.entry(name, 0o100000 | (meta.mode() & 0o7777), 0, &data)?;
            } else {
                bail!("{} is neither file, directory nor symlink", path.display());
            }
        }
        // Character device 5:1.
        w.entry("dev/console", 0o020600, (5 << 8) | 1, &[])?;
        w.entry("TRAILER!!!", 0, 0, &[])?;
        w.finish()?;
        Ok(())
    }
}

/// Collects (archive name, host path) pairs, parents before children,
/// sorted for reproducibility.
fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) -> Result<()> {
    let mut children: Vec<PathBuf> = fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<io::Result<_>>()?;
    children.sort();
    for c in children {
        let name = c
            .strip_prefix(root)?
            .to_str()
            .ok_or_else(|| anyhow!("non-UTF-8 path {}", c.display()))?
            .to_string();
        let is_dir = c.symlink_metadata()?.is_dir();
        out.push((name, c.clone()));
        if is_dir {
            walk(root, &c, out)?;
        }
    }
    Ok(())
}

/// Minimal writer of the "new ASCII" cpio format (magic 070701).
struct Newc<W: Write> {
    w: W,
    ino: u32,
}

impl<W: Write> Newc<W> {
    fn new(w: W) -> Self {
        Newc { w, ino: 1 }
    }

    /// `rdev` is `major << 8 | minor` for device nodes.
    fn entry(&mut self, name: &str, mode: u32, rdev: u32, data: &[u8]) -> Result<()> {
        let namesize = name.len() + 1;
        let size = u32::try_from(data.len()).context("file larger than 4 GiB")?;
        let nlink = if mode & 0o170000 == 0o040000 { 2 } else { 1 };
        let fields = [
            self.ino,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime
            size,
            0, // devmajor
            0, // devminor
            rdev >> 8,
            rdev & 0xff,
            u32::try_from(namesize)?,
            0, // check
        ];
        self.ino += 1;
        let mut header = String::from("070701");
        for f in fields {
            header.push_str(&format!("{f:08X}"));
        }
        self.w.write_all(header.as_bytes())?;
        self.w.write_all(name.as_bytes())?;
        self.w.write_all(&[0])?;
        self.pad(110 + namesize)?;
        self.w.write_all(data)?;
        self.pad(data.len())?;
        Ok(())
    }

    fn pad(&mut self, len: usize) -> Result<()> {
        let n = (4 - len % 4) % 4;
        self.w.write_all(&[0u8; 3][..n])?;
        Ok(())
    }

    fn finish(mut self) -> Result<()> {
        self.w.flush()?;
        Ok(())
    }
}

/// The shared libraries `ldd` lists for `bin` (absolute host paths),
/// the dynamic loader included; empty for a static executable.
fn shared_libs(bin: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(bin)
        .output()
        .context("running ldd")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stdout.contains("not a dynamic executable")
        || stderr.contains("not a dynamic executable")
        || stdout.contains("statically linked")
    {
        return Ok(vec![]);
    }
    if !out.status.success() {
        bail!("ldd {} failed: {}", bin.display(), stderr.trim());
    }
    let mut libs = Vec::new();
    for line in stdout.lines().map(str::trim) {
        let path = match line.split_once("=>") {
            Some((name, rest)) => {
                let rest = rest.trim();
                if rest.starts_with("not found") {
                    bail!("{}: library {} not found", bin.display(), name.trim());
                }
                rest.split_whitespace().next().unwrap_or_default()
            }
            None => line.split_whitespace().next().unwrap_or_default(),
        };
        if path.starts_with('/') {
            libs.push(PathBuf::from(path));
        }
    }
    Ok(libs)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn binary_gets_its_libraries_and_libgcc() {
        let mut t = Initramfs::new().unwrap();
        t.add_binary_with_libs(Path::new("/bin/ls"), "/bin/ls")
            .unwrap();
        let r = t.root();
        assert!(r.join("bin/ls").is_file());
        assert!(r.join("lib/x86_64-linux-gnu/libc.so.6").is_file());
        assert!(r.join("lib64/ld-linux-x86-64.so.2").is_file());
        assert!(r.join("lib/x86_64-linux-gnu/libgcc_s.so.1").is_file());
    }

    #[test]
    fn refuses_escaping_destinations() {
        let mut t = Initramfs::new().unwrap();
        assert!(t.add_bytes(b"x", "etc/x", 0o644).is_err());
        assert!(t.add_bytes(b"x", "/etc/../../x", 0o644).is_err());
        assert!(t.add_bytes(b"x", "/", 0o644).is_err());
    }

    #[test]
    fn cpio_is_readable_by_cpio_tool() {
        let mut t = Initramfs::new().unwrap();
        t.add_bytes(b"#!/bin/sh\necho hi\n", "/init", 0o755)
            .unwrap()
            .add_symlink("/init", "/sbin/init")
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("i.cpio");
        t.write_cpio(&out).unwrap();
        let Ok(listing) = Command::new("cpio").args(["-itv", "-F"]).arg(&out).output() else {
            eprintln!("cpio not installed; skipping the listing check");
            return;
        };
        let listing = String::from_utf8_lossy(&listing.stdout);
        assert!(listing.contains("init"), "{listing}");
        assert!(listing.contains("sbin/init -> /init"), "{listing}");
        assert!(listing.contains("dev/console"), "{listing}");
        assert!(listing.contains("-rwxr-xr-x"), "{listing}");
    }
}
