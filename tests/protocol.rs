//! The wire protocol through the pooler: startup handling byte by byte, framing
//! errors, cancel, COPY, large values, pipelining, clients that vanish, the
//! Unix socket, and server errors passed through unchanged.

mod common;
#[path = "common/wire.rs"]
mod wire;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{sqlstate, Harness, PASSWORD};
use futures_util::{pin_mut, SinkExt, TryStreamExt};
use tokio::io::AsyncWriteExt;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};
use wire::*;

const T: Duration = Duration::from_secs(20);
const VIOLATION: &str = "08P01";
const ACME: (&str, &str) = ("app.acme", "app");

fn pool_size_1(c: &mut tenantpool::config::Config) {
    c.databases.get_mut("app").unwrap().pool_size = 1;
    c.pooler.query_wait_timeout = Duration::from_secs(10);
}

async fn acme(h: &Harness) -> (Wire, (i32, [u8; 4])) {
    Wire::login(h.addr, ACME.0, ACME.1, PASSWORD).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encryption_requests_are_declined_then_startup_works() {
    let h = Harness::start(|_, _| {}).await;
    for requests in [
        &[SSL_REQUEST][..],
        &[GSSENC_REQUEST],
        &[GSSENC_REQUEST, SSL_REQUEST],
    ] {
        let mut w = Wire::connect(h.addr).await;
        for &code in requests {
            w.request(code).await;
            assert_eq!(w.read_byte().await, b'N', "answer to request {code}");
        }
        w.startup(ACME.0, ACME.1).await;
        w.authenticate(ACME.0, PASSWORD).await;
        let (msgs, status) = w
            .simple("select current_setting('app.current_tenant')")
            .await;
        assert_eq!((scalar(&msgs).as_str(), status), ("acme", b'I'));
    }
    // Endless encryption requests are cut off rather than answered forever.
    let mut w = Wire::connect(h.addr).await;
    for _ in 0..3 {
        w.request(SSL_REQUEST).await;
        assert_eq!(w.read_byte().await, b'N');
    }
    assert_eq!(w.expect_fatal().await.code, VIOLATION);
}

/// Bytes a client sends before the answer it must wait for are refused, not
/// dropped or taken as the next step: after an encryption request they may be
/// a man-in-the-middle's (CVE-2021-23214), and after the last authentication
/// message they would be lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_sent_before_its_turn_in_the_handshake_is_refused() {
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
    let h = Harness::start(|_, _| {}).await;
    let startup = startup_packet(PROTOCOL_3_0, &[("user", ACME.0), ("database", ACME.1)]);
    for (code, text) in [
        (SSL_REQUEST, "unencrypted data after SSL request"),
        (
            GSSENC_REQUEST,
            "unencrypted data after GSSAPI encryption request",
        ),
    ] {
        let mut w = Wire::connect(h.addr).await;
        let request = with_length(code.to_be_bytes().to_vec());
        w.send(&[request, startup.clone()].concat()).await;
        w.expect_refusal(VIOLATION, text, text).await;
    }

    // A query sent with the client's final SCRAM message.
    let mut w = Wire::connect(h.addr).await;
    w.startup(ACME.0, ACME.1).await;
    assert_eq!(w.read_msg().await.i32_at(0), 10, "AuthenticationSASL");
    let mut scram = ScramSha256::new(PASSWORD.as_bytes(), ChannelBinding::unsupported());
    w.send(&sasl_initial_response(scram.message())).await;
    let cont = w.read_msg().await;
    assert_eq!(cont.i32_at(0), 11, "AuthenticationSASLContinue");
    scram.update(&cont.body[4..]).unwrap();
    let last = message(b'p', scram.message());
    w.send(&[last, query("select 1")].concat()).await;
    w.expect_refusal(VIOLATION, "before authentication completed", "early query")
        .await;

    // Sent in turn, the same steps log in.
    let mut w = Wire::connect(h.addr).await;
    w.request(SSL_REQUEST).await;
    assert_eq!(w.read_byte().await, b'N');
    w.send(&startup).await;
    w.authenticate(ACME.0, PASSWORD).await;
    assert_eq!(scalar(&w.simple("select count(*) from items").await.0), "3");
}

