//! Point-in-time views of a pool for the admin console and metrics.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::ServerConn;
use crate::config::PoolMode;
use crate::tenant::ServerTenant;

/// What a server connection is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    Idle,
    /// Lent to a client.
    Active,
}

impl ServerState {
    pub fn as_str(self) -> &'static str {
        match self {
            ServerState::Idle => "idle",
            ServerState::Active => "active",
        }
    }
}

/// One server connection, as the pool last saw it.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    pub id: u64,
    /// Backend process id.
    pub pid: i32,
    pub state: ServerState,
    /// The client holding it (its cancel pid), when active.
    pub client: Option<u64>,
    /// The tenant its setting holds, as far as the pooler knows.
    pub tenant: Option<Arc<str>>,
    pub connected_at: SystemTime,
    pub created: Instant,
    /// When it last changed hands.
    pub since: Instant,
}

impl ServerInfo {
    pub(super) fn new(conn: &ServerConn) -> Self {
        let now = Instant::now();
        ServerInfo {
            id: conn.id,
            pid: conn.key.pid,
            state: ServerState::Idle,
            client: None,
            tenant: None,
            connected_at: SystemTime::now(),
            created: conn.created,
            since: now,
        }
    }

    pub(super) fn lent(&mut self, client: u64, at: Instant) {
        self.state = ServerState::Active;
        self.client = Some(client);
        self.since = at;
    }

    pub(super) fn returned(&mut self, conn: &ServerConn, at: Instant) {
        self.state = ServerState::Idle;
        self.client = None;
        self.since = at;
        self.tenant = match &conn.tenant {
            ServerTenant::Known(t) => t.clone(),
            ServerTenant::Unknown => None,
        };
    }
}

/// A pool's counts and connections at one moment.
#[derive(Debug, Clone)]
pub struct PoolSnapshot {
    /// Database name clients ask for.
    pub name: String,
    /// Server role the pool logs in as.
    pub user: String,
    pub mode: PoolMode,
    pub size: usize,
    pub min_size: usize,
    /// Connections counted against `size` (idle + active + opening).
    pub open: usize,
    pub opening: usize,
    pub idle: usize,
    pub active: usize,
    /// Clients queued for a connection.
    pub waiting: usize,
    /// How long the longest-waiting client has waited (PgBouncer's `maxwait`).
    pub max_wait: Duration,
    pub paused: bool,
    pub retired: bool,
    pub servers: Vec<ServerInfo>,
    pub taken_at: SystemTime,
}
