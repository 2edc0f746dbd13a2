//! Finding words where words start in SQL text, eight bytes at a time, without
//! lexing: the first look the tenant guard, the tenant setting scanner and the
//! tracked-settings watch take at every statement a client sends.
//!
//! A word starts at a byte in `[A-Za-z_\x80-\xff]` that does not follow one.
//! Digits and `$` count as breaks here, so this finds every place where
//! PostgreSQL's lexer could start an identifier or keyword (and some more): a
//! name that follows a letter, `_` or a byte >= 0x80 is part of a longer
//! identifier (or string), never the name itself.

/// Bytes that continue a word for [`word_starts`]: `[A-Za-z_\x80-\xff]`,
/// PostgreSQL's `ident_start`.
pub static LETTER: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphabetic() || b == b'_' || b >= 0x80;
        i += 1;
    }
    t
};

/// `[A-Za-z_0-9$\x80-\xff]`: bytes that continue an identifier (PostgreSQL's
/// `ident_cont`), so a whole word ends before any other byte.
pub static IDENT_CONT: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = LETTER[i] || b.is_ascii_digit() || b == b'$';
        i += 1;
    }
    t
};

/// Calls `at(i)` for every `i` where a word starts in `sql` with a byte for
/// which `first` is true, in order.
#[inline(always)]
pub fn word_starts(sql: &[u8], first: &[bool; 256], mut at: impl FnMut(usize)) {
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
            if first[sql[i] as usize] {
                at(i);
            }
            starts &= starts - 1;
        }
        prev_letter = letters >> 56;
        base += 8;
    }
    let mut prev = prev_letter != 0;
    for (k, &b) in chunks.remainder().iter().enumerate() {
        let letter = LETTER[b as usize];
        if letter && !prev && first[b as usize] {
            at(base + k);
        }
        prev = letter;
    }
}

/// 0x80 in each byte of `x` that is in [`LETTER`], 0 in the others (SWAR).
#[inline]
pub fn letter_mask(x: u64) -> u64 {
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

/// Whether `sql[i..]` starts with `word`, ignoring ASCII case.
#[inline]
pub fn starts_ci(sql: &[u8], i: usize, word: &[u8]) -> bool {
    sql.get(i..i + word.len())
        .is_some_and(|w| w.eq_ignore_ascii_case(word))
}

/// Whether no identifier byte (`[A-Za-z_0-9$\x80-\xff]`) follows at `i`.
#[inline]
pub fn word_ends(sql: &[u8], i: usize) -> bool {
    sql.get(i).is_none_or(|&b| !IDENT_CONT[b as usize])
}

/// How a [`WordSet`] word must stand in the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    /// At a word start, with no identifier byte after it (`reset`, not `resets`).
    Whole,
    /// At a word start, whatever follows (`set_config` in `set_config(`).
    Prefix,
}

/// Up to 64 words to look for at word starts, ASCII case-insensitively.
#[derive(Debug, Clone)]
pub struct WordSet {
    words: Vec<(Box<[u8]>, Fit)>,
    /// For each byte, the words (bits) that start with it in either case.
    by_first: [u64; 256],
    first: [bool; 256],
}

impl WordSet {
    /// Panics on more than 64 words or on a word that cannot start a word (empty,
    /// or its first byte outside [`LETTER`]): both are the caller's mistake, and
    /// the configuration's validation keeps user-given names within these bounds.
    pub fn new(words: &[(&str, Fit)]) -> Self {
        assert!(words.len() <= 64, "at most 64 words");
        let mut by_first = [0u64; 256];
        for (k, (word, _)) in words.iter().enumerate() {
            let b = *word.as_bytes().first().expect("a word is not empty");
            assert!(LETTER[b as usize], "\"{word}\" cannot start a word");
            by_first[b.to_ascii_lowercase() as usize] |= 1 << k;
            by_first[b.to_ascii_uppercase() as usize] |= 1 << k;
        }
        WordSet {
            words: words
                .iter()
                .map(|(w, fit)| (w.as_bytes().into(), *fit))
                .collect(),
            first: by_first.map(|m| m != 0),
            by_first,
        }
    }

