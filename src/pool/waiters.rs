//! Clients waiting for a server connection, oldest first, and which of them a
//! returned connection goes to.
//!
//! In order, with one exception for tenant affinity: a connection already set
//! to some tenant goes to the oldest waiting client of that tenant among the
//! first [`LOOK_AHEAD`], so that it needs no tenant SET. A SET costs PostgreSQL
//! up to ~15% of a one-row select's throughput and the pooler its framing, so
//! under a steady queue this is worth a little unfairness, which stays bounded:
//! a client is passed over at most [`MAX_PASSED`] times, and no one behind it
//! is served before it after that. (Looking at 64 and passing over up to 16
//! times raised the hits in `benches/load.sh` scenario 6 at 64 busy only from
//! ~11% to ~12%.)

use std::collections::VecDeque;
use std::time::Instant;

use tokio::sync::oneshot;

use super::{PoolError, ServerConn};
use crate::tenant::{ServerTenant, TenantId};

/// How many waiters a returned connection looks at for one of its tenant.
pub const LOOK_AHEAD: usize = 32;
/// How many times a waiter may see a later one served first.
pub const MAX_PASSED: u8 = 4;

pub type Waiter = oneshot::Sender<Result<Box<ServerConn>, PoolError>>;
/// What a waiting client awaits.
pub type Answer = oneshot::Receiver<Result<Box<ServerConn>, PoolError>>;

pub struct Waiting {
    pub since: Instant,
    /// The client's tenant, if it prefers a connection already set to it.
    prefers: Option<Option<TenantId>>,
    passed: u8,
    pub tx: Waiter,
}

impl Waiting {
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

#[derive(Default)]
pub struct Waiters {
    queue: VecDeque<Waiting>,
}

impl Waiters {
    /// A new waiter at the back. With `affinity`, it may be served before older
    /// ones when a connection set to `tenant` comes back.
    pub fn push(&mut self, since: Instant, tenant: Option<&TenantId>, affinity: bool, tx: Waiter) {
        self.queue.push_back(Waiting {
            since,
            prefers: affinity.then(|| tenant.cloned()),
            passed: 0,
            tx,
        });
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// The oldest waiter.
    pub fn pop_front(&mut self) -> Option<Waiting> {
        self.queue.pop_front()
    }

    /// The waiter a connection whose setting is `server` goes to (see the module).
    pub fn pop_for(&mut self, server: &ServerTenant) -> Option<Waiting> {
        if let ServerTenant::Known(_) = server {
            let mut chosen = None;
            for (i, w) in self.queue.iter().take(LOOK_AHEAD).enumerate() {
                if w.prefers
                    .as_ref()
                    .is_some_and(|t| server.matches(t.as_ref()))
                {
                    chosen = Some(i);
                    break;
                }
                if w.passed >= MAX_PASSED {
                    break;
                }
            }
            if let Some(at) = chosen.filter(|&at| at > 0) {
                for w in self.queue.range_mut(..at) {
                    w.passed += 1;
                }
                return self.queue.remove(at);
            }
        }
        self.queue.pop_front()
    }

    /// Forgets the waiters that gave up.
    pub fn drop_closed(&mut self) {
        self.queue.retain(|w| !w.is_closed());
    }

    /// Those still waiting.
    pub fn live(&self) -> impl Iterator<Item = &Waiting> + Clone {
        self.queue.iter().filter(|w| !w.is_closed())
    }

    pub fn take_all(&mut self) -> VecDeque<Waiting> {
        std::mem::take(&mut self.queue)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn tenant(name: &str) -> TenantId {
        crate::tenant::TenantPattern::new("[a-z]+")
            .unwrap()
            .check(name)
            .unwrap()
    }

    fn queue(tenants: &[&str]) -> (Waiters, Vec<Answer>) {
        let mut w = Waiters::default();
        let mut rx = Vec::new();
        for t in tenants {
            let (tx, r) = oneshot::channel();
            w.push(Instant::now(), Some(&tenant(t)), true, tx);
            rx.push(r);
        }
        (w, rx)
    }

    fn set_to(name: &str) -> ServerTenant {
        ServerTenant::Known(Some(Arc::from(name)))
    }

    fn order(w: &mut Waiters, servers: &[ServerTenant]) -> Vec<String> {
        servers
            .iter()
            .map(|s| {
                let got = w.pop_for(s).expect("a waiter");
                got.prefers.unwrap().unwrap().as_str().to_string()
            })
            .collect()
    }

    #[test]
    fn a_connection_goes_to_the_oldest_waiter_of_its_tenant() {
        let (mut w, _rx) = queue(&["a", "b", "c", "b"]);
        assert_eq!(order(&mut w, &[set_to("b")]), ["b"]);
        assert_eq!(w.len(), 3);
        // Unknown setting, or no waiter of that tenant: in order.
        assert_eq!(
            order(&mut w, &[ServerTenant::Unknown, set_to("z")]),
            ["a", "c"]
        );
    }

    #[test]
    fn a_waiter_is_passed_over_at_most_max_passed_times() {
        let (mut w, _rx) = queue(&["a", "b", "b", "b", "b", "b", "b"]);
        let b = set_to("b");
        let served = order(
            &mut w,
            &[b.clone(), b.clone(), b.clone(), b.clone(), b.clone()],
        );
        assert_eq!(served, ["b", "b", "b", "b", "a"]);
    }

    #[test]
    fn only_the_first_look_ahead_waiters_are_considered() {
        let mut names = vec!["x"; LOOK_AHEAD];
        names.push("far");
        let (mut w, _rx) = queue(&names);
        assert_eq!(order(&mut w, &[set_to("far")]), ["x"]);
    }

    #[test]
    fn waiters_without_affinity_are_served_in_order() {
        let mut w = Waiters::default();
        let mut rx = Vec::new();
        for t in ["a", "b"] {
            let (tx, r) = oneshot::channel();
            w.push(Instant::now(), Some(&tenant(t)), false, tx);
            rx.push(r);
        }
        let first = w.pop_for(&set_to("b")).unwrap();
        assert!(first.prefers.is_none());
        assert_eq!(w.len(), 1);
    }
}
