//! Session settings kept per client in transaction and statement modes.
//!
//! A client's `SET TimeZone`, its startup `application_name` or `options=-c
//! search_path=...` are session state of whichever server connection it had at
//! the time. Each client records the values it wants, each server connection the
//! values it holds, and before a client's transaction the pooler puts one query
//! in front of it (pipelined, its answer swallowed, like the tenant SET) that
//! brings the server to the client's values.
//!
//! How the pooler learns a client's values:
//! - settings PostgreSQL reports (`ParameterStatus`, [`REPORTED`]): from the
//!   startup packet, then from the server's reports while the client holds it;
//! - other tracked settings (`track_extra_parameters`, e.g. `search_path`): from
//!   the startup packet, then, after a transaction whose SQL names one of them
//!   (or says RESET or DISCARD), by reading them back from the server.

use bytes::{Bytes, BytesMut};

use crate::protocol::frontend;
use crate::protocol::startup::option_settings;
use crate::sql::words::{Fit, WordSet};

/// Settings the server reports whenever they change (GUC_REPORT in PostgreSQL 15)
/// and that clients commonly set.
pub const REPORTED: [&str; 6] = [
    "application_name",
    "client_encoding",
    "DateStyle",
    "IntervalStyle",
    "TimeZone",
    "standard_conforming_strings",
];

/// Which settings are kept. Built from the configuration, shared by sessions.
#[derive(Debug)]
pub struct Tracked {
    /// [`REPORTED`], then the extra ones.
    names: Vec<Box<str>>,
    /// Finds SQL that may change an extra setting: their names, RESET, DISCARD.
    watch: Option<WordSet>,
}

impl Tracked {
    pub fn new(extras: &[String]) -> Self {
        let mut names: Vec<Box<str>> = REPORTED.iter().map(|&n| n.into()).collect();
        for extra in extras {
            if !names.iter().any(|n| n.eq_ignore_ascii_case(extra)) {
                names.push(extra.as_str().into());
            }
        }
        // A name counts where a word starts (after a space, `.`, `'` or `"`), also
        // as the start of a longer word; RESET and DISCARD as whole words.
        let words: Vec<(&str, Fit)> = names[REPORTED.len()..]
            .iter()
            .map(|n| (&**n, Fit::Prefix))
            .chain([("reset", Fit::Whole), ("discard", Fit::Whole)])
            .collect();
        let watch = (names.len() > REPORTED.len()).then(|| WordSet::new(&words));
        Tracked { names, watch }
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n.eq_ignore_ascii_case(name))
    }

    /// The tracked settings the server does not report, by index.
    pub fn extras(&self) -> impl Iterator<Item = (usize, &str)> {
        self.names
            .iter()
            .enumerate()
            .skip(REPORTED.len())
            .map(|(i, n)| (i, &**n))
    }

    /// Whether `sql` may change a setting the server does not report: a false
    /// positive costs one read-back after the transaction.
    #[inline]
    pub fn may_change_extra(&self, sql: &[u8]) -> bool {
        self.watch.as_ref().is_some_and(|w| w.find(sql) != 0)
    }
}

/// The tracked settings a server connection holds, as far as the pooler knows:
/// absent means the value it had at login.
#[derive(Debug, Default)]
pub struct ServerParams {
    values: Vec<(Box<str>, Box<str>)>,
}

impl ServerParams {
    fn get(&self, name: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(n, _)| **n == *name)
            .map(|(_, v)| &**v)
    }

    fn set(&mut self, name: &str, value: Option<&str>) {
        let at = self.values.iter().position(|(n, _)| **n == *name);
        match (at, value) {
            (Some(i), Some(v)) => self.values[i].1 = v.into(),
            (Some(i), None) => {
                self.values.swap_remove(i);
            }
            (None, Some(v)) => self.values.push((name.into(), v.into())),
            (None, None) => {}
        }
    }

    /// Back to login values (after DISCARD ALL).
    pub fn clear(&mut self) {
        self.values.clear();
    }
}

/// The values one client wants, by [`Tracked`] index; a setting not listed is
/// the server's default. Only the settings it named take memory (most clients
/// name one or two, and this lives as long as the client).
#[derive(Debug)]
pub struct ClientParams {
    tracked: std::sync::Arc<Tracked>,
    /// Boxed, not a Vec: it rarely grows after login, and 8 bytes less per client.
    values: Box<[(usize, Box<str>)]>,
}

