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
        loop {
            match stream.try_write(data) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) if n == data.len() => return Ok(()),
                Ok(n) => data = &data[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
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
            match stream.try_write(data) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) if n == data.len() => return Ok(()),
                Ok(n) => data = &data[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// How many writes are waiting for their peer.
    pub fn blocked(&self) -> usize {
        self.blocked.load(Ordering::Acquire)
    }

    /// SUSPEND's flush: waits until no write is blocked, for at most `limit` (zero:
    /// no limit); then drops the writes still blocked and waits for them to go.
    /// Returns how many were dropped.
    pub async fn settle(&self, limit: Duration) -> usize {
        const STEP: Duration = Duration::from_millis(10);
        let start = tokio::time::Instant::now();
        while self.blocked() > 0 {
            if !limit.is_zero() && start.elapsed() >= limit {
                break;
            }
            tokio::time::sleep(STEP).await;
        }
        let stuck = self.blocked();
        if stuck > 0 {
            self.drop_blocked.send_replace(true);
            // Each dropped write returns at its next poll; bounded in case a session
            // is itself waiting on something else.
            let give_up = tokio::time::Instant::now() + Duration::from_secs(5);
            while self.blocked() > 0 && tokio::time::Instant::now() < give_up {
                tokio::time::sleep(STEP).await;
            }
        }
        stuck
    }

    /// SUSPEND ended: blocked writes wait normally again.
    pub fn resume(&self) {
        self.drop_blocked.send_replace(false);
    }
}

/// Whether `e` is a write SUSPEND gave up on.
pub fn is_suspend_drop(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::TimedOut && e.to_string() == SUSPEND_TIMEOUT
}
