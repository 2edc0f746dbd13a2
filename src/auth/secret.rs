//! Password secrets: SCRAM-SHA-256 verifiers and md5 hashes.
//!
//! The config may give a user's password as plaintext, as a PostgreSQL
//! SCRAM-SHA-256 verifier, or as a PostgreSQL md5 hash; [`Secret`] turns
//! each into what the auth methods it can serve need. Everything expensive
//! (PBKDF2) happens here, once, never per login.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

const SCRAM_PREFIX: &str = "SCRAM-SHA-256$";
/// PostgreSQL's default iteration count, used for mock verifiers so an
/// unknown user's server-first-message looks like a real one's.
const MOCK_ITERATIONS: u32 = 4096;
/// PostgreSQL's default salt length.
const MOCK_SALT_LEN: usize = 16;

/// Why a configured password could not be used. Never contains the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// PostgreSQL never accepts an empty password.
    #[error("password is empty")]
    Empty,
    /// PostgreSQL passwords are C strings.
    #[error("password contains a NUL character")]
    ContainsNul,
    /// The value starts like a SCRAM verifier but is not a valid one.
    #[error("invalid SCRAM-SHA-256 verifier: {0}")]
    InvalidScram(&'static str),
    /// The value looks like an md5 hash but is not a valid one.
    #[error("invalid md5 password hash: {0}")]
    InvalidMd5(&'static str),
}

/// A SCRAM-SHA-256 verifier as stored in pg_authid.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramVerifier {
    /// PBKDF2 iteration count the client must use.
    pub iterations: u32,
    /// PBKDF2 salt (raw bytes; base64 on the wire).
    pub salt: Vec<u8>,
    /// H(ClientKey): checks the client's proof.
    pub stored_key: [u8; 32],
    /// Signs the server-final-message.
    pub server_key: [u8; 32],
}

impl ScramVerifier {
    /// Parse `SCRAM-SHA-256$<iter>:<b64 salt>$<b64 StoredKey>:<b64 ServerKey>`.
    pub fn parse(s: &str) -> Result<Self, SecretError> {
        let rest = s
            .strip_prefix(SCRAM_PREFIX)
            .ok_or(SecretError::InvalidScram(
                "missing \"SCRAM-SHA-256$\" prefix",
            ))?;
        let (params, keys) = rest
            .split_once('$')
            .ok_or(SecretError::InvalidScram("missing '$' before the keys"))?;
        let (iterations, salt) = params.split_once(':').ok_or(SecretError::InvalidScram(
            "missing ':' between iterations and salt",
        ))?;
        let (stored_key, server_key) = keys
            .split_once(':')
            .ok_or(SecretError::InvalidScram("missing ':' between the keys"))?;

        // `u32::from_str` would also take a leading '+'.
        if iterations.is_empty() || !iterations.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SecretError::InvalidScram("iteration count is not a number"));
        }
        let iterations: u32 = iterations
            .parse()
            .map_err(|_| SecretError::InvalidScram("iteration count out of range"))?;
        if iterations == 0 {
            return Err(SecretError::InvalidScram("iteration count is zero"));
        }
        let salt = STANDARD
            .decode(salt)
            .map_err(|_| SecretError::InvalidScram("salt is not valid base64"))?;
        if salt.is_empty() {
            return Err(SecretError::InvalidScram("salt is empty"));
        }
        Ok(ScramVerifier {
            iterations,
            salt,
            stored_key: decode_key(stored_key, "StoredKey is not 32 bytes of base64")?,
            server_key: decode_key(server_key, "ServerKey is not 32 bytes of base64")?,
        })
    }

    /// Derive a verifier from a plaintext password (random salt, 4096
    /// iterations, SASLprep as PostgreSQL does).
    pub fn from_password(password: &str) -> Self {
        // postgres-protocol does SASLprep exactly as libpq and the backend do
        // (falling back to the raw bytes when SASLprep refuses the input).
        let encoded = postgres_protocol::password::scram_sha_256(password.as_bytes());
        Self::parse(&encoded).expect("postgres-protocol always produces a well-formed verifier")
    }

    /// A deterministic fake verifier for a user that does not exist, so that
    /// the SCRAM exchange for an unknown user looks the same as for a known
    /// one (same salt every time for the same name, 4096 iterations) and
    /// always fails. `key` is a per-process random secret.
    pub fn mock(user: &str, key: &[u8; 32]) -> Self {
        // Keyed, so nobody can tell from the salt that a user is unknown;
        // the tags keep the three derived values independent.
        let salt = hmac_tagged(key, b"mock salt\0", user);
        ScramVerifier {
            iterations: MOCK_ITERATIONS,
            salt: salt[..MOCK_SALT_LEN].to_vec(),
            // A pseudo-random StoredKey has no known SHA-256 preimage, so no
            // proof can match it; ScramExchange's `always_fail` makes sure.
            stored_key: hmac_tagged(key, b"mock stored key\0", user),
            server_key: hmac_tagged(key, b"mock server key\0", user),
        }
    }
}

