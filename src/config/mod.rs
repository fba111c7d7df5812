//! The agent's configuration: a TOML file baked into the measured image.
//!
//! Everything that can weaken security (which broker, how it is pinned,
//! whether a simulated TEE is allowed, what happens on failure) comes only
//! from this file. The kernel command line is written by the untrusted host,
//! so [`cmdline`] lets it change a short allow-list of harmless settings and
//! nothing else.

pub mod cmdline;
mod plan;
pub mod tripwire;
mod validate;

pub use plan::Plan;

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
    /// How the workload's root is protected from the host (`cvm-init boot`
    /// and the booted-system unit check it; PID 1 verifies it itself).
    #[serde(default)]
    pub root: RootConfig,
    /// A trusted identity of this VM instance, bound into every volume key
    /// and state token: a disk provisioned by one instance does not open in
    /// another with the same config. From the measured config, or from
    /// init-data (bound by HOST_DATA/MRCONFIGID) when it is allowed there.
    #[serde(default)]
    pub instance_id: Option<String>,
}

/// What protects the workload's root filesystem, which the host can write.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RootConfig {
    #[serde(default)]
    pub integrity: RootIntegrity,
    /// Why the root is safe although it is not dm-verity (one line; needed
    /// with `integrity = "image"`).
    pub reason: Option<String>,
}

/// How `cvm-init boot` makes sure no host-written code runs next to the keys.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RootIntegrity {
    /// The root (`/sysroot` in an initrd, else `/`) must be a dm-verity
    /// device or a cvm-init volume; checked before attesting.
    #[default]
    Verity,
    /// The image protects its root another way (stated in `reason`).
    Image,
}

/// dm-verity parameters of the real root in PID-1 mode. Every value comes
/// from this measured file: no verity superblock is read from the disk,
/// which the host writes.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VerityConfig {
    /// Root hash (hex), as `veritysetup format` prints it.
    pub root_hash: String,
    /// Device holding the hash tree; default: the root device itself.
    pub hash_device: Option<String>,
    /// Byte offset of the hash tree on the hash device (its first hash
    /// block; for a tree with a superblock, the superblock's offset plus
    /// one hash block).
    #[serde(default)]
    pub hash_offset: u64,
    /// Number of data blocks the tree covers.
    pub data_blocks: u64,
    #[serde(default = "default_verity_block")]
    pub data_block_size: u32,
    #[serde(default = "default_verity_block")]
    pub hash_block_size: u32,
    /// Salt (hex); empty for none.
    #[serde(default)]
    pub salt: String,
    #[serde(default)]
    pub hash: VerityHash,
    /// What the kernel does when a block does not match its hash.
    #[serde(default)]
    pub on_corruption: CorruptionAction,
}

fn default_verity_block() -> u32 {
    4096
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VerityHash {
    #[default]
    Sha256,
    Sha512,
}

impl VerityHash {
    /// The kernel's and libcryptsetup's name.
    pub fn name(self) -> &'static str {
        match self {
            VerityHash::Sha256 => "sha256",
            VerityHash::Sha512 => "sha512",
        }
    }
    /// Digest length in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            VerityHash::Sha256 => 32,
            VerityHash::Sha512 => 64,
        }
    }
}

/// dm-verity's reaction to a corrupted block: stop at once either way, so
/// nothing keeps running on data the host changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CorruptionAction {
    /// Kernel panic (`panic_on_corruption`).
    #[default]
    Panic,
    /// Reboot (`restart_on_corruption`).
    Restart,
}

impl VerityConfig {
    /// The root hash as bytes (validated).
    pub fn root_hash_bytes(&self) -> Vec<u8> {
        hex::decode(&self.root_hash).unwrap_or_default()
    }
    /// The salt as bytes (validated).
    pub fn salt_bytes(&self) -> Vec<u8> {
        hex::decode(&self.salt).unwrap_or_default()
    }
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
    /// `instance_id`, when the measured config sets none.
    #[serde(rename = "instance_id")]
    InstanceId,
}

