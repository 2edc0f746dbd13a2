//! The PostgreSQL frontend/backend protocol, version 3.0, as far as the pooler needs it.
//!
//! The pooler frames every message by its header (tag + length) and decodes only
//! the few it must act on. Reference: <https://www.postgresql.org/docs/current/protocol-message-formats.html>.
//!
//! - [`frame`]: message headers and the streaming framer used on the relay path;
//! - [`startup`]: the untagged first packet (SSLRequest, GSSENCRequest, CancelRequest, StartupMessage);
//! - [`backend`]: messages a server sends (we encode them for clients and decode them from servers);
//! - [`frontend`]: messages a client sends (we encode them for servers and decode them from clients).

pub mod backend;
pub mod frame;
pub mod frontend;
pub mod fuzzing;
pub mod startup;

pub use frame::{FrameError, Header, HEADER_LEN};

/// Message tags we look at. Everything else is relayed by length alone.
pub mod tag {
    // frontend
    pub const QUERY: u8 = b'Q';
    pub const PARSE: u8 = b'P';
    pub const BIND: u8 = b'B';
    pub const DESCRIBE: u8 = b'D';
    pub const EXECUTE: u8 = b'E';
    pub const CLOSE: u8 = b'C';
    pub const SYNC: u8 = b'S';
    pub const FLUSH: u8 = b'H';
    pub const FUNCTION_CALL: u8 = b'F';
    pub const COPY_DATA: u8 = b'd';
    pub const COPY_DONE: u8 = b'c';
    pub const COPY_FAIL: u8 = b'f';
    pub const TERMINATE: u8 = b'X';
    pub const PASSWORD: u8 = b'p';

    // backend
    pub const AUTHENTICATION: u8 = b'R';
    pub const PARAMETER_STATUS: u8 = b'S';
    pub const BACKEND_KEY_DATA: u8 = b'K';
    pub const READY_FOR_QUERY: u8 = b'Z';
    pub const ERROR_RESPONSE: u8 = b'E';
    pub const NOTICE_RESPONSE: u8 = b'N';
    pub const COMMAND_COMPLETE: u8 = b'C';
    pub const COPY_IN_RESPONSE: u8 = b'G';
    pub const COPY_OUT_RESPONSE: u8 = b'H';
    pub const COPY_BOTH_RESPONSE: u8 = b'W';
    pub const NEGOTIATE_PROTOCOL_VERSION: u8 = b'v';
}
