//! A throwaway PostgreSQL cluster for tests, `tenantpool demo` and benchmarks.
//!
//! [`TempCluster::start`] runs `initdb` into a fresh temp directory, starts
//! `postgres` as a child process on a free 127.0.0.1 port (unix socket in the
//! same directory) and waits until it accepts connections. Dropping the
//! [`TempCluster`] fast-shuts-down the server and removes the directory.

mod env;
mod psql;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use env::{RunAs, TempDir};

/// The RLS demo schema (tenants `acme` and `globex`, role `app`); expects the
/// psql variable `app_password`. See [`TempCluster::load_demo_schema`].
pub const DEMO_SCHEMA_SQL: &str = include_str!("../demo/schema.sql");

/// The superuser created by `initdb`.
pub const SUPERUSER: &str = "postgres";

const HOST: &str = "127.0.0.1";
const START_DEADLINE: Duration = Duration::from_secs(30);
const STOP_DEADLINE: Duration = Duration::from_secs(10);
const PORT_ATTEMPTS: usize = 5;
const LOG_TAIL_LINES: usize = 30;

/// Errors from creating, starting or talking to a [`TempCluster`].
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "PostgreSQL server binaries (initdb, postgres) not found; searched: {searched}. \
         Install them with `apt-get install postgresql` on Debian/Ubuntu or \
         `brew install postgresql` on macOS, or set PG_BINDIR to the directory containing them"
    )]
    BinariesNotFound { searched: String },

    #[error(
        "running as root, but neither a `postgres` nor a `nobody` user exists to run PostgreSQL as"
    )]
    NoUnprivilegedUser,

    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },

    #[error("initdb failed ({status}):\n{output}")]
    Initdb { status: ExitStatus, output: String },

    #[error("postgres exited during startup ({status}); last lines of {}:\n{tail}", log.display())]
    StartupExited {
        status: ExitStatus,
        log: PathBuf,
        tail: String,
    },

    #[error("postgres did not accept connections within {timeout:?}; last lines of {}:\n{tail}", log.display())]
    StartupTimeout {
        timeout: Duration,
        log: PathBuf,
        tail: String,
    },

    #[error("psql failed ({status}): {stderr}")]
    Psql { status: ExitStatus, stderr: String },

    #[error("pg_hba.conf would have errors, left unchanged: {0}")]
    Hba(String),

    #[error("configuration reload did not take effect within {0:?}")]
    ReloadTimeout(Duration),
}

impl ClusterError {
    fn io(what: impl Into<String>, source: io::Error) -> Self {
        ClusterError::Io {
            what: what.into(),
            source,
        }
    }
}

/// Settings for [`TempCluster::start`].
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// `max_connections` of the server (default 200).
    pub max_connections: u32,
    /// Extra `postgresql.conf` lines, appended last so they override ours,
    /// e.g. `shared_preload_libraries = 'pg_stat_statements'`.
    pub extra_conf: Vec<String>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            max_connections: 200,
            extra_conf: Vec::new(),
        }
    }
}

/// A running throwaway PostgreSQL server; stopped and deleted on drop.
///
/// `Send + Sync`: share it via `Arc` and call the blocking methods from
/// `tokio::task::spawn_blocking` in async code.
#[derive(Debug)]
pub struct TempCluster {
    bindir: PathBuf,
    data_dir: PathBuf,
    log_path: PathBuf,
    password: String,
    run_as: Option<RunAs>,
    port: u16,
    pid: u32,
    child: Option<Child>,
    // Declared last so it is removed only after Drop::drop stopped the server.
    dir: TempDir,
}

