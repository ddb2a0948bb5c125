//! Parked idle clients: a client that has sent nothing for a while costs no task and no
//! reactor registration, only its session's state in a slot of its worker's parker.
//!
//! - A session waiting idle (no server, nothing buffered, a plain socket) notes the
//!   parker's tick in its mailbox ([`Mailbox::mark_idle`]).
//! - Every [`TICK`], each worker's parker asks the sessions that have been idle for a
//!   whole tick to park, and wakes them.
//! - A session asked to park takes its socket off the reactor, leaves its state in a
//!   slot and ends its task ([`park`]). The parker watches every parked socket with one
//!   epoll set of its own (a single reactor registration for all of them), and each
//!   parked mailbox through a waker that names the slot.
//! - When the socket has something (data, EOF) or a message arrives (a server, a
//!   disconnect), the parker spawns the session again on the same worker
//!   ([`super::resume`]), which registers the socket and carries on where it stopped.
//!
//! The parker's tick also measures its worker's CPU time for the placement of sessions
//! ([`crate::workers::report_busy`]).
//!
//! Parking never involves a server: a session parks only when it has none. Only the
//! worker threads of the binary park ([`start`]); without them nothing parks.

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Poll, Wake, Waker};
use std::time::Duration;

use rustix::event::epoll;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::Session;
use crate::mailbox::Mailbox;
use crate::workers::Load;

/// How often parkers look for idle sessions: a session parks after one to two ticks
/// without a word from its client.
pub(crate) const TICK: Duration = Duration::from_millis(100);

/// Events taken from the epoll set per call.
const BATCH: usize = 64;

static PARKERS: OnceLock<Vec<Parker>> = OnceLock::new();

/// One worker's parked sessions.
struct Parker {
    worker: usize,
    epoll: OwnedFd,
    /// Ticks so far (wrapping; only worker 0's counts, see [`tick`]).
    tick: AtomicU32,
    /// Parked sessions now (for `/metrics`).
    parked: AtomicUsize,
    /// The mailboxes of the sessions that logged in on this worker, for the sweep.
    enrolled: Mutex<Vec<Arc<Mailbox>>>,
    slots: Mutex<Slots<Box<Parked>>>,
    /// Keys whose mailbox got a message, and the parker task's waker.
    woken: Mutex<(Vec<u64>, Option<Waker>)>,
}

/// A parked session and the count of its worker's sessions it keeps.
struct Parked {
    session: Session,
    _load: Load,
}

/// Parked things under keys.
struct Slots<T> {
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
}

impl<T> Default for Slots<T> {
    fn default() -> Self {
        Slots {
            slots: Vec::new(),
            free: Vec::new(),
        }
    }
}

struct Slot<T> {
    /// Bumped when the slot is emptied, so that a stale key finds nothing.
    generation: u32,
    parked: Option<T>,
}

/// A slot's key: its worker (8 bits), the slot's generation (24 bits), its index.
fn key(worker: usize, generation: u32, index: u32) -> u64 {
    ((worker as u64 & 0xff) << 56) | (u64::from(generation & 0xff_ffff) << 32) | u64::from(index)
}

