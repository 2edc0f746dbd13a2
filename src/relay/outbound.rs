//! Server → client: frame what the server sends, follow ReadyForQuery and COPY
//! state, swallow the answer to our own tenant SET, and pass the rest on unchanged.

use bytes::{Buf, BytesMut};

use super::inbound::{HIGH_WATER, READ_CHUNK};
use super::prepared::Prepared;
use super::refuse;
use super::track::Tracker;
use crate::protocol::backend::{self, ErrorFields};
use crate::protocol::{tag, FrameError, Header, HEADER_LEN};
use crate::tenant::TenantPolicy;

/// Largest message we hold whole from a server (ReadyForQuery, the answer to our SET).
const MAX_HELD: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("server sent an oversized '{}' message where a small one was expected", char::from(*.0))]
    Oversized(u8),
    #[error("preparing the server connection (tenant or session settings) failed: {0}")]
    TenantSet(ErrorFields),
    #[error("the server reported transaction status '{}' after a single statement", char::from(*.0))]
    StillInTransaction(u8),
}

/// The server-to-client direction's framing state. The bytes themselves live in
/// the server connection's buffer.
#[derive(Debug, Default)]
pub struct ServerHalf {
    ready: usize,
    body_left: usize,
    need: usize,
    /// Answers to queries of the pooler's own (tenant SET, session settings) still
    /// to come, each up to its ReadyForQuery; they must not reach the client.
    pub swallowing: u8,
    /// The answer to a tenant SET sent without Sync (see [`crate::tenant::inline`])
    /// is still to come, up to its CommandComplete; after any `swallowing`.
    pub swallowing_unsynced: bool,
    /// The unsynced SET's transaction has not ended yet: the client's first
    /// ReadyForQuery ends it, and puts its status in `fate`.
    pub awaiting_fate: bool,
    pub fate: u8,
    /// The SET was sent again after its transaction failed (for the SET count).
    pub set_resent: bool,
    /// An ErrorResponse or a ROLLBACK went by: a SET made inside the transaction
    /// may have been undone. Cleared by the session when it sends one.
    pub rollback_seen: bool,
    /// Statement mode: a ReadyForQuery inside a transaction block is not relayed,
    /// and this is set instead.
    pub refuse_transactions: bool,
    pub transaction_block: bool,
    /// ParameterStatus the server sent the client (a setting changed): (name, value).
    pub reported: Vec<(String, String)>,
}

impl ServerHalf {
    #[inline]
    pub fn has_output(&self) -> bool {
        self.ready > 0
    }

    #[inline]
    pub fn wants_read(&self, buf: &BytesMut) -> bool {
        buf.len() < HIGH_WATER.max(self.need)
    }

    #[inline]
    pub fn reserve(buf: &mut BytesMut) {
        if buf.capacity() - buf.len() < READ_CHUNK {
            buf.reserve(READ_CHUNK);
        }
    }

    /// Whether everything read has been written and no message is cut.
    #[inline]
    pub fn is_drained(&self, buf: &BytesMut) -> bool {
        buf.is_empty() && self.body_left == 0 && !self.swallows()
    }

    /// Whether answers to the pooler's own statements are still to come.
    #[inline]
    fn swallows(&self) -> bool {
        self.swallowing > 0 || self.swallowing_unsynced
    }

    /// `n` bytes were written to the client.
    #[inline]
    pub fn consumed(&mut self, buf: &mut BytesMut, n: usize) {
        buf.advance(n);
        self.ready -= n;
        self.need = self.need.saturating_sub(n);
    }

