//! Pools of server connections, one per configured database.
//!
//! A pool hands out at most `pool_size` connections, opened lazily and reused
//! most-recently-used first (preferring one already set to the client's tenant).
//! When all are busy, clients wait in FIFO order; a returned connection goes
//! straight to the longest waiter.
//!
//! - [`conn`]: the pooled connection and the slot that accounts for it;
//! - [`maintain`]: the background task that closes idle and old connections and keeps `min_pool_size` warm.

pub mod conn;
mod maintain;
pub mod reset;
pub mod simple_query;
pub mod snapshot;
pub mod stats;
mod waiters;

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use thiserror::Error;
use tokio::sync::{oneshot, Notify};

pub use conn::ServerConn;
use conn::Slot;
pub use snapshot::{PoolSnapshot, ServerInfo, ServerState};
pub use stats::PoolStats;
use waiters::{Answer, Waiters};

use crate::config::PoolMode;
use crate::error::{sqlstate, ClientError};
use crate::server::{ServerError, ServerTarget};
use crate::tenant::signed::{self, BackendIdentity};
use crate::tenant::TenantId;

#[derive(Debug, Error, Clone)]
pub enum PoolError {
    #[error("no server connection became available within {waited:?} (pool \"{pool}\", pool_size {size})")]
    WaitTimeout {
        pool: String,
        size: usize,
        waited: Duration,
    },
    #[error("{0}")]
    Server(Arc<ServerError>),
    #[error("database \"{0}\" was removed or re-pointed by a configuration reload")]
    Retired(String),
    #[error("database \"{0}\" was killed by an administrator")]
    Killed(String),
}

impl PoolError {
    pub fn to_client(&self) -> ClientError {
        match self {
            PoolError::WaitTimeout { .. } => ClientError::fatal(
                sqlstate::QUERY_CANCELED,
                format!("query_wait_timeout: {self}"),
            )
            .with_hint("raise pool_size or query_wait_timeout, or shorten transactions"),
            PoolError::Server(e) => e.to_client(),
            PoolError::Retired(_) => {
                ClientError::fatal(sqlstate::ADMIN_SHUTDOWN, format!("tenantpool: {self}"))
                    .with_hint("reconnect")
            }
            PoolError::Killed(_) => {
                ClientError::fatal(sqlstate::ADMIN_SHUTDOWN, format!("tenantpool: {self}"))
            }
        }
    }
}

/// Sizing and timing of one pool; replaced as a whole on reload.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolSettings {
    pub size: usize,
    pub min_size: usize,
    pub mode: PoolMode,
    pub query_wait_timeout: Duration,
    pub idle_timeout: Duration,
    pub lifetime: Duration,
    /// Read each new connection's backend start time (for the signed tenant context).
    pub identify_backend: bool,
}

/// ParameterStatus (name, value) pairs a server reported at login.
pub type ServerParams = Arc<Vec<(String, String)>>;

enum Next {
    Idle(Box<ServerConn>),
    Open,
    /// Queued at this instant.
    Wait(Answer, Instant),
}

#[derive(Default)]
struct State {
    /// Idle connections, least recently used first. Boxed from the moment they
    /// open: a lent connection moves as a pointer, and a client that keeps one
    /// (session mode) holds 8 bytes in its session, not the whole connection.
    #[allow(clippy::vec_box)]
    idle: Vec<Box<ServerConn>>,
    /// Connections counted against `size`: idle, lent out, or being opened.
    open: usize,
    /// Of `open`, those still connecting.
    opening: usize,
    /// Clients waiting for a connection.
    waiters: Waiters,
    /// Every open connection, for admin views.
    servers: HashMap<u64, ServerInfo, BuildHasherDefault<IdHasher>>,
    exhausted: ExhaustedLog,
}

/// Hashes server ids (sequential u64s) with one multiply: the map of servers is
/// looked up on every check-out and check-in, where SipHash showed in profiles.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(self.0.rotate_left(8) ^ u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        // Fibonacci hashing: spreads consecutive ids over the high bits too.
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// Logs "pool exhausted" at most once per [`ExhaustedLog::EVERY`]: under steady
/// overload the wait queue empties and fills again thousands of times a second.
#[derive(Default)]
struct ExhaustedLog {
    last: Option<Instant>,
    /// Times the queue started since the last line.
    since: u64,
}

