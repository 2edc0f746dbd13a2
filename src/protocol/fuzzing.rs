//! Entry points the fuzzers drive (see `fuzz/`), kept in the library so unit
//! tests can run them too. Each must never panic, whatever the input.

use bytes::BytesMut;

use super::startup::{self, StartupPacket};
use crate::relay::{ClientHalf, ServerHalf, Tracker};

/// Decodes `data` as a startup packet: a length prefix, then a body.
pub fn startup_packet(data: &[u8]) {
    let Some((prefix, rest)) = data.split_first_chunk::<4>() else {
        return;
    };
    let Ok(len) = startup::body_len(*prefix, startup::DEFAULT_MAX_STARTUP_PACKET) else {
        return;
    };
    let body = &rest[..len.min(rest.len())];
    if let Ok(StartupPacket::Startup(m)) = startup::decode(body) {
        let _ = m.get("user");
        let _ = m.protocol_options().count();
    }
}

/// Feeds `data` through both relay directions in irregular pieces, checking that
/// every byte framed is eventually passed on or deliberately dropped.
pub fn relay_framing(data: &[u8]) {
    let Some((&split, data)) = data.split_first() else {
        return;
    };
    let step = usize::from(split).max(1);
    let mut inbound = ClientHalf::default();
    let mut tracker = Tracker::default();
    let mut written = Vec::new();
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    for chunk in data.chunks(step) {
        inbound.buf.extend_from_slice(chunk);
        if inbound.scan(&mut tracker, None, 4096, None).is_err() || inbound.terminated {
            break;
        }
        while inbound.has_output() {
            if inbound.poll_write_to(&mut cx, &mut written).is_pending() {
                unreachable!("a Vec accepts every write");
            }
        }
    }
    assert!(written.len() <= data.len());
    assert_eq!(
        &written[..],
        &data[..written.len()],
        "relayed bytes must be unchanged"
    );

    let mut outbound = ServerHalf::default();
    let mut buf = BytesMut::new();
    let mut relayed = 0;
    for chunk in data.chunks(step) {
        buf.extend_from_slice(chunk);
        if outbound
            .scan(&mut buf, &mut tracker, None, 4096, None)
            .is_err()
        {
            break;
        }
        let n = outbound.ready_bytes(&buf).len();
        relayed += n;
        outbound.consumed(&mut buf, n);
    }
    assert!(relayed <= data.len());
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::RngExt;

    #[test]
    fn random_inputs_never_panic() {
        let mut rng = rand::rng();
        for _ in 0..20_000 {
            let len = rng.random_range(0..300);
            let mut data: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            // Plausible headers now and then, so the parsers get past the first bytes.
            if len > 9 && rng.random_bool(0.5) {
                data[1] = b'Q';
                data[2..6].copy_from_slice(&(rng.random_range(4..40) as i32).to_be_bytes());
            }
            startup_packet(&data);
            relay_framing(&data);
        }
    }
}
