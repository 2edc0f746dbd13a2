//! The load generator `benches/load.sh` drives for what pgbench cannot do: many
//! users (`user.tenant`), thousands of idle connections, a burst of clients
//! arriving at once. It also turns pgbench's per-transaction logs into
//! percentiles and prints the final table.
//!
//! It speaks the wire protocol itself (simple `Query` only, one connection per
//! task) so that it costs little CPU on a machine it shares with the pooler and
//! PostgreSQL, and it derives the SCRAM salted password once per salt rather
//! than once per login (4096 PBKDF2 rounds per connection would make a 2,000
//! client burst measure the load generator instead of the pooler).
//!
//! Built and run by `benches/load.sh` (`cargo bench --bench loadgen -- <cmd>`):
//!
//! ```text
//! loadgen load    --addr H:P --user U --db D --password P --clients N --seconds S
//!                 [--tenants K] [--accounts N] [--pid PID] [--pg-pid POSTMASTER] [--metrics H:P]
//! loadgen idle    --addr H:P --user U --db D --password P --count N
//! loadgen burst   --addr H:P --user U --db D --password P --clients N --pg H:P
//!                 [--pid PID] [--accounts N]
//! loadgen relay   --listen H:P --to H:P [--current-thread]
//! loadgen sockets PORT
//! loadgen pglog   FILE...
//! loadgen report  RESULTS [--markdown]
//! ```
//!
//! Every measuring command prints one line of `key=value` fields. `--pid` adds
//! the pooler's CPU and RSS; `--pg-pid` (the postmaster) adds PostgreSQL's CPU,
//! backends included, to say which side a cost falls on.
//!
//! `relay` is not a pooler: it copies bytes between each client and a server
//! connection of its own, with tokio and nothing else. Run as an extra target
//! (`benches/hooks/tokio-floor.sh`) it shows what the runtime alone costs per
//! transaction, the floor under any tokio pooler's relay path.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use bytes::{Buf, BufMut, BytesMut};
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

type Result<T, E = String> = std::result::Result<T, E>;

