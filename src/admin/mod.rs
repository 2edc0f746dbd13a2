//! The admin console (database `tenantpool`): PgBouncer-style SHOW commands and
//! PAUSE/RESUME/RELOAD/KILL/SHUTDOWN over the PostgreSQL protocol.

use std::sync::Arc;

use crate::error::{sqlstate, ClientError};
use crate::net::Stream;
use crate::pooler::Control;

/// Serves one logged-in admin connection until it closes.
pub async fn run(mut stream: Stream, _control: Arc<Control>, _user: String) {
    let error = ClientError::fatal(
        sqlstate::FEATURE_NOT_SUPPORTED,
        "the admin console is not implemented yet",
    );
    crate::client::send_error(&mut stream, &error).await;
}
