//! JWT startup tokens end to end: the password is the end user's signed token,
//! the tenant comes from its claims, and every kind of bad token is refused.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use common::{sqlstate, Harness};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tenantpool::config::TenantSource;

const SECRET: &str = "jwt-test-secret-that-is-long-enough-0123";
const ISSUER: &str = "https://auth.example.com";
const AUDIENCE: &str = "authenticated";

fn pem(tag: &str, der: &[u8]) -> String {
    let body: Vec<String> = STANDARD
        .encode(der)
        .as_bytes()
        .chunks(64)
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
        .collect();
    format!(
        "-----BEGIN {tag}-----\n{}\n-----END {tag}-----\n",
        body.join("\n")
    )
}

struct Keys {
    rsa: EncodingKey,
    ec: EncodingKey,
    dir: tempfile::TempDir,
}

fn keys() -> Keys {
    let dir = tempfile::tempdir().unwrap();
    let rsa = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
    let rsa_private: aws_lc_rs::encoding::Pkcs8V1Der = rsa.as_der().unwrap();
    std::fs::write(
        dir.path().join("rsa.pem"),
        pem("PUBLIC KEY", rsa.public_key().as_der().unwrap().as_ref()),
    )
    .unwrap();
    let ec = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    std::fs::write(
        dir.path().join("ec.pem"),
        pem("PUBLIC KEY", ec.public_key().as_der().unwrap().as_ref()),
    )
    .unwrap();
    Keys {
        rsa: EncodingKey::from_rsa_pem(pem("PRIVATE KEY", rsa_private.as_ref()).as_bytes())
            .unwrap(),
        ec: EncodingKey::from_ec_pem(
            pem("PRIVATE KEY", ec.to_pkcs8v1().unwrap().as_ref()).as_bytes(),
        )
        .unwrap(),
        dir,
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(tenant: &str) -> Value {
    json!({ "sub": "user-1", "iss": ISSUER, "aud": AUDIENCE, "exp": now() + 600,
            "app_metadata": { "org_id": tenant } })
}

fn hs(claims: &Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

async fn start(keys: &Keys) -> Harness {
    let dir = keys.dir.path().to_owned();
    Harness::start(move |c, _| {
        let t = c.databases.get_mut("app").unwrap().tenant.as_mut().unwrap();
        t.source = TenantSource::Jwt;
        t.claim = "app_metadata.org_id".into();
        t.jwt_secret = Some(SECRET.into());
        t.jwt_public_key_files = vec![dir.join("rsa.pem"), dir.join("ec.pem")];
        t.issuer = Some(ISSUER.into());
        t.audience = Some(AUDIENCE.into());
        t.leeway_seconds = 0;
    })
    .await
}

async fn count(client: &tokio_postgres::Client) -> i64 {
    client
        .query_one("select count(*) from items", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_tokens_of_each_algorithm_give_their_tenant() {
    let keys = keys();
    let h = start(&keys).await;
    let acme = h
        .try_connect("anyone", &hs(&claims("acme")), "app")
        .await
        .unwrap();
    assert_eq!(count(&acme).await, 3);
    let rs = encode(&Header::new(Algorithm::RS256), &claims("globex"), &keys.rsa).unwrap();
    let globex = h.try_connect("app", &rs, "app").await.unwrap();
    assert_eq!(count(&globex).await, 2);
    let es = encode(&Header::new(Algorithm::ES256), &claims("acme"), &keys.ec).unwrap();
    let acme2 = h.try_connect("app", &es, "app").await.unwrap();
    let t: String = acme2
        .query_one("select current_setting('app.current_tenant')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(t, "acme");
    // The same token through psql (which sends it as the password).
    let out = tokio::process::Command::new(h.bin("psql"))
        .args([
            "-X",
            "-A",
            "-t",
            "-h",
            "127.0.0.1",
            "-p",
            &h.port().to_string(),
            "-U",
            "app",
            "app",
        ])
        .args(["-c", "select count(*) from items"])
        .env("PGPASSWORD", hs(&claims("globex")))
        .output()
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "2",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_refused_with_a_reason_and_no_echo() {
    let keys = keys();
    let h = start(&keys).await;
    let mut expired = claims("acme");
    expired["exp"] = json!(now() - 60);
    let mut early = claims("acme");
    early["nbf"] = json!(now() + 600);
    let mut issuer = claims("acme");
    issuer["iss"] = json!("https://evil.example.com");
    let mut audience = claims("acme");
    audience["aud"] = json!("someone-else");
    let mut no_claim = claims("acme");
    no_claim["app_metadata"] = json!({});
    let wrong_key = encode(
        &Header::new(Algorithm::HS256),
        &claims("acme"),
        &EncodingKey::from_secret(b"not-the-secret-but-long-enough-0000"),
    )
    .unwrap();
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims("globex").to_string())
    );
    // HS256 "signed" with the RSA public key as the secret: algorithm confusion.
    let rsa_pem = std::fs::read(keys.dir.path().join("rsa.pem")).unwrap();
    let confused = encode(
        &Header::new(Algorithm::HS256),
        &claims("globex"),
        &EncodingKey::from_secret(&rsa_pem),
    )
    .unwrap();
    let cases: Vec<(&str, String, &str, &str)> = vec![
        ("expired", hs(&expired), "28P01", "expired"),
        ("not yet valid", hs(&early), "28P01", "not yet valid"),
        ("wrong issuer", hs(&issuer), "28P01", "issuer"),
        ("wrong audience", hs(&audience), "28P01", "audience"),
        (
            "missing claim",
            hs(&no_claim),
            "28P01",
            "app_metadata.org_id",
        ),
        ("wrong key", wrong_key, "28P01", "signature"),
        ("alg none", none, "28P01", "none"),
        ("HS/RS confusion", confused, "28P01", "signature"),
        ("garbage", "not-a-token".into(), "28P01", "malformed"),
        (
            "bad tenant in claim",
            hs(&claims("acme'; drop")),
            "28000",
            "tenant",
        ),
    ];
    for (what, token, code, says) in cases {
        let e = h
            .try_connect("app", &token, "app")
            .await
            .err()
            .unwrap_or_else(|| panic!("{what} accepted"));
        assert_eq!(sqlstate(&e).as_deref(), Some(code), "{what}: {e:?}");
        let message = e.as_db_error().unwrap().message().to_lowercase();
        assert!(message.contains(says), "{what}: {message}");
        if token.len() > 20 {
            assert!(
                !message.contains(&token[..20]),
                "{what}: the token is echoed"
            );
        }
    }
    // And the pooler still serves good tokens.
    let acme = h
        .try_connect("app", &hs(&claims("acme")), "app")
        .await
        .unwrap();
    assert_eq!(count(&acme).await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_finishes_its_transaction_then_is_refused() {
    let keys = keys();
    let h = start(&keys).await;
    let mut short = claims("acme");
    let exp = now() + 2;
    short["exp"] = json!(exp);
    let mut client = h.try_connect("app", &hs(&short), "app").await.unwrap();
    let tx = client.transaction().await.unwrap();
    tx.execute(
        "insert into items (tenant_id, name) values ('acme', 'before expiry')",
        &[],
    )
    .await
    .unwrap();
    // Let the token expire while the transaction is open.
    let wait = Duration::from_secs(exp - now() + 1);
    tokio::time::sleep(wait).await;
    assert!(now() > exp);
    let n: i64 = tx
        .query_one("select count(*) from items", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 4, "the open transaction goes on");
    tx.commit().await.unwrap();
    let e = client.simple_query("select 1").await.unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("28000"), "{e:?}");
    assert!(e.as_db_error().unwrap().message().contains("expired"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_keys_rotate_by_kid() {
    let dir = tempfile::tempdir().unwrap();
    let mut signers = Vec::new();
    let mut jwks = Vec::new();
    for kid in ["k1", "k2"] {
        let kp = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
        let private: aws_lc_rs::encoding::Pkcs8V1Der = kp.as_der().unwrap();
        let signer =
            EncodingKey::from_rsa_pem(pem("PRIVATE KEY", private.as_ref()).as_bytes()).unwrap();
        // A public JWK from the modulus and exponent.
        let public = kp.public_key();
        let n = URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero());
        let e = URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero());
        jwks.push(
            json!({ "kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig", "n": n, "e": e }),
        );
        signers.push((kid, signer));
    }
    std::fs::write(
        dir.path().join("jwks.json"),
        json!({ "keys": jwks }).to_string(),
    )
    .unwrap();
    let path = dir.path().join("jwks.json");
    let h = Harness::start(move |c, _| {
        let t = c.databases.get_mut("app").unwrap().tenant.as_mut().unwrap();
        t.source = TenantSource::Jwt;
        t.jwks_file = Some(path);
    })
    .await;
    let claims = json!({ "tenant_id": "globex", "exp": now() + 600 });
    for (kid, signer) in &signers {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid.to_string());
        let token = encode(&header, &claims, signer).unwrap();
        let c = h.try_connect("app", &token, "app").await.unwrap();
        assert_eq!(count(&c).await, 2, "{kid}");
    }
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("k3".into());
    let token = encode(&header, &claims, &signers[0].1).unwrap();
    let e = h.try_connect("app", &token, "app").await.err().unwrap();
    assert!(
        e.as_db_error()
            .unwrap()
            .message()
            .contains("unknown key id"),
        "{e:?}"
    );
}