impl ClientParams {
    /// The tracked settings among the startup parameters, including `options`'
    /// `-c name=value` and `--name=value`.
    pub fn from_startup(tracked: std::sync::Arc<Tracked>, params: &[(String, String)]) -> Self {
        let mut client = ClientParams {
            tracked,
            values: Box::default(),
        };
        for (name, value) in params {
            if name == "options" {
                for (name, value) in option_assignments(value.as_bytes()) {
                    if let Some(i) = client.tracked.index(&name) {
                        client.set(i, value.into());
                    }
                }
            } else if let Some(i) = client.tracked.index(name) {
                client.set(i, value.as_str().into());
            }
        }
        client
    }

    /// Its value of the setting at `index`, if it named one.
    fn get(&self, index: usize) -> Option<&str> {
        self.values
            .iter()
            .find(|(i, _)| *i == index)
            .map(|(_, v)| &**v)
    }

    fn set(&mut self, index: usize, value: Box<str>) {
        match self.values.iter_mut().find(|(i, _)| *i == index) {
            Some((_, v)) => *v = value,
            None => {
                let mut values = std::mem::take(&mut self.values).into_vec();
                values.push((index, value));
                self.values = values.into_boxed_slice();
            }
        }
    }

    pub fn tracked(&self) -> &Tracked {
        &self.tracked
    }

    pub fn tracked_arc(&self) -> &std::sync::Arc<Tracked> {
        &self.tracked
    }

    /// What the client asked for, if it named `setting`.
    pub fn value_of(&self, setting: &str) -> Option<&str> {
        // Through the few names the client gave, not every tracked one: the
        // greeting asks this of each setting the server reports.
        self.values
            .iter()
            .find(|(i, _)| self.tracked.names[*i].eq_ignore_ascii_case(setting))
            .map(|(_, v)| &**v)
    }

    /// A value the server reported or was read back while this client held it:
    /// the client's value now, and the server's.
    pub fn learn(&mut self, server: &mut ServerParams, setting: &str, value: &str) {
        if let Some(i) = self.tracked.index(setting) {
            self.set(i, value.into());
            server.set(&self.tracked.names[i], Some(value));
        }
    }

    /// The simple Query that brings `server` to this client's values, or `None`
    /// when it holds them already. `server` is updated as if it succeeded (if it
    /// fails, the connection is closed).
    pub fn restore(&self, server: &mut ServerParams) -> Option<Bytes> {
        // The common case, checked without building anything: the server holds
        // exactly the client's values (each side lists a name at most once).
        if server.values.len() == self.values.len()
            && self
                .values
                .iter()
                .all(|(i, v)| server.get(&self.tracked.names[*i]) == Some(&**v))
        {
            return None;
        }
        let mut sets = String::new();
        let mut resets = String::new();
        for (i, name) in self.tracked.names.iter().enumerate() {
            let want = self.get(i);
            if server.get(name) == want {
                continue;
            }
            match want {
                Some(value) => {
                    sets.push_str(if sets.is_empty() { "SELECT " } else { ", " });
                    sets.push_str("pg_catalog.set_config(");
                    push_literal(&mut sets, name);
                    sets.push_str(", ");
                    push_literal(&mut sets, value);
                    sets.push_str(", false)");
                }
                None => {
                    resets.push_str("; RESET \"");
                    resets.push_str(name);
                    resets.push('"');
                }
            }
            server.set(name, want);
        }
        if sets.is_empty() && resets.is_empty() {
            return None;
        }
        let sql = if sets.is_empty() {
            &resets[2..]
        } else {
            sets.push_str(&resets);
            &sets
        };
        let mut out = BytesMut::with_capacity(sql.len() + 6);
        frontend::query(&mut out, sql);
        Some(out.freeze())
    }
}

/// An escape-string literal, right whatever `standard_conforming_strings` holds.
fn push_literal(out: &mut String, value: &str) {
    out.push_str("E'");
    for c in value.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('\'');
}

