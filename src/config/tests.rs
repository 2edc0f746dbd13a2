use super::*;

const EXAMPLE: &str = r#"
[pooler]
listen = "127.0.0.1:6432"
max_client_connections = 10000

[[users]]
name = "app"
password = "app-secret"

[databases.app]
host = "127.0.0.1"
port = 5432
dbname = "app"
user = "app"
password = "app-secret"
pool_size = 20
pool_mode = "transaction"

[databases.app.tenant]
source = "user_suffix"
setting = "app.current_tenant"
"#;

fn err(text: &str) -> String {
    Config::from_toml(text, "t.toml").unwrap_err().to_string()
}

#[test]
fn issue_schema_parses_with_defaults() {
    let c = Config::from_toml(EXAMPLE, "t.toml").unwrap();
    let db = &c.databases["app"];
    assert_eq!(db.pool_size, 20);
    assert_eq!(db.pool_mode, PoolMode::Transaction);
    let t = db.tenant.as_ref().unwrap();
    assert_eq!(t.source, TenantSource::UserSuffix);
    assert!(t.affinity && t.required);
    assert_eq!(t.pattern, DEFAULT_TENANT_PATTERN);
    assert_eq!(c.pooler.auth_type, AuthType::ScramSha256);
    assert_eq!(c.pooler.query_wait_timeout, Duration::from_secs(120));
}

#[test]
fn durations_are_human_readable() {
    let c = Config::from_toml(
        "[pooler]\nquery_wait_timeout = \"250ms\"\nserver_lifetime = \"2h\"\n",
        "t.toml",
    )
    .unwrap();
    assert_eq!(c.pooler.query_wait_timeout, Duration::from_millis(250));
    assert_eq!(c.pooler.server_lifetime, Duration::from_secs(7200));
}

#[test]
fn errors_name_file_and_key() {
    let e = err("[pooler]\nlisten = \"nowhere\"\n");
    assert!(e.starts_with("t.toml: pooler.listen:"), "{e}");
    let many: Vec<String> = (0..=MAX_TRACKED_EXTRAS)
        .map(|i| format!("\"s{i}\""))
        .collect();
    let e = err(&format!(
        "[pooler]\ntrack_extra_parameters = [{}]\n",
        many.join(",")
    ));
    assert!(
        e.contains("pooler.track_extra_parameters: at most 32"),
        "{e}"
    );
    let e = err("[pooler]\nlisen = \"127.0.0.1:1\"\n");
    assert!(e.contains("t.toml") && e.contains("lisen"), "{e}");
    let e = err("[databases.app]\nuser = \"app\"\npool_size = 0\n");
    assert!(e.contains("databases.app.pool_size"), "{e}");
    let e = err("[databases.app]\nuser = \"app\"\npool_size = 2\nmin_pool_size = 3\n");
    assert!(e.contains("databases.app.min_pool_size"), "{e}");
    let e = err("[databases.app]\nuser = \"app\"\n[databases.app.tenant]\nsource = \"user_suffix\"\nsetting = \"Tenant\"\n");
    assert!(e.contains("databases.app.tenant.setting"), "{e}");
    let e = err("[databases.app]\nuser = \"app\"\n[databases.app.tenant]\nsource = \"user_suffix\"\npattern = \"[\"\n");
    assert!(e.contains("databases.app.tenant.pattern"), "{e}");
    let e = err("[databases.app]\nuser = \"app\"\n[databases.app.tenant]\nsource = \"header\"\n");
    assert!(e.contains("header"), "{e}");
    let e = err("[databases.tenantpool]\nuser = \"app\"\n");
    assert!(e.contains("reserved"), "{e}");
    let e = err(
        "[[users]]\nname = \"a\"\npassword = \"x\"\n[[users]]\nname = \"a\"\npassword = \"y\"\n",
    );
    assert!(e.contains("users[1].name"), "{e}");
}

#[test]
fn md5_needs_a_usable_secret() {
    let verifier = postgres_protocol::password::scram_sha_256(b"pw");
    let text = format!(
        "[pooler]\nauth_type = \"md5\"\n[[users]]\nname = \"a\"\npassword = \"{verifier}\"\n"
    );
    assert!(err(&text).contains("users[0].password"));
    let ok = "[pooler]\nauth_type = \"md5\"\n[[users]]\nname = \"a\"\npassword = \"pw\"\n";
    assert!(Config::from_toml(ok, "t.toml").is_ok());
}

#[test]
fn example_config_file_is_valid() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/tenantpool.toml");
    Config::load(&path).unwrap();
}

#[test]
fn docker_config_file_is_valid() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/docker/tenantpool.toml");
    Config::load(&path).unwrap();
}

#[test]
fn metrics_table_is_optional_with_loopback_default() {
    assert!(Config::from_toml(EXAMPLE, "t.toml")
        .unwrap()
        .metrics
        .is_none());
    let c = Config::from_toml(&format!("{EXAMPLE}\n[metrics]\n"), "t.toml").unwrap();
    let m = c.metrics.unwrap();
    assert_eq!(m.listen, "127.0.0.1:9930");
    assert_eq!(m.top_tenants, 0);
    let e = err(&format!("{EXAMPLE}\n[metrics]\nlisten = \"nowhere\"\n"));
    assert!(e.contains("metrics.listen"), "{e}");
    let e = err(&format!("{EXAMPLE}\n[metrics]\ntop_tenants = 1000\n"));
    assert!(e.contains("metrics.top_tenants"), "{e}");
    let e = err(&format!("{EXAMPLE}\n[metrics]\nport = 1\n"));
    assert!(e.contains("unknown field"), "{e}");
}