    /// The words found in `sql`: bit `k` for the `k`th word given to [`Self::new`].
    #[inline]
    pub fn find(&self, sql: &[u8]) -> u64 {
        let mut found = 0;
        word_starts(sql, &self.first, |i| {
            let mut candidates = self.by_first[sql[i] as usize] & !found;
            while candidates != 0 {
                let k = candidates.trailing_zeros() as usize;
                let (word, fit) = &self.words[k];
                if starts_ci(sql, i, word)
                    && (*fit == Fit::Prefix || word_ends(sql, i + word.len()))
                {
                    found |= 1 << k;
                }
                candidates &= candidates - 1;
            }
        });
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`WordSet::find`], a byte at a time: the reference for the SWAR one.
    fn find_scalar(words: &[(&str, Fit)], sql: &[u8]) -> u64 {
        let mut found = 0;
        let mut prev = false;
        for (i, &b) in sql.iter().enumerate() {
            let letter = b.is_ascii_alphabetic() || b == b'_' || b >= 0x80;
            if letter && !prev {
                for (k, (word, fit)) in words.iter().enumerate() {
                    let word = word.as_bytes();
                    let Some(here) = sql.get(i..i + word.len()) else {
                        continue;
                    };
                    let ends = match sql.get(i + word.len()) {
                        None => true,
                        Some(&c) => {
                            !(c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80)
                        }
                    };
                    if here.eq_ignore_ascii_case(word) && (*fit == Fit::Prefix || ends) {
                        found |= 1 << k;
                    }
                }
            }
            prev = letter;
        }
        found
    }

    const WORDS: [(&str, Fit); 5] = [
        ("set", Fit::Whole),
        ("set_config", Fit::Prefix),
        ("reset", Fit::Whole),
        ("u&\"", Fit::Prefix),
        ("current_tenant", Fit::Prefix),
    ];

    #[test]
    fn letter_mask_marks_each_letter_byte() {
        for b in 0..=255u8 {
            let mut x = [b'a'; 8];
            x[3] = b;
            let expected = if LETTER[b as usize] { 0x80 } else { 0 };
            assert_eq!(
                letter_mask(u64::from_le_bytes(x)) >> 24 & 0xFF,
                expected,
                "{b:#x}"
            );
        }
    }

    #[test]
    fn finds_words_at_word_starts_only() {
        let set = WordSet::new(&WORDS);
        for (sql, expected) in [
            ("set x = 1", 0b00001),
            ("SET app.CURRENT_TENANT = 'x'", 0b10001),
            ("select settings, resets, upset from t", 0),
            ("select Set_Config('a', 'b', false)", 0b00010),
            ("x;reset/**/all", 0b00100),
            ("set app.U&\"current\" = 1", 0b01001),
            ("select 1reset, $reset, xset, é_set", 0b00100),
            ("select xcurrent_tenant, current_tenants", 0b10000),
            ("", 0),
            ("sE", 0),
            ("12345678set", 0b00001),
            ("abcdefg_set", 0),
        ] {
            assert_eq!(set.find(sql.as_bytes()), expected, "{sql}");
            assert_eq!(find_scalar(&WORDS, sql.as_bytes()), expected, "{sql}");
        }
    }

    #[test]
    fn agrees_with_the_scalar_reference() {
        let set = WordSet::new(&WORDS);
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            x.wrapping_mul(0x2545_F491_4F6C_DD1D)
        };
        let alphabet = b"sSeEtTrR_cCuU&\"onfig $1;.'\x80\xff";
        for _ in 0..20_000 {
            let n = (next() % 40) as usize;
            let text: Vec<u8> = (0..n)
                .map(|_| match next() % 4 {
                    0 => next() as u8,
                    _ => alphabet[(next() % alphabet.len() as u64) as usize],
                })
                .collect();
            assert_eq!(set.find(&text), find_scalar(&WORDS, &text), "{text:?}");
        }
    }
}
