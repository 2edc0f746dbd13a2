//! SCRAM server tests, driven by postgres-protocol's SCRAM client.

use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use postgres_protocol::authentication::sasl::{self, ChannelBinding, ScramSha256};
use rand::RngExt;

use super::scram::{ScramExchange, MECHANISM};
use super::secret::ScramVerifier;
use super::AuthError;

/// Non-ASCII, with a character SASLprep maps (U+00A0 → space).
const PASSWORD: &str = "hunter2\u{a0}ünïcode";
const SERVER_NONCE: &str = "Zml4ZWQtc2VydmVyLW5vbmNl";

/// Runs a whole exchange; client-side errors panic (the server must always
/// produce what a real client accepts).
fn run(
    verifier: ScramVerifier,
    always_fail: bool,
    password: &str,
    cb: ChannelBinding,
) -> Result<(), AuthError> {
    let mut client = ScramSha256::new(password.as_bytes(), cb);
    let mut server = ScramExchange::new(verifier, always_fail);
    let server_first = server.client_first(client.message())?;
    client
        .update(&server_first)
        .expect("client accepts server-first");
    let server_final = server.client_final(client.message())?;
    client
        .finish(&server_final)
        .expect("client verifies server");
    Ok(())
}

/// One real client's messages, recorded against a fixed server nonce so the
/// final message can be mutated and replayed without redoing PBKDF2.
struct Recording {
    verifier: ScramVerifier,
    first: Vec<u8>,
    last: String,
}

fn recording() -> &'static Recording {
    static REC: OnceLock<Recording> = OnceLock::new();
    REC.get_or_init(|| {
        let verifier = ScramVerifier::from_password(PASSWORD);
        let mut client = ScramSha256::new(PASSWORD.as_bytes(), ChannelBinding::unsupported());
        let first = client.message().to_vec();
        let mut server = ScramExchange::with_server_nonce(verifier.clone(), false, SERVER_NONCE);
        let server_first = server.client_first(&first).unwrap();
        client.update(&server_first).unwrap();
        let last = String::from_utf8(client.message().to_vec()).unwrap();
        assert!(server.client_final(last.as_bytes()).is_ok());
        Recording {
            verifier,
            first,
            last,
        }
    })
}

fn replay(client_final: &[u8]) -> Result<Vec<u8>, AuthError> {
    let rec = recording();
    let mut server = ScramExchange::with_server_nonce(rec.verifier.clone(), false, SERVER_NONCE);
    server.client_first(&rec.first).unwrap();
    server.client_final(client_final)
}

fn malformed(r: Result<Vec<u8>, AuthError>) -> bool {
    matches!(r, Err(AuthError::Malformed(_)))
}

#[test]
fn mechanism_name() {
    assert_eq!(MECHANISM, sasl::SCRAM_SHA_256);
}

#[test]
fn full_exchange_with_verifier_from_password() {
    let v = ScramVerifier::from_password(PASSWORD);
    assert_eq!(
        run(v.clone(), false, PASSWORD, ChannelBinding::unsupported()),
        Ok(())
    );
    assert_eq!(
        run(v, false, PASSWORD, ChannelBinding::unrequested()),
        Ok(())
    );
}

#[test]
fn full_exchange_with_verifier_string() {
    let s = postgres_protocol::password::scram_sha_256(b"plain ascii");
    let v = ScramVerifier::parse(&s).unwrap();
    assert_eq!(
        run(v, false, "plain ascii", ChannelBinding::unsupported()),
        Ok(())
    );
}

#[test]
fn wrong_password_fails() {
    let v = ScramVerifier::from_password(PASSWORD);
    let r = run(v, false, "hunter3", ChannelBinding::unsupported());
    assert_eq!(r, Err(AuthError::Failed));
    assert_eq!(AuthError::Failed.sqlstate(), "28P01");
}

#[test]
fn always_fail_fails_even_with_the_right_password() {
    let v = ScramVerifier::from_password(PASSWORD);
    let r = run(v, true, PASSWORD, ChannelBinding::unsupported());
    assert_eq!(r, Err(AuthError::Failed));
}

#[test]
fn mock_verifier_fails_and_keeps_its_salt() {
    let key = [42u8; 32];
    let salt_of = |user: &str| {
        let mut server = ScramExchange::new(ScramVerifier::mock(user, &key), true);
        let first = server.client_first(b"n,,n=,r=abcdef").unwrap();
        let first = String::from_utf8(first).unwrap();
        let salt = first.split(',').nth(1).unwrap().to_owned();
        assert!(first.ends_with(",i=4096"), "{first}");
        salt
    };
    assert_eq!(salt_of("ghost"), salt_of("ghost"));
    assert_ne!(salt_of("ghost"), salt_of("phantom"));

    for always_fail in [true, false] {
        let v = ScramVerifier::mock("ghost", &key);
        let r = run(v, always_fail, PASSWORD, ChannelBinding::unsupported());
        assert_eq!(r, Err(AuthError::Failed));
    }
}

