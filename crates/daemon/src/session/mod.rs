//! One client connection from accept to close: startup, authentication, welcome, and
//! the forwarding loop that links it to servers as its pool mode says
//! (mirrors client.c and the forwarding half of sbuf.c / proto.c).
//!
//! Only headers are parsed on the way through; bodies are looked at for ReadyForQuery
//! (release decisions) and ParameterStatus (parameter tracking) only.

use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant as WallInstant};

use bytes::BytesMut;
use pgbouncer_pool_core::{ClientId, DisconnectReason, Event, PoolKey, PoolMode, Usage};
use pgbouncer_protocol::{
    encode_auth_ok, encode_backend_key_data, encode_error, encode_parameter_status,
    encode_ready_for_query, BackendMessage, StartupMessage, StartupPacket, TransactionStatus,
};

use crate::auth::{self, LoginIo};
use crate::runtime::Runtime;
use crate::scanner::{Scanner, Visitor};
use crate::server::ServerConn;
use crate::shared::{SessionMsg, Shared};
use crate::stream::Stream;

mod forward;
mod login;
pub(crate) mod prepared;

/// Client reads start small (queries are small, and a thousand waiting clients each hold
/// their pending query) and grow to `READ_CHUNK` while the client streams (COPY, big
/// binds). An idle client holds no buffer at all.
const SMALL_READ: usize = 1024;

const READ_CHUNK: usize = 32 * 1024;
/// Server reads: result sets can be big; the buffer lives with the server connection.
const SERVER_READ_CHUNK: usize = 32 * 1024;

/// The exit for a failed write: `otherwise`, unless SUSPEND dropped it.
fn write_failed(e: std::io::Error, otherwise: Exit) -> Exit {
    if crate::flush::is_suspend_drop(&e) {
        Exit::Quiet(crate::flush::SUSPEND_TIMEOUT.into())
    } else {
        otherwise
    }
}

/// How a session ended.
#[derive(Debug)]
pub(crate) enum Exit {
    /// Close silently; the text is for the log.
    Quiet(String),
    /// Send FATAL with this SQLSTATE and message, then close.
    Fatal(String, String),
}

impl Exit {
    pub(crate) fn fatal(msg: impl Into<String>) -> Exit {
        Exit::Fatal("08P01".into(), msg.into())
    }

    fn from_reason(r: &DisconnectReason) -> Exit {
        Exit::Fatal(r.sqlstate().to_string(), r.message())
    }
}

/// Serves one accepted client connection until it closes. The session is built here,
/// outside the future, so that the task stores it once (an async fn would also keep its
/// arguments).
pub(crate) fn serve(
    shared: Arc<Shared>,
    stream: Stream,
    peer: (String, u16),
    local: Arc<(Arc<str>, u16)>,
) -> impl std::future::Future<Output = ()> + Send {
    let (addr, port) = peer;
    let rt = shared.runtime();
    let mut s = Session {
        id: shared.next_client_id(),
        shared,
        max: rt.max_packet_size,
        rt,
        client: stream,
        cbuf: BytesMut::new(),
        rx: None,
        mode: PoolMode::Session,
        vars: Vec::new(),
        defaults: Arc::default(),
        addr: addr.into(),
        port,
        started: WallInstant::now(),
        who: None,
        timeouts: QueryTimeouts::default(),
        prepared_mode: false,
        fast_close: false,
        stmts: None,
        local,
    };
    // The session is captured (stored once), not moved into a binding of the block.
    async move {
        let exit = s.run().await;
        Box::pin(s.finish(exit)).await;
    }
}

