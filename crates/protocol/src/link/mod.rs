//! The protocol tracker of one client-server link: fed the bytes each side sends, in
//! whatever chunks they arrive, it says what to write where, and when the link is clean
//! enough to hand the server to someone else (mirrors PgBouncer's client.c
//! `handle_client_work`, server.c `handle_server_work` and prepare.c; PostgreSQL's
//! postgres.c message loop is the reference for what a server answers).
//!
//! It tracks what PostgreSQL tracks:
//!
//! - every Query, Sync and FunctionCall owes one ReadyForQuery, every Parse, Bind,
//!   Describe, Execute and Close its own reply (the request queue);
//! - an error in extended protocol makes the server skip to the next Sync: the skipped
//!   requests owe nothing (and their statement-cache effects are undone);
//! - COPY: once the server answers CopyInResponse, the client's CopyData and the Syncs
//!   and Flushes among them are consumed by the COPY, up to CopyDone or CopyFail;
//! - the transaction status of the last ReadyForQuery, and whether the last thing the
//!   server said was that ReadyForQuery (after a Flush it may be inside a transaction
//!   whose status it has not reported yet).
//!
//! The link is clean only when nothing is owed, both directions are at a message
//! boundary, the last server message was ReadyForQuery('I') and nothing is uncertain.
//!
//! Bodies stream through: the output points into the chunk that was fed. Only headers
//! (5 bytes) and, in prepared-statement mode, the names of Bind/Describe/Close and named
//! Parse messages are held; a named Parse is kept whole because its text becomes the
//! shared [`Statement`] that may be prepared again on other servers.

mod client;
mod error;
mod framing;
mod output;
mod queue;
mod server;
mod statements;
#[cfg(test)]
mod tests;

use bytes::BytesMut;

pub use error::{Blame, LinkError};
pub use output::{Output, Piece};
pub use statements::{ClientStatements, ServerStatements, Statement, StatementRegistry};

use crate::status::TransactionStatus;
use framing::Framer;
use queue::Queue;

/// Longest statement plus portal name held for a Bind, Describe or Close (PostgreSQL
/// itself has no limit, drivers use a few dozen bytes).
pub const NAME_LIMIT: usize = 1 << 20;

/// More requests than this in flight and the caller should stop reading the client
/// until the server catches up (each entry is a few bytes; this bounds the queue).
pub const QUEUE_LIMIT: usize = 64 * 1024;

/// How a link is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkConfig {
    /// `max_packet_size`: longer messages in either direction are refused.
    pub max_packet_size: u32,
    /// `max_prepared_statements` when named statements are tracked (transaction and
    /// statement pooling), 0 when they pass through untouched.
    pub max_prepared_statements: usize,
    /// Statement pooling: a ReadyForQuery that opens a transaction is refused.
    pub statement_mode: bool,
}

/// Counters of one link since the last [`Link::take_counts`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Named Parses from the client (PgBouncer's `ps_client_parse_count`).
    pub client_parses: u64,
    /// Parses we sent for named statements, injected ones included (`ps_server_parse_count`).
    pub server_parses: u64,
    /// Binds of named statements (`ps_bind_count`).
    pub binds: u64,
    /// Statements closed on the server to stay within `max_prepared_statements`.
    pub evictions: u64,
}

/// What one chunk from the client produced.
#[derive(Debug, Default)]
pub struct FromClient {
    /// Bytes for the server; [`Piece::Input`] ranges point into the chunk.
    pub to_server: Output,
    /// Replies we made up, for the client (its own buffer only).
    pub to_client: Output,
    /// The client sent Terminate: nothing after it was looked at.
    pub terminated: bool,
    /// Whether the chunk held the start of at least one message.
    pub requests: bool,
}

impl FromClient {
    /// Forgets the last chunk's results (keeps the allocations).
    pub fn clear(&mut self) {
        self.to_server.clear();
        self.to_client.clear();
        self.terminated = false;
        self.requests = false;
    }

    /// [`clear`](Self::clear), and frees buffers grown past `max` bytes.
    pub fn clear_and_shrink(&mut self, max: usize) {
        self.clear();
        self.to_server.clear_and_shrink(max);
        self.to_client.clear_and_shrink(max);
    }
}

/// What one chunk from the server produced.
#[derive(Debug, Default)]
pub struct FromServer {
    /// Bytes for the client; [`Piece::Input`] ranges point into the chunk.
    pub to_client: Output,
    /// ParameterStatus messages, in order.
    pub params: Vec<(String, String)>,
    /// ReadyForQuery messages seen.
    pub readies: u32,
    /// Of those, how many said idle (a transaction ended).
    pub idle_readies: u32,
}

