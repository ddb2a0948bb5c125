//! One socket type for TCP and Unix-domain connections, with the few operations the
//! forwarding loop needs (readiness, non-blocking reads into a buffer, whole writes).

use std::io;

use bytes::BytesMut;
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::{TcpStream, UnixStream};

/// A connected socket.
#[derive(Debug)]
pub enum Stream {
    /// TCP.
    Tcp(TcpStream),
    /// Unix-domain socket.
    Unix(UnixStream),
}

impl Stream {
    /// Waits until the socket is readable (or closed).
    pub async fn readable(&self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.readable().await,
            Stream::Unix(s) => s.readable().await,
        }
    }

    /// Polls for read readiness (or closure), registering the task's waker with the
    /// socket: waiting this way keeps no state in the caller's future.
    pub fn poll_read_ready(
        &self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        match self {
            Stream::Tcp(s) => s.poll_read_ready(cx),
            Stream::Unix(s) => s.poll_read_ready(cx),
        }
    }

    /// Waits until the socket can take more data (or failed).
    pub async fn writable(&self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.writable().await,
            Stream::Unix(s) => s.writable().await,
        }
    }

    /// Reads what is available into `buf` without waiting; `Ok(0)` is end of stream.
    ///
    /// A read that returns less than the free capacity drained the socket, so the
    /// readiness is cleared right away: the next `readable()` waits for new data instead
    /// of returning at once and costing a `recvfrom` that fails with EAGAIN (tokio's
    /// readiness tick makes this race-free: an event that arrived meanwhile is kept).
    pub fn try_read_buf(&self, buf: &mut BytesMut) -> io::Result<usize> {
        let spare = buf.capacity() - buf.len();
        let mut got = 0;
        let r = match self {
            Stream::Tcp(s) => s.try_io(Interest::READABLE, || {
                got = s.try_read_buf(buf)?;
                drained(got, spare)
            }),
            Stream::Unix(s) => s.try_io(Interest::READABLE, || {
                got = s.try_read_buf(buf)?;
                drained(got, spare)
            }),
        };
        match r {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && got > 0 => Ok(got),
            other => other,
        }
    }

    /// Waits for data and reads it into `buf`; `Ok(0)` is end of stream.
    pub async fn read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        loop {
            self.readable().await?;
            match self.try_read_buf(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes all of `data`.
    pub async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.write_all(data).await,
            Stream::Unix(s) => s.write_all(data).await,
        }
    }

    /// Writes as much of `data` as fits without waiting.
    pub fn try_write(&self, data: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.try_write(data),
            Stream::Unix(s) => s.try_write(data),
        }
    }

    /// Writes as much of `bufs` as fits without waiting: one `send`, or one `sendmsg`
    /// for several slices. Not `writev`: that goes through the VFS layer (fsnotify,
    /// security hooks) on every call, which measured about 10% more per write than the
    /// socket calls on the forwarding path.
    pub fn try_write_vectored(&self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        use tokio::io::Interest;
        if let [one] = bufs {
            return self.try_write(one);
        }
        // MSG_NOSIGNAL, as std's own send: a reset peer is an EPIPE, never a SIGPIPE.
        let flags = libc::MSG_NOSIGNAL;
        match self {
            Stream::Tcp(s) => s.try_io(Interest::WRITABLE, || {
                socket2::SockRef::from(s).send_vectored_with_flags(bufs, flags)
            }),
            Stream::Unix(s) => s.try_io(Interest::WRITABLE, || {
                socket2::SockRef::from(s).send_vectored_with_flags(bufs, flags)
            }),
        }
    }

    /// Whether the peer closed the connection or sent something while nobody was
    /// listening: checked on an idle server before reuse. Never waits; a byte read here
    /// is lost, which is fine because such a server is closed.
    pub fn has_unexpected_input(&self) -> bool {
        let mut probe = [0u8; 1];
        let r = match self {
            Stream::Tcp(s) => s.try_read(&mut probe),
            Stream::Unix(s) => s.try_read(&mut probe),
        };
        !matches!(r, Err(ref e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// The peer address as PgBouncer prints it (`unix` for Unix sockets).
    pub fn peer(&self) -> (String, u16) {
        match self {
            Stream::Tcp(s) => s
                .peer_addr()
                .map(|a| (a.ip().to_string(), a.port()))
                .unwrap_or_else(|_| ("?".into(), 0)),
            Stream::Unix(_) => ("unix".into(), 0),
        }
    }

    /// The peer's uid on a Unix socket (SO_PEERCRED), for `peer` authentication.
    pub fn peer_uid(&self) -> Option<u32> {
        match self {
            Stream::Unix(s) => s.peer_cred().ok().map(|c| c.uid()),
            Stream::Tcp(_) => None,
        }
    }

    /// The local address (`unix` for Unix sockets).
    pub fn local(&self) -> (String, u16) {
        match self {
            Stream::Tcp(s) => s
                .local_addr()
                .map(|a| (a.ip().to_string(), a.port()))
                .unwrap_or_else(|_| ("?".into(), 0)),
            Stream::Unix(_) => ("unix".into(), 0),
        }
    }

    /// Disables Nagle's algorithm on TCP sockets.
    pub fn set_nodelay(&self) {
        if let Stream::Tcp(s) = self {
            let _ = s.set_nodelay(true);
        }
    }
}

/// `WouldBlock` for a short read (tells tokio to clear the readiness), else the count.
fn drained(got: usize, spare: usize) -> io::Result<usize> {
    if got > 0 && got < spare {
        Err(io::ErrorKind::WouldBlock.into())
    } else {
        Ok(got)
    }
}
