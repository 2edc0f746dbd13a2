//! JWT startup tokens (`[databases.X.tenant] source = "jwt"`), sans-IO.
//!
//! A client logs in with any user name and its end user's signed JWT as the
//! password; [`JwtVerifier::verify`] checks it (RFC 7519, signatures per
//! RFC 7515/7518) and returns the tenant taken from a claim. Key files are read
//! once, in [`JwtVerifier::from_config`]; a verification does no I/O.
//!
//! Decisions:
//! - **Algorithms follow the configured keys, never the token.** `jwt_secret`
//!   allows HS256/384/512; an RSA key RS256/384/512 and PS256/384/512; an EC
//!   key ES256 (P-256) or ES384 (P-384); an Ed25519 key EdDSA. A JWKS entry
//!   with `alg` allows only that one. `none` is always refused. A token is only
//!   ever checked against keys whose type fits its `alg`, so an HS256 token
//!   "signed" with an RSA public key is refused when no secret is configured,
//!   and checked against the secret (and fails) when one is.
//! - **Key choice.** With a `kid`, the JWKS keys with that kid; if there are
//!   none, the keys that have no kid (`jwt_secret`, PEM files, kid-less JWKS
//!   entries), else "unknown key id". Without a `kid`, every key that fits the
//!   `alg` (one signature check per candidate). Header fields that point at
//!   keys (`jku`, `jwk`, `x5u`, `x5c`) are ignored; tokens with `crit` are refused.
//! - **`exp` is required**: a token without it is refused ("token has no
//!   expiry (exp)"), so a leaked token cannot be replayed for ever. A token is
//!   expired once `now >= exp + leeway`; `nbf`, when present, must satisfy
//!   `nbf <= now + leeway`. `iss` and `aud` are checked only when configured
//!   (`aud` may be a string or an array in the token).
//! - **Claim path.** The claim is first looked up as one top-level name (so
//!   namespaced claims like `https://example.com/org_id` work), then as a
//!   dotted path through nested objects (`app_metadata.org_id`). Its value must
//!   be a string (taken as-is) or an integer (written in decimal).
//! - Tokens longer than [`MAX_TOKEN_LEN`] are refused before parsing; ASCII
//!   whitespace around the token (a pasted newline) is ignored.
//! - `jwt_secret` is used as raw bytes (as Supabase and most HS256 issuers
//!   do), not base64-decoded.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Map, Value};

use crate::config::TenantConfig;

mod keys;
#[cfg(test)]
mod tests;

use keys::{Key, KeyKind};

/// Longest token accepted, in bytes (checked before any parsing).
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Checks JWTs against the keys of one database's tenant config.
pub struct JwtVerifier {
    /// Every usable key, decoded once; tried in this order.
    keys: Vec<Key>,
    /// Claim (or dotted path) holding the tenant id.
    claim: String,
    /// Required `iss`, when configured.
    issuer: Option<String>,
    /// Required `aud` member, when configured.
    audience: Option<String>,
    /// Clock skew allowed for `exp` and `nbf`, in seconds.
    leeway: u64,
}

/// What a valid token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// The claim's value as text (a string claim as-is; an integer claim in
    /// decimal); NOT yet checked against the tenant pattern (the caller does that).
    pub tenant: String,
    /// `exp` as Unix seconds (always present: tokens without `exp` are refused;
    /// kept optional should that ever become configurable).
    pub expires_at: Option<u64>,
    /// `sub`, when it is a string.
    pub subject: Option<String>,
}

impl VerifiedToken {
    /// Whether the token counts as expired at `now` (Unix seconds), with the
    /// same rule [`JwtVerifier::verify`] applies: `now >= exp + leeway`.
    pub fn is_expired(&self, now: u64, leeway_seconds: u64) -> bool {
        self.expires_at
            .is_some_and(|exp| now >= exp.saturating_add(leeway_seconds))
    }
}

/// Why a token was refused. [`Display`](std::fmt::Display) and
/// [`JwtError::client_message`] never contain the token, a part of it, or key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("token is too long ({0} bytes; the limit is {MAX_TOKEN_LEN})")]
    TooLarge(usize),
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The algorithm named is `none`, unknown, or fits none of the configured keys.
    #[error("token algorithm {0} is not allowed")]
    AlgorithmNotAllowed(&'static str),
    #[error("unknown key id (kid)")]
    UnknownKeyId,
    #[error("bad signature")]
    BadSignature,
    #[error("token has expired")]
    Expired,
    #[error("token is not yet valid (nbf)")]
    NotYetValid,
    #[error("token has no expiry (exp)")]
    NoExpiry,
    #[error("wrong issuer (iss)")]
    WrongIssuer,
    #[error("wrong audience (aud)")]
    WrongAudience,
    /// The configured claim (or `iss`/`aud` when those are required) is absent.
    #[error("missing claim \"{0}\"")]
    MissingClaim(String),
    #[error("claim \"{0}\" is not a string or integer")]
    ClaimNotStringOrInteger(String),
    /// `exp` or `nbf` is not a non-negative number.
    #[error("claim \"{0}\" is not a number")]
    BadTimeClaim(&'static str),
}

impl JwtError {
    /// Message safe for the client: says what was wrong and never echoes the
    /// token or key material (the claim path in it comes from the config).
    pub fn client_message(&self) -> String {
        self.to_string()
    }

    /// A short, bounded label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            JwtError::TooLarge(_) => "too_large",
            JwtError::Malformed(_) => "malformed",
            JwtError::AlgorithmNotAllowed(_) => "alg_not_allowed",
            JwtError::UnknownKeyId => "unknown_kid",
            JwtError::BadSignature => "bad_signature",
            JwtError::Expired => "expired",
            JwtError::NotYetValid => "not_yet_valid",
            JwtError::NoExpiry => "no_expiry",
            JwtError::WrongIssuer => "wrong_issuer",
            JwtError::WrongAudience => "wrong_audience",
            JwtError::MissingClaim(_) => "missing_claim",
            JwtError::ClaimNotStringOrInteger(_) | JwtError::BadTimeClaim(_) => "bad_claim",
        }
    }
}

