//! The tenant-context guard: refuses client SQL and startup parameters that could
//! write the tenant setting or change the role (the relay answers 42501).
//!
//! [`Guard::check`] sees every simple-Query text and every Parse text of a
//! tenant-scoped client, so it is built for the hot path: one pass, no allocation
//! unless a function body must be decoded, never a panic on any bytes.
//!
//! It starts with a prefilter ([`prefilter`]) that needs no lexing: every rule below needs one of
//! the words `set` (also `set_config`), `reset`, `do`, `create`, `pg_settings` or
//! `u&` to start a word somewhere in the raw bytes, whatever the tokens turn out to
//! be. A text without any (most SELECTs and INSERTs) passes after that pass (8 bytes
//! at a time). Otherwise the text is lexed ([`lex`]) the way PostgreSQL does, split
//! into statements at every `;`, and lexing stops after the last such word (outside
//! a routine or DO statement, whose decoded strings may spell words the raw text
//! does not). It is refused when:
//!
//! - a statement is `SET [SESSION|LOCAL] <setting> ...` ([`Violation::SetSetting`])
//!   or `RESET <setting>` ([`Violation::ResetSetting`]). `<setting>` is any spelling
//!   PostgreSQL resolves to the same name: parts joined by `.`, unquoted, quoted
//!   (one quoted identifier may hold the dots), `U&"..."` with escapes and `UESCAPE`,
//!   comments between the parts, any case (setting names are case-insensitive),
//!   each part truncated to 63 bytes as the server does. `SET`/`RESET` of the
//!   setting in the middle of any other statement is refused too;
//! - `set_config(` appears anywhere (qualified, quoted or escaped name, comments
//!   before the parenthesis): unless its first argument is a single string constant
//!   (`'...'`, `E'...'`, `U&'...'`, `$$...$$`) followed by `,` or `)` and naming
//!   another setting, it is [`Violation::SetConfig`] (a name that is not a plain
//!   constant cannot be verified). `set_config('role', ...)` and
//!   `set_config('session_authorization', ...)` count as SET ROLE / SET SESSION
//!   AUTHORIZATION. `UPDATE [ONLY] [pg_catalog.]pg_settings` is SetConfig too: the
//!   view's rule calls set_config with the row's name;
//! - an `ALTER ...` or `CREATE [OR REPLACE] FUNCTION|PROCEDURE` statement holds
//!   `SET <setting>` or `RESET <setting>` ([`Violation::AlterSetting`]), or
//!   `SET role` / `SET session_authorization` (a role as a function's or a role's
//!   default);
//! - a statement starts with `SET [SESSION|LOCAL] SESSION AUTHORIZATION`, or
//!   `SET [SESSION|LOCAL] ROLE` or the setting names `role` / `session_authorization`
//!   in any spelling ([`Violation::SessionAuthorization`], [`Violation::SetRole`]).
//!   `UPDATE t SET role = ...` is fine. `RESET ROLE`, `RESET SESSION AUTHORIZATION`,
//!   `RESET ALL` and `DISCARD ALL` pass: drivers send them, and the pooler re-sends
//!   its SET afterwards;
//! - a statement starts with `DO` and DO blocks are not allowed ([`Violation::DoBlock`]).
//!
//! Bodies: in `CREATE [OR REPLACE] FUNCTION|PROCEDURE` statements, and in `DO` when
//! allowed, every string constant is decoded and checked as SQL as well (as a body:
//! `BEGIN`, `THEN`, `ELSE` and `LOOP` also start statements there, and a string
//! constant right after `EXECUTE` is checked too). Bodies nest up to [`MAX_DEPTH`]
//! deep, within a work budget proportional to the text; deeper (or past the
//! budget), a body in which the prefilter finds anything is refused (DoBlock in a
//! DO, AlterSetting in a routine). SQL assembled at run time (`EXECUTE 'SE' ||
//! 'T ...'`, `format()`), and bodies in other procedural languages, are out of any
//! text scan's reach: that is what the signed tenant context is for.
//!
//! Fail-closed decisions:
//! - an unterminated string, quoted identifier, dollar quote or block comment whose
//!   content holds a rule word: PostgreSQL rejects the whole text as a syntax
//!   error, but a disagreement between lexers must not hide anything, so the guard
//!   refuses it outright when that content mentions the setting's last part
//!   (SetSetting) or `set_config` (SetConfig), in any case, and otherwise checks the
//!   content as SQL too (three levels of unterminated-inside-unterminated deep).
//!   Without a rule word in it, such text passes: nothing in it could act;
//! - a `'...'` string holding a backslash makes the guard check the whole text
//!   again as if standard_conforming_strings were off (a client may turn it off);
//!   a backslash that escapes right after a byte >= 0x80 makes it check it again
//!   with such backslashes as plain characters (legacy multibyte client encodings
//!   such as SJIS, where the server never sees that backslash). Every reading must
//!   pass;
//! - `set_config(` whose first argument is not a lone string constant is refused;
//!   a `U&` token whose `UESCAPE` clause cannot be read matches every name;
//! - statements are split at every `;`, even inside parentheses or `BEGIN ATOMIC`,
//!   which can only add statement starts.
//!
//! [`Guard::check_startup`] ([`startup`]) refuses a startup parameter named like
//! the setting, `role` or `session_authorization`, and an `options` parameter that
//! would set one of them (`-c name=value`, `-cname=value`, `--name=value`, flags
//! clustered before `c`, libpq's backslash escapes; names compared in any case, `-`
//! read as `_`, as PostgreSQL does).

