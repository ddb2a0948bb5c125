//! A bounds-checked reader over a message body (PostgreSQL docs, "Message Data Types").
//!
//! Every read returns `Err(DecodeError::Truncated { .. })` instead of panicking, and byte
//! fields are `Bytes` slices of the body, not copies.

use bytes::Bytes;

use crate::decode::DecodeError;

/// Reads the fields of one message body front to back.
pub(crate) struct Cursor {
    buf: Bytes,
}

impl Cursor {
    pub(crate) fn new(buf: Bytes) -> Self {
        Cursor { buf }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    fn truncated(&self, field: &'static str, needed: usize) -> DecodeError {
        DecodeError::Truncated {
            field,
            needed,
            available: self.buf.len(),
        }
    }

    /// Takes exactly `n` bytes.
    pub(crate) fn bytes(&mut self, n: usize, field: &'static str) -> Result<Bytes, DecodeError> {
        if n > self.buf.len() {
            return Err(self.truncated(field, n));
        }
        Ok(self.buf.split_to(n))
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let Some(head) = self.buf.get(..N) else {
            return Err(self.truncated(field, N));
        };
        let mut out = [0u8; N];
        out.copy_from_slice(head);
        self.buf = self.buf.slice(N..);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(field)?[0])
    }

    pub(crate) fn i8(&mut self, field: &'static str) -> Result<i8, DecodeError> {
        Ok(i8::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn i16(&mut self, field: &'static str) -> Result<i16, DecodeError> {
        Ok(i16::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn i32(&mut self, field: &'static str) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    /// A NUL-terminated string, returned without its NUL.
    pub(crate) fn cstr(&mut self, field: &'static str) -> Result<Bytes, DecodeError> {
        let Some(nul) = self.buf.iter().position(|&b| b == 0) else {
            return Err(DecodeError::MissingNul { field });
        };
        let s = self.buf.split_to(nul);
        self.buf = self.buf.slice(1..);
        Ok(s)
    }

    /// A NUL-terminated UTF-8 string.
    pub(crate) fn string(&mut self, field: &'static str) -> Result<String, DecodeError> {
        let raw = self.cstr(field)?;
        String::from_utf8(raw.to_vec()).map_err(|_| DecodeError::InvalidUtf8 { field })
    }

    /// An `Int16` element count, checked to be non-negative and to fit in the rest of the
    /// body when each element takes at least `min_elem` bytes (so it is safe to allocate).
    pub(crate) fn count16(
        &mut self,
        min_elem: usize,
        field: &'static str,
    ) -> Result<usize, DecodeError> {
        let n = self.i16(field)?;
        self.checked_count(i32::from(n), min_elem, field)
    }

    /// Like [`Cursor::count16`] for an `Int32` count.
    pub(crate) fn count32(
        &mut self,
        min_elem: usize,
        field: &'static str,
    ) -> Result<usize, DecodeError> {
        let n = self.i32(field)?;
        self.checked_count(n, min_elem, field)
    }

    fn checked_count(
        &self,
        n: i32,
        min_elem: usize,
        field: &'static str,
    ) -> Result<usize, DecodeError> {
        let n = usize::try_from(n).map_err(|_| DecodeError::InvalidValue { field })?;
        let needed = n.saturating_mul(min_elem);
        if needed > self.buf.len() {
            return Err(self.truncated(field, needed));
        }
        Ok(n)
    }

    /// An `Int32` length followed by that many bytes; -1 is NULL.
    pub(crate) fn nullable(&mut self, field: &'static str) -> Result<Option<Bytes>, DecodeError> {
        let len = self.i32(field)?;
        if len == -1 {
            return Ok(None);
        }
        let len = usize::try_from(len).map_err(|_| DecodeError::InvalidValue { field })?;
        self.bytes(len, field).map(Some)
    }

    /// Everything left.
    pub(crate) fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.buf)
    }

    /// Fails if anything is left.
    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes {
                extra: self.buf.len(),
            })
        }
    }
}
