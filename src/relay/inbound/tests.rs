use super::*;
use crate::config::{TenantConfig, TenantSource};

fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    v.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    v.extend_from_slice(body);
    v
}

fn policy() -> TenantPolicy {
    TenantPolicy::new(&TenantConfig::new(TenantSource::UserSuffix)).unwrap()
}

#[test]
fn holds_query_until_whole_then_inspects() {
    let mut half = ClientHalf::default();
    let mut t = Tracker::default();
    let p = policy();
    let q = msg(b'Q', b"RESET ALL\0");
    half.buf.extend_from_slice(&q[..7]);
    half.scan(&mut t, Some(&p), 1024, None).unwrap();
    assert!(!half.has_ready());
    assert!(!t.tenant_touched);
    half.buf.extend_from_slice(&q[7..]);
    half.scan(&mut t, Some(&p), 1024, None).unwrap();
    assert!(half.has_ready());
    assert!(t.tenant_touched);
    assert!(!t.is_idle());
}

#[test]
fn streams_large_messages_and_strips_terminate() {
    let mut half = ClientHalf::default();
    let mut t = Tracker::default();
    let big = msg(b'd', &vec![1u8; 100_000]);
    half.buf.extend_from_slice(&big[..50_000]);
    half.scan(&mut t, None, 1024, None).unwrap();
    assert_eq!(half.ready, 50_000);
    half.buf.extend_from_slice(&big[50_000..]);
    half.buf.extend_from_slice(&msg(b'X', b""));
    half.scan(&mut t, None, 1024, None).unwrap();
    assert_eq!(half.ready, big.len());
    assert_eq!(half.buf.len(), big.len());
    assert!(half.terminated);
}

fn unguarded() -> TenantPolicy {
    let mut t = TenantConfig::new(TenantSource::UserSuffix);
    t.guard = false;
    TenantPolicy::new(&t).unwrap()
}

#[test]
fn oversized_query_streams_and_marks_tenant_touched() {
    let mut half = ClientHalf::default();
    let mut t = Tracker::default();
    let p = unguarded();
    let mut body = vec![b'x'; 5000];
    body.push(0);
    half.buf.extend_from_slice(&msg(b'Q', &body)[..100]);
    half.scan(&mut t, Some(&p), 1024, None).unwrap();
    assert_eq!(half.ready, 100);
    assert!(t.tenant_touched);
}

#[test]
fn guard_refuses_oversized_query_and_drops_its_body() {
    let mut half = ClientHalf::default();
    let mut t = Tracker::default();
    let p = policy();
    let mut body = vec![b'x'; 5000];
    body.push(0);
    let big = msg(b'Q', &body);
    half.buf.extend_from_slice(&big[..100]);
    half.scan(&mut t, Some(&p), 1024, None).unwrap();
    let replaced = half.ready;
    assert!(half.buf[..replaced]
        .windows(16)
        .any(|w| w == b"tenantpool_guard"));
    half.buf.extend_from_slice(&big[100..]);
    half.buf.extend_from_slice(&msg(b'S', b""));
    half.scan(&mut t, Some(&p), 1024, None).unwrap();
    assert_eq!(half.buf.len(), replaced + 5, "body dropped, Sync kept");
    assert_eq!(t.refusals, 1);
}

#[test]
fn guard_replaces_a_refused_query_in_place() {
    let mut half = ClientHalf::default();
    let mut t = Tracker::default();
    let p = policy();
    half.buf.extend_from_slice(&msg(b'Q', b"select 1\0"));
    half.buf
        .extend_from_slice(&msg(b'Q', b"SET app.current_tenant = 'x'\0"));
    half.buf.extend_from_slice(&msg(b'Q', b"select 2\0"));
    half.scan(&mut t, Some(&p), 1024, None).unwrap();
    let out = &half.buf[..half.ready];
    assert!(out.starts_with(&msg(b'Q', b"select 1\0")));
    assert!(out.ends_with(&msg(b'Q', b"select 2\0")));
    assert!(!out.windows(11).any(|w| w == b"app.current"));
    assert_eq!(t.refusals, 1);
}