mod lex;
mod prefilter;
mod startup;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::cell::Cell;

use lex::{decode, is_space, Kind, Lexer, Mode, Token, UNKNOWN_ESCAPE};
use prefilter::rule_words_end;

use super::SettingName;

/// Bodies inside bodies checked before the guard stops lexing and fails closed.
pub const MAX_DEPTH: u8 = 3;
/// Unterminated constructs inside the content of unterminated constructs whose
/// content is checked as SQL in turn (each is also checked for mentions).
const TAILS: u8 = 3;
/// Bytes one `check` may lex, as a multiple of the text's length plus a constant.
/// Ordinary text is lexed once; re-readings, unterminated tails and bodies add
/// passes. A body that would exceed the budget is treated like one nested too deep.
const BUDGET_FACTOR: usize = 64;
const BUDGET_BASE: usize = 1 << 20;

const ROLE: &[u8] = b"role";
const SESSION_AUTHORIZATION: &[u8] = b"session_authorization";
const SET_CONFIG: &[u8] = b"set_config";
const PG_SETTINGS: &[u8] = b"pg_settings";
/// Identifiers longer than this are truncated by PostgreSQL (NAMEDATALEN - 1).
const MAX_IDENT: usize = 63;

/// The rule a refused statement or startup packet broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Violation {
    /// `SET [SESSION|LOCAL] <setting> ...`, or `SET <setting>` inside another statement.
    SetSetting,
    /// `RESET <setting>`.
    ResetSetting,
    /// `set_config(` naming the setting or a name that cannot be verified;
    /// `UPDATE pg_settings`.
    SetConfig,
    /// `ALTER ... SET|RESET` or `CREATE FUNCTION|PROCEDURE ... SET` of the setting
    /// (or a routine/DO body too deep or too costly to check).
    AlterSetting,
    /// `SET SESSION AUTHORIZATION`, `SET session_authorization`,
    /// `set_config('session_authorization', ...)`.
    SessionAuthorization,
    /// `SET ROLE`, `SET role`, `set_config('role', ...)`, `ALTER ... SET role`.
    SetRole,
    /// A DO block where they are not allowed.
    DoBlock,
    /// A startup parameter (or `options` switch) that sets the setting or the role.
    StartupParameter,
}