fn main() {
    // `cargo bench` appends `--bench`; a harness-less target just ignores it.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let Some(cmd) = args.first().cloned() else {
        eprintln!(
            "usage: loadgen load|idle|burst|relay|floor|sockets|pglog|report ... (see benches/loadgen.rs)"
        );
        std::process::exit(2);
    };
    let opts = Opts::parse(&args[1..]);
    if cmd == "relay" || cmd == "floor" {
        let run = if cmd == "relay" { relay } else { floor };
        if let Err(e) = run(&opts) {
            eprintln!("loadgen {cmd}: {e}");
            std::process::exit(1);
        }
        return;
    }
    let threads = opts.num("threads", 1) as usize;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = match cmd.as_str() {
        "load" => rt.block_on(load(&opts)),
        "idle" => rt.block_on(idle(&opts)),
        "burst" => rt.block_on(burst(&opts)),
        "sockets" => opts
            .positional
            .first()
            .and_then(|p| p.parse().ok())
            .map(|port| println!("{}", pooler_side_sockets(port)))
            .ok_or_else(|| "usage: loadgen sockets PORT".to_string()),
        "pglog" => pglog(&opts.positional),
        "report" => report(&opts),
        other => Err(format!("unknown command {other:?}")),
    };
    if let Err(e) = result {
        eprintln!("loadgen {cmd}: {e}");
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------------------
// Options

struct Opts {
    named: HashMap<String, String>,
    flags: Vec<String>,
    positional: Vec<String>,
}

impl Opts {
    fn parse(args: &[String]) -> Self {
        let mut o = Opts {
            named: HashMap::new(),
            flags: Vec::new(),
            positional: Vec::new(),
        };
        let mut it = args.iter().peekable();
        while let Some(a) = it.next() {
            if let Some(name) = a.strip_prefix("--") {
                match it.peek() {
                    Some(v) if !v.starts_with("--") => {
                        o.named.insert(name.to_string(), it.next().unwrap().clone());
                    }
                    _ => o.flags.push(name.to_string()),
                }
            } else {
                o.positional.push(a.clone());
            }
        }
        o
    }

    fn get(&self, name: &str) -> Result<String> {
        self.named
            .get(name)
            .cloned()
            .ok_or_else(|| format!("--{name} is required"))
    }

    fn num(&self, name: &str, default: u64) -> u64 {
        self.named
            .get(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }

    fn flag(&self, name: &str) -> bool {
        self.flags.iter().any(|f| f == name)
    }

    fn login(&self) -> Result<Login> {
        Ok(Login {
            addr: self.get("addr")?,
            user: self.get("user")?,
            db: self.get("db")?,
            password: self.named.get("password").cloned().unwrap_or_default(),
        })
    }
}

#[derive(Clone)]
struct Login {
    addr: String,
    user: String,
    db: String,
    password: String,
}

// ---------------------------------------------------------------------------
// A minimal client: startup, trust/cleartext/md5/SCRAM-SHA-256, simple Query.

struct Conn {
    stream: TcpStream,
    buf: BytesMut,
    out: BytesMut,
}

/// What one simple query returned.
struct Answer {
    /// When the first DataRow arrived.
    first_row: Option<Instant>,
    /// The first column of the first row, as text.
    value: Option<String>,
    /// The first error's message.
    error: Option<String>,
}

impl Conn {
    async fn connect(login: &Login, user: &str) -> Result<Conn> {
        let stream = TcpStream::connect(&login.addr)
            .await
            .map_err(|e| format!("connect {}: {e}", login.addr))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        let mut c = Conn {
            stream,
            buf: BytesMut::with_capacity(8192),
            out: BytesMut::with_capacity(256),
        };
        c.startup(login, user).await?;
        Ok(c)
    }

    async fn startup(&mut self, login: &Login, user: &str) -> Result<()> {
        let mut body = BytesMut::new();
        body.put_i32(196608);
        for (k, v) in [
            ("user", user),
            ("database", &login.db),
            ("application_name", "loadgen"),
        ] {
            body.put_slice(k.as_bytes());
            body.put_u8(0);
            body.put_slice(v.as_bytes());
            body.put_u8(0);
        }
        body.put_u8(0);
        self.out.put_i32(body.len() as i32 + 4);
        self.out.put_slice(&body);
        self.flush().await?;
        let mut scram: Option<ScramClient> = None;
        loop {
            let (tag, msg) = self.next_message().await?;
            match tag {
                b'R' => {
                    let mut m = &msg[..];
                    match m.get_i32() {
                        0 => {}
                        3 => {
                            let pw = cstr(login.password.as_bytes());
                            self.message(b'p', &pw);
                            self.flush().await?;
                        }
                        5 => {
                            let salt = &m[..4];
                            let inner = hex(&md5::Md5::digest(
                                [login.password.as_bytes(), user.as_bytes()].concat(),
                            ));
                            let outer = hex(&md5::Md5::digest([inner.as_bytes(), salt].concat()));
                            self.message(b'p', &cstr(format!("md5{outer}").as_bytes()));
                            self.flush().await?;
                        }
                        10 => {
                            if !m.split(|&b| b == 0).any(|mech| mech == b"SCRAM-SHA-256") {
                                return Err("server offers no SCRAM-SHA-256".into());
                            }
                            let s = ScramClient::new();
                            let first = s.client_first();
                            let mut b = cstr(b"SCRAM-SHA-256");
                            b.extend_from_slice(&(first.len() as i32).to_be_bytes());
                            b.extend_from_slice(first.as_bytes());
                            self.message(b'p', &b);
                            self.flush().await?;
                            scram = Some(s);
                        }
                        11 => {
                            let s = scram.as_mut().ok_or("SASLContinue without SASL")?;
                            let fin = s.client_final(
                                std::str::from_utf8(m).map_err(|e| e.to_string())?,
                                &login.password,
                            )?;
                            self.message(b'p', fin.as_bytes());
                            self.flush().await?;
                        }
                        12 => {}
                        code => return Err(format!("unsupported authentication request {code}")),
                    }
                }
                b'E' => return Err(error_message(&msg)),
                b'Z' => return Ok(()),
                _ => {} // ParameterStatus, BackendKeyData, NoticeResponse
            }
        }
    }

    fn message(&mut self, tag: u8, body: &[u8]) {
        self.out.put_u8(tag);
        self.out.put_i32(body.len() as i32 + 4);
        self.out.put_slice(body);
    }

    async fn flush(&mut self) -> Result<()> {
        self.stream
            .write_all(&self.out)
            .await
            .map_err(|e| format!("write: {e}"))?;
        self.out.clear();
        Ok(())
    }

    /// Reads what the socket has onto `buf`; false at end of stream.
    async fn read_more(&mut self) -> Result<bool> {
        let n = self
            .stream
            .read_buf(&mut self.buf)
            .await
            .map_err(|e| format!("read: {e}"))?;
        Ok(n > 0)
    }

    async fn next_message(&mut self) -> Result<(u8, BytesMut)> {
        loop {
            if self.buf.len() >= 5 {
                let len = i32::from_be_bytes(self.buf[1..5].try_into().unwrap()) as usize;
                if self.buf.len() > len {
                    let tag = self.buf[0];
                    let mut m = self.buf.split_to(len + 1);
                    m.advance(5);
                    return Ok((tag, m));
                }
                self.buf.reserve(len + 1 - self.buf.len());
            }
            if !self.read_more().await? {
                return Err(match self.buf.first() {
                    Some(b'E') => "connection closed after an error".into(),
                    _ => "connection closed by the server".into(),
                });
            }
        }
    }

    /// Runs one simple query and reads up to its ReadyForQuery.
    async fn query(&mut self, sql: &str) -> Result<Answer> {
        self.message(b'Q', &cstr(sql.as_bytes()));
        self.flush().await?;
        let mut a = Answer {
            first_row: None,
            value: None,
            error: None,
        };
        loop {
            let (tag, msg) = self.next_message().await?;
            match tag {
                b'D' if a.first_row.is_none() => {
                    a.first_row = Some(Instant::now());
                    let mut m = &msg[..];
                    if m.get_i16() > 0 {
                        let len = m.get_i32();
                        if len >= 0 {
                            a.value = Some(String::from_utf8_lossy(&m[..len as usize]).into());
                        }
                    }
                }
                b'E' if a.error.is_none() => a.error = Some(error_message(&msg)),
                b'Z' => return Ok(a),
                _ => {}
            }
        }
    }

    async fn terminate(mut self) {
        self.message(b'X', &[]);
        let _ = self.flush().await;
    }
}

fn cstr(s: &[u8]) -> Vec<u8> {
    let mut v = s.to_vec();
    v.push(0);
    v
}

fn hex(b: &[u8]) -> String {
    b.iter().fold(String::new(), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

fn error_message(msg: &[u8]) -> String {
    let mut code = "";
    let mut text = "";
    for field in msg.split(|&b| b == 0) {
        match field.first() {
            Some(b'C') => code = std::str::from_utf8(&field[1..]).unwrap_or("?"),
            Some(b'M') => text = std::str::from_utf8(&field[1..]).unwrap_or("?"),
            _ => {}
        }
    }
    format!("{code} {text}")
}

// ---------------------------------------------------------------------------
// SCRAM-SHA-256 client, salted password cached per (password, salt, iterations).

struct ScramClient {
    nonce: String,
    bare: String,
}

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut m = <HmacSha256 as KeyInit>::new_from_slice(key).expect("any key length");
    m.update(data);
    m.finalize().into_bytes().into()
}

fn salted_password(password: &str, salt: &[u8], iterations: u32) -> [u8; 32] {
    type Key = (String, Vec<u8>, u32);
    static CACHE: OnceLock<Mutex<HashMap<Key, [u8; 32]>>> = OnceLock::new();
    let key = (password.to_string(), salt.to_vec(), iterations);
    let cache = CACHE.get_or_init(Default::default);
    if let Some(v) = cache.lock().unwrap().get(&key) {
        return *v;
    }
    let mut u = hmac(password.as_bytes(), &[salt, &1u32.to_be_bytes()].concat());
    let mut out = u;
    for _ in 1..iterations {
        u = hmac(password.as_bytes(), &u);
        for (o, x) in out.iter_mut().zip(u) {
            *o ^= x;
        }
    }
    cache.lock().unwrap().insert(key, out);
    out
}

impl ScramClient {
    fn new() -> Self {
        let mut bytes = [0u8; 18];
        for chunk in bytes.chunks_mut(8) {
            let r = random_u64().to_le_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
        let nonce = B64.encode(bytes);
        let bare = format!("n=,r={nonce}");
        ScramClient { nonce, bare }
    }

    fn client_first(&self) -> String {
        format!("n,,{}", self.bare)
    }

    fn client_final(&self, server_first: &str, password: &str) -> Result<String> {
        let mut nonce = None;
        let mut salt = None;
        let mut iterations = None;
        for attr in server_first.split(',') {
            match attr.split_at_checked(2) {
                Some(("r=", v)) => nonce = Some(v),
                Some(("s=", v)) => salt = B64.decode(v).ok(),
                Some(("i=", v)) => iterations = v.parse::<u32>().ok(),
                _ => {}
            }
        }
        let (Some(nonce), Some(salt), Some(iterations)) = (nonce, salt, iterations) else {
            return Err(format!("bad SCRAM server-first-message {server_first:?}"));
        };
        if !nonce.starts_with(&self.nonce) {
            return Err("SCRAM server nonce does not extend ours".into());
        }
        let salted = salted_password(password, &salt, iterations);
        let client_key = hmac(&salted, b"Client Key");
        let stored_key: [u8; 32] = Sha256::digest(client_key).into();
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.bare);
        let signature = hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(signature)
            .map(|(a, b)| a ^ b)
            .collect();
        Ok(format!("{without_proof},p={}", B64.encode(proof)))
    }
}

/// A fast, non-cryptographic random number (SCRAM nonces, account ids).
fn random_u64() -> u64 {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos() as u64;
            t ^ (std::process::id() as u64).rotate_left(32) ^ (&t as *const u64 as u64)
        });
    }
    STATE.with(|s| {
        // splitmix64
        let mut z = s.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        s.set(z);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    })
}

