//! The byte streams the pooler speaks over: TCP, a Unix socket, or TLS over
//! TCP, on either side.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

/// Who is at the other end of a connection, as logs and SHOW CLIENTS show it:
/// `addr:port`, `unix`, or `?`. Kept as an address, not as text: every
/// connected client has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    Tcp(SocketAddr),
    Unix,
    Unknown,
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // In one piece: std writes an IPv4 address and port in nine, each
            // through the log line's escaping writer (one line per connection).
            Peer::Tcp(SocketAddr::V4(addr)) => {
                let mut buf = [0u8; 21]; // "255.255.255.255:65535"
                let mut n = 0;
                let mut digits = itoa::Buffer::new();
                let mut put = |s: &str| {
                    buf[n..n + s.len()].copy_from_slice(s.as_bytes());
                    n += s.len();
                };
                for (k, octet) in addr.ip().octets().into_iter().enumerate() {
                    if k > 0 {
                        put(".");
                    }
                    put(digits.format(octet));
                }
                put(":");
                put(digits.format(addr.port()));
                // `pad` honours width and precision, as std's Display does.
                f.pad(std::str::from_utf8(&buf[..n]).expect("ASCII digits and dots"))
            }
            Peer::Tcp(addr) => addr.fmt(f),
            Peer::Unix => f.write_str("unix"),
            Peer::Unknown => f.write_str("?"),
        }
    }
}

/// A connected socket.
#[derive(Debug)]
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
    /// A client connection after its TLS handshake (boxed: rustls state is large).
    ClientTls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    /// A server connection after its TLS handshake.
    ServerTls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// Left behind while a TCP stream is moved into a TLS handshake, and after a
    /// failed one: reads see EOF, writes fail, so nothing is ever sent in the clear
    /// on a connection that started TLS.
    Closed,
}

impl Stream {
    /// Wraps a TCP stream with Nagle off: the protocol is request/response, and a
    /// delayed small write costs a round trip of latency.
    pub fn tcp(stream: TcpStream) -> io::Result<Self> {
        stream.set_nodelay(true)?;
        Ok(Stream::Tcp(stream))
    }

    /// The TCP socket underneath, encrypted or not.
    pub fn tcp_ref(&self) -> Option<&TcpStream> {
        match self {
            Stream::Tcp(s) => Some(s),
            Stream::ClientTls(s) => Some(s.get_ref().0),
            Stream::ServerTls(s) => Some(s.get_ref().0),
            Stream::Unix(_) | Stream::Closed => None,
        }
    }

    /// Whether the peer is on this machine (loopback TCP or a Unix socket),
    /// whether or not the connection is encrypted.
    pub fn is_local(&self) -> bool {
        match self {
            Stream::Unix(_) => true,
            _ => self.tcp_ref().is_some_and(|s| {
                s.peer_addr()
                    .map(|a| a.ip().to_canonical().is_loopback())
                    .unwrap_or(false)
            }),
        }
    }

