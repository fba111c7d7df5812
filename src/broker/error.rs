//! Broker errors, classified so the caller can act: retry, or stop and say
//! why.

use std::fmt;

use super::jwe::JweError;
use super::tls::TlsError;
use crate::attest::gpu::GpuError;
use crate::attest::AttestError;

/// The protocol version this agent speaks (KBS-PROTOCOL.md).
pub const PROTOCOL_VERSION: &str = "0.4.0";

/// The `type` of a KBS error body (`.../kbs/errors/<Variant>`), as an enum
/// the caller can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KbsErrorKind {
    VersionMismatch,
    AttestationFailed,
    TokenNotFound,
    /// Trustee's `TokenVerifierError`: the token no longer verifies (the
    /// session expired and the broker fell back to the bearer token).
    TokenInvalid,
    PolicyDeny,
    ResourceMissing,
    PluginNotFound,
    Other(String),
}

impl KbsErrorKind {
    /// Maps the error body's `type` and `detail` to a kind.
    pub fn from_type(ty: &str, detail: &str) -> Self {
        let variant = ty.rsplit('/').next().unwrap_or(ty);
        match variant {
            "AttestationError" if detail.contains("Version Mismatch") => Self::VersionMismatch,
            "AttestationError" => Self::AttestationFailed,
            "TokenNotFound" => Self::TokenNotFound,
            "TokenVerifierError" => Self::TokenInvalid,
            "PolicyDeny" => Self::PolicyDeny,
            "PluginInternalError" => Self::ResourceMissing,
            "PluginNotFound" => Self::PluginNotFound,
            other => Self::Other(other.to_owned()),
        }
    }

    fn hint(&self) -> &'static str {
        match self {
            Self::VersionMismatch => {
                "this agent speaks KBS protocol 0.4.0; run a broker that accepts it (Trustee v0.14 or later)"
            }
            Self::AttestationFailed => {
                "the broker's verifier rejected the evidence; its log has the reason: compare its reference values with the evidence fields this agent logged above"
            }
            Self::TokenNotFound => "the session expired or was lost; the agent attests again",
            Self::TokenInvalid => {
                "the broker no longer accepts this session's token (the session expired, or its token verifier failed); the agent attests again"
            }
            Self::PolicyDeny => {
                "the broker's resource policy does not let this VM read it; check the policy against the evidence fields logged above"
            }
            Self::ResourceMissing => {
                "the resource is missing or the broker's storage plugin failed (see the broker's log); upload the resource or fix the config's resource path"
            }
            Self::PluginNotFound => "the broker has no such plugin; check the resource path",
            Self::Other(_) => "see the broker's log",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    #[error("the broker at {url} presented a TLS certificate that is not the pinned one ({reason}); check broker.ca_cert / broker.spki_sha256, or someone is intercepting the connection")]
    NotPinned { url: String, reason: String },
    #[error("cannot reach the broker at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("{}", kbs_message(.url, *.status, .kind, .detail))]
    Refused {
        url: String,
        status: u16,
        kind: KbsErrorKind,
        detail: String,
    },
    #[error("the broker at {url} answered HTTP {status}{}", body_note(.body))]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("the broker's reply from {url} is not valid: {what}")]
    BadReply { url: String, what: String },
    #[error("resource {resource} could not be decrypted: {source}")]
    Jwe {
        resource: String,
        #[source]
        source: JweError,
    },
    #[error(transparent)]
    Attest(#[from] AttestError),
    #[error("GPU evidence: {0}")]
    Gpu(#[from] GpuError),
    #[error("cannot bind the evidence to the session: {0}")]
    Binding(String),
    #[error(
        "gave up after {attempts} attempts in {:.1} s (broker.deadline_secs = {secs}); last error: {last}",
        *.spent_ms as f64 / 1000.0
    )]
    Deadline {
        attempts: u32,
        secs: u64,
        /// Time actually spent, first request to giving up.
        spent_ms: u64,
        last: Box<BrokerError>,
    },
}

fn kbs_message(url: &str, status: u16, kind: &KbsErrorKind, detail: &str) -> String {
    let ty = match kind {
        KbsErrorKind::Other(t) => t.clone(),
        k => format!("{k:?}"),
    };
    format!(
        "the broker refused {url}: HTTP {status} {ty}: {detail:?}; {}",
        kind.hint()
    )
}

fn body_note(body: &str) -> String {
    if body.is_empty() {
        String::new()
    } else {
        format!(" with body {body:?}")
    }
}

impl BrokerError {
    /// Whether a later attempt could succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unreachable { .. } => true,
            Self::Status { status, .. } => *status >= 500 || *status == 429 || *status == 408,
            Self::Refused { kind, .. } => {
                matches!(
                    kind,
                    KbsErrorKind::TokenNotFound | KbsErrorKind::TokenInvalid
                )
            }
            _ => false,
        }
    }

    /// The KBS error kind, if the broker answered with one.
    pub fn kind(&self) -> Option<&KbsErrorKind> {
        match self {
            Self::Refused { kind, .. } => Some(kind),
            Self::Deadline { last, .. } => last.kind(),
            _ => None,
        }
    }
}

/// A short, printable excerpt of an untrusted reply body.
pub(crate) fn excerpt(body: &[u8]) -> String {
    const MAX: usize = 120;
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX)]);
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if body.len() > MAX {
        out.push_str("...");
    }
    out
}

impl fmt::Display for KbsErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Other(t) => f.write_str(t),
            k => write!(f, "{k:?}"),
        }
    }
}
