//! The plan: what a boot will do, decided from the config alone, and how
//! `check-config` prints it.

use std::fmt;

use super::*;

impl Config {
    /// Everything the boot will do, decided from the config alone.
    pub fn plan(&self) -> Plan {
        let mut resources: Vec<ResourcePath> = Vec::new();
        let wanted = self
            .volumes
            .iter()
            .map(|v| &v.key)
            .chain(self.secrets.iter().map(|s| &s.resource));
        for r in wanted {
            if !resources.contains(r) {
                resources.push(r.clone());
            }
        }
        Plan {
            config: self.clone(),
            resources,
        }
    }
}

/// The boot's plan: made from config before any I/O. The broker is asked
/// once, for exactly `resources`.
#[derive(Debug, Clone)]
pub struct Plan {
    pub config: Config,
    /// Every broker resource needed, each once, in first-use order.
    pub resources: Vec<ResourcePath>,
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        writeln!(f, "broker: {}", c.broker.url)?;
        let pin = match (&c.broker.ca_cert, &c.broker.spki_sha256) {
            (Some(ca), _) => format!("CA certificate {}", ca.display()),
            (None, Some(h)) => format!("public key SHA-256 {h}"),
            (None, None) => "NONE (insecure_http: development only)".to_owned(),
        };
        writeln!(f, "  pinned by: {pin}")?;
        writeln!(
            f,
            "  timeouts: connect {} s, request {} s, total deadline {} s; key {}",
            c.broker.connect_timeout_secs,
            c.broker.request_timeout_secs,
            c.broker.deadline_secs,
            match c.broker.key_alg {
                KeyAlgConfig::EcdhEsA256Kw => "ECDH-ES+A256KW (P-256)",
                KeyAlgConfig::RsaOaep256 => "RSA-OAEP-256",
            }
        )?;
        let sim = if c.attester.kind == AttesterKind::Simulated {
            "  <-- SIMULATED TEE: development only, never secure"
        } else {
            ""
        };
        writeln!(f, "attester: {}{sim}", c.attester.kind)?;
        if c.attester.gpus != GpuPolicy::None {
            writeln!(
                f,
                "GPUs: {} (NVIDIA confidential computing, evidence from NVML sent with the CPU's)",
                c.attester.gpus
            )?;
        }
        writeln!(f, "root: {}", root_line(c))?;
        if let Some(d) = &c.init_data {
            let allow: Vec<String> = d.allow.iter().map(ToString::to_string).collect();
            writeln!(
                f,
                "init-data: {} ({}), bound by SNP HOST_DATA / TDX MRCONFIGID; may add: {}{}",
                d.path.display(),
                if d.required { "required" } else { "optional" },
                allow.join(", "),
                d.mount_under
                    .as_ref()
                    .map(|m| format!("; its volumes mount below {}", m.display()))
                    .unwrap_or_default()
            )?;
        }
        writeln!(f, "resources fetched in one session:")?;
        if self.resources.is_empty() {
            writeln!(f, "  (none)")?;
        }
        for r in &self.resources {
            writeln!(f, "  {r}")?;
        }
        for v in &c.volumes {
            writeln!(
                f,
                "volume {}: {} -> /dev/mapper/{} -> {} ({:?}{}{}), key {} ({:?}), {}{}",
                v.name,
                v.device,
                v.name,
                v.mountpoint.display(),
                v.filesystem,
                if v.integrity { ", integrity" } else { "" },
                if v.discard { ", discards passed" } else { "" },
                v.key,
                v.key_derivation,
                if v.format {
                    "formatted on first boot only if blank"
                } else {
                    "never formatted"
                },
                v.luks_uuid
                    .as_deref()
                    .map(|u| format!(", LUKS UUID pinned to {u}"))
                    .unwrap_or_default()
            )?;
        }
        if let Some(id) = &c.instance_id {
            writeln!(
                f,
                "instance identity {id:?}: bound into every volume key and state token"
            )?;
        }
        for s in &c.secrets {
            writeln!(
                f,
                "secret {} -> {} (mode {}, owner {})",
                s.resource,
                s.path.display(),
                s.mode,
                s.owner
            )?;
        }
        write!(
            f,
            "on failure: {:?}{}",
            c.failure.action,
            if c.failure.debug_image {
                " (debug image)"
            } else {
                ""
            }
        )
    }
}

/// How the workload's root is protected, in one line.
fn root_line(c: &Config) -> String {
    match (&c.boot, c.root.integrity) {
        (Some(b), _) => match &b.verity {
            Some(v) => format!(
                "{} mounted on {} through dm-verity ({}, root hash {}, {} on corruption), read-only",
                b.root,
                b.sysroot.display(),
                v.hash.name(),
                v.root_hash,
                match v.on_corruption {
                    CorruptionAction::Panic => "kernel panic",
                    CorruptionAction::Restart => "reboot",
                }
            ),
            None => format!(
                "{} mounted UNVERIFIED  <-- DEBUG IMAGE: the host can change what runs next to the keys",
                b.root
            ),
        },
        (None, RootIntegrity::Verity) => {
            "must be a dm-verity device or a cvm-init volume (checked before attesting)".to_owned()
        }
        (None, RootIntegrity::Image) => format!(
            "protected by the image, not checked: {}",
            c.root.reason.as_deref().unwrap_or_default()
        ),
    }
}
