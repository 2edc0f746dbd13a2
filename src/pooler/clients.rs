//! Every connected client, for SHOW CLIENTS, KILL and shutdown.
//!
//! A session touches its entry only at transaction boundaries (a few relaxed
//! atomic stores), never per message.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::Notify;

/// What a client is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ClientState {
    /// Connected, between transactions.
    Idle = 0,
    /// Queued for a server connection.
    Waiting = 1,
    /// Holding a server connection.
    Active = 2,
}

impl ClientState {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientState::Idle => "idle",
            ClientState::Waiting => "waiting",
            ClientState::Active => "active",
        }
    }

    fn from_u8(v: u8) -> Self {
        match v {
            1 => ClientState::Waiting,
            2 => ClientState::Active,
            _ => ClientState::Idle,
        }
    }
}

/// One client connection.
#[derive(Debug)]
pub struct ClientEntry {
    /// The pid in its BackendKeyData; unique among connected clients.
    pub id: u64,
    pub database: String,
    /// The pooler user it logged in as.
    pub user: String,
    pub tenant: Option<String>,
    pub peer: String,
    pub tls: bool,
    pub connected_at: SystemTime,
    state: AtomicU8,
    /// Microseconds since `epoch()` when `state` last changed.
    since_us: AtomicU64,
    /// Server connection held (its id), 0 for none.
    server: AtomicU64,
    killed: AtomicBool,
    kill: Notify,
}

fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_us() -> u64 {
    epoch().elapsed().as_micros() as u64
}

impl ClientEntry {
    #[inline]
    pub fn set_state(&self, state: ClientState, server: u64) {
        self.state.store(state as u8, Ordering::Relaxed);
        self.server.store(server, Ordering::Relaxed);
        self.since_us.store(now_us(), Ordering::Relaxed);
    }

    pub fn state(&self) -> ClientState {
        ClientState::from_u8(self.state.load(Ordering::Relaxed))
    }

    /// How long it has been in its current state.
    pub fn in_state_for(&self) -> Duration {
        Duration::from_micros(now_us().saturating_sub(self.since_us.load(Ordering::Relaxed)))
    }

    pub fn server(&self) -> Option<u64> {
        Some(self.server.load(Ordering::Relaxed)).filter(|&s| s != 0)
    }

    /// Ends the session at its next await point (KILL, forced shutdown).
    pub fn kill(&self) {
        self.killed.store(true, Ordering::Release);
        self.kill.notify_one();
    }

    pub fn is_killed(&self) -> bool {
        self.killed.load(Ordering::Acquire)
    }

    /// Resolves once `kill` was called.
    pub async fn killed(&self) {
        // notify_one stores a permit, so a kill before this call is not lost.
        if !self.is_killed() {
            self.kill.notified().await;
        }
    }
}

/// All connected clients.
#[derive(Default)]
pub struct ClientRegistry {
    clients: Mutex<HashMap<u64, Arc<ClientEntry>>>,
}

/// Keeps an entry registered; dropping it removes the entry.
pub struct Registered {
    registry: Arc<ClientRegistry>,
    pub entry: Arc<ClientEntry>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.entry.id);
    }
}

/// What a client is registered with.
pub struct NewClient {
    pub id: u64,
    pub database: String,
    pub user: String,
    pub tenant: Option<String>,
    pub peer: String,
    pub tls: bool,
}

impl ClientRegistry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<ClientEntry>>> {
        self.clients.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn register(self: &Arc<Self>, c: NewClient) -> Registered {
        let entry = Arc::new(ClientEntry {
            id: c.id,
            database: c.database,
            user: c.user,
            tenant: c.tenant,
            peer: c.peer,
            tls: c.tls,
            connected_at: SystemTime::now(),
            state: AtomicU8::new(ClientState::Idle as u8),
            since_us: AtomicU64::new(now_us()),
            server: AtomicU64::new(0),
            killed: AtomicBool::new(false),
            kill: Notify::new(),
        });
        self.lock().insert(entry.id, Arc::clone(&entry));
        Registered {
            registry: Arc::clone(self),
            entry,
        }
    }

    /// A copy of every entry, sorted by id.
    pub fn list(&self) -> Vec<Arc<ClientEntry>> {
        let mut all: Vec<_> = self.lock().values().cloned().collect();
        all.sort_by_key(|c| c.id);
        all
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Kills the clients `filter` selects; returns how many.
    pub fn kill_where(&self, filter: impl Fn(&ClientEntry) -> bool) -> usize {
        let chosen: Vec<_> = self
            .lock()
            .values()
            .filter(|c| filter(c))
            .cloned()
            .collect();
        for c in &chosen {
            c.kill();
        }
        chosen.len()
    }
}