impl fmt::Display for InitDataAllow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InitDataAllow::Secret => "secret",
            InitDataAllow::Volume => "volume",
            InitDataAllow::VolumeFormat => "volume.format",
            InitDataAllow::InstanceId => "instance_id",
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
    /// dm-verity of the root: the only way a production image's root is
    /// mounted (an unverified root needs `failure.debug_image`).
    pub verity: Option<VerityConfig>,
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
    /// Probe an Azure vTPM, then SNP, then TDX; never falls back to the
    /// simulated TEE.
    #[default]
    Auto,
    Snp,
    Tdx,
    /// Azure SEV-SNP CVM: the paravisor's HCL report and a quote by the vTPM.
    #[serde(rename = "az-snp-vtpm")]
    AzSnpVtpm,
    /// Azure TDX CVM: the same, with a TD quote from the IMDS.
    #[serde(rename = "az-tdx-vtpm")]
    AzTdxVtpm,
    /// Development only; needs `allow_simulated` or `--allow-simulated-tee`.
    Simulated,
}

impl AttesterKind {
    /// The platform behind Azure's paravisor, for the Azure kinds.
    pub fn azure(self) -> Option<crate::attest::azure::Platform> {
        match self {
            AttesterKind::AzSnpVtpm => Some(crate::attest::azure::Platform::Snp),
            AttesterKind::AzTdxVtpm => Some(crate::attest::azure::Platform::Tdx),
            _ => None,
        }
    }
}

impl fmt::Display for AttesterKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AttesterKind::Auto => "auto",
            AttesterKind::Snp => "snp",
            AttesterKind::Tdx => "tdx",
            AttesterKind::AzSnpVtpm => "az-snp-vtpm",
            AttesterKind::AzTdxVtpm => "az-tdx-vtpm",
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
            "az-snp-vtpm" => Ok(AttesterKind::AzSnpVtpm),
            "az-tdx-vtpm" => Ok(AttesterKind::AzTdxVtpm),
            "simulated" => Ok(AttesterKind::Simulated),
            other => Err(format!(
                "unknown attester {other:?}: expected auto, snp, tdx, az-snp-vtpm, az-tdx-vtpm or simulated"
            )),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
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
    /// Azure only: the instance metadata service that serves the VCEK and
    /// TD quotes. A cache of collateral, never a trust anchor.
    #[serde(default = "default_imds")]
    pub azure_imds: String,
    /// NVIDIA confidential-computing GPUs attested next to the CPU TEE
    /// (docs/gpu-attestation.md).
    #[serde(default)]
    pub gpus: GpuPolicy,
}

fn default_imds() -> String {
    crate::attest::azure::DEFAULT_IMDS.to_owned()
}

impl Default for AttesterConfig {
    fn default() -> Self {
        AttesterConfig {
            kind: AttesterKind::default(),
            allow_simulated: false,
            simulated_host_data: None,
            azure_imds: default_imds(),
            gpus: GpuPolicy::default(),
        }
    }
}

/// Whether the broker session carries NVIDIA GPU evidence.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum GpuPolicy {
    /// No GPU evidence; NVML is never loaded.
    #[default]
    None,
    /// Every GPU NVML lists is attested; no NVML library or no GPU means
    /// no GPU evidence. A GPU that is present but not ready for
    /// confidential computing is still an error.
    IfPresent,
    /// At least one GPU, all ready for confidential computing, checked
    /// before the broker is contacted.
    Required,
}

impl fmt::Display for GpuPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GpuPolicy::None => "none",
            GpuPolicy::IfPresent => "if-present",
            GpuPolicy::Required => "required",
        })
    }
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
    /// Pass discards (TRIM) through dm-crypt. Off by default: the host then
    /// learns which blocks are in use. A header with `allow-discards` is
    /// refused unless this is set.
    #[serde(default)]
    pub discard: bool,
    /// Pin the LUKS UUID: first boot formats with it, and a header with any
    /// other UUID is refused (the host swapped the disk).
    #[serde(default)]
    pub luks_uuid: Option<String>,
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
}

#[cfg(test)]
mod tests;
