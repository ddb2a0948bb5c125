//! Protocol-level named prepared statements in transaction and statement mode
//! (`max_prepared_statements`; mirrors PgBouncer >= 1.21, prepare.c / server.c).
//!
//! A client's statement names are its own; on the servers every distinct (query,
//! parameter types) gets one name `PGBOUNCER_<n>`. Parse is sent to a server only if
//! that server does not have the statement yet (otherwise a ParseComplete is made up in
//! its place); Bind and Describe are renamed and, on a server that lacks the statement,
//! preceded by a Parse whose ParseComplete is swallowed; Close of a statement is
//! answered by us. An expectation queue per link keeps made-up and swallowed replies in
//! protocol order; after an ErrorResponse the server skips to the next Sync, and so does
//! the queue.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{BufMut, Bytes, BytesMut};

/// One distinct statement, shared by every client that prepares the same text.
#[derive(Debug)]
pub(crate) struct Stmt {
    pub(crate) id: u64,
    query: Bytes,
    /// Parameter count and type OIDs exactly as the client sent them.
    types: Bytes,
}

impl Stmt {
    fn server_name(&self) -> String {
        format!("PGBOUNCER_{}", self.id)
    }

    /// Writes `Parse(PGBOUNCER_<id>, query, types)`.
    pub(crate) fn encode_parse(&self, out: &mut BytesMut) {
        let name = self.server_name();
        let len = 4 + name.len() + 1 + self.query.len() + 1 + self.types.len();
        out.put_u8(b'P');
        out.put_u32(len as u32);
        out.put_slice(name.as_bytes());
        out.put_u8(0);
        out.put_slice(&self.query);
        out.put_u8(0);
        out.put_slice(&self.types);
    }
}

/// The global registry: (query, types) -> statement.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    by_text: Mutex<HashMap<(Bytes, Bytes), Arc<Stmt>>>,
    next: AtomicU64,
}

impl Registry {
    pub(crate) fn get(&self, query: Bytes, types: Bytes) -> Arc<Stmt> {
        let mut map = self.by_text.lock().unwrap_or_else(|e| e.into_inner());
        map.entry((query.clone(), types.clone()))
            .or_insert_with(|| {
                let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
                Arc::new(Stmt { id, query, types })
            })
            .clone()
    }
}

/// What the server will answer to a request, in order.
#[derive(Debug)]
pub(crate) enum Expect {
    /// A request we forwarded; `parsed` is the statement a forwarded Parse registers.
    Forwarded { kind: u8, parsed: Option<u64> },
    /// A reply we make up (ParseComplete, CloseComplete), sent when its turn comes.
    Synthetic(&'static [u8]),
    /// The ParseComplete of a Parse we injected: not forwarded.
    Swallow(u64),
}

pub(crate) const PARSE_COMPLETE: &[u8] = b"1\0\0\0\x04";
pub(crate) const CLOSE_COMPLETE: &[u8] = b"3\0\0\0\x04";

/// Whether `tag` ends the server's answer to a request of `kind`.
pub(crate) fn is_terminal(kind: u8, tag: u8) -> bool {
    match kind {
        b'P' => tag == b'1',
        b'B' => tag == b'2',
        b'D' => tag == b'T' || tag == b'n',
        b'E' => matches!(tag, b'C' | b'I' | b's'),
        b'C' => tag == b'3',
        _ => tag == b'Z', // Sync, Query, FunctionCall
    }
}

/// Whether a request of `kind` is answered by ReadyForQuery (the server's error
/// recovery point).
pub(crate) fn is_sync_point(kind: u8) -> bool {
    matches!(kind, b'S' | b'Q' | b'F')
}

/// The expectation queue of one link.
#[derive(Debug, Default)]
pub(crate) struct Queue {
    pub(crate) items: VecDeque<Expect>,
    /// Synthetic and Swallow entries queued: the slow path is needed while non-zero.
    pub(crate) special: u32,
}

impl Queue {
    pub(crate) fn push(&mut self, e: Expect) {
        if !matches!(e, Expect::Forwarded { .. }) {
            self.special += 1;
        }
        self.items.push_back(e);
    }

    fn pop(&mut self) -> Option<Expect> {
        let e = self.items.pop_front()?;
        if !matches!(e, Expect::Forwarded { .. }) {
            self.special -= 1;
        }
        Some(e)
    }