struct Session {
    shared: Arc<Shared>,
    rt: Arc<Runtime>,
    id: ClientId,
    client: Stream,
    cbuf: BytesMut,
    rx: Option<Arc<crate::mailbox::Mailbox>>,
    mode: PoolMode,
    /// Tracked parameters the client set (startup, options, ParameterStatus).
    vars: Vec<(String, String)>,
    /// The pool's original parameters (its welcome): the value of every tracked
    /// parameter the client did not set (PgBouncer's `varcache_fill_unset`). Shared by
    /// all clients of the pool, so it costs a pointer per client.
    defaults: Arc<crate::shared::Welcome>,
    /// The peer address (shared with the client's SHOW CLIENTS entry).
    addr: Arc<str>,
    port: u16,
    started: WallInstant,
    /// The database the client asked for and the user it logged in as (for the log).
    who: Option<PoolKey>,
    max: u32,
    timeouts: QueryTimeouts,
    /// Named prepared statements are tracked (transaction/statement mode with
    /// `max_prepared_statements` > 0).
    prepared_mode: bool,
    /// This client's statement names.
    /// Boxed on first use: most clients never name a statement, and an empty map
    /// would still take 48 bytes in every session.
    #[allow(clippy::box_collection)]
    stmts: Option<Box<std::collections::HashMap<bytes::Bytes, Arc<prepared::Stmt>>>>,
    /// `server_fast_close` asked this client to leave after its transaction.
    fast_close: bool,
    /// The listener's address (no getsockname per client), shared by its clients.
    local: Arc<(Arc<str>, u16)>,
}

/// State of the link between the client and a server.
struct Link {
    conn: ServerConn,
    /// Query/Sync/FunctionCall messages sent and not yet answered by ReadyForQuery.
    pending: u32,
    status: TransactionStatus,
    cscan: Scanner,
    sscan: Scanner,
    usage: Usage,
    query_start: Option<WallInstant>,
    xact_start: Option<WallInstant>,
    /// Since when the client has been idle inside a transaction.
    idle_in_xact_since: Option<WallInstant>,
    /// Prepared-statement mode: what the server will answer, in order.
    queue: prepared::Queue,
}

/// The timeouts a session enforces itself because they depend on per-query state that
/// only it sees (pool-core would need an event per query): `query_timeout`,
/// `idle_transaction_timeout`, `transaction_timeout`, with `[users]` overrides.
///
/// Kept in milliseconds (PgBouncer's own resolution) so that every session carries 12
/// bytes rather than three `Duration`s.
#[derive(Debug, Clone, Copy, Default)]
struct QueryTimeouts {
    query: u32,
    idle_transaction: u32,
    transaction: u32,
}

/// A timeout in whole milliseconds, rounded up so that only zero means "off"
/// (saturating).
fn millis(d: Duration) -> u32 {
    u32::try_from(d.as_micros().div_ceil(1000)).unwrap_or(u32::MAX)
}

impl QueryTimeouts {
    fn new(rt: &Runtime, user: &str) -> Self {
        let g = &rt.per_login;
        let u = rt.settings.users.iter().find(|u| u.name == user);
        QueryTimeouts {
            query: millis(u.and_then(|u| u.query_timeout).unwrap_or(g.query_timeout)),
            idle_transaction: millis(
                u.and_then(|u| u.idle_transaction_timeout)
                    .unwrap_or(g.idle_transaction_timeout),
            ),
            transaction: millis(
                u.and_then(|u| u.transaction_timeout)
                    .unwrap_or(g.transaction_timeout),
            ),
        }
    }

    /// The next deadline for this link and the error it gives.
    fn deadline(&self, l: &Link) -> Option<(WallInstant, &'static str)> {
        let mut best: Option<(WallInstant, &'static str)> = None;
        let mut consider = |at: Option<WallInstant>, ms: u32, msg| {
            if let (Some(at), false) = (at, ms == 0) {
                let at = at + Duration::from_millis(u64::from(ms));
                if best.is_none_or(|(b, _)| at < b) {
                    best = Some((at, msg));
                }
            }
        };
        if l.pending > 0 {
            consider(l.query_start, self.query, "query timeout");
        }
        consider(
            l.idle_in_xact_since,
            self.idle_transaction,
            "idle transaction timeout",
        );
        if l.status != TransactionStatus::Idle || l.pending > 0 {
            consider(l.xact_start, self.transaction, "transaction timeout");
        }
        best
    }
}

impl Link {
    fn new(conn: ServerConn) -> Link {
        Link {
            conn,
            pending: 0,
            status: TransactionStatus::Idle,
            cscan: Scanner::default(),
            sscan: Scanner::default(),
            usage: Usage::default(),
            query_start: None,
            xact_start: None,
            idle_in_xact_since: None,
            queue: prepared::Queue::default(),
        }
    }

