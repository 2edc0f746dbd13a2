//! The guard's prefilter: whether (and up to where) a text holds a word some rule
//! needs, found without lexing, eight bytes at a time.

use super::lex::IDENT_CONT;
use super::{PG_SETTINGS, SET_CONFIG};

/// Whether `sql[i..]` starts with `word`, ignoring ASCII case.
#[inline]
fn starts_ci(sql: &[u8], i: usize, word: &[u8]) -> bool {
    sql.get(i..i + word.len())
        .is_some_and(|w| w.eq_ignore_ascii_case(word))
}

/// Whether no identifier character follows at `i`.
#[inline]
fn word_ends(sql: &[u8], i: usize) -> bool {
    sql.get(i).is_none_or(|&b| !IDENT_CONT[b as usize])
}

/// Bytes after which a word starts: not `[A-Za-z_\x80-\xff]`.
static LETTER: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphabetic() || b == b'_' || b >= 0x80;
        i += 1;
    }
    t
};

/// The prefilter: where the last rule word in `sql` ends, or None when there is
/// none and so no rule can apply, whatever the tokens are. Every rule needs one of
/// these to start a word in the raw bytes: `set` (alone or as `set_config`),
/// `reset`, `do`, `create` (bodies), `pg_settings`, `u&` (an escaped identifier
/// can spell anything). A word starts after any byte that is not an ASCII letter,
/// `_` or >= 0x80; digits and `$` count as word breaks here, which can only find
/// more words than the lexer does.
pub(super) fn rule_words_end(sql: &[u8]) -> Option<usize> {
    // Eight bytes at a time: find the word starts, then look at each.
    let mut last = None;
    let mut prev_letter = 0u64;
    let mut chunks = sql.chunks_exact(8);
    let mut base = 0;
    for chunk in &mut chunks {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        let letters = letter_mask(u64::from_le_bytes(bytes));
        let mut starts = letters & !((letters << 8) | prev_letter);
        while starts != 0 {
            let i = base + (starts.trailing_zeros() / 8) as usize;
            if FIRST[sql[i] as usize] {
                if let Some(len) = rule_word_at(sql, i) {
                    last = Some(i + len);
                }
            }
            starts &= starts - 1;
        }
        prev_letter = letters >> 56;
        base += 8;
    }
    let mut prev = prev_letter != 0;
    for (k, &b) in chunks.remainder().iter().enumerate() {
        let letter = LETTER[b as usize];
        if letter && !prev {
            if let Some(len) = rule_word_at(sql, base + k) {
                last = Some(base + k + len);
            }
        }
        prev = letter;
    }
    last
}

/// 0x80 in each byte of `x` that is in `LETTER`, 0 in the others (SWAR).
#[inline]
pub(super) fn letter_mask(x: u64) -> u64 {
    const LOW7: u64 = 0x7F7F_7F7F_7F7F_7F7F;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    const fn each(b: u8) -> u64 {
        u64::from_le_bytes([b; 8])
    }
    let high = x & HIGH;
    // ASCII letters: folded to lowercase, between 'a' and 'z' (no carries: < 0x100).
    let folded = (x | each(0x20)) & LOW7;
    let at_least_a = folded + each(0x80 - b'a');
    let past_z = folded + each(0x80 - b'z' - 1);
    let alpha = at_least_a & !past_z & HIGH & !high;
    // '_': the bytes where x ^ '_' is zero.
    let z = x ^ each(b'_');
    let nonzero = (((z & LOW7) + LOW7) | z) & HIGH;
    high | alpha | (!nonzero & HIGH)
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
