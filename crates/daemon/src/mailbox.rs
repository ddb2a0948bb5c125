//! A session's mailbox: where pool-core's orders for one client (its server, a
//! disconnect) are left. A mutex-guarded queue plus the waker of the session's task, so
//! an idle client costs a few dozen bytes, and waiting on it needs no state in the
//! session's future (a tokio mpsc channel preallocates a block of 32 message slots; a
//! `Notify` waiter is a linked-list node kept in the waiting future).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

use crate::shared::SessionMsg;

/// One client's mailbox. Only its session receives from it.
#[derive(Debug, Default)]
pub struct Mailbox {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    queue: VecDeque<SessionMsg>,
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
            inner.queue.push_back(msg);
            inner.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Takes the next message without waiting.
    pub fn try_recv(&self) -> Option<SessionMsg> {
        self.inner().queue.pop_front()
    }

    /// Takes the next message, or registers the task to be woken by the next `send`.
    pub fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<SessionMsg> {
        let mut inner = self.inner();
        match inner.queue.pop_front() {
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
        self.inner().queue.drain(..).collect()
    }
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
}
