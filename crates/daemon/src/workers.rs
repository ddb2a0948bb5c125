//! Thread-per-core: one single-threaded tokio runtime per worker thread.
//!
//! A session runs on the worker it was given at accept, and its sockets are registered
//! with that worker's reactor, so readiness, wake-ups and writes of one client never
//! involve another thread. New sessions go to the first worker that is not busy (by its
//! thread's CPU time over the last tick), so one worker serves everything until it is
//! busy; a busy worker hands a few sessions per tick, between their transactions, to
//! one that is not (`spill_target`, `move_session`). A server socket belongs to the worker that
//! registered it ([`ServerConn::home`](crate::server::ServerConn)); a session that links
//! a server registered elsewhere moves it to its own reactor first
//! ([`Stream::rehome`](crate::stream::Stream::rehome): deregister, register), instead of
//! having the other worker wake it for every message.
//!
//! Limits and stats stay global: every worker reports to the one `Shared` core.
//!
//! Without [`install`] (the library used inside one test runtime) there is one
//! "worker", 0, and everything is spawned on the current runtime.

use std::cell::Cell;
use std::future::Future;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::OnceLock;

use tokio::runtime::Handle;

use crate::stream::Stream;

thread_local! {
    static CURRENT: Cell<usize> = const { Cell::new(0) };
}

static WORKERS: OnceLock<Workers> = OnceLock::new();

/// The worker runtimes of this process.
#[derive(Debug)]
pub struct Workers {
    handles: Vec<Handle>,
    /// Sessions on each worker (for logs and tests).
    load: Vec<AtomicUsize>,
    /// Each worker's CPU time per tick (see `session::park::TICK`), in permille of one
    /// core, smoothed over about four ticks.
    busy: Vec<AtomicU32>,
    /// How many of its sessions each worker may still hand to a less busy worker in this
    /// tick, at their idle points ([`spill_target`]).
    spills: Vec<AtomicU32>,
}

/// A worker that used more CPU than this over its last tick (permille of one core)
/// takes no new session while another is below it, and hands sessions to one below
/// [`IDLE_ENOUGH`]. Measured on 2 cores: one worker serving pgbench against PostgreSQL
/// uses 0.38-0.46 of a core (up to 40 000 transactions or 5 800 logins a second), and
/// one serving a fake server as fast as it can, 0.76.
const BUSY: u32 = 650;
/// A worker below this may take sessions from a busy one.
const IDLE_ENOUGH: u32 = 400;
/// Sessions a busy worker hands over per tick at most (so that a burst of moves cannot
/// overload the receiver before the next measurement).
const SPILLS_PER_TICK: u32 = 4;

/// The worker this thread is (0 outside any worker thread).
pub fn current() -> usize {
    CURRENT.with(Cell::get)
}

/// How many workers there are (1 without [`install`]).
pub fn count() -> usize {
    WORKERS.get().map_or(1, |w| w.handles.len())
}

