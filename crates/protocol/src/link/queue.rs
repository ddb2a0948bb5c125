//! What the server owes, in order (PgBouncer: `outstanding_requests`): one entry per
//! client request that PostgreSQL answers, plus our own injected requests and the
//! replies we make up, each with what to undo if the server never runs it.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;

use super::statements::{ClientStatements, ServerStatements, Statement};

/// One thing the server owes, or a marker that orders client COPY messages.
#[derive(Debug)]
pub(crate) enum Expect {
    /// Query, Sync or FunctionCall (the tag): answered by ReadyForQuery.
    Ready(u8),
    /// An extended-protocol request (the tag) answered by its own reply. `forward` is
    /// false for requests we injected (their reply is swallowed).
    Reply { tag: u8, forward: bool, undo: Undo },
    /// A reply we make up (the tag of ParseComplete or CloseComplete) when its turn
    /// comes, for a request the server never sees.
    Synthetic { reply: u8, undo: Undo },
    /// CopyData (`d`) or CopyDone/CopyFail (`c`/`f`): nothing answers them, they only
    /// tell where a client's COPY data ends if the server turns out to be in COPY.
    Copy(u8),
}

/// How to take back what a request did to the statement caches when the server does
/// not run it (an error before it, or its own error). Applying the `do` side again is
/// how DISCARD ALL's window is replayed.
#[derive(Debug, Clone)]
pub(crate) enum Undo {
    None,
    /// The client named `stmt`.
    Named(Bytes, Arc<Statement>),
    /// The client's name for `stmt` was dropped by a Close.
    Unnamed(Bytes, Arc<Statement>),
    /// `stmt` was registered on the server.
    Registered(Arc<Statement>),
    /// `stmt` was registered on the server and named by the client.
    RegisteredNamed(Arc<Statement>, Bytes),
    /// `stmt` was evicted from the server cache (with a Close we sent).
    Evicted(Arc<Statement>),
}

impl Undo {
    /// Takes the effect back.
    pub(crate) fn undo(&self, client: &mut ClientStatements, server: &mut ServerStatements) {
        match self {
            Undo::None => {}
            Undo::Named(name, _) => {
                client.remove(name);
            }
            Undo::Unnamed(name, stmt) => {
                client.insert(name.clone(), stmt.clone());
            }
            Undo::Registered(stmt) => {
                server.remove(stmt.id());
            }
            Undo::RegisteredNamed(stmt, name) => {
                server.remove(stmt.id());
                client.remove(name);
            }
            Undo::Evicted(stmt) => server.insert(stmt.clone()),
        }
    }

    /// Applies the effect again.
    pub(crate) fn redo(&self, client: &mut ClientStatements, server: &mut ServerStatements) {
        match self {
            Undo::None => {}
            Undo::Named(name, stmt) => {
                client.insert(name.clone(), stmt.clone());
            }
            Undo::Unnamed(name, _) => {
                client.remove(name);
            }
            Undo::Registered(stmt) => server.insert(stmt.clone()),
            Undo::RegisteredNamed(stmt, name) => {
                server.insert(stmt.clone());
                client.insert(name.clone(), stmt.clone());
            }
            Undo::Evicted(stmt) => {
                server.remove(stmt.id());
            }
        }
    }
}

impl Expect {
    pub(crate) fn undo(&self) -> Option<&Undo> {
        match self {
            Expect::Reply { undo, .. } | Expect::Synthetic { undo, .. } => Some(undo),
            _ => None,
        }
    }
}

/// The queue of one link.
#[derive(Debug, Default)]
pub(crate) struct Queue {
    items: VecDeque<Expect>,
}

impl Queue {
    pub(crate) fn push(&mut self, e: Expect) {
        // Runs of CopyData markers say no more than one does.
        if matches!(e, Expect::Copy(b'd')) && matches!(self.items.back(), Some(Expect::Copy(b'd')))
        {
            return;
        }
        self.items.push_back(e);
    }

    /// Forgets every entry (keeps the allocation).
    pub(crate) fn clear(&mut self) {
        self.items.clear();
    }

    pub(crate) fn front(&self) -> Option<&Expect> {
        self.items.front()
    }

    pub(crate) fn pop(&mut self) -> Option<Expect> {
        self.items.pop_front()
    }

    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Entries after the front, in order.
    pub(crate) fn after_front(&self) -> impl Iterator<Item = &Expect> {
        self.items.iter().skip(1)
    }

    /// Removes the entry at `i`.
    pub(crate) fn remove(&mut self, i: usize) -> Option<Expect> {
        self.items.remove(i)
    }

    pub(crate) fn get(&self, i: usize) -> Option<&Expect> {
        self.items.get(i)
    }
}
