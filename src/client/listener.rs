//! Accepting client connections on TCP and the optional Unix socket, within
//! `max_client_connections`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use super::handshake_reader::HandshakeReader;
use super::startup::{read_first, First};
use super::{send_error, serve};
use crate::error::{sqlstate, ClientError};
use crate::net::Stream;
use crate::pooler::Control;

/// Over-limit connections being told so at once; beyond this they are just closed.
const MAX_REJECTING: usize = 256;
/// How long an over-limit client gets to send its startup packet.
const REJECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Accepts until `shutdown` resolves, and returns its value (whether to drain).
pub async fn accept_loop(
    control: Arc<Control>,
    tcp: TcpListener,
    unix: Option<UnixListener>,
    limit: Arc<Semaphore>,
    tasks: TaskTracker,
    shutdown: impl Future<Output = bool>,
) -> bool {
    tokio::pin!(shutdown);
    let rejecting = Arc::new(Semaphore::new(MAX_REJECTING));
    loop {
        let accepted = tokio::select! {
            drain = &mut shutdown => return drain,
            r = tcp.accept() => r.and_then(|(s, _)| Stream::tcp(s)),
            r = accept_unix(unix.as_ref()) => r,
        };
        let stream = match accepted {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        match Arc::clone(&limit).try_acquire_owned() {
            Ok(permit) => {
                tasks.spawn(serve(stream, Arc::clone(&control), permit));
            }
            Err(_) => {
                if let Ok(permit) = Arc::clone(&rejecting).try_acquire_owned() {
                    let pooler = &control.current().config.pooler;
                    let (max, packet_limit) = (
                        pooler.max_client_connections,
                        pooler.max_startup_packet_size,
                    );
                    tokio::spawn(async move {
                        reject(stream, max, packet_limit).await;
                        drop(permit);
                    });
                }
            }
        }
    }
}

async fn accept_unix(unix: Option<&UnixListener>) -> std::io::Result<Stream> {
    match unix {
        Some(l) => l.accept().await.map(|(s, _)| Stream::Unix(s)),
        None => std::future::pending().await,
    }
}

/// Reads the client's startup so it can understand the answer, then refuses it.
async fn reject(mut stream: Stream, max: usize, packet_limit: usize) {
    let mut reader = HandshakeReader::default();
    let read = tokio::time::timeout(
        REJECT_TIMEOUT,
        read_first(&mut stream, &mut reader, packet_limit, None),
    )
    .await;
    if let Ok(Ok(First::Startup(_))) = read {
        tracing::warn!(max, "refusing client: max_client_connections reached");
        let error = ClientError::fatal(
            sqlstate::TOO_MANY_CONNECTIONS,
            format!("sorry, too many clients already (max_client_connections = {max})"),
        );
        send_error(&mut stream, &error).await;
    }
}
