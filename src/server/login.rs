//! Connecting and logging in to a PostgreSQL server.

use std::time::Duration;

use bytes::{Buf, BytesMut};
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

use super::{BackendKey, ServerError, ServerTarget};
use crate::net::Stream;
use crate::protocol::backend::{self, Authentication};
use crate::protocol::{frontend, tag, Header};
use crate::tls::server::NegotiateError;

/// Why [`ServerTarget::open_stream`] failed.
#[derive(Debug)]
pub(crate) enum Opened {
    Connect(std::io::Error),
    Tls(NegotiateError),
}

/// Largest message accepted from a server during login (ParameterStatus, errors).
const MAX_LOGIN_MESSAGE: usize = 64 * 1024;

/// A server connection that has finished login and reported ReadyForQuery.
#[derive(Debug)]
pub struct LoggedIn {
    pub stream: Stream,
    pub key: BackendKey,
    /// ParameterStatus values the server reported, in order.
    pub params: Vec<(String, String)>,
    /// Any bytes read past ReadyForQuery (normally none).
    pub leftover: BytesMut,
}

impl ServerTarget {
    /// Connects and logs in, within `connect_timeout`.
    pub async fn connect(&self) -> Result<LoggedIn, ServerError> {
        let timeout = self.connect_timeout;
        tokio::time::timeout(timeout, self.connect_inner())
            .await
            .map_err(|_| ServerError::Timeout {
                target: format!("{self:?}"),
                timeout,
            })?
    }

    async fn connect_inner(&self) -> Result<LoggedIn, ServerError> {
        let connect_err = |source| ServerError::Connect {
            target: format!("{self:?}"),
            source,
        };
        let mut stream = self.open_stream().await.map_err(|e| match e {
            Opened::Connect(e) => connect_err(e),
            Opened::Tls(e) => self.tls_error(e),
        })?;

        let mut out = BytesMut::with_capacity(256);
        frontend::startup_message(
            &mut out,
            &[
                ("user", &self.user),
                ("database", &self.dbname),
                ("application_name", "tenantpool"),
            ],
        );
        stream.write_all(&out).await?;
        // TLS may keep ciphertext back after write_all: flush before every read.
        stream.flush().await?;
        out.clear();

        let mut buf = BytesMut::with_capacity(4096);
        let mut scram: Option<ScramSha256> = None;
        let mut key = BackendKey::default();
        let mut params = Vec::new();
        loop {
            let (header, body) = read_message(&mut stream, &mut buf, self).await?;
            match header.tag {
                tag::AUTHENTICATION => {
                    let auth = backend::decode_authentication(&body)
                        .ok_or_else(|| self.protocol("malformed authentication request"))?;
                    self.authenticate(auth, &mut scram, &mut out)?;
                    if !out.is_empty() {
                        stream.write_all(&out).await?;
                        stream.flush().await?;
                        out.clear();
                    }
                }
                tag::PARAMETER_STATUS => {
                    if let Some((k, v)) = backend::decode_parameter_status(&body) {
                        params.push((k.to_owned(), v.to_owned()));
                    }
                }
                tag::BACKEND_KEY_DATA => {
                    let (pid, secret) = backend::decode_backend_key_data(&body)
                        .ok_or_else(|| self.protocol("malformed BackendKeyData"))?;
                    key = BackendKey {
                        pid,
                        secret: secret.try_into().unwrap_or_default(),
                    };
                }
                tag::READY_FOR_QUERY => {
                    return Ok(LoggedIn {
                        stream,
                        key,
                        params,
                        leftover: buf,
                    })
                }
                tag::ERROR_RESPONSE => {
                    return Err(ServerError::Refused {
                        target: format!("{self:?}"),
                        fields: backend::decode_error_fields(&body),
                    })
                }
                tag::NOTICE_RESPONSE | tag::NEGOTIATE_PROTOCOL_VERSION => {}
                other => {
                    return Err(self.protocol(&format!(
                        "unexpected message '{}' during login",
                        char::from(other)
                    )))
                }
            }
        }
    }