impl Violation {
    pub const ALL: [Violation; 8] = [
        Violation::SetSetting,
        Violation::ResetSetting,
        Violation::SetConfig,
        Violation::AlterSetting,
        Violation::SessionAuthorization,
        Violation::SetRole,
        Violation::DoBlock,
        Violation::StartupParameter,
    ];

    /// The client-facing message.
    pub fn message(&self, setting: &SettingName) -> String {
        let s = setting.as_str();
        let why = "the tenant comes from the login";
        match self {
            Violation::SetSetting => {
                format!("tenantpool: changing \"{s}\" is not allowed: {why}")
            }
            Violation::ResetSetting => {
                format!("tenantpool: resetting \"{s}\" is not allowed: {why}")
            }
            Violation::SetConfig => format!(
                "tenantpool: set_config() or UPDATE pg_settings of \"{s}\", or with a setting \
                 name that is not a plain string constant, is not allowed: {why}"
            ),
            Violation::AlterSetting => format!(
                "tenantpool: ALTER/CREATE ... SET or RESET of \"{s}\" (or of the role) is not \
                 allowed: {why}"
            ),
            Violation::SessionAuthorization => {
                "tenantpool: SET SESSION AUTHORIZATION is not allowed in a tenant-scoped database: \
                 the role comes from the login"
                    .to_owned()
            }
            Violation::SetRole => "tenantpool: SET ROLE is not allowed in a tenant-scoped \
                                   database: the role comes from the login"
                .to_owned(),
            Violation::DoBlock => "tenantpool: DO blocks are not allowed in this tenant-scoped \
                                   database: their dynamic SQL cannot be checked (the operator \
                                   can set allow_do_blocks = true)"
                .to_owned(),
            Violation::StartupParameter => format!(
                "tenantpool: startup parameters (including options) may not set \"{s}\" or the \
                 role: {why}"
            ),
        }
    }

    /// A stable small code (1..=8) for each rule.
    pub fn code(&self) -> u8 {
        match self {
            Violation::SetSetting => 1,
            Violation::ResetSetting => 2,
            Violation::SetConfig => 3,
            Violation::AlterSetting => 4,
            Violation::SessionAuthorization => 5,
            Violation::SetRole => 6,
            Violation::DoBlock => 7,
            Violation::StartupParameter => 8,
        }
    }

    pub fn from_code(code: u8) -> Option<Self> {
        Violation::ALL.into_iter().find(|v| v.code() == code)
    }
}

/// What kind of statement the current one is, as far as the rules care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stmt {
    Other,
    /// `ALTER ...`
    Alter,
    /// `CREATE [OR REPLACE] FUNCTION|PROCEDURE`
    Routine,
    /// `DO`, when allowed
    Do,
}

/// Which names a dotted name spelled.
#[derive(Debug, Default, Clone, Copy)]
struct Names {
    setting: bool,
    role: bool,
    session_authorization: bool,
    /// The last part is `pg_settings`.
    pg_settings: bool,
}

/// Checks client SQL and startup parameters of a tenant-scoped database.
#[derive(Debug, Clone)]
pub struct Guard {
    /// Lowercase, as [`SettingName`] guarantees.
    setting: Box<[u8]>,
    last_part: Box<[u8]>,
    /// A longer dotted name can name none of the targets (`pg_settings` included,
    /// as PostgreSQL refuses table names of more than three parts).
    max_parts: usize,
    allow_do_blocks: bool,
}

impl Guard {
    pub fn new(setting: &SettingName, allow_do_blocks: bool) -> Self {
        Guard {
            setting: setting.as_str().to_ascii_lowercase().into_bytes().into(),
            last_part: setting.last_part().to_ascii_lowercase().into_bytes().into(),
            max_parts: setting.as_str().split('.').count().max(3),
            allow_do_blocks,
        }
    }

