//! The tenant-context guard end to end: statements that would write the tenant
//! setting or change the role are refused with 42501, through both protocols,
//! without disturbing the connection, the transaction semantics, or anyone else.

mod common;

use common::{sqlstate, Harness};
use tokio_postgres::types::Type;
use tokio_postgres::{Client, GenericClient};

const SPOOFS: &[&str] = &[
    "SET app.current_tenant = 'globex'",
    "set app.current_tenant to 'globex'",
    "SET SESSION app.current_tenant = 'globex'",
    "SET LOCAL app.current_tenant = 'globex'",
    "SET \"app\".\"current_tenant\" = 'globex'",
    "SET \"app.current_tenant\" = 'globex'",
    "SET APP.Current_Tenant = 'globex'",
    "set /* hidden */ app . current_tenant = 'globex'",
    "SET app.U&\"current\\005ftenant\" = 'globex'",
    "RESET app.current_tenant",
    "SELECT set_config('app.current_tenant', 'globex', false)",
    "select pg_catalog.set_config('APP.CURRENT_TENANT', 'globex', true)",
    "select set_config($$app.current_tenant$$, 'globex', false)",
    "select set_config('app.' || 'current_tenant', 'globex', false)",
    "select 1; select set_config('app.current_tenant', 'globex', false)",
    "ALTER ROLE app SET app.current_tenant = 'globex'",
    "SET SESSION AUTHORIZATION app",
    "SET ROLE app",
    "DO $$ BEGIN PERFORM set_config('app.current_tenant', 'globex', false); END $$",
    "PREPARE p AS SELECT set_config('app.current_tenant', 'globex', false)",
];

