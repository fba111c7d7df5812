//! Host-supplied configuration, bound by the hardware: Trustee init-data.
//!
//! A cloud-init seed, SMBIOS, fw_cfg or the kernel command line is written
//! by the untrusted host. cvm-init takes configuration from there only as an
//! init-data document (Trustee's initdata spec, version 0.1.0):
//!
//! ```toml
//! version = "0.1.0"
//! algorithm = "sha384"            # sha256, sha384 or sha512
//! [data]
//! "cvm-init.toml" = '''
//! [[secret]]
//! resource = "default/tls/key"
//! path = "/run/cvm-init/tls/key.pem"
//! '''
//! ```
//!
//! Its digest (the document's bytes, hashed with its `algorithm`) is what the
//! host must have put into SNP HOST_DATA (32 bytes) or TDX MRCONFIGID (48
//! bytes) when it launched the VM: shorter digests are padded with zeros,
//! longer ones truncated, as Trustee does. Before any of it is used the
//! agent reads that register from a fresh report ([`InitData::verify`]) and
//! refuses a mismatch; the document then goes to the broker as `init-data`
//! in `/attest`. For SNP and TDX the broker's verifier checks the same
//! digest against the evidence, so the broker's policy sees it too; with
//! the simulated TEE it does not (Trustee's sample verifier ignores the
//! evidence's `init_data`), and this agent's check is the only one. What the document may add is decided
//! by the measured config's `[init_data]` section ([`InitData::apply`]):
//! never the broker, its pin, the attester or the failure action.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256, Sha384, Sha512};

use crate::attest::HostData;
use crate::config::{
    Config, ConfigError, InitDataAllow, InitDataConfig, SecretConfig, VolumeConfig,
    HOST_SECRETS_UNDER,
};

/// The only initdata version there is.
pub const VERSION: &str = "0.1.0";
/// The document's `[data]` entry that holds cvm-init's part.
pub const DATA_KEY: &str = "cvm-init.toml";
/// Largest document read (configs are a few hundred bytes).
pub const MAX_LEN: u64 = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum InitDataError {
    #[error(
        "init-data: {} is required by init_data.required but cannot be read: {source}; the host \
         must supply it (or drop `required` in the measured config)",
        .path.display()
    )]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("init-data: {} is larger than {MAX_LEN} bytes; refusing to read it", .path.display())]
    TooLarge { path: PathBuf },
    #[error(
        "init-data: {} is not an init-data document: {problem}; expected TOML with \
         version = \"{VERSION}\", algorithm = \"sha256\"|\"sha384\"|\"sha512\" and a [data] table",
        .path.display()
    )]
    Document { path: PathBuf, problem: String },
    #[error(
        "init-data: {} {detail}. Refusing to use any of it",
        .path.display()
    )]
    Mismatch { path: PathBuf, detail: String },
    #[error(
        "init-data: {}: its {DATA_KEY} {problem}; fix the document (the measured config's \
         [init_data] allows: {allowed})",
        .path.display()
    )]
    NotAllowed {
        path: PathBuf,
        problem: String,
        allowed: String,
    },
    #[error("init-data: {}: its {DATA_KEY} makes the config invalid: {source}", .path.display())]
    Invalid {
        path: PathBuf,
        #[source]
        source: ConfigError,
    },
}

/// The hash the document names for itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Sha256,
    Sha384,
    Sha512,
}

impl Algorithm {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "sha256" => Some(Self::Sha256),
            "sha384" => Some(Self::Sha384),
            "sha512" => Some(Self::Sha512),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "sha256",
            Self::Sha384 => "sha384",
            Self::Sha512 => "sha512",
        }
    }

    fn digest(self, bytes: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha256 => Sha256::digest(bytes).to_vec(),
            Self::Sha384 => Sha384::digest(bytes).to_vec(),
            Self::Sha512 => Sha512::digest(bytes).to_vec(),
        }
    }
}

#[derive(Deserialize)]
struct Document {
    version: String,
    algorithm: String,
    #[serde(default)]
    data: BTreeMap<String, String>,
}

/// What cvm-init reads from the document's `cvm-init.toml`: additions only.
/// Anything else (broker, attester, failure, ...) is an unknown field.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Additions {
    /// The instance identity (see `Config::instance_id`), when the measured
    /// config allows `instance_id` and sets none itself.
    #[serde(default)]
    instance_id: Option<String>,
    #[serde(default, rename = "volume")]
    volumes: Vec<VolumeConfig>,
    #[serde(default, rename = "secret")]
    secrets: Vec<SecretConfig>,
}