/// Why the JWT keys of a tenant config could not be loaded. Names the file;
/// never contains the secret.
#[derive(Debug, thiserror::Error)]
pub enum JwtConfigError {
    #[error("source = \"jwt\" needs a key: jwt_secret, jwt_public_key_files or jwks_file")]
    NoKeys,
    #[error("jwt_secret is empty")]
    EmptySecret,
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
}

impl JwtConfigError {
    fn invalid(path: &Path, reason: impl Into<String>) -> Self {
        JwtConfigError::Invalid {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("keys", &self.keys)
            .field("claim", &self.claim)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway", &self.leeway)
            .finish()
    }
}

/// The token header fields we use; everything else is ignored.
#[derive(serde::Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<Value>,
}

impl JwtVerifier {
    /// Loads keys from the tenant config (reads PEM/JWKS files). Errors name
    /// the file and what is wrong.
    pub fn from_config(config: &TenantConfig) -> Result<Self, JwtConfigError> {
        let mut keys = Vec::new();
        if let Some(secret) = &config.jwt_secret {
            if secret.is_empty() {
                return Err(JwtConfigError::EmptySecret);
            }
            keys.push(Key {
                decoding: DecodingKey::from_secret(secret.as_bytes()),
                kind: KeyKind::Hmac,
                kid: None,
                alg: None,
                origin: "jwt_secret".into(),
            });
        }
        for path in &config.jwt_public_key_files {
            keys.extend(keys::load_pem_file(path)?);
        }
        if let Some(path) = &config.jwks_file {
            keys.extend(keys::load_jwks_file(path)?);
        }
        if keys.is_empty() {
            return Err(JwtConfigError::NoKeys);
        }
        Ok(JwtVerifier {
            keys,
            claim: config.claim.clone(),
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            leeway: config.leeway_seconds,
        })
    }

    /// The configured clock-skew allowance, for re-checking expiry later
    /// (see [`VerifiedToken::is_expired`]).
    pub fn leeway_seconds(&self) -> u64 {
        self.leeway
    }

