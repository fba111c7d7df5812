//! SNP verification: the AMD certificates (ARK, ASK/ASVK, VCEK/VLEK), the
//! chain between them and the report's signature. The report decoder is
//! the parent module.

use p384::ecdsa::signature::Verifier;
use sev::certs::snp::{builtin, Certificate, Verifiable};

use super::*;

// ---------------------------------------------------------------------------
// Certificates.

const OID_PRODUCT_NAME: &str = "1.3.6.1.4.1.3704.1.2";
const OID_BL_SPL: &str = "1.3.6.1.4.1.3704.1.3.1";
const OID_TEE_SPL: &str = "1.3.6.1.4.1.3704.1.3.2";
const OID_SNP_SPL: &str = "1.3.6.1.4.1.3704.1.3.3";
const OID_UCODE_SPL: &str = "1.3.6.1.4.1.3704.1.3.8";
const OID_FMC_SPL: &str = "1.3.6.1.4.1.3704.1.3.9";
const OID_HWID: &str = "1.3.6.1.4.1.3704.1.4";

/// What a certificate is, from its subject common name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Role {
    Ark(Option<SnpProduct>),
    Ask(Option<SnpProduct>),
    Asvk(Option<SnpProduct>),
    Vcek,
    Vlek,
    Other,
}

impl Role {
    pub(super) fn from_cn(cn: &str) -> Self {
        match cn {
            "SEV-VCEK" => Role::Vcek,
            "SEV-VLEK" => Role::Vlek,
            _ => {
                if let Some(p) = cn.strip_prefix("ARK-") {
                    Role::Ark(SnpProduct::from_name(p))
                } else if let Some(p) = cn.strip_prefix("SEV-VLEK-") {
                    Role::Asvk(SnpProduct::from_name(p))
                } else if let Some(p) = cn.strip_prefix("SEV-") {
                    Role::Ask(SnpProduct::from_name(p))
                } else {
                    Role::Other
                }
            }
        }
    }
}

/// The SPL values a VCEK/VLEK was issued for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Spl {
    bl: Option<u8>,
    tee: Option<u8>,
    snp: Option<u8>,
    ucode: Option<u8>,
    fmc: Option<u8>,
}

/// A parsed certificate with the AMD extensions we use.
#[derive(Clone, Debug)]
struct AmdCert {
    cert: Certificate,
    role: Role,
    subject_cn: String,
    issuer_cn: String,
    product_name: Option<String>,
    hwid: Option<Vec<u8>>,
    spl: Spl,
    not_before: String,
    not_after: String,
}

/// Read one DER TLV with a short or 1-2 byte long length; returns (tag, value, rest).
pub(super) fn der_tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *b.first()?;
    let l0 = *b.get(1)?;
    let (len, hdr): (usize, usize) = match l0 {
        0..=0x7F => (usize::from(l0), 2),
        0x81 => (usize::from(*b.get(2)?), 3),
        0x82 => (usize::from(*b.get(2)?) << 8 | usize::from(*b.get(3)?), 4),
        _ => return None,
    };
    let value = b.get(hdr..hdr.checked_add(len)?)?;
    Some((tag, value, &b[hdr + len..]))
}

/// A small DER INTEGER (SPL values are 0..=255).
pub(super) fn der_small_uint(b: &[u8]) -> Option<u8> {
    match der_tlv(b)? {
        (0x02, v, []) => {
            let v = match v {
                [0, rest @ ..] if !rest.is_empty() => rest,
                v => v,
            };
            match v {
                [x] => Some(*x),
                _ => None,
            }
        }
        _ => None,
    }
}

/// hwID is the raw chip id (64 bytes; 8 on Turin) in older certificates and
/// an OCTET STRING wrapping it in newer ones.
pub(super) fn hwid_value(v: &[u8]) -> Vec<u8> {
    match der_tlv(v) {
        Some((0x04, inner, [])) if inner.len() == 64 || inner.len() == 8 => inner.to_vec(),
        _ => v.to_vec(),
    }
}