/// A parsed document and its digest; nothing in it is trusted until
/// [`InitData::verify`] has passed.
#[derive(Debug, Clone)]
pub struct InitData {
    path: PathBuf,
    body: String,
    algorithm: Algorithm,
    digest: Vec<u8>,
    part: Option<String>,
}

/// Reads the document the measured config points at. `Ok(None)`: no
/// `[init_data]`, or an optional document that is absent.
pub fn load(config: Option<&InitDataConfig>) -> Result<Option<InitData>, InitDataError> {
    let Some(cfg) = config else {
        return Ok(None);
    };
    let file = match std::fs::File::open(&cfg.path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !cfg.required => {
            log::info!(
                "init-data: none at {} (optional); using the measured config only",
                cfg.path.display()
            );
            return Ok(None);
        }
        Err(source) => {
            return Err(InitDataError::Read {
                path: cfg.path.clone(),
                source,
            })
        }
    };
    let mut bytes = Vec::new();
    file.take(MAX_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| InitDataError::Read {
            path: cfg.path.clone(),
            source,
        })?;
    if bytes.len() as u64 > MAX_LEN {
        return Err(InitDataError::TooLarge {
            path: cfg.path.clone(),
        });
    }
    let body = String::from_utf8(bytes).map_err(|_| InitDataError::Document {
        path: cfg.path.clone(),
        problem: "it is not UTF-8".to_owned(),
    })?;
    InitData::parse(&cfg.path, body).map(Some)
}

impl InitData {
    /// Parses `body` (read from `path`) and hashes it by its own algorithm.
    pub fn parse(path: &Path, body: String) -> Result<Self, InitDataError> {
        let bad = |problem: String| InitDataError::Document {
            path: path.to_owned(),
            problem,
        };
        let doc: Document = toml::from_str(&body).map_err(|e| bad(e.to_string()))?;
        if doc.version != VERSION {
            return Err(bad(format!("version {:?} is not {VERSION:?}", doc.version)));
        }
        let algorithm = Algorithm::parse(&doc.algorithm)
            .ok_or_else(|| bad(format!("algorithm {:?} is not supported", doc.algorithm)))?;
        let digest = algorithm.digest(body.as_bytes());
        let mut data = doc.data;
        let part = data.remove(DATA_KEY);
        for other in data.keys() {
            log::info!(
                "init-data: {}: ignoring [data] entry {other:?} (not cvm-init's)",
                path.display()
            );
        }
        Ok(Self {
            path: path.to_owned(),
            body,
            algorithm,
            digest,
            part,
        })
    }