#[test]
fn function_call_marks_tenant_touched_or_is_refused() {
    let mut half = ClientHalf::default();
    let mut t = Tracker::default();
    half.buf
        .extend_from_slice(&msg(b'F', &[0, 0, 8, 30, 0, 0, 0, 0, 0, 0]));
    half.scan(&mut t, Some(&unguarded()), 1024, None).unwrap();
    assert!(t.tenant_touched);
    assert!(!t.is_idle());

    let mut half = ClientHalf::default();
    let mut t = Tracker::default();
    half.buf
        .extend_from_slice(&msg(b'F', &[0, 0, 8, 30, 0, 0, 0, 0, 0, 0]));
    half.scan(&mut t, Some(&policy()), 1024, None).unwrap();
    assert_eq!(half.buf[0], b'Q', "replaced by a failing query");
    assert_eq!(t.refusals, 1);
}

#[test]
fn named_parse_that_may_change_the_setting_taints_the_server() {
    let p = policy();
    let mut t = Tracker::default();
    let mut half = ClientHalf::default();
    half.buf
        .extend_from_slice(&msg(b'P', b"\0select set_config('a.b','x',false)\0\0\0"));
    half.scan(&mut t, Some(&p), 1024, None).unwrap();
    assert!(
        t.tenant_touched && !t.tenant_tainted,
        "unnamed: this transaction only"
    );
    let mut t = Tracker::default();
    let mut half = ClientHalf::default();
    half.buf
        .extend_from_slice(&msg(b'P', b"s1\0select set_config('a.b','x',false)\0\0\0"));
    half.scan(&mut t, Some(&p), 1024, None).unwrap();
    assert!(t.tenant_tainted);
}

#[test]
fn bad_length_is_an_error() {
    let mut half = ClientHalf::default();
    half.buf.extend_from_slice(b"Q\0\0\0\x01");
    assert!(half
        .scan(&mut Tracker::default(), None, 1024, None)
        .is_err());
}

mod statements {
    use super::*;
    use crate::relay::outbound::ServerHalf;
    use crate::relay::prepared::{ClientStatements, Prepared, ServerStatements};

    /// One client and one server connection, driving both halves as the relay does.
    struct Rig {
        half: ClientHalf,
        out: ServerHalf,
        server_buf: BytesMut,
        t: Tracker,
        client: ClientStatements,
        server: ServerStatements,
    }

    impl Rig {
        fn new() -> Self {
            Rig {
                half: ClientHalf::default(),
                out: ServerHalf::default(),
                server_buf: BytesMut::new(),
                t: Tracker::default(),
                client: ClientStatements::default(),
                server: ServerStatements::default(),
            }
        }

        /// Client sends `bytes`; returns what goes to the server.
        fn send(&mut self, bytes: &[u8]) -> Vec<u8> {
            self.half.buf.extend_from_slice(bytes);
            let mut p = Prepared {
                client: &mut self.client,
                server: &mut self.server,
                max: 2,
            };
            self.half
                .scan(&mut self.t, None, 1 << 20, Some(&mut p))
                .unwrap();
            self.out.emit_pending(&mut self.server_buf, &mut self.t);
            let mut written = Vec::new();
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            while self.half.has_output() {
                let _ = self.half.poll_write_to(&mut cx, &mut written);
            }
            written
        }

        /// Server answers `bytes`; returns what goes to the client.
        fn answer(&mut self, bytes: &[u8]) -> Vec<u8> {
            self.server_buf.extend_from_slice(bytes);
            let mut p = Prepared {
                client: &mut self.client,
                server: &mut self.server,
                max: 2,
            };
            self.out
                .scan(
                    &mut self.server_buf,
                    &mut self.t,
                    None,
                    1 << 20,
                    Some(&mut p),
                )
                .unwrap();
            self.client_gets()
        }

