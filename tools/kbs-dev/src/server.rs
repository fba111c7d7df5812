//! The KBS endpoints: /kbs/v0/auth, /kbs/v0/attest, /kbs/v0/resource/..

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use cvm_init::broker::binding::runtime_data_digest;
use cvm_init::broker::jwe::{self, EphemeralKey, KeyAlg};
use kbs_types::{Attestation, Request, TeePubKey};
use rand::RngCore;

use crate::faults::{self, Fault};
use crate::policy::Policy;
use crate::verify::{verify, verify_additional, verify_init_data, GpuSignatures};
use crate::Args;

const VERSION: &str = "0.4.0";
const SESSION_TTL: Duration = Duration::from_secs(300);
const ERR_BASE: &str = "https://github.com/confidential-containers/kbs/errors/";

struct Session {
    nonce: String,
    tee: String,
    created: Instant,
    attested: Option<Attested>,
}

struct Attested {
    token: String,
    pubkey: TeePubKey,
    measurement: String,
}

struct Broker {
    resources: PathBuf,
    policy: Policy,
    faults: Vec<Fault>,
    fault_count: Option<u64>,
    gpu_signatures: GpuSignatures,
    requests: AtomicU64,
    /// `replay-nonce`: the first nonce issued; the number of `/attest`s.
    first_nonce: Mutex<Option<String>>,
    attests: AtomicU64,
    /// `expire-session`: whether a session was expired already.
    expired_once: AtomicBool,
    /// Resource requests with a valid token so far.
    resource_requests: AtomicU64,
    sessions: Mutex<HashMap<String, Session>>,
}

impl Broker {
    fn has(&self, f: &Fault) -> bool {
        self.faults.contains(f)
    }
}

pub async fn run(args: Args, policy: Policy) -> Result<()> {
    let broker = Arc::new(Broker {
        resources: args.resources.clone(),
        policy,
        faults: args.faults.clone(),
        fault_count: args.fault_count,
        gpu_signatures: args.gpu_signatures,
        requests: AtomicU64::new(0),
        first_nonce: Mutex::new(None),
        attests: AtomicU64::new(0),
        expired_once: AtomicBool::new(false),
        resource_requests: AtomicU64::new(0),
        sessions: Mutex::new(HashMap::new()),
    });
    let app = Router::new()
        .route("/kbs/v0/auth", post(auth))
        .route("/kbs/v0/attest", post(attest))
        .route("/kbs/v0/resource/{repo}/{ty}/{tag}", get(resource))
        .layer(axum::middleware::from_fn_with_state(broker.clone(), faults))
        .with_state(broker);

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    let scheme = if args.insecure_http { "http" } else { "https" };
    let url = format!("{scheme}://{addr}");
    if args.insecure_http {
        announce(&args, &url)?;
        axum::serve(listener, app).await?;
        return Ok(());
    }
    let acceptor = crate::tls::acceptor(crate::tls::server_config(
        args.tls_dir.as_deref(),
        args.keep_ca,
    )?);
    announce(&args, &url)?;
    loop {
        let (stream, _) = listener.accept().await?;
        let acceptor = acceptor.clone();
        let app = app.clone();
        let endless = args.faults.contains(&Fault::EndlessHeaders);
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(stream).await else {
                return;
            };
            if endless {
                faults::endless_headers(tls).await;
                return;
            }
            let service = hyper_util::service::TowerToHyperService::new(app);
            let _ =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
        });
    }
}

fn announce(args: &Args, url: &str) -> Result<()> {
    eprintln!(
        "kbs-dev: listening on {url} (resources from {})",
        args.resources.display()
    );
    if let Some(dir) = &args.tls_dir {
        eprintln!("kbs-dev: pin the CA at {}", dir.join("ca.pem").display());
    }
    if let Some(path) = &args.ready_file {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, url)?;
        std::fs::rename(&tmp, path)?;
    }
    Ok(())
}

/// Injects the delay, status and HTML faults around every request.
async fn faults(
    State(b): State<Arc<Broker>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let n = b.requests.fetch_add(1, Ordering::SeqCst);
    for f in &b.faults {
        if let Fault::Delay(d) = f {
            tokio::time::sleep(*d).await;
        }
    }
    let active = b.fault_count.is_none_or(|limit| n < limit);
    if active {
        for f in &b.faults {
            match f {
                Fault::Status(code) => {
                    let status = StatusCode::from_u16(*code).unwrap_or(StatusCode::BAD_GATEWAY);
                    return (status, "injected fault").into_response();
                }
                Fault::Html => {
                    return (
                        StatusCode::OK,
                        [(header::CONTENT_TYPE, "text/html")],
                        "<html><body>Please log in to the hotel wifi</body></html>",
                    )
                        .into_response()
                }
                _ => {}
            }
        }
    }
    next.run(req).await
}