    /// Whether the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::ClientTls(_) | Stream::ServerTls(_))
    }

    pub fn peer(&self) -> Peer {
        match self {
            Stream::Unix(_) => Peer::Unix,
            _ => self
                .tcp_ref()
                .and_then(|s| s.peer_addr().ok())
                .map_or(Peer::Unknown, Peer::Tcp),
        }
    }

    /// Ready once a read would make progress (data, EOF or error), without reading.
    /// For TLS, rustls may already hold decrypted bytes the socket no longer
    /// signals, so this is ready at once then. Readiness of the socket alone may
    /// turn out to be a partial record or a TLS-only message; the caller's read
    /// then simply waits for more, as after any spurious wakeup.
    pub fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Stream::Tcp(s) => s.poll_read_ready(cx),
            Stream::Unix(s) => s.poll_read_ready(cx),
            Stream::ClientTls(s) => {
                let (tcp, conn) = s.get_ref();
                if conn.wants_read() {
                    tcp.poll_read_ready(cx)
                } else {
                    Poll::Ready(Ok(()))
                }
            }
            Stream::ServerTls(s) => {
                let (tcp, conn) = s.get_ref();
                if conn.wants_read() {
                    tcp.poll_read_ready(cx)
                } else {
                    Poll::Ready(Ok(()))
                }
            }
            Stream::Closed => Poll::Ready(Ok(())),
        }
    }

    /// Whether nothing has arrived (no data, no EOF, no error), without waiting.
    /// Used on idle pooled server connections, where anything at all means the
    /// server closed it or spoke unasked. The kernel is asked (one non-blocking
    /// `recv` with `MSG_PEEK`): the reactor's readiness can lag behind a FIN the
    /// kernel already has when the runtime is busy, and lending a dead connection
    /// would fail the client's transaction. For TLS, records that carry no data
    /// (session tickets, key updates) are processed and leave it quiet; data that
    /// did arrive is consumed, which is fine as the connection is then discarded.
    pub fn is_quiet(&mut self) -> bool {
        use std::os::fd::AsRawFd;
        let mut cx = Context::from_waker(Waker::noop());
        match self {
            Stream::Tcp(s) => socket_is_quiet(s.as_raw_fd()),
            Stream::Unix(s) => socket_is_quiet(s.as_raw_fd()),
            // Decrypted data already waiting, or the peer's close_notify.
            Stream::ClientTls(s) if !s.get_ref().1.wants_read() => false,
            Stream::ServerTls(s) if !s.get_ref().1.wants_read() => false,
            Stream::ClientTls(s) if socket_is_quiet(s.get_ref().0.as_raw_fd()) => true,
            Stream::ServerTls(s) if socket_is_quiet(s.get_ref().0.as_raw_fd()) => true,
            Stream::ClientTls(_) | Stream::ServerTls(_) => {
                // Bytes arrived: a record without data leaves the stream pending.
                let mut probe = [0u8; 1];
                let mut buf = ReadBuf::new(&mut probe);
                Pin::new(self).poll_read(&mut cx, &mut buf).is_pending()
            }
            Stream::Closed => false,
        }
    }
}

/// Nothing to read on the socket, not even EOF or an error.
fn socket_is_quiet(fd: std::os::fd::RawFd) -> bool {
    let mut probe = 0u8;
    // SAFETY: `fd` is an open socket owned by the caller's stream for the call's
    // duration, and `probe` is a valid one-byte buffer.
    let n = unsafe {
        libc::recv(
            fd,
            (&mut probe as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "connection closed")
}

impl AsyncRead for Stream {
    #[inline]
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Stream::ClientTls(s) => Pin::new(&mut **s).poll_read(cx, buf),
            Stream::ServerTls(s) => Pin::new(&mut **s).poll_read(cx, buf),
            Stream::Closed => Poll::Ready(Ok(())),
        }
    }
}

impl AsyncWrite for Stream {
    #[inline]
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
            Stream::ClientTls(s) => Pin::new(&mut **s).poll_write(cx, buf),
            Stream::ServerTls(s) => Pin::new(&mut **s).poll_write(cx, buf),
            Stream::Closed => Poll::Ready(Err(closed())),
        }
    }

    #[inline]
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::ClientTls(s) => Pin::new(&mut **s).poll_write_vectored(cx, bufs),
            Stream::ServerTls(s) => Pin::new(&mut **s).poll_write_vectored(cx, bufs),
            Stream::Closed => Poll::Ready(Err(closed())),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::ClientTls(s) => s.is_write_vectored(),
            Stream::ServerTls(s) => s.is_write_vectored(),
            _ => true,
        }
    }

    #[inline]
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
            Stream::ClientTls(s) => Pin::new(&mut **s).poll_flush(cx),
            Stream::ServerTls(s) => Pin::new(&mut **s).poll_flush(cx),
            Stream::Closed => Poll::Ready(Err(closed())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Stream::ClientTls(s) => Pin::new(&mut **s).poll_shutdown(cx),
            Stream::ServerTls(s) => Pin::new(&mut **s).poll_shutdown(cx),
            Stream::Closed => Poll::Ready(Ok(())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_shows_as_std_shows_its_address() {
        for addr in [
            "127.0.0.1:5432",
            "0.0.0.0:0",
            "255.255.255.255:65535",
            "10.20.3.104:9",
            "[::1]:6432",
            "[fe80::1%2]:1",
        ] {
            let addr: SocketAddr = addr.parse().unwrap();
            let peer = Peer::Tcp(addr);
            assert_eq!(peer.to_string(), addr.to_string());
            assert_eq!(format!("{peer:>24}"), format!("{addr:>24}"));
            assert_eq!(format!("{peer:.7}"), format!("{addr:.7}"));
        }
        assert_eq!(Peer::Unix.to_string(), "unix");
        assert_eq!(Peer::Unknown.to_string(), "?");
    }
}
