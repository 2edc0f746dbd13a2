//! Errors the pooler itself sends to clients, counted by SQLSTATE class (the
//! code's first two characters: `08` connection, `28` authorization, `57`
//! operator intervention, ...). Server errors relayed unchanged are not here.
//!
//! Process-wide (one pooler per process in production), because the one place
//! every such error passes, `client::send_error`, knows no pool. A fixed table
//! of one atomic per possible class: no allocation, no lock, bounded labels.

use std::sync::atomic::{AtomicU64, Ordering};

/// Characters a SQLSTATE is made of.
const ALPHABET: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";

static COUNTS: [AtomicU64; 36 * 36] = [const { AtomicU64::new(0) }; 36 * 36];

fn digit(b: u8) -> Option<usize> {
    ALPHABET.iter().position(|&c| c == b.to_ascii_uppercase())
}

/// Hook: an error with SQLSTATE `code` is being sent to a client.
#[inline]
pub fn count(code: &str) {
    let b = code.as_bytes();
    if let (Some(&a), Some(&c)) = (b.first(), b.get(1)) {
        if let (Some(a), Some(c)) = (digit(a), digit(c)) {
            COUNTS[a * 36 + c].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Every class counted so far, with its count, in class order.
pub fn snapshot() -> Vec<(String, u64)> {
    COUNTS
        .iter()
        .enumerate()
        .filter_map(|(i, n)| {
            let n = n.load(Ordering::Relaxed);
            (n > 0).then(|| {
                let class = [ALPHABET[i / 36], ALPHABET[i % 36]];
                (String::from_utf8_lossy(&class).into_owned(), n)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_class() {
        let before = snapshot()
            .into_iter()
            .find(|(c, _)| c == "XY")
            .map_or(0, |(_, n)| n);
        count("XY000");
        count("XY123");
        count("?");
        let after = snapshot().into_iter().find(|(c, _)| c == "XY").unwrap().1;
        assert_eq!(after - before, 2);
    }
}
