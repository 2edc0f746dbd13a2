//! Text forms of times, durations and addresses in the views.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `2026-11-22 13:18:30 UTC` (what PgBouncer shows for connect_time, in UTC).
pub fn timestamp(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// A duration as the configuration file writes it: `1h`, `10min`, `15s`, `250ms`.
pub fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        "0s".into()
    } else if ms.is_multiple_of(3_600_000) {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) {
        format!("{}min", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// PgBouncer's split of a wait: whole seconds, and the microseconds beyond them.
pub fn seconds_and_micros(d: Duration) -> (u64, u64) {
    (d.as_secs(), u64::from(d.subsec_micros()))
}

/// A peer as `(addr, port)`: `127.0.0.1:5000` → (`127.0.0.1`, 5000); `unix` → (`unix`, none).
pub fn split_peer(peer: &str) -> (String, Option<u16>) {
    match peer.parse::<std::net::SocketAddr>() {
        Ok(a) => (a.ip().to_string(), Some(a.port())),
        Err(_) => (peer.to_owned(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01 00:00:00 UTC");
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400 + 3661); // 2000-02-29
        assert_eq!(timestamp(t), "2000-02-29 01:01:01 UTC");
        let t = UNIX_EPOCH + Duration::from_secs(1_795_267_110);
        assert_eq!(timestamp(t), "2026-11-21 13:18:30 UTC");
    }

    #[test]
    fn durations() {
        assert_eq!(duration(Duration::from_secs(3600)), "1h");
        assert_eq!(duration(Duration::from_secs(600)), "10min");
        assert_eq!(duration(Duration::from_secs(15)), "15s");
        assert_eq!(duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(duration(Duration::ZERO), "0s");
        assert_eq!(
            seconds_and_micros(Duration::from_micros(2_000_123)),
            (2, 123)
        );
    }

    #[test]
    fn peers() {
        assert_eq!(
            split_peer("127.0.0.1:5000"),
            ("127.0.0.1".into(), Some(5000))
        );
        assert_eq!(split_peer("[::1]:6432"), ("::1".into(), Some(6432)));
        assert_eq!(split_peer("unix"), ("unix".into(), None));
    }
}
