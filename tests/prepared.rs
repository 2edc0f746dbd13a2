//! Named prepared statements in transaction pooling: statements live on the
//! client's side of the pooler and are prepared on whichever server connection a
//! transaction lands on, once per distinct text.

mod common;

use std::sync::Arc;

use common::{sqlstate, Harness};
use tokio_postgres::Client;

async fn prepared_count(client: &Client, like: &str) -> i64 {
    // Simple protocol: the check itself prepares nothing.
    let rows = client
        .simple_query(&format!(
            "select count(*) from pg_prepared_statements where statement like '{like}'"
        ))
        .await
        .unwrap();
    match &rows[1] {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).unwrap().parse().unwrap(),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_survive_transactions_on_shuffled_servers() {
    let h = Harness::start(|c, _| c.databases.get_mut("app").unwrap().pool_size = 3).await;
    let h = Arc::new(h);
    let mut tasks = Vec::new();
    for i in 0..10 {
        let h = Arc::clone(&h);
        tasks.push(tokio::spawn(async move {
            let tenant = if i % 2 == 0 { "acme" } else { "globex" };
            let c = h.connect(&format!("app.{tenant}"), "app").await;
            let by_name = c
                .prepare("select count(*) from items where name like $1")
                .await
                .unwrap();
            let echo = c.prepare("select $1::int + 1").await.unwrap();
            for n in 0..50i32 {
                // Each call is its own transaction, on whichever server is free.
                let count: i64 = c.query_one(&by_name, &[&"%"]).await.unwrap().get(0);
                assert_eq!(count, if tenant == "acme" { 3 } else { 2 });
                let v: i32 = c.query_one(&echo, &[&n]).await.unwrap().get(0);
                assert_eq!(v, n + 1);
            }
            100
        }));
    }
    let mut done = 0;
    for t in tasks {
        done += t.await.unwrap();
    }
    assert_eq!(done, 1000);
    let pool = h.pool("app");
    assert!(pool.stats.transactions.get() >= 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_preparation_per_text_per_server_connection() {
    let h = Harness::start(|c, _| c.databases.get_mut("app").unwrap().pool_size = 1).await;
    let mut clients = Vec::new();
    for _ in 0..8 {
        let c = h.connect("app.acme", "app").await;
        let s = c.prepare("select 'shared-text', $1::int").await.unwrap();
        let row = c.query_one(&s, &[&7i32]).await.unwrap();
        assert_eq!(row.get::<_, i32>(1), 7);
        clients.push((c, s));
    }
    // Eight clients, one server connection, one preparation of that text.
    assert_eq!(prepared_count(&clients[0].0, "%shared-text%").await, 1);
    for (c, s) in &clients {
        assert_eq!(c.query_one(s, &[&1i32]).await.unwrap().get::<_, i32>(1), 1);
    }
    assert_eq!(prepared_count(&clients[0].0, "%shared-text%").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lru_bound_holds_on_the_server() {
    let h = Harness::start(|c, _| {
        c.databases.get_mut("app").unwrap().pool_size = 1;
        c.pooler.max_prepared_statements = 5;
    })
    .await;
    let c = h.connect("app.acme", "app").await;
    let mut statements = Vec::new();
    for i in 0..20 {
        let s = c
            .prepare(&format!("select {i} as lru_probe"))
            .await
            .unwrap();
        statements.push(s);
        assert!(prepared_count(&c, "%lru_probe%").await <= 5);
    }
    assert_eq!(prepared_count(&c, "%lru_probe%").await, 5);
    // Evicted ones are prepared again on demand.
    for (i, s) in statements.iter().enumerate() {
        let v: i32 = c.query_one(s, &[]).await.unwrap().get(0);
        assert_eq!(v, i as i32);
    }
    assert!(prepared_count(&c, "%lru_probe%").await <= 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_name_different_text_in_two_clients() {
    // tokio-postgres names statements s0, s1, ... per connection, so two clients
    // preparing different SQL first both call theirs "s0".
    let h = Harness::start(|c, _| c.databases.get_mut("app").unwrap().pool_size = 1).await;
    let a = h.connect("app.acme", "app").await;
    let b = h.connect("app.acme", "app").await;
    let sa = a.prepare("select 'from a'").await.unwrap();
    let sb = b.prepare("select 'from b'").await.unwrap();
    // (Statement::name is private; both are the first statement of their connection: "s0".)
    for _ in 0..10 {
        assert_eq!(
            a.query_one(&sa, &[]).await.unwrap().get::<_, &str>(0),
            "from a"
        );
        assert_eq!(
            b.query_one(&sb, &[]).await.unwrap().get::<_, &str>(0),
            "from b"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_deallocate_and_rollback_keep_bookkeeping_right() {
    let h = Harness::start(|c, _| c.databases.get_mut("app").unwrap().pool_size = 2).await;
    let mut a = h.connect("app.acme", "app").await;
    let b = h.connect("app.globex", "app").await;

    // A Parse that fails leaves nothing behind; the next one works.
    let e = a.prepare("select * from no_such_table").await.unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("42P01"));
    let ok = a.prepare("select count(*) from items").await.unwrap();
    assert_eq!(a.query_one(&ok, &[]).await.unwrap().get::<_, i64>(0), 3);

    // A statement error, then recovery with prepared statements.
    let div = a.prepare("select 1 / $1::int").await.unwrap();
    let e = a.query_one(&div, &[&0i32]).await.unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("22012"));
    assert_eq!(
        a.query_one(&div, &[&1i32]).await.unwrap().get::<_, i32>(0),
        1
    );

    // DEALLOCATE ALL clears this client's statements, not the other client's.
    let bs = b.prepare("select count(*) from items").await.unwrap();
    a.batch_execute("DEALLOCATE ALL").await.unwrap();
    let e = a.query_one(&ok, &[]).await.unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("26000"), "{e:?}");
    assert_eq!(b.query_one(&bs, &[]).await.unwrap().get::<_, i64>(0), 2);
    let again = a.prepare("select count(*) from items").await.unwrap();
    assert_eq!(a.query_one(&again, &[]).await.unwrap().get::<_, i64>(0), 3);

    // Prepare inside a transaction, fail, roll back, retry.
    let tx = a.transaction().await.unwrap();
    let ins = tx
        .prepare("insert into items (tenant_id, name) values ('acme', $1)")
        .await
        .unwrap();
    tx.execute(&ins, &[&"first try"]).await.unwrap();
    assert!(tx.execute("select 1/0", &[]).await.is_err());
    tx.rollback().await.unwrap();
    let tx = a.transaction().await.unwrap();
    let ins = tx
        .prepare("insert into items (tenant_id, name) values ('acme', $1)")
        .await
        .unwrap();
    tx.execute(&ins, &[&"second try"]).await.unwrap();
    tx.commit().await.unwrap();
    let names: Vec<String> = a
        .query("select name from items where name like '% try'", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(names, ["second try"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_prepared_and_extended_through_the_pooler() {
    let h = Harness::start(|c, _| c.databases.get_mut("bench").unwrap().pool_size = 3).await;
    // Database `bench` logs in to the server as the superuser, so pgbench -i may create tables.
    let pgbench = h.bin("pgbench");
    let run = |args: Vec<String>| {
        let pgbench = pgbench.clone();
        let port = h.port().to_string();
        async move {
            let out = tokio::process::Command::new(pgbench)
                .args(["-h", "127.0.0.1", "-p", &port, "-U", "app"])
                .args(&args)
                .arg("bench")
                .env("PGPASSWORD", common::PASSWORD)
                .output()
                .await
                .unwrap();
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(out.status.success(), "pgbench {args:?}: {text}");
            text
        }
    };
    run(vec!["-i".into(), "-s".into(), "1".into()]).await;
    // One thread per client: pgbench prepares synchronously inside its event
    // loop, so with several clients per thread and fewer servers than clients,
    // a client blocked waiting for a server stalls the others on its thread
    // (with any transaction pooler).
    for mode in ["prepared", "extended"] {
        let text = run(vec![
            "-M".into(),
            mode.into(),
            "-c".into(),
            "8".into(),
            "-j".into(),
            "8".into(),
            "-t".into(),
            "100".into(),
        ])
        .await;
        assert!(
            text.contains("number of failed transactions: 0"),
            "{mode}: {text}"
        );
        assert!(text.contains("800/800"), "{mode}: {text}");
    }
}
