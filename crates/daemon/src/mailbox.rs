//! A session's mailbox: where pool-core's orders for one client (its server, a
//! disconnect) are left. A mutex-guarded queue plus the waker of the session's task, so
//! an idle client costs a few dozen bytes, and waiting on it needs no state in the
//! session's future (a tokio mpsc channel preallocates a block of 32 message slots; a
//! `Notify` waiter is a linked-list node kept in the waiting future).
//!
//! It also carries the session's idle mark for parking (`session::park`): since which
//! tick the session has been idle, and whether its worker asked it to park.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

use crate::shared::SessionMsg;

/// One client's mailbox. Only its session receives from it.
#[derive(Debug, Default)]
pub struct Mailbox {
    inner: Mutex<Inner>,
    /// 0 while the session is busy; else `IDLE` and the tick it became idle at, plus
    /// `ASKED` once its worker asked it to park. Written by the session and by its
    /// worker's parker, which run on the same thread.
    idle: AtomicU32,
}

/// The session is idle (no server, nothing buffered, waiting for its client).
const IDLE: u32 = 1 << 31;
/// Its worker asked it to park.
const ASKED: u32 = 1 << 30;
/// The tick bits (they wrap; ticks are compared by difference).
const TICKS: u32 = ASKED - 1;

#[derive(Debug, Default)]
struct Inner {
    /// Messages in order (a `Vec`: there are rarely more than two, and it is 8 bytes
    /// smaller than a `VecDeque` in every client's mailbox).
    queue: Vec<SessionMsg>,
    waker: Option<Waker>,
}

impl Mailbox {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Leaves a message and wakes the session.
    pub fn send(&self, msg: SessionMsg) {
        let waker = {
            let mut inner = self.inner();
            inner.queue.push(msg);
            inner.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Takes the next message without waiting.
    pub fn try_recv(&self) -> Option<SessionMsg> {
        pop_front(&mut self.inner().queue)
    }

    /// Takes the next message, or registers the task to be woken by the next `send`.
    pub fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<SessionMsg> {
        let mut inner = self.inner();
        match pop_front(&mut inner.queue) {
            Some(m) => Poll::Ready(m),
            None => {
                match &mut inner.waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    slot => *slot = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        }
    }

    /// Waits for the next message. Cancel-safe: a message stays queued until taken.
    pub async fn recv(&self) -> SessionMsg {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Everything left, for a session that is going away.
    pub fn drain(&self) -> Vec<SessionMsg> {
        std::mem::take(&mut self.inner().queue)
    }

    /// The session starts waiting idle at `tick`.
    pub fn mark_idle(&self, tick: u32) {
        self.idle.store(IDLE | (tick & TICKS), Ordering::Relaxed);
    }

    /// The session is busy again (or parked): not to be asked to park.
    pub fn mark_busy(&self) {
        self.idle.store(0, Ordering::Relaxed);
    }

    /// Whether the session's worker asked it to park.
    pub fn asked_to_park(&self) -> bool {
        self.idle.load(Ordering::Relaxed) & ASKED != 0
    }

    /// At tick `now`: if the session has been idle since at least two ticks ago (a
    /// whole tick), asks it to park and wakes it. Whether it was asked.
    pub fn ask_to_park_if_idle(&self, now: u32) -> bool {
        let state = self.idle.load(Ordering::Relaxed);
        if state & IDLE == 0 || state & ASKED != 0 || now.wrapping_sub(state) & TICKS < 2 {
            return false;
        }
        self.idle.store(state | ASKED, Ordering::Relaxed);
        let waker = self.inner().waker.take();
        if let Some(w) = waker {
            w.wake();
        }
        true
    }

    /// The session parks: `waker` (which names its parking slot) is woken by the next
    /// message instead of its task. `false`: a message is already waiting, so the
    /// session should not park.
    pub fn park(&self, waker: Waker) -> bool {
        self.mark_busy();
        let mut inner = self.inner();
        if !inner.queue.is_empty() {
            return false;
        }
        inner.waker = Some(waker);
        true
    }
}

fn pop_front(queue: &mut Vec<SessionMsg>) -> Option<SessionMsg> {
    (!queue.is_empty()).then(|| queue.remove(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_send_wakes_the_waiting_session_and_the_message_is_kept_until_taken() {
        let mb = Mailbox::default();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(mb.poll_recv(&mut cx).is_pending());
        mb.send(SessionMsg::FastClose);
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        // A send with nobody waiting wakes nobody; the messages wait in order.
        mb.send(SessionMsg::CancelWait);
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(matches!(
            mb.poll_recv(&mut cx),
            Poll::Ready(SessionMsg::FastClose)
        ));
        assert!(matches!(mb.try_recv(), Some(SessionMsg::CancelWait)));
        assert!(mb.poll_recv(&mut cx).is_pending());
    }

    #[test]
    fn a_session_is_asked_to_park_once_after_a_whole_idle_tick() {
        let mb = Mailbox::default();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(mb.poll_recv(&mut cx).is_pending());
        // Busy sessions are never asked.
        assert!(!mb.ask_to_park_if_idle(10));
        mb.mark_idle(9);
        // Idle since tick 9: at tick 10 that may be a moment only.
        assert!(!mb.ask_to_park_if_idle(10));
        assert!(!mb.asked_to_park());
        assert!(mb.ask_to_park_if_idle(11));
        assert!(mb.asked_to_park());
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        // Asked once only.
        assert!(!mb.ask_to_park_if_idle(12));
        mb.mark_busy();
        assert!(!mb.asked_to_park());
        // Ticks wrap.
        mb.mark_idle(u32::MAX);
        assert!(mb.ask_to_park_if_idle(1));
    }

    #[test]
    fn a_parked_session_is_woken_through_its_parking_waker_unless_a_message_waits() {
        let mb = Mailbox::default();
        let session = Arc::new(Count(AtomicUsize::new(0)));
        let parking = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(session.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(mb.poll_recv(&mut cx).is_pending());
        assert!(mb.park(Waker::from(parking.clone())));
        mb.send(SessionMsg::FastClose);
        assert_eq!(session.0.load(Ordering::SeqCst), 0);
        assert_eq!(parking.0.load(Ordering::SeqCst), 1);
        // With a message already queued, parking is refused.
        assert!(!mb.park(Waker::from(parking.clone())));
        assert!(matches!(mb.try_recv(), Some(SessionMsg::FastClose)));
    }
}