/// Writes `bytes` in pieces of `size`, each its own TCP segment, pausing so
/// that the pooler reads them apart (the pause shapes traffic; the test holds
/// either way).
async fn send_in_pieces(w: &mut Wire, bytes: &[u8], size: usize) {
    w.stream.set_nodelay(true).unwrap();
    for piece in bytes.chunks(size) {
        w.send(piece).await;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The handshake reader assembles packets from any split: the SSLRequest, the
/// StartupMessage and each SCRAM message arrive a few bytes at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_and_authentication_arriving_in_pieces_log_in() {
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
    let h = Harness::start(|_, _| {}).await;
    let mut w = Wire::connect(h.addr).await;
    send_in_pieces(&mut w, &with_length(SSL_REQUEST.to_be_bytes().to_vec()), 3).await;
    assert_eq!(w.read_byte().await, b'N');
    let startup = startup_packet(PROTOCOL_3_0, &[("user", ACME.0), ("database", ACME.1)]);
    send_in_pieces(&mut w, &startup, 7).await;
    assert_eq!(w.read_msg().await.i32_at(0), 10, "AuthenticationSASL");
    let mut scram = ScramSha256::new(PASSWORD.as_bytes(), ChannelBinding::unsupported());
    send_in_pieces(&mut w, &sasl_initial_response(scram.message()), 2).await;
    let cont = w.read_msg().await;
    assert_eq!(cont.i32_at(0), 11, "AuthenticationSASLContinue");
    scram.update(&cont.body[4..]).unwrap();
    send_in_pieces(&mut w, &message(b'p', scram.message()), 16).await;
    let fin = w.read_msg().await;
    assert_eq!(fin.i32_at(0), 12, "AuthenticationSASLFinal");
    scram.finish(&fin.body[4..]).unwrap();
    assert_eq!(w.read_msg().await.i32_at(0), 0, "AuthenticationOk");
    assert_eq!(w.until_ready().await.last().unwrap().body, b"I");
    assert_eq!(scalar(&w.simple("select count(*) from items").await.0), "3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_startup_packets_get_an_error_and_are_closed() {
    let h = Harness::start(|_, _| {}).await;
    let v3 = PROTOCOL_3_0.to_be_bytes();
    let body = |rest: &[u8]| with_length([&v3[..], rest].concat());
    let len = |n: i32| n.to_be_bytes().to_vec();
    let user = [("user", "app.acme")];
    let ssl_body = with_length([SSL_REQUEST.to_be_bytes(), [0; 4]].concat());
    // Each case sends exactly the bytes the pooler reads before refusing.
    #[rustfmt::skip]
    let cases = [
        ("length < 8", len(4), VIOLATION, "invalid length"),
        ("negative length", len(-1), VIOLATION, "invalid length"),
        ("claims 1 MB", len(1 << 20), VIOLATION, "exceeds the limit"),
        ("v2.0", startup_packet(2 << 16, &user), "0A000", "unsupported frontend protocol 2.0"),
        ("v4.0", startup_packet(4 << 16, &user), "0A000", "unsupported frontend protocol 4.0"),
        ("unterminated", body(b"user\0app.acme"), VIOLATION, "unterminated"),
        ("invalid UTF-8", body(b"user\0\xff\xfe\0\0"), VIOLATION, "UTF-8"),
        ("trailing bytes", body(b"user\0app.acme\0\0x"), VIOLATION, "after the parameter list"),
        ("SSL with a body", ssl_body, VIOLATION, "encryption request"),
    ];
    for (name, bytes, code, text) in cases {
        let mut w = Wire::connect(h.addr).await;
        w.send(&bytes).await;
        w.expect_refusal(code, text, name).await;
    }
    // The pooler kept serving.
    let c = h.connect(ACME.0, ACME.1).await;
    assert_eq!(one::<i64>(&c, "select count(*) from items").await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newer_minor_version_and_pq_options_are_negotiated_down() {
    let h = Harness::start(|_, _| {}).await;
    #[rustfmt::skip]
    let cases = [(2, &["_pq_.something"][..]), (0, &["_pq_.a", "_pq_.b"]), (2, &[])];
    for (minor, options) in cases {
        let mut params = vec![("user", ACME.0), ("database", ACME.1)];
        params.extend(options.iter().map(|o| (*o, "1")));
        let packet = startup_packet(PROTOCOL_3_0 | minor, &params);
        let mut w = Wire::connect(h.addr).await;
        w.send(&packet).await;
        let v = w.read_msg().await;
        assert_eq!(v.tag, b'v', "NegotiateProtocolVersion, 3.{minor}");
        assert_eq!(v.i32_at(0), PROTOCOL_3_0, "newest supported: 3.0");
        assert_eq!(v.i32_at(4), options.len() as i32);
        let listed: Vec<&[u8]> = v.body[8..].split(|&b| b == 0).collect();
        for (i, o) in options.iter().enumerate() {
            assert_eq!(listed[i], o.as_bytes());
        }
        let auth = w.read_msg().await;
        assert_eq!((auth.tag, auth.i32_at(0)), (b'R', 10), "then SASL");
        // The whole login and a query work with such a startup packet.
        let mut w = Wire::connect(h.addr).await;
        w.send(&packet).await;
        w.authenticate(ACME.0, PASSWORD).await;
        assert_eq!(scalar(&w.simple("select count(*) from items").await.0), "3");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_message_length_is_a_protocol_violation() {
    let h = Harness::start(|c, _| pool_size_1(c)).await;
    let insert = "begin; insert into items (tenant_id, name) values ('acme', 'bad-length')";
    // Idle, then inside a transaction (server held), then a length beyond 1 GB.
    #[rustfmt::skip]
    let cases = [(None, b"Q\0\0\0\x02"), (Some(insert), b"Q\0\0\0\x02"), (None, b"d\x7f\xff\xff\xff")];
    for (setup, bad) in cases {
        let (mut w, _) = acme(&h).await;
        if let Some(sql) = setup {
            assert_eq!(w.simple(sql).await.1, b'T');
        }
        w.send(bad).await;
        w.expect_refusal(VIOLATION, "invalid message length", "bad length")
            .await;
    }
    // The pool (of one) is usable and the broken transaction left nothing.
    let c = h.connect(ACME.0, ACME.1).await;
    let left = "select count(*) from items where name = 'bad-length'";
    assert_eq!(one::<i64>(&c, left).await, 0);
    assert!(one::<bool>(&c, "select pg_current_xact_id_if_assigned() is null").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_above_max_message_size_streams_through_uninspected() {
    let h = Harness::start(|c, _| {
        c.pooler.max_message_size = 4096;
        pool_size_1(c);
        guard_off(c);
    })
    .await;
    let c = h.connect(ACME.0, ACME.1).await;
    let literal = "x".repeat(100_000);
    let sql = format!("select length($${literal}$$)");
    let rows = c.simple_query(&sql).await.unwrap();
    let value = rows.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
        _ => None,
    });
    assert_eq!(value.as_deref(), Some("100000"), "big Query");
    assert_eq!(one::<i32>(&c, &sql).await, 100_000, "big Parse");
    // An uninspected statement may change the tenant setting: the pooler must not trust it.
    let sneaky = format!("select $${literal}$$; set app.current_tenant = 'globex'");
    c.batch_execute(&sneaky).await.unwrap();
    let tenant = one::<String>(&c, "select current_setting('app.current_tenant')").await;
    assert_eq!(tenant, "acme");
    assert_eq!(one::<i64>(&c, "select count(*) from items").await, 3);
}

/// With the tenant guard on, a statement too large to check is refused, and its
/// body is dropped as it streams in; the connection goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guard_refuses_queries_above_max_message_size() {
    let h = Harness::start(|c, _| {
        c.pooler.max_message_size = 4096;
        pool_size_1(c);
    })
    .await;
    let c = h.connect(ACME.0, ACME.1).await;
    let sql = format!("select length($${}$$)", "x".repeat(100_000));
    for e in [
        c.simple_query(&sql).await.unwrap_err(),
        c.query(&sql, &[]).await.unwrap_err(),
    ] {
        assert_eq!(sqlstate(&e).as_deref(), Some("42501"));
        assert!(
            e.as_db_error()
                .unwrap()
                .message()
                .contains("max_message_size"),
            "{e}"
        );
    }
    assert_eq!(one::<i64>(&c, "select count(*) from items").await, 3);
}

fn guard_off(c: &mut tenantpool::Config) {
    c.databases
        .get_mut("app")
        .unwrap()
        .tenant
        .as_mut()
        .unwrap()
        .guard = false;
}

fn active(sql: &str) -> String {
    format!("select exists (select from pg_stat_activity where query = '{sql}' and state = 'active' and application_name = 'tenantpool')")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_a_running_query_within_a_second() {
    let h = Harness::start(|_, _| {}).await;
    let direct = h.direct_superuser().await;
    let c = Arc::new(h.connect(ACME.0, ACME.1).await);
    let c2 = c.clone();
    let running = tokio::spawn(async move {
        let r = c2.query_typed("select pg_sleep(10)", &[]).await;
        (r, Instant::now())
    });
    wait_until(&direct, &active("select pg_sleep(10)")).await;
    let sent = Instant::now();
    c.cancel_token().cancel_query(NoTls).await.unwrap();
    let (result, ended) = tokio::time::timeout(T, running).await.unwrap().unwrap();
    let err = result.expect_err("the query was cancelled");
    assert_eq!(sqlstate(&err).as_deref(), Some("57014"), "{err}");
    let took = ended - sent;
    assert!(took < Duration::from_secs(1), "cancel took {took:?}");
    eprintln!("cancel answered after {took:?}");
    assert_eq!(one::<i32>(&c, "select 1").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_with_no_server_or_wrong_key_is_ignored() {
    let h = Harness::start(|_, _| {}).await;
    let direct = h.direct_superuser().await;
    let idle = h.connect(ACME.0, ACME.1).await;
    let (mut busy, (pid, secret)) = Wire::login(h.addr, "app.globex", "app", PASSWORD).await;
    busy.send(&query("select pg_sleep(1.5)")).await;
    wait_until(&direct, &active("select pg_sleep(1.5)")).await;
    // An idle client's cancel, and the busy client's pid with a wrong secret.
    idle.cancel_token().cancel_query(NoTls).await.unwrap();
    let cancel =
        |s: [u8; 4]| with_length([80877102i32.to_be_bytes(), pid.to_be_bytes(), s].concat());
    let mut w = Wire::connect(h.addr).await;
    w.send(&cancel(secret.map(|b| !b))).await;
    w.expect_closed().await;
    let answer = busy.until_ready().await;
    assert_eq!(first_error(&answer), None, "nothing was cancelled");
    assert_eq!(one::<i32>(&idle, "select 1").await, 1);
    // The right key does cancel (so the negative result above means something).
    busy.send(&query("select pg_sleep(10)")).await;
    wait_until(&direct, &active("select pg_sleep(10)")).await;
    let mut w = Wire::connect(h.addr).await;
    w.send(&cancel(secret)).await;
    w.expect_closed().await;
    let answer = busy.until_ready().await;
    assert_eq!(first_error(&answer).unwrap().code, "57014");
}

fn copy_text(rows: std::ops::Range<i32>) -> String {
    rows.map(|i| format!("{i}\tname {i}\n")).collect()
}

/// Sends `text` in pieces into `copy_t`; the row count, or the error.
async fn copy_in(c: &Client, text: String) -> Result<u64, tokio_postgres::Error> {
    let sink = c.copy_in("copy copy_t from stdin").await?;
    pin_mut!(sink);
    for piece in text.as_bytes().chunks(64 << 10) {
        sink.send(Bytes::copy_from_slice(piece)).await?;
    }
    sink.as_mut().finish().await
}

const COPY_TABLE: &str = "create table copy_t (id int primary key, name text not null)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_in_and_out_through_the_pooler() {
    let h = Harness::start(|_, _| {}).await;
    let c = h.connect("app", "bench").await;
    c.batch_execute(COPY_TABLE).await.unwrap();
    assert_eq!(copy_in(&c, copy_text(0..10_000)).await.unwrap(), 10_000);
    let out = c.copy_out("copy (select * from copy_t order by id) to stdout");
    let out: Vec<Bytes> = out.await.unwrap().try_collect().await.unwrap();
    assert!(
        out.concat() == copy_text(0..10_000).as_bytes(),
        "COPY TO STDOUT"
    );
    assert_eq!(one::<i32>(&c, "select 1").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_in_transactions_and_failing_copies() {
    let h = Harness::start(|_, _| {}).await;
    let c = h.connect("app", "bench").await;
    let other = h.direct_superuser().await;
    let count = "select count(*) from copy_t";
    c.batch_execute(COPY_TABLE).await.unwrap();
    // COPY inside an explicit transaction, then more statements in it.
    c.batch_execute("begin").await.unwrap();
    assert_eq!(copy_in(&c, copy_text(0..500)).await.unwrap(), 500);
    let insert = "insert into copy_t values (1000, 'after copy')";
    c.batch_execute(insert).await.unwrap();
    assert_eq!(one::<i64>(&c, count).await, 501);
    assert_eq!(one::<i64>(&other, count).await, 0, "not committed yet");
    c.batch_execute("commit").await.unwrap();
    assert_eq!(one::<i64>(&other, count).await, 501);
    // A bad row half-way: the COPY fails, nothing lands, the connection goes on.
    let text = copy_text(2000..3000) + "x\tbad\n" + &copy_text(3000..4000);
    let e = copy_in(&c, text.clone()).await.expect_err("COPY fails");
    assert_eq!(sqlstate(&e).as_deref(), Some("22P02"), "{e}");
    assert_eq!(one::<i64>(&c, count).await, 501);
    // The same inside a transaction: aborted until ROLLBACK, then fine.
    c.batch_execute("begin").await.unwrap();
    copy_in(&c, text).await.expect_err("COPY fails");
    let e = c.query("select 1", &[]).await.unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("25P02"));
    c.batch_execute("rollback").await.unwrap();
    assert_eq!(one::<i64>(&c, count).await, 501);
    assert!(one::<bool>(&c, "select pg_current_xact_id_if_assigned() is null").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_copy_uses_the_simple_protocol_through_the_pooler() {
    let h = Harness::start(|_, _| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("in.tsv"), dir.path().join("out.tsv"));
    std::fs::write(&input, copy_text(0..5000)).unwrap();
    let url = h.url("app", "bench");
    let psql = |sql: String| {
        let (bin, url) = (h.bin("psql"), url.clone());
        async move { psql(&bin, PASSWORD, &[&url, "-c", &sql]).await }
    };
    psql(COPY_TABLE.into()).await;
    psql(format!("\\copy copy_t from '{}'", input.display())).await;
    let out = output.display();
    psql(format!(
        "\\copy (select * from copy_t order by id) to '{out}'"
    ))
    .await;
    assert!(std::fs::read_to_string(&output).unwrap() == copy_text(0..5000));
    let count = psql("\\copy (select count(*) from copy_t) to stdout".into());
    assert_eq!(count.await, "5000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_thousand_row_result_arrives_complete() {
    let h = Harness::start(|_, _| {}).await;
    let c = h.connect(ACME.0, ACME.1).await;
    let sql = "select g, repeat('x', 100) from generate_series(1, 100000) g";
    let rows = c.query(sql, &[]).await.unwrap();
    assert_eq!(rows.len(), 100_000);
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r.get::<_, i32>(0), i as i32 + 1);
        assert_eq!(r.get::<_, &str>(1).len(), 100);
    }
    let simple = c.simple_query(sql).await.unwrap();
    let rows = simple
        .iter()
        .filter(|m| matches!(m, SimpleQueryMessage::Row(_)));
    assert_eq!(rows.count(), 100_000);
}

/// Tests that move 100+ MB through this process must not overlap (memory, and
/// the RSS measurement below).
static BIG: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_megabyte_bytea_round_trips() {
    let _big = BIG.lock().await;
    let h = Harness::start(|_, _| {}).await;
    let mut c = h.connect("app", "plain").await;
    let data: Vec<u8> = (0..100usize << 20).map(|i| (i * 31 % 251) as u8).collect();
    let started = Instant::now();
    let tx = c.transaction().await.unwrap();
    let create = "create temp table blobs (b bytea) on commit drop";
    tx.batch_execute(create).await.unwrap();
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&data];
    let insert = tx.execute("insert into blobs values ($1)", &params);
    assert_eq!(insert.await.unwrap(), 1);
    let row = tx.query_one("select b, length(b) from blobs", &[]).await;
    let row = row.unwrap();
    assert_eq!(row.get::<_, i32>(1), 100 << 20);
    assert!(row.get::<_, &[u8]>(0) == data, "value changed on the way");
    drop(row);
    tx.commit().await.unwrap();
    eprintln!("100 MB in and out in {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_messages_stream_without_being_held_whole() {
    let _big = BIG.lock().await;
    // The guard refuses queries too big to check; this test is about relaying them.
    let h = Harness::start(|c, _| guard_off(c)).await;
    const SIZE: usize = 160 << 20;
    let (mut w, _) = acme(&h).await;
    let baseline = rss();
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut peak = 0;
            while !stop.load(Ordering::Relaxed) {
                peak = peak.max(rss());
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            peak
        }
    });
    // Client to server: a 160 MB Query written in 64 KB pieces.
    w.send_big_query("select length($$", b'x', SIZE, "$$)")
        .await;
    assert_eq!(scalar(&w.until_ready().await), SIZE.to_string());
    // Server to client: a 160 MB DataRow, read and dropped piece by piece.
    w.send(&query(&format!("select repeat('y', {SIZE})"))).await;
    assert_eq!(w.skim_until_ready(b'y').await, (b"TDCZ".to_vec(), SIZE));
    stop.store(true, Ordering::Relaxed);
    let grew = sampler.await.unwrap().saturating_sub(baseline);
    let grew_mb = grew >> 20;
    eprintln!("RSS grew by {grew_mb} MB while relaying");
    assert!(
        grew_mb < 100,
        "RSS grew by {grew_mb} MB relaying 160 MB messages"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_in_transaction_then_rollback() {
    let h = Harness::start(|c, _| pool_size_1(c)).await;
    let c = h.connect(ACME.0, ACME.1).await;
    let other = h.connect(ACME.0, ACME.1).await;
    let insert = "begin; insert into items (tenant_id, name) values ('acme', 'rolled back')";
    c.batch_execute(insert).await.unwrap();
    let e = c.query("select 1/0", &[]).await.unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("22012"));
    let e = c.query("select 1", &[]).await.unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("25P02"), "failed transaction");
    c.batch_execute("rollback").await.unwrap();
    // The only server is free again: another client gets it, clean.
    let q = "select count(*) from items where name = 'rolled back'";
    assert_eq!(tokio::time::timeout(T, one::<i64>(&other, q)).await, Ok(0));
    let commit = "begin; insert into items (tenant_id, name) values ('acme', 'kept'); commit";
    c.batch_execute(commit).await.unwrap();
    let kept = "select count(*) from items where name = 'kept'";
    assert_eq!(one::<i64>(&other, kept).await, 1);
    assert!(one::<bool>(&c, "select pg_current_xact_id_if_assigned() is null").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_queries_on_one_client() {
    // One server, so `query_one`'s named statements are always where it executes them.
    let h = Harness::start(|c, _| pool_size_1(c)).await;
    let c = h.connect(ACME.0, ACME.1).await;
    let sql = "select 10 / $1::int, current_setting('app.current_tenant')";
    let all = (0..50).map(|i: i32| {
        let c = &c;
        async move { c.query_one(sql, &[&(i - 25)]).await }
    });
    for (i, r) in (0..50).zip(futures_util::future::join_all(all).await) {
        match r {
            Ok(row) => {
                assert_eq!(row.get::<_, i32>(0), 10 / (i - 25));
                assert_eq!(row.get::<_, &str>(1), "acme");
            }
            Err(e) => assert_eq!((i, sqlstate(&e).as_deref()), (25, Some("22012"))),
        }
    }
    // Several simple Queries in one write.
    let (mut w, _) = Wire::login(h.addr, "app.globex", "app", PASSWORD).await;
    #[rustfmt::skip]
    let three = [query("select 1"), query("select 1/0"), query("select count(*) from items")];
    w.send(&three.concat()).await;
    assert_eq!(scalar(&w.until_ready().await), "1");
    assert_eq!(first_error(&w.until_ready().await).unwrap().code, "22012");
    assert_eq!(scalar(&w.until_ready().await), "2");
}

/// After a client vanished mid-transaction: the pool's only server is clean and
/// the rows named `name` in `table` never appear.
async fn assert_clean_after_vanish(h: &Harness, table: &str, name: &str, old_pid: i32) {
    let c = h.connect(ACME.0, ACME.1).await;
    let sql = format!("select count(*) from {table} where name = '{name}'");
    assert_eq!(tokio::time::timeout(T, one::<i64>(&c, &sql)).await, Ok(0));
    assert!(one::<bool>(&c, "select pg_current_xact_id_if_assigned() is null").await);
    let direct = h.direct_superuser().await;
    if one::<i32>(&c, "select pg_backend_pid()").await != old_pid {
        // Closed rather than rolled back: the old backend must go away.
        let gone =
            format!("select not exists (select from pg_stat_activity where pid = {old_pid})");
        wait_until(&direct, &gone).await;
    }
    let busy = "select not exists (select from pg_stat_activity where usename = 'app' and state <> 'idle')";
    wait_until(&direct, busy).await;
    assert_eq!(one::<i64>(&direct, &sql).await, 0, "the rows never appear");
}

fn pid_of(msgs: &[Msg]) -> i32 {
    scalar(msgs).parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_killed_mid_transaction_leaves_no_trace() {
    let h = Harness::start(|c, _| pool_size_1(c)).await;
    let insert = "insert into items (tenant_id, name) values ('acme', 'uncommitted') returning pg_backend_pid()";
    // A raw socket that just closes, and one that sends Terminate mid-transaction.
    for terminate in [false, true] {
        let (mut w, _) = acme(&h).await;
        assert_eq!(w.simple("begin").await.1, b'T');
        let (msgs, status) = w.simple(insert).await;
        assert_eq!(status, b'T');
        if terminate {
            w.send(&message(b'X', b"")).await;
            w.expect_closed().await;
        }
        drop(w);
        assert_clean_after_vanish(&h, "items", "uncommitted", pid_of(&msgs)).await;
    }
    // tokio-postgres whose connection task is aborted (no Terminate is sent).
    let config = h.config(ACME.0, PASSWORD, ACME.1);
    let (client, conn) = config.connect(NoTls).await.unwrap();
    let task = tokio::spawn(conn);
    client.batch_execute("begin").await.unwrap();
    let pid: i32 = client.query_one(insert, &[]).await.unwrap().get(0);
    task.abort();
    drop(client);
    assert_clean_after_vanish(&h, "items", "uncommitted", pid).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_killed_mid_copy_leaves_no_trace() {
    let h = Harness::start(|c, _| pool_size_1(c)).await;
    // COPY FROM is not allowed on an RLS table, so into a plain one.
    let direct = h.direct_superuser().await;
    let create =
        "create table copy_sink (tenant_id text, name text); grant all on copy_sink to app";
    direct.batch_execute(create).await.unwrap();
    let row = message(b'd', b"acme\tcopied\n");
    // Autocommit COPY cut in the middle of a CopyData; a COPY inside BEGIN cut between messages.
    for (begin, cut) in [(false, true), (true, false)] {
        let (mut w, _) = acme(&h).await;
        if begin {
            assert_eq!(w.simple("begin").await.1, b'T');
        }
        let pid = pid_of(&w.simple("select pg_backend_pid()").await.0);
        w.send(&query("copy copy_sink from stdin")).await;
        assert_eq!(w.read_msg().await.tag, b'G', "CopyInResponse");
        w.send(&row.repeat(100)).await;
        if cut {
            w.send(&[&b"d"[..], &1000i32.to_be_bytes(), b"acme\tcop"].concat())
                .await;
        }
        w.stream.shutdown().await.unwrap();
        drop(w);
        assert_clean_after_vanish(&h, "copy_sink", "copied", pid).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_socket_serves_psql() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    let h = Harness::start(move |c, _| c.pooler.unix_socket_dir = Some(path)).await;
    let socket = dir.path().join(format!(".s.PGSQL.{}", h.port()));
    assert_eq!(h.unix_socket.as_ref(), Some(&socket));
    let (host, port) = (dir.path().to_str().unwrap(), h.port().to_string());
    let sql = "select count(*) from items";
    let args = ["-h", host, "-p", &port, "-U", "app.acme", "app", "-c", sql];
    assert_eq!(psql(&h.bin("psql"), PASSWORD, &args).await, "3");
    let mut config = h.config("app.globex", PASSWORD, "app");
    config.host_path(dir.path());
    let (c, conn) = config.connect(NoTls).await.unwrap();
    tokio::spawn(conn);
    assert_eq!(one::<i64>(&c, sql).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_reach_the_client_unchanged() {
    // One case raises its error from a DO block, which the guard refuses by default.
    let h = Harness::start(|c, _| {
        c.databases
            .get_mut("app")
            .unwrap()
            .tenant
            .as_mut()
            .unwrap()
            .allow_do_blocks = true;
    })
    .await;
    let pooled = h.connect(ACME.0, ACME.1).await;
    let url = h.cluster.tcp_url("app", PASSWORD, "app");
    let (direct, conn) = tokio_postgres::connect(&url, NoTls).await.unwrap();
    tokio::spawn(conn);
    let cases = [
        "select * from nonexistent",
        "do $$ begin raise exception 'boom %', 42 using errcode = '22023', detail = 'd', hint = 'h'; end $$",
        "insert into items (tenant_id, name) values ('globex', 'not mine')",
    ];
    for sql in cases {
        let a = pooled.batch_execute(sql).await.unwrap_err();
        let b = direct.batch_execute(sql).await.unwrap_err();
        // Every field: severity, code, message, detail, hint, position, where, file, line, routine.
        assert_eq!(a.as_db_error().unwrap(), b.as_db_error().unwrap(), "{sql}");
    }
    let e = pooled.batch_execute(cases[0]).await.unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("42P01"));
    let message = e.as_db_error().unwrap().message();
    assert_eq!(message, "relation \"nonexistent\" does not exist");
    assert_eq!(one::<i64>(&pooled, "select count(*) from items").await, 3);
}
