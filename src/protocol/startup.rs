//! The first packet of a connection, which has no tag byte: `len:i32, code:i32, ...`.
//!
//! The `code` is either a protocol version (StartupMessage) or one of the special
//! request codes. PostgreSQL caps these packets at 10,000 bytes
//! (`MAX_STARTUP_PACKET_LENGTH`); we use the same default, configurable.

use thiserror::Error;

pub const SSL_REQUEST_CODE: i32 = 80877103;
pub const GSSENC_REQUEST_CODE: i32 = 80877104;
pub const CANCEL_REQUEST_CODE: i32 = 80877102;

/// PostgreSQL's own limit for a startup packet.
pub const DEFAULT_MAX_STARTUP_PACKET: usize = 10_000;

/// The protocol version this pooler speaks.
pub const PROTOCOL_MAJOR: u16 = 3;
pub const PROTOCOL_MINOR: u16 = 0;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum StartupError {
    #[error("invalid length of startup packet ({len} bytes)")]
    BadLength { len: i64 },
    #[error("startup packet of {len} bytes exceeds the limit of {max} bytes")]
    TooLong { len: usize, max: usize },
    #[error("unsupported frontend protocol {major}.{minor}: server supports 3.0 to 3.0")]
    UnsupportedVersion { major: u16, minor: u16 },
    #[error("invalid startup packet layout: {0}")]
    Malformed(&'static str),
}

/// What a client opened with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupPacket {
    SslRequest,
    GssEncRequest,
    CancelRequest { pid: i32, secret: Vec<u8> },
    Startup(StartupMessage),
}

/// A protocol 3.x StartupMessage.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StartupMessage {
    pub minor: u16,
    /// Parameters in the order sent; a later duplicate overrides an earlier one, as in PostgreSQL.
    pub params: Vec<(String, String)>,
}

impl StartupMessage {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `_pq_.` protocol options, which this server recognises none of.
    pub fn protocol_options(&self) -> impl Iterator<Item = &str> {
        self.params
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| k.starts_with("_pq_."))
    }
}

/// Validates the four-byte length prefix; returns the number of bytes that follow it.
pub fn body_len(prefix: [u8; 4], max: usize) -> Result<usize, StartupError> {
    let len = i32::from_be_bytes(prefix);
    if len < 8 {
        return Err(StartupError::BadLength { len: len.into() });
    }
    let len = len as usize;
    if len > max {
        return Err(StartupError::TooLong { len, max });
    }
    Ok(len - 4)
}

/// Decodes the packet body (everything after the length prefix).
pub fn decode(body: &[u8]) -> Result<StartupPacket, StartupError> {
    let (code, rest) = body
        .split_first_chunk::<4>()
        .ok_or(StartupError::Malformed("missing protocol code"))?;
    let code = i32::from_be_bytes(*code);
    match code {
        SSL_REQUEST_CODE if rest.is_empty() => Ok(StartupPacket::SslRequest),
        GSSENC_REQUEST_CODE if rest.is_empty() => Ok(StartupPacket::GssEncRequest),
        SSL_REQUEST_CODE | GSSENC_REQUEST_CODE => {
            Err(StartupError::Malformed("encryption request with a body"))
        }
        CANCEL_REQUEST_CODE => {
            let (pid, secret) = rest
                .split_first_chunk::<4>()
                .ok_or(StartupError::Malformed("cancel request too short"))?;
            // Protocol 3.0 keys are 4 bytes; 3.2 allows up to 256.
            if secret.is_empty() || secret.len() > 256 {
                return Err(StartupError::Malformed("cancel request key length"));
            }
            Ok(StartupPacket::CancelRequest {
                pid: i32::from_be_bytes(*pid),
                secret: secret.to_vec(),
            })
        }
        _ => {
            let major = (code >> 16) as u16;
            let minor = (code & 0xffff) as u16;
            if major != PROTOCOL_MAJOR {
                return Err(StartupError::UnsupportedVersion { major, minor });
            }
            Ok(StartupPacket::Startup(StartupMessage {
                minor,
                params: decode_params(rest)?,
            }))
        }
    }
}

fn decode_params(mut rest: &[u8]) -> Result<Vec<(String, String)>, StartupError> {
    let mut params = Vec::new();
    loop {
        let key = take_cstr(&mut rest)?;
        if key.is_empty() {
            break;
        }
        let value = take_cstr(&mut rest)?;
        params.push((key.to_owned(), value.to_owned()));
    }
    if !rest.is_empty() {
        return Err(StartupError::Malformed("bytes after the parameter list"));
    }
    Ok(params)
}

fn take_cstr<'a>(rest: &mut &'a [u8]) -> Result<&'a str, StartupError> {
    let end = memchr::memchr(0, rest).ok_or(StartupError::Malformed("unterminated string"))?;
    let s = std::str::from_utf8(&rest[..end])
        .map_err(|_| StartupError::Malformed("parameter is not valid UTF-8"))?;
    *rest = &rest[end + 1..];
    Ok(s)
}

