//! TLS to the broker: trust only what the measured config pins.
//!
//! Two ways to pin: a CA certificate (the broker's chain and host name are
//! checked against it and nothing else: no system roots), or the SHA-256 of
//! the broker's SubjectPublicKeyInfo (the key is the identity; host name and
//! expiry are not checked, as with any raw-key pin). The crypto provider is
//! rustls' aws-lc-rs default, whose key-exchange preference starts with the
//! hybrid post-quantum group X25519MLKEM768, falling back to X25519.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};

/// What identifies the broker.
#[derive(Debug, Clone)]
pub enum Pin {
    /// Certificates (PEM) the broker's chain must end in.
    Ca(Vec<CertificateDer<'static>>),
    /// SHA-256 of the broker certificate's DER SubjectPublicKeyInfo.
    Spki([u8; 32]),
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the pinned broker CA {path}: {source}")]
    ReadCa {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("pinned broker CA {path} holds no PEM certificate; it must contain -----BEGIN CERTIFICATE-----")]
    NoCertificate { path: PathBuf },
    #[error("pinned broker CA {path} is not usable: {reason}")]
    BadCa { path: PathBuf, reason: String },
    #[error("broker.spki_sha256 must be 64 hex digits")]
    BadSpkiHash,
    #[error("cannot set up TLS: {0}")]
    Setup(#[from] rustls::Error),
}

impl Pin {
    /// Loads a CA pin from a PEM file in the measured image.
    pub fn ca_file(path: &Path) -> Result<Self, TlsError> {
        let pem = std::fs::read(path).map_err(|source| TlsError::ReadCa {
            path: path.to_owned(),
            source,
        })?;
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<_, _>>()
            .map_err(|e| TlsError::BadCa {
                path: path.to_owned(),
                reason: e.to_string(),
            })?;
        if certs.is_empty() {
            return Err(TlsError::NoCertificate {
                path: path.to_owned(),
            });
        }
        Ok(Pin::Ca(certs))
    }

    /// Parses a hex SPKI hash pin.
    pub fn spki_hex(hex_hash: &str) -> Result<Self, TlsError> {
        let bytes = hex::decode(hex_hash).map_err(|_| TlsError::BadSpkiHash)?;
        let hash: [u8; 32] = bytes.try_into().map_err(|_| TlsError::BadSpkiHash)?;
        Ok(Pin::Spki(hash))
    }
}

/// The crypto provider for every TLS connection we make.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A client config that trusts only `pin`.
pub fn client_config(pin: &Pin) -> Result<ClientConfig, TlsError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let mut config = match pin {
        Pin::Ca(certs) => {
            let mut roots = RootCertStore::empty();
            for cert in certs {
                roots.add(cert.clone())?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Pin::Spki(hash) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(SpkiPinVerifier {
                hash: *hash,
                algorithms: provider.signature_verification_algorithms,
            }))
            .with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// SHA-256 of the SubjectPublicKeyInfo of a DER certificate, as pinned by
/// `broker.spki_sha256`.
pub fn spki_sha256(cert_der: &[u8]) -> Result<[u8; 32], String> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).map_err(|e| e.to_string())?;
    Ok(Sha256::digest(cert.tbs_certificate.subject_pki.raw).into())
}

/// Accepts exactly the server key whose SPKI hash is pinned, and checks the
/// handshake signature was made with it.
#[derive(Debug)]
struct SpkiPinVerifier {
    hash: [u8; 32],
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for SpkiPinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got = spki_sha256(end_entity).map_err(|_| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)
        })?;
        if got == self.hash {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_first_key_exchange_offered_is_hybrid_post_quantum() {
        let first = provider().kx_groups[0].name();
        assert_eq!(first, rustls::NamedGroup::X25519MLKEM768);
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let e = Pin::ca_file(&path).unwrap_err().to_string();
        assert!(
            e.contains("ca.pem") && e.contains("BEGIN CERTIFICATE"),
            "{e}"
        );
        assert!(matches!(Pin::spki_hex("abcd"), Err(TlsError::BadSpkiHash)));
    }
}