fn parse_amd_cert(der: &[u8], what: &'static str) -> Result<AmdCert, EvidenceError> {
    let cert_err = |reason: String| EvidenceError::Certificate { what, reason };
    let (_, x) = x509_parser::parse_x509_certificate(der).map_err(|e| cert_err(e.to_string()))?;
    let cn = |name: &x509_parser::x509::X509Name<'_>| {
        name.iter_common_name()
            .next()
            .and_then(|a| a.as_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let subject_cn = cn(x.subject());
    let issuer_cn = cn(x.issuer());
    let mut product_name = None;
    let mut hwid = None;
    let mut spl = Spl::default();
    for ext in x.extensions() {
        let v = ext.value;
        match ext.oid.to_id_string().as_str() {
            OID_PRODUCT_NAME => {
                product_name = match der_tlv(v) {
                    Some((0x16 | 0x0C | 0x13, s, [])) => {
                        Some(String::from_utf8_lossy(s).into_owned())
                    }
                    _ => Some(String::from_utf8_lossy(v).into_owned()),
                }
            }
            OID_HWID => hwid = Some(hwid_value(v)),
            OID_BL_SPL => spl.bl = der_small_uint(v),
            OID_TEE_SPL => spl.tee = der_small_uint(v),
            OID_SNP_SPL => spl.snp = der_small_uint(v),
            OID_UCODE_SPL => spl.ucode = der_small_uint(v),
            OID_FMC_SPL => spl.fmc = der_small_uint(v),
            _ => {}
        }
    }
    let cert = Certificate::from_der(der).map_err(|e| cert_err(e.to_string()))?;
    Ok(AmdCert {
        cert,
        role: Role::from_cn(&subject_cn),
        subject_cn,
        issuer_cn,
        product_name,
        hwid,
        spl,
        not_before: x.validity().not_before.to_string(),
        not_after: x.validity().not_after.to_string(),
    })
}

/// Load one DER certificate or any number of PEM certificates.
fn load_certs(input: &[u8], what: &'static str) -> Result<Vec<AmdCert>, EvidenceError> {
    let trimmed = input.trim_ascii_start();
    if trimmed.starts_with(b"-----BEGIN") {
        let mut out = Vec::new();
        for pem in x509_parser::pem::Pem::iter_from_buffer(trimmed) {
            let pem = pem.map_err(|e| EvidenceError::Certificate {
                what,
                reason: format!("bad PEM: {e}"),
            })?;
            if pem.label == "CERTIFICATE" {
                out.push(parse_amd_cert(&pem.contents, what)?);
            }
        }
        if out.is_empty() {
            return Err(EvidenceError::Certificate {
                what,
                reason: "no CERTIFICATE block in the PEM input".into(),
            });
        }
        Ok(out)
    } else {
        Ok(vec![parse_amd_cert(input, what)?])
    }
}

fn builtin_pair(p: SnpProduct) -> Result<(Certificate, Certificate), EvidenceError> {
    let r = match p {
        SnpProduct::Milan => builtin::milan::ark().and_then(|a| Ok((a, builtin::milan::ask()?))),
        SnpProduct::Genoa => builtin::genoa::ark().and_then(|a| Ok((a, builtin::genoa::ask()?))),
        SnpProduct::Turin => builtin::turin::ark().and_then(|a| Ok((a, builtin::turin::ask()?))),
        SnpProduct::Venice => {
            return Err(EvidenceError::MissingCertificate {
                what: "ARK/ASK",
                hint: "the sev crate has no built-in Venice roots; pass the ASK and ARK from \
                       AMD KDS (/vcek/v1/Venice/cert_chain)"
                    .into(),
            })
        }
    };
    r.map_err(|e| EvidenceError::Certificate {
        what: "built-in AMD root",
        reason: e.to_string(),
    })
}

/// Who vouched for a report or certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RootSource {
    /// The AMD ARK/ASK built into the `sev` crate.
    BuiltIn,
    /// The ASK/ASVK and/or ARK the caller passed.
    Supplied,
}

/// The outcome of a successful verification.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VerifiedBy {
    /// Product whose AMD root verified the chain.
    pub product: SnpProduct,
    /// VCEK or VLEK.
    pub signing_key: SigningKey,
    /// Whether the ARK/ASK came from the built-ins or from the caller.
    pub roots: RootSource,
    /// The VCEK/VLEK productName extension, e.g. "Milan-B0".
    pub vek_product_name: Option<String>,
    /// The VCEK/VLEK validity period. Not checked here: the caller decides
    /// which clock to trust (an expired VLEK may still be acceptable).
    pub vek_not_before: String,
    pub vek_not_after: String,
}

