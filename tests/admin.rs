//! The admin console against a real PostgreSQL: every SHOW view and command
//! through psql and through tokio-postgres (simple and extended protocol),
//! refusals, PAUSE/RESUME with transactions in flight, KILL, RELOAD from a
//! file, SHUTDOWN.

mod common;
#[path = "common/wire.rs"]
mod wire;

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{sqlstate, Harness, PASSWORD};
use tenantpool::config::{Config, UserConfig};
use tenantpool::pgcluster::{ClusterOptions, TempCluster};
use tenantpool::Pooler;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

const ADMIN: &str = "admin";
const ADMIN_PASSWORD: &str = "admin-secret";
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// A test's whole run, well under a minute.
async fn bounded(test: impl Future<Output = ()>) {
    tokio::time::timeout(Duration::from_secs(50), test)
        .await
        .expect("test took longer than 50 s");
}

/// Polls `f` every 20 ms until it yields a value; panics after 15 s.
async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn with_admin(config: &mut Config) {
    config.users.push(UserConfig {
        name: ADMIN.into(),
        password: ADMIN_PASSWORD.into(),
    });
    config.pooler.admin_users = vec![ADMIN.into()];
}

async fn start() -> Harness {
    Harness::start(|c, _| with_admin(c)).await
}

async fn admin(h: &Harness) -> Client {
    h.try_connect(ADMIN, ADMIN_PASSWORD, "tenantpool")
        .await
        .expect("admin login")
}

/// A result row by column name (NULL as `None`).
type Row = HashMap<String, Option<String>>;

/// Runs a query string through the simple protocol; one Vec of rows per statement.
async fn simple(client: &Client, sql: &str) -> Result<Vec<Vec<Row>>, tokio_postgres::Error> {
    let mut results = vec![Vec::new()];
    for m in client.simple_query(sql).await? {
        match m {
            SimpleQueryMessage::Row(r) => {
                let row = r
                    .columns()
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (c.name().to_owned(), r.get(i).map(str::to_owned)))
                    .collect();
                results.last_mut().unwrap().push(row);
            }
            SimpleQueryMessage::CommandComplete(_) => results.push(Vec::new()),
            _ => {}
        }
    }
    results.pop();
    Ok(results)
}

async fn show(client: &Client, view: &str) -> Vec<Row> {
    let mut r = simple(client, &format!("SHOW {view}"))
        .await
        .unwrap_or_else(|e| panic!("SHOW {view}: {e}"));
    assert_eq!(r.len(), 1);
    r.pop().unwrap()
}

/// The rows whose `key` column is `value`.
fn find<'a>(rows: &'a [Row], key: &str, value: &str) -> Vec<&'a Row> {
    rows.iter()
        .filter(|r| r.get(key).and_then(|v| v.as_deref()) == Some(value))
        .collect()
}

fn one<'a>(rows: &'a [Row], key: &str, value: &str) -> &'a Row {
    let found = find(rows, key, value);
    assert_eq!(found.len(), 1, "one row with {key}={value} in {rows:?}");
    found[0]
}

fn get<'a>(row: &'a Row, column: &str) -> &'a str {
    row.get(column)
        .unwrap_or_else(|| panic!("no column {column} in {row:?}"))
        .as_deref()
        .unwrap_or("")
}

fn num(row: &Row, column: &str) -> i64 {
    get(row, column)
        .parse()
        .unwrap_or_else(|_| panic!("{column} is not a number in {row:?}"))
}

/// psql's output and exit status.
struct Psql {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Psql {
    /// `--csv` output as rows by column name.
    fn rows(&self) -> Vec<Row> {
        let mut lines = self.stdout.lines().map(parse_csv_line);
        let header = lines.next().expect("a header line");
        lines
            .map(|values| {
                header
                    .iter()
                    .cloned()
                    .zip(values.into_iter().map(Some))
                    .collect()
            })
            .collect()
    }
}

/// One line of psql's CSV (quoted fields may hold commas and doubled quotes).
fn parse_csv_line(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                fields.last_mut().unwrap().push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(String::new()),
            (c, _) => fields.last_mut().unwrap().push(c),
        }
    }
    fields
}

