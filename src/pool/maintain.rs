//! Background upkeep of a pool: close connections idle past `server_idle_timeout`
//! or older than `server_lifetime`, evict idle ones the server closed, and keep
//! `min_pool_size` connections open.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use super::{Pool, Slot};

/// How often the pool is looked over; bounded so short test timeouts work too.
fn period(pool: &Pool) -> Duration {
    let s = pool.settings();
    (s.idle_timeout.min(s.lifetime) / 4).clamp(Duration::from_millis(50), Duration::from_secs(5))
}

pub(super) fn spawn(pool: &Arc<Pool>) {
    let weak = Arc::downgrade(pool);
    let every = period(pool);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(pool) = Weak::upgrade(&weak) else {
                return;
            };
            pool.maintain().await;
        }
    });
}

impl Pool {
    async fn maintain(self: &Arc<Self>) {
        let now = Instant::now();
        let s = self.settings();
        let closing: Vec<_> = {
            let mut st = self.lock();
            if self.is_retired() {
                return;
            }
            let mut keep = Vec::with_capacity(st.idle.len());
            let mut closing = Vec::new();
            let mut open = st.open;
            // Oldest-used first, so the ones closed for idleness are the stalest.
            for mut conn in st.idle.drain(..) {
                let idle_too_long =
                    now.duration_since(conn.last_used) >= s.idle_timeout && open > s.min_size;
                let too_old = now.duration_since(conn.created) >= s.lifetime;
                if idle_too_long || too_old || !conn.is_healthy() {
                    open -= 1;
                    closing.push(conn);
                } else {
                    keep.push(conn);
                }
            }
            st.idle = keep;
            closing
        };
        if !closing.is_empty() {
            tracing::debug!(pool = %self.name, closed = closing.len(), "closed idle server connections");
        }
        drop(closing); // frees their slots outside the lock

        // Top up to min_pool_size, one connection per pass so a down server is not hammered.
        let reserve = {
            let mut st = self.lock();
            if st.open < s.min_size && !self.is_paused() && !self.is_retired() {
                st.open += 1;
                st.opening += 1;
                true
            } else {
                false
            }
        };
        if reserve {
            if let Ok(conn) = self.open(Slot::reserved(self)).await {
                self.checkin(conn);
            }
        }
    }
}
