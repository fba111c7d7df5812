//! A Debian kernel for the guest: downloaded with `apt-get download`,
//! unpacked with `dpkg -x` into a cache directory (never installed on the
//! host), indexed with `depmod -b`; and the dependency closure of a module
//! list, in load order, from that index.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

use crate::run;

/// Debian's meta package that depends on the current kernel image package.
pub const META_PACKAGE: &str = "linux-image-amd64";

/// The modules a cvm-init guest needs, by name, in the order its init
/// should ask for them. [`module_closure`] expands them with their
/// dependencies (and the `softdep pre:` modules) and drops built-ins.
///
/// - `virtio_pci`, `virtio_blk`, `virtio_net`: QEMU's disks and NIC.
/// - `dm-mod`, `ecb`, `xts`, `cryptd`, `crypto_simd`, `aesni-intel`,
///   `dm-crypt`: LUKS2 with aes-xts-plain64 (without `ecb` the dm-crypt
///   table load fails with "Error allocating crypto tfm").
/// - `dm-integrity`, `authenc`: LUKS2 with `--integrity` (hmac and sha256
///   are built into Debian's kernel).
/// - `ext4`: the data volume and the workload's root image.
pub const GUEST_MODULES: &[&str] = &[
    "virtio_pci",
    "virtio_blk",
    "virtio_net",
    "dm-mod",
    "ecb",
    "xts",
    "cryptd",
    "crypto_simd",
    "aesni-intel",
    "dm-crypt",
    "dm-integrity",
    "authenc",
    // The workload's root is verified.
    "dm-verity",
    "ext4",
    // The host's init-data document arrives through fw_cfg.
    "qemu_fw_cfg",
];

/// An unpacked Debian kernel.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// Kernel release, e.g. `6.1.0-56-amd64`.
    pub version: String,
    /// The compressed bzImage as Debian ships it.
    pub vmlinuz: PathBuf,
    /// The uncompressed ELF kernel extracted from it, when it is
    /// xz-compressed (Debian's is). QEMU boots it through its PVH entry
    /// point (`CONFIG_PVH=y`), which saves the ~5 s the bzImage spends
    /// decompressing itself under TCG.
    pub vmlinux: Option<PathBuf>,
    /// `<root>/lib/modules/<version>`, with `modules.dep` made by depmod.
    pub modules_dir: PathBuf,
}

impl Kernel {
    /// What to pass to QEMU's `-kernel`: `vmlinux` if there is one, else
    /// `vmlinuz`.
    pub fn boot_image(&self) -> &Path {
        self.vmlinux.as_deref().unwrap_or(&self.vmlinuz)
    }
}

/// Marker written last into a complete cache entry; holds the version.
const COMPLETE: &str = "vm-bench-complete";

/// Fetches (or finds in `cache`) the current Debian kernel image.
///
/// Layout: `<cache>/kernel/<package>/` is the `dpkg -x` root. The first
/// call resolves the package through `apt-cache depends linux-image-amd64`
/// (apt's lists must exist: run `apt-get update` once on a fresh machine),
/// downloads it (~70 MB), unpacks it (~400 MB) and runs depmod; later
/// calls reuse the newest complete entry without asking apt (set
/// `VM_BENCH_REFRESH_KERNEL=1` to look for a newer one). Safe against
/// concurrent callers: entries are built in a temporary directory and
/// renamed into place.
pub fn fetch_kernel(cache: &Path) -> Result<Kernel> {
    let base = cache.join("kernel");
    fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
    if std::env::var_os("VM_BENCH_REFRESH_KERNEL").is_none() {
        if let Some(k) = cached(&base)? {
            return Ok(k);
        }
    }
    let package = current_package()?;
    let dest = base.join(&package);
    if let Some(k) = load_entry(&dest)? {
        return Ok(k);
    }
    let work = tempfile::Builder::new()
        .prefix(".fetch-")
        .tempdir_in(&base)
        .context("creating a download directory")?;
    run(std::process::Command::new("apt-get")
        .args(["download", "-q", &package])
        .current_dir(work.path()))
    .with_context(|| format!("apt-get download {package} (run `apt-get update` first?)"))?;
    let deb = fs::read_dir(work.path())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or_else(|| anyhow!("apt-get download {package} left no .deb"))?;
    let root = work.path().join("root");
    run(std::process::Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(&root))?;
    fs::remove_file(&deb)?;
    let version = only_dir_name(&root.join("lib/modules"))?;
    run(std::process::Command::new("depmod")
        .arg("-b")
        .arg(&root)
        .arg(&version))
    .context("depmod (package kmod)")?;
    fs::write(root.join(COMPLETE), &version)?;
    match fs::rename(&root, &dest) {
        Ok(()) => {}
        // Another caller finished first: use theirs.
        Err(_) if dest.join(COMPLETE).exists() => {}
        Err(e) => return Err(e).with_context(|| format!("renaming into {}", dest.display())),
    }
    load_entry(&dest)?.ok_or_else(|| anyhow!("kernel cache entry {} incomplete", dest.display()))
}

