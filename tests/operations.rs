//! Operating the pooler: live reload (SIGHUP to the real binary, and
//! `Control::reload` in-process) under load, rejected reloads, draining of
//! removed and re-pointed databases, SIGTERM and SIGINT, and the log output.
//!
//! Every test starts its own PostgreSQL; every wait is a poll with a deadline,
//! and every test is bounded by `LIMIT`.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tenantpool::pgcluster::{ClusterOptions, TempCluster};
use tenantpool::pooler::Control;
use tenantpool::Pooler;
use tokio_postgres::{Client, NoTls};

const BIN: &str = env!("CARGO_BIN_EXE_tenantpool");
/// Password of role `app` on the server, and (until a test changes it) of pooler user `app`.
const PASSWORD: &str = "app-secret";
/// No test may take longer than this.
const LIMIT: Duration = Duration::from_secs(120);
/// How long a poll waits for something that should happen promptly.
const PROMPTLY: Duration = Duration::from_secs(10);

async fn bounded<F: std::future::Future>(test: F) -> F::Output {
    tokio::time::timeout(LIMIT, test)
        .await
        .expect("test took longer than its limit")
}

/// Polls `cond` every 20 ms until it holds; panics after `within`.
async fn poll<F, Fut>(what: &str, within: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------
// PostgreSQL and configuration files

/// A throwaway cluster with the demo schema in database `app` and in each of `more`.
async fn cluster(more: &[&str]) -> Arc<TempCluster> {
    let more: Vec<String> = more.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let c = TempCluster::start(ClusterOptions::default()).expect("start PostgreSQL");
        c.load_demo_schema("app", PASSWORD).expect("demo schema");
        for db in &more {
            c.load_demo_schema(db, PASSWORD).expect("demo schema");
        }
        Arc::new(c)
    })
    .await
    .unwrap()
}

/// A superuser connection straight to PostgreSQL, database `db`.
async fn direct(pg: &TempCluster, db: &str) -> Client {
    let mut c = tokio_postgres::Config::new();
    c.host("127.0.0.1")
        .port(pg.port())
        .user("postgres")
        .password(pg.superuser_password())
        .dbname(db);
    let (client, conn) = c.connect(NoTls).await.expect("direct connection");
    tokio::spawn(conn);
    client
}

