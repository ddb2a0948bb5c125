//! Thread-per-core: one single-threaded tokio runtime per worker thread.
//!
//! A session runs start to end on the worker it was given at accept, and its sockets
//! are registered with that worker's reactor, so readiness, wake-ups and writes of one
//! client never involve another thread. A server socket belongs to the worker that
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
use std::sync::atomic::{AtomicUsize, Ordering};
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
    /// Sessions on each worker (new sessions go to the least loaded).
    load: Vec<AtomicUsize>,
}

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
    crate::session::park::start(&handles)?;
    WORKERS
        .set(Workers { handles, load })
        .map_err(|_| std::io::Error::other("workers installed twice"))?;
    Ok(())
}

/// Counts one session on the worker it runs on while it lives: zero-sized (no bytes in
/// every session's task), as a session never leaves the worker it started on. Created
/// by the session's own future (see [`spawn_session`]).
pub struct Load;

impl Drop for Load {
    fn drop(&mut self) {
        if let Some(w) = WORKERS.get() {
            w.load[current()].fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Runs a new session on the least loaded worker, or on the current one while its load
/// is within a small margin of the least. `make` builds the session's future here; a
/// socket bound for another worker is detached first, and the future registers it there
/// ([`Stream::attach`]) when it starts. The future is spawned as it is, with no wrapper
/// around it, and holds a [`Load`] while it runs.
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
    let here_load = w.load[here].load(Ordering::Relaxed);
    let (mut best, mut best_load) = (here, here_load);
    for (i, l) in w.load.iter().enumerate() {
        let l = l.load(Ordering::Relaxed);
        if l < best_load {
            best = i;
            best_load = l;
        }
    }
    // Moving a socket costs a cross-thread wake-up and two epoll_ctl calls: stay here
    // unless this worker has clearly more sessions (short-lived connections, which
    // come and go before the load evens out, then mostly stay on the acceptor).
    if here_load <= best_load + 1 + best_load / 16 {
        best = here;
    }
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
