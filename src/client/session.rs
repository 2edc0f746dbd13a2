//! A logged-in client's life: wait for its next message, lend it a server
//! connection (set to its tenant), relay until the transaction ends, give the
//! server back. In session mode the server stays lent until the client leaves.
//!
//! What an idle client costs is what this layout is about. Its task is a
//! [`ClientTask`]: a tag and one pointer. Between transactions it points at the
//! [`Session`], which holds only what outlives a transaction (the socket, the
//! login's facts, the settings to restore, the server in session mode), and the
//! idle wait polls the sockets' readiness and the registry entry's signals
//! directly: no buffer, no pinned sub-futures. Each transaction, with its buffers
//! and framing state, is one boxed future ([`step`]), allocated when the client
//! wakes and freed when it is idle again.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::io::poll_read_buf;

use super::login::Login;
use super::send_error;
use crate::config::PoolMode;
use crate::error::{sqlstate, ClientError};
use crate::net::Stream;
use crate::pool::{reset, ServerConn};
use crate::pooler::clients::{ClientEntry, ClientState, Registered, Signal};
use crate::pooler::{Control, Database, Phase};
use crate::relay::prepared::close_message;
use crate::relay::{
    ClientHalf, ClientParams, ClientStatements, Outcome, Relay, RelayError, ServerHalf,
    ServerStatements, Tracker,
};
use crate::tenant::{ClientSet, ServerTenant, TenantPolicy};

/// What woke an idle session.
#[derive(Debug, Clone, Copy)]
pub enum Wake {
    Client,
    /// Only in session mode: the held server sent something unasked (a notification).
    Server,
    Gone,
    /// KILL, or a forced shutdown.
    Killed,
    /// A graceful shutdown started while the client was between transactions.
    Draining,
}

/// What a logged-in client keeps between transactions.
pub struct Session {
    client: Stream,
    control: Arc<Control>,
    /// Refreshed at a transaction's start after a reload.
    database: Arc<Database>,
    /// Its entry in the client registry, which also holds its tenant.
    registered: Registered,
    /// The tracked session settings it wants.
    params: ClientParams,
    /// Its tenant SET, made once (tenant-scoped databases).
    set_tenant: Option<Box<ClientSet>>,
    /// Token logins: no transaction starts once the clock (unix seconds) reaches
    /// this, the token's `exp` plus the leeway. `u64::MAX` for other logins.
    expires: u64,
    max_message: u32,
    max_prepared: u32,
    /// Its named prepared statements (rewritten in transaction/statement
    /// modes), boxed once it has any.
    statements: Option<Box<ClientStatements>>,
    /// The server it keeps between transactions: session mode only.
    held: Option<Box<ServerConn>>,
}

impl Drop for Session {
    fn drop(&mut self) {
        // Its place in `max_client_connections` (taken over in `new`), given back
        // once its socket is closed, as the permit itself would have been.
        drop(std::mem::replace(&mut self.client, Stream::Closed));
        self.control.client_slots.add_permits(1);
    }
}

impl Session {
    pub fn new(
        client: Stream,
        login: Login,
        control: Arc<Control>,
        permit: OwnedSemaphorePermit,
    ) -> Box<Session> {
        let Login {
            database,
            registered,
            expires_at,
            params,
        } = login;
        let set_tenant = database
            .tenant
            .as_ref()
            .map(|p| Box::new(p.client_set(registered.entry.tenant.as_ref())));
        // A graceful shutdown tells the registered clients; one that began before
        // this entry was there is seen here.
        if control.phase() != Phase::Running {
            registered.entry.drain();
        }
        // Its place in `max_client_connections` is given back by `drop`, through
        // `control`, which the session holds anyway: 16 bytes less per client.
        debug_assert!(Arc::ptr_eq(permit.semaphore(), &control.client_slots));
        permit.forget();
        let (max_message, max_prepared) = {
            let pooler = &control.current().config.pooler;
            (pooler.max_message_size, pooler.max_prepared_statements)
        };
        Box::new(Session {
            client,
            control,
            database,
            registered,
            params,
            set_tenant,
            expires: expires_at.map_or(u64::MAX, |(exp, leeway)| exp.saturating_add(leeway)),
            // max_message_size is at most 1 GiB (validated); a statement limit past
            // u32 is no limit either way.
            max_message: u32::try_from(max_message).unwrap_or(u32::MAX),
            max_prepared: u32::try_from(max_prepared).unwrap_or(u32::MAX),
            statements: None,
            held: None,
        })
    }
}