async fn seen(client: &impl GenericClient) -> (String, i64, i64) {
    let row = client
        .query_one(
            "select current_setting('app.current_tenant'), count(*), \
             count(*) filter (where tenant_id <> current_setting('app.current_tenant')) from items",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

fn assert_refused(e: &tokio_postgres::Error, what: &str) {
    assert_eq!(sqlstate(e).as_deref(), Some("42501"), "{what}: {e:?}");
    let message = e.as_db_error().unwrap().message();
    assert!(message.starts_with("tenantpool:"), "{what}: {message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_spoof_form_is_refused_and_nothing_leaks() {
    let h = Harness::start(|c, _| c.databases.get_mut("app").unwrap().pool_size = 2).await;
    let acme = h.connect("app.acme", "app").await;
    // A concurrent client of another tenant keeps checking its own view.
    let globex = h.connect("app.globex", "app").await;
    let watcher = tokio::spawn(async move {
        let mut checks = 0;
        for _ in 0..200 {
            assert_eq!(seen(&globex).await, ("globex".into(), 2, 0));
            checks += 1;
        }
        checks
    });

    for spoof in SPOOFS {
        // Simple protocol.
        let e = acme.simple_query(spoof).await.unwrap_err();
        assert_refused(&e, spoof);
        assert_eq!(seen(&acme).await, ("acme".into(), 3, 0), "after {spoof}");
        // Extended protocol: the Parse is refused.
        let e = acme.prepare(spoof).await.unwrap_err();
        assert_refused(&e, spoof);
        assert_eq!(
            seen(&acme).await,
            ("acme".into(), 3, 0),
            "after Parse of {spoof}"
        );
    }
    assert_eq!(watcher.await.unwrap(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_and_ordinary_statements_pass() {
    let h = Harness::start(|_, _| {}).await;
    let acme = h.connect("app.acme", "app").await;
    for sql in [
        "select current_setting('app.current_tenant')",
        "select current_setting('app.current_tenant', true)",
        "select 'set app.current_tenant = 1' as text",
        "SET search_path = public",
        "SET LOCAL statement_timeout = '5s'",
        "select set_config('search_path', 'public', false)",
        "SET TIME ZONE 'UTC'",
        "RESET ALL",
        "DISCARD ALL",
    ] {
        acme.simple_query(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert_eq!(seen(&acme).await, ("acme".into(), 3, 0), "after {sql}");
    }
    let row = acme
        .query_typed_one(
            "select count(*) from items where tenant_id = current_setting('app.current_tenant')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_inside_a_transaction_aborts_it_like_any_error() {
    let h = Harness::start(|c, _| c.databases.get_mut("app").unwrap().pool_size = 1).await;
    let mut acme = h.connect("app.acme", "app").await;
    let tx = acme.transaction().await.unwrap();
    tx.execute(
        "insert into items (tenant_id, name) values ('acme', 'in tx')",
        &[],
    )
    .await
    .unwrap();
    let e = tx
        .batch_execute("SET app.current_tenant = 'globex'")
        .await
        .unwrap_err();
    assert_refused(&e, "in transaction");
    let e = tx.batch_execute("select 1").await.unwrap_err();
    assert_eq!(
        sqlstate(&e).as_deref(),
        Some("25P02"),
        "the transaction is aborted"
    );
    tx.rollback().await.unwrap();
    assert_eq!(
        seen(&acme).await,
        ("acme".into(), 3, 0),
        "the insert was rolled back"
    );

    // In a pipeline: the statements before the refused one in the same batch are
    // rolled back with it, those after are skipped, and the next batch runs.
    let e = acme
        .simple_query("insert into items (tenant_id, name) values ('acme', 'batch'); SET ROLE app")
        .await
        .unwrap_err();
    assert_refused(&e, "multi-statement");
    assert_eq!(seen(&acme).await, ("acme".into(), 3, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_named_statement_stays_refused() {
    let h = Harness::start(|_, _| {}).await;
    let acme = h.connect("app.acme", "app").await;
    let e = acme
        .prepare_typed(
            "select set_config($1, $2, false)",
            &[Type::TEXT, Type::TEXT],
        )
        .await
        .unwrap_err();
    assert_refused(&e, "parameterised set_config");
    // The connection is fine and a good named statement works afterwards.
    let ok = acme.prepare("select count(*) from items").await.unwrap();
    let n: i64 = acme.query_one(&ok, &[]).await.unwrap().get(0);
    assert_eq!(n, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_options_cannot_set_the_tenant() {
    let h = Harness::start(|_, _| {}).await;
    let mut config = h.config("app.acme", common::PASSWORD, "app");
    config.options("-c app.current_tenant=globex");
    let e = config
        .connect(tokio_postgres::NoTls)
        .await
        .err()
        .expect("refused");
    assert_refused(&e, "options");
    let mut config = h.config("app.acme", common::PASSWORD, "app");
    config.options("-c search_path=public");
    let (client, conn) = config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    assert_eq!(seen(&client).await, ("acme".into(), 3, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guard_can_be_turned_off_and_do_blocks_allowed() {
    let h = Harness::start(|c, _| {
        let t = c.databases.get_mut("app").unwrap().tenant.as_mut().unwrap();
        t.allow_do_blocks = true;
    })
    .await;
    let acme: Client = h.connect("app.acme", "app").await;
    acme.simple_query("DO $$ BEGIN PERFORM 1; END $$")
        .await
        .unwrap();
    let e = acme
        .simple_query("DO $$ BEGIN PERFORM set_config('app.current_tenant', 'x', false); END $$")
        .await
        .unwrap_err();
    assert_refused(&e, "DO body still checked");

    let h = Harness::start(|c, _| {
        let t = c.databases.get_mut("app").unwrap().tenant.as_mut().unwrap();
        t.guard = false;
    })
    .await;
    let acme = h.connect("app.acme", "app").await;
    acme.simple_query("SET app.current_tenant = 'globex'")
        .await
        .unwrap();
    // Without the guard the client could read globex in that transaction, but the
    // pooler stops trusting the setting and re-sets it for the next one.
    assert_eq!(seen(&acme).await, ("acme".into(), 3, 0));
}
