//! The Azure attester against an in-process stand-in for the paravisor's
//! vTPM (the nine commands, an RSA AK, a PCR bank, the report refresh) and
//! a stand-in IMDS on loopback.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex, OnceLock};

use rsa::pkcs1v15::SigningKey;
use rsa::signature::{SignatureEncoding, Signer};
use rsa::traits::PublicKeyParts;
use rsa::RsaPrivateKey;
use sha2::Sha256;

use super::*;
use crate::attest::tpm::TpmTransport;
use crate::attest::AttesterKind;
use crate::evidence::hcl_stand_in;

fn sample(path: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/testdata/evidence/other/{path}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("sample")
}

fn key(i: usize) -> &'static RsaPrivateKey {
    static KEYS: OnceLock<Vec<RsaPrivateKey>> = OnceLock::new();
    &KEYS.get_or_init(|| {
        let mut rng = rand::thread_rng();
        (0..2)
            .map(|_| RsaPrivateKey::new(&mut rng, 2048).expect("rsa"))
            .collect()
    })[i]
}

/// What the stand-in paravisor does wrong, if anything.
#[derive(Clone, Copy, Default)]
struct Faults {
    /// Never regenerate the report (an older HCL, or swtpm).
    stale: bool,
    /// The claims carry another key than the TPM's AK.
    foreign_ak: bool,
    /// Quote over other qualifying data than asked for.
    wrong_nonce: bool,
    /// The user-data index exists with the wrong size.
    small_user_index: bool,
}

struct VtpmState {
    nv: HashMap<u32, Vec<u8>>,
    pcrs: Vec<[u8; 32]>,
}

struct FakeVtpm {
    template: Vec<u8>,
    faults: Faults,
    state: Mutex<VtpmState>,
}

fn be16(b: &[u8], at: usize) -> usize {
    usize::from(u16::from_be_bytes([b[at], b[at + 1]]))
}
fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn reply(sessions: bool, params: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&if sessions { 0x8002u16 } else { 0x8001 }.to_be_bytes());
    out.extend_from_slice(&[0; 8]);
    if sessions {
        out.extend_from_slice(&(params.len() as u32).to_be_bytes());
    }
    out.extend_from_slice(params);
    if sessions {
        out.extend_from_slice(&[0, 0, 1, 0, 0]);
    }
    let len = out.len() as u32;
    out[2..6].copy_from_slice(&len.to_be_bytes());
    out
}

fn error(rc: u32) -> Vec<u8> {
    let mut out = vec![0x80, 0x01, 0, 0, 0, 10];
    out.extend_from_slice(&rc.to_be_bytes());
    out
}

