//! A throw-away CA and server certificate, made at start-up.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Makes a CA (or, with `keep_ca`, reuses the one saved in `dir`) and a
/// server certificate for localhost, 127.0.0.1 and QEMU's host alias
/// 10.0.2.2; writes `ca.pem` and `spki-sha256` into `dir`.
pub fn server_config(dir: Option<&Path>, keep_ca: bool) -> Result<rustls::ServerConfig> {
    let saved = dir
        .filter(|_| keep_ca)
        .map(|d| (d.join("ca.pem"), d.join("ca-key.pem")))
        .filter(|(c, k)| c.exists() && k.exists());
    let (ca_pem, issuer) = match saved {
        Some((cert, key)) => {
            let key = KeyPair::from_pem(&std::fs::read_to_string(&key)?).context("CA key")?;
            let pem = std::fs::read_to_string(&cert)?;
            let issuer = Issuer::from_ca_cert_pem(&pem, key).context("CA certificate")?;
            (pem, issuer)
        }
        None => {
            let ca_key = KeyPair::generate().context("CA key")?;
            let mut ca_params =
                CertificateParams::new(Vec::<String>::new()).context("CA params")?;
            ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            ca_params.distinguished_name.push(
                rcgen::DnType::CommonName,
                "kbs-dev development CA (NOT FOR PRODUCTION)",
            );
            let ca_cert = ca_params.self_signed(&ca_key).context("CA certificate")?;
            if let (Some(d), true) = (dir, keep_ca) {
                std::fs::create_dir_all(d)?;
                std::fs::write(d.join("ca-key.pem"), ca_key.serialize_pem())
                    .context("writing ca-key.pem")?;
            }
            (ca_cert.pem(), Issuer::new(ca_params, ca_key))
        }
    };
    let ca_der = CertificateDer::from_pem_slice(ca_pem.as_bytes()).context("CA certificate PEM")?;

    let key = KeyPair::generate().context("server key")?;
    let params = CertificateParams::new(vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "10.0.2.2".to_owned(),
    ])
    .context("server params")?;
    let cert = params
        .signed_by(&key, &issuer)
        .context("server certificate")?;

    if let Some(dir) = dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::write(dir.join("ca.pem"), &ca_pem).context("writing ca.pem")?;
        let spki = cvm_init::broker::tls::spki_sha256(cert.der()).map_err(anyhow::Error::msg)?;
        std::fs::write(dir.join("spki-sha256"), hex::encode(spki))
            .context("writing spki-sha256")?;
        std::fs::write(dir.join("server.pem"), cert.pem()).context("writing server.pem")?;
    }

    let chain: Vec<CertificateDer<'static>> = vec![cert.der().clone(), ca_der];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let mut config = rustls::ServerConfig::builder_with_provider(cvm_init::broker::tls::provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("server TLS config")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

pub fn acceptor(config: rustls::ServerConfig) -> tokio_rustls::TlsAcceptor {
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}
