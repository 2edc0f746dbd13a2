//! The server side of SCRAM-SHA-256 (RFC 5802, RFC 7677), following
//! PostgreSQL's `auth-scram.c`.
//!
//! Sans-IO: the caller sends AuthenticationSASL with [`MECHANISM`], passes
//! the SASLInitialResponse data to [`ScramExchange::client_first`] and sends
//! the result in AuthenticationSASLContinue, then passes the SASLResponse
//! data to [`ScramExchange::client_final`] and sends the result in
//! AuthenticationSASLFinal (followed by AuthenticationOk).
//!
//! Channel binding is not offered (no TLS), so only the gs2 headers `n,,`
//! and `y,,` are accepted. As in PostgreSQL, the username in the
//! client-first-message is ignored: the user came from the startup packet.

use std::fmt::Write;
use std::mem;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::secret::ScramVerifier;
use super::AuthError;

/// The SASL mechanism name to offer in AuthenticationSASL.
pub const MECHANISM: &str = "SCRAM-SHA-256";

/// Random bytes in the server's part of the nonce (PostgreSQL's
/// SCRAM_RAW_NONCE_LEN).
const SERVER_NONCE_LEN: usize = 18;

/// One SCRAM-SHA-256 authentication exchange with one client.
pub struct ScramExchange {
    verifier: ScramVerifier,
    always_fail: bool,
    state: State,
    /// Lets tests replay one client's messages against several exchanges.
    #[cfg(test)]
    fixed_server_nonce: Option<String>,
}

enum State {
    /// Waiting for the client-first-message.
    Initial,
    /// server-first-message sent; waiting for the client-final-message.
    Continue {
        /// base64 of the gs2 header, which the client must echo in `c=`.
        cbind: String,
        client_first_bare: String,
        server_first: String,
        /// Where the nonce (client's then server's) ends in `server_first`;
        /// it starts after `r=`.
        nonce_end: usize,
    },
    /// Finished, successfully or not; any further message is out of order.
    Done,
}

impl ScramExchange {
    /// `verifier` is the user's (or a mock one for an unknown user; then
    /// `always_fail = true` makes the proof fail while everything else
    /// behaves identically).
    pub fn new(verifier: ScramVerifier, always_fail: bool) -> Self {
        ScramExchange {
            verifier,
            always_fail,
            state: State::Initial,
            #[cfg(test)]
            fixed_server_nonce: None,
        }
    }

    #[cfg(test)]
    pub(super) fn with_server_nonce(
        verifier: ScramVerifier,
        always_fail: bool,
        server_nonce: &str,
    ) -> Self {
        let mut ex = Self::new(verifier, always_fail);
        ex.fixed_server_nonce = Some(server_nonce.to_owned());
        ex
    }

    /// Input: the data of SASLInitialResponse (client-first-message).
    /// Output: the server-first-message `r=<nonce>,s=<salt>,i=<iterations>`.
    pub fn client_first(&mut self, data: &[u8]) -> Result<Vec<u8>, AuthError> {
        // Any error ends the exchange, as in PostgreSQL.
        if !matches!(mem::replace(&mut self.state, State::Done), State::Initial) {
            return Err(AuthError::Malformed("unexpected client-first-message"));
        }
        let msg = as_text(data)?;
        let (gs2_header, bare) = split_gs2_header(msg)?;
        let client_nonce = parse_client_first_bare(bare)?;

        // r=<client nonce><server nonce>,s=<salt>,i=<iterations>, built in place:
        // this runs for every login.
        let mut server_first = String::with_capacity(client_nonce.len() + 80);
        server_first.push_str("r=");
        server_first.push_str(client_nonce);
        self.push_server_nonce(&mut server_first);
        let nonce_end = server_first.len();
        server_first.push_str(",s=");
        STANDARD.encode_string(&self.verifier.salt, &mut server_first);
        let _ = write!(server_first, ",i={}", self.verifier.iterations);
        let reply = server_first.as_bytes().to_vec();
        self.state = State::Continue {
            cbind: STANDARD.encode(gs2_header),
            nonce_end,
            client_first_bare: bare.to_owned(),
            server_first,
        };
        Ok(reply)
    }

