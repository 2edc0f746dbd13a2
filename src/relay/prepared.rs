//! Named prepared statements in transaction pooling.
//!
//! A client's statement is prepared on the server under a name derived from its
//! content (`tp_` + 128 bits of SHA-256 of the query text and parameter types),
//! so identical statements from many clients share one server-side preparation,
//! and a name can never stand for two different statements. The pooler keeps
//! each client's own names ([`ClientStatements`]) and what each server
//! connection has prepared ([`ServerStatements`], bounded, least recently used
//! evicted), and rewrites names in Parse, Bind, Describe and Close.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use sha2::{Digest, Sha256};

use crate::protocol::backend::put_message;
use crate::protocol::tag;

/// A statement's name on the server.
pub type ServerName = Arc<str>;

/// One statement a client prepared, as the server will know it.
#[derive(Debug)]
pub struct StmtDef {
    pub server_name: ServerName,
    /// A complete Parse message preparing it under `server_name`.
    pub parse: Bytes,
    /// Its text may change the tenant setting (see the tenant scanner): every
    /// transaction that runs it stops the pooler trusting the setting.
    pub touches_tenant: bool,
}

impl StmtDef {
    /// From a Parse body (`name\0 query\0 nparams oids...`); `None` if malformed.
    pub fn from_parse_body(body: &[u8]) -> Option<(Box<[u8]>, StmtDef)> {
        let name_end = memchr::memchr(0, body)?;
        let rest = &body[name_end + 1..];
        let digest = Sha256::digest(rest);
        let mut name = String::with_capacity(35);
        name.push_str("tp_");
        for b in &digest[..16] {
            name.push_str(&format!("{b:02x}"));
        }
        let mut parse = BytesMut::with_capacity(rest.len() + 48);
        put_message(&mut parse, tag::PARSE, |m| {
            m.put_slice(name.as_bytes());
            m.put_u8(0);
            m.put_slice(rest);
        });
        Some((
            body[..name_end].into(),
            StmtDef {
                server_name: name.into(),
                parse: parse.freeze(),
                touches_tenant: false,
            },
        ))
    }
}

/// A client's named statements: its names → what they stand for.
#[derive(Debug, Default)]
pub struct ClientStatements {
    map: HashMap<Box<[u8]>, Arc<StmtDef>>,
}

impl ClientStatements {
    pub fn get(&self, name: &[u8]) -> Option<&Arc<StmtDef>> {
        self.map.get(name)
    }

    pub fn contains(&self, name: &[u8]) -> bool {
        self.map.contains_key(name)
    }

    pub fn insert(&mut self, name: Box<[u8]>, def: Arc<StmtDef>) {
        self.map.insert(name, def);
    }

    pub fn remove(&mut self, name: &[u8]) -> bool {
        self.map.remove(name).is_some()
    }

