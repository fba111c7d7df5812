//! Attesters: hardware evidence that binds the runtime-data digest, one
//! backend per TEE behind the [`Attester`] trait.
//!
//! - [`snp::SnpAttester`]: SEV-SNP via configfs-tsm, or `/dev/sev-guest`;
//! - [`tdx::TdxAttester`]: TDX via configfs-tsm (a quote needs it);
//! - [`sim::SimAttester`]: the simulated `sample` TEE, development only,
//!   never chosen by `auto` and refused without an explicit opt-in
//!   (invariant 6).
//!
//! NVIDIA GPUs are not a TEE of their own but evidence sent next to the
//! CPU's: [`gpu::GpuCollector`].
//!
//! [`select`] turns the configured [`AttesterKind`] into an attester; see
//! [`detect`] for how `auto` probes. Every hardware path comes from
//! [`Paths`], so tests point them at a temporary directory.
//!
//! REPORT_DATA for SNP and TDX is the 48-byte digest followed by 16 zero
//! bytes (KBS-PROTOCOL.md). The composition lives in [`report_data`] here
//! rather than being imported from `broker`, since `attest` and `broker` do
//! not import each other (DESIGN.md); a unit test checks both agree.

pub mod azure;
pub mod detect;
pub mod gpu;
pub mod imds;
pub mod sim;
pub mod snp;
pub mod tdx;
pub mod tpm;
pub mod tsm;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use detect::Probe;
pub use tsm::{KernelFs, Tsm, TsmFs};

/// Length of the runtime-data digest bound into the evidence (SHA-384).
pub const DIGEST_LEN: usize = 48;

/// A source of evidence for one TEE.
pub trait Attester: Send + Sync {
    /// The TEE string sent in /auth (`kbs_types::Tee::Snp` / `Tdx` / `Sample`).
    fn tee(&self) -> kbs_types::Tee;
    /// Evidence JSON for `tee-evidence.primary_evidence`, binding the 48-byte
    /// runtime-data digest.
    fn evidence(&self, digest: &[u8; DIGEST_LEN]) -> Result<serde_json::Value, AttestError>;
    /// Raw hardware report for `cvm-init evidence collect` (diagnosis):
    /// report/quote bytes and the aux blob.
    fn raw(&self, report_data: &[u8; 64]) -> Result<RawEvidence, AttestError>;
    /// One-line description for logs.
    fn describe(&self) -> String;
    /// The launch-time register the host sets and the hardware reports
    /// (SNP HOST_DATA, TDX MRCONFIGID), read from a fresh report: what a
    /// host-supplied init-data document must hash to.
    fn host_data(&self) -> Result<HostData, AttestError>;
}

/// A launch-time register the host chose and the hardware reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostData {
    /// `SNP HOST_DATA`, `TDX MRCONFIGID` or `simulated host data`.
    pub register: &'static str,
    pub value: Vec<u8>,
    /// A hardware register's fixed width: a digest is zero-padded or
    /// truncated to it. `None` (simulated): compared as the whole digest.
    pub width: Option<usize>,
}

/// REPORT_DATA of the extra report read only for [`Attester::host_data`]:
/// it binds nothing and is never sent anywhere.
pub(crate) const HOST_DATA_PROBE: [u8; 64] = [0; 64];

/// A report as the hardware gave it, for diagnosis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawEvidence {
    /// SNP report (1184 bytes) or TDX quote.
    pub report: Vec<u8>,
    /// SNP: the GHCB certificate table, as the kernel gave it (configfs
    /// `auxblob`) or re-encoded from the extended report.
    pub aux: Option<Vec<u8>>,
    /// Where it came from, e.g. `configfs-tsm sev_guest`.
    pub provider: String,
}

/// Where the hardware interfaces live. `Default` gives the real paths.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Paths {
    /// configfs-tsm root, `/sys/kernel/config/tsm`.
    pub tsm: PathBuf,
    /// Device directory, `/dev` (`sev-guest`, `tdx_guest`).
    pub dev: PathBuf,
    /// The TDX CC event log, `/sys/firmware/acpi/tables/data/CCEL`.
    pub ccel: PathBuf,
    /// The TPM resource manager, `/dev/tpmrm0` (Azure's vTPM).
    pub tpm: PathBuf,
    /// The Azure IMDS base URL (VCEK, TD quotes): `attester.azure_imds`.
    pub imds: String,
}