/// Server connections the pooler holds to `pg` (all its pools log in as `app`).
async fn pooler_backends(direct: &Client) -> i64 {
    direct
        .query_one(
            "select count(*) from pg_stat_activity where usename = 'app' and application_name = 'tenantpool'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

async fn rows_named(direct: &Client, name: &str) -> i64 {
    direct
        .query_one("select count(*) from items where name = $1", &[&name])
        .await
        .unwrap()
        .get(0)
}

/// A database in a test's configuration file.
#[derive(Clone)]
struct Db {
    name: String,
    port: u16,
    dbname: String,
    pool_size: usize,
    /// More lines of `[databases.<name>]`.
    extra: String,
    /// Lines of `[databases.<name>.tenant]`; `None`: plain pooling.
    tenant: Option<String>,
}

/// A test's configuration file, rendered as TOML.
#[derive(Clone)]
struct Conf {
    listen: String,
    /// Extra lines in `[pooler]`.
    pooler: Vec<String>,
    /// Password of pooler user `app`.
    user_password: String,
    dbs: Vec<Db>,
}

impl Conf {
    /// Database `app` (tenant from the user name, pool_size 5) on `pg`. The
    /// pooler it starts sets `listen`.
    fn new(pg: &TempCluster) -> Conf {
        Conf {
            listen: "127.0.0.1:0".into(),
            pooler: vec![],
            user_password: PASSWORD.into(),
            dbs: vec![Db {
                name: "app".into(),
                port: pg.port(),
                dbname: "app".into(),
                pool_size: 5,
                extra: String::new(),
                tenant: Some("source = \"user_suffix\"".into()),
            }],
        }
    }

    fn with_plain(mut self, name: &str, pg: &TempCluster, pool_size: usize) -> Conf {
        self.dbs.push(Db {
            name: name.into(),
            port: pg.port(),
            dbname: "app".into(),
            pool_size,
            extra: String::new(),
            tenant: None,
        });
        self
    }

    fn pooler(mut self, line: &str) -> Conf {
        self.pooler.push(line.into());
        self
    }

    fn db(&mut self, name: &str) -> &mut Db {
        self.dbs.iter_mut().find(|d| d.name == name).expect("db")
    }

    fn render(&self) -> String {
        let mut s = format!(
            "[pooler]\nlisten = \"{}\"\nquery_wait_timeout = \"30s\"\n",
            self.listen
        );
        for line in &self.pooler {
            s += line;
            s += "\n";
        }
        s += &format!(
            "\n[[users]]\nname = \"app\"\npassword = \"{}\"\n",
            self.user_password
        );
        for d in &self.dbs {
            s += &format!(
                "\n[databases.{}]\nhost = \"127.0.0.1\"\nport = {}\ndbname = \"{}\"\nuser = \"app\"\n\
                 password = \"{PASSWORD}\"\npool_size = {}\ntls = \"disable\"\n",
                d.name, d.port, d.dbname, d.pool_size
            );
            s += &d.extra;
            if let Some(t) = &d.tenant {
                s += &format!("[databases.{}.tenant]\n{t}\n", d.name);
            }
        }
        s
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// ---------------------------------------------------------------------------
// The real binary

/// `tenantpool --config <tempdir>/tenantpool.toml`, its stderr collected line by line.
struct Proc {
    child: Child,
    port: u16,
    path: PathBuf,
    _dir: tempfile::TempDir,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    /// Starts the binary on a free port and waits until it accepts connections.
    async fn start(conf: Conf, env: &[(&str, &str)]) -> Proc {
        let port = free_port();
        let conf = Conf {
            listen: format!("127.0.0.1:{port}"),
            ..conf
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tenantpool.toml");
        std::fs::write(&path, conf.render()).unwrap();
        let mut cmd = Command::new(BIN);
        cmd.arg("--config")
            .arg(&path)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start tenantpool");
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let mut p = Proc {
            child,
            port,
            path,
            _dir: dir,
            lines,
        };
        let deadline = Instant::now() + PROMPTLY;
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                break;
            }
            if let Some(status) = p.child.try_wait().unwrap() {
                panic!("tenantpool exited ({status}):\n{}", p.log());
            }
            assert!(
                Instant::now() < deadline,
                "tenantpool did not listen:\n{}",
                p.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        p
    }

    /// Replaces the configuration file with `conf` on this process's port (not yet reloaded).
    fn write_conf(&self, conf: &Conf) {
        let conf = Conf {
            listen: format!("127.0.0.1:{}", self.port),
            ..conf.clone()
        };
        self.write(&conf.render());
    }

    /// Replaces the configuration file (not yet reloaded).
    fn write(&self, text: &str) {
        // As an operator should: write aside, then rename over the file.
        let tmp = self.path.with_extension("new");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &self.path).unwrap();
    }

    fn signal(&self, sig: i32) {
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, sig) }, 0);
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    fn log(&self) -> String {
        self.lines().join("\n")
    }

    /// Waits until `n` stderr lines contain `needle`; returns the last of them.
    async fn wait_log_n(&self, needle: &str, n: usize) -> String {
        let deadline = Instant::now() + PROMPTLY;
        loop {
            let hits: Vec<String> = self
                .lines()
                .into_iter()
                .filter(|l| l.contains(needle))
                .collect();
            if hits.len() >= n {
                return hits[n - 1].clone();
            }
            assert!(
                Instant::now() < deadline,
                "no log line {n} with {needle:?} in:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn wait_log(&self, needle: &str) -> String {
        self.wait_log_n(needle, 1).await
    }

    /// Waits for the process to exit; panics after `within`.
    async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "tenantpool still running after {within:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.running() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------
// The in-process pooler, for the Control::reload path

struct InProcess {
    control: Arc<Control>,
    port: u16,
    path: PathBuf,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl InProcess {
    async fn start(conf: Conf) -> InProcess {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tenantpool.toml");
        let conf = Conf {
            listen: "127.0.0.1:0".into(),
            ..conf
        };
        std::fs::write(&path, conf.render()).unwrap();
        let pooler = Pooler::bind_file(&path).await.expect("bind pooler");
        let port = pooler.local_addr().port();
        let control = Arc::clone(pooler.control());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(pooler.run(async {
            let _ = rx.await;
        }));
        InProcess {
            control,
            port,
            path,
            _dir: dir,
            _stop: tx,
        }
    }

    /// Writes `conf` (keeping the bound port's `listen` line unchanged) and reloads.
    async fn reload(&self, conf: &Conf) -> Result<String, String> {
        let conf = Conf {
            listen: "127.0.0.1:0".into(),
            ..conf.clone()
        };
        std::fs::write(&self.path, conf.render()).unwrap();
        self.control.reload().await
    }

    fn pool(&self, db: &str) -> Arc<tenantpool::pool::Pool> {
        Arc::clone(&self.control.current().database(db).expect("database").pool)
    }
}

// ---------------------------------------------------------------------------
// Clients

/// A tokio-postgres client and its connection task, whose result says how the
/// connection ended (an unsolicited FATAL such as 57P01 arrives there).
struct Conn {
    client: Client,
    ended: tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>,
}

async fn try_connect(
    port: u16,
    user: &str,
    password: &str,
    db: &str,
) -> Result<Conn, tokio_postgres::Error> {
    let mut c = tokio_postgres::Config::new();
    c.host("127.0.0.1")
        .port(port)
        .user(user)
        .password(password)
        .dbname(db)
        .connect_timeout(Duration::from_secs(10));
    let (client, conn) = c.connect(NoTls).await?;
    Ok(Conn {
        client,
        ended: tokio::spawn(conn),
    })
}

async fn connect(port: u16, user: &str, db: &str) -> Conn {
    try_connect(port, user, PASSWORD, db)
        .await
        .unwrap_or_else(|e| panic!("connect as {user} to {db}: {e}"))
}

impl Conn {
    /// Waits (promptly) for the connection to end; returns the error it ended with.
    async fn ended_with(&mut self) -> tokio_postgres::Error {
        match tokio::time::timeout(PROMPTLY, &mut self.ended).await {
            Ok(Ok(Err(e))) => e,
            Ok(Ok(Ok(()))) => panic!("connection ended without an error"),
            Ok(Err(e)) => panic!("connection task failed: {e}"),
            Err(_) => panic!("connection still open"),
        }
    }

    // query_typed: one round trip with the unnamed statement, as drivers do in
    // transaction pooling (named statements across transactions are not handled yet).
    async fn one_i32(&self, sql: &str) -> i32 {
        self.client.query_typed_one(sql, &[]).await.unwrap().get(0)
    }

    async fn one_i64(&self, sql: &str) -> i64 {
        self.client.query_typed_one(sql, &[]).await.unwrap().get(0)
    }

    async fn one_string(&self, sql: &str) -> String {
        self.client.query_typed_one(sql, &[]).await.unwrap().get(0)
    }

    async fn one_opt_string(&self, sql: &str) -> Result<Option<String>, tokio_postgres::Error> {
        Ok(self.client.query_typed_one(sql, &[]).await?.get(0))
    }
}

fn sqlstate(e: &tokio_postgres::Error) -> Option<&str> {
    e.as_db_error().map(|d| d.code().code())
}

fn db_message(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.message().to_owned())
        .unwrap_or_else(|| e.to_string())
}

/// Clients running short transactions in a loop, counting them and any error.
struct Load {
    stop: Arc<AtomicBool>,
    done: Vec<Arc<AtomicU64>>,
    errors: Arc<Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    async fn start(port: u16, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let mut done = Vec::new();
        let mut tasks = Vec::new();
        for i in 0..clients {
            let tenant = if i % 2 == 0 { "acme" } else { "globex" };
            let mut conn = connect(port, &format!("app.{tenant}"), "app").await;
            let (stop, errors) = (Arc::clone(&stop), Arc::clone(&errors));
            let count = Arc::new(AtomicU64::new(0));
            done.push(Arc::clone(&count));
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let result = async {
                        let tx = conn.client.transaction().await?;
                        tx.execute("select pg_sleep(0.01)", &[]).await?;
                        let row = tx
                            .query_one("select current_setting('app.current_tenant')", &[])
                            .await?;
                        tx.commit().await?;
                        Ok::<String, tokio_postgres::Error>(row.get(0))
                    }
                    .await;
                    match result {
                        Ok(t) if t == tenant => {
                            count.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(t) => {
                            errors
                                .lock()
                                .unwrap()
                                .push(format!("{tenant} saw tenant {t}"));
                            break;
                        }
                        Err(e) => {
                            errors
                                .lock()
                                .unwrap()
                                .push(format!("{tenant}: {}", db_message(&e)));
                            break;
                        }
                    }
                }
                drop(conn.client);
                let _ = (&mut conn.ended).await;
            }));
        }
        Load {
            stop,
            done,
            errors,
            tasks,
        }
    }

    fn counts(&self) -> Vec<u64> {
        self.done
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect()
    }

    fn errors(&self) -> Vec<String> {
        self.errors.lock().unwrap().clone()
    }

    /// Waits until every client has finished `more` transactions beyond `from`.
    async fn progress(&self, from: &[u64], more: u64) {
        poll("every load client to make progress", PROMPTLY, || async {
            assert!(self.errors().is_empty(), "load errors: {:?}", self.errors());
            self.counts()
                .iter()
                .zip(from)
                .all(|(now, then)| *now >= then + more)
        })
        .await;
    }

    async fn finish(self) -> (Vec<u64>, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            tokio::time::timeout(PROMPTLY, t)
                .await
                .expect("load client stops")
                .unwrap();
        }
        let counts = self
            .done
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let errors = self.errors.lock().unwrap().clone();
        (counts, errors)
    }
}

// ---------------------------------------------------------------------------
// 1. Reload under load

/// pool_size 2 -> 5 and a new password for user `app`, under 8 clients running
/// transactions; SIGHUP. No client notices; the pool grows to 5 server
/// connections; new logins need the new password, connected clients go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sighup_reload_under_load_resizes_and_rotates_password() {
    bounded(async {
        let pg = cluster(&[]).await;
        let sql = direct(&pg, "app").await;
        let mut conf = Conf::new(&pg);
        conf.db("app").pool_size = 2;
        let p = Proc::start(conf.clone(), &[]).await;

        let load = Load::start(p.port, 8).await;
        load.progress(&[0; 8], 3).await;
        // 8 clients on 2 connections: saturated, never above the limit.
        assert_eq!(pooler_backends(&sql).await, 2);
        p.wait_log("pool exhausted").await;

        let before = load.counts();
        conf.db("app").pool_size = 5;
        conf.user_password = "rotated-Secret-2".into();
        // Two keys that need a restart: taken with a warning, not a rejection.
        conf.pooler.push("max_client_connections = 500".into());
        conf.pooler.push("log_level = \"debug\"".into());
        p.write_conf(&conf);
        p.signal(libc::SIGHUP);
        let line = p.wait_log("configuration reloaded").await;
        assert!(line.contains("tenantpool.toml"), "{line}");
        let line = p.wait_log("pool settings changed").await;
        assert!(line.contains("size=5"), "{line}");
        let line = p.wait_log("take effect only after a restart").await;
        assert!(
            line.contains("keys=pooler.max_client_connections, pooler.log_level"),
            "{line}"
        );

        // Waiting clients get the three new connections at once.
        poll("5 server connections", PROMPTLY, || async {
            pooler_backends(&sql).await == 5
        })
        .await;

        // New logins: the old password is refused, the new one works.
        let e = try_connect(p.port, "app.acme", PASSWORD, "app")
            .await
            .err()
            .expect("old password refused after reload");
        assert_eq!(sqlstate(&e), Some("28P01"), "{e}");
        let fresh = try_connect(p.port, "app.acme", "rotated-Secret-2", "app")
            .await
            .expect("new password works");
        assert_eq!(
            fresh
                .one_string("select current_setting('app.current_tenant')")
                .await,
            "acme"
        );

        // Clients connected before the reload keep going, without a single error.
        load.progress(&before, 10).await;
        let (counts, errors) = load.finish().await;
        assert!(errors.is_empty(), "client errors during reload: {errors:?}");
        assert!(counts.iter().all(|&c| c >= 13), "{counts:?}");
        assert!(pooler_backends(&sql).await <= 5);
    })
    .await
}

