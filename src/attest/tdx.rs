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
use super::{check_report_data, report_data, show, AttestError, Attester, RawEvidence, DIGEST_LEN};

/// Quote header length (v4 and v5).
const HEADER_LEN: usize = 48;
/// v5: body_type u16 + body_size u32 precede the body.
const V5_BODY_DESCRIPTOR_LEN: usize = 6;
/// Offsets inside the TD quote body (the same for TDX 1.0 and 1.5 bodies).
const BODY_MR_TD: usize = 136;
const BODY_REPORT_DATA: usize = 520;
/// `tee_type` for TDX in the quote header.
const TEE_TYPE_TDX: u32 = 0x81;

/// TDX attester.
#[derive(Debug)]
pub struct TdxAttester {
    tsm: Tsm,
    ccel: PathBuf,
}

/// Where the fields policies look at sit in one quote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuoteLayout {
    pub version: u16,
    /// Quote offset of the TD quote body.
    pub body: usize,
}

impl QuoteLayout {
    /// Read the header of a v4 or v5 quote and check it is a TDX quote long
    /// enough to hold its body.
    pub fn of(quote: &[u8], from: &str) -> Result<Self, AttestError> {
        let bad = |reason: String| AttestError::TdxQuote {
            from: from.to_owned(),
            reason,
        };
        if quote.len() < HEADER_LEN + V5_BODY_DESCRIPTOR_LEN {
            return Err(bad(format!("only {} bytes", quote.len())));
        }
        let version = u16::from_le_bytes([quote[0], quote[1]]);
        let tee_type = u32::from_le_bytes([quote[4], quote[5], quote[6], quote[7]]);
        if tee_type != TEE_TYPE_TDX {
            return Err(bad(format!(
                "tee_type {tee_type:#x}, expected {TEE_TYPE_TDX:#x} (TDX)"
            )));
        }
        let body = match version {
            4 => HEADER_LEN,
            5 => {
                let body_type = u16::from_le_bytes([quote[48], quote[49]]);
                if body_type != 2 && body_type != 3 {
                    return Err(bad(format!(
                        "v5 body_type {body_type}, expected 2 (TDX 1.0) or 3 (TDX 1.5)"
                    )));
                }
                HEADER_LEN + V5_BODY_DESCRIPTOR_LEN
            }
            v => return Err(bad(format!("quote version {v}, expected 4 or 5"))),
        };
        if quote.len() < body + BODY_REPORT_DATA + 64 {
            return Err(bad(format!(
                "{} bytes, too short for a v{version} body",
                quote.len()
            )));
        }
        Ok(QuoteLayout { version, body })
    }

    pub fn report_data<'q>(&self, quote: &'q [u8]) -> &'q [u8] {
        &quote[self.body + BODY_REPORT_DATA..self.body + BODY_REPORT_DATA + 64]
    }

    pub fn mr_td<'q>(&self, quote: &'q [u8]) -> &'q [u8] {
        &quote[self.body + BODY_MR_TD..self.body + BODY_MR_TD + 48]
    }
}

impl TdxAttester {
    /// configfs-tsm at `tsm` (its provider must read `tdx_guest`); the CC
    /// event log is read from `ccel` when it exists.
    pub fn new(tsm: Tsm, ccel: PathBuf) -> Self {
        TdxAttester { tsm, ccel }
    }

