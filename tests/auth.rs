//! Authentication: clients against `[[users]]` (SCRAM-SHA-256 and md5), refusals
//! before authentication (database, tenant), the pool's own server logins
//! (SCRAM, md5, cleartext, trust, wrong password) and the login timeout.

mod common;
#[path = "common/wire.rs"]
mod wire;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Harness, PASSWORD};
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use tenantpool::config::{AuthType, UserConfig};
use tenantpool::pgcluster::{ClusterOptions, TempCluster};
use tokio_postgres::error::DbError;
use wire::*;

/// The error a failed connection attempt got from the pooler.
async fn refused(h: &Harness, user: &str, password: &str, db: &str) -> DbError {
    match h.try_connect(user, password, db).await {
        Ok(_) => panic!("{user} logged in to {db} with password {password:?}"),
        Err(e) => e
            .as_db_error()
            .unwrap_or_else(|| panic!("{user}@{db}: not a server error: {e}"))
            .clone(),
    }
}

/// Logs in and checks the session works (and, for tenant users, sees its tenant's rows).
async fn works(h: &Harness, user: &str, password: &str, db: &str) {
    let c = h
        .try_connect(user, password, db)
        .await
        .unwrap_or_else(|e| panic!("{user}@{db}: {e:?}"));
    let sql = "select count(*) from items";
    let n: i64 = c.query_typed(sql, &[]).await.unwrap()[0].get(0);
    assert_eq!(
        n,
        if user.ends_with(".acme") { 3 } else { 0 },
        "{user}@{db}"
    );
}

/// The error's fields with the user name taken out, to compare two refusals.
fn shape(e: &DbError, user: &str) -> (String, String, String, Option<String>, Option<String>) {
    let quoted = format!("\"{user}\"");
    assert!(
        e.message().contains(&quoted),
        "{} names {quoted}",
        e.message()
    );
    (
        e.severity().to_owned(),
        e.code().code().to_owned(),
        e.message().replace(&quoted, "\"<user>\""),
        e.detail().map(str::to_owned),
        e.hint().map(str::to_owned),
    )
}

fn add_user(config: &mut tenantpool::config::Config, name: &str, password: &str) {
    config.users.push(UserConfig {
        name: name.into(),
        password: password.into(),
    });
}

