//! Message boundaries in a stream fed in arbitrary chunks (PgBouncer: sbuf's
//! `pkt_remain`): a header split across chunks is held (5 bytes at most), bodies are only
//! counted, never buffered here.

use crate::header::Header;

/// Where one direction of a stream stands.
#[derive(Debug, Default, Clone)]
pub(crate) struct Framer {
    hdr: [u8; Header::SIZE],
    hdr_len: usize,
    /// Body bytes of the current message still to come.
    left: usize,
    in_body: bool,
}

/// What the next bytes of a chunk are.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// The chunk ended inside a header (held).
    NeedMore,
    /// A header: `at` is where it starts in the chunk, or `None` when it began in an
    /// earlier chunk (its bytes are then in [`Framer::held_header`]).
    Header {
        /// Tag and length.
        header: Header,
        /// Start in the chunk, if the whole header is in it.
        at: Option<usize>,
    },
    /// Body bytes of the current message; `last` when they end it.
    Body {
        /// The range in the chunk.
        start: usize,
        /// End of the range.
        end: usize,
        /// Whether the message ends here.
        last: bool,
    },
}

/// A header that cannot start a message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct BadHeader {
    /// The declared length.
    pub(crate) len: u32,
    /// Up to 8 bytes from the header on.
    pub(crate) start: Vec<u8>,
}

impl Framer {
    /// At a message boundary, with nothing held.
    pub(crate) fn at_boundary(&self) -> bool {
        !self.in_body && self.hdr_len == 0
    }

    /// The bytes of the last header when it was split across chunks.
    pub(crate) fn held_header(&self) -> &[u8; Header::SIZE] {
        &self.hdr
    }

    /// Advances over the next part of `data` from `*pos`.
    pub(crate) fn step(
        &mut self,
        data: &[u8],
        pos: &mut usize,
        max: u32,
    ) -> Result<Step, BadHeader> {
        if self.in_body {
            let start = *pos;
            let n = self.left.min(data.len() - start);
            self.left -= n;
            *pos += n;
            let last = self.left == 0;
            if last {
                self.in_body = false;
            }
            return Ok(Step::Body {
                start,
                end: start + n,
                last,
            });
        }
        let at = if self.hdr_len == 0 && data.len() - *pos >= Header::SIZE {
            let at = *pos;
            self.hdr.copy_from_slice(&data[at..at + Header::SIZE]);
            *pos += Header::SIZE;
            Some(at)
        } else {
            let n = (Header::SIZE - self.hdr_len).min(data.len() - *pos);
            self.hdr[self.hdr_len..self.hdr_len + n].copy_from_slice(&data[*pos..*pos + n]);
            self.hdr_len += n;
            *pos += n;
            if self.hdr_len < Header::SIZE {
                return Ok(Step::NeedMore);
            }
            self.hdr_len = 0;
            None
        };
        let header = match Header::peek(&self.hdr, max) {
            Ok(Some(h)) => h,
            // Five bytes are there, so only a bad length can fail.
            _ => {
                let len = u32::from_be_bytes([self.hdr[1], self.hdr[2], self.hdr[3], self.hdr[4]]);
                let mut start = self.hdr.to_vec();
                let from = at.map_or(*pos, |a| a + Header::SIZE);
                start.extend(data[from..].iter().take(3));
                return Err(BadHeader { len, start });
            }
        };
        self.left = header.body_len();
        self.in_body = self.left > 0;
        Ok(Step::Header { header, at })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Walks `data` in chunks of `size`, recording (tag, body bytes seen, ended).
    fn walk(data: &[u8], size: usize) -> Vec<(u8, usize)> {
        let mut f = Framer::default();
        let mut out = Vec::new();
        for chunk in data.chunks(size) {
            let mut pos = 0;
            while pos < chunk.len() {
                match f.step(chunk, &mut pos, 1 << 20).unwrap() {
                    Step::NeedMore => break,
                    Step::Header { header, .. } => out.push((header.tag, 0)),
                    Step::Body { start, end, .. } => out.last_mut().unwrap().1 += end - start,
                }
            }
        }
        assert!(f.at_boundary());
        out
    }

    #[test]
    fn every_chunk_size_finds_the_same_messages() {
        let data = b"Q\0\0\0\x08abcdS\0\0\0\x04Z\0\0\0\x05I";
        let whole = walk(data, data.len());
        assert_eq!(whole, vec![(b'Q', 4), (b'S', 0), (b'Z', 1)]);
        for size in 1..data.len() {
            assert_eq!(walk(data, size), whole, "chunk size {size}");
        }
    }

    #[test]
    fn a_bad_length_reports_what_was_there() {
        let mut f = Framer::default();
        let mut pos = 0;
        let e = f.step(b"Q\x7f\xff\xff\xffsel", &mut pos, 8192).unwrap_err();
        assert_eq!(e.len, 0x7fff_ffff);
        assert_eq!(e.start, b"Q\x7f\xff\xff\xffsel");
    }
}
