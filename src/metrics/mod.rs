//! Prometheus metrics, served on `[metrics] listen` with `/metrics`, `/healthz`
//! and `/readyz`. Without a `[metrics]` table nothing here exists: no recorder,
//! no listener, and the hooks cost one `OnceLock` load each.
//!
//! Where each figure comes from, cheapest first:
//! - gauges (clients, servers, saturation, longest wait) are computed when
//!   scraped, from [`Pool::snapshot`] and the client registry: nothing on the hot path;
//! - counters the pool already keeps ([`crate::pool::PoolStats`]: transactions,
//!   tenant SETs, wait timeouts, server connects) are read when scraped;
//! - histograms (wait, transaction, server connect) are cached
//!   `metrics::Histogram` handles, one per pool, recorded once per transaction or
//!   connect: a couple of atomics, no key lookup;
//! - "time at full" is sampled every [`SAMPLE_EVERY`] by a background task;
//! - per-tenant series go through a small per-pool table, one mutex per
//!   transaction, only when `top_tenants > 0`.
//!
//! Nothing is done per message.
//!
//! - [`pool`]: the per-pool handles the hooks call;
//! - [`tenants`]: the bounded top-N tenant table;
//! - [`render`]: the exposition text; [`names`]: every metric name;
//! - [`http`]: the endpoint; [`ready`]: the readiness check;
//! - [`login`]: login outcomes; [`errors`]: errors the pooler raises, by SQLSTATE class.

pub mod errors;
mod http;
pub mod login;
pub mod names;
pub mod pool;
mod ready;
mod render;
pub mod tenants;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use metrics::{Key, Label, Metadata, Recorder};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

pub use login::{LoginGuard, LoginOutcome};
pub use pool::PoolMetrics;

use crate::config::MetricsConfig;
use crate::pool::Pool;
use crate::pooler::Control;

/// How often "time at full" is sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(250);
/// How often histogram samples are folded into buckets (bounds their memory).
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Bucket bounds (seconds) of every `_seconds` histogram: 100 µs to 2 min.
pub const BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0, 120.0,
];

/// The metrics of one pooler process: the recorder, the bound endpoint, settings.
pub struct Metrics {
    config: MetricsConfig,
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    /// Bound at start (so a taken port fails the start), served by [`Metrics::serve`].
    listener: Mutex<Option<std::net::TcpListener>>,
    addr: SocketAddr,
    /// Zero point of the timestamps kept in atomics.
    epoch: Instant,
}

impl Metrics {
    /// Builds the recorder and binds the endpoint (not yet serving).
    pub fn new(config: &MetricsConfig) -> std::io::Result<Arc<Self>> {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
            .expect("bucket list is not empty")
            .build_recorder();
        for f in [
            names::WAIT_SECONDS,
            names::TRANSACTION_SECONDS,
            names::CONNECT_SECONDS,
        ] {
            recorder.describe_histogram(f.name.into(), None, f.help.into());
        }
        recorder.describe_counter(names::LOGINS.name.into(), None, names::LOGINS.help.into());
        let listener = std::net::TcpListener::bind(&config.listen)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        Ok(Arc::new(Metrics {
            config: config.clone(),
            handle: recorder.handle(),
            recorder,
            listener: Mutex::new(Some(listener)),
            addr,
            epoch: Instant::now(),
        }))
    }

    pub fn config(&self) -> &MetricsConfig {
        &self.config
    }

    /// Where `/metrics` is served.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Gives a pool its handles, once (a pool kept across reloads keeps them).
    pub fn attach(&self, pool: &Pool) {
        pool.metrics.get_or_init(|| PoolMetrics::new(self, pool));
    }

    fn histogram(&self, name: &'static str, labels: &[Label]) -> metrics::Histogram {
        let key = Key::from_parts(name, labels.to_vec());
        self.recorder.register_histogram(&key, &metadata())
    }

    fn counter(&self, name: &'static str, labels: Vec<Label>) -> metrics::Counter {
        let key = Key::from_parts(name, labels);
        self.recorder.register_counter(&key, &metadata())
    }

    /// Serves the endpoint and samples the pools until the task is dropped.
    pub async fn serve(self: Arc<Self>, control: Arc<Control>) {
        let Some(listener) = self
            .listener
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        else {
            return;
        };
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "metrics endpoint cannot listen");
                return;
            }
        };
        tracing::info!(addr = %self.addr, "metrics endpoint listening (/metrics, /healthz, /readyz)");
        tokio::join!(
            http::serve(Arc::clone(&self), Arc::clone(&control), listener),
            self.upkeep(&control),
        );
    }

    /// Samples "time at full" and folds histogram samples into buckets.
    async fn upkeep(&self, control: &Control) {
        let mut tick = tokio::time::interval(SAMPLE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_upkeep = Instant::now();
        loop {
            tick.tick().await;
            let now = Instant::now();
            for db in control.current().databases.values() {
                if let Some(m) = db.pool.metrics.get() {
                    m.sample_full(&db.pool, now);
                }
            }
            if now.duration_since(last_upkeep) >= UPKEEP_EVERY {
                self.handle.run_upkeep();
                last_upkeep = now;
            }
        }
    }

    /// The `/metrics` body.
    pub fn render(&self, control: &Control) -> String {
        render::render(self, control)
    }
}

fn metadata() -> Metadata<'static> {
    Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()))
}