#[test]
fn server_first_message_shape() {
    let v = ScramVerifier::from_password(PASSWORD);
    let nonce_of = || {
        let mut server = ScramExchange::new(v.clone(), false);
        let msg = server.client_first(b"y,,n=ignored,r=cl13nt").unwrap();
        let msg = String::from_utf8(msg).unwrap();
        let parts: Vec<&str> = msg.split(',').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[1], format!("s={}", STANDARD.encode(&v.salt)));
        assert_eq!(parts[2], "i=4096");
        let nonce = parts[0].strip_prefix("r=cl13nt").unwrap().to_owned();
        // 18 random bytes, base64.
        assert_eq!(STANDARD.decode(&nonce).unwrap().len(), 18);
        nonce
    };
    assert_ne!(nonce_of(), nonce_of());
}

#[test]
fn channel_binding_is_refused() {
    let v = ScramVerifier::mock("u", &[0; 32]);
    let cb = ChannelBinding::tls_server_end_point(vec![1, 2, 3]);
    let r = run(v, false, PASSWORD, cb);
    assert!(matches!(r, Err(AuthError::Unsupported(_))), "{r:?}");
}

#[test]
fn malformed_client_first() {
    let v = ScramVerifier::mock("u", &[0; 32]);
    let cases: &[(&[u8], &str)] = &[
        (b"", "malformed"),
        (b"n", "malformed"),
        (b"n,,", "malformed"),
        (b"n,,n=", "malformed"),
        (b"n,,n=,", "malformed"),
        (b"n,,n=,r=", "malformed"),
        (b"n,,n=,r", "malformed"),
        (b"n,,r=abc", "malformed"),
        (b"n,,n=,x=abc", "malformed"),
        (b"n,,n=,r=ab\x01c", "malformed"),
        (b"n,,n=,r=ab c", "malformed"),
        (b"n,,n=,r=ab\xc3\xa9", "malformed"),
        (b"n,,n=,r=abc,", "malformed"),
        (b"n,,n=,r=abc,1=x", "malformed"),
        (b"n,,n=\xff,r=abc", "malformed"),
        (b"n,,n=,r=abc\0", "malformed"),
        (b"x,,n=,r=abc", "malformed"),
        (b"n,x,n=,r=abc", "malformed"),
        (b"N,,n=,r=abc", "malformed"),
        (b"p=tls-server-end-point,,n=,r=abc", "unsupported"),
        (b"n,a=bob,n=,r=abc", "unsupported"),
        (b"n,,m=ext,n=,r=abc", "unsupported"),
        (b"n,,n=,r=abc,x=ext", "ok"),
        (b"n,,n=someone,r=abc", "ok"),
    ];
    for (input, want) in cases {
        let mut server = ScramExchange::new(v.clone(), true);
        let got = match server.client_first(input) {
            Ok(_) => "ok",
            Err(AuthError::Malformed(_)) => "malformed",
            Err(AuthError::Unsupported(_)) => "unsupported",
            Err(AuthError::Failed) => "failed",
        };
        assert_eq!(got, *want, "{:?}", String::from_utf8_lossy(input));
    }
}

