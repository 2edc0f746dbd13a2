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

use super::refuse;
use super::track::Tracker;
use crate::protocol::{frontend, tag, FrameError, Header, HEADER_LEN};
use crate::tenant::TenantPolicy;

/// Bytes buffered from a peer before we stop reading and let writes catch up.
pub(super) const HIGH_WATER: usize = 64 * 1024;
/// Smallest free space worth a read system call.
pub(super) const READ_CHUNK: usize = 8 * 1024;

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

    /// Makes room for a read.
    #[inline]
    pub fn reserve(&mut self) {
        if self.buf.capacity() - self.buf.len() < READ_CHUNK {
            self.buf.reserve(READ_CHUNK);
        }
    }

    /// Queues `bytes` to go to the server ahead of everything the client sent.
    pub fn set_prefix(&mut self, bytes: Bytes) {
        debug_assert!(self.prefix.is_empty());
        self.prefix = bytes;
    }

    /// Drops the buffer's memory when nothing is in it, so idle clients hold none.
    pub fn shrink_if_idle(&mut self) {
        if self.is_drained() && self.buf.capacity() > 0 {
            self.buf = BytesMut::new();
        }
    }

    /// Frames newly read bytes. Stops at a message it must hold whole but does not have yet.
    pub fn scan(
        &mut self,
        tracker: &mut Tracker,
        policy: Option<&TenantPolicy>,
        max_message: usize,
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
            let Some(header) = Header::parse(&self.buf[self.ready..])? else {
                return Ok(());
            };
            match header.tag {
                tag::TERMINATE => {
                    // Not for the server: it would end a pooled connection. Nothing after it counts.
                    self.buf.truncate(self.ready);
                    self.terminated = true;
                    return Ok(());
                }
                tag::QUERY | tag::PARSE => {
                    let total = header.total_len();
                    let whole = total <= max_message;
                    if whole && self.buf.len() - self.ready < total {
                        self.need = self.ready + total;
                        return Ok(());
                    }
                    self.need = 0;
                    if header.tag == tag::QUERY {
                        tracker.query_sent();
                    } else {
                        tracker.extended_sent();
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
                            tracker.tenant_tainted |= header.tag == tag::PARSE;
                        }
                    }
                }
                tag::SYNC => tracker.sync_sent(),
                tag::FUNCTION_CALL => {
                    tracker.query_sent();
                    // A fastpath call names its function by OID (set_config is one
                    // away), so nothing can check what it does.
                    if policy.is_some_and(|p| p.guard().is_some()) {
                        let held = header
                            .body_len
                            .min(self.buf.len() - self.ready - HEADER_LEN);
                        self.refuse(header, held, refuse::FASTPATH, tracker);
                        self.discard_left = header.body_len - held;
                        continue;
                    }
                    if policy.is_some() {
                        tracker.tenant_touched = true;
                    }
                }
                tag::BIND | tag::EXECUTE | tag::DESCRIBE | tag::CLOSE | tag::FLUSH => {
                    tracker.extended_sent()
                }
                tag::COPY_DONE | tag::COPY_FAIL => tracker.copy_end_sent(),
                _ => {}
            }
            self.ready += HEADER_LEN;
            self.body_left = header.body_len;
        }
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
mod tests {
    use super::*;
    use crate::config::{TenantConfig, TenantSource};

    fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    fn policy() -> TenantPolicy {
        TenantPolicy::new(&TenantConfig::new(TenantSource::UserSuffix)).unwrap()
    }

    #[test]
    fn holds_query_until_whole_then_inspects() {
        let mut half = ClientHalf::default();
        let mut t = Tracker::default();
        let p = policy();
        let q = msg(b'Q', b"RESET ALL\0");
        half.buf.extend_from_slice(&q[..7]);
        half.scan(&mut t, Some(&p), 1024).unwrap();
        assert!(!half.has_ready());
        assert!(!t.tenant_touched);
        half.buf.extend_from_slice(&q[7..]);
        half.scan(&mut t, Some(&p), 1024).unwrap();
        assert!(half.has_ready());
        assert!(t.tenant_touched);
        assert!(!t.is_idle());
    }

    #[test]
    fn streams_large_messages_and_strips_terminate() {
        let mut half = ClientHalf::default();
        let mut t = Tracker::default();
        let big = msg(b'd', &vec![1u8; 100_000]);
        half.buf.extend_from_slice(&big[..50_000]);
        half.scan(&mut t, None, 1024).unwrap();
        assert_eq!(half.ready, 50_000);
        half.buf.extend_from_slice(&big[50_000..]);
        half.buf.extend_from_slice(&msg(b'X', b""));
        half.scan(&mut t, None, 1024).unwrap();
        assert_eq!(half.ready, big.len());
        assert_eq!(half.buf.len(), big.len());
        assert!(half.terminated);
    }

