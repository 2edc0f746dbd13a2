use std::path::PathBuf;
use std::sync::OnceLock;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING,
    ECDSA_P384_SHA384_FIXED_SIGNING,
};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use super::*;
use crate::config::{TenantConfig, TenantSource};

const NOW: u64 = 1_700_000_000;
const SECRET: &str = "a-test-secret-that-is-at-least-32-bytes-long";

fn pem(tag: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {tag}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap());
        out.push('\n');
    }
    out.push_str(&format!("-----END {tag}-----\n"));
    out
}

/// A generated key pair: signing key for the tests, public PEM for the config.
struct Pair {
    signing: EncodingKey,
    public_pem: String,
}

struct Keys {
    rsa1: Pair,
    rsa2: Pair,
    ec256: Pair,
    ec384: Pair,
    ed: Pair,
}

fn rsa() -> Pair {
    let kp = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
    let private: aws_lc_rs::encoding::Pkcs8V1Der = kp.as_der().unwrap();
    let public = kp.public_key().as_der().unwrap();
    Pair {
        signing: EncodingKey::from_rsa_pem(pem("PRIVATE KEY", private.as_ref()).as_bytes())
            .unwrap(),
        public_pem: pem("PUBLIC KEY", public.as_ref()),
    }
}

fn ec(alg: &'static aws_lc_rs::signature::EcdsaSigningAlgorithm) -> Pair {
    let kp = EcdsaKeyPair::generate(alg).unwrap();
    let private = kp.to_pkcs8v1().unwrap();
    let public = kp.public_key().as_der().unwrap();
    Pair {
        signing: EncodingKey::from_ec_pem(pem("PRIVATE KEY", private.as_ref()).as_bytes()).unwrap(),
        public_pem: pem("PUBLIC KEY", public.as_ref()),
    }
}

fn ed() -> Pair {
    let kp = Ed25519KeyPair::generate().unwrap();
    let private = kp.to_pkcs8v1().unwrap();
    let public = kp.public_key().as_der().unwrap();
    Pair {
        signing: EncodingKey::from_ed_pem(pem("PRIVATE KEY", private.as_ref()).as_bytes()).unwrap(),
        public_pem: pem("PUBLIC KEY", public.as_ref()),
    }
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| Keys {
        rsa1: rsa(),
        rsa2: rsa(),
        ec256: ec(&ECDSA_P256_SHA256_FIXED_SIGNING),
        ec384: ec(&ECDSA_P384_SHA384_FIXED_SIGNING),
        ed: ed(),
    })
}

/// Test files live as long as the verifier needs them (read at construction).
struct Files(tempfile::TempDir);

impl Files {
    fn new() -> Self {
        Files(tempfile::tempdir().unwrap())
    }
    fn write(&self, name: &str, content: &str) -> PathBuf {
        let path = self.0.path().join(name);
        std::fs::write(&path, content).unwrap();
        path
    }
}

fn cfg() -> TenantConfig {
    TenantConfig::new(TenantSource::Jwt)
}

fn hs_verifier() -> JwtVerifier {
    let mut c = cfg();
    c.jwt_secret = Some(SECRET.into());
    JwtVerifier::from_config(&c).unwrap()
}

fn pem_verifier(pems: &[&str]) -> JwtVerifier {
    let files = Files::new();
    let mut c = cfg();
    for (i, p) in pems.iter().enumerate() {
        c.jwt_public_key_files
            .push(files.write(&format!("k{i}.pem"), p));
    }
    JwtVerifier::from_config(&c).unwrap()
}

fn claims(tenant: &str) -> Value {
    json!({ "tenant_id": tenant, "sub": "user-1", "exp": NOW + 3600, "iat": NOW })
}

fn sign(alg: Algorithm, key: &EncodingKey, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    encode(&header, claims, key).unwrap()
}

fn hs(claims: &Value) -> String {
    sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(SECRET.as_bytes()),
        None,
        claims,
    )
}

fn b64(v: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(v)
}

