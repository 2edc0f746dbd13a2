//! Tenant injection end to end: isolation under concurrency, the SET skipped when
//! the server already holds the tenant, and no stale belief after anything that
//! can change or reset the setting.

mod common;
#[path = "common/wire.rs"]
mod wire;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Harness;
use tenantpool::config::{AuthType, Config};
use tenantpool::pgcluster::ClusterOptions;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, GenericClient, SimpleQueryMessage};

/// Pool of one, tenant guard off: these tests exercise the pooler's own defence
/// (re-sending the SET when a statement may have changed the setting), which
/// still matters for RESET ALL/DISCARD ALL and where the guard is turned off.
fn pool_size_1_unguarded(c: &mut Config, _: &tenantpool::pgcluster::TempCluster) {
    let db = c.databases.get_mut("app").unwrap();
    db.pool_size = 1;
    db.tenant.as_mut().unwrap().guard = false;
}

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

const TENANTS: usize = 50;
const CLIENTS: usize = 100;
const TX_PER_CLIENT: usize = 20;

/// Tenant `tNN` gets `NN + 1` rows, so a row count identifies the tenant.
fn tenant_name(i: usize) -> String {
    format!("t{i:02}")
}

fn seed_tenants(h: &Harness) {
    h.cluster
        .psql(
            "app",
            &format!(
                "insert into items (tenant_id, name) \
                 select format('t%s', lpad(i::text, 2, '0')), 'item ' || g \
                 from generate_series(0, {}) i, generate_series(1, i + 1) g",
                TENANTS - 1
            ),
        )
        .expect("seed tenants");
}

