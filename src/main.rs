//! The `tenantpool` command.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tenantpool::{Config, Pooler};
use tracing_subscriber::EnvFilter;

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
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();

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
            let rt = match runtime(config.pooler.worker_threads) {
                Ok(rt) => rt,
                Err(e) => return fail(e),
            };
            match rt.block_on(serve(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(e),
            }
        }
    }
}

async fn serve(config: Config) -> Result<(), Box<dyn std::error::Error>> {
    let pooler = Pooler::bind(config).await?;
    tracing::info!(addr = %pooler.local_addr(), unix = ?pooler.unix_socket_path(), "tenantpool listening");
    pooler.run(tenantpool::shutdown_signal()).await;
    tracing::info!("tenantpool stopped");
    Ok(())
}

fn runtime(workers: Option<usize>) -> std::io::Result<tokio::runtime::Runtime> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = workers {
        b.worker_threads(n);
    }
    b.enable_all().build()
}

fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("tenantpool: {e}");
    ExitCode::FAILURE
}
