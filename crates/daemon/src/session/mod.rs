//! One client connection from accept to close: startup, authentication, welcome, and
//! the forwarding loop that links it to servers as its pool mode says (mirrors client.c
//! and the forwarding half of sbuf.c).
//!
//! The session is a driver: it reads, feeds the bytes to the protocol tracker
//! (`pgbouncer_protocol::link`), writes what the tracker says, and reports to pool-core
//! when the tracker says the server is clean. It never looks at message bytes itself.

use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant as WallInstant};

use bytes::BytesMut;
use pgbouncer_pool_core::{ClientId, Instant as CoreInstant, PoolKey, PoolMode, Usage};
use pgbouncer_protocol::link::{self, ClientStatements, LinkConfig};
use pgbouncer_protocol::{
    encode_auth_ok, encode_backend_key_data, encode_error, encode_parameter_status,
    encode_ready_for_query, frontend_tag, StartupMessage, StartupPacket, TransactionStatus,
};

use crate::auth::{self, LoginIo};
use crate::runtime::Runtime;
use crate::server::ServerConn;
use crate::shared::{SessionMsg, Shared};
use crate::stream::Stream;

mod forward;
mod login;
mod outbox;
mod outcome;
pub(crate) mod park;

pub(crate) use outcome::{Exit, Fatal, Quiet};

/// Client reads start small (queries are small, and a thousand waiting clients each hold
/// their pending query) and grow to `READ_CHUNK` while the client streams (COPY, big
/// binds). An idle client holds no buffer at all: it gives it to its worker's keep
/// ([`give_back_read`]) and takes one from there for its next request. 1000 bytes keeps
/// one that is allocated within glibc's per-thread cache (chunks up to 1032 bytes),
/// where 1024 took the large-chunk path and its consolidation every time.
const SMALL_READ: usize = 1000;

const READ_CHUNK: usize = 32 * 1024;
/// Server reads: result sets can be big; the buffer lives with the server connection.
const SERVER_READ_CHUNK: usize = 32 * 1024;
/// What a client may send ahead while it waits for a server; beyond that it is not read
/// until it has one (the rest streams once linked).
const WAITING_READ_LIMIT: usize = 64 * 1024;

/// Whole seconds since the first call in this process (a session's age in 4 bytes).
fn seconds() -> u32 {
    static EPOCH: std::sync::OnceLock<WallInstant> = std::sync::OnceLock::new();
    let epoch = *EPOCH.get_or_init(WallInstant::now);
    u32::try_from(epoch.elapsed().as_secs()).unwrap_or(u32::MAX)
}