    /// A quote binding `rd`, checked; returns (quote, layout, provider).
    fn quote(&self, rd: &[u8; 64]) -> Result<(Vec<u8>, QuoteLayout, String), AttestError> {
        let r = self.tsm.request(PROVIDER_TDX, rd, false)?;
        let from = format!("configfs-tsm {} ({})", r.provider, show(&r.entry));
        let layout = QuoteLayout::of(&r.outblob, &from)?;
        check_report_data("TDX", &from, rd, layout.report_data(&r.outblob))?;
        Ok((r.outblob, layout, from))
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
        let (quote, layout, from) = self.quote(&rd)?;
        let eventlog = self.cc_eventlog();
        log::info!(
            "attestation: TEE tdx, provider {from}, REPORT_DATA {}; quote v{} ({} bytes), \
             mr_td {}; cc_eventlog {}",
            hex::encode(rd),
            layout.version,
            quote.len(),
            hex::encode(layout.mr_td(&quote)),
            match &eventlog {
                Some(b) => format!("{} bytes", b.len()),
                None => "null".into(),
            },
        );
        let b64 = base64::engine::general_purpose::STANDARD;
        Ok(serde_json::json!({
            "quote": b64.encode(&quote),
            "cc_eventlog": eventlog.map(|b| b64.encode(b)),
        }))
    }

    fn raw(&self, report_data: &[u8; 64]) -> Result<RawEvidence, AttestError> {
        let (quote, layout, from) = self.quote(report_data)?;
        log::info!(
            "raw evidence: TEE tdx, provider {from}, REPORT_DATA {}, quote v{} ({} bytes)",
            hex::encode(report_data),
            layout.version,
            quote.len()
        );
        Ok(RawEvidence {
            report: quote,
            aux: None,
            provider: from,
        })
    }

    fn describe(&self) -> String {
        format!(
            "TDX via configfs-tsm {} (provider {PROVIDER_TDX})",
            self.tsm.root().display()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn sample(name: &str) -> Vec<u8> {
        std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("testdata/evidence/tdx")
                .join(name),
        )
        .expect("TDX sample")
    }

    /// Expected values from testdata/evidence/SOURCES.md.
    #[test]
    fn layout_v4_and_v5_samples() {
        let q = sample("teekit-gcp-tdx-quote-v4.dat");
        let l = QuoteLayout::of(&q, "t").expect("v4");
        assert_eq!(
            l,
            QuoteLayout {
                version: 4,
                body: 48
            }
        );
        assert_eq!(hex::encode(l.report_data(&q)), "806dfeec9d10c22a60b12751216d75fb358d83088ea72dd07eb49c84de24b8a49d483085c4350e545689955bdd10e1d8b55ef7c6d288a17032acece698e35db8");
        assert_eq!(hex::encode(l.mr_td(&q)), "409c0cd3e63d9ea54d817cf851983a220131262664ac8cd02cc6a2e19fd291d2fdd0cc035d7789b982a43a92a4424c99");

        let q = sample("trustee-tdx-quote-v5.dat");
        let l = QuoteLayout::of(&q, "t").expect("v5");
        assert_eq!(
            l,
            QuoteLayout {
                version: 5,
                body: 54
            }
        );
        assert_eq!(hex::encode(l.report_data(&q)), "6d6ab13b046cff606ac0074be13981b07b6325dba10b5facc96febf551c0c3be2b75f92fe1f88f4bb996969ad0174b4b7a70261b7b85c844f4b33a4674fd049f");
        assert_eq!(hex::encode(l.mr_td(&q)), "dfba221b48a22af8511542ee796603f37382800840dcd978703909bf8e64d4c8a1e9de86e7c9638bfcba422f3886400a");
    }

    #[test]
    fn layout_rejects_garbage() {
        let q = sample("teekit-gcp-tdx-quote-v4.dat");
        assert!(QuoteLayout::of(&q[..600], "t").is_err());
        let mut sgx = q.clone();
        sgx[4] = 0; // tee_type SGX
        assert!(QuoteLayout::of(&sgx, "t").is_err());
        let mut v3 = q;
        v3[0] = 3;
        let e = QuoteLayout::of(&v3, "t").expect_err("v3");
        assert!(e.to_string().contains("version 3"), "{e}");
        // An SNP report is no quote.
        let snp = std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("testdata/evidence/snp/trustee-genoa-vcek-report.bin"),
        )
        .expect("snp sample");
        assert!(QuoteLayout::of(&snp, "t").is_err());
    }
}
