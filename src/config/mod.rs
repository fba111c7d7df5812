//! The agent's configuration: a TOML file baked into the measured image.
//!
//! Everything that can weaken security (which broker, how it is pinned,
//! whether a simulated TEE is allowed, what happens on failure) comes only
//! from this file. The kernel command line is written by the untrusted host,
//! so [`cmdline`] lets it change a short allow-list of harmless settings and
//! nothing else.

pub mod cmdline;

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Where the image keeps the config unless `--config` says otherwise.
pub const DEFAULT_PATH: &str = "/etc/cvm-init/config.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}; pass --config PATH or install one at {DEFAULT_PATH}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config field `{field}` is invalid: {problem}; fix: {fix}")]
    Invalid {
        field: String,
        problem: String,
        fix: String,
    },
}

fn invalid(
    field: impl Into<String>,
    problem: impl Into<String>,
    fix: impl Into<String>,
) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        problem: problem.into(),
        fix: fix.into(),
    }
}

/// The whole file. Unknown fields anywhere are errors, so a typo never
/// silently falls back to a default.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub broker: BrokerConfig,
    #[serde(default)]
    pub attester: AttesterConfig,
    #[serde(default, rename = "volume")]
    pub volumes: Vec<VolumeConfig>,
    #[serde(default, rename = "secret")]
    pub secrets: Vec<SecretConfig>,
    #[serde(default)]
    pub failure: FailureConfig,
    #[serde(default)]
    pub log: LogConfig,
    /// Only when cvm-init is `/init` (PID 1) of a minimal initramfs.
    pub boot: Option<BootConfig>,
    /// Only when cvm-init is PID 1: how to reach the broker.
    pub network: Option<NetworkConfig>,
    /// Host-supplied configuration, accepted only as Trustee init-data bound
    /// by the hardware (SNP HOST_DATA / TDX MRCONFIGID); see [`crate::initdata`].
    pub init_data: Option<InitDataConfig>,
}

/// Whether and how a host-supplied init-data document may add to this
/// config. The host writes the document; the hardware binds its digest; this
/// measured section decides what it may change. Without the section, no
/// host-supplied configuration is ever read.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InitDataConfig {
    /// Where the host puts the document (a config drive, fw_cfg, a file a
    /// systemd unit copied from a cloud-init seed).
    pub path: PathBuf,
    /// A missing document is an error (otherwise: measured config only).
    #[serde(default)]
    pub required: bool,
    /// What the document's `cvm-init.toml` may add.
    pub allow: Vec<InitDataAllow>,
    /// Host-supplied volumes mount only below this directory.
    pub mount_under: Option<PathBuf>,
}

/// One thing a host-supplied config may add.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum InitDataAllow {
    /// `[[secret]]` entries, written below [`HOST_SECRETS_UNDER`].
    #[serde(rename = "secret")]
    Secret,
    /// `[[volume]]` entries that are never formatted.
    #[serde(rename = "volume")]
    Volume,
    /// `[[volume]]` entries with `format = true` (blank devices only).
    #[serde(rename = "volume.format")]
    VolumeFormat,
}

impl fmt::Display for InitDataAllow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InitDataAllow::Secret => "secret",
            InitDataAllow::Volume => "volume",
            InitDataAllow::VolumeFormat => "volume.format",
        })
    }
}

/// Host-supplied secrets go below this tmpfs directory only, never into
/// other programs' state under /run.
pub const HOST_SECRETS_UNDER: &str = "/run/cvm-init";

/// PID-1 mode: what to mount as the real root and what to run there.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BootConfig {
    /// Device of the real root filesystem (`/dev/...`, `UUID=`, ...).
    pub root: String,
    #[serde(default)]
    pub root_fstype: Filesystem,
    #[serde(default = "default_root_options")]
    pub root_options: Vec<String>,
    /// Where the real root is mounted before `switch_root`.
    #[serde(default = "default_sysroot")]
    pub sysroot: PathBuf,
    /// The workload's init, inside the real root.
    #[serde(default = "default_init")]
    pub init: PathBuf,
    /// Kernel modules to load, one path per line, in dependency order.
    #[serde(default = "default_modules_list")]
    pub modules_list: PathBuf,
    /// How long to wait for a device to appear.
    #[serde(default = "default_device_wait")]
    pub device_wait_secs: u64,
}

fn default_root_options() -> Vec<String> {
    vec!["ro".to_owned()]
}
fn default_sysroot() -> PathBuf {
    PathBuf::from("/sysroot")
}
fn default_init() -> PathBuf {
    PathBuf::from("/sbin/init")
}
fn default_modules_list() -> PathBuf {
    PathBuf::from("/etc/cvm-init/modules")
}
fn default_device_wait() -> u64 {
    30
}

