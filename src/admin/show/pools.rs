//! One row per pool: SHOW POOLS (who is using it now), SHOW STATS (counters
//! since start), SHOW DATABASES (how it is configured).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::{flag, int, text, Field, Live, PoolView};
use crate::admin::format;
use crate::config::{DatabaseConfig, ServerTls, TenantSource};
use crate::pool::{Pool, PoolSnapshot};
use crate::pooler::clients::ClientState;
use crate::pooler::Shared;

pub struct PoolRow {
    snapshot: PoolSnapshot,
    clients: ClientCounts,
}

/// Clients of one database (or one tenant), as the client registry sees them.
#[derive(Debug, Default, Clone)]
pub struct ClientCounts {
    /// Connected and not waiting: between transactions or holding a server
    /// (PgBouncer's `cl_active`).
    pub active: usize,
    /// Sent a request and have no server connection yet.
    pub waiting: usize,
    /// Of `active`, those holding a server connection.
    pub linked: usize,
    /// How long the longest-waiting one has waited.
    pub maxwait: Duration,
}

impl ClientCounts {
    pub fn add(&mut self, state: ClientState, in_state: Duration) {
        match state {
            ClientState::Waiting => {
                self.waiting += 1;
                self.maxwait = self.maxwait.max(in_state);
            }
            ClientState::Active => {
                self.active += 1;
                self.linked += 1;
            }
            ClientState::Idle => self.active += 1,
        }
    }
}

pub const POOLS: &[Field<PoolRow>] = &[
    text("database", |r| r.snapshot.name.as_str().into()),
    text("user", |r| r.snapshot.user.as_str().into()),
    int("cl_active", |r| r.clients.active.into()),
    int("cl_waiting", |r| r.clients.waiting.into()),
    int("sv_active", |r| r.snapshot.active.into()),
    int("sv_idle", |r| r.snapshot.idle.into()),
    int("sv_login", |r| r.snapshot.opening.into()),
    int("maxwait", |r| {
        format::seconds_and_micros(r.clients.maxwait).0.into()
    }),
    int("maxwait_us", |r| {
        format::seconds_and_micros(r.clients.maxwait).1.into()
    }),
    text("pool_mode", |r| r.snapshot.mode.as_str().into()),
    int("pool_size", |r| r.snapshot.size.into()),
    flag("paused", |r| r.snapshot.paused.into()),
];

pub fn pool_rows(live: Live) -> Vec<PoolRow> {
    let mut by_db: HashMap<&str, ClientCounts> = HashMap::new();
    for c in &live.clients {
        by_db
            .entry(&*c.database)
            .or_default()
            .add(c.state(), c.in_state_for());
    }
    live.pools
        .into_iter()
        .map(|p| PoolRow {
            clients: by_db
                .get(p.database.name.as_str())
                .cloned()
                .unwrap_or_default(),
            snapshot: p.snapshot,
        })
        .collect()
}

pub struct StatsRow {
    name: String,
    pool: Arc<Pool>,
}

fn avg_connect_us(r: &StatsRow) -> u64 {
    let (count, total, _) = r.pool.stats.connect_time.get();
    total.checked_div(count).unwrap_or(0)
}

pub const STATS: &[Field<StatsRow>] = &[
    text("database", |r| r.name.as_str().into()),
    int("total_xact_count", |r| {
        r.pool.stats.transactions.get().into()
    }),
    // PgBouncer's names: statements, and bytes from / to clients.
    int("total_query_count", |r| r.pool.stats.queries.get().into()),
    int("total_received", |r| {
        r.pool.stats.bytes_received.get().into()
    }),
    int("total_sent", |r| r.pool.stats.bytes_sent.get().into()),
    int("total_guard_refusals", |r| {
        r.pool.stats.guard_refusals.get().into()
    }),
    int("total_tenant_set_count", |r| {
        r.pool.stats.tenant_sets_sent.get().into()
    }),
    int("total_tenant_set_skipped", |r| {
        r.pool.stats.tenant_sets_skipped.get().into()
    }),
    int("total_wait_timeouts", |r| {
        r.pool.stats.wait_timeouts.get().into()
    }),
    int("total_server_connect_count", |r| {
        r.pool.stats.server_connects.get().into()
    }),
    int("total_server_connect_errors", |r| {
        r.pool.stats.server_connect_errors.get().into()
    }),
    int("avg_server_connect_time", |r| avg_connect_us(r).into()),
    int("max_server_connect_time", |r| {
        r.pool.stats.connect_time.get().2.into()
    }),
];

pub fn stats_rows(shared: &Shared) -> Vec<StatsRow> {
    let mut rows: Vec<StatsRow> = shared
        .databases
        .values()
        .map(|d| StatsRow {
            name: d.name.clone(),
            pool: Arc::clone(&d.pool),
        })
        .collect();
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    rows
}

pub struct DatabaseRow {
    name: String,
    config: DatabaseConfig,
    snapshot: PoolSnapshot,
}

fn server_tls(t: ServerTls) -> &'static str {
    match t {
        ServerTls::Disable => "disable",
        ServerTls::Prefer => "prefer",
        ServerTls::Require => "require",
        ServerTls::VerifyFull => "verify-full",
    }
}

pub fn tenant_source(s: TenantSource) -> &'static str {
    match s {
        TenantSource::UserSuffix => "user_suffix",
        TenantSource::Jwt => "jwt",
    }
}

pub const DATABASES: &[Field<DatabaseRow>] = &[
    text("name", |r| r.name.as_str().into()),
    text("host", |r| r.config.host.as_str().into()),
    int("port", |r| r.config.port.into()),
    text("database", |r| r.config.server_dbname(&r.name).into()),
    text("force_user", |r| r.config.user.as_str().into()),
    int("pool_size", |r| r.snapshot.size.into()),
    int("min_pool_size", |r| r.snapshot.min_size.into()),
    text("pool_mode", |r| r.snapshot.mode.as_str().into()),
    int("current_connections", |r| r.snapshot.open.into()),
    flag("paused", |r| r.snapshot.paused.into()),
    text("server_tls", |r| server_tls(r.config.tls).into()),
    text("tenant_source", |r| {
        r.config
            .tenant
            .as_ref()
            .map(|t| tenant_source(t.source))
            .into()
    }),
    text("tenant_setting", |r| {
        r.config.tenant.as_ref().map(|t| t.setting.as_str()).into()
    }),
];

pub fn database_rows(shared: &Shared, pools: Vec<PoolView>) -> Vec<DatabaseRow> {
    pools
        .into_iter()
        .filter_map(|p| {
            let config = shared.config.databases.get(&p.database.name)?;
            Some(DatabaseRow {
                name: p.database.name.clone(),
                config: config.clone(),
                snapshot: p.snapshot,
            })
        })
        .collect()
}
