//! A small SQL lexer for the guard: it finds where PostgreSQL's scanner (`scan.l`)
//! would put token boundaries, and decodes what names and string constants spell.
//!
//! It works on bytes (a byte >= 0x80 is an identifier character, as in PostgreSQL),
//! never allocates, and never panics. What it understands: whitespace, `--` and
//! nested `/* */` comments; `'...'` (with `''`), `E'...'` (backslash escapes),
//! `U&'...'` and `U&"..."` (with `\XXXX`, `\+XXXXXX` and an optional `UESCAPE 'c'`),
//! `$tag$...$tag$`, `"..."` (with `""`), identifiers, `$n` parameters, numbers, and
//! single-character punctuation. Operators come out one character at a time, which
//! is enough: PostgreSQL, too, ends an operator where `--` or `/*` begins.
//!
//! Two [`Mode`] switches let the guard re-lex a text under the other readings a
//! server might apply (see `Guard::check` for when).

use memchr::{memchr, memchr2, memmem};

// PostgreSQL's `ident_start` (and `dolq_start`) and `ident_cont`, shared with the
// word scans that run before any lexing.
use crate::sql::words::{IDENT_CONT, LETTER as IDENT_START};

/// Bytes that may start a comment.
static TRIVIA: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = i as u8 == b'-' || i as u8 == b'/';
        i += 1;
    }
    t
};

/// `memchr`, with a plain loop first: most quoted identifiers and strings are short.
#[inline]
fn find_byte(b: u8, hay: &[u8]) -> Option<usize> {
    const SHORT: usize = 32;
    let short = hay.len().min(SHORT);
    let mut i = 0;
    while i < short {
        if hay[i] == b {
            return Some(i);
        }
        i += 1;
    }
    if hay.len() > SHORT {
        memchr(b, &hay[SHORT..]).map(|i| i + SHORT)
    } else {
        None
    }
}

/// PostgreSQL's `space`: `[ \t\n\r\f\v]`.
#[inline]
pub(super) const fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// An unquoted identifier or keyword (folds to lowercase).
    Ident,
    /// `"..."`.
    QuotedIdent,
    /// `U&"..."`.
    UnicodeIdent,
    /// `'...'`, read with standard_conforming_strings on.
    Str,
    /// `E'...'`, or `'...'` when lexing with [`Mode::backslash_plain`].
    EscapeStr,
    /// `U&'...'`.
    UnicodeStr,
    /// `$tag$...$tag$`.
    DollarStr,
    Param,
    Number,
    Semicolon,
    Dot,
    Comma,
    LParen,
    RParen,
    /// Any other single byte: operator characters, stray bytes.
    Other,
}

impl Kind {
    pub(super) fn is_ident(self) -> bool {
        matches!(self, Kind::Ident | Kind::QuotedIdent | Kind::UnicodeIdent)
    }

    pub(super) fn is_string(self) -> bool {
        matches!(
            self,
            Kind::Str | Kind::EscapeStr | Kind::UnicodeStr | Kind::DollarStr
        )
    }
}

/// Escape character of a U& token whose `UESCAPE` clause could not be read.
pub(super) const UNKNOWN_ESCAPE: u8 = 0;

#[derive(Debug, Clone, Copy)]
pub(super) struct Token {
    pub kind: Kind,
    /// The token's text; for quoted forms, what lies between the delimiters.
    pub start: usize,
    pub end: usize,
    /// For U& forms: the escape character, or [`UNKNOWN_ESCAPE`].
    pub escape: u8,
    /// False when the text ended inside the token.
    pub closed: bool,
}

/// How to read the text, beside the default (what PostgreSQL does by default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Mode {
    /// Read `'...'` as if standard_conforming_strings were off: a backslash escapes.
    pub backslash_plain: bool,
    /// A backslash right after a byte >= 0x80 is an ordinary character: in the
    /// client encodings SJIS, BIG5, GBK, UHC and GB18030 it is the second byte of a
    /// character, which the server converts away before lexing.
    pub shielded: bool,
}