impl TempCluster {
    /// Creates and starts a cluster; blocks until it accepts connections
    /// (typically about a second, at most 30 s).
    pub fn start(opts: ClusterOptions) -> Result<TempCluster, ClusterError> {
        let bindir = env::find_bindir()?;
        let run_as = env::run_as()?;
        let dir = TempDir::new(run_as)?;
        let mut cluster = TempCluster {
            data_dir: dir.path().join("data"),
            log_path: dir.path().join("postgres.log"),
            password: env::random_hex()?,
            bindir,
            run_as,
            port: 0,
            pid: 0,
            child: None,
            dir,
        };
        // From here on, an early return drops `cluster`, which cleans up.
        cluster.initdb()?;
        cluster.write_conf(&opts)?;
        cluster.launch()?;
        tracing::debug!(port = cluster.port, dir = %cluster.socket_dir().display(), "temp cluster ready");
        Ok(cluster)
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bindir.join(program);
        // psql/pg_isready may come from a separate client package on PATH.
        let mut cmd = Command::new(if path.is_file() {
            path
        } else {
            PathBuf::from(program)
        });
        for (key, _) in std::env::vars_os().filter(|(k, _)| env::is_pg_env(k)) {
            cmd.env_remove(key);
        }
        cmd.current_dir(self.dir.path()).stdin(Stdio::null());
        cmd
    }

    /// A command for a server-side program, run as the unprivileged user
    /// when we are root, with stable English messages for log matching.
    fn server_command(&self, program: &str) -> Command {
        let mut cmd = self.command(program);
        cmd.env("LC_ALL", "C");
        if let Some(who) = self.run_as {
            cmd.uid(who.uid).gid(who.gid);
        }
        cmd
    }

    fn initdb(&self) -> Result<(), ClusterError> {
        let pwfile = self.dir.path().join("pwfile");
        fs::write(&pwfile, format!("{}\n", self.password))
            .and_then(|()| fs::set_permissions(&pwfile, fs::Permissions::from_mode(0o600)))
            .map_err(|e| ClusterError::io(format!("writing {}", pwfile.display()), e))?;
        if let Some(who) = self.run_as {
            env::chown(&pwfile, who)?;
        }
        let out = self
            .server_command("initdb")
            .arg("-D")
            .arg(&self.data_dir)
            .args(["--no-sync", "-E", "UTF8", "--locale=C", "-U", SUPERUSER])
            .arg(format!("--pwfile={}", pwfile.display()))
            .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
            .output()
            .map_err(|e| ClusterError::io("running initdb", e))?;
        let _ = fs::remove_file(&pwfile);
        if !out.status.success() {
            return Err(ClusterError::Initdb {
                status: out.status,
                output: format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            });
        }
        Ok(())
    }

