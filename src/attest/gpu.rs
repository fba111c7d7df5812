//! NVIDIA confidential-computing GPUs: evidence for the broker's
//! `additional_evidence` (`{"nvidia": ...}`, docs/gpu-evidence.md and
//! docs/gpu-attestation.md).
//!
//! [`GpuCollector::open`] loads NVML (the NVIDIA driver's
//! `libnvidia-ml.so.1`, [`NVML_LIBRARY`]) and checks, before the broker is
//! contacted, that the GPUs the policy asks for are there and in
//! production confidential-computing mode. [`GpuCollector::collect`] then
//! fetches one report per GPU over the session's GPU nonce, decodes it
//! with [`crate::evidence::gpu`], refuses one over another nonce, and
//! builds the evidence JSON. [`GpuCollector::set_ready`] lets the GPUs
//! accept work, called once the broker accepted the attestation.
//!
//! NVML sits behind the small [`Gpus`] trait ([`nvml`] is its FFI
//! implementation), so everything here runs against a stand-in in tests.

mod nvml;

use std::fmt;
use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use crate::config::GpuPolicy;
use crate::evidence::gpu as spdm;
use crate::evidence::EvidenceError;

/// The NVML library, found by the dynamic loader's usual search. Fixed in
/// production: no environment variable or command-line setting changes it.
pub const NVML_LIBRARY: &str = "libnvidia-ml.so.1";

/// Length of the nonce an SPDM GET_MEASUREMENTS request carries.
pub const REPORT_NONCE_LEN: usize = 32;

/// The `arch` Trustee's verifier expects for an NVML architecture code
/// (`nvmlDeviceArchitecture_t`: 9 Hopper, 10 Blackwell); older GPUs have
/// no confidential computing.
pub fn arch_name(code: u32) -> Option<&'static str> {
    match code {
        9 => Some("HOPPER"),
        10 => Some("BLACKWELL"),
        _ => None,
    }
}

/// `nvmlDeviceArchitecture_t` of a Hopper GPU.
pub const ARCH_HOPPER: u32 = 9;

/// One GPU as NVML numbers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GpuId {
    pub index: u32,
    pub uuid: String,
    /// `nvmlDeviceGetArchitecture` ([`arch_name`]).
    pub arch: u32,
}

impl fmt::Display for GpuId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GPU {} ({})", self.index, self.uuid)
    }
}

/// `nvmlConfComputeSystemState_t`: system-wide, for all GPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CcState {
    /// 0 unavailable, 1 SIM, 2 PROD.
    pub environment: u32,
    /// 0 disabled, 1 enabled.
    pub cc_feature: u32,
    /// 0 off, 1 on.
    pub dev_tools_mode: u32,
}

const ENV_PROD: u32 = 2;

/// What attestation needs from NVML (or a stand-in).
pub trait Gpus {
    /// For logs, e.g. `NVML (libnvidia-ml.so.1)`.
    fn describe(&self) -> String;
    /// Every GPU, in NVML's order.
    fn list(&self) -> Result<Vec<GpuId>, GpuError>;
    /// The system-wide confidential-computing state.
    fn cc_state(&self) -> Result<CcState, GpuError>;
    /// Whether the GPUs accept work (the CC "ready" state).
    fn ready(&self) -> Result<bool, GpuError>;
    /// Lets the GPUs accept work.
    fn set_ready(&self) -> Result<(), GpuError>;
    /// The raw SPDM report (request ‖ signed response) over `nonce`.
    fn report(&self, gpu: &GpuId, nonce: &[u8; REPORT_NONCE_LEN]) -> Result<Vec<u8>, GpuError>;
    /// The attestation certificate chain, PEM, leaf first.
    fn cert_chain(&self, gpu: &GpuId) -> Result<Vec<u8>, GpuError>;
}

