//! From the first packet to ReadyForQuery: find the database and tenant,
//! negotiate the protocol version, authenticate, and greet the client with the
//! server's parameters and a cancel key of our own.

use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;

use super::authenticate::{self, authenticate, AuthFail};
use super::handshake_reader::HandshakeReader;
use super::startup::{read_first, First, StartupFail};
use crate::auth::jwt;
use crate::config::ADMIN_DATABASE;
use crate::error::{sqlstate, ClientError};
use crate::net::Stream;
use crate::pooler::clients::{NewClient, Registered};
use crate::pooler::{Database, Shared};
use crate::protocol::backend;
use crate::protocol::startup::PROTOCOL_MINOR;
use crate::relay::ClientParams;
use crate::tenant::{TenantError, TenantId};

/// A logged-in client, ready for its session.
pub struct Login {
    pub database: Arc<Database>,
    /// Its entry in the client registry: its user, tenant, peer and cancel key.
    pub registered: Registered,
    /// For token logins: the token's `exp` and the leeway; no transaction starts after both passed.
    pub expires_at: Option<(u64, u64)>,
    /// The tracked session settings it asked for at startup.
    pub params: ClientParams,
}

/// What a successful handshake leads to.
pub enum LoggedIn {
    Pooled(Login),
    /// The admin console (database `tenantpool`), as this user.
    Admin {
        user: String,
    },
}

/// Who a login attempt said it was, for the log line of a refusal.
#[derive(Default)]
struct Attempt {
    user: String,
    database: String,
}

/// Runs the handshake. `Ok(None)`: the connection was a cancel request, or the
/// client left; nothing more to do. Every refusal after the startup packet is
/// logged here, once, with the client's address.
pub async fn login(
    stream: &mut Stream,
    shared: &Arc<Shared>,
) -> Result<Option<LoggedIn>, ClientError> {
    let mut attempt = Attempt::default();
    let result = handshake(stream, shared, &mut attempt).await;
    if let (Err(e), false) = (&result, attempt.user.is_empty()) {
        tracing::info!(user = %attempt.user, database = %attempt.database, peer = %stream.peer(), outcome = "refused", reason = %e, "client login");
    }
    result
}