/// The exit for a failed write: `otherwise`, unless SUSPEND dropped it.
fn write_failed(e: std::io::Error, otherwise: impl Into<Exit>) -> Exit {
    if crate::flush::is_suspend_drop(&e) {
        Exit::Quiet(Quiet::SuspendTimeout)
    } else {
        otherwise.into()
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
    let s = Session {
        id: shared.next_client_id(),
        shared,
        max: rt.max_packet_size,
        rt,
        client: stream,
        cbuf: BytesMut::new(),
        rx: None,
        mode: PoolMode::Session,
        vars: Vec::new(),
        vars_sig: None,
        defaults: Arc::default(),
        addr: addr.into(),
        port,
        started: seconds(),
        who: None,
        timeouts: QueryTimeouts::default(),
        fast_close: false,
        welcomed: false,
        logged_in: false,
        pump: None,
        statements: ClientStatements::default(),
        local,
    };
    // Counted on this worker while it lives, parked or not (zero-sized).
    drive(s, crate::workers::Load, true)
}

/// Runs a session on the current worker: a new one (`login`) from its startup packet, or
/// one carrying on after parking or moving. The session is captured (stored once), not
/// moved into a binding of the block. Not an `async fn`: that stores the session twice
/// in the future (632 bytes instead of 392, past tokio's 512-byte task; the size test
/// fails).
#[allow(clippy::manual_async_fn)]
fn drive(
    mut s: Session,
    load: crate::workers::Load,
    login: bool,
) -> impl std::future::Future<Output = ()> + Send {
    async move {
        // A socket that arrives off a reactor (from the accepting worker, the parker or
        // another worker) is registered here, on this one.
        if let Err(e) = s.client.take().attach().map(|client| s.client = client) {
            if login {
                tracing::warn!("cannot register a new connection on this worker: {e}");
                return;
            }
            tracing::warn!("C-{}: cannot register a parked client again: {e}", s.id.0);
            Box::pin(s.finish(Quiet::ClientEof.into())).await;
            return;
        }
        let exit = match s.run(login).await {
            Ran::Exit(exit) => exit,
            Ran::Park => return park::park(s, load),
            Ran::Move(to) => return crate::workers::move_session(to, resume(s, load)),
        };
        Box::pin(s.finish(exit)).await;
    }
}

/// Carries on with a session that was parked ([`park`]) or moved, on this worker.
fn resume(s: Session, load: crate::workers::Load) -> impl std::future::Future<Output = ()> + Send {
    drive(s, load, false)
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
    /// `vars` and `defaults` as the names and values `sync_vars` compares, cached
    /// (`None` after any change to either).
    vars_sig: Option<Box<VarsSig>>,
    /// The pool's original parameters (its welcome): the value of every tracked
    /// parameter the client did not set (PgBouncer's `varcache_fill_unset`). Shared by
    /// all clients of the pool, so it costs a pointer per client.
    defaults: Arc<crate::shared::Welcome>,
    /// The peer address (shared with the client's SHOW CLIENTS entry).
    addr: Arc<str>,
    port: u16,
    /// When the client connected, in [`seconds`] (for the log's `age`).
    started: u32,
    /// The database the client asked for and the user it logged in as (for the log).
    who: Option<PoolKey>,
    max: u32,
    timeouts: QueryTimeouts,
    /// This client's prepared-statement names (empty, without allocation, for most).
    statements: ClientStatements,
    /// `server_fast_close` asked this client to leave after its transaction.
    fast_close: bool,
    /// The welcome was sent: from now on a failing pool fails this client fast.
    welcomed: bool,
    /// Authenticated (counted once in `/metrics`; later endings are not login failures).
    logged_in: bool,
    /// The forwarding buffers, kept between links (none until the first link).
    pump: Option<Box<forward::Pump>>,
    /// The listener's address (no getsockname per client), shared by its clients.
    local: Arc<(Arc<str>, u16)>,
}

/// [`Session::label`], written straight into the log line.
struct Label<'a>(&'a Session);

impl std::fmt::Display for Label<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.0;
        match &s.who {
            Some(w) => write!(f, "{}/{}@{}:{}", w.database, w.user, s.addr, s.port),
            None => Ok(()),
        }
    }
}

/// A client linked to a server: the server connection and the tracker of the link.
struct Linked {
    conn: Box<ServerConn>,
    /// Boxed: a link is moved between waits and calls, and the tracker is most of it;
    /// the box itself is reused from link to link.
    track: Box<link::Link>,
    usage: Usage,
    // Times on pool-core's clock (microseconds): query timing is then integer
    // arithmetic, and pool-core's events need no conversion.
    query_start: Option<CoreInstant>,
    xact_start: Option<CoreInstant>,
    /// Since when the client has been idle inside a transaction.
    idle_in_xact_since: Option<CoreInstant>,
    /// A clock reading taken during the current wake-up, if one was (reused for query
    /// timing and pool-core's events; cleared before every wait).
    now: Option<CoreInstant>,
}

impl Linked {
    /// The time of the current wake-up: the reading already taken, or a new one.
    fn now(&mut self, shared: &Shared) -> CoreInstant {
        *self.now.get_or_insert_with(|| shared.now())
    }
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
    fn deadline(&self, l: &Linked) -> Option<(CoreInstant, Fatal)> {
        let mut best: Option<(CoreInstant, Fatal)> = None;
        let mut consider = |at: Option<CoreInstant>, ms: u32, why: Fatal| {
            if let (Some(at), false) = (at, ms == 0) {
                let at = at + Duration::from_millis(u64::from(ms));
                if best.as_ref().is_none_or(|(b, _)| at < *b) {
                    best = Some((at, why));
                }
            }
        };
        if l.track.is_waiting_for_server() {
            consider(l.query_start, self.query, Fatal::QueryTimeout);
        }
        consider(
            l.idle_in_xact_since,
            self.idle_transaction,
            Fatal::IdleTransactionTimeout,
        );
        if l.track.in_transaction() {
            consider(l.xact_start, self.transaction, Fatal::TransactionTimeout);
        }
        best
    }
}

