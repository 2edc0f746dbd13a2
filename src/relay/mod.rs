//! The hot path: relaying one client's messages to and from the server
//! connection it holds, until the transaction is over.
//!
//! Both directions are driven by one future in the client's task, so there is no
//! task hop per message and no locks; each direction reads into one reusable
//! buffer, frames by header, and writes the bytes on with as few system calls as
//! the data allows.
//!
//! - [`inbound`]: client → server;
//! - [`outbound`]: server → client;
//! - [`track`]: when is the transaction over.

pub mod inbound;
pub mod outbound;
pub mod params;
pub mod prepared;
pub mod refuse;
pub mod track;

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use tokio_util::io::poll_read_buf;

pub use inbound::ClientHalf;
pub use outbound::{OutboundError, ServerHalf};
pub use params::{ClientParams, ServerParams};
pub use prepared::{ClientStatements, Prepared, ServerStatements};
pub use track::Tracker;

use crate::net::Stream;
use crate::pool::ServerConn;
use crate::protocol::FrameError;
use crate::tenant::TenantPolicy;

/// How a relay ended without error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The transaction is over; the server is idle and owes nothing.
    Idle,
    /// The client closed, sent Terminate, or broke its socket.
    ClientGone,
    /// Statement mode: the client opened a transaction block (not yet told).
    TransactionBlock,
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("invalid message from client: {0}")]
    ClientProtocol(FrameError),
    #[error("server connection lost: {0}")]
    ServerIo(io::Error),
    #[error("server closed the connection")]
    ServerClosed,
    #[error(transparent)]
    Server(#[from] OutboundError),
}

/// Everything one relay needs, borrowed from the client session.
pub struct Relay<'a> {
    pub client: &'a mut Stream,
    pub inbound: &'a mut ClientHalf,
    pub server: &'a mut ServerConn,
    pub outbound: &'a mut ServerHalf,
    pub tracker: &'a mut Tracker,
    pub policy: Option<&'a TenantPolicy>,
    pub max_message: usize,
    /// The client's named statements, when they are rewritten (transaction and
    /// statement modes); the server's are in `server.statements`.
    pub statements: Option<&'a mut ClientStatements>,
    /// Most statements one server connection keeps prepared.
    pub max_prepared: usize,
    /// The tenant SET as a Query of its own, to send again if a SET made inside
    /// the client's transaction was undone (see [`crate::tenant::inline`]).
    pub tenant_set: Option<&'a bytes::Bytes>,
}

