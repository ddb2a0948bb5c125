//! The 5-byte message header (tag + length) and message framing, both directions.
//!
//! PostgreSQL docs, "Message Formats": every message after the startup phase is a one-byte
//! tag, an `Int32` length that counts itself but not the tag, and the body.
//! [`Header::peek`] is the zero-copy forwarding fast path.

use bytes::{BufMut, Bytes, BytesMut};

use crate::decode::DecodeError;

/// PgBouncer's default `max_packet_size`.
pub const DEFAULT_MAX_PACKET_SIZE: u32 = 2147483647;

/// Decoders reserve at most this much ahead for an incomplete message, so a peer that
/// announces a 2 GiB message does not make us allocate 2 GiB before sending it.
const MAX_RESERVE: usize = 64 * 1024;

/// Tag and length of a tagged message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    /// Message type byte.
    pub tag: u8,
    /// Length as on the wire: body plus the 4 bytes of the length itself.
    pub len: u32,
}

impl Header {
    /// Bytes in a header: tag plus length.
    pub const SIZE: usize = 5;

    /// Reads the header at the start of `buf` without consuming anything.
    ///
    /// `Ok(None)` if fewer than 5 bytes are buffered. Fails if the length is below 4 or above
    /// `max_packet_size`. The tag is not checked.
    #[inline]
    pub fn peek(buf: &[u8], max_packet_size: u32) -> Result<Option<Header>, DecodeError> {
        let &[tag, a, b, c, d, ..] = buf else {
            return Ok(None);
        };
        let len = u32::from_be_bytes([a, b, c, d]);
        if len < 4 {
            return Err(DecodeError::LengthTooSmall { len });
        }
        if len > max_packet_size {
            return Err(DecodeError::MessageTooLarge {
                len,
                max: max_packet_size,
            });
        }
        Ok(Some(Header { tag, len }))
    }

    /// Bytes the whole message occupies on the wire: tag plus `len`.
    #[inline]
    pub fn total_len(&self) -> usize {
        (self.len as usize).saturating_add(1)
    }

    /// Bytes of body after the header.
    #[inline]
    pub fn body_len(&self) -> usize {
        (self.len as usize).saturating_sub(4)
    }
}

/// Splits one complete tagged message off `buf`: its tag and its body.
pub(crate) fn split_frame(
    buf: &mut BytesMut,
    max_packet_size: u32,
) -> Result<Option<(u8, Bytes)>, DecodeError> {
    let Some(header) = Header::peek(buf, max_packet_size)? else {
        return Ok(None);
    };
    let total = header.total_len();
    if buf.len() < total {
        reserve_for(buf, total);
        return Ok(None);
    }
    let mut frame = buf.split_to(total);
    // `total >= Header::SIZE` because `Header::peek` checked `len >= 4`.
    let body = frame.split_off(Header::SIZE);
    Ok(Some((header.tag, body.freeze())))
}

/// Reserves room for the rest of a message already checked against the limit.
pub(crate) fn reserve_for(buf: &mut BytesMut, total: usize) {
    let missing = total.saturating_sub(buf.len()).min(MAX_RESERVE);
    buf.reserve(missing);
}

/// Starts a tagged message; returns the position of its length field for [`finish`].
#[inline]
pub(crate) fn begin(buf: &mut BytesMut, tag: u8) -> usize {
    buf.put_u8(tag);
    let at = buf.len();
    buf.put_u32(0);
    at
}

/// Back-fills the length of a message started with [`begin`] (or at `at` for untagged ones).
#[inline]
pub(crate) fn finish(buf: &mut BytesMut, at: usize) {
    // Messages over 4 GiB are not representable; the length wraps (documented on encoders).
    let len = (buf.len() - at) as u32;
    buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

/// Writes `s` and a NUL.
#[inline]
pub(crate) fn put_cstr(buf: &mut BytesMut, s: &[u8]) {
    buf.put_slice(s);
    buf.put_u8(0);
}

/// Writes an `Int32` length and the bytes, or -1 for NULL.
#[inline]
pub(crate) fn put_nullable(buf: &mut BytesMut, value: Option<&[u8]>) {
    match value {
        Some(v) => {
            buf.put_i32(v.len() as i32);
            buf.put_slice(v);
        }
        None => buf.put_i32(-1),
    }
}

/// Writes a message with an empty body.
#[inline]
pub(crate) fn put_empty(buf: &mut BytesMut, tag: u8) {
    buf.put_u8(tag);
    buf.put_u32(4);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn peek_needs_five_bytes() {
        assert_eq!(Header::peek(b"Q\0\0\0", 100), Ok(None));
        assert_eq!(
            Header::peek(b"Q\0\0\0\x05x", 100),
            Ok(Some(Header { tag: b'Q', len: 5 }))
        );
    }

    #[test]
    fn huge_length_is_rejected_before_any_allocation() {
        let mut buf = BytesMut::from(&b"D\x7f\xff\xff\xff"[..]);
        let cap = buf.capacity();
        assert_eq!(
            split_frame(&mut buf, 8192),
            Err(DecodeError::MessageTooLarge {
                len: 0x7fff_ffff,
                max: 8192
            })
        );
        assert_eq!(buf.capacity(), cap);
    }

    #[test]
    fn incomplete_message_reserves_a_bounded_amount() {
        let mut buf = BytesMut::from(&b"D\x7f\xff\xff\xff"[..]);
        assert_eq!(split_frame(&mut buf, DEFAULT_MAX_PACKET_SIZE), Ok(None));
        assert!(buf.capacity() <= 5 + 2 * MAX_RESERVE);
        assert_eq!(buf.len(), 5);
    }

    #[test]
    fn lengths_below_four_are_rejected() {
        for len in [0u8, 3] {
            let buf = [b'Q', 0, 0, 0, len];
            assert_eq!(
                Header::peek(&buf, 100),
                Err(DecodeError::LengthTooSmall {
                    len: u32::from(len)
                })
            );
        }
    }
}