async fn psql_as(port: u16, bindir: &Path, user: &str, password: &str, sql: &str) -> Psql {
    let out = tokio::process::Command::new(bindir.join("psql"))
        .args(["-X", "--csv", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
        .args([
            "-p",
            &port.to_string(),
            "-U",
            user,
            "-d",
            "tenantpool",
            "-c",
            sql,
        ])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "10")
        .kill_on_drop(true)
        .output()
        .await
        .expect("run psql");
    Psql {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

async fn psql(h: &Harness, sql: &str) -> Psql {
    psql_as(h.port(), h.cluster.bindir(), ADMIN, ADMIN_PASSWORD, sql).await
}

/// psql that must succeed.
async fn psql_ok(h: &Harness, sql: &str) -> Psql {
    let out = psql(h, sql).await;
    assert!(out.ok, "psql -c '{sql}' failed: {}", out.stderr);
    out
}

/// Total wait in microseconds from a row's `maxwait` and `maxwait_us`.
fn maxwait_us(row: &Row) -> i64 {
    num(row, "maxwait") * 1_000_000 + num(row, "maxwait_us")
}

async fn backend_pid(client: &Client) -> i32 {
    client
        .query_typed_one("select pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_clients_servers_tenants_and_stats_show_a_transaction_in_flight() {
    bounded(async {
        let h = start().await;
        let admin = admin(&h).await;
        let acme = h.connect("app.acme", "app").await;
        acme.batch_execute("begin").await.unwrap();
        let pid = backend_pid(&acme).await;

        // SHOW POOLS, simple protocol.
        let pools = show(&admin, "POOLS").await;
        let app = one(&pools, "database", "app");
        assert_eq!(num(app, "cl_active"), 1, "{app:?}");
        assert_eq!(num(app, "cl_waiting"), 0);
        assert_eq!(num(app, "sv_active"), 1);
        assert_eq!(num(app, "sv_idle"), 0);
        assert_eq!(num(app, "pool_size"), 5);
        assert_eq!(get(app, "user"), "app");
        assert_eq!(get(app, "pool_mode"), "transaction");
        assert_eq!(get(app, "paused"), "f");
        assert_eq!(maxwait_us(app), 0);
        assert_eq!(num(one(&pools, "database", "plain"), "sv_active"), 0);

        // SHOW POOLS, extended protocol: typed values.
        let rows = admin.query("SHOW POOLS", &[]).await.unwrap();
        let app = rows
            .iter()
            .find(|r| r.get::<_, &str>("database") == "app")
            .expect("app row");
        assert_eq!(app.get::<_, i64>("cl_active"), 1);
        assert_eq!(app.get::<_, i64>("sv_active"), 1);
        assert_eq!(app.get::<_, i64>("pool_size"), 5);
        assert!(!app.get::<_, bool>("paused"));
        // A prepared statement runs again with fresh values.
        let statement = admin.prepare("show servers").await.unwrap();
        assert_eq!(statement.columns()[0].name(), "type");
        let servers = admin.query(&statement, &[]).await.unwrap();
        assert!(servers
            .iter()
            .any(|r| r.get::<_, i64>("remote_pid") == i64::from(pid)));

        // SHOW CLIENTS: the tenant client, active, linked to its server.
        let clients = show(&admin, "CLIENTS").await;
        let c = one(&clients, "tenant", "acme");
        assert_eq!(get(c, "type"), "C");
        assert_eq!(get(c, "user"), "app");
        assert_eq!(get(c, "database"), "app");
        assert_eq!(get(c, "state"), "active");
        assert_eq!(get(c, "addr"), "127.0.0.1");
        assert!(num(c, "port") > 0);
        assert_eq!(get(c, "tls"), "f");
        assert!(get(c, "connect_time").ends_with(" UTC"), "{c:?}");
        let (client_id, server_id) = (num(c, "id"), num(c, "link"));

        // SHOW SERVERS: the backend pid the client saw, linked back to it.
        let servers = show(&admin, "SERVERS").await;
        let s = one(&servers, "remote_pid", &pid.to_string());
        assert_eq!(get(s, "type"), "S");
        assert_eq!(get(s, "state"), "active");
        assert_eq!(get(s, "database"), "app");
        assert_eq!(get(s, "tenant"), "acme");
        assert_eq!(num(s, "id"), server_id);
        assert_eq!(num(s, "link"), client_id);
        assert_eq!(num(s, "port"), i64::from(h.cluster.port()));

        // SHOW TENANTS: acme holds one server.
        let tenants = show(&admin, "TENANTS").await;
        let t = one(&tenants, "tenant", "acme");
        assert_eq!(get(t, "database"), "app");
        assert_eq!((num(t, "cl_active"), num(t, "cl_waiting")), (1, 0));
        assert_eq!((num(t, "sv_active"), num(t, "sv_idle")), (1, 0));

        // The same through psql.
        let out = psql_ok(&h, "SHOW POOLS").await;
        let app = one(&out.rows(), "database", "app").clone();
        assert_eq!((num(&app, "cl_active"), num(&app, "sv_active")), (1, 1));
        let out = psql_ok(&h, "show clients").await;
        assert_eq!(get(one(&out.rows(), "tenant", "acme"), "state"), "active");
        let out = psql_ok(&h, "SHOW SERVERS;").await;
        let s = one(&out.rows(), "remote_pid", &pid.to_string()).clone();
        assert_eq!(get(&s, "tenant"), "acme");
        let out = psql_ok(&h, "SHOW TENANTS").await;
        assert_eq!(num(one(&out.rows(), "tenant", "acme"), "sv_active"), 1);

        // After COMMIT the server is idle, still set to acme (reusable without a SET).
        acme.batch_execute("commit").await.unwrap();
        let servers = show(&admin, "SERVERS").await;
        let s = one(&servers, "remote_pid", &pid.to_string());
        assert_eq!(get(s, "state"), "idle");
        assert_eq!(get(s, "tenant"), "acme");
        assert_eq!(get(s, "link"), "");
        let t = show(&admin, "TENANTS").await;
        let t = one(&t, "tenant", "acme");
        assert_eq!(
            (num(t, "cl_active"), num(t, "sv_active"), num(t, "sv_idle")),
            (1, 0, 1)
        );
        assert_eq!(
            get(
                one(&show(&admin, "CLIENTS").await, "tenant", "acme"),
                "state"
            ),
            "idle"
        );
        let pools = show(&admin, "POOLS").await;
        let app = one(&pools, "database", "app");
        assert_eq!(
            (
                num(app, "cl_active"),
                num(app, "sv_active"),
                num(app, "sv_idle")
            ),
            (1, 0, 1)
        );

        // SHOW STATS counts the transactions and the tenant SET.
        let stats = show(&admin, "STATS").await;
        let app = one(&stats, "database", "app");
        assert!(num(app, "total_xact_count") >= 1, "{app:?}");
        assert!(num(app, "total_query_count") >= 1, "{app:?}");
        assert!(
            num(app, "total_received") > 0 && num(app, "total_sent") > 0,
            "{app:?}"
        );
        assert_eq!(num(app, "total_tenant_set_count"), 1);
        assert_eq!(num(app, "total_server_connect_count"), 1);
        assert_eq!(num(app, "total_server_connect_errors"), 0);
        assert!(num(app, "avg_server_connect_time") > 0);
        assert!(num(app, "max_server_connect_time") >= num(app, "avg_server_connect_time"));
        // A second transaction of acme reuses the server without a SET.
        assert_eq!(backend_pid(&acme).await, pid);
        let out = psql_ok(&h, "SHOW STATS").await;
        let app = one(&out.rows(), "database", "app").clone();
        assert_eq!(num(&app, "total_tenant_set_skipped"), 1);
        assert!(num(&app, "total_xact_count") >= 2);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn databases_config_version_help_lists_and_state() {
    bounded(async {
        let h = start().await;
        let admin = admin(&h).await;
        let superuser_password = h.cluster.superuser_password().to_owned();

        // SHOW DATABASES.
        let dbs = show(&admin, "DATABASES").await;
        let app = one(&dbs, "name", "app");
        assert_eq!(num(app, "pool_size"), 5);
        assert_eq!(num(app, "min_pool_size"), 0);
        assert_eq!(num(app, "port"), i64::from(h.cluster.port()));
        assert_eq!(get(app, "host"), h.cluster.host());
        assert_eq!(get(app, "database"), "app");
        assert_eq!(get(app, "force_user"), "app");
        assert_eq!(get(app, "pool_mode"), "transaction");
        assert_eq!(get(app, "paused"), "f");
        assert_eq!(get(app, "tenant_source"), "user_suffix");
        assert_eq!(get(app, "tenant_setting"), "app.current_tenant");
        assert_eq!(get(app, "server_tls"), "disable");
        let plain = one(&dbs, "name", "plain");
        assert_eq!(plain.get("tenant_source"), Some(&None));
        let out = psql_ok(&h, "SHOW DATABASES").await;
        assert_eq!(num(one(&out.rows(), "name", "bench"), "pool_size"), 5);
        assert_eq!(
            get(one(&out.rows(), "name", "bench"), "force_user"),
            "postgres"
        );

        // SHOW CONFIG: values, defaults, and no secret anywhere.
        let config = show(&admin, "CONFIG").await;
        let size = one(&config, "key", "databases.app.pool_size");
        assert_eq!((get(size, "value"), get(size, "default")), ("5", "20"));
        assert_eq!(get(size, "changeable"), "yes");
        let listen = one(&config, "key", "pooler.listen");
        assert_eq!(get(listen, "value"), "127.0.0.1:0");
        assert_eq!(get(listen, "default"), "127.0.0.1:6432");
        assert_eq!(get(listen, "changeable"), "no");
        assert_eq!(
            get(one(&config, "key", "pooler.query_wait_timeout"), "value"),
            "30s"
        );
        assert_eq!(
            get(one(&config, "key", "pooler.admin_users"), "value"),
            "admin"
        );
        for key in [
            "users.app.password",
            "users.admin.password",
            "databases.bench.password",
        ] {
            assert_eq!(get(one(&config, "key", key), "value"), "<set>");
        }
        let out = psql_ok(&h, "SHOW CONFIG").await;
        assert!(
            out.stdout
                .contains("databases.app.tenant.setting,app.current_tenant"),
            "{}",
            out.stdout
        );
        for secret in [PASSWORD, ADMIN_PASSWORD, superuser_password.as_str()] {
            assert!(!out.stdout.contains(secret), "SHOW CONFIG shows a password");
            assert!(
                !format!("{config:?}").contains(secret),
                "SHOW CONFIG shows a password"
            );
        }

        // SHOW VERSION.
        let v = show(&admin, "VERSION").await;
        assert_eq!(get(&v[0], "version"), format!("tenantpool {VERSION}"));
        let out = psql_ok(&h, "SHOW VERSION").await;
        assert!(
            out.stdout.contains(&format!("tenantpool {VERSION}")),
            "{}",
            out.stdout
        );
        let row = admin.query_one("SHOW VERSION", &[]).await.unwrap();
        assert!(row.get::<_, &str>(0).contains(VERSION));

        // SHOW HELP lists every command.
        let help = show(&admin, "HELP").await;
        let out = psql_ok(&h, "SHOW HELP").await;
        for command in [
            "SHOW POOLS",
            "SHOW STATS",
            "SHOW CLIENTS",
            "SHOW SERVERS",
            "SHOW DATABASES",
            "SHOW CONFIG",
            "SHOW TENANTS",
            "SHOW VERSION",
            "SHOW HELP",
            "PAUSE [db]",
            "RESUME [db]",
            "RELOAD",
            "KILL db",
            "SHUTDOWN",
        ] {
            assert_eq!(
                find(&help, "command", command).len(),
                1,
                "{command} in SHOW HELP"
            );
            assert_eq!(
                find(&out.rows(), "command", command).len(),
                1,
                "{command} in psql"
            );
        }

        // SHOW LISTS and SHOW STATE.
        let lists = show(&admin, "LISTS").await;
        assert_eq!(num(one(&lists, "list", "databases"), "items"), 3);
        assert_eq!(num(one(&lists, "list", "users"), "items"), 2);
        let out = psql_ok(&h, "SHOW LISTS").await;
        assert_eq!(num(one(&out.rows(), "list", "pools"), "items"), 3);
        let state = show(&admin, "STATE").await;
        assert_eq!(get(one(&state, "key", "phase"), "value"), "running");
        assert_eq!(get(one(&state, "key", "reloads"), "value"), "0");
        let out = psql_ok(&h, "SHOW STATE").await;
        assert_eq!(get(one(&out.rows(), "key", "phase"), "value"), "running");

        // Several commands in one Query are answered in order; case and `;` do not matter.
        let results = simple(&admin, "show version; SHOW Lists;;").await.unwrap();
        assert_eq!(results.len(), 2);
        assert!(results[0][0].contains_key("version"));
        assert!(results[1][0].contains_key("list"));
        let out = psql_ok(&h, "show version; show lists").await;
        assert!(out.stdout.contains("list,items"), "{}", out.stdout);
        // An empty query is answered with EmptyQueryResponse ('I'). On the raw
        // wire: tokio-postgres shows it as CommandComplete(0), like any tag.
        let (mut raw, _) = wire::Wire::login(h.addr, ADMIN, "tenantpool", ADMIN_PASSWORD).await;
        for empty in ["", " ; -- nothing"] {
            let (messages, status) = raw.simple(empty).await;
            let tags: Vec<u8> = messages.iter().map(|m| m.tag).collect();
            assert_eq!((&tags[..], status), (&b"IZ"[..], b'I'), "{empty:?}");
        }
    })
    .await
}

/// A typed value from the extended protocol, written as the simple protocol writes it.
fn as_text(row: &tokio_postgres::Row, i: usize) -> Option<String> {
    use tokio_postgres::types::Type;
    match *row.columns()[i].type_() {
        Type::INT8 => row.get::<_, Option<i64>>(i).map(|v| v.to_string()),
        Type::BOOL => row
            .get::<_, Option<bool>>(i)
            .map(|v| if v { "t" } else { "f" }.to_owned()),
        Type::TEXT => row.get::<_, Option<String>>(i),
        ref other => panic!("column {} has type {other}", row.columns()[i].name()),
    }
}

/// Runs a statement through the extended protocol (results in binary).
async fn extended(client: &Client, sql: &str) -> Vec<Row> {
    client
        .query(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|r| {
            r.columns()
                .iter()
                .enumerate()
                .map(|(i, c)| (c.name().to_owned(), as_text(r, i)))
                .collect()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_view_and_command_through_the_extended_protocol() {
    bounded(async {
        let h = start().await;
        let admin = admin(&h).await;
        let acme = h.connect("app.acme", "app").await;
        backend_pid(&acme).await;

        // Every view answers the same columns and values in binary as in text
        // (but for the clock: `state_change`, and STATE's uptime).
        for view in [
            "POOLS",
            "STATS",
            "CLIENTS",
            "SERVERS",
            "DATABASES",
            "CONFIG",
            "TENANTS",
            "VERSION",
            "HELP",
            "LISTS",
            "STATE",
        ] {
            let typed = extended(&admin, &format!("SHOW {view}")).await;
            let text = show(&admin, view).await;
            assert!(!typed.is_empty(), "SHOW {view} has rows");
            assert_eq!(typed.len(), text.len(), "SHOW {view}");
            for (t, s) in typed.iter().zip(&text) {
                let mut keys: Vec<_> = t.keys().collect();
                keys.sort();
                let mut simple_keys: Vec<_> = s.keys().collect();
                simple_keys.sort();
                assert_eq!(keys, simple_keys, "SHOW {view}");
                if t.get("key") == Some(&Some("uptime_seconds".into())) {
                    continue;
                }
                for key in keys.into_iter().filter(|k| *k != "state_change") {
                    assert_eq!(t[key], s[key], "SHOW {view}, column {key}");
                }
            }
        }

        // PAUSE and RESUME, one database and all.
        let paused = |rows: Vec<Row>, db: &str| get(one(&rows, "name", db), "paused").to_owned();
        assert_eq!(admin.execute("PAUSE app", &[]).await.unwrap(), 0);
        let dbs = extended(&admin, "SHOW DATABASES").await;
        assert_eq!(
            (paused(dbs.clone(), "app"), paused(dbs, "plain")),
            ("t".into(), "f".into())
        );
        admin.execute("RESUME app", &[]).await.unwrap();
        assert_eq!(paused(extended(&admin, "SHOW DATABASES").await, "app"), "f");
        admin.execute("PAUSE", &[]).await.unwrap();
        let dbs = extended(&admin, "SHOW DATABASES").await;
        assert!(dbs.iter().all(|d| get(d, "paused") == "t"), "{dbs:?}");
        admin.execute("RESUME", &[]).await.unwrap();
        let dbs = extended(&admin, "SHOW DATABASES").await;
        assert!(dbs.iter().all(|d| get(d, "paused") == "f"), "{dbs:?}");

        // KILL closes the database's client; RESUME lets new ones in.
        admin.execute("KILL app", &[]).await.unwrap();
        eventually("the killed client closed", || async {
            acme.is_closed().then_some(())
        })
        .await;
        admin.execute("RESUME app", &[]).await.unwrap();
        let globex = h.connect("app.globex", "app").await;
        backend_pid(&globex).await;

        // RELOAD without a file to re-read: an error, and the console goes on.
        let e = admin.execute("RELOAD", &[]).await.unwrap_err();
        assert_eq!(sqlstate(&e).as_deref(), Some("F0000"), "{e}");

        // SHUTDOWN is answered, then the pooler drains and closes the console.
        assert_eq!(admin.execute("SHUTDOWN", &[]).await.unwrap(), 0);
        eventually("admin connection closed", || async {
            admin.is_closed().then_some(())
        })
        .await;
        eventually("new connections refused", || async {
            h.try_connect(ADMIN, ADMIN_PASSWORD, "tenantpool")
                .await
                .err()
        })
        .await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_admins_are_refused_and_bad_commands_get_errors() {
    bounded(async {
        let h = start().await;

        // A valid user who is not an admin: 42501, after authenticating.
        let e = h
            .try_connect("app", PASSWORD, "tenantpool")
            .await
            .unwrap_err();
        assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{e}");
        // Wrong password, unknown user: 28P01.
        let e = h
            .try_connect(ADMIN, "wrong", "tenantpool")
            .await
            .unwrap_err();
        assert_eq!(sqlstate(&e).as_deref(), Some("28P01"), "{e}");
        let e = h
            .try_connect("nobody", "x", "tenantpool")
            .await
            .unwrap_err();
        assert_eq!(sqlstate(&e).as_deref(), Some("28P01"), "{e}");
        let out = psql_as(h.port(), h.cluster.bindir(), "app", PASSWORD, "SHOW POOLS").await;
        assert!(
            !out.ok && out.stderr.contains("not allowed to use the admin console"),
            "{}",
            out.stderr
        );

        // An unknown command: 42601 naming the valid ones; the connection goes on.
        let admin = admin(&h).await;
        let e = admin.simple_query("SHOW NOTHING").await.unwrap_err();
        assert_eq!(sqlstate(&e).as_deref(), Some("42601"));
        let e = admin.simple_query("SELECT 1").await.unwrap_err();
        assert_eq!(sqlstate(&e).as_deref(), Some("42601"));
        let message = e.as_db_error().unwrap().message().to_owned();
        assert!(
            message.contains("unknown admin command \"SELECT 1\""),
            "{message}"
        );
        for valid in [
            "POOLS",
            "TENANTS",
            "PAUSE [db]",
            "RESUME [db]",
            "RELOAD",
            "KILL db",
            "SHUTDOWN",
        ] {
            assert!(message.contains(valid), "{message}");
        }
        assert_eq!(show(&admin, "VERSION").await.len(), 1);
        // In the extended protocol too, and the connection goes on.
        let e = admin.query("BOGUS", &[]).await.unwrap_err();
        assert_eq!(sqlstate(&e).as_deref(), Some("42601"));
        assert_eq!(admin.query("SHOW VERSION", &[]).await.unwrap().len(), 1);
        // A failing statement stops the rest of the Query string.
        let e = admin.simple_query("SHOW VERSION; KILL").await.unwrap_err();
        assert!(e
            .as_db_error()
            .unwrap()
            .message()
            .contains("KILL needs a database name"));
        let out = psql(&h, "show nonsense").await;
        assert!(
            !out.ok && out.stderr.contains("unknown view \"nonsense\""),
            "{}",
            out.stderr
        );

        // Unknown databases are named.
        for command in ["PAUSE nosuchdb", "RESUME nosuchdb", "KILL nosuchdb"] {
            let e = admin.simple_query(command).await.unwrap_err();
            assert_eq!(sqlstate(&e).as_deref(), Some("3D000"), "{command}");
            assert!(
                e.as_db_error().unwrap().message().contains("nosuchdb"),
                "{command}: {e}"
            );
        }
        let out = psql(&h, "PAUSE nosuchdb").await;
        assert!(
            !out.ok && out.stderr.contains("no such database: nosuchdb"),
            "{}",
            out.stderr
        );
        // RELOAD without a file (the harness starts from a Config): an error, nothing changes.
        let e = admin.simple_query("RELOAD").await.unwrap_err();
        assert_eq!(sqlstate(&e).as_deref(), Some("F0000"));
        assert_eq!(show(&admin, "VERSION").await.len(), 1);

        // An oversized message is a protocol violation that closes the connection.
        let e = admin
            .simple_query(&"SHOW POOLS ".repeat(7000))
            .await
            .unwrap_err();
        assert_eq!(sqlstate(&e).as_deref(), Some("08P01"), "{e}");
        eventually("the oversized client closed", || async {
            admin.is_closed().then_some(())
        })
        .await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_waits_for_the_open_transaction_and_holds_new_clients_until_resume() {
    bounded(async {
        let h = start().await;
        let watcher = admin(&h).await;
        let acme = h.connect("app.acme", "app").await;
        acme.batch_execute("begin").await.unwrap();
        backend_pid(&acme).await;

        // PAUSE from another task: it must not return while acme's transaction is open.
        let pauser = admin(&h).await;
        let mut pause =
            tokio::spawn(async move { pauser.simple_query("PAUSE app").await.map(|_| ()) });
        eventually("app paused", || async {
            let dbs = show(&watcher, "DATABASES").await;
            (get(one(&dbs, "name", "app"), "paused") == "t").then_some(())
        })
        .await;
        assert!(
            tokio::time::timeout(Duration::from_millis(300), &mut pause)
                .await
                .is_err(),
            "PAUSE returned while a transaction was open"
        );
        let pools = show(&watcher, "POOLS").await;
        assert_eq!(get(one(&pools, "database", "app"), "paused"), "t");
        assert_eq!(num(one(&pools, "database", "app"), "sv_active"), 1);
        assert_eq!(get(one(&pools, "database", "plain"), "paused"), "f");

        // The transaction can still finish; then PAUSE returns.
        acme.batch_execute("insert into items (tenant_id, name) values ('acme', 'paused'); commit")
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(10), pause)
            .await
            .expect("PAUSE returned after the commit")
            .unwrap()
            .unwrap();

        // While paused, a new client's query is not answered; it shows as waiting.
        let globex = Arc::new(h.connect("app.globex", "app").await);
        let waiting = {
            let globex = Arc::clone(&globex);
            tokio::spawn(async move {
                let row = globex
                    .query_typed_one("select count(*) from items", &[])
                    .await
                    .unwrap();
                row.get::<_, i64>(0)
            })
        };
        let first = eventually("a waiting client", || async {
            let pools = show(&watcher, "POOLS").await;
            let app = one(&pools, "database", "app").clone();
            (num(&app, "cl_waiting") >= 1).then_some(app)
        })
        .await;
        eventually("maxwait to grow", || async {
            let pools = show(&watcher, "POOLS").await;
            (maxwait_us(one(&pools, "database", "app")) > maxwait_us(&first)).then_some(())
        })
        .await;
        let clients = show(&watcher, "CLIENTS").await;
        let g = one(&clients, "tenant", "globex");
        assert_eq!(get(g, "state"), "waiting");
        assert!(num(g, "wait") * 1_000_000 + num(g, "wait_us") > 0);
        let tenants = show(&watcher, "TENANTS").await;
        assert_eq!(num(one(&tenants, "tenant", "globex"), "cl_waiting"), 1);
        assert!(!waiting.is_finished(), "a query was answered while paused");

        // RESUME (through psql): the waiting query completes.
        let out = psql_ok(&h, "RESUME app").await;
        assert!(out.stdout.contains("RESUME"), "{}", out.stdout);
        let n = tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .expect("the waiting query completed after RESUME")
            .unwrap();
        assert_eq!(n, 2);
        let pools = show(&watcher, "POOLS").await;
        let app = one(&pools, "database", "app");
        assert_eq!((num(app, "cl_waiting"), get(app, "paused")), (0, "f"));
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_without_a_database_pauses_all() {
    bounded(async {
        let h = start().await;
        let watcher = admin(&h).await;
        // Open a server connection in each pool, so logins need no server.
        let app = Arc::new(h.connect("app.acme", "app").await);
        let plain = Arc::new(h.connect("app", "plain").await);
        backend_pid(&app).await;
        backend_pid(&plain).await;

        let out = psql_ok(&h, "PAUSE").await;
        assert!(out.stdout.contains("PAUSE"), "{}", out.stdout);
        let dbs = show(&watcher, "DATABASES").await;
        assert!(dbs.iter().all(|d| get(d, "paused") == "t"), "{dbs:?}");

        let queries: Vec<_> = [app, plain]
            .into_iter()
            .map(|c| tokio::spawn(async move { backend_pid(&c).await }))
            .collect();
        eventually("both clients waiting", || async {
            let pools = show(&watcher, "POOLS").await;
            let waiting = |db| num(one(&pools, "database", db), "cl_waiting");
            (waiting("app") == 1 && waiting("plain") == 1).then_some(())
        })
        .await;
        assert!(queries.iter().all(|q| !q.is_finished()));

        // RESUME with no database (tokio-postgres) resumes all.
        watcher.simple_query("RESUME").await.unwrap();
        for q in queries {
            tokio::time::timeout(Duration::from_secs(10), q)
                .await
                .expect("query completed after RESUME")
                .unwrap();
        }
        let dbs = show(&watcher, "DATABASES").await;
        assert!(dbs.iter().all(|d| get(d, "paused") == "f"), "{dbs:?}");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_closes_the_databases_clients_and_new_ones_wait_for_resume() {
    bounded(async {
        let h = start().await;
        let admin = admin(&h).await;
        let idle = h.connect("app.acme", "app").await;
        backend_pid(&idle).await;
        let in_xact = h.connect("app.globex", "app").await;
        in_xact.batch_execute("begin").await.unwrap();
        backend_pid(&in_xact).await;
        let other = h.connect("app", "plain").await;
        backend_pid(&other).await;

        let messages = admin.simple_query("KILL app").await.unwrap();
        assert!(matches!(
            messages.last(),
            Some(SimpleQueryMessage::CommandComplete(_))
        ));

        // Both clients of app are closed with 57P01; plain is untouched.
        for c in [&idle, &in_xact] {
            eventually("killed client closed", || async {
                c.is_closed().then_some(())
            })
            .await;
            let e = c.simple_query("select 1").await.unwrap_err();
            assert!(
                e.is_closed() || sqlstate(&e).as_deref() == Some("57P01"),
                "{e}"
            );
        }
        backend_pid(&other).await;
        let pools = show(&admin, "POOLS").await;
        assert_eq!(get(one(&pools, "database", "app"), "paused"), "t");
        assert_eq!(get(one(&pools, "database", "plain"), "paused"), "f");
        // A client sees its socket close a moment before its session has
        // deregistered, so the count is awaited.
        eventually("app's clients deregistered", || async {
            let pools = show(&admin, "POOLS").await;
            (num(one(&pools, "database", "app"), "cl_active") == 0).then_some(())
        })
        .await;
        eventually("app's servers closed", || async {
            let servers = show(&admin, "SERVERS").await;
            find(&servers, "database", "app").is_empty().then_some(())
        })
        .await;

        // A new client of app waits until RESUME.
        let late = h.connect("app.acme", "app").await;
        let query = tokio::spawn(async move { backend_pid(&late).await });
        eventually("the new client waiting", || async {
            let pools = show(&admin, "POOLS").await;
            (num(one(&pools, "database", "app"), "cl_waiting") == 1).then_some(())
        })
        .await;
        assert!(!query.is_finished());
        admin.simple_query("RESUME app").await.unwrap();
        tokio::time::timeout(Duration::from_secs(10), query)
            .await
            .expect("query completed after RESUME")
            .unwrap();

        // KILL through psql closes plain's client.
        let out = psql_ok(&h, "KILL plain").await;
        assert!(out.stdout.contains("KILL"), "{}", out.stdout);
        eventually("plain's client closed", || async {
            other.is_closed().then_some(())
        })
        .await;
        psql_ok(&h, "RESUME plain").await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_refuses_new_clients_and_lets_the_transaction_commit() {
    bounded(async {
        let h = start().await;
        let admin = admin(&h).await;
        let acme = h.connect("app.acme", "app").await;
        acme.batch_execute(
            "begin; insert into items (tenant_id, name) values ('acme', 'last order')",
        )
        .await
        .unwrap();

        let messages = admin.simple_query("SHUTDOWN").await.unwrap();
        assert!(matches!(
            messages.last(),
            Some(SimpleQueryMessage::CommandComplete(_))
        ));
        // The console connection is closed once the pooler drains.
        eventually("admin connection closed", || async {
            admin.is_closed().then_some(())
        })
        .await;
        // New connections are refused.
        eventually("new connections refused", || async {
            h.try_connect("app.acme", PASSWORD, "app").await.err()
        })
        .await;
        let out = psql(&h, "SHOW POOLS").await;
        assert!(!out.ok);

        // The transaction in flight commits; then its client is told and closed.
        acme.batch_execute("commit").await.unwrap();
        let direct = h.direct_superuser().await;
        let n: i64 = direct
            .query_one("select count(*) from items where name = 'last order'", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 1);
        eventually("the client closed after its transaction", || async {
            acme.is_closed().then_some(())
        })
        .await;
    })
    .await
}

/// A pooler started from a configuration file, so RELOAD has something to re-read.
struct FilePooler {
    cluster: Arc<TempCluster>,
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

fn config_text(cluster: &TempCluster, pool_size: &str) -> String {
    format!(
        r#"
[pooler]
listen = "127.0.0.1:0"
admin_users = ["{ADMIN}"]
query_wait_timeout = "20s"

[[users]]
name = "app"
password = "{PASSWORD}"

[[users]]
name = "{ADMIN}"
password = "{ADMIN_PASSWORD}"

[databases.app]
host = "{host}"
port = {port}
user = "app"
password = "{PASSWORD}"
pool_size = {pool_size}
tls = "disable"

[databases.app.tenant]
source = "user_suffix"
"#,
        host = cluster.host(),
        port = cluster.port(),
    )
}

impl FilePooler {
    async fn start() -> FilePooler {
        let cluster = tokio::task::spawn_blocking(|| {
            let cluster = TempCluster::start(ClusterOptions::default()).expect("start PostgreSQL");
            cluster
                .load_demo_schema("app", PASSWORD)
                .expect("load demo schema");
            cluster
        })
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tenantpool.toml");
        std::fs::write(&path, config_text(&cluster, "3")).unwrap();
        let pooler = Pooler::bind_file(&path)
            .await
            .expect("bind pooler from file");
        let port = pooler.local_addr().port();
        let task = tokio::spawn(pooler.run(std::future::pending()));
        FilePooler {
            cluster: Arc::new(cluster),
            _dir: dir,
            path,
            port,
            task,
        }
    }

    async fn connect(
        &self,
        user: &str,
        password: &str,
        db: &str,
    ) -> Result<Client, tokio_postgres::Error> {
        let (client, conn) = tokio_postgres::Config::new()
            .host("127.0.0.1")
            .port(self.port)
            .user(user)
            .password(password)
            .dbname(db)
            .connect_timeout(Duration::from_secs(10))
            .connect(NoTls)
            .await?;
        tokio::spawn(conn);
        Ok(client)
    }

    async fn psql(&self, sql: &str) -> Psql {
        psql_as(self.port, self.cluster.bindir(), ADMIN, ADMIN_PASSWORD, sql).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_applies_a_changed_file_and_keeps_the_old_config_on_error() {
    bounded(async {
        let p = FilePooler::start().await;
        let admin = p
            .connect(ADMIN, ADMIN_PASSWORD, "tenantpool")
            .await
            .unwrap();
        let client = p.connect("app.acme", PASSWORD, "app").await.unwrap();
        backend_pid(&client).await;
        let pool_size = |rows: &[Row], key: &str| num(one(rows, key, "app"), "pool_size");
        assert_eq!(pool_size(&show(&admin, "POOLS").await, "database"), 3);

        // A valid change, through psql.
        std::fs::write(&p.path, config_text(&p.cluster, "7")).unwrap();
        let out = p.psql("RELOAD").await;
        assert!(
            out.ok && out.stdout.contains("RELOAD"),
            "{} {}",
            out.stdout,
            out.stderr
        );
        assert!(
            out.stderr.contains("configuration reloaded"),
            "{}",
            out.stderr
        );
        assert_eq!(pool_size(&show(&admin, "POOLS").await, "database"), 7);
        assert_eq!(pool_size(&show(&admin, "DATABASES").await, "name"), 7);
        let config = show(&admin, "CONFIG").await;
        assert_eq!(
            get(one(&config, "key", "databases.app.pool_size"), "value"),
            "7"
        );
        let out = p.psql("SHOW POOLS").await;
        assert_eq!(num(one(&out.rows(), "database", "app"), "pool_size"), 7);
        // The connected client kept working across the reload.
        backend_pid(&client).await;

        // An invalid file (tokio-postgres): an error with the reason; the old config stays.
        std::fs::write(&p.path, config_text(&p.cluster, "0")).unwrap();
        let e = admin.simple_query("RELOAD").await.unwrap_err();
        assert_eq!(sqlstate(&e).as_deref(), Some("F0000"), "{e}");
        let db = e.as_db_error().unwrap();
        assert!(db.message().contains("RELOAD failed"), "{}", db.message());
        assert!(
            db.message().contains("databases.app.pool_size"),
            "{}",
            db.message()
        );
        let config = show(&admin, "CONFIG").await;
        assert_eq!(
            get(one(&config, "key", "databases.app.pool_size"), "value"),
            "7"
        );
        assert_eq!(pool_size(&show(&admin, "POOLS").await, "database"), 7);
        // A file that is not TOML, through psql.
        std::fs::write(&p.path, "[pooler\nlisten = ").unwrap();
        let out = p.psql("RELOAD").await;
        assert!(
            !out.ok && out.stderr.contains("RELOAD failed"),
            "{}",
            out.stderr
        );
        let out = p.psql("SHOW CONFIG").await;
        assert_eq!(
            get(one(&out.rows(), "key", "databases.app.pool_size"), "value"),
            "7"
        );
        backend_pid(&client).await;
        let state = show(&admin, "STATE").await;
        assert_eq!(get(one(&state, "key", "reloads"), "value"), "1");
        // A valid change through the extended protocol.
        std::fs::write(&p.path, config_text(&p.cluster, "6")).unwrap();
        admin.execute("RELOAD", &[]).await.unwrap();
        assert_eq!(pool_size(&show(&admin, "POOLS").await, "database"), 6);
        let state = show(&admin, "STATE").await;
        assert_eq!(get(one(&state, "key", "reloads"), "value"), "2");

        // SHUTDOWN through psql: the pooler stops and refuses new clients.
        let out = p.psql("SHUTDOWN").await;
        assert!(out.ok && out.stdout.contains("SHUTDOWN"), "{}", out.stderr);
        eventually("client closed by the drain", || async {
            client.is_closed().then_some(())
        })
        .await;
        tokio::time::timeout(Duration::from_secs(10), p.task)
            .await
            .expect("the pooler stopped after SHUTDOWN")
            .unwrap();
        assert!(p_connect_refused(p.port).await);
    })
    .await
}

async fn p_connect_refused(port: u16) -> bool {
    tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
}
