//! Message framing: every message after startup is `tag:u8, len:i32, body[len-4]`.
//!
//! [`Framer`] walks a byte stream message by message without needing whole
//! messages in memory: it reports each header once and then only counts body
//! bytes, so a 100 MB `DataRow` streams through in buffer-sized pieces.

use thiserror::Error;

/// Bytes in a message header: one tag byte and a four-byte length.
pub const HEADER_LEN: usize = 5;

/// PostgreSQL itself refuses messages over 1 GB (`PQ_LARGE_MESSAGE_LIMIT`); anything
/// claiming more is corrupt or hostile.
pub const MAX_MESSAGE_LEN: usize = 0x3fff_ffff;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FrameError {
    #[error("invalid message length {len} for message type '{}'", char::from(*tag))]
    BadLength { tag: u8, len: i64 },
}

/// A decoded message header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub tag: u8,
    /// Length of the body, excluding the tag and the length field itself.
    pub body_len: usize,
}

impl Header {
    /// Parses a header from the start of `buf`; `Ok(None)` when fewer than five bytes are there.
    #[inline]
    pub fn parse(buf: &[u8]) -> Result<Option<Header>, FrameError> {
        if buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let tag = buf[0];
        let len = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
        if len < 4 || len as usize > MAX_MESSAGE_LEN {
            return Err(FrameError::BadLength {
                tag,
                len: len.into(),
            });
        }
        Ok(Some(Header {
            tag,
            body_len: len as usize - 4,
        }))
    }

    /// Header plus body.
    #[inline]
    pub fn total_len(&self) -> usize {
        HEADER_LEN + self.body_len
    }
}

/// Where the framer stands in the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FramerState {
    /// At a message boundary.
    #[default]
    Boundary,
    /// Inside the body of a message whose header was already reported; this many bytes remain.
    Body { tag: u8, remaining: usize },
}

/// One step of [`Framer::next`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A new message header; its body may or may not be complete in the slice.
    Header(Header),
    /// `len` body bytes of the current (already reported) message were passed over.
    Body { len: usize },
    /// Nothing more to do with these bytes: need more input.
    NeedMore,
}

/// Streaming framer: remembers whether it is mid-body between calls.
#[derive(Debug, Default, Clone)]
pub struct Framer {
    state: FramerState,
}

impl Framer {
    pub fn state(&self) -> FramerState {
        self.state
    }

    /// True when the bytes consumed so far end exactly at a message boundary.
    pub fn at_boundary(&self) -> bool {
        self.state == FramerState::Boundary
    }

    /// Consumes from `buf` (bytes not yet framed). Returns the step and how many bytes it consumed.
    ///
    /// A header is consumed only as a whole (five bytes); a body is consumed as far as
    /// `buf` reaches. Callers that need a whole message check `header.body_len` against
    /// what they hold before calling [`Framer::skip_body`].
    #[inline]
    pub fn next(&mut self, buf: &[u8]) -> Result<(Step, usize), FrameError> {
        match self.state {
            FramerState::Body { tag, remaining } => {
                if buf.is_empty() {
                    return Ok((Step::NeedMore, 0));
                }
                let n = remaining.min(buf.len());
                let left = remaining - n;
                self.state = if left == 0 {
                    FramerState::Boundary
                } else {
                    FramerState::Body {
                        tag,
                        remaining: left,
                    }
                };
                Ok((Step::Body { len: n }, n))
            }
            FramerState::Boundary => match Header::parse(buf)? {
                None => Ok((Step::NeedMore, 0)),
                Some(header) => {
                    if header.body_len > 0 {
                        self.state = FramerState::Body {
                            tag: header.tag,
                            remaining: header.body_len,
                        };
                    }
                    Ok((Step::Header(header), HEADER_LEN))
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn header_parse_rejects_short_and_huge_lengths() {
        assert_eq!(Header::parse(b"Q\0\0"), Ok(None));
        assert!(Header::parse(b"Q\0\0\0\x03").is_err());
        assert!(Header::parse(&[b'Q', 0x7f, 0xff, 0xff, 0xff]).is_err());
        assert!(Header::parse(&[b'Q', 0xff, 0xff, 0xff, 0xff]).is_err());
        let h = Header::parse(b"Z\0\0\0\x05I").unwrap().unwrap();
        assert_eq!(
            h,
            Header {
                tag: b'Z',
                body_len: 1
            }
        );
    }

    #[test]
    fn framer_walks_messages_split_at_every_byte() {
        let mut stream = msg(b'Q', b"select 1\0");
        stream.extend(msg(b'S', b""));
        stream.extend(msg(b'd', &[7u8; 300]));
        for split in 0..stream.len() {
            let mut framer = Framer::default();
            let mut tags = Vec::new();
            let mut body = 0;
            let mut pending: Vec<u8> = Vec::new();
            for chunk in [&stream[..split], &stream[split..]] {
                pending.extend_from_slice(chunk);
                loop {
                    let (step, used) = framer.next(&pending).unwrap();
                    pending.drain(..used);
                    match step {
                        Step::Header(header) => tags.push(header.tag),
                        Step::Body { len } => body += len,
                        Step::NeedMore => break,
                    }
                }
            }
            assert_eq!(tags, vec![b'Q', b'S', b'd'], "split at {split}");
            assert_eq!(body, 9 + 300);
            assert!(framer.at_boundary());
        }
    }
}
