//! The extended query protocol, as far as drivers need it to run a console
//! command: Parse / Bind / Describe / Execute / Close / Sync with the command
//! as the statement text and no parameters. Decoding of those messages, and
//! the prepared statements and portals of one connection.

use std::collections::{HashMap, VecDeque};

use super::command::Command;
use super::resultset::{Formats, Value};

/// Named statements or portals one connection may hold at once.
pub const MAX_NAMED: usize = 256;

/// A prepared statement: its command, or `None` for an empty query.
pub type Prepared = Option<Command>;

/// A bound statement, ready to run.
pub struct Portal {
    pub command: Prepared,
    pub formats: Formats,
    /// Rows not yet sent after an Execute with a row limit.
    pub pending: Option<VecDeque<Vec<Value>>>,
}

#[derive(Default)]
pub struct Extended {
    pub statements: HashMap<String, Prepared>,
    pub portals: HashMap<String, Portal>,
    /// An error happened: skip messages until the next Sync.
    pub failed: bool,
}

/// A message body that does not parse.
#[derive(Debug)]
pub struct Malformed(pub &'static str);

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn cstr(&mut self, what: &'static str) -> Result<&'a str, Malformed> {
        let end = memchr::memchr(0, self.0).ok_or(Malformed(what))?;
        let s = std::str::from_utf8(&self.0[..end]).map_err(|_| Malformed(what))?;
        self.0 = &self.0[end + 1..];
        Ok(s)
    }

    fn i16(&mut self, what: &'static str) -> Result<i16, Malformed> {
        let (v, rest) = self.0.split_first_chunk::<2>().ok_or(Malformed(what))?;
        self.0 = rest;
        Ok(i16::from_be_bytes(*v))
    }

    fn i32(&mut self, what: &'static str) -> Result<i32, Malformed> {
        let (v, rest) = self.0.split_first_chunk::<4>().ok_or(Malformed(what))?;
        self.0 = rest;
        Ok(i32::from_be_bytes(*v))
    }

    fn count(&mut self, what: &'static str) -> Result<usize, Malformed> {
        usize::try_from(self.i16(what)?).map_err(|_| Malformed(what))
    }

    fn skip(&mut self, n: usize, what: &'static str) -> Result<(), Malformed> {
        self.0 = self.0.get(n..).ok_or(Malformed(what))?;
        Ok(())
    }

    fn end(&self, what: &'static str) -> Result<(), Malformed> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Malformed(what))
        }
    }
}

pub struct Parse<'a> {
    pub name: &'a str,
    pub query: &'a str,
    pub param_types: usize,
}

pub fn decode_parse(body: &[u8]) -> Result<Parse<'_>, Malformed> {
    const WHAT: &str = "invalid Parse message";
    let mut r = Reader(body);
    let name = r.cstr(WHAT)?;
    let query = r.cstr(WHAT)?;
    let param_types = r.count(WHAT)?;
    r.skip(param_types * 4, WHAT)?;
    r.end(WHAT)?;
    Ok(Parse {
        name,
        query,
        param_types,
    })
}

pub struct Bind<'a> {
    pub portal: &'a str,
    pub statement: &'a str,
    pub params: usize,
    pub formats: Vec<i16>,
}

pub fn decode_bind(body: &[u8]) -> Result<Bind<'_>, Malformed> {
    const WHAT: &str = "invalid Bind message";
    let mut r = Reader(body);
    let portal = r.cstr(WHAT)?;
    let statement = r.cstr(WHAT)?;
    let param_formats = r.count(WHAT)?;
    r.skip(param_formats * 2, WHAT)?;
    let params = r.count(WHAT)?;
    for _ in 0..params {
        let len = r.i32(WHAT)?;
        if len > 0 {
            r.skip(len as usize, WHAT)?;
        }
    }
    let n = r.count(WHAT)?;
    let formats = (0..n).map(|_| r.i16(WHAT)).collect::<Result<_, _>>()?;
    r.end(WHAT)?;
    Ok(Bind {
        portal,
        statement,
        params,
        formats,
    })
}

/// Describe and Close: `S` (statement) or `P` (portal), and a name.
pub fn decode_target(body: &[u8]) -> Result<(u8, &str), Malformed> {
    const WHAT: &str = "invalid Describe or Close message";
    let (&kind, rest) = body.split_first().ok_or(Malformed(WHAT))?;
    if kind != b'S' && kind != b'P' {
        return Err(Malformed(WHAT));
    }
    let mut r = Reader(rest);
    let name = r.cstr(WHAT)?;
    r.end(WHAT)?;
    Ok((kind, name))
}

/// Execute: the portal and the row limit (0: all).
pub fn decode_execute(body: &[u8]) -> Result<(&str, usize), Malformed> {
    const WHAT: &str = "invalid Execute message";
    let mut r = Reader(body);
    let portal = r.cstr(WHAT)?;
    let max_rows = r.i32(WHAT)?;
    r.end(WHAT)?;
    Ok((portal, usize::try_from(max_rows).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_what_drivers_send() {
        let p = decode_parse(b"s0\0SHOW POOLS\0\0\0").unwrap();
        assert_eq!((p.name, p.query, p.param_types), ("s0", "SHOW POOLS", 0));
        let p = decode_parse(b"\0x\0\0\x01\0\0\0\x17").unwrap();
        assert_eq!(p.param_types, 1);
        assert!(decode_parse(b"\0x\0\0\x01\0\0").is_err());
        assert!(decode_parse(b"s0\0SHOW").is_err());

        let b = decode_bind(b"\0s0\0\0\0\0\0\0\x01\0\x01").unwrap();
        assert_eq!((b.portal, b.statement, b.params), ("", "s0", 0));
        assert_eq!(b.formats, vec![1]);
        let b = decode_bind(b"p\0s\0\0\x01\0\0\0\x02\0\0\0\x01x\xff\xff\xff\xff\0\0").unwrap();
        assert_eq!(b.params, 2);
        assert!(decode_bind(b"p\0s\0\0\0\0\x01\0\0\0\x09x\0\0").is_err());

        assert_eq!(decode_target(b"Ss0\0").unwrap(), (b'S', "s0"));
        assert_eq!(decode_target(b"P\0").unwrap(), (b'P', ""));
        assert!(decode_target(b"X\0").is_err());
        assert_eq!(decode_execute(b"\0\0\0\0\0").unwrap(), ("", 0));
        assert_eq!(decode_execute(b"p\0\0\0\0\x05").unwrap(), ("p", 5));
        assert!(decode_execute(b"p\0\0\0").is_err());
    }
}
