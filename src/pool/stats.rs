//! Lock-free counters a pool keeps for admin views, metrics and tests.

use std::sync::atomic::{AtomicU64, Ordering};

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    #[inline]
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    #[inline]
    pub fn add(&self, n: u64) {
        if n > 0 {
            self.0.fetch_add(n, Ordering::Relaxed);
        }
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Default)]
pub struct PoolStats {
    /// Transactions (server checkouts in transaction mode) completed.
    pub transactions: Counter,
    /// Tenant SETs sent ahead of a client's first message on a server connection.
    pub tenant_sets_sent: Counter,
    /// Checkouts where the server already held the client's tenant, so no SET was sent.
    pub tenant_sets_skipped: Counter,
    /// Clients that gave up waiting after `query_wait_timeout`.
    pub wait_timeouts: Counter,
    /// Server logins that succeeded / failed.
    pub server_connects: Counter,
    pub server_connect_errors: Counter,
    /// Time to connect and log in to the server.
    pub connect_time: DurationStat,
    /// Simple Queries, Executes and function calls relayed.
    pub queries: Counter,
    /// Bytes received from clients, and sent to them (as read from the server).
    pub bytes_received: Counter,
    pub bytes_sent: Counter,
    /// Statements the tenant-context guard refused.
    pub guard_refusals: Counter,
    /// Server ErrorResponses relayed to clients, by SQLSTATE class. Locked only
    /// at the end of a transaction that had errors.
    server_errors: std::sync::Mutex<std::collections::BTreeMap<[u8; 2], u64>>,
    /// Clients currently queued for a connection.
    waiting: AtomicU64,
}

impl PoolStats {
    pub(super) fn waiting_inc(&self) {
        self.waiting.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn waiting_dec(&self) {
        self.waiting.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn waiting(&self) -> u64 {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Adds what a client's relays counted since the last call (once per transaction).
    pub fn add_relay_counts(&self, counts: &mut crate::relay::track::Counts) {
        self.queries.add(std::mem::take(&mut counts.queries));
        self.bytes_received
            .add(std::mem::take(&mut counts.received));
        self.bytes_sent.add(std::mem::take(&mut counts.sent));
        self.guard_refusals
            .add(std::mem::take(&mut counts.guard_refusals));
        if !counts.error_classes.is_empty() {
            let mut errors = self.server_errors.lock().unwrap_or_else(|e| e.into_inner());
            for class in counts.error_classes.drain(..) {
                *errors.entry(class).or_default() += 1;
            }
        }
    }

    /// Server errors relayed, by SQLSTATE class.
    pub fn server_errors(&self) -> Vec<(String, u64)> {
        let errors = self.server_errors.lock().unwrap_or_else(|e| e.into_inner());
        errors
            .iter()
            .map(|(c, n)| (String::from_utf8_lossy(c).into_owned(), *n))
            .collect()
    }
}

/// Count, sum and maximum of durations, in microseconds.
#[derive(Debug, Default)]
pub struct DurationStat {
    count: AtomicU64,
    total_us: AtomicU64,
    max_us: AtomicU64,
}

impl DurationStat {
    #[inline]
    pub fn record(&self, d: std::time::Duration) {
        let us = d.as_micros().min(u128::from(u64::MAX)) as u64;
        self.count.fetch_add(1, Ordering::Relaxed);
        self.total_us.fetch_add(us, Ordering::Relaxed);
        self.max_us.fetch_max(us, Ordering::Relaxed);
    }

    /// (count, total µs, max µs).
    pub fn get(&self) -> (u64, u64, u64) {
        (
            self.count.load(Ordering::Relaxed),
            self.total_us.load(Ordering::Relaxed),
            self.max_us.load(Ordering::Relaxed),
        )
    }
}

static NEXT_SERVER_ID: AtomicU64 = AtomicU64::new(1);

/// A process-unique id for a new server connection.
pub fn next_server_id() -> u64 {
    NEXT_SERVER_ID.fetch_add(1, Ordering::Relaxed)
}