        fn client_gets(&mut self) -> Vec<u8> {
            let n = self.out.ready_bytes(&self.server_buf).len();
            let v = self.out.ready_bytes(&self.server_buf).to_vec();
            self.out.consumed(&mut self.server_buf, n);
            v
        }
    }

    fn tags(stream: &[u8]) -> String {
        let mut out = String::new();
        let mut rest = stream;
        while let Some(h) = crate::protocol::Header::parse(rest).unwrap() {
            out.push(char::from(h.tag));
            rest = &rest[h.total_len()..];
        }
        out
    }

    fn names_in(stream: &[u8]) -> Vec<String> {
        let text = String::from_utf8_lossy(stream);
        text.match_indices("tp_")
            .map(|(i, _)| text[i..i + 35].to_string())
            .collect()
    }

    const PARSE_S1: &[u8] = b"s1\0select $1::int\0\0\0";

    #[test]
    fn parse_is_renamed_and_a_second_parse_answered_here() {
        let mut r = Rig::new();
        let to_server = r.send(&[msg(b'P', PARSE_S1), msg(b'S', b"")].concat());
        assert_eq!(tags(&to_server), "PS");
        assert_eq!(names_in(&to_server).len(), 1, "renamed to its server name");
        assert_eq!(
            tags(&r.answer(&[msg(b'1', b""), msg(b'Z', b"I")].concat())),
            "1Z"
        );
        assert!(r.t.is_idle());

        // Same text under another name from the same client: the server has it.
        let to_server = r.send(&[msg(b'P', b"s2\0select $1::int\0\0\0"), msg(b'S', b"")].concat());
        assert_eq!(tags(&to_server), "S", "only the Sync goes");
        assert_eq!(tags(&r.client_gets()), "1", "ParseComplete from the pooler");
        assert_eq!(tags(&r.answer(&msg(b'Z', b"I"))), "Z");
        assert!(r.t.is_idle());
    }

    #[test]
    fn bind_on_a_server_without_the_statement_prepares_it_first() {
        let mut r = Rig::new();
        r.send(&[msg(b'P', PARSE_S1), msg(b'S', b"")].concat());
        r.answer(&[msg(b'1', b""), msg(b'Z', b"I")].concat());
        // Another server connection (fresh state), same client.
        r.server = ServerStatements::default();
        let bind = msg(b'B', b"\0s1\0\0\0\0\x01\0\0\0\x0242\0\0");
        let to_server = r.send(&[bind, msg(b'E', b"\0\0\0\0\0"), msg(b'S', b"")].concat());
        assert_eq!(tags(&to_server), "PBES", "Parse injected before the Bind");
        let names = names_in(&to_server);
        assert_eq!(names.len(), 2);
        assert_eq!(names[0], names[1], "the Bind uses the prepared name");
        let got = r.answer(
            &[
                msg(b'1', b""),
                msg(b'2', b""),
                msg(b'D', b"\0\x01\0\0\0\x0242"),
                msg(b'C', b"SELECT 1\0"),
                msg(b'Z', b"I"),
            ]
            .concat(),
        );
        assert_eq!(tags(&got), "2DCZ", "the injected Parse's answer is dropped");
        assert!(r.t.is_idle());
    }

    #[test]
    fn close_is_answered_here_and_the_name_forgotten() {
        let mut r = Rig::new();
        r.send(&[msg(b'P', PARSE_S1), msg(b'S', b"")].concat());
        r.answer(&[msg(b'1', b""), msg(b'Z', b"I")].concat());
        let to_server = r.send(&[msg(b'C', b"Ss1\0"), msg(b'S', b"")].concat());
        assert_eq!(tags(&to_server), "S");
        assert_eq!(tags(&r.client_gets()), "3");
        assert_eq!(tags(&r.answer(&msg(b'Z', b"I"))), "Z");
        // Binding the closed name goes through unchanged, for PostgreSQL to refuse.
        let to_server = r.send(&msg(b'B', b"\0s1\0\0\0\0\0\0\0"));
        assert!(names_in(&to_server).is_empty());
    }