/// header.payload.signature with HS256 over arbitrary header and payload bytes.
fn hs_raw(header: &[u8], payload: &[u8]) -> String {
    let message = format!("{}.{}", b64(header), b64(payload));
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    let sig = jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::HS256).unwrap();
    format!("{message}.{sig}")
}

/// Verifies, expecting an error, and checks its client message leaks no part of the token.
fn refused(v: &JwtVerifier, token: &str) -> JwtError {
    let err = v
        .verify_at(token, NOW)
        .expect_err("token should be refused");
    let msg = err.client_message();
    assert!(!msg.is_empty());
    assert!(msg.len() < 200, "message too long: {msg}");
    for part in token.split('.').filter(|p| p.len() >= 8) {
        assert!(!msg.contains(part), "message {msg:?} echoes the token");
    }
    assert!(!msg.contains(SECRET));
    err
}

fn ok(v: &JwtVerifier, token: &str) -> VerifiedToken {
    v.verify_at(token, NOW).expect("token should verify")
}

// ---- valid tokens per algorithm family ----

#[test]
fn hs256_valid() {
    let t = ok(&hs_verifier(), &hs(&claims("acme")));
    assert_eq!(t.tenant, "acme");
    assert_eq!(t.expires_at, Some(NOW + 3600));
    assert_eq!(t.subject.as_deref(), Some("user-1"));
    for alg in [Algorithm::HS384, Algorithm::HS512] {
        let tok = sign(
            alg,
            &EncodingKey::from_secret(SECRET.as_bytes()),
            None,
            &claims("b"),
        );
        assert_eq!(ok(&hs_verifier(), &tok).tenant, "b");
    }
}

#[test]
fn rs256_and_ps256_valid() {
    let k = &keys().rsa1;
    let v = pem_verifier(&[&k.public_pem]);
    for alg in [
        Algorithm::RS256,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
    ] {
        assert_eq!(
            ok(&v, &sign(alg, &k.signing, None, &claims("acme"))).tenant,
            "acme"
        );
    }
}

#[test]
fn es256_valid_and_curve_pins_the_algorithm() {
    let v = pem_verifier(&[&keys().ec256.public_pem]);
    let tok = sign(
        Algorithm::ES256,
        &keys().ec256.signing,
        None,
        &claims("acme"),
    );
    assert_eq!(ok(&v, &tok).tenant, "acme");
    // A P-256 key never verifies ES384.
    let es384 = sign(
        Algorithm::ES384,
        &keys().ec384.signing,
        None,
        &claims("acme"),
    );
    assert_eq!(refused(&v, &es384), JwtError::AlgorithmNotAllowed("ES384"));
    let v384 = pem_verifier(&[&keys().ec384.public_pem]);
    assert_eq!(ok(&v384, &es384).tenant, "acme");
}

#[test]
fn eddsa_valid() {
    let v = pem_verifier(&[&keys().ed.public_pem]);
    let tok = sign(Algorithm::EdDSA, &keys().ed.signing, None, &claims("acme"));
    assert_eq!(ok(&v, &tok).tenant, "acme");
}

#[test]
fn whitespace_around_the_token_is_ignored() {
    let tok = format!(" {}\n", hs(&claims("acme")));
    assert_eq!(ok(&hs_verifier(), &tok).tenant, "acme");
}

// ---- time claims ----

#[test]
fn expired_and_leeway() {
    let v = hs_verifier(); // leeway 30 by default
    let mut c = claims("acme");
    c["exp"] = json!(NOW - 31);
    let e = refused(&v, &hs(&c));
    assert_eq!(
        (e.label(), e.client_message().as_str()),
        ("expired", "token has expired")
    );
    c["exp"] = json!(NOW - 10);
    assert_eq!(ok(&v, &hs(&c)).expires_at, Some(NOW - 10));

    let mut strict = cfg();
    strict.jwt_secret = Some(SECRET.into());
    strict.leeway_seconds = 0;
    let strict = JwtVerifier::from_config(&strict).unwrap();
    c["exp"] = json!(NOW);
    assert_eq!(refused(&strict, &hs(&c)), JwtError::Expired);
    c["exp"] = json!(NOW + 1);
    ok(&strict, &hs(&c));
}