    /// Idle, nothing outstanding, at message boundaries on both sides.
    fn is_clean(&self) -> bool {
        self.pending == 0
            && self.status == TransactionStatus::Idle
            && self.cscan.at_boundary()
            && self.sscan.at_boundary()
            && self.conn.buf.is_empty()
            && self.queue.items.is_empty()
    }
}

impl Session {
    async fn run(&mut self) -> Exit {
        let login_timeout = self.rt.per_login.client_login_timeout;
        // Boxed, like the login below: only the first moments of a session need it.
        let startup = if login_timeout.is_zero() {
            Box::pin(self.read_startup()).await
        } else {
            match Box::pin(tokio::time::timeout(login_timeout, self.read_startup())).await {
                Ok(r) => r,
                Err(_) => Err(Exit::fatal("client_login_timeout")),
            }
        };
        let startup = match startup {
            Ok(Some(m)) => m,
            Ok(None) => return Exit::Quiet("cancel request".into()),
            Err(e) => return e,
        };
        // Boxed: the login state (auth exchanges) would otherwise sit in every idle
        // session task for its whole life.
        let mut link = match Box::pin(self.login(startup)).await {
            Ok(link) => link,
            Err(e) => return e,
        };
        loop {
            let mut l = match link.take() {
                Some(l) => l,
                None => match self.idle().await {
                    Ok(Some(l)) => l,
                    Ok(None) => return Exit::Quiet("client close request".into()),
                    Err(e) => return e,
                },
            };
            // Boxed: only a linked session pays for the forwarding state; an idle one
            // keeps a small task.
            match Box::pin(self.forward(&mut l)).await {
                Ok(Released::Yes) => self.release(l),
                Ok(Released::ClientLeft(reason)) => {
                    self.give_back(l, true);
                    return Exit::Quiet(reason);
                }
                Err(e) => {
                    self.give_back(l, false);
                    return e;
                }
            }
        }
    }

    /// A disconnect queued while we were not listening.
    fn check_mailbox(&mut self) -> Result<(), Exit> {
        if let Some(rx) = self.rx.as_mut() {
            if let Some(SessionMsg::Disconnect(r)) = rx.try_recv() {
                return Err(Exit::from_reason(&r));
            }
        }
        Ok(())
    }

    /// Asks pool-core for a server. `None`: none is free, and the client now waits in
    /// the pool's queue.
    fn try_acquire(&mut self) -> Option<ServerConn> {
        loop {
            let conn = self
                .shared
                .handle(Event::ClientWantsServer { client: self.id }, Some(self.id))?;
            if !conn.stream.has_unexpected_input() {
                return Some(conn);
            }
            // Closed or chatty while idle: never hand it to a client.
            self.shared.drop_server(self.id, conn);
        }
    }

    /// Gets a server: at once when one is free, else after waiting for it (watching the
    /// client for EOF). The waiting state is boxed so that it does not sit in every idle
    /// session.
    async fn acquire(&mut self) -> Result<ServerConn, Exit> {
        // (Not a `match`: its scrutinee would be kept across the await.)
        if let Some(conn) = self.try_acquire() {
            return Ok(conn);
        }
        Box::pin(self.acquire_waiting()).await
    }

    async fn acquire_waiting(&mut self) -> Result<ServerConn, Exit> {
        loop {
            let conn = self.wait_for_link().await?;
            if !conn.stream.has_unexpected_input() {
                return Ok(conn);
            }
            self.shared.drop_server(self.id, conn);
            if let Some(conn) = self.try_acquire() {
                return Ok(conn);
            }
        }
    }

