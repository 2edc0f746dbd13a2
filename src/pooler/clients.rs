//! Every connected client, for SHOW CLIENTS, KILL, shutdown and cancel requests.
//!
//! A client is registered when it has logged in, just before its greeting: its
//! id is the pid of the BackendKeyData it is given (a key of our own making), and
//! a CancelRequest carrying that key is forwarded to the server backend the
//! client is using at that moment, and ignored when it holds none.
//!
//! A session touches its entry only at transaction boundaries (a few relaxed
//! atomic stores, and the cancel target under the entry's lock), never per message.

use std::collections::{HashMap, HashSet};
use std::future::{poll_fn, Future};
use std::sync::atomic::{AtomicI32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant, SystemTime};

use subtle::ConstantTimeEq;

use crate::net::Peer;
use crate::server::{BackendKey, ServerTarget};
use crate::tenant::TenantId;

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
    /// The secret of its BackendKeyData.
    secret: [u8; 4],
    /// Shared with the other clients of the database (see `ClientRegistry::names`).
    pub database: Arc<str>,
    /// The pooler user it logged in as (shared like `database`).
    pub user: Arc<str>,
    /// Its session reads the tenant from here.
    pub tenant: Option<TenantId>,
    pub peer: Peer,
    pub tls: bool,
    pub connected_at: SystemTime,
    state: AtomicU8,
    /// Microseconds since `epoch()` when `state` last changed.
    since_us: AtomicU64,
    /// Server connection held (its id), 0 for none.
    server: AtomicU64,
    /// [`KILLED`] and [`DRAINING`], once raised.
    signals: AtomicU8,
    waiting: Mutex<Waiting>,
}

/// What an entry's lock guards.
#[derive(Debug, Default)]
struct Waiting {
    /// The session's task, to wake when a signal is raised. One slot: a session
    /// waits for its signals in one place at a time.
    waker: Option<Waker>,
    /// Where a cancel request goes now: the backend of the server it holds
    /// during a transaction.
    cancel: Option<(Arc<ServerTarget>, BackendKey)>,
}

/// KILL, or a forced shutdown: the session ends at its next await point.
const KILLED: u8 = 1;
/// A graceful shutdown: the session ends when it is next between transactions.
const DRAINING: u8 = 2;

/// What a session was told to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Killed,
    Draining,
}

fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Microseconds from the registry's epoch to `at` (0 before it).
fn us_at(at: Instant) -> u64 {
    at.saturating_duration_since(epoch()).as_micros() as u64
}

fn now_us() -> u64 {
    us_at(Instant::now())
}

impl ClientEntry {
    /// Its state changed at `at` (a clock the caller read anyway: a transaction
    /// reads it twice, not at every change).
    #[inline]
    pub fn set_state(&self, state: ClientState, server: u64, at: Instant) {
        self.state.store(state as u8, Ordering::Relaxed);
        self.server.store(server, Ordering::Relaxed);
        self.since_us.store(us_at(at), Ordering::Relaxed);
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

    /// Its BackendKeyData: (pid, secret).
    pub fn key(&self) -> (i32, [u8; 4]) {
        // Ids are positive i32s (see `ClientRegistry::register`).
        (self.id as i32, self.secret)
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The client now holds the backend `key` of `target`: cancel requests go there.
    pub fn set_cancel(&self, target: &Arc<ServerTarget>, key: BackendKey) {
        self.waiting().cancel = Some((Arc::clone(target), key));
    }

    /// The client holds no server: cancel requests are ignored.
    pub fn clear_cancel(&self) {
        self.waiting().cancel = None;
    }

    /// Ends the session at its next await point (KILL, forced shutdown).
    pub fn kill(&self) {
        self.raise(KILLED);
    }

    /// Ends the session when it is next between transactions (graceful shutdown).
    pub fn drain(&self) {
        self.raise(DRAINING);
    }

    fn raise(&self, signal: u8) {
        self.signals.fetch_or(signal, Ordering::Release);
        let waker = self.waiting().waker.take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    pub fn is_killed(&self) -> bool {
        self.signals.load(Ordering::Acquire) & KILLED != 0
    }

    /// Ready once the session was killed, or (with `draining`) told to drain;
    /// otherwise the task is woken when that happens.
    pub fn poll_signal(&self, cx: &mut Context<'_>, draining: bool) -> Poll<Signal> {
        let wanted = if draining { KILLED | DRAINING } else { KILLED };
        // Register first, then look: a signal raised in between still wakes us.
        {
            let slot = &mut self.waiting().waker;
            match slot.as_ref() {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => *slot = Some(cx.waker().clone()),
            }
        }
        let raised = self.signals.load(Ordering::Acquire) & wanted;
        if raised & KILLED != 0 {
            Poll::Ready(Signal::Killed)
        } else if raised != 0 {
            Poll::Ready(Signal::Draining)
        } else {
            Poll::Pending
        }
    }

    /// Resolves once `kill` was called.
    pub fn killed(&self) -> impl Future<Output = ()> + '_ {
        poll_fn(|cx| self.poll_signal(cx, false).map(|_| ()))
    }
}

/// All connected clients.
#[derive(Default)]
pub struct ClientRegistry {
    clients: Mutex<HashMap<u64, Arc<ClientEntry>>>,
    /// Database and user names, one copy each for all their clients (up to
    /// [`MAX_NAMES`]; past that, each client has its own).
    names: Mutex<HashSet<Arc<str>>>,
    next_pid: AtomicI32,
}

/// Bounds `ClientRegistry::names`: token logins may bring any user name.
const MAX_NAMES: usize = 4096;

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
pub struct NewClient<'a> {
    pub database: &'a str,
    pub user: &'a str,
    pub tenant: Option<TenantId>,
    pub peer: Peer,
    pub tls: bool,
}

impl ClientRegistry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<ClientEntry>>> {
        self.clients.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The shared copy of `name`.
    fn name(&self, name: &str) -> Arc<str> {
        let mut names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(shared) = names.get(name) {
            return Arc::clone(shared);
        }
        let new: Arc<str> = name.into();
        if names.len() < MAX_NAMES {
            names.insert(Arc::clone(&new));
        }
        new
    }

