//! TLS on both sides of the pooler, with rustls.
//!
//! - [`client`]: what clients connect to: the certificate, its reload, and the
//!   `required` policy;
//! - [`server`]: how pools reach PostgreSQL: `disable` / `prefer` / `require` /
//!   `verify-full`, as libpq's `sslmode`.
//!
//! One crypto provider for the whole build (aws-lc-rs), passed explicitly so a
//! second provider pulled in by some dependency can never make the choice ambiguous.

pub mod client;
pub mod server;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

pub use client::ClientTls;
pub use server::ServerTlsConnector;

/// The ALPN protocol name PostgreSQL 17 registered; required for direct TLS.
pub const ALPN_POSTGRESQL: &[u8] = b"postgresql";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{}: {message}", path.display())]
    File { path: PathBuf, message: String },
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
}

impl TlsError {
    pub(crate) fn file(path: &Path, message: impl ToString) -> Self {
        TlsError::File {
            path: path.to_owned(),
            message: message.to_string(),
        }
    }
}

pub(crate) fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    Arc::clone(PROVIDER.get_or_init(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider())))
}

/// Every certificate in a PEM file; an error if there is none.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| TlsError::file(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::file(path, e))?;
    if certs.is_empty() {
        return Err(TlsError::file(path, "no PEM certificate in the file"));
    }
    Ok(certs)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) in a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::file(path, e))
}
