//! Messages a client sends: encoded here when the pooler logs in to a server or
//! injects a statement, decoded here when it authenticates a client.

use bytes::{BufMut, BytesMut};

use super::backend::{put_cstr, put_message};
use super::startup::{CANCEL_REQUEST_CODE, PROTOCOL_MAJOR, PROTOCOL_MINOR};
use super::tag;

/// A StartupMessage for protocol 3.0 with the given parameters.
pub fn startup_message(buf: &mut BytesMut, params: &[(&str, &str)]) {
    let len_at = buf.len();
    buf.put_i32(0);
    buf.put_i32(i32::from(PROTOCOL_MAJOR) << 16 | i32::from(PROTOCOL_MINOR));
    for (k, v) in params {
        put_cstr(buf, k);
        put_cstr(buf, v);
    }
    buf.put_u8(0);
    let len = (buf.len() - len_at) as i32;
    buf[len_at..len_at + 4].copy_from_slice(&len.to_be_bytes());
}

pub fn cancel_request(buf: &mut BytesMut, pid: i32, secret: &[u8]) {
    buf.put_i32(12 + secret.len() as i32);
    buf.put_i32(CANCEL_REQUEST_CODE);
    buf.put_i32(pid);
    buf.put_slice(secret);
}

/// PasswordMessage with raw contents (cleartext password or md5 response, both NUL-terminated).
pub fn password_message(buf: &mut BytesMut, password: &[u8]) {
    put_message(buf, tag::PASSWORD, |b| {
        b.put_slice(password);
        b.put_u8(0);
    });
}

pub fn sasl_initial_response(buf: &mut BytesMut, mechanism: &str, data: &[u8]) {
    put_message(buf, tag::PASSWORD, |b| {
        put_cstr(b, mechanism);
        b.put_i32(data.len() as i32);
        b.put_slice(data);
    });
}

pub fn sasl_response(buf: &mut BytesMut, data: &[u8]) {
    put_message(buf, tag::PASSWORD, |b| b.put_slice(data));
}

/// A simple-protocol Query.
pub fn query(buf: &mut BytesMut, sql: &str) {
    put_message(buf, tag::QUERY, |b| put_cstr(b, sql));
}

/// Parse, Bind and Execute of `sql` as the unnamed statement and portal, with no
/// parameters and no Sync: it runs at the head of whatever the client sends next.
pub fn unsynced_statement(buf: &mut BytesMut, sql: &[u8]) {
    unsynced_named_statement(buf, b"", Some(sql));
}

/// Bind and Execute of the statement `name` (unnamed portal, no parameters), no
/// Sync; preceded by the Parse of `sql` under that name when `parse` is given.
pub fn unsynced_named_statement(buf: &mut BytesMut, name: &[u8], parse: Option<&[u8]>) {
    if let Some(sql) = parse {
        put_message(buf, tag::PARSE, |b| {
            b.put_slice(name);
            b.put_u8(0);
            b.put_slice(sql);
            b.put_u8(0);
            b.put_i16(0);
        });
    }
    put_message(buf, tag::BIND, |b| {
        b.put_u8(0);
        b.put_slice(name);
        b.put_u8(0);
        b.put_i16(0); // parameter formats
        b.put_i16(0); // parameters
        b.put_i16(0); // result formats
    });
    put_message(buf, tag::EXECUTE, |b| {
        b.put_u8(0);
        b.put_i32(0);
    });
}

pub fn terminate(buf: &mut BytesMut) {
    put_message(buf, tag::TERMINATE, |_| {});
}

/// Splits a SASLInitialResponse body into (mechanism, client-first data).
pub fn decode_sasl_initial_response(body: &[u8]) -> Option<(&str, &[u8])> {
    let end = memchr::memchr(0, body)?;
    let mechanism = std::str::from_utf8(&body[..end]).ok()?;
    let (len, data) = body[end + 1..].split_first_chunk::<4>()?;
    let len = i32::from_be_bytes(*len);
    if len < 0 || len as usize != data.len() {
        return None;
    }
    Some((mechanism, data))
}

/// The text of a PasswordMessage (without its terminating NUL).
pub fn decode_password(body: &[u8]) -> Option<&[u8]> {
    match body.split_last() {
        Some((0, text)) if !text.contains(&0) => Some(text),
        _ => None,
    }
}

/// The SQL text of a Query body, without the terminating NUL.
#[inline]
pub fn query_text(body: &[u8]) -> &[u8] {
    body.strip_suffix(&[0]).unwrap_or(body)
}

/// The SQL text of a Parse body: `name\0 query\0 nparams:i16 ...`.
pub fn parse_query_text(body: &[u8]) -> Option<&[u8]> {
    let name_end = memchr::memchr(0, body)?;
    let rest = &body[name_end + 1..];
    let q_end = memchr::memchr(0, rest)?;
    Some(&rest[..q_end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sasl_initial_response_round_trips() {
        let mut buf = BytesMut::new();
        sasl_initial_response(&mut buf, "SCRAM-SHA-256", b"n,,n=,r=abc");
        assert_eq!(
            decode_sasl_initial_response(&buf[5..]),
            Some(("SCRAM-SHA-256", &b"n,,n=,r=abc"[..]))
        );
        assert_eq!(decode_sasl_initial_response(b"SCRAM\0\0\0\0\x09abc"), None);
        assert_eq!(decode_sasl_initial_response(b"SCRAM"), None);
        assert_eq!(
            decode_sasl_initial_response(b"SCRAM\0\xff\xff\xff\xff"),
            None
        );
    }

    #[test]
    fn password_and_parse_text() {
        assert_eq!(decode_password(b"secret\0"), Some(&b"secret"[..]));
        assert_eq!(decode_password(b"secret"), None);
        assert_eq!(decode_password(b"se\0cret\0"), None);
        assert_eq!(
            parse_query_text(b"s1\0select 1\0\0\0"),
            Some(&b"select 1"[..])
        );
        assert_eq!(parse_query_text(b"s1\0select"), None);
    }

    #[test]
    fn cancel_request_layout() {
        let mut buf = BytesMut::new();
        cancel_request(&mut buf, 7, &[1, 2, 3, 4]);
        assert_eq!(&buf[..4], &16i32.to_be_bytes());
        assert_eq!(buf.len(), 16);
    }
}