/// A client connection's task: its login, then its session, which is either
/// idle (waiting in [`poll_wake`]) or running one [`step`]. `L` is the login's
/// future, `T` a step's, `F` makes a step.
pub struct ClientTask<L, T, F> {
    state: State<L, T>,
    step: F,
}

enum State<L, T> {
    Login(Pin<Box<L>>),
    Idle(Box<Session>),
    Busy(Pin<Box<T>>),
    Done,
}

impl<L, T, F> ClientTask<L, T, F>
where
    L: Future<Output = Option<Box<Session>>>,
    T: Future<Output = Option<Box<Session>>>,
    F: Fn(Box<Session>, Wake) -> T + Unpin,
{
    /// `login` ends with the session to run, or `None` when there is none (a
    /// refused login, a cancel request, an admin console it ran itself).
    pub fn new(login: L, step: F) -> Self {
        ClientTask {
            state: State::Login(Box::pin(login)),
            step,
        }
    }
}

impl<L, T, F> Future for ClientTask<L, T, F>
where
    L: Future<Output = Option<Box<Session>>>,
    T: Future<Output = Option<Box<Session>>>,
    F: Fn(Box<Session>, Wake) -> T + Unpin,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // Every state is a box (or nothing), so the task itself is Unpin.
        let this = self.get_mut();
        loop {
            let next = match &mut this.state {
                State::Login(login) => match login.as_mut().poll(cx) {
                    Poll::Ready(next) => next,
                    Poll::Pending => return Poll::Pending,
                },
                State::Busy(step) => match step.as_mut().poll(cx) {
                    Poll::Ready(next) => next,
                    Poll::Pending => return Poll::Pending,
                },
                State::Idle(session) => match session.poll_wake(cx) {
                    Poll::Ready(wake) => {
                        let State::Idle(session) = std::mem::replace(&mut this.state, State::Done)
                        else {
                            unreachable!("matched above")
                        };
                        this.state = State::Busy(Box::pin((this.step)(session, wake)));
                        continue;
                    }
                    Poll::Pending => return Poll::Pending,
                },
                State::Done => return Poll::Ready(()),
            };
            // The finished login or step is freed here.
            match next {
                Some(session) => this.state = State::Idle(session),
                None => {
                    this.state = State::Done;
                    return Poll::Ready(());
                }
            }
        }
    }
}

impl Session {
    fn poll_wake(&self, cx: &mut Context<'_>) -> Poll<Wake> {
        poll_wake(
            &self.client,
            &self.registered.entry,
            self.held.as_deref(),
            cx,
        )
    }
}

/// The idle wait: ready when the client (or, in session mode, its server) has
/// something to say, or the session was killed or told to drain. A kill comes
/// first, then a drain, then the client.
fn poll_wake(
    client: &Stream,
    entry: &ClientEntry,
    held: Option<&ServerConn>,
    cx: &mut Context<'_>,
) -> Poll<Wake> {
    match entry.poll_signal(cx, true) {
        Poll::Ready(Signal::Killed) => return Poll::Ready(Wake::Killed),
        Poll::Ready(Signal::Draining) => return Poll::Ready(Wake::Draining),
        Poll::Pending => {}
    }
    if let Poll::Ready(r) = client.poll_read_ready(cx) {
        return Poll::Ready(if r.is_ok() { Wake::Client } else { Wake::Gone });
    }
    if let Some(server) = held {
        if let Poll::Ready(r) = server.stream.poll_read_ready(cx) {
            return Poll::Ready(if r.is_ok() { Wake::Server } else { Wake::Gone });
        }
    }
    Poll::Pending
}

/// One step of a session, as the task runs it (boxed): the session back when it
/// is idle again, `None` when it is over.
pub async fn run_step(mut session: Box<Session>, wake: Wake) -> Option<Box<Session>> {
    step(&mut session, wake).await.then_some(session)
}

