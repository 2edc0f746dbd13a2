//! The admin console (database `tenantpool`): PgBouncer-style SHOW views and
//! PAUSE/RESUME/RELOAD/KILL/SHUTDOWN over the PostgreSQL protocol.
//!
//! - here: the session loop (simple and extended query protocol);
//! - [`conn`]: reading bounded messages, buffering answers;
//! - [`command`]: parsing a query string into commands;
//! - [`execute`]: running a command against the control plane;
//! - [`show`]: the views; [`resultset`]: encoding their rows;
//! - [`extended`]: Parse/Bind/Describe/Execute decoding, statements and portals;
//! - [`format`]: text forms of times and durations.

pub mod command;
mod conn;
mod execute;
mod extended;
mod format;
pub mod resultset;
mod show;

use std::collections::VecDeque;
use std::sync::Arc;

use command::Command;
use conn::{Conn, Message, ReadError, MAX_MESSAGE};
use execute::{error, Outcome};
use extended::{Extended, Malformed, Portal, MAX_NAMED};
use resultset::{Formats, ResultSet};

use crate::error::{sqlstate, ClientError};
use crate::net::Stream;
use crate::pooler::{Control, Phase};
use crate::protocol::{backend, frontend};

/// Serves one logged-in admin connection until it closes. The connection ends
/// when the client terminates, on a protocol error, and when the pooler starts
/// shutting down (after answering the command in progress, e.g. SHUTDOWN itself).
pub async fn run(stream: Stream, control: Arc<Control>, user: String) {
    let mut session = Session {
        conn: Conn::new(stream),
        control,
        user,
        extended: Extended::default(),
    };
    if let Err(fatal) = session.serve().await {
        fatal.encode(&mut session.conn.out);
        let _ = session.conn.flush().await;
    }
}

struct Session {
    conn: Conn,
    control: Arc<Control>,
    user: String,
    extended: Extended,
}

/// How a session ends: `Ok` quietly (client left), `Err` with a FATAL error to send.
type End = Result<(), ClientError>;

fn fatal(code: &'static str, message: impl Into<String>) -> ClientError {
    ClientError::fatal(code, message)
}

fn shutting_down() -> ClientError {
    fatal(
        sqlstate::ADMIN_SHUTDOWN,
        "terminating connection: tenantpool is shutting down",
    )
}

impl From<Malformed> for ClientError {
    fn from(m: Malformed) -> Self {
        fatal(sqlstate::PROTOCOL_VIOLATION, m.0)
    }
}

impl Session {
    async fn serve(&mut self) -> End {
        let mut phase = self.control.watch_phase();
        loop {
            let read = tokio::select! {
                // Input first: what the client already sent (e.g. the Sync after an
                // Execute of SHUTDOWN) is answered before the shutdown closes us.
                biased;
                r = self.conn.read() => r,
                _ = phase.wait_for(|p| *p != Phase::Running) => return Err(shutting_down()),
            };
            let message = match read {
                Ok(Some(m)) => m,
                Ok(None) | Err(ReadError::Gone) => return Ok(()),
                Err(ReadError::Malformed(e)) => {
                    return Err(fatal(sqlstate::PROTOCOL_VIOLATION, e.to_string()))
                }
                Err(ReadError::TooLarge { tag, len }) => {
                    return Err(fatal(
                        sqlstate::PROTOCOL_VIOLATION,
                        format!(
                            "message of type '{}' is {len} bytes; the admin console accepts at most {MAX_MESSAGE}",
                            char::from(tag)
                        ),
                    ))
                }
            };
            if message.tag == b'X' {
                return Ok(());
            }
            let flush = self.dispatch(message).await?;
            let written = if flush {
                self.conn.flush().await
            } else {
                self.conn.flush_if_large().await
            };
            if written.is_err() {
                return Ok(());
            }
        }
    }

    /// Handles one message; `Ok(true)` when the answers should be written now.
    async fn dispatch(&mut self, message: Message) -> Result<bool, ClientError> {
        let body = &message.body[..];
        if self.extended.failed && message.tag != b'S' {
            return Ok(false);
        }
        match message.tag {
            b'Q' => {
                self.simple_query(body).await?;
                Ok(true)
            }
            b'S' => {
                self.extended.portals.clear();
                self.extended.failed = false;
                backend::ready_for_query(&mut self.conn.out, b'I');
                Ok(true)
            }
            b'H' => Ok(true),
            b'P' | b'B' | b'D' | b'E' | b'C' => {
                if let Err(e) = self.extended_message(message.tag, body).await {
                    if e.severity == backend::Severity::Fatal {
                        return Err(e);
                    }
                    e.encode(&mut self.conn.out);
                    self.extended.failed = true;
                }
                Ok(false)
            }
            other => Err(fatal(
                sqlstate::PROTOCOL_VIOLATION,
                format!(
                    "unexpected message type '{}' on the admin console",
                    char::from(other)
                ),
            )),
        }
    }

