use bytes::BytesMut;

use super::*;

fn synth(t: &mut Tracker) -> Vec<u8> {
    let mut out = BytesMut::new();
    t.take_synthetic(&mut out);
    out.to_vec()
}

#[test]
fn pipelined_queries_need_all_answers() {
    let mut t = Tracker::default();
    t.sent(Answer::Query);
    t.sent(Answer::Query);
    t.on_message(b'Z', b'I');
    assert!(!t.is_idle());
    t.on_message(b'Z', b'I');
    assert!(t.is_idle());
}

#[test]
fn explicit_transaction_holds_until_idle() {
    let mut t = Tracker::default();
    t.sent(Answer::Query);
    t.on_message(b'Z', b'T');
    assert!(!t.is_idle());
    assert!(t.is_idle_in_transaction());
    t.sent(Answer::Query);
    t.on_message(b'Z', b'I');
    assert!(t.is_idle());
}

#[test]
fn extended_batch_completes_at_ready_for_query() {
    let mut t = Tracker::default();
    for a in [
        Answer::Parse,
        Answer::Bind,
        Answer::DescribePortal,
        Answer::Execute,
    ] {
        t.sent(a);
    }
    assert!(!t.is_idle());
    t.sent(Answer::Sync);
    for tag in [b'1', b'2', b'T', b'D', b'D', b'C'] {
        t.on_message(tag, 0);
        assert!(!t.is_idle());
    }
    t.on_message(b'Z', b'I');
    assert!(t.is_idle());
}

#[test]
fn extended_copy_in_ignores_sync_sent_with_execute() {
    // libpq: Parse/Bind/Execute/Sync, then CopyData..., CopyDone, Sync.
    let mut t = Tracker::default();
    for a in [Answer::Parse, Answer::Bind, Answer::Execute, Answer::Sync] {
        t.sent(a);
    }
    t.on_message(b'1', 0);
    t.on_message(b'2', 0);
    t.on_message(b'G', 0);
    t.copy_end_sent();
    t.sent(Answer::Sync);
    t.on_message(b'C', 0);
    assert!(!t.is_idle());
    t.on_message(b'Z', b'I');
    assert!(t.is_idle());
}

#[test]
fn simple_copy_in() {
    let mut t = Tracker::default();
    t.sent(Answer::Query);
    t.on_message(b'G', 0);
    t.copy_end_sent();
    t.on_message(b'C', 0);
    t.on_message(b'Z', b'I');
    assert!(t.is_idle());
}

#[test]
fn synthetic_answers_wait_their_turn() {
    let mut t = Tracker::default();
    t.sent(Answer::Bind);
    t.synthetic(Synth::ParseComplete);
    t.sent(Answer::Sync);
    assert!(synth(&mut t).is_empty(), "the Bind is answered first");
    t.on_message(b'2', 0);
    assert_eq!(synth(&mut t), b"1\0\0\0\x04");
    t.on_message(b'Z', b'I');
    assert!(t.is_idle());
}

#[test]
fn swallowed_answers_are_dropped() {
    let mut t = Tracker::default();
    t.injected(Answer::Parse, None);
    t.sent(Answer::Bind);
    assert!(t.on_message(b'1', 0).swallow);
    assert!(!t.on_message(b'2', 0).swallow);
}

#[test]
fn an_error_skips_to_sync_and_drops_our_answers() {
    let failure = ParseFailure {
        server_name: "tp_x".into(),
        client_name: Some(b"s1".as_slice().into()),
    };
    let mut t = Tracker::default();
    t.sent_parse(failure.clone());
    t.sent(Answer::Bind);
    t.synthetic(Synth::CloseComplete);
    t.sent(Answer::Execute);
    t.sent(Answer::Sync);
    let d = t.on_message(b'E', 0);
    assert_eq!(d.failed, Some(failure));
    assert!(!d.swallow, "errors always reach the client");
    assert!(synth(&mut t).is_empty(), "skipped like the server skips");
    t.on_message(b'Z', b'I');
    assert!(t.is_idle());
}

#[test]
fn query_errors_do_not_skip() {
    let mut t = Tracker::default();
    t.sent(Answer::Query);
    t.sent(Answer::Query);
    t.on_message(b'E', 0);
    t.on_message(b'Z', b'I');
    assert!(!t.is_idle());
    t.on_message(b'C', 0);
    t.on_message(b'Z', b'I');
    assert!(t.is_idle());
}
