//! Faults kbs-dev injects for tests (`--fault NAME[=VALUE]`, repeatable),
//! and the hostile replies they produce: each stands for a broker, or a
//! network in between, that misbehaves in one way the agent must survive.

use std::convert::Infallible;
use std::str::FromStr;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use futures_util::stream;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A fault to inject, for tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Sleep this long before every reply.
    Delay(Duration),
    /// Answer every request (or the first `--fault-count`) with this status.
    Status(u16),
    /// Refuse every resource by policy.
    Deny,
    /// Check the attestation against a nonce other than the one issued.
    WrongNonce,
    /// Flip a byte of every JWE ciphertext.
    CorruptJwe,
    /// Encrypt resources to a key that is not the agent's.
    WrongKey,
    /// Answer with an HTML page and status 200 (a captive portal or proxy).
    Html,
    /// The Nth resource request of the run (`expire-session=N`, N = 1 by
    /// default) finds its session expired: 401 `TokenVerifierError`, as
    /// Trustee answers once the cookie's session is gone and it falls back
    /// to the bearer token. Once per run.
    ExpireSession(u64),
    /// Serve the first challenge nonce again in every later `/auth`; the
    /// first `/attest` fails with 503 so that the agent asks again.
    ReplayNonce,
    /// A challenge whose nonce is `empty`, `binary` or `long`.
    BadNonce(String),
    /// Answer `/auth` with JSON nested 200 000 levels deep.
    NestedJson,
    /// Resource replies: this part of the JWE altered (`tag`, `iv`, `aad`:
    /// the protected header re-encoded with an extra member, `alg`, `enc`).
    Jwe(String),
    /// Resource replies close the connection halfway through the body.
    Reset,
    /// Resource replies announce and stream 1 GiB.
    BigBody,
    /// Resource replies stream without end (chunked).
    EndlessBody,
    /// Resource replies send one byte a second.
    Drip,
    /// Every connection gets a status line and then headers without end
    /// (TLS only).
    EndlessHeaders,
    /// `/auth` answers as a broker speaking another protocol version.
    Version,
}

impl FromStr for Fault {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (name, value) = s.split_once('=').unwrap_or((s, ""));
        let one_of = |v: &str, allowed: &[&str], what: &str| {
            if allowed.contains(&v) {
                Ok(v.to_owned())
            } else {
                Err(format!("{what}={}", allowed.join("|")))
            }
        };
        Ok(match name {
            "delay" => Fault::Delay(Duration::from_millis(
                value.parse().map_err(|_| "delay=MILLISECONDS".to_owned())?,
            )),
            "status" => Fault::Status(value.parse().map_err(|_| "status=CODE".to_owned())?),
            "deny" => Fault::Deny,
            "wrong-nonce" => Fault::WrongNonce,
            "corrupt-jwe" => Fault::CorruptJwe,
            "wrong-key" => Fault::WrongKey,
            "html" => Fault::Html,
            "expire-session" => Fault::ExpireSession(if value.is_empty() {
                1
            } else {
                value
                    .parse()
                    .map_err(|_| "expire-session[=REQUEST NUMBER]".to_owned())?
            }),
            "replay-nonce" => Fault::ReplayNonce,
            "bad-nonce" => Fault::BadNonce(one_of(value, &["empty", "binary", "long"], name)?),
            "nested-json" => Fault::NestedJson,
            "jwe" => Fault::Jwe(one_of(value, &["tag", "iv", "aad", "alg", "enc"], name)?),
            "reset" => Fault::Reset,
            "big-body" => Fault::BigBody,
            "endless-body" => Fault::EndlessBody,
            "drip" => Fault::Drip,
            "endless-headers" => Fault::EndlessHeaders,
            "version" => Fault::Version,
            other => return Err(format!("unknown fault {other:?}")),
        })
    }
}

/// The nonce a `bad-nonce` challenge carries.
pub fn bad_nonce(kind: &str) -> String {
    match kind {
        "empty" => String::new(),
        "binary" => "\u{0}\u{1}not base64 at all \u{7f}".to_owned(),
        _ => "A".repeat(100_000),
    }
}

