//! Entry points for the fuzz targets (`fuzz/fuzz_targets/`) and their
//! regression tests (`tests/fuzz_regressions.rs`): one function per parser
//! of bytes that a host, a broker or a device hands us, each running the
//! real library code on one input. A function must not panic, whatever the
//! input: errors are the expected outcome and are dropped. Not an API.
//!
//! Fixed keys and samples (the JWE keys, the Azure AK, the base config) are
//! made once per process. Nothing here is reachable from `main`, so it is
//! not in the release binary.

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use crate::broker::jwe::{self, EphemeralKey, PrivateKey};
use crate::config::cmdline::Overrides;
use crate::config::Config;
use crate::evidence;
use crate::initdata::InitData;
use crate::storage::header::{header_problems, params, Expected};
use crate::storage::{ondisk, state, StorageEnv};

/// One fuzz target: runs one input.
pub type Target = fn(&[u8]);

/// Every target by name, with its entry point; `scripts/fuzz` and the
/// regression tests use the same names (`fuzz/corpus/<name>`).
pub const TARGETS: &[(&str, Target)] = &[
    ("config", config),
    ("cmdline", cmdline),
    ("initdata", initdata),
    ("jwe", jwe),
    ("snp_report", snp_report),
    ("snp_cert_table", snp_cert_table),
    ("tdx_quote", tdx_quote),
    ("evidence_decode", evidence_decode),
    ("azure_hcl", azure_hcl),
    ("azure_tpm_quote", azure_tpm_quote),
    ("azure_evidence", azure_evidence),
    ("gpu_report", gpu_report),
    ("pem_chain", pem_chain),
    ("luks2_header", luks2_header),
    ("luks2_load", luks2_load),
    ("kbs_reply", kbs_reply),
];

/// The measured config the cmdline and init-data targets apply their input
/// to: a broker, a secret, and an `[init_data]` section allowing everything.
const BASE_CONFIG: &str = r#"
[broker]
url = "https://kbs.example:8080"
spki_sha256 = "0000000000000000000000000000000000000000000000000000000000000000"

[[secret]]
resource = "default/tls/key"
path = "/run/workload/key.pem"

[init_data]
path = "/run/cvm-init/init-data.toml"
allow = ["secret", "volume", "volume.format", "instance_id"]
mount_under = "/sysroot/srv"
"#;

fn base_config() -> Option<&'static Config> {
    static BASE: OnceLock<Option<Config>> = OnceLock::new();
    BASE.get_or_init(|| Config::from_toml(BASE_CONFIG).ok())
        .as_ref()
}

fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// `Config::from_toml`: TOML parse and validation.
pub fn config(data: &[u8]) {
    if let Some(t) = text(data) {
        if let Ok(c) = Config::from_toml(t) {
            // What `cvm-init config` prints; must not fail either.
            let _ = toml::to_string(&c);
        }
    }
}

/// The kernel command line: parse, then apply to the base config.
pub fn cmdline(data: &[u8]) {
    let o = Overrides::parse(&String::from_utf8_lossy(data));
    if let Some(base) = base_config() {
        let mut c = base.clone();
        o.apply(&mut c);
    }
}

/// An init-data document: parse, verify against its own digest (as the
/// hardware register would hold it), apply to the base config.
pub fn initdata(data: &[u8]) {
    let Some(body) = text(data) else { return };
    let Ok(d) = InitData::parse(Path::new("/run/cvm-init/init-data.toml"), body.to_owned()) else {
        return;
    };
    for (register, width) in [("SNP HOST_DATA", Some(32)), ("TDX MRCONFIGID", Some(48))] {
        let host = crate::attest::HostData {
            register,
            value: d.register_value(width.unwrap_or(0)),
            width,
        };
        let _ = d.verify(&host);
    }
    if let Some(base) = base_config() {
        let _ = d.apply(base);
    }
    let _ = d.to_wire();
}

/// The fixed P-256 key the JWE target decrypts with.
pub fn jwe_ec_key() -> &'static EphemeralKey {
    static KEY: OnceLock<EphemeralKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let scalar = [0x5a_u8; 32];
        let sk = p256::SecretKey::from_slice(&scalar)
            .unwrap_or_else(|_| p256::SecretKey::random(&mut rand::rngs::OsRng));
        EphemeralKey {
            key: PrivateKey::Ec(sk),
        }
    })
}

