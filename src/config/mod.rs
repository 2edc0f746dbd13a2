//! The TOML configuration: schema, defaults, and validation.
//!
//! The schema is a contract with operators and tooling: keys keep their names and
//! meanings. Every struct denies unknown keys so a typo is an error, not a silent
//! default. Durations are human-readable strings ("5s", "10min").

mod validate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

pub use validate::validate;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: {message}")]
    Parse { file: String, message: String },
    #[error("{file}: {key}: {message}")]
    Invalid {
        file: String,
        key: String,
        message: String,
    },
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub pooler: PoolerConfig,
    /// Users clients authenticate as.
    #[serde(default)]
    pub users: Vec<UserConfig>,
    /// Databases clients may ask for, by the name they ask for.
    #[serde(default)]
    pub databases: BTreeMap<String, DatabaseConfig>,
    /// The Prometheus endpoint; absent (the default): no endpoint, and nothing is
    /// recorded beyond the counters the admin console shows.
    #[serde(default)]
    pub metrics: Option<MetricsConfig>,
}

/// `[metrics]`: the HTTP endpoint serving `/metrics`, `/healthz` and `/readyz`.
/// Read at start only: a reload that changes it is logged and needs a restart.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Address of the HTTP endpoint. Default `127.0.0.1:9930` (loopback only).
    pub listen: String,
    /// Per-tenant series for the N most active tenants of each pool, plus
    /// `tenant="other"`; so at most N+1 tenant label values per pool. Default 0: off.
    pub top_tenants: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listen: "127.0.0.1:9930".into(),
            top_tenants: 0,
        }
    }
}

/// Most tenants `[metrics] top_tenants` may ask for (label cardinality).
pub const MAX_TOP_TENANTS: usize = 100;

/// Most settings `[pooler] track_extra_parameters` may name (the watch for SQL
/// naming them looks for at most 64 words, see [`crate::sql::words::WordSet`]).
pub const MAX_TRACKED_EXTRAS: usize = 32;

/// How clients prove who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum AuthType {
    /// SCRAM-SHA-256 (default): the password never crosses the wire.
    #[default]
    #[serde(rename = "scram-sha-256")]
    ScramSha256,
    /// MD5 challenge-response, for old drivers; needs a plaintext or md5 password in the config.
    Md5,
}

/// `[pooler]`: the listener and limits shared by all pools.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoolerConfig {
    /// TCP address clients connect to. Default `127.0.0.1:6432`.
    pub listen: String,
    /// If set, also listen on the Unix socket `<dir>/.s.PGSQL.<port>` (so `psql -h <dir>` works).
    /// Pending connections the kernel queues for `listen` (capped by
    /// net.core.somaxconn). Default 4096, so a burst of serverless clients is not
    /// dropped into TCP's 1 s retransmit. Read at start only.
    pub listen_backlog: u32,
    pub unix_socket_dir: Option<PathBuf>,
    /// Most client connections open at once; more are refused with 53300. Default 10000.
    pub max_client_connections: usize,
    /// Client authentication method. Default `scram-sha-256`.
    pub auth_type: AuthType,
    /// Largest startup packet accepted, in bytes. Default 10000 (PostgreSQL's own limit).
    pub max_startup_packet_size: usize,
    /// Largest message the pooler holds whole to inspect (authentication, Query and
    /// Parse texts), in bytes. Larger Query/Parse messages still stream through, but
    /// uninspected. Default 1 MiB.
    pub max_message_size: usize,
    /// A client must finish startup and authentication within this time. Default 15s.
    #[serde(with = "humantime_serde")]
    pub client_login_timeout: Duration,
    /// A client waiting this long for a server connection gets an error. Default 120s.
    #[serde(with = "humantime_serde")]
    pub query_wait_timeout: Duration,
    /// Connecting and logging in to a server must finish within this time. Default 15s.
    #[serde(with = "humantime_serde")]
    pub server_connect_timeout: Duration,
    /// Server connections idle this long are closed (down to `min_pool_size`). Default 10min.
    #[serde(with = "humantime_serde")]
    pub server_idle_timeout: Duration,
    /// Server connections older than this are closed when next idle. Default 1h.
    #[serde(with = "humantime_serde")]
    pub server_lifetime: Duration,
    /// Runtime worker threads; default: one per CPU. 1: everything on one thread.
    pub worker_threads: Option<usize>,
    /// Named prepared statements kept per server connection in transaction and
    /// statement modes (least recently used closed first). 0 turns the rewriting
    /// off: statements then pass through as in PgBouncer before 1.21. Default 200.
    pub max_prepared_statements: usize,
    /// Settings kept per client in transaction and statement modes, beyond those
    /// the server reports itself (application_name, client_encoding, DateStyle,
    /// IntervalStyle, TimeZone, standard_conforming_strings). Default `["search_path"]`,
    /// at most [`MAX_TRACKED_EXTRAS`].
    pub track_extra_parameters: Vec<String>,
    /// TLS for clients; absent: SSLRequest is answered `N`.
    pub tls: Option<ClientTlsConfig>,
    /// Ask for a cleartext password (a JWT) over plain TCP from a non-loopback
    /// address. Default false: only over TLS, a Unix socket or loopback.
    pub allow_cleartext_over_network: bool,
    /// Users (from `[[users]]`) allowed into the admin console (database `tenantpool`).
    pub admin_users: Vec<String>,
    /// On SIGTERM or SHUTDOWN, transactions in flight get this long to finish. Default 30s.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// Log level (`error`, `warn`, `info`, `debug`, `trace`, or a tracing filter);
    /// `RUST_LOG` overrides it. Default `info`.
    pub log_level: String,
    /// `text` (default) or `json` (one object per line).
    pub log_format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// `[pooler.tls]`: the certificate clients see.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientTlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// Which clients must use TLS. Default `never`.
    #[serde(default)]
    pub required: TlsRequired,
}

