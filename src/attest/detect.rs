//! Which TEE interfaces this machine has.
//!
//! Decision: with configfs-tsm the `provider` attribute exists only inside a
//! report entry, so the probe creates one, reads `provider` and removes it
//! (mkdir + read + rmdir). That is cheap — the kernel only asks the TEE for
//! a report when `outblob` is read — and exact, where hints such as
//! `/sys/devices/platform/sev-guest` depend on driver and kernel version.
//! The device nodes `<dev>/sev-guest` and `<dev>/tdx_guest` are checked by
//! presence only. Every path probed, and what was there, is recorded for the
//! error an operator sees when nothing fits.

use std::path::{Path, PathBuf};

use super::{Paths, Tsm};

/// `<dev>/sev-guest`: the SNP guest driver's device node.
pub const SEV_GUEST_DEV: &str = "sev-guest";
/// `<dev>/tdx_guest`: the TDX guest driver's device node (TDREPORT only).
pub const TDX_GUEST_DEV: &str = "tdx_guest";

/// One probed path and what was found there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    pub path: PathBuf,
    pub found: String,
}

/// State of configfs-tsm.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TsmState {
    /// `<tsm>/report` does not exist.
    Absent,
    /// An entry could be created; its `provider` reads this.
    Provider(String),
    /// `<tsm>/report` exists but no entry could be made or read.
    Unusable(String),
}

/// What [`detect`] found.
#[derive(Clone, Debug)]
pub struct Detection {
    pub tsm: TsmState,
    pub sev_guest: bool,
    pub tdx_guest: bool,
    pub probes: Vec<Probe>,
}

impl Detection {
    pub fn tsm_provider(&self) -> Option<&str> {
        match &self.tsm {
            TsmState::Provider(p) => Some(p),
            _ => None,
        }
    }
}

/// Probe configfs-tsm, then the SNP and TDX device nodes.
pub fn detect(paths: &Paths, tsm: &Tsm) -> Detection {
    let mut probes = Vec::new();
    let report_dir = tsm.report_dir();
    let tsm_state = if !tsm.is_present() {
        probes.push(Probe {
            path: report_dir,
            found: "absent (no configfs-tsm: kernel older than 6.7, or configfs not mounted at \
                    /sys/kernel/config)"
                .into(),
        });
        TsmState::Absent
    } else {
        match tsm.provider() {
            Ok(p) => {
                probes.push(Probe {
                    path: report_dir,
                    found: format!("configfs-tsm, provider {p:?}"),
                });
                TsmState::Provider(p)
            }
            Err(e) => {
                let why = e.to_string();
                probes.push(Probe {
                    path: report_dir,
                    found: format!("present but unusable: {why}"),
                });
                TsmState::Unusable(why)
            }
        }
    };
    let sev_guest = probe_node(&paths.dev.join(SEV_GUEST_DEV), &mut probes);
    let tdx_guest = probe_node(&paths.dev.join(TDX_GUEST_DEV), &mut probes);
    log::debug!("TEE probe: {probes:?}");
    Detection {
        tsm: tsm_state,
        sev_guest,
        tdx_guest,
        probes,
    }
}

fn probe_node(path: &Path, probes: &mut Vec<Probe>) -> bool {
    let present = path.exists();
    probes.push(Probe {
        path: path.to_path_buf(),
        found: if present { "present" } else { "absent" }.into(),
    });
    present
}
