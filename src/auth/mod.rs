//! Client authentication, sans-IO.
//!
//! This module only computes and checks authentication messages; the
//! pooler's client-side code does the actual message I/O and maps
//! [`AuthError`] to an ErrorResponse (see [`AuthError::sqlstate`]).
//!
//! - [`secret`]: what the config gives for a user's password, turned into
//!   a SCRAM verifier and/or an md5 hash.
//! - [`scram`]: the server side of SCRAM-SHA-256 (RFC 5802/7677), as
//!   PostgreSQL implements it, without channel binding.
//! - [`md5`]: checking a PasswordMessage for AuthenticationMD5Password.
//! - [`jwt`]: verifying a JWT given as the password, and taking the tenant from it.

pub mod jwt;
pub mod md5;
pub mod scram;
pub mod secret;

#[cfg(test)]
mod tests;

pub use scram::{ScramExchange, MECHANISM};
pub use secret::{ScramVerifier, Secret, SecretError};

/// Why an authentication exchange did not succeed.
///
/// Messages never contain a password, a proof or a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The client sent something that is not a valid message at this point
    /// of the exchange (protocol garbage, or a call out of order).
    #[error("malformed authentication message: {0}")]
    Malformed(&'static str),
    /// Well-formed, but the credentials are wrong (or the user is unknown).
    #[error("password authentication failed")]
    Failed,
    /// Well-formed, but asks for something we do not offer (channel binding,
    /// an authorization identity, a SCRAM extension).
    #[error("unsupported authentication request: {0}")]
    Unsupported(&'static str),
}

impl AuthError {
    /// The SQLSTATE PostgreSQL uses for the same situation: `08P01`
    /// (protocol_violation), `28P01` (invalid_password) or `0A000`
    /// (feature_not_supported).
    pub fn sqlstate(&self) -> &'static str {
        match self {
            AuthError::Malformed(_) => "08P01",
            AuthError::Failed => "28P01",
            AuthError::Unsupported(_) => "0A000",
        }
    }
}