struct ChainInputs<'a> {
    vek: &'a AmdCert,
    pool: Vec<AmdCert>,
}

fn link_err(link: ChainLink, product: String, e: std::io::Error) -> EvidenceError {
    EvidenceError::ChainLinkFailed {
        link,
        product,
        detail: e.to_string(),
    }
}

fn check_chain(
    ark: &Certificate,
    inter: &Certificate,
    vek: &Certificate,
    label: &str,
) -> Result<(), EvidenceError> {
    (ark, ark)
        .verify()
        .map_err(|e| link_err(ChainLink::ArkSelfSigned, label.into(), e))?;
    (ark, inter)
        .verify()
        .map_err(|e| link_err(ChainLink::ArkSignsAsk, label.into(), e))?;
    (inter, vek)
        .verify()
        .map_err(|e| link_err(ChainLink::AskSignsVek, label.into(), e))
}

/// Verify ARK -> ASK/ASVK -> VEK; return how.
fn verify_chain_inner(inp: &ChainInputs<'_>) -> Result<VerifiedBy, EvidenceError> {
    let vek = inp.vek;
    let is_vlek = vek.role == Role::Vlek;
    let vek_kind = if is_vlek { "VLEK" } else { "VCEK" };
    let declared = vek
        .product_name
        .as_deref()
        .and_then(SnpProduct::from_name)
        .or_else(|| match Role::from_cn(&vek.issuer_cn) {
            Role::Ask(p) | Role::Asvk(p) => p,
            _ => None,
        });

    let inters: Vec<&AmdCert> = inp
        .pool
        .iter()
        .filter(|c| match c.role {
            Role::Ask(_) => !is_vlek,
            Role::Asvk(_) => is_vlek,
            _ => false,
        })
        .collect();
    let role_product = |c: &AmdCert| match c.role {
        Role::Ark(p) | Role::Ask(p) | Role::Asvk(p) => p,
        _ => None,
    };
    let done = |product, roots| VerifiedBy {
        product,
        signing_key: if is_vlek {
            SigningKey::Vlek
        } else {
            SigningKey::Vcek
        },
        roots,
        vek_product_name: vek.product_name.clone(),
        vek_not_before: vek.not_before.clone(),
        vek_not_after: vek.not_after.clone(),
    };

    if let Some(inter) = inters
        .iter()
        .find(|c| declared.is_some() && role_product(c) == declared)
        .or_else(|| inters.first())
    {
        // Caller supplied the intermediate; ARK from the caller or built in.
        let product =
            role_product(inter)
                .or(declared)
                .ok_or_else(|| EvidenceError::MissingCertificate {
                    what: "product",
                    hint: format!(
                        "cannot tell the product of ASK/ASVK \"{}\"; pass the ARK explicitly",
                        inter.subject_cn
                    ),
                })?;
        let supplied_ark = inp
            .pool
            .iter()
            .filter(|c| matches!(c.role, Role::Ark(_)))
            .find(|c| role_product(c) == Some(product))
            .or_else(|| inp.pool.iter().find(|c| matches!(c.role, Role::Ark(_))));
        let builtin_ark;
        let ark = match supplied_ark {
            Some(a) => &a.cert,
            None => {
                builtin_ark = builtin_pair(product)?.0;
                &builtin_ark
            }
        };
        let label = format!("{product}, supplied {}", inter.subject_cn);
        check_chain(ark, &inter.cert, &vek.cert, &label)?;
        return Ok(done(product, RootSource::Supplied));
    }

    if is_vlek {
        let (kds, file) = declared
            .map_or(("<product>".to_string(), "<product>".to_string()), |p| {
                (p.name().to_string(), p.name().to_ascii_lowercase())
            });
        return Err(EvidenceError::MissingCertificate {
            what: "ASVK",
            hint: format!(
                "a VLEK is signed by the ASVK (CN SEV-VLEK-{kds}), which is not built in; pass \
                 AMD KDS /vlek/v1/{kds}/cert_chain or amd-{file}-ask-ark-asvk.pem as the ASK"
            ),
        });
    }

    // Built-in roots: the VCEK's product, or every product we know.
    let candidates: Vec<SnpProduct> = match declared {
        Some(p) => vec![p],
        None => vec![SnpProduct::Milan, SnpProduct::Genoa, SnpProduct::Turin],
    };
    let mut last_err = None;
    for product in &candidates {
        let (ark, ask) = builtin_pair(*product)?;
        let supplied_ark = inp.pool.iter().find(|c| matches!(c.role, Role::Ark(_)));
        let (ark, roots) = match supplied_ark {
            Some(a) => (&a.cert, RootSource::Supplied),
            None => (&ark, RootSource::BuiltIn),
        };
        match check_chain(ark, &ask, &vek.cert, &format!("{product}, built-in ASK")) {
            Ok(()) => return Ok(done(*product, roots)),
            Err(e) => last_err = Some(e),
        }
    }
    match (declared, last_err) {
        (Some(_), Some(e)) => Err(e),
        _ => Err(EvidenceError::NoBuiltinChain {
            vek: vek_kind,
            tried: candidates
                .iter()
                .map(|p| p.name())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

fn gather<'a>(
    vek_certs: &'a [AmdCert],
    ask: Option<&[u8]>,
    ark: Option<&[u8]>,
) -> Result<ChainInputs<'a>, EvidenceError> {
    let vek = vek_certs
        .iter()
        .find(|c| matches!(c.role, Role::Vcek | Role::Vlek))
        .ok_or_else(|| EvidenceError::MissingCertificate {
            what: "VCEK/VLEK",
            hint: format!(
                "the endorsement-key input holds {}; expected a certificate with subject CN \
                 SEV-VCEK or SEV-VLEK (from AMD KDS or the host's certificate table)",
                vek_certs
                    .iter()
                    .map(|c| format!("\"{}\"", c.subject_cn))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })?;
    let mut pool: Vec<AmdCert> = Vec::new();
    if let Some(a) = ask {
        pool.extend(load_certs(a, "ASK/ASVK")?);
    }
    if let Some(a) = ark {
        pool.extend(load_certs(a, "ARK")?);
    }
    // A bundle given as the VEK (VCEK + ASK + ARK, as Azure ships it) also
    // supplies the CA certificates.
    pool.extend(
        vek_certs
            .iter()
            .filter(|c| !matches!(c.role, Role::Vcek | Role::Vlek))
            .cloned(),
    );
    Ok(ChainInputs { vek, pool })
}

/// Verify a VCEK/VLEK certificate chain up to an AMD ARK, without a report.
///
/// `vek` is DER, or PEM (possibly a bundle that also holds the ASK and ARK).
/// `ask` may hold the ASK, the ASVK, or a KDS-style bundle (ASK, ARK, ASVK).
/// Without `ask`, a VCEK is checked against the `sev` crate's built-in roots
/// for its product; a VLEK needs the ASVK passed in.
pub fn verify_vek_chain(
    vek: &[u8],
    ask: Option<&[u8]>,
    ark: Option<&[u8]>,
) -> Result<VerifiedBy, EvidenceError> {
    let vek_certs = load_certs(vek, "VCEK/VLEK")?;
    let inputs = gather(&vek_certs, ask, ark)?;
    verify_chain_inner(&inputs)
}

/// Check the report's ECDSA P-384 signature over bytes `0..0x2A0` as received.
fn verify_report_signature(raw: &[u8; REPORT_LEN], vek: &Certificate) -> Result<(), String> {
    let r = &raw[OFF_SIG_R..OFF_SIG_R + SIG_COMPONENT_LEN];
    let s = &raw[OFF_SIG_S..OFF_SIG_S + SIG_COMPONENT_LEN];
    if r[P384_SCALAR_LEN..]
        .iter()
        .chain(&s[P384_SCALAR_LEN..])
        .any(|b| *b != 0)
    {
        return Err("signature R or S has non-zero bytes beyond the 48-byte P-384 scalar".into());
    }
    // R and S are little-endian; p384 wants big-endian R || S.
    let rs: Vec<u8> = r[..P384_SCALAR_LEN]
        .iter()
        .rev()
        .chain(s[..P384_SCALAR_LEN].iter().rev())
        .copied()
        .collect();
    let sig = p384::ecdsa::Signature::from_slice(&rs)
        .map_err(|e| format!("malformed signature (R or S out of range): {e}"))?;
    let key = p384::ecdsa::VerifyingKey::from_sec1_bytes(vek.public_key_sec1())
        .map_err(|e| format!("the certificate's key is not a P-384 public key: {e}"))?;
    key.verify(&raw[..SIGNED_LEN], &sig).map_err(|_| {
        "ECDSA P-384/SHA-384 signature over bytes 0x000..0x2A0 does not verify with this key; \
                      wrong VCEK/VLEK, or the report was modified"
            .to_string()
    })
}

/// Verify an SNP report: ARK self-signed, ARK signs ASK (ASVK for VLEK), ASK
/// signs VCEK/VLEK, VCEK/VLEK signs the report. Then check the VCEK/VLEK was
/// issued for this report: its TCB SPLs equal REPORTED_TCB and (VCEK) its
/// hwID equals CHIP_ID.
///
/// `vcek_or_vlek`: DER or PEM (a PEM bundle with the ASK and ARK is fine).
/// `ask_pem_or_der`: the ASK, the ASVK, or a bundle such as KDS `cert_chain`
/// or `amd-*-ask-ark-asvk.pem`. `ark`: the ARK. When they are `None`, the
/// built-in AMD roots for the VCEK's product are used (VLEKs need the ASVK).
pub fn verify_report(
    report: &SnpReport,
    vcek_or_vlek: &[u8],
    ask_pem_or_der: Option<&[u8]>,
    ark: Option<&[u8]>,
) -> Result<VerifiedBy, EvidenceError> {
    let key_info = &report.report.key_info;
    let signing_key = report.signing_key();
    if key_info.mask_chip_key() || !matches!(signing_key, SigningKey::Vcek | SigningKey::Vlek) {
        return Err(EvidenceError::ReportNotSigned {
            signing_key: key_info.signing_key(),
            mask_chip_key: key_info.mask_chip_key(),
        });
    }

    let vek_certs = load_certs(vcek_or_vlek, "VCEK/VLEK")?;
    let inputs = gather(&vek_certs, ask_pem_or_der, ark)?;
    let cert_kind = if inputs.vek.role == Role::Vlek {
        SigningKey::Vlek
    } else {
        SigningKey::Vcek
    };
    if cert_kind != signing_key {
        return Err(EvidenceError::SigningKeyMismatch {
            report: signing_key.name().into(),
            cert: cert_kind.name().into(),
        });
    }

    let by = verify_chain_inner(&inputs)?;
    let vek = inputs.vek;
    verify_report_signature(&report.raw, &vek.cert).map_err(|detail| {
        EvidenceError::ChainLinkFailed {
            link: ChainLink::VekSignsReport,
            product: by.product.to_string(),
            detail,
        }
    })?;

    // The VEK was derived for one TCB; decode REPORTED_TCB in the layout of
    // the product whose root verified the VEK.
    let vek_name = cert_kind.name();
    let tcb = report.tcb_at(OFF_REPORTED_TCB, by.product.tcb_layout());
    let pairs = [
        ("blSPL", vek.spl.bl, Some(tcb.bootloader)),
        ("teeSPL", vek.spl.tee, Some(tcb.tee)),
        ("snpSPL", vek.spl.snp, Some(tcb.snp)),
        ("ucodeSPL", vek.spl.ucode, Some(tcb.microcode)),
        ("fmcSPL", vek.spl.fmc, tcb.fmc),
    ];
    for (field, cert, rep) in pairs {
        if let (Some(cert), Some(report)) = (cert, rep) {
            if cert != report {
                return Err(EvidenceError::TcbMismatch {
                    vek: vek_name,
                    field,
                    cert,
                    report,
                });
            }
        }
    }
    if let (SigningKey::Vcek, Some(hwid)) = (cert_kind, &vek.hwid) {
        let chip = &report.report.chip_id;
        let masked = chip.iter().all(|b| *b == 0);
        let matches = chip.get(..hwid.len()) == Some(&hwid[..])
            && chip[hwid.len().min(chip.len())..].iter().all(|b| *b == 0);
        if !masked && !matches {
            return Err(EvidenceError::ChipIdMismatch {
                cert_hwid: hex::encode(hwid),
                report_chip_id: hex::encode(chip),
            });
        }
    }
    Ok(by)
}
