//! Raw wire-protocol helpers for tests that speak to the pooler byte by byte:
//! hand-built packets, a message reader with timeouts, and a minimal
//! SCRAM/md5 login so a raw socket can get past authentication.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use tenantpool::protocol::backend::{decode_error_fields, ErrorFields};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_postgres::types::FromSql;
use tokio_postgres::Client;

/// Longest any single read may take before the test fails (instead of hanging).
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

pub const PROTOCOL_3_0: i32 = 3 << 16;
pub const SSL_REQUEST: i32 = 80877103;
pub const GSSENC_REQUEST: i32 = 80877104;

/// An untagged startup-phase packet: `len, code, params..., 0`.
pub fn startup_packet(code: i32, params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = code.to_be_bytes().to_vec();
    for (k, v) in params {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    with_length(body)
}

/// Prefixes `body` with its length (including the four length bytes).
pub fn with_length(body: Vec<u8>) -> Vec<u8> {
    let mut v = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    v.extend_from_slice(&body);
    v
}

/// A tagged message.
pub fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    v.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    v.extend_from_slice(body);
    v
}

/// A SASLInitialResponse choosing SCRAM-SHA-256, carrying `client_first`.
pub fn sasl_initial_response(client_first: &[u8]) -> Vec<u8> {
    let mut body = b"SCRAM-SHA-256\0".to_vec();
    body.extend_from_slice(&(client_first.len() as i32).to_be_bytes());
    body.extend_from_slice(client_first);
    message(b'p', &body)
}

/// A simple-protocol Query.
pub fn query(sql: &str) -> Vec<u8> {
    let mut body = sql.as_bytes().to_vec();
    body.push(0);
    message(b'Q', &body)
}

/// One message read from the peer.
#[derive(Debug, Clone)]
pub struct Msg {
    pub tag: u8,
    pub body: Vec<u8>,
}

impl Msg {
    pub fn error(&self) -> ErrorFields {
        assert_eq!(
            self.tag,
            b'E',
            "expected ErrorResponse, got '{}' {:?}",
            char::from(self.tag),
            String::from_utf8_lossy(&self.body)
        );
        decode_error_fields(&self.body)
    }

    /// The i32 at `at` in the body.
    pub fn i32_at(&self, at: usize) -> i32 {
        i32::from_be_bytes(self.body[at..at + 4].try_into().unwrap())
    }
}

/// A raw client connection.
pub struct Wire {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Wire {
    pub async fn connect(addr: SocketAddr) -> Wire {
        let stream = tokio::time::timeout(IO_TIMEOUT, TcpStream::connect(addr))
            .await
            .expect("connect timed out")
            .expect("connect");
        Wire {
            stream,
            buf: Vec::new(),
        }
    }

    /// Sends a 3.0 StartupMessage for `user` and `db`.
    pub async fn startup(&mut self, user: &str, db: &str) {
        self.send(&startup_packet(
            PROTOCOL_3_0,
            &[("user", user), ("database", db)],
        ))
        .await;
    }

    /// Sends an SSLRequest/GSSENCRequest-style request (just a code).
    pub async fn request(&mut self, code: i32) {
        self.send(&with_length(code.to_be_bytes().to_vec())).await;
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        tokio::time::timeout(IO_TIMEOUT, self.stream.write_all(bytes))
            .await
            .expect("write timed out")
            .expect("write");
    }