    /// Registers a client that logged in, with a fresh BackendKeyData.
    pub fn register(self: &Arc<Self>, c: NewClient<'_>) -> Registered {
        let (database, user) = (self.name(c.database), self.name(c.user));
        let mut clients = self.lock();
        let pid = loop {
            // Positive, non-zero pids that look like PostgreSQL's to tools that print them.
            let pid = self
                .next_pid
                .fetch_add(1, Ordering::Relaxed)
                .rem_euclid(i32::MAX - 1)
                + 1;
            if !clients.contains_key(&(pid as u64)) {
                break pid as u64;
            }
        };
        let entry = Arc::new(ClientEntry {
            id: pid,
            secret: rand::random(),
            database,
            user,
            tenant: c.tenant,
            peer: c.peer,
            tls: c.tls,
            connected_at: SystemTime::now(),
            state: AtomicU8::new(ClientState::Idle as u8),
            since_us: AtomicU64::new(now_us()),
            server: AtomicU64::new(0),
            signals: AtomicU8::new(0),
            waiting: Mutex::default(),
        });
        clients.insert(entry.id, Arc::clone(&entry));
        drop(clients);
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

    /// Tells every client to leave when it is next between transactions.
    pub fn drain_all(&self) {
        let all: Vec<_> = self.lock().values().cloned().collect();
        for c in &all {
            c.drain();
        }
    }

    /// The server backend to cancel for a CancelRequest, if the key is valid and
    /// its client holds a server.
    pub fn cancel_target(
        &self,
        pid: i32,
        secret: &[u8],
    ) -> Option<(Arc<ServerTarget>, BackendKey)> {
        let entry = Arc::clone(self.lock().get(&u64::try_from(pid).ok()?)?);
        if secret.len() != 4 || !bool::from(entry.secret.ct_eq(secret)) {
            return None;
        }
        let target = entry.waiting().cancel.clone();
        target
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

#[cfg(test)]
mod tests {
    use super::*;

    fn new_client() -> NewClient<'static> {
        NewClient {
            database: "d",
            user: "u",
            tenant: None,
            peer: Peer::Unix,
            tls: false,
        }
    }

    #[test]
    fn cancel_needs_right_secret_and_a_held_server() {
        let reg = Arc::new(ClientRegistry::default());
        let a = reg.register(new_client());
        let b = reg.register(new_client());
        let (pid, secret) = a.entry.key();
        assert_ne!(pid, b.entry.key().0);
        assert!(pid > 0);
        assert!(
            Arc::ptr_eq(&a.entry.database, &b.entry.database),
            "names are shared"
        );
        assert!(
            reg.cancel_target(pid, &secret).is_none(),
            "no server held yet"
        );
        let target = Arc::new(ServerTarget {
            host: "127.0.0.1".into(),
            port: 5432,
            dbname: "d".into(),
            user: "u".into(),
            password: None,
            connect_timeout: std::time::Duration::from_secs(1),
            tls: None,
        });
        let key = BackendKey {
            pid: 77,
            secret: [9; 4],
        };
        a.entry.set_cancel(&target, key);
        assert_eq!(reg.cancel_target(pid, &secret).unwrap().1, key);
        let mut wrong = secret;
        wrong[0] ^= 1;
        assert!(reg.cancel_target(pid, &wrong).is_none());
        assert!(reg.cancel_target(pid, &[1, 2, 3]).is_none());
        assert!(reg.cancel_target(-pid, &secret).is_none());
        a.entry.clear_cancel();
        assert!(reg.cancel_target(pid, &secret).is_none());
        a.entry.set_cancel(&target, key);
        drop(a);
        assert!(
            reg.cancel_target(pid, &secret).is_none(),
            "forgotten with the client"
        );
        assert_eq!(reg.len(), 1);
    }

    #[test]
    fn signals_wake_the_session() {
        let reg = Arc::new(ClientRegistry::default());
        let a = reg.register(new_client());
        let mut cx = Context::from_waker(Waker::noop());
        assert!(a.entry.poll_signal(&mut cx, true).is_pending());
        a.entry.drain();
        assert!(
            a.entry.poll_signal(&mut cx, false).is_pending(),
            "a drain is no kill"
        );
        assert_eq!(
            a.entry.poll_signal(&mut cx, true),
            Poll::Ready(Signal::Draining)
        );
        a.entry.kill();
        assert!(a.entry.is_killed());
        assert_eq!(
            a.entry.poll_signal(&mut cx, false),
            Poll::Ready(Signal::Killed)
        );
        assert_eq!(
            a.entry.poll_signal(&mut cx, true),
            Poll::Ready(Signal::Killed)
        );
    }
}
