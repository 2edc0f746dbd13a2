//! The client side: accepting connections, the startup and login handshake, and
//! the session loop that lends each transaction a server connection.
//!
//! - [`listener`]: accept loops for TCP and the Unix socket, and the client limit;
//! - [`startup`]: the first packet (TLS, GSS requests, cancel, StartupMessage);
//! - [`handshake_reader`]: the buffer the startup and authentication messages are read through;
//! - [`login`]: database and tenant lookup, protocol negotiation, the greeting;
//! - [`authenticate`]: SCRAM-SHA-256 and md5 exchanges with the client;
//! - [`session`]: the per-transaction loop: wait, check out, set the tenant, relay, check in.

pub mod authenticate;
pub mod handshake_reader;
pub mod listener;
pub mod login;
pub mod session;
pub mod startup;

use std::future::Future;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::sync::OwnedSemaphorePermit;

use crate::error::{sqlstate, ClientError};
use crate::net::Stream;
use crate::pooler::Control;
use login::LoggedIn;
use session::{ClientTask, Session};

/// Serves one client connection from its first byte to its end; `permit` is its
/// place in `max_client_connections`, held until then.
pub fn serve(
    stream: Stream,
    control: Arc<Control>,
    permit: OwnedSemaphorePermit,
) -> impl Future<Output = ()> + Send {
    // The login (boxed by the task, and freed once it is over) hands over the
    // session; the task then holds only that between transactions.
    ClientTask::new(start(stream, control, permit), session::run_step)
}

/// The login, and what follows that is not a pooled session: the admin console,
/// or telling the client why it was refused.
async fn start(
    mut stream: Stream,
    control: Arc<Control>,
    permit: OwnedSemaphorePermit,
) -> Option<Box<Session>> {
    let shared = control.current();
    let timeout = shared.config.pooler.client_login_timeout;
    let outcome = tokio::time::timeout(timeout, login::login(&mut stream, &shared)).await;
    match outcome {
        Ok(Ok(Some(LoggedIn::Pooled(login)))) => {
            // The greeting went out with write_all; TLS may still hold it as ciphertext.
            if stream.flush().await.is_ok() {
                drop(shared);
                return Some(Session::new(stream, login, control, permit));
            }
        }
        Ok(Ok(Some(LoggedIn::Admin { user }))) => {
            if stream.flush().await.is_ok() {
                drop(shared);
                Box::pin(crate::admin::run(stream, control, user)).await
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
    drop(permit);
    None
}

/// Best effort: the client may already be gone.
pub(crate) async fn send_error(stream: &mut Stream, error: &ClientError) {
    crate::metrics::errors::count(error.code); // metrics hook
    let mut buf = BytesMut::with_capacity(128);
    error.encode(&mut buf);
    let _ = stream.write_all(&buf).await;
    let _ = stream.flush().await;
}