/// The primes of the fixed RSA-2048 key (made once with `openssl genrsa`
/// for the fuzz target; it protects nothing). Generating a key at start-up
/// takes seconds in the fuzz build, a good part of a short CI pass.
const RSA_P: &[&str] = &[
    "d02e97b0962cfda9e87e00790ce887971678fb0602b7c36132c2438791ebc660",
    "7fa8a7190a1f5977f35c2e6d5c71aa478247501984fef08b85a8289435eba625",
    "75f4ed71e8b7db3126ba85f3f0c9960791742d1dc2fa84e4e3ade772e3cfbbdf",
    "6202f60f50d8c4cadde5153926f14dec6da39fbaa5edaff109b5c9e7eae8050f",
];
const RSA_Q: &[&str] = &[
    "bfc72db99cca042442d3fe89971973dc197307876c78df7c4364f4f8ed8b3b80",
    "a9d40528c04fd5083d54ab6731d3f70e615811ba7255cafdff0f8c654f3c21b2",
    "01e60807803f15a847ddc99e5b309393c57b45488c1609b906fce6f7bb631e19",
    "0bd8f032bd703af9924df78039d294902ab71390637025ea4d33f2c5c2c06813",
];

/// The fixed RSA-2048 key the JWE target decrypts with; `None` if the
/// primes above were refused.
pub fn jwe_rsa_key() -> Option<&'static EphemeralKey> {
    static KEY: OnceLock<Option<EphemeralKey>> = OnceLock::new();
    KEY.get_or_init(|| {
        let prime = |h: &[&str]| rsa::BigUint::parse_bytes(h.concat().as_bytes(), 16);
        let key = rsa::RsaPrivateKey::from_p_q(
            prime(RSA_P)?,
            prime(RSA_Q)?,
            rsa::BigUint::from(65537u32),
        )
        .ok()?;
        Some(EphemeralKey {
            key: PrivateKey::Rsa(Box::new(key)),
        })
    })
    .as_ref()
}

/// A JWE of `plaintext` to the fixed EC or RSA key: seeds for the corpus.
pub fn jwe_seed(rsa: bool, plaintext: &[u8]) -> Option<Vec<u8>> {
    let key = if rsa { jwe_rsa_key()? } else { jwe_ec_key() };
    let value = jwe::encrypt(&key.public_jwk(), plaintext).ok()?;
    serde_json::to_vec(&value).ok()
}

/// `EphemeralKey::decrypt` of a resource reply body with both fixed keys.
pub fn jwe(data: &[u8]) {
    let _ = jwe_ec_key().decrypt(data);
    if let Some(k) = jwe_rsa_key() {
        let _ = k.decrypt(data);
    }
}

/// An SNP attestation report: parse and summarise.
pub fn snp_report(data: &[u8]) {
    if let Ok(r) = evidence::snp::parse_report(data) {
        let _ = serde_json::to_string(&r.summary());
        let _ = (
            r.product(),
            r.tcb_layout(),
            r.signing_key(),
            r.reported_tcb(),
        );
    }
    let _ = crate::attest::snp::parse_report(data, "fuzz");
}

/// The GHCB certificate table (configfs-tsm `auxblob`); the VCEK it holds,
/// if any, goes through the chain loader.
pub fn snp_cert_table(data: &[u8]) {
    let Ok(entries) = crate::attest::snp::parse_cert_table(data, "fuzz") else {
        return;
    };
    // Encoding what we decoded must not fail either.
    let _ = crate::attest::snp::encode_cert_table(&entries);
    for e in &entries {
        let _ = evidence::snp::verify_vek_chain(&e.data, None, None);
    }
}

/// A TDX quote (v4, v5): parse and summarise.
pub fn tdx_quote(data: &[u8]) {
    if let Ok(q) = evidence::tdx::parse_quote(data) {
        let _ = serde_json::to_string(&q.summary());
        for i in 0..5 {
            let _ = q.rtmr(i);
        }
        let _ = (
            q.signed_bytes().len(),
            q.signature_data().len(),
            q.trailing_len(),
        );
    }
}

/// `evidence decode`: sniff the format (hex or binary, SNP or TDX).
pub fn evidence_decode(data: &[u8]) {
    if let Ok(d) = evidence::decode(data) {
        let _ = d.summary_json();
        let _ = (d.tee(), d.report_data(), d.measurement(), d.debug());
    }
}

/// An Azure HCL report (vTPM NV index): parse, its AK, its user data.
pub fn azure_hcl(data: &[u8]) {
    if let Ok(h) = evidence::azure::parse_hcl(data) {
        let _ = h.summary_json();
        let _ = h.ak();
        let _ = h.user_data();
        let _ = h.report_data();
    }
}