#[test]
fn is_expired_matches_verify() {
    let t = VerifiedToken {
        tenant: "a".into(),
        expires_at: Some(NOW),
        subject: None,
    };
    assert!(!t.is_expired(NOW + 29, 30));
    assert!(t.is_expired(NOW + 30, 30));
}

#[test]
fn fractional_exp_is_floored() {
    let mut c = claims("acme");
    c["exp"] = json!((NOW + 100) as f64 + 0.5);
    assert_eq!(ok(&hs_verifier(), &hs(&c)).expires_at, Some(NOW + 100));
}

#[test]
fn missing_or_bad_exp_refused() {
    let v = hs_verifier();
    let mut c = claims("acme");
    c.as_object_mut().unwrap().remove("exp");
    let e = refused(&v, &hs(&c));
    assert_eq!(e.client_message(), "token has no expiry (exp)");
    c["exp"] = json!("tomorrow");
    assert_eq!(refused(&v, &hs(&c)), JwtError::BadTimeClaim("exp"));
    c["exp"] = json!(-5);
    assert_eq!(refused(&v, &hs(&c)), JwtError::BadTimeClaim("exp"));
}

#[test]
fn nbf_in_future_refused_within_leeway_accepted() {
    let v = hs_verifier();
    let mut c = claims("acme");
    c["nbf"] = json!(NOW + 120);
    let e = refused(&v, &hs(&c));
    assert_eq!(e.label(), "not_yet_valid");
    c["nbf"] = json!(NOW + 20);
    ok(&v, &hs(&c));
    c["nbf"] = json!(NOW - 1000);
    ok(&v, &hs(&c));
}

// ---- iss and aud ----

fn hs_verifier_with(issuer: Option<&str>, audience: Option<&str>) -> JwtVerifier {
    let mut c = cfg();
    c.jwt_secret = Some(SECRET.into());
    c.issuer = issuer.map(Into::into);
    c.audience = audience.map(Into::into);
    JwtVerifier::from_config(&c).unwrap()
}

#[test]
fn issuer_checked_when_configured() {
    let v = hs_verifier_with(Some("https://auth.example.com"), None);
    let mut c = claims("acme");
    assert_eq!(refused(&v, &hs(&c)), JwtError::MissingClaim("iss".into()));
    c["iss"] = json!("https://evil.example.com");
    let e = refused(&v, &hs(&c));
    assert_eq!(
        (e.label(), e.client_message().as_str()),
        ("wrong_issuer", "wrong issuer (iss)")
    );
    c["iss"] = json!("https://auth.example.com");
    ok(&v, &hs(&c));
    // Not configured: any issuer passes.
    c["iss"] = json!("https://evil.example.com");
    ok(&hs_verifier(), &hs(&c));
}

#[test]
fn audience_string_or_array() {
    let v = hs_verifier_with(None, Some("authenticated"));
    let mut c = claims("acme");
    assert_eq!(refused(&v, &hs(&c)), JwtError::MissingClaim("aud".into()));
    c["aud"] = json!("anon");
    assert_eq!(refused(&v, &hs(&c)).label(), "wrong_audience");
    c["aud"] = json!(["anon", "other"]);
    assert_eq!(refused(&v, &hs(&c)), JwtError::WrongAudience);
    c["aud"] = json!(["anon", "authenticated"]);
    ok(&v, &hs(&c));
    c["aud"] = json!("authenticated");
    ok(&v, &hs(&c));
    c["aud"] = json!(42);
    assert_eq!(refused(&v, &hs(&c)), JwtError::WrongAudience);
}

// ---- wrong keys, alg none, algorithm confusion ----

