//! Knowing when a transaction is over: which requests still await a
//! ReadyForQuery, whether an extended-protocol batch is open, and COPY state.
//!
//! A server may go back to the pool only when every Query/Sync/FunctionCall sent
//! to it has been answered, the last answer said idle (`I`), and the client is not
//! mid-batch or mid-COPY. Counting answers rather than trusting the first
//! ReadyForQuery keeps pipelined clients (many Syncs in flight) correct.

use std::collections::VecDeque;

/// A message that the server answers with exactly one ReadyForQuery.
#[derive(Debug, Clone, Copy)]
struct SyncPoint {
    /// A Sync (which PostgreSQL ignores during COPY IN), rather than a Query or FunctionCall.
    is_sync: bool,
    /// How many CopyDone/CopyFail the client had sent before this message.
    copy_epoch: u32,
}

#[derive(Debug)]
pub struct Tracker {
    pending: VecDeque<SyncPoint>,
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
}

impl Default for Tracker {
    fn default() -> Self {
        Tracker {
            pending: VecDeque::new(),
            status: b'I',
            batch_open: false,
            copy_ends: 0,
            copy_ins: 0,
            tenant_touched: false,
            tenant_tainted: false,
            refusals: 0,
        }
    }
}

impl Tracker {
    /// A Query or FunctionCall went to the server.
    #[inline]
    pub fn query_sent(&mut self) {
        self.pending.push_back(SyncPoint {
            is_sync: false,
            copy_epoch: self.copy_ends,
        });
    }

    /// A Sync went to the server.
    #[inline]
    pub fn sync_sent(&mut self) {
        self.batch_open = false;
        // Sent while the server is in COPY IN (announced, not yet ended): it will be ignored.
        if self.copy_ins > self.copy_ends {
            return;
        }
        self.pending.push_back(SyncPoint {
            is_sync: true,
            copy_epoch: self.copy_ends,
        });
    }

    /// Parse, Bind, Describe, Execute, Close or Flush went to the server.
    #[inline]
    pub fn extended_sent(&mut self) {
        self.batch_open = true;
    }

    /// CopyDone or CopyFail went to the server.
    #[inline]
    pub fn copy_end_sent(&mut self) {
        self.copy_ends += 1;
    }

    /// The server sent CopyInResponse: Syncs already sent inside this COPY will be ignored.
    pub fn copy_in_started(&mut self) {
        let epoch = self.copy_ins;
        self.pending
            .retain(|p| !(p.is_sync && p.copy_epoch == epoch));
        self.copy_ins += 1;
    }

    /// The server sent ReadyForQuery with `status`.
    #[inline]
    pub fn ready_for_query(&mut self, status: u8) {
        self.status = status;
        self.pending.pop_front();
    }

    /// Whether the server holds no transaction and owes the client nothing.
    #[inline]
    pub fn is_idle(&self) -> bool {
        self.pending.is_empty()
            && self.status == b'I'
            && !self.batch_open
            && self.copy_ins == self.copy_ends
    }

    /// Whether the server sits in an open transaction with nothing in flight, so a
    /// ROLLBACK would return it to idle.
    pub fn is_idle_in_transaction(&self) -> bool {
        self.pending.is_empty()
            && self.status != b'I'
            && !self.batch_open
            && self.copy_ins == self.copy_ends
    }

    pub fn status(&self) -> u8 {
        self.status
    }

    /// Ready for the next transaction (after the server went back or was dropped).
    pub fn reset(&mut self) {
        self.pending.clear();
        self.status = b'I';
        self.batch_open = false;
        self.copy_ends = 0;
        self.copy_ins = 0;
        self.tenant_touched = false;
        self.tenant_tainted = false;
        self.refusals = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipelined_queries_need_all_answers() {
        let mut t = Tracker::default();
        t.query_sent();
        t.query_sent();
        t.ready_for_query(b'I');
        assert!(!t.is_idle());
        t.ready_for_query(b'I');
        assert!(t.is_idle());
    }

    #[test]
    fn explicit_transaction_holds_until_idle() {
        let mut t = Tracker::default();
        t.query_sent();
        t.ready_for_query(b'T');
        assert!(!t.is_idle());
        assert!(t.is_idle_in_transaction());
        t.query_sent();
        t.ready_for_query(b'I');
        assert!(t.is_idle());
    }

    #[test]
    fn open_batch_holds() {
        let mut t = Tracker::default();
        t.extended_sent();
        assert!(!t.is_idle());
        t.sync_sent();
        assert!(!t.is_idle());
        t.ready_for_query(b'I');
        assert!(t.is_idle());
    }

    #[test]
    fn extended_copy_in_ignores_sync_sent_with_execute() {
        // libpq: Parse/Bind/Execute/Sync, then CopyData..., CopyDone, Sync.
        let mut t = Tracker::default();
        t.extended_sent();
        t.sync_sent();
        t.copy_in_started();
        assert!(!t.is_idle());
        t.copy_end_sent();
        t.sync_sent();
        t.ready_for_query(b'I');
        assert!(t.is_idle());
    }

    #[test]
    fn sync_sent_during_copy_in_is_ignored() {
        let mut t = Tracker::default();
        t.extended_sent();
        t.copy_in_started();
        t.sync_sent(); // arrives while in COPY IN
        t.copy_end_sent();
        t.sync_sent();
        t.ready_for_query(b'I');
        assert!(t.is_idle());
    }

    #[test]
    fn simple_copy_in() {
        let mut t = Tracker::default();
        t.query_sent();
        t.copy_in_started();
        t.copy_end_sent();
        t.ready_for_query(b'I');
        assert!(t.is_idle());
    }
}
