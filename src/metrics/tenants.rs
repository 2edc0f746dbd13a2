//! Per-tenant series with bounded cardinality: the `top_tenants` (N) most
//! active tenants of a pool get their own series, everyone else is summed
//! under `tenant="other"`, so a scrape never shows more than N+1 tenant label
//! values per pool, however many tenants there are.
//!
//! Activity is the time a tenant held server connections. Finding the busiest
//! tenants among millions uses a weighted space-saving sketch (Metwally et al.)
//! of K = 2N+16 counters: a tenant already counted adds to its counter; a new
//! one takes the place of the smallest counter (not tracked) and inherits its
//! value, so any tenant with more than 1/K of the recent activity is sure to
//! be among the K. At most every [`RESELECT_EVERY`], at a scrape, the top N
//! by the sketch become the exported set (the ones already exported get a 25%
//! edge, so near-equal tenants do not flap) and the sketch is halved, so it
//! follows recent activity rather than all-time totals.
//!
//! Counters stay monotonic: a transaction counts toward its tenant's series if
//! that tenant is exported at the time, else toward `other`. A tenant that
//! joins the set starts at 0 (its past stays in `other`); one that leaves
//! disappears. Prometheus' `rate()` handles both.
//!
//! Cost per transaction: one uncontended mutex and one hash lookup per pool;
//! a tenant not among the K when the sketch is full also scans the K counters
//! for the smallest (K ≤ 216).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The label value of everyone not exported.
pub const OTHER: &str = "other";

/// Least time between two changes of the exported set.
pub const RESELECT_EVERY: Duration = Duration::from_secs(10);

/// Totals of one exported tenant, or of `other`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub transactions: u64,
    /// Time holding server connections, µs.
    pub held_us: u64,
}

impl Totals {
    fn add(&mut self, held_us: u64) {
        self.transactions += 1;
        self.held_us += held_us;
    }
}

struct Slot {
    tenant: Arc<str>,
    /// Decayed activity estimate (µs held), an overestimate by at most what it inherited.
    weight: u64,
    /// `Some` while exported; exported slots are never evicted.
    totals: Option<Totals>,
}

struct Inner {
    slots: Vec<Slot>,
    index: HashMap<Arc<str>, usize>,
    other: Totals,
    selected_at: Option<Instant>,
}

/// One pool's per-tenant accounting.
pub struct TopTenants {
    n: usize,
    k: usize,
    inner: Mutex<Inner>,
}