    pub fn ready_bytes<'a>(&self, buf: &'a BytesMut) -> &'a [u8] {
        &buf[..self.ready]
    }

    /// Frames newly read bytes.
    /// `policy` and `max_message` are needed only to word the errors of refused statements.
    pub fn scan(
        &mut self,
        buf: &mut BytesMut,
        tracker: &mut Tracker,
        policy: Option<&TenantPolicy>,
        max_message: usize,
        mut prepared: Option<&mut Prepared<'_>>,
    ) -> Result<(), OutboundError> {
        loop {
            if self.body_left > 0 {
                let avail = buf.len() - self.ready;
                if avail == 0 {
                    return Ok(());
                }
                let n = avail.min(self.body_left);
                self.ready += n;
                self.body_left -= n;
                continue;
            }
            let Some(header) = Header::parse(&buf[self.ready..])? else {
                return Ok(());
            };
            let total = header.total_len();
            // Messages that end a request are held whole, so that answers the pooler
            // gives itself can be placed right after them. They are all small.
            let ends = ends_a_request(header.tag);
            let held = self.swallows() || ends || header.tag == tag::PARAMETER_STATUS;
            if held {
                if header.body_len > MAX_HELD.max(max_message) {
                    return Err(OutboundError::Oversized(header.tag));
                }
                if buf.len() - self.ready < total {
                    self.need = self.ready + total;
                    return Ok(());
                }
                self.need = 0;
            }
            if self.swallows() {
                // Our statements went first, so their answers are at the front of the buffer.
                debug_assert_eq!(self.ready, 0);
                match header.tag {
                    tag::ERROR_RESPONSE => {
                        let fields = backend::decode_error_fields(&buf[HEADER_LEN..total]);
                        return Err(OutboundError::TenantSet(fields));
                    }
                    tag::READY_FOR_QUERY if self.swallowing > 0 => self.swallowing -= 1,
                    // The unsynced SET's last answer (it follows any Query's). It must
                    // be the SET's: a prepared statement of ours that someone replaced
                    // would answer otherwise, and then the setting is not the tenant.
                    tag::COMMAND_COMPLETE if self.swallowing == 0 => {
                        if &buf[HEADER_LEN..total] != b"SET\0" {
                            return Err(OutboundError::TenantSet(ErrorFields {
                                severity: "ERROR".into(),
                                code: "XX000".into(),
                                message: format!(
                                    "the tenant SET was answered \"{}\"",
                                    String::from_utf8_lossy(&buf[HEADER_LEN..total - 1])
                                ),
                                detail: None,
                            }));
                        }
                        self.swallowing_unsynced = false
                    }
                    _ => {} // ParseComplete, BindComplete, CommandComplete "SET", a notice
                }
                buf.advance(total);
                if !self.swallows() {
                    // Answers the pooler gave itself meanwhile now go first.
                    self.emit_synthetic(buf, tracker);
                }
                continue;
            }
            let status = if header.tag == tag::READY_FOR_QUERY {
                buf.get(self.ready + HEADER_LEN).copied().unwrap_or(b'I')
            } else {
                0
            };
            if status != 0 && self.awaiting_fate {
                self.awaiting_fate = false;
                self.fate = status;
            }
            let disposition = tracker.on_message(header.tag, status);
            if status != 0 && status != b'I' && self.refuse_transactions {
                // Statement mode: the client opened a transaction block. It never
                // sees this ReadyForQuery; the session refuses it and rolls back.
                refuse::splice(buf, self.ready, total, &[]);
                self.transaction_block = true;
                return Ok(());
            }
            if header.tag == tag::PARAMETER_STATUS {
                let body = &buf[self.ready + HEADER_LEN..self.ready + total];
                let mut parts = body.split(|&b| b == 0);
                if let (Some(name), Some(value)) = (parts.next(), parts.next()) {
                    self.reported.push((
                        String::from_utf8_lossy(name).into_owned(),
                        String::from_utf8_lossy(value).into_owned(),
                    ));
                }
            }
            if let (Some(failed), Some(p)) = (&disposition.failed, prepared.as_deref_mut()) {
                // A Parse failed: the server does not have that statement, nor the client its name.
                p.server.remove(&failed.server_name);
                if let Some(name) = &failed.client_name {
                    p.client.remove(name);
                }
            }
            if header.tag == tag::COMMAND_COMPLETE {
                let done = &buf[self.ready + HEADER_LEN..self.ready + total];
                // Also ROLLBACK TO SAVEPOINT and ROLLBACK PREPARED: unsure means undone.
                self.rollback_seen |= done.starts_with(b"ROLLBACK");
                if let Some(p) = prepared.as_deref_mut() {
                    // However it was sent (simple or extended, alone or in a batch), the
                    // server has just dropped every prepared statement: so has the client.
                    let done = &buf[self.ready + HEADER_LEN..self.ready + total];
                    if done == b"DEALLOCATE ALL\0" || done == b"DISCARD ALL\0" {
                        p.client.clear();
                        p.server.clear();
                    } else if done == b"DEALLOCATE\0" || done == b"PREPARE\0" {
                        // SQL-level, by a name the pooler did not rewrite: it may be
                        // one of ours (they are visible in pg_prepared_statements).
                        p.server.forget_tenant_sets();
                    }
                }
            }
            if header.tag == tag::ERROR_RESPONSE {
                self.rollback_seen = true;
                let body = &buf[self.ready + HEADER_LEN..self.ready + total];
                if let Some(class) = sqlstate_class(body) {
                    tracker.counts.error_classes.push(class);
                }
            }
            if header.tag == tag::ERROR_RESPONSE && tracker.refusals > 0 {
                // While refused statements are in flight, errors are checked for theirs.
                let body = &buf[self.ready + HEADER_LEN..self.ready + total];
                if let Some(code) = refuse::refused_code(body) {
                    let ours = refuse::client_error(code, policy, max_message);
                    refuse::splice(buf, self.ready, total, &ours);
                    self.ready += ours.len();
                    tracker.refusals -= 1;
                    self.emit_synthetic(buf, tracker);
                    continue;
                }
            }
            if disposition.swallow {
                // The answer to a message of our own (a re-prepare or an eviction).
                refuse::splice(buf, self.ready, total, &[]);
            } else if held {
                self.ready += total;
            } else {
                self.ready += HEADER_LEN;
                self.body_left = header.body_len;
            }
            if ends {
                self.emit_synthetic(buf, tracker);
            }
        }
    }

    /// Drops what was framed but not yet written to the client (statement mode's
    /// refused transaction block: the client is told why instead).
    pub fn drop_output(&mut self, buf: &mut BytesMut) {
        buf.advance(self.ready);
        self.ready = 0;
    }

    /// Places the answers the pooler gives itself, whose turn has come, at the
    /// current position (before any server bytes not yet framed).
    fn emit_synthetic(&mut self, buf: &mut BytesMut, tracker: &mut Tracker) {
        let mut ours = BytesMut::new();
        tracker.take_synthetic(&mut ours);
        if !ours.is_empty() {
            refuse::splice(buf, self.ready, 0, &ours);
            self.ready += ours.len();
        }
    }

    /// Answers the pooler gives itself when nothing from the server precedes
    /// them (called after the client's messages were framed).
    pub fn emit_pending(&mut self, buf: &mut BytesMut, tracker: &mut Tracker) {
        if self.body_left == 0 && !self.swallows() {
            self.emit_synthetic(buf, tracker);
        }
    }
}

