//! Checks that cannot be expressed in the serde schema. Each error names the key.

use std::collections::HashSet;
use std::net::SocketAddr;

use super::{AuthType, Config, ConfigError, ServerTls, TenantSource, ADMIN_DATABASE};
use crate::auth::Secret;
use crate::tenant::{SettingName, TenantPattern};

pub fn validate(config: &Config, file: &str) -> Result<(), ConfigError> {
    let invalid = |key: &str, message: String| ConfigError::Invalid {
        file: file.into(),
        key: key.into(),
        message,
    };
    let p = &config.pooler;
    p.listen.parse::<SocketAddr>().map_err(|e| {
        invalid(
            "pooler.listen",
            format!("{e}: expected an IP address and port, e.g. \"127.0.0.1:6432\""),
        )
    })?;
    if p.max_client_connections == 0 {
        return Err(invalid(
            "pooler.max_client_connections",
            "must be at least 1".into(),
        ));
    }
    // Load the certificate now, so --check catches a bad file before a restart does.
    if let Some(tls) = &p.tls {
        crate::tls::ClientTls::load(tls).map_err(|e| invalid("pooler.tls", e.to_string()))?;
    }
    if !(64..=1 << 20).contains(&p.max_startup_packet_size) {
        return Err(invalid(
            "pooler.max_startup_packet_size",
            "must be between 64 bytes and 1 MiB".into(),
        ));
    }
    if !(1024..=1 << 30).contains(&p.max_message_size) {
        return Err(invalid(
            "pooler.max_message_size",
            "must be between 1 KiB and 1 GiB".into(),
        ));
    }
    if p.worker_threads == Some(0) {
        return Err(invalid(
            "pooler.worker_threads",
            "must be at least 1".into(),
        ));
    }

    if let Some(m) = &config.metrics {
        m.listen.parse::<SocketAddr>().map_err(|e| {
            invalid(
                "metrics.listen",
                format!("{e}: expected an IP address and port, e.g. \"127.0.0.1:9930\""),
            )
        })?;
        if m.top_tenants > super::MAX_TOP_TENANTS {
            return Err(invalid(
                "metrics.top_tenants",
                format!("must be at most {}", super::MAX_TOP_TENANTS),
            ));
        }
    }

    if p.listen_backlog == 0 {
        return Err(invalid(
            "pooler.listen_backlog",
            "must be at least 1".into(),
        ));
    }
    if p.log_level.trim().is_empty() {
        return Err(invalid("pooler.log_level", "must not be empty".into()));
    }
    for (i, admin) in p.admin_users.iter().enumerate() {
        if !config.users.iter().any(|u| &u.name == admin) {
            return Err(invalid(
                &format!("pooler.admin_users[{i}]"),
                format!("\"{admin}\" is not one of the [[users]]"),
            ));
        }
    }
    if p.track_extra_parameters.len() > super::MAX_TRACKED_EXTRAS {
        return Err(invalid(
            "pooler.track_extra_parameters",
            format!("at most {} settings", super::MAX_TRACKED_EXTRAS),
        ));
    }
    for (i, name) in p.track_extra_parameters.iter().enumerate() {
        let valid = name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && name.len() <= 63
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.');
        let key = format!("pooler.track_extra_parameters[{i}]");
        if !valid {
            return Err(invalid(&key, format!("\"{name}\" is not a setting name")));
        }
        // The tenant setting is the pooler's to set, never a client's to keep.
        let tenant_setting = config.databases.values().filter_map(|d| d.tenant.as_ref());
        if let Some(t) = tenant_setting
            .into_iter()
            .find(|t| t.setting.eq_ignore_ascii_case(name))
        {
            return Err(invalid(
                &key,
                format!(
                    "\"{}\" is a tenant setting; it cannot be tracked per client",
                    t.setting
                ),
            ));
        }
    }
    let mut names = HashSet::new();
    for (i, user) in config.users.iter().enumerate() {
        let key = format!("users[{i}]");
        if user.name.is_empty() {
            return Err(invalid(&format!("{key}.name"), "must not be empty".into()));
        }
        if !names.insert(user.name.as_str()) {
            return Err(invalid(
                &format!("{key}.name"),
                format!("user \"{}\" is listed twice", user.name),
            ));
        }
        let secret = Secret::parse(&user.password, &user.name)
            .map_err(|e| invalid(&format!("{key}.password"), e.to_string()))?;
        if p.auth_type == AuthType::Md5 && secret.md5().is_none() {
            return Err(invalid(
                &format!("{key}.password"),
                "auth_type = \"md5\" needs a plaintext or md5 password, not a SCRAM verifier"
                    .into(),
            ));
        }
    }

    for (name, db) in &config.databases {
        let key = format!("databases.{name}");
        if name.is_empty() {
            return Err(invalid(&key, "database name must not be empty".into()));
        }
        if name == ADMIN_DATABASE {
            return Err(invalid(
                &key,
                format!("the name \"{ADMIN_DATABASE}\" is reserved for the admin console"),
            ));
        }
        if db.user.is_empty() {
            return Err(invalid(&format!("{key}.user"), "must not be empty".into()));
        }
        if db.host.is_empty() {
            return Err(invalid(&format!("{key}.host"), "must not be empty".into()));
        }
        if db.pool_size == 0 {
            return Err(invalid(
                &format!("{key}.pool_size"),
                "must be at least 1".into(),
            ));
        }
        if db.min_pool_size > db.pool_size {
            return Err(invalid(
                &format!("{key}.min_pool_size"),
                format!(
                    "{} is more than pool_size {}",
                    db.min_pool_size, db.pool_size
                ),
            ));
        }
        if let Some(t) = &db.tenant {
            let tkey = format!("{key}.tenant");
            SettingName::parse(&t.setting)
                .map_err(|e| invalid(&format!("{tkey}.setting"), e.to_string()))?;
            TenantPattern::new(&t.pattern)
                .map_err(|e| invalid(&format!("{tkey}.pattern"), e.to_string()))?;
            if t.source == TenantSource::Jwt {
                if t.jwt_secret.is_none()
                    && t.jwt_public_key_files.is_empty()
                    && t.jwks_file.is_none()
                {
                    return Err(invalid(
                        &tkey,
                        "source = \"jwt\" needs a key: jwt_secret, jwt_public_key_files or jwks_file".into(),
                    ));
                }
                if t.claim.is_empty() || t.claim.split('.').any(str::is_empty) {
                    return Err(invalid(
                        &format!("{tkey}.claim"),
                        "must be a claim name or a dotted path".into(),
                    ));
                }
                if t.jwt_secret.as_ref().is_some_and(|s| s.len() < 32) {
                    return Err(invalid(
                        &format!("{tkey}.jwt_secret"),
                        "must be at least 32 bytes".into(),
                    ));
                }
            }
            if t.signed_context && t.signing_key.as_ref().is_none_or(|k| k.len() < 32) {
                return Err(invalid(
                    &format!("{tkey}.signing_key"),
                    "signed_context = true needs a signing_key of at least 32 characters".into(),
                ));
            }
        }
        if db.tls_ca_file.is_some() && db.tls != ServerTls::VerifyFull {
            return Err(invalid(
                &format!("{key}.tls_ca_file"),
                "is only used with tls = \"verify-full\"".into(),
            ));
        }
        if let Some(ca) = &db.tls_ca_file {
            crate::tls::load_certs(ca)
                .map_err(|e| invalid(&format!("{key}.tls_ca_file"), e.to_string()))?;
        }
    }
    Ok(())
}
