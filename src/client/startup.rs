//! Reading a connection's first packet(s) until a StartupMessage or a
//! CancelRequest arrives: TLS when `[pooler.tls]` is configured (after an
//! SSLRequest, or directly as PostgreSQL 17's `sslnegotiation=direct`), `N` to
//! GSSENCRequest, and the check that clients who must use TLS do.

use tokio::io::AsyncWriteExt;

use super::handshake_reader::HandshakeReader;
use crate::error::{sqlstate, ClientError};
use crate::net::Stream;
use crate::protocol::startup::{self, StartupError, StartupMessage, StartupPacket};
use crate::tls::client::{refuses_plain, PlainPeer};
use crate::tls::{ClientTls, ALPN_POSTGRESQL};

/// First byte of a TLS handshake record; a startup packet's length starts with 0.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// What a connection turned out to be.
#[derive(Debug)]
pub enum First {
    Startup(StartupMessage),
    Cancel { pid: i32, secret: Vec<u8> },
}

/// Why the first packet could not be read.
#[derive(Debug)]
pub enum StartupFail {
    /// The client went away or its socket failed: nothing to tell it.
    Gone,
    /// The client sent something invalid: tell it, then close.
    Refused(ClientError),
}

impl From<StartupError> for StartupFail {
    fn from(e: StartupError) -> Self {
        let code = match e {
            StartupError::UnsupportedVersion { .. } => sqlstate::FEATURE_NOT_SUPPORTED,
            _ => sqlstate::PROTOCOL_VIOLATION,
        };
        StartupFail::Refused(ClientError::fatal(code, e.to_string()))
    }
}

fn violation(message: &str) -> StartupFail {
    StartupFail::Refused(ClientError::fatal(sqlstate::PROTOCOL_VIOLATION, message))
}

/// Reads packets until a StartupMessage or CancelRequest. `max` bounds each
/// packet; `tls` (when configured) is offered and, as it says, required.
pub async fn read_first(
    stream: &mut Stream,
    reader: &mut HandshakeReader,
    max: usize,
    tls: Option<&ClientTls>,
) -> Result<First, StartupFail> {
    if let (Some(tls), Stream::Tcp(tcp)) = (tls, &*stream) {
        let mut first = [0u8; 1];
        // One peek per connection, only when TLS is configured.
        if tcp.peek(&mut first).await.map_err(|_| StartupFail::Gone)? == 0 {
            return Err(StartupFail::Gone);
        }
        if first[0] == TLS_HANDSHAKE_RECORD {
            handshake(stream, tls).await?;
            // As PostgreSQL: direct TLS is only for clients that know they speak to
            // PostgreSQL, which they say with ALPN (rustls already refused any other
            // protocol name; this refuses none at all).
            let alpn = match &*stream {
                Stream::ClientTls(s) => s.get_ref().1.alpn_protocol(),
                _ => None,
            };
            if alpn != Some(ALPN_POSTGRESQL) {
                return Err(violation(
                    "direct TLS connection without ALPN protocol \"postgresql\"",
                ));
            }
        }
    }
    // A client may ask for GSS and then SSL encryption, each once, before starting up.
    for _ in 0..3 {
        reader
            .fill(stream, 4)
            .await
            .map_err(|_| StartupFail::Gone)?;
        let prefix = reader.buffered()[..4].try_into().expect("4 bytes");
        let len = 4 + startup::body_len(prefix, max)?;
        reader
            .fill(stream, len)
            .await
            .map_err(|_| StartupFail::Gone)?;
        let packet = reader.take(len);
        let decoded = startup::decode(&packet[4..])?;
        match decoded {
            StartupPacket::SslRequest | StartupPacket::GssEncRequest if stream.is_tls() => {
                return Err(violation(
                    "encryption requested on a connection that is already encrypted",
                ));
            }
            // As PostgreSQL (CVE-2021-23214): the client must wait for the answer,
            // and anything sent before it was sent in the clear.
            StartupPacket::SslRequest if !reader.is_empty() => {
                return Err(violation("received unencrypted data after SSL request"));
            }
            StartupPacket::GssEncRequest if !reader.is_empty() => {
                return Err(violation(
                    "received unencrypted data after GSSAPI encryption request",
                ));
            }
            StartupPacket::SslRequest if tls.is_some() && matches!(stream, Stream::Tcp(_)) => {
                stream
                    .write_all(b"S")
                    .await
                    .map_err(|_| StartupFail::Gone)?;
                handshake(stream, tls.expect("checked")).await?;
            }
            StartupPacket::SslRequest | StartupPacket::GssEncRequest => {
                stream
                    .write_all(b"N")
                    .await
                    .map_err(|_| StartupFail::Gone)?;
            }
            StartupPacket::CancelRequest { pid, secret } => {
                // Cancels stay allowed in the clear: libpq before 17 never encrypts them,
                // and PostgreSQL accepts them so too.
                return Ok(First::Cancel { pid, secret });
            }
            StartupPacket::Startup(m) => {
                if let Some(tls) = tls {
                    check_required(stream, tls)?;
                }
                return Ok(First::Startup(m));
            }
        }
    }
    Err(violation(
        "too many encryption requests before the startup packet",
    ))
}

/// Replaces the TCP stream with its TLS session. On failure the stream is left
/// [`Stream::Closed`]: nothing may follow in the clear.
async fn handshake(stream: &mut Stream, tls: &ClientTls) -> Result<(), StartupFail> {
    let Stream::Tcp(tcp) = std::mem::replace(stream, Stream::Closed) else {
        return Err(StartupFail::Gone);
    };
    let peer = tcp.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    match tls.acceptor().accept(tcp).await {
        Ok(s) => {
            *stream = Stream::ClientTls(Box::new(s));
            Ok(())
        }
        Err(e) => {
            tracing::info!(peer = %peer, error = %e, "client TLS handshake failed");
            Err(StartupFail::Gone)
        }
    }
}

/// Refuses a plain connection that `[pooler.tls] required` says must be encrypted.
fn check_required(stream: &Stream, tls: &ClientTls) -> Result<(), StartupFail> {
    let (peer, shown) = match stream {
        Stream::Unix(_) => (PlainPeer::Unix, String::new()),
        Stream::Tcp(s) => match s.peer_addr() {
            Ok(a) => (PlainPeer::Tcp(a.ip()), a.ip().to_string()),
            // Unknown origin: treat as remote.
            Err(_) => (
                PlainPeer::Tcp([0, 0, 0, 0].into()),
                "an unknown address".into(),
            ),
        },
        _ => return Ok(()),
    };
    if refuses_plain(tls.required(), peer) {
        tracing::info!(peer = %shown, "refusing plain-text client: TLS is required");
        return Err(StartupFail::Refused(ClientError::fatal(
            sqlstate::INVALID_AUTHORIZATION_SPECIFICATION,
            format!("TLS is required for connections from {shown}; use sslmode=require"),
        )));
    }
    Ok(())
}
