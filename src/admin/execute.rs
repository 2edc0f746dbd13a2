//! Running one command against the control plane.

use super::command::Command;
use super::resultset::{Column, ResultSet};
use super::show;
use crate::error::{sqlstate, ClientError};
use crate::pooler::Control;
use crate::protocol::backend::Severity;

/// What a command produced.
pub enum Outcome {
    Rows(ResultSet),
    /// Done; an optional NOTICE saying what happened.
    Done(Option<String>),
}

/// An ERROR (the connection stays usable).
pub fn error(code: &'static str, message: impl Into<String>) -> ClientError {
    ClientError {
        severity: Severity::Error,
        ..ClientError::fatal(code, message)
    }
}

/// Reload failed; the previous configuration stays (PostgreSQL's config_file_error).
const CONFIG_FILE_ERROR: &str = "F0000";

/// The columns a command answers with; `None` for commands without rows.
pub fn columns(command: &Command) -> Option<Vec<Column>> {
    match command {
        Command::Show(view) => Some(show::columns(*view)),
        _ => None,
    }
}

pub async fn execute(
    command: &Command,
    control: &Control,
    user: &str,
) -> Result<Outcome, ClientError> {
    if !matches!(command, Command::Show(_)) {
        tracing::info!(user, command = ?command, "admin command");
    }
    let no_database = |e: String| error(sqlstate::INVALID_CATALOG_NAME, e);
    match command {
        Command::Show(view) => Ok(Outcome::Rows(show::run(*view, control))),
        Command::Pause(db) => {
            control.pause(db.as_deref()).await.map_err(no_database)?;
            Ok(Outcome::Done(None))
        }
        Command::Resume(db) => {
            control.resume(db.as_deref()).map_err(no_database)?;
            Ok(Outcome::Done(None))
        }
        Command::Kill(db) => {
            let closed = control.kill(db).map_err(no_database)?;
            Ok(Outcome::Done(Some(format!(
                "closed {closed} client connection(s) of database \"{db}\"; new clients wait until RESUME {db}"
            ))))
        }
        Command::Reload => match control.reload().await {
            Ok(summary) => Ok(Outcome::Done(Some(format!(
                "configuration reloaded: {summary}"
            )))),
            Err(reason) => Err(error(CONFIG_FILE_ERROR, format!("RELOAD failed: {reason}"))
                .with_detail("the previous configuration stays in force")),
        },
        Command::Shutdown => {
            control.shutdown(false);
            Ok(Outcome::Done(None))
        }
    }
}
