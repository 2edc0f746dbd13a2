//! The handles one pool's hooks record into, created once when the pool is
//! made (so the hot path never looks a metric up by name).
//!
//! The free functions are the hooks: each is one line at its call site and
//! costs one `OnceLock` load when metrics are off.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use metrics::{Histogram, Label};

use super::tenants::TopTenants;
use super::{names, render, Metrics};
use crate::pool::Pool;
use crate::tenant::TenantId;

/// Hook (session): a client got a server connection after waiting `waited`.
#[inline]
pub fn waited(pool: &Pool, waited: Duration) {
    if let Some(m) = pool.metrics.get() {
        m.wait.record(waited.as_secs_f64());
    }
}

/// Hook (session): a transaction ended with the server idle, having held it for `held`.
#[inline]
pub fn transaction(pool: &Pool, held: Duration, tenant: Option<&TenantId>) {
    if let Some(m) = pool.metrics.get() {
        m.transaction.record(held.as_secs_f64());
        if let (Some(top), Some(tenant)) = (&m.tenants, tenant) {
            top.record(tenant.as_arc(), held);
        }
    }
}

/// Hook (pool): a server connection was opened and logged in, taking `took`.
#[inline]
pub fn connected(pool: &Pool, took: Duration) {
    if let Some(m) = pool.metrics.get() {
        m.connect.record(took.as_secs_f64());
        m.last_connect_ok.store(m.stamp(), Ordering::Relaxed);
    }
}

/// Hook (pool): opening a server connection failed.
#[inline]
pub fn connect_failed(pool: &Pool) {
    if let Some(m) = pool.metrics.get() {
        m.last_connect_err.store(m.stamp(), Ordering::Relaxed);
    }
}

/// One pool's metric handles and the little state the scrape-time figures need.
pub struct PoolMetrics {
    /// `database="..",user="..",mode=".."`, escaped, for the series rendered by hand.
    pub(super) labels: String,
    wait: Histogram,
    transaction: Histogram,
    connect: Histogram,
    /// Time the pool was seen full, in µs (sampled; see [`PoolMetrics::sample_full`]).
    full_us: AtomicU64,
    /// When the sampler last looked, as a stamp (0: never).
    last_sample: AtomicU64,
    /// Stamps of the last successful and the last failed server login (0: never).
    pub(super) last_connect_ok: AtomicU64,
    pub(super) last_connect_err: AtomicU64,
    /// Zero point of the stamps.
    epoch: Instant,
    /// Per-tenant accounting, when `top_tenants > 0`.
    pub(super) tenants: Option<TopTenants>,
    /// The last readiness probe (when, and its result), shared by concurrent probes.
    pub(super) probe: tokio::sync::Mutex<Option<(Instant, Result<(), String>)>>,
}

impl PoolMetrics {
    pub(super) fn new(metrics: &Metrics, pool: &Pool) -> Self {
        let database = pool.name.clone();
        let user = pool.target.user.clone();
        let mode = pool.settings().mode.as_str();
        let labels = [
            Label::new("database", database.clone()),
            Label::new("user", user.clone()),
            Label::new("mode", mode),
        ];
        let top = metrics.config().top_tenants;
        PoolMetrics {
            labels: render::labels(&[("database", &database), ("user", &user), ("mode", mode)]),
            wait: metrics.histogram(names::WAIT_SECONDS.name, &labels),
            transaction: metrics.histogram(names::TRANSACTION_SECONDS.name, &labels),
            connect: metrics.histogram(names::CONNECT_SECONDS.name, &labels),
            full_us: AtomicU64::new(0),
            last_sample: AtomicU64::new(0),
            last_connect_ok: AtomicU64::new(0),
            last_connect_err: AtomicU64::new(0),
            epoch: metrics.epoch,
            tenants: (top > 0).then(|| TopTenants::new(top)),
            probe: tokio::sync::Mutex::new(None),
        }
    }

    /// Now as a stamp: µs since the epoch, plus one so that 0 means "never".
    fn stamp(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64 + 1
    }

    /// How long ago a stamp was taken; `None` for "never".
    pub(super) fn age(&self, stamp: u64) -> Option<Duration> {
        (stamp != 0).then(|| Duration::from_micros(self.stamp().saturating_sub(stamp)))
    }

    /// Called by the sampler every [`super::SAMPLE_EVERY`]: when the pool is full
    /// (every slot lent or being opened), the time since the previous sample
    /// counts as time at full.
    ///
    /// Sampling rather than exact accounting: the number of slots in use changes
    /// in half a dozen places under the pool lock (checkout, check-in, open,
    /// close, resize, KILL); hooking each would put metrics code on every one of
    /// them. Sampling costs one lock per pool every 250 ms and is exact in the long
    /// run for anything slower than the sampling period; bursts shorter than that
    /// are caught in proportion to how often they happen.
    pub(super) fn sample_full(&self, pool: &Pool, now: Instant) {
        let stamp = now.saturating_duration_since(self.epoch).as_micros() as u64 + 1;
        let last = self.last_sample.swap(stamp, Ordering::Relaxed);
        if last == 0 {
            return;
        }
        let (open, idle, _) = pool.counts();
        if open.saturating_sub(idle) >= pool.settings().size {
            self.full_us
                .fetch_add(stamp.saturating_sub(last), Ordering::Relaxed);
        }
    }

    pub(super) fn full_seconds(&self) -> f64 {
        self.full_us.load(Ordering::Relaxed) as f64 / 1e6
    }
}
