//! The signed tenant context: RLS policies on `tenantpool.current_tenant()` trust
//! only what the pooler entered, so SQL that rewrites app.current_tenant (even
//! dynamically, where no text scan can see it) reads no other tenant's rows, and
//! signatures cannot be replayed.

mod common;

use common::Harness;
use tenantpool::tenant::signed::{install_script, BackendIdentity, SignedContext};
use tenantpool::tenant::SettingName;
use tokio_postgres::GenericClient;

const KEY: &str = "test-signing-key-0123456789abcdef0123";

async fn start() -> Harness {
    Harness::start(|config, cluster| {
        let t = config
            .databases
            .get_mut("app")
            .unwrap()
            .tenant
            .as_mut()
            .unwrap();
        t.signed_context = true;
        t.signing_key = Some(KEY.into());
        // DO blocks are refused by the guard by default; let them through to show
        // that the signed context holds even against dynamic SQL.
        t.allow_do_blocks = true;
        let script = install_script(config, "app").unwrap();
        cluster.psql_script("app", &script, &[]).unwrap();
        cluster
            .psql(
                "app",
                "drop policy tenant_isolation on items; \
                 create policy tenant_isolation on items \
                   using (tenant_id = (select tenantpool.current_tenant())) \
                   with check (tenant_id = (select tenantpool.current_tenant()))",
            )
            .unwrap();
    })
    .await
}

async fn count(client: &impl GenericClient) -> i64 {
    client
        .query_one("select count(*) from items", &[])
        .await
        .unwrap()
        .get(0)
}

/// (pid, backend start in µs) of the backend serving `client` in its open transaction.
async fn identity(tx: &tokio_postgres::Transaction<'_>) -> BackendIdentity {
    let row = tx
        .query_one(
            "select pg_backend_pid(), (extract(epoch from backend_start) * 1000000)::bigint \
             from pg_stat_activity where pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    BackendIdentity {
        pid: row.get(0),
        start_us: row.get(1),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_see_their_rows_through_the_signed_context() {
    let h = start().await;
    let acme = h.connect("app.acme", "app").await;
    let globex = h.connect("app.globex", "app").await;
    assert_eq!(count(&acme).await, 3);
    assert_eq!(count(&globex).await, 2);
    let t: String = acme
        .query_one("select tenantpool.current_tenant()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(t, "acme");
    let s: String = globex
        .query_one("select current_setting('app.current_tenant')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(s, "globex", "the plain setting is kept in step");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_sql_that_sets_another_tenant_reads_no_foreign_rows() {
    let h = start().await;
    let mut acme = h.connect("app.acme", "app").await;
    let tx = acme.transaction().await.unwrap();
    tx.batch_execute(
        "DO $$ BEGIN EXECUTE 'SET app.' || 'current_tenant = ' || quote_literal('glo' || 'bex'); END $$",
    )
    .await
    .unwrap();
    let setting: String = tx
        .query_one("select current_setting('app.current_tenant')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        setting, "globex",
        "the plain setting was changed behind the guard's back"
    );
    let foreign: i64 = tx
        .query_one("select count(*) from items where tenant_id = 'globex'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        foreign, 0,
        "RLS on current_tenant() still shows no globex rows"
    );
    assert_eq!(count(&tx).await, 3);
    tx.commit().await.unwrap();
    // The session-level change lives on in that server connection; the next
    // transaction still sees only acme.
    assert_eq!(count(&acme).await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_replayed_signatures_are_refused() {
    let h = start().await;
    let setting = SettingName::parse("app.current_tenant").unwrap();
    let signer = SignedContext::new(KEY);
    let wrong_key = SignedContext::new("another-key-that-is-long-enough-000000");
    let mut acme = h.connect("app.acme", "app").await;

    let tx = acme.transaction().await.unwrap();
    let me = identity(&tx).await;
    let enter = |m: bytes::Bytes| {
        // The Query text without its tag, length and NUL: "SELECT tenantpool.enter(...); SET ..."
        let text = String::from_utf8(m[5..m.len() - 1].to_vec()).unwrap();
        text.split("; SET").next().unwrap().to_owned()
    };

    // Signed with the wrong key.
    let forged = enter(wrong_key.enter_message(&setting, "globex", me));
    let err = tx.batch_execute(&forged).await.unwrap_err();
    assert_eq!(common::sqlstate(&err).as_deref(), Some("42501"));
    assert!(err
        .as_db_error()
        .unwrap()
        .message()
        .contains("invalid tenant context signature"));
    tx.rollback().await.unwrap();

    // A valid signature for another backend (pid) is worthless here.
    let tx = acme.transaction().await.unwrap();
    let me = identity(&tx).await;
    let other = BackendIdentity {
        pid: me.pid + 1,
        ..me
    };
    let err = tx
        .batch_execute(&enter(signer.enter_message(&setting, "globex", other)))
        .await
        .unwrap_err();
    assert!(err
        .as_db_error()
        .unwrap()
        .message()
        .contains("invalid tenant context signature"));
    tx.rollback().await.unwrap();

    // A signature for this backend that was already used (an older nonce) is refused,
    // even after DISCARD ALL wiped the session's temporary state.
    let old = enter(signer.enter_message(&setting, "globex", me));
    let fresh = enter(signer.enter_message(&setting, "acme", me));
    let tx = acme.transaction().await.unwrap();
    assert_eq!(
        identity(&tx).await,
        me,
        "same backend (pool_size 5, one client)"
    );
    tx.batch_execute(&fresh).await.unwrap();
    tx.commit().await.unwrap();
    acme.batch_execute("DISCARD ALL").await.unwrap();
    let tx = acme.transaction().await.unwrap();
    assert_eq!(identity(&tx).await, me, "still the only server connection");
    let err = tx.batch_execute(&old).await.unwrap_err();
    assert!(
        err.as_db_error().unwrap().message().contains("replayed"),
        "{err}"
    );
    tx.rollback().await.unwrap();

    // The application cannot plant a look-alike context table: the pool role has
    // no TEMPORARY privilege, and without the genuine table there is no tenant.
    let tx = acme.transaction().await.unwrap();
    let e = tx
        .batch_execute("CREATE TEMP TABLE tenantpool_context (tenant text)")
        .await
        .unwrap_err();
    assert_eq!(common::sqlstate(&e).as_deref(), Some("42501"), "{e:?}");
    tx.rollback().await.unwrap();
    let tx = acme.transaction().await.unwrap();
    tx.batch_execute("DISCARD TEMP").await.unwrap();
    let err = tx
        .query_one("select count(*) from items", &[])
        .await
        .unwrap_err();
    assert!(
        err.as_db_error()
            .unwrap()
            .message()
            .contains("no signed tenant context"),
        "{err}"
    );
    tx.rollback().await.unwrap();

    // And through all this, the client still sees only its own tenant.
    assert_eq!(count(&acme).await, 3);
}