impl Session {
    /// How the tracker works for this client's links.
    fn link_config(&self) -> LinkConfig {
        LinkConfig {
            max_packet_size: self.max,
            // The value in force now, not at this client's login: a SET applies to
            // the next statement a server prepares (PgBouncer).
            max_prepared_statements: if self.mode == PoolMode::Session {
                0
            } else {
                self.shared.max_prepared_statements()
            },
            statement_mode: self.mode == PoolMode::Statement,
        }
    }

    /// Links the client to `conn`: the tracker gets the client's statement names and the
    /// server's statement cache for the time of the link.
    fn linked(&mut self, conn: Box<ServerConn>) -> Linked {
        self.linked_at(conn, None)
    }

    /// Links the client to `conn`, `now` being a clock reading of this wake-up.
    fn linked_at(&mut self, mut conn: Box<ServerConn>, now: Option<CoreInstant>) -> Linked {
        if let Err(e) = conn.bring_home() {
            // Its first read or write fails, and the link ends as a crashed server.
            tracing::warn!("S-{}: cannot move to this worker: {e}", conn.id.0);
        }
        tracing::debug!(
            "C-{}: linked to S-{} (backend {})",
            self.id.0,
            conn.id.0,
            conn.backend_key.0
        );
        let (cfg, client, server) = (
            self.link_config(),
            std::mem::take(&mut self.statements),
            std::mem::take(&mut conn.statements),
        );
        // The last link's tracker, if the session kept one: its queue and buffers are
        // reused (no allocation per transaction).
        let pump = self.pump.get_or_insert_with(forward::Pump::take_spare);
        let track = match pump.spare_track.take() {
            Some(mut track) => {
                track.relink(cfg, client, server);
                track
            }
            None => Box::new(link::Link::new(cfg, client, server)),
        };
        Linked {
            conn,
            track,
            usage: Usage::default(),
            query_start: None,
            xact_start: None,
            idle_in_xact_since: None,
            now,
        }
    }

    /// Ends a link: the statement caches go back to the client and the server.
    fn unlink(&mut self, l: Linked) -> (Box<ServerConn>, Usage, bool) {
        let Linked {
            mut conn,
            mut track,
            mut usage,
            ..
        } = l;
        let clean = track.is_clean();
        if let Some(why) = track.uncertainty() {
            tracing::warn!(
                "S-{}: protocol state unknown ({why}); it will be closed",
                conn.id.0
            );
        }
        let counts = track.take_counts();
        self.shared
            .counters
            .prepared(counts.client_parses, counts.server_parses, counts.evictions);
        usage.client_parse_count += counts.client_parses;
        usage.server_parse_count += counts.server_parses;
        usage.bind_count += counts.binds;
        let (client, server) = track.take_statements();
        self.statements = client;
        conn.statements = server;
        if let Some(p) = self.pump.as_mut() {
            p.spare_track = Some(track);
        }
        (conn, usage, clean)
    }

    /// Logs the client in (`login`; a resumed session is past that) and serves its
    /// transactions, until the session ends, parks or moves (then its socket is off the
    /// reactor).
    async fn run(&mut self, login: bool) -> Ran {
        let mut first = None;
        if login {
            // Boxed: only the first moments of a session need the startup and login
            // state, and the loop below is all an idle session's task keeps.
            first = match Box::pin(self.start()).await {
                Ok(link) => link,
                Err(e) => return Ran::Exit(e),
            };
        }
        let l = match first {
            Some(l) => *l,
            None => match Self::next_link(self.idle().await) {
                Ok(l) => l,
                Err(ran) => return ran,
            },
        };
        // Boxed: only a busy session pays for the forwarding state; one that stays idle
        // keeps a small task. Boxed once per busy spell, not once per transaction: the
        // box lives until the session parks, moves or ends.
        Box::pin(self.serve_linked(l)).await
    }

    /// What the wait without a server led to: a link, or the end of this task.
    fn next_link(idle: Result<Idle, Exit>) -> Result<Linked, Ran> {
        match idle {
            Ok(Idle::Link(l)) => Ok(l),
            Ok(Idle::Goodbye) => Err(Ran::Exit(Quiet::ClientCloseRequest.into())),
            Ok(Idle::Park) => Err(Ran::Park),
            Err(e) => Err(Ran::Exit(e)),
        }
    }

