//! The client-facing side: the certificate clients see, reloaded without a
//! restart, and which clients must use TLS.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

use super::{load_certs, load_key, provider, TlsError, ALPN_POSTGRESQL};
use crate::config::{ClientTlsConfig, TlsRequired};

/// How often the watcher looks at the files' modification times.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(2);

/// The certificate and key clients are served, reloadable while running.
pub struct ClientTls {
    cert_file: PathBuf,
    key_file: PathBuf,
    required: TlsRequired,
    state: RwLock<State>,
    reloads: AtomicU64,
}

struct State {
    config: Arc<ServerConfig>,
    /// The files as they were when last read (successfully or not), so a bad
    /// file is reported once, and retried only after it changes again.
    seen: Stamp,
}

/// What identifies a version of the two files: (mtime, size, inode) of each.
type Stamp = [Option<(SystemTime, u64, u64)>; 2];

impl ClientTls {
    /// Loads the certificate chain and key; fails if either is unusable.
    pub fn load(config: &ClientTlsConfig) -> Result<Self, TlsError> {
        let seen = stamp(&config.cert_file, &config.key_file);
        let server_config = build(&config.cert_file, &config.key_file)?;
        Ok(ClientTls {
            cert_file: config.cert_file.clone(),
            key_file: config.key_file.clone(),
            required: config.required,
            state: RwLock::new(State {
                config: server_config,
                seen,
            }),
            reloads: AtomicU64::new(0),
        })
    }

    pub fn required(&self) -> TlsRequired {
        self.required
    }

    /// The certificate and key files it reads.
    pub fn paths(&self) -> (&std::path::Path, &std::path::Path) {
        (&self.cert_file, &self.key_file)
    }

    /// An acceptor for the certificate loaded now.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(Arc::clone(&self.read().config))
    }

    /// Re-reads both files. On error the current certificate stays in use
    /// (connections keep working) and the error is logged and returned.
    pub fn reload(&self) -> Result<(), TlsError> {
        // Stamp before reading: a change during the read is noticed next time.
        let seen = stamp(&self.cert_file, &self.key_file);
        let built = build(&self.cert_file, &self.key_file);
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        state.seen = seen;
        match built {
            Ok(config) => {
                state.config = config;
                self.reloads.fetch_add(1, Ordering::Relaxed);
                tracing::info!(cert = %self.cert_file.display(), "TLS certificate reloaded");
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "TLS certificate reload failed; still serving the previous certificate");
                Err(e)
            }
        }
    }

    /// Reloads if either file changed since it was last read.
    pub fn reload_if_changed(&self) -> Option<Result<(), TlsError>> {
        let now = stamp(&self.cert_file, &self.key_file);
        if now == self.read().seen {
            return None;
        }
        Some(self.reload())
    }

    /// Successful reloads so far (for tests and the admin view).
    pub fn reloads(&self) -> u64 {
        self.reloads.load(Ordering::Relaxed)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Reloads on SIGHUP and whenever the files change; runs until aborted.
    pub async fn watch(self: Arc<Self>) {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; TLS reload on file change only");
                None
            }
        };
        let mut tick = tokio::time::interval(WATCH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                    tracing::info!("SIGHUP: reloading the TLS certificate");
                    let _ = self.reload();
                }
                _ = tick.tick() => {
                    let _ = self.reload_if_changed();
                }
            }
        }
    }
}

fn stamp(cert: &Path, key: &Path) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let one = |p: &Path| {
        std::fs::metadata(p).ok().map(|m| {
            (
                m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                m.len(),
                m.ino(),
            )
        })
    };
    [one(cert), one(key)]
}

fn build(cert_file: &Path, key_file: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let certs = load_certs(cert_file)?;
    let key = load_key(key_file)?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        // Also checks that the key belongs to the certificate.
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::file(cert_file, format!("with key {}: {e}", key_file.display())))?;
    // Clients that send ALPN must ask for "postgresql" (libpq 17 always does);
    // clients without ALPN are fine after an SSLRequest.
    config.alpn_protocols = vec![ALPN_POSTGRESQL.to_vec()];
    Ok(Arc::new(config))
}

/// Where a plain (unencrypted) client connection comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlainPeer {
    Unix,
    Tcp(IpAddr),
}

/// Whether a plain connection from `peer` must be refused under `required`.
/// Unix sockets are local by nature and always exempt.
pub fn refuses_plain(required: TlsRequired, peer: PlainPeer) -> bool {
    match (required, peer) {
        (_, PlainPeer::Unix) | (TlsRequired::Never, _) => false,
        (TlsRequired::Always, PlainPeer::Tcp(_)) => true,
        (TlsRequired::NonLocal, PlainPeer::Tcp(ip)) => !ip.to_canonical().is_loopback(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_names_the_bad_file() {
        let config = ClientTlsConfig {
            cert_file: "/nonexistent/server.crt".into(),
            key_file: "/nonexistent/server.key".into(),
            required: TlsRequired::Never,
        };
        let e = ClientTls::load(&config)
            .err()
            .expect("must fail")
            .to_string();
        assert!(e.contains("/nonexistent/server.crt"), "{e}");
    }

    #[test]
    fn requirement_decisions() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let lo6: IpAddr = "::1".parse().unwrap();
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        let remote: IpAddr = "10.1.2.3".parse().unwrap();
        let remote6: IpAddr = "2001:db8::1".parse().unwrap();
        use PlainPeer::*;
        use TlsRequired::*;
        for peer in [
            Unix,
            Tcp(lo),
            Tcp(lo6),
            Tcp(mapped),
            Tcp(remote),
            Tcp(remote6),
        ] {
            assert!(!refuses_plain(Never, peer), "{peer:?}");
        }
        for peer in [Unix, Tcp(lo), Tcp(lo6), Tcp(mapped)] {
            assert!(!refuses_plain(NonLocal, peer), "{peer:?}");
        }
        assert!(refuses_plain(NonLocal, Tcp(remote)));
        assert!(refuses_plain(NonLocal, Tcp(remote6)));
        assert!(!refuses_plain(Always, Unix));
        for peer in [Tcp(lo), Tcp(lo6), Tcp(remote)] {
            assert!(refuses_plain(Always, peer), "{peer:?}");
        }
    }
}
