//! What the client is owed: for every message sent to the server (or answered
//! by the pooler itself), the answer it expects, in order.
//!
//! This tells when a transaction is over (every answer in, the last
//! ReadyForQuery idle, no batch or COPY open), and lets the pooler add messages
//! of its own (a Parse re-preparing a statement on this server, a Close
//! evicting one) and drop their answers, or answer a client message itself (a
//! ParseComplete for a statement the server already has) at exactly the point
//! PostgreSQL would have. After an error in an extended-protocol batch the
//! server skips everything up to Sync; so does this queue, dropping the answers
//! the pooler would have given.

use std::collections::VecDeque;

use bytes::Bytes;

use super::prepared::ServerName;

/// The kind of answer a frontend message gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// ParseComplete.
    Parse,
    /// BindComplete.
    Bind,
    /// ParameterDescription then RowDescription or NoData.
    DescribeStatement,
    /// RowDescription or NoData.
    DescribePortal,
    /// Rows, then CommandComplete, EmptyQueryResponse or PortalSuspended (or a COPY).
    Execute,
    /// CloseComplete.
    Close,
    /// ReadyForQuery.
    Sync,
    /// Anything, then ReadyForQuery.
    Query,
}

impl Answer {
    /// Part of an extended-protocol batch (skipped after an error until Sync).
    fn extended(self) -> bool {
        !matches!(self, Answer::Sync | Answer::Query)
    }
}

/// An answer the pooler gives itself.
#[derive(Debug, Clone)]
pub enum Synth {
    ParseComplete,
    CloseComplete,
    /// Ready-made messages (e.g. CommandComplete and ReadyForQuery).
    Raw(Bytes),
}

#[derive(Debug, Clone)]
enum Owed {
    /// Relay the server's answer to the client.
    Relay(Answer),
    /// Our own message: drop its answer (an error still reaches the client).
    Swallow(Answer),
    /// Answered by us when its turn comes.
    Synthetic(Synth),
}

/// What to do when a Parse fails: the statement it named does not exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseFailure {
    pub server_name: ServerName,
    /// The client's own name for it, when the client sent this Parse.
    pub client_name: Option<Box<[u8]>>,
}

#[derive(Debug, Clone)]
struct Entry {
    owed: Owed,
    /// CopyDone/CopyFail messages the client had sent before this one.
    copy_epoch: u32,
    failure: Option<ParseFailure>,
}

/// What to do with one server message.
#[derive(Debug, Default)]
pub struct Disposition {
    /// Drop it instead of relaying it.
    pub swallow: bool,
    /// A Parse failed: forget the statement it would have created.
    pub failed: Option<ParseFailure>,
}

/// What one client's relays did since the session last took them: plain
/// integers on the hot path, added to the pool's counters once per transaction.
#[derive(Debug, Default)]
pub struct Counts {
    /// Simple Queries, Executes and function calls sent.
    pub queries: u64,
    /// Bytes read from the client, and from the server for the client.
    pub received: u64,
    pub sent: u64,
    /// Statements the tenant-context guard refused.
    pub guard_refusals: u64,
    /// SQLSTATE classes of the server's ErrorResponses relayed to the client.
    pub error_classes: Vec<[u8; 2]>,
}

#[derive(Debug)]
pub struct Tracker {
    owed: VecDeque<Entry>,
    /// Kept across transactions until the session takes them.
    pub counts: Counts,
    /// Transaction status from the last ReadyForQuery: `I`, `T` or `E`.
    status: u8,
    /// Extended-protocol messages sent since the last Sync.
    batch_open: bool,
    /// CopyDone/CopyFail messages the client has sent.
    copy_ends: u32,
    /// CopyInResponse messages the server has sent.
    copy_ins: u32,
    /// Something the client ran may have changed the tenant setting.
    pub tenant_touched: bool,
    /// The client prepared a named statement that may change the setting, which
    /// stays on the server and can run later unseen.
    pub tenant_tainted: bool,
    /// Refused statements sent as failing replacements whose errors are yet to be
    /// rewritten (errors are held and checked while this is non-zero).
    pub refusals: u32,
    /// This transaction sent a Parse of the unnamed statement (so a Bind of it
    /// refers to the client's own, not one a previous client left on the server).
    pub unnamed_parsed: bool,
    /// SQL that may change a tracked setting the server does not report ran:
    /// read those back after the transaction.
    pub params_touched: bool,
    /// Client requests (Query, Sync: each answered by a ReadyForQuery) sent to
    /// the server so far; wraps.
    requests: u32,
}

impl Default for Tracker {
    fn default() -> Self {
        Tracker {
            // One extended-protocol request owes five answers (Parse, Bind,
            // Describe, Execute, Sync): room for them without regrowing.
            owed: VecDeque::with_capacity(8),
            counts: Counts::default(),
            status: b'I',
            batch_open: false,
            copy_ends: 0,
            copy_ins: 0,
            tenant_touched: false,
            tenant_tainted: false,
            refusals: 0,
            unnamed_parsed: false,
            requests: 0,
            params_touched: false,
        }
    }
}

impl Tracker {
    fn push(&mut self, owed: Owed, failure: Option<ParseFailure>) {
        if matches!(owed, Owed::Relay(Answer::Query | Answer::Sync)) {
            self.requests = self.requests.wrapping_add(1);
        }
        self.owed.push_back(Entry {
            owed,
            copy_epoch: self.copy_ends,
            failure,
        });
    }

    /// A client message went to the server; its answer is relayed.
    #[inline]
    pub fn sent(&mut self, answer: Answer) {
        match answer {
            Answer::Sync => return self.sync_sent(),
            Answer::Query => {}
            _ => self.batch_open = true,
        }
        self.push(Owed::Relay(answer), None);
    }