/// How many worker threads to run: `TOKIO_WORKER_THREADS` if set (as the multi-thread
/// runtime read it), else one per available core.
pub fn wanted() -> usize {
    std::env::var("TOKIO_WORKER_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .min(256)
}

/// Builds one single-threaded runtime.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// Registers the calling thread's runtime as worker 0 and starts `n - 1` more worker
/// threads, each running its own single-threaded runtime until the process ends.
/// Call once, from inside worker 0's runtime.
pub fn install(n: usize) -> std::io::Result<()> {
    let mut handles = vec![Handle::current()];
    for i in 1..n.max(1) {
        let rt = runtime()?;
        handles.push(rt.handle().clone());
        std::thread::Builder::new()
            .name(format!("worker-{i}"))
            .spawn(move || {
                CURRENT.with(|c| c.set(i));
                rt.block_on(std::future::pending::<()>());
            })?;
    }
    let load = handles.iter().map(|_| AtomicUsize::new(0)).collect();
    let busy = handles.iter().map(|_| AtomicU32::new(0)).collect();
    let spills = handles.iter().map(|_| AtomicU32::new(0)).collect();
    crate::session::park::start(&handles)?;
    WORKERS
        .set(Workers {
            handles,
            load,
            busy,
            spills,
        })
        .map_err(|_| std::io::Error::other("workers installed twice"))?;
    Ok(())
}

/// Counts one session on the worker it runs on while it lives: zero-sized (no bytes in
/// every session's task). Created by the session's own future (see [`spawn_session`]);
/// a session that moves to another worker moves its count with it (`move_session`).
pub struct Load;

impl Drop for Load {
    fn drop(&mut self) {
        if let Some(w) = WORKERS.get() {
            w.load[current()].fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Worker `worker` measured its CPU time over its last tick: `permille` of one core. A
/// busy worker may hand a few sessions to the least busy one while that one is idle
/// enough.
pub(crate) fn report_busy(worker: usize, permille: u32) {
    let Some(w) = WORKERS.get() else {
        return;
    };
    // Smoothed over about four ticks: one busy tick (a burst of logins, the scheduler)
    // moves nothing.
    let smoothed = (3 * w.busy[worker].load(Ordering::Relaxed) + permille) / 4;
    w.busy[worker].store(smoothed, Ordering::Relaxed);
    let spill = spill_to(w.busy.len(), busy_shares(w), worker).is_some();
    w.spills[worker].store(if spill { SPILLS_PER_TICK } else { 0 }, Ordering::Relaxed);
}

fn busy_shares(w: &Workers) -> impl Fn(usize) -> u32 + '_ {
    |i| w.busy[i].load(Ordering::Relaxed)
}

/// Where worker `from` of `n` may hand sessions, given each worker's busy share: the
/// least busy other worker, if `from` is busy and that one is idle enough.
fn spill_to(n: usize, busy: impl Fn(usize) -> u32, from: usize) -> Option<usize> {
    let to = (0..n).filter(|&i| i != from).min_by_key(|&i| busy(i))?;
    (busy(from) > BUSY && busy(to) < IDLE_ENOUGH).then_some(to)
}

/// The worker of `n` for a new session: the first that is not busy, else the least busy.
fn place(n: usize, busy: impl Fn(usize) -> u32) -> usize {
    (0..n)
        .find(|&i| busy(i) <= BUSY)
        .unwrap_or_else(|| (0..n).min_by_key(|&i| busy(i)).unwrap_or(0))
}

/// For a session between transactions: the worker it should move to, if this one is
/// busy and may hand it over (each worker hands over a few sessions per tick at most).
/// One relaxed load when there is nothing to do.
pub(crate) fn spill_target() -> Option<usize> {
    let w = WORKERS.get()?;
    let here = current();
    let left = &w.spills[here];
    if left.load(Ordering::Relaxed) == 0 {
        return None;
    }
    left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .ok()?;
    spill_to(w.busy.len(), busy_shares(w), here)
}

/// Runs `session` (a session that left this worker with its [`Load`], its socket off
/// this reactor) on worker `to`, and moves its count there.
pub(crate) fn move_session<Fut>(to: usize, session: Fut)
where
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(w) = WORKERS.get() else {
        tokio::spawn(session);
        return;
    };
    w.load[current()].fetch_sub(1, Ordering::Relaxed);
    w.load[to].fetch_add(1, Ordering::Relaxed);
    w.handles[to].spawn(session);
}

/// Runs a new session on the first worker that is not busy (worker 0 runs the
/// listeners, so a session that stays there moves nothing), or on the least busy one
/// when all are. One worker serves everything until it is busy: on a machine whose
/// cores the database and the clients also use, a second worker costs more CPU per
/// transaction (cross-core wake-ups, the shared lock's cache lines) and gains nothing.
/// `make` builds the session's future here; a socket bound for another worker is
/// detached first, and the future registers it there ([`Stream::attach`]) when it
/// starts. The future is spawned as it is, with no wrapper around it, and holds a
/// [`Load`] while it runs.
pub fn spawn_session<F, Fut>(socket: Stream, make: F)
where
    F: FnOnce(Stream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(w) = WORKERS.get() else {
        tokio::spawn(make(socket));
        return;
    };
    let here = current();
    let best = place(w.busy.len(), busy_shares(w));
    if best == here {
        w.load[best].fetch_add(1, Ordering::Relaxed);
        tokio::spawn(make(socket));
        return;
    }
    let moving = match socket.detach() {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot move a new connection to worker {best}: {e}");
            return;
        }
    };
    w.load[best].fetch_add(1, Ordering::Relaxed);
    w.handles[best].spawn(make(moving));
}

/// Sessions per worker, for logs and tests.
pub fn loads() -> Vec<usize> {
    WORKERS.get().map_or_else(Vec::new, |w| {
        w.load.iter().map(|l| l.load(Ordering::Relaxed)).collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place_of(busy: &[u32]) -> usize {
        place(busy.len(), |i| busy[i])
    }

    fn spill_of(busy: &[u32], from: usize) -> Option<usize> {
        spill_to(busy.len(), |i| busy[i], from)
    }

    #[test]
    fn new_sessions_fill_the_first_worker_until_it_is_busy() {
        assert_eq!(place_of(&[0, 0]), 0);
        assert_eq!(place_of(&[BUSY, 0]), 0);
        assert_eq!(place_of(&[BUSY + 1, 300]), 1);
        assert_eq!(place_of(&[BUSY + 1, BUSY + 1, 100]), 2);
        // All busy: the least busy.
        assert_eq!(place_of(&[990, 900, 950]), 1);
        assert_eq!(place_of(&[]), 0);
    }

    #[test]
    fn only_a_busy_worker_hands_sessions_and_only_to_one_idle_enough() {
        assert_eq!(spill_of(&[BUSY + 1, IDLE_ENOUGH - 1], 0), Some(1));
        assert_eq!(spill_of(&[BUSY + 1, IDLE_ENOUGH], 0), None);
        assert_eq!(spill_of(&[BUSY, 0], 0), None);
        assert_eq!(spill_of(&[BUSY + 1, 300, 100], 0), Some(2));
        assert_eq!(spill_of(&[100, BUSY + 1], 1), Some(0));
        // One worker: nowhere to go.
        assert_eq!(spill_of(&[1000], 0), None);
    }
}