    fn write_conf(&self, opts: &ClusterOptions) -> Result<(), ClusterError> {
        // PostgreSQL wants at least 2 buffers per connection; keep a margin.
        let shared_buffers_kb = (u64::from(opts.max_connections) * 32).max(16 * 1024);
        let socket_dir = self.dir.path().to_string_lossy().replace('\'', "''");
        let mut conf = format!(
            "\n# added by tenantpool pgcluster\n\
             listen_addresses = '{HOST}'\n\
             unix_socket_directories = '{socket_dir}'\n\
             max_connections = {}\n\
             shared_buffers = {shared_buffers_kb}kB\n\
             fsync = off\n\
             synchronous_commit = off\n\
             full_page_writes = off\n",
            opts.max_connections
        );
        for line in &opts.extra_conf {
            conf.push_str(line);
            conf.push('\n');
        }
        let path = self.data_dir.join("postgresql.conf");
        OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(conf.as_bytes()))
            .map_err(|e| ClusterError::io(format!("appending to {}", path.display()), e))
    }

    /// Starts postgres on a free port, retrying on another port if someone
    /// grabbed ours between probing and binding.
    fn launch(&mut self) -> Result<(), ClusterError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.port = free_port()?;
            let log = File::create(&self.log_path).map_err(|e| {
                ClusterError::io(format!("creating {}", self.log_path.display()), e)
            })?;
            let log_err = log
                .try_clone()
                .map_err(|e| ClusterError::io("duplicating log file handle", e))?;
            let child = self
                .server_command("postgres")
                .arg("-D")
                .arg(&self.data_dir)
                .arg("-p")
                .arg(self.port.to_string())
                .stdout(log)
                .stderr(log_err)
                .spawn()
                .map_err(|e| ClusterError::io("spawning postgres", e))?;
            self.pid = child.id();
            self.child = Some(child);
            match self.wait_ready() {
                Err(ClusterError::StartupExited { tail, .. })
                    if attempt < PORT_ATTEMPTS && is_port_conflict(&tail) =>
                {
                    tracing::debug!(port = self.port, "port taken, retrying on another");
                }
                other => return other,
            }
        }
    }

    fn wait_ready(&mut self) -> Result<(), ClusterError> {
        let deadline = Instant::now() + START_DEADLINE;
        let mut backoff = Duration::from_millis(5);
        loop {
            let child = self.child.as_mut().expect("child was just spawned");
            if let Some(status) = child
                .try_wait()
                .map_err(|e| ClusterError::io("waiting for postgres", e))?
            {
                self.child = None;
                return Err(ClusterError::StartupExited {
                    status,
                    log: self.log_path.clone(),
                    tail: log_tail(&self.log_path),
                });
            }
            if self.is_ready() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.stop();
                return Err(ClusterError::StartupTimeout {
                    timeout: START_DEADLINE,
                    log: self.log_path.clone(),
                    tail: log_tail(&self.log_path),
                });
            }
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_millis(200));
        }
    }

    fn is_ready(&self) -> bool {
        let status = self
            .command("pg_isready")
            .arg("-q")
            .arg("-h")
            .arg(self.dir.path())
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                SUPERUSER,
                "-d",
                "postgres",
                "-t",
                "5",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        match status {
            Ok(status) => status.success(),
            // No pg_isready anywhere: a real query is just as good a probe.
            Err(_) => self.psql("postgres", "select 1").is_ok(),
        }
    }

    /// Fast shutdown (SIGINT), escalating to SIGKILL after 10 s.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // Signal only while unreaped: until we wait() on it the PID cannot
        // have been recycled for another process.
        if let Ok(None) = child.try_wait() {
            // SAFETY: kill(2) on the PID of our own unreaped child.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
            let deadline = Instant::now() + STOP_DEADLINE;
            let mut backoff = Duration::from_millis(5);
            loop {
                match child.try_wait() {
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(backoff);
                        backoff = (backoff * 2).min(Duration::from_millis(100));
                    }
                    Ok(None) => {
                        tracing::warn!(pid = child.id(), "postgres ignored SIGINT, killing it");
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    _ => break,
                }
            }
        }
    }

    /// Always `"127.0.0.1"`.
    pub fn host(&self) -> &str {
        HOST
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Directory holding the unix socket (also the temp dir of the cluster).
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Directory of the PostgreSQL binaries (`psql`, `pgbench`, ...).
    pub fn bindir(&self) -> &Path {
        &self.bindir
    }

    /// Password of the superuser [`SUPERUSER`] (needed over TCP; the unix
    /// socket uses trust).
    pub fn superuser_password(&self) -> &str {
        &self.password
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The server's stdout/stderr.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Writes `name` into the data directory with mode 0600, owned by the user
    /// the server runs as (as PostgreSQL insists for `ssl_key_file`), and returns
    /// its path. E.g. `server.crt` and `server.key`, then `ssl = on` and a reload.
    pub fn write_file_as_owner(
        &self,
        name: &str,
        contents: &[u8],
    ) -> Result<PathBuf, ClusterError> {
        let path = self.data_dir.join(name);
        let _ = fs::remove_file(&path);
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut f| f.write_all(contents))
            .map_err(|e| ClusterError::io(format!("writing {}", path.display()), e))?;
        if let Some(who) = self.run_as {
            env::chown(&path, who)?;
        }
        Ok(path)
    }

    /// PID of the postmaster (our child process).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// `postgres://user:password@127.0.0.1:port/db`, percent-encoded.
    pub fn tcp_url(&self, user: &str, password: &str, db: &str) -> String {
        format!(
            "postgres://{}:{}@{HOST}:{}/{}",
            env::percent_encode(user),
            env::percent_encode(password),
            self.port,
            env::percent_encode(db)
        )
    }
}

impl Drop for TempCluster {
    fn drop(&mut self) {
        self.stop();
        // `dir` is dropped after this, removing the data directory.
    }
}

fn free_port() -> Result<u16, ClusterError> {
    std::net::TcpListener::bind((HOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| ClusterError::io("finding a free TCP port", e))
}

fn is_port_conflict(log: &str) -> bool {
    log.contains("Address already in use") || log.contains("could not create any TCP/IP sockets")
}

fn log_tail(path: &Path) -> String {
    match fs::read_to_string(path) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
        }
        Err(e) => format!("(could not read log: {e})"),
    }
}

#[cfg(test)]
mod tests;
