//! Messages a PostgreSQL server sends: encoded here when the pooler answers a
//! client itself, decoded here when it reads them from a server during login.

use bytes::{BufMut, BytesMut};

use super::tag;

/// Appends a message with `tag`, letting `body` write the payload and back-patching the length.
#[inline]
pub fn put_message(buf: &mut BytesMut, tag: u8, body: impl FnOnce(&mut BytesMut)) {
    buf.put_u8(tag);
    let len_at = buf.len();
    buf.put_i32(0);
    body(buf);
    let len = (buf.len() - len_at) as i32;
    buf[len_at..len_at + 4].copy_from_slice(&len.to_be_bytes());
}

#[inline]
pub fn put_cstr(buf: &mut BytesMut, s: &str) {
    buf.put_slice(s.as_bytes());
    buf.put_u8(0);
}

pub fn ready_for_query(buf: &mut BytesMut, status: u8) {
    put_message(buf, tag::READY_FOR_QUERY, |b| b.put_u8(status));
}

pub fn authentication_ok(buf: &mut BytesMut) {
    put_message(buf, tag::AUTHENTICATION, |b| b.put_i32(0));
}

pub fn authentication_cleartext(buf: &mut BytesMut) {
    put_message(buf, tag::AUTHENTICATION, |b| b.put_i32(3));
}

pub fn authentication_md5(buf: &mut BytesMut, salt: [u8; 4]) {
    put_message(buf, tag::AUTHENTICATION, |b| {
        b.put_i32(5);
        b.put_slice(&salt);
    });
}

pub fn authentication_sasl(buf: &mut BytesMut, mechanisms: &[&str]) {
    put_message(buf, tag::AUTHENTICATION, |b| {
        b.put_i32(10);
        for m in mechanisms {
            put_cstr(b, m);
        }
        b.put_u8(0);
    });
}

pub fn authentication_sasl_continue(buf: &mut BytesMut, data: &[u8]) {
    put_message(buf, tag::AUTHENTICATION, |b| {
        b.put_i32(11);
        b.put_slice(data);
    });
}

pub fn authentication_sasl_final(buf: &mut BytesMut, data: &[u8]) {
    put_message(buf, tag::AUTHENTICATION, |b| {
        b.put_i32(12);
        b.put_slice(data);
    });
}

pub fn parameter_status(buf: &mut BytesMut, name: &str, value: &str) {
    put_message(buf, tag::PARAMETER_STATUS, |b| {
        put_cstr(b, name);
        put_cstr(b, value);
    });
}

pub fn backend_key_data(buf: &mut BytesMut, pid: i32, secret: [u8; 4]) {
    put_message(buf, tag::BACKEND_KEY_DATA, |b| {
        b.put_i32(pid);
        b.put_slice(&secret);
    });
}

/// Tells a client which protocol minor version and which `_pq_.` options we support.
pub fn negotiate_protocol_version(buf: &mut BytesMut, newest_minor: u16, unrecognized: &[&str]) {
    put_message(buf, tag::NEGOTIATE_PROTOCOL_VERSION, |b| {
        b.put_i32(i32::from(super::startup::PROTOCOL_MAJOR) << 16 | i32::from(newest_minor));
        b.put_i32(unrecognized.len() as i32);
        for o in unrecognized {
            put_cstr(b, o);
        }
    });
}

/// Severity of an error we raise ourselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The statement failed; the session goes on.
    Error,
    /// The connection is about to be closed.
    Fatal,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "ERROR",
            Severity::Fatal => "FATAL",
        }
    }
}

/// An ErrorResponse with the fields drivers rely on (S, V, C, M, and D/H when present).
pub fn error_response(
    buf: &mut BytesMut,
    severity: Severity,
    code: &str,
    message: &str,
    detail: Option<&str>,
    hint: Option<&str>,
) {
    put_message(buf, tag::ERROR_RESPONSE, |b| {
        for (field, value) in [
            (b'S', Some(severity.as_str())),
            (b'V', Some(severity.as_str())),
            (b'C', Some(code)),
            (b'M', Some(message)),
            (b'D', detail),
            (b'H', hint),
        ] {
            if let Some(v) = value {
                b.put_u8(field);
                put_cstr(b, v);
            }
        }
        b.put_u8(0);
    });
}

