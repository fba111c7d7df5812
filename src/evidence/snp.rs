//! SEV-SNP attestation reports.
//!
//! Parsing wraps `sev::firmware::guest::AttestationReport` (the upstream
//! typed, version-aware struct) and keeps the raw 1184 bytes: the signature
//! is checked over those bytes as received, not over a re-encoding, so a
//! change to any signed byte (reserved ones included) breaks it. TCB values
//! are decoded here from the raw words because their layout depends on the
//! product (see [`TcbLayout`]).
//!
//! Verification (`verify`, [`verify_report`]) walks ARK -> ASK (or ASVK) -> VCEK (or
//! VLEK) -> report and names the link that failed. Without an explicit ASK
//! and ARK it uses the AMD roots built into the `sev` crate for the VCEK's
//! product. Certificate validity periods are reported but not enforced: the
//! caller decides which clock to trust.

use std::fmt;

use serde::Serialize;
use sev::firmware::guest::AttestationReport;
use sev::parser::ByteParser;

use super::{ChainLink, EvidenceError};

mod verify;
pub use verify::{verify_report, verify_vek_chain, RootSource, VerifiedBy};

/// An SNP attestation report is exactly this long (0x4A0).
pub const REPORT_LEN: usize = 1184;
/// The signature covers bytes `0..SIGNED_LEN`.
pub const SIGNED_LEN: usize = 0x2A0;

// Raw offsets, for the fields decoded here rather than by `sev`.
const OFF_VERSION: usize = 0x00;
const OFF_POLICY: usize = 0x08;
const OFF_CURRENT_TCB: usize = 0x38;
const OFF_PLATFORM_INFO: usize = 0x40;
const OFF_REPORTED_TCB: usize = 0x180;
const OFF_CPUID_FAM: usize = 0x188;
const OFF_CPUID_MOD: usize = 0x189;
const OFF_CPUID_STEP: usize = 0x18A;
const OFF_CHIP_ID: usize = 0x1A0;
const OFF_COMMITTED_TCB: usize = 0x1E0;
const OFF_CURRENT_VERSION: usize = 0x1E8;
const OFF_COMMITTED_VERSION: usize = 0x1EC;
const OFF_LAUNCH_TCB: usize = 0x1F0;
const OFF_SIG_R: usize = 0x2A0;
const OFF_SIG_S: usize = 0x2E8;
const SIG_COMPONENT_LEN: usize = 72;
const P384_SCALAR_LEN: usize = 48;

const _: () = assert!(REPORT_LEN == 0x4A0);
const _: () = assert!(OFF_CHIP_ID + 64 == OFF_COMMITTED_TCB);
const _: () = assert!(OFF_SIG_R == SIGNED_LEN);
const _: () = assert!(OFF_SIG_R + SIG_COMPONENT_LEN == OFF_SIG_S);
const _: () = assert!(OFF_SIG_S + SIG_COMPONENT_LEN <= REPORT_LEN);

// ---------------------------------------------------------------------------
// Field helpers over the raw report (whose length is checked first).

fn raw_u64(raw: &[u8; REPORT_LEN], off: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&raw[off..off + 8]);
    u64::from_le_bytes(b)
}

fn raw_u32(raw: &[u8; REPORT_LEN], off: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&raw[off..off + 4]);
    u32::from_le_bytes(b)
}

// ---------------------------------------------------------------------------
// Products and TCB layouts.

/// AMD EPYC generation with SEV-SNP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SnpProduct {
    Milan,
    Genoa,
    Turin,
    Venice,
}

impl SnpProduct {
    /// From CPUID family and model (the ranges the `sev` crate uses).
    pub fn from_cpuid(family: u8, model: u8) -> Option<Self> {
        match (family, model) {
            (0x19, 0x00..=0x0F) => Some(Self::Milan),
            (0x19, 0x10..=0x1F | 0xA0..=0xAF) => Some(Self::Genoa),
            (0x1A, 0x00..=0x11) => Some(Self::Turin),
            (0x1A, 0x50..=0x57 | 0x90..=0x9F | 0xA0..=0xAF | 0xC0..=0xC7) => Some(Self::Venice),
            _ => None,
        }
    }

    /// From a certificate's productName ("Milan-B0", "Genoa") or a CA common
    /// name suffix ("Milan" in "SEV-Milan").
    pub fn from_name(name: &str) -> Option<Self> {
        let n = name.to_ascii_lowercase();
        [
            ("milan", Self::Milan),
            ("genoa", Self::Genoa),
            ("turin", Self::Turin),
            ("venice", Self::Venice),
        ]
        .into_iter()
        .find_map(|(p, v)| n.starts_with(p).then_some(v))
    }

