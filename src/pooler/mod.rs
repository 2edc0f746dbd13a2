//! The running pooler: listeners, the configuration generation every client
//! shares, and the control plane that reloads, pauses and shuts it down.
//!
//! - [`state`]: users, databases and pools of one configuration generation;
//! - [`control`]: RELOAD, PAUSE/RESUME/KILL, shutdown phases;
//! - [`clients`]: the registry of connected clients.

pub mod clients;
pub mod control;
pub mod state;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::net::{TcpListener, UnixListener};
use tokio_util::task::TaskTracker;

pub use control::{Control, Phase};
pub use state::{Database, Shared};

use crate::config::Config;

#[derive(Debug, Error)]
pub enum StartError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
}

/// How long a forced shutdown waits for sessions to notice they were killed.
const KILL_GRACE: Duration = Duration::from_secs(5);

/// A pooler with its listeners bound, not yet accepting.
pub struct Pooler {
    control: Arc<Control>,
    tcp: TcpListener,
    unix: Option<(UnixListener, PathBuf)>,
}

impl Pooler {
    /// Binds the listeners (`listen` may use port 0) and builds the pools.
    pub async fn bind(config: Config) -> Result<Pooler, StartError> {
        Self::bind_inner(config, None).await
    }

    /// Like [`Pooler::bind`] for a configuration file, which RELOAD and SIGHUP re-read.
    pub async fn bind_file(path: &Path) -> Result<Pooler, StartError> {
        let config = Config::load(path).map_err(|e| StartError::Config(e.to_string()))?;
        Self::bind_inner(config, Some(path.to_owned())).await
    }

    async fn bind_inner(config: Config, path: Option<PathBuf>) -> Result<Pooler, StartError> {
        let listen = config.pooler.listen.clone();
        let listen_err = |source| StartError::Listen {
            addr: listen.clone(),
            source,
        };
        let tcp = bind_tcp(&listen, config.pooler.listen_backlog)
            .await
            .map_err(listen_err)?;
        let port = tcp.local_addr().map_err(listen_err)?.port();
        let unix = match &config.pooler.unix_socket_dir {
            Some(dir) => {
                let path = dir.join(format!(".s.PGSQL.{port}"));
                // A socket file left by a previous run would make bind fail.
                if path.exists() {
                    let _ = std::fs::remove_file(&path);
                }
                let l = UnixListener::bind(&path).map_err(|source| StartError::Listen {
                    addr: path.display().to_string(),
                    source,
                })?;
                Some((l, path))
            }
            None => None,
        };
        let control = Control::new(Shared::new(config)?, path);
        Ok(Pooler { control, tcp, unix })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.tcp
            .local_addr()
            .expect("bound listener has an address")
    }

    pub fn unix_socket_path(&self) -> Option<&PathBuf> {
        self.unix.as_ref().map(|(_, p)| p)
    }

    /// The configuration generation in force now.
    pub fn shared(&self) -> Arc<Shared> {
        self.control.current()
    }

    pub fn control(&self) -> &Arc<Control> {
        &self.control
    }

    /// Accepts clients until `stop` completes (then returns at once, leaving
    /// sessions to the runtime) or a shutdown is requested (then drains: running
    /// transactions get `shutdown_timeout` to finish, then everyone is closed).
    pub async fn run(self, stop: impl Future<Output = ()>) {
        let control = self.control;
        let shared = control.current();
        let unix_path = self.unix.as_ref().map(|(_, p)| p.clone());
        // Certificate reload on SIGHUP and on file change, for as long as we accept.
        let watcher = shared
            .tls
            .as_ref()
            .map(|tls| tokio::spawn(Arc::clone(tls).watch()));
        // The metrics endpoint, until this function returns (it also answers while draining).
        let _metrics = shared.metrics.as_ref().map(|m| {
            tokio_util::task::AbortOnDropHandle::new(tokio::spawn(
                Arc::clone(m).serve(Arc::clone(&control)),
            ))
        });
        drop(shared);
        let tasks = TaskTracker::new();
        let mut phase = control.watch_phase();
        let shutdown = async {
            tokio::select! {
                _ = stop => false,
                _ = phase.wait_for(|p| *p != Phase::Running) => true,
            }
        };
        let drain = crate::client::listener::accept_loop(
            Arc::clone(&control),
            self.tcp,
            self.unix.map(|(l, _)| l),
            Arc::clone(&control.client_slots),
            tasks.clone(),
            shutdown,
        )
        .await;
        if let Some(watcher) = watcher {
            watcher.abort();
        }
        if let Some(path) = unix_path {
            let _ = std::fs::remove_file(path);
        }
        tasks.close();
        if !drain {
            return;
        }
        let timeout = control.current().config.pooler.shutdown_timeout;
        if control.phase() == Phase::Draining {
            tracing::info!(
                clients = control.clients.len(),
                ?timeout,
                "draining: waiting for transactions to finish"
            );
            if tokio::time::timeout(timeout, tasks.wait()).await.is_err() {
                tracing::warn!(
                    clients = control.clients.len(),
                    "shutdown_timeout passed; closing the remaining clients"
                );
                control.shutdown(true);
            }
        }
        if tokio::time::timeout(KILL_GRACE, tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                clients = control.clients.len(),
                "some sessions did not end after being killed"
            );
        }
        tracing::info!("all clients closed");
    }
}

/// `TcpListener::bind` with our backlog (tokio's is 1024): the first address
/// `listen` resolves to, SO_REUSEADDR as tokio sets it.
async fn bind_tcp(listen: &str, backlog: u32) -> std::io::Result<TcpListener> {
    let addr = tokio::net::lookup_host(listen)
        .await?
        .next()
        .ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "resolves to no address")
        })?;
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}
