//! Reading a connection's first packet(s): answering SSLRequest and
//! GSSENCRequest with `N` (no encryption yet), until a StartupMessage or a
//! CancelRequest arrives.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::{sqlstate, ClientError};
use crate::net::Stream;
use crate::protocol::startup::{self, StartupError, StartupMessage, StartupPacket};

/// What a connection turned out to be.
#[derive(Debug)]
pub enum First {
    Startup(StartupMessage),
    Cancel { pid: i32, secret: Vec<u8> },
}

/// Why the first packet could not be read.
#[derive(Debug)]
pub enum StartupFail {
    /// The client went away or its socket failed: nothing to tell it.
    Gone,
    /// The client sent something invalid: tell it, then close.
    Refused(ClientError),
}

impl From<StartupError> for StartupFail {
    fn from(e: StartupError) -> Self {
        let code = match e {
            StartupError::UnsupportedVersion { .. } => sqlstate::FEATURE_NOT_SUPPORTED,
            _ => sqlstate::PROTOCOL_VIOLATION,
        };
        StartupFail::Refused(ClientError::fatal(code, e.to_string()))
    }
}

/// Reads packets until a StartupMessage or CancelRequest. `max` bounds each packet.
pub async fn read_first(stream: &mut Stream, max: usize) -> Result<First, StartupFail> {
    // A client may ask for GSS and then SSL encryption, each once, before starting up.
    for _ in 0..3 {
        let mut prefix = [0u8; 4];
        stream
            .read_exact(&mut prefix)
            .await
            .map_err(|_| StartupFail::Gone)?;
        let len = startup::body_len(prefix, max)?;
        let mut body = vec![0u8; len];
        stream
            .read_exact(&mut body)
            .await
            .map_err(|_| StartupFail::Gone)?;
        match startup::decode(&body)? {
            StartupPacket::SslRequest | StartupPacket::GssEncRequest => {
                stream
                    .write_all(b"N")
                    .await
                    .map_err(|_| StartupFail::Gone)?;
            }
            StartupPacket::CancelRequest { pid, secret } => {
                return Ok(First::Cancel { pid, secret })
            }
            StartupPacket::Startup(m) => return Ok(First::Startup(m)),
        }
    }
    Err(StartupFail::Refused(ClientError::fatal(
        sqlstate::PROTOCOL_VIOLATION,
        "too many encryption requests before the startup packet",
    )))
}
