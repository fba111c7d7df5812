//! Decoding the broker's replies: pure functions from the bytes received to
//! what the client uses, so every check on untrusted broker bytes sits in
//! one place (and is fuzzed: fuzz/, target `kbs_reply`).
//!
//! Limits, all enforced before or while decoding:
//! - a body is at most [`MAX_BODY`] bytes (the client stops reading there);
//! - an error body is read up to [`MAX_ERROR_BODY`] bytes;
//! - JSON nesting is capped by serde_json (128 levels);
//! - the challenge nonce is 1 to [`MAX_NONCE`] base64 characters; the
//!   token 1 to [`MAX_TOKEN`] printable characters.

use kbs_types::Challenge;

use super::error::{excerpt, BrokerError, KbsErrorKind};
use super::jwe::EphemeralKey;
use crate::secrets::Secret;

/// Largest reply body read (resources are keys and certificates).
pub const MAX_BODY: u64 = 1 << 20;
/// Largest error body read.
pub const MAX_ERROR_BODY: u64 = 64 << 10;
/// Trustee's nonce is base64 of 32 bytes (44 characters).
pub const MAX_NONCE: usize = 1024;
/// Trustee's tokens are JWTs of a few KiB.
pub const MAX_TOKEN: usize = 64 << 10;

fn bad(url: &str, what: String) -> BrokerError {
    BrokerError::BadReply {
        url: url.to_owned(),
        what,
    }
}

/// A KBS JSON reply body.
pub fn json<T: serde::de::DeserializeOwned>(body: &[u8], url: &str) -> Result<T, BrokerError> {
    serde_json::from_slice(body).map_err(|e| {
        bad(
            url,
            format!(
                "expected a KBS JSON reply ({e}); it starts with {:?}: is this URL a Trustee KBS?",
                excerpt(body)
            ),
        )
    })
}

/// The `/auth` reply: a challenge whose nonce is short base64 text.
pub fn challenge(body: &[u8], url: &str) -> Result<Challenge, BrokerError> {
    let c: Challenge = json(body, url)?;
    let n = &c.nonce;
    if n.is_empty() || n.len() > MAX_NONCE {
        return Err(bad(
            url,
            format!(
                "the challenge nonce is {} characters long; expected 1 to {MAX_NONCE} base64 \
                 characters: the broker is not a KBS this agent can attest to",
                n.len()
            ),
        ));
    }
    if !n
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_' | b'='))
    {
        return Err(bad(
            url,
            format!(
                "the challenge nonce {:?} is not base64 text; a KBS sends base64 of random bytes",
                excerpt(n.as_bytes())
            ),
        ));
    }
    Ok(c)
}

/// The `/attest` reply: the session token.
pub fn token(body: &[u8], url: &str) -> Result<String, BrokerError> {
    #[derive(serde::Deserialize)]
    struct TokenReply {
        token: String,
    }
    let TokenReply { token } = json(body, url)?;
    if token.is_empty() || token.len() > MAX_TOKEN || token.chars().any(|c| c.is_control()) {
        return Err(bad(
            url,
            format!(
                "the attestation token is {} characters long or holds control characters; \
                 expected 1 to {MAX_TOKEN} printable characters",
                token.len()
            ),
        ));
    }
    Ok(token)
}

/// A non-2xx reply: a classified KBS error when the body is one, else the
/// status with an excerpt of the body.
pub fn error(status: u16, body: &[u8], url: &str) -> BrokerError {
    #[derive(serde::Deserialize)]
    struct KbsErrorBody {
        #[serde(rename = "type")]
        ty: String,
        #[serde(default)]
        detail: String,
    }
    match serde_json::from_slice::<KbsErrorBody>(body) {
        Ok(e) if !e.ty.is_empty() => BrokerError::Refused {
            url: url.to_owned(),
            status,
            kind: KbsErrorKind::from_type(&e.ty, &e.detail),
            detail: excerpt(e.detail.as_bytes()),
        },
        _ => BrokerError::Status {
            url: url.to_owned(),
            status,
            body: excerpt(body),
        },
    }
}

/// A `/resource` reply: the JWE, decrypted with our ephemeral key.
pub fn resource(body: &[u8], key: &EphemeralKey, resource: &str) -> Result<Secret, BrokerError> {
    key.decrypt(body).map_err(|source| BrokerError::Jwe {
        resource: resource.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://kbs/kbs/v0/auth";

    #[test]
    fn challenges() {
        let ok = br#"{"nonce":"q83vEjRWeJA=","extra-params":""}"#;
        assert_eq!(challenge(ok, URL).expect("ok").nonce, "q83vEjRWeJA=");
        for (body, what) in [
            (&br#"{"nonce":"","extra-params":""}"#[..], "0 characters"),
            (br#"{"nonce":"a b\u0000","extra-params":""}"#, "not base64"),
            (br#"<html>"#, "is this URL a Trustee KBS"),
        ] {
            let e = challenge(body, URL).expect_err("refused").to_string();
            assert!(e.contains(what), "{e}");
        }
        // Nesting where the reply holds free-form JSON (extra-params).
        let deep = format!(
            r#"{{"nonce":"abc","extra-params":{}{}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let e = challenge(deep.as_bytes(), URL)
            .expect_err("deep")
            .to_string();
        assert!(e.contains("recursion limit"), "{e}");
    }

    #[test]
    fn tokens_and_errors() {
        assert_eq!(token(br#"{"token":"a.b.c"}"#, URL).expect("ok"), "a.b.c");
        assert!(token(br#"{"token":""}"#, URL).is_err());
        let e = error(
            401,
            br#"{"type":"https://github.com/confidential-containers/kbs/errors/TokenVerifierError","detail":"Token Verifier error"}"#,
            URL,
        );
        assert_eq!(e.kind(), Some(&KbsErrorKind::TokenInvalid));
        assert!(e.is_transient(), "an expired session is attested again");
        let e = error(502, b"<html>bad gateway</html>", URL);
        assert!(matches!(e, BrokerError::Status { status: 502, .. }));
    }
}
