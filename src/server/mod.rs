//! The server side: reaching a PostgreSQL server and logging in to it.
//!
//! - [`login`]: connect, StartupMessage, trust/cleartext/md5/SCRAM-SHA-256, collect
//!   ParameterStatus and BackendKeyData until ReadyForQuery;
//! - [`cancel`]: forward a CancelRequest to the backend a client is using.
//!
//! Both first negotiate TLS over TCP as the pool's `tls` says (see [`crate::tls::server`]).

pub mod cancel;
pub mod login;

use std::time::Duration;

use thiserror::Error;

use crate::error::{sqlstate, ClientError};
use crate::protocol::backend::ErrorFields;
use crate::tls::ServerTlsConnector;

pub use login::LoggedIn;

/// Where and as whom a pool connects.
#[derive(Clone)]
pub struct ServerTarget {
    /// Host name or IP, or a directory holding the server's Unix socket when it starts with `/`.
    pub host: String,
    pub port: u16,
    pub dbname: String,
    pub user: String,
    pub password: Option<String>,
    pub connect_timeout: Duration,
    /// TLS to the server; `None` for `tls = "disable"`. Unix sockets never use it.
    pub tls: Option<ServerTlsConnector>,
}

impl std::fmt::Debug for ServerTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}@{}:{}/{}",
            self.user, self.host, self.port, self.dbname
        )
    }
}

impl ServerTarget {
    pub fn is_unix(&self) -> bool {
        self.host.starts_with('/')
    }
}

/// A server backend's cancel key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BackendKey {
    pub pid: i32,
    pub secret: [u8; 4],
}

#[derive(Debug, Error)]
pub enum ServerError {
    #[error("could not connect to server {target}: {source}")]
    Connect {
        target: String,
        source: std::io::Error,
    },
    #[error("connecting to server {target} timed out after {timeout:?}")]
    Timeout { target: String, timeout: Duration },
    #[error("server {target} refused login: {fields}")]
    Refused { target: String, fields: ErrorFields },
    #[error("server {target} asked for {what}")]
    Auth { target: String, what: String },
    #[error("server {target}: {what}")]
    Tls { target: String, what: String },
    #[error("server {target} broke the protocol: {what}")]
    Protocol { target: String, what: String },
    #[error("server connection lost: {0}")]
    Io(#[from] std::io::Error),
}

impl ServerError {
    /// What the client whose request needed this server is told.
    pub fn to_client(&self) -> ClientError {
        ClientError::fatal(sqlstate::CONNECTION_FAILURE, format!("tenantpool: {self}"))
    }
}
