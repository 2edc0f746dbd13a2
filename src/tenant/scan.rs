//! Spots statements that may change or reset the tenant setting for the session,
//! so the pooler stops trusting its belief about that server connection.
//!
//! This is deliberately conservative and cheap: one pass over the text that
//! looks only where words start ([`crate::sql::words`]); a false positive costs
//! one extra SET on the next transaction, a false negative could run a client
//! under a stale tenant. It cannot see SQL built dynamically inside functions; the
//! tenant guard and the signed context close that.

use crate::sql::words::{Fit, WordSet};

use super::SettingName;

/// Words that reset session state wholesale, whatever setting they name, and
/// `execute`, which runs a statement prepared (and inspected) in an earlier
/// transaction, or dynamic SQL in a DO block. Any of them flags the text.
const RESETTERS: [(&str, Fit); 5] = [
    ("set_config", Fit::Prefix),
    ("reset", Fit::Whole),
    ("discard", Fit::Whole),
    ("authorization", Fit::Whole),
    ("execute", Fit::Whole),
];
const RESETTER_BITS: u64 = (1 << RESETTERS.len()) - 1;
const SET_BIT: u64 = 1 << RESETTERS.len();
/// The setting's last part, or a Unicode-escaped identifier (`U&"..."`), which can
/// spell the name without its letters.
const NAME_BITS: u64 = 0b11 << (RESETTERS.len() + 1);

#[derive(Debug, Clone)]
pub struct SettingScanner {
    words: WordSet,
}

impl SettingScanner {
    pub fn new(setting: &SettingName) -> Self {
        let mut words = RESETTERS.to_vec();
        words.push(("set", Fit::Whole));
        // Every spelling of the name holds its last part where an identifier (or a
        // quoted one) starts, e.g. after `.` or `"`; a longer identifier is another name.
        words.push((setting.last_part(), Fit::Prefix));
        words.push(("u&\"", Fit::Prefix));
        SettingScanner {
            words: WordSet::new(&words),
        }
    }

    /// True for `RESET ...`, `DISCARD ...`, `set_config(...)`, `... SESSION AUTHORIZATION`,
    /// `EXECUTE ...`, and for a `SET` that appears together with the setting's name.
    #[inline]
    pub fn may_change_setting(&self, sql: &[u8]) -> bool {
        let found = self.words.find(sql);
        found & RESETTER_BITS != 0 || (found & SET_BIT != 0 && found & NAME_BITS != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scanner() -> SettingScanner {
        SettingScanner::new(&SettingName::parse("app.current_tenant").unwrap())
    }

    #[test]
    fn flags_writes_and_resets() {
        let s = scanner();
        for sql in [
            "RESET ALL",
            "reset app.current_tenant",
            "DISCARD ALL",
            "discard all",
            "SET app.current_tenant = 'x'",
            "set SESSION \"app\".\"current_tenant\" to 'x'",
            "select set_config('app.current_tenant', 'x', false)",
            "SELECT pg_catalog.SET_CONFIG('a.b', 'x', false)",
            "SET SESSION AUTHORIZATION bob",
            "begin; set app.CURRENT_TENANT = 'x'; commit",
            "EXECUTE poison",
            "execute poison('x')",
            "SET app.U&\"current\\005ftenant\" = 'x'",
            "do $$ begin execute 'se' || 't app.current_tenant = x'; end $$",
            "set/**/app.\"current_tenant\"=1",
            "SET \"app.current_tenant\" TO DEFAULT",
            "set local app.current_tenant=$1",
        ] {
            assert!(s.may_change_setting(sql.as_bytes()), "{sql}");
        }
    }

    #[test]
    fn ignores_ordinary_statements() {
        let s = scanner();
        for sql in [
            "select 1",
            "SELECT current_setting('app.current_tenant')",
            "select * from items where tenant_id = current_setting('app.current_tenant', true)",
            "SET search_path = public",
            "update t set settings = 1",
            "select offset_x, resets_count from discarded",
            "select executed_at from jobs",
            // The name inside a longer identifier is another name.
            "update t set n = 1 where my_current_tenant = 2",
            "",
        ] {
            assert!(!s.may_change_setting(sql.as_bytes()), "{sql}");
        }
    }
}
