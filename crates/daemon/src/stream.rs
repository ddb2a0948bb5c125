//! One socket type for TCP, TLS-over-TCP and Unix-domain connections, with the few
//! operations the forwarding loop needs (readiness, non-blocking reads into a buffer,
//! whole writes). A writer is done with a TLS stream only when [`Stream::try_flush`]
//! says so (records can wait inside it after the plaintext was taken).

use std::io;

use bytes::BytesMut;
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::{TcpStream, UnixStream};

/// A plain socket on its way from one worker to another: registered with no reactor
/// (a file descriptor, so it fits inside [`Stream`] without making it bigger).
#[derive(Debug)]
pub enum Unregistered {
    /// TCP.
    Tcp(std::net::TcpStream),
    /// Unix-domain socket.
    Unix(std::os::unix::net::UnixStream),
}

/// A connected socket.
#[derive(Debug)]
pub enum Stream {
    /// TCP.
    Tcp(TcpStream),
    /// Unix-domain socket.
    Unix(UnixStream),
    /// TLS over TCP.
    Tls(Box<crate::tls::TlsStream>),
    /// Given away (upgraded to TLS); every operation fails.
    Closed,
    /// Moving to another worker ([`Stream::detach`]); [`Stream::attach`] registers it
    /// there. Every other operation fails.
    Moving(Unregistered),
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "stream given away")
}