/// PID-1 mode networking: a static address (QEMU user networking, most
/// clouds' fixed metadata networks) or a DHCP command from the image.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    pub interface: String,
    /// `a.b.c.d/prefix`; with `gateway`, configured directly.
    pub address: Option<String>,
    pub gateway: Option<String>,
    /// Run instead of a static address, e.g. `["/bin/udhcpc", "-i", "eth0", "-q", "-s", "/etc/udhcpc.script"]`.
    pub dhcp_command: Option<Vec<String>>,
}

/// How to reach the key broker and how to know it is the right one.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerConfig {
    /// Base URL, e.g. `https://kbs.example.com:8080`; `/kbs/v0/...` is appended.
    pub url: String,
    /// PEM file holding the CA (or the self-signed certificate) the broker's
    /// TLS certificate must chain to. Relative paths are taken from the
    /// config file's directory.
    pub ca_cert: Option<PathBuf>,
    /// SHA-256 of the broker's SubjectPublicKeyInfo (hex), the alternative pin.
    pub spki_sha256: Option<String>,
    /// Allow `http://` (no TLS). Development only: the broker is then not
    /// authenticated at all, only the JWE protects the secrets.
    #[serde(default)]
    pub insecure_http: bool,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: u64,
    #[serde(default = "default_request_timeout")]
    pub request_timeout_secs: u64,
    /// Total time allowed for all attempts before the failure action.
    #[serde(default = "default_deadline")]
    pub deadline_secs: u64,
    /// Key-management algorithm of the per-boot key secrets are wrapped to.
    #[serde(default)]
    pub key_alg: KeyAlgConfig,
}

fn default_connect_timeout() -> u64 {
    5
}
fn default_request_timeout() -> u64 {
    15
}
fn default_deadline() -> u64 {
    120
}

impl BrokerConfig {
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_secs)
    }
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }
    pub fn deadline(&self) -> Duration {
        Duration::from_secs(self.deadline_secs)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum KeyAlgConfig {
    #[default]
    #[serde(rename = "ECDH-ES+A256KW")]
    EcdhEsA256Kw,
    #[serde(rename = "RSA-OAEP-256")]
    RsaOaep256,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AttesterKind {
    /// Probe SNP, then TDX; never falls back to the simulated TEE.
    #[default]
    Auto,
    Snp,
    Tdx,
    /// Development only; needs `allow_simulated` or `--allow-simulated-tee`.
    Simulated,
}

impl fmt::Display for AttesterKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AttesterKind::Auto => "auto",
            AttesterKind::Snp => "snp",
            AttesterKind::Tdx => "tdx",
            AttesterKind::Simulated => "simulated",
        })
    }
}

impl std::str::FromStr for AttesterKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(AttesterKind::Auto),
            "snp" => Ok(AttesterKind::Snp),
            "tdx" => Ok(AttesterKind::Tdx),
            "simulated" => Ok(AttesterKind::Simulated),
            other => Err(format!(
                "unknown attester {other:?}: expected auto, snp, tdx or simulated"
            )),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AttesterConfig {
    #[serde(default)]
    pub kind: AttesterKind,
    /// The config twin of `--allow-simulated-tee`.
    #[serde(default)]
    pub allow_simulated: bool,
    /// Simulated TEE only: the host data (hex) its fake report carries, as
    /// a hypervisor would set SNP HOST_DATA or TDX MRCONFIGID at launch.
    pub simulated_host_data: Option<String>,
}

/// An encrypted volume (consumed by the storage stage).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeConfig {
    /// Short name: the dm-crypt mapping is `/dev/mapper/<name>`.
    pub name: String,
    /// `/dev/...`, `UUID=...`, `PARTUUID=...` or `PARTLABEL=...`.
    pub device: String,
    /// Broker resource `repo/type/tag` holding the key (or the master secret).
    pub key: ResourcePath,
    /// How the LUKS key is made from the resource.
    #[serde(default)]
    pub key_derivation: KeyDerivation,
    /// The device is ours to format on first boot, and only if it is blank.
    #[serde(default)]
    pub format: bool,
    #[serde(default)]
    pub filesystem: Filesystem,
    pub mountpoint: PathBuf,
    #[serde(default)]
    pub mount_options: Vec<String>,
    /// dm-integrity with hmac-sha256 under the encryption.
    #[serde(default)]
    pub integrity: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyDerivation {
    /// The resource is the volume key itself.
    #[default]
    Raw,
    /// HKDF-SHA256 of the resource, bound to the volume name and LUKS UUID.
    Hkdf,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Filesystem {
    #[default]
    Ext4,
    Xfs,
}

/// A secret written to tmpfs for the workload.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SecretConfig {
    pub resource: ResourcePath,
    /// Target file; must be below `/run` (tmpfs).
    pub path: PathBuf,
    /// Octal file mode as a string, e.g. `"0600"` (the default).
    #[serde(default = "default_mode")]
    pub mode: String,
    /// `uid:gid` numbers; default `0:0`.
    #[serde(default = "default_owner")]
    pub owner: String,
}