/// The same through `Control::reload` (what the admin console's RELOAD calls),
/// which also reports what changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn control_reload_under_load_resizes_and_rotates_password() {
    bounded(async {
        let pg = cluster(&[]).await;
        let sql = direct(&pg, "app").await;
        let mut conf = Conf::new(&pg);
        conf.db("app").pool_size = 2;
        let p = InProcess::start(conf.clone()).await;
        let pool = p.pool("app");

        let load = Load::start(p.port, 8).await;
        load.progress(&[0; 8], 3).await;
        assert_eq!(pooler_backends(&sql).await, 2);

        let before = load.counts();
        conf.db("app").pool_size = 5;
        conf.user_password = "rotated-Secret-3".into();
        let summary = p.reload(&conf).await.expect("reload accepted");
        assert_eq!(summary, "0 database(s) added, 0 removed or re-pointed");
        assert_eq!(p.control.reloads(), 1);
        // The same pool, resized in place.
        assert!(Arc::ptr_eq(&pool, &p.pool("app")));
        assert_eq!(pool.settings().size, 5);
        poll("5 server connections", PROMPTLY, || async {
            pooler_backends(&sql).await == 5
        })
        .await;

        let e = try_connect(p.port, "app.globex", PASSWORD, "app")
            .await
            .err()
            .expect("old password refused");
        assert_eq!(sqlstate(&e), Some("28P01"), "{e}");
        try_connect(p.port, "app.globex", "rotated-Secret-3", "app")
            .await
            .expect("new password works");

        load.progress(&before, 10).await;
        let (_, errors) = load.finish().await;
        assert!(errors.is_empty(), "client errors during reload: {errors:?}");
    })
    .await
}

