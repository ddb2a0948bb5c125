//! What the tracker asks its caller to write: a list of pieces in order, each a range of
//! the chunk just fed (forwarded untouched, no copy), a range of the output's own small
//! buffer (rewritten headers, made-up replies), or a shared buffer (the stored text of a
//! prepared statement).

use std::ops::Range;

use bytes::{Bytes, BytesMut};

/// One contiguous run of bytes to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// A range of the chunk that was fed.
    Input(Range<usize>),
    /// A range of [`Output::own`].
    Own(Range<usize>),
    /// A shared buffer.
    Shared(Bytes),
}

/// Bytes to write to one peer, in order.
#[derive(Debug, Default)]
pub struct Output {
    pieces: Vec<Piece>,
    own: BytesMut,
}

impl Output {
    /// Forgets everything (keeps the allocations).
    pub fn clear(&mut self) {
        self.pieces.clear();
        self.own.clear();
    }

    /// Forgets everything, and frees buffers that grew past `max` bytes (or pieces) for
    /// one large chunk, so a caller that keeps the output keeps only a small one.
    pub fn clear_and_shrink(&mut self, max: usize) {
        self.clear();
        if self.own.capacity() > max {
            self.own = BytesMut::new();
        }
        if self.pieces.capacity() > max / 64 {
            self.pieces = Vec::new();
        }
    }

    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }

    /// The pieces, in order.
    pub fn pieces(&self) -> &[Piece] {
        &self.pieces
    }

    /// The buffer [`Piece::Own`] ranges point into.
    pub fn own(&self) -> &[u8] {
        &self.own
    }

    /// Bytes in all pieces.
    pub fn len(&self) -> usize {
        self.pieces
            .iter()
            .map(|p| match p {
                Piece::Input(r) | Piece::Own(r) => r.len(),
                Piece::Shared(b) => b.len(),
            })
            .sum()
    }

    /// The bytes of piece `i`, given the chunk that was fed.
    pub fn slice<'a>(&'a self, input: &'a [u8], i: usize) -> &'a [u8] {
        match &self.pieces[i] {
            Piece::Input(r) => &input[r.clone()],
            Piece::Own(r) => &self.own[r.clone()],
            Piece::Shared(b) => b,
        }
    }

    /// The single input range, when the output is exactly one (the forwarding fast path).
    pub fn as_single_input(&self) -> Option<Range<usize>> {
        match self.pieces.as_slice() {
            [Piece::Input(r)] => Some(r.clone()),
            _ => None,
        }
    }

    /// Everything, copied into one buffer (tests, and writers without vectored I/O).
    pub fn to_vec(&self, input: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len());
        for i in 0..self.pieces.len() {
            out.extend_from_slice(self.slice(input, i));
        }
        out
    }

    /// Appends a range of the input, merged with the previous piece when contiguous.
    pub(crate) fn input(&mut self, r: Range<usize>) {
        if r.is_empty() {
            return;
        }
        if let Some(Piece::Input(last)) = self.pieces.last_mut() {
            if last.end == r.start {
                last.end = r.end;
                return;
            }
        }
        self.pieces.push(Piece::Input(r));
    }

    /// Appends bytes written by `f` into the own buffer.
    pub(crate) fn own_with(&mut self, f: impl FnOnce(&mut BytesMut)) {
        let start = self.own.len();
        f(&mut self.own);
        let end = self.own.len();
        if start == end {
            return;
        }
        if let Some(Piece::Own(last)) = self.pieces.last_mut() {
            if last.end == start {
                last.end = end;
                return;
            }
        }
        self.pieces.push(Piece::Own(start..end));
    }

    /// Appends a copy of `bytes`.
    pub(crate) fn own_bytes(&mut self, bytes: &[u8]) {
        self.own_with(|b| b.extend_from_slice(bytes));
    }

    /// Appends a shared buffer.
    pub(crate) fn shared(&mut self, b: Bytes) {
        if !b.is_empty() {
            self.pieces.push(Piece::Shared(b));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguous_pieces_merge_and_the_bytes_come_out_in_order() {
        let mut o = Output::default();
        o.input(0..3);
        o.input(3..5);
        o.own_bytes(b"xy");
        o.own_bytes(b"z");
        o.shared(Bytes::from_static(b"!"));
        o.input(7..8);
        assert_eq!(o.pieces().len(), 4);
        assert_eq!(o.to_vec(b"abcdefgh"), b"abcdexyz!h");
        assert_eq!(o.len(), 10);
        let mut single = Output::default();
        single.input(2..4);
        assert_eq!(single.as_single_input(), Some(2..4));
    }
}