fn default_mode() -> String {
    "0600".to_owned()
}
fn default_owner() -> String {
    "0:0".to_owned()
}

impl SecretConfig {
    /// The validated mode bits.
    pub fn mode_bits(&self) -> u32 {
        parse_mode(&self.mode).unwrap_or(0o600)
    }
    /// The validated owner.
    pub fn owner_ids(&self) -> (u32, u32) {
        parse_owner(&self.owner).unwrap_or((0, 0))
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureAction {
    #[default]
    Halt,
    Reboot,
    /// A root shell on the console: only allowed when `debug_image = true`.
    Shell,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FailureConfig {
    #[serde(default)]
    pub action: FailureAction,
    /// Marks a debug image; required for `action = "shell"`.
    #[serde(default)]
    pub debug_image: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    #[default]
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub fn to_filter(self) -> log::LevelFilter {
        match self {
            LogLevel::Error => log::LevelFilter::Error,
            LogLevel::Warn => log::LevelFilter::Warn,
            LogLevel::Info => log::LevelFilter::Info,
            LogLevel::Debug => log::LevelFilter::Debug,
            LogLevel::Trace => log::LevelFilter::Trace,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    #[serde(default)]
    pub level: LogLevel,
}

/// A broker resource `repo/type/tag`; each segment matches
/// `[A-Za-z0-9_-][A-Za-z0-9_.-]*` (the KBS rule).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ResourcePath(String);

impl ResourcePath {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ResourcePath {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let segments: Vec<&str> = s.split('/').collect();
        if segments.len() != 3 {
            return Err(format!(
                "resource path {s:?} must have exactly three segments, repo/type/tag (e.g. \"default/disk/data\")"
            ));
        }
        for seg in &segments {
            let ok_first = seg
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            let ok_rest = seg
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
            if !ok_first || !ok_rest {
                return Err(format!(
                    "resource path {s:?}: segment {seg:?} must match [A-Za-z0-9_-][A-Za-z0-9_.-]*"
                ));
            }
        }
        Ok(Self(s))
    }
}

impl std::str::FromStr for ResourcePath {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::try_from(s.to_owned())
    }
}

impl From<ResourcePath> for String {
    fn from(p: ResourcePath) -> String {
        p.0
    }
}

impl fmt::Display for ResourcePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn parse_mode(s: &str) -> Option<u32> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    u32::from_str_radix(digits, 8).ok().filter(|m| *m <= 0o7777)
}

/// Parses `a.b.c.d/prefix`.
pub fn parse_cidr(s: &str) -> Option<(std::net::Ipv4Addr, u8)> {
    let (addr, prefix) = s.split_once('/')?;
    let prefix: u8 = prefix.parse().ok().filter(|p| *p <= 32)?;
    Some((addr.parse().ok()?, prefix))
}

fn parse_owner(s: &str) -> Option<(u32, u32)> {
    let (u, g) = s.split_once(':')?;
    Some((u.parse().ok()?, g.parse().ok()?))
}

impl Config {
    /// Reads and validates the file at `path`. Relative `ca_cert` paths are
    /// resolved against the file's directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config = Self::from_toml(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_owned(),
                message,
            },
            other => other,
        })?;
        if let Some(ca) = &config.broker.ca_cert {
            if ca.is_relative() {
                let base = path.parent().unwrap_or(Path::new("."));
                config.broker.ca_cert = Some(base.join(ca));
            }
        }
        Ok(config)
    }

    /// Parses and validates TOML text.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::from("<text>"),
            message: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks everything serde cannot: cross-field rules and security rules.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_broker()?;
        let mut names = BTreeSet::new();
        for (i, v) in self.volumes.iter().enumerate() {
            let field = |f: &str| format!("volume[{i}].{f}");
            let name_ok = !v.name.is_empty()
                && v.name.len() <= 64
                && v.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
                && !v.name.starts_with('.');
            if !name_ok {
                return Err(invalid(
                    field("name"),
                    format!("{:?} is not a usable device-mapper name", v.name),
                    "use 1-64 characters from [A-Za-z0-9_.-], not starting with '.'",
                ));
            }
            if !names.insert(v.name.clone()) {
                return Err(invalid(
                    field("name"),
                    format!("{:?} is used by two volumes", v.name),
                    "give every volume its own name",
                ));
            }
            let dev_ok = v.device.starts_with("/dev/")
                || ["UUID=", "PARTUUID=", "PARTLABEL="].iter().any(|p| {
                    v.device
                        .strip_prefix(p)
                        .is_some_and(|rest| !rest.is_empty())
                });
            if !dev_ok {
                return Err(invalid(
                    field("device"),
                    format!("{:?} is not a device reference", v.device),
                    "use /dev/..., UUID=..., PARTUUID=... or PARTLABEL=...",
                ));
            }
            if !v.mountpoint.is_absolute() {
                return Err(invalid(
                    field("mountpoint"),
                    format!("{} is not absolute", v.mountpoint.display()),
                    "use an absolute path such as /sysroot/data",
                ));
            }
        }
        for (i, s) in self.secrets.iter().enumerate() {
            let field = |f: &str| format!("secret[{i}].{f}");
            if !s.path.is_absolute()
                || !s.path.starts_with("/run/")
                || s.path
                    .components()
                    .any(|c| c == std::path::Component::ParentDir)
            {
                return Err(invalid(
                    field("path"),
                    format!("{} is not below /run", s.path.display()),
                    "secrets go to tmpfs only: use a path such as /run/cvm-init/tls/key.pem",
                ));
            }
            match parse_mode(&s.mode) {
                Some(m) if m & 0o007 == 0 => {}
                Some(_) => {
                    return Err(invalid(
                        field("mode"),
                        format!("{} lets every user read or write the secret", s.mode),
                        "use 0600, 0640 or 0400",
                    ))
                }
                None => {
                    return Err(invalid(
                        field("mode"),
                        format!("{:?} is not an octal mode", s.mode),
                        "write it as a string of octal digits, e.g. \"0600\"",
                    ))
                }
            }
            if parse_owner(&s.owner).is_none() {
                return Err(invalid(
                    field("owner"),
                    format!("{:?} is not uid:gid", s.owner),
                    "use numeric ids, e.g. \"0:0\" or \"1000:1000\"",
                ));
            }
        }
        if let Some(n) = &self.network {
            match (&n.address, &n.dhcp_command) {
                (Some(a), None) => {
                    if parse_cidr(a).is_none() {
                        return Err(invalid(
                            "network.address",
                            format!("{a:?} is not an IPv4 address with a prefix"),
                            "write it as a.b.c.d/prefix, e.g. \"10.0.2.15/24\"",
                        ));
                    }
                    if let Some(g) = &n.gateway {
                        if g.parse::<std::net::Ipv4Addr>().is_err() {
                            return Err(invalid(
                                "network.gateway",
                                format!("{g:?} is not an IPv4 address"),
                                "write it as a.b.c.d",
                            ));
                        }
                    }
                }
                (None, Some(cmd)) if !cmd.is_empty() => {}
                _ => {
                    return Err(invalid(
                        "network",
                        "needs exactly one of address or dhcp_command",
                        "set address = \"a.b.c.d/prefix\" (and gateway), or dhcp_command = [...]",
                    ))
                }
            }
        }
        if let Some(h) = &self.attester.simulated_host_data {
            if self.attester.kind != AttesterKind::Simulated {
                return Err(invalid(
                    "attester.simulated_host_data",
                    format!("is set but the attester is {}", self.attester.kind),
                    "remove it: real hardware reports the host data the VM was launched with",
                ));
            }
            if h.is_empty() || h.len() > 128 || hex::decode(h).is_err() {
                return Err(invalid(
                    "attester.simulated_host_data",
                    format!("{h:?} is not 1 to 64 bytes of hex"),
                    "write the digest as hex, e.g. the init-data document's SHA-384",
                ));
            }
        }
        if let Some(d) = &self.init_data {
            self.validate_init_data(d)?;
        }
        if self.failure.action == FailureAction::Shell && !self.failure.debug_image {
            return Err(invalid(
                "failure.action",
                "\"shell\" would give a root shell on the console of a production image",
                "use \"halt\" or \"reboot\", or set failure.debug_image = true in a debug image",
            ));
        }
        Ok(())
    }

    fn validate_init_data(&self, d: &InitDataConfig) -> Result<(), ConfigError> {
        if !d.path.is_absolute() {
            return Err(invalid(
                "init_data.path",
                format!("{} is not absolute", d.path.display()),
                "use an absolute path, e.g. /run/cvm-init/init-data.toml",
            ));
        }
        if d.allow.is_empty() {
            return Err(invalid(
                "init_data.allow",
                "is empty, so a host-supplied config could change nothing",
                "list what it may add (\"secret\", \"volume\", \"volume.format\"), or remove [init_data]",
            ));
        }
        let volumes = d
            .allow
            .iter()
            .any(|a| matches!(a, InitDataAllow::Volume | InitDataAllow::VolumeFormat));
        match &d.mount_under {
            None if volumes => {
                return Err(invalid(
                    "init_data.mount_under",
                    "is missing but host-supplied volumes are allowed",
                    "set the directory they mount below, e.g. \"/sysroot/srv\"",
                ))
            }
            Some(m) if !m.is_absolute() || m == Path::new("/") => {
                return Err(invalid(
                    "init_data.mount_under",
                    format!("{} is not an absolute directory below /", m.display()),
                    "use a dedicated directory, e.g. \"/sysroot/srv\"",
                ))
            }
            _ => {}
        }
        Ok(())
    }

    fn validate_broker(&self) -> Result<(), ConfigError> {
        let b = &self.broker;
        let (scheme, rest) = b.url.split_once("://").ok_or_else(|| {
            invalid(
                "broker.url",
                format!("{:?} has no scheme", b.url),
                "write it as https://host:port",
            )
        })?;
        if rest.is_empty() || rest.contains(['?', '#']) {
            return Err(invalid(
                "broker.url",
                format!("{:?} has no host, or has a query or fragment", b.url),
                "write it as https://host:port (the /kbs/v0 path is added by the agent)",
            ));
        }
        match scheme {
            "https" => {
                if b.insecure_http {
                    return Err(invalid(
                        "broker.insecure_http",
                        "is set but the URL is https",
                        "remove insecure_http",
                    ));
                }
                match (&b.ca_cert, &b.spki_sha256) {
                    (None, None) => {
                        return Err(invalid(
                            "broker.ca_cert",
                            "the broker is not pinned",
                            "set ca_cert (PEM file of the broker's CA) or spki_sha256 (hex SHA-256 of its public key)",
                        ))
                    }
                    (Some(_), Some(_)) => {
                        return Err(invalid(
                            "broker.spki_sha256",
                            "both ca_cert and spki_sha256 are set",
                            "pin the broker one way: keep either ca_cert or spki_sha256",
                        ))
                    }
                    _ => {}
                }
                if let Some(h) = &b.spki_sha256 {
                    if h.len() != 64 || hex::decode(h).is_err() {
                        return Err(invalid(
                            "broker.spki_sha256",
                            format!("{h:?} is not 64 hex digits"),
                            "use the hex SHA-256 of the DER SubjectPublicKeyInfo",
                        ));
                    }
                }
            }
            "http" => {
                if !b.insecure_http {
                    return Err(invalid(
                        "broker.url",
                        "http:// does not authenticate the broker",
                        "use https:// with a pinned ca_cert, or for development only set insecure_http = true",
                    ));
                }
            }
            other => {
                return Err(invalid(
                    "broker.url",
                    format!("scheme {other:?} is not supported"),
                    "use https://",
                ))
            }
        }
        if b.connect_timeout_secs == 0 || b.request_timeout_secs == 0 || b.deadline_secs == 0 {
            return Err(invalid(
                "broker.*_secs",
                "a timeout or deadline is 0",
                "use a positive number of seconds",
            ));
        }
        if b.deadline_secs < b.request_timeout_secs {
            return Err(invalid(
                "broker.deadline_secs",
                format!(
                    "{} s is shorter than one request ({} s)",
                    b.deadline_secs, b.request_timeout_secs
                ),
                "make deadline_secs at least request_timeout_secs",
            ));
        }
        Ok(())
    }

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
                "volume {}: {} -> /dev/mapper/{} -> {} ({:?}{}), key {} ({:?}), {}",
                v.name,
                v.device,
                v.name,
                v.mountpoint.display(),
                v.filesystem,
                if v.integrity { ", integrity" } else { "" },
                v.key,
                v.key_derivation,
                if v.format {
                    "formatted on first boot only if blank"
                } else {
                    "never formatted"
                }
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

#[cfg(test)]
mod tests;
