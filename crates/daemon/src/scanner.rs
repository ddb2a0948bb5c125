//! Finds message boundaries in a byte stream that is forwarded as it arrives, so only
//! headers are parsed on the way through (PgBouncer: sbuf's `pkt_remain` bookkeeping).
//! Bodies are handed to the caller only for the few tags it asks for.

use pgbouncer_protocol::{DecodeError, Header};

/// What the scanner saw in one chunk.
pub(crate) trait Visitor {
    /// A message with `tag` starts; `len` includes the 4 length bytes.
    fn header(&mut self, tag: u8, len: u32);
    /// The complete body of a message whose tag `wants_body` accepted.
    fn body(&mut self, tag: u8, body: &[u8]);
    /// Whether the body of messages with `tag` is needed.
    fn wants_body(&self, tag: u8) -> bool;
}

/// Incremental header scanner over a stream.
#[derive(Debug, Default)]
pub(crate) struct Scanner {
    /// Bytes of the current message body not seen yet.
    remaining: usize,
    /// A header split across chunks.
    partial: [u8; 5],
    partial_len: usize,
    /// Body being collected for the visitor.
    capture: Option<(u8, Vec<u8>)>,
}

impl Scanner {
    /// True when the stream is at a message boundary.
    pub(crate) fn at_boundary(&self) -> bool {
        self.remaining == 0 && self.partial_len == 0
    }

    /// Scans `data`, the next chunk of the stream.
    pub(crate) fn scan(
        &mut self,
        mut data: &[u8],
        max_packet_size: u32,
        v: &mut impl Visitor,
    ) -> Result<(), DecodeError> {
        while !data.is_empty() {
            if self.remaining > 0 {
                let n = self.remaining.min(data.len());
                if let Some((tag, body)) = self.capture.as_mut() {
                    body.extend_from_slice(&data[..n]);
                    if n == self.remaining {
                        let tag = *tag;
                        let body = std::mem::take(body);
                        self.capture = None;
                        v.body(tag, &body);
                    }
                }
                self.remaining -= n;
                data = &data[n..];
                continue;
            }
            if self.partial_len > 0 || data.len() < Header::SIZE {
                let need = Header::SIZE - self.partial_len;
                let n = need.min(data.len());
                self.partial[self.partial_len..self.partial_len + n].copy_from_slice(&data[..n]);
                self.partial_len += n;
                data = &data[n..];
                if self.partial_len < Header::SIZE {
                    return Ok(());
                }
                self.partial_len = 0;
                let h = Header::peek(&self.partial, max_packet_size)?.ok_or(
                    DecodeError::Truncated {
                        field: "header",
                        needed: Header::SIZE,
                        available: 0,
                    },
                )?;
                self.start(h, &[], v);
                continue;
            }
            let h = Header::peek(data, max_packet_size)?.ok_or(DecodeError::Truncated {
                field: "header",
                needed: Header::SIZE,
                available: 0,
            })?;
            let body_len = h.body_len();
            let avail = data.len() - Header::SIZE;
            if body_len <= avail && v.wants_body(h.tag) {
                v.header(h.tag, h.len);
                v.body(h.tag, &data[Header::SIZE..Header::SIZE + body_len]);
                data = &data[Header::SIZE + body_len..];
                continue;
            }
            data = &data[Header::SIZE..];
            self.start(h, &[], v);
        }
        Ok(())
    }

    fn start(&mut self, h: Header, _seen: &[u8], v: &mut impl Visitor) {
        v.header(h.tag, h.len);
        self.remaining = h.body_len();
        if v.wants_body(h.tag) {
            if self.remaining == 0 {
                v.body(h.tag, &[]);
            } else {
                self.capture = Some((h.tag, Vec::with_capacity(self.remaining.min(4096))));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Rec {
        tags: Vec<u8>,
        bodies: Vec<(u8, Vec<u8>)>,
    }

    impl Visitor for Rec {
        fn header(&mut self, tag: u8, _len: u32) {
            self.tags.push(tag);
        }
        fn body(&mut self, tag: u8, body: &[u8]) {
            self.bodies.push((tag, body.to_vec()));
        }
        fn wants_body(&self, tag: u8) -> bool {
            tag == b'Z' || tag == b'S'
        }
    }

    fn stream() -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(b"C\0\0\0\x0bSELECT\0");
        v.extend_from_slice(b"S\0\0\0\x0da\0bcdefg\0");
        v.extend_from_slice(b"D\0\0\0\x06\0\0");
        v.extend_from_slice(b"Z\0\0\0\x05I");
        v
    }

    #[test]
    fn every_split_of_the_stream_finds_the_same_messages_and_bodies() {
        let data = stream();
        let mut whole = Rec::default();
        Scanner::default().scan(&data, 1 << 20, &mut whole).unwrap();
        assert_eq!(whole.tags, b"CSDZ");
        assert_eq!(
            whole.bodies,
            vec![(b'S', b"a\0bcdefg\0".to_vec()), (b'Z', b"I".to_vec())]
        );
        for a in 0..data.len() {
            for b in a..data.len() {
                let mut r = Rec::default();
                let mut s = Scanner::default();
                for chunk in [&data[..a], &data[a..b], &data[b..]] {
                    s.scan(chunk, 1 << 20, &mut r).unwrap();
                }
                assert_eq!(r.tags, whole.tags, "split {a}/{b}");
                assert_eq!(r.bodies, whole.bodies, "split {a}/{b}");
                assert!(s.at_boundary());
            }
        }
    }

    #[test]
    fn oversized_length_is_an_error() {
        let mut r = Rec::default();
        assert!(Scanner::default()
            .scan(b"Q\x7f\xff\xff\xff", 8192, &mut r)
            .is_err());
    }
}
