//! The KBS client: one attested session that fetches every resource the
//! plan needs.
//!
//! `POST /kbs/v0/auth` -> challenge nonce; `POST /kbs/v0/attest` with
//! evidence whose REPORT_DATA commits to the nonce and our ephemeral key ->
//! token; `GET /kbs/v0/resource/<path>` -> JWE to our key. Transient
//! failures (network, 5xx, expired session) are retried with backoff within
//! the configured deadline, each attempt with a fresh nonce; refusals
//! (policy, attestation, version) and bad replies stop at once.

use std::io::Read;
use std::time::Duration;

use kbs_types::{Attestation, Challenge, CompositeEvidence, Request, RuntimeData, Tee};
use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::header::{HeaderValue, COOKIE, SET_COOKIE};

use super::binding;
use super::error::{BrokerError, PROTOCOL_VERSION};
use super::jwe::EphemeralKey;
use super::reply::{self, MAX_BODY, MAX_ERROR_BODY};
use super::tls::{client_config, Pin};
use crate::attest::gpu::GpuCollector;
use crate::attest::Attester;
use crate::config::{BrokerConfig, ResourcePath};
use crate::retry::{retry, Attempt, Backoff, GaveUp};
use crate::secrets::Secret;
use crate::timing;

const SESSION_COOKIE: &str = "kbs-session-id";

/// A configured connection to the broker (no session yet).
pub struct BrokerClient {
    http: Client,
    base: String,
    config: BrokerConfig,
    init_data: Option<kbs_types::InitData>,
    gpus: Option<GpuCollector>,
    /// Challenge nonces answered so far ([`Self::check_fresh`]).
    nonces: std::sync::Mutex<Vec<String>>,
}

/// An attested session: the cookie and the token.
struct Session {
    cookie: Option<String>,
    token: String,
}

impl BrokerClient {
    /// Builds the HTTP client with TLS pinned as the config says.
    pub fn new(config: &BrokerConfig) -> Result<Self, BrokerError> {
        let mut builder = Client::builder()
            .connect_timeout(config.connect_timeout())
            .timeout(config.request_timeout())
            .redirect(reqwest::redirect::Policy::none())
            // HTTP(S)_PROXY and ALL_PROXY come from the environment, which
            // the host sets through the kernel command line for PID 1: a
            // proxy is never used (the broker is reached directly).
            .no_proxy()
            .user_agent(concat!("cvm-init/", env!("CARGO_PKG_VERSION")));
        if config.url.starts_with("https://") {
            let pin = match (&config.ca_cert, &config.spki_sha256) {
                (Some(ca), _) => Pin::ca_file(ca)?,
                (None, Some(hash)) => Pin::spki_hex(hash)?,
                (None, None) => {
                    return Err(BrokerError::Client(
                        "broker.url is https but no pin is configured".to_owned(),
                    ))
                }
            };
            builder = builder
                .tls_backend_preconfigured(client_config(&pin)?)
                .https_only(true);
        } else if !config.insecure_http {
            return Err(BrokerError::Client(
                "plain http needs broker.insecure_http = true (development only)".to_owned(),
            ));
        } else {
            log::warn!(
                "broker {} is plain HTTP: the broker is NOT authenticated (development only)",
                config.url
            );
        }
        let http = builder
            .build()
            .map_err(|e| BrokerError::Client(crate::logging::error_line(&e)))?;
        Ok(Self {
            http,
            base: format!("{}/kbs/v0", config.url.trim_end_matches('/')),
            config: config.clone(),
            init_data: None,
            gpus: None,
            nonces: Default::default(),
        })
    }

    /// Sends `init_data` in every `/attest` (a document already checked
    /// against the VM's HOST_DATA / MRCONFIGID, see [`crate::initdata`]).
    pub fn with_init_data(mut self, init_data: kbs_types::InitData) -> Self {
        self.init_data = Some(init_data);
        self
    }

    /// Sends the evidence of `gpus` with every `/attest`, as
    /// `additional_evidence` `{"nvidia": ...}`, and lets the GPUs accept
    /// work once the broker accepted it.
    pub fn with_gpus(mut self, gpus: GpuCollector) -> Self {
        self.gpus = Some(gpus);
        self
    }

