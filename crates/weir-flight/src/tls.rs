//! TLS for the Flight SQL listener: rustls (ring provider) from PEM files.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::error::FlightServeError;

/// PEM files of the server certificate chain and its private key.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Certificate chain, leaf first (PEM).
    pub cert: PathBuf,
    /// PKCS#8, PKCS#1 or SEC1 private key (PEM).
    pub key: PathBuf,
}

fn tls_error(what: &'static str, path: &Path, reason: impl ToString) -> FlightServeError {
    FlightServeError::Tls {
        what,
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// A TLS acceptor offering HTTP/2 (ALPN `h2`, which gRPC clients require).
pub(crate) fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, FlightServeError> {
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| tls_error("reading the certificate", &files.cert, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error("reading the certificate", &files.cert, e))?;
    if certs.is_empty() {
        return Err(tls_error(
            "reading the certificate",
            &files.cert,
            "no CERTIFICATE block found",
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| tls_error("reading the private key", &files.key, e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error("configuring TLS", &files.cert, e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| tls_error("using the certificate and key", &files.key, e))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
