//! The console connection's byte level: whole messages in (each at most
//! [`MAX_MESSAGE`] bytes), answers buffered out and written at sync points.

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::net::Stream;
use crate::protocol::{FrameError, Header};

/// The largest message the console accepts; commands are short.
pub const MAX_MESSAGE: usize = 64 * 1024;
/// Buffered output beyond which it is written out without waiting for a sync point.
const OUT_HIGH_WATER: usize = 256 * 1024;

/// One frontend message.
pub struct Message {
    pub tag: u8,
    pub body: Bytes,
}

#[derive(Debug)]
pub enum ReadError {
    /// The client left (EOF, possibly mid-message, or a socket error).
    Gone,
    /// A length field that no valid message has.
    Malformed(FrameError),
    TooLarge {
        tag: u8,
        len: usize,
    },
}

pub struct Conn {
    stream: Stream,
    inbuf: BytesMut,
    /// Answers not yet written.
    pub out: BytesMut,
}

impl Conn {
    pub fn new(stream: Stream) -> Self {
        Conn {
            stream,
            inbuf: BytesMut::with_capacity(1024),
            out: BytesMut::with_capacity(4096),
        }
    }

    /// The next whole message; `Ok(None)` at a clean end of stream. Cancel safe:
    /// bytes already read stay buffered for the next call.
    pub async fn read(&mut self) -> Result<Option<Message>, ReadError> {
        loop {
            match Header::parse(&self.inbuf) {
                Err(e) => return Err(ReadError::Malformed(e)),
                Ok(Some(h)) if h.body_len > MAX_MESSAGE => {
                    return Err(ReadError::TooLarge {
                        tag: h.tag,
                        len: h.total_len() - 1,
                    })
                }
                Ok(Some(h)) if self.inbuf.len() >= h.total_len() => {
                    let mut message = self.inbuf.split_to(h.total_len());
                    let body = message.split_off(crate::protocol::HEADER_LEN).freeze();
                    return Ok(Some(Message { tag: h.tag, body }));
                }
                Ok(_) => {}
            }
            self.inbuf.reserve(8 * 1024);
            match self.stream.read_buf(&mut self.inbuf).await {
                Ok(0) if self.inbuf.is_empty() => return Ok(None),
                Ok(0) | Err(_) => return Err(ReadError::Gone),
                Ok(_) => {}
            }
        }
    }

    /// Writes everything buffered.
    pub async fn flush(&mut self) -> std::io::Result<()> {
        if !self.out.is_empty() {
            self.stream.write_all(&self.out).await?;
            self.out.clear();
        }
        self.stream.flush().await
    }

    /// Writes out a large buffered answer early, so memory stays bounded.
    pub async fn flush_if_large(&mut self) -> std::io::Result<()> {
        if self.out.len() > OUT_HIGH_WATER {
            self.flush().await
        } else {
            Ok(())
        }
    }
}
