//! TLS on both sides, with real clients: psql (`sslmode=verify-full`, `require`,
//! `disable`), tokio-postgres over rustls, a raw direct-TLS client (PostgreSQL
//! 17's `sslnegotiation=direct`), the `required` policy, certificate reload, and
//! pools reaching a PostgreSQL started with `ssl = on`.

mod common;
#[path = "common/wire.rs"]
mod wire;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Harness, PASSWORD};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::ServerName;
use rustls::RootCertStore;
use tenantpool::config::{AuthType, ClientTlsConfig, Config, ServerTls, TlsRequired};
use tenantpool::pgcluster::TempCluster;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_postgres::config::SslMode;
use tokio_postgres::Client;
use tokio_postgres_rustls::MakeRustlsConnect;
use wire::{message, startup_packet, IO_TIMEOUT, PROTOCOL_3_0};

const DEADLINE: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------- certificates

/// A test CA and files in a temp dir.
struct Pki {
    dir: tempfile::TempDir,
}

struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        Ca {
            issuer: Issuer::new(params, key),
            pem,
        }
    }

    /// A server certificate for localhost and 127.0.0.1: (cert PEM, key PEM).
    fn leaf(&self) -> (String, String) {
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

impl Pki {
    fn new() -> Pki {
        Pki {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    /// Writes `ca` as `<ca_name>.pem` and a leaf it signed as server.crt/server.key.
    fn install(&self, ca: &Ca, ca_name: &str) -> PathBuf {
        let (cert, key) = ca.leaf();
        self.write("server.crt", &cert);
        self.write("server.key", &key);
        self.write(&format!("{ca_name}.pem"), &ca.pem)
    }

    fn client_tls(&self, required: TlsRequired) -> ClientTlsConfig {
        ClientTlsConfig {
            cert_file: self.path("server.crt"),
            key_file: self.path("server.key"),
            required,
        }
    }
}

fn roots(ca_pem: &str) -> RootCertStore {
    use rustls::pki_types::pem::PemObject;
    let mut roots = RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    roots
}

fn rustls_client(ca_pem: &str, alpn: Option<&[u8]>) -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots(ca_pem))
        .with_no_client_auth();
    config.alpn_protocols = alpn.into_iter().map(<[u8]>::to_vec).collect();
    config
}

// ---------------------------------------------------------------- clients

/// tokio-postgres over TLS (sslmode=require, verifying against `ca_pem`).
async fn try_tls_connect(
    h: &Harness,
    ca_pem: &str,
    user: &str,
    db: &str,
) -> Result<Client, tokio_postgres::Error> {
    let mut config = h.config(user, PASSWORD, db);
    config.host("localhost").ssl_mode(SslMode::Require);
    let tls = MakeRustlsConnect::new(rustls_client(ca_pem, None));
    let (client, conn) = config.connect(tls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

async fn tls_connect(h: &Harness, ca_pem: &str, user: &str, db: &str) -> Client {
    try_tls_connect(h, ca_pem, user, db)
        .await
        .unwrap_or_else(|e| panic!("TLS connect as {user} to {db}: {e:?}"))
}

async fn count_items(c: &Client) -> i64 {
    c.query_one("select count(*) from items", &[])
        .await
        .unwrap()
        .get(0)
}

/// Runs psql with `conninfo`; returns (success, stdout, stderr).
async fn psql_conninfo(h: &Harness, conninfo: &str, sql: &str) -> (bool, String, String) {
    let mut cmd = tokio::process::Command::new(h.bin("psql"));
    cmd.args([
        "-X",
        "-q",
        "-A",
        "-t",
        "-v",
        "ON_ERROR_STOP=1",
        "-d",
        conninfo,
    ])
    .args(["-c", sql])
    .env("PGPASSWORD", PASSWORD)
    .env("PGCONNECT_TIMEOUT", "10")
    .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .expect("psql timed out")
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    )
}

fn conninfo(h: &Harness, user: &str, extra: &str) -> String {
    format!(
        "host=localhost port={} user={user} dbname=app {extra}",
        h.port()
    )
}

async fn start_with_tls(pki: &Pki, required: TlsRequired) -> Harness {
    let tls = pki.client_tls(required);
    Harness::start(move |c, _| c.pooler.tls = Some(tls)).await
}

async fn poll_until<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + DEADLINE;
    let mut backoff = Duration::from_millis(10);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_millis(200));
    }
}

