//! tenantpool: a tenant-aware PostgreSQL connection pooler.
//!
//! Clients (often serverless functions, one connection per invocation) connect
//! here as they would to PostgreSQL. Each transaction borrows a server connection
//! from a small pool, and before the client's first statement runs, the server's
//! tenant setting is made to equal the client's tenant, so Row-Level Security
//! isolates tenants.
//!
//! Map of the crate:
//! - [`protocol`]: the wire protocol codec (framing, startup, messages);
//! - [`client`]: accepting clients, login, and the per-transaction session loop;
//! - [`relay`]: the hot path that moves bytes between a client and its server;
//! - [`pool`]: server connection pools; [`server`]: logging in to PostgreSQL;
//! - [`tenant`]: tenant ids, the setting, and what may change it;
//! - [`sql`]: the cheap first look at client SQL text (words, not tokens);
//! - [`auth`]: SCRAM-SHA-256 and md5 verification of clients;
//! - [`config`]: the TOML schema; [`pooler`]: the running whole;
//! - [`logging`]: log lines (text or JSON) on stderr;
//! - [`metrics`]: the Prometheus endpoint (`/metrics`, `/healthz`, `/readyz`);
//! - [`tls`]: TLS towards clients (certificate reload) and towards servers (`sslmode`);
//! - [`pgcluster`]: a throwaway PostgreSQL for the demo and tests.

pub mod admin;
pub mod auth;
pub mod client;
pub mod config;
pub mod demo;
pub mod error;
pub mod logging;
pub mod metrics;
pub mod net;
pub mod pgcluster;
pub mod pool;
pub mod pooler;
pub mod protocol;
pub mod relay;
pub mod server;
pub mod sql;
pub mod tenant;
pub mod tls;

pub use config::Config;
pub use pooler::Pooler;

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
}