fn select_sql(accounts: u64) -> String {
    format!(
        "SELECT abalance FROM pgbench_accounts WHERE aid = {}",
        1 + random_u64() % accounts
    )
}

// ---------------------------------------------------------------------------
// Measurements of the pooler process

/// utime + stime of a process, in microseconds.
fn cpu_us(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks * 1_000_000 / clock_ticks())
}

/// CPU of a PostgreSQL server, in microseconds: the postmaster (with the
/// children it has reaped) and every live child, i.e. the backends.
fn server_cpu_us(postmaster: u32) -> Option<u64> {
    let ticks = |stat: &str, with_children: bool| -> Option<(u32, u64)> {
        let rest = &stat[stat.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split(' ').collect();
        let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
        let own = n(11)? + n(12)?;
        let reaped = if with_children { n(13)? + n(14)? } else { 0 };
        Some((n(1)? as u32, own + reaped))
    };
    let own = std::fs::read_to_string(format!("/proc/{postmaster}/stat")).ok()?;
    let mut total = ticks(&own, true)?.1;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if let Some((ppid, t)) = ticks(&stat, false) {
            if ppid == postmaster {
                total += t;
            }
        }
    }
    Some(total * 1_000_000 / clock_ticks())
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// TCP sockets on this machine whose local port is `port` and that are neither
/// listening nor in TIME_WAIT: the client connections a pooler on that port holds.
fn pooler_side_sockets(port: u16) -> usize {
    let Ok(table) = std::fs::read_to_string("/proc/net/tcp") else {
        return 0;
    };
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local_port = f
                .get(1)
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            let state = f.get(3).copied().unwrap_or("");
            local_port == Some(port) && state != "0A" && state != "06"
        })
        .count()
}

/// The kernel's count of connections dropped because a listener's accept queue
/// was full (`TcpExt: ListenOverflows` in /proc/net/netstat; machine-wide).
fn listen_overflows() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/netstat").ok()?;
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let (names, values) = (lines.next()?, lines.next()?);
    let i = names
        .split_whitespace()
        .position(|n| n == "ListenOverflows")?;
    values.split_whitespace().nth(i)?.parse().ok()
}

/// Fetches `http://addr/metrics` and sums the tenant SET counters of `database`.
async fn tenant_sets(addr: &str, database: &str) -> Result<(u64, u64)> {
    let mut s = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("metrics {addr}: {e}"))?;
    s.write_all(format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut body = String::new();
    s.read_to_string(&mut body)
        .await
        .map_err(|e| e.to_string())?;
    let db = format!("database=\"{database}\"");
    let (mut sent, mut skipped) = (0, 0);
    for line in body.lines() {
        if !line.starts_with("tenantpool_tenant_set_total{") || !line.contains(&db) {
            continue;
        }
        let v: u64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0) as u64;
        if line.contains("result=\"sent\"") {
            sent += v;
        } else if line.contains("result=\"skipped\"") {
            skipped += v;
        }
    }
    Ok((sent, skipped))
}

// ---------------------------------------------------------------------------
// Percentiles

struct Summary {
    count: usize,
    mean_us: f64,
    p50_us: u64,
    p99_us: u64,
    max_us: u64,
}

fn summarize(mut v: Vec<u64>) -> Summary {
    if v.is_empty() {
        return Summary {
            count: 0,
            mean_us: 0.0,
            p50_us: 0,
            p99_us: 0,
            max_us: 0,
        };
    }
    v.sort_unstable();
    let pct = |p: f64| v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1];
    Summary {
        count: v.len(),
        mean_us: v.iter().sum::<u64>() as f64 / v.len() as f64,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        max_us: *v.last().unwrap(),
    }
}

// ---------------------------------------------------------------------------
// Commands