/// What a lexing pass saw that may call for another reading.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Notes {
    /// A `'...'` string contained a backslash.
    pub plain_backslash: bool,
    /// A backslash that escapes came right after a byte >= 0x80.
    pub high_backslash: bool,
    /// Where the content of an unterminated string, quoted identifier, dollar
    /// quote or block comment begins.
    pub unterminated: Option<usize>,
}

#[derive(Debug, Clone)]
pub(super) struct Lexer<'a> {
    src: &'a [u8],
    pos: usize,
    mode: Mode,
    pub notes: Notes,
}

impl<'a> Lexer<'a> {
    pub(super) fn new(src: &'a [u8], mode: Mode) -> Self {
        Lexer {
            src,
            pos: 0,
            mode,
            notes: Notes::default(),
        }
    }

    pub(super) fn src(&self) -> &'a [u8] {
        self.src
    }

    pub(super) fn mode(&self) -> Mode {
        self.mode
    }

    /// Where the next token (or trivia before it) begins.
    pub(super) fn pos(&self) -> usize {
        self.pos
    }

    fn unterminated(&mut self, content: usize) {
        self.notes.unterminated.get_or_insert(content);
        self.pos = self.src.len();
    }

    /// Skips whitespace and comments.
    #[inline(always)]
    fn skip_trivia(&mut self) {
        let s = self.src;
        while self.pos < s.len() && is_space(s[self.pos]) {
            self.pos += 1;
        }
        if s.get(self.pos).is_some_and(|&b| TRIVIA[b as usize]) {
            self.skip_trivia_slow();
        }
    }

    fn skip_trivia_slow(&mut self) {
        let s = self.src;
        loop {
            while self.pos < s.len() && is_space(s[self.pos]) {
                self.pos += 1;
            }
            if !matches!(s.get(self.pos), Some(b'-' | b'/')) {
                return;
            }
            match s.get(self.pos..self.pos + 2) {
                Some(b"--") => {
                    self.pos =
                        memchr2(b'\n', b'\r', &s[self.pos..]).map_or(s.len(), |n| self.pos + n);
                }
                Some(b"/*") => self.block_comment(),
                _ => return,
            }
        }
    }

    /// Block comments nest, as in PostgreSQL.
    fn block_comment(&mut self) {
        let s = self.src;
        let content = self.pos + 2;
        let mut depth = 0usize;
        let mut j = self.pos;
        while j + 1 < s.len() {
            match (s[j], s[j + 1]) {
                (b'/', b'*') => {
                    depth += 1;
                    j += 2;
                }
                (b'*', b'/') => {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        self.pos = j;
                        return;
                    }
                }
                _ => j += 1,
            }
        }
        self.unterminated(content);
    }

    #[inline]
    pub(super) fn next(&mut self) -> Option<Token> {
        self.skip_trivia();
        let s = self.src;
        let i = self.pos;
        let b = *s.get(i)?;
        let b1 = s.get(i + 1).copied();
        let single = |lx: &mut Self, kind| {
            lx.pos = i + 1;
            Some(Token {
                kind,
                start: i,
                end: i + 1,
                escape: 0,
                closed: true,
            })
        };
        match b {
            b'\'' => {
                let kind = if self.mode.backslash_plain {
                    Kind::EscapeStr
                } else {
                    Kind::Str
                };
                Some(self.string(i + 1, kind))
            }
            b'e' | b'E' if b1 == Some(b'\'') => Some(self.string(i + 2, Kind::EscapeStr)),
            b'"' => Some(self.string(i + 1, Kind::QuotedIdent)),
            b'u' | b'U' if b1 == Some(b'&') && matches!(s.get(i + 2), Some(b'\'' | b'"')) => {
                Some(self.unicode(i + 3, s[i + 2]))
            }
            b'$' => Some(self.dollar(i)),
            b'0'..=b'9' => Some(self.number(i)),
            b'.' if b1.is_some_and(|c| c.is_ascii_digit()) => Some(self.number(i)),
            b';' => single(self, Kind::Semicolon),
            b'.' => single(self, Kind::Dot),
            b',' => single(self, Kind::Comma),
            b'(' => single(self, Kind::LParen),
            b')' => single(self, Kind::RParen),
            _ if IDENT_START[b as usize] => {
                let mut j = i + 1;
                while j < s.len() && IDENT_CONT[s[j] as usize] {
                    j += 1;
                }
                self.pos = j;
                Some(Token {
                    kind: Kind::Ident,
                    start: i,
                    end: j,
                    escape: 0,
                    closed: true,
                })
            }
            _ => single(self, Kind::Other),
        }
    }

    /// A quoted token whose content starts at `from` (just past the opening quote).
    fn string(&mut self, from: usize, kind: Kind) -> Token {
        let quote = if kind == Kind::QuotedIdent {
            b'"'
        } else {
            b'\''
        };
        let (end, closed) = self.quoted_body(from, quote, kind == Kind::EscapeStr);
        if kind == Kind::Str && memchr(b'\\', &self.src[from..end]).is_some() {
            self.notes.plain_backslash = true;
        }
        if closed {
            self.pos = end + 1;
        } else {
            self.unterminated(from);
        }
        Token {
            kind,
            start: from,
            end,
            escape: 0,
            closed,
        }
    }

    /// Finds the closing `quote` (a doubled one stands for itself); with
    /// `backslash`, a backslash escapes the byte after it.
    fn quoted_body(&mut self, from: usize, quote: u8, backslash: bool) -> (usize, bool) {
        let s = self.src;
        let mut j = from;
        loop {
            let found = if backslash {
                memchr2(quote, b'\\', &s[j..])
            } else {
                find_byte(quote, &s[j..])
            };
            let Some(k) = found.map(|k| j + k) else {
                return (s.len(), false);
            };
            if s[k] == quote {
                if s.get(k + 1) == Some(&quote) {
                    j = k + 2;
                    continue;
                }
                return (k, true);
            }
            if k > from && s[k - 1] >= 0x80 {
                self.notes.high_backslash = true;
                if self.mode.shielded {
                    j = k + 1;
                    continue;
                }
            }
            if k + 1 >= s.len() {
                return (s.len(), false);
            }
            j = k + 2;
        }
    }

    /// `U&'...'` or `U&"..."` with content from `from`, and its UESCAPE clause.
    fn unicode(&mut self, from: usize, quote: u8) -> Token {
        let (end, closed) = self.quoted_body(from, quote, false);
        let mut escape = b'\\';
        if closed {
            self.pos = end + 1;
            if let Some((esc, after)) = self.uescape() {
                escape = esc;
                self.pos = after;
            }
        } else {
            self.unterminated(from);
        }
        let kind = if quote == b'"' {
            Kind::UnicodeIdent
        } else {
            Kind::UnicodeStr
        };
        Token {
            kind,
            start: from,
            end,
            escape,
            closed,
        }
    }

    /// After a U& token: `UESCAPE <string constant>`, as PostgreSQL's parser reads
    /// it. Returns the escape character (or [`UNKNOWN_ESCAPE`] when the clause is
    /// there but not one this lexer can read) and where the clause ends.
    fn uescape(&self) -> Option<(u8, usize)> {
        let s = self.src;
        let mut la = Lexer::new(s, self.mode);
        la.pos = self.pos;
        la.skip_trivia();
        let at = la.pos;
        let word = s.get(at..at + 7)?;
        if !word.eq_ignore_ascii_case(b"uescape")
            || s.get(at + 7).is_some_and(|&b| IDENT_CONT[b as usize])
        {
            return None;
        }
        la.pos = at + 7;
        la.skip_trivia();
        let j = la.pos;
        let token = match (s.get(j), s.get(j + 1)) {
            (Some(b'\''), _) => la.string(j + 1, Kind::Str),
            (Some(b'e' | b'E'), Some(b'\'')) => la.string(j + 2, Kind::EscapeStr),
            (Some(b'$'), _) => la.dollar(j),
            _ => return Some((UNKNOWN_ESCAPE, j)),
        };
        if !token.closed {
            // Let the main pass lex (and note) the unterminated string itself.
            return None;
        }
        if !token.kind.is_string() {
            return Some((UNKNOWN_ESCAPE, j));
        }
        let (mut n, mut c) = (0, 0u8);
        decode(s, &token, self.mode, &mut |b| {
            n += 1;
            c = b;
        });
        let valid = n == 1
            && !c.is_ascii_hexdigit()
            && !matches!(c, b'+' | b'\'' | b'"')
            && !is_space(c)
            && c != UNKNOWN_ESCAPE;
        Some((if valid { c } else { UNKNOWN_ESCAPE }, la.pos))
    }

    /// `$n`, `$tag$...$tag$`, or a lone `$`.
    fn dollar(&mut self, i: usize) -> Token {
        let s = self.src;
        let mut j = i + 1;
        if s.get(j).is_some_and(u8::is_ascii_digit) {
            while s.get(j).is_some_and(u8::is_ascii_digit) {
                j += 1;
            }
            self.pos = j;
            return Token {
                kind: Kind::Param,
                start: i,
                end: j,
                escape: 0,
                closed: true,
            };
        }
        if s.get(j).is_some_and(|&b| IDENT_START[b as usize]) {
            j += 1;
            while s
                .get(j)
                .is_some_and(|&b| IDENT_START[b as usize] || b.is_ascii_digit())
            {
                j += 1;
            }
        }
        if s.get(j) != Some(&b'$') {
            self.pos = i + 1;
            return Token {
                kind: Kind::Other,
                start: i,
                end: i + 1,
                escape: 0,
                closed: true,
            };
        }
        let tag = &s[i..=j];
        let from = j + 1;
        let (end, closed) = match memmem::find(&s[from..], tag) {
            Some(k) => {
                self.pos = from + k + tag.len();
                (from + k, true)
            }
            None => {
                self.unterminated(from);
                (s.len(), false)
            }
        };
        Token {
            kind: Kind::DollarStr,
            start: from,
            end,
            escape: 0,
            closed,
        }
    }

    /// Digits and underscores, then `.` and more. Letters are left for the next
    /// token, as PostgreSQL before 16 did (16 rejects them as trailing junk).
    fn number(&mut self, i: usize) -> Token {
        let s = self.src;
        let digits = |mut j: usize| {
            while s.get(j).is_some_and(|&b| b.is_ascii_digit() || b == b'_') {
                j += 1;
            }
            j
        };
        let mut j = digits(i);
        if s.get(j) == Some(&b'.') {
            j = digits(j + 1);
        }
        self.pos = j;
        Token {
            kind: Kind::Number,
            start: i,
            end: j,
            escape: 0,
            closed: true,
        }
    }
}