impl Relay<'_> {
    /// Frames what the client sent that is not framed yet, rewriting statement
    /// names; places any answers the pooler gives itself.
    pub fn scan_client(&mut self) -> Result<(), RelayError> {
        let mut prepared = self.statements.as_deref_mut().map(|client| Prepared {
            client,
            server: &mut self.server.statements,
            max: self.max_prepared,
        });
        self.inbound
            .scan(
                self.tracker,
                self.policy,
                self.max_message,
                prepared.as_mut(),
            )
            .map_err(RelayError::ClientProtocol)?;
        self.outbound
            .emit_pending(&mut self.server.buf, self.tracker);
        Ok(())
    }

    fn scan_server(&mut self) -> Result<(), RelayError> {
        let mut prepared = self.statements.as_deref_mut().map(|client| Prepared {
            client,
            server: &mut self.server.statements,
            max: self.max_prepared,
        });
        self.outbound.scan(
            &mut self.server.buf,
            self.tracker,
            self.policy,
            self.max_message,
            prepared.as_mut(),
        )?;
        Ok(())
    }

    /// The transaction the unsynced tenant SET ran in is over. If it failed, the
    /// SET went with it: once the client has sent more, send the SET again, on
    /// its own, ahead of it. Then let the client's messages go.
    fn settle_unsynced_set(&mut self) -> Result<(), RelayError> {
        if self.outbound.fate != b'I' {
            // A single plain statement cannot leave a transaction open.
            return Err(OutboundError::StillInTransaction(self.outbound.fate).into());
        }
        if self.outbound.rollback_seen {
            if !self.inbound.has_unframed() {
                // Nothing to run yet: keep holding. If the relay ends here, the
                // session stops trusting the server's setting.
                return Ok(());
            }
            if let Some(set) = self.tenant_set {
                self.inbound.set_prefix(set.clone());
                self.outbound.swallowing += 1;
                self.outbound.set_resent = true;
            }
        }
        self.inbound.release_hold();
        self.scan_client()
    }

    fn poll_step(&mut self, cx: &mut Context<'_>) -> Poll<Result<Outcome, RelayError>> {
        // A socket whose read came back Pending has our waker and stays unread
        // until the next poll: asking again costs ~250 instructions for nothing.
        let (mut client_pending, mut server_pending) = (false, false);
        loop {
            let mut progress = false;

            if self.inbound.has_output() {
                if let Poll::Ready(r) = self.inbound.poll_write_to(cx, &mut self.server.stream) {
                    r.map_err(RelayError::ServerIo)?;
                    progress = true;
                }
            }

            if !client_pending && self.inbound.wants_read() {
                self.inbound.reserve();
                match poll_read_buf(Pin::new(&mut *self.client), cx, &mut self.inbound.buf) {
                    Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                        return Poll::Ready(Ok(Outcome::ClientGone))
                    }
                    Poll::Ready(Ok(n)) => {
                        self.tracker.counts.received += n as u64;
                        self.scan_client()?;
                        if self.inbound.holding() && !self.outbound.awaiting_fate {
                            self.settle_unsynced_set()?;
                        }
                        progress = true;
                    }
                    Poll::Pending => client_pending = true,
                }
            }
            if self.inbound.terminated {
                return Poll::Ready(Ok(Outcome::ClientGone));
            }

            // The server is read before the client is written, so the pass that
            // reads the last ReadyForQuery also sends it and ends the relay.
            if !server_pending && self.outbound.wants_read(&self.server.buf) {
                ServerHalf::reserve(&mut self.server.buf);
                match poll_read_buf(Pin::new(&mut self.server.stream), cx, &mut self.server.buf) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(RelayError::ServerClosed)),
                    Poll::Ready(Ok(n)) => {
                        self.tracker.counts.sent += n as u64;
                        self.scan_server()?;
                        if self.inbound.holding() && !self.outbound.awaiting_fate {
                            self.settle_unsynced_set()?;
                        }
                        if self.outbound.transaction_block {
                            self.outbound.transaction_block = false;
                            return Poll::Ready(Ok(Outcome::TransactionBlock));
                        }
                        progress = true;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(RelayError::ServerIo(e))),
                    Poll::Pending => server_pending = true,
                }
            }

            if self.outbound.has_output() {
                let bytes = self.outbound.ready_bytes(&self.server.buf);
                match Pin::new(&mut *self.client).poll_write(cx, bytes) {
                    Poll::Ready(Ok(n)) if n > 0 => {
                        self.outbound.consumed(&mut self.server.buf, n);
                        progress = true;
                    }
                    Poll::Ready(_) => return Poll::Ready(Ok(Outcome::ClientGone)),
                    Poll::Pending => {}
                }
            }

            // TLS: poll_write may take plaintext yet hold the ciphertext back (the
            // socket was full), so flush each side once it has nothing left to write,
            // and call the transaction over only when both are flushed. No-op for TCP.
            let server_flushed = !self.inbound.has_output()
                && match Pin::new(&mut self.server.stream).poll_flush(cx) {
                    Poll::Ready(Ok(())) => true,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(RelayError::ServerIo(e))),
                    Poll::Pending => false,
                };
            let client_flushed = !self.outbound.has_output()
                && match Pin::new(&mut *self.client).poll_flush(cx) {
                    Poll::Ready(Ok(())) => true,
                    Poll::Ready(Err(_)) => return Poll::Ready(Ok(Outcome::ClientGone)),
                    Poll::Pending => false,
                };

            if self.tracker.is_idle()
                && self.inbound.is_drained()
                && self.outbound.is_drained(&self.server.buf)
                && server_flushed
                && client_flushed
            {
                return Poll::Ready(Ok(Outcome::Idle));
            }
            if !progress {
                return Poll::Pending;
            }
        }
    }
}

impl Future for Relay<'_> {
    type Output = Result<Outcome, RelayError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.poll_step(cx)
    }
}