    async fn wait_for_link(&mut self) -> Result<ServerConn, Exit> {
        let Some(rx) = self.rx.clone() else {
            return Err(Exit::fatal("bouncer config error"));
        };
        let mut eof = false;
        loop {
            tokio::select! {
                msg = rx.recv() => match msg {
                    SessionMsg::Link(conn) => return Ok(*conn),
                    SessionMsg::Disconnect(r) => return Err(Exit::from_reason(&r)),
                    SessionMsg::CancelWait => {
                        self.cbuf.clear();
                        let mut out = BytesMut::new();
                        encode_error(&mut out, "ERROR", "57014", "canceling statement due to user request");
                        encode_ready_for_query(&mut out, TransactionStatus::Idle);
                        let _ = self.client.write_all(&out).await;
                        return Err(Exit::Quiet("__cancelled_wait".into()));
                    }
                    SessionMsg::FastClose => self.fast_close = true,
                },
                r = self.client.readable(), if !eof => {
                    if r.is_err() { return Err(Exit::Quiet("client unexpected eof".into())); }
                    if self.cbuf.len() > 1 << 20 {
                        eof = true; // enough buffered; wait for the server only
                        continue;
                    }
                    reserve_client_read(&mut self.cbuf);
                    match self.client.try_read_buf(&mut self.cbuf) {
                        Ok(0) => return Err(Exit::Quiet("client unexpected eof".into())),
                        Ok(_) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(_) => return Err(Exit::Quiet("client unexpected eof".into())),
                    }
                }
            }
        }
    }

    /// No server: wait for the client's next request (or Terminate / EOF), then get one.
    /// `Ok(None)`: the client said goodbye.
    async fn idle(&mut self) -> Result<Option<Box<Link>>, Exit> {
        loop {
            if self.shared.is_suspended() {
                Box::pin(self.shared.wait_resumed()).await;
            }
            if !self.cbuf.is_empty() {
                if self.cbuf.starts_with(b"X\0\0\0\x04") {
                    return Ok(None);
                }
                match self.acquire().await {
                    Ok(conn) => return Ok(Some(Box::new(Link::new(conn)))),
                    Err(Exit::Quiet(r)) if r == "__cancelled_wait" => continue,
                    Err(e) => return Err(e),
                }
            }
            // Nothing buffered and no server: give the buffer back, so that thousands
            // of idle clients cost little memory (PgBouncer returns pkt_buf the same way).
            self.cbuf = BytesMut::new();
            let rx = self
                .rx
                .as_deref()
                .ok_or_else(|| Exit::fatal("bouncer config error"))?;
            // Waiting polls the mailbox and the socket directly, so an idle session's
            // future holds no waiter nodes (thousands of idle clients stay small).
            let client = &self.client;
            let woke = std::future::poll_fn(|cx| {
                if let Poll::Ready(msg) = rx.poll_recv(cx) {
                    return Poll::Ready(Ok(msg));
                }
                client.poll_read_ready(cx).map(Err)
            })
            .await;
            match woke {
                Ok(msg) => match msg {
                    SessionMsg::Disconnect(r) => return Err(Exit::from_reason(&r)),
                    SessionMsg::Link(conn) => return Ok(Some(Box::new(Link::new(*conn)))),
                    SessionMsg::CancelWait | SessionMsg::FastClose => {}
                },
                Err(r) => {
                    if r.is_err() {
                        return Ok(None);
                    }
                    reserve_client_read(&mut self.cbuf);
                    match self.client.try_read_buf(&mut self.cbuf) {
                        Ok(0) => return Err(Exit::Quiet("client unexpected eof".into())),
                        Ok(_) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(_) => return Err(Exit::Quiet("client unexpected eof".into())),
                    }
                }
            }
        }
    }

    fn release(&mut self, l: Box<Link>) {
        let Link { conn, usage, .. } = *l;
        let _ = self.shared.release(self.id, conn, usage);
    }

    /// The client is leaving while linked: a clean server goes back to the pool (with
    /// a reset in session mode), anything else is closed.
    fn give_back(&mut self, l: Box<Link>, client_left_cleanly: bool) {
        if client_left_cleanly && l.is_clean() {
            let _ = self.shared.release(self.id, l.conn, l.usage);
        } else {
            l.conn.terminate();
        }
    }

    /// `database/user@addr:port`, as PgBouncer's log lines name a client (empty before
    /// the startup packet).
    fn label(&self) -> String {
        match &self.who {
            Some(w) => format!("{}/{}@{}:{}", w.database, w.user, self.addr, self.port),
            None => String::new(),
        }
    }

