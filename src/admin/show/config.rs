//! SHOW CONFIG: every key of the configuration in force, as `pooler.listen`,
//! `databases.app.pool_size`, ... with its value, its default and whether
//! RELOAD changes it. Passwords, JWT secrets and signing keys are shown only as
//! `<set>`.

use super::pools::tenant_source;
use super::{text, Field};
use crate::admin::format;
use crate::config::{
    AuthType, Config, DatabaseConfig, LogFormat, PoolerConfig, ServerTls, TenantConfig, TlsRequired,
};

pub struct ConfigRow {
    key: String,
    value: Option<String>,
    default: Option<String>,
    changeable: bool,
}

pub const CONFIG: &[Field<ConfigRow>] = &[
    text("key", |r| r.key.as_str().into()),
    text("value", |r| r.value.as_deref().into()),
    text("default", |r| r.default.as_deref().into()),
    text("changeable", |r| {
        if r.changeable { "yes" } else { "no" }.into()
    }),
];

/// What a secret is shown as.
const SET: &str = "<set>";

fn secret(v: &Option<String>) -> Option<String> {
    v.as_ref().map(|_| SET.to_owned())
}

fn auth_type(a: AuthType) -> &'static str {
    match a {
        AuthType::ScramSha256 => "scram-sha-256",
        AuthType::Md5 => "md5",
    }
}

fn log_format(f: LogFormat) -> &'static str {
    match f {
        LogFormat::Text => "text",
        LogFormat::Json => "json",
    }
}

fn tls_required(r: TlsRequired) -> &'static str {
    match r {
        TlsRequired::Never => "never",
        TlsRequired::NonLocal => "non-local",
        TlsRequired::Always => "always",
    }
}

fn server_tls(t: ServerTls) -> &'static str {
    match t {
        ServerTls::Disable => "disable",
        ServerTls::Prefer => "prefer",
        ServerTls::Require => "require",
        ServerTls::VerifyFull => "verify-full",
    }
}

fn list(items: &[impl AsRef<str>]) -> String {
    items
        .iter()
        .map(AsRef::as_ref)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Collects rows, pairing each value with the same key's default.
struct Rows<'a, T> {
    prefix: String,
    value: &'a T,
    default: Option<&'a T>,
    out: &'a mut Vec<ConfigRow>,
}

impl<T> Rows<'_, T> {
    fn add(&mut self, key: &str, changeable: bool, show: impl Fn(&T) -> Option<String>) {
        self.out.push(ConfigRow {
            key: format!("{}{key}", self.prefix),
            value: show(self.value),
            default: self.default.and_then(&show),
            changeable,
        });
    }
}

pub fn rows(config: &Config) -> Vec<ConfigRow> {
    let mut out = Vec::new();
    pooler_rows(&config.pooler, &mut out);
    for u in &config.users {
        out.push(ConfigRow {
            key: format!("users.{}.password", u.name),
            value: Some(SET.into()),
            default: None,
            changeable: true,
        });
    }
    // The defaults of a database table with only its required key written.
    let db_default: Option<DatabaseConfig> = toml::from_str("user = \"\"").ok();
    for (name, db) in &config.databases {
        database_rows(name, db, db_default.as_ref(), &mut out);
    }
    out
}

fn pooler_rows(p: &PoolerConfig, out: &mut Vec<ConfigRow>) {
    let default = PoolerConfig::default();
    let mut r = Rows {
        prefix: "pooler.".into(),
        value: p,
        default: Some(&default),
        out,
    };
    let some = |s: String| Some(s);
    // Read once at start: listeners, the client limit, threads, the log setup.
    r.add("listen", false, |p| some(p.listen.clone()));
    r.add("listen_backlog", false, |p| {
        some(p.listen_backlog.to_string())
    });
    r.add("unix_socket_dir", false, |p| {
        p.unix_socket_dir.as_ref().map(|d| d.display().to_string())
    });
    r.add("max_client_connections", false, |p| {
        some(p.max_client_connections.to_string())
    });
    r.add("auth_type", true, |p| some(auth_type(p.auth_type).into()));
    r.add("max_startup_packet_size", true, |p| {
        some(p.max_startup_packet_size.to_string())
    });
    r.add("max_message_size", true, |p| {
        some(p.max_message_size.to_string())
    });
    // Both for clients that log in after a reload.
    r.add("max_prepared_statements", true, |p| {
        some(p.max_prepared_statements.to_string())
    });
    r.add("track_extra_parameters", true, |p| {
        some(p.track_extra_parameters.join(","))
    });
    r.add("client_login_timeout", true, |p| {
        some(format::duration(p.client_login_timeout))
    });
    r.add("query_wait_timeout", true, |p| {
        some(format::duration(p.query_wait_timeout))
    });
    // Part of a pool's server target: a reload keeps pools whose server did not
    // change, with the timeout they were built with.
    r.add("server_connect_timeout", false, |p| {
        some(format::duration(p.server_connect_timeout))
    });
    r.add("server_idle_timeout", true, |p| {
        some(format::duration(p.server_idle_timeout))
    });
    r.add("server_lifetime", true, |p| {
        some(format::duration(p.server_lifetime))
    });
    r.add("worker_threads", false, |p| {
        p.worker_threads.map(|n| n.to_string())
    });
    r.add("allow_cleartext_over_network", true, |p| {
        some(p.allow_cleartext_over_network.to_string())
    });
    r.add("admin_users", true, |p| some(list(&p.admin_users)));
    r.add("shutdown_timeout", true, |p| {
        some(format::duration(p.shutdown_timeout))
    });
    r.add("log_level", false, |p| some(p.log_level.clone()));
    r.add("log_format", false, |p| {
        some(log_format(p.log_format).into())
    });
    if let Some(tls) = &p.tls {
        let mut r = Rows {
            prefix: "pooler.tls.".into(),
            value: tls,
            default: None,
            out: r.out,
        };
        r.add("cert_file", true, |t| {
            some(t.cert_file.display().to_string())
        });
        r.add("key_file", true, |t| some(t.key_file.display().to_string()));
        r.add("required", true, |t| some(tls_required(t.required).into()));
    }
}