/// A database added by a reload takes logins at once; a new JWT secret takes
/// effect for new logins (tokens signed with the old one are refused), while a
/// client that logged in with an old token goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_adds_databases_and_rotates_jwt_keys() {
    bounded(async {
        let pg = cluster(&[]).await;
        let mut conf = Conf::new(&pg);
        let p = InProcess::start(conf.clone()).await;
        const OLD: &str = "first-jwt-secret-0123456789abcdef-xyz";
        const NEW: &str = "second-jwt-secret-0123456789abcdef-xyz";
        let tok = |secret: &str| Db {
            name: "tok".into(),
            port: pg.port(),
            dbname: "app".into(),
            pool_size: 2,
            extra: String::new(),
            tenant: Some(format!("source = \"jwt\"\njwt_secret = \"{secret}\"")),
        };
        let e = try_connect(p.port, "app", PASSWORD, "tok")
            .await
            .err()
            .expect("no such database yet");
        assert_eq!(sqlstate(&e), Some("3D000"), "{e}");

        conf.dbs.push(tok(OLD));
        let summary = p.reload(&conf).await.expect("reload accepted");
        assert_eq!(summary, "1 database(s) added, 0 removed or re-pointed");
        let early = try_connect(p.port, "app", &token(OLD, "acme"), "tok")
            .await
            .expect("login to the added database");
        assert_eq!(
            early
                .one_string("select current_setting('app.current_tenant')")
                .await,
            "acme"
        );

        conf.dbs.retain(|d| d.name != "tok");
        conf.dbs.push(tok(NEW));
        let summary = p.reload(&conf).await.expect("reload accepted");
        assert_eq!(summary, "0 database(s) added, 0 removed or re-pointed");
        let e = try_connect(p.port, "app", &token(OLD, "acme"), "tok")
            .await
            .err()
            .expect("old key refused");
        assert_eq!(sqlstate(&e), Some("28P01"), "{e}");
        assert!(db_message(&e).contains("bad signature"), "{e}");
        let fresh = try_connect(p.port, "app", &token(NEW, "globex"), "tok")
            .await
            .expect("new key accepted");
        assert_eq!(
            fresh
                .one_string("select current_setting('app.current_tenant')")
                .await,
            "globex"
        );
        assert_eq!(
            early
                .one_string("select current_setting('app.current_tenant')")
                .await,
            "acme"
        );
    })
    .await
}

// ---------------------------------------------------------------------------
// 2. Invalid files

/// A file that does not parse, one that fails validation, and a missing file:
/// each reload is refused with the reason logged, and the old configuration
/// keeps serving (connected clients, new logins with the old password, the old
/// pool size). A valid file afterwards is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_with_an_invalid_file_keeps_the_old_configuration() {
    bounded(async {
        let pg = cluster(&[]).await;
        let sql = direct(&pg, "app").await;
        let mut conf = Conf::new(&pg);
        conf.db("app").pool_size = 1;
        let p = Proc::start(conf.clone(), &[]).await;
        let connected = connect(p.port, "app.acme", "app").await;
        let pid = connected.one_i32("select pg_backend_pid()").await;

        // 1. Not TOML. The new password in it must not be taken either.
        let mut broken = conf.clone();
        broken.user_password = "never-taken".into();
        broken.db("app").pool_size = 4;
        p.write(&broken.render().replace("[databases.app]", "[databases.app"));
        p.signal(libc::SIGHUP);
        let line = p.wait_log("configuration reload rejected").await;
        assert!(line.contains("tenantpool.toml"), "{line}");
        assert!(line.contains("TOML parse error"), "{line}");
        still_serving(&connected, pid, p.port, &sql).await;

        // 2. Valid TOML, invalid value: the line names the file and the key.
        let mut invalid = conf.clone();
        invalid.user_password = "never-taken".into();
        invalid.db("app").pool_size = 0;
        p.write_conf(&invalid);
        p.signal(libc::SIGHUP);
        let line = p.wait_log_n("configuration reload rejected", 2).await;
        assert!(
            line.contains("tenantpool.toml: databases.app.pool_size: must be at least 1"),
            "{line}"
        );
        still_serving(&connected, pid, p.port, &sql).await;

        // 3. No file at all.
        std::fs::remove_file(&p.path).unwrap();
        p.signal(libc::SIGHUP);
        let line = p.wait_log_n("configuration reload rejected", 3).await;
        assert!(line.contains("cannot read"), "{line}");
        still_serving(&connected, pid, p.port, &sql).await;
        let e = try_connect(p.port, "app.acme", "never-taken", "app")
            .await
            .err()
            .expect("no rejected file's password was taken");
        assert_eq!(sqlstate(&e), Some("28P01"));

        // A good file is taken after all that.
        conf.user_password = "finally-taken".into();
        p.write_conf(&conf);
        p.signal(libc::SIGHUP);
        p.wait_log("configuration reloaded").await;
        try_connect(p.port, "app.acme", "finally-taken", "app")
            .await
            .expect("new password after a good reload");
        assert_eq!(connected.one_i32("select pg_backend_pid()").await, pid);
    })
    .await
}

/// The configuration in force is still the first one: the connected client
/// keeps its backend, the old password logs in, pool_size is still 1.
async fn still_serving(connected: &Conn, pid: i32, port: u16, sql: &Client) {
    assert_eq!(connected.one_i32("select pg_backend_pid()").await, pid);
    let fresh = try_connect(port, "app.globex", PASSWORD, "app")
        .await
        .expect("the old password still works");
    assert_eq!(
        fresh
            .one_string("select current_setting('app.current_tenant')")
            .await,
        "globex"
    );
    // Both clients are served by the one server connection of pool_size 1.
    assert_eq!(fresh.one_i32("select pg_backend_pid()").await, pid);
    assert_eq!(pooler_backends(sql).await, 1);
}

/// A file that validates but cannot be built (a JWT key file that does not
/// exist) is rejected as a whole: nothing of it takes effect, not even the
/// pool size of a database listed before the bad one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_reload_changes_nothing() {
    bounded(async {
        let pg = cluster(&[]).await;
        let mut conf = Conf::new(&pg);
        conf.db("app").pool_size = 2;
        let p = InProcess::start(conf.clone()).await;
        let pool = p.pool("app");

        conf.db("app").pool_size = 7;
        conf.dbs.push(Db {
            name: "zz_jwt".into(),
            port: pg.port(),
            dbname: "app".into(),
            pool_size: 1,
            extra: String::new(),
            tenant: Some("source = \"jwt\"\njwks_file = \"/nonexistent/jwks.json\"".into()),
        });
        let e = p.reload(&conf).await.expect_err("reload refused");
        assert!(e.contains("databases.zz_jwt.tenant"), "{e}");
        assert_eq!(p.control.reloads(), 0);
        assert!(p.control.current().database("zz_jwt").is_none());
        assert!(Arc::ptr_eq(&pool, &p.pool("app")));
        assert_eq!(pool.settings().size, 2, "a rejected reload resized a pool");
    })
    .await
}

// ---------------------------------------------------------------------------
// 3. Removed and re-pointed databases drain