/// Acts on what woke the idle session: usually one transaction. False: the
/// session is over (its server, if it held one, released).
async fn step(s: &mut Session, wake: Wake) -> bool {
    // Taken for the step (and put back when it ends idle), so that the code below
    // reads as one session's loop. The named prepared statements (rewritten in
    // transaction/statement modes) are boxed in the session only while it has some.
    let mut client = std::mem::replace(&mut s.client, Stream::Closed);
    let mut held = s.held.take();
    let mut statements = s
        .statements
        .take()
        .map_or_else(ClientStatements::default, |kept| *kept);
    let Session {
        control,
        database,
        registered,
        params: client_params,
        set_tenant,
        expires,
        max_message,
        max_prepared,
        ..
    } = &mut *s;
    let entry = &registered.entry;
    let client_id = entry.id;
    let tenant = &entry.tenant;
    let (max_message, max_prepared) = (*max_message as usize, *max_prepared as usize);

    // A transaction's own state, fresh each time: one ends with both directions
    // drained and the tracker idle, so nothing carries over.
    let mut inbound = ClientHalf::default();
    if database.mode != PoolMode::Session {
        // In session mode the client keeps its server: nothing to carry over.
        inbound.watch = Some(Arc::clone(client_params.tracked_arc()));
    }
    let mut outbound = ServerHalf::default();
    let mut tracker = Tracker::default();
    let mut woke = Some(wake);

    loop {
        // 1. Wait until the client has a whole message header for us (or, in session
        //    mode, the held server has something to say).
        if !inbound.has_input() {
            let wake = match woke.take() {
                Some(wake) => wake,
                // Between transactions: back to the idle wait, holding no buffer.
                None if inbound.buf.is_empty() => {
                    inbound.release_buffer();
                    s.client = client;
                    s.held = held;
                    s.statements = (!statements.is_empty()).then(|| Box::new(statements));
                    return true;
                }
                // Part of a header arrived: wait for the rest here.
                None => poll_fn(|cx| poll_wake(&client, entry, held.as_deref(), cx)).await,
            };
            match wake {
                Wake::Gone => break,
                Wake::Killed => {
                    Box::pin(send_error(&mut client, &terminated())).await;
                    break;
                }
                Wake::Draining => {
                    let error = ClientError::fatal(
                        sqlstate::ADMIN_SHUTDOWN,
                        "terminating connection: tenantpool is shutting down",
                    );
                    Box::pin(send_error(&mut client, &error)).await;
                    break;
                }
                Wake::Server => {}
                Wake::Client => {
                    inbound.reserve();
                    let read =
                        poll_fn(|cx| poll_read_buf(Pin::new(&mut client), cx, &mut inbound.buf))
                            .await;
                    match read {
                        Ok(0) | Err(_) => break,
                        Ok(n) => tracker.counts.received += n as u64,
                    }
                    // Terminate is not for the server; nothing else is looked at
                    // until a server is held (statement names depend on it).
                    if inbound.next_tag() == Some(crate::protocol::tag::TERMINATE) {
                        break;
                    }
                    if !inbound.has_input() {
                        continue;
                    }
                }
            }
        }

        // 2. At the start of a transaction: the login token must still be valid,
        //    and the database still configured (a reload may have changed its rules,
        //    or removed or re-pointed it: then the client is told to reconnect).
        // (The clock is read only for a login that expires.)
        if inbound.has_input() && *expires != u64::MAX && unix_now() >= *expires {
            let error = ClientError::fatal(
                sqlstate::INVALID_AUTHORIZATION_SPECIFICATION,
                "tenantpool: the login token has expired; reconnect with a fresh token",
            );
            Box::pin(send_error(&mut client, &error)).await;
            break;
        }
        // (In session mode, at each transaction's first message too.)
        if held.is_none() || inbound.has_input() {
            match control.current().database(&database.name) {
                Some(now) if Arc::ptr_eq(now, database) => {}
                Some(now) if Arc::ptr_eq(&now.pool, &database.pool) => {
                    *database = Arc::clone(now);
                    *set_tenant = database
                        .tenant
                        .as_ref()
                        .map(|p| Box::new(p.client_set(tenant.as_ref())));
                }
                _ => {
                    let error = crate::pool::PoolError::Retired(database.name.clone()).to_client();
                    Box::pin(send_error(&mut client, &error)).await;
                    break;
                }
            }
        }
        let pool = &database.pool;
        let policy = database.tenant.as_ref();
        let affinity = policy.is_some_and(|p| p.affinity);

        // 3. Get a server connection.
        let mut relay_started = None;
        let server = match &mut held {
            Some(server) => server,
            None => {
                let wait_started = Instant::now();
                entry.set_state(ClientState::Waiting, 0, wait_started);
                let checkout = tokio::select! {
                    // Boxed, like the other rare awaits: an idle client's task holds only
                    // its small idle state, not the largest step's.
                    r = Box::pin(pool.checkout(tenant.as_ref(), affinity, client_id)) => r,
                    _ = entry.killed() => {
                        Box::pin(send_error(&mut client, &terminated())).await;
                        break;
                    }
                };
                match checkout {
                    Ok(server) => {
                        // Lent at `last_used`: the pool read the clock then.
                        relay_started = Some(server.last_used);
                        let waited = server.last_used.saturating_duration_since(wait_started);
                        crate::metrics::pool::waited(pool, waited); // metrics hook
                        held.insert(server)
                    }
                    Err(e) => {
                        Box::pin(send_error(&mut client, &e.to_client())).await;
                        break;
                    }
                }
            }
        };
        let relay_started = relay_started.unwrap_or_else(Instant::now);
        entry.set_state(ClientState::Active, server.id, relay_started);

        // 4. Make sure it holds this client's tenant and session settings, without a
        //    round trip of its own.
        // Some(unsynced): a tenant SET was sent, inside the client's transaction or not.
        let mut injected = None;
        let mut prefix = None;
        let mut unsynced_set = None;
        // Only ahead of client messages: when the server woke us, its own message comes first.
        if let Some(set) = set_tenant.as_deref().filter(|_| inbound.has_input()) {
            if server.tenant.matches(tenant.as_ref()) {
                pool.stats.tenant_sets_skipped.inc();
            } else {
                // Inside the client's own transaction where its first statement allows
                // (see tenant::inline); otherwise as a Query of its own.
                let unsynced = match policy {
                    Some(policy) if database.mode != PoolMode::Session => inline_tenant_set(
                        policy,
                        set,
                        &inbound,
                        &statements,
                        (max_prepared > 0).then_some((&mut server.statements, max_prepared)),
                    ),
                    _ => None,
                };
                if let Some(message) = unsynced {
                    unsynced_set = Some(message);
                    outbound.swallowing_unsynced = true;
                    outbound.awaiting_fate = true;
                    outbound.rollback_seen = false;
                    inbound.hold_after_next_request(&tracker);
                } else {
                    let Some(message) = policy.and_then(|p| {
                        p.tenant_message(tenant.as_ref(), &set.message, server.identity)
                    }) else {
                        let error = ClientError::fatal(
                            sqlstate::INTERNAL_ERROR,
                            "tenantpool: the signed tenant context needs the backend identity, which is unknown",
                        );
                        Box::pin(send_error(&mut client, &error)).await;
                        held = None;
                        break;
                    };
                    prefix = Some(message);
                    outbound.swallowing += 1;
                }
                server.tenant = ServerTenant::Unknown;
                injected = Some(unsynced_set.is_some());
                pool.stats.tenant_sets_sent.inc();
            }
        }

        if inbound.has_input() {
            if let Some(restore) = client_params.restore(&mut server.params) {
                outbound.swallowing += 1;
                prefix = Some(join(prefix, restore));
            }
        }
        // The unsynced SET goes last, right before the client's first statement.
        if let Some(set) = unsynced_set {
            prefix = Some(join(prefix, set));
        }
        if let Some(prefix) = prefix {
            inbound.set_prefix(prefix);
        }
        outbound.refuse_transactions = database.mode == PoolMode::Statement;

        // 5. Relay until the transaction is over.
        entry.set_cancel(&pool.target, server.key);
        let mut relay = Relay {
            client: &mut client,
            inbound: &mut inbound,
            server,
            outbound: &mut outbound,
            tracker: &mut tracker,
            policy,
            max_message,
            statements: (database.mode != PoolMode::Session && max_prepared > 0)
                .then_some(&mut statements),
            max_prepared,
            tenant_set: set_tenant.as_deref().map(|s| &s.message),
        };
        // What arrived while no server was held is framed now that one is.
        let scanned = relay.scan_client();
        let result = match scanned {
            Err(e) => Some(Err(e)),
            Ok(()) => tokio::select! {
                r = relay => Some(r),
                _ = entry.killed() => None,
            },
        };
        entry.clear_cancel();
        let Some(result) = result else {
            // Killed mid-transaction: the server's state is whatever it is; the
            // release below rolls it back or closes it.
            Box::pin(send_error(&mut client, &terminated())).await;
            break;
        };

        let server = held.as_mut().expect("held during relay");
        inbound.release_hold();
        outbound.awaiting_fate = false;
        if std::mem::take(&mut outbound.set_resent) {
            pool.stats.tenant_sets_sent.inc();
        }
        if let Some(unsynced) = injected {
            // A SET inside the client's transaction lasts only if that committed:
            // trust it only after a clean end, with no error and no ROLLBACK.
            let set = outbound.swallowing == 0
                && !outbound.swallowing_unsynced
                && match result {
                    Ok(Outcome::Idle) => !(unsynced && outbound.rollback_seen),
                    Ok(_) => !unsynced,
                    Err(_) => false,
                };
            if set {
                server.tenant =
                    ServerTenant::Known(tenant.as_ref().map(|t| Arc::clone(t.as_arc())));
            }
        }
        server.tenant_tainted |= tracker.tenant_tainted;
        if tracker.tenant_touched || server.tenant_tainted {
            server.tenant = ServerTenant::Unknown;
            tracker.tenant_touched = false;
            tracker.tenant_tainted = false;
        }

        pool.stats.add_relay_counts(&mut tracker.counts);
        for (name, value) in outbound.reported.drain(..) {
            client_params.learn(&mut server.params, &name, &value);
        }

        match result {
            Ok(Outcome::Idle) => {
                if tracker.params_touched
                    && !Box::pin(read_back_extras(server, client_params)).await
                {
                    // The transaction is done; only the server connection is lost.
                    held = None;
                }
                pool.stats.transactions.inc();
                let ended = Instant::now();
                let took = ended.saturating_duration_since(relay_started);
                crate::metrics::pool::transaction(pool, took, tenant.as_ref()); // metrics hook
                tracker.reset();
                if database.mode != PoolMode::Session {
                    if let Some(server) = held.take() {
                        pool.checkin_at(server, ended);
                    }
                    entry.set_state(ClientState::Idle, 0, ended);
                }
            }
            Ok(Outcome::ClientGone) => break,
            Ok(Outcome::TransactionBlock) => {
                // Statement mode: the server goes back after each statement, so a
                // transaction block cannot be kept; roll it back (on release).
                let server = held.as_mut().expect("held during relay");
                outbound.drop_output(&mut server.buf);
                let error = ClientError::fatal(
                    sqlstate::FEATURE_NOT_SUPPORTED,
                    format!(
                        "tenantpool: transaction blocks are not allowed in statement pool mode (database \"{}\"); run each statement on its own, or use pool_mode = \"transaction\"",
                        database.name
                    ),
                );
                Box::pin(send_error(&mut client, &error)).await;
                break;
            }
            Err(e) => {
                let error = relay_error_to_client(&e);
                tracing::warn!(pool = %pool.name, error = %e, "closing client after relay error");
                Box::pin(send_error(&mut client, &error)).await;
                // The server's state is unknown: drop (close) it rather than reuse it.
                held = None;
                tracker.reset();
                break;
            }
        }
    }

    if let Some(server) = held.take() {
        release_after_client(
            database.pool.clone(),
            server,
            &tracker,
            &inbound,
            &outbound,
            database.mode,
        );
    }
    false
}