impl Stream {
    /// Waits until the socket is readable (or closed).
    pub async fn readable(&self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.readable().await,
            Stream::Unix(s) => s.readable().await,
            Stream::Tls(s) => s.readable().await,
            Stream::Closed | Stream::Moving(_) => Err(closed()),
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
            Stream::Tls(s) => s.poll_read_ready(cx),
            Stream::Closed | Stream::Moving(_) => std::task::Poll::Ready(Err(closed())),
        }
    }

    /// Polls for write readiness (or failure), registering the task's waker with the
    /// socket (see [`Stream::poll_read_ready`]).
    pub fn poll_write_ready(
        &self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        match self {
            Stream::Tcp(s) => s.poll_write_ready(cx),
            Stream::Unix(s) => s.poll_write_ready(cx),
            Stream::Tls(s) => s.tcp().poll_write_ready(cx),
            Stream::Closed | Stream::Moving(_) => std::task::Poll::Ready(Err(closed())),
        }
    }

    /// Waits until the socket can take more data (or failed).
    pub async fn writable(&self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.writable().await,
            Stream::Unix(s) => s.writable().await,
            Stream::Tls(s) => s.writable().await,
            Stream::Closed | Stream::Moving(_) => Err(closed()),
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
            Stream::Tls(s) => return s.try_read_buf(buf),
            Stream::Closed | Stream::Moving(_) => return Err(closed()),
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

    /// Writes all of `data` (and, for TLS, sends every record).
    pub async fn write_all(&mut self, mut data: &[u8]) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.write_all(data).await,
            Stream::Unix(s) => s.write_all(data).await,
            Stream::Tls(s) => {
                while !data.is_empty() {
                    match s.try_write_vectored(&[io::IoSlice::new(data)]) {
                        Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                        Ok(n) => data = &data[n..],
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => s.writable().await?,
                        Err(e) => return Err(e),
                    }
                }
                while !s.try_flush()? {
                    s.writable().await?;
                }
                Ok(())
            }
            Stream::Closed | Stream::Moving(_) => Err(closed()),
        }
    }

    /// Writes as much of `data` as fits without waiting.
    pub fn try_write(&self, data: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.try_write(data),
            Stream::Unix(s) => s.try_write(data),
            Stream::Tls(s) => s.try_write_vectored(&[io::IoSlice::new(data)]),
            Stream::Closed | Stream::Moving(_) => Err(closed()),
        }
    }

    /// Sends what a TLS stream still holds of earlier writes: `Ok(true)` when nothing is
    /// left (always, for plain sockets), `Ok(false)` when the socket is full (wait for
    /// [`Stream::writable`] and call again).
    #[inline]
    pub fn try_flush(&self) -> io::Result<bool> {
        match self {
            Stream::Tls(s) => s.try_flush(),
            _ => Ok(true),
        }
    }

    /// Whether this is a TLS connection.
    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    /// The TLS description PgBouncer shows (`TLSv1.3/…`), empty for plain sockets.
    pub fn tls_info(&self) -> &str {
        match self {
            Stream::Tls(s) => s.info(),
            _ => "",
        }
    }

    /// The common name of the peer's verified TLS certificate (for `cert` auth).
    pub fn peer_certificate_name(&self) -> Option<String> {
        match self {
            Stream::Tls(s) => s
                .peer_certificate()
                .and_then(crate::tls::certificate_common_name),
            _ => None,
        }
    }

    /// The `tls-server-end-point` data for SCRAM-SHA-256-PLUS on a client TLS stream.
    pub fn channel_binding(&self) -> Option<&[u8]> {
        match self {
            Stream::Tls(s) => s.channel_binding(),
            _ => None,
        }
    }

    /// Moves the socket to the current thread's reactor (thread-per-core: a server
    /// registered by another worker; see [`crate::workers`]). Nothing buffered is lost.
    pub fn rehome(&mut self) -> io::Result<()> {
        match self.take() {
            Stream::Tls(mut t) => {
                let r = t.rehome();
                *self = Stream::Tls(t);
                r
            }
            other => {
                *self = other.detach()?.attach()?;
                Ok(())
            }
        }
    }

    /// Deregisters a plain socket from this thread's reactor, to be registered on
    /// another worker with [`Stream::attach`]. TLS streams stay registered (they move
    /// with [`Stream::rehome`] instead).
    pub fn detach(self) -> io::Result<Stream> {
        match self {
            Stream::Tcp(s) => Ok(Stream::Moving(Unregistered::Tcp(s.into_std()?))),
            Stream::Unix(s) => Ok(Stream::Moving(Unregistered::Unix(s.into_std()?))),
            other => Ok(other),
        }
    }

    /// Registers a socket [`Stream::detach`] took off a reactor with the current
    /// thread's reactor; any other stream is returned as it is.
    pub fn attach(self) -> io::Result<Stream> {
        match self {
            Stream::Moving(Unregistered::Tcp(s)) => Ok(Stream::Tcp(TcpStream::from_std(s)?)),
            Stream::Moving(Unregistered::Unix(s)) => Ok(Stream::Unix(UnixStream::from_std(s)?)),
            other => Ok(other),
        }
    }

    /// Whether the socket can leave the reactor while its session is parked (plain
    /// sockets; a TLS stream keeps its reactor registration).
    pub fn can_park(&self) -> bool {
        matches!(self, Stream::Tcp(_) | Stream::Unix(_))
    }

    /// The descriptor of a socket [`Stream::detach`] took off its reactor.
    pub fn unregistered_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        match self {
            Stream::Moving(Unregistered::Tcp(s)) => Some(s.as_fd()),
            Stream::Moving(Unregistered::Unix(s)) => Some(s.as_fd()),
            _ => None,
        }
    }

    /// Takes the stream out, leaving [`Stream::Closed`].
    pub fn take(&mut self) -> Stream {
        std::mem::replace(self, Stream::Closed)
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
        if let Stream::Tls(s) = self {
            return s.try_write_vectored(bufs);
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
            Stream::Tls(_) | Stream::Closed | Stream::Moving(_) => Err(closed()),
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
            Stream::Tls(s) => return s.has_unexpected_input(),
            Stream::Closed | Stream::Moving(_) => return true,
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
            Stream::Tls(s) => s
                .tcp()
                .peer_addr()
                .map(|a| (a.ip().to_string(), a.port()))
                .unwrap_or_else(|_| ("?".into(), 0)),
            Stream::Unix(_) => ("unix".into(), 0),
            Stream::Closed | Stream::Moving(_) => ("?".into(), 0),
        }
    }

    /// The peer's uid on a Unix socket (SO_PEERCRED), for `peer` authentication.
    pub fn peer_uid(&self) -> Option<u32> {
        match self {
            Stream::Unix(s) => s.peer_cred().ok().map(|c| c.uid()),
            _ => None,
        }
    }

    /// The local address (`unix` for Unix sockets).
    pub fn local(&self) -> (String, u16) {
        match self {
            Stream::Tcp(s) => s
                .local_addr()
                .map(|a| (a.ip().to_string(), a.port()))
                .unwrap_or_else(|_| ("?".into(), 0)),
            Stream::Tls(s) => s
                .tcp()
                .local_addr()
                .map(|a| (a.ip().to_string(), a.port()))
                .unwrap_or_else(|_| ("?".into(), 0)),
            Stream::Unix(_) => ("unix".into(), 0),
            Stream::Closed | Stream::Moving(_) => ("?".into(), 0),
        }
    }

    /// Disables Nagle's algorithm on TCP sockets.
    pub fn set_nodelay(&self) {
        match self {
            Stream::Tcp(s) => {
                let _ = s.set_nodelay(true);
            }
            Stream::Tls(s) => {
                let _ = s.tcp().set_nodelay(true);
            }
            _ => {}
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
