//! Micro-benchmarks of pool checkout/check-in, so a regression in the pool's
//! bookkeeping shows without a database: `cargo bench --bench pool`.
//!
//! The pool's connections log in to a stand-in server in this process (trust
//! login: AuthenticationOk, BackendKeyData, ReadyForQuery; then it reads and
//! discards), opened once before measuring. After that, checkout and check-in
//! touch no socket: what is timed is the pool's own work, plus one
//! non-blocking readiness check of the idle connection (`is_healthy`).

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use tenantpool::config::PoolMode;
use tenantpool::pool::{Pool, PoolSettings, ServerConn};
use tenantpool::server::ServerTarget;
use tenantpool::tenant::{ServerTenant, TenantId, TenantPattern};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::runtime::Runtime;

const POOL_SIZE: usize = 20;

/// A server that accepts any startup packet with a trust login and then
/// ignores everything it is sent.
async fn stand_in_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut pid: i32 = 1000;
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            pid += 1;
            tokio::spawn(async move {
                let mut len = [0u8; 4];
                if s.read_exact(&mut len).await.is_err() {
                    return;
                }
                let mut startup = vec![0u8; i32::from_be_bytes(len) as usize - 4];
                if s.read_exact(&mut startup).await.is_err() {
                    return;
                }
                let mut answer = Vec::new();
                answer.extend_from_slice(&[b'R', 0, 0, 0, 8, 0, 0, 0, 0]);
                answer.extend_from_slice(&[b'K', 0, 0, 0, 12]);
                answer.extend_from_slice(&pid.to_be_bytes());
                answer.extend_from_slice(&[1, 2, 3, 4]);
                answer.extend_from_slice(&[b'Z', 0, 0, 0, 5, b'I']);
                if s.write_all(&answer).await.is_err() {
                    return;
                }
                let mut sink = [0u8; 1024];
                while matches!(s.read(&mut sink).await, Ok(n) if n > 0) {}
            });
        }
    });
    addr
}

/// A pool of `POOL_SIZE` open, idle connections to the stand-in server.
async fn warm_pool() -> Arc<Pool> {
    let addr = stand_in_server().await;
    let target = ServerTarget {
        host: addr.ip().to_string(),
        port: addr.port(),
        dbname: "bench".into(),
        user: "bench".into(),
        password: None,
        connect_timeout: Duration::from_secs(5),
        tls: None,
    };
    let settings = PoolSettings {
        size: POOL_SIZE,
        min_size: 0,
        mode: PoolMode::Transaction,
        query_wait_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(3600),
        lifetime: Duration::from_secs(3600),
        identify_backend: false,
    };
    let pool = Pool::new("bench".into(), target, settings);
    let mut conns = Vec::new();
    for i in 0..POOL_SIZE {
        conns.push(pool.checkout(None, false, i as u64).await.unwrap());
    }
    for c in conns {
        pool.checkin(c);
    }
    assert_eq!(pool.counts(), (POOL_SIZE, POOL_SIZE, 0));
    pool
}

fn tenants(n: usize) -> Vec<TenantId> {
    let pattern = TenantPattern::new("[a-z0-9]{1,63}").unwrap();
    (0..n)
        .map(|i| pattern.check(&format!("t{i}")).unwrap())
        .collect()
}

fn current_thread() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn bench_uncontended(c: &mut Criterion) {
    let rt = current_thread();
    let pool = rt.block_on(warm_pool());
    let ids = tenants(POOL_SIZE);
    // Give each idle connection a different tenant, as affinity would leave them.
    rt.block_on(async {
        let conns: Vec<Box<ServerConn>> = futures_util::future::join_all(
            (0..POOL_SIZE).map(|i| pool.checkout(None, false, i as u64)),
        )
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
        for (conn, id) in conns.into_iter().zip(&ids) {
            let mut conn = conn;
            conn.tenant = ServerTenant::Known(Some(id.as_arc().clone()));
            pool.checkin(conn);
        }
    });

    let mut g = c.benchmark_group("pool");
    g.bench_function("checkout+checkin, idle connection, no tenant", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let t = Instant::now();
                for i in 0..iters {
                    let conn = pool.checkout(None, false, i).await.unwrap();
                    pool.checkin(black_box(conn));
                }
                t.elapsed()
            })
        })
    });
    g.bench_function("checkout+checkin, affinity hit among 20 tenants", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let t = Instant::now();
                for i in 0..iters {
                    // The least recently used tenant each time: the scan goes the whole idle list.
                    let id = &ids[(i as usize) % POOL_SIZE];
                    let conn = pool.checkout(Some(id), true, i).await.unwrap();
                    pool.checkin(black_box(conn));
                }
                t.elapsed()
            })
        })
    });
    g.finish();
}

/// 64 tasks on two worker threads share 20 connections: most checkouts wait,
/// and each check-in hands its connection to the longest waiter.
fn bench_contended(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let pool = rt.block_on(warm_pool());
    const TASKS: u64 = 64;
    let mut g = c.benchmark_group("pool");
    g.bench_function(
        "64 tasks, pool_size 20: checkout+checkin (per checkout)",
        |b| {
            b.iter_custom(|iters| {
                let per_task = iters.div_ceil(TASKS);
                rt.block_on(async {
                    let t = Instant::now();
                    let tasks: Vec<_> = (0..TASKS)
                        .map(|task| {
                            let pool = Arc::clone(&pool);
                            tokio::spawn(async move {
                                for _ in 0..per_task {
                                    let conn = pool.checkout(None, false, task).await.unwrap();
                                    tokio::task::yield_now().await;
                                    pool.checkin(conn);
                                }
                            })
                        })
                        .collect();
                    for t in tasks {
                        t.await.unwrap();
                    }
                    // Scale to the requested count (per_task * TASKS may exceed it).
                    t.elapsed()
                        .mul_f64(iters as f64 / (per_task * TASKS) as f64)
                })
            })
        },
    );
    g.finish();
}

criterion_group!(benches, bench_uncontended, bench_contended);
criterion_main!(benches);