    /// Serves transaction after transaction: forwards while linked, waits without a
    /// server for the next request, links again; until the session ends, parks or
    /// moves.
    async fn serve_linked(&mut self, mut l: Linked) -> Ran {
        loop {
            match self.forward(&mut l).await {
                Ok(Released::Yes) => {
                    self.release(l);
                    // Between transactions: this worker may be busy and hand the
                    // session to another (one relaxed load when it is not).
                    if let Some(to) = crate::workers::spill_target() {
                        if let Some(ran) = self.move_to(to) {
                            return ran;
                        }
                    }
                }
                Ok(Released::ClientLeft(reason)) => {
                    self.give_back(l);
                    return Ran::Exit(reason.into());
                }
                Err(e) => {
                    self.drop_link(l);
                    return Ran::Exit(e);
                }
            }
            l = match Self::next_link(self.idle().await) {
                Ok(l) => l,
                Err(ran) => return ran,
            };
        }
    }

    /// Takes the socket off this reactor to go on on worker `to` (whose idle servers
    /// it prefers from now on). `None`: it cannot move (TLS) and stays.
    fn move_to(&mut self, to: usize) -> Option<Ran> {
        if !self.client.can_park() {
            return None;
        }
        match self.client.take().detach() {
            Ok(client) => self.client = client,
            Err(_) => return Some(Ran::Exit(Quiet::ClientEof.into())),
        }
        let locality = u16::try_from(to).unwrap_or(u16::MAX);
        self.shared
            .lock()
            .pooler
            .set_client_locality(self.id, locality);
        Some(Ran::Move(to))
    }

    /// Reads the startup packet and logs the client in: the link of its first
    /// transaction, if the login made one, or why the session ends.
    async fn start(&mut self) -> Result<Option<Box<Linked>>, Exit> {
        let login_timeout = self.rt.per_login.client_login_timeout;
        // One deadline for the whole login: the startup packet and the authentication
        // exchange (including an auth_query lookup).
        let deadline =
            (!login_timeout.is_zero()).then(|| tokio::time::Instant::now() + login_timeout);
        let startup = match deadline {
            None => self.read_startup().await,
            Some(at) => match tokio::time::timeout_at(at, self.read_startup()).await {
                Ok(r) => r,
                Err(_) => Err(Fatal::ClientLoginTimeout.into()),
            },
        };
        let startup = match startup {
            Ok(Some(m)) => m,
            Ok(None) => return Err(Quiet::CancelRequest.into()),
            Err(e) => {
                self.count_failed_login(&e);
                return Err(e);
            }
        };
        // Boxed: the authentication exchanges are larger than reading the packet, and
        // a client that only sends a cancel request never needs them.
        match Box::pin(self.login(startup, deadline)).await {
            Ok(link) => Ok(link),
            Err(e) => {
                self.count_failed_login(&e);
                Err(e)
            }
        }
    }

    /// Counts a login that ended in `e` as failed, if it did not get as far as being
    /// logged in (the console and replication sessions end their login call only when
    /// they are over).
    fn count_failed_login(&self, e: &Exit) {
        if self.logged_in {
            return;
        }
        if let Some(why) = e.login_failure() {
            self.shared.counters.login_failed(why);
        }
    }

    /// A disconnect queued while we were not listening.
    fn check_mailbox(&mut self) -> Result<(), Exit> {
        if let Some(rx) = self.rx.as_mut() {
            if let Some(SessionMsg::Disconnect(r)) = rx.try_recv() {
                return Err(r.into());
            }
        }
        Ok(())
    }

    /// Asks pool-core for a server, with the clock reading of the request. `None`: none
    /// is free, and the client now waits in the pool's queue.
    fn try_acquire(&mut self) -> Option<(Box<ServerConn>, CoreInstant)> {
        loop {
            let client = self.id;
            let event = if self.welcomed {
                pgbouncer_pool_core::Event::ClientWantsServer { client }
            } else {
                pgbouncer_pool_core::Event::ClientWantsWelcome { client }
            };
            let now = self.shared.now();
            let mut conn = self.shared.handle_at(event, Some(self.id), now)?;
            match usable(&mut conn) {
                Ok(()) => return Some((conn, now)),
                Err(why) => self.shared.drop_server(self.id, conn, why),
            }
        }
    }