/// The tenant SET to send inside the client's own transaction, if its next
/// request allows that (see [`crate::tenant::inline`]).
fn inline_tenant_set(
    policy: &TenantPolicy,
    set: &ClientSet,
    inbound: &ClientHalf,
    statements: &ClientStatements,
    server_statements: Option<(&mut ServerStatements, usize)>,
) -> Option<Bytes> {
    let sql = inbound.single_statement_request(Some(statements))?;
    if !crate::tenant::inline::starts_plain_statement(sql) {
        return None;
    }
    // Prepared once per server and tenant where the server's statements are
    // tracked (they are then closed least recently used first, like the clients').
    let named = server_statements.zip(set.statement.as_ref());
    let Some(((server, max), name)) = named else {
        return policy.unsynced_set_message(&set.message);
    };
    let prepared = server.touch(name);
    let mut buf = BytesMut::with_capacity(if prepared {
        40
    } else {
        set.message.len() + 120
    });
    if !prepared {
        // Closed first: a client's SQL PREPARE may have taken the name (closing a
        // name nobody has is no error).
        buf.extend_from_slice(&close_message(name));
        if let Some(evicted) = server.insert(Arc::clone(name), max) {
            buf.extend_from_slice(&close_message(&evicted));
        }
    }
    policy.put_unsynced_named_set(&mut buf, name, &set.message, !prepared);
    Some(buf.freeze())
}

