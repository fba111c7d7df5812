//! Intel TDX: a quote from configfs-tsm (provider `tdx_guest`), plus the CC
//! event log (ACPI CCEL table data) when the firmware publishes one.
//!
//! Evidence (Trustee's `tdx` verifier, KBS-PROTOCOL.md):
//! `{"quote": "<base64 std>", "cc_eventlog": "<base64 std>" | null}`.
//! `/dev/tdx_guest` alone gives only a TDREPORT, which a remote verifier
//! cannot check; it is not used (see `AttestError::TdxNeedsConfigfsTsm`).

use std::io;
use std::path::PathBuf;

use base64::Engine as _;

use super::tsm::{Tsm, PROVIDER_TDX};
use super::{
    check_report_data, report_data, show, AttestError, Attester, HostData, RawEvidence, DIGEST_LEN,
    HOST_DATA_PROBE,
};
use crate::evidence::tdx::{parse_quote, TdxQuote};

/// TDX attester.
#[derive(Debug)]
pub struct TdxAttester {
    tsm: Tsm,
    ccel: PathBuf,
}

impl TdxAttester {
    /// configfs-tsm at `tsm` (its provider must read `tdx_guest`); the CC
    /// event log is read from `ccel` when it exists.
    pub fn new(tsm: Tsm, ccel: PathBuf) -> Self {
        TdxAttester { tsm, ccel }
    }

    /// A quote binding `rd`, decoded and checked; returns (raw quote,
    /// decoded quote, provider).
    fn quote(&self, rd: &[u8; 64]) -> Result<(Vec<u8>, TdxQuote, String), AttestError> {
        let r = self.tsm.request(PROVIDER_TDX, rd, false)?;
        let from = format!("configfs-tsm {} ({})", r.provider, show(&r.entry));
        let quote = parse_quote(&r.outblob).map_err(|e| AttestError::TdxQuote {
            from: from.clone(),
            reason: e.to_string(),
        })?;
        check_report_data("TDX", &from, rd, quote.report_data())?;
        Ok((r.outblob, quote, from))
    }

    /// The CC event log, if the firmware published one. A missing table is
    /// normal (`null`); an unreadable one is logged and sent as `null`, as
    /// Trustee's attester does: the verifier's policy decides whether it
    /// needs the log.
    fn cc_eventlog(&self) -> Option<Vec<u8>> {
        match std::fs::read(&self.ccel) {
            Ok(b) => Some(b),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                log::info!(
                    "TDX: no CC event log at {}; sending cc_eventlog = null",
                    self.ccel.display()
                );
                None
            }
            Err(e) => {
                log::warn!(
                    "TDX: cannot read the CC event log {}: {e}; sending cc_eventlog = null",
                    self.ccel.display()
                );
                None
            }
        }
    }
}

impl Attester for TdxAttester {
    fn tee(&self) -> kbs_types::Tee {
        kbs_types::Tee::Tdx
    }

    fn evidence(&self, digest: &[u8; DIGEST_LEN]) -> Result<serde_json::Value, AttestError> {
        let rd = report_data(digest);
        let (raw, quote, from) = self.quote(&rd)?;
        let eventlog = self.cc_eventlog();
        log::info!(
            "attestation: TEE tdx, provider {from}, REPORT_DATA {}; quote v{} ({} bytes), \
             mr_td {}; cc_eventlog {}",
            hex::encode(rd),
            quote.version(),
            raw.len(),
            hex::encode(quote.measurement()),
            match &eventlog {
                Some(b) => format!("{} bytes", b.len()),
                None => "null".into(),
            },
        );
        let b64 = base64::engine::general_purpose::STANDARD;
        Ok(serde_json::json!({
            "quote": b64.encode(&raw),
            "cc_eventlog": eventlog.map(|b| b64.encode(b)),
        }))
    }

    fn raw(&self, report_data: &[u8; 64]) -> Result<RawEvidence, AttestError> {
        let (raw, quote, from) = self.quote(report_data)?;
        log::info!(
            "raw evidence: TEE tdx, provider {from}, REPORT_DATA {}, quote v{} ({} bytes)",
            hex::encode(report_data),
            quote.version(),
            raw.len()
        );
        Ok(RawEvidence {
            report: raw,
            aux: None,
            provider: from,
        })
    }

    fn host_data(&self) -> Result<HostData, AttestError> {
        let (_, quote, _) = self.quote(&HOST_DATA_PROBE)?;
        Ok(HostData {
            register: "TDX MRCONFIGID",
            value: quote.mr_config_id().to_vec(),
            width: Some(48),
        })
    }

    fn describe(&self) -> String {
        format!(
            "TDX via configfs-tsm {} (provider {PROVIDER_TDX})",
            self.tsm.root().display()
        )
    }
}
