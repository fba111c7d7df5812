//! configfs-tsm (Linux >= 6.7): the kernel's one interface for TEE reports,
//! shared by SEV-SNP (`sev_guest`) and TDX (`tdx_guest`).
//!
//! The kernel protocol, which [`Tsm::request`] follows step by step:
//!
//! 1. `mkdir <tsm>/report/<name>`: the kernel creates the entry *with* its
//!    attribute files (`inblob`, `outblob`, `auxblob`, `provider`,
//!    `generation`, ...). It fails with `ENXIO` when no TSM provider is
//!    registered (the `sev-guest` / `tdx-guest` module is not loaded).
//! 2. read `provider` (`"sev_guest\n"`, `"tdx_guest\n"`) and `generation`;
//! 3. if `privlevel_floor` is above 0 (an SVSM below us), write it to
//!    `privlevel`; write the 64-byte REPORT_DATA to `inblob` (one write, one
//!    close). The kernel increments `generation` once per attribute write;
//! 4. read `outblob` (the kernel asks the TEE for the report/quote now) and,
//!    for SNP, `auxblob` (the GHCB certificate table);
//! 5. re-read `generation`: anything but "before + our writes" means another process
//!    wrote to the same entry between our write and our read, so the blob may
//!    bind someone else's data. We retry once with a fresh entry, then fail;
//! 6. `rmdir` the entry, in `Drop`, so it is removed on error too.
//!
//! Test seam: the file operations go through the small [`TsmFs`] trait.
//! Production uses [`KernelFs`] (plain `std::fs` calls on the real paths).
//! A plain directory cannot make files appear on `mkdir` or bump
//! `generation` on a write the way configfs does, so tests implement
//! `TsmFs` with a kernel emulator that does exactly that on a temporary
//! directory (the approach of go-configfs-tsm's `faketsm`). The production
//! code has no test-only branch: it only ever sees kernel semantics.

use std::fmt::Debug;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::AttestError;

/// Provider string of the SEV-SNP guest driver.
pub const PROVIDER_SNP: &str = "sev_guest";
/// Provider string of the TDX guest driver.
pub const PROVIDER_TDX: &str = "tdx_guest";

/// The file operations the configfs-tsm protocol needs.
///
/// An implementation must behave like configfs: `create_dir` of a report
/// entry makes its attribute files appear, a write to `inblob` increments
/// `generation`, and `remove_dir` removes the entry with its attributes.
pub trait TsmFs: Send + Sync + Debug {
    fn create_dir(&self, path: &Path) -> io::Result<()>;
    fn remove_dir(&self, path: &Path) -> io::Result<()>;
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    fn write(&self, path: &Path, data: &[u8]) -> io::Result<()>;
    fn is_dir(&self, path: &Path) -> bool {
        path.is_dir()
    }
}

/// The real configfs: `std::fs` calls, nothing else.
#[derive(Clone, Copy, Debug, Default)]
pub struct KernelFs;

impl TsmFs for KernelFs {
    fn create_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir(path)
    }
    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir(path)
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }
    fn write(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        // One open, one write of the whole buffer, one close: configfs binary
        // attributes collect the writes and commit them on close.
        std::fs::write(path, data)
    }
}

/// What one configfs-tsm request returned.
#[derive(Clone, Debug)]
pub struct TsmReport {
    /// The SNP report or the TDX quote.
    pub outblob: Vec<u8>,
    /// SNP: the certificate table, when the host provides one.
    pub auxblob: Option<Vec<u8>>,
    /// The `provider` attribute, trimmed.
    pub provider: String,
    /// The report entry that produced it (already removed).
    pub entry: PathBuf,
}

/// A configfs-tsm root (`/sys/kernel/config/tsm`) and the file operations
/// used on it.
#[derive(Clone, Debug)]
pub struct Tsm {
    root: PathBuf,
    fs: Arc<dyn TsmFs>,
}

/// Entry names are unique within this process; another process using the
/// same name makes `mkdir` fail with `EEXIST` and we pick the next.
static NEXT_ENTRY: AtomicU64 = AtomicU64::new(0);
const CREATE_ATTEMPTS: usize = 16;

impl Tsm {
    pub fn new(root: impl Into<PathBuf>, fs: Arc<dyn TsmFs>) -> Self {
        Tsm {
            root: root.into(),
            fs,
        }
    }

    /// The configfs-tsm root, e.g. `/sys/kernel/config/tsm`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/report`: present when the kernel has configfs-tsm and
    /// configfs is mounted.
    pub fn report_dir(&self) -> PathBuf {
        self.root.join("report")
    }

    pub fn is_present(&self) -> bool {
        self.fs.is_dir(&self.report_dir())
    }

    /// Create an entry and read its `provider` (no report is generated:
    /// the kernel only asks the TEE when `outblob` is read).
    pub fn provider(&self) -> Result<String, AttestError> {
        let entry = Entry::create(self)?;
        entry.read_provider()
    }