    #[test]
    fn a_failed_parse_leaves_no_statement_behind() {
        let mut r = Rig::new();
        r.send(&[msg(b'P', b"s1\0select nope\0\0\0"), msg(b'S', b"")].concat());
        let got = r.answer(&[msg(b'E', b"SERROR\0C42703\0Mnope\0\0"), msg(b'Z', b"I")].concat());
        assert_eq!(tags(&got), "EZ");
        assert!(r.client.is_empty());
        assert!(r.server.is_empty());
        assert!(r.t.is_idle());
    }

    #[test]
    fn the_least_recently_used_statement_is_closed_on_the_server() {
        let mut r = Rig::new();
        for (i, q) in ["select 1", "select 2", "select 3"].iter().enumerate() {
            let body = format!("s{i}\0{q}\0\0\0");
            let to_server = r.send(&[msg(b'P', body.as_bytes()), msg(b'S', b"")].concat());
            if i < 2 {
                assert_eq!(tags(&to_server), "PS");
                r.answer(&[msg(b'1', b""), msg(b'Z', b"I")].concat());
            } else {
                assert_eq!(
                    tags(&to_server),
                    "CPS",
                    "the oldest is closed first (max 2)"
                );
                let got = r.answer(&[msg(b'3', b""), msg(b'1', b""), msg(b'Z', b"I")].concat());
                assert_eq!(tags(&got), "1Z");
            }
        }
        assert_eq!(r.server.len(), 2);
        assert!(r.t.is_idle());
    }

    #[test]
    fn the_unnamed_statement_of_an_earlier_transaction_is_not_reused() {
        let mut r = Rig::new();
        let to_server = r.send(&msg(b'B', b"\0\0\0\0\0\0\0\0"));
        assert!(String::from_utf8_lossy(&to_server).contains("tenantpool_unnamed_statement"));
        let mut r = Rig::new();
        r.send(&msg(b'P', b"\0select 1\0\0\0"));
        let to_server = r.send(&msg(b'B', b"\0\0\0\0\0\0\0\0"));
        assert!(!String::from_utf8_lossy(&to_server).contains("tenantpool_unnamed"));
    }

    #[test]
    fn deallocate_of_a_known_name_is_answered_here() {
        let mut r = Rig::new();
        r.send(&[msg(b'P', PARSE_S1), msg(b'S', b"")].concat());
        r.answer(&[msg(b'1', b""), msg(b'Z', b"I")].concat());
        let to_server = r.send(&msg(b'Q', b"DEALLOCATE s1\0"));
        assert!(to_server.is_empty());
        assert_eq!(tags(&r.client_gets()), "CZ");
        assert!(r.client.is_empty());
        assert!(r.t.is_idle());
    }

    #[test]
    fn statements_are_forgotten_when_the_server_completes_deallocate_all() {
        let mut r = Rig::new();
        r.send(&[msg(b'P', PARSE_S1), msg(b'S', b"")].concat());
        r.answer(&[msg(b'1', b""), msg(b'Z', b"I")].concat());
        // However it is sent, it goes to the server as it is...
        let to_server = r.send(&msg(b'Q', b"DISCARD ALL\0"));
        assert_eq!(tags(&to_server), "Q");
        assert!(!r.server.is_empty());
        // ...and its completion clears both sides' bookkeeping.
        r.answer(&[msg(b'C', b"DISCARD ALL\0"), msg(b'Z', b"I")].concat());
        assert!(r.server.is_empty());
        assert!(r.client.is_empty());
    }
}