impl fmt::Debug for ScramVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The keys are password-equivalent for offline guessing: keep them out
        // of logs.
        f.debug_struct("ScramVerifier")
            .field("iterations", &self.iterations)
            .field("salt_len", &self.salt.len())
            .finish_non_exhaustive()
    }
}

fn decode_key(b64: &str, err: &'static str) -> Result<[u8; 32], SecretError> {
    let bytes = STANDARD
        .decode(b64)
        .map_err(|_| SecretError::InvalidScram(err))?;
    bytes.try_into().map_err(|_| SecretError::InvalidScram(err))
}

fn hmac_tagged(key: &[u8; 32], tag: &[u8], user: &str) -> [u8; 32] {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(tag);
    mac.update(user.as_bytes());
    mac.finalize().into_bytes().into()
}

/// What the config gives for a user's password, turned into what each auth
/// method needs.
#[derive(Clone)]
pub struct Secret {
    scram: Option<ScramVerifier>,
    /// md5(password || username), raw bytes.
    md5: Option<[u8; 16]>,
    plaintext: Option<String>,
}

impl Secret {
    /// Accepts a plaintext password, a `SCRAM-SHA-256$...` verifier, or `md5`
    /// followed by 32 lowercase hex digits (PostgreSQL's md5(password ||
    /// username)). Plaintext yields both a SCRAM verifier and an md5 hash; a
    /// verifier yields only SCRAM; an md5 hash yields only md5.
    ///
    /// Like PostgreSQL, anything that is shaped like a hash is taken as one.
    /// Unlike PostgreSQL, which silently falls back to plaintext, a value that
    /// starts like a verifier or hash but is malformed is an error, since it
    /// is almost certainly a copy-paste mistake.
    pub fn parse(value: &str, user: &str) -> Result<Self, SecretError> {
        if value.is_empty() {
            return Err(SecretError::Empty);
        }
        if value.contains('\0') {
            return Err(SecretError::ContainsNul);
        }
        if value.starts_with(SCRAM_PREFIX) {
            return Ok(Secret {
                scram: Some(ScramVerifier::parse(value)?),
                md5: None,
                plaintext: None,
            });
        }
        if let Some(hash) = parse_md5_hash(value)? {
            return Ok(Secret {
                scram: None,
                md5: Some(hash),
                plaintext: None,
            });
        }
        Ok(Secret {
            scram: Some(ScramVerifier::from_password(value)),
            md5: Some(super::md5::hash_password(value, user)),
            plaintext: Some(value.to_owned()),
        })
    }

    /// The SCRAM-SHA-256 verifier, unless only an md5 hash was configured.
    pub fn scram(&self) -> Option<&ScramVerifier> {
        self.scram.as_ref()
    }

    /// md5(password || username), unless only a SCRAM verifier was configured.
    pub fn md5(&self) -> Option<&[u8; 16]> {
        self.md5.as_ref()
    }

    /// The password itself, if it was configured in plaintext.
    pub fn plaintext(&self) -> Option<&str> {
        self.plaintext.as_deref()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secret")
            .field("scram", &self.scram.is_some())
            .field("md5", &self.md5.is_some())
            .field("plaintext", &self.plaintext.is_some())
            .finish()
    }
}

/// `Ok(None)` when `value` is not shaped like an md5 hash ("md5" + 32 hex
/// digits) and so is a plaintext password.
fn parse_md5_hash(value: &str) -> Result<Option<[u8; 16]>, SecretError> {
    let Some(hex) = value.strip_prefix("md5") else {
        return Ok(None);
    };
    if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    // PostgreSQL only recognises lowercase; an uppercase one would silently
    // become a plaintext password nobody can type.
    if hex.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(SecretError::InvalidMd5("hex digits must be lowercase"));
    }
    let mut out = [0u8; 16];
    for (byte, pair) in out.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
        *byte = (hex_val(pair[0]) << 4) | hex_val(pair[1]);
    }
    Ok(Some(out))
}

