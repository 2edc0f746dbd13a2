//! Client login outcomes: `ok`, `bad_password`, `bad_token` (a JWT that did not
//! verify), `refused` (anything else: bad tenant, TLS required, unknown
//! database, not an admin, login timeout, ...).
//!
//! A [`LoginGuard`] is made when the login knows which database it is for and
//! counts `refused` when dropped unless told otherwise, so every early return
//! (and a login timeout, which drops the login future) is counted without a
//! hook of its own. A client that simply leaves is not counted.

use std::sync::Arc;

use super::{names, Metrics};
use crate::config::ADMIN_DATABASE;
use crate::error::{sqlstate, ClientError};
use crate::pooler::Shared;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginOutcome {
    Ok,
    BadPassword,
    BadToken,
    Refused,
}

impl LoginOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            LoginOutcome::Ok => "ok",
            LoginOutcome::BadPassword => "bad_password",
            LoginOutcome::BadToken => "bad_token",
            LoginOutcome::Refused => "refused",
        }
    }
}

/// Counts one login's outcome when dropped (see the module docs).
pub struct LoginGuard {
    metrics: Option<(Arc<Metrics>, String)>,
    outcome: Option<LoginOutcome>,
}

impl LoginGuard {
    /// For a login to `database` (as the client named it; a name that is not
    /// configured is counted under `database=""`, so clients cannot add labels).
    pub fn new(shared: &Shared, database: &str) -> Self {
        let metrics = shared.metrics.as_ref().map(|m| {
            let known = database == ADMIN_DATABASE || shared.database(database).is_some();
            (Arc::clone(m), if known { database } else { "" }.to_owned())
        });
        LoginGuard {
            metrics,
            outcome: Some(LoginOutcome::Refused),
        }
    }

    pub fn set(&mut self, outcome: LoginOutcome) {
        self.outcome = Some(outcome);
    }

    /// Authentication refused `error`; `token` when the password was a JWT.
    pub fn auth_failed(&mut self, token: bool, error: &ClientError) {
        self.outcome = Some(match (error.code == sqlstate::INVALID_PASSWORD, token) {
            (true, false) => LoginOutcome::BadPassword,
            (true, true) => LoginOutcome::BadToken,
            (false, _) => LoginOutcome::Refused,
        });
    }

    /// The client went away mid-login: not an outcome worth counting.
    pub fn client_left(&mut self) {
        self.outcome = None;
    }
}

impl Drop for LoginGuard {
    fn drop(&mut self) {
        if let (Some((metrics, database)), Some(outcome)) = (&self.metrics, self.outcome) {
            metrics.login(database, outcome);
        }
    }
}

impl Metrics {
    /// Counts a login (a registry lookup: logins are not the hot path).
    pub fn login(&self, database: &str, outcome: LoginOutcome) {
        let labels = vec![
            metrics::Label::new("database", database.to_owned()),
            metrics::Label::new("outcome", outcome.as_str()),
        ];
        self.counter(names::LOGINS.name, labels).increment(1);
    }
}