/// Rows of each statement of a simple-protocol result, as text.
fn simple_results(msgs: &[SimpleQueryMessage]) -> Vec<Vec<Vec<Option<String>>>> {
    let mut out = vec![Vec::new()];
    for m in msgs {
        match m {
            SimpleQueryMessage::Row(r) => out
                .last_mut()
                .unwrap()
                .push((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect()),
            SimpleQueryMessage::CommandComplete(_) => out.push(Vec::new()),
            _ => {}
        }
    }
    out.pop();
    out
}

const SEEN_SQL: &str = "select current_setting($1), array(select tenant_id from items order by id)";
const SEEN_SIMPLE: &str =
    "select current_setting('app.current_tenant'); select tenant_id from items";

/// What one transaction saw: the setting and the tenant_id of every visible row.
type Seen = (String, Vec<String>);

fn seen_from_simple(msgs: &[SimpleQueryMessage]) -> Seen {
    let results = simple_results(msgs);
    assert_eq!(results.len(), 2, "two statements, two results: {results:?}");
    let setting = results[0][0][0].clone().unwrap_or_default();
    let rows = results[1]
        .iter()
        .map(|r| r[0].clone().unwrap_or_default())
        .collect();
    (setting, rows)
}

/// Runs one transaction of kind `kind` and reports what it saw.
async fn one_transaction(client: &mut Client, kind: usize) -> Result<Seen, tokio_postgres::Error> {
    match kind % 4 {
        // Simple protocol, two statements in one implicit transaction.
        0 => Ok(seen_from_simple(&client.simple_query(SEEN_SIMPLE).await?)),
        // Extended protocol, unnamed statement with a parameter, autocommit.
        1 => {
            let row = client
                .query_typed_one(SEEN_SQL, &[(&"app.current_tenant", Type::TEXT)])
                .await?;
            Ok((row.get(0), row.get(1)))
        }
        // Explicit transaction; tokio-postgres's query() prepares a *named* statement
        // and binds it in a second round trip, which must stay on one server.
        2 => {
            let tx = client.transaction().await?;
            // A Row keeps its Statement alive, and dropping the Statement sends Close +
            // Sync; drop the rows before COMMIT so that happens inside the transaction.
            let (sa, ra): Seen = {
                let a = tx.query_one(SEEN_SQL, &[&"app.current_tenant"]).await?;
                (a.get(0), a.get(1))
            };
            let (sb, rb): Seen = {
                let b = tx.query_one(SEEN_SQL, &[&"app.current_tenant"]).await?;
                (b.get(0), b.get(1))
            };
            tx.commit().await?;
            if (&sa, &ra) != (&sb, &rb) {
                return Ok((format!("{sa} then {sb}"), ra));
            }
            Ok((sa, ra))
        }
        // Explicit transaction in simple protocol, one round trip per statement.
        _ => {
            client.simple_query("BEGIN").await?;
            let seen = seen_from_simple(&client.simple_query(SEEN_SIMPLE).await?);
            client.simple_query("COMMIT").await?;
            Ok(seen)
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_tenants_hundred_clients_never_see_each_other() {
    let h = Harness::start(|c, _| {
        c.databases.get_mut("app").unwrap().pool_size = 5;
        // SCRAM's 4096 PBKDF2 rounds cost the (debug-built) client ~0.1 s of CPU per
        // login; md5 keeps 100 logins cheap. Authentication has its own tests.
        c.pooler.auth_type = AuthType::Md5;
    })
    .await;
    seed_tenants(&h);
    let h = Arc::new(h);
    let ran = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let mismatches = Arc::new(AtomicU64::new(0));
    let examples = Arc::new(Mutex::new(Vec::<String>::new()));

    let mut tasks = Vec::new();
    for k in 0..CLIENTS {
        let (h, ran, errors, mismatches, examples) = (
            h.clone(),
            ran.clone(),
            errors.clone(),
            mismatches.clone(),
            examples.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let t = k % TENANTS;
            let tenant = tenant_name(t);
            let mut client = h.connect(&format!("app.{tenant}"), "app").await;
            for j in 0..TX_PER_CLIENT {
                let kind = k + j;
                match one_transaction(&mut client, kind).await {
                    Ok((setting, rows)) => {
                        ran.fetch_add(1, Ordering::Relaxed);
                        let ok = setting == tenant
                            && rows.len() == t + 1
                            && rows.iter().all(|r| *r == tenant);
                        if !ok {
                            mismatches.fetch_add(1, Ordering::Relaxed);
                            examples.lock().unwrap().push(format!(
                                "client {k} tenant {tenant} kind {}: setting {setting:?}, rows {rows:?}",
                                kind % 4
                            ));
                        }
                    }
                    Err(e) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        examples
                            .lock()
                            .unwrap()
                            .push(format!("client {k} kind {}: error {e:?}", kind % 4));
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("client task");
    }

    let shown: Vec<String> = examples.lock().unwrap().iter().take(5).cloned().collect();
    assert_eq!(errors.load(Ordering::Relaxed), 0, "errors, e.g. {shown:#?}");
    assert_eq!(
        mismatches.load(Ordering::Relaxed),
        0,
        "mismatches, e.g. {shown:#?}"
    );
    let total = (CLIENTS * TX_PER_CLIENT) as u64;
    assert_eq!(ran.load(Ordering::Relaxed), total);

    let stats = &h.pool("app").stats;
    // The pooler counts a transaction after relaying its last answer: wait for the count.
    wait_until("all transactions counted", || async {
        stats.transactions.get() >= total
    })
    .await;
    assert_eq!(
        stats.transactions.get(),
        total,
        "one checkout per transaction"
    );
    let (sent, skipped) = (
        stats.tenant_sets_sent.get(),
        stats.tenant_sets_skipped.get(),
    );
    assert_eq!(
        sent + skipped,
        total,
        "every checkout either sends or skips the SET"
    );
    assert!(
        sent >= TENANTS as u64,
        "50 tenants over 5 connections need many SETs: {sent}"
    );
    assert!(stats.server_connects.get() <= 5, "pool_size 5");
}

/// Sum of calls of the pooler's tenant SET, as pg_stat_statements counted them.
async fn set_calls(direct: &Client) -> i64 {
    direct
        .query_one(
            "select coalesce(sum(calls), 0)::bigint from pg_stat_statements \
             where query like 'SET app.current_tenant = %'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

async fn count_items(client: &impl GenericClient) -> i64 {
    client
        .query_typed_one("select count(*) from items", &[])
        .await
        .unwrap()
        .get(0)
}

/// (sent, skipped) of a pool's tenant SET counters.
fn sets(h: &Harness, db: &str) -> (u64, u64) {
    let s = &h.pool(db).stats;
    (s.tenant_sets_sent.get(), s.tenant_sets_skipped.get())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_is_skipped_when_server_already_has_the_tenant() {
    let opts = ClusterOptions {
        extra_conf: vec!["shared_preload_libraries = 'pg_stat_statements'".into()],
        ..Default::default()
    };
    let h = Harness::start_with(opts, |c: &mut Config, _| {
        // pg_stat_statements counts a prepared SET when it is parsed, not each
        // time it runs: these counts need the unnamed SET.
        c.pooler.max_prepared_statements = 0;
        let base = c.databases["app"].clone();
        for (name, size, affinity) in [("one", 1, true), ("two", 2, true), ("two_noaff", 2, false)]
        {
            let mut db = base.clone();
            db.pool_size = size;
            db.tenant.as_mut().unwrap().affinity = affinity;
            c.databases.insert(name.into(), db);
        }
    })
    .await;
    h.cluster
        .psql("app", "create extension pg_stat_statements")
        .unwrap();
    let direct = h.direct_superuser().await;
    direct
        .simple_query("select pg_stat_statements_reset()")
        .await
        .unwrap();

    // One client, 20 transactions, one server connection: one SET, 19 skipped.
    let acme = h.connect("app.acme", "one").await;
    for _ in 0..20 {
        assert_eq!(count_items(&acme).await, 3);
    }
    assert_eq!(sets(&h, "one"), (1, 19));
    let stats = &h.pool("one").stats;
    wait_until("20 transactions counted", || async {
        stats.transactions.get() >= 20
    })
    .await;
    assert_eq!(stats.transactions.get(), 20);
    assert_eq!(set_calls(&direct).await, 1, "the server ran the SET once");

    // Two tenants alternating on one server connection: a SET every time.
    let globex = h.connect("app.globex", "one").await;
    for _ in 0..10 {
        assert_eq!(count_items(&globex).await, 2);
        assert_eq!(count_items(&acme).await, 3);
    }
    assert_eq!(sets(&h, "one"), (21, 19));
    assert_eq!(set_calls(&direct).await, 21);

    // With affinity and two connections, once each tenant has its own: no SETs.
    // Warm up: acme holds one connection in a transaction while globex opens the other.
    let warm = |db: &'static str| {
        let h = &h;
        async move {
            let mut acme = h.connect("app.acme", db).await;
            let globex = h.connect("app.globex", db).await;
            let tx = acme.transaction().await.unwrap();
            assert_eq!(count_items(&tx).await, 3);
            assert_eq!(count_items(&globex).await, 2);
            tx.commit().await.unwrap();
            assert_eq!(h.pool(db).counts().0, 2, "{db}: two server connections");
            assert_eq!(
                sets(h, db),
                (2, 0),
                "{db}: warm-up sets each connection once"
            );
            (acme, globex)
        }
    };
    let (acme, globex) = warm("two").await;
    let before = set_calls(&direct).await;
    for _ in 0..10 {
        assert_eq!(count_items(&acme).await, 3);
        assert_eq!(count_items(&globex).await, 2);
    }
    assert_eq!(
        sets(&h, "two"),
        (2, 20),
        "affinity: every SET skipped after warm-up"
    );
    assert_eq!(set_calls(&direct).await, before, "the server ran no SET");

    // Without affinity the most recently used idle connection is taken, whatever its tenant.
    let (acme, globex) = warm("two_noaff").await;
    let before = set_calls(&direct).await;
    for _ in 0..10 {
        assert_eq!(count_items(&acme).await, 3);
        assert_eq!(count_items(&globex).await, 2);
    }
    // Each client mostly takes the connection the other just released. Mostly: the
    // pooler checks a server in only after relaying its last answer, so the next
    // client's query can race ahead of the check-in and find its own connection.
    let (sent, skipped) = sets(&h, "two_noaff");
    assert_eq!(sent + skipped, 2 + 20);
    assert!(
        sent - 2 >= 10,
        "without affinity SETs keep coming: {sent} sent, {skipped} skipped"
    );
    assert_eq!(set_calls(&direct).await - before, (sent - 2) as i64);
}

/// `current_setting('app.current_tenant', true)` and the visible row count, in one statement.
async fn tenant_view(client: &Client) -> (Option<String>, i64) {
    let row = client
        .query_typed_one(
            "select current_setting('app.current_tenant', true), (select count(*) from items)",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

async fn backend_pid(client: &Client) -> i32 {
    client
        .query_typed_one("select pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0)
}

/// Asserts that `client`'s next transaction on pool `db` sees `tenant` with
/// `rows` rows, and whether the pooler had to send a SET for it.
async fn assert_next_sees(
    h: &Harness,
    db: &str,
    client: &Client,
    tenant: &str,
    rows: i64,
    set: bool,
    why: &str,
) {
    // The counters move when a server goes back to the pool, which may be just
    // after its client saw ReadyForQuery: read them with every server back.
    let settled = || async {
        let (open, idle, _) = h.pool(db).counts();
        open == idle
    };
    wait_until("the pool's servers back", settled).await;
    let (sent, skipped) = sets(h, db);
    assert_eq!(
        tenant_view(client).await,
        (Some(tenant.to_owned()), rows),
        "{why}: the next transaction must run as {tenant}"
    );
    wait_until("the pool's servers back", settled).await;
    let expected = if set {
        (sent + 1, skipped)
    } else {
        (sent, skipped + 1)
    };
    assert_eq!(sets(h, db), expected, "{why}: SET sent? expected {set}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_that_change_the_setting_force_a_new_set() {
    let h = Harness::start(pool_size_1_unguarded).await;
    let acme = h.connect("app.acme", "app").await;
    let acme2 = h.connect("app.acme", "app").await;
    let globex = h.connect("app.globex", "app").await;

    // Each statement runs on the one server connection, set to acme, in its own transaction.
    let simple = [
        "RESET ALL",
        "DISCARD ALL",
        "RESET app.current_tenant",
        "SELECT set_config('app.current_tenant', 'other', false)",
        "SET app.current_tenant = 'other'",
        "SET SESSION AUTHORIZATION app",
        "BEGIN; SET app.current_tenant = 'other'; COMMIT",
        "reset   APP.CURRENT_TENANT",
    ];
    assert_next_sees(&h, "app", &acme, "acme", 3, true, "first transaction").await;
    for sql in simple {
        assert_next_sees(&h, "app", &acme, "acme", 3, false, sql).await; // warm: acme already set
        acme.simple_query(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert_next_sees(&h, "app", &acme, "acme", 3, true, sql).await;
        assert_next_sees(&h, "app", &acme2, "acme", 3, false, sql).await;
    }
    // The same through the extended protocol (the Parse text is inspected).
    acme.query_typed(
        "select set_config('app.current_tenant', 'other', false)",
        &[],
    )
    .await
    .unwrap();
    assert_next_sees(&h, "app", &acme2, "acme", 3, true, "extended set_config").await;

    // A globex client after an acme client set the setting to something else.
    for other in ["globex2", "globex"] {
        acme.simple_query(&format!("SET app.current_tenant = '{other}'"))
            .await
            .unwrap();
        assert_next_sees(&h, "app", &globex, "globex", 2, true, other).await;
        assert_next_sees(&h, "app", &acme, "acme", 3, true, other).await;
    }
    assert_eq!(
        h.pool("app").stats.server_connects.get(),
        1,
        "all on one server connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_transactions_and_set_local_leave_no_stale_tenant() {
    let h = Harness::start(pool_size_1_unguarded).await;
    let acme = h.connect("app.acme", "app").await;
    let globex = h.connect("app.globex", "app").await;

    // An error inside an explicit transaction, then ROLLBACK.
    acme.simple_query("BEGIN").await.unwrap();
    let err = acme.simple_query("select 1/0").await.unwrap_err();
    assert_eq!(common::sqlstate(&err).as_deref(), Some("22012"));
    let err = acme.simple_query("select 1").await.unwrap_err();
    assert_eq!(
        common::sqlstate(&err).as_deref(),
        Some("25P02"),
        "transaction is aborted"
    );
    acme.simple_query("ROLLBACK").await.unwrap();
    assert_eq!(tenant_view(&acme).await, (Some("acme".into()), 3));
    // A failed first transaction right after the pooler's SET (globex replaces acme).
    globex.simple_query("BEGIN").await.unwrap();
    assert!(globex.simple_query("select nope").await.is_err());
    globex.simple_query("ROLLBACK").await.unwrap();
    assert_eq!(tenant_view(&globex).await, (Some("globex".into()), 2));
    assert_eq!(tenant_view(&acme).await, (Some("acme".into()), 3));

    // The client sets the setting itself for its transaction (not guarded yet).
    acme.simple_query("BEGIN").await.unwrap();
    acme.simple_query("SET LOCAL app.current_tenant = 'globex'")
        .await
        .unwrap();
    assert_eq!(tenant_view(&acme).await, (Some("globex".into()), 2));
    acme.simple_query("COMMIT").await.unwrap();
    assert_next_sees(&h, "app", &acme, "acme", 3, true, "after SET LOCAL").await;
    // ... and a session-level SET inside a transaction that is rolled back.
    acme.simple_query("BEGIN; SET app.current_tenant = 'globex'; ROLLBACK")
        .await
        .unwrap();
    assert_next_sees(&h, "app", &acme, "acme", 3, true, "after rolled-back SET").await;
    // ... and one inside a transaction that fails afterwards.
    acme.simple_query("BEGIN").await.unwrap();
    acme.simple_query("SET app.current_tenant = 'globex'")
        .await
        .unwrap();
    assert!(acme.simple_query("select 1/0").await.is_err());
    acme.simple_query("ROLLBACK").await.unwrap();
    assert_next_sees(&h, "app", &globex, "globex", 2, true, "globex after failed").await;
    assert_next_sees(&h, "app", &acme, "acme", 3, true, "acme after failed").await;

    // A database without a tenant source: the pooler never sets anything.
    let plain = h.connect("app", "plain").await;
    for _ in 0..3 {
        let (setting, rows) = tenant_view(&plain).await;
        assert!(
            setting.as_deref().unwrap_or("").is_empty(),
            "plain: {setting:?}"
        );
        assert_eq!(rows, 0, "RLS hides every row without a tenant");
    }
    assert_ne!(
        backend_pid(&plain).await,
        backend_pid(&acme).await,
        "plain has its own pool: it never gets a server set to a tenant"
    );
    assert_eq!(sets(&h, "plain"), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_optional_runs_without_tenant_as_empty_setting() {
    let h = Harness::start(|c, _| {
        let db = c.databases.get_mut("app").unwrap();
        db.pool_size = 1;
        db.tenant.as_mut().unwrap().required = false;
    })
    .await;
    let acme = h.connect("app.acme", "app").await;
    let nobody = h.connect("app", "app").await;
    assert_eq!(tenant_view(&acme).await, (Some("acme".into()), 3));
    let acme_pid = backend_pid(&acme).await;
    assert_next_sees(&h, "app", &nobody, "", 0, true, "no tenant after acme").await;
    assert_eq!(
        backend_pid(&nobody).await,
        acme_pid,
        "the same server connection, re-SET to ''"
    );
    assert_next_sees(&h, "app", &nobody, "", 0, false, "no tenant again").await;
    assert_next_sees(&h, "app", &acme, "acme", 3, true, "acme after no tenant").await;
}

/// Statements run later than they are inspected: a prepared statement executed in a
/// later transaction, and a fastpath FunctionCall (which names set_config by OID).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_and_fastpath_calls_leave_no_stale_tenant() {
    let h = Harness::start(pool_size_1_unguarded).await;
    let acme = h.connect("app.acme", "app").await;
    let victim = h.connect("app.acme", "app").await;

    // SQL-level PREPARE in one transaction, EXECUTE in a later one.
    acme.simple_query("PREPARE poison AS SELECT set_config('app.current_tenant', 'globex', false)")
        .await
        .unwrap();
    assert_next_sees(&h, "app", &acme, "acme", 3, true, "after PREPARE").await;
    acme.simple_query("EXECUTE poison").await.unwrap();
    assert_next_sees(&h, "app", &victim, "acme", 3, true, "after EXECUTE").await;

    // FunctionCall: set_config('app.current_tenant', 'globex', false) by OID.
    let direct = h.direct_superuser().await;
    let oid: u32 = direct
        .query_one(
            "select 'set_config(text,text,boolean)'::regprocedure::oid",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let (mut raw, _) = wire::Wire::login(h.addr, "app.acme", "app", common::PASSWORD).await;
    let mut body = oid.to_be_bytes().to_vec();
    body.extend_from_slice(&1i16.to_be_bytes()); // one format code: text for all
    body.extend_from_slice(&0i16.to_be_bytes());
    body.extend_from_slice(&3i16.to_be_bytes());
    for arg in ["app.current_tenant", "globex", "false"] {
        body.extend_from_slice(&(arg.len() as i32).to_be_bytes());
        body.extend_from_slice(arg.as_bytes());
    }
    body.extend_from_slice(&0i16.to_be_bytes()); // text result
    raw.send(&wire::message(b'F', &body)).await;
    let answer = raw.until_ready().await;
    assert!(
        answer.iter().any(|m| m.tag == b'V'),
        "FunctionCallResponse expected: {:?}",
        answer.iter().map(|m| char::from(m.tag)).collect::<String>()
    );
    assert_next_sees(&h, "app", &victim, "acme", 3, true, "after FunctionCall").await;
}

/// A protocol-level named statement parsed (and inspected) in one transaction and
/// bound in a later one runs set_config where the pooler no longer looks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_statement_executed_later_leaves_no_stale_tenant() {
    let h = Harness::start(pool_size_1_unguarded).await;
    let acme = h.connect("app.acme", "app").await;
    let victim = h.connect("app.acme", "app").await;
    // Parse "s0" + Describe + Sync: one transaction (flagged, so the next one re-SETs).
    let poison = acme
        .prepare("select set_config('app.current_tenant', 'globex', false)")
        .await
        .unwrap();
    assert_next_sees(&h, "app", &acme, "acme", 3, true, "after Parse").await;
    // Bind "s0" + Execute + Sync: a later transaction on the same (only) server.
    acme.query(&poison, &[]).await.unwrap();
    assert_next_sees(&h, "app", &victim, "acme", 3, true, "after Bind/Execute").await;
}

/// If the SET itself fails, the client gets an error, its messages' answers are
/// not relayed, and that server connection is never reused. A SET of a custom
/// setting practically cannot fail, so point the tenant at a setting PostgreSQL
/// refuses to change at run time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_tenant_set_closes_the_server_connection() {
    let opts = ClusterOptions {
        extra_conf: vec!["shared_preload_libraries = 'pg_stat_statements'".into()],
        ..Default::default()
    };
    let h = Harness::start_with(opts, |c, _| {
        let db = c.databases.get_mut("app").unwrap();
        db.pool_size = 1;
        db.tenant.as_mut().unwrap().setting = "pg_stat_statements.max".into();
    })
    .await;
    let direct = h.direct_superuser().await;
    let client = h.connect("app.acme", "app").await;
    let err = client
        .simple_query("select 'must not be relayed'")
        .await
        .unwrap_err();
    let db = err.as_db_error().expect("an ErrorResponse from the pooler");
    assert_eq!(db.code().code(), "08006");
    assert!(
        db.message()
            .contains("could not prepare the server connection"),
        "{db:?}"
    );
    assert!(db.detail().unwrap_or("").contains("55P02"), "{db:?}");
    assert!(client.is_closed() || client.simple_query("select 1").await.is_err());

    let pool = h.pool("app");
    let logins = pool.stats.server_connects.get();
    assert_eq!(logins, 1);
    wait_until("the failed server connection to close", || async {
        pool.counts().0 == 0 && h.server_connections(&direct, "app").await == 0
    })
    .await;
    // The next client gets a fresh connection (and fails the same way), never the old one.
    let again = h.connect("app.globex", "app").await;
    assert!(again.simple_query("select 1").await.is_err());
    assert_eq!(pool.stats.server_connects.get(), 2);
}

/// `client`'s first statement ran in the same transaction as the pooler's SET:
/// the transaction began (with the SET) before this statement did.
async fn shares_transaction_with_set(client: &Client) -> bool {
    let rows = client
        .simple_query("select transaction_timestamp() < statement_timestamp()")
        .await
        .unwrap();
    simple_results(&rows)[0][0][0].as_deref() == Some("t")
}

/// The SET goes inside the client's transaction when its next request is one
/// plain statement (tenant::inline); it is trusted afterwards only if that
/// transaction committed, and re-sent before anything that follows a failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_inside_the_clients_transaction_is_trusted_only_after_commit() {
    let h = Harness::start(pool_size_1_unguarded).await;
    let acme = h.connect("app.acme", "app").await;
    let globex = h.connect("app.globex", "app").await;

    assert_next_sees(&h, "app", &globex, "globex", 2, true, "globex first").await;
    assert!(
        shares_transaction_with_set(&acme).await,
        "a SELECT first: the SET runs in its transaction"
    );
    assert_next_sees(&h, "app", &acme, "acme", 3, false, "committed: trusted").await;

    // Failed: the SET went with the transaction, and the server holds globex again.
    assert_next_sees(&h, "app", &globex, "globex", 2, true, "globex again").await;
    let err = acme.simple_query("select 1/0").await.unwrap_err();
    assert_eq!(common::sqlstate(&err).as_deref(), Some("22012"));
    assert_next_sees(
        &h,
        "app",
        &acme,
        "acme",
        3,
        true,
        "after a failed statement",
    )
    .await;
    // The same through the extended protocol, with a named statement.
    let fails = acme.prepare("select 1/$1::int").await.unwrap();
    assert_next_sees(&h, "app", &globex, "globex", 2, true, "globex again").await;
    assert!(acme.query(&fails, &[&0i32]).await.is_err());
    assert_next_sees(&h, "app", &acme, "acme", 3, true, "after a failed Execute").await;

    let pool = h.pool("app");
    // Pipelined: what the client sent after the failing statement waits for its
    // outcome and then runs with the tenant set again. (tokio-postgres sends
    // concurrent requests on one connection without waiting for answers.)
    for round in 0..20 {
        assert_next_sees(&h, "app", &globex, "globex", 2, true, "globex again").await;
        let (failed, seen, again) = tokio::join!(
            acme.simple_query("select 1/0"),
            tenant_view(&acme),
            acme.simple_query("select 1"),
        );
        assert!(failed.is_err());
        assert!(again.is_ok());
        assert_eq!(seen, (Some("acme".into()), 3), "round {round}");
        // The SET counters are updated when acme's server goes back.
        wait_until("acme's server back in the pool", || async {
            pool.counts().1 == 1
        })
        .await;
    }

    // Statements PostgreSQL refuses inside a pipeline, or that must come before
    // any snapshot, get the SET as a transaction of its own.
    for sql in ["VACUUM items", "DISCARD ALL"] {
        assert_next_sees(&h, "app", &globex, "globex", 2, true, sql).await;
        acme.simple_query(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    assert_next_sees(&h, "app", &globex, "globex", 2, true, "globex again").await;
    acme.simple_query("BEGIN ISOLATION LEVEL SERIALIZABLE")
        .await
        .unwrap();
    let rows = acme
        .simple_query(
            "select current_setting('transaction_isolation'), current_setting('app.current_tenant')",
        )
        .await
        .unwrap();
    assert_eq!(
        simple_results(&rows)[0][0],
        vec![Some("serializable".to_owned()), Some("acme".to_owned())]
    );
    acme.simple_query("ROLLBACK").await.unwrap();
    assert_next_sees(&h, "app", &acme, "acme", 3, false, "SET of its own: kept").await;
    assert_eq!(
        pool.stats.server_connects.get(),
        1,
        "all on one server connection"
    );
}

/// A connection coming back set to a tenant goes to a waiting client of that
/// tenant before older waiters of others (within bounds: `pool::waiters`), so
/// it needs no SET.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn returned_connection_goes_first_to_a_waiter_of_its_tenant() {
    let h = Harness::start_with(ClusterOptions::default(), pool_size_1_unguarded).await;
    let pool = h.pool("app");
    let holder = h.connect("app.acme", "app").await;
    let globex = Arc::new(h.connect("app.globex", "app").await);
    let acme = Arc::new(h.connect("app.acme", "app").await);

    holder.batch_execute("begin").await.unwrap();
    assert_eq!(count_items(&holder).await, 3);
    let first = {
        let globex = Arc::clone(&globex);
        tokio::spawn(async move { count_items(&*globex).await })
    };
    wait_until("globex waiting", || async { pool.counts().2 == 1 }).await;
    let second = {
        let acme = Arc::clone(&acme);
        tokio::spawn(async move { count_items(&*acme).await })
    };
    wait_until("acme waiting behind globex", || async {
        pool.counts().2 == 2
    })
    .await;
    assert_eq!(sets(&h, "app"), (1, 0));

    holder.batch_execute("commit").await.unwrap();
    assert_eq!(second.await.unwrap(), 3);
    assert_eq!(first.await.unwrap(), 2);
    // acme's waiter took the connection still set to acme (skipped); globex's SET came after.
    assert_eq!(sets(&h, "app"), (2, 1));
}

/// The names and texts of the tenant SET statements the pooler prepared on the
/// server connection `client` is on.
async fn set_statements(client: &Client) -> Vec<(String, String)> {
    client
        .query_typed(
            "select name, statement from pg_prepared_statements where name like 'tps%' order by name",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// The inline SET is a statement prepared once per server and tenant, then only
/// bound and executed. A client's own DEALLOCATE or PREPARE may drop it or take
/// its name: the pooler then closes that name and prepares it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tenant_set_is_prepared_once_per_server_and_a_client_cannot_swap_it() {
    let h = Harness::start(|c, _| c.databases.get_mut("app").unwrap().pool_size = 1).await;
    let acme = h.connect("app.acme", "app").await;
    let globex = h.connect("app.globex", "app").await;
    for _ in 0..2 {
        assert_next_sees(&h, "app", &globex, "globex", 2, true, "globex").await;
        assert_next_sees(&h, "app", &acme, "acme", 3, true, "acme").await;
    }
    let prepared = set_statements(&acme).await;
    let texts: Vec<&str> = prepared.iter().map(|(_, s)| s.as_str()).collect();
    assert_eq!(
        texts,
        [
            "SET app.current_tenant = E'acme'",
            "SET app.current_tenant = E'globex'"
        ],
        "one statement per tenant, four SETs: {prepared:?}"
    );
    let theirs = &prepared[1].0;
    assert!(theirs.ends_with("_globex"), "{theirs}");

    // acme drops globex's statement and takes its name for something else.
    acme.simple_query(&format!(
        "DEALLOCATE {theirs}; PREPARE {theirs} AS SELECT 1"
    ))
    .await
    .unwrap();
    assert_next_sees(&h, "app", &globex, "globex", 2, true, "after the swap").await;
    let after = set_statements(&globex).await;
    assert_eq!(after, prepared, "globex's closed and prepared again");
    // A name taken before the pooler prepares it.
    let squatted = theirs.replace("_globex", "_initech");
    acme.simple_query(&format!("PREPARE {squatted} AS SELECT 1"))
        .await
        .unwrap();
    let initech = h.connect("app.initech", "app").await;
    assert_next_sees(&h, "app", &initech, "initech", 0, true, "squatted name").await;
    // A protocol-level statement of the client's own survives the next transactions.
    let stmt = acme.prepare("select count(*) from items").await.unwrap();
    assert_next_sees(&h, "app", &globex, "globex", 2, true, "globex again").await;
    let rows: i64 = acme.query_one(&stmt, &[]).await.unwrap().get(0);
    assert_eq!(rows, 3);
    assert_eq!(h.pool("app").stats.server_connects.get(), 1);
}

/// With room for one prepared statement per server, each tenant's SET closes
/// the other's, and every transaction still runs as its tenant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_set_statements_are_evicted_like_any_other() {
    let h = Harness::start(|c, _| {
        c.databases.get_mut("app").unwrap().pool_size = 1;
        c.pooler.max_prepared_statements = 1;
    })
    .await;
    let acme = h.connect("app.acme", "app").await;
    let globex = h.connect("app.globex", "app").await;
    for round in 0..3 {
        assert_next_sees(&h, "app", &acme, "acme", 3, true, "acme").await;
        assert_next_sees(&h, "app", &globex, "globex", 2, true, "globex").await;
        let left = set_statements(&globex).await;
        assert_eq!(left.len(), 1, "round {round}: {left:?}");
        assert_eq!(left[0].1, "SET app.current_tenant = E'globex'");
    }
}