/// `first` then `then`, as one write.
fn join(first: Option<bytes::Bytes>, then: bytes::Bytes) -> bytes::Bytes {
    match first {
        None => then,
        Some(first) => [first, then].concat().into(),
    }
}

/// What a killed client is told (PostgreSQL's words for pg_terminate_backend).
fn terminated() -> ClientError {
    ClientError::fatal(
        sqlstate::ADMIN_SHUTDOWN,
        "terminating connection due to administrator command",
    )
}

/// The client left while holding `server`. Give the server back if it is clean,
/// roll back an open transaction first, and close it if anything is in flight.
fn release_after_client(
    pool: Arc<crate::pool::Pool>,
    server: Box<ServerConn>,
    tracker: &Tracker,
    inbound: &ClientHalf,
    outbound: &ServerHalf,
    mode: PoolMode,
) {
    let quiet = inbound.nothing_in_flight() && outbound.is_drained(&server.buf);
    let statement = if quiet && tracker.is_idle() {
        match mode {
            PoolMode::Transaction | PoolMode::Statement => {
                pool.checkin(server);
                return;
            }
            PoolMode::Session => reset::SESSION_RESET,
        }
    } else if quiet && tracker.is_idle_in_transaction() {
        match mode {
            PoolMode::Transaction | PoolMode::Statement => reset::ROLLBACK,
            PoolMode::Session => reset::ROLLBACK_AND_RESET,
        }
    } else {
        // Closing the socket alone would leave a running query running until it
        // next writes; cancel it so the backend frees its slot promptly.
        tracing::debug!(pool = %pool.name, server = server.id, "client left mid-request; cancelling and closing its server connection");
        let (target, key) = (Arc::clone(&pool.target), server.key);
        drop(server);
        tokio::spawn(async move {
            let _ = crate::server::cancel::send_cancel(&target, key).await;
        });
        return;
    };
    tokio::spawn(async move {
        if let Some(server) = reset::run(server, statement).await {
            pool.checkin(server);
        }
    });
}