    /// Gets a server: at once when one is free, else after waiting for it (watching the
    /// client for EOF). The waiting state is boxed so that it does not sit in every idle
    /// session. With the server comes the clock reading of this wake-up, if one was
    /// taken.
    async fn acquire(&mut self) -> Result<(Box<ServerConn>, Option<CoreInstant>), Exit> {
        // (Not a `match`: its scrutinee would be kept across the await.)
        if let Some((conn, at)) = self.try_acquire() {
            return Ok((conn, Some(at)));
        }
        Box::pin(self.acquire_waiting()).await
    }

    async fn acquire_waiting(&mut self) -> Result<(Box<ServerConn>, Option<CoreInstant>), Exit> {
        loop {
            let mut conn = self.wait_for_link().await?;
            match usable(&mut conn) {
                Ok(()) => return Ok((conn, None)),
                Err(why) => self.shared.drop_server(self.id, conn, why),
            }
            if let Some((conn, at)) = self.try_acquire() {
                return Ok((conn, Some(at)));
            }
        }
    }

    async fn wait_for_link(&mut self) -> Result<Box<ServerConn>, Exit> {
        let Some(rx) = self.rx.clone() else {
            return Err(Fatal::BouncerConfigError.into());
        };
        let mut full = false;
        loop {
            // Polled directly (no future per wait and no waiter node on the socket).
            // query_wait_notify comes from pool-core's timers as a mailbox message, so
            // a wait arms no timer of its own.
            let client = &self.client;
            let woke = std::future::poll_fn(|cx| {
                if let Poll::Ready(msg) = rx.poll_recv(cx) {
                    return Poll::Ready(Waited::Msg(msg));
                }
                if !full {
                    if let Poll::Ready(r) = client.poll_read_ready(cx) {
                        return Poll::Ready(Waited::Readable(r));
                    }
                }
                Poll::Pending
            })
            .await;
            match woke {
                Waited::Msg(msg) => match msg {
                    SessionMsg::WaitNotice => {
                        let mut out = BytesMut::new();
                        pgbouncer_protocol::encode_notice(
                            &mut out,
                            "00000",
                            "No server connection available in postgres backend, client being queued",
                        );
                        let _ = self.client.write_all(&out).await;
                    }
                    SessionMsg::Link(conn) => return Ok(conn),
                    SessionMsg::Disconnect(r) => return Err(r.into()),
                    SessionMsg::CancelWait => {
                        self.cbuf.clear();
                        let mut out = BytesMut::new();
                        encode_error(
                            &mut out,
                            "ERROR",
                            "57014",
                            "canceling statement due to user request",
                        );
                        encode_ready_for_query(&mut out, TransactionStatus::Idle);
                        let _ = self.client.write_all(&out).await;
                        return Err(Quiet::CancelledWait.into());
                    }
                    SessionMsg::FastClose => self.fast_close = true,
                    SessionMsg::ReplicationServer(_) => {}
                },
                Waited::Readable(r) => {
                    if r.is_err() {
                        return Err(Quiet::ClientEof.into());
                    }
                    if self.cbuf.len() >= WAITING_READ_LIMIT {
                        // Enough read ahead: the rest streams once a server is linked.
                        full = true;
                        continue;
                    }
                    reserve_client_read(&mut self.cbuf);
                    match self.client.try_read_buf(&mut self.cbuf) {
                        Ok(0) => return Err(Quiet::ClientEof.into()),
                        Ok(_) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(_) => return Err(Quiet::ClientEof.into()),
                    }
                }
            }
        }
    }