    /// Attests once and fetches every resource in `resources`, in order.
    /// Resources already fetched are kept across retries; a new session is
    /// made only when the previous one failed transiently.
    pub fn fetch_all(
        &self,
        attester: &dyn Attester,
        key: &EphemeralKey,
        resources: &[ResourcePath],
    ) -> Result<Vec<(ResourcePath, Secret)>, BrokerError> {
        let mut got: Vec<Option<Secret>> = vec![None; resources.len()];
        let started = std::time::Instant::now();
        let backoff = Backoff::with_deadline(self.config.deadline());
        let outcome = retry(
            backoff,
            |attempt, left| {
                self.attempt(attester, key, resources, &mut got, attempt, left)
                    .map_err(|e| {
                        if e.is_transient() {
                            Attempt::Transient(e)
                        } else {
                            Attempt::Permanent(e)
                        }
                    })
            },
            |attempt, e, wait| {
                log::warn!(
                    "broker attempt {attempt} failed, retrying in {} ms: {e}",
                    wait.as_millis()
                )
            },
        );
        match outcome {
            Ok(()) => Ok(resources
                .iter()
                .cloned()
                .zip(got.into_iter().flatten())
                .collect()),
            Err(GaveUp::Permanent(e)) => Err(e),
            Err(GaveUp::Deadline { attempts, last }) => Err(BrokerError::Deadline {
                attempts,
                secs: self.config.deadline_secs,
                spent_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                last: Box::new(last),
            }),
        }
    }

    fn attempt(
        &self,
        attester: &dyn Attester,
        key: &EphemeralKey,
        resources: &[ResourcePath],
        got: &mut [Option<Secret>],
        attempt: u32,
        left: Duration,
    ) -> Result<(), BrokerError> {
        let timeout = self
            .config
            .request_timeout()
            .min(left.max(Duration::from_secs(1)));
        let session = self.handshake(attester, key, attempt, timeout)?;
        for (resource, slot) in resources.iter().zip(got.iter_mut()) {
            if slot.is_none() {
                *slot = Some(self.get_resource(&session, key, resource, timeout)?);
            }
        }
        Ok(())
    }

    fn handshake(
        &self,
        attester: &dyn Attester,
        key: &EphemeralKey,
        attempt: u32,
        timeout: Duration,
    ) -> Result<Session, BrokerError> {
        let tee = attester.tee();
        let sim = if tee == Tee::Sample {
            " [SIMULATED TEE: NOT SECURE]"
        } else {
            ""
        };
        log::info!(
            "broker {}: attempt {attempt}, TEE {tee}{sim} ({})",
            self.config.url,
            attester.describe()
        );
        let request = Request {
            version: PROTOCOL_VERSION.to_owned(),
            tee,
            extra_params: serde_json::Value::Object(Default::default()),
        };
        let url = format!("{}/auth", self.base);
        // The first request of a session also connects (TCP, TLS handshake).
        let auth = timing::phase(format!("auth (attempt {attempt})"));
        let reply = self.send(self.http.post(&url).json(&request), &url, timeout)?;
        let cookie = session_cookie(&reply);
        let challenge: Challenge = reply::challenge(&read_body(reply, &url)?, &url)?;
        auth.end();
        self.check_fresh(&challenge.nonce, &url)?;

        let tee_pubkey = key.public_jwk();
        let additional = match &self.gpus {
            None => String::new(),
            Some(gpus) => {
                // The GPUs bind the runtime data without the additional
                // evidence (it cannot contain itself); the CPU's digest
                // below then covers the GPU evidence.
                let nonce = binding::gpu_nonce(&challenge.nonce, &tee_pubkey)
                    .map_err(|e| BrokerError::Binding(e.to_string()))?;
                let evidence = timing::timed("GPU evidence", || gpus.collect(&nonce))?;
                serde_json::json!({ "nvidia": evidence }).to_string()
            }
        };
        let digest = binding::runtime_data_digest(&challenge.nonce, &tee_pubkey, &additional)
            .map_err(|e| BrokerError::Binding(e.to_string()))?;
        log::info!(
            "attesting{sim}: nonce {}, REPORT_DATA binds SHA-384 {}{}",
            challenge.nonce,
            hex::encode(digest),
            if additional.is_empty() {
                String::new()
            } else {
                format!(
                    " (with the evidence of {} GPU(s), {} bytes)",
                    self.gpus.as_ref().map_or(0, |g| g.devices().len()),
                    additional.len()
                )
            }
        );
        let evidence = timing::timed("evidence", || attester.evidence(&digest))?;
        let attestation = Attestation {
            init_data: self.init_data.clone(),
            runtime_data: RuntimeData {
                nonce: challenge.nonce,
                tee_pubkey,
            },
            tee_evidence: CompositeEvidence {
                primary_evidence: evidence,
                additional_evidence: additional,
            },
        };
        let url = format!("{}/attest", self.base);
        let mut req = self.http.post(&url).json(&attestation);
        if let Some(c) = &cookie {
            req = req.header(COOKIE, format!("{SESSION_COOKIE}={c}"));
        }
        let attest = timing::phase("attest");
        let reply = self.send(req, &url, timeout)?;
        let cookie = session_cookie(&reply).or(cookie);
        let token = reply::token(&read_body(reply, &url)?, &url)?;
        attest.end();
        log::info!("attestation accepted{sim}; session established");
        if let Some(gpus) = &self.gpus {
            gpus.set_ready()?;
        }
        Ok(Session { cookie, token })
    }

