//! Errors the pooler reports to clients, each with its SQLSTATE decided here.
//!
//! Module errors stay typed (`thiserror` enums); at the edge they become a
//! [`ClientError`]: the one face a client sees (SQLSTATE + message) plus whether
//! the connection is closed afterwards.

use bytes::BytesMut;

use crate::protocol::backend::{self, Severity};

/// SQLSTATE codes the pooler raises itself. See PostgreSQL's errcodes.txt.
pub mod sqlstate {
    pub const PROTOCOL_VIOLATION: &str = "08P01";
    pub const CONNECTION_FAILURE: &str = "08006";
    pub const SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION: &str = "08001";
    pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
    pub const INVALID_AUTHORIZATION_SPECIFICATION: &str = "28000";
    pub const INVALID_PASSWORD: &str = "28P01";
    pub const INSUFFICIENT_PRIVILEGE: &str = "42501";
    pub const DUPLICATE_PREPARED_STATEMENT: &str = "42P05";
    pub const INVALID_CATALOG_NAME: &str = "3D000";
    pub const TOO_MANY_CONNECTIONS: &str = "53300";
    pub const PROGRAM_LIMIT_EXCEEDED: &str = "54000";
    pub const QUERY_CANCELED: &str = "57014";
    pub const ADMIN_SHUTDOWN: &str = "57P01";
    pub const CANNOT_CONNECT_NOW: &str = "57P03";
    pub const INTERNAL_ERROR: &str = "XX000";
}

/// An error on its way to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientError {
    pub code: &'static str,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
    /// FATAL errors end the connection; ERROR ones leave it usable.
    pub severity: Severity,
}

impl ClientError {
    pub fn fatal(code: &'static str, message: impl Into<String>) -> Self {
        ClientError {
            code,
            message: message.into(),
            detail: None,
            hint: None,
            severity: Severity::Fatal,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Appends this error as an ErrorResponse.
    pub fn encode(&self, buf: &mut BytesMut) {
        backend::error_response(
            buf,
            self.severity,
            self.code,
            &self.message,
            self.detail.as_deref(),
            self.hint.as_deref(),
        );
    }
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (SQLSTATE {})", self.message, self.code)
    }
}