/// Database `app` removed while a client is inside a transaction on it and
/// another waits for its only server connection: the waiter is told at once,
/// the transaction finishes and commits, the next one gets 57P01; new logins
/// get 3D000. Database `keep` is untouched and keeps its server connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_database_drains() {
    bounded(async {
        let pg = cluster(&[]).await;
        let sql = direct(&pg, "app").await;
        let mut conf = Conf::new(&pg).with_plain("keep", &pg, 1);
        conf.db("app").pool_size = 1;
        let p = InProcess::start(conf.clone()).await;
        let old_pool = p.pool("app");

        let keep = connect(p.port, "app", "keep").await;
        let keep_pid = keep.one_i32("select pg_backend_pid()").await;

        let mut a = connect(p.port, "app.acme", "app").await;
        a.client
            .batch_execute(
                "begin; insert into items (tenant_id, name) values ('acme', 'drain-removed')",
            )
            .await
            .unwrap();
        // B waits for the only server connection, which A holds.
        let b = connect(p.port, "app.globex", "app").await;
        let b_query = tokio::spawn(async move {
            let r = b.client.simple_query("select 1").await.map(|_| ());
            (r, b)
        });
        poll("B to wait for a server", PROMPTLY, || async {
            old_pool.counts().2 == 1
        })
        .await;

        conf.dbs.retain(|d| d.name != "app");
        let summary = p.reload(&conf).await.expect("reload accepted");
        assert_eq!(
            summary,
            "0 database(s) added, 1 removed or re-pointed (app)"
        );
        assert!(old_pool.is_retired());

        // The waiter is told now, not after its query_wait_timeout.
        let (r, _b) = tokio::time::timeout(PROMPTLY, b_query)
            .await
            .unwrap()
            .unwrap();
        let e = r.expect_err("waiter refused");
        assert_eq!(sqlstate(&e), Some("57P01"), "{e}");
        assert!(db_message(&e).contains("removed or re-pointed"), "{e}");

        // A's transaction goes on and commits.
        let n: i64 = a
            .client
            .query_one(
                "select count(*) from items where name = 'drain-removed'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 1);
        a.client.batch_execute("commit").await.unwrap();
        assert_eq!(rows_named(&sql, "drain-removed").await, 1);

        // Its next transaction is refused, clearly.
        let e = a
            .client
            .simple_query("select 1")
            .await
            .expect_err("refused");
        assert_eq!(sqlstate(&e), Some("57P01"), "{e}");
        assert_eq!(
            db_message(&e),
            "tenantpool: database \"app\" was removed or re-pointed by a configuration reload"
        );
        a.ended_with().await;

        // The retired pool closed its server connection once A gave it back.
        poll("the retired pool to close", PROMPTLY, || async {
            old_pool.counts().0 == 0
        })
        .await;

        let e = try_connect(p.port, "app.acme", PASSWORD, "app")
            .await
            .err()
            .expect("removed database refused");
        assert_eq!(sqlstate(&e), Some("3D000"), "{e}");

        assert_eq!(keep.one_i32("select pg_backend_pid()").await, keep_pid);
        let fresh_keep = connect(p.port, "app", "keep").await;
        assert_eq!(
            fresh_keep.one_i32("select pg_backend_pid()").await,
            keep_pid
        );
    })
    .await
}

/// Re-pointing `app` to another database (dbname), then to another server
/// (port): each time the open transaction commits where it started, the next
/// one gets 57P01, new logins reach the new target; `keep` keeps its backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repointed_database_drains() {
    bounded(async {
        let pg = cluster(&["app2"]).await;
        let pg2 = cluster(&[]).await;
        let mut conf = Conf::new(&pg).with_plain("keep", &pg, 1);
        let p = InProcess::start(conf.clone()).await;
        let keep = connect(p.port, "app", "keep").await;
        let keep_pid = keep.one_i32("select pg_backend_pid()").await;

        // (row written in the open transaction, where it was before the change)
        for (row, old_port, old_db) in [
            ("repoint-dbname", pg.port(), "app"),
            ("repoint-port", pg.port(), "app2"),
        ] {
            let a = connect(p.port, "app.acme", "app").await;
            a.client
                .batch_execute(&format!(
                    "begin; insert into items (tenant_id, name) values ('acme', '{row}')"
                ))
                .await
                .unwrap();
            let db = conf.db("app");
            if row == "repoint-dbname" {
                db.dbname = "app2".into();
            } else {
                db.dbname = "app".into();
                db.port = pg2.port();
            }
            let summary = p.reload(&conf).await.expect("reload accepted");
            assert_eq!(
                summary,
                "0 database(s) added, 1 removed or re-pointed (app)"
            );

            // Still on the old target, inside its transaction.
            assert_eq!(
                a.one_string("select current_database()::text").await,
                old_db
            );
            assert_eq!(
                a.one_i32("select inet_server_port()").await,
                old_port as i32
            );
            a.client.batch_execute("commit").await.unwrap();
            let e = a
                .client
                .simple_query("select 1")
                .await
                .expect_err("refused");
            assert_eq!(sqlstate(&e), Some("57P01"), "{e}");
            assert!(db_message(&e).contains("removed or re-pointed"), "{e}");
            assert_eq!(rows_named(&direct(&pg, old_db).await, row).await, 1);

            let fresh = connect(p.port, "app.acme", "app").await;
            let (new_db, new_port) = (&conf.db("app").dbname.clone(), conf.db("app").port);
            assert_eq!(
                &fresh.one_string("select current_database()::text").await,
                new_db
            );
            assert_eq!(
                fresh.one_i32("select inet_server_port()").await,
                new_port as i32
            );

            assert_eq!(keep.one_i32("select pg_backend_pid()").await, keep_pid);
        }
    })
    .await
}

