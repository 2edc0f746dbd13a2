//! The `/metrics` body (Prometheus text format 0.0.4): the series computed at
//! scrape time, written here, followed by the recorder's (histograms, logins).

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Arc;
use std::time::Instant;

use super::names::{self, Family};
use super::tenants::OTHER;
use super::{errors, Metrics, PoolMetrics};
use crate::pool::{PoolSnapshot, PoolStats};
use crate::pooler::clients::ClientState;
use crate::pooler::Control;

/// `k="v",...` with label values escaped as the text format wants.
pub(super) fn labels(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(k);
        out.push_str("=\"");
        for c in v.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out
}

fn header(out: &mut String, f: &Family) {
    let _ = writeln!(out, "# HELP {} {}", f.name, f.help);
    let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind.as_str());
}

fn sample(out: &mut String, name: &str, labels: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "{name}{{{labels}}} {value}");
}

/// A per-pool family and how to read its value.
type Column = (&'static Family, fn(&Row) -> f64);

/// One pool as the scrape sees it.
struct Row<'a> {
    snap: PoolSnapshot,
    stats: &'a PoolStats,
    m: &'a PoolMetrics,
    /// Clients connected and clients holding a server, from the client registry.
    connected: usize,
    active: usize,
}

pub(super) fn render(metrics: &Metrics, control: &Control) -> String {
    let shared = control.current();
    let mut per_db: HashMap<Arc<str>, (usize, usize)> = HashMap::new();
    for c in control.clients.list() {
        let e = per_db.entry(Arc::clone(&c.database)).or_default();
        e.0 += 1;
        e.1 += usize::from(c.state() == ClientState::Active);
    }
    let mut dbs: Vec<_> = shared.databases.values().collect();
    dbs.sort_by(|a, b| a.name.cmp(&b.name));
    let rows: Vec<Row> = dbs
        .iter()
        .filter_map(|db| {
            let m = db.pool.metrics.get()?;
            let (connected, active) = per_db.get(db.name.as_str()).copied().unwrap_or_default();
            Some(Row {
                snap: db.pool.snapshot(),
                stats: &db.pool.stats,
                m,
                connected,
                active,
            })
        })
        .collect();

    let mut out = String::with_capacity(4096 + rows.len() * 4096);
    let gauges: [Column; 10] = [
        (&names::CLIENTS_CONNECTED, |r| r.connected as f64),
        (&names::CLIENTS_ACTIVE, |r| r.active as f64),
        (&names::CLIENTS_WAITING, |r| r.snap.waiting as f64),
        (&names::MAX_WAIT, |r| r.snap.max_wait.as_secs_f64()),
        (&names::SERVERS_ACTIVE, |r| r.snap.active as f64),
        (&names::SERVERS_IDLE, |r| r.snap.idle as f64),
        (&names::SERVERS_OPENING, |r| r.snap.opening as f64),
        (&names::SERVERS_LIMIT, |r| r.snap.size as f64),
        (&names::SATURATION, |r| {
            (r.snap.active + r.snap.opening) as f64 / r.snap.size.max(1) as f64
        }),
        (&names::PAUSED, |r| f64::from(u8::from(r.snap.paused))),
    ];
    let counters: [Column; 8] = [
        (&names::FULL_SECONDS, |r| r.m.full_seconds()),
        (&names::TRANSACTIONS, |r| r.stats.transactions.get() as f64),
        (&names::WAIT_TIMEOUTS, |r| {
            r.stats.wait_timeouts.get() as f64
        }),
        (&names::SERVER_CONNECT_ERRORS, |r| {
            r.stats.server_connect_errors.get() as f64
        }),
        (&names::QUERIES, |r| r.stats.queries.get() as f64),
        (&names::RECEIVED_BYTES, |r| {
            r.stats.bytes_received.get() as f64
        }),
        (&names::SENT_BYTES, |r| r.stats.bytes_sent.get() as f64),
        (&names::GUARD_REFUSALS, |r| {
            r.stats.guard_refusals.get() as f64
        }),
    ];
    for (family, value) in gauges.iter().chain(&counters) {
        header(&mut out, family);
        for r in &rows {
            sample(&mut out, family.name, &r.m.labels, value(r));
        }
    }
    header(&mut out, &names::SERVER_ERRORS);
    for r in &rows {
        for (class, n) in r.stats.server_errors() {
            let l = format!("{},{}", r.m.labels, labels(&[("class", &class)]));
            sample(&mut out, names::SERVER_ERRORS.name, &l, n);
        }
    }
    header(&mut out, &names::TENANT_SET);
    for r in &rows {
        for (result, n) in [
            ("sent", r.stats.tenant_sets_sent.get()),
            ("skipped", r.stats.tenant_sets_skipped.get()),
        ] {
            let l = format!("{},result=\"{result}\"", r.m.labels);
            sample(&mut out, names::TENANT_SET.name, &l, n);
        }
    }
    tenants(&mut out, &rows);

    header(&mut out, &names::CLIENT_ERRORS);
    for (class, n) in errors::snapshot() {
        sample(
            &mut out,
            names::CLIENT_ERRORS.name,
            &labels(&[("class", &class)]),
            n,
        );
    }
    header(&mut out, &names::BUILD_INFO);
    sample(
        &mut out,
        names::BUILD_INFO.name,
        &labels(&[("version", env!("CARGO_PKG_VERSION"))]),
        1,
    );
    out.push_str(&metrics.handle.render());
    out
}

fn tenants(out: &mut String, rows: &[Row]) {
    let now = Instant::now();
    let per_pool: Vec<_> = rows
        .iter()
        .filter_map(|r| Some((r, r.m.tenants.as_ref()?.snapshot(now))))
        // A pool none of whose clients has a tenant (plain pooling) has no tenant series.
        .filter(|(_, (top, other))| !top.is_empty() || other.transactions > 0)
        .collect();
    if per_pool.is_empty() {
        return;
    }
    let series =
        |r: &Row, tenant: &str| format!("{},{}", r.m.labels, labels(&[("tenant", tenant)]));
    header(out, &names::TENANT_TRANSACTIONS);
    for (r, (top, other)) in &per_pool {
        let all = top.iter().map(|(t, n)| (Arc::clone(t), *n));
        for (tenant, totals) in all.chain([(Arc::from(OTHER), *other)]) {
            sample(
                out,
                names::TENANT_TRANSACTIONS.name,
                &series(r, &tenant),
                totals.transactions,
            );
        }
    }
    header(out, &names::TENANT_SERVER_SECONDS);
    for (r, (top, other)) in &per_pool {
        let all = top.iter().map(|(t, n)| (Arc::clone(t), *n));
        for (tenant, totals) in all.chain([(Arc::from(OTHER), *other)]) {
            let secs = totals.held_us as f64 / 1e6;
            sample(
                out,
                names::TENANT_SERVER_SECONDS.name,
                &series(r, &tenant),
                secs,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(
            labels(&[("a", "x\"y\\z\nw"), ("b", "")]),
            r#"a="x\"y\\z\nw",b="""#
        );
    }
}