/// The real `/dev`; the `sev` crate opens `/dev/sev-guest` by this fixed path.
pub const REAL_DEV: &str = "/dev";

impl Default for Paths {
    fn default() -> Self {
        Paths {
            tsm: PathBuf::from("/sys/kernel/config/tsm"),
            dev: PathBuf::from(REAL_DEV),
            ccel: PathBuf::from("/sys/firmware/acpi/tables/data/CCEL"),
            tpm: PathBuf::from("/dev/tpmrm0"),
            imds: azure::DEFAULT_IMDS.to_owned(),
        }
    }
}

/// Which attester the configuration asks for.
pub use crate::config::AttesterKind;

/// Why no evidence could be produced. Each message names the path and, where
/// there is one, what to do.
#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    #[error(
        "the simulated TEE is not allowed: pass --allow-simulated-tee or set \
         `attester.allow_simulated = true` to use it for development. It is NEVER secure: \
         its evidence is made up; Trustee rates it Contraindicated, so a policy that requires an \
         affirming result refuses it (an allow-all policy does not)"
    )]
    SimulatedNotAllowed,

    #[error("no TEE found (attester = auto; the simulated TEE is never chosen automatically). Probed:\n{}", Probes(.probes))]
    NoTee { probes: Vec<Probe> },

    #[error("attester = {kind} but no {kind} interface was found. Probed:\n{}", Probes(.probes))]
    NotFound {
        kind: AttesterKind,
        probes: Vec<Probe>,
    },

    #[error(
        "configfs-tsm: cannot create report entry {}: {source} (ENXIO \"No such device or address\" \
         means no TSM provider is registered: load the sev-guest or tdx-guest module)",
        .path.display()
    )]
    TsmCreate {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("configfs-tsm: cannot {op} {}: {source}", .path.display())]
    Tsm {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error(
        "configfs-tsm: {} reads {found:?}, expected {expected:?}: this machine's TEE is not the one \
         the attester was chosen for (check `attester` in the config, or use auto)",
        .path.display()
    )]
    ProviderMismatch {
        path: PathBuf,
        expected: String,
        found: String,
    },

    #[error(
        "configfs-tsm: {}: generation went from {before} to {after} around our writes (privlevel, inblob) \
         (twice): another process is writing to the same report entry, so the report could bind \
         its data. Stop the other writer and retry",
        .path.display()
    )]
    GenerationRace {
        path: PathBuf,
        before: u64,
        after: u64,
    },

    #[error("configfs-tsm: {}: cannot parse {content:?} as a number", .path.display())]
    BadNumber { path: PathBuf, content: String },

    #[error("configfs-tsm: {} is empty: the TEE returned no report", .path.display())]
    EmptyOutblob { path: PathBuf },

    #[error(
        "{tee} report from {from} binds REPORT_DATA {found}, but we asked for {expected}: the report \
         is not ours (stale, replayed or substituted by the host); refusing to send it"
    )]
    ReportDataMismatch {
        tee: &'static str,
        from: String,
        expected: String,
        found: String,
    },

    #[error("SNP report from {from} is malformed ({len} bytes; a report is 1184): {reason}")]
    SnpReport {
        from: String,
        len: usize,
        reason: String,
    },

    #[error("SNP certificate table from {from} is malformed: {reason}")]
    CertTable { from: String, reason: String },

    #[error(
        "cannot open {}: {source} (is this an SEV-SNP guest with the sev-guest module loaded, and are we root?)",
        .path.display()
    )]
    SnpDeviceOpen {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("SNP_GET_REPORT on {}: {reason}", .path.display())]
    SnpFirmware { path: PathBuf, reason: String },

    #[error(
        "{}/sev-guest exists, but the /dev/sev-guest fallback only works with the real /dev: the sev \
         crate opens /dev/sev-guest by a fixed path. Use configfs-tsm ({}), or leave the device \
         directory at /dev",
        .dev.display(), .tsm.display()
    )]
    SnpDevNotReal { dev: PathBuf, tsm: PathBuf },

    #[error("TDX quote from {from} is malformed: {reason}")]
    TdxQuote { from: String, reason: String },

    #[error(
        "{} exists but configfs-tsm ({}) does not: a TDX quote needs configfs-tsm (Linux >= 6.7, \
         CONFIG_TSM_REPORTS, configfs mounted at /sys/kernel/config); /dev/tdx_guest alone only \
         gives a TDREPORT, which a remote verifier cannot check. Boot a newer kernel or mount configfs",
        .dev_node.display(), .tsm.display()
    )]
    TdxNeedsConfigfsTsm { dev_node: PathBuf, tsm: PathBuf },

    #[error("cannot serialise the evidence to JSON: {0}")]
    Json(#[from] serde_json::Error),

    #[error("{0}")]
    Tpm(Box<tpm::TpmError>),

    #[error("Azure vTPM: the HCL report in {from} is not usable: {reason}")]
    AzureHcl { from: String, reason: String },

    #[error(
        "Azure vTPM: the attestation key at {tpm} handle 0x81000003 is not the HCLAkPub key the \
         HCL report binds: a quote by it would not verify. Something replaced the paravisor's AK; \
         reboot the VM (the paravisor provisions it at boot)"
    )]
    AzureAkMismatch { tpm: String },

    #[error("Azure vTPM: the TPM quote is not usable: {reason}")]
    AzureQuote { reason: String },

    #[error(
        "Azure IMDS {url}: {reason}. The instance metadata service (169.254.169.254) serves the \
         VCEK (SNP) and the TD quote (TDX); check that the VM's network is up before cvm-init \
         runs and that nothing blocks link-local HTTP. IMDS is host-served: it is only a cache of \
         collateral, the broker checks the VCEK's chain to AMD and the quote's to Intel"
    )]
    AzureImds { url: String, reason: String },

    #[error(
        "init-data cannot be checked on an Azure vTPM CVM: the hardware report's launch register \
         (HOST_DATA / MRCONFIGID) belongs to the paravisor, not to a document the host passed. \
         Remove [init_data] from the config for Azure images"
    )]
    AzureNoHostData,
}

