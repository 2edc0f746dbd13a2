//! The client side: accepting connections, the startup and login handshake, and
//! the session loop that lends each transaction a server connection.
//!
//! - [`listener`]: accept loops for TCP and the Unix socket, and the client limit;
//! - [`startup`]: the first packet (TLS, GSS requests, cancel, StartupMessage);
//! - [`login`]: database and tenant lookup, protocol negotiation, the greeting;
//! - [`authenticate`]: SCRAM-SHA-256 and md5 exchanges with the client;
//! - [`session`]: the per-transaction loop: wait, check out, set the tenant, relay, check in.

pub mod authenticate;
pub mod listener;
pub mod login;
pub mod session;
pub mod startup;

use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;

use crate::error::{sqlstate, ClientError};
use crate::net::Stream;
use crate::pooler::Shared;

/// Serves one client connection from its first byte to its end.
pub async fn serve(mut stream: Stream, shared: Arc<Shared>) {
    let timeout = shared.config.pooler.client_login_timeout;
    let outcome = tokio::time::timeout(timeout, login::login(&mut stream, &shared)).await;
    match outcome {
        Ok(Ok(Some(session))) => {
            // The greeting went out with write_all; TLS may still hold it as ciphertext.
            if stream.flush().await.is_ok() {
                session::run(stream, session, &shared).await
            }
        }
        Ok(Ok(None)) => {}
        Ok(Err(error)) => send_error(&mut stream, &error).await,
        Err(_) => {
            let error = ClientError::fatal(
                sqlstate::QUERY_CANCELED,
                "canceling authentication due to timeout",
            );
            send_error(&mut stream, &error).await;
        }
    }
}

/// Best effort: the client may already be gone.
pub(crate) async fn send_error(stream: &mut Stream, error: &ClientError) {
    let mut buf = BytesMut::with_capacity(128);
    error.encode(&mut buf);
    let _ = stream.write_all(&buf).await;
    let _ = stream.flush().await;
}