async fn handshake(
    stream: &mut Stream,
    shared: &Arc<Shared>,
    attempt: &mut Attempt,
) -> Result<Option<LoggedIn>, ClientError> {
    let pooler = &shared.config.pooler;
    let mut reader = HandshakeReader::default();
    let startup = match read_first(
        stream,
        &mut reader,
        pooler.max_startup_packet_size,
        shared.tls.as_deref(),
    )
    .await
    {
        Ok(First::Startup(m)) => m,
        Ok(First::Cancel { pid, secret }) => {
            forward_cancel(shared, pid, &secret).await;
            return Ok(None);
        }
        Err(StartupFail::Gone) => return Ok(None),
        Err(StartupFail::Refused(e)) => return Err(e),
    };

    let shown_user = startup.get("user").unwrap_or_default().to_owned();
    if shown_user.is_empty() {
        return Err(ClientError::fatal(
            sqlstate::INVALID_AUTHORIZATION_SPECIFICATION,
            "no PostgreSQL user name specified in startup packet",
        ));
    }
    let db_name = startup
        .get("database")
        .filter(|d| !d.is_empty())
        .unwrap_or(&shown_user);
    attempt.user.clone_from(&shown_user);
    attempt.database = db_name.to_owned();
    if db_name == ADMIN_DATABASE {
        return admin_login(stream, &mut reader, shared, &shown_user).await;
    }
    let mut counted = crate::metrics::LoginGuard::new(shared, db_name); // metrics hook
    let database = shared.database(db_name).cloned();

    let (user, tenant) = match database.as_ref().and_then(|d| d.tenant.as_ref()) {
        Some(policy) => policy.resolve(&shown_user).map_err(|e| {
            let err =
                ClientError::fatal(sqlstate::INVALID_AUTHORIZATION_SPECIFICATION, e.to_string());
            match e {
                TenantError::Missing => err.with_hint(format!(
                    "database \"{db_name}\" is tenant-scoped: log in as \"{shown_user}.<tenant>\""
                )),
                TenantError::Invalid { .. } => err,
            }
        })?,
        None if database.is_some() => (shown_user.as_str(), None),
        // Unknown database: still authenticate (as "user" or "user.<anything>"), so
        // only a client with a valid password learns which databases exist.
        None => match shown_user.rsplit_once('.') {
            Some((base, _)) if shared.user(&shown_user).is_none() => (base, None),
            _ => (shown_user.as_str(), None),
        },
    };
    let user = user.to_owned();

    // `options=-c app.current_tenant=...` and the like must not override the tenant.
    if let Some(policy) = database.as_ref().and_then(|d| d.tenant.as_ref()) {
        if let Some(Err(violation)) = policy.guard().map(|g| g.check_startup(&startup.params)) {
            return Err(ClientError::fatal(
                sqlstate::INSUFFICIENT_PRIVILEGE,
                violation.message(&policy.setting),
            ));
        }
    }

    let options: Vec<&str> = startup.protocol_options().collect();
    if startup.minor > PROTOCOL_MINOR || !options.is_empty() {
        let mut out = BytesMut::with_capacity(64);
        backend::negotiate_protocol_version(&mut out, PROTOCOL_MINOR, &options);
        stream.write_all(&out).await.map_err(|_| gone())?;
    }

    let jwt = database.as_ref().and_then(|d| d.jwt.as_deref());
    let (mut tenant, mut expires_at) = (tenant, None);
    let outcome = match jwt {
        // The token is the password: ask for it in clear text, only where that is safe.
        Some(verifier) => {
            let policy = database.as_ref().and_then(|d| d.tenant.as_ref());
            if !jwt::cleartext_allowed(
                stream.is_tls(),
                stream.is_local(),
                pooler.allow_cleartext_over_network,
            ) {
                Err(AuthFail::Refused(ClientError::fatal(
                    sqlstate::INVALID_AUTHORIZATION_SPECIFICATION,
                    "tenantpool: a token login needs TLS (sslmode=require), a Unix socket or a loopback connection",
                )))
            } else {
                match authenticate::read_token(stream, &mut reader, jwt::MAX_TOKEN_LEN + 64).await {
                    Ok(token) => match verifier.verify(&token) {
                        Ok(verified) => match policy.map(|p| p.check(&verified.tenant)) {
                            Some(Ok(t)) => {
                                tenant = Some(t);
                                expires_at = verified
                                    .expires_at
                                    .map(|exp| (exp, verifier.leeway_seconds()));
                                Ok(BytesMut::new())
                            }
                            Some(Err(e)) => Err(AuthFail::Refused(ClientError::fatal(
                                sqlstate::INVALID_AUTHORIZATION_SPECIFICATION,
                                format!("tenantpool: the token's tenant claim is not valid: {e}"),
                            ))),
                            None => Err(AuthFail::Refused(ClientError::fatal(
                                sqlstate::INTERNAL_ERROR,
                                "tenantpool: token login on a database without a tenant policy",
                            ))),
                        },
                        Err(e) => Err(AuthFail::Refused(ClientError::fatal(
                            sqlstate::INVALID_PASSWORD,
                            format!("tenantpool: token refused: {}", e.client_message()),
                        ))),
                    },
                    Err(fail) => Err(fail),
                }
            }
        }
        None => {
            authenticate(
                stream,
                &mut reader,
                pooler.auth_type,
                shared.user(&user),
                &shown_user,
                &shared.mock_key,
                pooler.max_startup_packet_size,
            )
            .await
        }
    };
    // SCRAM's final message goes out with the greeting, in one write.
    let Some(mut out) = settle(outcome, &mut counted, jwt.is_some(), &reader)? else {
        return Ok(None);
    };
    out.reserve(512);

    let database = database.ok_or_else(|| {
        ClientError::fatal(
            sqlstate::INVALID_CATALOG_NAME,
            format!("database \"{db_name}\" does not exist"),
        )
    })?;
    let params = database
        .pool
        .server_params()
        .await
        .map_err(|e| e.to_client())?;
    let peer = stream.peer();
    // Registered now: its cancel key goes into the greeting.
    let registered = shared.clients.register(NewClient {
        database: &database.name,
        user: &user,
        tenant: tenant.clone(),
        peer,
        tls: stream.is_tls(),
    });

    backend::authentication_ok(&mut out);
    let client_params = ClientParams::from_startup(Arc::clone(&shared.tracked), &startup.params);
    for (name, value) in params.iter() {
        // The client sees the values it asked for, as PostgreSQL would show them
        // (they are set on each server connection before its transactions).
        let value = match (name.as_str(), client_params.value_of(name)) {
            ("client_encoding", Some(v))
                if v.eq_ignore_ascii_case("utf8") || v.eq_ignore_ascii_case("utf-8") =>
            {
                "UTF8"
            }
            (_, Some(v)) => v,
            ("application_name", None) => "",
            (_, None) => value,
        };
        backend::parameter_status(&mut out, name, value);
    }
    let (pid, secret) = registered.entry.key();
    backend::backend_key_data(&mut out, pid, secret);
    backend::ready_for_query(&mut out, b'I');
    stream.write_all(&out).await.map_err(|_| gone())?;

    tracing::info!(user = %user, database = %db_name, tenant = tenant.as_ref().map(TenantId::as_str).unwrap_or(""), peer = %peer, outcome = "ok", "client login");
    counted.set(crate::metrics::LoginOutcome::Ok); // metrics hook
    Ok(Some(LoggedIn::Pooled(Login {
        database,
        registered,
        expires_at,
        params: client_params,
    })))
}

