//! Forwarding a client's CancelRequest to the server backend it is using.

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;

use super::login::Opened;
use super::{BackendKey, ServerTarget};
use crate::protocol::frontend;

/// Opens a fresh connection to the server and sends a CancelRequest for `key`.
/// PostgreSQL answers nothing; it just closes the connection.
///
/// Over TCP the connection negotiates TLS as the pool's sessions do (as libpq 17
/// does for cancels): PostgreSQL accepts a CancelRequest inside TLS, and this
/// keeps the cancel key off the network in the clear and works with servers or
/// proxies that refuse plaintext.
pub async fn send_cancel(target: &ServerTarget, key: BackendKey) -> std::io::Result<()> {
    let mut msg = BytesMut::with_capacity(16);
    frontend::cancel_request(&mut msg, key.pid, &key.secret);
    let io = async {
        let mut s = target.open_stream().await.map_err(|e| match e {
            Opened::Connect(e) => e,
            Opened::Tls(e) => std::io::Error::other(e),
        })?;
        s.write_all(&msg).await?;
        s.flush().await?;
        s.shutdown().await
    };
    tokio::time::timeout(target.connect_timeout, io)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "cancel timed out"))?
}
