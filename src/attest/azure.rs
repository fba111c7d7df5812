//! Azure confidential VMs (SNP and TDX behind the paravisor): Trustee's
//! `az-snp-vtpm` and `az-tdx-vtpm` evidence, from the vTPM.
//!
//! The guest never sees the hardware report interface. The paravisor (HCL)
//! keeps an HCL report in NV index 0x01400001: the SNP report or TDREPORT,
//! whose REPORT_DATA is SHA-256 of the runtime claims, which hold the vTPM
//! attestation key (AK, persistent handle 0x81000003). Per evidence
//! (docs/azure-vtpm-evidence.md has every offset and its source):
//!
//! 1. write REPORT_DATA (the 48-byte runtime-data digest, zero-padded to
//!    64) to NV index 0x01400002; the paravisor copies it into the claims'
//!    `user-data` and regenerates the report when 0x01400001 is next read
//!    from offset 0, at most once per 2 s;
//! 2. read 0x01400001 and check `user-data`; if it is stale, wait out the
//!    rate limit and read again. A paravisor that never refreshes (older
//!    HCLs, the swtpm test rig) gets evidence version 1: the boot-time
//!    report, with freshness from the quote alone, which Trustee accepts;
//!    a fresh report gets version 2, which binds the nonce into the
//!    hardware report too;
//! 3. check that the AK in the vTPM is the one the claims carry, read the
//!    24 SHA-256 PCRs and take a TPM2_Quote over them with the digest as
//!    `qualifyingData` (unpadded: Trustee compares it byte for byte), and
//!    check the quote ourselves (signature, PCR digest, nonce);
//! 4. SNP: the VCEK from the Azure IMDS; TDX: the TD quote of the TDREPORT
//!    from the IMDS quote service ([`Imds`]).
//!
//! The IMDS is served by the host: it is a cache of collateral, never a
//! trust anchor. The VCEK is trusted only because it chains to AMD's root
//! (checked by the broker) and the TD quote because DCAP verifies it.

use std::time::Duration;

use base64::Engine as _;
use kbs_types::Tee;
use rsa::traits::PublicKeyParts as _;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

pub use super::imds::{Imds, DEFAULT_IMDS};
use super::tpm::{Tpm, TpmError, NV_OWNER_RW};
use super::{report_data, AttestError, Attester, HostData, RawEvidence, DIGEST_LEN};
use crate::evidence::azure::{parse_evidence, parse_hcl, verify_quote, HclReport, HwReport};

/// The HCL report's NV index.
pub const HCL_REPORT_NV: u32 = 0x0140_0001;
/// The guest's input to the next report (`user-data`), 64 bytes.
pub const USER_DATA_NV: u32 = 0x0140_0002;
/// The paravisor's attestation key.
pub const AK_HANDLE: u32 = 0x8100_0003;
const USER_DATA_LEN: u16 = 64;
/// PCRs 0-23 of the SHA-256 bank, as Trustee hashes them.
const PCR_COUNT: u8 = 24;
/// OpenHCL regenerates the report at most once per 2 s.
pub const REFRESH_WAIT: Duration = Duration::from_millis(2100);
/// Reads of the report after writing user-data, before settling for v1.
const REFRESH_READS: usize = 2;

/// Which TEE sits behind the paravisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Platform {
    Snp,
    Tdx,
}

impl Platform {
    pub fn tee(self) -> Tee {
        match self {
            Platform::Snp => Tee::AzSnpVtpm,
            Platform::Tdx => Tee::AzTdxVtpm,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Platform::Snp => "az-snp-vtpm",
            Platform::Tdx => "az-tdx-vtpm",
        }
    }
}

fn hcl_error(tpm: &Tpm, e: impl std::fmt::Display) -> AttestError {
    AttestError::AzureHcl {
        from: format!("{} NV index {HCL_REPORT_NV:#010x}", tpm.describe()),
        reason: e.to_string(),
    }
}

/// Reads the HCL report, if this TPM has one: `None` for a TPM without the
/// paravisor's index (a plain vTPM, or bare metal).
pub fn probe(tpm: &Tpm) -> Result<Option<Platform>, AttestError> {
    match tpm.nv_read_public(HCL_REPORT_NV) {
        Err(e) if e.is_missing_handle() => return Ok(None),
        Err(e) => return Err(e.into()),
        Ok(_) => {}
    }
    let bytes = tpm.nv_read(HCL_REPORT_NV)?;
    let hcl = parse_hcl(&bytes).map_err(|e| hcl_error(tpm, e))?;
    Ok(Some(platform_of(&hcl)))
}