impl FromServer {
    /// Forgets the last chunk's results (keeps the allocations).
    pub fn clear(&mut self) {
        self.to_client.clear();
        self.params.clear();
        self.readies = 0;
        self.idle_readies = 0;
    }

    /// [`clear`](Self::clear), and frees buffers grown past `max` bytes.
    pub fn clear_and_shrink(&mut self, max: usize) {
        self.clear();
        self.to_client.clear_and_shrink(max);
        if self.params.capacity() > 64 {
            self.params = Vec::new();
        }
    }
}

/// The tracker of one link. Create it when a client gets a server, feed it both
/// directions, and give the statement caches back with [`Link::into_statements`].
#[derive(Debug)]
pub struct Link {
    cfg: LinkConfig,
    client: Framer,
    server: Framer,
    cbody: client::Body,
    /// The buffer of the last held client message, kept for the next one (cleared).
    spare_hold: BytesMut,
    sbody: server::Body,
    /// The buffer of the last captured server message, kept for the next one (cleared).
    spare_capture: BytesMut,
    /// Tag of the server message being read.
    server_tag: u8,
    queue: Queue,
    status: TransactionStatus,
    /// The last thing the server sent was ReadyForQuery (or it has sent nothing since it
    /// was idle in the pool).
    ready: bool,
    /// The server skips client messages until a Sync (an error in extended protocol).
    skipping: bool,
    /// The server is in COPY IN (or COPY BOTH).
    server_copy: bool,
    /// The client's next messages are inside that COPY (no CopyDone/CopyFail yet).
    client_copy: bool,
    /// CopyData went by since the COPY started.
    copy_data_seen: bool,
    /// Syncs or requests sent inside the COPY after some data: if the COPY fails, the
    /// server may or may not have read them as part of it.
    copy_ambiguous: u32,
    /// Why the server's answers did not match what was asked: never reuse this server.
    uncertain: Option<&'static str>,
    client_statements: ClientStatements,
    server_statements: ServerStatements,
    counts: Counts,
}

impl Link {
    /// A link to a server that is idle and clean, with the client's statement names and
    /// the server's statement cache.
    pub fn new(
        cfg: LinkConfig,
        client_statements: ClientStatements,
        server_statements: ServerStatements,
    ) -> Link {
        Link {
            cfg,
            client: Framer::default(),
            server: Framer::default(),
            cbody: client::Body::Forward,
            spare_hold: BytesMut::new(),
            sbody: server::Body::Forward,
            spare_capture: BytesMut::new(),
            server_tag: 0,
            queue: Queue::default(),
            status: TransactionStatus::Idle,
            ready: true,
            skipping: false,
            server_copy: false,
            client_copy: false,
            copy_data_seen: false,
            copy_ambiguous: 0,
            uncertain: None,
            client_statements,
            server_statements,
            counts: Counts::default(),
        }
    }

    /// Nothing owed, both directions at a message boundary, the server's last word was
    /// ReadyForQuery('I'): the server may go back to the pool.
    pub fn is_clean(&self) -> bool {
        self.queue.is_empty()
            && self.ready
            && self.status == TransactionStatus::Idle
            && self.uncertain.is_none()
            && !self.skipping
            && !self.server_copy
            && !self.client_copy
            && self.client.at_boundary()
            && self.server.at_boundary()
    }

    /// Something was sent that the server has not answered yet.
    pub fn is_waiting_for_server(&self) -> bool {
        !self.queue.is_empty() || self.server_copy || self.skipping
    }

    /// Inside a transaction, or with requests in flight.
    pub fn in_transaction(&self) -> bool {
        self.status != TransactionStatus::Idle || !self.ready || !self.queue.is_empty()
    }

    /// The status of the last ReadyForQuery.
    pub fn status(&self) -> TransactionStatus {
        self.status
    }

    /// Whether the caller may feed more client bytes now (the queue is bounded).
    pub fn wants_client_input(&self) -> bool {
        self.queue.len() < QUEUE_LIMIT
    }

    /// Whether the server's answers stopped making sense (it will not be reused).
    pub fn is_uncertain(&self) -> bool {
        self.uncertain.is_some()
    }