/// Feeds what a token spells to `out`: unquoted identifiers lowercased, quotes
/// undoubled, escapes decoded. Invalid escapes (a server error) come out as 0xFF.
pub(super) fn decode(src: &[u8], tok: &Token, mode: Mode, out: &mut impl FnMut(u8)) {
    let body = &src[tok.start..tok.end];
    match tok.kind {
        Kind::Ident => body.iter().for_each(|b| out(b.to_ascii_lowercase())),
        Kind::QuotedIdent => undouble(body, b'"', out),
        Kind::Str => undouble(body, b'\'', out),
        Kind::EscapeStr => unescape_e(body, mode, out),
        Kind::UnicodeIdent => unescape_u(body, b'"', tok.escape, out),
        Kind::UnicodeStr => unescape_u(body, b'\'', tok.escape, out),
        _ => body.iter().for_each(|&b| out(b)),
    }
}

fn undouble(body: &[u8], quote: u8, out: &mut impl FnMut(u8)) {
    let mut i = 0;
    while i < body.len() {
        out(body[i]);
        i += if body[i] == quote { 2 } else { 1 };
    }
}

fn hex_value(digits: &[u8]) -> Option<u32> {
    digits.iter().try_fold(0u32, |v, &d| {
        let x = (d as char).to_digit(16)?;
        Some((v << 4) | x)
    })
}