impl<T> Slots<T> {
    fn insert(&mut self, worker: usize, parked: T) -> u64 {
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    parked: None,
                });
                (self.slots.len() - 1) as u32
            }
        };
        let slot = &mut self.slots[index as usize];
        slot.parked = Some(parked);
        key(worker, slot.generation, index)
    }

    fn get(&self, key: u64) -> Option<&T> {
        let slot = self.slots.get(key as u32 as usize)?;
        if slot.generation & 0xff_ffff != ((key >> 32) as u32) & 0xff_ffff {
            return None;
        }
        slot.parked.as_ref()
    }

    fn take(&mut self, key: u64) -> Option<T> {
        let index = key as u32;
        let slot = self.slots.get_mut(index as usize)?;
        if slot.generation & 0xff_ffff != ((key >> 32) as u32) & 0xff_ffff {
            return None;
        }
        let parked = slot.parked.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(index);
        Some(parked)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Creates one parker per worker and starts each on its worker (`handles[i]` runs
/// worker `i`). Without this, sessions never park.
pub(crate) fn start(handles: &[tokio::runtime::Handle]) -> std::io::Result<()> {
    let mut parkers = Vec::with_capacity(handles.len());
    for worker in 0..handles.len() {
        parkers.push(Parker {
            worker,
            epoll: epoll::create(epoll::CreateFlags::CLOEXEC)?,
            tick: AtomicU32::new(0),
            parked: AtomicUsize::new(0),
            enrolled: Mutex::default(),
            slots: Mutex::default(),
            woken: Mutex::default(),
        });
    }
    PARKERS
        .set(parkers)
        .map_err(|_| std::io::Error::other("parkers started twice"))?;
    for (worker, handle) in handles.iter().enumerate() {
        handle.spawn(run(worker));
    }
    Ok(())
}

/// This worker's parker, when sessions park.
fn here() -> Option<&'static Parker> {
    PARKERS.get()?.get(crate::workers::current())
}

/// The current tick (worker 0's parker counts them for all, so that a session that
/// moved between workers is compared with the same clock); `None`: sessions do not park.
pub(super) fn tick() -> Option<u32> {
    PARKERS
        .get()?
        .first()
        .map(|p| p.tick.load(Ordering::Relaxed))
}

/// Puts a logged-in session's mailbox on its worker's list, so that the sweep sees it.
pub(super) fn enroll(mailbox: &Arc<Mailbox>) {
    if let Some(p) = here() {
        lock(&p.enrolled).push(mailbox.clone());
    }
}

/// How many sessions are parked now, on every worker.
pub(crate) fn parked() -> usize {
    PARKERS.get().map_or(0, |ps| {
        ps.iter().map(|p| p.parked.load(Ordering::Relaxed)).sum()
    })
}

/// Parks `session`, which has no server and whose socket is off the reactor
/// ([`crate::stream::Stream::detach`]). If it cannot be watched, it is resumed at once.
pub(super) fn park(session: Session, load: Load) {
    let Some(p) = here() else {
        tokio::spawn(super::resume(session, load));
        return;
    };
    let mailbox = match (session.client.unregistered_fd(), session.rx.clone()) {
        (Some(_), Some(mailbox)) => mailbox,
        _ => {
            tokio::spawn(super::resume(session, load));
            return;
        }
    };
    let (key, added) = {
        let mut slots = lock(&p.slots);
        let key = slots.insert(
            p.worker,
            Box::new(Parked {
                session,
                _load: load,
            }),
        );
        let flags = epoll::EventFlags::IN | epoll::EventFlags::RDHUP | epoll::EventFlags::ONESHOT;
        let added = match slots
            .get(key)
            .and_then(|p| p.session.client.unregistered_fd())
        {
            Some(fd) => epoll::add(&p.epoll, fd, epoll::EventData::new_u64(key), flags),
            None => Err(rustix::io::Errno::BADF),
        };
        (key, added)
    };
    p.parked.fetch_add(1, Ordering::Relaxed);
    if let Err(e) = added {
        tracing::warn!("cannot watch a parked client: {e}");
        p.resume(key, false);
        return;
    }
    if !mailbox.park(Waker::from(Arc::new(SlotWaker(key)))) {
        wake_key(key);
    }
}

/// Wakes the session parked under its key (through the parker).
struct SlotWaker(u64);

impl Wake for SlotWaker {
    fn wake(self: Arc<Self>) {
        wake_key(self.0);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        wake_key(self.0);
    }
}

/// A parked session's mailbox got a message: its parker resumes it.
fn wake_key(key: u64) {
    let Some(p) = PARKERS.get().and_then(|ps| ps.get((key >> 56) as usize)) else {
        return;
    };
    let waker = {
        let mut woken = lock(&p.woken);
        woken.0.push(key);
        woken.1.take()
    };
    if let Some(w) = waker {
        w.wake();
    }
}

impl Parker {
    /// Spawns the session parked under `key` again on this worker, if it is still
    /// parked there. `watched`: its socket is in the epoll set.
    fn resume(&self, key: u64, watched: bool) {
        let Some(parked) = lock(&self.slots).take(key) else {
            return;
        };
        self.parked.fetch_sub(1, Ordering::Relaxed);
        let Parked { session, _load } = *parked;
        if watched {
            if let Some(fd) = session.client.unregistered_fd() {
                // It may have failed, or the peer closed it: either way it is off the set.
                let _ = epoll::delete(&self.epoll, fd);
            }
        }
        tokio::spawn(super::resume(session, _load));
    }

    /// The next tick: every session idle for a whole tick is asked to park, and the
    /// mailboxes of sessions that are gone are dropped from the list.
    fn sweep(&self) {
        let now = if self.worker == 0 {
            self.tick.fetch_add(1, Ordering::Relaxed).wrapping_add(1)
        } else {
            match tick() {
                Some(now) => now,
                None => return,
            }
        };
        lock(&self.enrolled).retain(|mailbox| {
            if Arc::strong_count(mailbox) == 1 {
                return false;
            }
            mailbox.ask_to_park_if_idle(now);
            true
        });
    }
}

/// Worker `worker`'s parker: ticks, parked sockets that became readable, and parked
/// mailboxes that got a message.
async fn run(worker: usize) {
    let Some(p) = PARKERS.get().and_then(|ps| ps.get(worker)) else {
        return;
    };
    // The reactor watches a duplicate of the set's descriptor (the same epoll set).
    // `with_interest` is deprecated for types that may close their descriptor while
    // registered; an `OwnedFd` that the `AsyncFd` owns cannot (and the replacement is
    // an unsafe fn, which this workspace forbids).
    #[allow(deprecated)]
    let set = match p
        .epoll
        .try_clone()
        .and_then(|fd| AsyncFd::with_interest(fd, Interest::READABLE))
    {
        Ok(set) => set,
        Err(e) => {
            tracing::warn!("worker {worker}: parked clients cannot be watched: {e}");
            return;
        }
    };
    let mut ticks = tokio::time::interval(TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut ready: Vec<u64> = Vec::new();
    let at_once = rustix::time::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // This worker's CPU time at the last tick, for its busy share (`workers`): CPU time
    // rather than tokio's busy time, which also counts the moments the thread waited for
    // a core that the database or the clients were using.
    let cpu = || {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
        Duration::new(
            u64::try_from(t.tv_sec).unwrap_or(0),
            u32::try_from(t.tv_nsec).unwrap_or(0),
        )
    };
    let mut last = (cpu(), std::time::Instant::now());
    loop {
        std::future::poll_fn(|cx| {
            let mut ticked = false;
            while ticks.poll_tick(cx).is_ready() {
                p.sweep();
                let now = (cpu(), std::time::Instant::now());
                let busy = now.0.saturating_sub(last.0).as_micros();
                let elapsed = now.1.duration_since(last.1).as_micros().max(1);
                let permille = u32::try_from(busy * 1000 / elapsed).unwrap_or(1000);
                crate::workers::report_busy(worker, permille.min(1000));
                last = now;
                ticked = true;
            }
            {
                let mut woken = lock(&p.woken);
                ready.append(&mut woken.0);
                woken.1 = Some(cx.waker().clone());
            }
            while let Poll::Ready(r) = set.poll_read_ready(cx) {
                let Ok(mut guard) = r else {
                    break;
                };
                let none = epoll::Event {
                    flags: epoll::EventFlags::empty(),
                    data: epoll::EventData::new_u64(0),
                };
                let mut events = [none; BATCH];
                let n = epoll::wait(&p.epoll, &mut events, Some(&at_once)).unwrap_or(0);
                ready.extend(events[..n].iter().map(|e| e.data.u64()));
                if n < BATCH {
                    guard.clear_ready();
                }
            }
            if ticked || !ready.is_empty() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
        for key in ready.drain(..) {
            p.resume(key, true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_finds_only_what_was_parked_under_it() {
        let mut slots = Slots::default();
        let a = slots.insert(3, "a");
        let b = slots.insert(3, "b");
        assert_eq!(a >> 56, 3);
        assert_ne!(a, b);
        assert_eq!(slots.take(a), Some("a"));
        // Taken once only.
        assert_eq!(slots.take(a), None);
        // The slot is reused under a new generation: the old key finds nothing.
        let c = slots.insert(3, "c");
        assert_eq!(c as u32, a as u32);
        assert_ne!(c, a);
        assert_eq!(slots.take(a), None);
        assert_eq!(slots.take(c), Some("c"));
        assert_eq!(slots.take(b), Some("b"));
        // Keys beyond the slots find nothing.
        assert_eq!(slots.take(key(3, 0, 99)), None);
    }
}