async fn psql_count(h: &Harness, user: &str, password: &str) -> String {
    let port = h.port().to_string();
    let args = ["-h", "127.0.0.1", "-p", &port, "-U", user, "-d", "app"];
    let sql = ["-c", "select count(*) from items"];
    psql(&h.bin("psql"), password, &[&args[..], &sql].concat()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_right_wrong_and_unknown_users() {
    let verifier = postgres_protocol::password::scram_sha_256(b"pw");
    let h = Harness::start(move |c, _| add_user(c, "hashed", &verifier)).await;
    works(&h, "app.acme", PASSWORD, "app").await;
    works(&h, "app", PASSWORD, "plain").await;
    // A SCRAM-SHA-256$ verifier in the config accepts the plaintext it was made from.
    works(&h, "hashed.acme", "pw", "app").await;
    assert_eq!(psql_count(&h, "hashed.acme", "pw").await, "3");
    assert_eq!(psql_count(&h, "app.acme", PASSWORD).await, "3");

    let wrong = refused(&h, "app.acme", "not-it", "app").await;
    assert_eq!(wrong.code().code(), "28P01");
    assert_eq!(wrong.severity(), "FATAL");
    assert_eq!(
        wrong.message(),
        "password authentication failed for user \"app.acme\""
    );
    let hashed_wrong = refused(&h, "hashed.acme", PASSWORD, "app").await;
    let unknown = refused(&h, "ghost.acme", PASSWORD, "app").await;
    let unknown_plain = refused(&h, "ghost", PASSWORD, "plain").await;
    let expected = shape(&wrong, "app.acme");
    assert_eq!(shape(&hashed_wrong, "hashed.acme"), expected);
    assert_eq!(
        shape(&unknown, "ghost.acme"),
        expected,
        "unknown user looks like a wrong password"
    );
    assert_eq!(shape(&unknown_plain, "ghost"), expected);
}

/// Runs a SCRAM exchange by hand with a wrong password; returns the
/// server-first-message's iteration count and salt length, and the final error.
async fn scram_attempt(h: &Harness, user: &str) -> (String, usize, DbErrorShape) {
    let mut w = Wire::connect(h.addr).await;
    w.startup(user, "app").await;
    let sasl = w.read_msg().await;
    assert_eq!((sasl.tag, sasl.i32_at(0)), (b'R', 10));
    assert_eq!(&sasl.body[4..], b"SCRAM-SHA-256\0\0", "{user}: mechanisms");
    let mut scram = ScramSha256::new(b"wrong password", ChannelBinding::unsupported());
    w.send(&sasl_initial_response(scram.message())).await;
    let cont = w.read_msg().await;
    assert_eq!((cont.tag, cont.i32_at(0)), (b'R', 11));
    let server_first = String::from_utf8(cont.body[4..].to_vec()).unwrap();
    let field = |k: &str| {
        let f = server_first.split(',').find(|f| f.starts_with(k)).unwrap();
        f[2..].to_owned()
    };
    use base64::Engine;
    let salt = base64::engine::general_purpose::STANDARD
        .decode(field("s="))
        .unwrap();
    scram.update(&cont.body[4..]).unwrap();
    w.send(&message(b'p', scram.message())).await;
    let e = w.expect_fatal().await;
    let shape = (e.severity, e.code, e.message.replace(user, "<user>"));
    (field("i="), salt.len(), shape)
}

type DbErrorShape = (String, String, String);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_exchange_for_unknown_user_looks_like_a_real_one() {
    let h = Harness::start(|_, _| {}).await;
    let known = scram_attempt(&h, "app.acme").await;
    let unknown = scram_attempt(&h, "ghost.acme").await;
    assert_eq!(known.0, "4096");
    assert_eq!(known.1, 16);
    assert_eq!(known.2 .1, "28P01");
    assert_eq!(known, unknown);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn md5_right_wrong_hashed_and_unknown() {
    let hash = |pw: &str, user: &str| {
        let raw = tenantpool::auth::md5::hash_password(pw, user);
        let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        format!("md5{hex}")
    };
    let md5_hashed = hash("pw", "hashed");
    let h = Harness::start(move |c, _| {
        c.pooler.auth_type = AuthType::Md5;
        add_user(c, "hashed", &md5_hashed);
    })
    .await;
    works(&h, "app", PASSWORD, "plain").await;
    works(&h, "hashed", "pw", "plain").await;
    works(&h, "app.acme", PASSWORD, "app").await;
    assert_eq!(psql_count(&h, "app.acme", PASSWORD).await, "3");

    let wrong = refused(&h, "app", "not-it", "plain").await;
    assert_eq!(wrong.code().code(), "28P01");
    assert_eq!(
        wrong.message(),
        "password authentication failed for user \"app\""
    );
    let expected = shape(&wrong, "app");
    assert_eq!(
        shape(&refused(&h, "app.acme", "not-it", "app").await, "app.acme"),
        expected
    );
    assert_eq!(
        shape(&refused(&h, "hashed", "not-it", "plain").await, "hashed"),
        expected
    );
    assert_eq!(
        shape(&refused(&h, "ghost", PASSWORD, "plain").await, "ghost"),
        expected
    );
    // A user with only a SCRAM verifier cannot do md5: such a config is refused up front.
    let mut config = common::base_config(&h.cluster);
    config.pooler.auth_type = AuthType::Md5;
    add_user(
        &mut config,
        "scramonly",
        &postgres_protocol::password::scram_sha_256(b"pw"),
    );
    let err = tenantpool::config::validate(&config, "t.toml").unwrap_err();
    let err = err.to_string();
    assert!(
        err.contains("users[1].password") && err.contains("SCRAM"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_database_and_bad_tenants_are_refused() {
    let h = Harness::start(|_, _| {}).await;
    let e = refused(&h, "app.acme", PASSWORD, "nosuchdb").await;
    assert_eq!((e.code().code(), e.severity()), ("3D000", "FATAL"));
    assert_eq!(e.message(), "database \"nosuchdb\" does not exist");

    let long = format!("app.{}", "a".repeat(64));
    for user in [
        "app.bad'id",
        long.as_str(),
        "app.",
        "app.a b",
        "app.acme;drop",
    ] {
        let e = refused(&h, user, PASSWORD, "app").await;
        assert_eq!(
            (e.code().code(), e.severity()),
            ("28000", "FATAL"),
            "{user}: {e}"
        );
        assert!(e.message().starts_with("invalid tenant id"), "{user}: {e}");
        assert!(e.message().contains("must match"), "{user}: {e}");
    }
    // 63 characters is still fine (the row count is 0: no such tenant's rows).
    works(&h, &format!("app.{}", "a".repeat(63)), PASSWORD, "app").await;

    let e = refused(&h, "app", PASSWORD, "app").await;
    assert_eq!(e.code().code(), "28000");
    assert!(e.message().contains("no tenant given"), "{e}");
    let hint = e.hint().expect("a hint on how to name the tenant");
    assert!(hint.contains("app.<tenant>"), "{hint}");
}

/// Sets up server roles that log in with md5, cleartext and trust.
fn server_roles(cluster: &TempCluster) {
    cluster
        .psql(
            "app",
            "set password_encryption = 'md5'; \
             create role md5role login password 'md5pw'; \
             create role clearrole login password 'clearpw'; \
             create role trustrole login",
        )
        .unwrap();
    cluster
        .prepend_hba(&[
            "host all md5role 127.0.0.1/32 md5",
            "host all clearrole 127.0.0.1/32 password",
            "host all trustrole 127.0.0.1/32 trust",
        ])
        .unwrap();
}

fn pool_as(c: &mut tenantpool::config::Config, name: &str, role: &str, password: Option<&str>) {
    let mut db = c.databases["plain"].clone();
    db.user = role.into();
    db.password = password.map(str::to_owned);
    c.databases.insert(name.into(), db);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_log_in_with_scram_md5_cleartext_and_trust() {
    let opts = ClusterOptions {
        extra_conf: vec!["log_connections = on".into()],
        ..Default::default()
    };
    let h = Harness::start_with(opts, |c, _| {
        pool_as(c, "md5db", "md5role", Some("md5pw"));
        pool_as(c, "cleardb", "clearrole", Some("clearpw"));
        pool_as(c, "trustdb", "trustrole", None);
    })
    .await;
    let cluster = Arc::clone(&h.cluster);
    tokio::task::spawn_blocking(move || server_roles(&cluster))
        .await
        .unwrap();
    for (db, role) in [
        ("plain", "app"),
        ("md5db", "md5role"),
        ("cleardb", "clearrole"),
        ("trustdb", "trustrole"),
    ] {
        let c = h.connect("app", db).await;
        let who: String = c
            .query_typed("select current_user::text", &[])
            .await
            .unwrap()[0]
            .get(0);
        assert_eq!(who, role, "pool {db}");
    }
    // The server's log says which method each login used.
    let log = std::fs::read_to_string(h.cluster.log_path()).unwrap();
    for (role, method) in [
        ("app", "scram-sha-256"),
        ("md5role", "md5"),
        ("clearrole", "password"),
    ] {
        let line = format!("connection authenticated: identity=\"{role}\" method={method} ");
        assert!(log.contains(&line), "no {line:?} in the server log");
    }
    assert!(log.contains(
        "connection authorized: user=trustrole database=app application_name=tenantpool"
    ));
    assert!(
        !log.contains("identity=\"trustrole\""),
        "trust needs no authentication"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_login_failure_is_reported_quickly() {
    let h = Harness::start(|c, _| {
        pool_as(c, "badpw", "app", Some("wrong-password"));
        pool_as(c, "nopw", "app", None);
    })
    .await;
    for (db, says) in [
        ("badpw", "password authentication failed for user \"app\""),
        ("badpw", "password authentication failed for user \"app\""),
        ("nopw", "none is configured"),
    ] {
        let started = Instant::now();
        let e = refused(&h, "app", PASSWORD, db).await;
        let took = started.elapsed();
        assert!(took < Duration::from_secs(5), "{db}: took {took:?}");
        assert_eq!(
            (e.code().code(), e.severity()),
            ("08006", "FATAL"),
            "{db}: {e}"
        );
        assert!(e.message().contains("tenantpool: server"), "{e}");
        assert!(e.message().contains(says), "{db}: {e}");
        assert_eq!(h.pool(db).counts(), (0, 0, 0), "{db}: no slot leaked");
    }
    works(&h, "app", PASSWORD, "plain").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_stall_during_login_are_closed() {
    let h = Harness::start(|c, _| {
        c.pooler.client_login_timeout = Duration::from_millis(300);
        // md5 is cheap for the client and a warm pool makes the server login happen
        // in the background, so a real login fits in 300 ms even in a debug build
        // (where each SCRAM PBKDF2 takes hundreds of milliseconds).
        c.pooler.auth_type = AuthType::Md5;
        c.databases.get_mut("app").unwrap().min_pool_size = 1;
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while h.pool("app").counts().1 == 0 {
        assert!(
            Instant::now() < deadline,
            "min_pool_size never opened a connection"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let early = h.connect("app.acme", "app").await;
    let startup = startup_packet(PROTOCOL_3_0, &[("user", "app.acme"), ("database", "app")]);
    // Sends nothing; a length and no packet; a startup and no password.
    for stall in [&b""[..], &[0, 0, 0, 40], &startup] {
        let mut w = Wire::connect(h.addr).await;
        let started = Instant::now();
        w.send(stall).await;
        if stall == startup {
            let md5 = w.read_msg().await;
            assert_eq!((md5.tag, md5.i32_at(0)), (b'R', 5));
        }
        let e = w.expect_fatal().await;
        let took = started.elapsed();
        assert_eq!(e.code, "57014", "{e}");
        assert_eq!(e.message, "canceling authentication due to timeout");
        assert!(
            took >= Duration::from_millis(250),
            "closed too early: {took:?}"
        );
        assert!(took < Duration::from_secs(3), "closed too late: {took:?}");
    }
    // The timeout is for logging in only: a session older than it goes on.
    let n: i64 = early
        .query_typed("select count(*) from items", &[])
        .await
        .unwrap()[0]
        .get(0);
    assert_eq!(n, 3);
    works(&h, "app.acme", PASSWORD, "app").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_authentication_messages_are_refused() {
    let h = Harness::start(|_, _| {}).await;
    let sasl_initial = |mechanism: &str, data: &[u8]| {
        let mut body = format!("{mechanism}\0").into_bytes();
        body.extend_from_slice(&(data.len() as i32).to_be_bytes());
        body.extend_from_slice(data);
        message(b'p', &body)
    };
    let big = [&b"p"[..], &(100i32 << 20).to_be_bytes()].concat();
    let binding = sasl_initial("SCRAM-SHA-256", b"p=tls-server-end-point,,n=,r=abc");
    #[rustfmt::skip]
    let cases = [
        ("a Query instead", query("select 1"), "08P01", "expected password response"),
        ("claims 100 MB", big, "08P01", "too long"),
        ("bad length", b"p\0\0\0\x01".to_vec(), "08P01", "invalid message length"),
        ("other mechanism", sasl_initial("SCRAM-SHA-1", b"n,,n=,r=abc"), "08P01", "mechanism"),
        ("channel binding", binding, "0A000", "channel binding"),
        ("not UTF-8", sasl_initial("SCRAM-SHA-256", b"\xff\xfe"), "08P01", "malformed"),
        ("truncated", message(b'p', b"SCRAM-SHA-256"), "08P01", "malformed"),
    ];
    for (name, bytes, code, text) in cases {
        let mut w = Wire::connect(h.addr).await;
        w.startup("app.acme", "app").await;
        assert_eq!(w.read_msg().await.i32_at(0), 10, "{name}: SASL");
        w.send(&bytes).await;
        w.expect_refusal(code, text, name).await;
    }
    works(&h, "app.acme", PASSWORD, "app").await;
}
