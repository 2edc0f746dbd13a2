//! Spots statements that may change or reset the tenant setting for the session,
//! so the pooler stops trusting its belief about that server connection.
//!
//! This is deliberately conservative and cheap: one case-insensitive pass over the
//! text; a false positive costs one extra SET on the next transaction, a false
//! negative could run a client under a stale tenant. It cannot see SQL built
//! dynamically inside functions; the tenant guard and the signed context close that.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};

use super::SettingName;

/// Keywords that reset session state wholesale, whatever setting they name, and
/// `execute`, which runs a statement prepared (and inspected) in an earlier
/// transaction, or dynamic SQL in a DO block.
const RESETTERS: [&str; 5] = ["set_config", "reset", "discard", "authorization", "execute"];
const SET: usize = RESETTERS.len();
const NAME: usize = SET + 1;

#[derive(Debug, Clone)]
pub struct SettingScanner {
    automaton: AhoCorasick,
}

impl SettingScanner {
    pub fn new(setting: &SettingName) -> Self {
        let mut patterns: Vec<&str> = RESETTERS.to_vec();
        patterns.push("set");
        patterns.push(setting.last_part());
        // A Unicode-escaped identifier (U&"...") can spell the name without its letters.
        patterns.push("u&\"");
        // A DFA without prefilter, as for the tracked settings (relay::params).
        let automaton = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::LeftmostFirst)
            .kind(Some(AhoCorasickKind::DFA))
            .prefilter(false)
            .build(patterns)
            .expect("static patterns build");
        SettingScanner { automaton }
    }

    /// True for `RESET ...`, `DISCARD ...`, `set_config(...)`, `... SESSION AUTHORIZATION`,
    /// `EXECUTE ...`, and for a `SET` that appears together with the setting's name.
    pub fn may_change_setting(&self, sql: &[u8]) -> bool {
        let mut saw_set = false;
        let mut saw_name = false;
        for m in self.automaton.find_iter(sql) {
            let id = m.pattern().as_usize();
            if id >= NAME {
                saw_name = true;
            } else if is_word(sql, m.start(), m.end()) {
                if id == SET {
                    saw_set = true;
                } else {
                    return true;
                }
            }
            if saw_set && saw_name {
                return true;
            }
        }
        false
    }
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

/// Whether `sql[start..end]` stands as a whole word.
fn is_word(sql: &[u8], start: usize, end: usize) -> bool {
    let before = start == 0 || !is_ident_byte(sql[start - 1]);
    let after = end == sql.len() || !is_ident_byte(sql[end]);
    before && after
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
            "",
        ] {
            assert!(!s.may_change_setting(sql.as_bytes()), "{sql}");
        }
    }
}