    /// No server: wait for the client's next request (or Terminate / EOF), then get one.
    async fn idle(&mut self) -> Result<Idle, Exit> {
        loop {
            if self.shared.is_suspended() {
                Box::pin(self.shared.wait_resumed()).await;
            }
            // A server is taken only for a complete, acceptable header: nonsense and
            // Terminate never cost a server.
            match link::first_request(&self.cbuf, self.max) {
                Ok(Some(frontend_tag::TERMINATE)) => return Ok(Idle::Goodbye),
                Ok(Some(_)) => match self.acquire().await {
                    Ok((conn, at)) => return Ok(Idle::Link(self.linked_at(conn, at))),
                    Err(Exit::Quiet(Quiet::CancelledWait)) => continue,
                    Err(e) => return Err(e),
                },
                Ok(None) => {}
                Err(e) => return Err(e.into()),
            }
            let rx = self
                .rx
                .as_deref()
                .ok_or(Exit::Fatal(Fatal::BouncerConfigError))?;
            // Nothing buffered and a plain socket: the session may park if this lasts.
            let parkable = self.cbuf.is_empty() && self.client.can_park();
            if self.cbuf.is_empty() {
                // Nothing buffered and no server: give the buffer back, so that
                // thousands of idle clients cost little memory (PgBouncer returns
                // pkt_buf the same way). Keeping it in the session until it parks cost
                // 1 KB for every client in the last tick of a burst of logins (peak RSS
                // 15.6 -> 16.5 MiB at 10 000 clients that ran one query each); the
                // worker's small keep costs a few KB and saves the allocation.
                give_back_read(&mut self.cbuf);
            }
            if parkable {
                if let Some(tick) = park::tick() {
                    rx.mark_idle(tick);
                }
            }
            // Waiting polls the mailbox and the socket directly, so an idle session's
            // future holds no waiter nodes (thousands of idle clients stay small).
            let client = &self.client;
            let woke = std::future::poll_fn(|cx| {
                if let Poll::Ready(msg) = rx.poll_recv(cx) {
                    return Poll::Ready(IdleWake::Msg(msg));
                }
                if let Poll::Ready(r) = client.poll_read_ready(cx) {
                    return Poll::Ready(IdleWake::Readable(r));
                }
                if rx.asked_to_park() {
                    return Poll::Ready(IdleWake::Park);
                }
                Poll::Pending
            })
            .await;
            if parkable {
                rx.mark_busy();
            }
            match woke {
                IdleWake::Msg(msg) => match msg {
                    SessionMsg::Disconnect(r) => return Err(r.into()),
                    SessionMsg::Link(conn) => return Ok(Idle::Link(self.linked(conn))),
                    SessionMsg::CancelWait
                    | SessionMsg::WaitNotice
                    | SessionMsg::FastClose
                    | SessionMsg::ReplicationServer(_) => {}
                },
                IdleWake::Park => {
                    if !self.shared.is_suspended() {
                        match self.client.take().detach() {
                            Ok(client) => {
                                self.client = client;
                                // What the next link rebuilds: the forwarding buffers
                                // and the parameters' comparison strings.
                                if let Some(p) = self.pump.take() {
                                    forward::Pump::give_back(p);
                                }
                                self.vars_sig = None;
                                return Ok(Idle::Park);
                            }
                            Err(_) => return Err(Quiet::ClientEof.into()),
                        }
                    }
                }
                IdleWake::Readable(r) => {
                    if r.is_err() {
                        return Ok(Idle::Goodbye);
                    }
                    reserve_client_read(&mut self.cbuf);
                    match self.client.try_read_buf(&mut self.cbuf) {
                        Ok(0) => return Err(Quiet::ClientEof.into()),
                        Ok(_) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(_) => return Err(Quiet::ClientEof.into()),
                    }
                }
            }
        }
    }

    /// The tracker said the server is clean: back to the pool.
    fn release(&mut self, mut l: Linked) {
        let now = l.now(&self.shared);
        let (conn, usage, _) = self.unlink(l);
        tracing::debug!("C-{}: releases S-{}", self.id.0, conn.id.0);
        let _ = self.shared.release(self.id, conn, usage, now);
    }

    /// The client is leaving while linked: a clean server goes back to the pool (with
    /// a reset in session mode), anything else is closed.
    fn give_back(&mut self, mut l: Linked) {
        let now = l.now(&self.shared);
        let (conn, usage, clean) = self.unlink(l);
        tracing::debug!("C-{}: leaves S-{} (clean: {clean})", self.id.0, conn.id.0);
        if clean {
            let _ = self.shared.release(self.id, conn, usage, now);
        } else {
            self.shared.drop_server(
                self.id,
                conn,
                pgbouncer_pool_core::ServerCloseReason::ClientDisconnectedDirty.message(),
            );
        }
    }

    /// The session ends with an error while linked: the server is closed unless the
    /// tracker proves it clean.
    fn drop_link(&mut self, l: Linked) {
        self.give_back(l);
    }

