//! Forwarding a client's CancelRequest to the server backend it is using.

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UnixStream};

use super::{BackendKey, ServerTarget};
use crate::protocol::frontend;

/// Opens a fresh connection to the server and sends a CancelRequest for `key`.
/// PostgreSQL answers nothing; it just closes the connection.
pub async fn send_cancel(target: &ServerTarget, key: BackendKey) -> std::io::Result<()> {
    let mut msg = BytesMut::with_capacity(16);
    frontend::cancel_request(&mut msg, key.pid, &key.secret);
    let io = async {
        if target.is_unix() {
            let path = format!(
                "{}/.s.PGSQL.{}",
                target.host.trim_end_matches('/'),
                target.port
            );
            let mut s = UnixStream::connect(path).await?;
            s.write_all(&msg).await?;
            s.shutdown().await
        } else {
            let mut s = TcpStream::connect((target.host.as_str(), target.port)).await?;
            s.write_all(&msg).await?;
            s.shutdown().await
        }
    };
    tokio::time::timeout(target.connect_timeout, io)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "cancel timed out"))?
}
