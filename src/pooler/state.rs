//! One generation of configuration made live: users, databases with their pools
//! and tenant rules. A reload builds the next generation, keeping the pools
//! (and their open server connections) of databases whose server did not change.

use std::collections::HashMap;
use std::sync::Arc;

use super::clients::ClientRegistry;
use super::StartError;
use crate::auth::jwt::JwtVerifier;
use crate::auth::Secret;
use crate::config::{Config, DatabaseConfig, PoolMode, TenantSource};
use crate::metrics::Metrics;
use crate::pool::{Pool, PoolSettings};
use crate::relay::params::Tracked;
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
    /// The config it was built from, to tell on reload whether the pool can stay.
    config: DatabaseConfig,
}

/// State shared by all client connections of one configuration generation.
pub struct Shared {
    pub config: Config,
    users: HashMap<String, Secret>,
    pub databases: HashMap<String, Arc<Database>>,
    /// Every connected client (and so their cancel keys); one registry for all
    /// generations, the same as `Control::clients`.
    pub clients: Arc<ClientRegistry>,
    /// Key for the fake SCRAM verifiers of unknown users, so they look like real ones.
    pub mock_key: [u8; 32],
    /// The certificate clients see, when `[pooler.tls]` is configured.
    pub tls: Option<Arc<ClientTls>>,
    /// The Prometheus endpoint and recorder, when `[metrics]` is configured.
    /// Made at start and kept by every later generation.
    pub metrics: Option<Arc<Metrics>>,
    /// Session settings kept per client (`track_extra_parameters` and the reported ones).
    pub tracked: Arc<Tracked>,
}

impl Shared {
    pub fn user(&self, name: &str) -> Option<&Secret> {
        self.users.get(name)
    }

    pub fn database(&self, name: &str) -> Option<&Arc<Database>> {
        self.databases.get(name)
    }

    pub fn is_admin(&self, user: &str) -> bool {
        self.config.pooler.admin_users.iter().any(|u| u == user)
    }

    /// Builds users and pools from a validated config. Needs a tokio runtime.
    pub fn new(config: Config) -> Result<Self, StartError> {
        Self::build(config, None)
    }

    /// Builds the next generation. With `previous`, its pools are kept for
    /// databases whose server connection settings are unchanged (their sizes and
    /// timeouts are updated in place); the caller retires the others.
    pub fn build(config: Config, previous: Option<&Shared>) -> Result<Self, StartError> {
        let mut users = HashMap::new();
        for u in &config.users {
            let secret = Secret::parse(&u.password, &u.name)
                .map_err(|e| StartError::Config(format!("users.{}: {e}", u.name)))?;
            users.insert(u.name.clone(), secret);
        }
        let p = &config.pooler;
        let tls = match (&p.tls, previous.and_then(|s| s.tls.as_ref())) {
            (None, _) => None,
            // Same files: keep the holder (and its watcher), re-read them.
            (Some(t), Some(old))
                if old.paths() == (t.cert_file.as_path(), t.key_file.as_path())
                    && old.required() == t.required =>
            {
                // A bad file is logged and the previous certificate kept.
                let _ = old.reload();
                Some(Arc::clone(old))
            }
            (Some(t), _) => {
                Some(Arc::new(ClientTls::load(t).map_err(|e| {
                    StartError::Config(format!("pooler.tls: {e}"))
                })?))
            }
        };
        let metrics = match previous {
            Some(old) => {
                if config.metrics != old.config.metrics {
                    tracing::warn!("[metrics] takes effect only after a restart");
                }
                old.metrics.clone()
            }
            None => match &config.metrics {
                Some(m) => Some(Metrics::new(m).map_err(|source| StartError::Listen {
                    addr: m.listen.clone(),
                    source,
                })?),
                None => None,
            },
        };
        let mut databases = HashMap::new();
        // Kept pools get their new settings only once the whole generation is
        // built: a reload that fails half-way must change nothing.
        let mut resized = Vec::new();
        for (name, db) in &config.databases {
            let settings = PoolSettings {
                size: db.pool_size,
                min_size: db.min_pool_size,
                mode: db.pool_mode,
                query_wait_timeout: p.query_wait_timeout,
                idle_timeout: p.server_idle_timeout,
                lifetime: p.server_lifetime,
                identify_backend: db.tenant.as_ref().is_some_and(|t| t.signed_context),
            };
            let kept = previous
                .and_then(|s| s.databases.get(name))
                .filter(|old| same_server(&old.config, db, &old.pool))
                .map(|old| Arc::clone(&old.pool));
            let pool = match kept {
                Some(pool) => {
                    resized.push((Arc::clone(&pool), settings));
                    pool
                }
                None => {
                    let target = ServerTarget {
                        host: db.host.clone(),
                        port: db.port,
                        dbname: db.server_dbname(name).to_owned(),
                        user: db.user.clone(),
                        password: db.password.clone(),
                        connect_timeout: p.server_connect_timeout,
                        tls: ServerTlsConnector::new(db.tls, db.tls_ca_file.as_deref()).map_err(
                            |e| StartError::Config(format!("databases.{name}.tls: {e}")),
                        )?,
                    };
                    Pool::new(name.clone(), target, settings)
                }
            };
            if let Some(m) = &metrics {
                m.attach(&pool);
            }
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
                    pool,
                    mode: db.pool_mode,
                    tenant,
                    jwt,
                    config: db.clone(),
                }),
            );
        }
        for (pool, settings) in resized {
            pool.update_settings(settings);
        }
        Ok(Shared {
            users,
            databases,
            clients: previous.map_or_else(Default::default, |s| Arc::clone(&s.clients)),
            mock_key: previous.map_or_else(rand::random, |s| s.mock_key),
            tls,
            metrics,
            tracked: Arc::new(Tracked::new(&config.pooler.track_extra_parameters)),
            config,
        })
    }
}

/// Whether a pool built for `old` can serve `new`: same server, login and TLS,
/// and the same tenant setting (its connections' record of which tenant the
/// setting holds is about that setting; with another one, or none, they could
/// serve a client under a tenant that is not its own).
/// (`connect_timeout` is per pool too, but not worth dropping connections for.)
fn same_server(old: &DatabaseConfig, new: &DatabaseConfig, pool: &Pool) -> bool {
    !pool.is_retired()
        && old.host == new.host
        && old.port == new.port
        && old.dbname == new.dbname
        && old.user == new.user
        && old.password == new.password
        && old.tls == new.tls
        && old.tls_ca_file == new.tls_ca_file
        && old.tenant.as_ref().map(|t| (&t.setting, t.signed_context))
            == new.tenant.as_ref().map(|t| (&t.setting, t.signed_context))
}