/// Value of a lowercase hex digit (already checked by the caller).
fn hex_val(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        _ => b - b'a' + 10,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWORD: &str = "correct horse battery staple";

    #[test]
    fn verifier_roundtrip_from_postgres_protocol() {
        let s = postgres_protocol::password::scram_sha_256(PASSWORD.as_bytes());
        let v = ScramVerifier::parse(&s).unwrap();
        assert_eq!(v.iterations, 4096);
        assert_eq!(v.salt.len(), 16);
        let again = format!(
            "SCRAM-SHA-256${}:{}${}:{}",
            v.iterations,
            STANDARD.encode(&v.salt),
            STANDARD.encode(v.stored_key),
            STANDARD.encode(v.server_key)
        );
        assert_eq!(again, s);
    }

    #[test]
    fn invalid_verifiers() {
        let good = postgres_protocol::password::scram_sha_256(b"pw");
        let (head, keys) = good.rsplit_once('$').unwrap();
        let (stored, server) = keys.split_once(':').unwrap();
        let salt = head.split_once(':').unwrap().1;
        let cases = [
            "SCRAM-SHA-256$".to_string(),
            "SCRAM-SHA-256$4096".to_string(),
            format!("SCRAM-SHA-256$4096:{salt}"),
            format!("SCRAM-SHA-256$4096:{salt}${stored}"),
            format!("SCRAM-SHA-256$:{salt}${stored}:{server}"),
            format!("SCRAM-SHA-256$0:{salt}${stored}:{server}"),
            format!("SCRAM-SHA-256$+4096:{salt}${stored}:{server}"),
            format!("SCRAM-SHA-256$99999999999:{salt}${stored}:{server}"),
            format!("SCRAM-SHA-256$4096:${stored}:{server}"),
            format!("SCRAM-SHA-256$4096:!!!${stored}:{server}"),
            format!("SCRAM-SHA-256$4096:{salt}$c2hvcnQ=:{server}"),
            format!("SCRAM-SHA-256$4096:{salt}${stored}:{server}x"),
            format!("SCRAM-SHA-256$4096:{salt}${stored}:{server}$"),
        ];
        for c in cases {
            let err = ScramVerifier::parse(&c).unwrap_err();
            assert!(matches!(err, SecretError::InvalidScram(_)), "{c}");
            assert!(matches!(
                Secret::parse(&c, "u").unwrap_err(),
                SecretError::InvalidScram(_)
            ));
            // The message says what is wrong without echoing the value.
            assert!(!err.to_string().contains(stored), "{err}");
        }
        assert!(ScramVerifier::parse("md5abc").is_err());
    }

    #[test]
    fn secret_plaintext() {
        let s = Secret::parse(PASSWORD, "alice").unwrap();
        assert_eq!(s.plaintext(), Some(PASSWORD));
        assert_eq!(
            s.md5(),
            Some(&super::super::md5::hash_password(PASSWORD, "alice"))
        );
        assert_eq!(s.scram().unwrap().iterations, 4096);
    }

    #[test]
    fn secret_scram_only() {
        let v = postgres_protocol::password::scram_sha_256(PASSWORD.as_bytes());
        let s = Secret::parse(&v, "alice").unwrap();
        assert!(s.md5().is_none());
        assert!(s.plaintext().is_none());
        assert_eq!(s.scram(), Some(&ScramVerifier::parse(&v).unwrap()));
    }

    #[test]
    fn secret_md5_only() {
        let hashed = postgres_protocol::password::md5(PASSWORD.as_bytes(), "alice");
        let s = Secret::parse(&hashed, "alice").unwrap();
        assert!(s.scram().is_none());
        assert!(s.plaintext().is_none());
        assert_eq!(
            s.md5(),
            Some(&super::super::md5::hash_password(PASSWORD, "alice"))
        );
        let upper = format!("md5{}", hashed[3..].to_ascii_uppercase());
        assert!(matches!(
            Secret::parse(&upper, "alice"),
            Err(SecretError::InvalidMd5(_))
        ));
        // Not hash-shaped: just a password that starts with "md5".
        let s = Secret::parse("md5secret", "alice").unwrap();
        assert_eq!(s.plaintext(), Some("md5secret"));
    }

    #[test]
    fn secret_rejects_empty_and_nul() {
        assert_eq!(Secret::parse("", "u").unwrap_err(), SecretError::Empty);
        assert_eq!(
            Secret::parse("a\0b", "u").unwrap_err(),
            SecretError::ContainsNul
        );
    }

    #[test]
    fn debug_hides_secrets() {
        let s = Secret::parse(PASSWORD, "alice").unwrap();
        let dbg = format!("{s:?}");
        assert_eq!(dbg, "Secret { scram: true, md5: true, plaintext: true }");
        let v = s.scram().unwrap();
        let vdbg = format!("{v:?}");
        assert!(!vdbg.contains(&STANDARD.encode(v.stored_key)));
        assert!(!vdbg.contains(&STANDARD.encode(v.server_key)));
    }

    #[test]
    fn mock_is_deterministic_per_user() {
        let key = [7u8; 32];
        let a = ScramVerifier::mock("alice", &key);
        assert_eq!(a, ScramVerifier::mock("alice", &key));
        assert_eq!(a.iterations, 4096);
        assert_eq!(a.salt.len(), 16);
        assert_ne!(a.salt, ScramVerifier::mock("bob", &key).salt);
        assert_ne!(a.salt, ScramVerifier::mock("alice", &[8u8; 32]).salt);
    }
}