    fn unguarded() -> TenantPolicy {
        let mut t = TenantConfig::new(TenantSource::UserSuffix);
        t.guard = false;
        TenantPolicy::new(&t).unwrap()
    }

    #[test]
    fn oversized_query_streams_and_marks_tenant_touched() {
        let mut half = ClientHalf::default();
        let mut t = Tracker::default();
        let p = unguarded();
        let mut body = vec![b'x'; 5000];
        body.push(0);
        half.buf.extend_from_slice(&msg(b'Q', &body)[..100]);
        half.scan(&mut t, Some(&p), 1024).unwrap();
        assert_eq!(half.ready, 100);
        assert!(t.tenant_touched);
    }

    #[test]
    fn guard_refuses_oversized_query_and_drops_its_body() {
        let mut half = ClientHalf::default();
        let mut t = Tracker::default();
        let p = policy();
        let mut body = vec![b'x'; 5000];
        body.push(0);
        let big = msg(b'Q', &body);
        half.buf.extend_from_slice(&big[..100]);
        half.scan(&mut t, Some(&p), 1024).unwrap();
        let replaced = half.ready;
        assert!(half.buf[..replaced]
            .windows(16)
            .any(|w| w == b"tenantpool_guard"));
        half.buf.extend_from_slice(&big[100..]);
        half.buf.extend_from_slice(&msg(b'S', b""));
        half.scan(&mut t, Some(&p), 1024).unwrap();
        assert_eq!(half.buf.len(), replaced + 5, "body dropped, Sync kept");
        assert_eq!(t.refusals, 1);
    }

    #[test]
    fn guard_replaces_a_refused_query_in_place() {
        let mut half = ClientHalf::default();
        let mut t = Tracker::default();
        let p = policy();
        half.buf.extend_from_slice(&msg(b'Q', b"select 1\0"));
        half.buf
            .extend_from_slice(&msg(b'Q', b"SET app.current_tenant = 'x'\0"));
        half.buf.extend_from_slice(&msg(b'Q', b"select 2\0"));
        half.scan(&mut t, Some(&p), 1024).unwrap();
        let out = &half.buf[..half.ready];
        assert!(out.starts_with(&msg(b'Q', b"select 1\0")));
        assert!(out.ends_with(&msg(b'Q', b"select 2\0")));
        assert!(!out.windows(11).any(|w| w == b"app.current"));
        assert_eq!(t.refusals, 1);
    }

    #[test]
    fn function_call_marks_tenant_touched_or_is_refused() {
        let mut half = ClientHalf::default();
        let mut t = Tracker::default();
        half.buf
            .extend_from_slice(&msg(b'F', &[0, 0, 8, 30, 0, 0, 0, 0, 0, 0]));
        half.scan(&mut t, Some(&unguarded()), 1024).unwrap();
        assert!(t.tenant_touched);
        assert!(!t.is_idle());

        let mut half = ClientHalf::default();
        let mut t = Tracker::default();
        half.buf
            .extend_from_slice(&msg(b'F', &[0, 0, 8, 30, 0, 0, 0, 0, 0, 0]));
        half.scan(&mut t, Some(&policy()), 1024).unwrap();
        assert_eq!(half.buf[0], b'Q', "replaced by a failing query");
        assert_eq!(t.refusals, 1);
    }

    #[test]
    fn named_parse_that_may_change_the_setting_taints_the_server() {
        let p = policy();
        let mut t = Tracker::default();
        let mut half = ClientHalf::default();
        half.buf
            .extend_from_slice(&msg(b'P', b"\0select set_config('a.b','x',false)\0\0\0"));
        half.scan(&mut t, Some(&p), 1024).unwrap();
        assert!(
            t.tenant_touched && !t.tenant_tainted,
            "unnamed: this transaction only"
        );
        let mut t = Tracker::default();
        let mut half = ClientHalf::default();
        half.buf
            .extend_from_slice(&msg(b'P', b"s1\0select set_config('a.b','x',false)\0\0\0"));
        half.scan(&mut t, Some(&p), 1024).unwrap();
        assert!(t.tenant_tainted);
    }

    #[test]
    fn bad_length_is_an_error() {
        let mut half = ClientHalf::default();
        half.buf.extend_from_slice(b"Q\0\0\0\x01");
        assert!(half.scan(&mut Tracker::default(), None, 1024).is_err());
    }
}