#[test]
fn wrong_key_refused() {
    let other = EncodingKey::from_secret(b"another-secret-that-is-also-32-bytes-long!");
    let e = refused(
        &hs_verifier(),
        &sign(Algorithm::HS256, &other, None, &claims("acme")),
    );
    assert_eq!(
        (e.label(), e.client_message().as_str()),
        ("bad_signature", "bad signature")
    );

    let v = pem_verifier(&[&keys().rsa1.public_pem]);
    let tok = sign(
        Algorithm::RS256,
        &keys().rsa2.signing,
        None,
        &claims("acme"),
    );
    assert_eq!(refused(&v, &tok), JwtError::BadSignature);
}

#[test]
fn tampered_claims_refused() {
    let tok = hs(&claims("acme"));
    let parts: Vec<&str> = tok.split('.').collect();
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        b64(claims("other").to_string().as_bytes()),
        parts[2]
    );
    assert_eq!(refused(&hs_verifier(), &forged), JwtError::BadSignature);
}

#[test]
fn alg_none_refused() {
    let payload = b64(claims("acme").to_string().as_bytes());
    for alg in ["none", "None", "NONE"] {
        let header = b64(json!({ "alg": alg, "typ": "JWT" }).to_string().as_bytes());
        for token in [
            format!("{header}.{payload}."),
            format!("{header}.{payload}.c2ln"),
        ] {
            for v in [hs_verifier(), pem_verifier(&[&keys().rsa1.public_pem])] {
                let e = refused(&v, &token);
                assert_eq!(e, JwtError::AlgorithmNotAllowed("none"));
                assert_eq!(e.client_message(), "token algorithm none is not allowed");
            }
        }
    }
    let header = b64(br#"{"alg":"HS1024"}"#);
    assert_eq!(
        refused(&hs_verifier(), &format!("{header}.{payload}.c2ln")),
        JwtError::AlgorithmNotAllowed("(unsupported)")
    );
}

#[test]
fn hs256_with_rsa_public_key_as_secret_refused() {
    let rsa = &keys().rsa1;
    let forged = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(rsa.public_pem.as_bytes()),
        None,
        &claims("victim"),
    );
    // RSA-only config: HMAC is not an allowed algorithm at all.
    let e = refused(&pem_verifier(&[&rsa.public_pem]), &forged);
    assert_eq!(
        (e.label(), e),
        ("alg_not_allowed", JwtError::AlgorithmNotAllowed("HS256"))
    );
    // RSA key and a (different) secret: checked against the secret only.
    let files = Files::new();
    let mut c = cfg();
    c.jwt_secret = Some(SECRET.into());
    c.jwt_public_key_files = vec![files.write("rsa.pem", &rsa.public_pem)];
    let both = JwtVerifier::from_config(&c).unwrap();
    assert_eq!(refused(&both, &forged), JwtError::BadSignature);
    // And the same forgery with the JWKS form of the key, under its kid.
    let forged_kid = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(rsa.public_pem.as_bytes()),
        Some("k1"),
        &claims("victim"),
    );
    let v = jwks_verifier(&files, &[("k1", &rsa.signing)], None);
    assert_eq!(
        refused(&v, &forged_kid),
        JwtError::AlgorithmNotAllowed("HS256")
    );
}

#[test]
fn rsa_token_refused_by_hs_only_config() {
    let tok = sign(
        Algorithm::RS256,
        &keys().rsa1.signing,
        None,
        &claims("acme"),
    );
    assert_eq!(
        refused(&hs_verifier(), &tok),
        JwtError::AlgorithmNotAllowed("RS256")
    );
    let tok = sign(Algorithm::EdDSA, &keys().ed.signing, None, &claims("acme"));
    assert_eq!(
        refused(&hs_verifier(), &tok),
        JwtError::AlgorithmNotAllowed("EdDSA")
    );
}

#[test]
fn crit_header_refused() {
    let tok = hs_raw(
        br#"{"alg":"HS256","crit":["exp"]}"#,
        claims("a").to_string().as_bytes(),
    );
    assert_eq!(refused(&hs_verifier(), &tok).label(), "malformed");
}

// ---- the tenant claim ----