/// Why GPU evidence could not be produced; each names the GPU and what to do.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error(
        "cannot load the NVIDIA NVML library {library}: {reason}. Install the NVIDIA driver's \
         user-space library (libnvidia-ml.so.1) in the image, or set attester.gpus = \
         \"if-present\" (or \"none\") if this VM may run without a GPU"
    )]
    LibraryMissing { library: String, reason: String },

    #[error(
        "the NVML library {library} has no {symbol}: the NVIDIA driver is too old for \
         confidential-computing attestation (it needs R535 or later); update the driver in the image"
    )]
    Symbol {
        library: String,
        symbol: &'static str,
    },

    #[error("NVML {call} failed{}: {message} (NVML error {code}){}",
        .gpu.as_deref().map(|g| format!(" for {g}")).unwrap_or_default(),
        nvml_hint(*.code))]
    Nvml {
        call: &'static str,
        code: i32,
        message: String,
        gpu: Option<String>,
    },

    #[error(
        "attester.gpus = \"required\" but NVML lists no GPU: pass the GPU through to this VM \
         and check the nvidia kernel module loaded (dmesg | grep -i nvrm)"
    )]
    NoGpu,

    #[error(
        "{gpu}: NVML architecture code {code} is not Hopper (9) or Blackwell (10): only those GPUs \
         have confidential computing. Remove the GPU from this VM, or set attester.gpus = \"none\""
    )]
    Architecture { gpu: String, code: u32 },

    #[error(
        "{gpus}: confidential computing is not enabled (NVML ccFeature = {cc_feature}): the GPU \
         would run without encrypted transfers. Enable CC mode on the host before passing the GPU \
         through (`nvidia-smi conf-compute -scc on`, or NVIDIA gpu-admin-tools \
         `--set-cc-mode=on --reset-after-cc-mode-switch`)"
    )]
    CcOff { gpus: String, cc_feature: u32 },

    #[error(
        "{gpus}: confidential computing runs in devtools mode: the host can debug the GPU, so its \
         memory is not confidential and its evidence is not for production. Set the CC mode to \
         `on`, not `devtools`, on the host (gpu-admin-tools `--set-cc-mode=on`)"
    )]
    DevTools { gpus: String },

    #[error(
        "{gpus}: the confidential-computing environment is {environment} (NVML environment = \
         {code}), not PROD: this is not a production CC GPU; use a GPU and driver in production \
         CC mode"
    )]
    NotProduction {
        gpus: String,
        environment: &'static str,
        code: u32,
    },

    #[error("{gpu}: NVML returned a {what} of {size} bytes, larger than its {max}-byte buffer")]
    Oversized {
        gpu: String,
        what: &'static str,
        size: usize,
        max: usize,
    },

    #[error("{gpu}: {source}")]
    Report {
        gpu: String,
        #[source]
        source: EvidenceError,
    },

    #[error(
        "{gpu}: the attestation report is over nonce {found}, but we asked for {expected}: it is \
         not this session's (stale, replayed or substituted); refusing to send it"
    )]
    NonceMismatch {
        gpu: String,
        expected: String,
        found: String,
    },

    #[error("{gpu}: the attestation certificate chain is not PEM text: {reason}")]
    Chain { gpu: String, reason: String },
}

fn nvml_hint(code: i32) -> &'static str {
    match code {
        nvml::NVML_ERROR_DRIVER_NOT_LOADED => {
            "; the nvidia kernel module is not loaded: run this after the driver (in the booted \
             system, not an initrd without it)"
        }
        4 => "; NVML needs root for confidential-computing calls",
        3 => "; this GPU or driver does not support confidential computing",
        _ => "",
    }
}

fn names(gpus: &[GpuId]) -> String {
    gpus.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Is this error "no GPU here" rather than "a GPU that does not work"?
fn means_absent(e: &GpuError) -> bool {
    matches!(
        e,
        GpuError::LibraryMissing { .. }
            | GpuError::Nvml {
                call: "nvmlInit_v2",
                code: nvml::NVML_ERROR_DRIVER_NOT_LOADED,
                ..
            }
    )
}

/// GPUs checked ready for attestation; collects their evidence.
pub struct GpuCollector {
    gpus: Box<dyn Gpus>,
    devices: Vec<GpuId>,
}

impl fmt::Debug for GpuCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GpuCollector")
            .field("gpus", &self.gpus.describe())
            .field("devices", &self.devices)
            .finish()
    }
}

impl GpuCollector {
    /// The production collector: NVML from [`NVML_LIBRARY`].
    pub fn from_policy(policy: GpuPolicy) -> Result<Option<Self>, GpuError> {
        Self::open(policy, Path::new(NVML_LIBRARY))
    }