/// Which client connections must be encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum TlsRequired {
    /// TLS is offered, never required.
    #[default]
    Never,
    /// Required except over a Unix socket or loopback.
    NonLocal,
    /// Required for every TCP client (Unix sockets are local by nature and exempt).
    Always,
}

/// How a pool's server connections use TLS, as libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ServerTls {
    /// Never.
    Disable,
    /// If the server offers it (default), without verifying the certificate.
    #[default]
    Prefer,
    /// Always, without verifying the certificate.
    Require,
    /// Always, verifying the chain (against `tls_ca_file` or the system roots) and the host name.
    VerifyFull,
}

impl Default for PoolerConfig {
    fn default() -> Self {
        PoolerConfig {
            listen: "127.0.0.1:6432".into(),
            listen_backlog: 4096,
            unix_socket_dir: None,
            max_client_connections: 10_000,
            auth_type: AuthType::default(),
            max_startup_packet_size: crate::protocol::startup::DEFAULT_MAX_STARTUP_PACKET,
            max_message_size: 1 << 20,
            client_login_timeout: Duration::from_secs(15),
            query_wait_timeout: Duration::from_secs(120),
            server_connect_timeout: Duration::from_secs(15),
            server_idle_timeout: Duration::from_secs(600),
            server_lifetime: Duration::from_secs(3600),
            worker_threads: None,
            max_prepared_statements: 200,
            track_extra_parameters: vec!["search_path".to_owned()],
            tls: None,
            allow_cleartext_over_network: false,
            admin_users: Vec::new(),
            shutdown_timeout: Duration::from_secs(30),
            log_level: "info".into(),
            log_format: LogFormat::Text,
        }
    }
}

/// `[[users]]`: a user clients authenticate as.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub name: String,
    /// Plaintext, a `SCRAM-SHA-256$...` verifier, or an `md5...` hash (as in pg_authid).
    pub password: String,
}

impl std::fmt::Debug for UserConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserConfig")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// When a client gets a server connection and gives it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PoolMode {
    /// Per transaction (default): the server returns to the pool when it reports idle.
    #[default]
    Transaction,
    /// Per client connection.
    Session,
    /// Per statement (PgBouncer's): the server returns after each statement, and
    /// transaction blocks are refused.
    Statement,
}

impl PoolMode {
    pub fn as_str(self) -> &'static str {
        match self {
            PoolMode::Transaction => "transaction",
            PoolMode::Session => "session",
            PoolMode::Statement => "statement",
        }
    }
}

/// `[databases.<name>]`: a pool of server connections.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// Server host, or a directory holding its Unix socket when it starts with `/`. Default 127.0.0.1.
    #[serde(default = "default_host")]
    pub host: String,
    /// Default 5432.
    #[serde(default = "default_port")]
    pub port: u16,
    /// Database name on the server; defaults to the table key.
    pub dbname: Option<String>,
    /// Role the pool logs in as.
    pub user: String,
    /// Password for that role (SCRAM, md5 or cleartext, as the server asks); none for trust.
    pub password: Option<String>,
    /// Most server connections for this pool. Default 20.
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// Server connections kept open even when idle. Default 0.
    #[serde(default)]
    pub min_pool_size: usize,
    #[serde(default)]
    pub pool_mode: PoolMode,
    /// TLS to the server. Default `prefer`.
    #[serde(default)]
    pub tls: ServerTls,
    /// CA certificates (PEM) for `tls = "verify-full"`; default: the system roots.
    pub tls_ca_file: Option<PathBuf>,
    /// Where each client's tenant comes from; absent for plain pooling.
    pub tenant: Option<TenantConfig>,
}

impl std::fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("dbname", &self.dbname)
            .field("user", &self.user)
            .field("pool_size", &self.pool_size)
            .field("min_pool_size", &self.min_pool_size)
            .field("pool_mode", &self.pool_mode)
            .field("tls", &self.tls)
            .field("tenant", &self.tenant)
            .finish_non_exhaustive()
    }
}

fn default_host() -> String {
    "127.0.0.1".into()
}
fn default_port() -> u16 {
    5432
}
fn default_pool_size() -> usize {
    20
}