impl ExhaustedLog {
    const EVERY: Duration = Duration::from_secs(10);

    fn happened(&mut self, now: Instant, pool: &str, size: usize) {
        self.since += 1;
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < Self::EVERY)
        {
            return;
        }
        tracing::info!(
            pool,
            size,
            times = self.since,
            "pool exhausted: clients are waiting for a server connection"
        );
        self.last = Some(now);
        self.since = 0;
    }
}

impl State {
    /// Connections lent to clients.
    fn active(&self) -> usize {
        self.open - self.opening - self.idle.len()
    }
}

pub struct Pool {
    /// The database name clients ask for.
    pub name: String,
    settings: ArcSwap<PoolSettings>,
    pub target: Arc<ServerTarget>,
    pub stats: PoolStats,
    state: Mutex<State>,
    /// ParameterStatus values of the newest server login, replayed to clients at startup.
    params: Mutex<Option<ServerParams>>,
    /// PAUSE: checkouts queue, returned connections stay idle, until RESUME.
    paused: AtomicBool,
    /// Signalled on check-in while paused, for PAUSE to wait for active transactions.
    drained: Notify,
    /// Removed or re-pointed by a reload: no new checkouts, connections close as they return.
    retired: AtomicBool,
    /// How many KILLs so far; connections from before the latest close on return.
    kills: AtomicU64,
    /// Prometheus handles, when `[metrics]` is configured (set once, right after creation).
    pub metrics: OnceLock<crate::metrics::PoolMetrics>,
}

