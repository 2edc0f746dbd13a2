//! A few client read buffers kept per thread from one transaction to the next.
//!
//! An idle client holds no read buffer (that is most of why it costs < 1 KiB),
//! so each transaction allocated 8 KiB and freed it again, and the allocator
//! swept its caches more often for it. A thread now keeps up to [`KEEP`]
//! buffers for the next transaction that runs on it: ~250 instructions less
//! per transaction (callgrind, one client).

use std::cell::RefCell;

use bytes::BytesMut;

use super::READ_CHUNK;

/// Buffers kept per thread: enough for the transactions one thread interleaves
/// under load, at most 64 KiB.
const KEEP: usize = 8;

/// Largest buffer kept; one that grew for a large message is freed.
const MAX: usize = READ_CHUNK;

thread_local! {
    static SPARE: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
}

/// An empty buffer with room for a read, if this thread has one.
pub fn take() -> Option<BytesMut> {
    SPARE.try_with(|s| s.borrow_mut().pop()).ok().flatten()
}

/// Keeps `buf` for a later [`take`] if it is this session's alone (no message
/// cut from it is still in use) and no larger than [`MAX`]; frees it otherwise.
pub fn give(mut buf: BytesMut) {
    buf.clear();
    // Reclaiming moves the free space back to the start without allocating: it
    // succeeds for MAX + 1 only when the allocation is larger than MAX, and
    // for READ_CHUNK only when the buffer is unshared with that much room.
    if buf.try_reclaim(MAX + 1) || !buf.try_reclaim(READ_CHUNK) {
        return;
    }
    let _ = SPARE.try_with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < KEEP {
            s.push(buf);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain() {
        while take().is_some() {}
    }

    #[test]
    fn a_read_buffer_comes_back_whole() {
        drain();
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        buf.extend_from_slice(&[1; 300]);
        let _ = buf.split_to(300);
        assert!(buf.capacity() < READ_CHUNK);
        give(buf);
        let back = take().expect("kept");
        assert!(back.is_empty());
        assert_eq!(back.capacity(), READ_CHUNK);
        assert!(take().is_none());
    }

    #[test]
    fn shared_or_large_buffers_are_not_kept() {
        drain();
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        buf.extend_from_slice(b"Q\0\0\0\x09select");
        let message = buf.split_to(10).freeze();
        give(buf);
        assert!(take().is_none(), "shares its memory with a message in use");
        drop(message);

        let mut big = BytesMut::with_capacity(4 * READ_CHUNK);
        big.extend_from_slice(&vec![0; 4 * READ_CHUNK - 100]);
        let _ = big.split_to(big.len() - 50);
        assert!(big.capacity() < READ_CHUNK);
        give(big);
        assert!(take().is_none(), "grew past MAX");
    }

    #[test]
    fn keeps_at_most_keep() {
        drain();
        for _ in 0..KEEP + 3 {
            give(BytesMut::with_capacity(READ_CHUNK));
        }
        let mut n = 0;
        while take().is_some() {
            n += 1;
        }
        assert_eq!(n, KEEP);
    }
}
