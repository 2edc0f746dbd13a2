//! Pool behaviour against a real PostgreSQL: the pool_size bound under 500
//! clients, waiting and its timeout, the client limit, idle/lifetime upkeep,
//! broken server connections, session mode, and pgbench through the pooler.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Harness, PASSWORD};
use tenantpool::config::{AuthType, PoolMode};
use tokio_postgres::{Client, NoTls};

/// Polls `cond` every 10 ms until it holds; panics after 10 s.
async fn wait_until<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Backends of role `role` on the server (pooler connections; tests connect directly only as postgres).
async fn backends(direct: &Client, role: &str) -> i64 {
    direct
        .query_one(
            "select count(*) from pg_stat_activity where usename = $1",
            &[&role],
        )
        .await
        .unwrap()
        .get(0)
}

async fn backend_pid(client: &Client) -> i32 {
    client
        .query_typed_one("select pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0)
}

async fn count_items(client: &Client) -> i64 {
    client
        .query_typed_one("select count(*) from items", &[])
        .await
        .unwrap()
        .get(0)
}

async fn show_search_path(client: &Client) -> String {
    client
        .query_typed_one("show search_path", &[])
        .await
        .unwrap()
        .get(0)
}

async fn pid_alive(direct: &Client, pid: i32) -> bool {
    direct
        .query_one(
            "select exists (select from pg_stat_activity where pid = $1)",
            &[&pid],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_clients_share_five_server_connections() {
    const CLIENTS: usize = 500;
    const TX: usize = 3;
    let h = Harness::start(|c, _| {
        c.databases.get_mut("app").unwrap().pool_size = 5;
        // SCRAM costs the debug-built client ~0.1 s of CPU per login; md5 keeps 500
        // logins cheap. Authentication has its own tests.
        c.pooler.auth_type = AuthType::Md5;
    })
    .await;
    let h = Arc::new(h);
    let direct = h.direct_superuser().await;

    // All 500 connected at once before any transaction runs.
    let clients = futures_util::future::join_all((0..CLIENTS).map(|i| {
        let h = h.clone();
        async move {
            let tenant = if i % 2 == 0 { "acme" } else { "globex" };
            (tenant, h.connect(&format!("app.{tenant}"), "app").await)
        }
    }))
    .await;

    // Sample the server side throughout the run.
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (h, done) = (h.clone(), done.clone());
        tokio::spawn(async move {
            let (mut max, mut min_seen, mut samples) = (0i64, i64::MAX, 0u32);
            let mut max_open = 0usize;
            while !done.load(Ordering::Relaxed) {
                let n = backends(&direct, "app").await;
                max = max.max(n);
                min_seen = min_seen.min(n);
                max_open = max_open.max(h.pool("app").counts().0);
                samples += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (max, min_seen, samples, max_open)
        })
    };

    let ok = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|(tenant, client)| {
            let ok = ok.clone();
            tokio::spawn(async move {
                let want = if tenant == "acme" { 3 } else { 2 };
                // Simple protocol, extended protocol, and an explicit transaction.
                let n: i64 = client
                    .simple_query("select count(*) from items")
                    .await
                    .unwrap()
                    .iter()
                    .find_map(|m| match m {
                        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0)?.parse().ok(),
                        _ => None,
                    })
                    .unwrap();
                assert_eq!(n, want, "{tenant}");
                assert_eq!(count_items(&client).await, want, "{tenant}");
                client.simple_query("BEGIN").await.unwrap();
                assert_eq!(count_items(&client).await, want, "{tenant}");
                client.simple_query("COMMIT").await.unwrap();
                ok.fetch_add(TX as u64, Ordering::Relaxed);
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("every client's transactions succeed");
    }
    done.store(true, Ordering::Relaxed);
    let (max, min_seen, samples, max_open) = sampler.await.unwrap();

    assert_eq!(ok.load(Ordering::Relaxed), (CLIENTS * TX) as u64);
    let stats = &h.pool("app").stats;
    wait_until("all transactions counted", || async {
        stats.transactions.get() >= (CLIENTS * TX) as u64
    })
    .await;
    assert_eq!(stats.transactions.get(), (CLIENTS * TX) as u64);
    assert!(
        samples >= 3,
        "sampled pg_stat_activity only {samples} times"
    );
    assert!(max <= 5, "server saw {max} connections of role app");
    assert!(min_seen >= 1, "pooler connections stay open");
    assert!(max_open <= 5, "pool counted {max_open} open connections");
    assert!(stats.server_connects.get() <= 5);
    assert_eq!(stats.wait_timeouts.get(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_wait_timeout_gives_an_error_not_a_hang() {
    let h = Harness::start(|c, _| {
        c.databases.get_mut("app").unwrap().pool_size = 1;
        c.pooler.query_wait_timeout = Duration::from_millis(300);
    })
    .await;
    let holder = h.connect("app.acme", "app").await;
    holder.simple_query("BEGIN").await.unwrap();
    holder.simple_query("select 1").await.unwrap();

    let waiter = h.connect("app.globex", "app").await;
    let started = Instant::now();
    let query = tokio::spawn(async move {
        let r = waiter.simple_query("select 1").await;
        (r, waiter)
    });
    let pool = h.pool("app");
    wait_until("the second client to queue", || async {
        pool.counts().2 == 1
    })
    .await;
    let (result, waiter) = tokio::time::timeout(Duration::from_secs(5), query)
        .await
        .expect("the waiting client gets an answer in bounded time")
        .unwrap();
    let elapsed = started.elapsed();
    let err = result.expect_err("no server connection within query_wait_timeout");
    assert_eq!(common::sqlstate(&err).as_deref(), Some("57014"), "{err:?}");
    let msg = err.as_db_error().unwrap().message();
    assert!(msg.contains("query_wait_timeout"), "{msg}");
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    assert_eq!(pool.stats.wait_timeouts.get(), 1);
    wait_until("the refused client to be closed", || async {
        waiter.is_closed()
    })
    .await;
    assert_eq!(pool.counts().2, 0, "nobody waits any more");

    // The holder is unaffected; once it commits, a new client works.
    assert_eq!(count_items(&holder).await, 3);
    holder.simple_query("COMMIT").await.unwrap();
    let next = h.connect("app.globex", "app").await;
    assert_eq!(count_items(&next).await, 2);
    assert_eq!(pool.stats.wait_timeouts.get(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_client_connections_refuses_with_53300() {
    let h = Harness::start(|c, _| c.pooler.max_client_connections = 3).await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        let c = h.connect("app.acme", "app").await;
        assert_eq!(count_items(&c).await, 3);
        clients.push(c);
    }
    let err = h
        .try_connect("app.acme", PASSWORD, "app")
        .await
        .expect_err("a 4th client is refused");
    assert_eq!(common::sqlstate(&err).as_deref(), Some("53300"), "{err:?}");
    let msg = err.as_db_error().unwrap().message().to_owned();
    assert!(msg.contains("max_client_connections"), "{msg}");

    // One leaves; the pooler notices and admits a new client.
    drop(clients.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    let admitted = loop {
        match h.try_connect("app.acme", PASSWORD, "app").await {
            Ok(c) => break c,
            Err(e) => {
                assert_eq!(common::sqlstate(&e).as_deref(), Some("53300"), "{e:?}");
                assert!(
                    Instant::now() < deadline,
                    "no slot freed after a client left"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    assert_eq!(count_items(&admitted).await, 3);
    let err = h
        .try_connect("app.acme", PASSWORD, "app")
        .await
        .unwrap_err();
    assert_eq!(common::sqlstate(&err).as_deref(), Some("53300"));
    for c in &clients {
        assert_eq!(count_items(c).await, 3, "admitted clients keep working");
    }
}

/// Queues `WAITERS` clients of alternating tenants behind one held connection and
/// returns, for each in queue order, its place in the order they were served.
async fn served_order(affinity: bool) -> Vec<usize> {
    const WAITERS: usize = 20;
    let h = Harness::start(|c, _| {
        let db = c.databases.get_mut("app").unwrap();
        db.pool_size = 1;
        db.tenant.as_mut().unwrap().affinity = affinity;
    })
    .await;
    h.cluster
        .psql(
            "app",
            "create sequence fifo_seq; grant usage on sequence fifo_seq to app",
        )
        .unwrap();
    let holder = h.connect("app.acme", "app").await;
    holder.simple_query("BEGIN").await.unwrap();
    holder.simple_query("select 1").await.unwrap();

    let mut clients = Vec::new();
    for i in 0..WAITERS {
        let tenant = if i % 2 == 0 { "globex" } else { "acme" };
        clients.push(h.connect(&format!("app.{tenant}"), "app").await);
    }
    // Queue them one by one, so the queue order is known.
    let pool = h.pool("app");
    let mut queries = Vec::new();
    for (i, c) in clients.into_iter().enumerate() {
        queries.push(tokio::spawn(async move {
            let row = c.query_typed_one("select nextval('fifo_seq')", &[]).await?;
            Ok::<i64, tokio_postgres::Error>(row.get(0))
        }));
        wait_until("the client to queue", || async { pool.counts().2 == i + 1 }).await;
    }
    holder.simple_query("COMMIT").await.unwrap();

    // nextval() runs on the server in the order the clients got the connection.
    let mut order = Vec::new();
    for q in queries {
        let v = q.await.unwrap().expect("every waiting client succeeds");
        order.push(v as usize - 1);
    }
    assert_eq!(pool.stats.wait_timeouts.get(), 0);
    order
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_clients_are_served_first_in_first_out() {
    let order = served_order(false).await;
    assert_eq!(order, (0..order.len()).collect::<Vec<_>>());
}

/// With tenant affinity, a connection set to acme goes to a waiting acme client
/// first, but no client sees more than four later ones served before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_affinity_bends_the_queue_order_within_bounds() {
    let order = served_order(true).await;
    // Queue: globex, acme, globex, acme, ...; the connection comes back set to
    // acme, so the first acme waiter (1) goes first.
    assert_eq!(order[1], 0, "order: {order:?}");
    assert_ne!(order, (0..order.len()).collect::<Vec<_>>());
    for (i, &place) in order.iter().enumerate() {
        let overtaken_by = order[i + 1..].iter().filter(|&&p| p < place).count();
        assert!(
            overtaken_by <= 4,
            "client {i} passed over {overtaken_by} times: {order:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_close_down_to_min_pool_size() {
    let h = Harness::start(|c, _| {
        let db = c.databases.get_mut("app").unwrap();
        db.pool_size = 5;
        db.min_pool_size = 2;
        c.pooler.server_idle_timeout = Duration::from_millis(200);
    })
    .await;
    let direct = h.direct_superuser().await;
    let pool = h.pool("app");
    let at = |n: usize| {
        let (direct, pool) = (&direct, &pool);
        move || async move { pool.counts().0 == n && backends(direct, "app").await == n as i64 }
    };
    wait_until("min_pool_size connections warm", at(2)).await;

    // A burst: five clients in open transactions at once need five connections.
    let mut burst = Vec::new();
    for _ in 0..5 {
        let c = h.connect("app.acme", "app").await;
        c.simple_query("BEGIN").await.unwrap();
        assert_eq!(count_items(&c).await, 3);
        burst.push(c);
    }
    assert_eq!(pool.counts().0, 5);
    assert_eq!(backends(&direct, "app").await, 5);
    for c in &burst {
        c.simple_query("COMMIT").await.unwrap();
    }
    let idle_since = Instant::now();
    wait_until("idle connections closed down to 2", at(2)).await;
    assert!(
        idle_since.elapsed() >= Duration::from_millis(200),
        "closed before server_idle_timeout: {:?}",
        idle_since.elapsed()
    );
    // It stays there over many upkeep periods (every 50 ms here).
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_millis(800) {
        assert_eq!(pool.counts().0, 2, "min_pool_size kept");
        assert_eq!(backends(&direct, "app").await, 2);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(count_items(&burst[0]).await, 3, "still serving");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_lifetime_replaces_old_connections() {
    let h = Harness::start(|c, _| {
        c.databases.get_mut("app").unwrap().pool_size = 1;
        c.pooler.server_lifetime = Duration::from_millis(300);
    })
    .await;
    let direct = h.direct_superuser().await;
    let started = Instant::now();
    let client = h.connect("app.acme", "app").await;
    let first = backend_pid(&client).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let second = loop {
        let pid = backend_pid(&client).await;
        if pid != first {
            break pid;
        }
        assert!(Instant::now() < deadline, "backend never replaced");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "replaced before server_lifetime: {:?}",
        started.elapsed()
    );
    assert_ne!(first, second);
    wait_until("the old backend to exit", || async {
        !pid_alive(&direct, first).await
    })
    .await;
    assert_eq!(
        count_items(&client).await,
        3,
        "the new connection got the tenant"
    );
    assert!(h.pool("app").stats.server_connects.get() >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_idle_server_connection_is_replaced() {
    let h = Harness::start(|c, _| c.databases.get_mut("app").unwrap().pool_size = 1).await;
    let direct = h.direct_superuser().await;
    let client = h.connect("app.acme", "app").await;
    let pid = backend_pid(&client).await;
    let killed: bool = direct
        .query_one("select pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap()
        .get(0);
    assert!(killed);
    wait_until("the backend to exit", || async {
        !pid_alive(&direct, pid).await
    })
    .await;

    // The next transaction gets a fresh connection, set to its tenant.
    let new_pid = backend_pid(&client).await;
    assert_ne!(new_pid, pid);
    assert_eq!(count_items(&client).await, 3);
    assert_eq!(h.pool("app").counts().0, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_connection_broken_mid_transaction_errors_the_client() {
    let h = Harness::start(|c, _| c.databases.get_mut("app").unwrap().pool_size = 1).await;
    let direct = h.direct_superuser().await;

    // 1. Idle in transaction: the server's FATAL reaches the client unasked.
    let (client, conn) = h
        .config("app.acme", PASSWORD, "app")
        .connect(NoTls)
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    client.simple_query("BEGIN").await.unwrap();
    let pid = backend_pid(&client).await;
    direct
        .query_one("select pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(10), conn)
        .await
        .expect("the client connection ends")
        .unwrap();
    let err = ended.expect_err("ends with an error");
    assert_eq!(
        common::sqlstate(&err).as_deref(),
        Some("57P01"),
        "the server's own error, unchanged: {err:?}"
    );
    assert!(client.simple_query("select 1").await.is_err());

    // 2. During a statement: the statement fails with that error.
    let client = h.connect("app.globex", "app").await;
    client.simple_query("BEGIN").await.unwrap();
    let pid2 = backend_pid(&client).await;
    assert_ne!(pid2, pid, "the broken connection was not reused");
    let sleeping = tokio::spawn(async move {
        let r = client.simple_query("select pg_sleep(30)").await;
        (r, client)
    });
    wait_until("pg_sleep to run", || async {
        direct
            .query_one(
                "select exists (select from pg_stat_activity where pid = $1 and state = 'active')",
                &[&pid2],
            )
            .await
            .unwrap()
            .get::<_, bool>(0)
    })
    .await;
    direct
        .query_one("select pg_terminate_backend($1)", &[&pid2])
        .await
        .unwrap();
    let (r, client) = tokio::time::timeout(Duration::from_secs(10), sleeping)
        .await
        .expect("the statement ends promptly")
        .unwrap();
    let err = r.expect_err("the statement fails");
    assert_eq!(common::sqlstate(&err).as_deref(), Some("57P01"), "{err:?}");
    wait_until("the client connection to close", || async {
        client.is_closed()
    })
    .await;

    // 3. A new client works, on a new server connection.
    let fresh = h.connect("app.acme", "app").await;
    assert_eq!(count_items(&fresh).await, 3);
    let pid3 = backend_pid(&fresh).await;
    assert!(pid3 != pid && pid3 != pid2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_mode_keeps_one_backend_and_resets_it_after() {
    let h = Harness::start(|c, _| {
        let mut db = c.databases["app"].clone();
        db.pool_mode = PoolMode::Session;
        db.pool_size = 2;
        c.databases.insert("sess".into(), db);
    })
    .await;
    let acme = h.connect("app.acme", "sess").await;
    let globex = h.connect("app.globex", "sess").await;
    let (pa, pg) = (backend_pid(&acme).await, backend_pid(&globex).await);
    assert_ne!(pa, pg);
    let default_path = show_search_path(&acme).await;
    acme.simple_query("SET search_path = pg_catalog, public")
        .await
        .unwrap();
    for _ in 0..5 {
        // Interleaved transactions: each client keeps its own backend.
        assert_eq!(backend_pid(&acme).await, pa);
        assert_eq!(backend_pid(&globex).await, pg);
        assert_eq!(count_items(&acme).await, 3);
        assert_eq!(count_items(&globex).await, 2);
        acme.simple_query("BEGIN; select 1; COMMIT").await.unwrap();
    }
    assert_eq!(
        show_search_path(&acme).await,
        "pg_catalog, public",
        "session SET persists"
    );
    assert_eq!(show_search_path(&globex).await, default_path);

    // acme leaves; its backend is reset and handed to the next client (globex holds the other).
    drop(acme);
    let next = h.connect("app.globex", "sess").await;
    assert_eq!(backend_pid(&next).await, pa, "the released backend");
    assert_eq!(
        show_search_path(&next).await,
        default_path,
        "DISCARD ALL ran"
    );
    assert_eq!(
        count_items(&next).await,
        2,
        "set to the new client's tenant"
    );
    assert_eq!(backend_pid(&globex).await, pg);
    assert_eq!(h.pool("sess").stats.server_connects.get(), 2);
}

/// Runs pgbench as pooler user `app` against database `bench`; returns its stdout.
async fn pgbench(h: &Harness, args: &[&str]) -> String {
    let mut cmd = tokio::process::Command::new(h.bin("pgbench"));
    cmd.args(["-h", "127.0.0.1", "-p", &h.port().to_string(), "-U", "app"])
        .args(args)
        .arg("bench")
        .env("PGPASSWORD", PASSWORD)
        .env("PGCONNECT_TIMEOUT", "10")
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("pgbench finishes")
        .expect("pgbench runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "pgbench {args:?} failed: {stdout}\n{stderr}"
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_through_the_pooler() {
    let h = Harness::start(|_, _| {}).await;
    pgbench(&h, &["-i", "-s", "1", "-q"]).await;
    let n = h
        .cluster
        .psql("app", "select count(*) from pgbench_accounts")
        .unwrap();
    assert_eq!(n.trim(), "100000");

    let out = pgbench(&h, &["-M", "extended", "-c", "8", "-j", "2", "-t", "50"]).await;
    assert!(
        out.contains("number of transactions actually processed: 400/400"),
        "{out}"
    );
    assert!(out.contains("number of failed transactions: 0 "), "{out}");
    let history = h
        .cluster
        .psql("app", "select count(*) from pgbench_history")
        .unwrap();
    assert_eq!(history.trim(), "400", "every transaction committed");
    assert!(h.pool("bench").stats.server_connects.get() <= 5);
}