impl Pool {
    /// Creates the pool and starts its maintenance task (needs a tokio runtime).
    pub fn new(name: String, target: ServerTarget, settings: PoolSettings) -> Arc<Self> {
        let pool = Arc::new(Pool {
            name,
            settings: ArcSwap::from_pointee(settings),
            target: Arc::new(target),
            stats: PoolStats::default(),
            state: Mutex::new(State::default()),
            params: Mutex::new(None),
            paused: AtomicBool::new(false),
            drained: Notify::new(),
            retired: AtomicBool::new(false),
            kills: AtomicU64::new(0),
            metrics: OnceLock::new(),
        });
        maintain::spawn(&pool);
        pool
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the plain counters and
        // vectors inconsistent in a way worse than losing the pool, so go on.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current settings (one atomic load).
    pub fn settings(&self) -> Arc<PoolSettings> {
        self.settings.load_full()
    }

    /// Applies new settings from a reload. A smaller size takes effect as
    /// connections return; a larger one serves waiting clients at once.
    pub fn update_settings(self: &Arc<Self>, settings: PoolSettings) {
        if **self.settings.load() != settings {
            tracing::info!(pool = %self.name, size = settings.size, "pool settings changed");
            self.settings.store(Arc::new(settings));
            self.serve_waiters();
        }
    }

    /// Gets a server connection for a client of `tenant`, waiting at most
    /// `query_wait_timeout`. With `affinity`, an idle connection already set to
    /// that tenant is preferred. `client` identifies the borrower in admin views.
    pub async fn checkout(
        self: &Arc<Self>,
        tenant: Option<&TenantId>,
        affinity: bool,
        client: u64,
    ) -> Result<Box<ServerConn>, PoolError> {
        let settings = self.settings();
        loop {
            // Decide under the lock, act after it (it must not be held across an await).
            let next = {
                let mut st = self.lock();
                if self.retired.load(Ordering::Acquire) {
                    return Err(PoolError::Retired(self.name.clone()));
                }
                let paused = self.paused.load(Ordering::Acquire);
                // Take an idle connection only when we will lend it: one taken and
                // dropped here would release its slot, which locks `st` again.
                let idle = if paused {
                    None
                } else {
                    take_idle(&mut st.idle, tenant, affinity)
                };
                if let Some(mut conn) = idle {
                    mark_lent(&mut st, &mut conn, client, Instant::now());
                    Next::Idle(conn)
                } else if !paused && st.open < settings.size {
                    st.open += 1;
                    st.opening += 1;
                    Next::Open
                } else {
                    let now = Instant::now();
                    if st.waiters.is_empty() && !paused {
                        st.exhausted.happened(now, &self.name, settings.size);
                    }
                    let (tx, rx) = oneshot::channel();
                    st.waiters.push(now, tenant, affinity, tx);
                    Next::Wait(rx, now)
                }
            };
            return match next {
                Next::Idle(mut conn) => {
                    if conn.is_healthy() {
                        Ok(conn)
                    } else {
                        tracing::info!(pool = %self.name, server = conn.id, "dropping idle server connection that closed or sent unexpected data");
                        continue;
                    }
                }
                Next::Open => {
                    let mut conn = self.open(Slot::reserved(self)).await?;
                    mark_lent(&mut self.lock(), &mut conn, client, Instant::now());
                    Ok(conn)
                }
                Next::Wait(rx, since) => {
                    // The clock is read only by clients that wait.
                    let deadline = since + settings.query_wait_timeout;
                    let mut conn = self.wait(rx, deadline, &settings).await?;
                    mark_lent(&mut self.lock(), &mut conn, client, Instant::now());
                    Ok(conn)
                }
            };
        }
    }

    async fn wait(
        &self,
        mut rx: Answer,
        deadline: Instant,
        settings: &PoolSettings,
    ) -> Result<Box<ServerConn>, PoolError> {
        self.stats.waiting_inc();
        let result = tokio::time::timeout_at(deadline.into(), &mut rx).await;
        self.stats.waiting_dec();
        match result {
            Ok(Ok(result)) => result,
            // The pool dropped our sender without answering: only when the pool itself is going away.
            Ok(Err(_)) => Err(PoolError::Retired(self.name.clone())),
            Err(_) => {
                // A connection may have been sent between the timeout and now; give it back.
                rx.close();
                if let Ok(Ok(conn)) = rx.try_recv() {
                    self.checkin(conn);
                }
                self.stats.wait_timeouts.inc();
                tracing::warn!(pool = %self.name, "client waited query_wait_timeout for a server connection");
                Err(PoolError::WaitTimeout {
                    pool: self.name.clone(),
                    size: settings.size,
                    waited: settings.query_wait_timeout,
                })
            }
        }
    }

    /// Opens a new connection into a slot already reserved (counted in `open` and `opening`).
    async fn open(self: &Arc<Self>, mut slot: Slot) -> Result<Box<ServerConn>, PoolError> {
        let started = Instant::now();
        let id = crate::pool::stats::next_server_id();
        let result = self.target.connect().await;
        let opened = match result {
            Ok(logged_in) => {
                *self.params.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some(Arc::new(logged_in.params.clone()));
                let mut conn = Box::new(ServerConn::new(logged_in, id, slot));
                if self.settings().identify_backend {
                    match self.identify(&mut conn).await {
                        Ok(identity) => conn.identity = Some(identity),
                        Err(e) => {
                            self.lock().opening -= 1;
                            return Err(e);
                        }
                    }
                }
                Ok(conn)
            }
            Err(e) => {
                slot.server = None;
                Err(e)
            }
        };
        let mut st = self.lock();
        st.opening -= 1;
        match opened {
            Ok(conn) => {
                st.servers.insert(conn.id, ServerInfo::new(&conn));
                drop(st);
                self.stats.server_connects.inc();
                self.stats.connect_time.record(started.elapsed());
                crate::metrics::pool::connected(self, started.elapsed()); // metrics hook
                tracing::debug!(pool = %self.name, server = id, elapsed = ?started.elapsed(), "opened server connection");
                Ok(conn)
            }
            Err(e) => {
                drop(st);
                self.stats.server_connect_errors.inc();
                crate::metrics::pool::connect_failed(self); // metrics hook
                tracing::warn!(pool = %self.name, error = %e, "server connection failed");
                Err(PoolError::Server(Arc::new(e)))
            }
        }
    }

    /// Reads the backend's pid and start time, which the signed tenant context is bound to.
    async fn identify(&self, conn: &mut ServerConn) -> Result<BackendIdentity, PoolError> {
        let fail = |what: String| {
            PoolError::Server(Arc::new(ServerError::Protocol {
                target: format!("{:?}", self.target),
                what,
            }))
        };
        match simple_query::run(conn, signed::BACKEND_START_QUERY).await {
            Ok((true, Some(v))) => v
                .parse()
                .map(|start_us| BackendIdentity {
                    pid: conn.key.pid,
                    start_us,
                })
                .map_err(|_| fail(format!("backend start time {v:?} is not an integer"))),
            Ok(_) => Err(fail("could not read the backend start time".into())),
            Err(e) => Err(PoolError::Server(Arc::new(ServerError::Io(e)))),
        }
    }

    /// Returns a clean, idle connection: to the longest waiter, or to the idle list.
    pub fn checkin(&self, conn: Box<ServerConn>) {
        self.checkin_at(conn, Instant::now());
    }

    /// [`Self::checkin`] at `now`, a clock the caller has just read.
    pub fn checkin_at(&self, mut conn: Box<ServerConn>, now: Instant) {
        let settings = self.settings.load();
        let mut st = self.lock();
        let expired = now.duration_since(conn.created) >= settings.lifetime;
        let killed = conn.kill_epoch() < self.kills.load(Ordering::Acquire);
        if expired || killed || self.retired.load(Ordering::Acquire) || st.open > settings.size {
            drop(st);
            tracing::debug!(pool = %self.name, server = conn.id, "closing returned server connection (lifetime, resize, reload or KILL)");
            return; // dropping it frees the slot, which serves any waiter
        }
        conn.last_used = now;
        if let Some(info) = st.servers.get_mut(&conn.id) {
            info.returned(&conn, now);
        }
        if !self.paused.load(Ordering::Acquire) {
            while let Some(waiter) = st.waiters.pop_for(&conn.tenant) {
                match waiter.tx.send(Ok(conn)) {
                    Ok(()) => return,
                    Err(Ok(back)) => conn = back, // that waiter gave up; try the next
                    Err(Err(_)) => unreachable!("we sent Ok"),
                }
            }
        }
        st.idle.push(conn);
        if self.paused.load(Ordering::Acquire) && st.active() == 0 {
            self.drained.notify_waiters();
        }
    }

    /// Called when a connection (or a reservation) goes away.
    fn slot_released(self: &Arc<Self>, server: Option<u64>) {
        {
            let mut st = self.lock();
            st.open -= 1;
            if let Some(id) = server {
                st.servers.remove(&id);
            }
            if self.paused.load(Ordering::Acquire) && st.active() == 0 {
                self.drained.notify_waiters();
            }
        }
        self.serve_waiters();
    }

    /// Gives idle connections to waiting clients and opens new ones for the rest,
    /// as far as the pool size allows (after a resize, RESUME or a closed connection).
    fn serve_waiters(self: &Arc<Self>) {
        if self.paused.load(Ordering::Acquire) || self.retired.load(Ordering::Acquire) {
            return;
        }
        let size = self.settings.load().size;
        let mut to_open = 0;
        {
            let mut st = self.lock();
            st.waiters.drop_closed();
            while !st.waiters.is_empty() {
                if let Some(conn) = st.idle.pop() {
                    let waiter = st.waiters.pop_for(&conn.tenant).expect("not empty");
                    if let Err(Ok(conn)) = waiter.tx.send(Ok(conn)) {
                        st.idle.push(conn);
                    }
                } else {
                    break;
                }
            }
            while st.waiters.len() > to_open && st.open < size {
                st.open += 1;
                st.opening += 1;
                to_open += 1;
            }
        }
        if to_open == 0 {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            let mut st = self.lock();
            st.open -= to_open;
            st.opening -= to_open;
            return;
        };
        for _ in 0..to_open {
            let pool = Arc::clone(self);
            rt.spawn(async move { pool.open_for_waiter().await });
        }
    }

    async fn open_for_waiter(self: Arc<Self>) {
        let slot = Slot::reserved(&self);
        match self.open(slot).await {
            Ok(conn) => self.checkin(conn),
            Err(e) => {
                // Tell the longest waiter now rather than letting it wait out its timeout.
                let mut st = self.lock();
                while let Some(w) = st.waiters.pop_front() {
                    if w.tx.send(Err(e.clone())).is_ok() {
                        break;
                    }
                }
            }
        }
    }

    /// ParameterStatus values to replay to a new client, logging in to the server
    /// first if this pool has never done so.
    pub async fn server_params(self: &Arc<Self>) -> Result<ServerParams, PoolError> {
        if let Some(p) = self
            .params
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            return Ok(p);
        }
        let conn = self.checkout(None, false, 0).await?;
        self.checkin(conn);
        Ok(self
            .params
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or_default())
    }