fn platform_of(hcl: &HclReport) -> Platform {
    match hcl.hw {
        HwReport::Snp(_) => Platform::Snp,
        HwReport::TdReport(_) => Platform::Tdx,
    }
}

/// The attester for an Azure CVM.
#[derive(Debug)]
pub struct AzureAttester {
    tpm: Tpm,
    platform: Platform,
    imds: Imds,
    refresh_wait: Duration,
}

impl AzureAttester {
    pub fn new(tpm: Tpm, platform: Platform, imds: Imds) -> Self {
        AzureAttester {
            tpm,
            platform,
            imds,
            refresh_wait: REFRESH_WAIT,
        }
    }

    /// Tests: a stand-in paravisor needs no 2 s pause.
    pub fn with_refresh_wait(mut self, wait: Duration) -> Self {
        self.refresh_wait = wait;
        self
    }

    /// Makes sure the user-data index is the paravisor's 64 bytes.
    fn user_data_index(&self) -> Result<(), AttestError> {
        match self.tpm.nv_read_public(USER_DATA_NV) {
            Ok(p) if p.size == usize::from(USER_DATA_LEN) => return Ok(()),
            Ok(p) => {
                log::info!(
                    "{}: NV index {USER_DATA_NV:#010x} is {} bytes, re-defining it as {USER_DATA_LEN}",
                    self.platform.name(),
                    p.size
                );
                self.tpm.nv_undefine(USER_DATA_NV)?;
            }
            Err(e) if e.is_missing_handle() => {}
            Err(e) => return Err(e.into()),
        }
        self.tpm
            .nv_define(USER_DATA_NV, USER_DATA_LEN, NV_OWNER_RW)
            .map_err(AttestError::from)
    }

    /// The HCL report after asking for one that carries `user`: (raw NV
    /// bytes, decoded, whether it is fresh).
    fn report(&self, user: &[u8; 64]) -> Result<(Vec<u8>, HclReport, bool), AttestError> {
        self.user_data_index()?;
        self.tpm.nv_write(USER_DATA_NV, user)?;
        let mut read = 0;
        loop {
            let bytes = self.tpm.nv_read(HCL_REPORT_NV)?;
            let hcl = parse_hcl(&bytes).map_err(|e| hcl_error(&self.tpm, e))?;
            if platform_of(&hcl) != self.platform {
                return Err(hcl_error(
                    &self.tpm,
                    format!(
                        "the report changed platform since detection (now {})",
                        platform_of(&hcl).name()
                    ),
                ));
            }
            read += 1;
            if hcl.user_data().as_deref() == Some(&user[..]) {
                return Ok((bytes, hcl, true));
            }
            if read >= REFRESH_READS {
                log::warn!(
                    "{}: the paravisor did not put our REPORT_DATA into the HCL report's user-data \
                     ({} reads, {:?} apart); sending evidence version 1: the nonce is bound by the \
                     TPM quote only",
                    self.platform.name(),
                    read,
                    self.refresh_wait
                );
                return Ok((bytes, hcl, false));
            }
            std::thread::sleep(self.refresh_wait);
        }
    }

    /// A quote over the PCRs binding `digest`, checked with `hcl`'s AK;
    /// returns the quote and the PCR values it covers.
    fn quote(
        &self,
        hcl: &HclReport,
        digest: &[u8; DIGEST_LEN],
    ) -> Result<(super::tpm::Quote, Vec<Vec<u8>>), AttestError> {
        let ak = hcl.ak().map_err(|e| hcl_error(&self.tpm, e))?;
        let tpm_ak = self.tpm.read_public_rsa(AK_HANDLE)?;
        let claimed = ak.n().to_bytes_be();
        if tpm_ak.modulus != claimed {
            return Err(AttestError::AzureAkMismatch {
                tpm: self.tpm.describe(),
            });
        }
        let pcrs: Vec<u8> = (0..PCR_COUNT).collect();
        let mut last = String::new();
        // A PCR extended between the read and the quote changes the digest:
        // read again once.
        for _ in 0..2 {
            let values = self.tpm.pcr_read_sha256(PCR_COUNT)?;
            let q = self.tpm.quote(AK_HANDLE, digest, &pcrs)?;
            match verify_quote(&q.message, &q.signature, &ak, &values) {
                Ok(parsed) if parsed.extra_data == digest[..] => return Ok((q, values)),
                Ok(parsed) => {
                    return Err(AttestError::AzureQuote {
                        reason: format!(
                            "the quote's extraData is {}, not the digest {} we asked for",
                            hex::encode(parsed.extra_data),
                            hex::encode(digest)
                        ),
                    })
                }
                Err(e) => last = e.to_string(),
            }
        }
        Err(AttestError::AzureQuote { reason: last })
    }

