//! `tenantpool demo`: a throwaway PostgreSQL with a two-tenant RLS schema and
//! the pooler in front of it, so a newcomer sees tenant isolation in a minute.

use std::time::Duration;

use crate::config::{
    Config, DatabaseConfig, PoolMode, ServerTls, TenantConfig, TenantSource, UserConfig,
};
use crate::pgcluster::{ClusterOptions, TempCluster};
use crate::Pooler;

/// The password of the demo's `app` role, both on the server and in the pooler.
pub const DEMO_PASSWORD: &str = "app-secret";

/// The pooler config the demo runs, pointing at `cluster`.
pub fn config(cluster: &TempCluster, listen: &str) -> Config {
    let mut config = Config {
        pooler: Default::default(),
        users: vec![UserConfig {
            name: "app".into(),
            password: DEMO_PASSWORD.into(),
        }],
        databases: Default::default(),
        metrics: None,
    };
    config.pooler.listen = listen.into();
    config.pooler.query_wait_timeout = Duration::from_secs(30);
    config.databases.insert(
        "app".into(),
        DatabaseConfig {
            host: cluster.host().into(),
            port: cluster.port(),
            dbname: Some("app".into()),
            user: "app".into(),
            password: Some(DEMO_PASSWORD.into()),
            pool_size: 5,
            min_pool_size: 0,
            pool_mode: PoolMode::Transaction,
            tls: ServerTls::Disable,
            tls_ca_file: None,
            tenant: Some(TenantConfig::new(TenantSource::UserSuffix)),
        },
    );
    config
}

/// Runs the demo until Ctrl-C. `port` 0 picks a free one.
pub async fn run(port: u16) -> Result<(), Box<dyn std::error::Error>> {
    eprintln!("starting a throwaway PostgreSQL cluster...");
    let cluster = tokio::task::spawn_blocking(|| {
        let cluster = TempCluster::start(ClusterOptions::default())?;
        cluster.load_demo_schema("app", DEMO_PASSWORD)?;
        Ok::<_, crate::pgcluster::ClusterError>(cluster)
    })
    .await??;

    let config = config(&cluster, &format!("127.0.0.1:{port}"));
    crate::config::validate(&config, "<demo>")?;
    let pooler = match Pooler::bind(config).await {
        Ok(p) => p,
        Err(e) if port != 0 => {
            eprintln!("{e}; using a free port instead");
            Pooler::bind(self::config(&cluster, "127.0.0.1:0")).await?
        }
        Err(e) => return Err(e.into()),
    };
    let port = pooler.local_addr().port();
    println!(
        "\ntenantpool demo is running: PostgreSQL (from {}) on port {}, the pooler on port {port}.\n\
         Two tenants share the table `items`; each URL below sees only its own rows:\n\n  \
         psql 'postgres://app.acme:{DEMO_PASSWORD}@127.0.0.1:{port}/app' -c 'select * from items'\n  \
         psql 'postgres://app.globex:{DEMO_PASSWORD}@127.0.0.1:{port}/app' -c 'select * from items'\n\n\
         The tenant is the part of the user name after the last dot; the pooler sets\n\
         app.current_tenant before each transaction and the RLS policy does the rest.\n\
         Press Ctrl-C to stop (the cluster is removed).",
        cluster.bindir().display(),
        cluster.port(),
    );
    pooler.run(crate::shutdown_signal()).await;
    eprintln!("stopping; removing the throwaway cluster");
    drop(cluster);
    Ok(())
}