fn database_rows(
    name: &str,
    db: &DatabaseConfig,
    default: Option<&DatabaseConfig>,
    out: &mut Vec<ConfigRow>,
) {
    let mut r = Rows {
        prefix: format!("databases.{name}."),
        value: db,
        default,
        out,
    };
    // Changing the server, login or TLS re-points the pool: its clients finish
    // their transaction, then are told to reconnect.
    r.add("host", true, |d| Some(d.host.clone()));
    r.add("port", true, |d| Some(d.port.to_string()));
    r.add("dbname", true, |d| d.dbname.clone());
    r.add("user", true, |d| {
        Some(d.user.clone()).filter(|u| !u.is_empty())
    });
    r.add("password", true, |d| secret(&d.password));
    r.add("pool_size", true, |d| Some(d.pool_size.to_string()));
    r.add("min_pool_size", true, |d| Some(d.min_pool_size.to_string()));
    r.add("pool_mode", true, |d| Some(d.pool_mode.as_str().into()));
    r.add("tls", true, |d| Some(server_tls(d.tls).into()));
    r.add("tls_ca_file", true, |d| {
        d.tls_ca_file.as_ref().map(|f| f.display().to_string())
    });
    if let Some(t) = &db.tenant {
        let default = TenantConfig::new(t.source);
        tenant_rows(name, t, &default, r.out);
    }
}

fn tenant_rows(name: &str, t: &TenantConfig, default: &TenantConfig, out: &mut Vec<ConfigRow>) {
    let mut r = Rows {
        prefix: format!("databases.{name}.tenant."),
        value: t,
        default: Some(default),
        out,
    };
    let some = |s: String| Some(s);
    r.add("source", true, |t| some(tenant_source(t.source).into()));
    r.add("setting", true, |t| some(t.setting.clone()));
    r.add("pattern", true, |t| some(t.pattern.clone()));
    r.add("affinity", true, |t| some(t.affinity.to_string()));
    r.add("required", true, |t| some(t.required.to_string()));
    r.add("guard", true, |t| some(t.guard.to_string()));
    r.add("allow_do_blocks", true, |t| {
        some(t.allow_do_blocks.to_string())
    });
    r.add("signed_context", true, |t| {
        some(t.signed_context.to_string())
    });
    r.add("signing_key", true, |t| secret(&t.signing_key));
    if t.source == crate::config::TenantSource::Jwt {
        r.add("claim", true, |t| some(t.claim.clone()));
        r.add("jwt_secret", true, |t| secret(&t.jwt_secret));
        r.add("jwt_public_key_files", true, |t| {
            let files: Vec<String> = t
                .jwt_public_key_files
                .iter()
                .map(|f| f.display().to_string())
                .collect();
            Some(list(&files)).filter(|s| !s.is_empty())
        });
        r.add("jwks_file", true, |t| {
            t.jwks_file.as_ref().map(|f| f.display().to_string())
        });
        r.add("issuer", true, |t| t.issuer.clone());
        r.add("audience", true, |t| t.audience.clone());
        r.add("leeway_seconds", true, |t| {
            some(t.leeway_seconds.to_string())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_never_shown() {
        let config = Config::from_toml(
            r#"
            [pooler]
            admin_users = ["admin"]
            [[users]]
            name = "admin"
            password = "pw-user-secret"
            [databases.app]
            user = "app"
            password = "pw-db-secret"
            pool_size = 7
            [databases.app.tenant]
            source = "jwt"
            jwt_secret = "pw-jwt-secret-pw-jwt-secret-pw-jwt-secret"
            signed_context = true
            signing_key = "pw-signing-key-pw-signing-key-pw-signing-key"
            "#,
            "<test>",
        )
        .unwrap();
        let rows = rows(&config);
        for r in &rows {
            for v in [&r.value, &r.default].into_iter().flatten() {
                assert!(!v.contains("pw-"), "{} shows {v}", r.key);
            }
        }
        let get = |k: &str| {
            rows.iter()
                .find(|r| r.key == k)
                .unwrap_or_else(|| panic!("{k}"))
        };
        assert_eq!(get("users.admin.password").value.as_deref(), Some(SET));
        assert_eq!(get("databases.app.password").value.as_deref(), Some(SET));
        assert_eq!(
            get("databases.app.tenant.jwt_secret").value.as_deref(),
            Some(SET)
        );
        assert_eq!(
            get("databases.app.tenant.signing_key").value.as_deref(),
            Some(SET)
        );
        let size = get("databases.app.pool_size");
        assert_eq!(size.value.as_deref(), Some("7"));
        assert_eq!(size.default.as_deref(), Some("20"));
        let wait = get("pooler.query_wait_timeout");
        assert_eq!(wait.default.as_deref(), Some("2min"));
        assert!(!get("pooler.listen").changeable);
        assert_eq!(get("pooler.admin_users").value.as_deref(), Some("admin"));
        assert_eq!(
            get("databases.app.tenant.leeway_seconds")
                .default
                .as_deref(),
            Some("30")
        );
    }
}
