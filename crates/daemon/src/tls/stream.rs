//! A TLS connection over a TCP socket, driven the way the forwarding loop drives plain
//! sockets: readiness, non-blocking reads into a buffer, non-blocking writes that take
//! what fits. rustls does the record layer; this file only moves its bytes.
//!
//! Two things differ from a plain socket, and the [`Stream`](crate::stream::Stream)
//! methods hide both:
//! - decrypted bytes can be waiting inside rustls while the socket has nothing new, so
//!   "readable" is true when either has data;
//! - a write can be accepted (encrypted) while its records have not all reached the
//!   socket, so a writer is done only when [`TlsStream::try_flush`] says so. At most
//!   [`WRITE_CHUNK`] bytes of plaintext are taken per call, and none while older records
//!   still wait: memory per connection stays bounded and a slow peer pushes back.

use std::io::{self, IoSlice, Read, Write};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::BytesMut;
use rustls::pki_types::ServerName;
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Plaintext taken per write call (four full TLS records).
pub const WRITE_CHUNK: usize = 64 * 1024;

/// Plaintext read per call when the caller's buffer has no spare room.
const READ_CHUNK: usize = 16 * 1024;

/// An established TLS connection.
#[derive(Debug)]
pub struct TlsStream {
    io: TcpStream,
    state: Mutex<State>,
    info: String,
    peer_certificate: Option<Vec<u8>>,
    channel_binding: Option<Arc<[u8]>>,
}

#[derive(Debug)]
struct State {
    conn: rustls::Connection,
    /// Decrypted bytes waiting in rustls.
    plain: usize,
    /// The peer sent close_notify or closed the socket.
    closed: bool,
}

/// The socket as rustls's reader and writer: non-blocking, `WouldBlock` passes through
/// (and clears tokio's readiness).
struct Sock<'a>(&'a TcpStream);

impl Read for Sock<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl Write for Sock<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        // MSG_NOSIGNAL: a reset peer is an EPIPE, never a SIGPIPE.
        self.0.try_io(Interest::WRITABLE, || {
            socket2::SockRef::from(self.0).send_vectored_with_flags(bufs, libc::MSG_NOSIGNAL)
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl State {
    /// Writes queued records; `WouldBlock` if some are still queued.
    fn flush(&mut self, io: &TcpStream) -> io::Result<()> {
        while self.conn.wants_write() {
            if self.conn.write_tls(&mut Sock(io))? == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
        }
        Ok(())
    }

    /// Decrypts what rustls has read; a protocol error queues an alert (sent if the
    /// socket takes it) and fails.
    fn process(&mut self, io: &TcpStream) -> io::Result<()> {
        match self.conn.process_new_packets() {
            Ok(s) => {
                self.plain = s.plaintext_bytes_to_read();
                self.closed |= s.peer_has_closed();
                Ok(())
            }
            Err(e) => {
                let _ = self.flush(io);
                Err(io::Error::new(io::ErrorKind::InvalidData, e))
            }
        }
    }
}

/// Runs the handshake to its end on `io` (bytes the caller already read from the socket
/// go first: a direct-TLS ClientHello whose first byte identified it).
async fn drive(io: &TcpStream, st: &mut State, mut initial: &[u8]) -> io::Result<()> {
    while !initial.is_empty() {
        st.conn.read_tls(&mut initial)?;
        st.process(io)?;
    }
    loop {
        loop {
            match st.flush(io) {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => io.writable().await?,
                Err(e) => return Err(e),
            }
        }
        if !st.conn.is_handshaking() {
            return Ok(());
        }
        match st.conn.read_tls(&mut Sock(io)) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "peer closed the connection during the TLS handshake",
                ))
            }
            Ok(_) => st.process(io)?,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => io.readable().await?,
            Err(e) => return Err(e),
        }
    }
}

impl TlsStream {
    /// Accepts a TLS client on `io` (we are the server).
    pub async fn accept(
        io: TcpStream,
        side: &super::ClientSide,
        initial: &[u8],
    ) -> io::Result<TlsStream> {
        let config = side
            .config
            .clone()
            .ok_or_else(|| io::Error::other("client TLS is not configured"))?;
        let conn = rustls::ServerConnection::new(config)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let mut tls = Self::finish(io, rustls::Connection::Server(conn), initial).await?;
        tls.channel_binding = side.end_point.clone();
        Ok(tls)
    }

    /// Opens TLS towards a server on `io` (we are the client).
    pub async fn connect(
        io: TcpStream,
        config: Arc<rustls::ClientConfig>,
        name: ServerName<'static>,
    ) -> io::Result<TlsStream> {
        let conn = rustls::ClientConnection::new(config, name)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Self::finish(io, rustls::Connection::Client(conn), &[]).await
    }