    pub fn allows_do_blocks(&self) -> bool {
        self.allow_do_blocks
    }

    /// Ok when `sql` cannot write the tenant setting or change the role; Err names the rule.
    pub fn check(&self, sql: &[u8]) -> Result<(), Violation> {
        let Some(stop) = rule_words_end(sql) else {
            return Ok(());
        };
        let budget = Cell::new(BUDGET_FACTOR * sql.len() + BUDGET_BASE);
        self.check_lexed(sql, 0, stop, &budget)
    }

    /// Startup parameters: refuses any that would set the setting (or the role).
    pub fn check_startup(&self, params: &[(String, String)]) -> Result<(), Violation> {
        for (name, value) in params {
            let refused = if name.eq_ignore_ascii_case("options") {
                self.options_set_guarded(value.as_bytes())
            } else {
                self.is_guarded_name(name.as_bytes())
            };
            if refused {
                return Err(Violation::StartupParameter);
            }
        }
        Ok(())
    }

    /// Every reading of `src` (see the module docs) must pass; `src` passed the
    /// prefilter, and `stop` is where its last rule word ends.
    fn check_lexed(
        &self,
        src: &[u8],
        depth: u8,
        stop: usize,
        budget: &Cell<usize>,
    ) -> Result<(), Violation> {
        let notes = self.walk(src, Mode::default(), depth, stop, TAILS, budget)?;
        if notes.plain_backslash || notes.high_backslash {
            for (backslash_plain, shielded) in [(true, false), (false, true), (true, true)] {
                let mode = Mode {
                    backslash_plain,
                    shielded,
                };
                self.walk(src, mode, depth, stop, TAILS, budget)?;
            }
        }
        Ok(())
    }

    /// One lexing pass over `src`; `depth` > 0 inside a body.
    ///
    /// At the top level the pass ends once it is past `stop`, the end of the last
    /// rule word the prefilter found, outside a routine or DO statement: no rule can
    /// apply to what follows, and no reading of it can change how what precedes it
    /// was lexed. (In bodies and routines, decoded strings may spell words that the
    /// raw text does not.)
    fn walk(
        &self,
        src: &[u8],
        mode: Mode,
        depth: u8,
        stop: usize,
        tails: u8,
        budget: &Cell<usize>,
    ) -> Result<lex::Notes, Violation> {
        budget.set(budget.get().saturating_sub(src.len()));
        let body = depth > 0;
        let mut lx = Lexer::new(src, mode);
        let mut start = true;
        let mut stmt = Stmt::Other;
        let mut after_execute = false;
        loop {
            if !body && lx.pos() >= stop && !matches!(stmt, Stmt::Routine | Stmt::Do) {
                break;
            }
            let Some(tok) = lx.next() else {
                break;
            };
            let at_start = std::mem::replace(&mut start, false);
            let execute = std::mem::replace(&mut after_execute, false);
            match tok.kind {
                Kind::Semicolon => {
                    start = true;
                    stmt = Stmt::Other;
                }
                Kind::Ident => match keyword(&src[tok.start..tok.end]) {
                    Some(Kw::Set) => self.set_clause(lx.clone(), at_start, stmt, false)?,
                    Some(Kw::Reset) => self.set_clause(lx.clone(), at_start, stmt, true)?,
                    Some(Kw::SetConfig) => self.set_config(lx.clone())?,
                    Some(Kw::Update) if self.update_target(lx.clone()).pg_settings => {
                        return Err(Violation::SetConfig);
                    }
                    Some(Kw::Do) if at_start => {
                        if !self.allow_do_blocks {
                            return Err(Violation::DoBlock);
                        }
                        stmt = Stmt::Do;
                    }
                    Some(Kw::Alter) if at_start => stmt = Stmt::Alter,
                    Some(Kw::Create) if at_start && creates_routine(lx.clone()) => {
                        stmt = Stmt::Routine
                    }
                    Some(Kw::Execute) => after_execute = body,
                    Some(Kw::BodyBreak) if body => start = true,
                    _ => {}
                },
                Kind::QuotedIdent | Kind::UnicodeIdent if ident_is(src, &tok, mode, SET_CONFIG) => {
                    self.set_config(lx.clone())?
                }
                kind if kind.is_string()
                    && (matches!(stmt, Stmt::Routine | Stmt::Do) || execute) =>
                {
                    self.check_body(src, &tok, mode, depth, stmt, budget)?
                }
                _ => {}
            }
        }
        let notes = lx.notes;
        // The content of an unterminated construct, when it holds a rule word.
        if let Some((at, tail_stop)) = notes
            .unterminated
            .and_then(|at| Some((at, rule_words_end(&src[at..])?)))
        {
            let tail = &src[at..];
            if contains_ci(tail, &self.last_part) {
                return Err(Violation::SetSetting);
            }
            if contains_ci(tail, SET_CONFIG) {
                return Err(Violation::SetConfig);
            }
            if tails > 0 {
                self.walk(tail, mode, depth, tail_stop, tails - 1, budget)?;
            }
        }
        Ok(notes)
    }

