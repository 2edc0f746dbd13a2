//! Cleaning a server connection whose client left, before anyone else gets it.

use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::ServerConn;
use crate::protocol::{frontend, tag, Header, HEADER_LEN};
use crate::tenant::ServerTenant;

/// Ends a transaction the client left open.
pub const ROLLBACK: &[&str] = &["ROLLBACK"];
/// Session mode's reset, as PgBouncer's default `server_reset_query`.
pub const SESSION_RESET: &[&str] = &["DISCARD ALL"];
/// Separate queries: DISCARD ALL refuses to run inside a multi-statement string.
pub const ROLLBACK_AND_RESET: &[&str] = &["ROLLBACK", "DISCARD ALL"];

/// How long a cleanup may take before the connection is closed instead.
const RESET_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs each statement and returns the connection if all ended idle without
/// error; `None` means it was closed.
pub async fn run(mut conn: ServerConn, statements: &[&str]) -> Option<ServerConn> {
    // Whatever happens below, nothing vouches for the tenant setting any more.
    conn.tenant = ServerTenant::Unknown;
    let all = async {
        for sql in statements {
            if !exec(&mut conn, sql).await? {
                return Ok(false);
            }
        }
        Ok::<_, std::io::Error>(true)
    };
    match tokio::time::timeout(RESET_TIMEOUT, all).await {
        Ok(Ok(true)) => Some(conn),
        _ => {
            tracing::debug!(
                server = conn.id,
                "server cleanup failed; closing the connection"
            );
            None
        }
    }
}

/// Sends one simple Query and reads to its ReadyForQuery. `Ok(true)`: idle, no error.
async fn exec(conn: &mut ServerConn, sql: &str) -> std::io::Result<bool> {
    let mut out = BytesMut::with_capacity(sql.len() + 8);
    frontend::query(&mut out, sql);
    conn.stream.write_all(&out).await?;
    let buf: &mut BytesMut = &mut conn.buf;
    let mut failed = false;
    loop {
        while let Some(h) = Header::parse(buf).map_err(std::io::Error::other)? {
            if buf.len() < h.total_len() {
                break;
            }
            match h.tag {
                tag::ERROR_RESPONSE => failed = true,
                tag::READY_FOR_QUERY => {
                    let idle = buf.get(HEADER_LEN) == Some(&b'I');
                    buf.advance(h.total_len());
                    return Ok(idle && !failed && buf.is_empty());
                }
                _ => {}
            }
            buf.advance(h.total_len());
        }
        if conn.stream.read_buf(buf).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
}
