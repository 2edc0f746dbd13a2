//! The Prometheus endpoint against a real PostgreSQL: saturation figures while
//! clients queue and after they leave, tenant SET affinity and login counters,
//! health and readiness, bounded per-tenant series, and the Grafana dashboard
//! referring only to metrics a real scrape contains.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{sqlstate, Harness, PASSWORD};
use tenantpool::config::MetricsConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Polls `cond` every 10 ms until it holds; panics after 15 s.
async fn wait_until<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A pooler with `[metrics]` on an ephemeral loopback port; `app` has `pool_size`.
async fn start(pool_size: usize, top_tenants: usize) -> Harness {
    Harness::start(move |config, _| {
        config.databases.get_mut("app").unwrap().pool_size = pool_size;
        config.metrics = Some(MetricsConfig {
            listen: "127.0.0.1:0".into(),
            top_tenants,
        });
    })
    .await
}

fn metrics_addr(h: &Harness) -> SocketAddr {
    h.control
        .current()
        .metrics
        .as_ref()
        .expect("metrics configured")
        .local_addr()
}

/// A bare HTTP/1.1 GET: (status, body).
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw))
        .await
        .expect("response within 10 s")
        .unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a header block");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_owned())
}

/// A parsed scrape.
struct Scrape(String);

impl Scrape {
    async fn take(h: &Harness) -> Scrape {
        let (status, body) = get(metrics_addr(h), "/metrics").await;
        assert_eq!(status, 200, "{body}");
        Scrape(body)
    }

