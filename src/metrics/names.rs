//! Every metric tenantpool exports: name, type and help text in one place
//! (the README table and the dashboard test follow this list).
//!
//! Pool series carry the labels `database`, `user` (the server role) and `mode`.

/// Prometheus metric type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    Counter,
    Histogram,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
            Kind::Histogram => "histogram",
        }
    }
}

/// One metric family.
#[derive(Debug, Clone, Copy)]
pub struct Family {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
}

const fn gauge(name: &'static str, help: &'static str) -> Family {
    Family {
        name,
        kind: Kind::Gauge,
        help,
    }
}
const fn counter(name: &'static str, help: &'static str) -> Family {
    Family {
        name,
        kind: Kind::Counter,
        help,
    }
}
const fn histogram(name: &'static str, help: &'static str) -> Family {
    Family {
        name,
        kind: Kind::Histogram,
        help,
    }
}

// Computed when scraped, per pool.
pub const CLIENTS_CONNECTED: Family = gauge(
    "tenantpool_pool_clients_connected",
    "Clients logged in to this pool's database.",
);
pub const CLIENTS_ACTIVE: Family = gauge(
    "tenantpool_pool_clients_active",
    "Clients holding a server connection.",
);
pub const CLIENTS_WAITING: Family = gauge(
    "tenantpool_pool_clients_waiting",
    "Clients queued for a server connection.",
);
pub const MAX_WAIT: Family = gauge(
    "tenantpool_pool_max_wait_seconds",
    "How long the longest-queued client has waited so far (PgBouncer's maxwait).",
);
pub const SERVERS_ACTIVE: Family = gauge(
    "tenantpool_pool_servers_active",
    "Server connections lent to clients.",
);
pub const SERVERS_IDLE: Family = gauge(
    "tenantpool_pool_servers_idle",
    "Server connections idle in the pool.",
);
pub const SERVERS_OPENING: Family = gauge(
    "tenantpool_pool_servers_opening",
    "Server connections being opened (connect and login in progress).",
);
pub const SERVERS_LIMIT: Family = gauge(
    "tenantpool_pool_servers_limit",
    "The pool's pool_size: most server connections it may open.",
);
pub const SATURATION: Family = gauge(
    "tenantpool_pool_saturation_ratio",
    "Server connections in use (lent or being opened) / pool_size; 1 means the next client waits.",
);
pub const PAUSED: Family = gauge(
    "tenantpool_pool_paused",
    "1 while the pool is paused (PAUSE or KILL), else 0.",
);
pub const FULL_SECONDS: Family = counter(
    "tenantpool_pool_full_seconds_total",
    "Time the pool was fully used (no idle connection, no free slot), sampled every 250 ms.",
);
pub const TRANSACTIONS: Family = counter(
    "tenantpool_pool_transactions_total",
    "Transactions completed (relays that ended with the server idle).",
);
pub const WAIT_TIMEOUTS: Family = counter(
    "tenantpool_pool_wait_timeouts_total",
    "Clients that waited query_wait_timeout without getting a server connection.",
);
pub const SERVER_CONNECT_ERRORS: Family = counter(
    "tenantpool_pool_server_connect_errors_total",
    "Server connection attempts that failed (connect, TLS or login).",
);
pub const QUERIES: Family = counter(
    "tenantpool_pool_queries_total",
    "Statements relayed: simple Queries, extended-protocol Executes and function calls.",
);
pub const RECEIVED_BYTES: Family = counter(
    "tenantpool_pool_received_bytes_total",
    "Bytes received from clients (counted per transaction).",
);
pub const SENT_BYTES: Family = counter(
    "tenantpool_pool_sent_bytes_total",
    "Bytes sent to clients from the server (counted per transaction).",
);
pub const SERVER_ERRORS: Family = counter(
    "tenantpool_pool_server_errors_total",
    "Server ErrorResponses relayed to clients, by SQLSTATE class (its first two characters).",
);
pub const GUARD_REFUSALS: Family = counter(
    "tenantpool_tenant_guard_refusals_total",
    "Statements the tenant-context guard refused (SQLSTATE 42501).",
);
pub const TENANT_SET: Family = counter(
    "tenantpool_tenant_set_total",
    "Transactions that needed the tenant SET (result=\"sent\") or found the server already set (result=\"skipped\", an affinity hit).",
);

// Recorded on the hot path through cached handles, per pool.
pub const WAIT_SECONDS: Family = histogram(
    "tenantpool_pool_wait_seconds",
    "Time a client waited for a server connection (including opening one), per checkout.",
);
pub const TRANSACTION_SECONDS: Family = histogram(
    "tenantpool_pool_transaction_seconds",
    "Time a server connection was held for one transaction.",
);
pub const CONNECT_SECONDS: Family = histogram(
    "tenantpool_pool_server_connect_seconds",
    "Time to connect and log in to the server.",
);

// Per tenant (only with [metrics] top_tenants > 0).
pub const TENANT_TRANSACTIONS: Family = counter(
    "tenantpool_tenant_transactions_total",
    "Transactions of the most active tenants; the rest under tenant=\"other\".",
);
pub const TENANT_SERVER_SECONDS: Family = counter(
    "tenantpool_tenant_server_seconds_total",
    "Time the most active tenants held server connections; the rest under tenant=\"other\".",
);

// Process-wide.
pub const LOGINS: Family = counter(
    "tenantpool_client_logins_total",
    "Client logins by outcome (ok, bad_password, bad_token, refused); database is empty when not configured.",
);
pub const CLIENT_ERRORS: Family = counter(
    "tenantpool_client_errors_total",
    "Errors the pooler itself sent to clients, by SQLSTATE class (its first two characters).",
);
pub const BUILD_INFO: Family = gauge(
    "tenantpool_build_info",
    "Always 1; the version label says which tenantpool runs.",
);

/// Every family, in exposition order.
pub const ALL: &[Family] = &[
    CLIENTS_CONNECTED,
    CLIENTS_ACTIVE,
    CLIENTS_WAITING,
    MAX_WAIT,
    SERVERS_ACTIVE,
    SERVERS_IDLE,
    SERVERS_OPENING,
    SERVERS_LIMIT,
    SATURATION,
    PAUSED,
    FULL_SECONDS,
    TRANSACTIONS,
    WAIT_TIMEOUTS,
    SERVER_CONNECT_ERRORS,
    QUERIES,
    RECEIVED_BYTES,
    SENT_BYTES,
    SERVER_ERRORS,
    GUARD_REFUSALS,
    TENANT_SET,
    WAIT_SECONDS,
    TRANSACTION_SECONDS,
    CONNECT_SECONDS,
    TENANT_TRANSACTIONS,
    TENANT_SERVER_SECONDS,
    LOGINS,
    CLIENT_ERRORS,
    BUILD_INFO,
];