#[test]
fn malformed_client_final() {
    let rec = recording();
    let last = rec.last.as_str();
    let (head, proof) = last.rsplit_once(",p=").unwrap();
    let nonce = head.strip_prefix("c=biws,r=").unwrap();
    assert_eq!(replay(last.as_bytes()).map(|_| ()), Ok(()));

    let bad_nonce = format!("c=biws,r={nonce}x,p={proof}");
    let short_nonce = format!("c=biws,r={},p={proof}", &nonce[1..]);
    let wrong_cbind = format!("c=eSws,r={nonce},p={proof}");
    let empty_cbind = format!("c=,r={nonce},p={proof}");
    let no_cbind = format!("r={nonce},p={proof}");
    let no_nonce = format!("c=biws,p={proof}");
    let swapped = format!("r={nonce},c=biws,p={proof}");
    let bad_b64 = format!("{head},p=!!!!{}", &proof[4..]);
    let short_proof = format!("{head},p=c2hvcnQ=");
    let long_proof = format!("{head},p={}", STANDARD.encode([7u8; 33]));
    let longer_proof = format!("{head},p={}", STANDARD.encode([7u8; 64]));
    let trailing = format!("{last},x=1");
    let trailing_comma = format!("{last},");
    let empty_proof = format!("{head},p=");
    let with_nul = format!("{last}\0");
    for bad in [
        &b""[..],
        head.as_bytes(),
        bad_nonce.as_bytes(),
        short_nonce.as_bytes(),
        wrong_cbind.as_bytes(),
        empty_cbind.as_bytes(),
        no_cbind.as_bytes(),
        no_nonce.as_bytes(),
        swapped.as_bytes(),
        bad_b64.as_bytes(),
        short_proof.as_bytes(),
        long_proof.as_bytes(),
        longer_proof.as_bytes(),
        trailing.as_bytes(),
        trailing_comma.as_bytes(),
        empty_proof.as_bytes(),
        with_nul.as_bytes(),
        b"c=biws,r=\xff\xfe,p=AAAA",
    ] {
        let r = replay(bad);
        assert!(
            malformed(r.clone()),
            "{:?}: {r:?}",
            String::from_utf8_lossy(bad)
        );
    }

    // Well-formed but wrong proofs: a flipped bit, or an extension the proof
    // does not cover.
    let mut p = STANDARD.decode(proof).unwrap();
    p[0] ^= 1;
    let flipped = format!("{head},p={}", STANDARD.encode(&p));
    let ext = format!("{head},x=ext,p={proof}");
    for bad in [flipped, ext] {
        assert_eq!(replay(bad.as_bytes()), Err(AuthError::Failed), "{bad}");
    }
}

#[test]
fn out_of_order_calls() {
    let rec = recording();
    let v = rec.verifier.clone();

    let mut s = ScramExchange::new(v.clone(), false);
    assert!(malformed(s.client_final(rec.last.as_bytes())));
    // After an error the exchange is over.
    assert!(malformed(s.client_first(&rec.first)));

    let mut s = ScramExchange::new(v.clone(), false);
    s.client_first(&rec.first).unwrap();
    assert!(malformed(s.client_first(&rec.first)));
    assert!(malformed(s.client_final(rec.last.as_bytes())));

    let mut s = ScramExchange::with_server_nonce(v.clone(), false, SERVER_NONCE);
    s.client_first(&rec.first).unwrap();
    assert!(s.client_final(rec.last.as_bytes()).is_ok());
    assert!(malformed(s.client_final(rec.last.as_bytes())));
    assert!(malformed(s.client_first(&rec.first)));

    // A failed proof also ends the exchange.
    let mut s = ScramExchange::with_server_nonce(v, true, SERVER_NONCE);
    s.client_first(&rec.first).unwrap();
    assert_eq!(s.client_final(rec.last.as_bytes()), Err(AuthError::Failed));
    assert!(malformed(s.client_final(rec.last.as_bytes())));
}

#[test]
fn errors_never_contain_secrets() {
    let rec = recording();
    let proof = rec.last.rsplit_once(",p=").unwrap().1;
    let e = replay(format!("{},x", rec.last).as_bytes()).unwrap_err();
    assert!(!e.to_string().contains(proof));
    assert!(!e.to_string().contains(PASSWORD));
}

/// Random bytes and random mutations of valid messages must never panic, and
/// nothing but the exact valid final message may succeed.
#[test]
fn random_input_never_panics() {
    const ALPHABET: &[u8] = b",=cnpryax019+/ \0\xff\xc3";
    let rec = recording();
    let mut rng = rand::rng();
    let mut mutate = |valid: &[u8]| -> Vec<u8> {
        let mut m = valid.to_vec();
        for _ in 0..rng.random_range(1..4) {
            let choice = rng.random_range(0..4);
            let pos = rng.random_range(0..=m.len());
            let byte = if rng.random_bool(0.5) {
                ALPHABET[rng.random_range(0..ALPHABET.len())]
            } else {
                rng.random::<u8>()
            };
            match choice {
                0 if pos < m.len() => m[pos] = byte,
                1 => m.insert(pos, byte),
                2 if pos < m.len() => {
                    m.remove(pos);
                }
                _ => m.truncate(pos),
            }
        }
        m
    };
    let mut inputs = Vec::new();
    for _ in 0..3000 {
        inputs.push(mutate(&rec.first));
        inputs.push(mutate(rec.last.as_bytes()));
    }
    let mut rng = rand::rng();
    for _ in 0..3000 {
        let len = rng.random_range(0..64);
        inputs.push((0..len).map(|_| rng.random::<u8>()).collect());
    }

    let mock = ScramVerifier::mock("fuzz", &[9; 32]);
    for input in &inputs {
        let mut s = ScramExchange::new(mock.clone(), true);
        let _ = s.client_first(input);
        let _ = s.client_final(input);

        if let Ok(reply) = replay(input) {
            assert_eq!(input.as_slice(), rec.last.as_bytes());
            assert!(reply.starts_with(b"v="));
        }
    }
}