/// The newest complete entry under `base`, if any.
fn cached(base: &Path) -> Result<Option<Kernel>> {
    let mut names: Vec<_> = fs::read_dir(base)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    // linux-image-6.1.0-NN-amd64: longer numbers sort later with this key.
    names.sort_by_key(|n| (n.len(), n.clone()));
    for name in names.iter().rev() {
        if let Some(k) = load_entry(&base.join(name))? {
            return Ok(Some(k));
        }
    }
    Ok(None)
}

fn load_entry(root: &Path) -> Result<Option<Kernel>> {
    let Ok(version) = fs::read_to_string(root.join(COMPLETE)) else {
        return Ok(None);
    };
    let version = version.trim().to_string();
    let vmlinuz = root.join(format!("boot/vmlinuz-{version}"));
    let modules_dir = root.join("lib/modules").join(&version);
    if !vmlinuz.is_file() || !modules_dir.join("modules.dep").is_file() {
        bail!(
            "kernel cache entry {} is damaged: remove it",
            root.display()
        );
    }
    let vmlinux = root.join(format!("boot/vmlinux-{version}"));
    let vmlinux = if vmlinux.is_file() {
        Some(vmlinux)
    } else {
        extract_vmlinux(&vmlinuz, &vmlinux)?.then_some(vmlinux)
    };
    Ok(Some(Kernel {
        version,
        vmlinuz,
        vmlinux,
        modules_dir,
    }))
}

/// Decompresses the xz payload of a bzImage into `out` (an ELF file).
/// Returns false when the bzImage holds no xz stream or no ELF came out.
fn extract_vmlinux(vmlinuz: &Path, out: &Path) -> Result<bool> {
    let image = fs::read(vmlinuz)?;
    let Some(at) = crate::scan::find(&image, b"\xfd7zXZ\x00") else {
        return Ok(false);
    };
    let dir = out
        .parent()
        .ok_or_else(|| anyhow!("{} has no parent", out.display()))?;
    let mut xz = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut xz, &image[at..])?;
    let elf = tempfile::NamedTempFile::new_in(dir)?;
    // --single-stream: the bzImage continues after the stream.
    let status = std::process::Command::new("xz")
        .args(["-dc", "--single-stream"])
        .arg(xz.path())
        .stdout(elf.reopen()?)
        .status()
        .context("running xz (package xz-utils)")?;
    let mut magic = [0u8; 4];
    let ok = status.success()
        && std::io::Read::read_exact(&mut fs::File::open(elf.path())?, &mut magic).is_ok()
        && &magic == b"\x7fELF";
    if ok {
        elf.persist(out)?;
    }
    Ok(ok)
}

/// `linux-image-6.1.0-NN-amd64`, from the meta package's dependency.
fn current_package() -> Result<String> {
    let out =
        crate::output(std::process::Command::new("apt-cache").args(["depends", META_PACKAGE]))?;
    out.lines()
        .filter_map(|l| l.trim().strip_prefix("Depends:"))
        .map(str::trim)
        .find(|p| p.starts_with("linux-image-") && p.ends_with("-amd64"))
        .map(str::to_string)
        .ok_or_else(|| {
            anyhow!("apt-cache knows no {META_PACKAGE} dependency (run `apt-get update` first)")
        })
}

