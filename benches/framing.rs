//! Micro-benchmarks of the relay's framing path and the startup decoder, so a
//! regression shows without a database: `cargo bench --bench framing`.

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tenantpool::config::{TenantConfig, TenantSource};
use tenantpool::protocol::startup;
use tenantpool::relay::params::Tracked;
use tenantpool::relay::{ClientHalf, ServerHalf, Tracker};
use tenantpool::tenant::guard::Guard;
use tenantpool::tenant::{SettingName, TenantPolicy};

fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    v.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    v.extend_from_slice(body);
    v
}

/// What pgbench -S -M extended sends per transaction.
fn extended_select() -> Vec<u8> {
    [
        msg(
            b'P',
            b"\0SELECT abalance FROM pgbench_accounts WHERE aid = $1;\0\0\0",
        ),
        msg(b'B', b"\0\0\0\0\0\x01\0\0\0\x0512345\0\0"),
        msg(b'D', b"P\0"),
        msg(b'E', b"\0\0\0\0\0"),
        msg(b'S', b""),
    ]
    .concat()
}

/// What the server answers to it.
fn extended_answer() -> Vec<u8> {
    [
        msg(b'1', b""),
        msg(b'2', b""),
        msg(
            b'T',
            b"\0\x01abalance\0\0\0\0\0\0\0\0\0\x17\0\x04\xff\xff\xff\xff\0\0",
        ),
        msg(b'D', b"\0\x01\0\0\0\x041234"),
        msg(b'C', b"SELECT 1\0"),
        msg(b'Z', b"I"),
    ]
    .concat()
}

fn policy() -> TenantPolicy {
    TenantPolicy::new(&TenantConfig::new(TenantSource::UserSuffix)).unwrap()
}

fn bench_relay_framing(c: &mut Criterion) {
    let request = extended_select();
    let answer = extended_answer();
    let policy = policy();
    let mut g = c.benchmark_group("relay");
    g.throughput(Throughput::Bytes((request.len() + answer.len()) as u64));
    g.bench_function("frame extended select round trip", |b| {
        let mut inbound = ClientHalf::default();
        let mut outbound = ServerHalf::default();
        let mut server_buf = BytesMut::with_capacity(8192);
        let mut tracker = Tracker::default();
        b.iter(|| {
            inbound.buf.extend_from_slice(&request);
            inbound
                .scan(&mut tracker, Some(&policy), 1 << 20, None)
                .unwrap();
            let mut sink = Vec::new();
            futures_write(&mut inbound, &mut sink);
            server_buf.extend_from_slice(&answer);
            outbound
                .scan(&mut server_buf, &mut tracker, None, 1 << 20, None)
                .unwrap();
            let n = outbound.ready_bytes(&server_buf).len();
            outbound.consumed(&mut server_buf, n);
            assert!(tracker.is_idle());
            black_box(n)
        })
    });
    let big = msg(b'D', &vec![7u8; 1 << 20]);
    g.throughput(Throughput::Bytes(big.len() as u64));
    g.bench_function("stream a 1 MiB DataRow in 64 KiB reads", |b| {
        let mut outbound = ServerHalf::default();
        let mut tracker = Tracker::default();
        let mut buf = BytesMut::with_capacity(64 * 1024);
        b.iter(|| {
            for chunk in big.chunks(64 * 1024) {
                buf.extend_from_slice(chunk);
                outbound
                    .scan(&mut buf, &mut tracker, None, 4096, None)
                    .unwrap();
                let n = outbound.ready_bytes(&buf).len();
                outbound.consumed(&mut buf, n);
            }
        })
    });
    g.finish();
}

/// Drains the inbound half into a Vec through its AsyncWrite path.
fn futures_write(half: &mut ClientHalf, sink: &mut Vec<u8>) {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    while half.has_output() {
        let _ = half.poll_write_to(&mut cx, sink);
    }
}

