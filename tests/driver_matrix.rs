//! The driver matrix (issue 5): real client drivers run the scenario scripts in
//! `tests/drivers/` through the pooler, with several concurrent workers so
//! that, in transaction mode, server connections are shuffled between a
//! client's transactions.
//!
//! Each script prints `ok <scenario>` or `FAIL <scenario>: <reason>` per
//! scenario and a total line, and exits non-zero on any failure. The runtimes
//! and packages are installed by `.ci/run`; a missing one fails its test with
//! the command that installs it (a silent skip would hide a broken CI).
//!
//! Both session and transaction mode run; transaction mode is what proves
//! named prepared statements survive server connection changes (issue 5).

mod common;

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::{Harness, PASSWORD};
use tenantpool::config::PoolMode;
use tokio::io::AsyncReadExt;
use tokio::process::Command;

/// Every script reports exactly these scenarios.
const SCENARIOS: &[&str] = &[
    "isolation",
    "repeat",
    "same_name",
    "error_recovery",
    "deallocate_all",
    "rollback_retry",
];

/// Concurrent client connections per scenario (tenants alternate).
const WORKERS: usize = 4;
/// Server connections in transaction mode: fewer than the workers, so they are shared.
const TRANSACTION_POOL_SIZE: usize = 3;
/// In session mode each worker holds a server connection for its whole life.
const SESSION_POOL_SIZE: usize = 5;
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);

const JDBC_JAR: &str = "/usr/share/java/postgresql.jar";
const INSTALL_PYTHON: &str = "python3 -m venv target/driver-venv && \
     target/driver-venv/bin/pip install -r tests/drivers/python/requirements.txt \
     (or run .ci/run)";
const INSTALL_NODE: &str =
    "install Node.js (apt-get install nodejs npm), then npm ci --prefix tests/drivers/node \
     (or run .ci/run)";
const INSTALL_JAVA: &str =
    "apt-get install libpostgresql-jdbc-java default-jdk-headless (or run .ci/run)";

#[derive(Clone, Copy, Debug)]
enum Driver {
    Psycopg,
    Asyncpg,
    NodePg,
    PostgresJs,
    Jdbc,
}

fn drivers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/drivers")
}

/// The venv `.ci/run` makes; `TP_DRIVER_PYTHON` points elsewhere.
fn python() -> PathBuf {
    match std::env::var_os("TP_DRIVER_PYTHON") {
        Some(p) => p.into(),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("target/driver-venv/bin/python"),
    }
}

/// Runs a short command; `Err` with its output when it cannot run or fails.
async fn probe(cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// A command ready to run one driver's script, with what it needs kept alive.
struct Script {
    cmd: Command,
    /// Compiled Java classes live here until the test ends.
    _classes: Option<tempfile::TempDir>,
}

/// Checks the driver's runtime and packages, and builds its command. Panics
/// with the install command when something is missing.
async fn script(driver: Driver) -> Script {
    let dir = drivers_dir();
    match driver {
        Driver::Psycopg | Driver::Asyncpg => {
            let (module, file) = match driver {
                Driver::Psycopg => ("psycopg", "psycopg_scenarios.py"),
                _ => ("asyncpg", "asyncpg_scenarios.py"),
            };
            let py = python();
            if let Err(e) = probe(Command::new(&py).args(["-c", &format!("import {module}")])).await
            {
                panic!(
                    "{driver:?}: Python with {module} is not available at {} ({}); install: {INSTALL_PYTHON}",
                    py.display(),
                    e.trim()
                );
            }
            let mut cmd = Command::new(py);
            cmd.arg(file).current_dir(dir.join("python"));
            Script {
                cmd,
                _classes: None,
            }
        }
        Driver::NodePg | Driver::PostgresJs => {
            let (package, file) = match driver {
                Driver::NodePg => ("pg", "pg_scenarios.js"),
                _ => ("postgres", "postgresjs_scenarios.js"),
            };
            let node_dir = dir.join("node");
            if let Err(e) = probe(Command::new("node").arg("--version")).await {
                panic!(
                    "{driver:?}: node is not available ({}); {INSTALL_NODE}",
                    e.trim()
                );
            }
            let manifest = node_dir
                .join("node_modules")
                .join(package)
                .join("package.json");
            assert!(
                manifest.exists(),
                "{driver:?}: npm package {package} is not installed ({} missing); {INSTALL_NODE}",
                manifest.display()
            );
            let mut cmd = Command::new("node");
            cmd.arg(file).current_dir(node_dir);
            Script {
                cmd,
                _classes: None,
            }
        }
        Driver::Jdbc => {
            let jar = std::env::var("TP_JDBC_JAR").unwrap_or_else(|_| JDBC_JAR.into());
            assert!(
                Path::new(&jar).exists(),
                "Jdbc: the PostgreSQL JDBC driver is not at {jar}; install: {INSTALL_JAVA}"
            );
            let classes = tempfile::tempdir().expect("temp dir for Java classes");
            let java_dir = dir.join("java");
            let compiled = probe(
                Command::new("javac")
                    .arg("-d")
                    .arg(classes.path())
                    .args(["-cp", &jar])
                    .arg(java_dir.join("DriverScenarios.java")),
            )
            .await;
            if let Err(e) = compiled {
                panic!(
                    "Jdbc: javac failed or is missing ({}); install: {INSTALL_JAVA}",
                    e.trim()
                );
            }
            let mut cmd = Command::new("java");
            cmd.arg("-cp")
                .arg(format!("{}:{jar}", classes.path().display()))
                .arg("DriverScenarios")
                .current_dir(java_dir);
            Script {
                cmd,
                _classes: Some(classes),
            }
        }
    }
}

struct Outcome {
    status: Option<ExitStatus>,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

/// Runs the script, killing it after `SCRIPT_TIMEOUT` (output so far is kept).
async fn run_script(mut script: Script, h: &Harness) -> Outcome {
    let start = Instant::now();
    let mut child = script
        .cmd
        .env("TP_HOST", "127.0.0.1")
        .env("TP_PORT", h.port().to_string())
        .env("TP_DB", "app")
        .env("TP_PASSWORD", PASSWORD)
        .env("TP_USER_ACME", "app.acme")
        .env("TP_USER_GLOBEX", "app.globex")
        .env("TP_WORKERS", WORKERS.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn the driver script");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let stdout = tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = out.read_to_end(&mut buf).await;
        buf
    });
    let stderr = tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = err.read_to_end(&mut buf).await;
        buf
    });
    let status = match tokio::time::timeout(SCRIPT_TIMEOUT, child.wait()).await {
        Ok(status) => Some(status.expect("wait for the driver script")),
        Err(_) => {
            let _ = child.kill().await;
            None
        }
    };
    Outcome {
        status,
        stdout: String::from_utf8_lossy(&stdout.await.unwrap()).into_owned(),
        stderr: String::from_utf8_lossy(&stderr.await.unwrap()).into_owned(),
        elapsed: start.elapsed(),
    }
}