/// `load`: `--clients` workers run single-row selects back to back for
/// `--seconds`, timed from when every connection is open. There are
/// `--connections` connections (default: one per worker; with `--tenants K`
/// connection i logs in as `user.t(i mod K)`); each transaction runs on a
/// connection picked at random among those not in use, so with more
/// connections than workers the tenants take turns as their clients would.
async fn load(o: &Opts) -> Result<()> {
    let login = o.login()?;
    let clients = o.num("clients", 1) as usize;
    let connections = (o.num("connections", 0) as usize).max(clients);
    let seconds = o.num("seconds", 5);
    let tenants = o.num("tenants", 0) as usize;
    let accounts = o.num("accounts", 100_000);
    let pid = o.named.get("pid").and_then(|p| p.parse::<u32>().ok());
    let pg_pid = o.named.get("pg-pid").and_then(|p| p.parse::<u32>().ok());
    let metrics = o.named.get("metrics").cloned();

    let mut conns = Vec::with_capacity(connections);
    for i in 0..connections {
        let user = if tenants > 0 {
            format!("{}.t{}", login.user, i % tenants)
        } else {
            login.user.clone()
        };
        conns.push(Conn::connect(&login, &user).await?);
    }
    let free = Arc::new(Mutex::new(conns));
    let sets_before = match &metrics {
        Some(m) => Some(tenant_sets(m, &login.db).await?),
        None => None,
    };
    let cpu0 = pid.and_then(cpu_us);
    let pg_cpu0 = pg_pid.and_then(server_cpu_us);
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let free = Arc::clone(&free);
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(1 << 14);
                let mut errors = 0u64;
                let mut first_error = None;
                while Instant::now() < deadline {
                    let picked = {
                        let mut free = free.lock().unwrap();
                        let n = free.len() as u64;
                        (n > 0).then(|| free.swap_remove((random_u64() % n) as usize))
                    };
                    let Some(mut c) = picked else {
                        break; // every connection failed
                    };
                    let t = Instant::now();
                    let result = c.query(&select_sql(accounts)).await;
                    match result {
                        Ok(a) => {
                            free.lock().unwrap().push(c);
                            match a.error {
                                None => lat.push(t.elapsed().as_micros() as u64),
                                Some(e) => {
                                    errors += 1;
                                    first_error.get_or_insert(e);
                                }
                            }
                        }
                        Err(e) => {
                            errors += 1;
                            first_error.get_or_insert(e);
                            break;
                        }
                    }
                }
                (lat, errors, first_error)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    for t in tasks {
        let (lat, e, fe) = t.await.map_err(|e| e.to_string())?;
        all.extend(lat);
        errors += e;
        if first_error.is_none() {
            first_error = fe;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu1 = pid.and_then(cpu_us);
    let pg_cpu1 = pg_pid.and_then(server_cpu_us);
    let conns = std::mem::take(&mut *free.lock().unwrap());
    for c in conns {
        c.terminate().await;
    }
    let s = summarize(all);
    let mut line = format!(
        "txns={} seconds={elapsed:.3} tps={:.1} mean_us={:.1} p50_us={} p99_us={} errors={errors}",
        s.count,
        s.count as f64 / elapsed,
        s.mean_us,
        s.p50_us,
        s.p99_us
    );
    if let (Some(a), Some(b)) = (cpu0, cpu1) {
        let _ = write!(line, " cpu_us={}", b - a);
    }
    if let (Some(a), Some(b)) = (pg_cpu0, pg_cpu1) {
        let _ = write!(line, " pg_cpu_us={}", b - a);
    }
    if let Some(kb) = pid.and_then(rss_kb) {
        let _ = write!(line, " rss_kb={kb}");
    }
    if let (Some(m), Some((sent0, skipped0))) = (&metrics, sets_before) {
        let (sent1, skipped1) = tenant_sets(m, &login.db).await?;
        let _ = write!(
            line,
            " sets_sent={} sets_skipped={}",
            sent1 - sent0,
            skipped1 - skipped0
        );
    }
    if let Some(e) = first_error {
        let _ = write!(line, " first_error={:?}", e);
    }
    println!("{line}");
    Ok(())
}

/// tokio's default runtime (a worker per CPU) or, with `--current-thread`, one
/// thread: for the programs that stand in for a pooler (`relay`, `floor`).
fn server_runtime(o: &Opts) -> Result<tokio::runtime::Runtime> {
    if o.flag("current-thread") {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    }
    .enable_all()
    .build()
    .map_err(|e| e.to_string())
}

/// A byte relay with no pooling and no protocol: one server connection per
/// client, `copy_bidirectional` between them. The runtime is tokio's default
/// (a worker per CPU) or, with `--current-thread`, one thread.
fn relay(o: &Opts) -> Result<()> {
    let listen = o.get("listen")?;
    let to = o.get("to")?;
    let rt = server_runtime(o)?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&listen)
            .await
            .map_err(|e| format!("bind {listen}: {e}"))?;
        // The accept loop runs on a worker, as tenantpool's does.
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                let to = to.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&to).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
            }
        })
        .await
        .map_err(|e| e.to_string())
    })
}

/// The least a tokio transaction pooler can do for a client that connects, runs
/// one simple query and leaves: a floor under tenantpool's connect+transaction
/// CPU, for the cpu-split comparison (benches/hooks/connect-floor.sh). Accept;
/// read the startup packet; md5 against `--password` (whatever the user name);
/// greet with the ParameterStatus set PostgreSQL 15 sends; then for each Query
/// take a server connection from a shared stack of `--pool` (opened at start),
/// write the Query, relay until ReadyForQuery, put the connection back. Nothing
/// else: no timeouts, no logging, no metrics, no error handling beyond closing.
fn floor(o: &Opts) -> Result<()> {
    let listen = o.get("listen")?;
    let login = o.login()?;
    let pool = o.num("pool", 4) as usize;
    let rt = server_runtime(o)?;
    rt.block_on(async move {
        let mut servers = Vec::with_capacity(pool);
        for _ in 0..pool {
            servers.push(Conn::connect(&login, &login.user).await?.stream);
        }
        let servers = Arc::new(Mutex::new(servers));
        let ready = Arc::new(tokio::sync::Semaphore::new(pool));
        let password = Arc::new(login.password);
        let listener = tokio::net::TcpListener::bind(&listen)
            .await
            .map_err(|e| format!("bind {listen}: {e}"))?;
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let (servers, ready, password) = (
                    Arc::clone(&servers),
                    Arc::clone(&ready),
                    Arc::clone(&password),
                );
                tokio::spawn(async move {
                    let _ = floor_client(client, &servers, &ready, &password).await;
                });
            }
        })
        .await
        .map_err(|e| e.to_string())
    })
}

type ServerStack = Mutex<Vec<TcpStream>>;

async fn floor_client(
    client: TcpStream,
    servers: &ServerStack,
    ready: &tokio::sync::Semaphore,
    password: &str,
) -> Result<()> {
    client.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut c = Conn {
        stream: client,
        buf: BytesMut::with_capacity(8192),
        out: BytesMut::with_capacity(512),
    };
    // Startup: length-prefixed, no tag; SSLRequest and GSSENCRequest get 'N'.
    let startup = loop {
        let whole = |b: &BytesMut| {
            b.len() >= 4 && b.len() >= u32::from_be_bytes(b[..4].try_into().unwrap()) as usize
        };
        while !whole(&c.buf) {
            if !c.read_more().await? {
                return Ok(());
            }
        }
        let len = u32::from_be_bytes(c.buf[..4].try_into().unwrap()) as usize;
        let packet = c.buf.split_to(len);
        if len == 8 && packet[4..8] != [0, 3, 0, 0] {
            c.out.put_u8(b'N');
            c.flush().await?;
            continue;
        }
        break packet;
    };
    let user = startup[8..]
        .split(|&b| b == 0)
        .collect::<Vec<_>>()
        .chunks(2)
        .find(|kv| kv[0] == b"user")
        .map(|kv| String::from_utf8_lossy(kv[1]).into_owned())
        .unwrap_or_default();
    // md5 as tenantpool checks it, with the password it would have stored.
    let stored = tenantpool::auth::md5::hash_password(password, &user);
    let salt = (random_u64() as u32).to_be_bytes();
    c.message(b'R', &[&5i32.to_be_bytes()[..], &salt].concat());
    c.flush().await?;
    let (b'p', answer) = c.next_message().await? else {
        return Ok(());
    };
    if !tenantpool::auth::md5::verify(&stored, salt, &answer) {
        return Ok(());
    }
    c.message(b'R', &0i32.to_be_bytes());
    for (k, v) in [
        ("application_name", "pgbench"),
        ("client_encoding", "UTF8"),
        ("DateStyle", "ISO, MDY"),
        ("default_transaction_read_only", "off"),
        ("in_hot_standby", "off"),
        ("integer_datetimes", "on"),
        ("IntervalStyle", "postgres"),
        ("is_superuser", "off"),
        ("server_encoding", "UTF8"),
        ("server_version", "15.18"),
        ("session_authorization", "bench"),
        ("standard_conforming_strings", "on"),
        ("TimeZone", "UTC"),
    ] {
        c.message(b'S', &[k.as_bytes(), b"\0", v.as_bytes(), b"\0"].concat());
    }
    c.message(
        b'K',
        &[1i32.to_be_bytes(), (random_u64() as i32).to_be_bytes()].concat(),
    );
    c.message(b'Z', b"I");
    c.flush().await?;
    loop {
        let (b'Q', body) = c.next_message().await? else {
            return Ok(()); // Terminate, or anything this floor does not do
        };
        let permit = ready.acquire().await.expect("never closed");
        let server = servers
            .lock()
            .unwrap()
            .pop()
            .expect("a permit means one is there");
        let mut s = Conn {
            stream: server,
            buf: BytesMut::with_capacity(8192),
            out: std::mem::take(&mut c.out),
        };
        s.message(b'Q', &body);
        s.flush().await?;
        // Relay whole reads; stop after the read that holds ReadyForQuery.
        'relay: loop {
            if !s.read_more().await? {
                return Ok(());
            }
            let mut at = 0;
            while s.buf.len() >= at + 5 {
                let len = u32::from_be_bytes(s.buf[at + 1..at + 5].try_into().unwrap()) as usize;
                if s.buf.len() < at + 1 + len {
                    break;
                }
                let tag = s.buf[at];
                at += 1 + len;
                if tag == b'Z' {
                    break 'relay;
                }
            }
        }
        c.stream
            .write_all(&s.buf)
            .await
            .map_err(|e| e.to_string())?;
        c.out = s.out;
        servers.lock().unwrap().push(s.stream);
        drop(permit);
    }
}