    /// TCB_VERSION layout used by this product.
    pub fn tcb_layout(self) -> TcbLayout {
        match self {
            Self::Milan | Self::Genoa => TcbLayout::MilanGenoa,
            Self::Turin | Self::Venice => TcbLayout::Turin,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Milan => "Milan",
            Self::Genoa => "Genoa",
            Self::Turin => "Turin",
            Self::Venice => "Venice",
        }
    }
}

impl fmt::Display for SnpProduct {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How the 8 bytes of a TCB_VERSION are laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TcbLayout {
    /// Milan, Genoa: byte0 boot loader, byte1 TEE, byte6 SNP, byte7 microcode.
    MilanGenoa,
    /// Turin (and later): byte0 FMC, byte1 boot loader, byte2 TEE, byte3 SNP,
    /// byte7 microcode.
    Turin,
}

/// A decoded TCB_VERSION.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Tcb {
    /// The little-endian u64 as hex, e.g. `0x7308000000000003`.
    #[serde(serialize_with = "ser_hex_u64")]
    pub raw: u64,
    /// Turin and later only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fmc: Option<u8>,
    pub bootloader: u8,
    pub tee: u8,
    pub snp: u8,
    pub microcode: u8,
}

impl Tcb {
    /// Split a TCB_VERSION word by layout.
    pub fn decode(raw: u64, layout: TcbLayout) -> Self {
        let b = raw.to_le_bytes();
        match layout {
            TcbLayout::MilanGenoa => Self {
                raw,
                fmc: None,
                bootloader: b[0],
                tee: b[1],
                snp: b[6],
                microcode: b[7],
            },
            TcbLayout::Turin => Self {
                raw,
                fmc: Some(b[0]),
                bootloader: b[1],
                tee: b[2],
                snp: b[3],
                microcode: b[7],
            },
        }
    }
}

impl fmt::Display for Tcb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(fmc) = self.fmc {
            write!(f, "fmc={fmc} ")?;
        }
        write!(
            f,
            "bl={} tee={} snp={} ucode={} ({:#018x})",
            self.bootloader, self.tee, self.snp, self.microcode, self.raw
        )
    }
}

fn ser_hex_u64<S: serde::Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{v:#x}"))
}

/// Which key signed the report (KEY_INFO.SIGNING_KEY).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SigningKey {
    /// Versioned Chip Endorsement Key (per chip and TCB).
    Vcek,
    /// Versioned Loaded Endorsement Key (per cloud provider).
    Vlek,
    /// Not signed.
    #[serde(rename = "none")]
    Unsigned,
    /// Values 2-6 are reserved.
    Reserved,
}

impl SigningKey {
    fn from_field(v: u32) -> Self {
        match v {
            0 => Self::Vcek,
            1 => Self::Vlek,
            7 => Self::Unsigned,
            _ => Self::Reserved,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Vcek => "VCEK",
            Self::Vlek => "VLEK",
            Self::Unsigned => "none",
            Self::Reserved => "reserved",
        }
    }
}

impl fmt::Display for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

// ---------------------------------------------------------------------------
// The report.

/// A parsed SNP attestation report: the `sev` crate's typed struct, plus the
/// raw bytes (for signature checks) and the TCB layout used to decode it.
#[derive(Clone, Debug)]
pub struct SnpReport {
    report: AttestationReport,
    raw: Box<[u8; REPORT_LEN]>,
    product: Option<SnpProduct>,
    tcb_layout: TcbLayout,
}