/// Starts PostgreSQL and a pooler in `mode`, runs the driver's script through
/// it and asserts every scenario reported `ok` and the script exited 0.
async fn matrix(driver: Driver, mode: PoolMode) {
    let script = script(driver).await;
    let h = Harness::start(move |config, _| {
        let app = config.databases.get_mut("app").unwrap();
        app.pool_mode = mode;
        app.pool_size = match mode {
            PoolMode::Transaction | PoolMode::Statement => TRANSACTION_POOL_SIZE,
            PoolMode::Session => SESSION_POOL_SIZE,
        };
    })
    .await;
    let out = run_script(script, &h).await;
    let report = format!(
        "{driver:?} in {mode:?} mode, {:.1} s, exit {}\n--- stdout\n{}--- stderr\n{}",
        out.elapsed.as_secs_f64(),
        out.status.map_or_else(
            || format!("none: killed after {SCRIPT_TIMEOUT:?}"),
            |s| s.to_string()
        ),
        out.stdout,
        out.stderr
    );
    println!("{report}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    let failed: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.starts_with("FAIL "))
        .collect();
    assert!(
        failed.is_empty(),
        "scenarios failed:\n{}\n\n{report}",
        failed.join("\n")
    );
    for scenario in SCENARIOS {
        let ok = lines.iter().any(|l| {
            l.strip_prefix("ok ")
                .and_then(|rest| rest.split_whitespace().next())
                == Some(scenario)
        });
        assert!(ok, "no `ok {scenario}` line\n\n{report}");
    }
    assert!(
        out.status.is_some_and(|s| s.success()),
        "the script did not exit 0\n\n{report}"
    );
}

// Session mode: passes today, so CI exercises every driver now.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg_session_mode() {
    matrix(Driver::Psycopg, PoolMode::Session).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asyncpg_session_mode() {
    matrix(Driver::Asyncpg, PoolMode::Session).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_pg_session_mode() {
    matrix(Driver::NodePg, PoolMode::Session).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresjs_session_mode() {
    matrix(Driver::PostgresJs, PoolMode::Session).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jdbc_session_mode() {
    matrix(Driver::Jdbc, PoolMode::Session).await;
}

// Transaction mode: the acceptance tests of issue 5. Before statement
// tracking, through a pool of 3 with 4 workers, they failed only on prepared
// statements:
// - psycopg, pgjdbc: every scenario, `prepared statement "_pg3_0"` / `"S_1"
//   already exists` (42P05): generated names collide across clients;
// - node-postgres: every scenario, `"main"` ... already exists (42P05) or
//   does not exist (26000); same_name often runs the other client's statement
//   (22P02 `invalid input syntax for type bigint`, or rows of the wrong shape);
// - asyncpg: every scenario, `"__asyncpg_stmt_N__" does not exist` (26000);
//   same_name `"by_tenant" already exists` (42P05) or the other client's
//   statement (22P03 `incorrect binary data format in bind parameter 1`);
// - postgres.js: only rollback_retry, `"<random>" does not exist` (26000):
//   outside transactions it re-prepares after 26000, inside it cannot.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg_transaction_mode() {
    matrix(Driver::Psycopg, PoolMode::Transaction).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asyncpg_transaction_mode() {
    matrix(Driver::Asyncpg, PoolMode::Transaction).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_pg_transaction_mode() {
    matrix(Driver::NodePg, PoolMode::Transaction).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresjs_transaction_mode() {
    matrix(Driver::PostgresJs, PoolMode::Transaction).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jdbc_transaction_mode() {
    matrix(Driver::Jdbc, PoolMode::Transaction).await;
}
