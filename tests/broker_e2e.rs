//! The agent against the development broker over TLS on 127.0.0.1, with
//! the simulated TEE: success, and each fault the broker can inject.
//! Runs the real `cvm-init` and `kbs-dev` binaries.

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use cvm_init::attest::{self, Paths};
use cvm_init::broker::jwe::{EphemeralKey, KeyAlg};
use cvm_init::broker::{BrokerClient, BrokerError, KbsErrorKind};
use cvm_init::config::{AttesterKind, Config};

const SECRET: &[u8] = b"-----BEGIN PRIVATE KEY-----\nnot-really-a-key\n";

mod support;
use support::{fetch_with, Broker, Fetch};

/// `kbs-dev` lives in another workspace package; build it once if needed.
fn kbs_dev_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| support::build("kbs-dev", "kbs-dev"))
}

/// kbs-dev over TLS, serving `SECRET` as `default/tls/key`.
fn start(extra: &[&str]) -> Broker {
    Broker::start(kbs_dev_bin(), "tls/key", SECRET, true, extra)
}

trait AgentConfig {
    /// A config pinning this broker's CA, with the simulated TEE allowed.
    fn config(&self, extra_broker: &str) -> String;
}

impl AgentConfig for Broker {
    fn config(&self, extra_broker: &str) -> String {
        format!(
            "[broker]\nurl = \"{}\"\nca_cert = \"{}\"\n{extra_broker}\n[attester]\nkind = \"simulated\"\nallow_simulated = true\n",
            self.url,
            self.ca().display()
        )
    }
}

fn fetch(config: &str, resource: &str, extra: &[&str]) -> Fetch {
    fetch_with(config, resource, extra, "console=ttyS0 ro quiet", &[])
}

/// The library path, for asserting on error variants.
fn fetch_lib(config: &str) -> Result<Vec<u8>, BrokerError> {
    let config = Config::from_toml(config).unwrap();
    let attester = attest::select(AttesterKind::Simulated, true, &Paths::default()).unwrap();
    let key = EphemeralKey::generate(KeyAlg::EcdhEsA256Kw).unwrap();
    let client = BrokerClient::new(&config.broker)?;
    let plan = ["default/tls/key".parse().unwrap()];
    let mut got = client.fetch_all(attester.as_ref(), &key, &plan)?;
    Ok(got.pop().unwrap().1.expose().to_vec())
}

/// Failed, wrote nothing, and stayed within the agent's memory budget
/// (issue 11: 32 MiB peak RSS under any broker reply).
fn assert_failed_and_wrote_nothing(f: &Fetch) {
    f.assert_failed_and_wrote_nothing();
    assert!(f.max_rss_kib < 32 << 10, "peak RSS {} KiB", f.max_rss_kib);
}

#[test]
fn fetch_over_pinned_tls_writes_the_secret_0600() {
    let b = start(&[]);
    let f = fetch(&b.config(""), "default/tls/key", &[]);
    assert!(f.out.status.success(), "{}", f.stderr());
    assert_eq!(std::fs::read(&f.target).unwrap(), SECRET);
    let mode = std::fs::metadata(&f.target).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o600);
    assert!(f.stderr().contains("SIMULATED TEE"), "{}", f.stderr());
    assert!(b.log().contains("/attest ok"), "{}", b.log());
}

#[test]
fn spki_pin_works_and_a_wrong_one_is_refused() {
    let b = start(&[]);
    let cfg = format!(
        "[broker]\nurl = \"{}\"\nspki_sha256 = \"{}\"\n",
        b.url,
        b.spki()
    );
    assert_eq!(fetch_lib(&cfg).unwrap(), SECRET);
    let wrong = format!(
        "[broker]\nurl = \"{}\"\nspki_sha256 = \"{}\"\n",
        b.url,
        "00".repeat(32)
    );
    let e = fetch_lib(&wrong).unwrap_err();
    assert!(matches!(e, BrokerError::NotPinned { .. }), "{e}");
}