/// `name=value` pairs the `options` startup parameter sets with `-c` or `--`;
/// `-` in names read as `_`, as PostgreSQL does.
fn option_assignments(options: &[u8]) -> Vec<(String, String)> {
    option_settings(options)
        .into_iter()
        .filter(|(switch, _)| *switch)
        .filter_map(|(_, setting)| {
            let text = String::from_utf8_lossy(&setting).into_owned();
            let (name, value) = text.split_once('=')?;
            Some((name.replace('-', "_"), value.to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn tracked() -> Arc<Tracked> {
        Arc::new(Tracked::new(&["search_path".to_owned()]))
    }

    fn query_text(q: &Bytes) -> &str {
        std::str::from_utf8(&q[5..q.len() - 1]).unwrap()
    }

    #[test]
    fn startup_values_and_options_are_kept() {
        let c = ClientParams::from_startup(
            tracked(),
            &[
                ("user".into(), "app".into()),
                ("timezone".into(), "UTC".into()),
                (
                    "options".into(),
                    r"-c search_path=a,\ b --DateStyle=ISO -cwork_mem=1MB".into(),
                ),
            ],
        );
        assert_eq!(c.value_of("TimeZone"), Some("UTC"));
        assert_eq!(c.value_of("search_path"), Some("a, b"));
        assert_eq!(c.value_of("datestyle"), Some("ISO"));
        assert_eq!(c.value_of("work_mem"), None);
        assert_eq!(c.value_of("application_name"), None);
    }

    #[test]
    fn restore_sets_what_differs_and_resets_what_the_client_left_default() {
        let t = tracked();
        let a = ClientParams::from_startup(
            Arc::clone(&t),
            &[("search_path".into(), "it's\\here".into())],
        );
        let b = ClientParams::from_startup(Arc::clone(&t), &[]);
        let mut server = ServerParams::default();
        assert!(b.restore(&mut server).is_none());
        let q = a.restore(&mut server).unwrap();
        assert_eq!(
            query_text(&q),
            r"SELECT pg_catalog.set_config(E'search_path', E'it''s\\here', false)"
        );
        assert!(a.restore(&mut server).is_none(), "already there");
        // As many values as the server holds, but other ones: not "already there".
        let c = ClientParams::from_startup(Arc::clone(&t), &[("TimeZone".into(), "UTC".into())]);
        let q = c.restore(&mut server).unwrap();
        assert_eq!(
            query_text(&q),
            r#"SELECT pg_catalog.set_config(E'TimeZone', E'UTC', false); RESET "search_path""#
        );
        let q = a.restore(&mut server).unwrap();
        assert_eq!(
            query_text(&q),
            r#"SELECT pg_catalog.set_config(E'search_path', E'it''s\\here', false); RESET "TimeZone""#
        );
        let q = b.restore(&mut server).unwrap();
        assert_eq!(query_text(&q), r#"RESET "search_path""#);
        assert!(b.restore(&mut server).is_none());
    }

    #[test]
    fn learned_values_follow_the_server() {
        let t = tracked();
        let mut a = ClientParams::from_startup(Arc::clone(&t), &[]);
        let mut server = ServerParams::default();
        a.learn(&mut server, "TimeZone", "Asia/Tokyo");
        a.learn(&mut server, "is_superuser", "on");
        assert_eq!(a.value_of("timezone"), Some("Asia/Tokyo"));
        assert!(a.restore(&mut server).is_none());
        let mut other = ServerParams::default();
        let q = a.restore(&mut other).unwrap();
        assert!(query_text(&q).contains("E'TimeZone', E'Asia/Tokyo'"));
    }

    #[test]
    fn the_watch_sees_extras_reset_and_discard_in_any_case() {
        let t = tracked();
        assert!(t.may_change_extra(b"SET SEARCH_PATH TO x"));
        assert!(t.may_change_extra(b"reset all"));
        assert!(t.may_change_extra(b"DISCARD ALL"));
        assert!(t.may_change_extra(b"select set_config('search_path', 'x', false)"));
        assert!(t.may_change_extra(b"set \"search_path\"=x"));
        assert!(!t.may_change_extra(b"select * from items where id = $1"));
        // Only where words start: these name other things.
        assert!(!t.may_change_extra(b"select my_search_path, resets, discarded from t"));
        assert!(!Tracked::new(&[]).may_change_extra(b"RESET ALL"));
    }
}