    /// Moves made-up replies at the front of the queue into `out`.
    pub(crate) fn flush_synthetic(&mut self, out: &mut BytesMut) {
        while let Some(Expect::Synthetic(bytes)) = self.items.front() {
            out.extend_from_slice(bytes);
            self.pop();
        }
    }

    /// A server message starts with `tag`. Returns whether to forward it; a failed
    /// forwarded Parse is reported through `failed_parse`.
    pub(crate) fn on_server_message(&mut self, tag: u8, failed_parse: &mut Option<u64>) -> bool {
        if tag == b'E' {
            // The request at the front failed; the server skips to the next sync point.
            if let Some(
                Expect::Forwarded {
                    parsed: Some(id), ..
                }
                | Expect::Swallow(id),
            ) = self.items.front()
            {
                *failed_parse = Some(*id);
            }
            while let Some(front) = self.items.front() {
                if matches!(front, Expect::Forwarded { kind, .. } if is_sync_point(*kind)) {
                    break;
                }
                self.pop();
            }
            return true;
        }
        match self.items.front() {
            Some(Expect::Swallow(_)) if tag == b'1' => {
                self.pop();
                false
            }
            Some(Expect::Forwarded { kind, .. }) if is_terminal(*kind, tag) => {
                self.pop();
                true
            }
            _ => true,
        }
    }
}

/// Reads a NUL-terminated string from the front of `b`.
pub(crate) fn cstr(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let i = b.iter().position(|c| *c == 0)?;
    Some((&b[..i], &b[i + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swallowed_and_made_up_replies_keep_protocol_order() {
        let mut q = Queue::default();
        q.push(Expect::Synthetic(PARSE_COMPLETE)); // Parse of a statement the server has
        q.push(Expect::Swallow(7)); // injected Parse before a Bind
        q.push(Expect::Forwarded {
            kind: b'B',
            parsed: None,
        });
        q.push(Expect::Forwarded {
            kind: b'E',
            parsed: None,
        });
        q.push(Expect::Forwarded {
            kind: b'S',
            parsed: None,
        });
        let mut out = BytesMut::new();
        q.flush_synthetic(&mut out);
        assert_eq!(&out[..], PARSE_COMPLETE);
        let mut failed = None;
        assert!(
            !q.on_server_message(b'1', &mut failed),
            "injected ParseComplete swallowed"
        );
        assert!(q.on_server_message(b'2', &mut failed));
        assert!(q.on_server_message(b'D', &mut failed));
        assert!(q.on_server_message(b'C', &mut failed));
        assert!(q.on_server_message(b'Z', &mut failed));
        assert!(q.items.is_empty());
        assert_eq!(q.special, 0);
    }

    #[test]
    fn an_error_skips_to_the_next_sync_and_reports_a_failed_parse() {
        let mut q = Queue::default();
        q.push(Expect::Forwarded {
            kind: b'P',
            parsed: Some(3),
        });
        q.push(Expect::Synthetic(CLOSE_COMPLETE));
        q.push(Expect::Forwarded {
            kind: b'B',
            parsed: None,
        });
        q.push(Expect::Forwarded {
            kind: b'S',
            parsed: None,
        });
        let mut failed = None;
        assert!(q.on_server_message(b'E', &mut failed));
        assert_eq!(failed, Some(3));
        assert_eq!(q.special, 0, "made-up replies after the error are dropped");
        assert!(q.on_server_message(b'Z', &mut failed));
        assert!(q.items.is_empty());
    }

    #[test]
    fn the_registry_gives_one_id_per_distinct_statement() {
        let r = Registry::default();
        let a = r.get(Bytes::from_static(b"select 1"), Bytes::from_static(b"\0\0"));
        let b = r.get(Bytes::from_static(b"select 1"), Bytes::from_static(b"\0\0"));
        let c = r.get(Bytes::from_static(b"select 2"), Bytes::from_static(b"\0\0"));
        assert_eq!(a.id, b.id);
        assert_ne!(a.id, c.id);
        let mut out = BytesMut::new();
        a.encode_parse(&mut out);
        assert_eq!(out[0], b'P');
        assert!(out.ends_with(b"select 1\0\0\0"));
    }
}