/// A KBS error reply: 401, JSON body, no Content-Type (as Trustee sends).
fn kbs_error(variant: &str, detail: &str) -> Response {
    let body = serde_json::json!({"type": format!("{ERR_BASE}{variant}"), "detail": detail});
    let mut resp = Response::new(axum::body::Body::from(body.to_string()));
    *resp.status_mut() = StatusCode::UNAUTHORIZED;
    resp
}

fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

async fn auth(State(b): State<Arc<Broker>>, body: Bytes) -> Response {
    let req: Request = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kbs-dev: /auth: bad request: {e}");
            return kbs_error("InvalidRequest", &format!("bad request: {e}"));
        }
    };
    if b.has(&Fault::NestedJson) {
        return faults::nested_json();
    }
    // `version`: answer as a broker of a later protocol would.
    let expect = if b.has(&Fault::Version) {
        "0.5.0"
    } else {
        VERSION
    };
    if req.version != expect {
        return kbs_error(
            "AttestationError",
            &format!(
                "KBS Client Protocol Version Mismatch: expect ={expect} while the request is {}",
                req.version
            ),
        );
    }
    let mut nonce = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let mut nonce = STANDARD.encode(nonce);
    for f in &b.faults {
        match f {
            Fault::BadNonce(kind) => nonce = faults::bad_nonce(kind),
            Fault::ReplayNonce => {
                if let Ok(mut first) = b.first_nonce.lock() {
                    nonce = first.get_or_insert(nonce).clone();
                }
            }
            _ => {}
        }
    }
    let id = random_hex(16);
    let tee = req.tee.to_string();
    eprintln!("kbs-dev: /auth: session {id}, tee {tee}");
    if let Ok(mut s) = b.sessions.lock() {
        s.retain(|_, v| v.created.elapsed() < SESSION_TTL);
        s.insert(
            id.clone(),
            Session {
                nonce: nonce.clone(),
                tee,
                created: Instant::now(),
                attested: None,
            },
        );
    }
    let body = serde_json::json!({"nonce": nonce, "extra-params": ""});
    (
        [(
            header::SET_COOKIE,
            format!("kbs-session-id={id}; Path=/kbs/v0; HttpOnly"),
        )],
        body.to_string(),
    )
        .into_response()
}

fn cookie_session(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| kv.trim().strip_prefix("kbs-session-id=").map(str::to_owned))
}

async fn attest(State(b): State<Arc<Broker>>, headers: HeaderMap, body: Bytes) -> Response {
    let fail = |why: String| {
        eprintln!("kbs-dev: /attest refused: {why}");
        kbs_error("AttestationError", "RCAR handshake Attest failed")
    };
    let Some(id) = cookie_session(&headers) else {
        return fail("no kbs-session-id cookie".to_owned());
    };
    let (nonce, tee) = match b.sessions.lock().ok().and_then(|s| {
        s.get(&id)
            .filter(|v| v.created.elapsed() < SESSION_TTL)
            .map(|v| (v.nonce.clone(), v.tee.clone()))
    }) {
        Some(v) => v,
        None => return fail(format!("unknown or expired session {id}")),
    };
    if b.has(&Fault::ReplayNonce) && b.attests.fetch_add(1, Ordering::SeqCst) == 0 {
        eprintln!("kbs-dev: /attest: replay-nonce: failing the first attestation with 503");
        return (StatusCode::SERVICE_UNAVAILABLE, "injected fault").into_response();
    }
    let att: Attestation = match serde_json::from_slice(&body) {
        Ok(a) => a,
        Err(e) => return fail(format!("bad attestation body: {e}")),
    };
    let expected_nonce = if b.has(&Fault::WrongNonce) {
        "injected-wrong-nonce".to_owned()
    } else {
        nonce
    };
    if att.runtime_data.nonce != expected_nonce {
        return fail("runtime-data nonce is not the session's nonce".to_owned());
    }
    let digest = match runtime_data_digest(
        &att.runtime_data.nonce,
        &att.runtime_data.tee_pubkey,
        &att.tee_evidence.additional_evidence,
    ) {
        Ok(d) => d,
        Err(e) => return fail(format!("cannot hash runtime data: {e}")),
    };
    let claims = match verify(&tee, &att.tee_evidence.primary_evidence, &digest) {
        Ok(c) => c,
        Err(why) => return fail(why),
    };
    // The digest above covers the additional evidence string; here each
    // device's own binding (its nonce) is checked.
    match verify_additional(
        &att.tee_evidence.additional_evidence,
        &att.runtime_data.nonce,
        &att.runtime_data.tee_pubkey,
        b.gpu_signatures,
    ) {
        Ok(notes) => {
            for n in notes {
                eprintln!("kbs-dev: /attest: {n}");
            }
        }
        Err(why) => return fail(why),
    }
    let measurement = claims.measurement.clone();
    if let Some(init_data) = &att.init_data {
        match verify_init_data(&claims, init_data) {
            Ok(note) => eprintln!("kbs-dev: /attest: {note}"),
            Err(why) => return fail(why),
        }
    }
    let token = random_hex(32);
    eprintln!("kbs-dev: /attest ok: session {id}, tee {tee}, measurement {measurement}");
    if let Ok(mut s) = b.sessions.lock() {
        if let Some(v) = s.get_mut(&id) {
            v.attested = Some(Attested {
                token: token.clone(),
                pubkey: att.runtime_data.tee_pubkey,
                measurement,
            });
        }
    }
    serde_json::json!({ "token": token })
        .to_string()
        .into_response()
}

