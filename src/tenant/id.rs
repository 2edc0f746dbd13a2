//! Tenant ids. They are checked against a strict pattern before they ever reach SQL
//! (and are still quoted where they do).

use std::sync::Arc;

use regex::Regex;

use super::TenantError;

/// Longest tenant id accepted whatever the pattern says, so a lax pattern cannot
/// make us build huge statements.
pub const MAX_TENANT_LEN: usize = 256;

/// A validated tenant id; cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TenantId(Arc<str>);

impl TenantId {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn as_arc(&self) -> &Arc<str> {
        &self.0
    }
}

impl std::fmt::Display for TenantId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The configured pattern, anchored so it must match the whole id.
#[derive(Debug, Clone)]
pub struct TenantPattern {
    source: String,
    regex: Regex,
}

impl TenantPattern {
    pub fn new(pattern: &str) -> Result<Self, regex::Error> {
        // Anchor explicitly: a pattern written without ^...$ must not accept "acme'; drop".
        let regex = Regex::new(&format!("^(?:{pattern})$"))?;
        Ok(TenantPattern {
            source: pattern.to_owned(),
            regex,
        })
    }

    pub fn check(&self, candidate: &str) -> Result<TenantId, TenantError> {
        let ok = !candidate.is_empty()
            && candidate.len() <= MAX_TENANT_LEN
            && !candidate.contains('\0')
            && self.regex.is_match(candidate);
        if ok {
            Ok(TenantId(candidate.into()))
        } else {
            Err(TenantError::Invalid {
                shown: shown(candidate),
                pattern: self.source.clone(),
            })
        }
    }
}

/// A bounded, printable rendering of a rejected id for the error message.
fn shown(candidate: &str) -> String {
    let mut s: String = candidate
        .chars()
        .take(64)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if candidate.chars().count() > 64 {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_pattern() {
        let p = TenantPattern::new(crate::config::DEFAULT_TENANT_PATTERN).unwrap();
        assert!(p.check("acme").is_ok());
        assert!(p.check("Acme_Corp-2").is_ok());
        assert!(p.check(&"a".repeat(63)).is_ok());
        assert!(p.check(&"a".repeat(64)).is_err());
        assert!(p.check("").is_err());
        assert!(p.check("a b").is_err());
        assert!(p.check("a'b").is_err());
        assert!(p.check("ac\nme").is_err());
        assert!(p.check("é").is_err());
    }

    #[test]
    fn unanchored_pattern_is_anchored() {
        let p = TenantPattern::new("[a-z]+").unwrap();
        assert!(p.check("acme").is_ok());
        assert!(p.check("acme'; drop table x; --").is_err());
        let lax = TenantPattern::new(".*").unwrap();
        assert!(lax.check(&"x".repeat(MAX_TENANT_LEN + 1)).is_err());
        assert!(lax.check("a\0b").is_err());
    }
}