#[test]
fn a_certificate_from_another_ca_is_refused_at_once() {
    let b = start(&[]);
    let other = start(&[]);
    let cfg = b.config("").replace(
        &b.ca().display().to_string(),
        &other.ca().display().to_string(),
    );
    let started = Instant::now();
    let f = fetch(&cfg, "default/tls/key", &[]);
    assert_failed_and_wrote_nothing(&f);
    assert!(f.stderr().contains("not the pinned one"), "{}", f.stderr());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "a pin failure must not be retried"
    );
    assert!(!b.log().contains("/auth"), "{}", b.log());
}

#[test]
fn the_agent_offers_and_gets_hybrid_post_quantum_key_exchange() {
    use std::io::Write;
    use std::sync::Arc;
    let b = start(&[]);
    let pin = cvm_init::broker::tls::Pin::ca_file(&b.ca()).unwrap();
    let config = cvm_init::broker::tls::client_config(&pin).unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let addr = b.url.trim_start_matches("https://");
    let mut sock = std::net::TcpStream::connect(addr).unwrap();
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    tls.write_all(b"GET /kbs/v0/nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    tls.flush().unwrap();
    let group = conn.negotiated_key_exchange_group().unwrap().name();
    assert_eq!(group, rustls::NamedGroup::X25519MLKEM768);
}

#[test]
fn broker_down_gives_up_at_the_deadline() {
    // Bind then drop a listener: nothing listens on that port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let b = start(&[]);
    let cfg = b
        .config("connect_timeout_secs = 1\nrequest_timeout_secs = 1\ndeadline_secs = 2")
        .replace(&b.url, &format!("https://127.0.0.1:{port}"));
    let started = Instant::now();
    let f = fetch(&cfg, "default/tls/key", &[]);
    assert_failed_and_wrote_nothing(&f);
    let err = f.stderr();
    assert!(
        err.contains("cannot reach the broker") && err.contains("gave up after"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn a_slow_broker_times_out_within_the_deadline() {
    let b = start(&["--fault", "delay=3000"]);
    let cfg = b.config("request_timeout_secs = 1\ndeadline_secs = 2");
    let started = Instant::now();
    let f = fetch(&cfg, "default/tls/key", &[]);
    assert_failed_and_wrote_nothing(&f);
    assert!(f.stderr().contains("gave up after"), "{}", f.stderr());
    assert!(started.elapsed() < Duration::from_secs(8));
}

#[test]
fn transient_5xx_is_retried_until_it_clears() {
    let b = start(&["--fault", "status=503", "--fault-count", "2"]);
    assert_eq!(fetch_lib(&b.config("")).unwrap(), SECRET);
}

#[test]
fn persistent_5xx_reports_the_status_at_the_deadline() {
    let b = start(&["--fault", "status=503"]);
    let f = fetch(
        &b.config("request_timeout_secs = 1\ndeadline_secs = 2"),
        "default/tls/key",
        &[],
    );
    assert_failed_and_wrote_nothing(&f);
    assert!(f.stderr().contains("HTTP 503"), "{}", f.stderr());
}

#[test]
fn an_html_reply_is_named_as_not_a_kbs() {
    let b = start(&["--fault", "html"]);
    let f = fetch(&b.config(""), "default/tls/key", &[]);
    assert_failed_and_wrote_nothing(&f);
    assert!(
        f.stderr().contains("Trustee KBS") && f.stderr().contains("<html>"),
        "{}",
        f.stderr()
    );
}

#[test]
fn policy_denial_is_reported_and_not_retried() {
    let b = start(&["--fault", "deny"]);
    let e = fetch_lib(&b.config("")).unwrap_err();
    assert_eq!(e.kind(), Some(&KbsErrorKind::PolicyDeny), "{e}");
    let text = e.to_string();
    assert!(
        text.contains("PolicyDeny") && text.contains("Access denied by policy"),
        "{text}"
    );
    assert_eq!(
        b.log().matches("/auth:").count(),
        1,
        "re-attested after a denial"
    );
    let f = fetch(&b.config(""), "default/tls/key", &[]);
    assert_failed_and_wrote_nothing(&f);
}

#[test]
fn a_policy_file_restricts_tee_types() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        "[[allow]]\nresource = \"default/*\"\ntee = [\"snp\", \"tdx\"]\n",
    )
    .unwrap();
    let b = start(&["--policy", policy.to_str().unwrap()]);
    let e = fetch_lib(&b.config("")).unwrap_err();
    assert_eq!(e.kind(), Some(&KbsErrorKind::PolicyDeny), "{e}");
}

#[test]
fn a_nonce_mismatch_fails_attestation_with_the_servers_words() {
    let b = start(&["--fault", "wrong-nonce"]);
    let e = fetch_lib(&b.config("")).unwrap_err();
    assert_eq!(e.kind(), Some(&KbsErrorKind::AttestationFailed), "{e}");
    assert!(
        e.to_string().contains("RCAR handshake Attest failed"),
        "{e}"
    );
}

#[test]
fn a_corrupt_jwe_is_refused_and_nothing_is_written() {
    let b = start(&["--fault", "corrupt-jwe"]);
    let f = fetch(&b.config(""), "default/tls/key", &[]);
    assert_failed_and_wrote_nothing(&f);
    assert!(
        f.stderr().contains("could not be decrypted"),
        "{}",
        f.stderr()
    );
}

#[test]
fn a_jwe_for_another_key_is_refused() {
    let b = start(&["--fault", "wrong-key"]);
    let e = fetch_lib(&b.config("")).unwrap_err();
    assert!(matches!(e, BrokerError::Jwe { .. }), "{e}");
    assert!(
        e.to_string().contains("not encrypted to this boot's key"),
        "{e}"
    );
}

#[test]
fn a_missing_resource_says_so() {
    let b = start(&[]);
    let f = fetch(&b.config(""), "default/tls/nope", &[]);
    assert_failed_and_wrote_nothing(&f);
    assert!(
        f.stderr().contains(
            "the resource is missing or the broker's storage plugin failed (see the broker's log)"
        ),
        "{}",
        f.stderr()
    );
}

#[test]
fn rsa_oaep_keys_work_end_to_end() {
    let b = start(&[]);
    let f = fetch(
        &b.config("key_alg = \"RSA-OAEP-256\""),
        "default/tls/key",
        &[],
    );
    assert!(f.out.status.success(), "{}", f.stderr());
    assert_eq!(std::fs::read(&f.target).unwrap(), SECRET);
}

#[test]
fn output_on_a_disk_is_refused_before_attesting() {
    let b = start(&[]);
    let disk = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
    let target = disk.path().join("key.pem");
    let cfg = disk.path().join("config.toml");
    std::fs::write(&cfg, b.config("")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cvm-init"))
        .arg("--config")
        .arg(&cfg)
        .args(["fetch", "default/tls/key", "--output"])
        .arg(&target)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--allow-persistent-output"), "{err}");
    assert!(!target.exists());
    assert!(
        !b.log().contains("/auth"),
        "attested before checking the output path"
    );
}

#[test]
fn simulated_tee_needs_the_opt_in() {
    let b = start(&[]);
    let cfg = b.config("").replace("allow_simulated = true\n", "");
    let f = fetch(&cfg, "default/tls/key", &[]);
    assert_failed_and_wrote_nothing(&f);
    assert!(
        f.stderr().contains("--allow-simulated-tee"),
        "{}",
        f.stderr()
    );
    let f = fetch(&cfg, "default/tls/key", &["--allow-simulated-tee"]);
    // The global flag comes before the subcommand or after: both work.
    assert!(f.out.status.success(), "{}", f.stderr());
}

#[test]
fn plain_http_broker_needs_the_insecure_flag() {
    let b = start(&["--insecure-http"]);
    let cfg = format!(
        "[broker]\nurl = \"{}\"\n[attester]\nkind = \"simulated\"\nallow_simulated = true\n",
        b.url
    );
    let f = fetch(&cfg, "default/tls/key", &[]);
    assert_failed_and_wrote_nothing(&f);
    assert!(f.stderr().contains("insecure_http"), "{}", f.stderr());
    let cfg = cfg.replace("[attester]", "insecure_http = true\n[attester]");
    assert_eq!(fetch_lib(&cfg).unwrap(), SECRET);
}

/// An init-data document in a tmpfs directory and its SHA-384.
fn init_data_doc(dir: &Path, part: &str) -> (PathBuf, String) {
    use sha2::Digest as _;
    let body = format!(
        "version = \"0.1.0\"\nalgorithm = \"sha384\"\n[data]\n\"cvm-init.toml\" = '''\n{part}'''\n"
    );
    let path = dir.join("init-data.toml");
    std::fs::write(&path, &body).unwrap();
    (path, hex::encode(sha2::Sha384::digest(body.as_bytes())))
}

/// `b.config` with `[init_data]` at `doc` and the simulated launch's host data.
fn init_data_config(b: &Broker, doc: &Path, host_data: &str) -> String {
    format!(
        "{}simulated_host_data = \"{host_data}\"\n[init_data]\npath = \"{}\"\nrequired = true\nallow = [\"secret\"]\n",
        b.config(""),
        doc.display()
    )
}

const APP_SECRET: &str =
    "[[secret]]\nresource = \"default/app/token\"\npath = \"/run/cvm-init/e2e/token\"\n";

#[test]
fn init_data_matching_the_host_data_is_sent_and_the_broker_checks_it() {
    let b = start(&[]);
    let shm = tempfile::tempdir_in("/dev/shm").unwrap();
    let (doc, digest) = init_data_doc(shm.path(), APP_SECRET);
    let f = fetch(&init_data_config(&b, &doc, &digest), "default/tls/key", &[]);
    assert!(f.out.status.success(), "{}", f.stderr());
    assert_eq!(std::fs::read(&f.target).unwrap(), SECRET);
    assert!(
        f.stderr().contains("matches this VM's simulated host data"),
        "{}",
        f.stderr()
    );
    assert!(
        b.log().contains(&format!(
            "init-data (sha384) matches sample init_data {digest}"
        )),
        "{}",
        b.log()
    );
}

#[test]
fn a_host_data_mismatch_is_refused_before_anything_is_sent() {
    let b = start(&[]);
    let shm = tempfile::tempdir_in("/dev/shm").unwrap();
    let (doc, digest) = init_data_doc(shm.path(), APP_SECRET);
    // The host swapped the document after launch: HOST_DATA holds the
    // digest of another one.
    let launched_with = format!("{}00", &digest[..94]);
    let f = fetch(
        &init_data_config(&b, &doc, &launched_with),
        "default/tls/key",
        &[],
    );
    assert_failed_and_wrote_nothing(&f);
    let err = f.stderr();
    assert!(err.contains("simulated host data"), "{err}");
    assert!(err.contains(&launched_with), "{err}");
    assert!(err.contains(&digest), "{err}");
    assert!(err.contains("Refusing to use any of it"), "{err}");
    assert!(
        !b.log().contains("/auth"),
        "contacted the broker: {}",
        b.log()
    );
}

#[test]
fn the_broker_refuses_init_data_that_the_evidence_does_not_bind() {
    // The agent's own check bypassed (library path): kbs-dev, like Trustee,
    // compares the digest with the evidence's register itself.
    let b = start(&[]);
    let shm = tempfile::tempdir_in("/dev/shm").unwrap();
    let (doc, _) = init_data_doc(shm.path(), APP_SECRET);
    let config = Config::from_toml(&b.config("")).unwrap();
    let attester = attest::select(AttesterKind::Simulated, true, &Paths::default()).unwrap();
    let key = EphemeralKey::generate(KeyAlg::EcdhEsA256Kw).unwrap();
    let body = std::fs::read_to_string(&doc).unwrap();
    let wire = cvm_init::initdata::InitData::parse(&doc, body)
        .unwrap()
        .to_wire();
    let client = BrokerClient::new(&config.broker)
        .unwrap()
        .with_init_data(wire);
    let err = client
        .fetch_all(
            attester.as_ref(),
            &key,
            &["default/tls/key".parse().unwrap()],
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            BrokerError::Refused {
                kind: KbsErrorKind::AttestationFailed,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        b.log().contains("the evidence has no sample init_data"),
        "{}",
        b.log()
    );
}

#[test]
fn boot_takes_a_secret_from_bound_init_data() {
    // `boot` writes secrets to tmpfs below /run/cvm-init: give it a private
    // tmpfs there in a mount namespace (the tests run as root).
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("SKIPPED: boot_takes_a_secret_from_bound_init_data needs root");
        return;
    }
    let b = start(&[]);
    let res = b.dir.path().join("resources/default/app");
    std::fs::create_dir_all(&res).unwrap();
    std::fs::write(res.join("token"), b"app-token-42").unwrap();
    let shm = tempfile::tempdir_in("/dev/shm").unwrap();
    let (doc, digest) = init_data_doc(shm.path(), APP_SECRET);
    let cfg = shm.path().join("config.toml");
    // The host's own root is no dm-verity device: say what protects it.
    let config = format!(
        "{}\n[root]\nintegrity = \"image\"\nreason = \"test: the test host's root\"\n",
        init_data_config(&b, &doc, &digest)
    );
    std::fs::write(&cfg, config).unwrap();
    std::fs::create_dir_all("/run/cvm-init").unwrap();
    let script = format!(
        "mount -t tmpfs tmpfs /run/cvm-init && '{}' --config '{}' --cmdline /dev/null boot && cat /run/cvm-init/e2e/token",
        env!("CARGO_BIN_EXE_cvm-init"),
        cfg.display()
    );
    let out = Command::new("unshare")
        .args(["-m", "sh", "-c", &script])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(out.stdout, b"app-token-42");
    assert!(err.contains("adds 0 volume(s) and 1 secret(s)"), "{err}");
    assert!(b.log().contains("default/app/token"), "{}", b.log());
}

#[test]
fn a_command_line_that_opens_a_shell_gets_no_key() {
    let b = start(&[]);
    for (cmdline, word) in [
        ("root=/dev/vda ro rd.break", "rd.break"),
        (
            "root=/dev/vda rd.systemd.unit=emergency.target",
            "rd.systemd.unit=emergency.target",
        ),
        ("init=/bin/sh console=ttyS0", "init=/bin/sh"),
        ("BOOT_IMAGE=/vmlinuz single", "single"),
    ] {
        let f = fetch_with(&b.config(""), "default/tls/key", &[], cmdline, &[]);
        assert_failed_and_wrote_nothing(&f);
        assert!(
            f.stderr().contains(&format!("`{word}`")),
            "{cmdline}: {}",
            f.stderr()
        );
        assert!(f.stderr().contains("The host wrote it"), "{}", f.stderr());
    }
    assert!(
        !b.log().contains("/auth"),
        "the broker was contacted: {}",
        b.log()
    );
    // A debug image is warned, loudly, and goes on.
    let debug = format!("{}\n[failure]\ndebug_image = true\n", b.config(""));
    let f = fetch_with(&debug, "default/tls/key", &[], "rd.break", &[]);
    assert!(f.out.status.success(), "{}", f.stderr());
    assert!(
        f.stderr().contains("[DEBUG IMAGE, NOT SECURE]"),
        "{}",
        f.stderr()
    );
}

#[test]
fn proxy_variables_are_never_honoured() {
    let b = start(&[]);
    // A proxy that does not exist: honouring it would fail the fetch.
    let proxy = "http://127.0.0.1:1";
    let env = [
        ("HTTPS_PROXY", proxy),
        ("https_proxy", proxy),
        ("ALL_PROXY", proxy),
        ("all_proxy", proxy),
    ];
    let f = fetch_with(&b.config(""), "default/tls/key", &[], "", &env);
    assert!(f.out.status.success(), "{}", f.stderr());
    assert_eq!(std::fs::read(&f.target).unwrap(), SECRET);
}

#[test]
fn boot_refuses_an_unverified_root_before_attesting() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("SKIPPED: boot_refuses_an_unverified_root_before_attesting needs root");
        return;
    }
    let b = start(&[]);
    let shm = tempfile::tempdir_in("/dev/shm").unwrap();
    let cfg = shm.path().join("config.toml");
    let config = format!(
        "{}\n[[secret]]\nresource = \"default/tls/key\"\npath = \"/run/cvm-init/e2e/key\"\n",
        b.config("")
    );
    std::fs::write(&cfg, config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cvm-init"))
        .arg("--config")
        .arg(&cfg)
        .args(["--cmdline", "/dev/null", "boot"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("the workload's root / is not verified"),
        "{err}"
    );
    assert!(err.contains("integrity = \"image\""), "{err}");
    assert!(
        !b.log().contains("/auth"),
        "the broker was contacted: {}",
        b.log()
    );
}