/// An Authentication request as read from a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authentication<'a> {
    Ok,
    Cleartext,
    Md5 { salt: [u8; 4] },
    Sasl { mechanisms: Vec<&'a str> },
    SaslContinue(&'a [u8]),
    SaslFinal(&'a [u8]),
    Other(i32),
}

/// Decodes the body of an 'R' message; `None` when it is malformed.
pub fn decode_authentication(body: &[u8]) -> Option<Authentication<'_>> {
    let (code, rest) = body.split_first_chunk::<4>()?;
    Some(match i32::from_be_bytes(*code) {
        0 => Authentication::Ok,
        3 => Authentication::Cleartext,
        5 => Authentication::Md5 {
            salt: *rest.first_chunk::<4>()?,
        },
        10 => {
            let mut mechanisms = Vec::new();
            let mut rest = rest;
            loop {
                let end = memchr::memchr(0, rest)?;
                if end == 0 {
                    break;
                }
                mechanisms.push(std::str::from_utf8(&rest[..end]).ok()?);
                rest = &rest[end + 1..];
            }
            Authentication::Sasl { mechanisms }
        }
        11 => Authentication::SaslContinue(rest),
        12 => Authentication::SaslFinal(rest),
        other => Authentication::Other(other),
    })
}

/// Decodes a ParameterStatus body into (name, value).
pub fn decode_parameter_status(body: &[u8]) -> Option<(&str, &str)> {
    let mut fields = body.split(|&b| b == 0);
    let name = std::str::from_utf8(fields.next()?).ok()?;
    let value = std::str::from_utf8(fields.next()?).ok()?;
    Some((name, value))
}

/// Decodes BackendKeyData into (pid, secret key bytes).
pub fn decode_backend_key_data(body: &[u8]) -> Option<(i32, &[u8])> {
    let (pid, secret) = body.split_first_chunk::<4>()?;
    Some((i32::from_be_bytes(*pid), secret))
}

/// The fields of an ErrorResponse or NoticeResponse.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorFields {
    pub severity: String,
    pub code: String,
    pub message: String,
    pub detail: Option<String>,
}

impl std::fmt::Display for ErrorFields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} (SQLSTATE {})",
            self.severity, self.message, self.code
        )
    }
}

/// Decodes an ErrorResponse/NoticeResponse body, tolerating unknown fields.
pub fn decode_error_fields(body: &[u8]) -> ErrorFields {
    let mut out = ErrorFields::default();
    let mut rest = body;
    while let Some((&field, tail)) = rest.split_first() {
        if field == 0 {
            break;
        }
        let end = memchr::memchr(0, tail).unwrap_or(tail.len());
        let value = String::from_utf8_lossy(&tail[..end]).into_owned();
        match field {
            b'V' => out.severity = value,
            b'S' if out.severity.is_empty() => out.severity = value,
            b'C' => out.code = value,
            b'M' => out.message = value,
            b'D' => out.detail = Some(value),
            _ => {}
        }
        rest = tail.get(end + 1..).unwrap_or_default();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_response_round_trips() {
        let mut buf = BytesMut::new();
        error_response(
            &mut buf,
            Severity::Fatal,
            "28P01",
            "bad password",
            None,
            Some("h"),
        );
        let header = crate::protocol::Header::parse(&buf).unwrap().unwrap();
        assert_eq!(header.tag, b'E');
        assert_eq!(header.total_len(), buf.len());
        let f = decode_error_fields(&buf[5..]);
        assert_eq!(f.code, "28P01");
        assert_eq!(f.message, "bad password");
        assert_eq!(f.severity, "FATAL");
    }

    #[test]
    fn decodes_auth_requests() {
        let mut buf = BytesMut::new();
        authentication_sasl(&mut buf, &["SCRAM-SHA-256"]);
        assert_eq!(
            decode_authentication(&buf[5..]),
            Some(Authentication::Sasl {
                mechanisms: vec!["SCRAM-SHA-256"]
            })
        );
        buf.clear();
        authentication_md5(&mut buf, [1, 2, 3, 4]);
        assert_eq!(
            decode_authentication(&buf[5..]),
            Some(Authentication::Md5 { salt: [1, 2, 3, 4] })
        );
        assert_eq!(decode_authentication(&[0, 0]), None);
        assert_eq!(decode_authentication(&[0, 0, 0, 5, 1]), None);
        assert_eq!(decode_authentication(&[0, 0, 0, 10, b'x']), None);
    }

    #[test]
    fn decode_error_fields_tolerates_garbage() {
        let f = decode_error_fields(b"Cabc");
        assert_eq!(f.code, "abc");
        let _ = decode_error_fields(b"\xff\xff\0M");
        let _ = decode_error_fields(b"");
    }
}