    /// Answers one authentication request into `out`.
    fn authenticate(
        &self,
        auth: Authentication<'_>,
        scram: &mut Option<ScramSha256>,
        out: &mut BytesMut,
    ) -> Result<(), ServerError> {
        let password = || {
            self.password.as_deref().ok_or_else(|| ServerError::Auth {
                target: format!("{self:?}"),
                what: "a password, but none is configured for this database".into(),
            })
        };
        match auth {
            Authentication::Ok => {}
            Authentication::Cleartext => frontend::password_message(out, password()?.as_bytes()),
            Authentication::Md5 { salt } => {
                let hash = postgres_protocol::authentication::md5_hash(
                    self.user.as_bytes(),
                    password()?.as_bytes(),
                    salt,
                );
                frontend::password_message(out, hash.as_bytes());
            }
            Authentication::Sasl { mechanisms } => {
                if !mechanisms.contains(&"SCRAM-SHA-256") {
                    return Err(ServerError::Auth {
                        target: format!("{self:?}"),
                        what: format!("an unsupported SASL mechanism ({})", mechanisms.join(", ")),
                    });
                }
                let s = ScramSha256::new(password()?.as_bytes(), ChannelBinding::unsupported());
                frontend::sasl_initial_response(out, "SCRAM-SHA-256", s.message());
                *scram = Some(s);
            }
            Authentication::SaslContinue(data) => {
                let s = scram
                    .as_mut()
                    .ok_or_else(|| self.protocol("SASL continue before SASL start"))?;
                s.update(data)
                    .map_err(|e| self.protocol(&format!("SCRAM: {e}")))?;
                frontend::sasl_response(out, s.message());
            }
            Authentication::SaslFinal(data) => {
                let mut s = scram
                    .take()
                    .ok_or_else(|| self.protocol("SASL final before SASL start"))?;
                s.finish(data)
                    .map_err(|e| self.protocol(&format!("SCRAM server signature: {e}")))?;
            }
            Authentication::Other(code) => {
                return Err(ServerError::Auth {
                    target: format!("{self:?}"),
                    what: format!("an unsupported authentication method (code {code})"),
                })
            }
        }
        Ok(())
    }

    /// Connects (Unix socket or TCP) and, over TCP, negotiates TLS as configured.
    pub(crate) async fn open_stream(&self) -> Result<Stream, Opened> {
        if self.is_unix() {
            let path = format!("{}/.s.PGSQL.{}", self.host.trim_end_matches('/'), self.port);
            return Ok(Stream::Unix(
                UnixStream::connect(path).await.map_err(Opened::Connect)?,
            ));
        }
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(Opened::Connect)?;
        match &self.tls {
            None => Stream::tcp(tcp).map_err(Opened::Connect),
            Some(tls) => tls.negotiate(tcp, &self.host).await.map_err(Opened::Tls),
        }
    }

    fn tls_error(&self, e: NegotiateError) -> ServerError {
        match e {
            NegotiateError::Io(e) => ServerError::Io(e),
            other => ServerError::Tls {
                target: format!("{self:?}"),
                what: other.to_string(),
            },
        }
    }

    fn protocol(&self, what: &str) -> ServerError {
        ServerError::Protocol {
            target: format!("{self:?}"),
            what: what.into(),
        }
    }
}

/// Reads one whole message; used only during login, where messages are small.
async fn read_message(
    stream: &mut Stream,
    buf: &mut BytesMut,
    target: &ServerTarget,
) -> Result<(Header, BytesMut), ServerError> {
    loop {
        if let Some(header) = Header::parse(buf).map_err(|e| target.protocol(&e.to_string()))? {
            if header.body_len > MAX_LOGIN_MESSAGE {
                return Err(target.protocol("oversized message during login"));
            }
            if buf.len() >= header.total_len() {
                buf.advance(crate::protocol::HEADER_LEN);
                let body = buf.split_to(header.body_len);
                return Ok((header, body));
            }
        }
        if stream.read_buf(buf).await? == 0 {
            return Err(ServerError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "server closed the connection during login",
            )));
        }
    }
}

/// Used by tests and the admin tools: connect timeout default when none configured.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
