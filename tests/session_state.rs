//! Session settings in transaction mode (each client keeps its own TimeZone,
//! search_path, application_name across server connections) and statement mode.

mod common;

use common::{sqlstate, Harness, PASSWORD};
use tenantpool::config::PoolMode;
use tokio_postgres::{Client, NoTls};

/// One server connection for `plain`, so every client's transactions share it.
async fn start(mode: PoolMode) -> Harness {
    Harness::start(|c, _| {
        let db = c.databases.get_mut("plain").unwrap();
        db.pool_size = 1;
        db.pool_mode = mode;
    })
    .await
}

async fn connect_with(h: &Harness, options: &str, app: &str) -> Client {
    let mut config = h.config("app", PASSWORD, "plain");
    if !options.is_empty() {
        config.options(options);
    }
    if !app.is_empty() {
        config.application_name(app);
    }
    let (client, conn) = config.connect(NoTls).await.expect("connect");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// (TimeZone, search_path, application_name, backend pid) in one transaction.
async fn settings(c: &Client) -> (String, String, String, i32) {
    let row = c
        .query_one(
            "select current_setting('TimeZone'), current_setting('search_path'), \
             current_setting('application_name'), pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2), row.get(3))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_settings_follow_each_client_onto_a_shared_server_connection() {
    let h = start(PoolMode::Transaction).await;
    let plain = connect_with(&h, "", "").await;
    let (default_tz, default_path, _, pid) = settings(&plain).await;
    let a = connect_with(
        &h,
        r"-c TimeZone=Asia/Tokyo -c search_path=tenant_a,\ public",
        "client-a",
    )
    .await;
    let b = connect_with(&h, "--TimeZone=America/Lima", "client-b").await;
    for round in 0..10 {
        let got = settings(&a).await;
        assert_eq!(
            got,
            (
                "Asia/Tokyo".into(),
                "tenant_a, public".into(),
                "client-a".into(),
                pid
            ),
            "a, round {round}"
        );
        let got = settings(&b).await;
        assert_eq!(
            got,
            (
                "America/Lima".into(),
                default_path.clone(),
                "client-b".into(),
                pid
            ),
            "b, round {round}"
        );
        let got = settings(&plain).await;
        assert_eq!(got.0, default_tz, "plain, round {round}");
        assert_eq!(got.1, default_path, "plain, round {round}");
        assert_eq!(got.3, pid, "one server connection");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_and_reset_in_transaction_mode_stay_with_the_client() {
    let h = start(PoolMode::Transaction).await;
    let a = connect_with(&h, "", "").await;
    let b = connect_with(&h, "", "").await;
    let (default_tz, default_path, _, _) = settings(&b).await;

    // Reported by the server (TimeZone) and not (search_path); simple and extended.
    a.batch_execute("SET TimeZone = 'Europe/Berlin'")
        .await
        .unwrap();
    a.execute("set search_path to pg_catalog, public", &[])
        .await
        .unwrap();
    for _ in 0..5 {
        let (tz, path, _, _) = settings(&a).await;
        assert_eq!(
            (tz.as_str(), path.as_str()),
            ("Europe/Berlin", "pg_catalog, public")
        );
        let (tz, path, _, _) = settings(&b).await;
        assert_eq!((tz, path), (default_tz.clone(), default_path.clone()));
    }

    // SET LOCAL lasts one transaction, as on PostgreSQL.
    a.batch_execute("BEGIN; SET LOCAL search_path = public; COMMIT")
        .await
        .unwrap();
    assert_eq!(settings(&a).await.1, "pg_catalog, public");

    // RESET goes back to the server's default, for this client only.
    a.batch_execute("RESET search_path; RESET TimeZone")
        .await
        .unwrap();
    b.batch_execute("SET search_path = public").await.unwrap();
    let (tz, path, _, _) = settings(&a).await;
    assert_eq!((tz, path), (default_tz.clone(), default_path.clone()));
    assert_eq!(settings(&b).await.1, "public");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_mode_refuses_transaction_blocks_and_serves_the_rest() {
    let h = start(PoolMode::Statement).await;
    let a = connect_with(&h, "", "").await;
    let b = connect_with(&h, "", "").await;
    // Statements, simple and extended (named prepared statements too), interleaved.
    let stmt = a.prepare("select $1::int + 1").await.unwrap();
    for i in 0..20 {
        let row = a.query_one(&stmt, &[&i]).await.unwrap();
        assert_eq!(row.get::<_, i32>(0), i + 1);
        b.batch_execute("select 1").await.unwrap();
    }
    // A multi-statement string is one statement's worth: it ends idle.
    b.batch_execute("BEGIN; SELECT 1; COMMIT").await.unwrap();

    // A transaction block is refused, clearly, and the connection closed.
    let c = connect_with(&h, "", "").await;
    let e = c.batch_execute("BEGIN").await.unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("0A000"), "{e:?}");
    let message = e.as_db_error().unwrap().message();
    assert!(
        message.contains("transaction blocks are not allowed in statement pool mode"),
        "{message}"
    );
    assert!(c.is_closed() || c.batch_execute("select 1").await.is_err());

    // The server connection was rolled back and serves the others.
    // (In a simple Query's own transaction both timestamps are its start.)
    let rows = a
        .simple_query("select now() = statement_timestamp()")
        .await
        .unwrap();
    let first = rows.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
        _ => None,
    });
    assert_eq!(
        first.as_deref(),
        Some("t"),
        "not inside the refused transaction"
    );
    let row = b.query_one("select 41 + 1", &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 42);
}