    async fn finish(
        io: TcpStream,
        conn: rustls::Connection,
        initial: &[u8],
    ) -> io::Result<TlsStream> {
        let mut st = State {
            conn,
            plain: 0,
            closed: false,
        };
        drive(&io, &mut st, initial).await?;
        let info = super::describe(&st.conn);
        let peer_certificate = st
            .conn
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.as_ref().to_vec());
        Ok(TlsStream {
            io,
            state: Mutex::new(st),
            info,
            peer_certificate,
            channel_binding: None,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `TLSv1.3/TLS_AES_256_GCM_SHA384/ECDH=X25519`.
    pub fn info(&self) -> &str {
        &self.info
    }

    /// The peer's certificate (DER), if it sent one that verified.
    pub fn peer_certificate(&self) -> Option<&[u8]> {
        self.peer_certificate.as_deref()
    }

    /// Our `tls-server-end-point` channel-binding data (server side only).
    pub fn channel_binding(&self) -> Option<&[u8]> {
        self.channel_binding.as_deref()
    }

    /// The ALPN protocol both sides agreed on.
    pub fn alpn(&self) -> Option<Vec<u8>> {
        self.lock().conn.alpn_protocol().map(<[u8]>::to_vec)
    }

    /// The TCP socket underneath.
    pub fn tcp(&self) -> &TcpStream {
        &self.io
    }

    /// Whether a read would return at once (decrypted bytes or the end are waiting).
    fn has_buffered(&self) -> bool {
        let st = self.lock();
        st.plain > 0 || st.closed
    }

    /// Waits until a read can make progress.
    pub async fn readable(&self) -> io::Result<()> {
        if self.has_buffered() {
            return Ok(());
        }
        self.io.readable().await
    }

    /// Polls for read readiness (see [`TlsStream::readable`]).
    pub fn poll_read_ready(
        &self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        if self.has_buffered() {
            return std::task::Poll::Ready(Ok(()));
        }
        self.io.poll_read_ready(cx)
    }

    /// Waits until the socket can take more records.
    pub async fn writable(&self) -> io::Result<()> {
        self.io.writable().await
    }

    /// Reads decrypted bytes into `buf` without waiting; `Ok(0)` is the end.
    pub fn try_read_buf(&self, buf: &mut BytesMut) -> io::Result<usize> {
        let mut st = self.lock();
        loop {
            if st.plain > 0 {
                let spare = buf.capacity() - buf.len();
                let want = st.plain.min(if spare == 0 { READ_CHUNK } else { spare });
                let start = buf.len();
                buf.resize(start + want, 0);
                let n = match st.conn.reader().read(&mut buf[start..]) {
                    Ok(n) => n,
                    Err(e) => {
                        buf.truncate(start);
                        return Err(e);
                    }
                };
                buf.truncate(start + n);
                st.plain -= n;
                return Ok(n);
            }
            if st.closed {
                return Ok(0);
            }
            match st.conn.read_tls(&mut Sock(&self.io)) {
                Ok(0) => {
                    st.closed = true;
                    return Ok(0);
                }
                Ok(_) => {}
                Err(e) => return Err(e),
            }
            st.process(&self.io)?;
            if st.conn.wants_write() {
                // A key update's answer or an alert: goes out with the next write
                // if the socket is full now.
                let _ = st.flush(&self.io);
            }
        }
    }

    /// Encrypts as much of `bufs` as one call takes (at most [`WRITE_CHUNK`]) and sends
    /// what the socket takes. `WouldBlock` while older records are still queued.
    pub fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let mut st = self.lock();
        st.flush(&self.io)?;
        let mut limited = [IoSlice::new(&[]); 16];
        let mut n = 0;
        let mut total = 0;
        for b in bufs.iter().take(limited.len()) {
            if total >= WRITE_CHUNK {
                break;
            }
            let take = b.len().min(WRITE_CHUNK - total);
            limited[n] = IoSlice::new(&b[..take]);
            n += 1;
            total += take;
        }
        let accepted = st.conn.writer().write_vectored(&limited[..n])?;
        match st.flush(&self.io) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        Ok(accepted)
    }

    /// Sends queued records: `Ok(true)` when none is left, `Ok(false)` when the socket
    /// is full (wait for [`TlsStream::writable`] and call again).
    pub fn try_flush(&self) -> io::Result<bool> {
        match self.lock().flush(&self.io) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Whether the peer closed or sent data (see `Stream::has_unexpected_input`).
    pub fn has_unexpected_input(&self) -> bool {
        let mut st = self.lock();
        if st.plain > 0 || st.closed {
            return true;
        }
        match st.conn.read_tls(&mut Sock(&self.io)) {
            Ok(0) => true,
            Ok(_) => st.process(&self.io).is_err() || st.plain > 0 || st.closed,
            Err(e) => e.kind() != io::ErrorKind::WouldBlock,
        }
    }
}

impl TlsStream {
    /// Registers the socket with the current thread's reactor (see
    /// [`Stream::rehome`](crate::stream::Stream::rehome)): a duplicate descriptor is
    /// registered here, then the old one is deregistered and closed. The TLS state
    /// stays as it is.
    pub fn rehome(&mut self) -> io::Result<()> {
        use std::os::fd::AsFd;
        let dup = self.io.as_fd().try_clone_to_owned()?;
        let new = TcpStream::from_std(std::net::TcpStream::from(dup))?;
        drop(std::mem::replace(&mut self.io, new));
        Ok(())
    }
}

impl Drop for TlsStream {
    /// Says goodbye properly (close_notify) if the socket takes it now, so PostgreSQL
    /// does not log an unexpected EOF; never waits.
    fn drop(&mut self) {
        let mut st = self.lock();
        if !st.closed {
            st.conn.send_close_notify();
            let _ = st.flush(&self.io);
        }
    }
}
