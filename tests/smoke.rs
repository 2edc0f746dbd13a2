//! The basic path through the pooler: login, a query, tenant isolation.

mod common;

use common::Harness;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tenant_sees_only_its_rows() {
    let h = Harness::start(|_, _| {}).await;
    let acme = h.connect("app.acme", "app").await;
    let globex = h.connect("app.globex", "app").await;
    let n: i64 = acme
        .query_one("select count(*) from items", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 3);
    let rows = globex
        .query("select tenant_id from items", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r.get::<_, &str>(0) == "globex"));
    let t: String = acme
        .query_one("select current_setting('app.current_tenant')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(t, "acme");
}
