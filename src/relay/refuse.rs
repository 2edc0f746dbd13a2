//! Refusing a client's statement (tenant guard) without taking the protocol
//! state machine away from PostgreSQL.
//!
//! The refused Query or Parse is replaced by one that fails on the server with
//! an unmistakable marker, so the server itself does what an error does to the
//! transaction, the extended-protocol batch (skip until Sync) and ReadyForQuery.
//! On the way back the server's error is rewritten into ours: SQLSTATE 42501 and
//! a message saying what was refused. The statement never runs.

use std::sync::OnceLock;

use bytes::{BufMut, BytesMut};

use crate::error::ClientError;
use crate::protocol::backend::{self, Severity};
use crate::protocol::{frontend, tag};
use crate::tenant::guard::Violation;
use crate::tenant::TenantPolicy;

/// Code for "too large to inspect", beside the guard's own violation codes.
pub const OVERSIZED: u8 = 255;
/// Code for a refused fastpath FunctionCall.
pub const FASTPATH: u8 = 254;
/// Code for a client's Parse of a statement name it already has.
pub const DUPLICATE_STATEMENT: u8 = 253;

/// `tenantpool_guard_<random>_`: an identifier no schema will have.
fn marker() -> &'static str {
    static MARKER: OnceLock<String> = OnceLock::new();
    MARKER.get_or_init(|| format!("tenantpool_guard_{:016x}_", rand::random::<u64>()))
}

/// SQL that fails at parse analysis with `column "<marker><code>" does not exist`.
fn failing_sql(code: u8) -> String {
    format!("SELECT {}{code}", marker())
}

/// A Query message to send instead of a refused one.
pub fn query(code: u8) -> BytesMut {
    let mut buf = BytesMut::with_capacity(64);
    frontend::query(&mut buf, &failing_sql(code));
    buf
}

/// A Parse message to send instead of a refused one: same statement name, so the
/// client's later Bind/Describe/Close refer to the statement that failed.
pub fn parse(original_body: &[u8], code: u8) -> BytesMut {
    let name = original_body.split(|&b| b == 0).next().unwrap_or_default();
    let mut buf = BytesMut::with_capacity(64 + name.len());
    backend::put_message(&mut buf, tag::PARSE, |b| {
        b.put_slice(name);
        b.put_u8(0);
        b.put_slice(failing_sql(code).as_bytes());
        b.put_u8(0);
        b.put_i16(0);
    });
    buf
}

/// The refusal code carried by a server ErrorResponse body, if it is one of ours.
pub fn refused_code(error_body: &[u8]) -> Option<u8> {
    let m = marker().as_bytes();
    let at = memchr::memmem::find(error_body, m)? + m.len();
    let digits: &[u8] = &error_body[at..];
    let end = digits
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(digits.len());
    std::str::from_utf8(&digits[..end]).ok()?.parse().ok()
}

/// The ErrorResponse the client gets instead of the server's.
pub fn client_error(code: u8, policy: Option<&TenantPolicy>, max_message: usize) -> BytesMut {
    if code == DUPLICATE_STATEMENT {
        let mut error = ClientError::fatal(
            crate::error::sqlstate::DUPLICATE_PREPARED_STATEMENT,
            "prepared statement already exists",
        );
        error.severity = Severity::Error;
        let mut buf = BytesMut::with_capacity(64);
        error.encode(&mut buf);
        return buf;
    }
    let message = match (code, Violation::from_code(code), policy) {
        (_, Some(v), Some(policy)) => v.message(&policy.setting),
        (FASTPATH, _, _) => "tenantpool: fastpath function calls are not allowed in tenant-scoped pools: \
            they could change the tenant setting unseen"
            .to_owned(),
        _ => format!(
            "tenantpool: statement text larger than max_message_size ({max_message} bytes) cannot be checked by the tenant guard"
        ),
    };
    let mut error = ClientError::fatal(crate::error::sqlstate::INSUFFICIENT_PRIVILEGE, message);
    error.severity = Severity::Error;
    let mut buf = BytesMut::with_capacity(128);
    error.encode(&mut buf);
    buf
}

/// Replaces `buf[at..at + old_len]` with `new`, shifting what follows.
pub fn splice(buf: &mut BytesMut, at: usize, old_len: usize, new: &[u8]) {
    let tail = at + old_len;
    let len = buf.len();
    if new.len() > old_len {
        buf.resize(len + new.len() - old_len, 0);
        buf.copy_within(tail..len, at + new.len());
    } else if new.len() < old_len {
        buf.copy_within(tail..len, at + new.len());
        buf.truncate(len - (old_len - new.len()));
    }
    buf[at..at + new.len()].copy_from_slice(new);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splice_grows_shrinks_and_removes() {
        let mut b = BytesMut::from(&b"aaXXbb"[..]);
        splice(&mut b, 2, 2, b"YYYY");
        assert_eq!(&b[..], b"aaYYYYbb");
        splice(&mut b, 2, 4, b"Z");
        assert_eq!(&b[..], b"aaZbb");
        splice(&mut b, 2, 1, b"");
        assert_eq!(&b[..], b"aabb");
    }

    #[test]
    fn marker_round_trips_through_a_server_error() {
        let q = query(3);
        let sql = std::str::from_utf8(&q[5..q.len() - 1]).unwrap();
        let column = sql.strip_prefix("SELECT ").unwrap();
        let server_error = format!("SERROR\0C42703\0Mcolumn \"{column}\" does not exist\0\0");
        assert_eq!(refused_code(server_error.as_bytes()), Some(3));
        assert_eq!(
            refused_code(b"SERROR\0C42703\0Mcolumn \"x\" does not exist\0\0"),
            None
        );
    }

    #[test]
    fn parse_keeps_the_statement_name() {
        let p = parse(b"s1\0set app.current_tenant = 'x'\0\0\0", 1);
        assert_eq!(p[0], b'P');
        assert!(p[5..].starts_with(b"s1\0SELECT tenantpool_guard_"));
        assert!(p.ends_with(b"\0\0\0"));
    }
}