/// `{"nonce": "...", "extra-params": [[[[...]]]]}`, 200 000 levels (400 KB:
/// under the agent's body limit, so its JSON parser meets it).
pub fn nested_json() -> Response {
    let depth = 200_000;
    let mut body = String::with_capacity(2 * depth + 64);
    body.push_str(r#"{"nonce":"bm9uY2U=","extra-params":"#);
    body.extend(std::iter::repeat_n('[', depth));
    body.extend(std::iter::repeat_n(']', depth));
    body.push('}');
    body.into_response()
}

/// A resource reply replaced by a hostile body, for the faults that do so.
pub fn hostile_resource(faults: &[Fault]) -> Option<Response> {
    const CHUNK: usize = 64 << 10;
    let chunk = || Ok::<_, Infallible>(Bytes::from(vec![b'A'; CHUNK]));
    for f in faults {
        let body = match f {
            Fault::BigBody => {
                let n = (1usize << 30) / CHUNK;
                let mut resp = Response::new(Body::from_stream(stream::iter(
                    (0..n).map(move |_| chunk()),
                )));
                resp.headers_mut().insert(
                    header::CONTENT_LENGTH,
                    header::HeaderValue::from(1u64 << 30),
                );
                return Some(resp);
            }
            Fault::EndlessBody => Body::from_stream(stream::repeat_with(chunk)),
            Fault::Drip => Body::from_stream(stream::unfold((), |()| async {
                tokio::time::sleep(Duration::from_secs(1)).await;
                Some((Ok::<_, Infallible>(Bytes::from_static(b"{")), ()))
            })),
            Fault::Reset => {
                let parts: Vec<Result<Bytes, std::io::Error>> = vec![
                    Ok(Bytes::from_static(br#"{"protected":"eyJhbGciOi"#)),
                    Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionReset,
                        "injected reset",
                    )),
                ];
                let mut resp = Response::new(Body::from_stream(stream::iter(parts)));
                resp.headers_mut()
                    .insert(header::CONTENT_LENGTH, header::HeaderValue::from(4096u64));
                return Some(resp);
            }
            _ => continue,
        };
        return Some((StatusCode::OK, body).into_response());
    }
    None
}

/// Alters the part of a flattened JWE that `what` names.
pub fn tamper_jwe(jwe: &mut serde_json::Value, what: &str) {
    let flip = |s: &str| -> String {
        let mut b = URL_SAFE_NO_PAD.decode(s).unwrap_or_default();
        if let Some(x) = b.first_mut() {
            *x ^= 1;
        }
        URL_SAFE_NO_PAD.encode(b)
    };
    let header = |jwe: &serde_json::Value| -> serde_json::Value {
        jwe.get("protected")
            .and_then(|p| p.as_str())
            .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    };
    let set_header = |jwe: &mut serde_json::Value, h: serde_json::Value| {
        jwe["protected"] = URL_SAFE_NO_PAD.encode(h.to_string()).into();
    };
    match what {
        "tag" | "iv" => {
            let v = jwe[what].as_str().unwrap_or_default().to_owned();
            jwe[what] = flip(&v).into();
        }
        "aad" => {
            let mut h = header(jwe);
            h["kid"] = "injected".into();
            set_header(jwe, h);
        }
        "alg" => {
            let mut h = header(jwe);
            h["alg"] = "RSA1_5".into();
            set_header(jwe, h);
        }
        _ => {
            let mut h = header(jwe);
            h["enc"] = "A128CBC-HS256".into();
            set_header(jwe, h);
        }
    }
}

/// Reads the request head, then answers a status line and headers that
/// never end, until the client hangs up.
pub async fn endless_headers<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) {
    let mut buf = [0u8; 4096];
    let _ = stream.read(&mut buf).await;
    if stream.write_all(b"HTTP/1.1 200 OK\r\n").await.is_err() {
        return;
    }
    let line = format!("X-Padding: {}\r\n", "a".repeat(1000));
    loop {
        if stream.write_all(line.as_bytes()).await.is_err() {
            return;
        }
    }
}
