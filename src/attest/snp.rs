//! AMD SEV-SNP: configfs-tsm (provider `sev_guest`) first, `/dev/sev-guest`
//! through the `sev` crate as the fallback for kernels before 6.7.
//!
//! Evidence (Trustee's `snp` verifier, KBS-PROTOCOL.md):
//! `{"attestation_report": <sev AttestationReport, serde form>,
//!   "cert_chain": [{"cert_type": "VCEK", "data": [DER bytes]}, ...] | null}`.
//! The certificate table comes from the host (configfs `auxblob` or the
//! extended report); all its entries are sent, as guest-components does, so
//! the verifier need not fetch the VCEK from AMD's rate-limited KDS.

use std::path::{Path, PathBuf};

use sev::firmware::guest::AttestationReport;
use sev::firmware::host::{CertTableEntry, CertType};

use super::tsm::{Tsm, PROVIDER_SNP};
use super::{
    check_report_data, report_data, show, AttestError, Attester, HostData, RawEvidence, DIGEST_LEN,
    HOST_DATA_PROBE,
};
pub use crate::evidence::snp::REPORT_LEN;
use sev::parser::ByteParser;

/// REPORT_DATA offset in the report.
const REPORT_DATA_OFFSET: usize = 0x50;
/// Size of one GHCB certificate-table entry: GUID(16), offset u32, length u32.
const CERT_ENTRY_LEN: usize = 24;
/// The device the `sev` crate opens; it cannot be redirected.
const SEV_GUEST_PATH: &str = "/dev/sev-guest";

#[derive(Debug)]
enum Backend {
    Tsm(Tsm),
    /// `/dev/sev-guest` (always the real one, see [`SnpAttester::with_device`]).
    Device,
}

/// SEV-SNP attester.
#[derive(Debug)]
pub struct SnpAttester {
    backend: Backend,
}

/// One SNP report as fetched, before it is checked.
struct Fetched {
    report: Vec<u8>,
    /// The raw certificate table, as the kernel gave it (configfs only).
    aux_raw: Option<Vec<u8>>,
    /// The parsed certificate table.
    certs: Option<Vec<CertTableEntry>>,
    provider: String,
}

impl SnpAttester {
    /// Use configfs-tsm at `tsm` (its provider must read `sev_guest`).
    pub fn with_tsm(tsm: Tsm) -> Self {
        SnpAttester {
            backend: Backend::Tsm(tsm),
        }
    }

    /// Use `/dev/sev-guest`. The `sev` crate's `Firmware::open()` opens that
    /// fixed path, so this works only when `dev` is the real `/dev`; any other
    /// `dev` is refused rather than silently reading the real device.
    pub fn with_device(dev: &Path, tsm_root: &Path) -> Result<Self, AttestError> {
        if dev != Path::new(super::REAL_DEV) {
            return Err(AttestError::SnpDevNotReal {
                dev: dev.to_path_buf(),
                tsm: tsm_root.to_path_buf(),
            });
        }
        Ok(SnpAttester {
            backend: Backend::Device,
        })
    }

    fn fetch(&self, rd: &[u8; 64]) -> Result<Fetched, AttestError> {
        match &self.backend {
            Backend::Tsm(tsm) => {
                let r = tsm.request(PROVIDER_SNP, rd, true)?;
                let from = show(&r.entry);
                let certs = match &r.auxblob {
                    Some(aux) => Some(parse_cert_table(aux, &from)?),
                    None => None,
                };
                Ok(Fetched {
                    report: r.outblob,
                    aux_raw: r.auxblob,
                    certs,
                    provider: format!("configfs-tsm {} ({from})", r.provider),
                })
            }
            Backend::Device => fetch_device(rd),
        }
    }

    /// Fetch a report and check it binds `rd`.
    fn fetch_checked(&self, rd: &[u8; 64]) -> Result<Fetched, AttestError> {
        let f = self.fetch(rd)?;
        let found = f
            .report
            .get(REPORT_DATA_OFFSET..REPORT_DATA_OFFSET + 64)
            .ok_or_else(|| AttestError::SnpReport {
                from: f.provider.clone(),
                len: f.report.len(),
                reason: "too short to hold REPORT_DATA".into(),
            })?;
        check_report_data("SNP", &f.provider, rd, found)?;
        Ok(f)
    }
}