/// Parse a raw 1184-byte SNP attestation report (version 2, 3 or 5).
///
/// TCB layout: v3+ reports carry CPUID family/model, which name the product.
/// v2 reports do not; for those we follow the `sev` crate: a CHIP_ID with
/// only its first 8 bytes set is Turin-like, anything else (including a
/// masked, all-zero CHIP_ID) is decoded with the Milan/Genoa layout. Turin
/// firmware emits v3+ reports, so in practice v2 means Milan or Genoa.
pub fn parse_report(bytes: &[u8]) -> Result<SnpReport, EvidenceError> {
    let raw: Box<[u8; REPORT_LEN]> =
        bytes
            .try_into()
            .map(Box::new)
            .map_err(|_| EvidenceError::SnpWrongSize {
                actual: bytes.len(),
                expected: REPORT_LEN,
            })?;
    let version = raw_u32(&raw, OFF_VERSION);
    if !matches!(version, 2 | 3 | 5) {
        return Err(EvidenceError::SnpUnsupportedVersion { version });
    }

    let chip_id = &raw[OFF_CHIP_ID..OFF_CHIP_ID + 64];
    let chip_id_masked = chip_id.iter().all(|b| *b == 0);
    let (product, tcb_layout) = if version >= 3 {
        let (fam, model) = (raw[OFF_CPUID_FAM], raw[OFF_CPUID_MOD]);
        let product =
            SnpProduct::from_cpuid(fam, model).ok_or_else(|| EvidenceError::SnpDecode {
                version,
                reason: format!(
                "unknown CPUID family {fam:#04x} model {model:#04x}: cannot tell the product, so \
                 the TCB fields cannot be decoded"
            ),
            })?;
        (Some(product), product.tcb_layout())
    } else if !chip_id_masked && chip_id[8..].iter().all(|b| *b == 0) {
        (None, TcbLayout::Turin)
    } else {
        (None, TcbLayout::MilanGenoa)
    };

    // `sev` refuses v2 reports with a masked CHIP_ID because it cannot guess
    // the TCB layout from it. Hand it a copy with a non-Turin-like CHIP_ID
    // (so it uses the Milan/Genoa layout, as decided above) and restore the
    // zeros in the result. The raw bytes we keep are untouched.
    let report = if version == 2 && chip_id_masked {
        let mut copy = *raw;
        copy[OFF_CHIP_ID..OFF_CHIP_ID + 64].fill(0xFF);
        AttestationReport::from_bytes(&copy).map(|mut r| {
            r.chip_id = [0; 64];
            r
        })
    } else {
        AttestationReport::from_bytes(&raw[..])
    }
    .map_err(|e| EvidenceError::SnpDecode {
        version,
        reason: e.to_string(),
    })?;

    Ok(SnpReport {
        report,
        raw,
        product,
        tcb_layout,
    })
}

impl SnpReport {
    /// The `sev` crate's view of the report.
    pub fn report(&self) -> &AttestationReport {
        &self.report
    }

    /// The report exactly as received.
    pub fn raw(&self) -> &[u8; REPORT_LEN] {
        &self.raw
    }

    /// Report version (2, 3 or 5).
    pub fn version(&self) -> u32 {
        self.report.version
    }

    /// REPORT_DATA: the 64 bytes the guest bound into the report.
    pub fn report_data(&self) -> &[u8; 64] {
        &self.report.report_data
    }

    /// MEASUREMENT: the launch digest.
    pub fn measurement(&self) -> &[u8; 48] {
        &self.report.measurement
    }

    /// HOST_DATA: 32 bytes the host chose at launch (usable to bind host config).
    pub fn host_data(&self) -> &[u8; 32] {
        &self.report.host_data
    }

    /// The product, when the report says (v3+ CPUID fields).
    pub fn product(&self) -> Option<SnpProduct> {
        self.product
    }

    /// The TCB layout used to decode the TCB fields.
    pub fn tcb_layout(&self) -> TcbLayout {
        self.tcb_layout
    }

    /// Guest policy DEBUG bit: the host may debug (read) the guest.
    pub fn debug(&self) -> bool {
        self.report.policy.debug_allowed()
    }

    /// KEY_INFO.SIGNING_KEY.
    pub fn signing_key(&self) -> SigningKey {
        SigningKey::from_field(self.report.key_info.signing_key())
    }

    /// REPORTED_TCB, decoded with [`Self::tcb_layout`].
    pub fn reported_tcb(&self) -> Tcb {
        self.tcb_at(OFF_REPORTED_TCB, self.tcb_layout)
    }

    fn tcb_at(&self, off: usize, layout: TcbLayout) -> Tcb {
        Tcb::decode(raw_u64(&self.raw, off), layout)
    }

    fn fw_version(&self, off: usize) -> FirmwareVersion {
        FirmwareVersion {
            major: self.raw[off + 2],
            minor: self.raw[off + 1],
            build: self.raw[off],
        }
    }

