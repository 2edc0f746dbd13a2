//! The `tenantpool` command.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tenantpool::config::LogFormat;
use tenantpool::{Config, Pooler};

// jemalloc, for memory per connected client more than for speed (though it
// also costs less CPU per transaction here). tokio aligns each task and each
// socket's readiness state to 128 bytes; glibc's malloc puts its 16-byte chunk
// header in front of such a block, so every one leaves a 112-byte gap that
// little else fits: ~220 B per idle client, a fifth of its cost. jemalloc's
// size classes are naturally aligned and carry no header.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(version, about = "Tenant-aware PostgreSQL connection pooler")]
struct Cli {
    /// Configuration file (TOML).
    #[arg(long, short, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Only validate the configuration file, then exit.
    #[arg(long, requires = "config")]
    check: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Print the SQL that installs the signed tenant context (tenantpool.current_tenant())
    /// for one database of the configuration; pipe it into psql as a superuser.
    SignedContextSql {
        /// The database (table key in the configuration).
        #[arg(long)]
        database: String,
    },
    /// Start a throwaway PostgreSQL with a two-tenant RLS schema and the pooler in front of it.
    Demo {
        /// Port for the pooler (0: any free port).
        #[arg(long, default_value_t = 6432)]
        port: u16,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();

    match cli.command {
        Some(Command::SignedContextSql { database }) => {
            let Some(path) = cli.config else {
                eprintln!("tenantpool: signed-context-sql needs --config FILE");
                return ExitCode::from(2);
            };
            let config = match Config::load(&path) {
                Ok(c) => c,
                Err(e) => return fail(e),
            };
            match tenantpool::tenant::signed::install_script(&config, &database) {
                Ok(sql) => {
                    print!("{sql}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
        Some(Command::Demo { port }) => {
            tenantpool::logging::init("info", LogFormat::Text);
            let rt = match runtime(None) {
                Ok(rt) => rt,
                Err(e) => return fail(e),
            };
            match rt.block_on(tenantpool::demo::run(port)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(e),
            }
        }
        None => {
            let Some(path) = cli.config else {
                eprintln!("tenantpool: give --config FILE, or run `tenantpool demo` (see --help)");
                return ExitCode::from(2);
            };
            let config = match Config::load(&path) {
                Ok(c) => c,
                Err(e) => return fail(e),
            };
            if cli.check {
                println!("{}: configuration is valid", path.display());
                return ExitCode::SUCCESS;
            }
            tenantpool::logging::init(&config.pooler.log_level, config.pooler.log_format);
            let rt = match runtime(config.pooler.worker_threads) {
                Ok(rt) => rt,
                Err(e) => return fail(e),
            };
            // The accept loop runs on a worker, not in `block_on` on this thread: from
            // here, each accepted connection woke this thread and each spawned session
            // then woke a worker (two futex wakes and thread switches per connection).
            // Spawned on a worker, a session starts on the worker that accepted it.
            match rt.block_on(async move { tokio::spawn(serve(path)).await }) {
                Ok(Ok(())) => ExitCode::SUCCESS,
                Ok(Err(e)) => fail(e),
                Err(e) => fail(e),
            }
        }
    }
}

async fn serve(path: PathBuf) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    use tokio::signal::unix::{signal, SignalKind};
    // Before the listener exists: once clients can connect, a SIGHUP must reload,
    // not kill the process (the default action of all three signals).
    let signals = (
        signal(SignalKind::hangup())?,
        signal(SignalKind::terminate())?,
        signal(SignalKind::interrupt())?,
    );
    let pooler = Pooler::bind_file(&path).await?;
    tracing::info!(addr = %pooler.local_addr(), unix = ?pooler.unix_socket_path(), version = env!("CARGO_PKG_VERSION"), "tenantpool listening");
    let control = std::sync::Arc::clone(pooler.control());
    tokio::spawn(handle_signals(control, signals));
    pooler.run(std::future::pending()).await;
    tracing::info!("tenantpool stopped");
    Ok(())
}

type Signals = (
    tokio::signal::unix::Signal,
    tokio::signal::unix::Signal,
    tokio::signal::unix::Signal,
);

/// SIGHUP reloads the configuration; SIGTERM drains (transactions finish within
/// `shutdown_timeout`); SIGINT (Ctrl-C) closes everything at once.
async fn handle_signals(control: std::sync::Arc<tenantpool::pooler::Control>, signals: Signals) {
    let (mut hup, mut term, mut int) = signals;
    loop {
        tokio::select! {
            _ = hup.recv() => { let _ = control.reload().await; }
            _ = term.recv() => control.shutdown(false),
            _ = int.recv() => control.shutdown(true),
        }
    }
}

/// One worker per CPU by default. With one worker, a current-thread runtime
/// on the main thread: a one-worker multi-thread runtime would still pay for
/// work stealing and its per-batch clock reads, ~11% more instructions per
/// transaction (callgrind, pgbench -S -c 1).
fn runtime(workers: Option<usize>) -> std::io::Result<tokio::runtime::Runtime> {
    let mut b = match workers {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    b.enable_all().build()
}

fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("tenantpool: {e}");
    ExitCode::FAILURE
}