    async fn finish(&mut self, exit: Exit) {
        let age = self.started.elapsed().as_secs();
        let reason = match &exit {
            Exit::Quiet(r) => r.clone(),
            Exit::Fatal(_, m) => m.clone(),
        };
        if let Exit::Fatal(code, msg) = &exit {
            let mut out = BytesMut::new();
            encode_error(&mut out, "FATAL", code, msg);
            let _ = tokio::time::timeout(Duration::from_secs(1), self.client.write_all(&out)).await;
            if self.rt.log_pooler_errors {
                tracing::warn!("C-{}: {} pooler error: {msg}", self.id.0, self.label());
            }
        }
        if self.rt.log_disconnections && self.who.is_some() {
            tracing::info!(
                "C-{}: {} closing because: {reason} (age={age}s)",
                self.id.0,
                self.label()
            );
        }
        if self.rx.is_some() {
            self.shared.client_gone(self.id);
        }
    }
}

enum Released {
    Yes,
    ClientLeft(String),
}

#[derive(Default)]
struct ClientVisitor {
    pending: u32,
    terminate: bool,
    parses: u64,
    binds: u64,
    any: bool,
}

impl Visitor for ClientVisitor {
    fn header(&mut self, tag: u8, _len: u32) {
        match tag {
            b'Q' | b'S' | b'F' => self.pending += 1,
            b'X' => self.terminate = true,
            b'P' => self.parses += 1,
            b'B' => self.binds += 1,
            _ => {}
        }
        if tag != b'X' {
            self.any = true;
        }
    }
    fn body(&mut self, _tag: u8, _body: &[u8]) {}
    fn wants_body(&self, _tag: u8) -> bool {
        false
    }
}

struct ServerVisitor<'a> {
    rfq: Vec<TransactionStatus>,
    params: Vec<(String, String)>,
    /// Prepared-statement mode: the expectation queue, kept in step on the fast path.
    queue: Option<&'a mut prepared::Queue>,
    /// Forwarded Parses the server refused: not prepared there after all.
    failed_parses: Vec<u64>,
    /// The server ran DISCARD ALL / DEALLOCATE ALL: its statements are gone.
    discarded: bool,
}

impl<'a> ServerVisitor<'a> {
    fn new(queue: Option<&'a mut prepared::Queue>) -> Self {
        ServerVisitor {
            rfq: Vec::new(),
            params: Vec::new(),
            queue,
            failed_parses: Vec::new(),
            discarded: false,
        }
    }
}

impl Visitor for ServerVisitor<'_> {
    fn header(&mut self, tag: u8, _len: u32) {
        if let Some(q) = self.queue.as_mut() {
            let mut failed = None;
            q.on_server_message(tag, &mut failed);
            self.failed_parses.extend(failed);
        }
    }
    fn body(&mut self, tag: u8, body: &[u8]) {
        match tag {
            b'Z' => {
                let status = body.first().and_then(|b| TransactionStatus::from_byte(*b));
                self.rfq.push(status.unwrap_or(TransactionStatus::Failed));
            }
            b'S' => {
                if let Ok(BackendMessage::ParameterStatus { name, value }) =
                    BackendMessage::decode_body(b'S', bytes::Bytes::copy_from_slice(body))
                {
                    self.params.push((name, value));
                }
            }
            b'C' if body.starts_with(b"DISCARD ALL") || body.starts_with(b"DEALLOCATE ALL") => {
                self.discarded = true;
            }
            _ => {}
        }
    }
    fn wants_body(&self, tag: u8) -> bool {
        tag == b'Z' || tag == b'S' || (tag == b'C' && self.queue.is_some())
    }
}

/// The 64-bit key pool-core uses for a BackendKeyData pair.
pub(crate) fn cancel_key(pid: i32, secret: i32) -> u64 {
    (u64::from(pid as u32) << 32) | u64::from(secret as u32)
}

fn set_var(vars: &mut Vec<(String, String)>, name: &str, value: &str) {
    match vars.iter_mut().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
        Some(v) => v.1 = value.to_string(),
        None => vars.push((name.to_string(), value.to_string())),
    }
}

fn get_var<'a>(vars: &'a [(String, String)], name: &str) -> Option<&'a str> {
    vars.iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// A buffer that already holds a lot means the client is streaming: read more at once.
fn reserve_client_read(cbuf: &mut BytesMut) {
    let want = if cbuf.len() >= SMALL_READ {
        READ_CHUNK
    } else {
        SMALL_READ
    };
    cbuf.reserve(want);
}