/// Formats probe results one per line for error messages.
struct Probes<'a>(&'a [Probe]);

impl fmt::Display for Probes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "  {}: {}", p.path.display(), p.found)?;
        }
        Ok(())
    }
}

/// REPORT_DATA for SNP and TDX: the digest, then 16 zero bytes.
pub fn report_data(digest: &[u8; DIGEST_LEN]) -> [u8; 64] {
    let mut out = [0u8; 64];
    out[..DIGEST_LEN].copy_from_slice(digest);
    out
}

/// Fail unless the report binds exactly what we asked for.
pub(crate) fn check_report_data(
    tee: &'static str,
    from: &str,
    expected: &[u8; 64],
    found: &[u8],
) -> Result<(), AttestError> {
    if found == expected.as_slice() {
        Ok(())
    } else {
        Err(AttestError::ReportDataMismatch {
            tee,
            from: from.to_owned(),
            expected: hex::encode(expected),
            found: hex::encode(found),
        })
    }
}

/// Choose the attester the config asks for on the real configfs; the
/// simulated TEE carries `attester.simulated_host_data`.
pub fn from_config(
    config: &crate::config::AttesterConfig,
    allow_simulated_flag: bool,
    paths: &Paths,
) -> Result<Box<dyn Attester>, AttestError> {
    let allow = allow_simulated_flag || config.allow_simulated;
    if config.kind == AttesterKind::Simulated && allow {
        let host_data = config
            .simulated_host_data
            .as_deref()
            .and_then(|h| hex::decode(h).ok())
            .unwrap_or_default();
        return Ok(Box::new(simulated(sim::SimAttester::with_host_data(
            host_data,
        ))));
    }
    let paths = Paths {
        imds: config.azure_imds.clone(),
        ..paths.clone()
    };
    select(config.kind, allow, &paths)
}

