//! The guard's prefilter: whether (and up to where) a text holds a word some rule
//! needs, found without lexing, eight bytes at a time.

use super::{PG_SETTINGS, SET_CONFIG};
use crate::sql::words::{starts_ci, word_ends, word_starts};

/// The prefilter: where the last rule word in `sql` ends, or None when there is
/// none and so no rule can apply, whatever the tokens are. Every rule needs one of
/// these to start a word in the raw bytes: `set` (alone or as `set_config`),
/// `reset`, `do`, `create` (bodies), `pg_settings`, `u&` (an escaped identifier
/// can spell anything). Word starts are [`crate::sql::words`]': digits and `$`
/// count as word breaks there, which can only find more words than the lexer does.
pub(super) fn rule_words_end(sql: &[u8]) -> Option<usize> {
    let mut last = None;
    word_starts(sql, &FIRST, |i| {
        if let Some(len) = rule_word_at(sql, i) {
            last = Some(i + len);
        }
    });
    last
}

/// Whether any rule word is in `sql`.
#[cfg(test)]
pub(super) fn may_matter(sql: &[u8]) -> bool {
    rule_words_end(sql).is_some()
}

/// Bytes a rule word may start with.
static FIRST: [bool; 256] = {
    let mut t = [false; 256];
    let first = b"sSrRdDcCpPuU";
    let mut i = 0;
    while i < first.len() {
        t[first[i] as usize] = true;
        i += 1;
    }
    t
};

/// The length of the rule word starting at `sql[i]`, if one does.
#[inline(always)]
pub(super) fn rule_word_at(sql: &[u8], i: usize) -> Option<usize> {
    let len = match sql[i] | 0x20 {
        b's' if starts_ci(sql, i, SET_CONFIG) => SET_CONFIG.len(),
        b's' if starts_ci(sql, i, b"set") && word_ends(sql, i + 3) => 3,
        b'r' if starts_ci(sql, i, b"reset") && word_ends(sql, i + 5) => 5,
        b'd' if starts_ci(sql, i, b"do") && word_ends(sql, i + 2) => 2,
        b'c' if starts_ci(sql, i, b"create") && word_ends(sql, i + 6) => 6,
        b'p' if starts_ci(sql, i, PG_SETTINGS) => PG_SETTINGS.len(),
        b'u' if sql.get(i + 1) == Some(&b'&') => 2,
        _ => return None,
    };
    Some(len)
}