    /// Reads more bytes into the buffer; 0 at EOF.
    async fn fill(&mut self) -> std::io::Result<usize> {
        let mut chunk = [0u8; 16 * 1024];
        let n = tokio::time::timeout(IO_TIMEOUT, self.stream.read(&mut chunk))
            .await
            .expect("read timed out: the pooler neither answered nor closed")?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Exactly one byte (the answer to SSLRequest/GSSENCRequest).
    pub async fn read_byte(&mut self) -> u8 {
        while self.buf.is_empty() {
            assert_ne!(self.fill().await.expect("read"), 0, "EOF, expected a byte");
        }
        self.buf.remove(0)
    }

    /// The next whole message; panics at EOF or after [`IO_TIMEOUT`].
    pub async fn read_msg(&mut self) -> Msg {
        loop {
            if self.buf.len() >= 5 {
                let len = i32::from_be_bytes(self.buf[1..5].try_into().unwrap());
                assert!(len >= 4, "peer sent a bad length {len}");
                let total = 1 + len as usize;
                if self.buf.len() >= total {
                    let body = self.buf[5..total].to_vec();
                    let tag = self.buf[0];
                    self.buf.drain(..total);
                    return Msg { tag, body };
                }
            }
            let n = self.fill().await.expect("read");
            assert_ne!(n, 0, "EOF in the middle of / before a message");
        }
    }

    /// Messages up to and including the next ReadyForQuery.
    pub async fn until_ready(&mut self) -> Vec<Msg> {
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

    /// Runs a simple query; returns the messages and the transaction status.
    pub async fn simple(&mut self, sql: &str) -> (Vec<Msg>, u8) {
        self.send(&query(sql)).await;
        let msgs = self.until_ready().await;
        let status = msgs.last().unwrap().body[0];
        (msgs, status)
    }

    /// Asserts the peer closes the connection with nothing more to say.
    pub async fn expect_closed(&mut self) {
        assert!(
            self.buf.is_empty(),
            "unread bytes before close: {:?}",
            self.buf
        );
        match self.fill().await {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Ok(_) => panic!(
                "expected the connection to be closed, got more data: {:?}",
                String::from_utf8_lossy(&self.buf)
            ),
            Err(e) => panic!("expected a clean close, got {e}"),
        }
    }

    /// Reads one ErrorResponse, then expects the connection to be closed.
    pub async fn expect_fatal(&mut self) -> ErrorFields {
        let fields = self.read_msg().await.error();
        self.expect_closed().await;
        fields
    }

    /// Reads one FATAL ErrorResponse with `code` whose message contains `text`,
    /// then expects the connection to be closed. `what` names the case.
    pub async fn expect_refusal(&mut self, code: &str, text: &str, what: &str) -> ErrorFields {
        let e = self.expect_fatal().await;
        assert_eq!(
            (e.code.as_str(), e.severity.as_str()),
            (code, "FATAL"),
            "{what}: {e}"
        );
        assert!(e.message.contains(text), "{what}: {e}");
        e
    }

    /// Sends a Query of `size` bytes of `fill` between `head` and `tail`, in 64
    /// KB writes, without ever holding it whole.
    pub async fn send_big_query(&mut self, head: &str, fill: u8, size: usize, tail: &str) {
        let len = (4 + head.len() + size + tail.len() + 1) as i32;
        self.send(&[&b"Q"[..], &len.to_be_bytes(), head.as_bytes()].concat())
            .await;
        let chunk = vec![fill; 64 << 10];
        let mut left = size;
        while left > 0 {
            let n = left.min(chunk.len());
            self.send(&chunk[..n]).await;
            left -= n;
        }
        self.send(&[tail.as_bytes(), b"\0"].concat()).await;
    }

    /// Reads messages up to ReadyForQuery without holding any of them whole;
    /// returns their tags and how many body bytes equal `byte`.
    pub async fn skim_until_ready(&mut self, byte: u8) -> (Vec<u8>, usize) {
        assert!(self.buf.is_empty());
        let (mut tags, mut seen, mut buf) = (Vec::new(), 0, vec![0u8; 64 << 10]);
        while tags.last() != Some(&b'Z') {
            let mut header = [0u8; 5];
            let read = self.stream.read_exact(&mut header);
            tokio::time::timeout(IO_TIMEOUT, read)
                .await
                .unwrap()
                .unwrap();
            tags.push(header[0]);
            let mut left = i32::from_be_bytes(header[1..].try_into().unwrap()) as usize - 4;
            while left > 0 {
                let n = left.min(buf.len());
                let read = self.stream.read_exact(&mut buf[..n]);
                tokio::time::timeout(IO_TIMEOUT, read)
                    .await
                    .unwrap()
                    .unwrap();
                seen += buf[..n].iter().filter(|&&b| b == byte).count();
                left -= n;
            }
        }
        (tags, seen)
    }

    /// Answers authentication requests (SCRAM-SHA-256, md5, cleartext) with
    /// `password` until AuthenticationOk; returns the messages after it up to
    /// ReadyForQuery. Panics on an ErrorResponse.
    pub async fn authenticate(&mut self, user: &str, password: &str) -> Vec<Msg> {
        let mut scram: Option<ScramSha256> = None;
        loop {
            let m = self.read_msg().await;
            match m.tag {
                b'R' => match m.i32_at(0) {
                    0 => return self.until_ready().await,
                    3 => {
                        let mut body = password.as_bytes().to_vec();
                        body.push(0);
                        self.send(&message(b'p', &body)).await;
                    }
                    5 => {
                        let salt: [u8; 4] = m.body[4..8].try_into().unwrap();
                        let hash = postgres_protocol::authentication::md5_hash(
                            user.as_bytes(),
                            password.as_bytes(),
                            salt,
                        );
                        let mut body = hash.into_bytes();
                        body.push(0);
                        self.send(&message(b'p', &body)).await;
                    }
                    10 => {
                        let s =
                            ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
                        self.send(&sasl_initial_response(s.message())).await;
                        scram = Some(s);
                    }
                    11 => {
                        let s = scram.as_mut().expect("SASL continue before start");
                        s.update(&m.body[4..]).expect("server-first-message");
                        let reply = s.message().to_vec();
                        self.send(&message(b'p', &reply)).await;
                    }
                    12 => {
                        let mut s = scram.take().expect("SASL final before start");
                        s.finish(&m.body[4..]).expect("server signature");
                    }
                    other => panic!("unexpected authentication request {other}"),
                },
                b'E' => panic!("login failed: {}", m.error()),
                b'v' | b'N' => {}
                other => panic!("unexpected '{}' during login", char::from(other)),
            }
        }
    }

    /// Connects, sends a 3.0 StartupMessage and logs in. Returns the connection
    /// and the (pid, secret) from BackendKeyData.
    pub async fn login(
        addr: SocketAddr,
        user: &str,
        db: &str,
        password: &str,
    ) -> (Wire, (i32, [u8; 4])) {
        let mut w = Wire::connect(addr).await;
        w.startup(user, db).await;
        let greeting = w.authenticate(user, password).await;
        let key = greeting
            .iter()
            .find(|m| m.tag == b'K')
            .map(|m| (m.i32_at(0), m.body[4..8].try_into().unwrap()))
            .expect("BackendKeyData in the greeting");
        assert_eq!(greeting.last().unwrap().body, b"I");
        (w, key)
    }
}

/// The values of the DataRows in `msgs` as text (simple protocol), row by row.
pub fn data_rows(msgs: &[Msg]) -> Vec<Vec<Option<String>>> {
    msgs.iter()
        .filter(|m| m.tag == b'D')
        .map(|m| {
            let n = i16::from_be_bytes([m.body[0], m.body[1]]) as usize;
            let mut at = 2;
            let mut row = Vec::with_capacity(n);
            for _ in 0..n {
                let len = m.i32_at(at);
                at += 4;
                if len < 0 {
                    row.push(None);
                } else {
                    let len = len as usize;
                    row.push(Some(
                        String::from_utf8(m.body[at..at + len].to_vec()).unwrap(),
                    ));
                    at += len;
                }
            }
            row
        })
        .collect()
}

/// The first ErrorResponse among `msgs`, if any.
pub fn first_error(msgs: &[Msg]) -> Option<ErrorFields> {
    msgs.iter()
        .find(|m| m.tag == b'E')
        .map(|m| decode_error_fields(&m.body))
}

/// The single value of the single row of a simple query's answer.
pub fn scalar(msgs: &[Msg]) -> String {
    let rows = data_rows(msgs);
    assert_eq!(rows.len(), 1, "one row expected: {rows:?}");
    rows[0][0].clone().expect("not null")
}

/// The first column of the single row `sql` returns. Uses `query_typed`: one
/// unnamed Parse/Bind/Execute/Sync, so a single pooled transaction (`query`
/// prepares a named statement in one transaction and executes it in the next,
/// which in transaction pooling may be on another server connection).
pub async fn one<V: for<'a> FromSql<'a>>(c: &Client, sql: &str) -> V {
    let rows = c.query_typed(sql, &[]).await.unwrap();
    assert_eq!(rows.len(), 1, "{sql}");
    rows[0].get(0)
}

/// Polls the boolean query `sql` until it is true (10 s deadline).
pub async fn wait_until(c: &Client, sql: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !one::<bool>(c, sql).await {
        assert!(Instant::now() < deadline, "timed out waiting for: {sql}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Runs psql (`-X -q -A -t`, stop on error) with `PGPASSWORD`; returns trimmed stdout.
pub async fn psql(bin: &Path, password: &str, args: &[&str]) -> String {
    let mut cmd = tokio::process::Command::new(bin);
    cmd.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
        .args(args)
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "10")
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .expect("psql timed out")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "psql {args:?} failed: {stderr}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Resident memory of this process, in bytes.
pub fn rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kb: usize = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}