    /// What follows a `SET` or `RESET` keyword, read from `lx`.
    fn set_clause(
        &self,
        mut lx: Lexer,
        at_start: bool,
        stmt: Stmt,
        reset: bool,
    ) -> Result<(), Violation> {
        let src = lx.src();
        let alter = matches!(stmt, Stmt::Alter | Stmt::Routine);
        let roles = (at_start || alter) && !reset;
        let Some(mut tok) = lx.next() else {
            return Ok(());
        };
        if !reset {
            let session_authorization = |lx: &Lexer| {
                lx.clone()
                    .next()
                    .is_some_and(|t| is_kw(src, &t, b"authorization"))
            };
            if is_kw(src, &tok, b"session") && session_authorization(&lx) {
                return if roles {
                    Err(Violation::SessionAuthorization)
                } else {
                    Ok(())
                };
            }
            if is_kw(src, &tok, b"session") || is_kw(src, &tok, b"local") {
                let Some(next) = lx.next() else {
                    return Ok(());
                };
                tok = next;
                if roles && is_kw(src, &tok, b"session") && session_authorization(&lx) {
                    return Err(Violation::SessionAuthorization);
                }
            }
        }
        let names = self.read_name(&mut lx, tok);
        if names.setting {
            return Err(if alter {
                Violation::AlterSetting
            } else if reset {
                Violation::ResetSetting
            } else {
                Violation::SetSetting
            });
        }
        if roles && names.role {
            return Err(Violation::SetRole);
        }
        if roles && names.session_authorization {
            return Err(Violation::SessionAuthorization);
        }
        Ok(())
    }

    /// After a `set_config` name: its first argument must be a lone string
    /// constant naming another setting.
    fn set_config(&self, mut lx: Lexer) -> Result<(), Violation> {
        if !lx.next().is_some_and(|t| t.kind == Kind::LParen) {
            return Ok(());
        }
        let src = lx.src();
        let mode = lx.mode();
        let Some(arg) = lx.next() else {
            return Err(Violation::SetConfig);
        };
        let lone = arg.kind.is_string()
            && arg.closed
            && !(arg.kind == Kind::UnicodeStr && arg.escape == UNKNOWN_ESCAPE)
            && lx
                .next()
                .is_some_and(|t| matches!(t.kind, Kind::Comma | Kind::RParen));
        if !lone {
            return Err(Violation::SetConfig);
        }
        let mut cmps = [
            Cmp::new(&self.setting),
            Cmp::new(ROLE),
            Cmp::new(SESSION_AUTHORIZATION),
        ];
        // Compared trimmed: a server would refuse the padded name, but nothing is lost.
        let (mut started, mut gap) = (false, false);
        decode(src, &arg, mode, &mut |b| {
            if is_space(b) {
                gap = started;
                return;
            }
            for c in &mut cmps {
                if gap {
                    c.ok = false;
                }
                c.feed(&[b]);
            }
            started = true;
        });
        match cmps.map(|c| c.done()) {
            [true, _, _] => Err(Violation::SetConfig),
            [_, true, _] => Err(Violation::SetRole),
            [_, _, true] => Err(Violation::SessionAuthorization),
            _ => Ok(()),
        }
    }