fn only_dir_name(dir: &Path) -> Result<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    match names.len() {
        1 => Ok(names.remove(0)),
        _ => bail!(
            "expected one kernel version in {}, found {names:?}",
            dir.display()
        ),
    }
}

/// Module name as the kernel knows it: `-` and `_` are the same.
fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// Name of a module from its path: `kernel/drivers/md/dm-mod.ko` -> `dm_mod`.
fn name_of(rel: &str) -> String {
    let file = rel.rsplit('/').next().unwrap_or(rel);
    let stem = file
        .strip_suffix(".ko.xz")
        .or_else(|| file.strip_suffix(".ko.zst"))
        .or_else(|| file.strip_suffix(".ko.gz"))
        .or_else(|| file.strip_suffix(".ko"))
        .unwrap_or(file);
    normalize(stem)
}

/// The index read from `modules.dep`, `modules.builtin`, `modules.softdep`
/// and `modules.alias`.
struct Index {
    /// name -> (path relative to the modules dir, dependencies' names)
    deps: HashMap<String, (String, Vec<String>)>,
    builtin: HashSet<String>,
    /// name -> names (or aliases) to load before it
    softdep_pre: HashMap<String, Vec<String>>,
    /// alias -> module names (exact aliases only; wildcard ones are skipped)
    aliases: HashMap<String, Vec<String>>,
}

impl Index {
    fn read(dir: &Path) -> Result<Index> {
        let read = |f: &str| {
            fs::read_to_string(dir.join(f))
                .with_context(|| format!("reading {f} in {}", dir.display()))
        };
        let mut deps = HashMap::new();
        for line in read("modules.dep")?.lines() {
            let Some((m, rest)) = line.split_once(':') else {
                continue;
            };
            let d = rest.split_whitespace().map(name_of).collect();
            deps.insert(name_of(m), (m.to_string(), d));
        }
        let builtin = read("modules.builtin")?.lines().map(name_of).collect();
        let mut softdep_pre: HashMap<String, Vec<String>> = HashMap::new();
        for line in read("modules.softdep").unwrap_or_default().lines() {
            let mut words = line.split_whitespace();
            if words.next() != Some("softdep") {
                continue;
            }
            let Some(m) = words.next() else { continue };
            let mut in_pre = false;
            for w in words {
                match w {
                    "pre:" => in_pre = true,
                    "post:" => in_pre = false,
                    _ if in_pre => softdep_pre
                        .entry(normalize(m))
                        .or_default()
                        .push(w.to_string()),
                    _ => {}
                }
            }
        }
        let mut aliases: HashMap<String, Vec<String>> = HashMap::new();
        for line in read("modules.alias").unwrap_or_default().lines() {
            let mut w = line.split_whitespace();
            if let (Some("alias"), Some(a), Some(m)) = (w.next(), w.next(), w.next()) {
                if !a.contains(['*', '?', '[']) {
                    aliases.entry(a.to_string()).or_default().push(normalize(m));
                }
            }
        }
        Ok(Index {
            deps,
            builtin,
            softdep_pre,
            aliases,
        })
    }

    /// Module names a requested name stands for: itself, or an alias's
    /// targets. Empty when built in.
    fn resolve(&self, requested: &str) -> Result<Vec<String>> {
        let n = normalize(requested);
        if self.deps.contains_key(&n) {
            return Ok(vec![n]);
        }
        if self.builtin.contains(&n) {
            return Ok(vec![]);
        }
        if let Some(targets) = self.aliases.get(requested) {
            return Ok(targets
                .iter()
                .filter(|t| self.deps.contains_key(*t))
                .cloned()
                .collect());
        }
        bail!("module {requested:?} is neither in modules.dep nor built in")
    }