    fn get_resource(
        &self,
        session: &Session,
        key: &EphemeralKey,
        resource: &ResourcePath,
        timeout: Duration,
    ) -> Result<Secret, BrokerError> {
        let url = format!("{}/resource/{resource}", self.base);
        let _phase = timing::phase(format!("resource {resource}"));
        let mut req = self.http.get(&url).bearer_auth(&session.token);
        if let Some(c) = &session.cookie {
            req = req.header(COOKIE, format!("{SESSION_COOKIE}={c}"));
        }
        let reply = self.send(req, &url, timeout)?;
        let secret = reply::resource(&read_body(reply, &url)?, key, &resource.to_string())?;
        log::info!("resource {resource}: received {} bytes", secret.len());
        Ok(secret)
    }

    /// Sends a request; non-2xx replies become classified errors.
    fn send(
        &self,
        req: RequestBuilder,
        url: &str,
        timeout: Duration,
    ) -> Result<Response, BrokerError> {
        let reply = req
            .timeout(timeout)
            .send()
            .map_err(|e| transport_error(url, &e))?;
        let status = reply.status();
        if status.is_success() {
            return Ok(reply);
        }
        let body = read_limited(reply, MAX_ERROR_BODY).unwrap_or_default();
        Err(reply::error(status.as_u16(), &body, url))
    }

    /// Refuses a challenge nonce this client already answered: a broker
    /// (or whoever holds its key) serving an old challenge again would let
    /// evidence made for one session be accepted in another.
    fn check_fresh(&self, nonce: &str, url: &str) -> Result<(), BrokerError> {
        let mut seen = self.nonces.lock().unwrap_or_else(|p| p.into_inner());
        if seen.iter().any(|n| n == nonce) {
            return Err(BrokerError::BadReply {
                url: url.to_owned(),
                what: format!(
                    "the challenge nonce {nonce:?} was already answered in this boot: the broker \
                     replayed an old challenge. Check the broker (its nonces must be random per \
                     session)"
                ),
            });
        }
        seen.push(nonce.to_owned());
        Ok(())
    }
}

fn session_cookie(reply: &Response) -> Option<String> {
    reply
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v: &HeaderValue| v.to_str().ok())
        .find_map(|v| {
            let first = v.split(';').next()?.trim();
            let (name, value) = first.split_once('=')?;
            (name == SESSION_COOKIE).then(|| value.to_owned())
        })
}

fn read_limited(reply: Response, limit: u64) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    reply.take(limit + 1).read_to_end(&mut body)?;
    Ok(body)
}

fn read_body(reply: Response, url: &str) -> Result<Vec<u8>, BrokerError> {
    let body = read_limited(reply, MAX_BODY).map_err(|e| BrokerError::Unreachable {
        url: url.to_owned(),
        reason: format!("reading the reply failed: {e}"),
    })?;
    if body.len() as u64 > MAX_BODY {
        return Err(BrokerError::BadReply {
            url: url.to_owned(),
            what: format!(
                "the reply is larger than {MAX_BODY} bytes, the most a KBS reply may be \
                 (resources are keys and certificates); reading stopped there. Check the \
                 resource on the broker, or what answers at this URL"
            ),
        });
    }
    Ok(body)
}

/// Classifies a failed send: a certificate that is not the pinned one is
/// final; everything else at the transport level is worth a retry.
fn transport_error(url: &str, e: &reqwest::Error) -> BrokerError {
    let chain = crate::logging::error_line(e);
    // rustls' error sits inside an io::Error inside hyper's and reqwest's
    // wrappers, and io::Error hides its payload from `source()`, so look
    // through both ways; rustls names the failure "invalid peer certificate".
    let pin_failure = find_rustls_error(e)
        .is_some_and(|r| matches!(r, rustls::Error::InvalidCertificate(_)))
        || chain.contains("invalid peer certificate");
    if pin_failure {
        return BrokerError::NotPinned {
            url: url.to_owned(),
            reason: chain,
        };
    }
    BrokerError::Unreachable {
        url: url.to_owned(),
        reason: chain,
    }
}

fn find_rustls_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    if let Some(r) = e.downcast_ref::<rustls::Error>() {
        return Some(r);
    }
    if let Some(inner) = e
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
    {
        if let Some(r) = find_rustls_error(inner) {
            return Some(r);
        }
    }
    e.source().and_then(find_rustls_error)
}
