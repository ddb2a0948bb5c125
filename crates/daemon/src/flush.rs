//! Session writes that SUSPEND can account for: a write that cannot finish at once
//! (the peer is not reading) counts as "still flushing" until it does. SUSPEND waits for
//! that count to reach zero for up to `suspend_timeout`, then orders the writes still
//! stuck to give up, so their sessions close (PgBouncer drops such sockets the same way).

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use crate::stream::Stream;

/// The text a write dropped by SUSPEND fails with (also the disconnect reason).
pub const SUSPEND_TIMEOUT: &str = "suspend_timeout";

/// Writes that are waiting for their peer, and SUSPEND's order to drop them.
#[derive(Debug)]
pub struct Flusher {
    blocked: AtomicUsize,
    drop_blocked: watch::Sender<bool>,
}

impl Default for Flusher {
    fn default() -> Self {
        Flusher {
            blocked: AtomicUsize::new(0),
            drop_blocked: watch::channel(false).0,
        }
    }
}

/// Counts one blocked write while it lives.
struct Blocked<'a>(&'a AtomicUsize);

impl Drop for Blocked<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Flusher {
    /// Writes all of `data` to `stream`. The common case (the socket takes it all)
    /// touches no shared state; a write that has to wait is counted, and fails with
    /// [`SUSPEND_TIMEOUT`] if SUSPEND gives up on it.
    pub async fn write_all(&self, stream: &Stream, mut data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            // (A zero-byte send would report 0 written, which is not a failure here.)
            return Ok(());
        }
        if write_some(stream, &mut data)? {
            return Ok(());
        }
        self.blocked.fetch_add(1, Ordering::AcqRel);
        let _counted = Blocked(&self.blocked);
        let mut dropped = self.drop_blocked.subscribe();
        loop {
            tokio::select! {
                biased;
                r = stream.writable() => r?,
                _ = dropped.wait_for(|d| *d) => {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, SUSPEND_TIMEOUT));
                }
            }
            if write_some(stream, &mut data)? {
                return Ok(());
            }
        }
    }

    /// Counts a write that is waiting for its peer (in a session's own loop) while the
    /// returned guard lives; its [`BlockedWrite::dropped`] resolves if SUSPEND gives up.
    pub fn blocked_write(&self) -> BlockedWrite<'_> {
        self.blocked.fetch_add(1, Ordering::AcqRel);
        BlockedWrite {
            _counted: Blocked(&self.blocked),
            dropped: self.drop_blocked.subscribe(),
        }
    }

    /// How many writes are waiting for their peer.
    pub fn blocked(&self) -> usize {
        self.blocked.load(Ordering::Acquire)
    }

    /// SUSPEND's flush: waits until no write is blocked, for at most `limit` (zero:
    /// no limit); then drops the writes still blocked and waits for them to go.
    /// `suspended` tells whether SUSPEND is still in force: a RESUME meanwhile ends the
    /// wait and drops nothing. Returns how many writes were dropped.
    pub async fn settle(&self, limit: Duration, suspended: impl Fn() -> bool) -> usize {
        const STEP: Duration = Duration::from_millis(10);
        let start = tokio::time::Instant::now();
        while self.blocked() > 0 && suspended() {
            if !limit.is_zero() && start.elapsed() >= limit {
                break;
            }
            tokio::time::sleep(STEP).await;
        }
        let stuck = self.blocked();
        // Decided inside the channel's lock, so a RESUME (which clears the flag after
        // clearing `suspended`) cannot be overtaken and leave the flag set.
        let dropping = stuck > 0
            && self.drop_blocked.send_if_modified(|d| {
                if suspended() {
                    *d = true;
                    true
                } else {
                    false
                }
            });
        if dropping {
            // Each dropped write returns at its next poll; bounded in case a session
            // is itself waiting on something else.
            let give_up = tokio::time::Instant::now() + Duration::from_secs(5);
            while self.blocked() > 0 && tokio::time::Instant::now() < give_up {
                tokio::time::sleep(STEP).await;
            }
            stuck
        } else {
            0
        }
    }

    /// SUSPEND ended: blocked writes wait normally again.
    pub fn resume(&self) {
        self.drop_blocked.send_replace(false);
    }
}

/// Writes what `stream` takes of `data` now; `Ok(true)` once all of it (and, for TLS,
/// its records) went out.
fn write_some(stream: &Stream, data: &mut &[u8]) -> io::Result<bool> {
    while !data.is_empty() {
        match stream.try_write(data) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => *data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) => return Err(e),
        }
    }
    stream.try_flush()
}

/// A write waiting for its peer, counted by [`Flusher::blocked`] while it lives.
pub struct BlockedWrite<'a> {
    _counted: Blocked<'a>,
    dropped: watch::Receiver<bool>,
}

impl BlockedWrite<'_> {
    /// Resolves when SUSPEND gives up on blocked writes (`suspend_timeout`).
    pub async fn dropped(&mut self) {
        if self.dropped.wait_for(|d| *d).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Whether `e` is a write SUSPEND gave up on.
pub fn is_suspend_drop(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::TimedOut && e.to_string() == SUSPEND_TIMEOUT
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A connected pair whose reading end nobody reads.
    fn pair() -> (Stream, tokio::net::UnixStream) {
        let (a, b) = tokio::net::UnixStream::pair().expect("socketpair");
        (Stream::Unix(a), b)
    }

    /// Starts a write far bigger than the socket buffers and waits until it blocks.
    async fn blocked_write(f: &Arc<Flusher>) -> tokio::task::JoinHandle<io::Result<()>> {
        let (s, peer) = pair();
        let flusher = f.clone();
        let task = tokio::spawn(async move {
            let _peer = peer;
            flusher.write_all(&s, &vec![0u8; 64 << 20]).await
        });
        for _ in 0..500 {
            if f.blocked() == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(f.blocked(), 1, "the write should be waiting for its peer");
        task
    }

    #[tokio::test]
    async fn an_empty_write_succeeds_without_touching_the_socket() {
        let (s, _peer) = pair();
        Flusher::default().write_all(&s, b"").await.unwrap();
    }

    #[tokio::test]
    async fn suspend_drops_a_write_still_blocked_after_the_timeout() {
        let f = Arc::new(Flusher::default());
        let task = blocked_write(&f).await;
        assert_eq!(f.settle(Duration::from_millis(50), || true).await, 1);
        let e = task.await.unwrap().unwrap_err();
        assert!(is_suspend_drop(&e), "{e}");
        assert_eq!(f.blocked(), 0);
    }

    #[tokio::test]
    async fn a_resume_during_the_wait_drops_nothing() {
        let f = Arc::new(Flusher::default());
        let task = blocked_write(&f).await;
        // RESUME came first: the flush gives up waiting and the write goes on.
        assert_eq!(f.settle(Duration::from_millis(50), || false).await, 0);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !task.is_finished(),
            "the write must still be waiting for its peer"
        );
        assert_eq!(f.blocked(), 1);
        task.abort();
    }
}
