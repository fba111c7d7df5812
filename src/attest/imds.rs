//! The Azure Instance Metadata Service: VCEK certificates (SNP) and the TD
//! quote service (TDX), plain HTTP on the link-local 169.254.169.254.
//!
//! Host-served, so only a cache of collateral: nothing from here is
//! trusted, the broker checks the VCEK's chain to AMD's root and the TD
//! quote's to Intel's. A dozen lines of HTTP/1.1 over a `TcpStream` do:
//! no TLS, no proxy, no redirects (reqwest would bring its TLS roots and
//! proxy lookup, neither of which applies).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};

use super::AttestError;

/// Azure's IMDS.
pub const DEFAULT_IMDS: &str = "http://169.254.169.254";
const TIMEOUT: Duration = Duration::from_secs(10);
/// No IMDS answer we read is near this large.
const MAX_REPLY: u64 = 1 << 20;

/// An IMDS at a base URL `http://HOST[:PORT]`.
#[derive(Debug, Clone)]
pub struct Imds {
    base: String,
}

impl Imds {
    pub fn new(base: &str) -> Self {
        Imds {
            base: base.trim_end_matches('/').to_owned(),
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub(crate) fn quote_url(&self) -> String {
        format!("{}/acc/tdquote", self.base)
    }

    /// One request; the reply's JSON body.
    fn call(
        &self,
        method: &str,
        path: &str,
        headers: &str,
        body: &[u8],
    ) -> Result<Value, AttestError> {
        let url = format!("{}{path}", self.base);
        let err = |reason: String| AttestError::AzureImds {
            url: url.clone(),
            reason,
        };
        let host = self
            .base
            .strip_prefix("http://")
            .ok_or_else(|| err("the IMDS URL must start with http://".into()))?;
        let addr = if host.contains(':') {
            host.to_owned()
        } else {
            format!("{host}:80")
        };
        let sock = addr
            .to_socket_addrs()
            .map_err(|e| err(format!("cannot resolve {addr}: {e}")))?
            .next()
            .ok_or_else(|| err(format!("{addr} resolves to nothing")))?;
        let mut conn = TcpStream::connect_timeout(&sock, TIMEOUT)
            .map_err(|e| err(format!("cannot connect: {e}")))?;
        conn.set_read_timeout(Some(TIMEOUT))
            .and_then(|()| conn.set_write_timeout(Some(TIMEOUT)))
            .map_err(|e| err(e.to_string()))?;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nAccept: application/json\r\n\
             {headers}Content-Length: {}\r\n\r\n",
            body.len()
        );
        conn.write_all(head.as_bytes())
            .and_then(|()| conn.write_all(body))
            .map_err(|e| err(format!("cannot send: {e}")))?;
        let mut reply = Vec::new();
        conn.take(MAX_REPLY)
            .read_to_end(&mut reply)
            .map_err(|e| err(format!("cannot read the reply: {e}")))?;
        let split = reply
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| err("the reply has no HTTP header".into()))?;
        let head = String::from_utf8_lossy(&reply[..split]).to_ascii_lowercase();
        let status = head
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        if status != "200" {
            return Err(err(format!("HTTP status {status}")));
        }
        let mut payload = reply[split + 4..].to_vec();
        if head.contains("transfer-encoding: chunked") {
            payload = dechunk(&payload).ok_or_else(|| err("bad chunked encoding".into()))?;
        }
        serde_json::from_slice(&payload).map_err(|e| err(format!("the reply is not JSON: {e}")))
    }

    /// The VCEK (DER) for this chip and TCB.
    pub fn vcek(&self) -> Result<Vec<u8>, AttestError> {
        let path = "/metadata/THIM/amd/certification";
        let reply = self.call("GET", path, "Metadata: true\r\n", b"")?;
        let err = |reason: String| AttestError::AzureImds {
            url: format!("{}{path}", self.base),
            reason,
        };
        let pem = reply
            .get("vcekCert")
            .and_then(Value::as_str)
            .ok_or_else(|| err("the reply has no vcekCert".into()))?;
        let mut ders =
            crate::evidence::gpu::pem_chain(pem).map_err(|e| err(format!("vcekCert: {e}")))?;
        Ok(ders.swap_remove(0))
    }

    /// The TD quote of `tdreport` (1024 bytes).
    pub fn td_quote(&self, tdreport: &[u8]) -> Result<Vec<u8>, AttestError> {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let body = json!({ "report": b64.encode(tdreport) }).to_string();
        let reply = self.call(
            "POST",
            "/acc/tdquote",
            "Content-Type: application/json\r\n",
            body.as_bytes(),
        )?;
        let quote = reply
            .get("quote")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .trim_end_matches('=');
        b64.decode(quote).map_err(|e| AttestError::AzureImds {
            url: self.quote_url(),
            reason: format!("`quote` is not base64url: {e}"),
        })
    }
}

/// Decodes an HTTP/1.1 chunked body.
fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n")?;
        let size = std::str::from_utf8(&b[..eol]).ok()?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        b = &b[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(..size)?);
        b = b.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_decode() {
        assert_eq!(
            dechunk(b"4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n").as_deref(),
            Some(&b"{\"a\":1}"[..])
        );
        assert_eq!(dechunk(b"ff\r\nshort"), None);
    }

    #[test]
    fn only_plain_http() {
        let err = Imds::new("https://169.254.169.254")
            .vcek()
            .expect_err("https");
        assert!(err.to_string().contains("http://"), "{err}");
    }
}