/// `pg_split_opts`: the words of the `options` startup parameter, split at
/// unescaped whitespace (PostgreSQL's `[ \t\n\r\f\v]`); a backslash escapes the next byte.
pub fn split_options(s: &[u8]) -> Vec<Vec<u8>> {
    let is_space = |b: u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c);
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while i < s.len() && is_space(s[i]) {
            i += 1;
        }
        if i >= s.len() {
            return args;
        }
        let mut word = Vec::new();
        let mut escaped = false;
        while i < s.len() && (escaped || !is_space(s[i])) {
            if !escaped && s[i] == b'\\' {
                escaped = true;
            } else {
                escaped = false;
                word.push(s[i]);
            }
            i += 1;
        }
        args.push(word);
    }
}

/// The `name=value` texts the `options` startup parameter sets, read as
/// PostgreSQL's `process_postgres_switches` does (`-c name=value`,
/// `-cname=value`, `--name=value`, flags clustered before `c`). Words that are
/// not switches come with `false`: the server refuses them, but a check of what
/// they would set still wants to see them.
pub fn option_settings(options: &[u8]) -> Vec<(bool, Vec<u8>)> {
    // getopt letters that take an argument: "B:bC:c:D:d:EeFf:h:ijk:lN:nOPp:r:S:sTt:v:W:-:"
    const WITH_ARG: &[u8] = b"BCcDdfhkNprStvW-";
    let mut args = split_options(options).into_iter();
    let mut out = Vec::new();
    while let Some(arg) = args.next() {
        if arg.len() < 2 || arg[0] != b'-' {
            out.push((false, arg));
            continue;
        }
        let Some(j) = arg.iter().skip(1).position(|f| WITH_ARG.contains(f)) else {
            continue;
        };
        let flag = arg[j + 1];
        let value = if j + 2 < arg.len() {
            arg[j + 2..].to_vec()
        } else {
            args.next().unwrap_or_default()
        };
        if matches!(flag, b'c' | b'-') {
            out.push((true, value));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn startup(code: i32, params: &[(&str, &str)]) -> Vec<u8> {
        let mut v = code.to_be_bytes().to_vec();
        for (k, val) in params {
            v.extend_from_slice(k.as_bytes());
            v.push(0);
            v.extend_from_slice(val.as_bytes());
            v.push(0);
        }
        v.push(0);
        v
    }

    #[test]
    fn decodes_startup_with_params() {
        let body = startup(196608, &[("user", "app.acme"), ("database", "app")]);
        let StartupPacket::Startup(m) = decode(&body).unwrap() else {
            panic!("not a startup")
        };
        assert_eq!(m.minor, 0);
        assert_eq!(m.get("user"), Some("app.acme"));
        assert_eq!(m.get("database"), Some("app"));
        assert_eq!(m.protocol_options().count(), 0);
    }

    #[test]
    fn decodes_requests() {
        assert_eq!(
            decode(&SSL_REQUEST_CODE.to_be_bytes()),
            Ok(StartupPacket::SslRequest)
        );
        assert_eq!(
            decode(&GSSENC_REQUEST_CODE.to_be_bytes()),
            Ok(StartupPacket::GssEncRequest)
        );
        let mut cancel = CANCEL_REQUEST_CODE.to_be_bytes().to_vec();
        cancel.extend_from_slice(&42i32.to_be_bytes());
        cancel.extend_from_slice(&[1, 2, 3, 4]);
        assert_eq!(
            decode(&cancel),
            Ok(StartupPacket::CancelRequest {
                pid: 42,
                secret: vec![1, 2, 3, 4]
            })
        );
    }

    #[test]
    fn rejects_bad_packets() {
        assert!(matches!(
            body_len([0, 0, 0, 7], 10_000),
            Err(StartupError::BadLength { .. })
        ));
        assert!(matches!(
            body_len([0xff, 0, 0, 0], 10_000),
            Err(StartupError::BadLength { .. })
        ));
        assert!(matches!(
            body_len([0, 1, 0, 0], 10_000),
            Err(StartupError::TooLong { .. })
        ));
        assert_eq!(body_len([0, 0, 0, 8], 10_000), Ok(4));
        assert!(matches!(
            decode(&startup(2 << 16, &[])),
            Err(StartupError::UnsupportedVersion { major: 2, .. })
        ));
        let mut unterminated = 196608i32.to_be_bytes().to_vec();
        unterminated.extend_from_slice(b"user\0app");
        assert!(decode(&unterminated).is_err());
        let mut trailing = startup(196608, &[("user", "a")]);
        trailing.push(b'x');
        assert!(decode(&trailing).is_err());
        assert!(decode(&[0, 3]).is_err());
        let mut bad_utf8 = 196608i32.to_be_bytes().to_vec();
        bad_utf8.extend_from_slice(b"user\0\xff\0\0");
        assert!(decode(&bad_utf8).is_err());
    }

    #[test]
    fn accepts_newer_minor_and_reports_pq_options() {
        let body = startup((3 << 16) | 2, &[("user", "u"), ("_pq_.foo", "1")]);
        let StartupPacket::Startup(m) = decode(&body).unwrap() else {
            panic!()
        };
        assert_eq!(m.minor, 2);
        assert_eq!(m.protocol_options().collect::<Vec<_>>(), vec!["_pq_.foo"]);
    }
}