fn b2b(v: &[u8]) -> Vec<u8> {
    let mut out = (v.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(v);
    out
}

impl FakeVtpm {
    fn new(template: &str, faults: Faults) -> Arc<Self> {
        let f = Arc::new(FakeVtpm {
            template: sample(template),
            faults,
            state: Mutex::new(VtpmState {
                nv: HashMap::new(),
                pcrs: (0..24).map(|i| [i as u8; 32]).collect(),
            }),
        });
        let boot = f.hcl(&[0; 64]);
        let mut s = f.state.lock().expect("lock");
        s.nv.insert(HCL_REPORT_NV, boot);
        if faults.small_user_index {
            s.nv.insert(USER_DATA_NV, vec![0; 32]);
        }
        drop(s);
        f
    }

    fn hcl(&self, user: &[u8]) -> Vec<u8> {
        let ak = key(usize::from(self.faults.foreign_ak)).to_public_key();
        let mut u = [0u8; 64];
        let n = user.len().min(64);
        u[..n].copy_from_slice(&user[..n]);
        let claims = hcl_stand_in::claims(&ak.n().to_bytes_be(), &ak.e().to_bytes_be(), &u);
        hcl_stand_in::report(&self.template, &claims).expect("stand-in")
    }

    fn quote(&self, s: &VtpmState, qualifying: &[u8], selection: &[u8]) -> Vec<u8> {
        let qualifying = if self.faults.wrong_nonce {
            b"challenge".to_vec()
        } else {
            qualifying.to_vec()
        };
        let mut digest = Sha256::new();
        let bitmap = &selection[7..10];
        for i in 0..24 {
            if bitmap[i / 8] & (1 << (i % 8)) != 0 {
                digest.update(s.pcrs[i]);
            }
        }
        let mut m = Vec::new();
        m.extend_from_slice(&0xff54_4347u32.to_be_bytes());
        m.extend_from_slice(&0x8018u16.to_be_bytes());
        let mut name = vec![0, 0x0b];
        name.extend_from_slice(&[0x5a; 32]);
        m.extend_from_slice(&b2b(&name));
        m.extend_from_slice(&b2b(&qualifying));
        m.extend_from_slice(&[0; 8]);
        m.extend_from_slice(&[0; 8]);
        m.push(1);
        m.extend_from_slice(&0x2020_0312_0012_0003u64.to_be_bytes());
        m.extend_from_slice(selection);
        m.extend_from_slice(&b2b(&digest.finalize()));
        let sig = SigningKey::<Sha256>::new(key(0).clone()).sign(&m).to_vec();
        let mut p = b2b(&m);
        p.extend_from_slice(&[0x00, 0x14, 0x00, 0x0b]);
        p.extend_from_slice(&b2b(&sig));
        reply(true, &p)
    }
}

impl TpmTransport for Arc<FakeVtpm> {
    fn transact(&self, c: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut s = self.state.lock().expect("lock");
        let code = be32(c, 6);
        // Parameters after handles and a 9-byte password session.
        let after = |handles: usize| 10 + 4 * handles + 4 + 9;
        Ok(match code {
            0x169 => match s.nv.get(&be32(c, 10)) {
                None => error(0x18b),
                Some(d) => {
                    let mut area = be32(c, 10).to_be_bytes().to_vec();
                    area.extend_from_slice(&[0, 0x0b, 0, 2, 0, 2, 0, 0]);
                    area.extend_from_slice(&(d.len() as u16).to_be_bytes());
                    let mut p = b2b(&area);
                    p.extend_from_slice(&b2b(&[0; 34]));
                    reply(false, &p)
                }
            },
            0x17a => reply(
                false,
                &[0, 0, 0, 0, 6, 0, 0, 0, 1, 0, 0, 1, 0x2c, 0, 0, 4, 0],
            ),
            0x14e => {
                let index = be32(c, 14);
                let (n, off) = (be16(c, after(2)), be16(c, after(2) + 2));
                if index == HCL_REPORT_NV && off == 0 && !self.faults.stale {
                    let user = s.nv.get(&USER_DATA_NV).cloned().unwrap_or(vec![0; 64]);
                    let fresh = self.hcl(&user);
                    s.nv.insert(HCL_REPORT_NV, fresh);
                }
                match s.nv.get(&index) {
                    Some(d) if off + n <= d.len() => reply(true, &b2b(&d[off..off + n])),
                    Some(_) => error(0x146),
                    None => error(0x18b),
                }
            }
            0x137 => {
                let index = be32(c, 14);
                let n = be16(c, after(2));
                let data = c[after(2) + 2..after(2) + 2 + n].to_vec();
                match s.nv.get_mut(&index) {
                    Some(d) if d.len() >= n => {
                        d[..n].copy_from_slice(&data);
                        reply(true, &[])
                    }
                    Some(_) => error(0x146),
                    None => error(0x18b),
                }
            }
            0x12a => {
                let public = after(1) + 2;
                let index = be32(c, public + 2);
                let size = be16(c, public + 2 + 4 + 2 + 4 + 2);
                s.nv.insert(index, vec![0; size]);
                reply(true, &[])
            }
            0x122 => {
                s.nv.remove(&be32(c, 14));
                reply(true, &[])
            }
            0x173 => {
                let ak = key(0).to_public_key();
                let mut area = vec![0, 1, 0, 0x0b, 0, 0x05, 0x00, 0x72];
                area.extend_from_slice(&b2b(&[]));
                area.extend_from_slice(&[0, 0x10, 0, 0x14, 0, 0x0b, 8, 0, 0, 0, 0, 0]);
                area.extend_from_slice(&b2b(&ak.n().to_bytes_be()));
                let mut p = b2b(&area);
                p.extend_from_slice(&b2b(&[0; 34]));
                p.extend_from_slice(&b2b(&[0; 34]));
                reply(false, &p)
            }
            0x158 => {
                let at = after(1);
                let n = be16(c, at);
                let qualifying = c[at + 2..at + 2 + n].to_vec();
                let selection = c[at + 2 + n + 2..].to_vec();
                self.quote(&s, &qualifying, &selection)
            }
            0x17e => {
                // At most 8 digests per reply, like a real TPM.
                let bitmap = &c[10 + 7..10 + 10];
                let wanted: Vec<usize> = (0..24)
                    .filter(|i| bitmap[i / 8] & (1 << (i % 8)) != 0)
                    .take(8)
                    .collect();
                let mut out_map = [0u8; 3];
                for &i in &wanted {
                    out_map[i / 8] |= 1 << (i % 8);
                }
                let mut p = vec![0, 0, 0, 7, 0, 0, 0, 1, 0, 0x0b, 3];
                p.extend_from_slice(&out_map);
                p.extend_from_slice(&(wanted.len() as u32).to_be_bytes());
                for i in wanted {
                    p.extend_from_slice(&b2b(&s.pcrs[i]));
                }
                reply(false, &p)
            }
            _ => error(0x143),
        })
    }
    fn describe(&self) -> String {
        "stand-in vTPM".into()
    }
}

/// A loopback IMDS: the sample VCEK, and the sample TD quote with its
/// REPORTDATA replaced by the TDREPORT's.
fn imds() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut r = BufReader::new(conn);
            let mut line = String::new();
            let _ = r.read_line(&mut line);
            let mut len = 0;
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).is_err() || h.trim().is_empty() {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            let _ = r.read_exact(&mut body);
            let answer = if line.contains("/metadata/THIM/amd/certification") {
                let pem = String::from_utf8(sample("azure-snp-vtpm/vcek.pem")).expect("pem");
                serde_json::json!({"vcekCert": pem, "certificateChain": ""}).to_string()
            } else if line.contains("/acc/tdquote") {
                use base64::Engine as _;
                let req: Value = serde_json::from_slice(&body).expect("json");
                let td = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(req["report"].as_str().expect("report"))
                    .expect("b64");
                let mut q = sample("azure-tdx-vtpm/td-quote.bin");
                q[568..632].copy_from_slice(&td[128..192]);
                serde_json::json!({
                    "quote": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(q)
                })
                .to_string()
            } else {
                String::new()
            };
            let status = if answer.is_empty() {
                "404 Not Found"
            } else {
                "200 OK"
            };
            let mut conn = r.into_inner();
            let _ = write!(
                conn,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                answer.len()
            );
        }
    });
    format!("http://{addr}")
}