    /// Runs a command; a forced shutdown interrupts a waiting PAUSE.
    async fn execute(&self, command: &Command) -> Result<Outcome, ClientError> {
        let mut phase = self.control.watch_phase();
        tokio::select! {
            r = execute::execute(command, &self.control, &self.user) => r,
            _ = phase.wait_for(|p| *p == Phase::Stopped) => Err(shutting_down()),
        }
    }

    /// A Query: each command's answer in order, stopping at the first error; then ReadyForQuery.
    async fn simple_query(&mut self, body: &[u8]) -> Result<(), ClientError> {
        let Some(text) = body.strip_suffix(&[0]) else {
            return Err(fatal(sqlstate::PROTOCOL_VIOLATION, "invalid Query message"));
        };
        debug_assert_eq!(frontend::query_text(body), text);
        match std::str::from_utf8(text) {
            Err(_) => error("22021", "query text is not valid UTF-8").encode(&mut self.conn.out),
            Ok(text) => match command::parse(text) {
                Err(e) => error(sqlstate_syntax(), e.0).encode(&mut self.conn.out),
                Ok(commands) if commands.is_empty() => {
                    resultset::empty_query_response(&mut self.conn.out)
                }
                Ok(commands) => {
                    for command in &commands {
                        match self.execute(command).await {
                            Ok(outcome) => {
                                self.send_outcome(command, outcome, &Formats::text(), true)
                            }
                            Err(e) if e.severity == backend::Severity::Fatal => return Err(e),
                            Err(e) => {
                                e.encode(&mut self.conn.out);
                                break;
                            }
                        }
                    }
                }
            },
        }
        backend::ready_for_query(&mut self.conn.out, b'I');
        Ok(())
    }

    fn send_outcome(
        &mut self,
        command: &Command,
        outcome: Outcome,
        formats: &Formats,
        describe: bool,
    ) {
        let out = &mut self.conn.out;
        match outcome {
            Outcome::Rows(ResultSet { columns, rows }) => {
                if describe {
                    resultset::row_description(out, &columns, formats);
                }
                for row in &rows {
                    resultset::data_row(out, row, formats);
                }
            }
            Outcome::Done(notice) => {
                if let Some(n) = notice {
                    resultset::notice(out, &n);
                }
            }
        }
        resultset::command_complete(out, command.tag());
    }

