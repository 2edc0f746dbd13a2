//! Cleaning a server connection whose client left, before anyone else gets it.

use std::time::Duration;

use super::ServerConn;
use crate::tenant::ServerTenant;

/// Ends a transaction the client left open.
pub const ROLLBACK: &[&str] = &["ROLLBACK"];
/// Session mode's reset, as PgBouncer's default `server_reset_query`.
pub const SESSION_RESET: &[&str] = &["DISCARD ALL"];
/// Separate queries: DISCARD ALL refuses to run inside a multi-statement string.
pub const ROLLBACK_AND_RESET: &[&str] = &["ROLLBACK", "DISCARD ALL"];

/// How long a cleanup may take before the connection is closed instead.
const RESET_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs each statement and returns the connection if all ended idle without
/// error; `None` means it was closed.
pub async fn run(mut conn: Box<ServerConn>, statements: &[&str]) -> Option<Box<ServerConn>> {
    // Whatever happens below, nothing vouches for the tenant setting any more.
    // DISCARD ALL drops every prepared statement and setting; ROLLBACK keeps them.
    conn.tenant = ServerTenant::Unknown;
    if statements.contains(&"DISCARD ALL") {
        conn.statements.clear();
        conn.params.clear();
    }
    let all = async {
        for sql in statements {
            if !super::simple_query::run(&mut conn, sql).await?.0 {
                return Ok(false);
            }
        }
        Ok::<_, std::io::Error>(true)
    };
    match tokio::time::timeout(RESET_TIMEOUT, all).await {
        Ok(Ok(true)) => Some(conn),
        _ => {
            tracing::debug!(
                server = conn.id,
                "server cleanup failed; closing the connection"
            );
            None
        }
    }
}