/// The first two characters of an ErrorResponse's SQLSTATE (its `C` field).
fn sqlstate_class(body: &[u8]) -> Option<[u8; 2]> {
    let mut rest = body;
    while let Some((&field, tail)) = rest.split_first() {
        let end = memchr::memchr(0, tail)?;
        if field == b'C' {
            return tail.get(..2).and_then(|c| c.try_into().ok());
        }
        rest = &tail[end + 1..];
    }
    None
}

/// Messages that can end a request (and so change which request the next belongs to).
fn ends_a_request(tag: u8) -> bool {
    matches!(
        tag,
        b'1' | b'2' | b'3' | b'T' | b'n' | b'C' | b'I' | b's' | b'Z' | b'E'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn swallows_set_answer_and_relays_the_rest() {
        let mut half = ServerHalf {
            swallowing: 1,
            ..Default::default()
        };
        let mut t = Tracker::default();
        t.sent(crate::relay::track::Answer::Query);
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&msg(b'C', b"SET\0"));
        buf.extend_from_slice(&msg(b'Z', b"I"));
        let answer = [
            msg(b'T', b"\0\0"),
            msg(b'C', b"SELECT 1\0"),
            msg(b'Z', b"I"),
        ]
        .concat();
        buf.extend_from_slice(&answer);
        half.scan(&mut buf, &mut t, None, 1024, None).unwrap();
        assert_eq!(half.swallowing, 0);
        assert_eq!(half.ready_bytes(&buf), &answer[..]);
        assert!(t.is_idle());
    }

    #[test]
    fn swallows_unsynced_set_after_any_query_answer() {
        let mut half = ServerHalf {
            swallowing: 1,
            swallowing_unsynced: true,
            ..Default::default()
        };
        let mut t = Tracker::default();
        t.sent(crate::relay::track::Answer::Query);
        let mut buf = BytesMut::new();
        // The settings restore (a Query), then the unsynced SET: no ReadyForQuery of its own.
        for m in [
            msg(b'T', b"\0\0"),
            msg(b'C', b"SELECT 1\0"),
            msg(b'Z', b"I"),
            msg(b'1', b""),
            msg(b'2', b""),
            msg(b'C', b"SET\0"),
        ] {
            buf.extend_from_slice(&m);
        }
        let answer = [msg(b'C', b"ROLLBACK\0"), msg(b'Z', b"I")].concat();
        buf.extend_from_slice(&answer);
        half.scan(&mut buf, &mut t, None, 1024, None).unwrap();
        assert_eq!((half.swallowing, half.swallowing_unsynced), (0, false));
        assert_eq!(half.ready_bytes(&buf), &answer[..]);
        assert!(t.is_idle());
        assert!(half.rollback_seen, "the client's ROLLBACK undid the SET");
    }

    #[test]
    fn an_unsynced_set_answered_by_anything_but_set_fails() {
        // A prepared SET statement of ours that a client replaced would answer otherwise.
        let mut half = ServerHalf {
            swallowing_unsynced: true,
            ..Default::default()
        };
        let mut t = Tracker::default();
        let mut buf = BytesMut::new();
        for m in [msg(b'2', b""), msg(b'C', b"SELECT 1\0"), msg(b'Z', b"I")] {
            buf.extend_from_slice(&m);
        }
        match half.scan(&mut buf, &mut t, None, 1024, None) {
            Err(OutboundError::TenantSet(f)) => {
                assert_eq!(f.code, "XX000");
                assert!(f.message.contains("SELECT 1"), "{}", f.message);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_clients_own_prepare_or_deallocate_forgets_the_tenant_set_statements() {
        use crate::relay::prepared::{ClientStatements, Prepared, ServerStatements};
        for (done, forgotten) in [
            (&b"PREPARE\0"[..], true),
            (b"DEALLOCATE\0", true),
            (b"DEALLOCATE ALL\0", true),
            (b"SELECT 1\0", false),
        ] {
            let (mut client, mut server) =
                (ClientStatements::default(), ServerStatements::default());
            server.insert("tp_x".into(), 10);
            server.insert("tps0_acme".into(), 10);
            let mut half = ServerHalf::default();
            let mut t = Tracker::default();
            t.sent(crate::relay::track::Answer::Query);
            let mut buf = BytesMut::new();
            buf.extend_from_slice(&msg(b'C', done));
            buf.extend_from_slice(&msg(b'Z', b"I"));
            let mut p = Prepared {
                client: &mut client,
                server: &mut server,
                max: 10,
            };
            half.scan(&mut buf, &mut t, None, 1024, Some(&mut p))
                .unwrap();
            assert_eq!(!server.touch("tps0_acme"), forgotten, "{done:?}");
            assert_eq!(
                server.touch("tp_x"),
                done != b"DEALLOCATE ALL\0",
                "{done:?}"
            );
        }
    }

    #[test]
    fn errors_are_seen_as_rollbacks() {
        let mut half = ServerHalf::default();
        let mut t = Tracker::default();
        t.sent(crate::relay::track::Answer::Query);
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&msg(b'C', b"COMMIT\0"));
        half.scan(&mut buf, &mut t, None, 1024, None).unwrap();
        assert!(!half.rollback_seen);
        buf.extend_from_slice(&msg(b'E', b"SERROR\0C22012\0Mdivision by zero\0\0"));
        buf.extend_from_slice(&msg(b'Z', b"I"));
        half.scan(&mut buf, &mut t, None, 1024, None).unwrap();
        assert!(half.rollback_seen);
    }

    #[test]
    fn set_failure_is_reported() {
        let mut half = ServerHalf {
            swallowing: 1,
            ..Default::default()
        };
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&msg(b'E', b"SERROR\0C42501\0Mnope\0\0"));
        match half.scan(&mut buf, &mut Tracker::default(), None, 1024, None) {
            Err(OutboundError::TenantSet(f)) => assert_eq!(f.code, "42501"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ready_for_query_split_across_reads() {
        let mut half = ServerHalf::default();
        let mut t = Tracker::default();
        t.sent(crate::relay::track::Answer::Query);
        t.sent(crate::relay::track::Answer::Query);
        let z = msg(b'Z', b"T");
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&z);
        buf.extend_from_slice(&z[..3]);
        half.scan(&mut buf, &mut t, None, 1024, None).unwrap();
        assert_eq!(half.ready, 6);
        assert_eq!(t.status(), b'T');
        buf.extend_from_slice(&z[3..]);
        half.scan(&mut buf, &mut t, None, 1024, None).unwrap();
        assert_eq!(half.ready, 12);
    }
}