    /// Ask for a report binding `report_data`; fail unless the entry's
    /// provider is `expected_provider`. `want_aux` also reads `auxblob`.
    pub fn request(
        &self,
        expected_provider: &str,
        report_data: &[u8; 64],
        want_aux: bool,
    ) -> Result<TsmReport, AttestError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.request_once(expected_provider, report_data, want_aux) {
                Err(AttestError::GenerationRace {
                    path,
                    before,
                    after,
                }) if attempt == 1 => {
                    log::warn!(
                        "configfs-tsm {}: generation went from {before} to {after} around our \
                         single write (another writer?); retrying once with a fresh entry",
                        path.display()
                    );
                }
                other => return other,
            }
        }
    }

    fn request_once(
        &self,
        expected_provider: &str,
        report_data: &[u8; 64],
        want_aux: bool,
    ) -> Result<TsmReport, AttestError> {
        let entry = Entry::create(self)?;
        let provider = entry.read_provider()?;
        if provider != expected_provider {
            return Err(AttestError::ProviderMismatch {
                path: entry.path.join("provider"),
                expected: expected_provider.to_owned(),
                found: provider,
            });
        }
        let before = entry.read_generation()?;
        let mut writes = 0u64;
        // Under an SVSM the guest kernel runs at a VMPL above 0 and the
        // kernel publishes that as `privlevel_floor`; a report must be asked
        // for at that level or above. Every attribute write bumps
        // `generation`, so it is counted.
        if let Some(floor) = entry.read_privlevel_floor()? {
            if floor > 0 {
                log::info!(
                    "configfs-tsm: privlevel_floor is {floor} (e.g. running under an SVSM); \
                     requesting the report at privilege level {floor}"
                );
                entry.write("privlevel", format!("{floor}\n").as_bytes())?;
                writes += 1;
            }
        }
        entry.write("inblob", report_data)?;
        writes += 1;
        let outblob = entry.read("outblob")?;
        if outblob.is_empty() {
            return Err(AttestError::EmptyOutblob {
                path: entry.path.join("outblob"),
            });
        }
        let auxblob = if want_aux {
            entry.read_optional("auxblob")?
        } else {
            None
        };
        let after = entry.read_generation()?;
        if after != before.wrapping_add(writes) {
            return Err(AttestError::GenerationRace {
                path: entry.path.clone(),
                before,
                after,
            });
        }
        Ok(TsmReport {
            outblob,
            auxblob,
            provider,
            entry: entry.path.clone(),
        })
    }
}

/// One report entry; removed when dropped.
struct Entry<'a> {
    fs: &'a dyn TsmFs,
    path: PathBuf,
}

impl<'a> Entry<'a> {
    fn create(tsm: &'a Tsm) -> Result<Self, AttestError> {
        let dir = tsm.report_dir();
        let mut last_err = None;
        for _ in 0..CREATE_ATTEMPTS {
            let n = NEXT_ENTRY.fetch_add(1, Ordering::Relaxed);
            let path = dir.join(format!("cvm-init-{}-{n}", std::process::id()));
            match tsm.fs.create_dir(&path) {
                Ok(()) => {
                    return Ok(Entry {
                        fs: tsm.fs.as_ref(),
                        path,
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last_err = Some(e),
                Err(source) => return Err(AttestError::TsmCreate { path, source }),
            }
        }
        Err(AttestError::TsmCreate {
            path: dir,
            source: last_err.unwrap_or_else(|| io::Error::other("no entry name was free")),
        })
    }

    fn read(&self, attr: &str) -> Result<Vec<u8>, AttestError> {
        let path = self.path.join(attr);
        self.fs.read(&path).map_err(|source| AttestError::Tsm {
            op: "read",
            path,
            source,
        })
    }

    /// `auxblob` is only visible when the provider supports it, and is
    /// empty when the host gave no certificates.
    fn read_optional(&self, attr: &str) -> Result<Option<Vec<u8>>, AttestError> {
        let path = self.path.join(attr);
        match self.fs.read(&path) {
            Ok(b) if b.is_empty() => Ok(None),
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(AttestError::Tsm {
                op: "read",
                path,
                source,
            }),
        }
    }

    fn write(&self, attr: &str, data: &[u8]) -> Result<(), AttestError> {
        let path = self.path.join(attr);
        self.fs
            .write(&path, data)
            .map_err(|source| AttestError::Tsm {
                op: "write",
                path,
                source,
            })
    }

    fn read_provider(&self) -> Result<String, AttestError> {
        let raw = self.read("provider")?;
        Ok(String::from_utf8_lossy(&raw).trim().to_owned())
    }

    fn parse_number(&self, attr: &str, raw: &[u8]) -> Result<u64, AttestError> {
        let text = String::from_utf8_lossy(raw);
        text.trim().parse().map_err(|_| AttestError::BadNumber {
            path: self.path.join(attr),
            content: text.into_owned(),
        })
    }

    fn read_generation(&self) -> Result<u64, AttestError> {
        let raw = self.read("generation")?;
        self.parse_number("generation", &raw)
    }

    /// `privlevel_floor` exists only where the provider has privilege
    /// levels (SNP VMPLs); absent means 0.
    fn read_privlevel_floor(&self) -> Result<Option<u64>, AttestError> {
        match self.read_optional("privlevel_floor")? {
            Some(raw) => self.parse_number("privlevel_floor", &raw).map(Some),
            None => Ok(None),
        }
    }
}

impl Drop for Entry<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.fs.remove_dir(&self.path) {
            log::warn!(
                "configfs-tsm: cannot remove report entry {}: {e}",
                self.path.display()
            );
        }
    }
}