fn attester(template: &str, faults: Faults, imds_url: &str) -> AzureAttester {
    let fake = FakeVtpm::new(template, faults);
    let tpm = Tpm::new(Box::new(fake));
    let platform = probe(&tpm).expect("probe").expect("azure");
    AzureAttester::new(tpm, platform, Imds::new(imds_url)).with_refresh_wait(Duration::ZERO)
}

const SNP: &str = "azure-snp-vtpm/hcl-report.bin";
const TDX: &str = "azure-tdx-vtpm/hcl-report.bin";
const DIGEST: [u8; DIGEST_LEN] = [0x42; DIGEST_LEN];

#[test]
fn snp_fresh_report_gives_v2_bound_twice() {
    let a = attester(SNP, Faults::default(), &imds());
    assert_eq!(a.tee(), Tee::AzSnpVtpm);
    let ev = a.evidence(&DIGEST).expect("evidence");
    assert_eq!(ev["version"], 2);
    let d = parse_evidence(&ev).expect("decodes");
    assert_eq!(d.quote.extra_data, DIGEST);
    assert_eq!(d.hcl.user_data(), Some(report_data(&DIGEST).to_vec()));
    assert_eq!(d.pcrs.len(), 24);
    assert_eq!(d.pcrs[23], vec![23; 32]);
    let vcek = crate::evidence::gpu::pem_chain(
        std::str::from_utf8(&sample("azure-snp-vtpm/vcek.pem")).expect("utf8"),
    )
    .expect("pem");
    assert_eq!(d.vcek.as_deref(), Some(&vcek[0][..]));
}