    fn evidence_json(&self, digest: &[u8; DIGEST_LEN]) -> Result<Value, AttestError> {
        let user = report_data(digest);
        let (bytes, hcl, fresh) = self.report(&user)?;
        let (quote, pcrs) = self.quote(&hcl, digest)?;
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE.encode(b);
        let version = if fresh { 2 } else { 1 };
        let mut ev = json!({
            "version": version,
            "tpm_quote": {
                "signature": hex::encode(&quote.signature),
                "message": hex::encode(&quote.message),
                "pcrs": pcrs.iter().map(hex::encode).collect::<Vec<_>>(),
            },
            "hcl_report": b64(&bytes),
        });
        match &hcl.hw {
            HwReport::Snp(_) => ev["vcek"] = json!(b64(&self.imds.vcek()?)),
            HwReport::TdReport(td) => {
                let q = self.imds.td_quote(&td[..])?;
                let parsed =
                    crate::evidence::tdx::parse_quote(&q).map_err(|e| AttestError::AzureImds {
                        url: self.imds.quote_url(),
                        reason: format!("the TD quote is malformed: {e}"),
                    })?;
                if parsed.report_data()[..32] != Sha256::digest(&hcl.claims)[..] {
                    return Err(AttestError::AzureImds {
                        url: self.imds.quote_url(),
                        reason: "the TD quote does not bind our runtime claims: it is not a quote \
                                 of our TDREPORT"
                            .into(),
                    });
                }
                ev["td_quote"] = json!(b64(&q));
            }
        }
        // What we send must decode the way a verifier reads it.
        parse_evidence(&ev).map_err(|e| hcl_error(&self.tpm, e))?;
        log::info!(
            "{}: evidence v{version}: quote extraData {}, runtime claims SHA-256 {}, PCR0 {}",
            self.platform.name(),
            hex::encode(digest),
            hex::encode(Sha256::digest(&hcl.claims)),
            pcrs.first().map(hex::encode).unwrap_or_default()
        );
        Ok(ev)
    }
}

impl Attester for AzureAttester {
    fn tee(&self) -> Tee {
        self.platform.tee()
    }

    fn evidence(&self, digest: &[u8; DIGEST_LEN]) -> Result<Value, AttestError> {
        self.evidence_json(digest)
    }

    fn raw(&self, report_data: &[u8; 64]) -> Result<RawEvidence, AttestError> {
        self.user_data_index()?;
        self.tpm.nv_write(USER_DATA_NV, report_data)?;
        Ok(RawEvidence {
            report: self.tpm.nv_read(HCL_REPORT_NV)?,
            aux: None,
            provider: format!("{} ({})", self.platform.name(), self.describe()),
        })
    }

    fn describe(&self) -> String {
        format!(
            "Azure vTPM at {} (HCL report NV {HCL_REPORT_NV:#010x}, AK {AK_HANDLE:#010x}), {} \
             behind the paravisor; collateral from {}",
            self.tpm.describe(),
            match self.platform {
                Platform::Snp => "SEV-SNP",
                Platform::Tdx => "TDX",
            },
            self.imds.base()
        )
    }

    fn host_data(&self) -> Result<HostData, AttestError> {
        Err(AttestError::AzureNoHostData)
    }
}

impl From<TpmError> for AttestError {
    fn from(e: TpmError) -> Self {
        AttestError::Tpm(Box::new(e))
    }
}

#[cfg(test)]
#[path = "azure_tests.rs"]
mod tests;