    /// PAUSE: stop lending connections and wait until every lent one is back.
    pub async fn pause(&self) {
        self.paused.store(true, Ordering::Release);
        loop {
            let drained = self.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            if self.lock().active() == 0 {
                return;
            }
            drained.await;
        }
    }

    /// RESUME after PAUSE or KILL.
    pub fn resume(self: &Arc<Self>) {
        self.paused.store(false, Ordering::Release);
        self.serve_waiters();
    }

    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }

    /// KILL: pause, fail every waiting client, close idle connections. Lent
    /// connections close when they come back (their clients are killed by the
    /// caller), even after a RESUME: see `kills`.
    pub fn kill(&self) {
        self.paused.store(true, Ordering::Release);
        let (idle, waiters) = {
            let mut st = self.lock();
            // Under the lock, so no check-in between this and taking `idle` keeps a connection.
            self.kills.fetch_add(1, Ordering::AcqRel);
            (std::mem::take(&mut st.idle), st.waiters.take_all())
        };
        for w in waiters {
            let _ = w.tx.send(Err(PoolError::Killed(self.name.clone())));
        }
        drop(idle);
    }

    /// After a reload removed or re-pointed this database: refuse new checkouts,
    /// fail waiters, close idle connections; lent ones close when returned.
    pub fn retire(&self) {
        self.retired.store(true, Ordering::Release);
        let (idle, waiters) = {
            let mut st = self.lock();
            (std::mem::take(&mut st.idle), st.waiters.take_all())
        };
        for w in waiters {
            let _ = w.tx.send(Err(PoolError::Retired(self.name.clone())));
        }
        drop(idle);
    }

    pub fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }

    /// Counts for admin views and tests: (open, idle, waiting).
    pub fn counts(&self) -> (usize, usize, usize) {
        let st = self.lock();
        let waiting = st.waiters.live().count();
        (st.open, st.idle.len(), waiting)
    }

    /// Everything admin views and metrics show about this pool, taken at once.
    pub fn snapshot(&self) -> PoolSnapshot {
        let settings = self.settings();
        let st = self.lock();
        let now = Instant::now();
        let live_waiters = st.waiters.live();
        let max_wait = live_waiters
            .clone()
            .map(|w| now.duration_since(w.since))
            .max()
            .unwrap_or_default();
        let mut servers: Vec<ServerInfo> = st.servers.values().cloned().collect();
        servers.sort_by_key(|s| s.id);
        PoolSnapshot {
            name: self.name.clone(),
            user: self.target.user.clone(),
            mode: settings.mode,
            size: settings.size,
            min_size: settings.min_size,
            open: st.open,
            opening: st.opening,
            idle: st.idle.len(),
            active: st.active(),
            waiting: live_waiters.count(),
            max_wait,
            paused: self.is_paused(),
            retired: self.is_retired(),
            servers,
            taken_at: SystemTime::now(),
        }
    }
}

/// Records that `conn` is lent to `client`.
/// Also stamps `last_used` with the time it was lent, which the borrower reads
/// instead of the clock.
fn mark_lent(st: &mut State, conn: &mut ServerConn, client: u64, at: Instant) {
    conn.last_used = at;
    if let Some(info) = st.servers.get_mut(&conn.id) {
        info.lent(client, at);
    }
}

/// Picks an idle connection: the most recently used one set to `tenant` when
/// `affinity` allows, else the most recently used one.
#[allow(clippy::vec_box)] // the pool lends boxes (see `State::idle`)
fn take_idle(
    idle: &mut Vec<Box<ServerConn>>,
    tenant: Option<&TenantId>,
    affinity: bool,
) -> Option<Box<ServerConn>> {
    if idle.is_empty() {
        return None;
    }
    let at = if affinity {
        idle.iter()
            .rposition(|c| c.tenant.matches(tenant))
            .unwrap_or(idle.len() - 1)
    } else {
        idle.len() - 1
    };
    Some(idle.remove(at))
}