    pub fn clear(&mut self) {
        self.map.clear();
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// What one server connection has prepared; bounded, least recently used first out.
#[derive(Debug, Default)]
pub struct ServerStatements {
    used: HashMap<ServerName, u64>,
    clock: u64,
}

/// How the names of the tenant SET statements start (see
/// [`crate::tenant::TenantPolicy::set_statement_name`]); never a client
/// statement's (`tp_` and hex digits).
pub const TENANT_SET_PREFIX: &str = "tps";

impl ServerStatements {
    /// Whether the server has `name`; marks it used.
    pub fn touch(&mut self, name: &str) -> bool {
        self.clock += 1;
        match self.used.get_mut(name) {
            Some(at) => {
                *at = self.clock;
                true
            }
            None => false,
        }
    }

    /// Records `name` as prepared. Returns the statement to close first when the
    /// server would then hold more than `max`.
    pub fn insert(&mut self, name: ServerName, max: usize) -> Option<ServerName> {
        self.clock += 1;
        self.used.insert(name, self.clock);
        if self.used.len() <= max {
            return None;
        }
        let oldest = self
            .used
            .iter()
            .min_by_key(|(_, at)| **at)
            .map(|(n, _)| n.clone())?;
        self.used.remove(&oldest);
        Some(oldest)
    }

    pub fn remove(&mut self, name: &str) {
        self.used.remove(name);
    }

    /// After DISCARD ALL / DEALLOCATE ALL on the server.
    pub fn clear(&mut self) {
        self.used.clear();
    }

    /// Forgets the tenant SET statements: a client's own SQL `DEALLOCATE` or
    /// `PREPARE` may have dropped one or taken the name of one. The next use
    /// closes the name and prepares it again.
    pub fn forget_tenant_sets(&mut self) {
        self.used
            .retain(|name, _| !name.starts_with(TENANT_SET_PREFIX));
    }

    pub fn len(&self) -> usize {
        self.used.len()
    }

    pub fn is_empty(&self) -> bool {
        self.used.is_empty()
    }
}

/// A Close message for a server statement (to evict it).
pub fn close_message(name: &str) -> BytesMut {
    let mut m = BytesMut::with_capacity(name.len() + 8);
    put_message(&mut m, tag::CLOSE, |b| {
        b.put_u8(b'S');
        b.put_slice(name.as_bytes());
        b.put_u8(0);
    });
    m
}

/// Everything the relay needs to rewrite statement names on one server connection.
pub struct Prepared<'a> {
    pub client: &'a mut ClientStatements,
    pub server: &'a mut ServerStatements,
    /// Most statements one server connection keeps prepared.
    pub max: usize,
}

/// The statement name of a simple Query that is exactly `DEALLOCATE [PREPARE]
/// name` (case-insensitive, an optional trailing `;`). DEALLOCATE ALL is not
/// one: it goes to the server (see the outbound side). Anything more complex is
/// left to the server too.
pub fn deallocated_name(sql: &[u8]) -> Option<Vec<u8>> {
    // Every simple Query passes here: decide on the first word before anything
    // that scans the whole text or allocates.
    let start = sql
        .iter()
        .position(|&b| !(b.is_ascii_whitespace() || b == b'\x0b'))?;
    if !sql[start..]
        .get(..b"deallocate".len())
        .is_some_and(|w| w.eq_ignore_ascii_case(b"deallocate"))
    {
        return None;
    }
    let text = std::str::from_utf8(sql).ok()?;
    let text = text.trim().trim_end_matches(';').trim();
    if text.contains(';') {
        return None;
    }
    let words: Vec<&str> = text.split_ascii_whitespace().collect();
    let lower: Vec<String> = words.iter().map(|w| w.to_ascii_lowercase()).collect();
    match lower
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["deallocate", "all"] | ["deallocate", "prepare", "all"] => None,
        ["deallocate", name] | ["deallocate", "prepare", name] => {
            let original = words[words.len() - 1];
            // A quoted name keeps its case; an unquoted one folds to lower case.
            let name = match original.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
                Some(q) => q.replace("\"\"", "\""),
                None => name.to_string(),
            };
            Some(name.into_bytes())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_depend_on_text_and_types_only() {
        let (n1, a) = StmtDef::from_parse_body(b"s1\0select $1\0\0\x01\0\0\0\x17").unwrap();
        let (n2, b) = StmtDef::from_parse_body(b"other\0select $1\0\0\x01\0\0\0\x17").unwrap();
        let (_, c) = StmtDef::from_parse_body(b"s1\0select $1\0\0\x01\0\0\0\x19").unwrap();
        assert_eq!(&*n1, b"s1");
        assert_eq!(&*n2, b"other");
        assert_eq!(a.server_name, b.server_name);
        assert_ne!(a.server_name, c.server_name);
        assert_eq!(a.server_name.len(), 35);
        assert!(a.parse.starts_with(b"P"));
        assert!(a.parse[5..].starts_with(a.server_name.as_bytes()));
        assert!(StmtDef::from_parse_body(b"no-terminator").is_none());
    }

    #[test]
    fn server_statements_evict_least_recently_used() {
        let mut s = ServerStatements::default();
        let (a, b, c): (ServerName, ServerName, ServerName) = ("a".into(), "b".into(), "c".into());
        assert_eq!(s.insert(a.clone(), 2), None);
        assert_eq!(s.insert(b.clone(), 2), None);
        assert!(s.touch(&a));
        assert_eq!(s.insert(c.clone(), 2), Some(b.clone()));
        assert!(!s.touch(&b));
        assert_eq!(s.len(), 2);
        let set: ServerName = format!("{TENANT_SET_PREFIX}0_acme").into();
        s.insert(set.clone(), 3);
        s.forget_tenant_sets();
        assert!(!s.touch(&set) && s.touch(&a) && s.touch(&c));
    }

    #[test]
    fn recognises_deallocate() {
        assert_eq!(deallocated_name(b"DEALLOCATE S_1"), Some(b"s_1".to_vec()));
        assert_eq!(
            deallocated_name(b" deallocate prepare \"S_1\" ;"),
            Some(b"S_1".to_vec())
        );
        assert_eq!(deallocated_name(b"DEALLOCATE ALL"), None);
        assert_eq!(deallocated_name(b"deallocate prepare all"), None);
        assert_eq!(deallocated_name(b"DISCARD ALL"), None);
        assert_eq!(deallocated_name(b"select 1; deallocate s"), None);
        assert_eq!(deallocated_name(b"\x0b\tdeallocate s"), Some(b"s".to_vec()));
        assert_eq!(deallocated_name(b"deallocatex s"), None);
        assert_eq!(deallocated_name(b"dealloc"), None);
        assert_eq!(deallocated_name(b""), None);
    }
}