    /// The table after `UPDATE [ONLY]`.
    fn update_target(&self, mut lx: Lexer) -> Names {
        let src = lx.src();
        match lx.next() {
            Some(t) if is_kw(src, &t, b"only") => match lx.next() {
                Some(t) => self.read_name(&mut lx, t),
                None => Names::default(),
            },
            Some(t) => self.read_name(&mut lx, t),
            None => Names::default(),
        }
    }

    /// Reads `part(.part)*` starting with `first`, leaving `lx` after it (or
    /// after the first parts, when there are too many to name anything).
    fn read_name(&self, lx: &mut Lexer, first: Token) -> Names {
        if !first.kind.is_ident() {
            return Names::default();
        }
        let src = lx.src();
        let mode = lx.mode();
        let mut cmps = [
            Cmp::new(&self.setting),
            Cmp::new(ROLE),
            Cmp::new(SESSION_AUTHORIZATION),
        ];
        let mut wild = false;
        let mut last;
        let mut last_wild;
        let mut tok = first;
        let mut parts = 0;
        loop {
            parts += 1;
            if parts > self.max_parts {
                return Names::default();
            }
            let mut buf = [0u8; MAX_IDENT + 1];
            let part = ident_part(src, &tok, mode, &mut buf);
            for c in &mut cmps {
                c.feed(part);
            }
            last = Cmp::new(PG_SETTINGS);
            last.feed(part);
            last_wild = tok.kind == Kind::UnicodeIdent && tok.escape == UNKNOWN_ESCAPE;
            wild |= last_wild;
            let mut la = lx.clone();
            match (la.next(), la.next()) {
                (Some(dot), Some(next)) if dot.kind == Kind::Dot && next.kind.is_ident() => {
                    *lx = la;
                    tok = next;
                    for c in &mut cmps {
                        c.feed(b".");
                    }
                }
                _ => break,
            }
        }
        Names {
            setting: wild || cmps[0].done(),
            role: wild || cmps[1].done(),
            session_authorization: wild || cmps[2].done(),
            pg_settings: last_wild || last.done(),
        }
    }