    /// Why the server's answers stopped making sense, if they did.
    pub fn uncertainty(&self) -> Option<&'static str> {
        self.uncertain
    }

    /// Bytes the tracker holds itself: a split header, the names (or the whole named
    /// Parse) of a message being rewritten, a ParameterStatus or ReadyForQuery being
    /// read. Never more than [`NAME_LIMIT`] or `max_packet_size`, plus 64 KiB.
    pub fn held_bytes(&self) -> usize {
        let client = match &self.cbody {
            client::Body::Hold { buf, .. } => buf.len(),
            client::Body::Forward => 0,
        };
        let server = match &self.sbody {
            server::Body::Capture { buf, .. } => buf.len(),
            _ => 0,
        };
        client + server + 2 * crate::header::Header::SIZE
    }

    /// Requests in flight (each a few bytes of the queue).
    pub fn owed(&self) -> usize {
        self.queue.len()
    }

    /// The counters since the last call.
    pub fn take_counts(&mut self) -> Counts {
        std::mem::take(&mut self.counts)
    }

    /// The client's statement names.
    pub fn client_statements(&self) -> &ClientStatements {
        &self.client_statements
    }

    /// The server's statement cache.
    pub fn server_statements(&self) -> &ServerStatements {
        &self.server_statements
    }

    /// Ends the link: the client's names and the server's cache, to keep with each.
    pub fn into_statements(self) -> (ClientStatements, ServerStatements) {
        (self.client_statements, self.server_statements)
    }

    /// Ends the link like [`into_statements`](Self::into_statements) but keeps the
    /// tracker, empty, for [`relink`](Self::relink): a caller that links again and again
    /// (one link per transaction) then allocates its queue and buffers once.
    pub fn take_statements(&mut self) -> (ClientStatements, ServerStatements) {
        (
            std::mem::take(&mut self.client_statements),
            std::mem::take(&mut self.server_statements),
        )
    }

    /// Makes this tracker what [`Link::new`] would return for these arguments, keeping
    /// only its allocations (the queue and the spare buffers, all empty).
    pub fn relink(
        &mut self,
        cfg: LinkConfig,
        client_statements: ClientStatements,
        server_statements: ServerStatements,
    ) {
        let mut queue = std::mem::take(&mut self.queue);
        queue.clear();
        let spare_hold = std::mem::take(&mut self.spare_hold);
        let spare_capture = std::mem::take(&mut self.spare_capture);
        *self = Link {
            queue,
            spare_hold,
            spare_capture,
            ..Link::new(cfg, client_statements, server_statements)
        };
    }

    fn prepared(&self) -> bool {
        self.cfg.max_prepared_statements > 0
    }
}

/// Spare buffers (a held client message, a captured server message) up to this capacity
/// are kept for the next message of their kind.
const SPARE_LIMIT: usize = 4096;

/// Keeps `buf`, emptied, as `spare` for the next message, unless it grew past
/// [`SPARE_LIMIT`] (a long name or ParameterStatus) or `spare` is already larger.
fn keep_spare(spare: &mut BytesMut, mut buf: BytesMut) {
    if buf.capacity() <= SPARE_LIMIT && buf.capacity() > spare.capacity() {
        buf.clear();
        *spare = buf;
    }
}

/// The type of the first message a client without a server sent: `Ok(None)` until its
/// header is complete. Refuses what [`Link::from_client`] would refuse, so a client
/// that sends nonsense never takes a server. Terminate is returned as its tag.
pub fn first_request(buf: &[u8], max_packet_size: u32) -> Result<Option<u8>, LinkError> {
    let Some(head) = buf.get(..crate::header::Header::SIZE) else {
        return Ok(None);
    };
    match crate::header::Header::peek(head, max_packet_size) {
        Ok(Some(h))
            if h.tag == crate::frontend::frontend_tag::TERMINATE || client::is_request(h.tag) =>
        {
            Ok(Some(h.tag))
        }
        Ok(Some(h)) => Err(LinkError::ClientUnknownMessage { tag: h.tag }),
        _ => Err(LinkError::ClientBadHeader {
            hex: error::hex8(buf),
            len: u32::from_be_bytes([head[1], head[2], head[3], head[4]]),
            max: max_packet_size,
        }),
    }
}

/// Encodes a message with `tag` whose body `f` writes, into `buf`.
pub(crate) fn put_message(buf: &mut BytesMut, tag: u8, f: impl FnOnce(&mut BytesMut)) {
    let at = crate::header::begin(buf, tag);
    f(buf);
    crate::header::finish(buf, at);
}