    /// Verifies signature, alg, exp, nbf, iss, aud at the current time, and
    /// extracts the tenant claim. `exp` is required: a token without one is
    /// refused with [`JwtError::NoExpiry`].
    pub fn verify(&self, token: &str) -> Result<VerifiedToken, JwtError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.verify_at(token, now)
    }

    /// [`verify`](Self::verify) as if the time were `now` (Unix seconds).
    pub fn verify_at(&self, token: &str, now: u64) -> Result<VerifiedToken, JwtError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(JwtError::TooLarge(token.len()));
        }
        let token = token.trim_ascii();
        if token.is_empty() {
            return Err(JwtError::Malformed("empty"));
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed("a JWT has three dot-separated parts"));
        };
        let header: Header = decode_json_part(
            header_b64,
            "header is not base64url",
            "header is not a JSON object with an alg",
        )?;
        if header.crit.is_some() {
            return Err(JwtError::Malformed(
                "critical header extensions are not supported",
            ));
        }
        let alg = parse_alg(&header.alg)?;
        if !self.keys.iter().any(|k| k.allows(alg)) {
            return Err(JwtError::AlgorithmNotAllowed(alg_name(alg)));
        }
        if URL_SAFE_NO_PAD.decode(signature_b64).is_err() {
            return Err(JwtError::Malformed("signature is not base64url"));
        }

        let candidates = self.candidates(header.kid.as_deref(), alg)?;
        let message = &token[..header_b64.len() + 1 + payload_b64.len()];
        let verified = candidates.into_iter().any(|key| {
            // Err means key and algorithm do not fit (cannot happen after the
            // filter above) or an undecodable signature (checked above).
            jsonwebtoken::crypto::verify(signature_b64, message.as_bytes(), &key.decoding, alg)
                .unwrap_or(false)
        });
        if !verified {
            return Err(JwtError::BadSignature);
        }

        let claims: Map<String, Value> = decode_json_part(
            payload_b64,
            "claims are not base64url",
            "claims are not a valid JSON object",
        )?;
        self.check_claims(&claims, now)
    }

    /// The keys a token with this `kid` and `alg` may be checked against.
    fn candidates(&self, kid: Option<&str>, alg: Algorithm) -> Result<Vec<&Key>, JwtError> {
        let Some(kid) = kid else {
            return Ok(self.keys.iter().filter(|k| k.allows(alg)).collect());
        };
        let named: Vec<&Key> = self
            .keys
            .iter()
            .filter(|k| k.kid.as_deref() == Some(kid))
            .collect();
        if !named.is_empty() {
            let fitting: Vec<&Key> = named.into_iter().filter(|k| k.allows(alg)).collect();
            if fitting.is_empty() {
                return Err(JwtError::AlgorithmNotAllowed(alg_name(alg)));
            }
            return Ok(fitting);
        }
        let kidless: Vec<&Key> = self
            .keys
            .iter()
            .filter(|k| k.kid.is_none() && k.allows(alg))
            .collect();
        if kidless.is_empty() {
            return Err(JwtError::UnknownKeyId);
        }
        Ok(kidless)
    }

    fn check_claims(
        &self,
        claims: &Map<String, Value>,
        now: u64,
    ) -> Result<VerifiedToken, JwtError> {
        let exp = match claims.get("exp") {
            None => return Err(JwtError::NoExpiry),
            Some(v) => numeric_date(v).ok_or(JwtError::BadTimeClaim("exp"))?,
        };
        if now >= exp.saturating_add(self.leeway) {
            return Err(JwtError::Expired);
        }
        if let Some(v) = claims.get("nbf") {
            let nbf = numeric_date(v).ok_or(JwtError::BadTimeClaim("nbf"))?;
            if nbf > now.saturating_add(self.leeway) {
                return Err(JwtError::NotYetValid);
            }
        }
        if let Some(want) = &self.issuer {
            match claims.get("iss") {
                None => return Err(JwtError::MissingClaim("iss".into())),
                Some(Value::String(iss)) if iss == want => {}
                Some(_) => return Err(JwtError::WrongIssuer),
            }
        }
        if let Some(want) = &self.audience {
            let ok = match claims.get("aud") {
                None => return Err(JwtError::MissingClaim("aud".into())),
                Some(Value::String(aud)) => aud == want,
                Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(want)),
                Some(_) => false,
            };
            if !ok {
                return Err(JwtError::WrongAudience);
            }
        }
        let tenant = match lookup_claim(claims, &self.claim) {
            None => return Err(JwtError::MissingClaim(self.claim.clone())),
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) if n.is_i64() || n.is_u64() => n.to_string(),
            Some(_) => return Err(JwtError::ClaimNotStringOrInteger(self.claim.clone())),
        };
        Ok(VerifiedToken {
            tenant,
            expires_at: Some(exp),
            subject: claims.get("sub").and_then(Value::as_str).map(str::to_owned),
        })
    }
}

/// Whether the pooler may ask this client for a cleartext password (the token):
/// only over TLS, a Unix socket or loopback, unless the operator allows it.
pub fn cleartext_allowed(is_tls: bool, is_local: bool, allow_over_network: bool) -> bool {
    is_tls || is_local || allow_over_network
}

/// Base64url-decodes one part of the token and parses it as JSON.
fn decode_json_part<T: serde::de::DeserializeOwned>(
    part: &str,
    not_base64: &'static str,
    not_json: &'static str,
) -> Result<T, JwtError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| JwtError::Malformed(not_base64))?;
    serde_json::from_slice(&bytes).map_err(|_| JwtError::Malformed(not_json))
}

/// The header's `alg`, refusing `none` (in any case) and names we do not know.
fn parse_alg(name: &str) -> Result<Algorithm, JwtError> {
    if name.eq_ignore_ascii_case("none") {
        return Err(JwtError::AlgorithmNotAllowed("none"));
    }
    name.parse()
        .map_err(|_| JwtError::AlgorithmNotAllowed("(unsupported)"))
}

fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::EdDSA => "EdDSA",
        _ => "(unsupported)",
    }
}

/// A NumericDate (RFC 7519 §2): non-negative seconds, possibly fractional (floored).
fn numeric_date(v: &Value) -> Option<u64> {
    let n = v.as_number()?;
    if let Some(u) = n.as_u64() {
        return Some(u);
    }
    let f = n.as_f64()?;
    // `as` saturates for huge values; negative and NaN are refused.
    (f.is_finite() && f >= 0.0).then_some(f as u64)
}

/// The claim named `path`: a top-level claim of exactly that name, else the
/// dotted path through nested objects.
fn lookup_claim<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(path) {
        return Some(v);
    }
    let mut segments = path.split('.');
    let mut value = claims.get(segments.next()?)?;
    for segment in segments {
        value = value.as_object()?.get(segment)?;
    }
    Some(value)
}
