//! `cvm-init evidence`: decode (and optionally verify) a saved SNP report or
//! TDX quote, or collect the live one from the hardware for diagnosis.
//!
//! Neither command loads the config: they read only the files and hardware
//! interfaces named on the command line. Evidence is public, so nothing here
//! is written with secret-file care.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use cvm_init::attest::{self, AttesterKind, Paths, RawEvidence};
use cvm_init::evidence::{self, snp, Decoded};

/// The certificates given to `evidence decode` to verify an SNP report.
pub struct SnpCerts<'a> {
    /// VCEK or VLEK, DER or PEM.
    pub vcek: &'a Path,
    /// ASK/ASVK (or a KDS cert_chain); the built-in AMD roots when absent.
    pub ask: Option<&'a Path>,
    /// ARK; the built-in AMD root when absent.
    pub ark: Option<&'a Path>,
}

fn read_file(path: &Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {what} {}", path.display()))
}

fn read_optional(path: Option<&Path>, what: &str) -> Result<Option<Vec<u8>>> {
    path.map(|p| read_file(p, what)).transpose()
}

/// `cvm-init evidence decode FILE [--json] [--vcek FILE [--ask FILE] [--ark FILE]]`.
pub fn decode(
    file: &Path,
    json: bool,
    certs: Option<&SnpCerts<'_>>,
    gpu_chain: Option<&Path>,
) -> Result<()> {
    let bytes = read_file(file, "evidence file")?;
    if decode_gpu(file, &bytes, json, gpu_chain)? {
        return Ok(());
    }
    if gpu_chain.is_some() {
        bail!(
            "{}: --gpu-chain verifies an NVIDIA GPU attestation report (SPDM, starting 11 e0), and this is not one",
            file.display()
        );
    }
    if decode_azure(file, &bytes, json, certs.is_some())? {
        return Ok(());
    }
    let decoded =
        evidence::decode(&bytes).with_context(|| format!("cannot decode {}", file.display()))?;

    let verification = match certs {
        None => None,
        Some(certs) => Some(verify(&decoded, file, certs)?),
    };

    if json {
        let mut out = decoded.summary_json();
        if let Some(v) = &verification {
            let value = serde_json::to_value(v).context("serialising the verification result")?;
            insert(&mut out, "verification", value)?;
        }
        print_json(&out)
    } else {
        println!("{decoded}");
        if let Some(v) = &verification {
            println!("{}", verification_line(v));
        }
        Ok(())
    }
}

/// An NVIDIA GPU attestation report (binary or hex text), optionally
/// verified against its chain. `Ok(false)` when the input is not one.
fn decode_gpu(file: &Path, bytes: &[u8], json: bool, chain: Option<&Path>) -> Result<bool> {
    use evidence::gpu;
    let head = bytes.get(..4).unwrap_or_default();
    if head != [0x11, 0xe0, 0x01, 0xff] && !head.eq_ignore_ascii_case(b"11e0") {
        return Ok(false);
    }
    let report =
        gpu::parse_report(bytes).with_context(|| format!("cannot decode {}", file.display()))?;
    let verified = match chain {
        None => None,
        Some(p) => {
            let text = String::from_utf8(read_file(p, "GPU certificate chain")?)
                .with_context(|| format!("{} is not PEM text", p.display()))?;
            let leaf = gpu::verify_chain(&gpu::pem_chain(&text)?)?;
            report.verify_signature(&leaf)?;
            Some(gpu::fingerprint(&leaf))
        }
    };
    let measurements: serde_json::Map<String, serde_json::Value> = report
        .blocks
        .iter()
        .map(|b| (b.index.to_string(), hex::encode(&b.value).into()))
        .collect();
    let value = serde_json::json!({
        "format": "nvidia-spdm-measurements",
        "requester_nonce": hex::encode(report.requester_nonce),
        "responder_nonce": hex::encode(report.responder_nonce),
        "driver_version": report.driver_version(),
        "vbios_version": report.vbios_version(),
        "measurement_count": report.blocks.len(),
        "measurements": measurements,
        "verified_leaf_sha256": verified,
    });
    if json {
        print_json(&value)?;
    } else {
        println!("NVIDIA GPU attestation report (SPDM 1.1 MEASUREMENTS, ECDSA P-384)");
        println!(
            "  nonce (requester): {}",
            hex::encode(report.requester_nonce)
        );
        println!(
            "  driver {}, VBIOS {}",
            report.driver_version().unwrap_or_default(),
            report.vbios_version().unwrap_or_default()
        );
        println!("  {} measurement blocks", report.blocks.len());
        for b in report
            .blocks
            .iter()
            .filter(|b| b.value.iter().any(|&x| x != 0))
        {
            println!("  measurement {:>2}: {}", b.index, hex::encode(&b.value));
        }
        match verified {
            Some(fp) => println!(
                "  verified: signature by the chain's leaf (SHA-256 {fp}), chain up to NVIDIA Device Identity CA (SHA-256 {})",
                gpu::NVIDIA_ROOT_SHA256
            ),
            None => println!("  not verified (give --gpu-chain FILE)"),
        }
    }
    Ok(true)
}