#[test]
fn tenant_claim_forms() {
    let with = |path: &str| {
        let mut c = cfg();
        c.jwt_secret = Some(SECRET.into());
        c.claim = path.into();
        JwtVerifier::from_config(&c).unwrap()
    };
    let base = json!({ "exp": NOW + 60 });
    let mut c = base.clone();
    c["app_metadata"] = json!({ "org_id": "org_7", "plan": "pro" });
    assert_eq!(ok(&with("app_metadata.org_id"), &hs(&c)).tenant, "org_7");
    let e = refused(&with("app_metadata.missing"), &hs(&c));
    assert_eq!(e.client_message(), "missing claim \"app_metadata.missing\"");
    assert_eq!(e.label(), "missing_claim");
    // A path through a non-object is missing too.
    assert_eq!(
        refused(&with("app_metadata.plan.x"), &hs(&c)),
        JwtError::MissingClaim("app_metadata.plan.x".into())
    );
    // Namespaced claim names with dots are looked up whole first.
    let mut c = base.clone();
    c["https://example.com/org_id"] = json!("ns");
    assert_eq!(
        ok(&with("https://example.com/org_id"), &hs(&c)).tenant,
        "ns"
    );

    let v = hs_verifier();
    assert_eq!(
        refused(&v, &hs(&base)).client_message(),
        "missing claim \"tenant_id\""
    );
    for (value, text) in [
        (json!(42), "42"),
        (json!(-7), "-7"),
        (json!(u64::MAX), "18446744073709551615"),
    ] {
        let mut c = base.clone();
        c["tenant_id"] = value;
        assert_eq!(ok(&v, &hs(&c)).tenant, text);
    }
    for value in [
        json!({ "id": 1 }),
        json!(true),
        json!(1.5),
        json!(null),
        json!(["a"]),
    ] {
        let mut c = base.clone();
        c["tenant_id"] = value;
        let e = refused(&v, &hs(&c));
        assert_eq!(
            e.client_message(),
            "claim \"tenant_id\" is not a string or integer"
        );
        assert_eq!(e.label(), "bad_claim");
    }
    // Not validated here: the caller applies the tenant pattern.
    let mut c = base.clone();
    c["tenant_id"] = json!("not a valid tenant!");
    assert_eq!(ok(&v, &hs(&c)).tenant, "not a valid tenant!");
    // No sub: no subject.
    assert_eq!(ok(&v, &hs(&c)).subject, None);
}

// ---- malformed and oversized ----

