//! Client → server: frame what the client sends, note what the transaction
//! tracker and tenant context must know, and pass the bytes on unchanged.
//!
//! Only Query and Parse are held whole (up to `max_message_size`) so their text
//! can be inspected; everything else, including a 100 MB Bind or a long COPY,
//! streams through in buffer-sized pieces.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::AsyncWrite;

use super::prepared::{ClientStatements, Prepared};
use super::refuse;
use super::track::{Answer, Tracker};
use crate::protocol::{frontend, tag, FrameError, Header, HEADER_LEN};
use crate::tenant::TenantPolicy;

/// Bytes buffered from a peer before we stop reading and let writes catch up.
pub(super) const HIGH_WATER: usize = 64 * 1024;
/// Smallest free space worth a read system call.
pub(super) const READ_CHUNK: usize = 8 * 1024;
/// Most bytes of a Bind/Describe/Close held to read the statement and portal names.
const NAMES_LIMIT: usize = 4096;

mod spare;
mod statements;

/// The client-to-server direction. Owned by the client session so it survives
/// from one transaction (and one server connection) to the next.
#[derive(Debug, Default)]
pub struct ClientHalf {
    /// Bytes read from the client; the first `ready` are framed and may be written.
    pub buf: BytesMut,
    ready: usize,
    /// Body bytes of the current message that have not arrived yet.
    body_left: usize,
    /// When waiting to hold a whole message: the buffer length it needs.
    need: usize,
    /// Bytes to write to the server before the client's (the tenant SET).
    prefix: Bytes,
    /// Body bytes of a refused, oversized message still to be dropped.
    discard_left: usize,
    /// The client sent Terminate.
    pub terminated: bool,
    /// Tracked session settings, when the client's are kept across server connections.
    pub watch: Option<std::sync::Arc<crate::relay::params::Tracked>>,
    /// The tracker's request count when a hold was armed: see [`Self::hold_after_next_request`].
    hold_base: Option<u32>,
}

impl ClientHalf {
    /// Whether anything is waiting to be written to the server.
    #[inline]
    pub fn has_output(&self) -> bool {
        self.ready > 0 || !self.prefix.is_empty()
    }

    /// Whether every byte the client sent has reached the server and no message is cut.
    #[inline]
    pub fn is_drained(&self) -> bool {
        self.buf.is_empty()
            && self.body_left == 0
            && self.discard_left == 0
            && self.prefix.is_empty()
    }

    /// Whether nothing the client sent is half-way to the server: every byte
    /// framed so far was written and no message was cut.
    #[inline]
    pub fn nothing_in_flight(&self) -> bool {
        self.ready == 0 && self.body_left == 0 && self.discard_left == 0 && self.prefix.is_empty()
    }

    /// Whether the client has sent something to act on: framed bytes, or the whole
    /// header of the next message.
    #[inline]
    pub fn has_input(&self) -> bool {
        self.ready > 0 || self.buf.len() - self.ready >= HEADER_LEN
    }

    /// The tag of the next message not yet framed, if its header is here.
    #[inline]
    pub fn next_tag(&self) -> Option<u8> {
        (self.body_left == 0 && self.buf.len() - self.ready >= HEADER_LEN)
            .then(|| self.buf[self.ready])
    }

    /// Whether complete messages (or message pieces) are ready for a server.
    #[inline]
    pub fn has_ready(&self) -> bool {
        self.ready > 0
    }

    /// Whether reading more from the client is allowed now.
    #[inline]
    pub fn wants_read(&self) -> bool {
        !self.terminated && self.buf.len() < HIGH_WATER.max(self.need)
    }

    /// Makes room for a read (the first one of a transaction takes a buffer
    /// this thread kept, if it has one).
    #[inline]
    pub fn reserve(&mut self) {
        if self.buf.capacity() - self.buf.len() < READ_CHUNK {
            if self.buf.capacity() == 0 {
                if let Some(spare) = spare::take() {
                    self.buf = spare;
                    return;
                }
            }
            self.buf.reserve(READ_CHUNK);
        }
    }