    /// Input: the client-final-message `c=<cbind>,r=<nonce>[,ext...],p=<proof>`.
    /// Checks the channel-binding echo, the nonce and the proof.
    /// Output: the server-final-message `v=<ServerSignature>`.
    pub fn client_final(&mut self, data: &[u8]) -> Result<Vec<u8>, AuthError> {
        let State::Continue {
            cbind,
            client_first_bare,
            server_first,
            nonce_end,
        } = mem::replace(&mut self.state, State::Done)
        else {
            return Err(AuthError::Malformed("unexpected client-final-message"));
        };
        let msg = as_text(data)?;
        let mut fields = msg.split(',');

        let client_cbind = attr_value(fields.next(), 'c', "expected channel binding")?;
        // Compared as text, like PostgreSQL: the client must echo our header
        // exactly.
        if client_cbind != cbind {
            return Err(AuthError::Malformed(
                "channel binding data does not match the gs2 header",
            ));
        }
        if attr_value(fields.next(), 'r', "expected nonce")? != &server_first[2..nonce_end] {
            return Err(AuthError::Malformed("nonce does not match"));
        }
        // Extensions may come before the proof, which must be last.
        let proof_field = loop {
            let Some(field) = fields.next() else {
                return Err(AuthError::Malformed("missing proof"));
            };
            if attr_name(field)? == 'p' {
                break field;
            }
        };
        if fields.next().is_some() {
            return Err(AuthError::Malformed("data after the proof"));
        }
        // decode_slice wants room for its estimate: 33 bytes for the 44 characters of 32.
        let mut decoded = [0u8; 33];
        let proof: [u8; 32] = attr_value(Some(proof_field), 'p', "missing proof")
            .ok()
            .and_then(|p| STANDARD.decode_slice(p, &mut decoded).ok())
            .and_then(|n| decoded[..n].try_into().ok())
            .ok_or(AuthError::Malformed("invalid proof"))?;
        // `proof_field` is the last field, so this drops ",p=...".
        let without_proof = msg
            .strip_suffix(proof_field)
            .and_then(|m| m.strip_suffix(','))
            .ok_or(AuthError::Malformed("missing proof"))?;

        // AuthMessage = client-first-bare "," server-first "," client-final-without-proof
        let auth_message = [
            client_first_bare.as_bytes(),
            b",",
            server_first.as_bytes(),
            b",",
            without_proof.as_bytes(),
        ];
        let client_signature = hmac(&self.verifier.stored_key, &auth_message);
        let mut client_key = proof;
        for (k, s) in client_key.iter_mut().zip(client_signature) {
            *k ^= s;
        }
        let computed: [u8; 32] = Sha256::digest(client_key).into();
        // Always do the full check, even for a mock verifier, so the timing
        // does not tell whether the user exists.
        let matches: bool = computed.ct_eq(&self.verifier.stored_key).into();
        if !matches || self.always_fail {
            return Err(AuthError::Failed);
        }
        let server_signature = hmac(&self.verifier.server_key, &auth_message);
        let mut reply = String::with_capacity(46);
        reply.push_str("v=");
        STANDARD.encode_string(server_signature, &mut reply);
        Ok(reply.into_bytes())
    }

    /// Appends the server's part of the nonce: random bytes, base64.
    fn push_server_nonce(&self, out: &mut String) {
        #[cfg(test)]
        if let Some(n) = &self.fixed_server_nonce {
            out.push_str(n);
            return;
        }
        let mut raw = [0u8; SERVER_NONCE_LEN];
        // ThreadRng is a CSPRNG seeded from the OS.
        rand::fill(&mut raw[..]);
        STANDARD.encode_string(raw, out);
    }
}

/// SCRAM messages are text without NULs (PostgreSQL treats them as C strings).
fn as_text(data: &[u8]) -> Result<&str, AuthError> {
    if data.is_empty() {
        return Err(AuthError::Malformed("empty SCRAM message"));
    }
    if data.contains(&0) {
        return Err(AuthError::Malformed("NUL in SCRAM message"));
    }
    std::str::from_utf8(data).map_err(|_| AuthError::Malformed("SCRAM message is not UTF-8"))
}

/// Splits `gs2-header client-first-message-bare`; the header is returned
/// whole because the client must echo it (base64) in the final message.
fn split_gs2_header(msg: &str) -> Result<(&str, &str), AuthError> {
    let after_flag = if let Some(rest) = msg.strip_prefix("n,") {
        rest
    } else if let Some(rest) = msg.strip_prefix("y,") {
        // The client could do channel binding but thinks we can't: true.
        rest
    } else if msg.starts_with("p=") {
        return Err(AuthError::Unsupported("channel binding is not supported"));
    } else {
        return Err(AuthError::Malformed("invalid gs2 header"));
    };
    if let Some(bare) = after_flag.strip_prefix(',') {
        let header = msg.strip_suffix(bare).unwrap_or_default();
        Ok((header, bare))
    } else if after_flag.starts_with("a=") {
        Err(AuthError::Unsupported(
            "authorization identity is not supported",
        ))
    } else {
        Err(AuthError::Malformed("invalid gs2 header"))
    }
}

/// Parses `n=<user>,r=<client nonce>[,ext...]` and returns the nonce.
fn parse_client_first_bare(bare: &str) -> Result<&str, AuthError> {
    let mut fields = bare.split(',');
    let first = fields.next().unwrap_or_default();
    if first.starts_with("m=") {
        return Err(AuthError::Unsupported("SCRAM extensions are not supported"));
    }
    // The username is ignored: the user came from the startup packet.
    attr_value(Some(first), 'n', "expected username")?;
    let nonce = attr_value(fields.next(), 'r', "expected nonce")?;
    if nonce.is_empty() {
        return Err(AuthError::Malformed("empty nonce"));
    }
    // printable = %x21-2B / %x2D-7E (',' cannot occur: we split on it).
    if !nonce.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(AuthError::Malformed("non-printable characters in nonce"));
    }
    // Optional extensions, which PostgreSQL ignores too.
    for field in fields {
        attr_name(field)?;
    }
    Ok(nonce)
}

/// The value of `field` if it is `<name>=<value>`.
fn attr_value<'a>(
    field: Option<&'a str>,
    name: char,
    err: &'static str,
) -> Result<&'a str, AuthError> {
    field
        .and_then(|f| f.strip_prefix(name))
        .and_then(|f| f.strip_prefix('='))
        .ok_or(AuthError::Malformed(err))
}

/// The attribute name of `field`, which must be `<ALPHA>=<value>`.
fn attr_name(field: &str) -> Result<char, AuthError> {
    match field.as_bytes() {
        [name, b'=', ..] if name.is_ascii_alphabetic() => Ok(char::from(*name)),
        _ => Err(AuthError::Malformed("expected attribute")),
    }
}

/// HMAC-SHA-256 of the concatenated `parts`.
fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC accepts keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}
