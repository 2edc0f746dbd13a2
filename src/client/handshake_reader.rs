//! The handshake's read buffer. The startup packets and the authentication
//! messages are read through it, as much as the socket has at a time: a packet
//! costs one read instead of two (its length, then its body), and a read shorter
//! than the buffer tells tokio the socket is drained, so the wait for the
//! client's next answer starts without a read that fails with EAGAIN.

use bytes::BytesMut;
use tokio::io::AsyncReadExt;

use crate::net::Stream;

/// How much one read asks for: any startup packet a driver sends in practice.
const READ_SIZE: usize = 512;

#[derive(Default)]
pub struct HandshakeReader {
    buf: BytesMut,
}

impl HandshakeReader {
    /// Reads until `n` bytes are buffered. Callers bound `n` (by a packet's
    /// checked length) before asking. An error: the client left or its socket failed.
    pub async fn fill(&mut self, stream: &mut Stream, n: usize) -> std::io::Result<()> {
        while self.buf.len() < n {
            self.buf.reserve((n - self.buf.len()).max(READ_SIZE));
            if stream.read_buf(&mut self.buf).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
        Ok(())
    }

    /// What has been read and not taken.
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    /// Takes the first `n` buffered bytes (`n` ≤ [`Self::buffered`]'s length).
    pub fn take(&mut self, n: usize) -> BytesMut {
        self.buf.split_to(n)
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}