    /// Samples of `name` whose labels include every `want` pair: (labels, value).
    fn samples<'a>(&'a self, name: &str, want: &[(&str, &str)]) -> Vec<(&'a str, f64)> {
        self.0
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                let (n, labels) = match series.split_once('{') {
                    Some((n, rest)) => (n, rest.strip_suffix('}')?),
                    None => (series, ""),
                };
                (n == name
                    && want
                        .iter()
                        .all(|(k, v)| labels.contains(&format!("{k}=\"{v}\""))))
                .then(|| (labels, value.parse().unwrap()))
            })
            .collect()
    }

    /// The one value of `name` for the `app` pool (plus `extra` labels).
    fn app(&self, name: &str, extra: &[(&str, &str)]) -> f64 {
        let mut want = vec![("database", "app")];
        want.extend_from_slice(extra);
        let found = self.samples(name, &want);
        assert_eq!(found.len(), 1, "{name} {want:?}: {found:?}\n{}", self.0);
        found[0].1
    }

    /// The value of a process-wide series, 0 when not there yet.
    fn value_or_zero(&self, name: &str, want: &[(&str, &str)]) -> f64 {
        self.samples(name, want).first().map_or(0.0, |s| s.1)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saturation_waiting_and_wait_time_move_and_return_to_idle() {
    let h = start(2, 0).await;
    let mut clients = Vec::new();
    for i in 0..6 {
        clients.push(std::sync::Arc::new(
            h.connect(&format!("app.tenant{i}"), "app").await,
        ));
    }
    let before = Scrape::take(&h).await;
    assert_eq!(before.app("tenantpool_pool_clients_connected", &[]), 6.0);
    assert_eq!(before.app("tenantpool_pool_saturation_ratio", &[]), 0.0);
    assert_eq!(before.app("tenantpool_pool_servers_limit", &[]), 2.0);
    let waits_before = before.app("tenantpool_pool_wait_seconds_count", &[]);

    // Two clients take both server connections and keep them (open transactions).
    for c in &clients[..2] {
        c.batch_execute("BEGIN").await.unwrap();
    }
    // Four more queue behind them; each, once served, holds its transaction
    // until the test releases it.
    let (release, released) = tokio::sync::watch::channel(false);
    let queued: Vec<_> = clients[2..]
        .iter()
        .map(|c| {
            let c = std::sync::Arc::clone(c);
            let mut released = released.clone();
            tokio::spawn(async move {
                c.batch_execute("BEGIN").await.unwrap();
                released.wait_for(|r| *r).await.unwrap();
                c.batch_execute("COMMIT").await.unwrap();
            })
        })
        .collect();
    wait_until("four clients waiting", || async {
        Scrape::take(&h)
            .await
            .app("tenantpool_pool_clients_waiting", &[])
            == 4.0
    })
    .await;
    let first = Scrape::take(&h).await;
    assert_eq!(first.app("tenantpool_pool_saturation_ratio", &[]), 1.0);
    assert_eq!(first.app("tenantpool_pool_servers_active", &[]), 2.0);
    assert_eq!(first.app("tenantpool_pool_clients_active", &[]), 2.0);
    let max_wait = first.app("tenantpool_pool_max_wait_seconds", &[]);
    assert!(max_wait > 0.0, "max wait {max_wait}");
    wait_until("the longest wait to grow", || async {
        Scrape::take(&h)
            .await
            .app("tenantpool_pool_max_wait_seconds", &[])
            > max_wait
    })
    .await;
    // The sampler (every 250 ms) sees the pool full.
    wait_until("time at full to be counted", || async {
        Scrape::take(&h)
            .await
            .app("tenantpool_pool_full_seconds_total", &[])
            > 0.0
    })
    .await;

    // Release: the holders commit; the queued clients get servers in turn and
    // commit as soon as they have begun.
    for c in &clients[..2] {
        c.batch_execute("COMMIT").await.unwrap();
    }
    release.send(true).unwrap();
    for q in queued {
        q.await.unwrap();
    }
    wait_until("the pool to be idle", || async {
        let s = Scrape::take(&h).await;
        s.app("tenantpool_pool_servers_active", &[]) == 0.0
            && s.app("tenantpool_pool_clients_waiting", &[]) == 0.0
    })
    .await;
    let after = Scrape::take(&h).await;
    assert_eq!(after.app("tenantpool_pool_saturation_ratio", &[]), 0.0);
    assert_eq!(after.app("tenantpool_pool_max_wait_seconds", &[]), 0.0);
    assert_eq!(after.app("tenantpool_pool_clients_active", &[]), 0.0);
    assert_eq!(after.app("tenantpool_pool_clients_connected", &[]), 6.0);
    assert_eq!(after.app("tenantpool_pool_servers_idle", &[]), 2.0);
    let waits_after = after.app("tenantpool_pool_wait_seconds_count", &[]);
    assert!(
        waits_after >= waits_before + 6.0,
        "wait histogram count {waits_before} -> {waits_after}"
    );
    // The queued clients waited at least until the first COMMIT: the slowest bucket
    // they fell in is above the fastest one.
    let fast = after.app("tenantpool_pool_wait_seconds_bucket", &[("le", "0.0001")]);
    assert!(fast < waits_after, "every wait under 100 µs?\n{}", after.0);
    assert!(after.app("tenantpool_pool_transactions_total", &[]) >= 6.0);
    assert!(after.app("tenantpool_pool_transaction_seconds_count", &[]) >= 6.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_set_affinity_and_login_outcomes_are_counted() {
    let h = start(5, 0).await;
    let before = Scrape::take(&h).await;
    let logins = |s: &Scrape, outcome: &str| {
        s.value_or_zero(
            "tenantpool_client_logins_total",
            &[("database", "app"), ("outcome", outcome)],
        )
    };
    let errors_28 =
        |s: &Scrape| s.value_or_zero("tenantpool_client_errors_total", &[("class", "28")]);

    let client = h.connect("app.acme", "app").await;
    let bad = h.try_connect("app.acme", "wrong-password", "app").await;
    assert!(bad.is_err());
    let bad_tenant = h.try_connect("app.not a tenant", PASSWORD, "app").await;
    assert!(bad_tenant.is_err());

    // The first transaction sets the tenant; the same tenant then finds its
    // connection already set (affinity) and sends no SET.
    for _ in 0..5 {
        client.simple_query("select 1").await.unwrap();
    }
    let after = Scrape::take(&h).await;
    let sent = after.app("tenantpool_tenant_set_total", &[("result", "sent")]);
    let skipped = after.app("tenantpool_tenant_set_total", &[("result", "skipped")]);
    assert!(sent >= 1.0, "sent {sent}");
    assert!(skipped >= 4.0, "skipped {skipped}");
    assert_eq!(
        before.app("tenantpool_tenant_set_total", &[("result", "skipped")]),
        0.0
    );

    assert_eq!(logins(&after, "ok") - logins(&before, "ok"), 1.0);
    assert_eq!(
        logins(&after, "bad_password") - logins(&before, "bad_password"),
        1.0
    );
    assert_eq!(logins(&after, "refused") - logins(&before, "refused"), 1.0);
    // Errors are process-wide (other tests in this binary add to them too).
    assert!(errors_28(&after) >= errors_28(&before) + 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_bytes_server_errors_and_guard_refusals_are_counted() {
    let h = start(5, 0).await;
    let client = h.connect("app.acme", "app").await;
    // 3 simple queries, 2 extended executes, one division by zero (22012), one
    // refused SET of the tenant setting (42501 from the guard).
    for _ in 0..3 {
        client.simple_query("select 1").await.unwrap();
    }
    let one: i32 = client
        .query_one("select $1::int", &[&1])
        .await
        .unwrap()
        .get(0);
    assert_eq!(one, 1);
    assert!(client.simple_query("select 1/0").await.is_err());
    let refused = client
        .simple_query("set app.current_tenant = 'globex'")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&refused).as_deref(), Some("42501"));
    let big = "x".repeat(50_000);
    let echoed: String = client
        .query_one("select $1::text", &[&big])
        .await
        .unwrap()
        .get(0);
    assert_eq!(echoed.len(), big.len());

    // Counted when each transaction ends, which is just after the client has
    // its answer: wait for the last one.
    wait_until("the last transaction's counts", || async {
        Scrape::take(&h)
            .await
            .app("tenantpool_pool_queries_total", &[])
            >= 7.0
    })
    .await;
    let s = Scrape::take(&h).await;
    assert_eq!(s.app("tenantpool_pool_queries_total", &[]), 7.0);
    assert!(s.app("tenantpool_pool_received_bytes_total", &[]) > 50_000.0);
    assert!(s.app("tenantpool_pool_sent_bytes_total", &[]) > 50_000.0);
    assert_eq!(
        s.app("tenantpool_pool_server_errors_total", &[("class", "22")]),
        1.0
    );
    assert_eq!(s.app("tenantpool_tenant_guard_refusals_total", &[]), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_and_readyz() {
    let h = start(5, 0).await;
    let addr = metrics_addr(&h);
    assert_eq!(get(addr, "/healthz").await, (200, "ok\n".to_owned()));
    let (status, body) = get(addr, "/readyz").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(get(addr, "/nothing-here").await.0, 404);

    // A database on a port nothing listens on: not ready, and the reason says which.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut config = common::base_config(&h.cluster);
    config.metrics = h.control.current().config.metrics.clone();
    let mut broken = config.databases["plain"].clone();
    broken.port = closed_port;
    config.databases.insert("broken".into(), broken);
    h.control.apply(config.clone()).unwrap();
    let (status, body) = get(addr, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("\"broken\""), "{body}");
    assert_eq!(get(addr, "/healthz").await.0, 200);

    config.databases.remove("broken");
    h.control.apply(config).unwrap();
    let (status, body) = get(addr, "/readyz").await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_tenant_series_stay_within_top_n_plus_other() {
    let h = start(5, 2).await;
    let tenants = ["t1", "t2", "t3", "t4", "t5"];
    let mut clients = Vec::new();
    for t in tenants {
        clients.push(h.connect(&format!("app.{t}"), "app").await);
    }
    // t5 holds servers longest, t4 next; the others barely.
    let run = |rounds: usize| {
        let clients = &clients;
        async move {
            for (i, c) in clients.iter().enumerate() {
                let sql = match i {
                    4 => "select pg_sleep(0.02)",
                    3 => "select pg_sleep(0.01)",
                    _ => "select 1",
                };
                for _ in 0..rounds {
                    c.simple_query(sql).await.unwrap();
                }
            }
        }
    };
    run(5).await;
    let tenant_labels = |s: &Scrape| -> BTreeSet<String> {
        s.samples(
            "tenantpool_tenant_transactions_total",
            &[("database", "app")],
        )
        .iter()
        .map(|(labels, _)| {
            let at = labels.find("tenant=\"").unwrap() + 8;
            labels[at..].split('"').next().unwrap().to_owned()
        })
        .collect()
    };
    let first = Scrape::take(&h).await;
    let seen = tenant_labels(&first);
    assert!(seen.len() <= 3, "{seen:?}");
    assert!(seen.contains("other"), "{seen:?}");
    assert!(
        seen.contains("t5"),
        "the busiest tenant is exported: {seen:?}"
    );

    run(3).await;
    let second = Scrape::take(&h).await;
    let seen2 = tenant_labels(&second);
    assert!(seen2.len() <= 3, "{seen2:?}");
    // Exported since the first scrape: t5's own series counts its three new transactions.
    let t5 = second.app("tenantpool_tenant_transactions_total", &[("tenant", "t5")]);
    assert_eq!(t5, 3.0);
    let t5_secs = second.app(
        "tenantpool_tenant_server_seconds_total",
        &[("tenant", "t5")],
    );
    assert!(t5_secs >= 0.06, "t5 held servers {t5_secs} s");
    // Every transaction is in exactly one tenant series.
    let sum: f64 = second
        .samples(
            "tenantpool_tenant_transactions_total",
            &[("database", "app")],
        )
        .iter()
        .map(|s| s.1)
        .sum();
    let total = second.app("tenantpool_pool_transactions_total", &[]);
    assert!(
        sum <= total && sum >= 40.0,
        "tenant sum {sum}, pool total {total}"
    );
    // Pools without tenants get no tenant series.
    assert!(second
        .samples(
            "tenantpool_tenant_transactions_total",
            &[("database", "plain")]
        )
        .is_empty());
}

/// Every metric the Grafana dashboard queries exists in a real scrape, and the
/// compose setup points Prometheus at the endpoint the compose config enables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_queries_only_metrics_that_exist() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("config/docker/grafana/dashboards/tenantpool.json"))
            .unwrap(),
    )
    .expect("dashboard is valid JSON");
    let mut exprs = Vec::new();
    collect_exprs(&dashboard, &mut exprs);
    assert!(exprs.len() >= 6, "{exprs:?}");
    let names: BTreeSet<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();
    for wanted in [
        "tenantpool_pool_saturation_ratio",
        "tenantpool_pool_clients_waiting",
        "tenantpool_pool_wait_seconds_bucket",
        "tenantpool_tenant_server_seconds_total",
    ] {
        assert!(
            names.contains(wanted),
            "dashboard lacks {wanted}: {names:?}"
        );
    }

    // Make every family appear: traffic for each histogram, a login, tenants.
    let h = start(5, 3).await;
    let c = h.connect("app.acme", "app").await;
    for _ in 0..3 {
        c.simple_query("select 1").await.unwrap();
    }
    assert!(h.try_connect("app.acme", "wrong", "app").await.is_err());
    let scrape = Scrape::take(&h).await;
    let present: BTreeSet<&str> = scrape
        .0
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    for name in &names {
        assert!(
            present.contains(name.as_str()),
            "the dashboard queries {name}, which a scrape does not have"
        );
    }
    for family in tenantpool::metrics::names::ALL {
        assert!(
            scrape.0.contains(&format!("# TYPE {} ", family.name)),
            "{} is documented but never exported",
            family.name
        );
    }

    let compose = tenantpool::Config::load(&root.join("config/docker/tenantpool.toml")).unwrap();
    assert_eq!(compose.metrics.unwrap().listen, "0.0.0.0:9930");
    let prometheus = std::fs::read_to_string(root.join("config/docker/prometheus.yml")).unwrap();
    assert!(prometheus.contains("tenantpool:9930"), "{prometheus}");
}

fn collect_exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr", serde_json::Value::String(e)) => out.push(e.clone()),
                    _ => collect_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

/// The `tenantpool_...` identifiers in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("tenantpool_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.push(tail[..end].to_owned());
        rest = &tail[end..];
    }
    out
}
