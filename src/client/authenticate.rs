//! Authenticating a client against `[[users]]`: SCRAM-SHA-256 or md5.
//!
//! An unknown user goes through the same exchange as a known one (a mock SCRAM
//! verifier, a random md5 salt) and gets the same message, so the pooler does not
//! reveal which users exist.

use bytes::{Buf, BytesMut};
use tokio::io::AsyncWriteExt;

use super::handshake_reader::HandshakeReader;

use crate::auth::{md5, AuthError, ScramExchange, ScramVerifier, Secret, MECHANISM};
use crate::config::AuthType;
use crate::error::{sqlstate, ClientError};
use crate::net::Stream;
use crate::protocol::{backend, frontend, tag, Header, HEADER_LEN};

/// Why authentication did not succeed.
#[derive(Debug)]
pub enum AuthFail {
    /// The client hung up mid-exchange (psql does this to prompt for a password).
    Gone,
    Refused(ClientError),
}

fn failed(user: &str) -> AuthFail {
    AuthFail::Refused(ClientError::fatal(
        sqlstate::INVALID_PASSWORD,
        format!("password authentication failed for user \"{user}\""),
    ))
}

fn protocol(message: &str) -> AuthFail {
    AuthFail::Refused(ClientError::fatal(sqlstate::PROTOCOL_VIOLATION, message))
}

/// Runs the exchange. `shown_user` is the name the client logged in with (used in
/// messages). On success, returns what the client must get before
/// AuthenticationOk (SCRAM's final message; nothing for md5), for the caller to
/// send with the greeting in one write.
pub async fn authenticate(
    stream: &mut Stream,
    reader: &mut HandshakeReader,
    method: AuthType,
    secret: Option<&Secret>,
    shown_user: &str,
    mock_key: &[u8; 32],
    max_message: usize,
) -> Result<BytesMut, AuthFail> {
    match method {
        AuthType::ScramSha256 => {
            let (verifier, always_fail) = match secret.and_then(Secret::scram) {
                Some(v) => (v.clone(), false),
                None => (ScramVerifier::mock(shown_user, mock_key), true),
            };
            scram(
                stream,
                reader,
                ScramExchange::new(verifier, always_fail),
                shown_user,
                max_message,
            )
            .await
        }
        AuthType::Md5 => {
            let salt: [u8; 4] = rand::random();
            let mut out = BytesMut::with_capacity(16);
            backend::authentication_md5(&mut out, salt);
            send(stream, &out).await?;
            let body = read_password_message(stream, reader, max_message).await?;
            let response = frontend::decode_password(&body)
                .ok_or_else(|| protocol("malformed password message"))?;
            // The client salts with the user name it logged in with ("app.acme"), not
            // the pooler user the stored hash was made for ("app"): from a plaintext
            // password, hash for that name. A configured md5 hash only fits its own user.
            let stored = secret.and_then(|s| match s.plaintext() {
                Some(password) => Some(md5::hash_password(password, shown_user)),
                None => s.md5().copied(),
            });
            match stored {
                Some(stored) if md5::verify(&stored, salt, response) => Ok(BytesMut::new()),
                _ => Err(failed(shown_user)),
            }
        }
    }
}

/// Asks for a cleartext password (a token) and returns it. Only called where the
/// connection is encrypted or local.
pub async fn read_token(
    stream: &mut Stream,
    reader: &mut HandshakeReader,
    max_message: usize,
) -> Result<String, AuthFail> {
    let mut out = BytesMut::with_capacity(16);
    backend::authentication_cleartext(&mut out);
    send(stream, &out).await?;
    let body = read_password_message(stream, reader, max_message).await?;
    let token =
        frontend::decode_password(&body).ok_or_else(|| protocol("malformed password message"))?;
    String::from_utf8(token.to_vec()).map_err(|_| protocol("token is not valid UTF-8"))
}

async fn scram(
    stream: &mut Stream,
    reader: &mut HandshakeReader,
    mut exchange: ScramExchange,
    shown_user: &str,
    max_message: usize,
) -> Result<BytesMut, AuthFail> {
    let mut out = BytesMut::with_capacity(128);
    backend::authentication_sasl(&mut out, &[MECHANISM]);
    send(stream, &out).await?;

    let body = read_password_message(stream, reader, max_message).await?;
    let (mechanism, data) = frontend::decode_sasl_initial_response(&body)
        .ok_or_else(|| protocol("malformed SASLInitialResponse"))?;
    if mechanism != MECHANISM {
        return Err(protocol(
            "client selected an invalid SASL authentication mechanism",
        ));
    }
    let server_first = exchange
        .client_first(data)
        .map_err(|e| scram_error(e, shown_user))?;
    out.clear();
    backend::authentication_sasl_continue(&mut out, &server_first);
    send(stream, &out).await?;

    let body = read_password_message(stream, reader, max_message).await?;
    let server_final = exchange
        .client_final(&body)
        .map_err(|e| scram_error(e, shown_user))?;
    out.clear();
    backend::authentication_sasl_final(&mut out, &server_final);
    Ok(out)
}

fn scram_error(e: AuthError, user: &str) -> AuthFail {
    match e {
        AuthError::Failed => failed(user),
        other => AuthFail::Refused(ClientError::fatal(other.sqlstate(), other.to_string())),
    }
}

async fn send(stream: &mut Stream, bytes: &[u8]) -> Result<(), AuthFail> {
    stream.write_all(bytes).await.map_err(|_| AuthFail::Gone)?;
    // A reply is awaited next; TLS may hold the bytes back until flushed.
    stream.flush().await.map_err(|_| AuthFail::Gone)
}

/// Reads one PasswordMessage-family message ('p') whole, bounded by `max`, and
/// returns its body.
async fn read_password_message(
    stream: &mut Stream,
    reader: &mut HandshakeReader,
    max: usize,
) -> Result<BytesMut, AuthFail> {
    reader
        .fill(stream, HEADER_LEN)
        .await
        .map_err(|_| AuthFail::Gone)?;
    let h = match Header::parse(reader.buffered()) {
        Ok(Some(h)) => h,
        Err(e) => return Err(protocol(&e.to_string())),
        // Not after a whole header was buffered.
        Ok(None) => return Err(AuthFail::Gone),
    };
    if h.tag != tag::PASSWORD {
        return Err(protocol(&format!(
            "expected password response, got message type '{}'",
            char::from(h.tag)
        )));
    }
    if h.total_len() > max {
        return Err(protocol("authentication message too long"));
    }
    reader
        .fill(stream, h.total_len())
        .await
        .map_err(|_| AuthFail::Gone)?;
    let mut message = reader.take(h.total_len());
    message.advance(HEADER_LEN);
    Ok(message)
}