    fn visit(&self, name: &str, seen: &mut HashSet<String>, out: &mut Vec<String>) {
        if !seen.insert(name.to_string()) {
            return;
        }
        if let Some(pre) = self.softdep_pre.get(name) {
            for p in pre {
                // A softdep that resolves to nothing is optional by nature.
                for m in self.resolve(p).unwrap_or_default() {
                    self.visit(&m, seen, out);
                }
            }
        }
        if let Some((_, deps)) = self.deps.get(name) {
            // modules.dep lists the full transitive set; visiting each
            // depth-first yields a valid load order whatever its order.
            for d in deps.iter().rev() {
                self.visit(d, seen, out);
            }
        }
        out.push(name.to_string());
    }
}

/// The `.ko` files (absolute paths) needed to load `names`, in load
/// order: each module after its dependencies and its `softdep pre:`
/// modules, each once; built-in modules are skipped. Debian 6.1 ships
/// uncompressed `.ko` files; `.ko.xz` ones would be listed as they are
/// and decompressed by [`crate::initramfs::Initramfs::add_modules`].
pub fn module_closure(kernel: &Kernel, names: &[&str]) -> Result<Vec<PathBuf>> {
    let index = Index::read(&kernel.modules_dir)?;
    let mut seen = HashSet::new();
    let mut order = Vec::new();
    for n in names {
        for m in index.resolve(n)? {
            index.visit(&m, &mut seen, &mut order);
        }
    }
    order
        .iter()
        .map(|m| {
            index
                .deps
                .get(m)
                .map(|(rel, _)| kernel.modules_dir.join(rel))
                .ok_or_else(|| anyhow!("module {m} vanished from the index"))
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_from_paths() {
        assert_eq!(name_of("kernel/drivers/md/dm-mod.ko"), "dm_mod");
        assert_eq!(
            name_of("kernel/arch/x86/crypto/aesni-intel.ko.xz"),
            "aesni_intel"
        );
        assert_eq!(name_of("virtio_net.ko"), "virtio_net");
    }

    #[test]
    fn closure_orders_dependencies_and_softdeps_and_skips_builtins() {
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path().join("lib/modules/9.9.9");
        fs::create_dir_all(&m).unwrap();
        fs::write(
            m.join("modules.dep"),
            "kernel/a/virtio_net.ko: kernel/a/net_failover.ko kernel/a/failover.ko kernel/a/virtio.ko kernel/a/virtio_ring.ko\n\
             kernel/a/net_failover.ko: kernel/a/failover.ko\n\
             kernel/a/failover.ko:\n\
             kernel/a/virtio.ko: kernel/a/virtio_ring.ko\n\
             kernel/a/virtio_ring.ko:\n\
             kernel/fs/ext4.ko: kernel/lib/crc16.ko\n\
             kernel/lib/crc16.ko:\n\
             kernel/crypto/crc32c_generic.ko:\n",
        )
        .unwrap();
        fs::write(m.join("modules.builtin"), "kernel/crypto/hmac.ko\n").unwrap();
        fs::write(
            m.join("modules.softdep"),
            "softdep ext4 pre: crypto-crc32c\n",
        )
        .unwrap();
        fs::write(
            m.join("modules.alias"),
            "alias crypto-crc32c crc32c_generic\n",
        )
        .unwrap();
        let k = Kernel {
            version: "9.9.9".into(),
            vmlinuz: dir.path().join("vmlinuz"),
            vmlinux: None,
            modules_dir: m.clone(),
        };
        let got: Vec<String> = module_closure(&k, &["virtio-net", "hmac", "ext4", "virtio"])
            .unwrap()
            .iter()
            .map(|p| p.strip_prefix(&m).unwrap().display().to_string())
            .collect();
        assert_eq!(
            got,
            [
                "kernel/a/virtio_ring.ko",
                "kernel/a/virtio.ko",
                "kernel/a/failover.ko",
                "kernel/a/net_failover.ko",
                "kernel/a/virtio_net.ko",
                "kernel/crypto/crc32c_generic.ko",
                "kernel/lib/crc16.ko",
                "kernel/fs/ext4.ko",
            ]
        );
        assert!(module_closure(&k, &["nonexistent"]).is_err());
    }
}