async fn resource(
    State(b): State<Arc<Broker>>,
    UrlPath((repo, ty, tag)): UrlPath<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let path = format!("{repo}/{ty}/{tag}");
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let cookie = cookie_session(&headers);
    let found = b.sessions.lock().ok().and_then(|s| {
        s.iter()
            .filter(|(_, v)| v.created.elapsed() < SESSION_TTL)
            .find_map(|(id, v)| {
                let a = v.attested.as_ref()?;
                let ok = bearer.as_deref() == Some(a.token.as_str())
                    || (bearer.is_none() && cookie.as_deref() == Some(id.as_str()));
                ok.then(|| (v.tee.clone(), a.measurement.clone(), a.pubkey.clone()))
            })
    });
    let Some((tee, measurement, pubkey)) = found else {
        return kbs_error("TokenNotFound", "Attestation Token not found");
    };
    let nth = b.resource_requests.fetch_add(1, Ordering::SeqCst) + 1;
    let expire_at = b.faults.iter().find_map(|f| match f {
        Fault::ExpireSession(n) => Some(*n),
        _ => None,
    });
    if expire_at == Some(nth) && !b.expired_once.swap(true, Ordering::SeqCst) {
        if let Ok(mut s) = b.sessions.lock() {
            s.clear();
        }
        eprintln!("kbs-dev: {path}: expire-session: the session expired");
        return kbs_error("TokenVerifierError", "Token Verifier error");
    }
    if let Some(hostile) = faults::hostile_resource(&b.faults) {
        eprintln!(
            "kbs-dev: {path}: answering with a hostile body ({:?})",
            b.faults
        );
        return hostile;
    }
    let segment_ok = |s: &str| {
        !s.is_empty()
            && !s.starts_with('.')
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    };
    if ![&repo, &ty, &tag].iter().all(|s| segment_ok(s)) {
        return kbs_error("InvalidRequest", "bad resource path");
    }
    if b.has(&Fault::Deny) || !b.policy.allows(&tee, &measurement, &path) {
        eprintln!("kbs-dev: {path}: denied for tee {tee}, measurement {measurement}");
        return kbs_error("PolicyDeny", "Access denied by policy");
    }
    let Ok(data) = std::fs::read(b.resources.join(&repo).join(&ty).join(&tag)) else {
        eprintln!("kbs-dev: {path}: no such resource");
        return kbs_error("PluginInternalError", "Plugin internal error");
    };
    let recipient = if b.has(&Fault::WrongKey) {
        match EphemeralKey::generate(KeyAlg::EcdhEsA256Kw) {
            Ok(k) => k.public_jwk(),
            Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        }
    } else {
        pubkey
    };
    let mut jwe = match jwe::encrypt(&recipient, &data) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("kbs-dev: {path}: cannot encrypt: {e}");
            return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
        }
    };
    if b.has(&Fault::CorruptJwe) {
        if let Some(ct) = jwe.get_mut("ciphertext") {
            if let Some(s) = ct.as_str() {
                let mut chars: Vec<char> = s.chars().collect();
                if let Some(c) = chars.first_mut() {
                    *c = if *c == 'A' { 'B' } else { 'A' };
                }
                *ct = serde_json::Value::String(chars.into_iter().collect());
            }
        }
    }
    for f in &b.faults {
        if let Fault::Jwe(what) = f {
            faults::tamper_jwe(&mut jwe, what);
        }
    }
    eprintln!("kbs-dev: {path}: released to tee {tee}");
    jwe.to_string().into_response()
}