/// An Azure HCL report, or Trustee's az-snp-vtpm / az-tdx-vtpm evidence
/// JSON: decoded, its internal bindings checked (claims, AK, quote, PCRs).
/// `Ok(false)` when the input is neither.
fn decode_azure(file: &Path, bytes: &[u8], json: bool, verify: bool) -> Result<bool> {
    use evidence::azure;
    let text_json = bytes
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{');
    let parsed: Option<serde_json::Value> = if text_json {
        serde_json::from_slice(bytes).ok()
    } else {
        None
    };
    let azure_json = parsed.as_ref().filter(|v| {
        v.get("hcl_report").is_some() || (v.get("report").is_some() && v.get("quote").is_some())
    });
    if !bytes.starts_with(azure::HCL_MAGIC) && azure_json.is_none() {
        return Ok(false);
    }
    if verify {
        bail!(
            "{}: --vcek verifies a plain SNP report; for Azure evidence, extract the inner report (bytes 0x20..0x4C0 of the HCL report) and verify that",
            file.display()
        );
    }
    let (text, value) = match azure_json {
        Some(v) => {
            let e = azure::parse_evidence(v)
                .with_context(|| format!("cannot decode {}", file.display()))?;
            (e.to_string(), e.summary_json())
        }
        None => {
            let h = azure::parse_hcl(bytes)
                .with_context(|| format!("cannot decode {}", file.display()))?;
            (h.to_string(), h.summary_json())
        }
    };
    if json {
        print_json(&value)?;
    } else {
        println!("{text}");
    }
    Ok(true)
}

/// Checks an SNP report's signature and certificate chain; refuses TDX.
fn verify(decoded: &Decoded, file: &Path, certs: &SnpCerts<'_>) -> Result<snp::VerifiedBy> {
    let report = match decoded {
        Decoded::Snp(r) => r,
        Decoded::Tdx(_) => bail!(
            "{} is a TDX quote: verifying a TDX quote needs Intel collateral (the PCK \
             certificate chain and CRLs, TCB info and QE identity from Intel PCS) and is not \
             supported by this command; --vcek/--ask/--ark apply to SEV-SNP reports only. \
             Drop --vcek to decode the quote, and use a DCAP quote verifier to verify it",
            file.display()
        ),
    };
    let vcek = read_file(certs.vcek, "VCEK/VLEK certificate")?;
    let ask = read_optional(certs.ask, "ASK/ASVK certificate")?;
    let ark = read_optional(certs.ark, "ARK certificate")?;
    snp::verify_report(report, &vcek, ask.as_deref(), ark.as_deref()).with_context(|| {
        format!(
            "{} does not verify against {}",
            file.display(),
            certs.vcek.display()
        )
    })
}

fn verification_line(v: &snp::VerifiedBy) -> String {
    let roots = match v.roots {
        snp::RootSource::BuiltIn => "the built-in AMD ARK/ASK",
        snp::RootSource::Supplied => "the ASK/ARK given",
    };
    let name = v
        .vek_product_name
        .as_deref()
        .map(|n| format!(" (productName {n})"))
        .unwrap_or_default();
    format!(
        "verified: signature by the {key}{name}, chained to the AMD {product} root via {roots}; \
         {key} valid {nb} .. {na} (validity period not checked)",
        key = v.signing_key,
        product = v.product,
        nb = v.vek_not_before,
        na = v.vek_not_after,
    )
}

/// `cvm-init evidence collect [--attester KIND] [--report-data HEX] [--output FILE] [--json]`.
pub fn collect(
    kind: AttesterKind,
    allow_simulated_tee: bool,
    report_data_hex: Option<&str>,
    output: Option<&Path>,
    json: bool,
) -> Result<()> {
    let report_data =
        parse_report_data(report_data_hex.unwrap_or("")).context("the --report-data argument")?;
    let attester = attest::select(kind, allow_simulated_tee, &Paths::default())
        .with_context(|| format!("choosing the attester (--attester {kind})"))?;
    let raw = attester
        .raw(&report_data)
        .with_context(|| format!("reading the report from {}", attester.describe()))?;
    let simulated = attester.tee() == kbs_types::Tee::Sample;

    // Save the bytes before decoding: a report this decoder cannot read is
    // exactly what someone diagnosing a failure wants to keep.
    let written = output.map(|out| save(out, &raw)).transpose()?;

    let collection = serde_json::json!({
        "attester": attester.describe(),
        "provider": raw.provider,
        "simulated": simulated,
        "requested_report_data": hex::encode(report_data),
        "report_bytes": raw.report.len(),
        "aux_bytes": raw.aux.as_ref().map(Vec::len),
        "output": written.as_ref().map(|w| w.report.display().to_string()),
        "aux_output": written.as_ref().and_then(|w| w.aux.as_ref()).map(|p| p.display().to_string()),
    });

    if simulated {
        // The simulated report is a text marker, not hardware evidence: there
        // is nothing to decode.
        if json {
            return print_json(&serde_json::json!({
                "tee": "sample",
                "simulated": true,
                "report_data": hex::encode(report_data),
                "collection": collection,
            }));
        }
        println!("SIMULATED TEE report: made up, NOT hardware evidence and NOT secure");
        println!("  report_data     {}", hex::encode(report_data));
        print_saved(written.as_ref());
        return Ok(());
    }

    let decoded = evidence::decode(&raw.report).with_context(|| {
        format!(
            "cannot decode the {}-byte report from {}{}",
            raw.report.len(),
            raw.provider,
            match &written {
                Some(w) => format!(" (raw bytes saved to {})", w.report.display()),
                None => " (pass --output FILE to keep the raw bytes)".into(),
            }
        )
    })?;
    if json {
        let mut out = decoded.summary_json();
        insert(&mut out, "collection", collection)?;
        print_json(&out)
    } else {
        println!("collected from {} ({})", raw.provider, attester.describe());
        println!("{decoded}");
        if let Some(aux) = &raw.aux {
            println!("  aux blob        {} bytes", aux.len());
        }
        print_saved(written.as_ref());
        Ok(())
    }
}

/// `cvm-init evidence collect-gpu [--nonce HEX] [--output FILE]`: the
/// `nvidia` evidence of every GPU, as the broker session would send it.
pub fn collect_gpu(nonce_hex: Option<&str>, output: Option<&Path>) -> Result<()> {
    use cvm_init::attest::gpu::{GpuCollector, REPORT_NONCE_LEN};
    let mut nonce = [0u8; REPORT_NONCE_LEN];
    if let Some(h) = nonce_hex {
        let bytes = hex::decode(h.trim()).context("the --nonce argument is not hex")?;
        if bytes.len() != REPORT_NONCE_LEN {
            bail!(
                "the --nonce argument is {} bytes; a GPU nonce is {REPORT_NONCE_LEN}",
                bytes.len()
            );
        }
        nonce.copy_from_slice(&bytes);
    }
    let collector = GpuCollector::from_policy(cvm_init::config::GpuPolicy::Required)?
        .context("no GPU to collect from")?;
    let evidence = collector.collect(&nonce)?;
    let text = serde_json::to_string_pretty(&evidence).context("serialising the evidence")?;
    match output {
        Some(p) => std::fs::write(p, format!("{text}\n"))
            .with_context(|| format!("cannot write the evidence to {}", p.display()))?,
        None => println!("{text}"),
    }
    Ok(())
}

/// Where `collect --output` wrote the report and aux blob.
struct Written {
    report: PathBuf,
    aux: Option<PathBuf>,
}

fn save(out: &Path, raw: &RawEvidence) -> Result<Written> {
    std::fs::write(out, &raw.report)
        .with_context(|| format!("cannot write the report to {}", out.display()))?;
    let aux = match &raw.aux {
        None => None,
        Some(aux) => {
            let mut name = OsString::from(out.as_os_str());
            name.push(".aux");
            let path = PathBuf::from(name);
            std::fs::write(&path, aux)
                .with_context(|| format!("cannot write the aux blob to {}", path.display()))?;
            Some(path)
        }
    };
    Ok(Written {
        report: out.to_path_buf(),
        aux,
    })
}

fn print_saved(written: Option<&Written>) {
    if let Some(w) = written {
        println!("wrote the raw report to {}", w.report.display());
        if let Some(aux) = &w.aux {
            println!("wrote the aux blob to {}", aux.display());
        }
    }
}

/// Up to 64 bytes of hex (an optional `0x` prefix is allowed), left-aligned
/// and zero-padded to 64 bytes.
fn parse_report_data(text: &str) -> Result<[u8; 64]> {
    let text = text.trim();
    let text = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .unwrap_or(text);
    let bytes = hex::decode(text).with_context(|| {
        format!("{text:?} is not hex (expected up to 128 hex digits, an even number)")
    })?;
    let mut out = [0u8; 64];
    match out.get_mut(..bytes.len()) {
        Some(prefix) => prefix.copy_from_slice(&bytes),
        None => bail!(
            "{} bytes given; REPORT_DATA holds at most 64 (128 hex digits)",
            bytes.len()
        ),
    }
    Ok(out)
}

fn insert(out: &mut serde_json::Value, key: &str, value: serde_json::Value) -> Result<()> {
    out.as_object_mut()
        .context("the evidence summary is not a JSON object")?
        .insert(key.to_owned(), value);
    Ok(())
}

fn print_json(value: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value).context("formatting JSON")?;
    println!("{text}");
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn report_data_is_left_aligned_and_padded() {
        assert_eq!(parse_report_data("").unwrap(), [0u8; 64]);
        let rd = parse_report_data("0x0102ff").unwrap();
        assert_eq!(rd[..3], [1, 2, 0xff]);
        assert_eq!(rd[3..], [0u8; 61]);
        let full = "ab".repeat(64);
        assert_eq!(parse_report_data(&full).unwrap(), [0xab; 64]);
    }

    #[test]
    fn report_data_rejects_bad_input() {
        let e = format!("{:#}", parse_report_data(&"00".repeat(65)).unwrap_err());
        assert!(e.contains("65 bytes"), "{e}");
        assert!(parse_report_data("abc").is_err());
        assert!(parse_report_data("zz").is_err());
    }
}
