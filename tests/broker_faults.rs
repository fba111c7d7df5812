//! The broker fault matrix, part two: hostile or broken brokers the real
//! `cvm-init fetch` meets over pinned TLS (kbs-dev's `--fault` switches,
//! tools/kbs-dev/src/faults.rs). Each case asserts what failed is named,
//! nothing is written, and the agent's peak RSS stays under
//! [`RSS_LIMIT_KIB`] whatever the broker sends. (Part one, the classic
//! faults: tests/broker_e2e.rs.)

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

mod support;
use support::{fetch_with, Broker, Fetch};

const SECRET: &[u8] = b"the secret\n";
/// Peak RSS the agent may reach under any reply (issue 11: 32 MiB).
const RSS_LIMIT_KIB: u64 = 32 << 10;

fn kbs_dev() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| support::build("kbs-dev", "kbs-dev"))
}

fn start(faults: &[&str]) -> Broker {
    let args: Vec<&str> = faults.iter().flat_map(|f| ["--fault", f]).collect();
    Broker::start(kbs_dev(), "tls/key", SECRET, true, &args)
}

/// Short timeouts, so the transient cases reach their deadline quickly.
fn config(b: &Broker) -> String {
    format!(
        "[broker]\nurl = \"{}\"\nca_cert = \"{}\"\nconnect_timeout_secs = 2\n\
         request_timeout_secs = 3\ndeadline_secs = 6\n\
         [attester]\nkind = \"simulated\"\nallow_simulated = true\n",
        b.url,
        b.ca().display()
    )
}

fn fetch(b: &Broker) -> Fetch {
    let f = fetch_with(&config(b), "default/tls/key", &[], "console=ttyS0", &[]);
    eprintln!(
        "peak RSS {} KiB, {:.1} s",
        f.max_rss_kib,
        f.elapsed.as_secs_f64()
    );
    assert!(
        f.max_rss_kib < RSS_LIMIT_KIB,
        "peak RSS {} KiB over the {RSS_LIMIT_KIB} KiB limit",
        f.max_rss_kib
    );
    f
}

/// The fetch failed, wrote nothing, and its last error line says `what`.
fn refused(faults: &[&str], what: &[&str]) -> Fetch {
    let b = start(faults);
    let f = fetch(&b);
    f.assert_failed_and_wrote_nothing();
    let err = f.stderr();
    eprintln!(
        "{faults:?}: {}",
        err.lines()
            .rfind(|l| l.contains("ERROR"))
            .unwrap_or_default()
    );
    for w in what {
        assert!(err.contains(w), "{faults:?}: no {w:?} in:\n{err}");
    }
    f
}

#[test]
fn an_expired_session_is_attested_again() {
    let b = start(&["expire-session"]);
    let f = fetch(&b);
    assert!(f.out.status.success(), "{}", f.stderr());
    assert_eq!(std::fs::read(&f.target).unwrap(), SECRET);
    assert!(f.stderr().contains("TokenInvalid"), "{}", f.stderr());
    assert_eq!(b.log().matches("/attest ok").count(), 2, "{}", b.log());
}

#[test]
fn a_session_expired_mid_fetch_is_attested_again_for_the_rest() {
    use cvm_init::attest::{self, Paths};
    use cvm_init::broker::jwe::{EphemeralKey, KeyAlg};
    use cvm_init::broker::BrokerClient;
    use cvm_init::config::{AttesterKind, Config};

    let b = start(&["expire-session=2"]);
    std::fs::write(b.dir.path().join("resources/default/tls/cert"), b"cert\n").unwrap();
    let config = Config::from_toml(&config(&b)).unwrap();
    let attester = attest::select(AttesterKind::Simulated, true, &Paths::default()).unwrap();
    let key = EphemeralKey::generate(KeyAlg::EcdhEsA256Kw).unwrap();
    let client = BrokerClient::new(&config.broker).unwrap();
    let plan = [
        "default/tls/key".parse().unwrap(),
        "default/tls/cert".parse().unwrap(),
    ];
    let got = client.fetch_all(attester.as_ref(), &key, &plan).unwrap();
    assert_eq!(got[0].1.expose(), SECRET);
    assert_eq!(got[1].1.expose(), b"cert\n");
    let log = b.log();
    assert_eq!(log.matches("/attest ok").count(), 2, "{log}");
    // The resource fetched before the expiry is not fetched again.
    assert_eq!(log.matches("tls/key: released").count(), 1, "{log}");
    assert_eq!(log.matches("tls/cert: released").count(), 1, "{log}");
}

#[test]
fn a_replayed_challenge_is_refused() {
    refused(
        &["replay-nonce"],
        &[
            "was already answered in this boot",
            "replayed an old challenge",
        ],
    );
}

#[test]
fn malformed_or_empty_challenge_nonces_are_refused() {
    refused(&["bad-nonce=empty"], &["nonce is 0 characters long"]);
    refused(&["bad-nonce=binary"], &["is not base64 text"]);
    refused(&["bad-nonce=long"], &["nonce is 100000 characters long"]);
}

#[test]
fn deeply_nested_json_is_refused() {
    refused(&["nested-json"], &["recursion limit"]);
}

#[test]
fn a_tampered_jwe_is_refused() {
    for (part, what) in [
        ("tag", "could not be decrypted"),
        ("iv", "could not be decrypted"),
        ("aad", "could not be decrypted"),
        ("alg", "RSA1_5"),
        ("enc", "A128CBC-HS256"),
    ] {
        refused(
            &[&format!("jwe={part}")],
            &["resource default/tls/key", what],
        );
    }
}

#[test]
fn a_protocol_version_the_client_does_not_speak_is_named() {
    refused(&["version"], &["VersionMismatch", "KBS protocol 0.4.0"]);
}

#[test]
fn oversized_bodies_are_cut_at_one_mebibyte() {
    for fault in ["big-body", "endless-body"] {
        let f = refused(&[fault], &["larger than 1048576 bytes"]);
        assert!(
            f.elapsed < Duration::from_secs(20),
            "{fault}: {:?}",
            f.elapsed
        );
    }
}

#[test]
fn a_drip_is_cut_at_the_request_timeout_and_the_deadline() {
    let f = refused(&["drip"], &["gave up after", "broker.deadline_secs = 6"]);
    assert!(f.elapsed < Duration::from_secs(20), "{:?}", f.elapsed);
}

#[test]
fn a_reset_mid_reply_is_retried_to_the_deadline() {
    refused(&["reset"], &["gave up after", "peer closed connection"]);
}

#[test]
fn endless_headers_are_cut() {
    let f = refused(&["endless-headers"], &["cannot reach the broker"]);
    assert!(f.elapsed < Duration::from_secs(20), "{:?}", f.elapsed);
}