/// `idle`: opens `--count` logged-in connections and holds them, idle, until
/// SIGTERM or SIGINT. Prints `ready opened=N ...` once they are all open.
async fn idle(o: &Opts) -> Result<()> {
    let login = Arc::new(o.login()?);
    let count = o.num("count", 10_000) as usize;
    let parallel = o.num("parallel", 64) as usize;
    let started = Instant::now();
    let sem = Arc::new(tokio::sync::Semaphore::new(parallel));
    let tasks: Vec<_> = (0..count)
        .map(|_| {
            let login = Arc::clone(&login);
            let sem = Arc::clone(&sem);
            tokio::spawn(async move {
                let _permit = sem.acquire().await.expect("open");
                Conn::connect(&login, &login.user).await
            })
        })
        .collect();
    let mut held = Vec::with_capacity(count);
    let mut errors = 0;
    let mut first_error = None;
    for t in tasks {
        match t.await.map_err(|e| e.to_string())? {
            Ok(c) => held.push(c),
            Err(e) => {
                errors += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    let mut line = format!(
        "ready opened={} errors={errors} seconds={:.1}",
        held.len(),
        started.elapsed().as_secs_f64()
    );
    if let Some(e) = first_error {
        let _ = write!(line, " first_error={e:?}");
    }
    println!("{line}");
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    drop(held);
    Ok(())
}

/// `burst`: `--clients` clients connect at the same instant, each runs one
/// select and leaves. Reports time to first row (from the burst's start),
/// errors, when the last client was done, and when the pool was idle again:
/// the pooler holds no client socket and PostgreSQL shows no active backend of
/// the user (checked over a direct connection to `--pg`).
async fn burst(o: &Opts) -> Result<()> {
    let login = Arc::new(o.login()?);
    let clients = o.num("clients", 2000) as usize;
    let accounts = o.num("accounts", 100_000);
    let pid = o.named.get("pid").and_then(|p| p.parse::<u32>().ok());
    let port: u16 = login
        .addr
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or("--addr needs a port")?;
    let pg = Login {
        addr: o.get("pg")?,
        ..(*login).clone()
    };
    let mut control = Conn::connect(&pg, &pg.user).await?;
    let active_sql = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE usename = '{}' AND state <> 'idle' AND pid <> pg_backend_pid()",
        login.user
    );

    let cpu0 = pid.and_then(cpu_us);
    let overflows0 = listen_overflows();
    let start = Instant::now();
    let barrier = Arc::new(tokio::sync::Barrier::new(clients));
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let login = Arc::clone(&login);
            let barrier = Arc::clone(&barrier);
            tokio::spawn(async move {
                barrier.wait().await;
                let mut c = Conn::connect(&login, &login.user).await?;
                let a = c.query(&select_sql(accounts)).await?;
                c.terminate().await;
                if let Some(e) = a.error {
                    return Err(e);
                }
                a.first_row.ok_or_else(|| "no row".to_string())
            })
        })
        .collect();
    let mut ttfr = Vec::with_capacity(clients);
    let mut errors = 0;
    let mut first_error = None;
    for t in tasks {
        match t.await.map_err(|e| e.to_string())? {
            Ok(at) => ttfr.push(at.duration_since(start).as_micros() as u64),
            Err(e) => {
                errors += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    let done = start.elapsed();
    let idle_after = loop {
        let clients_left = pooler_side_sockets(port);
        let active = control.query(&active_sql).await?;
        let active: u64 = active
            .value
            .and_then(|v| v.parse().ok())
            .unwrap_or(u64::MAX);
        if clients_left == 0 && active == 0 {
            break Some(start.elapsed());
        }
        if start.elapsed() > done + Duration::from_secs(60) {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let cpu1 = pid.and_then(cpu_us);
    let overflows1 = listen_overflows();
    control.terminate().await;
    let s = summarize(ttfr);
    let mut line = format!(
        "clients={clients} ok={} errors={errors} p50_us={} p99_us={} max_us={} done_ms={:.1}",
        s.count,
        s.p50_us,
        s.p99_us,
        s.max_us,
        done.as_secs_f64() * 1e3
    );
    match idle_after {
        Some(d) => {
            let _ = write!(line, " idle_ms={:.1}", d.as_secs_f64() * 1e3);
        }
        None => line.push_str(" idle_ms=never"),
    }
    if let (Some(a), Some(b)) = (cpu0, cpu1) {
        let _ = write!(line, " cpu_us={}", b - a);
    }
    if let Some(kb) = pid.and_then(rss_kb) {
        let _ = write!(line, " rss_kb={kb}");
    }
    if let (Some(a), Some(b)) = (overflows0, overflows1) {
        let _ = write!(line, " listen_overflows={}", b - a);
    }
    if let Some(e) = first_error {
        let _ = write!(line, " first_error={e:?}");
    }
    println!("{line}");
    Ok(())
}

/// `pglog`: latency summary of pgbench `-l` logs (third column: µs).
fn pglog(files: &[String]) -> Result<()> {
    let mut lat = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).map_err(|e| format!("{f}: {e}"))?;
        for line in text.lines() {
            if let Some(v) = line.split(' ').nth(2).and_then(|v| v.parse::<u64>().ok()) {
                lat.push(v);
            }
        }
    }
    let s = summarize(lat);
    println!(
        "logged={} mean_us={:.1} p50_us={} p99_us={}",
        s.count, s.mean_us, s.p50_us, s.p99_us
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// The report

/// One measured run: `key=value` fields, tab separated.
type Record = HashMap<String, String>;

fn parse_records(text: &str) -> Vec<Record> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            l.split('\t')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

/// A cell (scenario row) and target's runs, aggregated over rounds.
#[derive(Default, Clone)]
struct Agg {
    rounds: usize,
    txns: f64,
    seconds: f64,
    lat_weighted: f64,
    p99s: Vec<f64>,
    cpu_us: Option<f64>,
    rss_kb: Option<f64>,
    errors: f64,
    extra: HashMap<String, Vec<f64>>,
}

impl Agg {
    fn add(&mut self, r: &Record) {
        let f = |k: &str| r.get(k).and_then(|v| v.parse::<f64>().ok());
        self.rounds += 1;
        let txns = f("txns").unwrap_or(0.0);
        self.txns += txns;
        self.seconds += f("seconds").unwrap_or(0.0);
        self.lat_weighted += f("mean_us").unwrap_or(0.0) * txns;
        if let Some(p) = f("p99_us") {
            self.p99s.push(p);
        }
        if let Some(c) = f("cpu_us") {
            *self.cpu_us.get_or_insert(0.0) += c;
        }
        if let Some(kb) = f("rss_kb") {
            // The smallest: a pooler's RSS does not shrink after the idle-client
            // scenario, so later rounds would show that scenario's peak.
            self.rss_kb = Some(self.rss_kb.map_or(kb, |r| r.min(kb)));
        }
        self.errors += f("errors").unwrap_or(0.0);
        for (k, v) in r {
            if let Ok(x) = v.parse::<f64>() {
                self.extra.entry(k.clone()).or_default().push(x);
            }
        }
    }
    fn tps(&self) -> Option<f64> {
        (self.seconds > 0.0).then(|| self.txns / self.seconds)
    }
    fn mean_ms(&self) -> Option<f64> {
        (self.txns > 0.0).then(|| self.lat_weighted / self.txns / 1e3)
    }
    fn p99_ms(&self) -> Option<f64> {
        median(&self.p99s).map(|v| v / 1e3)
    }
    fn cpu_per_txn(&self) -> Option<f64> {
        self.cpu_us
            .filter(|_| self.txns > 0.0)
            .map(|c| c / self.txns)
    }
    fn rss_mib(&self) -> Option<f64> {
        self.rss_kb.map(|kb| kb / 1024.0)
    }
    fn med(&self, k: &str) -> Option<f64> {
        self.extra.get(k).and_then(|v| median(v))
    }
    fn sum(&self, k: &str) -> Option<f64> {
        self.extra.get(k).map(|v| v.iter().sum())
    }
    /// A summed field per transaction.
    fn per_txn(&self, k: &str) -> Option<f64> {
        self.sum(k)
            .filter(|_| self.txns > 0.0)
            .map(|v| v / self.txns)
    }
}

fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    Some(if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    })
}

struct Table {
    head: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(head: &[&str]) -> Self {
        Table {
            head: head.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
        }
    }
    fn print(&self, markdown: bool) {
        let mut w: Vec<usize> = self.head.iter().map(|h| h.chars().count()).collect();
        for r in &self.rows {
            for (i, c) in r.iter().enumerate() {
                w[i] = w[i].max(c.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let mut s = String::new();
            for (i, c) in cells.iter().enumerate() {
                let pad = w[i] - c.chars().count();
                if markdown {
                    s.push_str("| ");
                }
                if i < 2 {
                    s.push_str(c);
                    s.push_str(&" ".repeat(pad));
                } else {
                    s.push_str(&" ".repeat(pad));
                    s.push_str(c);
                }
                s.push(' ');
                if !markdown {
                    s.push(' ');
                }
            }
            if markdown {
                s.push('|');
            }
            println!("{}", s.trim_end());
        };
        line(&self.head);
        if markdown {
            let sep: Vec<String> = w
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    if i < 2 {
                        "-".repeat(*n)
                    } else {
                        format!("{}:", "-".repeat(n.saturating_sub(1)))
                    }
                })
                .collect();
            line(&sep);
        }
        for r in &self.rows {
            line(r);
        }
        println!();
    }
}

fn fmt(v: Option<f64>, decimals: usize) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x:.decimals$}"),
        _ => "–".into(),
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "–".into(),
    }
}