/// Changing a database's tenant `setting` re-points it: server connections
/// whose old setting holds some tenant cannot serve the new setting without a
/// SET, so the pool is replaced and its clients drain. New clients get the new
/// setting set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_the_tenant_setting_repoints_the_database() {
    bounded(async {
        let pg = cluster(&[]).await;
        let mut conf = Conf::new(&pg);
        conf.db("app").pool_size = 1;
        let p = InProcess::start(conf.clone()).await;
        let a = connect(p.port, "app.acme", "app").await;
        assert_eq!(
            a.one_string("select current_setting('app.current_tenant')")
                .await,
            "acme"
        );

        conf.db("app").tenant =
            Some("source = \"user_suffix\"\nsetting = \"app.other_tenant\"".into());
        let summary = p.reload(&conf).await.expect("reload accepted");
        assert_eq!(
            summary,
            "0 database(s) added, 1 removed or re-pointed (app)"
        );
        let e = a
            .client
            .simple_query("select 1")
            .await
            .expect_err("drained");
        assert_eq!(sqlstate(&e), Some("57P01"), "{e}");

        let fresh = connect(p.port, "app.acme", "app").await;
        let setting = fresh
            .one_opt_string("select current_setting('app.other_tenant', true)")
            .await
            .unwrap();
        assert_eq!(setting.as_deref(), Some("acme"));
    })
    .await
}

/// Dropping a database's `[tenant]` table: its tenant clients must not carry
/// on over server connections that still hold another tenant's setting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_tenancy_drains_the_tenant_clients() {
    bounded(async {
        let pg = cluster(&[]).await;
        let mut conf = Conf::new(&pg);
        conf.db("app").pool_size = 1;
        let p = InProcess::start(conf.clone()).await;
        let acme = connect(p.port, "app.acme", "app").await;
        acme.client.simple_query("select 1").await.unwrap();
        let globex = connect(p.port, "app.globex", "app").await;
        // The one server connection now holds globex.
        assert_eq!(
            globex
                .one_string("select current_setting('app.current_tenant')")
                .await,
            "globex"
        );

        conf.db("app").tenant = None;
        let summary = p.reload(&conf).await.expect("reload accepted");
        assert_eq!(
            summary,
            "0 database(s) added, 1 removed or re-pointed (app)"
        );
        match acme
            .one_opt_string("select current_setting('app.current_tenant', true)")
            .await
        {
            Err(e) => assert_eq!(sqlstate(&e), Some("57P01"), "{e}"),
            Ok(setting) => panic!("acme's client ran on a connection set to {setting:?}"),
        }
        // A new client of the now plain database starts from a clean connection.
        let plain = connect(p.port, "app", "app").await;
        let setting = plain
            .one_opt_string("select current_setting('app.current_tenant', true)")
            .await
            .unwrap();
        assert_eq!(setting, None);
    })
    .await
}

/// In session mode a client holds its server connection between transactions,
/// yet a removed database must still drain: the current transaction finishes,
/// the next one gets 57P01.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_session_mode_database_drains() {
    bounded(async {
        let pg = cluster(&[]).await;
        let mut conf = Conf::new(&pg);
        conf.db("app").extra = "pool_mode = \"session\"\n".into();
        let p = InProcess::start(conf.clone()).await;
        let a = connect(p.port, "app.acme", "app").await;
        a.client
            .batch_execute(
                "begin; insert into items (tenant_id, name) values ('acme', 'session-drain')",
            )
            .await
            .unwrap();
        conf.dbs.clear();
        p.reload(&conf).await.expect("reload accepted");
        a.client.batch_execute("commit").await.unwrap();
        let e = a
            .client
            .simple_query("select 1")
            .await
            .expect_err("drained");
        assert_eq!(sqlstate(&e), Some("57P01"), "{e}");
    })
    .await
}

// ---------------------------------------------------------------------------
// 4, 5. SIGTERM and SIGINT

/// SIGTERM with three clients inside transactions and one idle: the listener
/// closes at once, the idle client gets 57P01, the three finish and commit,
/// then the process exits 0 long before its 10 s shutdown_timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_transactions_in_flight_commit() {
    bounded(async {
        let pg = cluster(&[]).await;
        let sql = direct(&pg, "app").await;
        let conf = Conf::new(&pg).pooler("shutdown_timeout = \"10s\"");
        let mut p = Proc::start(conf, &[]).await;

        let mut busy = Vec::new();
        for i in 0..3 {
            let c = connect(p.port, "app.acme", "app").await;
            c.client
                .batch_execute(&format!(
                    "begin; insert into items (tenant_id, name) values ('acme', 'term-{i}')"
                ))
                .await
                .unwrap();
            busy.push(c);
        }
        let mut idle = connect(p.port, "app.globex", "app").await;
        idle.client.simple_query("select 1").await.unwrap();

        let signalled = Instant::now();
        p.signal(libc::SIGTERM);

        // New connections are refused (the listener is closed), promptly.
        poll("connection refused", Duration::from_secs(2), || async {
            matches!(
                tokio::net::TcpStream::connect(("127.0.0.1", p.port)).await,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
            )
        })
        .await;
        // The idle client is told why it is closed.
        let e = idle.ended_with().await;
        assert_eq!(sqlstate(&e), Some("57P01"), "{e}");
        assert!(db_message(&e).contains("shutting down"), "{e}");

        // The transactions in flight carry on and commit.
        assert!(p.running());
        for (i, c) in busy.iter().enumerate() {
            c.client
                .execute(
                    "insert into items (tenant_id, name) values ('acme', $1)",
                    &[&format!("term-{i}-b")],
                )
                .await
                .unwrap();
            c.client.batch_execute("commit").await.unwrap();
        }
        let committed = Instant::now();
        for c in &mut busy {
            let e = c.ended_with().await;
            assert_eq!(sqlstate(&e), Some("57P01"), "{e}");
        }
        let status = p.wait_exit(Duration::from_secs(5)).await;
        assert!(status.success(), "{status}");
        let took = signalled.elapsed();
        assert!(
            took < Duration::from_secs(8),
            "exit {took:?} after SIGTERM, {:?} after the last commit",
            committed.elapsed()
        );
        for i in 0..3 {
            assert_eq!(rows_named(&sql, &format!("term-{i}")).await, 1);
            assert_eq!(rows_named(&sql, &format!("term-{i}-b")).await, 1);
        }
        let log = p.log();
        assert!(
            log.contains("draining: waiting for transactions to finish"),
            "{log}"
        );
        assert!(log.contains("tenantpool stopped"), "{log}");
        assert!(!log.contains("shutdown_timeout passed"), "{log}");
    })
    .await
}