/// The admin console: a `[[users]]` password, and the user listed in `admin_users`.
async fn admin_login(
    stream: &mut Stream,
    reader: &mut HandshakeReader,
    shared: &Arc<Shared>,
    user: &str,
) -> Result<Option<LoggedIn>, ClientError> {
    let pooler = &shared.config.pooler;
    let mut counted = crate::metrics::LoginGuard::new(shared, ADMIN_DATABASE); // metrics hook
    let outcome = authenticate(
        stream,
        reader,
        pooler.auth_type,
        shared.user(user),
        user,
        &shared.mock_key,
        pooler.max_startup_packet_size,
    )
    .await;
    let Some(mut out) = settle(outcome, &mut counted, false, reader)? else {
        return Ok(None);
    };
    // Checked after the password, so the console does not reveal who is an admin.
    if !shared.is_admin(user) {
        return Err(ClientError::fatal(
            sqlstate::INSUFFICIENT_PRIVILEGE,
            format!(
                "user \"{user}\" is not allowed to use the admin console (see pooler.admin_users)"
            ),
        ));
    }
    backend::authentication_ok(&mut out);
    for (name, value) in [
        (
            "server_version",
            concat!("15.0 (tenantpool ", env!("CARGO_PKG_VERSION"), ")"),
        ),
        ("server_encoding", "UTF8"),
        ("client_encoding", "UTF8"),
        ("DateStyle", "ISO, MDY"),
        ("integer_datetimes", "on"),
        ("standard_conforming_strings", "on"),
        ("application_name", ""),
    ] {
        backend::parameter_status(&mut out, name, value);
    }
    backend::backend_key_data(&mut out, 0, rand::random());
    backend::ready_for_query(&mut out, b'I');
    stream.write_all(&out).await.map_err(|_| gone())?;
    tracing::info!(user, database = ADMIN_DATABASE, peer = %stream.peer(), outcome = "ok", "client login");
    counted.set(crate::metrics::LoginOutcome::Ok); // metrics hook
    Ok(Some(LoggedIn::Admin {
        user: user.to_owned(),
    }))
}

/// The end of an authentication exchange, counted for the metrics: what to send
/// before the greeting, `None` if the client left, or the error to send it.
/// A client must wait for ReadyForQuery after its last authentication message:
/// what it sent before (read with that message) is refused rather than dropped.
fn settle(
    outcome: Result<BytesMut, AuthFail>,
    counted: &mut crate::metrics::LoginGuard,
    token: bool,
    reader: &HandshakeReader,
) -> Result<Option<BytesMut>, ClientError> {
    match outcome {
        Ok(_) if !reader.is_empty() => Err(ClientError::fatal(
            sqlstate::PROTOCOL_VIOLATION,
            "received data before authentication completed",
        )),
        Ok(out) => Ok(Some(out)),
        Err(AuthFail::Gone) => {
            counted.client_left(); // metrics hook
            Ok(None)
        }
        Err(AuthFail::Refused(e)) => {
            counted.auth_failed(token, &e); // metrics hook
            Err(e)
        }
    }
}

/// A client that vanished mid-handshake: nothing will read an error.
fn gone() -> ClientError {
    ClientError::fatal(sqlstate::CONNECTION_FAILURE, "client connection lost")
}

async fn forward_cancel(shared: &Shared, pid: i32, secret: &[u8]) {
    match shared.clients.cancel_target(pid, secret) {
        Some((target, key)) => {
            if let Err(e) = crate::server::cancel::send_cancel(&target, key).await {
                tracing::warn!(error = %e, "forwarding cancel request failed");
            }
        }
        None => tracing::debug!(pid, "cancel request for no running query, ignored"),
    }
}