/// `report`: the tables, from the records `load.sh` wrote.
fn report(o: &Opts) -> Result<()> {
    let file = o
        .positional
        .first()
        .ok_or("usage: loadgen report RESULTS")?;
    let text = std::fs::read_to_string(file).map_err(|e| format!("{file}: {e}"))?;
    let md = o.flag("markdown");
    let records = parse_records(&text);
    // cell -> target -> aggregate, both in order of first appearance.
    let mut cells: Vec<Cell> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    for r in &records {
        if let Some(n) = r.get("note") {
            if !notes.contains(n) {
                notes.push(n.clone());
            }
            continue;
        }
        let (Some(kind), Some(cell), Some(target)) =
            (r.get("kind"), r.get("cell"), r.get("target"))
        else {
            continue;
        };
        let idx = match cells.iter().position(|(_, c, _)| c == cell) {
            Some(i) => i,
            None => {
                cells.push((kind.clone(), cell.clone(), Vec::new()));
                cells.len() - 1
            }
        };
        let targets = &mut cells[idx].2;
        let t = match targets.iter().position(|(t, _)| t == target) {
            Some(i) => i,
            None => {
                targets.push((target.clone(), Agg::default()));
                targets.len() - 1
            }
        };
        targets[t].1.add(r);
    }

    // Throughput table: every pgbench cell, ratios to pgbouncer and direct.
    let mut t = Table::new(&[
        "scenario",
        "target",
        "TPS",
        "×pgb",
        "×dir",
        "mean ms",
        "×pgb",
        "×dir",
        "p99 ms",
        "×pgb",
        "×dir",
        "CPU µs/txn",
        "×pgb",
        "RSS MiB",
        "×pgb",
        "errors",
    ]);
    for (kind, cell, targets) in &cells {
        if kind != "tps" {
            continue;
        }
        let find = |name: &str| targets.iter().find(|(t, _)| t == name).map(|(_, a)| a);
        let pgb = find("pgbouncer");
        let dir = find("direct");
        for (name, a) in targets {
            let get = |f: fn(&Agg) -> Option<f64>, other: Option<&Agg>| {
                other.and_then(f).filter(|_| a.rounds > 0)
            };
            t.rows.push(vec![
                cell.clone(),
                name.clone(),
                fmt(a.tps(), 0),
                ratio(a.tps(), get(Agg::tps, pgb)),
                ratio(a.tps(), get(Agg::tps, dir)),
                fmt(a.mean_ms(), 3),
                ratio(a.mean_ms(), get(Agg::mean_ms, pgb)),
                ratio(a.mean_ms(), get(Agg::mean_ms, dir)),
                fmt(a.p99_ms(), 3),
                ratio(a.p99_ms(), get(Agg::p99_ms, pgb)),
                ratio(a.p99_ms(), get(Agg::p99_ms, dir)),
                fmt(a.cpu_per_txn(), 1),
                ratio(a.cpu_per_txn(), get(Agg::cpu_per_txn, pgb)),
                fmt(a.rss_mib(), 1),
                ratio(a.rss_mib(), get(Agg::rss_mib, pgb)),
                fmt(Some(a.errors), 0),
            ]);
        }
    }
    if !t.rows.is_empty() {
        println!("Throughput and latency (aggregated over rounds; CPU and RSS are the pooler process's, RSS the smallest seen after the cell; × = ratio to pgbouncer / direct)\n");
        t.print(md);
    }

    // Multi-tenant: ratios to the same pooler without a tenant source.
    let mut t = Table::new(&[
        "scenario",
        "variant",
        "TPS",
        "×none",
        "mean ms",
        "p99 ms",
        "×none",
        "CPU µs/txn",
        "×none",
        "PG CPU µs/txn",
        "×none",
        "SETs/txn",
        "affinity hits",
        "errors",
    ]);
    for (kind, cell, targets) in &cells {
        if kind != "tenants" {
            continue;
        }
        let base = targets
            .iter()
            .find(|(t, _)| t.contains("no tenant"))
            .map(|(_, a)| a.clone());
        for (name, a) in targets {
            let b = base.as_ref();
            let sent = a.sum("sets_sent");
            let skipped = a.sum("sets_skipped");
            let hits = match (sent, skipped) {
                (Some(s), Some(k)) if s + k > 0.0 => Some(100.0 * k / (s + k)),
                _ => None,
            };
            t.rows.push(vec![
                cell.clone(),
                name.clone(),
                fmt(a.tps(), 0),
                ratio(a.tps(), b.and_then(Agg::tps)),
                fmt(a.mean_ms(), 3),
                fmt(a.p99_ms(), 3),
                ratio(a.p99_ms(), b.and_then(Agg::p99_ms)),
                fmt(a.cpu_per_txn(), 1),
                ratio(a.cpu_per_txn(), b.and_then(Agg::cpu_per_txn)),
                fmt(a.per_txn("pg_cpu_us"), 1),
                ratio(
                    a.per_txn("pg_cpu_us"),
                    b.and_then(|b| b.per_txn("pg_cpu_us")),
                ),
                fmt(sent.filter(|_| a.txns > 0.0).map(|s| s / a.txns), 3),
                hits.map(|h| format!("{h:.1}%")).unwrap_or("–".into()),
                fmt(Some(a.errors), 0),
            ]);
        }
    }
    if !t.rows.is_empty() {
        println!("Multi-tenant (tenantpool; × = ratio to the same load without a tenant source)\n");
        t.print(md);
    }

    // Idle clients.
    let mut t = Table::new(&[
        "scenario",
        "target",
        "idle held",
        "RSS before MiB",
        "RSS idle MiB",
        "B/idle client",
        "TPS no idle",
        "TPS idle",
        "×",
        "p99 no idle",
        "p99 idle",
        "×",
        "errors",
    ]);
    for (kind, cell, targets) in &cells {
        if kind != "idle" {
            continue;
        }
        for (name, a) in targets {
            let (before, with, held, per) = idle_rss(a);
            let (tps0, tps1) = (a.med("tps_base"), a.med("tps_idle"));
            let (p0, p1) = (
                a.med("p99_base_us").map(|v| v / 1e3),
                a.med("p99_idle_us").map(|v| v / 1e3),
            );
            t.rows.push(vec![
                cell.clone(),
                name.clone(),
                fmt(held, 0),
                fmt(before.map(|k| k / 1024.0), 1),
                fmt(with.map(|k| k / 1024.0), 1),
                fmt(per, 0),
                fmt(tps0, 0),
                fmt(tps1, 0),
                ratio(tps1, tps0),
                fmt(p0, 3),
                fmt(p1, 3),
                ratio(p1, p0),
                fmt(Some(a.errors), 0),
            ]);
        }
    }
    if !t.rows.is_empty() {
        println!("Idle clients (RSS from the round where it grew most, TPS and p99 medians over rounds; p99 in ms)\n");
        t.print(md);
    }

    // Burst.
    let mut t = Table::new(&[
        "scenario",
        "target",
        "ok",
        "errors",
        "p50 first row ms",
        "p99 first row ms",
        "max ms",
        "all done ms",
        "pool idle ms",
        "CPU µs/client",
        "×pgb",
        "accept-queue overflows",
    ]);
    for (kind, cell, targets) in &cells {
        if kind != "burst" {
            continue;
        }
        let cpu = |a: &Agg| match (a.sum("cpu_us"), a.sum("clients")) {
            (Some(c), Some(n)) if n > 0.0 => Some(c / n),
            _ => None,
        };
        let pgb = targets
            .iter()
            .find(|(t, _)| t == "pgbouncer")
            .and_then(|(_, a)| cpu(a));
        for (name, a) in targets {
            let ms = |k: &str| a.med(k).map(|v| v / 1e3);
            t.rows.push(vec![
                cell.clone(),
                name.clone(),
                fmt(a.sum("ok"), 0),
                fmt(Some(a.errors), 0),
                fmt(ms("p50_us"), 1),
                fmt(ms("p99_us"), 1),
                fmt(ms("max_us"), 1),
                fmt(a.med("done_ms"), 0),
                fmt(a.med("idle_ms"), 0),
                fmt(cpu(a), 1),
                ratio(cpu(a), pgb),
                fmt(a.sum("listen_overflows"), 0),
            ]);
        }
    }
    if !t.rows.is_empty() {
        println!("Burst (medians over rounds; times from the moment all clients start connecting; ok, errors and the kernel's accept-queue overflows summed)\n");
        t.print(md);
    }
    targets_table(&cells, md);
    for n in notes {
        println!("- {n}");
    }
    Ok(())
}

