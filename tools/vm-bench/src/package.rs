//! The Debian package: built with cargo-deb from the `vm` profile binary,
//! installed on the host for real with `dpkg -i` (the tests run as root on
//! a throwaway machine) and purged again. Also what the package promises:
//! its file list as `docs/debian-package.md` documents it, and a snapshot
//! of the host state that installing it must leave alone.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, Context, Result};

use crate::agent::Binaries;

/// The package's name.
pub const PACKAGE: &str = "cvm-init";

/// The repository root.
pub fn repo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Whether `cargo deb` runs (`cargo install cargo-deb`; scripts/setup).
pub fn cargo_deb_present() -> bool {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    Command::new(cargo)
        .args(["deb", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Builds the `.deb` into `out_dir` from the already built `vm` profile
/// binary (`cargo deb --no-build --profile vm`: no second, LTO, build).
/// `bins` proves the binary was built by [`crate::agent::build_binaries`].
pub fn build_deb(bins: &Binaries, out_dir: &Path) -> Result<PathBuf> {
    if !bins.cvm_init.is_file() {
        bail!("{} is missing", bins.cvm_init.display());
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    fs::create_dir_all(out_dir)?;
    let out = crate::output(
        Command::new(cargo)
            .args(["deb", "-p", PACKAGE, "--no-build", "--profile", "vm"])
            .arg("--output")
            .arg(out_dir)
            .current_dir(repo_dir()),
    )
    .context("cargo deb (cargo install cargo-deb --locked; scripts/setup)")?;
    let deb = PathBuf::from(
        out.lines()
            .map(str::trim)
            .rfind(|l| l.ends_with(".deb"))
            .ok_or_else(|| anyhow!("cargo deb printed no .deb path: {out}"))?,
    );
    if !deb.is_file() {
        bail!("cargo deb reported {} but it does not exist", deb.display());
    }
    Ok(deb)
}

/// Names of the members of the package's control archive (`control`,
/// `md5sums`, and maintainer scripts if there were any).
pub fn control_members(deb: &Path) -> Result<Vec<String>> {
    let dir = tempfile::tempdir()?;
    let ctrl = dir.path().join("DEBIAN");
    crate::run(Command::new("dpkg-deb").arg("-e").arg(deb).arg(&ctrl))?;
    let mut names: Vec<String> = fs::read_dir(&ctrl)?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<std::io::Result<_>>()?;
    names.sort();
    Ok(names)
}

/// The package's status in dpkg's database, if it is known there
/// (`install ok installed`, `deinstall ok config-files`, ...).
pub fn dpkg_status() -> Option<String> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", PACKAGE])
        .output()
        .ok()?;
    let status = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && !status.is_empty() && !status.contains("not-installed"))
        .then_some(status)
}

/// The package installed on this host; purged (`dpkg --purge`) on drop.
pub struct Installed {
    /// What `dpkg -i` printed (stdout and stderr).
    pub dpkg_output: String,
}

impl Installed {
    /// `dpkg -i deb`. Refuses when the package is already known to dpkg
    /// (installed by hand, or left over by an interrupted run): the test
    /// purges what it installs and must not take someone's installation
    /// away.
    pub fn install(deb: &Path) -> Result<Installed> {
        if let Some(status) = dpkg_status() {
            bail!(
                "{PACKAGE} is already in dpkg's database ({status}); the test installs and \
                 purges it itself: `dpkg --purge {PACKAGE}` first"
            );
        }
        let out = Command::new("dpkg")
            .arg("-i")
            .arg(deb)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output()
            .context("running dpkg -i")?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let installed = Installed { dpkg_output: text };
        if !out.status.success() {
            // Drop purges whatever dpkg managed to unpack.
            bail!(
                "dpkg -i {} failed ({}):\n{}",
                deb.display(),
                out.status,
                installed.dpkg_output
            );
        }
        Ok(installed)
    }

    /// `dpkg -L`: every path the package owns (directories included).
    pub fn listed_paths(&self) -> Result<Vec<PathBuf>> {
        let out = crate::output(Command::new("dpkg").args(["-L", PACKAGE]))?;
        Ok(out
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with('/') && *l != "/.")
            .map(PathBuf::from)
            .collect())
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        let out = Command::new("dpkg").args(["--purge", PACKAGE]).output();
        if !out.as_ref().is_ok_and(|o| o.status.success()) {
            eprintln!("*** could not purge {PACKAGE}: {out:?}; run `dpkg --purge {PACKAGE}` ***");
        }
    }
}

/// One row of the file table in `docs/debian-package.md`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentedFile {
    /// Installed path, absolute.
    pub path: PathBuf,
    /// Permission bits.
    pub mode: u32,
    /// The file in the repository it is a copy of, if it is one.
    pub source: Option<PathBuf>,
}

