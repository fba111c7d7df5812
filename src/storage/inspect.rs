//! `cvm-init inspect-volume`: what a boot would do with a device, and why,
//! without a key and without writing the device. The operator's first tool
//! when a boot refuses a disk.

use std::path::Path;

use serde_json::Value;

use super::header::params::{DISCARD_FLAG, SUBSYSTEM};
use super::{header, open_header_copy, probe, state, Expected, StorageEnv, StorageError};
use crate::config::VolumeConfig;

/// The report: one line per finding, then the verdict.
#[derive(Debug, Clone, Default)]
pub struct Inspection {
    pub findings: Vec<String>,
    pub verdict: String,
}

impl std::fmt::Display for Inspection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for l in &self.findings {
            writeln!(f, "{l}")?;
        }
        write!(f, "verdict: {}", self.verdict)
    }
}

/// Inspects `device`; with `vol`, against that volume's config. Fails only
/// when the device cannot be read.
pub fn inspect_volume(
    device: &Path,
    vol: Option<&VolumeConfig>,
    env: &StorageEnv,
) -> Result<Inspection, StorageError> {
    let name = vol.map_or("inspect", |v| v.name.as_str());
    let probe_err = |problem: String| StorageError::Probe {
        volume: name.to_owned(),
        device: device.to_owned(),
        problem,
    };
    let mut r = Inspection::default();
    let integrity = vol.is_some_and(|v| v.integrity);
    let size = std::fs::metadata(device)
        .and_then(|_| {
            use std::io::Seek;
            std::fs::File::open(device)?.seek(std::io::SeekFrom::End(0))
        })
        .map_err(|e| probe_err(format!("cannot open it: {e}")))?;
    r.findings
        .push(format!("device: {} ({size} bytes)", device.display()));
    let signatures = probe::signatures(device).map_err(probe_err)?;
    let signature_list = if signatures.is_empty() {
        "none".to_owned()
    } else {
        signatures.join(", ")
    };
    r.findings
        .push(format!("libblkid signatures: {signature_list}"));
    let format = vol.map(|v| v.format);
    let allowed = |verdict: &str| match format {
        Some(true) => format!("{verdict}: a boot formats it (format = true)"),
        Some(false) => format!("{verdict}, but format = false: a boot refuses it"),
        None => format!("{verdict}: a boot formats it if its volume has format = true"),
    };
    if signatures.is_empty() {
        let region = probe::nonzero_region(device, integrity)
            .map_err(|e| probe_err(format!("cannot read it: {e}")))?;
        r.verdict = match region {
            None => {
                r.findings.push(
                    "zero check: the first 16 MiB, the last MiB and the sample blocks are zero"
                        .to_owned(),
                );
                allowed("blank")
            }
            Some(region) => {
                r.findings
                    .push(format!("zero check: non-zero bytes in the {region}"));
                "not blank (data without a signature): refused, never formatted".to_owned()
            }
        };
        return Ok(r);
    }
    if signatures != ["crypto_LUKS2"] {
        r.verdict = format!("not blank ({signature_list}): refused, never formatted");
        return Ok(r);
    }

    let run_dir = env.run_dir.join("inspect");
    let copy = match open_header_copy(name, device, &run_dir) {
        Ok(c) => c,
        Err(e @ StorageError::Probe { .. }) => return Err(e),
        Err(e) => {
            r.findings
                .push(format!("LUKS2 header: cannot be loaded: {e}"));
            r.verdict = "refused: the LUKS2 header is damaged or not LUKS2 as cvm-init reads it; never formatted".to_owned();
            return Ok(r);
        }
    };
    for (which, h) in [
        ("primary", &copy.headers().primary),
        ("secondary", &copy.headers().secondary),
    ] {
        r.findings.push(match h {
            Some(h) => format!(
                "{which} header: seqid {}, UUID {}, subsystem {:?}, label {:?}",
                h.seqid, h.uuid, h.subsystem, h.label
            ),
            None => format!("{which} header: absent or invalid (bad magic or checksum)"),
        });
    }
    if copy.subsystem() != SUBSYSTEM {
        r.verdict = format!(
            "refused: a LUKS2 header cvm-init did not make (subsystem {:?}); never formatted or unlocked",
            copy.subsystem()
        );
        return Ok(r);
    }
    let token = state::header_token(copy.json());
    r.findings.push(match &token {
        Ok(Some(t)) => format!(
            "state token: {}{} (MAC present, not checked: inspect uses no key)",
            t.state.as_str(),
            t.data_sectors
                .map(|n| format!(", integrity mapping {n} sectors"))
                .unwrap_or_default()
        ),
        Ok(None) => "state token: missing".to_owned(),
        Err(e) => format!("state token: invalid: {e}"),
    });
    let (expect, against) = match vol {
        Some(v) => (Expected::for_volume(v), format!("volume {:?}", v.name)),
        None => (
            header_settings(copy.json()),
            "the header's own integrity and discard settings (give --config and --volume to check against a config)".to_owned(),
        ),
    };
    if let Some(pinned) = vol.and_then(|v| v.luks_uuid.as_deref()) {
        if !pinned.eq_ignore_ascii_case(copy.luks_uuid()) {
            r.findings.push(format!(
                "UUID {} differs from the pinned luks_uuid {pinned}",
                copy.luks_uuid()
            ));
        }
    }
    let problems = header::header_problems(copy.json(), &expect);
    if problems.is_empty() {
        r.findings
            .push(format!("header checks against {against}: all pass"));
    } else {
        r.findings.push(format!(
            "header checks against {against}: {} failed",
            problems.len()
        ));
        r.findings
            .extend(problems.iter().map(|p| format!("  - {p}")));
    }
    let uuid_ok = !r.findings.iter().any(|l| l.contains("pinned luks_uuid"));
    r.verdict = match (&token, problems.is_empty() && uuid_ok) {
        (Ok(None) | Err(_), _) => "refused: our subsystem label but no valid state token, so the header was altered; never formatted (wipe it deliberately if it is to be discarded)".to_owned(),
        (Ok(Some(_)), false) => "refused: the header fails the checks above; never formatted or unlocked".to_owned(),
        (Ok(Some(t)), true) => match (t.state, format) {
            (state::TokenState::Ready, _) => "provisioned: a boot unlocks it if the token's MAC verifies under the volume's key, else refuses it".to_owned(),
            (state::TokenState::Provisioning, Some(false)) => "interrupted first boot, but format = false: a boot refuses it".to_owned(),
            (state::TokenState::Provisioning, _) => "interrupted first boot: a boot provisions it again if the token's MAC verifies (and format = true), else refuses it".to_owned(),
        },
    };
    Ok(r)
}

/// Integrity and discard as the header itself says, to check the rest of
/// its shape when no config is given.
fn header_settings(json: &Value) -> Expected {
    let seg = json
        .get("segments")
        .and_then(Value::as_object)
        .and_then(|s| s.values().next());
    Expected {
        integrity: seg.is_some_and(|s| s.get("integrity").is_some()),
        discard: json["config"]["flags"]
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x.as_str() == Some(DISCARD_FLAG))),
    }
}
