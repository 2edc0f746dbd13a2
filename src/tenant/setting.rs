//! The server setting that carries the tenant, and the statement that sets it.

use bytes::{Bytes, BytesMut};
use thiserror::Error;

use crate::protocol::frontend;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("setting name \"{0}\" must be lowercase identifiers joined by dots, like \"app.current_tenant\" (PostgreSQL custom settings need a prefix)")]
pub struct BadSettingName(String);

/// A custom setting name like `app.current_tenant`: two or more lowercase identifiers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingName(String);

impl SettingName {
    pub fn parse(name: &str) -> Result<Self, BadSettingName> {
        let parts: Vec<&str> = name.split('.').collect();
        let ident = |p: &str| {
            let mut chars = p.chars();
            matches!(chars.next(), Some('a'..='z' | '_'))
                && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_' | '$'))
                && p.len() <= 63
        };
        if parts.len() >= 2 && parts.iter().all(|p| ident(p)) {
            Ok(SettingName(name.to_owned()))
        } else {
            Err(BadSettingName(name.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The last identifier (`current_tenant`), which appears in every spelling of the name.
    pub fn last_part(&self) -> &str {
        self.0.rsplit('.').next().unwrap_or(&self.0)
    }

    /// A complete Query message: `SET <name> = E'<value>'`. The name was validated as
    /// plain lowercase identifiers, so it needs no quoting.
    pub fn set_message(&self, value: &str) -> Bytes {
        let sql = format!("SET {} = {}", self.0, literal(value));
        let mut buf = BytesMut::with_capacity(sql.len() + 6);
        frontend::query(&mut buf, &sql);
        buf.freeze()
    }
}

/// `value` as an `E''` string literal: it means the same whatever
/// `standard_conforming_strings` is, so escaping `\` and `'` is all it needs.
pub fn literal(value: &str) -> String {
    let mut sql = String::with_capacity(value.len() + 4);
    sql.push_str("E'");
    for c in value.chars() {
        match c {
            '\'' => sql.push_str("''"),
            '\\' => sql.push_str("\\\\"),
            c => sql.push(c),
        }
    }
    sql.push('\'');
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names() {
        assert!(SettingName::parse("app.current_tenant").is_ok());
        assert!(SettingName::parse("my_app.tenant.id").is_ok());
        for bad in [
            "current_tenant",
            "App.tenant",
            "app.",
            ".x",
            "app.x y",
            "app.x;drop",
            "",
        ] {
            assert!(SettingName::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            SettingName::parse("app.current_tenant")
                .unwrap()
                .last_part(),
            "current_tenant"
        );
    }

    #[test]
    fn set_message_quotes_value() {
        let s = SettingName::parse("app.current_tenant").unwrap();
        let msg = s.set_message("a'b\\c");
        assert_eq!(msg[0], b'Q');
        assert_eq!(&msg[5..], b"SET app.current_tenant = E'a''b\\\\c'\0");
        assert_eq!(&s.set_message("")[5..], b"SET app.current_tenant = E''\0");
    }
}