/// RSS before and with the idle clients (kB), how many were held, and the
/// growth per idle client (bytes), from the round where it grew most: later
/// rounds reuse memory the allocator kept from the first and understate it.
fn idle_rss(a: &Agg) -> (Option<f64>, Option<f64>, Option<f64>, Option<f64>) {
    let get = |k: &str| a.extra.get(k).cloned().unwrap_or_default();
    let (before, with, held) = (get("rss_before_kb"), get("rss_idle_kb"), get("held"));
    let mut best: (Option<f64>, Option<f64>, Option<f64>, Option<f64>) = (None, None, None, None);
    for i in 0..before.len().min(with.len()).min(held.len()) {
        if held[i] <= 0.0 {
            continue;
        }
        let per = (with[i] - before[i]) * 1024.0 / held[i];
        if best.3.is_none_or(|b| per > b) {
            best = (Some(before[i]), Some(with[i]), Some(held[i]), Some(per));
        }
    }
    best
}

/// (kind, cell name, (target, aggregate) in order of first appearance).
type Cell = (String, String, Vec<(String, Agg)>);
type Cells = [Cell];

/// The issue's targets, each with the figure measured in this run.
fn targets_table(cells: &Cells, md: bool) {
    let find = |cell_prefix: &str, target: &str| -> Option<&Agg> {
        cells
            .iter()
            .find(|(_, c, _)| c.starts_with(cell_prefix))
            .and_then(|(_, _, ts)| ts.iter().find(|(t, _)| t == target))
            .map(|(_, a)| a)
    };
    let mut t = Table::new(&["target (issue 6)", "goal", "measured", "met"]);
    let mut row = |what: String, goal: &str, measured: Option<String>, met: Option<bool>| {
        t.rows.push(vec![
            what,
            goal.to_string(),
            measured.unwrap_or_else(|| "not measured".into()),
            match met {
                Some(true) => "yes".into(),
                Some(false) => "NO".into(),
                None => "–".into(),
            },
        ]);
    };
    let div = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    };
    for mode in ["simple", "extended"] {
        let cell = format!("S1 -S -M {mode} c=64");
        let tp = find(&cell, "tenantpool");
        let pgb = find(&cell, "pgbouncer");
        let dir = find(&cell, "direct");
        let r = div(
            tp.and_then(Agg::cpu_per_txn),
            pgb.and_then(Agg::cpu_per_txn),
        );
        row(
            format!("{cell}: CPU/txn vs PgBouncer"),
            "≤ 0.6×",
            r.map(|r| {
                format!(
                    "{r:.2}× ({} vs {} µs)",
                    fmt(tp.and_then(Agg::cpu_per_txn), 1),
                    fmt(pgb.and_then(Agg::cpu_per_txn), 1)
                )
            }),
            r.map(|r| r <= 0.6),
        );
        let r = div(tp.and_then(Agg::tps), pgb.and_then(Agg::tps));
        row(
            format!("{cell}: TPS vs PgBouncer"),
            "≥ 1.2×",
            r.map(|r| format!("{r:.2}×")),
            r.map(|r| r >= 1.2),
        );
        let r = div(tp.and_then(Agg::tps), dir.and_then(Agg::tps));
        row(
            format!("{cell}: TPS vs direct"),
            "≥ 0.9×",
            r.map(|r| format!("{r:.2}×")),
            r.map(|r| r >= 0.9),
        );
    }
    for mode in ["simple", "extended"] {
        let cell = format!("S1 -S -M {mode} c=1");
        let mean = |t| find(&cell, t).and_then(Agg::mean_ms).map(|m| m * 1e3);
        let added = |t| mean(t).zip(mean("direct")).map(|(a, d)| a - d);
        let (tp, pgb) = (added("tenantpool"), added("pgbouncer"));
        // The target is the mean; the median beside it is not moved by the few
        // transactions another process on this shared machine delays.
        let p50 = |t| find(&cell, t).and_then(|a| a.med("p50_us"));
        let added_p50 = |t| p50(t).zip(p50("direct")).map(|(a, d)| a - d);
        let medians = added_p50("tenantpool")
            .zip(added_p50("pgbouncer"))
            .map(|(a, b)| format!("; p50 {a:.0} vs {b:.0}"))
            .unwrap_or_default();
        row(
            format!("{cell}: mean latency added over direct"),
            "≤ PgBouncer's",
            tp.zip(pgb)
                .map(|(a, b)| format!("{a:.1} µs vs PgBouncer {b:.1} µs{medians}")),
            tp.zip(pgb).map(|(a, b)| a <= b),
        );
    }
    let idle = cells
        .iter()
        .find(|(k, _, _)| k == "idle")
        .and_then(|(_, _, ts)| ts.iter().find(|(t, _)| t == "tenantpool"))
        .map(|(_, a)| a);
    let per_client = idle.and_then(|a| {
        let (_, _, held, per) = idle_rss(a);
        per.zip(held)
    });
    row(
        "S5: RSS per idle client".into(),
        "≤ 1024 B",
        per_client.map(|(b, h)| format!("{b:.0} B ({h:.0} held)")),
        per_client.map(|(b, _)| b <= 1024.0),
    );
    let r = idle.and_then(|a| div(a.med("tps_idle"), a.med("tps_base")));
    row(
        "S5: active TPS with idle clients vs without".into(),
        "≥ 0.95×",
        r.map(|r| format!("{r:.2}×")),
        r.map(|r| r >= 0.95),
    );
    let cell = "S4 -C -S";
    let tp = find(cell, "tenantpool").and_then(Agg::cpu_per_txn);
    let pgb = find(cell, "pgbouncer").and_then(Agg::cpu_per_txn);
    row(
        "S4: CPU per connect+transaction".into(),
        "≤ PgBouncer's",
        tp.zip(pgb)
            .map(|(a, b)| format!("{a:.0} µs vs PgBouncer {b:.0} µs")),
        tp.zip(pgb).map(|(a, b)| a <= b),
    );
    for (kind, cell, ts) in cells {
        if kind != "tenants" {
            continue;
        }
        let get = |v: &str| ts.iter().find(|(t, _)| t.ends_with(v)).map(|(_, a)| a);
        let r = div(
            get("50 tenants").and_then(Agg::tps),
            get("no tenant source").and_then(Agg::tps),
        );
        row(
            format!("{cell}: TPS with 50 tenants vs no tenant source"),
            "≥ 0.97×",
            r.map(|r| format!("{r:.2}×")),
            r.map(|r| r >= 0.97),
        );
    }
    for (kind, cell, ts) in cells {
        if kind != "burst" {
            continue;
        }
        if let Some((_, a)) = ts.iter().find(|(t, _)| t == "tenantpool") {
            row(
                format!("{cell}: errors"),
                "0",
                Some(format!("{:.0}", a.errors)),
                Some(a.errors == 0.0),
            );
        }
    }
    println!("Targets\n");
    t.print(md);
}