    /// A client Parse of a named statement went to the server (as `failure.server_name`).
    pub fn sent_parse(&mut self, failure: ParseFailure) {
        self.batch_open = true;
        self.push(Owed::Relay(Answer::Parse), Some(failure));
    }

    /// Client requests sent to the server so far (wrapping): a Query or a Sync.
    #[inline]
    pub fn requests(&self) -> u32 {
        self.requests
    }

    /// A message of our own went to the server; its answer is dropped.
    pub fn injected(&mut self, answer: Answer, failure: Option<ParseFailure>) {
        self.push(Owed::Swallow(answer), failure);
    }

    /// A client message the pooler answers itself, in its turn.
    pub fn synthetic(&mut self, synth: Synth) {
        self.batch_open |= !matches!(synth, Synth::Raw(_));
        self.push(Owed::Synthetic(synth), None);
    }

    /// A client Flush: no answer, but the batch is open.
    #[inline]
    pub fn flush_sent(&mut self) {
        self.batch_open = true;
    }

    fn sync_sent(&mut self) {
        self.batch_open = false;
        // Sent while the server is in COPY IN (announced, not yet ended): it will be ignored.
        if self.copy_ins > self.copy_ends {
            return;
        }
        self.push(Owed::Relay(Answer::Sync), None);
    }

    /// CopyDone or CopyFail went to the server.
    #[inline]
    pub fn copy_end_sent(&mut self) {
        self.copy_ends += 1;
    }

    /// Answers the pooler gives now: those at the front of the queue, whose
    /// turn has come. Appends their bytes to `out`.
    pub fn take_synthetic(&mut self, out: &mut bytes::BytesMut) {
        while let Some(Entry {
            owed: Owed::Synthetic(_),
            ..
        }) = self.owed.front()
        {
            let Some(Entry {
                owed: Owed::Synthetic(s),
                ..
            }) = self.owed.pop_front()
            else {
                unreachable!()
            };
            match s {
                Synth::ParseComplete => out.extend_from_slice(b"1\0\0\0\x04"),
                Synth::CloseComplete => out.extend_from_slice(b"3\0\0\0\x04"),
                Synth::Raw(b) => out.extend_from_slice(&b),
            }
        }
    }

    /// Accounts for one server message with `tag` (and, for ReadyForQuery, its status).
    pub fn on_message(&mut self, tag: u8, status: u8) -> Disposition {
        let (answer, swallow) = match self.owed.front().map(|e| &e.owed) {
            Some(Owed::Relay(a)) => (Some(*a), false),
            Some(Owed::Swallow(a)) => (Some(*a), true),
            Some(Owed::Synthetic(_)) | None => (None, false),
        };
        let mut d = Disposition::default();
        match tag {
            // Asynchronous messages belong to no request.
            b'N' | b'S' | b'A' => return d,
            b'E' => {
                match answer {
                    Some(a) if a.extended() => {
                        d.failed = self.owed.pop_front().and_then(|e| e.failure);
                        // The server now skips to Sync: so do we.
                        while let Some(e) = self.owed.front() {
                            if matches!(e.owed, Owed::Relay(Answer::Sync)) {
                                break;
                            }
                            self.owed.pop_front();
                        }
                    }
                    // A Query's error, or one at Sync: ReadyForQuery still follows.
                    _ => {}
                }
                return d; // errors always reach the client
            }
            b'Z' => {
                self.status = status;
                if matches!(answer, Some(Answer::Sync | Answer::Query)) {
                    self.owed.pop_front();
                }
                return Disposition { swallow, ..d };
            }
            b'G' => self.copy_in_started(),
            _ => {}
        }
        let ends = matches!(
            (answer, tag),
            (Some(Answer::Parse), b'1')
                | (Some(Answer::Bind), b'2')
                | (Some(Answer::Close), b'3')
                | (
                    Some(Answer::DescribeStatement | Answer::DescribePortal),
                    b'T' | b'n'
                )
                | (Some(Answer::Execute), b'C' | b'I' | b's')
        );
        d.swallow = swallow;
        if ends {
            self.owed.pop_front();
        }
        d
    }

    /// The server sent CopyInResponse: Syncs already sent inside this COPY will be ignored.
    fn copy_in_started(&mut self) {
        let epoch = self.copy_ins;
        self.owed
            .retain(|e| !(matches!(e.owed, Owed::Relay(Answer::Sync)) && e.copy_epoch == epoch));
        self.copy_ins += 1;
    }

    /// Whether the server holds no transaction and owes the client nothing.
    #[inline]
    pub fn is_idle(&self) -> bool {
        self.owed.is_empty()
            && self.status == b'I'
            && !self.batch_open
            && self.copy_ins == self.copy_ends
    }

    /// Whether the server sits in an open transaction with nothing in flight, so a
    /// ROLLBACK would return it to idle.
    pub fn is_idle_in_transaction(&self) -> bool {
        self.owed.is_empty()
            && self.status != b'I'
            && !self.batch_open
            && self.copy_ins == self.copy_ends
    }

    pub fn status(&self) -> u8 {
        self.status
    }

    /// Ready for the next transaction (after the server went back or was dropped).
    pub fn reset(&mut self) {
        self.owed.clear();
        self.status = b'I';
        self.batch_open = false;
        self.copy_ends = 0;
        self.copy_ins = 0;
        self.tenant_touched = false;
        self.tenant_tainted = false;
        self.refusals = 0;
        self.unnamed_parsed = false;
        self.params_touched = false;
    }
}

#[cfg(test)]
mod tests;
