//! A session's mailbox: where pool-core's orders for one client (its server, a
//! disconnect) are left. A mutex-guarded queue plus a `Notify`, so an idle client costs a
//! few dozen bytes (a tokio mpsc channel preallocates a block of 32 message slots).

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::sync::Notify;

use crate::shared::SessionMsg;

/// One client's mailbox.
#[derive(Debug, Default)]
pub struct Mailbox {
    queue: Mutex<VecDeque<SessionMsg>>,
    notify: Notify,
}

impl Mailbox {
    /// Leaves a message and wakes the session.
    pub fn send(&self, msg: SessionMsg) {
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(msg);
        self.notify.notify_one();
    }

    /// Takes the next message without waiting.
    pub fn try_recv(&self) -> Option<SessionMsg> {
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front()
    }

    /// Waits for the next message. Cancel-safe: a message stays queued until taken.
    pub async fn recv(&self) -> SessionMsg {
        loop {
            if let Some(m) = self.try_recv() {
                return m;
            }
            self.notify.notified().await;
        }
    }

    /// Everything left, for a session that is going away.
    pub fn drain(&self) -> Vec<SessionMsg> {
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect()
    }
}
