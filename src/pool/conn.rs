//! A pooled server connection: the socket, its read buffer, and what the pool
//! knows about its state.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Instant;

use bytes::BytesMut;

use super::Pool;
use crate::net::Stream;
use crate::relay::{ServerParams, ServerStatements};
use crate::server::{BackendKey, LoggedIn};
use crate::tenant::signed::BackendIdentity;
use crate::tenant::ServerTenant;

/// Initial size of a server connection's read buffer.
const READ_BUFFER: usize = 16 * 1024;

/// A server connection owned by the pool or by the client currently using it.
///
/// Dropping it closes the socket and gives its place in the pool back, so every
/// path that cannot vouch for the connection's state simply drops it.
#[derive(Debug)]
pub struct ServerConn {
    pub stream: Stream,
    /// Bytes read from the server and not yet relayed. Kept with the connection so
    /// idle clients hold no buffer of their own for the server side.
    pub buf: BytesMut,
    /// What the tenant setting holds, as far as we know.
    pub tenant: ServerTenant,
    /// Holds a prepared statement that may change the tenant setting: never trust it again.
    pub tenant_tainted: bool,
    /// Cancel key of the backend process.
    pub key: BackendKey,
    /// Pid and start time, when the pool signs tenant contexts.
    pub identity: Option<BackendIdentity>,
    /// Named statements prepared on it (by their content-derived names).
    pub statements: ServerStatements,
    /// Session settings of clients' it holds (transaction and statement modes).
    pub params: ServerParams,
    /// Process-unique id, for logs and admin views.
    pub id: u64,
    pub created: Instant,
    /// When it was last lent or returned.
    pub last_used: Instant,
    slot: Slot,
}

impl ServerConn {
    pub(super) fn new(logged_in: LoggedIn, id: u64, mut slot: Slot) -> Self {
        slot.server = Some(id);
        let mut buf = logged_in.leftover;
        buf.reserve(READ_BUFFER);
        let now = Instant::now();
        ServerConn {
            stream: logged_in.stream,
            buf,
            tenant: ServerTenant::Unknown,
            tenant_tainted: false,
            key: logged_in.key,
            identity: None,
            statements: ServerStatements::default(),
            params: ServerParams::default(),
            id,
            created: now,
            last_used: now,
            slot,
        }
    }

    /// Whether an idle connection is still fit to hand out: the server has neither
    /// closed it nor sent anything unasked (a FATAL on admin shutdown, a notice).
    /// Costs no system call unless the reactor saw the socket become readable.
    pub fn is_healthy(&mut self) -> bool {
        // For TLS this also processes records that carry no data (session tickets).
        self.buf.is_empty() && self.stream.is_quiet()
    }

    /// The pool's KILL count when this connection's slot was reserved.
    pub(super) fn kill_epoch(&self) -> u64 {
        self.slot.kill_epoch
    }
}

/// A place in a pool's `pool_size`, held from the moment a connection starts
/// opening until it is closed. Its drop is the only way the count goes down.
#[derive(Debug)]
pub(super) struct Slot {
    pool: Weak<Pool>,
    /// The connection's id once it exists, so the pool forgets it on drop.
    pub(super) server: Option<u64>,
    /// The pool's KILL count at reservation: a connection that was open (or
    /// opening) at a KILL is closed when it comes back, never reused.
    kill_epoch: u64,
}

impl Slot {
    /// Wraps a place already counted in the pool's `open`.
    pub(super) fn reserved(pool: &Arc<Pool>) -> Self {
        Slot {
            pool: Arc::downgrade(pool),
            server: None,
            kill_epoch: pool.kills.load(Ordering::Acquire),
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.upgrade() {
            pool.slot_released(self.server);
        }
    }
}
