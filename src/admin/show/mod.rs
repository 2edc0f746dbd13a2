//! The SHOW views. Each view is a list of [`Field`]s over a row type: a column's
//! name, type and how to read it sit on one line, so adding a column is one line.
//!
//! - [`pools`]: SHOW POOLS, SHOW STATS, SHOW DATABASES (one row per pool);
//! - [`connections`]: SHOW CLIENTS, SHOW SERVERS;
//! - [`tenants`]: SHOW TENANTS;
//! - [`config`]: SHOW CONFIG;
//! - here: SHOW HELP, VERSION, LISTS, STATE.

mod config;
mod connections;
mod pools;
mod tenants;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::command::{View, ACTIONS};
use super::format;
use super::resultset::{Column, ResultSet, Type, Value};
use crate::pool::PoolSnapshot;
use crate::pooler::clients::ClientEntry;
use crate::pooler::{Control, Database, Phase, Shared};

/// A column of a view over rows of type `T`.
pub struct Field<T> {
    pub name: &'static str,
    pub ty: Type,
    pub get: fn(&T) -> Value,
}

pub const fn text<T>(name: &'static str, get: fn(&T) -> Value) -> Field<T> {
    Field {
        name,
        ty: Type::Text,
        get,
    }
}

pub const fn int<T>(name: &'static str, get: fn(&T) -> Value) -> Field<T> {
    Field {
        name,
        ty: Type::Int8,
        get,
    }
}

pub const fn flag<T>(name: &'static str, get: fn(&T) -> Value) -> Field<T> {
    Field {
        name,
        ty: Type::Bool,
        get,
    }
}

fn columns_of<T>(fields: &[Field<T>]) -> Vec<Column> {
    fields
        .iter()
        .map(|f| Column {
            name: f.name,
            ty: f.ty,
        })
        .collect()
}

fn table<T>(fields: &[Field<T>], rows: &[T]) -> ResultSet {
    ResultSet {
        columns: columns_of(fields),
        rows: rows
            .iter()
            .map(|r| fields.iter().map(|f| (f.get)(r)).collect())
            .collect(),
    }
}

/// The columns of a view, known without computing it (for Describe).
pub fn columns(view: View) -> Vec<Column> {
    match view {
        View::Help => columns_of(HELP),
        View::Pools => columns_of(pools::POOLS),
        View::Stats => columns_of(pools::STATS),
        View::Databases => columns_of(pools::DATABASES),
        View::Clients => columns_of(connections::CLIENTS),
        View::Servers => columns_of(connections::SERVERS),
        View::Tenants => columns_of(tenants::TENANTS),
        View::Config => columns_of(config::CONFIG),
        View::Version => columns_of(VERSION),
        View::Lists => columns_of(LISTS),
        View::State => columns_of(KEY_VALUE),
    }
}

/// Computes a view from the live state.
pub fn run(view: View, control: &Control) -> ResultSet {
    let shared = control.current();
    match view {
        View::Help => table(HELP, &help_rows()),
        View::Pools => table(
            pools::POOLS,
            &pools::pool_rows(Live::take(control, &shared)),
        ),
        View::Stats => table(pools::STATS, &pools::stats_rows(&shared)),
        View::Databases => table(
            pools::DATABASES,
            &pools::database_rows(&shared, live_pools(&shared)),
        ),
        View::Clients => table(
            connections::CLIENTS,
            &connections::client_rows(&control.clients.list()),
        ),
        View::Servers => table(
            connections::SERVERS,
            &connections::server_rows(Live::take(control, &shared)),
        ),
        View::Tenants => table(
            tenants::TENANTS,
            &tenants::rows(Live::take(control, &shared)),
        ),
        View::Config => table(config::CONFIG, &config::rows(&shared.config)),
        View::Version => table(VERSION, &[()]),
        View::Lists => table(LISTS, &list_rows(control, &shared)),
        View::State => table(KEY_VALUE, &state_rows(control)),
    }
}

/// A configured database and its pool at one moment.
pub struct PoolView {
    pub database: Arc<Database>,
    pub snapshot: PoolSnapshot,
}

/// Every configured pool, by name.
fn live_pools(shared: &Shared) -> Vec<PoolView> {
    let mut all: Vec<PoolView> = shared
        .databases
        .values()
        .map(|d| PoolView {
            database: Arc::clone(d),
            snapshot: d.pool.snapshot(),
        })
        .collect();
    all.sort_by(|a, b| a.database.name.cmp(&b.database.name));
    all
}

/// Pools and clients read together, for the views that join them.
pub struct Live {
    pub pools: Vec<PoolView>,
    pub clients: Vec<Arc<ClientEntry>>,
}

impl Live {
    fn take(control: &Control, shared: &Shared) -> Live {
        Live {
            pools: live_pools(shared),
            clients: control.clients.list(),
        }
    }
}

/// When something happened `ago`, as a timestamp.
pub fn since(ago: Duration) -> Value {
    SystemTime::now()
        .checked_sub(ago)
        .map(format::timestamp)
        .into()
}

type Pair = (String, String);

const HELP: &[Field<Pair>] = &[
    text("command", |r| r.0.as_str().into()),
    text("description", |r| r.1.as_str().into()),
];

fn help_rows() -> Vec<Pair> {
    View::ALL
        .iter()
        .map(|v| (format!("SHOW {}", v.name()), v.describe().to_owned()))
        .chain(ACTIONS.iter().map(|(c, d)| (c.to_string(), d.to_string())))
        .collect()
}

const VERSION: &[Field<()>] = &[text("version", |_| {
    concat!("tenantpool ", env!("CARGO_PKG_VERSION")).into()
})];

const LISTS: &[Field<(&'static str, usize)>] =
    &[text("list", |r| r.0.into()), int("items", |r| r.1.into())];

fn list_rows(control: &Control, shared: &Shared) -> Vec<(&'static str, usize)> {
    let pools = live_pools(shared);
    vec![
        ("databases", shared.config.databases.len()),
        ("users", shared.config.users.len()),
        ("pools", pools.len()),
        ("used_clients", control.clients.len()),
        (
            "used_servers",
            pools.iter().map(|p| p.snapshot.open).sum::<usize>(),
        ),
    ]
}

const KEY_VALUE: &[Field<Pair>] = &[
    text("key", |r| r.0.as_str().into()),
    text("value", |r| r.1.as_str().into()),
];

fn state_rows(control: &Control) -> Vec<Pair> {
    let phase = match control.phase() {
        Phase::Running => "running",
        Phase::Draining => "draining",
        Phase::Stopped => "stopped",
    };
    let uptime = control.started_at.elapsed().unwrap_or_default().as_secs();
    vec![
        ("phase".into(), phase.into()),
        ("started_at".into(), format::timestamp(control.started_at)),
        ("uptime_seconds".into(), uptime.to_string()),
        ("reloads".into(), control.reloads().to_string()),
    ]
}