    async fn extended_message(&mut self, tag: u8, body: &[u8]) -> Result<(), ClientError> {
        let ext = &mut self.extended;
        let out = &mut self.conn.out;
        match tag {
            b'P' => {
                let parse = extended::decode_parse(body)?;
                if parse.param_types > 0 {
                    return Err(error(
                        sqlstate::FEATURE_NOT_SUPPORTED,
                        "admin console commands take no parameters",
                    ));
                }
                let mut commands =
                    command::parse(parse.query).map_err(|e| error(sqlstate_syntax(), e.0))?;
                if commands.len() > 1 {
                    return Err(error(
                        sqlstate_syntax(),
                        "cannot insert multiple commands into a prepared statement",
                    ));
                }
                if !parse.name.is_empty() {
                    if ext.statements.contains_key(parse.name) {
                        return Err(error(
                            "42P05",
                            format!("prepared statement \"{}\" already exists", parse.name),
                        ));
                    }
                    if ext.statements.len() >= MAX_NAMED {
                        return Err(too_many("prepared statements"));
                    }
                }
                ext.statements.insert(parse.name.to_owned(), commands.pop());
                resultset::parse_complete(out);
            }
            b'B' => {
                let bind = extended::decode_bind(body)?;
                let statement = ext
                    .statements
                    .get(bind.statement)
                    .ok_or_else(|| no_statement(bind.statement))?;
                if bind.params > 0 {
                    return Err(error(
                        sqlstate::PROTOCOL_VIOLATION,
                        format!(
                            "bind message supplies {} parameters, but prepared statement \"{}\" requires 0",
                            bind.params, bind.statement
                        ),
                    ));
                }
                if let Some(bad) = bind.formats.iter().find(|f| !matches!(f, 0 | 1)) {
                    return Err(error("22023", format!("unsupported format code: {bad}")));
                }
                let formats = Formats(bind.formats);
                if let Some(columns) = statement.as_ref().and_then(execute::columns) {
                    formats
                        .check(columns.len())
                        .map_err(|e| error(sqlstate::PROTOCOL_VIOLATION, e))?;
                }
                if !bind.portal.is_empty() {
                    if ext.portals.contains_key(bind.portal) {
                        return Err(error(
                            "42P03",
                            format!("cursor \"{}\" already exists", bind.portal),
                        ));
                    }
                    if ext.portals.len() >= MAX_NAMED {
                        return Err(too_many("portals"));
                    }
                }
                let portal = Portal {
                    command: statement.clone(),
                    formats,
                    pending: None,
                };
                ext.portals.insert(bind.portal.to_owned(), portal);
                resultset::bind_complete(out);
            }
            b'D' => {
                let (kind, name) = extended::decode_target(body)?;
                let (command, formats) = if kind == b'S' {
                    let statement = ext.statements.get(name).ok_or_else(|| no_statement(name))?;
                    resultset::parameter_description_none(out);
                    (statement.as_ref(), Formats::text())
                } else {
                    let portal = ext.portals.get(name).ok_or_else(|| no_portal(name))?;
                    (portal.command.as_ref(), portal.formats.clone())
                };
                match command.and_then(execute::columns) {
                    Some(columns) => resultset::row_description(out, &columns, &formats),
                    None => resultset::no_data(out),
                }
            }
            b'C' => {
                let (kind, name) = extended::decode_target(body)?;
                if kind == b'S' {
                    ext.statements.remove(name);
                } else {
                    ext.portals.remove(name);
                }
                resultset::close_complete(out);
            }
            b'E' => {
                let (name, max_rows) = extended::decode_execute(body)?;
                self.execute_portal(name, max_rows).await?;
            }
            _ => unreachable!("dispatch sends only extended-protocol tags here"),
        }
        Ok(())
    }

    /// Execute: rows up to `max_rows` (0: all), then CommandComplete, or
    /// PortalSuspended when rows remain for the next Execute.
    async fn execute_portal(&mut self, name: &str, max_rows: usize) -> Result<(), ClientError> {
        let portal = self
            .extended
            .portals
            .get(name)
            .ok_or_else(|| no_portal(name))?;
        let Some(command) = portal.command.clone() else {
            resultset::empty_query_response(&mut self.conn.out);
            return Ok(());
        };
        let formats = portal.formats.clone();
        if portal.pending.is_none() {
            match self.execute(&command).await? {
                Outcome::Rows(rs) => {
                    if let Some(p) = self.extended.portals.get_mut(name) {
                        p.pending = Some(VecDeque::from(rs.rows));
                    }
                }
                done @ Outcome::Done(_) => {
                    self.send_outcome(&command, done, &formats, false);
                    return Ok(());
                }
            }
        }
        let Some(portal) = self.extended.portals.get_mut(name) else {
            return Ok(());
        };
        let rows = portal.pending.get_or_insert_with(VecDeque::new);
        let n = if max_rows == 0 {
            rows.len()
        } else {
            max_rows.min(rows.len())
        };
        for row in rows.drain(..n) {
            resultset::data_row(&mut self.conn.out, &row, &formats);
        }
        if rows.is_empty() {
            portal.pending = None;
            resultset::command_complete(&mut self.conn.out, command.tag());
        } else {
            resultset::portal_suspended(&mut self.conn.out);
        }
        Ok(())
    }
}

/// Unknown commands and bad arguments.
fn sqlstate_syntax() -> &'static str {
    "42601"
}

fn no_statement(name: &str) -> ClientError {
    error(
        "26000",
        format!("prepared statement \"{name}\" does not exist"),
    )
}

fn no_portal(name: &str) -> ClientError {
    error("34000", format!("portal \"{name}\" does not exist"))
}

fn too_many(what: &str) -> ClientError {
    error(
        sqlstate::PROGRAM_LIMIT_EXCEEDED,
        format!("too many named {what} (at most {MAX_NAMED}); close some"),
    )
}