// ---------------------------------------------------------------- client side

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_verify_full_require_and_disable() {
    let pki = Pki::new();
    let ca_file = pki.install(&Ca::new("test CA"), "ca");
    let wrong_ca = pki.write("wrong.pem", &Ca::new("other CA").pem);
    let h = start_with_tls(&pki, TlsRequired::Never).await;
    let sql = "select count(*) from items";

    let verify = format!("sslmode=verify-full sslrootcert={}", ca_file.display());
    let (ok, out, err) = psql_conninfo(&h, &conninfo(&h, "app.acme", &verify), sql).await;
    assert!(ok, "verify-full: {err}");
    assert_eq!(out, "3");
    let (ok, out, err) = psql_conninfo(&h, &conninfo(&h, "app.acme", &verify), "\\conninfo").await;
    assert!(ok, "{err}");
    assert!(out.contains("SSL connection"), "{out}");

    let wrong = format!("sslmode=verify-full sslrootcert={}", wrong_ca.display());
    let (ok, _, err) = psql_conninfo(&h, &conninfo(&h, "app.acme", &wrong), sql).await;
    assert!(!ok, "verify-full against the wrong CA must fail");
    assert!(err.contains("certificate verify failed"), "{err}");

    let (ok, out, err) =
        psql_conninfo(&h, &conninfo(&h, "app.globex", "sslmode=require"), sql).await;
    assert!(ok, "require: {err}");
    assert_eq!(out, "2");

    let disable = conninfo(&h, "app.globex", "sslmode=disable");
    let (ok, out, err) = psql_conninfo(&h, &disable, sql).await;
    assert!(ok, "disable: {err}");
    assert_eq!(out, "2");
    let (_, out, _) = psql_conninfo(&h, &disable, "\\conninfo").await;
    assert!(!out.contains("SSL connection"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn driver_over_tls_keeps_tenants_apart_and_moves_big_messages() {
    let pki = Pki::new();
    let ca = Ca::new("test CA");
    pki.install(&ca, "ca");
    let h = start_with_tls(&pki, TlsRequired::Never).await;

    let acme = tls_connect(&h, &ca.pem, "app.acme", "app").await;
    let globex = tls_connect(&h, &ca.pem, "app.globex", "app").await;
    for _ in 0..5 {
        let (a, g) = tokio::join!(count_items(&acme), count_items(&globex));
        assert_eq!((a, g), (3, 2));
    }
    let tenant: String = acme
        .query_one("select current_setting('app.current_tenant')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(tenant, "acme");

    // Several MB each way: TLS must not sit on buffered ciphertext (flushes).
    let big = "x".repeat(3 << 20);
    let n: i32 = acme
        .query_one("select length($1::text)", &[&big])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n as usize, big.len());
    let back: String = globex
        .query_one("select repeat('y', 4000000)", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(back.len(), 4_000_000);

    // Pipelined queries: later ones wait decrypted inside rustls while the first
    // transaction runs; the idle wait must still see them.
    let queries = (0..50).map(|i| {
        let acme = &acme;
        async move {
            let row = acme
                .query_one("select $1::int + count(*)::int from items", &[&i])
                .await
                .unwrap();
            row.get::<_, i32>(0)
        }
    });
    let results = futures_util::future::join_all(queries).await;
    assert_eq!(results, (0..50).map(|i| i + 3).collect::<Vec<_>>());
    assert_eq!(count_items(&globex).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_always_refuses_plain_tcp_but_not_tls_or_unix() {
    let pki = Pki::new();
    let ca = Ca::new("test CA");
    pki.install(&ca, "ca");
    let sock_dir = tempfile::tempdir().unwrap();
    let dir = sock_dir.path().to_owned();
    let tls = pki.client_tls(TlsRequired::Always);
    let h = Harness::start(move |c, _| {
        c.pooler.tls = Some(tls);
        c.pooler.unix_socket_dir = Some(dir);
    })
    .await;

    let err = match h.try_connect("app.acme", PASSWORD, "app").await {
        Ok(_) => panic!("plain TCP client accepted although TLS is required"),
        Err(e) => e,
    };
    let db = err.as_db_error().unwrap_or_else(|| panic!("{err:?}"));
    assert_eq!(db.code().code(), "28000");
    assert_eq!(
        db.message(),
        "TLS is required for connections from 127.0.0.1; use sslmode=require"
    );

    let c = tls_connect(&h, &ca.pem, "app.acme", "app").await;
    assert_eq!(count_items(&c).await, 3);

    let mut config = h.config("app.globex", PASSWORD, "app");
    config.host_path(sock_dir.path());
    let (c, conn) = config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    assert_eq!(count_items(&c).await, 2);

    // A cancel inside TLS (the plain one is in direct_tls_needs_alpn_postgresql).
    let c = tls_connect(&h, &ca.pem, "app.acme", "app").await;
    let token = c.cancel_token();
    let sleeper = tokio::spawn(async move { c.simple_query("select pg_sleep(30)").await });
    let direct = h.direct_superuser().await;
    wire::wait_until(
        &direct,
        "select count(*) > 0 from pg_stat_activity where query = 'select pg_sleep(30)'",
    )
    .await;
    token
        .cancel_query(MakeRustlsConnect::new(rustls_client(&ca.pem, None)))
        .await
        .unwrap();
    let res = tokio::time::timeout(IO_TIMEOUT, sleeper)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        common::sqlstate(&res.unwrap_err()).as_deref(),
        Some("57014")
    );
}

/// A raw client speaking PostgreSQL 17's direct TLS: TLS handshake first, then
/// the StartupMessage inside it.
struct DirectTls<S> {
    stream: S,
    buf: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> DirectTls<S> {
    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
        self.stream.flush().await.unwrap();
    }

    async fn read_msg(&mut self) -> wire::Msg {
        loop {
            if self.buf.len() >= 5 {
                let total = 1 + i32::from_be_bytes(self.buf[1..5].try_into().unwrap()) as usize;
                if self.buf.len() >= total {
                    let msg = wire::Msg {
                        tag: self.buf[0],
                        body: self.buf[5..total].to_vec(),
                    };
                    self.buf.drain(..total);
                    return msg;
                }
            }
            let mut chunk = [0u8; 8192];
            let n = tokio::time::timeout(IO_TIMEOUT, self.stream.read(&mut chunk))
                .await
                .expect("read timed out")
                .unwrap();
            assert_ne!(n, 0, "EOF before a whole message");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    async fn until_ready(&mut self) -> Vec<wire::Msg> {
        let mut out = Vec::new();
        loop {
            let m = self.read_msg().await;
            let done = m.tag == b'Z';
            out.push(m);
            if done {
                return out;
            }
        }
    }
}

async fn direct_tls(
    h: &Harness,
    ca_pem: &str,
    alpn: Option<&[u8]>,
) -> std::io::Result<DirectTls<tokio_rustls::client::TlsStream<TcpStream>>> {
    direct_tls_on(TcpStream::connect(h.addr).await?, ca_pem, alpn).await
}

async fn direct_tls_on(
    tcp: TcpStream,
    ca_pem: &str,
    alpn: Option<&[u8]>,
) -> std::io::Result<DirectTls<tokio_rustls::client::TlsStream<TcpStream>>> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(rustls_client(ca_pem, alpn)));
    let stream = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await?;
    Ok(DirectTls {
        stream,
        buf: Vec::new(),
    })
}

/// Direct TLS logs in with ALPN "postgresql" and is refused without it. The same
/// connection, with a tiny receive window, checks that the relay flushes TLS (it
/// hangs without), and that a plain CancelRequest still works under `always`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_tls_needs_alpn_postgresql() {
    let pki = Pki::new();
    let ca = Ca::new("test CA");
    pki.install(&ca, "ca");
    let tls = pki.client_tls(TlsRequired::Always);
    let h = Harness::start(move |c: &mut Config, _: &TempCluster| {
        c.pooler.tls = Some(tls);
        c.pooler.auth_type = AuthType::Md5;
    })
    .await;

    // A tiny receive window keeps the pooler's socket full, so its last write of
    // each answer would stay inside rustls without the relay's flush.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(2048).unwrap();
    let tcp = socket.connect(h.addr).await.unwrap();
    let mut c = direct_tls_on(tcp, &ca.pem, Some(b"postgresql"))
        .await
        .unwrap();
    assert_eq!(
        c.stream.get_ref().1.alpn_protocol(),
        Some(&b"postgresql"[..])
    );
    c.send(&startup_packet(
        PROTOCOL_3_0,
        &[("user", "app.acme"), ("database", "app")],
    ))
    .await;
    let auth = c.read_msg().await;
    assert_eq!((auth.tag, auth.i32_at(0)), (b'R', 5), "md5 request");
    let salt: [u8; 4] = auth.body[4..8].try_into().unwrap();
    let hash = postgres_protocol::authentication::md5_hash(b"app.acme", PASSWORD.as_bytes(), salt);
    let mut body = hash.into_bytes();
    body.push(0);
    c.send(&message(b'p', &body)).await;
    let greeting = c.until_ready().await;
    assert!(wire::first_error(&greeting).is_none(), "{greeting:?}");
    c.send(&wire::query("select count(*) from items")).await;
    assert_eq!(wire::scalar(&c.until_ready().await), "3");
    for size in [100_000, 1_000_000, 3_000_000] {
        c.send(&wire::query(&format!(
            "select length(repeat('y', {size}))::text || repeat('y', {size})"
        )))
        .await;
        let rows = wire::data_rows(&c.until_ready().await);
        assert_eq!(
            rows[0][0].as_ref().unwrap().len(),
            size + size.to_string().len()
        );
    }

    // Cancel requests stay allowed in the clear even with required = "always"
    // (libpq before 17 never encrypts them).
    let key = greeting
        .iter()
        .find(|m| m.tag == b'K')
        .expect("BackendKeyData");
    c.send(&wire::query("select pg_sleep(30)")).await;
    let direct = h.direct_superuser().await;
    wire::wait_until(
        &direct,
        "select count(*) > 0 from pg_stat_activity where query = 'select pg_sleep(30)'",
    )
    .await;
    let mut cancel = 80877102i32.to_be_bytes().to_vec();
    cancel.extend_from_slice(&key.body);
    let mut plain = TcpStream::connect(h.addr).await.unwrap();
    plain.write_all(&wire::with_length(cancel)).await.unwrap();
    let answer = c.until_ready().await;
    assert_eq!(wire::first_error(&answer).unwrap().code, "57014");

    // Without ALPN: the handshake completes, then the pooler refuses and closes.
    let mut c = direct_tls(&h, &ca.pem, None).await.unwrap();
    c.send(&startup_packet(
        PROTOCOL_3_0,
        &[("user", "app.acme"), ("database", "app")],
    ))
    .await;
    let e = c.read_msg().await.error();
    assert_eq!(e.code, "08P01");
    assert!(e.message.contains("ALPN"), "{}", e.message);

    // Another protocol name: refused in the handshake itself.
    let refused = match direct_tls(&h, &ca.pem, Some(b"http/1.1")).await {
        Ok(mut c) => {
            c.send(&startup_packet(PROTOCOL_3_0, &[("user", "app.acme")]))
                .await;
            let mut b = [0u8; 1];
            c.stream.read(&mut b).await.is_err()
        }
        Err(_) => true,
    };
    assert!(refused, "ALPN http/1.1 must be refused");

    // A second SSLRequest inside TLS is a protocol violation.
    let mut c = direct_tls(&h, &ca.pem, Some(b"postgresql")).await.unwrap();
    c.send(&wire::with_length(wire::SSL_REQUEST.to_be_bytes().to_vec()))
        .await;
    assert_eq!(c.read_msg().await.error().code, "08P01");
}

/// Connects with `ca_pem` and reports whether the pooler's certificate verified.
async fn verifies_with(h: &Harness, ca_pem: &str) -> bool {
    match try_tls_connect(h, ca_pem, "app.acme", "app").await {
        Ok(c) => {
            assert_eq!(count_items(&c).await, 3);
            true
        }
        Err(e) => {
            let text = format!("{e:?}");
            assert!(text.contains("UnknownIssuer"), "unexpected failure: {text}");
            false
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_reload_by_call_file_change_and_sighup() {
    let pki = Pki::new();
    let (ca_a, ca_b, ca_c) = (Ca::new("CA A"), Ca::new("CA B"), Ca::new("CA C"));
    pki.install(&ca_a, "a");
    let h = start_with_tls(&pki, TlsRequired::Never).await;
    let tls = Arc::clone(h.control.current().tls.as_ref().unwrap());
    assert!(verifies_with(&h, &ca_a.pem).await);
    let kept = tls_connect(&h, &ca_a.pem, "app.acme", "app").await;

    // 1. Explicit reload (what SIGHUP and the admin RELOAD run).
    pki.install(&ca_b, "b");
    tls.reload().unwrap();
    assert!(verifies_with(&h, &ca_b.pem).await);
    assert!(!verifies_with(&h, &ca_a.pem).await);
    assert_eq!(count_items(&kept).await, 3, "open connections keep working");

    // 2. A broken file: the reload fails and the previous certificate stays.
    pki.write("server.crt", "not a certificate");
    assert!(tls.reload().is_err());
    assert!(verifies_with(&h, &ca_b.pem).await);

    // 3. File change alone: the watcher notices within a few seconds.
    pki.install(&ca_c, "c");
    poll_until("the watcher to load CA C's certificate", || {
        verifies_with(&h, &ca_c.pem)
    })
    .await;
    assert_eq!(count_items(&kept).await, 3);

    // 4. SIGHUP reloads even without a change. Our own handler first, so the
    //    signal can never take the default action (exit) on this test process.
    let mut own = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).unwrap();
    let before = tls.reloads();
    poll_until("a SIGHUP reload", || {
        // SAFETY: signalling our own process.
        unsafe { libc_kill_self_hup() };
        let tls = Arc::clone(&tls);
        async move { tls.reloads() > before }
    })
    .await;
    let _ = own.recv().await;
    assert!(verifies_with(&h, &ca_c.pem).await);
}

/// kill(getpid(), SIGHUP), without a libc dev-dependency.
unsafe fn libc_kill_self_hup() {
    extern "C" {
        fn getpid() -> i32;
        fn kill(pid: i32, sig: i32) -> i32;
    }
    const SIGHUP: i32 = 1;
    unsafe {
        kill(getpid(), SIGHUP);
    }
}

// ---------------------------------------------------------------- server side

/// Turns on `ssl` in the cluster with a certificate for 127.0.0.1 signed by `ca`.
fn enable_server_ssl(cluster: &TempCluster, ca: &Ca) {
    let (cert, key) = ca.leaf();
    cluster
        .write_file_as_owner("server.crt", cert.as_bytes())
        .unwrap();
    cluster
        .write_file_as_owner("server.key", key.as_bytes())
        .unwrap();
    cluster
        .psql("postgres", "alter system set ssl = on")
        .unwrap();
    cluster.reload().unwrap();
}

/// Adds a plain (no tenant) database `name` for role app with the given TLS.
fn add_db(c: &mut Config, name: &str, tls: ServerTls, ca: Option<&Path>) {
    let mut db = c.databases["plain"].clone();
    db.tls = tls;
    db.tls_ca_file = ca.map(Path::to_owned);
    c.databases.insert(name.into(), db);
}

async fn server_ssl(h: &Harness, db: &str) -> Result<bool, tokio_postgres::Error> {
    let c = h.try_connect("app", PASSWORD, db).await?;
    let row = c
        .query_one(
            "select ssl from pg_stat_ssl where pid = pg_backend_pid()",
            &[],
        )
        .await?;
    Ok(row.get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_reach_an_ssl_server_in_every_mode() {
    let pki = Pki::new();
    let ca = Ca::new("server CA");
    let ca_file = pki.write("server-ca.pem", &ca.pem);
    let wrong = pki.write("wrong-ca.pem", &Ca::new("other CA").pem);
    let h = Harness::start(move |c, cluster| {
        enable_server_ssl(cluster, &ca);
        add_db(c, "require", ServerTls::Require, None);
        add_db(c, "verify", ServerTls::VerifyFull, Some(&ca_file));
        add_db(c, "wrongca", ServerTls::VerifyFull, Some(&wrong));
        add_db(c, "disable", ServerTls::Disable, None);
        add_db(c, "prefer", ServerTls::Prefer, None);
    })
    .await;

    assert!(server_ssl(&h, "require").await.unwrap());
    assert!(server_ssl(&h, "verify").await.unwrap());
    assert!(server_ssl(&h, "prefer").await.unwrap());
    assert!(!server_ssl(&h, "disable").await.unwrap());

    let e = server_ssl(&h, "wrongca").await.unwrap_err();
    let db = e.as_db_error().unwrap_or_else(|| panic!("{e:?}"));
    assert_eq!(db.code().code(), "08006");
    assert!(
        db.message().contains("TLS handshake failed") && db.message().contains("certificate"),
        "{}",
        db.message()
    );

    // Big results come through a TLS server connection.
    let c = h.try_connect("app", PASSWORD, "require").await.unwrap();
    let s: String = c
        .query_one("select repeat('z', 3000000)", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(s.len(), 3_000_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_without_server_ssl_fails_clearly_and_prefer_falls_back() {
    let h = Harness::start(|c, _| {
        add_db(c, "require", ServerTls::Require, None);
        add_db(c, "prefer", ServerTls::Prefer, None);
    })
    .await;
    let e = server_ssl(&h, "require").await.unwrap_err();
    let db = e.as_db_error().unwrap_or_else(|| panic!("{e:?}"));
    assert_eq!(db.code().code(), "08006");
    assert!(
        db.message().contains("does not support TLS"),
        "{}",
        db.message()
    );
    assert!(!server_ssl(&h, "prefer").await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_server_connections_health_check_cancel_and_ssl_only_hba() {
    let ca = Ca::new("server CA");
    let h = Harness::start(move |c, cluster| {
        enable_server_ssl(cluster, &ca);
        // Role app may only come over TLS.
        cluster
            .prepend_hba(&["hostnossl all app 127.0.0.1/32 reject"])
            .unwrap();
        add_db(c, "require", ServerTls::Require, None);
        c.databases.get_mut("app").unwrap().tls = ServerTls::Require;
        c.databases.get_mut("app").unwrap().pool_size = 1;
    })
    .await;
    // The plain pool is refused by pg_hba; the TLS pools are not.
    let e = server_ssl(&h, "plain").await.unwrap_err();
    assert_eq!(common::sqlstate(&e).as_deref(), Some("08006"), "{e:?}");
    assert!(server_ssl(&h, "require").await.unwrap());

    // Tenant isolation through a TLS server connection.
    let acme = h.connect("app.acme", "app").await;
    let globex = h.connect("app.globex", "app").await;
    assert_eq!(
        (count_items(&acme).await, count_items(&globex).await),
        (3, 2)
    );

    // Health check: the idle TLS server connection is terminated; the next
    // transaction must get a fresh one, not the dead one.
    let pid: i32 = acme
        .query_one("select pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let direct = h.direct_superuser().await;
    let killed: bool = direct
        .query_one("select pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap()
        .get(0);
    assert!(killed);
    wire::wait_until(
        &direct,
        &format!("select not exists (select from pg_stat_activity where pid = {pid})"),
    )
    .await;
    assert_eq!(count_items(&acme).await, 3);
    let new_pid: i32 = acme
        .query_one("select pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    assert_ne!(new_pid, pid);

    // Cancel through the pooler reaches a backend that only accepts TLS clients.
    let token = acme.cancel_token();
    let sleeper = tokio::spawn(async move { acme.simple_query("select pg_sleep(30)").await });
    wire::wait_until(
        &direct,
        "select count(*) > 0 from pg_stat_activity where query = 'select pg_sleep(30)'",
    )
    .await;
    token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let res = tokio::time::timeout(IO_TIMEOUT, sleeper)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        common::sqlstate(&res.unwrap_err()).as_deref(),
        Some("57014")
    );
}
