//! Running one simple-protocol statement of the pooler's own on a server
//! connection that is not lent to any client (cleanup, identification).

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::ServerConn;
use crate::protocol::{frontend, tag, Header, HEADER_LEN};

/// Sends `sql` and reads to its ReadyForQuery. Returns whether it ended idle
/// without error, and the first column of the first row, if any (as text).
pub async fn run(conn: &mut ServerConn, sql: &str) -> std::io::Result<(bool, Option<String>)> {
    let mut out = BytesMut::with_capacity(sql.len() + 8);
    frontend::query(&mut out, sql);
    conn.stream.write_all(&out).await?;
    conn.stream.flush().await?;
    let buf: &mut BytesMut = &mut conn.buf;
    let mut failed = false;
    let mut first: Option<String> = None;
    loop {
        while let Some(h) = Header::parse(buf).map_err(std::io::Error::other)? {
            if buf.len() < h.total_len() {
                break;
            }
            let body = &buf[HEADER_LEN..h.total_len()];
            match h.tag {
                tag::ERROR_RESPONSE => failed = true,
                b'D' if first.is_none() => first = first_column(body),
                tag::READY_FOR_QUERY => {
                    let idle = body.first() == Some(&b'I');
                    buf.advance(h.total_len());
                    return Ok((idle && !failed && buf.is_empty(), first));
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

/// The first column of a DataRow body, as text; `None` for NULL or a malformed row.
fn first_column(body: &[u8]) -> Option<String> {
    let (count, rest) = body.split_first_chunk::<2>()?;
    if u16::from_be_bytes(*count) == 0 {
        return None;
    }
    let (len, rest) = rest.split_first_chunk::<4>()?;
    let len = i32::from_be_bytes(*len);
    let value = rest.get(..usize::try_from(len).ok()?)?;
    String::from_utf8(value.to_vec()).ok()
}
