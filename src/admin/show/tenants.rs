//! SHOW TENANTS: one row per (tenant, database) that has a connected client or
//! an idle server connection set to it, so an operator can see which tenants
//! hold the pool. Only tenants present right now are listed, so the view is
//! bounded by the number of connections, however many tenants exist.
//!
//! To add a per-tenant figure (e.g. a transaction counter kept elsewhere), add
//! a field to [`TenantRow`], fill it in [`rows`], and add one line to [`TENANTS`].

use std::collections::BTreeMap;

use super::pools::ClientCounts;
use super::{int, text, Field, Live};
use crate::admin::format;
use crate::pool::ServerState;

#[derive(Default)]
pub struct TenantRow {
    tenant: String,
    database: String,
    clients: ClientCounts,
    /// Idle server connections whose setting holds this tenant (reusable without a SET).
    sv_idle: usize,
}

impl TenantRow {
    fn maxwait(&self) -> (u64, u64) {
        format::seconds_and_micros(self.clients.maxwait)
    }
}

pub const TENANTS: &[Field<TenantRow>] = &[
    text("tenant", |r| r.tenant.as_str().into()),
    text("database", |r| r.database.as_str().into()),
    int("cl_active", |r| r.clients.active.into()),
    int("cl_waiting", |r| r.clients.waiting.into()),
    int("sv_active", |r| r.clients.linked.into()),
    int("sv_idle", |r| r.sv_idle.into()),
    int("maxwait", |r| r.maxwait().0.into()),
    int("maxwait_us", |r| r.maxwait().1.into()),
];

pub fn rows(live: Live) -> Vec<TenantRow> {
    let mut by: BTreeMap<(String, String), TenantRow> = BTreeMap::new();
    fn row<'a>(
        by: &'a mut BTreeMap<(String, String), TenantRow>,
        tenant: &str,
        database: &str,
    ) -> &'a mut TenantRow {
        by.entry((tenant.to_owned(), database.to_owned()))
            .or_insert_with(|| TenantRow {
                tenant: tenant.to_owned(),
                database: database.to_owned(),
                ..TenantRow::default()
            })
    }
    for c in &live.clients {
        if let Some(tenant) = &c.tenant {
            row(&mut by, tenant.as_str(), &c.database)
                .clients
                .add(c.state(), c.in_state_for());
        }
    }
    for p in &live.pools {
        for s in &p.snapshot.servers {
            if let (ServerState::Idle, Some(tenant)) = (s.state, &s.tenant) {
                row(&mut by, tenant, &p.snapshot.name).sv_idle += 1;
            }
        }
    }
    by.into_values().collect()
}
