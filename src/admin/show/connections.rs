//! One row per connection: SHOW CLIENTS (from the client registry) and SHOW
//! SERVERS (from the pools). A client's `link` is the `id` of the server it
//! holds, and a server's `link` the `id` of the client holding it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::{flag, int, since, text, Field, Live};
use crate::admin::format;
use crate::pool::{ServerInfo, ServerState};
use crate::pooler::clients::{ClientEntry, ClientState};
use crate::tenant::TenantId;

pub struct ClientRow {
    entry: Arc<ClientEntry>,
    state: ClientState,
    in_state: Duration,
    addr: String,
    port: Option<u16>,
}

impl ClientRow {
    fn wait(&self) -> Duration {
        match self.state {
            ClientState::Waiting => self.in_state,
            _ => Duration::ZERO,
        }
    }
}

pub const CLIENTS: &[Field<ClientRow>] = &[
    text("type", |_| "C".into()),
    int("id", |r| r.entry.id.into()),
    text("user", |r| (*r.entry.user).into()),
    text("database", |r| (*r.entry.database).into()),
    text("tenant", |r| {
        r.entry.tenant.as_ref().map(TenantId::as_str).into()
    }),
    text("state", |r| r.state.as_str().into()),
    text("addr", |r| r.addr.as_str().into()),
    int("port", |r| r.port.into()),
    flag("tls", |r| r.entry.tls.into()),
    text("connect_time", |r| {
        format::timestamp(r.entry.connected_at).into()
    }),
    text("state_change", |r| since(r.in_state)),
    int("wait", |r| format::seconds_and_micros(r.wait()).0.into()),
    int("wait_us", |r| format::seconds_and_micros(r.wait()).1.into()),
    int("link", |r| r.entry.server().into()),
];

pub fn client_rows(clients: &[Arc<ClientEntry>]) -> Vec<ClientRow> {
    clients
        .iter()
        .map(|c| {
            let (addr, port) = format::split_peer(&c.peer.to_string());
            ClientRow {
                entry: Arc::clone(c),
                state: c.state(),
                in_state: c.in_state_for(),
                addr,
                port,
            }
        })
        .collect()
}

pub struct ServerRow {
    database: String,
    user: String,
    host: String,
    port: u16,
    info: ServerInfo,
    tenant: Option<String>,
}

pub const SERVERS: &[Field<ServerRow>] = &[
    text("type", |_| "S".into()),
    int("id", |r| r.info.id.into()),
    text("user", |r| r.user.as_str().into()),
    text("database", |r| r.database.as_str().into()),
    text("state", |r| r.info.state.as_str().into()),
    text("addr", |r| r.host.as_str().into()),
    int("port", |r| r.port.into()),
    int("remote_pid", |r| r.info.pid.into()),
    text("tenant", |r| r.tenant.as_deref().into()),
    text("connect_time", |r| {
        format::timestamp(r.info.connected_at).into()
    }),
    text("state_change", |r| since(r.info.since.elapsed())),
    int("link", |r| r.info.client.into()),
];

pub fn server_rows(live: Live) -> Vec<ServerRow> {
    let tenants: HashMap<u64, Option<&str>> = live
        .clients
        .iter()
        .map(|c| (c.id, c.tenant.as_ref().map(TenantId::as_str)))
        .collect();
    let mut rows = Vec::new();
    for p in live.pools {
        let target = &p.database.pool.target;
        for info in p.snapshot.servers {
            // In use: the setting is (being made) its client's tenant. Idle: what
            // the pooler knows the setting holds (none when unknown).
            let tenant = match (info.state, info.client) {
                (ServerState::Active, Some(client)) => {
                    tenants.get(&client).copied().flatten().map(str::to_owned)
                }
                _ => info.tenant.as_deref().map(str::to_owned),
            };
            rows.push(ServerRow {
                database: p.snapshot.name.clone(),
                user: p.snapshot.user.clone(),
                host: target.host.clone(),
                port: target.port,
                info,
                tenant,
            });
        }
    }
    rows
}