/// Where a client's tenant comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TenantSource {
    /// User `app.acme` logs in as pooler user `app`, tenant `acme` (split at the last `.`).
    UserSuffix,
    /// The password is a signed JWT; the tenant is one of its claims.
    Jwt,
}

/// `[databases.<name>.tenant]`
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    pub source: TenantSource,
    /// The server setting RLS policies read. Default `app.current_tenant`.
    #[serde(default = "default_setting")]
    pub setting: String,
    /// Regular expression a tenant id must match in full. Default `^[A-Za-z0-9_-]{1,63}$`.
    #[serde(default = "default_pattern")]
    pub pattern: String,
    /// Prefer an idle server connection already set to the client's tenant. Default true.
    #[serde(default = "default_true")]
    pub affinity: bool,
    /// Refuse clients that name no tenant. Default true; when false they run with the
    /// setting set to the empty string, which matches no tenant's rows.
    #[serde(default = "default_true")]
    pub required: bool,

    /// Refuse statements that would change the setting or the role (SQLSTATE 42501). Default true.
    #[serde(default = "default_true")]
    pub guard: bool,
    /// Let `DO` blocks through the guard (their dynamic SQL is invisible to it). Default false.
    #[serde(default)]
    pub allow_do_blocks: bool,
    /// Also establish the signed tenant context read by `tenantpool.current_tenant()`
    /// (see sql/tenantpool.sql). Default false.
    #[serde(default)]
    pub signed_context: bool,
    /// Key for the signed context, the same as installed in the database; at least 32 characters.
    pub signing_key: Option<String>,

    /// Claim holding the tenant id (`source = "jwt"`); a dotted path reaches into
    /// objects (`app_metadata.org_id`). Default `tenant_id`.
    #[serde(default = "default_claim")]
    pub claim: String,
    /// HS256/HS384/HS512 shared secret.
    pub jwt_secret: Option<String>,
    /// PEM files with RSA, EC (P-256/P-384) or Ed25519 public keys.
    #[serde(default)]
    pub jwt_public_key_files: Vec<PathBuf>,
    /// A JWKS file (`{"keys": [...]}`); keys are chosen by `kid`.
    pub jwks_file: Option<PathBuf>,
    /// Required `iss`, when set.
    pub issuer: Option<String>,
    /// Required `aud` (one of them, when the token has several), when set.
    pub audience: Option<String>,
    /// Clock skew allowed for `exp` and `nbf`. Default 30.
    #[serde(default = "default_leeway")]
    pub leeway_seconds: u64,
}

impl TenantConfig {
    /// A tenant table with every default, as if only `source` were written.
    pub fn new(source: TenantSource) -> Self {
        TenantConfig {
            source,
            setting: default_setting(),
            pattern: default_pattern(),
            affinity: true,
            required: true,
            guard: true,
            allow_do_blocks: false,
            signed_context: false,
            signing_key: None,
            claim: default_claim(),
            jwt_secret: None,
            jwt_public_key_files: Vec::new(),
            jwks_file: None,
            issuer: None,
            audience: None,
            leeway_seconds: default_leeway(),
        }
    }
}

impl std::fmt::Debug for TenantConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantConfig")
            .field("source", &self.source)
            .field("setting", &self.setting)
            .field("pattern", &self.pattern)
            .field("affinity", &self.affinity)
            .field("required", &self.required)
            .field("guard", &self.guard)
            .field("allow_do_blocks", &self.allow_do_blocks)
            .field("signed_context", &self.signed_context)
            .field("claim", &self.claim)
            .field("jwt_public_key_files", &self.jwt_public_key_files)
            .field("jwks_file", &self.jwks_file)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway_seconds", &self.leeway_seconds)
            .finish_non_exhaustive()
    }
}

fn default_claim() -> String {
    "tenant_id".into()
}
fn default_leeway() -> u64 {
    30
}

pub const DEFAULT_TENANT_SETTING: &str = "app.current_tenant";
pub const DEFAULT_TENANT_PATTERN: &str = "^[A-Za-z0-9_-]{1,63}$";
/// Database name reserved for the admin console.
pub const ADMIN_DATABASE: &str = "tenantpool";

fn default_setting() -> String {
    DEFAULT_TENANT_SETTING.into()
}
fn default_pattern() -> String {
    DEFAULT_TENANT_PATTERN.into()
}
fn default_true() -> bool {
    true
}

impl Config {
    /// Reads, parses and validates `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: file.clone(),
            source,
        })?;
        Config::from_toml(&text, &file)
    }

    /// Parses and validates TOML text; `file` names it in error messages.
    pub fn from_toml(text: &str, file: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            file: file.into(),
            message: e.to_string(),
        })?;
        validate(&config, file)?;
        Ok(config)
    }
}

impl DatabaseConfig {
    /// Name of the database on the server.
    pub fn server_dbname<'a>(&'a self, key: &'a str) -> &'a str {
        self.dbname.as_deref().unwrap_or(key)
    }
}

#[cfg(test)]
mod tests;
