//! The pooler's control plane: the live configuration generation, RELOAD,
//! PAUSE/RESUME/KILL, and the shutdown phase. Shared by the listener, every
//! session, the admin console and the signal handler.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use tokio::sync::{watch, Semaphore};

use super::clients::ClientRegistry;
use super::state::Shared;
use crate::config::Config;
use crate::pool::PoolSnapshot;

/// Where the process is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Running,
    /// SIGTERM/SHUTDOWN: no new clients; running transactions may finish.
    Draining,
    /// SIGINT, or the drain timed out: every client is being closed.
    Stopped,
}

pub struct Control {
    current: ArcSwap<Shared>,
    /// The file RELOAD re-reads; `None` when started from code (tests, demo).
    config_path: Option<PathBuf>,
    pub clients: Arc<ClientRegistry>,
    /// `max_client_connections`: a permit per connected client, from its accept
    /// to its end (a logged-in client's session gives it back when dropped).
    pub client_slots: Arc<Semaphore>,
    phase: watch::Sender<Phase>,
    /// One reload at a time.
    reloading: tokio::sync::Mutex<()>,
    pub started_at: SystemTime,
    reloads: AtomicU64,
}

impl Control {
    pub fn new(shared: Shared, config_path: Option<PathBuf>) -> Arc<Self> {
        Arc::new(Control {
            clients: Arc::clone(&shared.clients),
            client_slots: Arc::new(Semaphore::new(shared.config.pooler.max_client_connections)),
            current: ArcSwap::from_pointee(shared),
            config_path,
            phase: watch::channel(Phase::Running).0,
            reloading: tokio::sync::Mutex::new(()),
            started_at: SystemTime::now(),
            reloads: AtomicU64::new(0),
        })
    }

    /// The configuration generation in force now.
    #[inline]
    pub fn current(&self) -> Arc<Shared> {
        self.current.load_full()
    }

    pub fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    pub fn watch_phase(&self) -> watch::Receiver<Phase> {
        self.phase.subscribe()
    }

    /// Graceful (`immediate = false`): stop accepting, let transactions finish
    /// within `shutdown_timeout`. Immediate: close everything now.
    pub fn shutdown(&self, immediate: bool) {
        let next = if immediate {
            Phase::Stopped
        } else {
            Phase::Draining
        };
        self.phase.send_if_modified(|p| {
            let advance = matches!(
                (*p, next),
                (Phase::Running, _) | (Phase::Draining, Phase::Stopped)
            );
            if advance {
                tracing::info!(phase = ?next, "shutdown requested");
                *p = next;
            }
            advance
        });
        // Sessions learn of the shutdown through their registry entries (a
        // session registered after this looks at the phase itself).
        match next {
            Phase::Stopped => {
                self.clients.kill_where(|_| true);
            }
            _ => self.clients.drain_all(),
        }
    }

    /// Re-reads and validates the configuration file and makes it live. On any
    /// error the old configuration stays in force and the reason is returned.
    pub async fn reload(&self) -> Result<String, String> {
        let _one = self.reloading.lock().await;
        let path = self
            .config_path
            .clone()
            .ok_or("no configuration file to reload (started without --config)")?;
        let result = async {
            let config = Config::load(&path).map_err(|e| e.to_string())?;
            self.apply(config)
        }
        .await;
        match &result {
            Ok(summary) => {
                tracing::info!(file = %path.display(), %summary, "configuration reloaded")
            }
            Err(e) => {
                // A TOML parse error spans lines (it quotes the spot); keep the log line one line.
                let reason = e
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .collect::<Vec<_>>()
                    .join(" ");
                tracing::error!(file = %path.display(), error = %reason, "configuration reload rejected; keeping the previous configuration")
            }
        }
        result
    }

    /// Makes a validated configuration live, keeping what can be kept.
    pub fn apply(&self, config: Config) -> Result<String, String> {
        let old = self.current();
        let (was, is) = (&old.config.pooler, &config.pooler);
        let restart_only = [
            ("pooler.listen", was.listen != is.listen),
            (
                "pooler.listen_backlog",
                was.listen_backlog != is.listen_backlog,
            ),
            (
                "pooler.unix_socket_dir",
                was.unix_socket_dir != is.unix_socket_dir,
            ),
            (
                "pooler.max_client_connections",
                was.max_client_connections != is.max_client_connections,
            ),
            (
                "pooler.worker_threads",
                was.worker_threads != is.worker_threads,
            ),
            ("pooler.log_level", was.log_level != is.log_level),
            ("pooler.log_format", was.log_format != is.log_format),
        ];
        let changed: Vec<&str> = restart_only
            .iter()
            .filter(|(_, changed)| *changed)
            .map(|(key, _)| *key)
            .collect();
        if !changed.is_empty() {
            tracing::warn!(keys = %changed.join(", "), "changed settings that take effect only after a restart");
        }
        let new = Shared::build(config, Some(&old)).map_err(|e| e.to_string())?;
        let mut retired = Vec::new();
        for (name, db) in &old.databases {
            let kept = new
                .databases
                .values()
                .any(|d| Arc::ptr_eq(&d.pool, &db.pool));
            if !kept {
                db.pool.retire();
                retired.push(name.clone());
            }
        }
        let added = new
            .databases
            .keys()
            .filter(|k| !old.databases.contains_key(*k))
            .count();
        self.current.store(Arc::new(new));
        self.reloads.fetch_add(1, Ordering::Relaxed);
        Ok(format!(
            "{} database(s) added, {} removed or re-pointed{}",
            added,
            retired.len(),
            if retired.is_empty() {
                String::new()
            } else {
                format!(" ({})", retired.join(", "))
            }
        ))
    }

    pub fn reloads(&self) -> u64 {
        self.reloads.load(Ordering::Relaxed)
    }

    /// PAUSE one database (or all): returns once their lent connections are back.
    pub async fn pause(&self, database: Option<&str>) -> Result<(), String> {
        let shared = self.current();
        for db in select(&shared, database)? {
            db.pool.pause().await;
        }
        Ok(())
    }

    pub fn resume(&self, database: Option<&str>) -> Result<(), String> {
        let shared = self.current();
        for db in select(&shared, database)? {
            db.pool.resume();
        }
        Ok(())
    }

    /// KILL: drop every client and server connection of a database; new
    /// clients wait until RESUME, as in PgBouncer. Returns the clients closed.
    pub fn kill(&self, database: &str) -> Result<usize, String> {
        let shared = self.current();
        let db = select(&shared, Some(database))?
            .pop()
            .expect("one database");
        db.pool.kill();
        Ok(self.clients.kill_where(|c| *c.database == *database))
    }

    /// Snapshots of every configured pool.
    pub fn pools(&self) -> Vec<PoolSnapshot> {
        let shared = self.current();
        let mut all: Vec<_> = shared
            .databases
            .values()
            .map(|d| d.pool.snapshot())
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }
}

fn select<'a>(
    shared: &'a Shared,
    database: Option<&str>,
) -> Result<Vec<&'a Arc<super::Database>>, String> {
    match database {
        None => Ok(shared.databases.values().collect()),
        Some(name) => shared
            .database(name)
            .map(|d| vec![d])
            .ok_or_else(|| format!("no such database: {name}")),
    }
}
