//! The running pooler: what every client connection shares (users, databases
//! and their pools, cancel keys) and the listeners that accept clients.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use thiserror::Error;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Semaphore;

use crate::auth::jwt::JwtVerifier;
use crate::auth::Secret;
use crate::cancel::CancelRegistry;
use crate::config::{Config, PoolMode, TenantSource};
use crate::pool::{Pool, PoolSettings};
use crate::server::ServerTarget;
use crate::tenant::TenantPolicy;
use crate::tls::{ClientTls, ServerTlsConnector};

/// A database clients can ask for: its pool and its tenant rules.
pub struct Database {
    pub name: String,
    pub pool: Arc<Pool>,
    pub mode: PoolMode,
    /// `None` for plain pooling.
    pub tenant: Option<TenantPolicy>,
    /// Token verification, for `source = "jwt"`.
    pub jwt: Option<Arc<JwtVerifier>>,
}

/// State shared by all client connections.
pub struct Shared {
    pub config: Config,
    users: HashMap<String, Secret>,
    pub databases: HashMap<String, Arc<Database>>,
    pub cancel: Arc<CancelRegistry>,
    /// Key for the fake SCRAM verifiers of unknown users, so they look like real ones.
    pub mock_key: [u8; 32],
    /// The certificate clients see, when `[pooler.tls]` is configured.
    pub tls: Option<Arc<ClientTls>>,
}

impl Shared {
    pub fn user(&self, name: &str) -> Option<&Secret> {
        self.users.get(name)
    }

    pub fn database(&self, name: &str) -> Option<&Arc<Database>> {
        self.databases.get(name)
    }

    /// Builds users and pools from a validated config. Needs a tokio runtime.
    pub fn new(config: Config) -> Result<Self, StartError> {
        let mut users = HashMap::new();
        for u in &config.users {
            let secret = Secret::parse(&u.password, &u.name)
                .map_err(|e| StartError::Config(format!("users.{}: {e}", u.name)))?;
            users.insert(u.name.clone(), secret);
        }
        let p = &config.pooler;
        let tls = p
            .tls
            .as_ref()
            .map(|t| ClientTls::load(t).map(Arc::new))
            .transpose()
            .map_err(|e| StartError::Config(format!("pooler.tls: {e}")))?;
        let mut databases = HashMap::new();
        for (name, db) in &config.databases {
            let target = ServerTarget {
                host: db.host.clone(),
                port: db.port,
                dbname: db.server_dbname(name).to_owned(),
                user: db.user.clone(),
                password: db.password.clone(),
                connect_timeout: p.server_connect_timeout,
                tls: ServerTlsConnector::new(db.tls, db.tls_ca_file.as_deref())
                    .map_err(|e| StartError::Config(format!("databases.{name}.tls: {e}")))?,
            };
            let settings = PoolSettings {
                size: db.pool_size,
                min_size: db.min_pool_size,
                mode: db.pool_mode,
                query_wait_timeout: p.query_wait_timeout,
                idle_timeout: p.server_idle_timeout,
                lifetime: p.server_lifetime,
                identify_backend: db.tenant.as_ref().is_some_and(|t| t.signed_context),
            };
            let tenant = db
                .tenant
                .as_ref()
                .map(TenantPolicy::new)
                .transpose()
                .map_err(|e| StartError::Config(format!("databases.{name}.tenant: {e}")))?;
            let jwt = match &db.tenant {
                Some(t) if t.source == TenantSource::Jwt => {
                    Some(Arc::new(JwtVerifier::from_config(t).map_err(|e| {
                        StartError::Config(format!("databases.{name}.tenant: {e}"))
                    })?))
                }
                _ => None,
            };
            databases.insert(
                name.clone(),
                Arc::new(Database {
                    name: name.clone(),
                    pool: Pool::new(name.clone(), target, settings),
                    mode: db.pool_mode,
                    tenant,
                    jwt,
                }),
            );
        }
        Ok(Shared {
            config,
            users,
            databases,
            cancel: Arc::new(CancelRegistry::default()),
            mock_key: rand::random(),
            tls,
        })
    }
}

#[derive(Debug, Error)]
pub enum StartError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
}

/// A pooler with its listeners bound, not yet accepting.
pub struct Pooler {
    shared: Arc<Shared>,
    tcp: TcpListener,
    unix: Option<(UnixListener, PathBuf)>,
}

impl Pooler {
    /// Binds the listeners (`listen` may use port 0) and builds the pools.
    pub async fn bind(config: Config) -> Result<Pooler, StartError> {
        let listen = config.pooler.listen.clone();
        let tcp = TcpListener::bind(&listen)
            .await
            .map_err(|source| StartError::Listen {
                addr: listen.clone(),
                source,
            })?;
        let port = tcp
            .local_addr()
            .map_err(|source| StartError::Listen {
                addr: listen.clone(),
                source,
            })?
            .port();
        let unix = match &config.pooler.unix_socket_dir {
            Some(dir) => {
                let path = dir.join(format!(".s.PGSQL.{port}"));
                // A socket file left by a previous run would make bind fail.
                if path.exists() {
                    let _ = std::fs::remove_file(&path);
                }
                let l = UnixListener::bind(&path).map_err(|source| StartError::Listen {
                    addr: path.display().to_string(),
                    source,
                })?;
                Some((l, path))
            }
            None => None,
        };
        let shared = Arc::new(Shared::new(config)?);
        Ok(Pooler { shared, tcp, unix })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.tcp
            .local_addr()
            .expect("bound listener has an address")
    }

    pub fn unix_socket_path(&self) -> Option<&PathBuf> {
        self.unix.as_ref().map(|(_, p)| p)
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Accepts clients until `shutdown` completes.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let limit = Arc::new(Semaphore::new(
            self.shared.config.pooler.max_client_connections,
        ));
        let unix_path = self.unix.as_ref().map(|(_, p)| p.clone());
        // Certificate reload on SIGHUP and on file change, for as long as we accept.
        let watcher = self
            .shared
            .tls
            .as_ref()
            .map(|tls| tokio::spawn(Arc::clone(tls).watch()));
        crate::client::listener::accept_loop(
            self.shared,
            self.tcp,
            self.unix.map(|(l, _)| l),
            limit,
            shutdown,
        )
        .await;
        if let Some(watcher) = watcher {
            watcher.abort();
        }
        if let Some(path) = unix_path {
            let _ = std::fs::remove_file(path);
        }
    }
}