/// The AK of the Azure SNP sample's HCL report, the key quotes are
/// checked with.
fn azure_ak() -> Option<&'static rsa::RsaPublicKey> {
    static AK: OnceLock<Option<rsa::RsaPublicKey>> = OnceLock::new();
    AK.get_or_init(|| {
        let hcl = include_bytes!("../testdata/evidence/other/azure-snp-vtpm/hcl-report.bin");
        evidence::azure::parse_hcl(hcl).ok()?.ak().ok()
    })
    .as_ref()
}

/// A TPM quote (`TPMS_ATTEST`): parse the whole input; then split it as
/// `len u16 LE | message | signature (256) | PCRs (32 each)` and verify.
pub fn azure_tpm_quote(data: &[u8]) {
    if let Ok(q) = evidence::azure::parse_quote(data) {
        let _ = format!("{q:?}");
    }
    let Some((len, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let len = usize::from(u16::from_le_bytes(*len)).min(rest.len());
    let (message, rest) = rest.split_at(len);
    let (signature, pcrs) = rest.split_at(rest.len().min(256));
    let pcrs: Vec<Vec<u8>> = pcrs.chunks(32).map(<[u8]>::to_vec).collect();
    if let Some(ak) = azure_ak() {
        let _ = evidence::azure::verify_quote(message, signature, ak, &pcrs);
    }
}

/// Trustee's `az-snp-vtpm` / `az-tdx-vtpm` evidence JSON.
pub fn azure_evidence(data: &[u8]) {
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    if let Ok(e) = evidence::azure::parse_evidence(&json) {
        let _ = e.summary_json();
        let _ = e.tee();
    }
}

/// An NVIDIA GPU attestation report (SPDM measurements response).
pub fn gpu_report(data: &[u8]) {
    if let Ok(r) = evidence::gpu::parse_report(data) {
        let _ = r.driver_version();
        let _ = r.vbios_version();
    }
}

/// A PEM certificate chain (GPU, VCEK in Azure evidence), then the GPU
/// chain check on what it decoded.
pub fn pem_chain(data: &[u8]) {
    let Some(t) = text(data) else { return };
    if let Ok(chain) = evidence::gpu::pem_chain(t) {
        let _ = evidence::gpu::verify_chain(&chain);
    }
}

/// Both [`Expected`] variants a volume can ask for.
const EXPECTATIONS: [Expected; 3] = [
    Expected {
        integrity: false,
        discard: false,
    },
    Expected {
        integrity: true,
        discard: false,
    },
    Expected {
        integrity: false,
        discard: true,
    },
];

/// Recomputes the checksum of the binary header at `at` (with the
/// `hdr_size` it claims, when that fits in `head`), so that mutations of
/// the JSON and of the other fields get past the checksum check.
fn fix_checksum(head: &mut [u8], at: usize) -> Option<u64> {
    use sha2::{Digest, Sha256};
    let size_bytes: [u8; 8] = head.get(at + 8..at + 16)?.try_into().ok()?;
    let hdr_size = u64::from_be_bytes(size_bytes);
    let end = at.checked_add(usize::try_from(hdr_size).ok()?)?;
    if hdr_size < 4096 || end > head.len() {
        return None;
    }
    let area = &mut head[at..end];
    area[448..512].fill(0);
    let sum = Sha256::digest(&*area);
    area[448..480].copy_from_slice(&sum);
    Some(hdr_size)
}

/// The first input byte's low bit: fix up both header checksums (most
/// runs) or leave them as given.
fn prepare_head(data: &[u8]) -> Vec<u8> {
    let Some((&flags, head)) = data.split_first() else {
        return Vec::new();
    };
    let mut head = head.to_vec();
    if flags & 1 == 0 {
        if let Some(size) = fix_checksum(&mut head, 0) {
            let _ = usize::try_from(size).map(|s| fix_checksum(&mut head, s));
        }
    }
    head
}

/// The LUKS2 metadata as our own code reads it, without libcryptsetup:
/// the binary header pair, then the primary JSON area through the header
/// validator and the state-token reader. Input: a flags byte (see
/// [`prepare_head`]), then the start of a device.
pub fn luks2_header(data: &[u8]) {
    let head = prepare_head(data);
    let pair = ondisk::decode_pair(&head);
    let _ = pair.active();
    let json_area = head.get(ondisk::BINARY_HEADER_BYTES..).unwrap_or_default();
    let json_area = json_area
        .get(..params::JSON_SIZE as usize)
        .unwrap_or(json_area);
    let end = json_area
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(json_area.len());
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(&json_area[..end]) else {
        return;
    };
    for expect in &EXPECTATIONS {
        let _ = header_problems(&json, expect);
    }
    if let Ok(Some(token)) = state::header_token(&json) {
        let _ = state_key().verify(
            "fuzz",
            "00000000-0000-0000-0000-000000000000",
            &token,
            &json,
        );
    }
}

fn state_key() -> &'static state::StateKey {
    static KEY: OnceLock<state::StateKey> = OnceLock::new();
    KEY.get_or_init(|| state::StateKey(crate::secrets::Secret::new(vec![7; 32])))
}

/// A device file on tmpfs whose first bytes each run replaces, and the
/// storage environment `inspect_volume` runs in.
struct Luks2Rig {
    device: PathBuf,
    env: StorageEnv,
    /// Bytes of the device the last input wrote (zeroed before the next).
    dirty: usize,
}

impl Luks2Rig {
    fn new() -> Option<Self> {
        let base = std::env::var_os("CVM_FUZZ_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/dev/shm"))
            .join(format!("cvm-init-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&base).ok()?;
        let device = base.join("device.img");
        let f = std::fs::File::create(&device).ok()?;
        // Sparse: the keyslot area and the data are holes.
        f.set_len(params::DATA_OFFSET + (1 << 20)).ok()?;
        Some(Self {
            device,
            env: StorageEnv {
                dev: base.join("dev"),
                sys: base.join("sys"),
                run_dir: base.join("run"),
                status_dir: base.join("status"),
                device_wait: Duration::ZERO,
            },
            dirty: 0,
        })
    }

    fn write_head(&mut self, head: &[u8]) -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new().write(true).open(&self.device)?;
        let limit = usize::try_from(params::DATA_OFFSET).unwrap_or(usize::MAX);
        let head = &head[..head.len().min(limit)];
        if self.dirty > head.len() {
            f.seek(SeekFrom::Start(head.len() as u64))?;
            f.write_all(&vec![0; self.dirty - head.len()])?;
        }
        f.seek(SeekFrom::Start(0))?;
        f.write_all(head)?;
        self.dirty = head.len();
        Ok(())
    }
}

/// The LUKS2 metadata as libcryptsetup loads it and we then check it: the
/// input (a flags byte, see [`prepare_head`], then the start of a device)
/// is written over the start of a 17 MiB sparse device file on tmpfs,
/// which `inspect_volume` probes (libblkid), copies, loads with
/// libcryptsetup, decodes (binary header pair, state token) and runs
/// through the header validator, as `cvm-init inspect` does.
pub fn luks2_load(data: &[u8]) {
    use std::sync::Mutex;
    static RIG: OnceLock<Option<Mutex<Luks2Rig>>> = OnceLock::new();
    let Some(rig) = RIG.get_or_init(|| Luks2Rig::new().map(Mutex::new)) else {
        return;
    };
    let Ok(mut rig) = rig.lock() else { return };
    let head = prepare_head(data);
    if rig.write_head(&head).is_err() {
        return;
    }
    let _ = crate::storage::inspect_volume(&rig.device, None, &rig.env);
}

/// The broker client's reply decoding (`broker::reply`). The first byte
/// picks the reply: 0 the `/auth` challenge, 1 the `/attest` token, 2 an
/// error body (status from the next two bytes), 3 a `/resource` JWE
/// (decrypted with both fixed keys); the rest is the body. Every error is
/// formatted too, as the agent logs it.
pub fn kbs_reply(data: &[u8]) {
    use crate::broker::reply;
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    let url = "https://kbs.example:8080/kbs/v0/x";
    let shown = match which % 4 {
        0 => reply::challenge(body, url).map(|c| c.nonce.len()).err(),
        1 => reply::token(body, url).map(|t| t.len()).err(),
        2 => {
            let (status, body) = match body.split_first_chunk::<2>() {
                Some((s, rest)) => (u16::from_le_bytes(*s), rest),
                None => (500, body),
            };
            Some(reply::error(status, body, url))
        }
        _ => {
            if let Some(k) = jwe_rsa_key() {
                let _ = reply::resource(body, k, "default/fuzz/key").map_err(|e| e.to_string());
            }
            reply::resource(body, jwe_ec_key(), "default/fuzz/key").err()
        }
    };
    if let Some(e) = shown {
        let _ = e.to_string();
        let _ = crate::logging::error_line(&e);
    }
}
