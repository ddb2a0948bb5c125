//! Writing what the protocol tracker produced: the pieces of an [`Output`] (ranges of the
//! read buffer they came from, rewritten headers, shared statement texts) go out with
//! one vectored write when the socket takes them, and the rest waits, resumable, until
//! the socket is writable again. Nothing is copied on the way.

use std::io::{self, IoSlice};

use pgbouncer_protocol::link::Output;

use crate::stream::Stream;

/// Slices per `writev`: enough for a rewritten message and its neighbours.
const MAX_SLICES: usize = 16;

/// How far a write of an [`Output`] got.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Progress {
    piece: usize,
    offset: usize,
}

impl Progress {
    /// Nothing of the output written yet.
    pub(super) fn start() -> Progress {
        Progress::default()
    }
}

/// Writes as much of `out` (whose input pieces point into `input`) as `stream` takes
/// without waiting. `Ok(true)` once everything is written; `Ok(false)` when the socket
/// is full (wait for it to be writable and call again with the same `progress`).
pub(super) fn write_now(
    stream: &Stream,
    out: &Output,
    input: &[u8],
    progress: &mut Progress,
) -> io::Result<bool> {
    let count = out.pieces().len();
    loop {
        if progress.piece >= count {
            // Done once a TLS stream has sent the records too.
            return stream.try_flush();
        }
        let mut slices = [IoSlice::new(&[]); MAX_SLICES];
        let mut n = 0;
        for i in progress.piece..count.min(progress.piece + MAX_SLICES) {
            let bytes = out.slice(input, i);
            let bytes = if i == progress.piece {
                &bytes[progress.offset..]
            } else {
                bytes
            };
            slices[n] = IoSlice::new(bytes);
            n += 1;
        }
        let written = match stream.try_write_vectored(&slices[..n]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(w) => w,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) => return Err(e),
        };
        advance(out, input, progress, written);
    }
}

fn advance(out: &Output, input: &[u8], progress: &mut Progress, mut written: usize) {
    while written > 0 && progress.piece < out.pieces().len() {
        let left = out.slice(input, progress.piece).len() - progress.offset;
        if written >= left {
            written -= left;
            progress.piece += 1;
            progress.offset = 0;
        } else {
            progress.offset += written;
            written = 0;
        }
    }
    // Skip empty pieces so `piece == count` means done.
    while progress.piece < out.pieces().len() && out.slice(input, progress.piece).is_empty() {
        progress.piece += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_write_that_does_not_fit_resumes_where_it_stopped() {
        use tokio::io::AsyncReadExt;
        let (a, mut b) = tokio::net::UnixStream::pair().unwrap();
        let stream = Stream::Unix(a);
        let input = vec![7u8; 4 << 20];
        let mut fc = pgbouncer_protocol::link::FromClient::default();
        let mut link = pgbouncer_protocol::link::Link::new(
            pgbouncer_protocol::link::LinkConfig {
                max_packet_size: u32::MAX >> 1,
                max_prepared_statements: 0,
                statement_mode: false,
            },
            Default::default(),
            Default::default(),
        );
        // One 4 MiB CopyData message: forwarded as one range of the input.
        let mut data = bytes::BytesMut::new();
        pgbouncer_protocol::FrontendMessage::CopyData(input.into()).encode(&mut data);
        let registry = Default::default();
        link.from_client(&data, &registry, &mut fc).unwrap();
        let mut p = Progress::start();
        assert!(!write_now(&stream, &fc.to_server, &data, &mut p).unwrap());
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            b.read_to_end(&mut got).await.unwrap();
            got
        });
        loop {
            stream.writable().await.unwrap();
            if write_now(&stream, &fc.to_server, &data, &mut p).unwrap() {
                break;
            }
        }
        drop(stream);
        assert_eq!(reader.await.unwrap(), data);
    }
}
