//! Cancel keys. Each client gets a BackendKeyData of our own making; a
//! CancelRequest carrying it is forwarded to the server backend that client is
//! using at that moment, and ignored when it holds none.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};

use subtle::ConstantTimeEq;

use crate::server::{BackendKey, ServerTarget};

/// Where a client's cancel would go right now.
#[derive(Debug, Default)]
pub struct CancelSlot(Mutex<Option<(Arc<ServerTarget>, BackendKey)>>);

impl CancelSlot {
    /// The client now holds the backend `key` of `target`.
    pub fn set(&self, target: &Arc<ServerTarget>, key: BackendKey) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some((Arc::clone(target), key));
    }

    /// The client holds no server.
    pub fn clear(&self) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    fn get(&self) -> Option<(Arc<ServerTarget>, BackendKey)> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

struct Entry {
    secret: [u8; 4],
    slot: Arc<CancelSlot>,
}

/// All connected clients' cancel keys.
#[derive(Default)]
pub struct CancelRegistry {
    clients: Mutex<HashMap<i32, Entry>>,
    next_pid: AtomicI32,
}

/// A client's registration; dropping it forgets the key.
pub struct Registration {
    registry: Arc<CancelRegistry>,
    pub pid: i32,
    pub secret: [u8; 4],
    pub slot: Arc<CancelSlot>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.pid);
    }
}

impl CancelRegistry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i32, Entry>> {
        self.clients.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Issues a fresh (pid, secret) for a new client.
    pub fn register(self: &Arc<Self>) -> Registration {
        let secret: [u8; 4] = rand::random();
        let slot = Arc::new(CancelSlot::default());
        let mut clients = self.lock();
        let pid = loop {
            // Positive, non-zero pids that look like PostgreSQL's to tools that print them.
            let pid = self
                .next_pid
                .fetch_add(1, Ordering::Relaxed)
                .rem_euclid(i32::MAX - 1)
                + 1;
            if !clients.contains_key(&pid) {
                break pid;
            }
        };
        clients.insert(
            pid,
            Entry {
                secret,
                slot: Arc::clone(&slot),
            },
        );
        Registration {
            registry: Arc::clone(self),
            pid,
            secret,
            slot,
        }
    }

    /// The server backend to cancel for a CancelRequest, if the key is valid and
    /// its client holds a server.
    pub fn lookup(&self, pid: i32, secret: &[u8]) -> Option<(Arc<ServerTarget>, BackendKey)> {
        let clients = self.lock();
        let entry = clients.get(&pid)?;
        if secret.len() != 4 || !bool::from(entry.secret.ct_eq(secret)) {
            return None;
        }
        entry.slot.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_needs_right_secret_and_a_held_server() {
        let reg = Arc::new(CancelRegistry::default());
        let a = reg.register();
        let b = reg.register();
        assert_ne!(a.pid, b.pid);
        assert!(reg.lookup(a.pid, &a.secret).is_none(), "no server held yet");
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
        a.slot.set(&target, key);
        assert_eq!(reg.lookup(a.pid, &a.secret).unwrap().1, key);
        let mut wrong = a.secret;
        wrong[0] ^= 1;
        assert!(reg.lookup(a.pid, &wrong).is_none());
        assert!(reg.lookup(a.pid, &[1, 2, 3]).is_none());
        a.slot.clear();
        assert!(reg.lookup(a.pid, &a.secret).is_none());
        let pid = a.pid;
        drop(a);
        assert!(reg.lock().get(&pid).is_none());
    }
}