/// The file table of `docs/debian-package.md`: rows of the form
/// ``| `/installed/path` | 0644 | `repo/source` or text | what |``.
pub fn documented_files(doc: &Path) -> Result<Vec<DocumentedFile>> {
    let text = fs::read_to_string(doc).with_context(|| format!("reading {}", doc.display()))?;
    let mut files = Vec::new();
    for line in text.lines().filter(|l| l.starts_with("| `/")) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let [path, mode, source, ..] = cells[..] else {
            bail!("{}: malformed table row {line:?}", doc.display());
        };
        let mode = u32::from_str_radix(mode, 8)
            .with_context(|| format!("{}: mode {mode:?} in {line:?}", doc.display()))?;
        let backticked = |s: &str| {
            s.strip_prefix('`')
                .and_then(|s| s.strip_suffix('`'))
                .map(PathBuf::from)
        };
        files.push(DocumentedFile {
            path: backticked(path).ok_or_else(|| anyhow!("path not in backticks: {line:?}"))?,
            mode,
            source: backticked(source),
        });
    }
    if files.is_empty() {
        bail!("{}: no file table found", doc.display());
    }
    Ok(files)
}

/// What one path looks like, for [`HostState`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Dir(u32),
    File { mode: u32, size: u64, mtime: i64 },
    Symlink(PathBuf),
    Other,
}

/// The parts of the host a package could use to change the next boot:
/// unit enablement (`/etc/systemd`, `.wants`/`.requires` links under
/// `/usr/lib/systemd/system`), `/boot`, the initramfs generators'
/// configuration, `/etc/cvm-init`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostState(pub BTreeMap<PathBuf, Entry>);

/// Trees whose every entry [`HostState::capture`] records.
pub const WATCHED_TREES: &[&str] = &[
    "/boot",
    "/etc/systemd",
    "/etc/cvm-init",
    "/etc/initramfs-tools",
    "/etc/dracut.conf.d",
    "/etc/dracut.conf",
    "/usr/lib/systemd/system",
    "/var/lib/initramfs-tools",
];

impl HostState {
    pub fn capture() -> Result<HostState> {
        let mut map = BTreeMap::new();
        for tree in WATCHED_TREES {
            record(Path::new(tree), &mut map)?;
        }
        Ok(HostState(map))
    }

    /// Differences from `before`, as readable lines, ignoring `allowed`
    /// paths that appeared (the package's own files).
    pub fn changes_since(&self, before: &HostState, allowed: &[PathBuf]) -> Vec<String> {
        let mut out = Vec::new();
        for (p, e) in &self.0 {
            match before.0.get(p) {
                None if allowed.contains(p) => {}
                None => out.push(format!("added {} ({e:?})", p.display())),
                Some(old) if old != e => {
                    out.push(format!("changed {} ({old:?} -> {e:?})", p.display()))
                }
                Some(_) => {}
            }
        }
        for p in before.0.keys().filter(|p| !self.0.contains_key(*p)) {
            out.push(format!("removed {}", p.display()));
        }
        out
    }
}

fn record(path: &Path, map: &mut BTreeMap<PathBuf, Entry>) -> Result<()> {
    let Ok(meta) = path.symlink_metadata() else {
        return Ok(());
    };
    let ft = meta.file_type();
    let entry = if ft.is_symlink() {
        Entry::Symlink(fs::read_link(path)?)
    } else if ft.is_dir() {
        Entry::Dir(meta.permissions().mode() & 0o7777)
    } else if ft.is_file() {
        Entry::File {
            mode: meta.permissions().mode() & 0o7777,
            size: meta.len(),
            mtime: meta.mtime(),
        }
    } else {
        Entry::Other
    };
    map.insert(path.to_owned(), entry);
    if ft.is_dir() {
        for e in fs::read_dir(path)? {
            record(&e?.path(), map)?;
        }
    }
    Ok(())
}

/// `systemctl --root=/ is-enabled UNIT`: `disabled`, `enabled`, ...
/// (works without systemd running).
pub fn unit_enablement(unit: &str) -> Result<String> {
    let out = Command::new("systemctl")
        .args(["--root=/", "is-enabled", unit])
        .output()
        .context("running systemctl is-enabled")?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}
