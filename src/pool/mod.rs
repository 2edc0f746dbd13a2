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
mod simple_query;
pub mod stats;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::sync::oneshot;

pub use conn::ServerConn;
use conn::Slot;
pub use stats::PoolStats;

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
        }
    }
}

/// Sizing and timing of one pool.
#[derive(Debug, Clone)]
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

type Waiter = oneshot::Sender<Result<ServerConn, PoolError>>;

enum Next {
    Idle(ServerConn),
    Open,
    Wait(oneshot::Receiver<Result<ServerConn, PoolError>>),
}

#[derive(Default)]
struct State {
    /// Idle connections, least recently used first.
    idle: Vec<ServerConn>,
    /// Connections counted against `size`: idle, lent out, or being opened.
    open: usize,
    /// Clients waiting for a connection, oldest first.
    waiters: VecDeque<Waiter>,
}

pub struct Pool {
    /// The database name clients ask for.
    pub name: String,
    pub settings: PoolSettings,
    pub target: Arc<ServerTarget>,
    pub stats: PoolStats,
    state: Mutex<State>,
    /// ParameterStatus values of the newest server login, replayed to clients at startup.
    params: Mutex<Option<ServerParams>>,
}

impl Pool {
    /// Creates the pool and starts its maintenance task (needs a tokio runtime).
    pub fn new(name: String, target: ServerTarget, settings: PoolSettings) -> Arc<Self> {
        let pool = Arc::new(Pool {
            name,
            settings,
            target: Arc::new(target),
            stats: PoolStats::default(),
            state: Mutex::new(State::default()),
            params: Mutex::new(None),
        });
        maintain::spawn(&pool);
        pool
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the plain counters and
        // vectors inconsistent in a way worse than losing the pool, so go on.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Gets a server connection for a client of `tenant`, waiting at most
    /// `query_wait_timeout`. With `affinity`, an idle connection already set to
    /// that tenant is preferred.
    pub async fn checkout(
        self: &Arc<Self>,
        tenant: Option<&TenantId>,
        affinity: bool,
    ) -> Result<ServerConn, PoolError> {
        let deadline = Instant::now() + self.settings.query_wait_timeout;
        loop {
            // Decide under the lock, act after it (it must not be held across an await).
            let next = {
                let mut st = self.lock();
                if let Some(conn) = take_idle(&mut st.idle, tenant, affinity) {
                    Next::Idle(conn)
                } else if st.open < self.settings.size {
                    st.open += 1;
                    Next::Open
                } else {
                    let (tx, rx) = oneshot::channel();
                    st.waiters.push_back(tx);
                    Next::Wait(rx)
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
                Next::Open => self.open(Slot::reserved(self)).await,
                Next::Wait(rx) => self.wait(rx, deadline).await,
            };
        }
    }

    async fn wait(
        &self,
        mut rx: oneshot::Receiver<Result<ServerConn, PoolError>>,
        deadline: Instant,
    ) -> Result<ServerConn, PoolError> {
        self.stats.waiting_inc();
        let result = tokio::time::timeout_at(deadline.into(), &mut rx).await;
        self.stats.waiting_dec();
        match result {
            Ok(Ok(result)) => result,
            // The pool dropped our sender without answering: only when the pool itself is going away.
            Ok(Err(_)) => Err(self.timeout_error()),
            Err(_) => {
                // A connection may have been sent between the timeout and now; give it back.
                rx.close();
                if let Ok(Ok(conn)) = rx.try_recv() {
                    self.checkin(conn);
                }
                self.stats.wait_timeouts.inc();
                tracing::warn!(pool = %self.name, "client waited query_wait_timeout for a server connection");
                Err(self.timeout_error())
            }
        }
    }

    fn timeout_error(&self) -> PoolError {
        PoolError::WaitTimeout {
            pool: self.name.clone(),
            size: self.settings.size,
            waited: self.settings.query_wait_timeout,
        }
    }

    /// Opens a new connection into a slot already reserved.
    async fn open(self: &Arc<Self>, slot: Slot) -> Result<ServerConn, PoolError> {
        let started = Instant::now();
        match self.target.connect().await {
            Ok(logged_in) => {
                *self.params.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some(Arc::new(logged_in.params.clone()));
                self.stats.server_connects.inc();
                let id = crate::pool::stats::next_server_id();
                let mut conn = ServerConn::new(logged_in, id, slot);
                if self.settings.identify_backend {
                    conn.identity = Some(self.identify(&mut conn).await?);
                }
                tracing::debug!(pool = %self.name, server = id, elapsed = ?started.elapsed(), "opened server connection");
                Ok(conn)
            }
            Err(e) => {
                self.stats.server_connect_errors.inc();
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
    pub fn checkin(&self, mut conn: ServerConn) {
        let now = Instant::now();
        if now.duration_since(conn.created) >= self.settings.lifetime {
            tracing::debug!(pool = %self.name, server = conn.id, "closing server connection past server_lifetime");
            return; // dropping it frees the slot, which serves any waiter
        }
        conn.last_used = now;
        let mut st = self.lock();
        while let Some(waiter) = st.waiters.pop_front() {
            match waiter.send(Ok(conn)) {
                Ok(()) => return,
                Err(Ok(back)) => conn = back, // that waiter gave up; try the next
                Err(Err(_)) => unreachable!("we sent Ok"),
            }
        }
        st.idle.push(conn);
    }

    /// Called when a connection (or a reservation) goes away.
    fn slot_released(self: &Arc<Self>) {
        let mut st = self.lock();
        st.open -= 1;
        // Waiters exist only while the pool was full; now there is room, open one for them.
        if st.waiters.iter().any(|w| !w.is_closed()) && st.open < self.settings.size {
            st.open += 1;
            drop(st);
            let pool = Arc::clone(self);
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move { pool.open_for_waiter().await });
            } else {
                pool.lock().open -= 1;
            }
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
                    if w.send(Err(e.clone())).is_ok() {
                        break;
                    }
                }
            }
        }
    }

    /// ParameterStatus values to replay to a new client, logging in to the server
    /// first if this pool has never done so.
    pub async fn server_params(self: &Arc<Self>) -> Result<Arc<Vec<(String, String)>>, PoolError> {
        if let Some(p) = self
            .params
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            return Ok(p);
        }
        let conn = self.checkout(None, false).await?;
        self.checkin(conn);
        Ok(self
            .params
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or_default())
    }

    /// Counts for admin views and tests: (open, idle, waiting).
    pub fn counts(&self) -> (usize, usize, usize) {
        let st = self.lock();
        let waiting = st.waiters.iter().filter(|w| !w.is_closed()).count();
        (st.open, st.idle.len(), waiting)
    }
}

/// Picks an idle connection: the most recently used one set to `tenant` when
/// `affinity` allows, else the most recently used one.
fn take_idle(
    idle: &mut Vec<ServerConn>,
    tenant: Option<&TenantId>,
    affinity: bool,
) -> Option<ServerConn> {
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