    /// The document's digest by its own algorithm.
    pub fn digest(&self) -> &[u8] {
        &self.digest
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The digest as a register of `len` bytes holds it: zero-padded or
    /// truncated (Trustee's rule for SNP HOST_DATA and TDX MRCONFIGID).
    pub fn register_value(&self, len: usize) -> Vec<u8> {
        let mut v = self.digest.clone();
        v.resize(len, 0);
        v
    }

    /// Refuses unless the live report's register holds this document's
    /// digest (padded or truncated to a hardware register's width).
    pub fn verify(&self, host: &HostData) -> Result<(), InitDataError> {
        let expected = match host.width {
            Some(len) => self.register_value(len),
            None => self.digest.clone(),
        };
        if host.value != expected {
            let fix = match host.register {
                "SNP HOST_DATA" => format!(
                    "launch the VM with HOST_DATA = {} (QEMU: `-object sev-snp-guest,...,host-data=<base64 of those 32 bytes>`)",
                    hex::encode(&expected)
                ),
                "TDX MRCONFIGID" => format!(
                    "launch the TD with MRCONFIGID = {} (QEMU: `-object tdx-guest,...,mrconfigid=<base64 of those 48 bytes>`)",
                    hex::encode(&expected)
                ),
                other => format!(
                    "set the {other} to {} (attester.simulated_host_data)",
                    hex::encode(&expected)
                ),
            };
            let found = if host.value.is_empty() {
                "empty".to_owned()
            } else if host.value.iter().all(|&b| b == 0) {
                format!(
                    "{} (all zero: the VM was launched without host data)",
                    hex::encode(&host.value)
                )
            } else {
                hex::encode(&host.value)
            };
            return Err(InitDataError::Mismatch {
                path: self.path.clone(),
                detail: format!(
                    "hashes ({alg}) to {exp} as {reg}, but this VM's {reg} is {found}: the host \
                     supplied a document that is not the one this VM was launched with. Fix: \
                     {fix}, or give the VM the document whose digest it was launched with",
                    alg = self.algorithm.name(),
                    exp = hex::encode(&expected),
                    reg = host.register,
                ),
            });
        }
        log::info!(
            "init-data: {} ({}) matches this VM's {register} {}",
            self.path.display(),
            self.algorithm.name(),
            hex::encode(&host.value),
            register = host.register
        );
        Ok(())
    }

    /// The measured `config` with what the document adds, as far as
    /// `config.init_data` allows; the result is validated again. Call only
    /// after [`InitData::verify`].
    pub fn apply(&self, config: &Config) -> Result<Config, InitDataError> {
        let Some(rules) = &config.init_data else {
            return Ok(config.clone());
        };
        let allowed = rules
            .allow
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let refuse = |problem: String| InitDataError::NotAllowed {
            path: self.path.clone(),
            problem,
            allowed: allowed.clone(),
        };
        let Some(part) = &self.part else {
            log::info!(
                "init-data: {} has no {DATA_KEY:?} entry; nothing to add",
                self.path.display()
            );
            return Ok(config.clone());
        };
        let add: Additions = toml::from_str(part).map_err(|e| {
            refuse(format!(
                "is not valid (only instance_id, [[volume]] and [[secret]]): {e}"
            ))
        })?;
        let may = |a: InitDataAllow| rules.allow.contains(&a);
        if !add.secrets.is_empty() && !may(InitDataAllow::Secret) {
            return Err(refuse("adds [[secret]] entries".to_owned()));
        }
        for s in &add.secrets {
            if !s.path.starts_with(HOST_SECRETS_UNDER) {
                return Err(refuse(format!(
                    "puts secret {} at {}, outside {HOST_SECRETS_UNDER}",
                    s.resource,
                    s.path.display()
                )));
            }
            if config.secrets.iter().any(|m| m.path == s.path) {
                return Err(refuse(format!(
                    "puts secret {} at {}, which the measured config already uses",
                    s.resource,
                    s.path.display()
                )));
            }
        }
        for v in &add.volumes {
            if !may(InitDataAllow::Volume) && !may(InitDataAllow::VolumeFormat) {
                return Err(refuse("adds [[volume]] entries".to_owned()));
            }
            if v.format && !may(InitDataAllow::VolumeFormat) {
                return Err(refuse(format!("sets format = true on volume {:?}", v.name)));
            }
            let under = rules.mount_under.as_deref().unwrap_or(Path::new("/"));
            if !v.mountpoint.starts_with(under) || v.mountpoint == under {
                return Err(refuse(format!(
                    "mounts volume {:?} at {}, not below {}",
                    v.name,
                    v.mountpoint.display(),
                    under.display()
                )));
            }
        }
        let mut merged = config.clone();
        if let Some(id) = &add.instance_id {
            if !may(InitDataAllow::InstanceId) {
                return Err(refuse("sets instance_id".to_owned()));
            }
            if config.instance_id.is_some() {
                return Err(refuse(
                    "sets instance_id, which the measured config already sets".to_owned(),
                ));
            }
            log::info!("init-data: instance identity {id:?}");
            merged.instance_id = Some(id.clone());
        }
        log::info!(
            "init-data: {} adds {} volume(s) and {} secret(s)",
            self.path.display(),
            add.volumes.len(),
            add.secrets.len()
        );
        merged.volumes.extend(add.volumes);
        merged.secrets.extend(add.secrets);
        merged.validate().map_err(|source| InitDataError::Invalid {
            path: self.path.clone(),
            source,
        })?;
        Ok(merged)
    }

    /// `init-data` for `/attest`: the document exactly as read.
    pub fn to_wire(&self) -> kbs_types::InitData {
        kbs_types::InitData {
            format: "toml".to_owned(),
            body: self.body.clone(),
        }
    }
}

#[cfg(test)]
mod tests;