    /// `database/user@addr:port`, as PgBouncer's log lines name a client (empty before
    /// the startup packet).
    fn label(&self) -> Label<'_> {
        Label(self)
    }

    /// [`Session::label`], appended to a composed log line.
    fn label_into(&self, t: &mut crate::logging::LineText<'_>) {
        if let Some(w) = &self.who {
            t.s(&w.database).s("/").s(&w.user).s("@").s(&self.addr);
            t.s(":").n(self.port.into());
        }
    }

    async fn finish(&mut self, exit: Exit) {
        if let Some(p) = self.pump.take() {
            forward::Pump::give_back(p);
        }
        give_back_read(&mut self.cbuf);
        let age = seconds().wrapping_sub(self.started);
        let reason = exit.reason();
        // Logged before the client hears it, as PgBouncer does (a test that reads the
        // log right after the error must find the line).
        if let Exit::Fatal(f) = &exit {
            if let Fatal::Link(e) = f {
                let detail = e.to_string();
                if detail != f.message() {
                    // PgBouncer's log names the offending statement where the client is
                    // only told the short text.
                    tracing::error!("C-{}: {} {detail}", self.id.0, self.label());
                }
            }
            if self.rt.log_pooler_errors {
                tracing::warn!(
                    "C-{}: {} pooler error: {}",
                    self.id.0,
                    self.label(),
                    f.message()
                );
            }
        }
        if self.rt.log_disconnections && self.who.is_some() {
            crate::logging::compose(
                |t| {
                    t.s("C-").n(self.id.0.into()).s(": ");
                    self.label_into(t);
                    t.s(" closing because: ")
                        .s(&reason)
                        .s(" (age=")
                        .n(age.into())
                        .s("s)");
                },
                |line| tracing::info!("{line}"),
            );
        }
        if let Exit::Fatal(f) = &exit {
            let mut out = BytesMut::new();
            encode_error(&mut out, "FATAL", f.sqlstate(), &f.message());
            let _ = tokio::time::timeout(Duration::from_secs(1), self.client.write_all(&out)).await;
        }
        if self.rx.is_some() {
            self.shared.client_gone(self.id);
        }
    }
}

/// How a session's run stopped.
enum Ran {
    /// It ends so.
    Exit(Exit),
    /// Idle and asked to park.
    Park,
    /// Between transactions on a busy worker: it goes on on this one.
    Move(usize),
}

/// How an idle wait ended.
enum Idle {
    /// The client has a server for its next request.
    Link(Linked),
    /// Terminate, or the socket failed.
    Goodbye,
    /// Asked to park: the socket is off the reactor.
    Park,
}

/// What woke an idle session.
enum IdleWake {
    Msg(SessionMsg),
    Readable(std::io::Result<()>),
    Park,
}

/// What ended one wait for a server.
enum Waited {
    Msg(SessionMsg),
    Readable(std::io::Result<()>),
}

/// How forwarding on a link ended without an error.
enum Released {
    /// The server is clean and goes back to the pool; the client stays.
    Yes,
    /// The client left (Terminate or EOF).
    ClientLeft(Quiet),
}

/// The 64-bit key pool-core uses for a BackendKeyData pair.
/// A server pool-core handed this session, on this worker and checked: closed or
/// chatty while idle, it is never handed to a client.
fn usable(conn: &mut ServerConn) -> Result<(), &'static str> {
    // Checked before the move: a socket just registered with this worker's reactor
    // reads as "not ready" until that reactor has polled it, whatever it holds.
    if conn.stream.has_unexpected_input() {
        return Err("idle server got dirty");
    }
    if let Err(e) = conn.bring_home() {
        tracing::warn!("S-{}: cannot move to this worker: {e}", conn.id.0);
        return Err("cannot move server to the client's worker");
    }
    Ok(())
}

pub(crate) fn cancel_key(pid: i32, secret: i32) -> u64 {
    (u64::from(pid as u32) << 32) | u64::from(secret as u32)
}

/// What `sync_vars` compares, each as one string: the names it would check
/// (`name\0` each) and the values the client wants for them (`name=value\0` each).
#[derive(Debug, Default)]
pub(super) struct VarsSig {
    names: String,
    values: String,
}

