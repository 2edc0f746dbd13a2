//! Running SQL through `psql` and editing pg_hba.conf of a [`TempCluster`].

use std::fs;
use std::io::{self, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::{env, ClusterError, TempCluster, DEMO_SCHEMA_SQL, HOST, SUPERUSER};

const RELOAD_DEADLINE: Duration = Duration::from_secs(10);

impl TempCluster {
    /// Runs `sql` (one or more statements) as the superuser over the unix
    /// socket. Output is psql's quiet, unaligned, tuples-only format:
    /// `select 1, 2` yields `"1|2\n"`.
    pub fn psql(&self, db: &str, sql: &str) -> Result<String, ClusterError> {
        self.run_psql(Target::Socket, db, &["-c", sql], None)
    }

    /// Runs `sql` over TCP as `user` authenticating with `password`, so
    /// pg_hba.conf's `host` rules (scram/md5/...) apply. Output as [`psql`].
    ///
    /// [`psql`]: TempCluster::psql
    pub fn psql_tcp(
        &self,
        user: &str,
        password: &str,
        db: &str,
        sql: &str,
    ) -> Result<String, ClusterError> {
        self.run_psql(Target::Tcp { user, password }, db, &["-c", sql], None)
    }

    /// Runs a psql script (which may use meta-commands like `\gexec`) as the
    /// superuser over the unix socket, after `\set`ting each `(name, value)`
    /// in `vars` so the script can use `:'name'`. Values go through stdin,
    /// not argv, so they do not show up in `ps`. Output as [`psql`].
    ///
    /// [`psql`]: TempCluster::psql
    pub fn psql_script(
        &self,
        db: &str,
        script: &str,
        vars: &[(&str, &str)],
    ) -> Result<String, ClusterError> {
        let mut input = String::new();
        for (name, value) in vars {
            input.push_str(&format!("\\set {name} {}\n", env::psql_meta_quote(value)));
        }
        input.push_str(script);
        input.push('\n');
        self.run_psql(Target::Socket, db, &["-f", "-"], Some(input))
    }

    /// Creates database `db` unless it is `postgres` or exists, then loads
    /// [`DEMO_SCHEMA_SQL`] into it: role `app` (login, non-superuser,
    /// NOBYPASSRLS, password `app_password`) and the RLS-protected `items`
    /// table with 3 `acme` and 2 `globex` rows.
    pub fn load_demo_schema(&self, db: &str, app_password: &str) -> Result<(), ClusterError> {
        if db != "postgres" {
            self.psql_script(
                "postgres",
                "SELECT format('CREATE DATABASE %I', :'db') \
                 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db')\n\\gexec",
                &[("db", db)],
            )?;
        }
        self.psql_script(db, DEMO_SCHEMA_SQL, &[("app_password", app_password)])?;
        Ok(())
    }

    /// Prepends `lines` to pg_hba.conf (first match wins, so they override
    /// the defaults) and reloads. The file is validated through
    /// `pg_hba_file_rules` first and restored if any line has an error.
    ///
    /// Defaults: `local` is trust, `host` is scram-sha-256.
    pub fn prepend_hba(&self, lines: &[&str]) -> Result<(), ClusterError> {
        let path = self.data_dir.join("pg_hba.conf");
        let old = fs::read_to_string(&path)
            .map_err(|e| ClusterError::io(format!("reading {}", path.display()), e))?;
        let mut new = lines.join("\n");
        new.push('\n');
        new.push_str(&old);
        // Writing in place keeps the file's owner when we run as root.
        fs::write(&path, new)
            .map_err(|e| ClusterError::io(format!("writing {}", path.display()), e))?;
        let errors = self.psql(
            "postgres",
            "select 'line ' || line_number || ': ' || error \
             from pg_hba_file_rules where error is not null",
        );
        match errors {
            Ok(errors) if errors.trim().is_empty() => self.reload(),
            other => {
                fs::write(&path, old)
                    .map_err(|e| ClusterError::io(format!("restoring {}", path.display()), e))?;
                Err(ClusterError::Hba(match other {
                    Ok(errors) => errors.trim().to_string(),
                    Err(e) => e.to_string(),
                }))
            }
        }
    }

    /// Reloads the configuration files (SIGHUP to the postmaster) and waits
    /// until new connections see it, i.e. `pg_conf_load_time()` changed.
    pub fn reload(&self) -> Result<(), ClusterError> {
        const SQL: &str = "select pg_conf_load_time()";
        let before = self.psql("postgres", SQL)?;
        // SAFETY: kill(2) on our own child; it is reaped only via &mut self,
        // so its PID cannot have been recycled while we hold &self.
        if unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGHUP) } != 0 {
            return Err(ClusterError::io(
                "signalling postgres",
                io::Error::last_os_error(),
            ));
        }
        let deadline = Instant::now() + RELOAD_DEADLINE;
        let mut backoff = Duration::from_millis(2);
        while self.psql("postgres", SQL)? == before {
            if Instant::now() >= deadline {
                return Err(ClusterError::ReloadTimeout(RELOAD_DEADLINE));
            }
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_millis(100));
        }
        Ok(())
    }

    fn run_psql(
        &self,
        target: Target<'_>,
        db: &str,
        args: &[&str],
        stdin: Option<String>,
    ) -> Result<String, ClusterError> {
        let mut cmd = self.command("psql");
        cmd.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"]);
        let user = match target {
            Target::Socket => {
                cmd.arg(self.dir.path());
                SUPERUSER
            }
            Target::Tcp { user, password } => {
                cmd.arg(HOST).env("PGPASSWORD", password);
                user
            }
        };
        cmd.args(["-p", &self.port.to_string(), "-U", user, "-d", db])
            .args(args)
            .env("PGCONNECT_TIMEOUT", "10")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if stdin.is_some() {
            cmd.stdin(Stdio::piped());
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| ClusterError::io("running psql", e))?;
        // Feed stdin from a thread so a chatty script cannot deadlock on a
        // full stdout pipe while we are still writing.
        let writer = match (stdin, child.stdin.take()) {
            (Some(input), Some(mut pipe)) => {
                Some(std::thread::spawn(move || pipe.write_all(input.as_bytes())))
            }
            _ => None,
        };
        let out = child
            .wait_with_output()
            .map_err(|e| ClusterError::io("running psql", e))?;
        if let Some(writer) = writer {
            // A write error (EPIPE) just means psql stopped early; its exit
            // status and stderr below say why.
            let _ = writer.join();
        }
        if !out.status.success() {
            return Err(ClusterError::Psql {
                status: out.status,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

#[derive(Clone, Copy)]
enum Target<'a> {
    /// The superuser over the unix socket (trust).
    Socket,
    /// Any user over TCP with a password.
    Tcp { user: &'a str, password: &'a str },
}