/// A transaction still open when a short shutdown_timeout (1 s) passes is cut:
/// its client gets 57P01, the process exits within the timeout and a margin,
/// and the uncommitted row is not there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_cuts_transactions_after_shutdown_timeout() {
    bounded(async {
        let pg = cluster(&[]).await;
        let sql = direct(&pg, "app").await;
        let conf = Conf::new(&pg).pooler("shutdown_timeout = \"1s\"");
        let mut p = Proc::start(conf, &[]).await;

        let mut slow = connect(p.port, "app.acme", "app").await;
        slow.client
            .batch_execute("begin; insert into items (tenant_id, name) values ('acme', 'term-cut')")
            .await
            .unwrap();

        let signalled = Instant::now();
        p.signal(libc::SIGTERM);
        let e = slow.ended_with().await;
        let cut_after = signalled.elapsed();
        assert_eq!(sqlstate(&e), Some("57P01"), "{e}");
        assert!(db_message(&e).contains("administrator command"), "{e}");
        assert!(slow.client.is_closed());
        let status = p.wait_exit(Duration::from_secs(4)).await;
        let exited_after = signalled.elapsed();
        assert!(status.success(), "{status}");
        assert!(
            cut_after >= Duration::from_millis(900),
            "cut after {cut_after:?}, before the 1 s timeout"
        );
        assert!(
            exited_after < Duration::from_secs(3),
            "exited {exited_after:?} after SIGTERM"
        );
        p.wait_log("shutdown_timeout passed; closing the remaining clients")
            .await;
        assert_eq!(rows_named(&sql, "term-cut").await, 0);
    })
    .await
}

/// SIGINT closes everything at once: the client inside a transaction is cut
/// (57P01), the idle one too, and the process exits promptly; nothing commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_closes_at_once() {
    bounded(async {
        let pg = cluster(&[]).await;
        let sql = direct(&pg, "app").await;
        let conf = Conf::new(&pg).pooler("shutdown_timeout = \"30s\"");
        let mut p = Proc::start(conf, &[]).await;

        let mut busy = connect(p.port, "app.acme", "app").await;
        busy.client
            .batch_execute("begin; insert into items (tenant_id, name) values ('acme', 'int-cut')")
            .await
            .unwrap();
        let mut idle = connect(p.port, "app.globex", "app").await;
        idle.client.simple_query("select 1").await.unwrap();

        let signalled = Instant::now();
        p.signal(libc::SIGINT);
        let status = p.wait_exit(Duration::from_secs(3)).await;
        assert!(status.success(), "{status}");
        assert!(signalled.elapsed() < Duration::from_secs(3));
        let e = busy.ended_with().await;
        assert_eq!(sqlstate(&e), Some("57P01"), "{e}");
        let e = idle.ended_with().await;
        assert_eq!(sqlstate(&e), Some("57P01"), "{e}");
        poll("the cut transaction's backend to end", PROMPTLY, || async {
            pooler_backends(&sql).await == 0
        })
        .await;
        assert_eq!(rows_named(&sql, "int-cut").await, 0);
        assert!(tokio::net::TcpStream::connect(("127.0.0.1", p.port))
            .await
            .is_err());
    })
    .await
}

/// With `worker_threads = 1` everything runs on the main thread (a
/// current-thread runtime): a client holding a transaction open does not stop
/// another tenant's, each sees only its rows, and SIGTERM still drains and exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_worker_thread_serves_clients_side_by_side_and_drains() {
    bounded(async {
        let pg = cluster(&[]).await;
        let sql = direct(&pg, "app").await;
        let conf = Conf::new(&pg).pooler("worker_threads = 1");
        let mut p = Proc::start(conf, &[]).await;
        let status = std::fs::read_to_string(format!("/proc/{}/status", p.child.id())).unwrap();
        assert!(
            status.lines().any(|l| l == "Threads:\t1"),
            "one thread:\n{status}"
        );

        let mut acme = connect(p.port, "app.acme", "app").await;
        acme.client
            .batch_execute(
                "begin; insert into items (tenant_id, name) values ('acme', 'one-thread')",
            )
            .await
            .unwrap();
        let mut globex = connect(p.port, "app.globex", "app").await;
        // one_i64 (query_typed), not query_one: a prepared statement's Close
        // goes out when it is dropped, unawaited, and a FATAL that arrives while
        // it is pending is taken as its answer, not as the connection's end.
        let count = "select count(*) from items where name = 'one-thread'";
        assert_eq!(
            globex.one_i64(count).await,
            0,
            "globex sees no acme row, committed or not"
        );
        assert_eq!(
            acme.one_i64(count).await,
            1,
            "acme sees its own uncommitted row"
        );

        p.signal(libc::SIGTERM);
        let e = globex.ended_with().await;
        assert_eq!(sqlstate(&e), Some("57P01"), "{e}");
        acme.client.batch_execute("commit").await.unwrap();
        let e = acme.ended_with().await;
        assert_eq!(sqlstate(&e), Some("57P01"), "{e}");
        let status = p.wait_exit(PROMPTLY).await;
        assert!(status.success(), "{status}");
        assert_eq!(rows_named(&sql, "one-thread").await, 1);
    })
    .await
}

/// SIGINT during a SIGTERM drain ends the drain at once, long before
/// shutdown_timeout; the transaction still open is cut and rolled back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_ends_a_sigterm_drain() {
    bounded(async {
        let pg = cluster(&[]).await;
        let sql = direct(&pg, "app").await;
        let conf = Conf::new(&pg).pooler("shutdown_timeout = \"60s\"");
        let mut p = Proc::start(conf, &[]).await;
        let mut busy = connect(p.port, "app.acme", "app").await;
        busy.client
            .batch_execute("begin; insert into items (tenant_id, name) values ('acme', 'term-int')")
            .await
            .unwrap();
        p.signal(libc::SIGTERM);
        p.wait_log("draining: waiting for transactions to finish")
            .await;
        // Still draining: the transaction goes on.
        busy.client.simple_query("select 1").await.unwrap();
        assert!(p.running());

        let signalled = Instant::now();
        p.signal(libc::SIGINT);
        let status = p.wait_exit(Duration::from_secs(3)).await;
        assert!(status.success(), "{status}");
        assert!(signalled.elapsed() < Duration::from_secs(3));
        let e = busy.ended_with().await;
        assert_eq!(sqlstate(&e), Some("57P01"), "{e}");
        assert_eq!(rows_named(&sql, "term-int").await, 0);
    })
    .await
}

// ---------------------------------------------------------------------------
// 6. Logs

const JWT_SECRET: &str = "operations-test-secret-0123456789abcdef";