impl Session {
    /// Sets a tracked parameter's value for this client.
    fn set_var(&mut self, name: &str, value: &str) {
        self.vars_sig = None;
        set_var(&mut self.vars, name, value);
    }
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
/// Client read buffers kept per worker thread ([`give_back_read`]).
const SPARE_READS_MAX: usize = 16;

thread_local! {
    static SPARE_READS: std::cell::RefCell<Vec<BytesMut>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Takes `cbuf`'s buffer from a session that goes idle or ends, leaving it none, and
/// keeps it for the next read of any session on this thread (at most
/// [`SPARE_READS_MAX`]; a buffer grown past a small read by a large message is freed).
/// A transaction then allocates no read buffer, and an idle client still holds none.
fn give_back_read(cbuf: &mut BytesMut) {
    let mut buf = std::mem::take(cbuf);
    if buf.capacity() < SMALL_READ || buf.capacity() > 2 * SMALL_READ {
        return;
    }
    buf.clear();
    SPARE_READS.with(|s| {
        if let Ok(mut s) = s.try_borrow_mut() {
            if s.len() < SPARE_READS_MAX {
                s.push(buf);
            }
        }
    });
}

/// A kept read buffer ([`give_back_read`]), if this thread has one.
fn take_spare_read() -> Option<BytesMut> {
    SPARE_READS.with(|s| s.try_borrow_mut().ok().and_then(|mut s| s.pop()))
}

fn reserve_client_read(cbuf: &mut BytesMut) {
    if cbuf.capacity() == 0 {
        if let Some(kept) = take_spare_read() {
            *cbuf = kept;
        }
    }
    let want = if cbuf.len() >= SMALL_READ {
        READ_CHUNK
    } else {
        SMALL_READ
    };
    cbuf.reserve(want);
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_read_buffer_comes_back_empty_and_only_small_ones_are_kept() {
        // (Each test runs on its own thread: the keep starts empty.)
        let mut cbuf = BytesMut::new();
        reserve_client_read(&mut cbuf);
        assert_eq!(cbuf.capacity(), SMALL_READ);
        cbuf.extend_from_slice(b"Q\0\0\0\x0dselect 1\0");
        cbuf.clear();
        let ptr = cbuf.as_ptr();
        give_back_read(&mut cbuf);
        assert_eq!(cbuf.capacity(), 0, "the session holds no buffer");
        // The next read takes the same buffer, empty, and allocates nothing.
        let mut next = BytesMut::new();
        reserve_client_read(&mut next);
        assert_eq!((next.as_ptr(), next.len()), (ptr, 0));
        assert!(take_spare_read().is_none());
        // A buffer grown by a large message is freed; the keep is bounded.
        let mut big = BytesMut::with_capacity(READ_CHUNK);
        give_back_read(&mut big);
        assert!(take_spare_read().is_none());
        for _ in 0..SPARE_READS_MAX + 3 {
            let mut b = BytesMut::with_capacity(SMALL_READ);
            give_back_read(&mut b);
        }
        assert_eq!(SPARE_READS.with(|s| s.borrow().len()), SPARE_READS_MAX);
    }

    fn shared() -> Arc<Shared> {
        let ini = crate::config::ini::Ini::parse(
            "[databases]\n[pgbouncer]\nauth_type = any\n",
            std::path::Path::new("pgbouncer.ini"),
        )
        .unwrap();
        let settings = crate::config::Settings::from_ini(&ini, None, &Default::default()).unwrap();
        Shared::new(Runtime::new(settings).unwrap())
    }

    /// tokio keeps each task in one allocation aligned to 128 bytes: a 104-byte header
    /// and trailer plus the future. A session's future of at most 408 bytes makes that
    /// 512 bytes per client; 409 would make it 640 (10 000 idle clients: 1.25 MiB more).
    /// The same holds for a session resumed after parking.
    #[test]
    fn an_idle_sessions_task_fits_in_512_bytes() {
        let local = Arc::new((Arc::from("127.0.0.1"), 6432));
        let task = serve(
            shared(),
            Stream::Closed,
            ("127.0.0.1".into(), 1),
            local.clone(),
        );
        let size = std::mem::size_of_val(&task);
        assert!(size <= 408, "the session's future is {size} bytes");

        let shared = shared();
        let session = Session {
            id: shared.next_client_id(),
            rt: shared.runtime(),
            shared,
            max: 1,
            client: Stream::Closed,
            cbuf: BytesMut::new(),
            rx: None,
            mode: PoolMode::Transaction,
            vars: Vec::new(),
            vars_sig: None,
            defaults: Arc::default(),
            addr: "127.0.0.1".into(),
            port: 1,
            started: seconds(),
            who: None,
            timeouts: QueryTimeouts::default(),
            fast_close: false,
            welcomed: true,
            logged_in: true,
            pump: None,
            statements: ClientStatements::default(),
            local,
        };
        let task = resume(session, crate::workers::Load);
        let size = std::mem::size_of_val(&task);
        assert!(size <= 408, "a resumed session's future is {size} bytes");
    }
}