fn fetch_device(rd: &[u8; 64]) -> Result<Fetched, AttestError> {
    let path = PathBuf::from(SEV_GUEST_PATH);
    let mut fw =
        sev::firmware::guest::Firmware::open().map_err(|source| AttestError::SnpDeviceOpen {
            path: path.clone(),
            source,
        })?;
    // VMPL 0: the report of the guest kernel's own privilege level.
    match fw.get_ext_report(None, Some(*rd), Some(0)) {
        Ok((report, certs)) => Ok(Fetched {
            report,
            aux_raw: certs.as_deref().map(encode_cert_table),
            certs,
            provider: format!("{SEV_GUEST_PATH} (SNP_GET_EXT_REPORT)"),
        }),
        Err(e) => {
            log::warn!(
                "SNP_GET_EXT_REPORT on {SEV_GUEST_PATH} failed ({e}); falling back to \
                 SNP_GET_REPORT, without the VCEK (the verifier will fetch it from AMD KDS)"
            );
            let report =
                fw.get_report(None, Some(*rd), Some(0))
                    .map_err(|e| AttestError::SnpFirmware {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
            Ok(Fetched {
                report,
                aux_raw: None,
                certs: None,
                provider: format!("{SEV_GUEST_PATH} (SNP_GET_REPORT)"),
            })
        }
    }
}

/// Decode a report with the shared evidence decoder (the `sev` crate's
/// form, which is what Trustee's verifier reads).
pub fn parse_report(bytes: &[u8], from: &str) -> Result<AttestationReport, AttestError> {
    crate::evidence::snp::parse_report(bytes)
        .map(|r| *r.report())
        .map_err(|e| AttestError::SnpReport {
            from: from.to_owned(),
            len: bytes.len(),
            reason: e.to_string(),
        })
}

/// Parse the GHCB certificate table (configfs `auxblob`): entries of
/// GUID(16) + offset u32 LE + length u32 LE, ended by an all-zero entry;
/// offsets are from the start of the table. The host writes this table, so
/// every offset and length is bounds-checked. GUIDs are read in RFC 4122
/// byte order, as the `sev` crate and go-sev-guest do.
pub fn parse_cert_table(blob: &[u8], from: &str) -> Result<Vec<CertTableEntry>, AttestError> {
    let bad = |reason: String| AttestError::CertTable {
        from: from.to_owned(),
        reason,
    };
    let mut entries = Vec::new();
    for (i, hdr) in blob.chunks(CERT_ENTRY_LEN).enumerate() {
        let hdr: &[u8; CERT_ENTRY_LEN] = hdr.try_into().map_err(|_| {
            bad(format!(
                "entry {i} is cut short ({} bytes) and no terminating zero entry was found",
                hdr.len()
            ))
        })?;
        let (guid, rest) = hdr.split_at(16);
        let offset = u32_le(&rest[0..4]) as usize;
        let len = u32_le(&rest[4..8]) as usize;
        if guid.iter().all(|&b| b == 0) {
            return Ok(entries);
        }
        let data = offset
            .checked_add(len)
            .and_then(|end| blob.get(offset..end))
            .ok_or_else(|| {
                bad(format!(
                    "entry {i} points at bytes {offset}..{offset}+{len}, outside the {}-byte table",
                    blob.len()
                ))
            })?;
        let cert_type =
            CertType::from_bytes(guid).map_err(|e| bad(format!("entry {i}: GUID: {e}")))?;
        entries.push(CertTableEntry::new(cert_type, data.to_vec()));
    }
    Err(bad(
        "no terminating all-zero entry before the end of the table".into(),
    ))
}

fn u32_le(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(b);
    u32::from_le_bytes(a)
}

/// Encode entries as a GHCB certificate table (the inverse of
/// [`parse_cert_table`]). Entries whose type cannot be encoded are skipped.
pub fn encode_cert_table(entries: &[CertTableEntry]) -> Vec<u8> {
    let guids: Vec<([u8; 16], &[u8])> = entries
        .iter()
        .filter_map(|e| Some((e.cert_type.to_bytes().ok()?, e.data())))
        .collect();
    let header_len = (guids.len() + 1) * CERT_ENTRY_LEN;
    let mut table = Vec::new();
    let mut data = Vec::new();
    for (guid, bytes) in &guids {
        let offset = header_len + data.len();
        table.extend_from_slice(guid);
        table.extend_from_slice(&u32::try_from(offset).unwrap_or(u32::MAX).to_le_bytes());
        table.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_le_bytes());
        data.extend_from_slice(bytes);
    }
    table.extend_from_slice(&[0u8; CERT_ENTRY_LEN]);
    table.extend_from_slice(&data);
    table
}

fn cert_summary(certs: &Option<Vec<CertTableEntry>>) -> String {
    match certs {
        None => "none (the verifier will fetch the VCEK from AMD KDS)".into(),
        Some(c) if c.is_empty() => "empty (the verifier will fetch the VCEK from AMD KDS)".into(),
        Some(c) => c
            .iter()
            .map(|e| format!("{:?} ({} bytes)", e.cert_type, e.data.len()))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

impl Attester for SnpAttester {
    fn tee(&self) -> kbs_types::Tee {
        kbs_types::Tee::Snp
    }

    fn evidence(&self, digest: &[u8; DIGEST_LEN]) -> Result<serde_json::Value, AttestError> {
        let rd = report_data(digest);
        let f = self.fetch_checked(&rd)?;
        let report = parse_report(&f.report, &f.provider)?;
        log::info!(
            "attestation: TEE snp, provider {}, REPORT_DATA {}; measurement {}, host_data {}, \
             policy {:#x}, vmpl {}, reported_tcb bl{} tee{} snp{} ucode{}; certificates: {}",
            f.provider,
            hex::encode(rd),
            hex::encode(report.measurement),
            hex::encode(report.host_data),
            u64::from(report.policy),
            report.vmpl,
            report.reported_tcb.bootloader,
            report.reported_tcb.tee,
            report.reported_tcb.snp,
            report.reported_tcb.microcode,
            cert_summary(&f.certs),
        );
        Ok(serde_json::json!({
            "attestation_report": serde_json::to_value(report)?,
            "cert_chain": serde_json::to_value(&f.certs)?,
        }))
    }

    fn raw(&self, report_data: &[u8; 64]) -> Result<RawEvidence, AttestError> {
        let f = self.fetch_checked(report_data)?;
        log::info!(
            "raw evidence: TEE snp, provider {}, REPORT_DATA {}, {} report bytes, certificates: {}",
            f.provider,
            hex::encode(report_data),
            f.report.len(),
            cert_summary(&f.certs),
        );
        Ok(RawEvidence {
            report: f.report,
            aux: f.aux_raw,
            provider: f.provider,
        })
    }

    fn host_data(&self) -> Result<HostData, AttestError> {
        let f = self.fetch_checked(&HOST_DATA_PROBE)?;
        let report = parse_report(&f.report, &f.provider)?;
        Ok(HostData {
            register: "SNP HOST_DATA",
            value: report.host_data.to_vec(),
            width: Some(32),
        })
    }

    fn describe(&self) -> String {
        match &self.backend {
            Backend::Tsm(tsm) => format!(
                "SNP via configfs-tsm {} (provider {PROVIDER_SNP})",
                tsm.root().display()
            ),
            Backend::Device => format!("SNP via {SEV_GUEST_PATH} (sev crate ioctl)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vcek() -> Vec<u8> {
        std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("testdata/evidence/snp/trustee-genoa-vcek.der"),
        )
        .expect("VCEK sample")
    }

    #[test]
    fn cert_table_round_trip_and_guids() {
        let entries = vec![
            CertTableEntry::new(CertType::VCEK, vcek()),
            CertTableEntry::new(CertType::ASK, vec![1, 2, 3]),
            CertTableEntry::new(CertType::ARK, vec![4]),
            CertTableEntry::new(CertType::VLEK, vec![]),
        ];
        let blob = encode_cert_table(&entries);
        // The VCEK GUID 63da758d-e664-4564-adc5-f4b93be8accd, RFC byte order.
        assert_eq!(hex::encode(&blob[..16]), "63da758de6644564adc5f4b93be8accd");
        let mut padded = blob.clone();
        padded.resize(4096, 0); // the kernel hands back whole pages
        assert_eq!(parse_cert_table(&padded, "t").expect("parse"), entries);
    }

    #[test]
    fn cert_table_rejects_out_of_bounds_and_unterminated() {
        let mut blob = encode_cert_table(&[CertTableEntry::new(CertType::VCEK, vec![9; 10])]);
        // length field of entry 0 -> huge
        blob[20..24].copy_from_slice(&u32::MAX.to_le_bytes());
        let e = parse_cert_table(&blob, "t").expect_err("oob");
        assert!(e.to_string().contains("outside"), "{e}");

        // One in-bounds entry (the table itself), then the end: no terminator.
        let mut unterminated = blob[..16].to_vec();
        unterminated.extend_from_slice(&0u32.to_le_bytes());
        unterminated.extend_from_slice(&24u32.to_le_bytes());
        let e = parse_cert_table(&unterminated, "t").expect_err("unterminated");
        assert!(e.to_string().contains("terminating"), "{e}");
        assert!(parse_cert_table(&[0u8; 30], "t").expect("empty").is_empty());
    }

    #[test]
    fn device_fallback_needs_real_dev() {
        let e = SnpAttester::with_device(Path::new("/tmp/fake-dev"), Path::new("/tsm"))
            .expect_err("must refuse");
        assert!(matches!(e, AttestError::SnpDevNotReal { .. }));
        assert!(e.to_string().contains("/tmp/fake-dev/sev-guest"), "{e}");
    }

    /// Hardware tier: runs only inside an SEV-SNP guest with /dev/sev-guest.
    #[test]
    #[ignore = "needs an SEV-SNP guest (/dev/sev-guest)"]
    fn hw_sev_guest_report() {
        if !Path::new(SEV_GUEST_PATH).exists() {
            eprintln!("skipped: {SEV_GUEST_PATH} absent");
            return;
        }
        let a = SnpAttester::with_device(Path::new("/dev"), Path::new("/sys/kernel/config/tsm"))
            .expect("real /dev");
        let v = a.evidence(&[7u8; 48]).expect("evidence");
        assert!(v["attestation_report"]["measurement"].is_array());
    }
}
