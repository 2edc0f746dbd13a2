//! What the console sends back: RowDescription, DataRow, CommandComplete and the
//! small acknowledgements of the extended protocol, with values in text or
//! binary format as the client asked.

use bytes::{BufMut, BytesMut};

use crate::protocol::backend::{put_cstr, put_message};

/// The PostgreSQL type of a column. Counts are `int8` so psql right-aligns them
/// and drivers read them as integers; flags are `bool`; everything else `text`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    Text,
    Int8,
    Bool,
}

impl Type {
    pub fn oid(self) -> u32 {
        match self {
            Type::Text => 25,
            Type::Int8 => 20,
            Type::Bool => 16,
        }
    }

    fn size(self) -> i16 {
        match self {
            Type::Text => -1,
            Type::Int8 => 8,
            Type::Bool => 1,
        }
    }
}

/// A column of a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    pub ty: Type,
}

/// One value of a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    Text(String),
    Int(i64),
    Bool(bool),
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Text(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Text(s)
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}

impl From<u64> for Value {
    fn from(v: u64) -> Self {
        Value::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}

impl From<usize> for Value {
    fn from(v: usize) -> Self {
        Value::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}

impl From<u16> for Value {
    fn from(v: u16) -> Self {
        Value::Int(v.into())
    }
}

impl From<i32> for Value {
    fn from(v: i32) -> Self {
        Value::Int(v.into())
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// A view's answer: its columns and rows (each row as long as `columns`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultSet {
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<Value>>,
}

/// Result format codes as a Bind gave them: none (all text), one for all
/// columns, or one per column.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Formats(pub Vec<i16>);

impl Formats {
    /// Every column as text (the simple protocol, and Describe of a statement).
    pub fn text() -> Self {
        Formats(Vec::new())
    }

    /// Whether these codes fit a result of `columns` columns.
    pub fn check(&self, columns: usize) -> Result<(), String> {
        match self.0.len() {
            0 | 1 => Ok(()),
            n if n == columns => Ok(()),
            n => Err(format!(
                "bind message has {n} result formats but query has {columns} columns"
            )),
        }
    }

    fn binary(&self, column: usize) -> bool {
        match self.0.as_slice() {
            [] => false,
            [one] => *one == 1,
            many => many.get(column) == Some(&1),
        }
    }
}

/// Field descriptions, with each column's format.
pub fn row_description(buf: &mut BytesMut, columns: &[Column], formats: &Formats) {
    put_message(buf, b'T', |b| {
        b.put_i16(columns.len() as i16);
        for (i, c) in columns.iter().enumerate() {
            put_cstr(b, c.name);
            b.put_u32(0); // table oid
            b.put_i16(0); // column number
            b.put_u32(c.ty.oid());
            b.put_i16(c.ty.size());
            b.put_i32(-1); // type modifier
            b.put_i16(i16::from(formats.binary(i)));
        }
    });
}

/// One row, each value encoded as its column's format asks.
pub fn data_row(buf: &mut BytesMut, row: &[Value], formats: &Formats) {
    put_message(buf, b'D', |b| {
        b.put_i16(row.len() as i16);
        for (i, v) in row.iter().enumerate() {
            let binary = formats.binary(i);
            match v {
                Value::Null => b.put_i32(-1),
                Value::Text(s) => put_bytes(b, s.as_bytes()),
                Value::Int(n) if binary => put_bytes(b, &n.to_be_bytes()),
                Value::Int(n) => put_bytes(b, n.to_string().as_bytes()),
                Value::Bool(t) if binary => put_bytes(b, &[u8::from(*t)]),
                Value::Bool(t) => put_bytes(b, if *t { b"t" } else { b"f" }),
            }
        }
    });
}

fn put_bytes(b: &mut BytesMut, bytes: &[u8]) {
    b.put_i32(bytes.len() as i32);
    b.put_slice(bytes);
}

pub fn command_complete(buf: &mut BytesMut, tag: &str) {
    put_message(buf, b'C', |b| put_cstr(b, tag));
}

pub fn empty_query_response(buf: &mut BytesMut) {
    put_message(buf, b'I', |_| {});
}

pub fn parse_complete(buf: &mut BytesMut) {
    put_message(buf, b'1', |_| {});
}

pub fn bind_complete(buf: &mut BytesMut) {
    put_message(buf, b'2', |_| {});
}

pub fn close_complete(buf: &mut BytesMut) {
    put_message(buf, b'3', |_| {});
}

pub fn no_data(buf: &mut BytesMut) {
    put_message(buf, b'n', |_| {});
}

pub fn portal_suspended(buf: &mut BytesMut) {
    put_message(buf, b's', |_| {});
}

/// The console's statements take no parameters.
pub fn parameter_description_none(buf: &mut BytesMut) {
    put_message(buf, b't', |b| b.put_i16(0));
}

/// An informational NoticeResponse (SQLSTATE 00000).
pub fn notice(buf: &mut BytesMut, message: &str) {
    put_message(buf, b'N', |b| {
        for (field, value) in [
            (b'S', "NOTICE"),
            (b'V', "NOTICE"),
            (b'C', "00000"),
            (b'M', message),
        ] {
            b.put_u8(field);
            put_cstr(b, value);
        }
        b.put_u8(0);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Header;

    fn messages(buf: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        let mut rest = buf;
        while let Some(h) = Header::parse(rest).unwrap() {
            out.push((h.tag, rest[5..h.total_len()].to_vec()));
            rest = &rest[h.total_len()..];
        }
        assert!(rest.is_empty());
        out
    }

    #[test]
    fn text_and_binary_rows() {
        let columns = [
            Column {
                name: "a",
                ty: Type::Text,
            },
            Column {
                name: "n",
                ty: Type::Int8,
            },
            Column {
                name: "f",
                ty: Type::Bool,
            },
        ];
        let row = vec![Value::from("x"), Value::from(-7i64), Value::from(true)];
        let mut buf = BytesMut::new();
        row_description(&mut buf, &columns, &Formats::text());
        data_row(&mut buf, &row, &Formats::text());
        data_row(&mut buf, &row, &Formats(vec![1]));
        data_row(
            &mut buf,
            &[Value::Null, Value::Null, Value::Null],
            &Formats(vec![0, 1, 0]),
        );
        let m = messages(&buf);
        assert_eq!(m.len(), 4);
        assert_eq!(m[0].0, b'T');
        assert_eq!(&m[0].1[..2], &3i16.to_be_bytes());
        assert_eq!(m[1].1, b"\0\x03\0\0\0\x01x\0\0\0\x02-7\0\0\0\x01t".to_vec());
        let mut binary = b"\0\x03\0\0\0\x01x\0\0\0\x08".to_vec();
        binary.extend_from_slice(&(-7i64).to_be_bytes());
        binary.extend_from_slice(b"\0\0\0\x01\x01");
        assert_eq!(m[2].1, binary);
        assert_eq!(m[3].1.len(), 2 + 3 * 4);
    }

    #[test]
    fn format_counts() {
        assert!(Formats(vec![]).check(3).is_ok());
        assert!(Formats(vec![1]).check(3).is_ok());
        assert!(Formats(vec![0, 1, 0]).check(3).is_ok());
        assert!(Formats(vec![0, 1]).check(3).is_err());
        assert!(Formats(vec![1, 1]).binary(1));
        assert!(!Formats(vec![1, 0]).binary(1));
    }
}