fn bench_startup(c: &mut Criterion) {
    let mut body = 196608i32.to_be_bytes().to_vec();
    for (k, v) in [
        ("user", "app.acme"),
        ("database", "app"),
        ("client_encoding", "UTF8"),
        ("application_name", "bench"),
    ] {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    c.bench_function("startup decode", |b| {
        b.iter(|| black_box(startup::decode(black_box(&body)).unwrap()))
    });
}

/// The tenant guard's check of a statement text, on the hot path of every Query/Parse.
fn bench_guard(c: &mut Criterion) {
    let setting = SettingName::parse("app.current_tenant").unwrap();
    let guard = Guard::new(&setting, false);
    // A typical ORM SELECT (~150 bytes): the prefilter finds nothing to lex.
    let select = br#"SELECT "users"."id", "users"."email", "users"."name" FROM "users" WHERE "users"."org_id" = $1 ORDER BY "users"."created_at" DESC LIMIT $2 OFFSET $3"#;
    // An ORM UPDATE (~150 bytes): its `SET` makes the guard lex it, up to the SET clause.
    let update = br#"UPDATE "users" SET "name" = $1, "email" = $2, "role" = $3, "updated_at" = $4 WHERE "users"."id" = $5 AND "users"."org_id" = $6 RETURNING "users"."id""#;
    // A 2 KB multi-row INSERT.
    let mut insert =
        String::from(r#"INSERT INTO "events" ("org_id", "kind", "payload", "created_at") VALUES "#);
    let mut i = 0;
    while insert.len() < 2000 {
        if i > 0 {
            insert.push_str(", ");
        }
        insert.push_str(&format!(
            r#"(${}, 'page_view', '{{"path": "/docs/{i}", "ms": {i}}}', now())"#,
            i + 1
        ));
        i += 1;
    }
    let mut g = c.benchmark_group("guard");
    for (name, sql) in [
        ("check ORM select (150 B)", &select[..]),
        ("check ORM update (150 B, lexed)", &update[..]),
        ("check insert (2 KB)", insert.as_bytes()),
    ] {
        assert_eq!(guard.check(sql), Ok(()));
        g.throughput(Throughput::Bytes(sql.len() as u64));
        g.bench_function(name, |b| b.iter(|| black_box(guard.check(black_box(sql)))));
    }
    g.finish();
}

/// The two word scans every Query/Parse text of a client passes: the tenant
/// setting scanner (tenant-scoped databases) and the watch for SQL naming a
/// tracked setting (`track_extra_parameters`).
fn bench_scans(c: &mut Criterion) {
    let policy = policy();
    let tracked = Tracked::new(&["search_path".to_owned()]);
    let pgbench = &b"SELECT abalance FROM pgbench_accounts WHERE aid = 12345;"[..];
    let select = &br#"SELECT "users"."id", "users"."email", "users"."name" FROM "users" WHERE "users"."org_id" = $1 ORDER BY "users"."created_at" DESC LIMIT $2 OFFSET $3"#[..];
    let update = &br#"UPDATE "users" SET "name" = $1, "email" = $2, "role" = $3, "updated_at" = $4 WHERE "users"."id" = $5 AND "users"."org_id" = $6 RETURNING "users"."id""#[..];
    let mut g = c.benchmark_group("scan");
    for (name, sql) in [
        ("pgbench select", pgbench),
        ("ORM select (150 B)", select),
        ("ORM update (150 B)", update),
    ] {
        assert!(!policy.may_change_setting(sql) && !tracked.may_change_extra(sql));
        g.throughput(Throughput::Bytes(sql.len() as u64));
        g.bench_function(format!("tenant setting, {name}"), |b| {
            b.iter(|| black_box(policy.may_change_setting(black_box(sql))))
        });
        g.bench_function(format!("tracked settings, {name}"), |b| {
            b.iter(|| black_box(tracked.may_change_extra(black_box(sql))))
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    bench_relay_framing,
    bench_startup,
    bench_guard,
    bench_scans
);
criterion_main!(benches);
