//! Which TEE types and measurements may read which resources.
//!
//! ```toml
//! [[allow]]
//! resource = "default/tls/*"     # exact path, or a prefix ending in '*'
//! tee = ["sample", "snp", "tdx"]
//! measurements = []              # hex; empty = any measurement
//! ```

use std::path::Path;

use anyhow::{Context, Result};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(default)]
    allow: Vec<Rule>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rule {
    resource: String,
    tee: Vec<String>,
    #[serde(default)]
    measurements: Vec<String>,
}

impl Policy {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading policy {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing policy {}", path.display()))
    }

    pub fn allow_all() -> Self {
        Self {
            allow: vec![Rule {
                resource: "*".to_owned(),
                tee: vec!["*".to_owned()],
                measurements: Vec::new(),
            }],
        }
    }

    /// Whether a session of `tee` with `measurement` (hex) may read `resource`.
    pub fn allows(&self, tee: &str, measurement: &str, resource: &str) -> bool {
        self.allow.iter().any(|r| {
            let path_ok = match r.resource.strip_suffix('*') {
                Some(prefix) => resource.starts_with(prefix),
                None => r.resource == resource,
            };
            let tee_ok = r.tee.iter().any(|t| t == "*" || t == tee);
            let m_ok = r.measurements.is_empty()
                || r.measurements
                    .iter()
                    .any(|m| m.eq_ignore_ascii_case(measurement));
            path_ok && tee_ok && m_ok
        })
    }
}
