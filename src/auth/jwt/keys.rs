//! Loading verification keys from PEM and JWKS files, once, at startup.

use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyOperations, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

use super::JwtConfigError;

/// What kind of key, and so which algorithms it may verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KeyKind {
    Hmac,
    Rsa,
    EcP256,
    EcP384,
    Ed25519,
}

impl KeyKind {
    fn allows(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        match self {
            KeyKind::Hmac => matches!(alg, HS256 | HS384 | HS512),
            KeyKind::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            KeyKind::EcP256 => alg == ES256,
            KeyKind::EcP384 => alg == ES384,
            KeyKind::Ed25519 => alg == EdDSA,
        }
    }
}

/// One verification key.
pub(super) struct Key {
    pub(super) decoding: DecodingKey,
    pub(super) kind: KeyKind,
    /// JWKS `kid`; None for `jwt_secret`, PEM keys and kid-less JWKS entries.
    pub(super) kid: Option<String>,
    /// JWKS `alg`: the only algorithm this key may verify, when set.
    pub(super) alg: Option<Algorithm>,
    /// Where it came from, for Debug output (never the key itself).
    pub(super) origin: String,
}

impl Key {
    pub(super) fn allows(&self, alg: Algorithm) -> bool {
        self.kind.allows(alg) && self.alg.is_none_or(|a| a == alg)
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("kind", &self.kind)
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, JwtConfigError> {
    std::fs::read(path).map_err(|source| JwtConfigError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Every public key in a PEM file (one or more `-----BEGIN ...-----` blocks).
pub(super) fn load_pem_file(path: &Path) -> Result<Vec<Key>, JwtConfigError> {
    let bytes = read(path)?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| JwtConfigError::invalid(path, "not a PEM file (not text)"))?;
    let mut keys = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let after = &rest[start + "-----BEGIN ".len()..];
        let Some(tag_end) = after.find("-----") else {
            break;
        };
        let tag = &after[..tag_end];
        let end_marker = format!("-----END {tag}-----");
        let Some(end) = rest[start..].find(&end_marker) else {
            return Err(JwtConfigError::invalid(
                path,
                format!("unterminated PEM block \"{tag}\""),
            ));
        };
        let block = &rest[start..start + end + end_marker.len()];
        rest = &rest[start + end + end_marker.len()..];
        let n = keys.len() + 1;
        let (decoding, kind) = pem_public_key(path, tag, block.as_bytes())?;
        keys.push(Key {
            decoding,
            kind,
            kid: None,
            alg: None,
            origin: format!("{} (key {n})", path.display()),
        });
    }
    if keys.is_empty() {
        return Err(JwtConfigError::invalid(path, "contains no PEM public key"));
    }
    Ok(keys)
}

fn pem_public_key(
    path: &Path,
    tag: &str,
    block: &[u8],
) -> Result<(DecodingKey, KeyKind), JwtConfigError> {
    match tag {
        "PUBLIC KEY" | "RSA PUBLIC KEY" => {}
        t if t.contains("PRIVATE KEY") => {
            return Err(JwtConfigError::invalid(
                path,
                "contains a private key; configure only the public key",
            ))
        }
        "CERTIFICATE" => {
            return Err(JwtConfigError::invalid(
                path,
                "contains a certificate; give its public key instead (openssl x509 -pubkey -noout)",
            ))
        }
        _ => {
            return Err(JwtConfigError::invalid(
                path,
                format!("unsupported PEM block \"{tag}\" (expected PUBLIC KEY)"),
            ))
        }
    }
    if let Ok(key) = DecodingKey::from_rsa_pem(block) {
        let der = key.try_get_as_bytes().unwrap_or_default();
        let (n, _e) = (jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER
            .key_utils
            .rsa_pub_components_from_public_key)(der)
        .map_err(|_| JwtConfigError::invalid(path, "invalid RSA public key"))?;
        check_rsa_modulus(&n).map_err(|reason| JwtConfigError::invalid(path, reason))?;
        return Ok((key, KeyKind::Rsa));
    }
    if let Ok(key) = DecodingKey::from_ec_pem(block) {
        // The uncompressed point: 0x04 || x || y.
        let point = key.try_get_as_bytes().unwrap_or_default();
        let kind = match (point.first(), point.len()) {
            (Some(4), 65) => KeyKind::EcP256,
            (Some(4), 97) => KeyKind::EcP384,
            _ => {
                return Err(JwtConfigError::invalid(
                    path,
                    "unsupported EC key (only P-256 and P-384, uncompressed)",
                ))
            }
        };
        return Ok((key, kind));
    }
    if let Ok(key) = DecodingKey::from_ed_pem(block) {
        if key.try_get_as_bytes().map_or(0, <[u8]>::len) != 32 {
            return Err(JwtConfigError::invalid(path, "invalid Ed25519 public key"));
        }
        return Ok((key, KeyKind::Ed25519));
    }
    Err(JwtConfigError::invalid(
        path,
        "not an RSA, EC (P-256/P-384) or Ed25519 public key",
    ))
}

/// RSA verification in aws-lc accepts 2048- to 8192-bit moduli; refuse others
/// at startup rather than failing every token.
fn check_rsa_modulus(n: &[u8]) -> Result<(), String> {
    let n = match n.iter().position(|&b| b != 0) {
        Some(i) => &n[i..],
        None => &[],
    };
    let bits = n.len() * 8 - n.first().map_or(0, |b| b.leading_zeros() as usize);
    if (2048..=8192).contains(&bits) {
        Ok(())
    } else {
        Err(format!(
            "RSA key has {bits} bits; 2048 to 8192 are accepted"
        ))
    }
}

/// The signature keys of a JWKS file. Entries for encryption, symmetric
/// (`oct`) keys and unsupported curves are skipped with a warning; a
/// malformed entry, or a set with no usable key, is an error.
pub(super) fn load_jwks_file(path: &Path) -> Result<Vec<Key>, JwtConfigError> {
    let bytes = read(path)?;
    let doc: Value = serde_json::from_slice(&bytes)
        .map_err(|e| JwtConfigError::invalid(path, format!("not valid JSON: {e}")))?;
    let Some(entries) = doc.get("keys").and_then(Value::as_array) else {
        return Err(JwtConfigError::invalid(
            path,
            "not a JWKS: no \"keys\" array",
        ));
    };
    let mut keys = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let name = match entry.get("kid").and_then(Value::as_str) {
            Some(kid) => format!("key {i} (kid \"{kid}\")"),
            None => format!("key {i}"),
        };
        let invalid = |reason: &str| JwtConfigError::invalid(path, format!("{name}: {reason}"));
        let jwk: Jwk = serde_json::from_value(entry.clone())
            .map_err(|e| invalid(&format!("not a valid JWK: {e}")))?;
        match jwk_key(&jwk) {
            Ok(Some((decoding, kind))) => {
                let alg = match jwk.common.key_algorithm {
                    None => None,
                    Some(a) => {
                        let alg = Algorithm::try_from(a)
                            .map_err(|_| invalid("\"alg\" is not a signature algorithm"))?;
                        if !kind.allows(alg) {
                            return Err(invalid("\"alg\" does not fit the key type"));
                        }
                        Some(alg)
                    }
                };
                keys.push(Key {
                    decoding,
                    kind,
                    kid: jwk.common.key_id.clone(),
                    alg,
                    origin: format!("{} {name}", path.display()),
                });
            }
            Ok(None) => {}
            Err(reason) => return Err(invalid(&reason)),
        }
    }
    if keys.is_empty() {
        return Err(JwtConfigError::invalid(
            path,
            "JWKS has no usable signature key",
        ));
    }
    Ok(keys)
}

/// Ok(None) for an entry we skip on purpose (logged).
fn jwk_key(jwk: &Jwk) -> Result<Option<(DecodingKey, KeyKind)>, String> {
    let kid = jwk.common.key_id.as_deref().unwrap_or("(none)");
    let skip = |why: &str| {
        tracing::warn!(kid, "JWKS entry skipped: {why}");
        Ok(None)
    };
    if let Some(usage) = &jwk.common.public_key_use {
        if *usage != PublicKeyUse::Signature {
            return skip("\"use\" is not \"sig\"");
        }
    }
    if let Some(ops) = &jwk.common.key_operations {
        if !ops.contains(&KeyOperations::Verify) {
            return skip("\"key_ops\" lacks \"verify\"");
        }
    }
    let b64 = |field: &str, value: &str| {
        URL_SAFE_NO_PAD
            .decode(value)
            .map_err(|_| format!("\"{field}\" is not base64url"))
    };
    match &jwk.algorithm {
        AlgorithmParameters::RSA(p) => {
            check_rsa_modulus(&b64("n", &p.n)?)?;
            b64("e", &p.e)?;
            let key = DecodingKey::from_jwk(jwk).map_err(|_| "invalid RSA key".to_string())?;
            Ok(Some((key, KeyKind::Rsa)))
        }
        AlgorithmParameters::EllipticCurve(p) => {
            let (kind, len) = match p.curve {
                EllipticCurve::P256 => (KeyKind::EcP256, 32),
                EllipticCurve::P384 => (KeyKind::EcP384, 48),
                _ => return skip("unsupported curve (only P-256 and P-384)"),
            };
            if b64("x", &p.x)?.len() != len || b64("y", &p.y)?.len() != len {
                return Err("EC coordinates do not fit the curve".into());
            }
            let key = DecodingKey::from_jwk(jwk).map_err(|_| "invalid EC key".to_string())?;
            Ok(Some((key, kind)))
        }
        AlgorithmParameters::OctetKeyPair(p) => {
            if p.curve != EllipticCurve::Ed25519 {
                return skip("unsupported OKP curve (only Ed25519)");
            }
            if b64("x", &p.x)?.len() != 32 {
                return Err("Ed25519 key is not 32 bytes".into());
            }
            let key = DecodingKey::from_jwk(jwk).map_err(|_| "invalid Ed25519 key".to_string())?;
            Ok(Some((key, KeyKind::Ed25519)))
        }
        AlgorithmParameters::OctetKey(_) => {
            skip("symmetric (oct) keys are not taken from a JWKS; use jwt_secret")
        }
        _ => skip("unsupported key type"),
    }
}
