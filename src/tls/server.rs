//! The server-facing side: a pool's TLS to PostgreSQL, as libpq's `sslmode`.
//!
//! `prefer` and `require` encrypt without checking who the server is, like libpq
//! (the handshake signature is still verified, so the session key really belongs
//! to whoever holds the presented certificate); `verify-full` checks the chain
//! against `tls_ca_file` or the system roots and the host name.

use std::path::Path;
use std::sync::Arc;

use bytes::BytesMut;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::{load_certs, provider, TlsError, ALPN_POSTGRESQL};
use crate::config::ServerTls;
use crate::net::Stream;
use crate::protocol::startup::SSL_REQUEST_CODE;

/// A pool's TLS settings, built once; cheap to clone.
#[derive(Clone)]
pub struct ServerTlsConnector {
    mode: ServerTls,
    connector: TlsConnector,
}

impl std::fmt::Debug for ServerTlsConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ServerTlsConnector({:?})", self.mode)
    }
}

/// Why TLS to a server could not be had.
#[derive(Debug, thiserror::Error)]
pub enum NegotiateError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the server does not support TLS (answered 'N' to SSLRequest), but tls = \"{0}\" requires it")]
    NotOffered(&'static str),
    #[error("unexpected answer {0:#04x} to SSLRequest")]
    BadAnswer(u8),
    #[error("\"{0}\" is not a valid TLS server name")]
    BadName(String),
    #[error("TLS handshake failed: {0}")]
    Handshake(std::io::Error),
}

impl ServerTlsConnector {
    /// `None` for `tls = "disable"`.
    pub fn new(mode: ServerTls, ca_file: Option<&Path>) -> Result<Option<Self>, TlsError> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?;
        let mut config = match mode {
            ServerTls::Disable => return Ok(None),
            ServerTls::Prefer | ServerTls::Require => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider())))
                .with_no_client_auth(),
            ServerTls::VerifyFull => builder
                .with_root_certificates(roots(ca_file)?)
                .with_no_client_auth(),
        };
        config.alpn_protocols = vec![ALPN_POSTGRESQL.to_vec()];
        Ok(Some(ServerTlsConnector {
            mode,
            connector: TlsConnector::from(Arc::new(config)),
        }))
    }

    pub fn mode(&self) -> ServerTls {
        self.mode
    }

    /// Asks for TLS on a fresh connection (SSLRequest) and handshakes if the
    /// server agrees; `prefer` goes on in plain text if it does not.
    pub async fn negotiate(
        &self,
        mut tcp: TcpStream,
        host: &str,
    ) -> Result<Stream, NegotiateError> {
        let mut request = BytesMut::with_capacity(8);
        request.extend_from_slice(&8i32.to_be_bytes());
        request.extend_from_slice(&SSL_REQUEST_CODE.to_be_bytes());
        tcp.write_all(&request).await?;
        // Exactly one byte: anything after it belongs to the TLS handshake, so a
        // man in the middle cannot slip plaintext in behind the 'S'.
        match tcp.read_u8().await? {
            b'S' => {}
            b'N' => {
                return match self.mode {
                    ServerTls::Prefer => Stream::tcp(tcp).map_err(Into::into),
                    ServerTls::Require => Err(NegotiateError::NotOffered("require")),
                    _ => Err(NegotiateError::NotOffered("verify-full")),
                }
            }
            other => return Err(NegotiateError::BadAnswer(other)),
        }
        let name = ServerName::try_from(host.to_owned())
            .map_err(|_| NegotiateError::BadName(host.to_owned()))?;
        tcp.set_nodelay(true)?;
        let tls = self
            .connector
            .connect(name, tcp)
            .await
            .map_err(NegotiateError::Handshake)?;
        Ok(Stream::ServerTls(Box::new(tls)))
    }
}

fn roots(ca_file: Option<&Path>) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for cert in load_certs(path)? {
                roots.add(cert).map_err(|e| {
                    TlsError::file(path, format!("not a usable CA certificate: {e}"))
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::warn!(error = %e, "loading system root certificates");
            }
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err(TlsError::file(
                    Path::new("<system roots>"),
                    "no trusted root certificates found; set tls_ca_file",
                ));
            }
        }
    }
    Ok(roots)
}

/// Accepts any certificate, as libpq's `sslmode=require`, but still checks the
/// handshake signature against the certificate's key.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