    /// As [`Self::from_policy`], with NVML loaded from `library` (tests
    /// load a stand-in by path). `Ok(None)`: no GPU evidence (policy
    /// `none`, or `if-present` and no GPU). NVML is not loaded for `none`.
    pub fn open(policy: GpuPolicy, library: &Path) -> Result<Option<Self>, GpuError> {
        if policy == GpuPolicy::None {
            return Ok(None);
        }
        match nvml::Nvml::open(library) {
            Ok(n) => Self::with_gpus(policy, Box::new(n)),
            Err(e) if policy == GpuPolicy::IfPresent && means_absent(&e) => {
                log::info!("GPUs: none attested (attester.gpus = \"if-present\"): {e}");
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Checks `gpus` against `policy`: GPUs present (for `required`), and
    /// in production confidential-computing mode.
    pub fn with_gpus(policy: GpuPolicy, gpus: Box<dyn Gpus>) -> Result<Option<Self>, GpuError> {
        if policy == GpuPolicy::None {
            return Ok(None);
        }
        let devices = gpus.list()?;
        if devices.is_empty() {
            if policy == GpuPolicy::Required {
                return Err(GpuError::NoGpu);
            }
            log::info!(
                "GPUs: none attested (attester.gpus = \"if-present\"): {} lists no GPU",
                gpus.describe()
            );
            return Ok(None);
        }
        if let Some(old) = devices.iter().find(|g| arch_name(g.arch).is_none()) {
            return Err(GpuError::Architecture {
                gpu: old.to_string(),
                code: old.arch,
            });
        }
        let all = names(&devices);
        let cc = gpus.cc_state()?;
        if cc.cc_feature != 1 {
            return Err(GpuError::CcOff {
                gpus: all,
                cc_feature: cc.cc_feature,
            });
        }
        if cc.dev_tools_mode != 0 {
            return Err(GpuError::DevTools { gpus: all });
        }
        if cc.environment != ENV_PROD {
            return Err(GpuError::NotProduction {
                gpus: all,
                environment: match cc.environment {
                    0 => "unavailable",
                    1 => "SIM (simulated)",
                    _ => "unknown",
                },
                code: cc.environment,
            });
        }
        match gpus.ready() {
            Ok(true) => log::warn!(
                "GPUs: {all} already accept work (CC ready state set before this attestation, \
                 by the operator or an earlier run)"
            ),
            Ok(false) => {}
            Err(e) => log::warn!("GPUs: cannot read the CC ready state: {e}"),
        }
        log::info!(
            "GPUs: {all} in production confidential-computing mode ({}); attested with the CPU",
            gpus.describe()
        );
        Ok(Some(Self { gpus, devices }))
    }

    /// The GPUs that will be attested.
    pub fn devices(&self) -> &[GpuId] {
        &self.devices
    }

    /// Evidence of every GPU over `nonce` (the first 32 bytes of the
    /// session's device runtime-data digest):
    /// `{"device_evidence_list":[{"arch","uuid","evidence","certificate"}]}`.
    ///
    /// Each report is decoded and must carry `nonce`. Its signature and
    /// certificate chain are also checked locally, against NVIDIA's root
    /// built into this agent: a failure there is logged as a warning and
    /// the evidence is sent anyway, since the broker's verifier is the one
    /// that decides (and says why in its log); the local check only puts
    /// the reason on this console too.
    pub fn collect(&self, nonce: &[u8; REPORT_NONCE_LEN]) -> Result<serde_json::Value, GpuError> {
        let mut list = Vec::with_capacity(self.devices.len());
        for gpu in &self.devices {
            let report = self.gpus.report(gpu, nonce)?;
            let decoded = spdm::parse_report(&report).map_err(|source| GpuError::Report {
                gpu: gpu.to_string(),
                source,
            })?;
            if decoded.requester_nonce != *nonce {
                return Err(GpuError::NonceMismatch {
                    gpu: gpu.to_string(),
                    expected: hex::encode(nonce),
                    found: hex::encode(decoded.requester_nonce),
                });
            }
            let chain = self.gpus.cert_chain(gpu)?;
            let text = std::str::from_utf8(&chain).map_err(|e| GpuError::Chain {
                gpu: gpu.to_string(),
                reason: e.to_string(),
            })?;
            let certs = spdm::pem_chain(text).map_err(|e| GpuError::Chain {
                gpu: gpu.to_string(),
                reason: e.to_string(),
            })?;
            let local = spdm::verify_chain(&certs).and_then(|leaf| decoded.verify_signature(&leaf));
            let verdict = match &local {
                Ok(()) => "signature and chain to NVIDIA's root verified locally".to_owned(),
                Err(e) => format!("NOT verified locally ({e})"),
            };
            let line = format!(
                "{gpu}: report over nonce {}, driver {}, VBIOS {}, {} measurements, {} certificates; {verdict}",
                hex::encode(nonce),
                decoded.driver_version().unwrap_or_default(),
                decoded.vbios_version().unwrap_or_default(),
                decoded.blocks.len(),
                certs.len(),
            );
            if local.is_ok() {
                log::info!("{line}");
            } else {
                log::warn!("{line}; sent anyway, the broker's verifier decides");
            }
            list.push(serde_json::json!({
                "arch": arch_name(gpu.arch).unwrap_or("HOPPER"),
                "uuid": gpu.uuid,
                "evidence": STANDARD.encode(&report),
                "certificate": STANDARD.encode(&chain),
            }));
        }
        Ok(serde_json::json!({ "device_evidence_list": list }))
    }

    /// Lets the GPUs accept work (NVML's CC ready state): call only once
    /// the broker accepted evidence from [`Self::collect`].
    pub fn set_ready(&self) -> Result<(), GpuError> {
        if self.gpus.ready().unwrap_or(false) {
            return Ok(());
        }
        self.gpus.set_ready()?;
        log::info!(
            "GPUs: {} attested and accepted by the broker; now accepting work (CC ready state set)",
            names(&self.devices)
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests;
