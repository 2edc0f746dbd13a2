use super::*;

const APP_PW: &str = r"s3cret: '@/%\x";

fn count(cluster: &TempCluster, db: &str, tenant: Option<&str>) -> String {
    let set = tenant
        .map(|t| format!("set app.current_tenant = '{t}'; "))
        .unwrap_or_default();
    cluster
        .psql_tcp(
            "app",
            APP_PW,
            db,
            &format!("{set}select count(*) from items"),
        )
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn temp_cluster_lifecycle_and_demo_schema() {
    let cluster = TempCluster::start(ClusterOptions {
        max_connections: 50,
        extra_conf: vec!["application_name = 'pgcluster-test'".into()],
    })
    .unwrap();
    assert_eq!(cluster.psql("postgres", "select 1").unwrap(), "1\n");
    assert_eq!(
        cluster.psql("postgres", "show max_connections").unwrap(),
        "50\n"
    );
    assert!(cluster.bindir().join("psql").is_file());

    // Quote, backslash and URL-reserved characters exercise the escaping.
    let app_pw = APP_PW;
    cluster.load_demo_schema("demo", app_pw).unwrap();
    // Loading again (role exists, table recreated) must also work.
    cluster.load_demo_schema("demo", app_pw).unwrap();

    assert_eq!(count(&cluster, "demo", Some("acme")), "3");
    assert_eq!(count(&cluster, "demo", Some("globex")), "2");
    assert_eq!(count(&cluster, "demo", None), "0");

    // WITH CHECK: a tenant cannot write another tenant's rows.
    let err = cluster
        .psql_tcp(
            "app",
            app_pw,
            "demo",
            "set app.current_tenant = 'acme'; insert into items (tenant_id, name) values ('globex', 'x')",
        )
        .unwrap_err();
    assert!(err.to_string().contains("row-level security"), "{err}");

    // The superuser password works over TCP (scram).
    let su = cluster
        .psql_tcp(
            SUPERUSER,
            cluster.superuser_password(),
            "demo",
            "select count(*) from items",
        )
        .unwrap();
    assert_eq!(su, "5\n");

    // hba edits take effect after the reload returns.
    cluster
        .prepend_hba(&["host all app 127.0.0.1/32 reject"])
        .unwrap();
    let err = cluster
        .psql_tcp("app", app_pw, "demo", "select 1")
        .unwrap_err();
    assert!(err.to_string().contains("pg_hba.conf rejects"), "{err}");
    assert!(matches!(
        cluster.prepend_hba(&["host all app nonsense"]),
        Err(ClusterError::Hba(_))
    ));

    let pid = cluster.pid() as libc::pid_t;
    let dir = cluster.socket_dir().to_path_buf();
    assert!(cluster.data_dir().starts_with(&dir));
    assert!(cluster.log_path().is_file());
    drop(cluster);

    // SAFETY: signal 0 only checks for existence.
    let alive = unsafe { libc::kill(pid, 0) } == 0;
    assert!(!alive, "postgres pid {pid} still exists");
    assert!(!dir.exists(), "{} not removed", dir.display());
}

#[test]
fn tcp_url_percent_encodes() {
    assert_eq!(env::percent_encode("a-b_c.d~e"), "a-b_c.d~e");
    assert_eq!(
        env::percent_encode("p@ss:w/rd%?#"),
        "p%40ss%3Aw%2Frd%25%3F%23"
    );
    assert_eq!(env::percent_encode("ü"), "%C3%BC");
}

#[test]
fn psql_meta_quote_escapes() {
    assert_eq!(env::psql_meta_quote(r"it's a \ x"), r"'it''s a \\ x'");
}

#[test]
fn cluster_is_send_and_sync() {
    // Async callers share it via Arc across spawn_blocking.
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<TempCluster>();
}