#[test]
fn malformed_tokens_refused() {
    let v = hs_verifier();
    let good = hs(&claims("acme"));
    let p: Vec<&str> = good.split('.').collect();
    let cases = [
        "".to_string(),
        "garbage".to_string(),
        "not.a-jwt".to_string(),
        format!("{}.{}", p[0], p[1]),
        format!("{good}.extra"),
        format!("!!!.{}.{}", p[1], p[2]),
        format!("{}.{}.{}", b64(b"{not json"), p[1], p[2]),
        format!("{}.{}.{}", b64(b"[1,2]"), p[1], p[2]),
        format!("{}.{}.{}", b64(br#"{"typ":"JWT"}"#), p[1], p[2]),
        format!("{}.{}.***", p[0], p[1]),
        format!("{}=.{}.{}", p[0], p[1], p[2]),
        hs_raw(br#"{"alg":"HS256"}"#, b"{not json"),
        hs_raw(br#"{"alg":"HS256"}"#, b"[\"array\"]"),
        hs_raw(br#"{"alg":"HS256"}"#, b"\xff\xfe"),
    ];
    for token in &cases {
        let e = refused(&v, token);
        assert_eq!(e.label(), "malformed", "{token:?} gave {e:?}");
    }
    // Bad base64 in the claims part, correctly signed.
    let message = format!("{}.%%%", p[0]);
    let sig = jsonwebtoken::crypto::sign(
        message.as_bytes(),
        &EncodingKey::from_secret(SECRET.as_bytes()),
        Algorithm::HS256,
    )
    .unwrap();
    assert_eq!(
        refused(&v, &format!("{message}.{sig}")),
        JwtError::Malformed("claims are not base64url")
    );
}

#[test]
fn oversized_token_refused_before_parsing() {
    let mut c = claims("acme");
    c["pad"] = json!("x".repeat(MAX_TOKEN_LEN));
    let big = hs(&c);
    let e = refused(&hs_verifier(), &big);
    assert_eq!(e, JwtError::TooLarge(big.len()));
    assert_eq!(e.label(), "too_large");
    assert!(matches!(
        refused(&hs_verifier(), &"x".repeat(MAX_TOKEN_LEN + 1)),
        JwtError::TooLarge(_)
    ));
    // Just under the limit still parses.
    let mut c = claims("acme");
    c["pad"] = json!("x".repeat(MAX_TOKEN_LEN / 2));
    ok(&hs_verifier(), &hs(&c));
}

// ---- JWKS and rotation ----

fn jwks_json(keys: &[(&str, &EncodingKey)]) -> String {
    let set = JwkSet {
        keys: keys
            .iter()
            .map(|(kid, key)| {
                let mut jwk = Jwk::from_encoding_key(key, Algorithm::RS256).unwrap();
                jwk.common.key_id = Some((*kid).to_owned());
                jwk
            })
            .collect(),
    };
    serde_json::to_string(&set).unwrap()
}

fn jwks_verifier(
    files: &Files,
    keys: &[(&str, &EncodingKey)],
    secret: Option<&str>,
) -> JwtVerifier {
    let mut c = cfg();
    c.jwks_file = Some(files.write("jwks.json", &jwks_json(keys)));
    c.jwt_secret = secret.map(Into::into);
    JwtVerifier::from_config(&c).unwrap()
}

#[test]
fn kid_rotation_with_jwks() {
    let (k1, k2) = (&keys().rsa1.signing, &keys().rsa2.signing);
    let files = Files::new();
    let v = jwks_verifier(&files, &[("k1", k1), ("k2", k2)], None);
    let by2 = sign(Algorithm::RS256, k2, Some("k2"), &claims("acme"));
    assert_eq!(ok(&v, &by2).tenant, "acme");
    ok(&v, &sign(Algorithm::RS256, k1, Some("k1"), &claims("acme")));
    let e = refused(&v, &sign(Algorithm::RS256, k2, Some("k3"), &claims("acme")));
    assert_eq!(
        (e.label(), e.client_message().as_str()),
        ("unknown_kid", "unknown key id (kid)")
    );
    // Signed by key 2 but claiming kid k1: only k1 is tried.
    assert_eq!(
        refused(&v, &sign(Algorithm::RS256, k2, Some("k1"), &claims("a"))),
        JwtError::BadSignature
    );
    // No kid: every RSA key is tried.
    ok(&v, &sign(Algorithm::RS256, k2, None, &claims("acme")));
    // The JWK says RS256, so PS256 with that key is refused.
    let e = refused(&v, &sign(Algorithm::PS256, k2, Some("k2"), &claims("a")));
    assert_eq!(e, JwtError::AlgorithmNotAllowed("PS256"));
}

#[test]
fn jwks_with_secret_fallback() {
    let k1 = &keys().rsa1.signing;
    let files = Files::new();
    let v = jwks_verifier(&files, &[("k1", k1)], Some(SECRET));
    ok(&v, &sign(Algorithm::RS256, k1, Some("k1"), &claims("acme")));
    // An HS256 token with some other kid falls back to the kid-less secret.
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    ok(
        &v,
        &sign(
            Algorithm::HS256,
            &key,
            Some("supabase-kid"),
            &claims("acme"),
        ),
    );
    ok(&v, &sign(Algorithm::HS256, &key, None, &claims("acme")));
    // An RS256 token with an unknown kid has no kid-less RSA key to fall back to.
    assert_eq!(
        refused(&v, &sign(Algorithm::RS256, k1, Some("k9"), &claims("a"))),
        JwtError::UnknownKeyId
    );
}

#[test]
fn several_pem_files_rotate() {
    let (a, b) = (&keys().rsa1, &keys().rsa2);
    let v = pem_verifier(&[&a.public_pem, &b.public_pem]);
    ok(
        &v,
        &sign(Algorithm::RS256, &a.signing, None, &claims("acme")),
    );
    ok(
        &v,
        &sign(Algorithm::RS256, &b.signing, None, &claims("acme")),
    );
    // Two blocks in one file work as well, and key types can be mixed.
    let v = pem_verifier(&[&format!("{}{}", a.public_pem, keys().ed.public_pem)]);
    ok(
        &v,
        &sign(Algorithm::EdDSA, &keys().ed.signing, None, &claims("acme")),
    );
    ok(
        &v,
        &sign(Algorithm::RS256, &a.signing, None, &claims("acme")),
    );
}

// ---- configuration errors ----

fn config_error(c: &TenantConfig) -> String {
    JwtVerifier::from_config(c)
        .expect_err("config should be refused")
        .to_string()
}

#[test]
fn config_errors_name_the_file_and_problem() {
    let files = Files::new();
    assert!(config_error(&cfg()).contains("needs a key"));
    let mut c = cfg();
    c.jwt_secret = Some(String::new());
    assert_eq!(config_error(&c), "jwt_secret is empty");

    let mut c = cfg();
    let missing = files.0.path().join("nope.pem");
    c.jwt_public_key_files = vec![missing.clone()];
    let e = config_error(&c);
    assert!(
        e.starts_with(&format!("cannot read {}", missing.display())),
        "{e}"
    );

    let pem_case = |content: &str, want: &str| {
        let mut c = cfg();
        let path = files.write("key.pem", content);
        c.jwt_public_key_files = vec![path.clone()];
        let e = config_error(&c);
        assert!(
            e.starts_with(&path.display().to_string()) && e.contains(want),
            "{e}"
        );
    };
    pem_case("hello", "contains no PEM public key");
    pem_case(&pem("PRIVATE KEY", b"x"), "contains a private key");
    pem_case(&pem("RSA PRIVATE KEY", b"x"), "contains a private key");
    pem_case(&pem("CERTIFICATE", b"x"), "contains a certificate");
    pem_case(&pem("PUBLIC KEY", b"not der"), "not an RSA, EC");
    pem_case("-----BEGIN PUBLIC KEY-----\nAAAA\n", "unterminated");

    let jwks_case = |content: &str, want: &str| {
        let mut c = cfg();
        let path = files.write("jwks.json", content);
        c.jwks_file = Some(path.clone());
        let e = config_error(&c);
        assert!(
            e.starts_with(&path.display().to_string()) && e.contains(want),
            "{e}"
        );
    };
    jwks_case("{", "not valid JSON");
    jwks_case(r#"{"nokeys": []}"#, "no \"keys\" array");
    jwks_case(r#"{"keys": []}"#, "no usable signature key");
    let short_n = b64(&[0xC5; 128]);
    jwks_case(
        &json!({ "keys": [{ "kty": "RSA", "kid": "small", "n": short_n, "e": "AQAB" }] })
            .to_string(),
        "key 0 (kid \"small\"): RSA key has 1024 bits",
    );
    jwks_case(
        r#"{"keys": [{"kty": "oct", "kid": "h", "k": "c2VjcmV0"}]}"#,
        "no usable signature key",
    );
    jwks_case(
        r#"{"keys": [{"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA"}]}"#,
        "do not fit the curve",
    );
    let mut jwk = Jwk::from_encoding_key(&keys().rsa1.signing, Algorithm::RS256).unwrap();
    jwk.common.key_algorithm = Some(jsonwebtoken::jwk::KeyAlgorithm::ES256);
    jwks_case(
        &serde_json::to_string(&JwkSet { keys: vec![jwk] }).unwrap(),
        "does not fit the key type",
    );
}

#[test]
fn jwks_skips_encryption_keys_but_keeps_signature_keys() {
    let files = Files::new();
    let set: Value = serde_json::from_str(&jwks_json(&[("sig", &keys().rsa1.signing)])).unwrap();
    let mut enc = set["keys"][0].clone();
    enc["use"] = json!("enc");
    enc["kid"] = json!("enc");
    let doc = json!({ "keys": [enc, set["keys"][0]] });
    let mut c = cfg();
    c.jwks_file = Some(files.write("jwks.json", &doc.to_string()));
    let v = JwtVerifier::from_config(&c).unwrap();
    ok(
        &v,
        &sign(
            Algorithm::RS256,
            &keys().rsa1.signing,
            Some("sig"),
            &claims("a"),
        ),
    );
    assert_eq!(
        refused(
            &v,
            &sign(
                Algorithm::RS256,
                &keys().rsa1.signing,
                Some("enc"),
                &claims("a")
            )
        ),
        JwtError::UnknownKeyId
    );
}

#[test]
fn debug_output_has_no_secret() {
    let s = format!("{:?}", hs_verifier());
    assert!(!s.contains(SECRET) && s.contains("jwt_secret"), "{s}");
}

#[test]
fn labels_are_distinct_enough() {
    let all = [
        JwtError::TooLarge(1),
        JwtError::Malformed("x"),
        JwtError::AlgorithmNotAllowed("none"),
        JwtError::UnknownKeyId,
        JwtError::BadSignature,
        JwtError::Expired,
        JwtError::NotYetValid,
        JwtError::NoExpiry,
        JwtError::WrongIssuer,
        JwtError::WrongAudience,
        JwtError::MissingClaim("c".into()),
        JwtError::ClaimNotStringOrInteger("c".into()),
    ];
    let labels: std::collections::HashSet<_> = all.iter().map(JwtError::label).collect();
    assert_eq!(labels.len(), all.len());
    assert!(labels
        .iter()
        .all(|l| l.len() <= 16 && l.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')));
}

#[test]
fn cleartext_only_when_protected_or_allowed() {
    assert!(cleartext_allowed(true, false, false));
    assert!(cleartext_allowed(false, true, false));
    assert!(cleartext_allowed(true, true, false));
    assert!(!cleartext_allowed(false, false, false));
    assert!(cleartext_allowed(false, false, true));
}

#[test]
fn verify_uses_the_real_clock() {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut c = claims("acme");
    c["exp"] = json!(now + 60);
    assert!(hs_verifier().verify(&hs(&c)).is_ok());
    c["exp"] = json!(now - 3600);
    assert_eq!(hs_verifier().verify(&hs(&c)), Err(JwtError::Expired));
}

/// Cost of one verification per algorithm. Run with
/// `cargo test --release --lib jwt::tests::timing -- --ignored --nocapture`.
#[test]
#[ignore]
fn timing() {
    let cases: Vec<(&str, JwtVerifier, String)> = vec![
        ("HS256", hs_verifier(), hs(&claims("acme"))),
        (
            "RS256",
            pem_verifier(&[&keys().rsa1.public_pem]),
            sign(
                Algorithm::RS256,
                &keys().rsa1.signing,
                None,
                &claims("acme"),
            ),
        ),
        (
            "ES256",
            pem_verifier(&[&keys().ec256.public_pem]),
            sign(
                Algorithm::ES256,
                &keys().ec256.signing,
                None,
                &claims("acme"),
            ),
        ),
        (
            "EdDSA",
            pem_verifier(&[&keys().ed.public_pem]),
            sign(Algorithm::EdDSA, &keys().ed.signing, None, &claims("acme")),
        ),
    ];
    for (name, v, token) in cases {
        let n = 2000;
        for _ in 0..100 {
            v.verify_at(&token, NOW).unwrap();
        }
        let start = std::time::Instant::now();
        for _ in 0..n {
            std::hint::black_box(v.verify_at(std::hint::black_box(&token), NOW).unwrap());
        }
        let per = start.elapsed().as_secs_f64() * 1e6 / n as f64;
        println!("jwt verify {name}: {per:.1} µs/token");
    }
}
