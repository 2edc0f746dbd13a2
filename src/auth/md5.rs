//! The md5 password method (AuthenticationMD5Password).
//!
//! The client answers with `"md5" + hex(md5(hex(md5(password || user)) ||
//! salt))`, so the server only needs md5(password || user), which is what
//! PostgreSQL stores (as `"md5" + hex`).

use ::md5::{Digest, Md5};
use subtle::ConstantTimeEq;

/// md5(password || user), raw bytes.
pub fn hash_password(password: &str, user: &str) -> [u8; 16] {
    let mut h = Md5::new();
    h.update(password.as_bytes());
    h.update(user.as_bytes());
    h.finalize().into()
}

/// Verify a PasswordMessage for AuthenticationMD5Password: the client sends
/// `"md5" + hex(md5(hex(md5(password || user)) || salt))`.
///
/// `response` is the PasswordMessage's string; one trailing NUL (the C-string
/// terminator) is tolerated. The comparison is constant-time.
pub fn verify(stored: &[u8; 16], salt: [u8; 4], response: &[u8]) -> bool {
    let response = response.strip_suffix(b"\0").unwrap_or(response);
    let mut h = Md5::new();
    h.update(hex(stored));
    h.update(salt);
    let digest: [u8; 16] = h.finalize().into();

    let mut expected = [0u8; 35];
    expected[..3].copy_from_slice(b"md5");
    expected[3..].copy_from_slice(&hex(&digest));
    // A length mismatch returns early, which only reveals the (public) length.
    expected.ct_eq(response).into()
}

/// Lowercase hex, as PostgreSQL and libpq write it.
fn hex(bytes: &[u8; 16]) -> [u8; 32] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 32];
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = DIGITS[usize::from(b >> 4)];
        out[2 * i + 1] = DIGITS[usize::from(b & 0x0f)];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use postgres_protocol::authentication::md5_hash;

    #[test]
    fn hash_matches_postgres_protocol() {
        let stored = hash_password("s3cret", "alice");
        let expected = postgres_protocol::password::md5(b"s3cret", "alice");
        assert_eq!(
            format!("md5{}", std::str::from_utf8(&hex(&stored)).unwrap()),
            expected
        );
    }

    #[test]
    fn verify_against_client() {
        let stored = hash_password("s3cret", "alice");
        let salt = [0x01, 0x02, 0xfe, 0xff];
        let resp = md5_hash(b"alice", b"s3cret", salt);
        assert!(verify(&stored, salt, resp.as_bytes()));
        let mut with_nul = resp.clone().into_bytes();
        with_nul.push(0);
        assert!(verify(&stored, salt, &with_nul));

        // Wrong password, user or salt.
        assert!(!verify(
            &stored,
            salt,
            md5_hash(b"alice", b"wrong", salt).as_bytes()
        ));
        assert!(!verify(
            &stored,
            salt,
            md5_hash(b"bob", b"s3cret", salt).as_bytes()
        ));
        assert!(!verify(&stored, [0; 4], resp.as_bytes()));
    }

    #[test]
    fn verify_rejects_garbage() {
        let stored = hash_password("s3cret", "alice");
        let salt = [9, 9, 9, 9];
        let resp = md5_hash(b"alice", b"s3cret", salt);
        let upper = resp.to_ascii_uppercase();
        for bad in [
            &b""[..],
            b"\0",
            b"md5",
            &resp.as_bytes()[..34],
            &resp.as_bytes()[3..],
            upper.as_bytes(),
            b"\xff\xfe\x00garbage",
        ] {
            assert!(!verify(&stored, salt, bad));
        }
        let mut longer = resp.into_bytes();
        longer.push(b'0');
        assert!(!verify(&stored, salt, &longer));
    }
}