    /// Operator-facing summary (serializable).
    pub fn summary(&self) -> SnpSummary {
        let r = &self.report;
        let policy_raw = raw_u64(&self.raw, OFF_POLICY);
        let plat_raw = raw_u64(&self.raw, OFF_PLATFORM_INFO);
        let p = &r.policy;
        let pi = &r.plat_info;
        let layout = self.tcb_layout;
        SnpSummary {
            tee: "snp",
            version: r.version,
            product: self.product,
            tcb_layout: layout,
            guest_svn: r.guest_svn,
            policy: SnpPolicy {
                raw: format!("{policy_raw:#x}"),
                abi_major: p.abi_major(),
                abi_minor: p.abi_minor(),
                smt: p.smt_allowed(),
                migrate_ma: p.migrate_ma_allowed(),
                debug: p.debug_allowed(),
                single_socket: p.single_socket_required(),
                cxl_allowed: p.cxl_allowed(),
                mem_aes_256_xts: p.mem_aes_256_xts(),
                rapl_dis: p.rapl_dis(),
                ciphertext_hiding: p.ciphertext_hiding(),
                page_swap_disable: p.page_swap_disabled(),
            },
            vmpl: r.vmpl,
            sig_algo: r.sig_algo,
            signing_key: self.signing_key(),
            author_key_en: r.key_info.author_key_en(),
            mask_chip_key: r.key_info.mask_chip_key(),
            measurement: hex::encode(r.measurement),
            report_data: hex::encode(r.report_data),
            host_data: hex::encode(r.host_data),
            id_key_digest: hex::encode(r.id_key_digest),
            author_key_digest: hex::encode(r.author_key_digest),
            family_id: hex::encode(r.family_id),
            image_id: hex::encode(r.image_id),
            report_id: hex::encode(r.report_id),
            report_id_ma: hex::encode(r.report_id_ma),
            chip_id: hex::encode(r.chip_id),
            current_tcb: self.tcb_at(OFF_CURRENT_TCB, layout),
            reported_tcb: self.tcb_at(OFF_REPORTED_TCB, layout),
            committed_tcb: self.tcb_at(OFF_COMMITTED_TCB, layout),
            launch_tcb: self.tcb_at(OFF_LAUNCH_TCB, layout),
            current_version: self.fw_version(OFF_CURRENT_VERSION),
            committed_version: self.fw_version(OFF_COMMITTED_VERSION),
            platform_info: SnpPlatformInfo {
                raw: format!("{plat_raw:#x}"),
                smt_enabled: pi.smt_enabled(),
                tsme_enabled: pi.tsme_enabled(),
                ecc_enabled: pi.ecc_enabled(),
                rapl_disabled: pi.rapl_disabled(),
                ciphertext_hiding_enabled: pi.ciphertext_hiding_enabled(),
                alias_check_complete: pi.alias_check_complete(),
                tio_enabled: pi.tio_enabled(),
            },
            cpuid: (r.version >= 3).then(|| Cpuid {
                family: self.raw[OFF_CPUID_FAM],
                model: self.raw[OFF_CPUID_MOD],
                stepping: self.raw[OFF_CPUID_STEP],
            }),
            launch_mit_vector: r.launch_mit_vector.map(|v| format!("{v:#x}")),
            current_mit_vector: r.current_mit_vector.map(|v| format!("{v:#x}")),
            debug: self.debug(),
        }
    }
}

/// Decoded guest policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SnpPolicy {
    /// The u64 as hex.
    pub raw: String,
    pub abi_major: u64,
    pub abi_minor: u64,
    pub smt: bool,
    pub migrate_ma: bool,
    /// The host may debug the guest: nothing in it is confidential.
    pub debug: bool,
    pub single_socket: bool,
    pub cxl_allowed: bool,
    pub mem_aes_256_xts: bool,
    pub rapl_dis: bool,
    pub ciphertext_hiding: bool,
    pub page_swap_disable: bool,
}

/// Decoded PLATFORM_INFO.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SnpPlatformInfo {
    pub raw: String,
    pub smt_enabled: bool,
    pub tsme_enabled: bool,
    pub ecc_enabled: bool,
    pub rapl_disabled: bool,
    pub ciphertext_hiding_enabled: bool,
    pub alias_check_complete: bool,
    pub tio_enabled: bool,
}

/// CPUID family/model/stepping (v3+ reports).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Cpuid {
    pub family: u8,
    pub model: u8,
    pub stepping: u8,
}

/// SNP firmware version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct FirmwareVersion {
    pub major: u8,
    pub minor: u8,
    pub build: u8,
}

impl fmt::Display for FirmwareVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{} build {}", self.major, self.minor, self.build)
    }
}