    /// A string constant of a function body or DO block, checked as SQL.
    fn check_body(
        &self,
        src: &[u8],
        tok: &Token,
        mode: Mode,
        depth: u8,
        stmt: Stmt,
        budget: &Cell<usize>,
    ) -> Result<(), Violation> {
        let text: Cow<[u8]> = match tok.kind {
            Kind::DollarStr => Cow::Borrowed(&src[tok.start..tok.end]),
            _ => {
                let mut v = Vec::with_capacity(tok.end - tok.start);
                decode(src, tok, mode, &mut |b| v.push(b));
                Cow::Owned(v)
            }
        };
        let Some(stop) = rule_words_end(&text) else {
            return Ok(());
        };
        if depth < MAX_DEPTH && budget.get() >= text.len() {
            return self.check_lexed(&text, depth + 1, stop, budget);
        }
        // Too deep or too costly: fail closed.
        Err(if stmt == Stmt::Do {
            Violation::DoBlock
        } else {
            Violation::AlterSetting
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kw {
    Set,
    Reset,
    SetConfig,
    Update,
    Do,
    Alter,
    Create,
    Execute,
    /// `BEGIN`, `THEN`, `ELSE`, `LOOP`: a statement may follow in a PL/pgSQL body.
    BodyBreak,
}

/// The keywords the walk cares about (unquoted identifiers only).
fn keyword(word: &[u8]) -> Option<Kw> {
    let is = |k: &[u8]| word.eq_ignore_ascii_case(k);
    Some(match word.len() {
        2 if is(b"do") => Kw::Do,
        3 if is(b"set") => Kw::Set,
        4 if is(b"then") || is(b"else") || is(b"loop") => Kw::BodyBreak,
        5 if is(b"reset") => Kw::Reset,
        5 if is(b"alter") => Kw::Alter,
        5 if is(b"begin") => Kw::BodyBreak,
        6 if is(b"create") => Kw::Create,
        6 if is(b"update") => Kw::Update,
        7 if is(b"execute") => Kw::Execute,
        10 if is(SET_CONFIG) => Kw::SetConfig,
        _ => return None,
    })
}

fn is_kw(src: &[u8], tok: &Token, word: &[u8]) -> bool {
    tok.kind == Kind::Ident && src[tok.start..tok.end].eq_ignore_ascii_case(word)
}

/// After `CREATE`: `[OR REPLACE] FUNCTION|PROCEDURE`.
fn creates_routine(mut lx: Lexer) -> bool {
    let src = lx.src();
    let mut tok = lx.next();
    if tok.is_some_and(|t| is_kw(src, &t, b"or")) {
        lx.next();
        tok = lx.next();
    }
    tok.is_some_and(|t| is_kw(src, &t, b"function") || is_kw(src, &t, b"procedure"))
}

/// What an identifier token names (in any case), truncated as PostgreSQL truncates
/// identifiers: at 63 bytes, backing off to a UTF-8 character boundary.
fn ident_part<'a>(
    src: &'a [u8],
    tok: &Token,
    mode: Mode,
    buf: &'a mut [u8; MAX_IDENT + 1],
) -> &'a [u8] {
    let raw = &src[tok.start..tok.end];
    let name: &[u8] = match tok.kind {
        // Spelled as is: the common case.
        Kind::Ident => raw,
        Kind::QuotedIdent if !raw.contains(&b'"') => raw,
        _ => {
            let mut n = 0;
            decode(src, tok, mode, &mut |b| {
                if n < buf.len() {
                    buf[n] = b;
                }
                n += 1;
            });
            &buf[..n.min(buf.len())]
        }
    };
    if name.len() <= MAX_IDENT {
        return name;
    }
    let mut len = MAX_IDENT;
    while len > 0 && name[len] & 0xC0 == 0x80 {
        len -= 1;
    }
    &name[..len]
}

/// Whether an identifier token names `target` (lowercase, under 64 bytes), in any case.
#[inline]
fn ident_is(src: &[u8], tok: &Token, mode: Mode, target: &[u8]) -> bool {
    // No escape makes a name longer than its spelling.
    if tok.end - tok.start < target.len() {
        return false;
    }
    if tok.kind == Kind::UnicodeIdent && tok.escape == UNKNOWN_ESCAPE {
        return true;
    }
    let mut buf = [0u8; MAX_IDENT + 1];
    ident_part(src, tok, mode, &mut buf).eq_ignore_ascii_case(target)
}

/// Compares a name fed in pieces with a lowercase target, ignoring ASCII case.
struct Cmp<'t> {
    target: &'t [u8],
    at: usize,
    ok: bool,
}

impl<'t> Cmp<'t> {
    fn new(target: &'t [u8]) -> Self {
        Cmp {
            target,
            at: 0,
            ok: true,
        }
    }

    fn feed(&mut self, piece: &[u8]) {
        let end = self.at + piece.len();
        if self.ok
            && end <= self.target.len()
            && self.target[self.at..end].eq_ignore_ascii_case(piece)
        {
            self.at = end;
        } else {
            self.ok = false;
        }
    }

    fn done(&self) -> bool {
        self.ok && self.at == self.target.len()
    }
}

fn contains_ci(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty()
        && haystack
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
}