fn token(secret: &str, tenant: &str) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &serde_json::json!({ "tenant_id": tenant, "exp": exp }),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn parse_lines(p: &Proc) -> Vec<serde_json::Value> {
    p.lines()
        .iter()
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
            assert!(v.is_object(), "not an object: {l}");
            v
        })
        .collect()
}

/// `log_format = "json"`: every stderr line is a JSON object; a login line has
/// user, database, tenant, peer and outcome; refused logins are logged without
/// the password or the token they tried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_name_logins_and_never_secrets() {
    bounded(async {
        let pg = cluster(&[]).await;
        let mut conf = Conf::new(&pg).pooler("log_format = \"json\"");
        conf.dbs.push(Db {
            name: "tok".into(),
            port: pg.port(),
            dbname: "app".into(),
            pool_size: 2,
            extra: String::new(),
            tenant: Some(format!(
                "source = \"jwt\"\nclaim = \"tenant_id\"\njwt_secret = \"{JWT_SECRET}\""
            )),
        });
        let p = Proc::start(conf, &[]).await;

        let ok = connect(p.port, "app.acme", "app").await;
        ok.client.simple_query("select 1").await.unwrap();
        let good = token(JWT_SECRET, "globex");
        let jwt = try_connect(p.port, "app", &good, "tok")
            .await
            .expect("token login");
        assert_eq!(
            jwt.one_string("select current_setting('app.current_tenant')")
                .await,
            "globex"
        );

        const BAD_PASSWORD: &str = "Wr0ng-Pa55word-7f3a9c";
        let e = try_connect(p.port, "app.acme", BAD_PASSWORD, "app")
            .await
            .err()
            .unwrap();
        assert_eq!(sqlstate(&e), Some("28P01"));
        let forged = token("a-different-secret-of-32-bytes-or-more!!", "acme");
        let e = try_connect(p.port, "app", &forged, "tok")
            .await
            .err()
            .unwrap();
        assert_eq!(sqlstate(&e), Some("28P01"));
        p.wait_log_n("\"outcome\":\"refused\"", 2).await;

        let lines = parse_lines(&p);
        let logins: Vec<_> = lines
            .iter()
            .filter(|v| v["message"] == "client login")
            .collect();
        let find = |db: &str, outcome: &str| {
            logins
                .iter()
                .find(|v| v["database"] == db && v["outcome"] == outcome)
                .unwrap_or_else(|| panic!("no {outcome} login to {db} in {logins:?}"))
        };
        for (db, tenant) in [("app", "acme"), ("tok", "globex")] {
            let v = find(db, "ok");
            assert_eq!(v["level"], "INFO");
            assert_eq!(v["user"], "app");
            assert_eq!(v["tenant"], tenant);
            assert!(
                v["peer"]
                    .as_str()
                    .is_some_and(|p| p.starts_with("127.0.0.1:")),
                "{v}"
            );
        }
        let v = find("app", "refused");
        assert_eq!(v["user"], "app.acme", "{v}");
        let v = find("tok", "refused");
        assert!(
            v["reason"].as_str().unwrap().contains("bad signature"),
            "{v}"
        );

        let all = p.log();
        assert!(!all.contains(BAD_PASSWORD), "password in the log");
        assert!(!all.contains(PASSWORD), "a configured password in the log");
        for secret in [&forged, &good] {
            assert!(!all.contains(secret.as_str()), "token in the log");
            let signature = secret.rsplit('.').next().unwrap();
            assert!(!all.contains(signature), "token signature in the log");
        }
        assert!(!all.contains(JWT_SECRET), "JWT secret in the log");
    })
    .await
}

/// Refused logins of every kind are logged as such, with the client's address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refused_login_is_logged_with_its_peer() {
    bounded(async {
        let pg = cluster(&[]).await;
        let conf = Conf::new(&pg).pooler("log_format = \"json\"");
        let p = Proc::start(conf, &[]).await;
        let attempts = [
            ("app.acme", "wrong-password", "app", "28P01"),
            ("app.acme", PASSWORD, "nosuchdb", "3D000"),
            ("app.bad!tenant", PASSWORD, "app", "28000"),
            ("app", PASSWORD, "app", "28000"),
        ];
        for (i, (user, password, db, code)) in attempts.iter().enumerate() {
            let e = try_connect(p.port, user, password, db).await.err().unwrap();
            assert_eq!(sqlstate(&e), Some(*code), "{e}");
            p.wait_log_n("\"outcome\":\"refused\"", i + 1).await;
        }
        for v in parse_lines(&p)
            .iter()
            .filter(|v| v["message"] == "client login")
        {
            assert!(v["peer"].as_str().is_some(), "no peer: {v}");
        }
    })
    .await
}

/// `log_level = "warn"`: no login lines (nor any info line); text lines carry
/// no terminal colour codes when stderr is not a terminal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warn_level_suppresses_login_lines() {
    bounded(async {
        let pg = cluster(&[]).await;
        let conf = Conf::new(&pg).pooler("log_level = \"warn\"");
        let p = Proc::start(conf.clone(), &[]).await;
        let c = connect(p.port, "app.acme", "app").await;
        c.client.simple_query("select 1").await.unwrap();
        // The login line would have been written before the query was served;
        // an error line written after it proves stderr was read that far.
        p.write("[pooler\n");
        p.signal(libc::SIGHUP);
        let line = p.wait_log("configuration reload rejected").await;
        assert!(line.contains("ERROR"), "{line}");
        let log = p.log();
        assert!(!log.contains("client login"), "{log}");
        assert!(!log.contains(" INFO "), "{log}");
        assert!(!log.contains('\u{1b}'), "ANSI escapes in a log file: {log}");
    })
    .await
}

/// `RUST_LOG` overrides the configured level (here warn -> debug).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_log_overrides_the_configured_level() {
    bounded(async {
        let pg = cluster(&[]).await;
        let conf = Conf::new(&pg)
            .pooler("log_level = \"warn\"")
            .pooler("log_format = \"json\"");
        let p = Proc::start(conf, &[("RUST_LOG", "debug")]).await;
        let c = connect(p.port, "app.acme", "app").await;
        c.client.simple_query("select 1").await.unwrap();
        p.wait_log("\"message\":\"client login\"").await;
        p.wait_log("\"message\":\"opened server connection\"").await;
        let lines = parse_lines(&p);
        assert!(lines.iter().any(|v| v["level"] == "DEBUG"));
        assert!(lines.iter().any(|v| v["level"] == "INFO"));
    })
    .await
}
