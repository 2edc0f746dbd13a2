//! Test harness: a throwaway PostgreSQL (started by the test itself, never a
//! system cluster) with the demo RLS schema, and a tenantpool in-process in
//! front of it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tenantpool::config::{
    Config, DatabaseConfig, PoolMode, ServerTls, TenantConfig, TenantSource, UserConfig,
};
use tenantpool::pgcluster::{ClusterOptions, TempCluster};
use tenantpool::pool::Pool;
use tenantpool::pooler::Control;
use tenantpool::Pooler;
use tokio::sync::oneshot;
use tokio_postgres::{Client, NoTls};

/// Password of role `app` on the server and of pooler user `app`.
pub const PASSWORD: &str = "app-secret";

pub struct Harness {
    pub cluster: Arc<TempCluster>,
    pub addr: SocketAddr,
    pub control: Arc<Control>,
    pub unix_socket: Option<PathBuf>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// The databases every harness config has:
/// - `app`: tenant-scoped (`user_suffix`), role `app` (RLS applies), pool_size 5;
/// - `plain`: no tenant source, role `app`;
/// - `bench`: no tenant source, the superuser (for pgbench -i).
pub fn base_config(cluster: &TempCluster) -> Config {
    let mut config = Config {
        pooler: Default::default(),
        users: vec![UserConfig {
            name: "app".into(),
            password: PASSWORD.into(),
        }],
        databases: Default::default(),
        metrics: None,
    };
    config.pooler.listen = "127.0.0.1:0".into();
    config.pooler.query_wait_timeout = Duration::from_secs(30);
    let db = |user: &str, password: &str, dbname: &str, tenant: bool| DatabaseConfig {
        host: cluster.host().into(),
        port: cluster.port(),
        dbname: Some(dbname.into()),
        user: user.into(),
        password: Some(password.into()),
        pool_size: 5,
        min_pool_size: 0,
        pool_mode: PoolMode::Transaction,
        tls: ServerTls::Disable,
        tls_ca_file: None,
        tenant: tenant.then(|| TenantConfig::new(TenantSource::UserSuffix)),
    };
    config
        .databases
        .insert("app".into(), db("app", PASSWORD, "app", true));
    config
        .databases
        .insert("plain".into(), db("app", PASSWORD, "app", false));
    config.databases.insert(
        "bench".into(),
        db("postgres", cluster.superuser_password(), "app", false),
    );
    config
}

impl Harness {
    /// Starts PostgreSQL with the demo schema and a pooler configured by `tweak`.
    pub async fn start(tweak: impl FnOnce(&mut Config, &TempCluster)) -> Harness {
        Self::start_with(ClusterOptions::default(), tweak).await
    }

    pub async fn start_with(
        opts: ClusterOptions,
        tweak: impl FnOnce(&mut Config, &TempCluster),
    ) -> Harness {
        let cluster = tokio::task::spawn_blocking(move || {
            let cluster = TempCluster::start(opts).expect("start PostgreSQL");
            cluster
                .load_demo_schema("app", PASSWORD)
                .expect("load demo schema");
            cluster
        })
        .await
        .unwrap();
        let mut config = base_config(&cluster);
        tweak(&mut config, &cluster);
        tenantpool::config::validate(&config, "<test>").expect("valid test config");
        let pooler = Pooler::bind(config).await.expect("bind pooler");
        let addr = pooler.local_addr();
        let control = Arc::clone(pooler.control());
        let unix_socket = pooler.unix_socket_path().cloned();
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(pooler.run(async {
            let _ = rx.await;
        }));
        Harness {
            cluster: Arc::new(cluster),
            addr,
            control,
            unix_socket,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn pool(&self, db: &str) -> Arc<Pool> {
        Arc::clone(
            &self
                .control
                .current()
                .database(db)
                .expect("configured database")
                .pool,
        )
    }

    pub fn config(&self, user: &str, password: &str, db: &str) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        c.host("127.0.0.1")
            .port(self.port())
            .user(user)
            .password(password)
            .dbname(db)
            .connect_timeout(Duration::from_secs(10));
        c
    }

    /// Connects through the pooler; the connection task runs in the background.
    pub async fn try_connect(
        &self,
        user: &str,
        password: &str,
        db: &str,
    ) -> Result<Client, tokio_postgres::Error> {
        let (client, conn) = self.config(user, password, db).connect(NoTls).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(client)
    }

    pub async fn connect(&self, user: &str, db: &str) -> Client {
        self.try_connect(user, PASSWORD, db)
            .await
            .unwrap_or_else(|e| panic!("connect as {user} to {db}: {e}"))
    }

    /// Connects to PostgreSQL directly as the superuser (for inspecting the server side).
    pub async fn direct_superuser(&self) -> Client {
        let mut c = tokio_postgres::Config::new();
        c.host("127.0.0.1")
            .port(self.cluster.port())
            .user("postgres")
            .password(self.cluster.superuser_password())
            .dbname("app");
        let (client, conn) = c.connect(NoTls).await.expect("direct connection");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        client
    }

    /// Server connections the pooler holds open for `role`.
    pub async fn server_connections(&self, direct: &Client, role: &str) -> i64 {
        direct
            .query_one(
                "select count(*) from pg_stat_activity where usename = $1 and application_name = 'tenantpool'",
                &[&role],
            )
            .await
            .unwrap()
            .get(0)
    }

    /// A URL for libpq tools (psql, pgbench).
    pub fn url(&self, user: &str, db: &str) -> String {
        format!(
            "postgres://{user}:{PASSWORD}@127.0.0.1:{}/{db}",
            self.port()
        )
    }

    /// Path of a PostgreSQL client binary from the cluster's installation.
    pub fn bin(&self, name: &str) -> PathBuf {
        self.cluster.bindir().join(name)
    }

    /// Stops accepting new clients and waits for the accept loop to end.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// The SQLSTATE of a tokio-postgres error, if the server (or pooler) sent one.
pub fn sqlstate(e: &tokio_postgres::Error) -> Option<String> {
    e.as_db_error().map(|d| d.code().code().to_owned())
}