/// What an operator (or a policy) looks at in an SNP report. Byte strings
/// are lower-case hex in report byte order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SnpSummary {
    /// Always "snp".
    pub tee: &'static str,
    pub version: u32,
    /// From CPUID (v3+); absent for v2 reports.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product: Option<SnpProduct>,
    /// Layout used to decode the TCB fields.
    pub tcb_layout: TcbLayout,
    pub guest_svn: u32,
    pub policy: SnpPolicy,
    pub vmpl: u32,
    pub sig_algo: u32,
    pub signing_key: SigningKey,
    pub author_key_en: bool,
    pub mask_chip_key: bool,
    pub measurement: String,
    pub report_data: String,
    pub host_data: String,
    pub id_key_digest: String,
    pub author_key_digest: String,
    pub family_id: String,
    pub image_id: String,
    pub report_id: String,
    pub report_id_ma: String,
    pub chip_id: String,
    pub current_tcb: Tcb,
    pub reported_tcb: Tcb,
    pub committed_tcb: Tcb,
    pub launch_tcb: Tcb,
    pub current_version: FirmwareVersion,
    pub committed_version: FirmwareVersion,
    pub platform_info: SnpPlatformInfo,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpuid: Option<Cpuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub launch_mit_vector: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_mit_vector: Option<String>,
    /// Policy DEBUG: if true, the guest's memory is readable by the host.
    pub debug: bool,
}

fn hex_or_zero(h: &str) -> &str {
    if h.bytes().all(|c| c == b'0') {
        "(zero)"
    } else {
        h
    }
}