/// `n` hex digits at `body[at..]`.
fn hex_at(body: &[u8], at: usize, n: usize) -> Option<u32> {
    hex_value(body.get(at..at + n)?)
}

fn push_char(cp: u32, out: &mut impl FnMut(u8)) {
    match char::from_u32(cp) {
        Some(c) => c.encode_utf8(&mut [0; 4]).bytes().for_each(out),
        None => out(0xFF),
    }
}

/// A code point, combining a UTF-16 surrogate pair when `next` yields its low half.
fn push_code_point(cp: u32, next: Option<(u32, usize)>, i: &mut usize, out: &mut impl FnMut(u8)) {
    if (0xD800..0xDC00).contains(&cp) {
        match next {
            Some((low, len)) if (0xDC00..0xE000).contains(&low) => {
                *i += len;
                push_char(0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00), out);
            }
            _ => out(0xFF),
        }
    } else {
        push_char(cp, out);
    }
}

/// `E'...'` content.
fn unescape_e(body: &[u8], mode: Mode, out: &mut impl FnMut(u8)) {
    // `\uXXXX` or `\UXXXXXXXX` at `at`: (code point, length).
    let unicode_at = |at: usize| -> Option<(u32, usize)> {
        match body.get(at..at + 2)? {
            [b'\\', b'u'] => Some((hex_at(body, at + 2, 4)?, 6)),
            [b'\\', b'U'] => Some((hex_at(body, at + 2, 8)?, 10)),
            _ => None,
        }
    };
    let mut i = 0;
    while i < body.len() {
        let b = body[i];
        if b == b'\'' {
            out(b'\'');
            i += if body.get(i + 1) == Some(&b'\'') {
                2
            } else {
                1
            };
            continue;
        }
        if b != b'\\' || (mode.shielded && i > 0 && body[i - 1] >= 0x80) {
            out(b);
            i += 1;
            continue;
        }
        let Some(&c) = body.get(i + 1) else {
            out(b'\\');
            return;
        };
        if let Some((cp, len)) = unicode_at(i) {
            i += len;
            push_code_point(cp, unicode_at(i), &mut i, out);
            continue;
        }
        i += 2;
        match c {
            b'b' => out(0x08),
            b'f' => out(0x0c),
            b'n' => out(b'\n'),
            b'r' => out(b'\r'),
            b't' => out(b'\t'),
            b'u' | b'U' => out(0xFF),
            b'0'..=b'7' => {
                let mut v = u32::from(c - b'0');
                for _ in 0..2 {
                    match body.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out(v as u8);
            }
            b'x' if body.get(i).is_some_and(u8::is_ascii_hexdigit) => {
                let n = if body.get(i + 1).is_some_and(u8::is_ascii_hexdigit) {
                    2
                } else {
                    1
                };
                out(hex_at(body, i, n).unwrap_or(0xFF) as u8);
                i += n;
            }
            _ => out(c),
        }
    }
}

/// `U&'...'` / `U&"..."` content with escape character `esc`.
fn unescape_u(body: &[u8], quote: u8, esc: u8, out: &mut impl FnMut(u8)) {
    let esc = if esc == UNKNOWN_ESCAPE { b'\\' } else { esc };
    // `<esc>XXXX` or `<esc>+XXXXXX` at `at`: (code point, length).
    let escape_at = |at: usize| -> Option<(u32, usize)> {
        if body.get(at) != Some(&esc) {
            return None;
        }
        if body.get(at + 1) == Some(&b'+') {
            Some((hex_at(body, at + 2, 6)?, 8))
        } else {
            Some((hex_at(body, at + 1, 4)?, 5))
        }
    };
    let mut i = 0;
    while i < body.len() {
        let b = body[i];
        if b == quote {
            out(quote);
            i += 2;
        } else if b != esc {
            out(b);
            i += 1;
        } else if body.get(i + 1) == Some(&esc) {
            out(esc);
            i += 2;
        } else if let Some((cp, len)) = escape_at(i) {
            i += len;
            push_code_point(cp, escape_at(i), &mut i, out);
        } else {
            out(0xFF);
            i += 1;
        }
    }
}