/// Reads back the tracked settings the server does not report, after a
/// transaction whose SQL may have changed them. False: the connection failed.
async fn read_back_extras(server: &mut ServerConn, params: &mut ClientParams) -> bool {
    let names: Vec<String> = params
        .tracked()
        .extras()
        .map(|(_, n)| n.to_owned())
        .collect();
    for name in names {
        // Names are validated as [A-Za-z0-9_.] when the configuration is loaded.
        let sql = format!("SELECT pg_catalog.current_setting('{name}', true)");
        match crate::pool::simple_query::run(server, &sql).await {
            Ok((true, Some(value))) => params.learn(&mut server.params, &name, &value),
            Ok((true, None)) => {}
            _ => return false,
        }
    }
    true
}

fn relay_error_to_client(e: &RelayError) -> ClientError {
    match e {
        RelayError::ClientProtocol(f) => ClientError::fatal(sqlstate::PROTOCOL_VIOLATION, f.to_string()),
        RelayError::Server(crate::relay::OutboundError::TenantSet(fields)) => ClientError::fatal(
            sqlstate::CONNECTION_FAILURE,
            "tenantpool: could not prepare the server connection (tenant or session settings); the connection was closed",
        )
        .with_detail(fields.to_string()),
        other => ClientError::fatal(
            sqlstate::CONNECTION_FAILURE,
            format!("tenantpool: {other}; the transaction, if any, is lost"),
        ),
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