impl fmt::Display for SnpReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.summary();
        let product = s.product.map_or_else(
            || "product not stated (v2)".to_string(),
            |p| {
                let c = s.cpuid.unwrap_or(Cpuid {
                    family: 0,
                    model: 0,
                    stepping: 0,
                });
                format!(
                    "{p}, cpuid {:#04x}/{:#04x}/{:#04x}",
                    c.family, c.model, c.stepping
                )
            },
        );
        writeln!(
            f,
            "SEV-SNP report v{} ({product}), signed by {}, VMPL {}",
            s.version, s.signing_key, s.vmpl
        )?;
        if s.debug {
            writeln!(
                f,
                "  WARNING: policy allows DEBUG: the host can read this guest's memory"
            )?;
        }
        let p = &s.policy;
        writeln!(
            f,
            "  policy          {} (abi>={}.{} smt={} migrate_ma={} debug={} single_socket={})",
            p.raw, p.abi_major, p.abi_minor, p.smt, p.migrate_ma, p.debug, p.single_socket
        )?;
        writeln!(f, "  guest_svn       {}", s.guest_svn)?;
        writeln!(f, "  measurement     {}", s.measurement)?;
        writeln!(f, "  report_data     {}", s.report_data)?;
        writeln!(f, "  host_data       {}", hex_or_zero(&s.host_data))?;
        writeln!(f, "  id_key_digest   {}", hex_or_zero(&s.id_key_digest))?;
        writeln!(f, "  author_key      {}", hex_or_zero(&s.author_key_digest))?;
        writeln!(f, "  family_id       {}", hex_or_zero(&s.family_id))?;
        writeln!(f, "  image_id        {}", hex_or_zero(&s.image_id))?;
        writeln!(f, "  chip_id         {}", hex_or_zero(&s.chip_id))?;
        writeln!(f, "  reported_tcb    {}", s.reported_tcb)?;
        writeln!(f, "  current_tcb     {}", s.current_tcb)?;
        writeln!(f, "  committed_tcb   {}", s.committed_tcb)?;
        writeln!(f, "  launch_tcb      {}", s.launch_tcb)?;
        writeln!(f, "  firmware        {}", s.current_version)?;
        write!(f, "  platform_info   {}", s.platform_info.raw)?;
        if let (Some(l), Some(c)) = (&s.launch_mit_vector, &s.current_mit_vector) {
            write!(f, "\n  mit_vector      launch {l} current {c}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::verify::{der_small_uint, der_tlv, hwid_value, Role};
    use super::*;

    #[test]
    fn tcb_layouts_split_the_word_differently() {
        // SOURCES.md: Milan/Genoa 0x7308000000000003 = bl3 tee0 snp8 ucode115.
        let t = Tcb::decode(0x7308_0000_0000_0003, TcbLayout::MilanGenoa);
        assert_eq!(
            (t.fmc, t.bootloader, t.tee, t.snp, t.microcode),
            (None, 3, 0, 8, 115)
        );
        // Turin: byte0 fmc, byte1 bl, byte2 tee, byte3 snp, byte7 ucode.
        let t = Tcb::decode(0x4800_0000_0403_0201, TcbLayout::Turin);
        assert_eq!(
            (t.fmc, t.bootloader, t.tee, t.snp, t.microcode),
            (Some(1), 2, 3, 4, 0x48)
        );
    }

    #[test]
    fn products_from_cpuid_and_names() {
        assert_eq!(SnpProduct::from_cpuid(0x19, 0x01), Some(SnpProduct::Milan));
        assert_eq!(SnpProduct::from_cpuid(0x19, 0x11), Some(SnpProduct::Genoa));
        assert_eq!(SnpProduct::from_cpuid(0x19, 0xA0), Some(SnpProduct::Genoa));
        assert_eq!(SnpProduct::from_cpuid(0x1A, 0x02), Some(SnpProduct::Turin));
        assert_eq!(SnpProduct::from_cpuid(0x17, 0x31), None);
        assert_eq!(SnpProduct::from_name("Milan-B0"), Some(SnpProduct::Milan));
        assert_eq!(SnpProduct::from_name("Genoa"), Some(SnpProduct::Genoa));
        assert_eq!(SnpProduct::from_name("Rome"), None);
    }

    #[test]
    fn roles_from_common_names() {
        assert_eq!(
            Role::from_cn("ARK-Milan"),
            Role::Ark(Some(SnpProduct::Milan))
        );
        assert_eq!(
            Role::from_cn("SEV-Genoa"),
            Role::Ask(Some(SnpProduct::Genoa))
        );
        assert_eq!(
            Role::from_cn("SEV-VLEK-Milan"),
            Role::Asvk(Some(SnpProduct::Milan))
        );
        assert_eq!(Role::from_cn("SEV-VCEK"), Role::Vcek);
        assert_eq!(Role::from_cn("SEV-VLEK"), Role::Vlek);
        assert_eq!(Role::from_cn("example.com"), Role::Other);
    }

    #[test]
    fn der_helpers() {
        assert_eq!(der_small_uint(&[0x02, 0x01, 0x73]), Some(115));
        assert_eq!(der_small_uint(&[0x02, 0x02, 0x00, 0xDE]), Some(222));
        assert_eq!(der_small_uint(&[0x02, 0x02, 0x01, 0x00]), None);
        assert_eq!(der_small_uint(&[0x04, 0x01, 0x01]), None);
        let mut wrapped = vec![0x04, 0x40];
        wrapped.extend([7u8; 64]);
        assert_eq!(hwid_value(&wrapped), vec![7u8; 64]);
        // A raw 64-byte hwID that happens to start like an OCTET STRING header.
        let mut raw = vec![0x04, 0x3E];
        raw.extend([1u8; 62]);
        assert_eq!(hwid_value(&raw), raw);
        assert_eq!(
            der_tlv(&[0x16, 0x81, 0x02, b'h', b'i']),
            Some((0x16, &b"hi"[..], &[][..]))
        );
        assert_eq!(der_tlv(&[0x16, 0x05, b'h']), None);
    }

    #[test]
    fn wrong_sizes_and_versions_are_named() {
        let e = parse_report(&[0u8; 10]).unwrap_err();
        assert!(matches!(
            e,
            EvidenceError::SnpWrongSize {
                actual: 10,
                expected: 1184
            }
        ));
        let mut b = [0u8; REPORT_LEN];
        b[0] = 4;
        let e = parse_report(&b).unwrap_err();
        assert!(matches!(
            e,
            EvidenceError::SnpUnsupportedVersion { version: 4 }
        ));
        assert!(e.to_string().contains("version 4"));
    }

    #[test]
    fn v2_with_masked_chip_id_still_parses() {
        let mut b = [0u8; REPORT_LEN];
        b[0] = 2;
        b[OFF_REPORTED_TCB..OFF_REPORTED_TCB + 8]
            .copy_from_slice(&0x7308_0000_0000_0003u64.to_le_bytes());
        let r = parse_report(&b).unwrap();
        assert_eq!(r.report().chip_id, [0u8; 64]);
        assert_eq!(r.tcb_layout(), TcbLayout::MilanGenoa);
        assert_eq!(r.reported_tcb().microcode, 115);
        assert_eq!(r.raw()[..], b[..]);
    }
}