impl TopTenants {
    pub fn new(n: usize) -> Self {
        let k = 2 * n + 16;
        TopTenants {
            n,
            k,
            inner: Mutex::new(Inner {
                slots: Vec::with_capacity(k),
                index: HashMap::with_capacity(k),
                other: Totals::default(),
                selected_at: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts one transaction of `tenant` that held a server for `held`.
    pub fn record(&self, tenant: &Arc<str>, held: Duration) {
        let us = held.as_micros().min(u128::from(u64::MAX)) as u64;
        let weight = us.max(1);
        let mut inner = self.lock();
        let inner = &mut *inner;
        let at = match inner.index.get(&**tenant) {
            Some(&i) => Some(i),
            None if inner.slots.len() < self.k => {
                inner.slots.push(Slot {
                    tenant: Arc::clone(tenant),
                    weight: 0,
                    totals: None,
                });
                inner
                    .index
                    .insert(Arc::clone(tenant), inner.slots.len() - 1);
                Some(inner.slots.len() - 1)
            }
            None => {
                // Space-saving: the smallest untracked counter gives its place to the newcomer.
                let smallest = inner
                    .slots
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.totals.is_none())
                    .min_by_key(|(_, s)| s.weight)
                    .map(|(i, _)| i);
                if let Some(i) = smallest {
                    let slot = &mut inner.slots[i];
                    inner.index.remove(&slot.tenant);
                    slot.tenant = Arc::clone(tenant);
                    inner.index.insert(Arc::clone(tenant), i);
                }
                smallest
            }
        };
        let Some(i) = at else {
            inner.other.add(us);
            return;
        };
        let slot = &mut inner.slots[i];
        slot.weight = slot.weight.saturating_add(weight);
        match &mut slot.totals {
            Some(t) => t.add(us),
            None => inner.other.add(us),
        }
    }

    /// The exported tenants (sorted by name) and `other`, first choosing the
    /// exported set again if [`RESELECT_EVERY`] has passed since the last choice.
    pub fn snapshot(&self, now: Instant) -> (Vec<(Arc<str>, Totals)>, Totals) {
        let mut inner = self.lock();
        if inner
            .selected_at
            .is_none_or(|at| now.saturating_duration_since(at) >= RESELECT_EVERY)
        {
            self.select(&mut inner);
            inner.selected_at = Some(now);
        }
        let mut out: Vec<_> = inner
            .slots
            .iter()
            .filter_map(|s| s.totals.map(|t| (Arc::clone(&s.tenant), t)))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        (out, inner.other)
    }

    fn select(&self, inner: &mut Inner) {
        let score = |s: &Slot| {
            if s.totals.is_some() {
                s.weight.saturating_add(s.weight / 4)
            } else {
                s.weight
            }
        };
        // A tenant really named "other" stays in the `other` bucket: one series, never two.
        let mut ranked: Vec<usize> = (0..inner.slots.len())
            .filter(|&i| inner.slots[i].weight > 0 && &*inner.slots[i].tenant != OTHER)
            .collect();
        ranked.sort_by_key(|&i| std::cmp::Reverse(score(&inner.slots[i])));
        ranked.truncate(self.n);
        for (i, slot) in inner.slots.iter_mut().enumerate() {
            let chosen = ranked.contains(&i);
            match (chosen, slot.totals.is_some()) {
                (true, false) => slot.totals = Some(Totals::default()),
                (false, true) => slot.totals = None,
                _ => {}
            }
            slot.weight /= 2;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Arc<str> {
        Arc::from(s)
    }

    #[test]
    fn exports_at_most_n_and_finds_the_heavy_tenant_among_many() {
        let top = TopTenants::new(2);
        let heavy = t("heavy");
        for round in 0..2000u32 {
            top.record(&heavy, Duration::from_micros(500));
            // A long tail of tenants seen once each.
            top.record(&t(&format!("tail{round}")), Duration::from_micros(100));
        }
        let (exported, other) = top.snapshot(Instant::now());
        assert!(exported.len() <= 2);
        assert!(exported.iter().any(|(name, _)| &**name == "heavy"));
        // Chosen just now: everything so far is in `other`.
        assert_eq!(other.transactions, 4000);
        top.record(&heavy, Duration::from_micros(500));
        let (exported, _) = top.snapshot(Instant::now());
        let heavy_totals = exported.iter().find(|(n, _)| &**n == "heavy").unwrap().1;
        assert_eq!(
            heavy_totals,
            Totals {
                transactions: 1,
                held_us: 500
            }
        );
    }

    #[test]
    fn sums_are_kept_and_the_set_follows_recent_activity() {
        let top = TopTenants::new(1);
        let (a, b) = (t("a"), t("b"));
        let start = Instant::now();
        for _ in 0..10 {
            top.record(&a, Duration::from_millis(1));
        }
        let (exported, _) = top.snapshot(start);
        assert_eq!(&*exported[0].0, "a");
        // Within RESELECT_EVERY the set stays, whatever happens.
        for _ in 0..100 {
            top.record(&b, Duration::from_millis(1));
        }
        let (exported, other) = top.snapshot(start + Duration::from_secs(1));
        assert_eq!(&*exported[0].0, "a");
        assert_eq!(other.transactions, 110);
        // Later, b has clearly been busier: it takes over.
        let (exported, other) = top.snapshot(start + RESELECT_EVERY);
        assert_eq!(exported.len(), 1);
        assert_eq!(&*exported[0].0, "b");
        assert_eq!(exported[0].1, Totals::default());
        assert_eq!(other.transactions, 110, "other never goes down");
    }

    /// Not a benchmark, a bound: the per-transaction cost stays small even when
    /// every transaction is a new tenant (the sketch's slow path). Run with
    /// `cargo test --release -- --ignored --nocapture tenant_record_cost` to print it.
    #[test]
    #[ignore]
    fn tenant_record_cost() {
        for n in [10, 100] {
            let top = TopTenants::new(n);
            let names: Vec<Arc<str>> = (0..100_000).map(|i| t(&format!("tenant{i}"))).collect();
            let hot = t("hot");
            let rounds = 1_000_000;
            let start = Instant::now();
            for _ in 0..rounds {
                top.record(&hot, Duration::from_micros(100));
            }
            let hit = start.elapsed() / rounds;
            let start = Instant::now();
            for i in 0..rounds as usize {
                top.record(&names[i % names.len()], Duration::from_micros(100));
            }
            let miss = start.elapsed() / rounds;
            println!("top_tenants={n}: {hit:?} per transaction (known tenant), {miss:?} (new tenant each time)");
        }
    }
}