    /// The SQL of the client's next request when it is all here and runs at
    /// most one statement: a Query of one statement, or Parse/Bind/Describe
    /// messages with at most one Execute, up to a Sync. A Bind without a Parse
    /// must name a statement in `statements`. `None` otherwise, or when anything
    /// is framed already.
    pub fn single_statement_request<'a>(
        &'a self,
        statements: Option<&'a ClientStatements>,
    ) -> Option<&'a [u8]> {
        if self.ready > 0 || self.body_left > 0 || self.discard_left > 0 {
            return None;
        }
        let mut at = 0;
        // The statement's text, and the name a Parse gave it (a Bind must use it).
        let mut text = None;
        let mut parsed: Option<&[u8]> = None;
        let mut executes = 0;
        loop {
            let header = Header::parse(&self.buf[at..]).ok()??;
            let end = at + header.total_len();
            let body = self.buf.get(at + HEADER_LEN..end)?;
            match header.tag {
                tag::QUERY if at == 0 => {
                    let sql = frontend::query_text(body);
                    // One statement: no `;` but at the end.
                    return match memchr::memchr(b';', sql) {
                        Some(i) if !sql[i + 1..].iter().all(u8::is_ascii_whitespace) => None,
                        _ => Some(sql),
                    };
                }
                tag::PARSE if text.is_none() => {
                    parsed = Some(&body[..memchr::memchr(0, body)?]);
                    text = Some(frontend::parse_query_text(body)?);
                }
                tag::BIND => {
                    let portal_end = memchr::memchr(0, body)?;
                    let rest = &body[portal_end + 1..];
                    let name = &rest[..memchr::memchr(0, rest)?];
                    match parsed {
                        Some(parsed) if parsed != name => return None,
                        Some(_) => {}
                        None => {
                            let def = statements?.get(name)?;
                            let sql = frontend::parse_query_text(&def.parse[HEADER_LEN..])?;
                            if text.replace(sql).is_some_and(|t| t != sql) {
                                return None;
                            }
                        }
                    }
                }
                tag::DESCRIBE => {}
                tag::EXECUTE if executes == 0 => executes += 1,
                tag::SYNC => return text,
                _ => return None,
            }
            at = end;
        }
    }

    /// Frames nothing beyond the client's next request (counted by `tracker`)
    /// until [`Self::release_hold`]: what a SET inside the client's transaction
    /// needs to know before more of the client's statements may run (see
    /// `crate::tenant::inline`).
    pub fn hold_after_next_request(&mut self, tracker: &Tracker) {
        self.hold_base = Some(tracker.requests());
    }

    /// Whether a hold is armed (whether or not it has been reached yet).
    #[inline]
    pub fn holding(&self) -> bool {
        self.hold_base.is_some()
    }

    /// Whether the client sent bytes that are not framed yet (held, or cut short).
    #[inline]
    pub fn has_unframed(&self) -> bool {
        self.buf.len() > self.ready
    }

    pub fn release_hold(&mut self) {
        self.hold_base = None;
    }

    /// Queues `bytes` to go to the server ahead of everything the client sent.
    pub fn set_prefix(&mut self, bytes: Bytes) {
        debug_assert!(self.prefix.is_empty());
        self.prefix = bytes;
    }

    /// Gives the buffer up when nothing is in it, so idle clients hold none;
    /// the thread keeps it for another transaction (see `spare.rs`).
    pub fn release_buffer(&mut self) {
        if self.is_drained() && self.buf.capacity() > 0 {
            spare::give(std::mem::take(&mut self.buf));
        }
    }

    /// Frames newly read bytes. Stops at a message it must hold whole but does not have yet.
    ///
    /// With `prepared`, named statements are rewritten to their server names and
    /// prepared on this server where needed (see [`super::prepared`]).
    pub fn scan(
        &mut self,
        tracker: &mut Tracker,
        policy: Option<&TenantPolicy>,
        max_message: usize,
        mut prepared: Option<&mut Prepared<'_>>,
    ) -> Result<(), FrameError> {
        loop {
            if self.body_left > 0 {
                let avail = self.buf.len() - self.ready;
                if avail == 0 {
                    return Ok(());
                }
                let n = avail.min(self.body_left);
                self.ready += n;
                self.body_left -= n;
                continue;
            }
            if self.discard_left > 0 {
                // The body of a refused message too large to hold: drop it as it arrives.
                let avail = self.buf.len() - self.ready;
                if avail == 0 {
                    return Ok(());
                }
                let n = avail.min(self.discard_left);
                refuse::splice(&mut self.buf, self.ready, n, &[]);
                self.discard_left -= n;
                continue;
            }
            if self
                .hold_base
                .is_some_and(|base| tracker.requests() != base)
            {
                return Ok(());
            }
            let Some(header) = Header::parse(&self.buf[self.ready..])? else {
                return Ok(());
            };
            let total = header.total_len();
            let have = self.buf.len() - self.ready;
            match header.tag {
                tag::TERMINATE => {
                    // Not for the server: it would end a pooled connection. Nothing after it counts.
                    self.buf.truncate(self.ready);
                    self.terminated = true;
                    return Ok(());
                }
                tag::QUERY | tag::PARSE => {
                    let whole = total <= max_message;
                    if whole && have < total {
                        self.need = self.ready + total;
                        return Ok(());
                    }
                    self.need = 0;
                    let query = header.tag == tag::QUERY;
                    tracker.counts.queries += u64::from(query);
                    if query {
                        // A simple Query destroys the unnamed statement.
                        tracker.unnamed_parsed = false;
                    }
                    if let Some(watch) = &self.watch {
                        let touched = !whole || {
                            let body = &self.buf[self.ready + HEADER_LEN..self.ready + total];
                            watch.may_change_extra(if query {
                                frontend::query_text(body)
                            } else {
                                frontend::parse_query_text(body).unwrap_or(body)
                            })
                        };
                        tracker.params_touched |= touched;
                    }
                    if let Some(policy) = policy {
                        if whole {
                            if self.inspect(header, total, policy, tracker) {
                                continue;
                            }
                        } else if policy.guard().is_some() {
                            // Too big to check: refuse it, dropping its body as it streams in.
                            self.refuse(header, 0, refuse::OVERSIZED, tracker);
                            self.discard_left = header.body_len;
                            continue;
                        } else {
                            // Relayed uninspected, so stop trusting the setting (for good
                            // if it is a Parse: it may be named and executed later).
                            tracker.tenant_touched = true;
                            tracker.tenant_tainted |= !query;
                        }
                    }
                    if let (true, Some(p)) = (whole, prepared.as_deref_mut()) {
                        let handled = if query {
                            self.query_statements(total, p, tracker)
                        } else {
                            self.parse_statement(total, p, policy, tracker)
                        };
                        if handled {
                            continue;
                        }
                    }
                    if !query && self.buf.get(self.ready + HEADER_LEN) == Some(&0) {
                        tracker.unnamed_parsed = true;
                    }
                    tracker.sent(if query { Answer::Query } else { Answer::Parse });
                }
                tag::BIND | tag::DESCRIBE | tag::CLOSE if prepared.is_some() => {
                    // Their statement names are needed whole: at most a small prefix.
                    let wanted = total.min(HEADER_LEN + NAMES_LIMIT);
                    if have < wanted {
                        self.need = self.ready + wanted;
                        return Ok(());
                    }
                    self.need = 0;
                    let p = prepared.as_deref_mut().expect("checked");
                    if self.statement_message(header, p, tracker) {
                        continue;
                    }
                    // Not rewritten (a portal, or a name the client never prepared): as is.
                    tracker.sent(self.answer_to(header.tag));
                }
                tag::BIND | tag::DESCRIBE | tag::CLOSE => tracker.sent(self.answer_to(header.tag)),
                tag::EXECUTE => {
                    tracker.counts.queries += 1;
                    tracker.sent(Answer::Execute)
                }
                tag::SYNC => tracker.sent(Answer::Sync),
                tag::FLUSH => tracker.flush_sent(),
                tag::FUNCTION_CALL => {
                    // A fastpath call names its function by OID (set_config is one
                    // away), so nothing can check what it does.
                    if policy.is_some_and(|p| p.guard().is_some()) {
                        let held = header.body_len.min(have - HEADER_LEN);
                        self.refuse(header, held, refuse::FASTPATH, tracker);
                        self.discard_left = header.body_len - held;
                        continue;
                    }
                    if policy.is_some() {
                        tracker.tenant_touched = true;
                    }
                    tracker.counts.queries += 1;
                    tracker.sent(Answer::Query);
                }
                tag::COPY_DONE | tag::COPY_FAIL => tracker.copy_end_sent(),
                _ => {}
            }
            self.ready += HEADER_LEN;
            self.body_left = header.body_len;
        }
    }

    /// The answer a Bind, Describe or Close at `ready` gets.
    fn answer_to(&self, tag: u8) -> Answer {
        match (tag, self.buf.get(self.ready + HEADER_LEN)) {
            (tag::BIND, _) => Answer::Bind,
            (tag::DESCRIBE, Some(&b'S')) => Answer::DescribeStatement,
            (tag::DESCRIBE, _) => Answer::DescribePortal,
            _ => Answer::Close,
        }
    }

    /// Replaces `old_len` bytes at `ready` with `new` and moves past them.
    fn emit_at_ready(&mut self, old_len: usize, new: &[u8]) {
        refuse::splice(&mut self.buf, self.ready, old_len, new);
        self.ready += new.len();
    }

    /// Checks a whole Query/Parse at `ready` against the guard and the setting
    /// scanner. Returns true when it was refused (and replaced in the buffer).
    fn inspect(
        &mut self,
        header: Header,
        total: usize,
        policy: &TenantPolicy,
        tracker: &mut Tracker,
    ) -> bool {
        let body = &self.buf[self.ready + HEADER_LEN..self.ready + total];
        let text = if header.tag == tag::QUERY {
            frontend::query_text(body)
        } else {
            frontend::parse_query_text(body).unwrap_or(body)
        };
        if let Some(guard) = policy.guard() {
            if let Err(violation) = guard.check(text) {
                self.refuse(header, header.body_len, violation.code(), tracker);
                return true;
            }
        }
        if policy.may_change_setting(text) {
            tracker.tenant_touched = true;
            // A named statement can be executed in any later transaction on
            // this server, uninspected.
            if header.tag == tag::PARSE && body.first() != Some(&0) {
                tracker.tenant_tainted = true;
            }
        }
        false
    }

    /// Replaces the message at `ready` (its header and the `held` body bytes in
    /// the buffer) with one that fails on the server, and moves past it.
    fn refuse(&mut self, header: Header, held: usize, code: u8, tracker: &mut Tracker) {
        let replacement = if header.tag == tag::PARSE {
            let body_end = (self.ready + HEADER_LEN + held).min(self.buf.len());
            refuse::parse(&self.buf[self.ready + HEADER_LEN..body_end], code)
        } else {
            refuse::query(code)
        };
        refuse::splice(&mut self.buf, self.ready, HEADER_LEN + held, &replacement);
        self.ready += replacement.len();
        tracker.refusals += 1;
        // The pooler's own 42P05 for a duplicate statement name is not the guard's.
        tracker.counts.guard_refusals += u64::from(code != refuse::DUPLICATE_STATEMENT);
        tracker.sent(if header.tag == tag::PARSE {
            Answer::Parse
        } else {
            Answer::Query
        });
    }

    /// Writes what is ready (prefix first) to the server.
    pub fn poll_write_to<W: AsyncWrite + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        dst: &mut W,
    ) -> Poll<io::Result<()>> {
        let n = if self.prefix.is_empty() {
            let n = ready!(Pin::new(dst).poll_write(cx, &self.buf[..self.ready]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            n
        } else {
            let bufs = [
                IoSlice::new(&self.prefix),
                IoSlice::new(&self.buf[..self.ready]),
            ];
            let n = ready!(Pin::new(dst).poll_write_vectored(cx, &bufs))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            let from_prefix = n.min(self.prefix.len());
            self.prefix.advance(from_prefix);
            n - from_prefix
        };
        self.buf.advance(n);
        self.ready -= n;
        self.need = self.need.saturating_sub(n);
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests;