#[test]
fn stale_paravisor_gives_v1_with_the_quote_bound() {
    let a = attester(
        SNP,
        Faults {
            stale: true,
            ..Faults::default()
        },
        &imds(),
    );
    let ev = a.evidence(&DIGEST).expect("evidence");
    assert_eq!(ev["version"], 1);
    let d = parse_evidence(&ev).expect("decodes");
    assert_eq!(d.quote.extra_data, DIGEST);
    assert_eq!(d.hcl.user_data(), Some(vec![0; 64]));
}

#[test]
fn tdx_gets_its_td_quote_from_imds() {
    let a = attester(TDX, Faults::default(), &imds());
    assert_eq!(a.tee(), Tee::AzTdxVtpm);
    let ev = a.evidence(&DIGEST).expect("evidence");
    let d = parse_evidence(&ev).expect("decodes");
    assert!(d.td_quote.is_some());
    assert!(ev.get("vcek").is_none());
}

#[test]
fn a_user_data_index_of_the_wrong_size_is_redefined() {
    let a = attester(
        SNP,
        Faults {
            small_user_index: true,
            ..Faults::default()
        },
        &imds(),
    );
    assert_eq!(a.evidence(&DIGEST).expect("evidence")["version"], 2);
}

#[test]
fn a_foreign_ak_is_refused_before_quoting() {
    let a = attester(
        SNP,
        Faults {
            foreign_ak: true,
            ..Faults::default()
        },
        &imds(),
    );
    let err = a.evidence(&DIGEST).expect_err("foreign AK");
    assert!(matches!(err, AttestError::AzureAkMismatch { .. }), "{err}");
    assert!(err.to_string().contains("0x81000003"), "{err}");
}

#[test]
fn a_quote_over_another_nonce_is_refused() {
    let a = attester(
        SNP,
        Faults {
            wrong_nonce: true,
            ..Faults::default()
        },
        &imds(),
    );
    let err = a.evidence(&DIGEST).expect_err("wrong nonce");
    assert!(err.to_string().contains("extraData"), "{err}");
}

#[test]
fn imds_down_names_the_service_and_says_it_is_only_a_cache() {
    let a = attester(SNP, Faults::default(), "http://127.0.0.1:9");
    let err = a.evidence(&DIGEST).expect_err("no IMDS");
    let msg = err.to_string();
    assert!(msg.contains("/metadata/THIM/amd/certification"), "{msg}");
    assert!(msg.contains("only a cache"), "{msg}");
}

#[test]
fn auto_picks_the_vtpm_first_and_skips_a_plain_tpm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = super::super::Paths {
        tsm: dir.path().join("tsm"),
        dev: dir.path().join("dev"),
        ccel: dir.path().join("CCEL"),
        tpm: dir.path().join("dev/tpmrm0"),
        imds: "http://127.0.0.1:9".into(),
    };
    let fs = Arc::new(super::super::KernelFs);
    let fake = FakeVtpm::new(SNP, Faults::default());
    let a = super::super::select_all(
        AttesterKind::Auto,
        false,
        &paths,
        fs.clone(),
        Some(Box::new(fake)),
    )
    .expect("azure");
    assert_eq!(a.tee(), Tee::AzSnpVtpm);
    // Asked for TDX, found SNP: not found, and the probe says what is there.
    let fake = FakeVtpm::new(SNP, Faults::default());
    let err = super::super::select_all(
        AttesterKind::AzTdxVtpm,
        false,
        &paths,
        fs.clone(),
        Some(Box::new(fake)),
    )
    .err()
    .expect("not tdx");
    assert!(err.to_string().contains("az-snp-vtpm"), "{err}");
    // A TPM without the HCL index: not Azure, and auto goes on probing.
    let plain = FakeVtpm::new(SNP, Faults::default());
    plain.state.lock().expect("lock").nv.clear();
    let err =
        super::super::select_all(AttesterKind::Auto, false, &paths, fs, Some(Box::new(plain)))
            .err()
            .expect("no TEE");
    assert!(matches!(err, AttestError::NoTee { .. }), "{err}");
    assert!(err.to_string().contains("not an Azure vTPM CVM"), "{err}");
}

#[test]
fn init_data_is_refused_on_azure() {
    let a = attester(SNP, Faults::default(), "http://127.0.0.1:9");
    let err = a.host_data().expect_err("no host data");
    assert!(err.to_string().contains("[init_data]"), "{err}");
}