fn simulated(sim: sim::SimAttester) -> sim::SimAttester {
    log::warn!(
        "!!! SIMULATED TEE selected (--allow-simulated-tee): {} — this boot is NOT attested \
         and its secrets are NOT protected; Trustee rates it Contraindicated, and only a policy that \
         requires an affirming result refuses it !!!",
        sim.describe()
    );
    sim
}

/// Choose the attester for `kind` on the real configfs.
pub fn select(
    kind: AttesterKind,
    allow_simulated: bool,
    paths: &Paths,
) -> Result<Box<dyn Attester>, AttestError> {
    select_with(kind, allow_simulated, paths, Arc::new(KernelFs))
}

/// How long an Azure kind waits for the TPM device node.
const TPM_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// [`select`] with the configfs-tsm file operations supplied (tests pass a
/// kernel emulator; see [`tsm`]).
pub fn select_with(
    kind: AttesterKind,
    allow_simulated: bool,
    paths: &Paths,
    fs: Arc<dyn TsmFs>,
) -> Result<Box<dyn Attester>, AttestError> {
    // Asked for Azure by name: give the TPM driver a moment to create the
    // device node (it probes asynchronously on some kernels).
    if kind.azure().is_some() {
        let until = std::time::Instant::now() + TPM_WAIT;
        while !paths.tpm.exists() && std::time::Instant::now() < until {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
    let tpm = paths
        .tpm
        .exists()
        .then(|| Box::new(tpm::DeviceTransport::new(&paths.tpm)) as Box<dyn tpm::TpmTransport>);
    select_all(kind, allow_simulated, paths, fs, tpm)
}

/// [`select_with`] with the TPM transport supplied too (`None`: no TPM).
pub fn select_all(
    kind: AttesterKind,
    allow_simulated: bool,
    paths: &Paths,
    fs: Arc<dyn TsmFs>,
    tpm: Option<Box<dyn tpm::TpmTransport>>,
) -> Result<Box<dyn Attester>, AttestError> {
    if kind == AttesterKind::Simulated {
        if !allow_simulated {
            return Err(AttestError::SimulatedNotAllowed);
        }
        return Ok(Box::new(simulated(sim::SimAttester::new())));
    }
    // Azure first: its guests may also show configfs-tsm or /dev/sev-guest,
    // which do not give evidence a verifier can use there.
    let mut azure_probe = Probe {
        path: paths.tpm.clone(),
        found: "absent (no TPM, so not an Azure vTPM CVM)".into(),
    };
    if matches!(
        kind,
        AttesterKind::Auto | AttesterKind::AzSnpVtpm | AttesterKind::AzTdxVtpm
    ) {
        if let Some(t) = tpm {
            let t = tpm::Tpm::new(t);
            match azure::probe(&t) {
                Ok(Some(platform))
                    if kind == AttesterKind::Auto || kind.azure() == Some(platform) =>
                {
                    let a = azure::AzureAttester::new(t, platform, azure::Imds::new(&paths.imds));
                    log::info!("attester ({kind}): {}", a.describe());
                    return Ok(Box::new(a));
                }
                Ok(Some(platform)) => {
                    azure_probe.found = format!(
                        "Azure vTPM with an HCL report for {}, not {kind}",
                        platform.tee()
                    )
                }
                Ok(None) => {
                    azure_probe.found =
                        "a TPM without the paravisor's HCL report (NV index 0x01400001): not an \
                         Azure vTPM CVM"
                            .into()
                }
                // An Azure kind asked for explicitly: the TPM's own error.
                Err(e) if kind != AttesterKind::Auto => return Err(e),
                Err(e) => azure_probe.found = format!("a TPM, but the HCL probe failed: {e}"),
            }
        }
        if kind != AttesterKind::Auto {
            return Err(AttestError::NotFound {
                kind,
                probes: vec![azure_probe],
            });
        }
    }
    let tsm = Tsm::new(paths.tsm.clone(), fs);
    let mut found = detect::detect(paths, &tsm);
    found.probes.insert(0, azure_probe);
    let not_found = |expected: &str| match found.tsm_provider() {
        Some(other) => AttestError::ProviderMismatch {
            path: paths.tsm.join("report").join("<entry>").join("provider"),
            expected: expected.to_owned(),
            found: other.to_owned(),
        },
        None => AttestError::NotFound {
            kind,
            probes: found.probes.clone(),
        },
    };
    let attester: Box<dyn Attester> = match kind {
        AttesterKind::Snp => {
            Box::new(snp_from(&found, paths, tsm)?.ok_or_else(|| not_found(tsm::PROVIDER_SNP))?)
        }
        AttesterKind::Tdx => {
            Box::new(tdx_from(&found, paths, tsm)?.ok_or_else(|| not_found(tsm::PROVIDER_TDX))?)
        }
        // Simulated and the Azure kinds were handled above; auto never
        // picks the simulated TEE.
        _ => {
            if let Some(a) = snp_from(&found, paths, tsm.clone())? {
                Box::new(a)
            } else if let Some(a) = tdx_from(&found, paths, tsm)? {
                Box::new(a)
            } else {
                return Err(AttestError::NoTee {
                    probes: found.probes,
                });
            }
        }
    };
    log::info!("attester ({kind}): {}", attester.describe());
    Ok(attester)
}

/// SNP if configfs-tsm's provider is `sev_guest`, else `/dev/sev-guest`.
fn snp_from(
    found: &detect::Detection,
    paths: &Paths,
    tsm: Tsm,
) -> Result<Option<snp::SnpAttester>, AttestError> {
    if found.tsm_provider() == Some(tsm::PROVIDER_SNP) {
        return Ok(Some(snp::SnpAttester::with_tsm(tsm)));
    }
    if found.sev_guest {
        return snp::SnpAttester::with_device(&paths.dev, &paths.tsm).map(Some);
    }
    Ok(None)
}

/// TDX if configfs-tsm's provider is `tdx_guest`; an explanation if only
/// `/dev/tdx_guest` is there.
fn tdx_from(
    found: &detect::Detection,
    paths: &Paths,
    tsm: Tsm,
) -> Result<Option<tdx::TdxAttester>, AttestError> {
    if found.tsm_provider() == Some(tsm::PROVIDER_TDX) {
        return Ok(Some(tdx::TdxAttester::new(tsm, paths.ccel.clone())));
    }
    if found.tdx_guest && found.tsm_provider().is_none() {
        return Err(AttestError::TdxNeedsConfigfsTsm {
            dev_node: paths.dev.join(detect::TDX_GUEST_DEV),
            tsm: paths.tsm.clone(),
        });
    }
    Ok(None)
}

/// `Path` display helper for descriptions.
pub(crate) fn show(p: &Path) -> String {
    p.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Paths under an empty temporary directory: nothing present.
    fn empty_paths(dir: &Path) -> Paths {
        Paths {
            tsm: dir.join("sys/kernel/config/tsm"),
            dev: dir.join("dev"),
            ccel: dir.join("CCEL"),
            tpm: dir.join("dev/tpmrm0"),
            imds: "http://127.0.0.1:9".into(),
        }
    }

    #[test]
    fn report_data_matches_broker_binding() {
        let digest: [u8; DIGEST_LEN] = std::array::from_fn(|i| i as u8 + 1);
        assert_eq!(
            report_data(&digest),
            crate::broker::binding::report_data(&digest)
        );
        assert_eq!(DIGEST_LEN, crate::broker::binding::DIGEST_LEN);
        assert_eq!(report_data(&digest)[48..], [0u8; 16]);
    }

    #[test]
    fn simulated_refused_without_opt_in() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = select(AttesterKind::Simulated, false, &empty_paths(dir.path()))
            .err()
            .expect("refused");
        assert!(matches!(err, AttestError::SimulatedNotAllowed));
        let msg = err.to_string();
        assert!(msg.contains("--allow-simulated-tee"), "{msg}");
        assert!(msg.contains("attester.allow_simulated = true"), "{msg}");
        assert!(msg.contains("NEVER secure"), "{msg}");
    }

    #[test]
    fn simulated_with_opt_in() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = select(AttesterKind::Simulated, true, &empty_paths(dir.path())).expect("sim");
        assert_eq!(a.tee(), kbs_types::Tee::Sample);
        assert_eq!(a.describe(), "SIMULATED TEE (not secure)");
    }

    #[test]
    fn auto_with_nothing_lists_probes_and_never_simulates() {
        let dir = tempfile::tempdir().expect("tempdir");
        let paths = empty_paths(dir.path());
        for allow_simulated in [false, true] {
            let err = select(AttesterKind::Auto, allow_simulated, &paths)
                .err()
                .expect("no TEE");
            let AttestError::NoTee { probes } = &err else {
                panic!("wrong error: {err}");
            };
            let probed: Vec<_> = probes.iter().map(|p| p.path.clone()).collect();
            assert_eq!(
                probed,
                [
                    paths.tpm.clone(),
                    paths.tsm.join("report"),
                    paths.dev.join("sev-guest"),
                    paths.dev.join("tdx_guest")
                ]
            );
            let msg = err.to_string();
            for p in &probed {
                assert!(msg.contains(&p.display().to_string()), "{msg}");
            }
            assert!(msg.contains("absent"), "{msg}");
        }
    }

    #[test]
    fn explicit_kinds_not_found() {
        let dir = tempfile::tempdir().expect("tempdir");
        let paths = empty_paths(dir.path());
        for kind in [AttesterKind::Snp, AttesterKind::Tdx] {
            let err = select(kind, false, &paths).err().expect("not found");
            assert!(matches!(err, AttestError::NotFound { .. }), "{err}");
            assert!(err.to_string().contains(&kind.to_string()), "{err}");
        }
    }

    #[test]
    fn tdx_device_without_configfs_tsm_explains() {
        let dir = tempfile::tempdir().expect("tempdir");
        let paths = empty_paths(dir.path());
        std::fs::create_dir_all(&paths.dev).expect("dev");
        std::fs::write(paths.dev.join("tdx_guest"), b"").expect("node");
        for kind in [AttesterKind::Auto, AttesterKind::Tdx] {
            let err = select(kind, false, &paths).err().expect("needs tsm");
            assert!(
                matches!(err, AttestError::TdxNeedsConfigfsTsm { .. }),
                "{err}"
            );
            assert!(err.to_string().contains("6.7"), "{err}");
        }
    }

    #[test]
    fn sev_guest_outside_real_dev_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let paths = empty_paths(dir.path());
        std::fs::create_dir_all(&paths.dev).expect("dev");
        std::fs::write(paths.dev.join("sev-guest"), b"").expect("node");
        for kind in [AttesterKind::Auto, AttesterKind::Snp] {
            let err = select(kind, false, &paths).err().expect("not real /dev");
            assert!(matches!(err, AttestError::SnpDevNotReal { .. }), "{err}");
        }
    }

    #[test]
    fn kind_serde_and_parse() {
        for (k, s) in [
            (AttesterKind::Auto, "auto"),
            (AttesterKind::Snp, "snp"),
            (AttesterKind::Tdx, "tdx"),
            (AttesterKind::AzSnpVtpm, "az-snp-vtpm"),
            (AttesterKind::AzTdxVtpm, "az-tdx-vtpm"),
            (AttesterKind::Simulated, "simulated"),
        ] {
            assert_eq!(serde_json::to_value(k).expect("ser"), s);
            assert_eq!(s.parse::<AttesterKind>().expect("parse"), k);
            assert_eq!(k.to_string(), s);
        }
        assert!("sample".parse::<AttesterKind>().is_err());
    }

    #[test]
    fn default_paths_are_the_real_ones() {
        let p = Paths::default();
        assert_eq!(p.tsm, Path::new("/sys/kernel/config/tsm"));
        assert_eq!(p.dev, Path::new("/dev"));
        assert_eq!(p.ccel, Path::new("/sys/firmware/acpi/tables/data/CCEL"));
    }
}
