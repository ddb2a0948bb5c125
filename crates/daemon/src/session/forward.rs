//! Forwarding while linked: read a chunk from either side, feed it to the tracker,
//! write what it says; release when it says the link is clean (mirrors sbuf.c's
//! two-way pump: a direction stops reading while its output is not written, so memory
//! stays bounded and a slow reader never blocks the other direction).

use pgbouncer_pool_core::Event;
use pgbouncer_protocol::link::{FromClient, FromServer};

use super::outbox::{write_now, Progress};
use super::*;

/// Made-up replies waiting for the client beyond this stop client reads (the client is
/// not reading what we answer).
const CLIENT_REPLY_LIMIT: usize = 64 * 1024;

/// Forwarding states kept per worker thread for the next sessions ([`Pump::take_spare`]).
const SPARE_PUMPS_MAX: usize = 8;

thread_local! {
    // Boxed in the keep too: a session holds its state boxed, so handing one over moves
    // a pointer and allocates nothing.
    #[allow(clippy::vec_box)]
    static SPARE_PUMPS: std::cell::RefCell<Vec<Box<Pump>>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// The forwarding state of one link: what each direction still has to write. Kept by
/// the session between links, so its buffers are allocated once per client, not once
/// per transaction.
#[derive(Default)]
pub(super) struct Pump {
    from_client: FromClient,
    /// `from_client.to_server` not fully written yet.
    to_server: Option<Progress>,
    /// Made-up replies for the client, written after `to_client`.
    replies: BytesMut,
    from_server: FromServer,
    /// `from_server.to_client` not fully written yet.
    to_client: Option<Progress>,
    /// The tracker of the last link, emptied, for the next one.
    pub(super) spare_track: Option<Box<link::Link>>,
    /// The client sent Terminate (or closed): forward what came before, then leave.
    client_done: Option<Quiet>,
    /// The client's TLS stream still holds records of `replies` (plain sockets: never).
    client_unflushed: bool,
}

impl Pump {
    /// Back to the state of a new link, keeping the buffers' capacity (and dropping
    /// buffers grown past the reply limit by one large chunk, so an idle client holds
    /// little).
    fn reset(&mut self) {
        self.from_client.clear_and_shrink(CLIENT_REPLY_LIMIT);
        self.from_server.clear_and_shrink(CLIENT_REPLY_LIMIT);
        self.to_server = None;
        self.to_client = None;
        self.client_done = None;
        self.client_unflushed = false;
        self.replies.clear();
        if self.replies.capacity() > CLIENT_REPLY_LIMIT {
            self.replies = BytesMut::new();
        }
    }

    /// A forwarding state for a session that has none: one a session of this thread
    /// gave back (emptied by [`Pump::reset`], its tracker emptied by `Link::relink`
    /// before any use), else a new one. A connection per transaction then allocates no
    /// forwarding state, tracker or forwarding buffers.
    pub(super) fn take_spare() -> Box<Pump> {
        SPARE_PUMPS
            .with(|s| s.try_borrow_mut().ok().and_then(|mut s| s.pop()))
            .unwrap_or_default()
    }

    /// Keeps the forwarding state of a session that parks or ends for the next
    /// session of this thread (at most [`SPARE_PUMPS_MAX`]; the rest are freed).
    pub(super) fn give_back(mut p: Box<Pump>) {
        p.reset();
        if p.replies.capacity() > 0 {
            // Made-up replies are rare: a kept state holds no buffer for them.
            p.replies = BytesMut::new();
        }
        SPARE_PUMPS.with(|s| {
            if let Ok(mut s) = s.try_borrow_mut() {
                if s.len() < SPARE_PUMPS_MAX {
                    s.push(p);
                }
            }
        });
    }

    fn flushed(&self) -> bool {
        self.to_server.is_none()
            && self.to_client.is_none()
            && self.replies.is_empty()
            && !self.client_unflushed
    }
}

impl Session {
    /// Brings the server's tracked parameters in line with the client's (one combined
    /// SET, replies swallowed), as PgBouncer's varcache does.
    pub(super) async fn sync_vars(&mut self, l: &mut Linked) -> Result<(), Exit> {
        // Fast path, taken on nearly every link: the server already has exactly the
        // values this client wants (one string comparison instead of a search per
        // parameter; both sides cache their string until a value changes).
        let sig = self.vars_sig.get_or_insert_with(|| {
            let mut sig = Box::<VarsSig>::default();
            let (mut names, mut values) = (0, 0);
            for (name, value) in wanted_vars(&self.vars, &self.defaults) {
                names += name.len() + 1;
                values += name.len() + value.len() + 2;
            }
            sig.names.reserve_exact(names);
            sig.values.reserve_exact(values);
            for (name, value) in wanted_vars(&self.vars, &self.defaults) {
                sig.names.push_str(name);
                sig.names.push('\0');
                sig.values.push_str(name);
                sig.values.push('=');
                sig.values.push_str(value);
                sig.values.push('\0');
            }
            sig
        });
        if l.conn.values_of(&sig.names) == sig.values {
            return Ok(());
        }
        let mut sql = String::new();
        for (name, value) in wanted_vars(&self.vars, &self.defaults) {
            let differs = l
                .conn
                .param(name)
                .is_none_or(|v| v != value && !v.eq_ignore_ascii_case(value));
            if differs {
                sql.push_str(&format!("SET {name}='{}';", value.replace('\'', "''")));
            }
        }
        if sql.is_empty() {
            return Ok(());
        }
        tracing::debug!("S-{}: {} varcache_apply: {sql}", l.conn.id.0, l.conn.label);
        // Boxed: rare, and its state would otherwise sit in every link's future.
        Box::pin(l.conn.run_internal(&sql)).await.map_err(|e| {
            tracing::warn!("C-{}: invalid server parameter: {e}", self.id.0);
            Exit::Fatal(Fatal::InvalidServerParameter(e))
        })?;
        // The server's canonical spelling becomes the client's value.
        l.now = None;
        let id = self.id.0;
        self.vars_sig = None;
        for (name, value) in self.vars.iter_mut() {
            if let Some(v) = l.conn.param(name) {
                if v != value.as_str() {
                    tracing::debug!(
                        "C-{id}: varcache_set_canonical: setting {name} to its canonical version {value} -> {v}"
                    );
                    *value = v.to_string();
                }
            }
        }
        Ok(())
    }

    /// Forwards in both directions until the server can be released or the client
    /// leaves.
    pub(super) async fn forward(&mut self, l: &mut Linked) -> Result<Released, Exit> {
        let mut p = self.pump.take().unwrap_or_else(Pump::take_spare);
        let result = self.pump(l, &mut p).await;
        p.reset();
        self.pump = Some(p);
        result
    }

    async fn pump(&mut self, l: &mut Linked, p: &mut Pump) -> Result<Released, Exit> {
        self.sync_vars(l).await?;
        let shared = self.shared.clone();
        let rx = self
            .rx
            .clone()
            .ok_or(Exit::Fatal(Fatal::BouncerConfigError))?;
        if !self.cbuf.is_empty() {
            self.feed_client(l, p)?;
        }
        loop {
            self.write_ready(l, p)?;
            if p.flushed() {
                // After Terminate, what the server still owes is read to the end (the
                // client may still read it, as it would from PostgreSQL), so the server
                // comes back clean; after EOF nobody is listening.
                let draining = p.client_done == Some(Quiet::ClientCloseRequest)
                    && l.track.is_waiting_for_server();
                if let (Some(reason), false) = (p.client_done, draining) {
                    return Ok(Released::ClientLeft(reason));
                }
                if l.track.is_clean() {
                    if self.fast_close {
                        return Err(Fatal::DatabaseConfigurationChanged.into());
                    }
                    if self.mode != PoolMode::Session {
                        return Ok(Released::Yes);
                    }
                }
            }
            let suspended = shared.is_suspended();
            let blocked = !p.flushed();
            let deadline = self.timeouts.deadline(l);
            let wants = Wants {
                write_server: p.to_server.is_some(),
                write_client: p.to_client.is_some() || !p.replies.is_empty() || p.client_unflushed,
                read_server: p.to_client.is_none() && p.replies.is_empty() && !suspended,
                read_client: p.to_server.is_none()
                    && p.replies.len() < CLIENT_REPLY_LIMIT
                    && p.client_done.is_none()
                    && l.track.wants_client_input()
                    && !suspended,
            };
            // A clock reading taken before the wait is stale after it.
            l.now = None;
            // The common wait (no timeout set, nothing blocked, not suspended) polls the
            // sockets and the mailbox directly: no future per wait, no waiter node per
            // socket. The rest (timers, SUSPEND's bookkeeping) is boxed, paid only when
            // needed.
            let woke = if deadline.is_none() && !blocked && !suspended {
                std::future::poll_fn(|cx| wants.poll(cx, &l.conn.stream, &self.client, &rx)).await
            } else {
                let (client, stream) = (&self.client, &l.conn.stream);
                Box::pin(wait_rare(
                    &shared, deadline, blocked, suspended, wants, stream, client, &rx,
                ))
                .await
            };
            match woke {
                Woke::Timeout(why) => return Err(why.into()),
                Woke::Stuck => return Err(Quiet::SuspendTimeout.into()),
                Woke::ServerWritable(r) => {
                    r.map_err(|_| Exit::Fatal(Fatal::ServerConnCrashed))?;
                }
                Woke::ClientWritable(r) => {
                    if r.is_err() {
                        return Ok(Released::ClientLeft(Quiet::ClientEof));
                    }
                }
                Woke::ServerReadable(r) => {
                    r.map_err(|_| Exit::Fatal(Fatal::ServerConnCrashed))?;
                    self.read_server(l, p)?;
                }
                Woke::ClientReadable(r) => {
                    if r.is_err() {
                        p.client_done = Some(Quiet::ClientEof);
                        continue;
                    }
                    reserve_client_read(&mut self.cbuf);
                    match self.client.try_read_buf(&mut self.cbuf) {
                        Ok(0) => p.client_done = Some(Quiet::ClientEof),
                        Ok(_) => self.feed_client(l, p)?,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(_) => p.client_done = Some(Quiet::ClientEof),
                    }
                }
                Woke::Msg(msg) => match msg {
                    SessionMsg::Disconnect(r) => return Err(r.into()),
                    SessionMsg::FastClose => self.fast_close = true,
                    SessionMsg::Link(stray) => {
                        // pool-core links only waiting clients; never expected here.
                        tracing::error!(
                            "C-{}: got server S-{} while linked; closing it",
                            self.id.0,
                            stray.id.0
                        );
                        stray.terminate();
                    }
                    // (Only replication sessions get a replication server.)
                    SessionMsg::CancelWait
                    | SessionMsg::WaitNotice
                    | SessionMsg::ReplicationServer(_) => {}
                },
                Woke::Resumed => {}
            }
        }
    }

    /// Feeds what `cbuf` holds to the tracker and queues its output.
    fn feed_client(&mut self, l: &mut Linked, p: &mut Pump) -> Result<(), Exit> {
        p.from_client.clear();
        l.track
            .from_client(&self.cbuf, &self.shared.prepared, &mut p.from_client)?;
        let fc = &p.from_client;
        l.usage.bytes_received += self.cbuf.len() as u64;
        if fc.requests {
            l.idle_in_xact_since = None;
            if l.query_start.is_none() {
                let now = l.now(&self.shared);
                l.query_start = Some(now);
                l.xact_start.get_or_insert(now);
            }
        }
        if fc.terminated {
            p.client_done = Some(Quiet::ClientCloseRequest);
        }
        for i in 0..fc.to_client.pieces().len() {
            p.replies.extend_from_slice(fc.to_client.slice(&[], i));
        }
        if fc.to_server.is_empty() {
            self.cbuf.clear();
        } else {
            p.to_server = Some(Progress::start());
        }
        Ok(())
    }

    /// Reads a chunk from the server, feeds it to the tracker and queues its output.
    fn read_server(&mut self, l: &mut Linked, p: &mut Pump) -> Result<(), Exit> {
        l.conn.buf.reserve(SERVER_READ_CHUNK);
        match l.conn.stream.try_read_buf(&mut l.conn.buf) {
            Ok(0) => return Err(Fatal::ServerConnCrashed.into()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
            Err(_) => return Err(Fatal::ServerConnCrashed.into()),
        }
        p.from_server.clear();
        l.track.from_server(&l.conn.buf, &mut p.from_server)?;
        let fs = &p.from_server;
        l.usage.bytes_sent += fs.to_client.len() as u64;
        for (name, value) in &fs.params {
            l.conn.set_param(name, value);
            if let Some(t) = self.rt.reported_tracked_name(name) {
                let t = t.to_string();
                self.set_var(&t, value);
            }
        }
        if fs.readies > 0 {
            let now = l.now(&self.shared);
            if let Some(start) = l.query_start.take() {
                l.usage.query_count += u64::from(fs.readies);
                l.usage.query_time_us += now.as_micros().saturating_sub(start.as_micros());
            }
            if fs.idle_readies > 0 {
                if let Some(start) = l.xact_start.take() {
                    l.usage.xact_count += u64::from(fs.idle_readies);
                    l.usage.xact_time_us += now.as_micros().saturating_sub(start.as_micros());
                }
            }
            if l.track.is_waiting_for_server() {
                l.query_start = Some(now);
                l.xact_start.get_or_insert(now);
            } else if l.track.status() != TransactionStatus::Idle {
                l.idle_in_xact_since = Some(now);
                l.xact_start.get_or_insert(now);
            }
            if self.mode == PoolMode::Session && !l.track.is_waiting_for_server() {
                let counts = l.track.take_counts();
                let mut usage = std::mem::take(&mut l.usage);
                usage.client_parse_count += counts.client_parses;
                usage.server_parse_count += counts.server_parses;
                usage.bind_count += counts.binds;
                self.shared.handle(
                    Event::ClientUsage {
                        client: self.id,
                        usage,
                    },
                    None,
                );
            }
        }
        if fs.to_client.is_empty() {
            l.conn.buf.clear();
        } else {
            p.to_client = Some(Progress::start());
        }
        Ok(())
    }

    /// Writes whatever is queued and the sockets take now; frees read buffers whose
    /// output is all written.
    fn write_ready(&mut self, l: &mut Linked, p: &mut Pump) -> Result<(), Exit> {
        if let Some(progress) = p.to_server.as_mut() {
            let done = write_now(
                &l.conn.stream,
                &p.from_client.to_server,
                &self.cbuf,
                progress,
            )
            .map_err(|e| write_failed(e, Fatal::ServerConnCrashed))?;
            if done {
                p.to_server = None;
                self.cbuf.clear();
            }
        }
        if let Some(progress) = p.to_client.as_mut() {
            let done = match write_now(
                &self.client,
                &p.from_server.to_client,
                &l.conn.buf,
                progress,
            ) {
                Ok(done) => done,
                Err(e) => return Err(write_failed(e, Quiet::ClientEof)),
            };
            if done {
                p.to_client = None;
                l.conn.buf.clear();
            }
        }
        if p.to_client.is_none() && !p.replies.is_empty() {
            match self.client.try_write(&p.replies) {
                Ok(n) => {
                    let _ = p.replies.split_to(n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(write_failed(e, Quiet::ClientEof)),
            }
        }
        if p.to_client.is_none() && p.replies.is_empty() {
            p.client_unflushed = !self
                .client
                .try_flush()
                .map_err(|e| write_failed(e, Quiet::ClientEof))?;
        }
        Ok(())
    }
}

/// The tracked values a client wants on its server: those it set, then the pool's
/// original value of each one it did not set.
fn wanted_vars<'a>(
    vars: &'a [(String, String)],
    defaults: &'a crate::shared::Welcome,
) -> impl Iterator<Item = &'a (String, String)> {
    let unset = defaults
        .tracked
        .iter()
        .filter(|(n, _)| get_var(vars, n).is_none());
    vars.iter().chain(unset)
}

/// What the forwarding loop waits for, besides the mailbox (always watched).
#[derive(Clone, Copy)]
struct Wants {
    write_server: bool,
    write_client: bool,
    read_server: bool,
    read_client: bool,
}

/// What ended a wait of the forwarding loop.
enum Woke {
    Timeout(Fatal),
    /// SUSPEND gave up on this session's blocked write.
    Stuck,
    ServerWritable(std::io::Result<()>),
    ClientWritable(std::io::Result<()>),
    ServerReadable(std::io::Result<()>),
    ClientReadable(std::io::Result<()>),
    Msg(SessionMsg),
    /// SUSPEND ended.
    Resumed,
}

impl Wants {
    /// The first ready of what is wanted, in a fixed order: writes before reads (what
    /// is queued goes out before more is taken in), the server's data before the
    /// client's, then the mailbox.
    fn poll(
        self,
        cx: &mut std::task::Context<'_>,
        server: &Stream,
        client: &Stream,
        rx: &crate::mailbox::Mailbox,
    ) -> Poll<Woke> {
        if self.write_server {
            if let Poll::Ready(r) = server.poll_write_ready(cx) {
                return Poll::Ready(Woke::ServerWritable(r));
            }
        }
        if self.write_client {
            if let Poll::Ready(r) = client.poll_write_ready(cx) {
                return Poll::Ready(Woke::ClientWritable(r));
            }
        }
        if self.read_server {
            if let Poll::Ready(r) = server.poll_read_ready(cx) {
                return Poll::Ready(Woke::ServerReadable(r));
            }
        }
        if self.read_client {
            if let Poll::Ready(r) = client.poll_read_ready(cx) {
                return Poll::Ready(Woke::ClientReadable(r));
            }
        }
        rx.poll_recv(cx).map(Woke::Msg)
    }
}

/// The forwarding loop's wait when a timeout is set, a write is blocked (SUSPEND counts
/// it and may drop it) or the pooler is suspended.
#[allow(clippy::too_many_arguments)]
async fn wait_rare(
    shared: &Shared,
    deadline: Option<(pgbouncer_pool_core::Instant, Fatal)>,
    blocked: bool,
    suspended: bool,
    wants: Wants,
    server: &Stream,
    client: &Stream,
    rx: &crate::mailbox::Mailbox,
) -> Woke {
    let mut stuck = blocked.then(|| shared.flush.blocked_write());
    let timer = async {
        match deadline {
            Some((at, why)) => {
                tokio::time::sleep_until(shared.wall_at(at)).await;
                why
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        biased;
        why = timer => Woke::Timeout(why),
        () = dropped(&mut stuck), if blocked => Woke::Stuck,
        woke = std::future::poll_fn(|cx| wants.poll(cx, server, client, rx)) => woke,
        () = shared.wait_resumed(), if suspended && !blocked => Woke::Resumed,
    }
}

/// Resolves when SUSPEND gives up on this session's blocked write (never without one).
async fn dropped(stuck: &mut Option<crate::flush::BlockedWrite<'_>>) {
    match stuck {
        Some(s) => s.dropped().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_forwarding_state_comes_back_empty_and_the_keep_is_bounded() {
        let mut p = Box::<Pump>::default();
        p.replies.extend_from_slice(b"made-up reply");
        p.to_server = Some(Progress::start());
        p.to_client = Some(Progress::start());
        p.client_done = Some(Quiet::ClientEof);
        p.client_unflushed = true;
        Pump::give_back(p);
        let q = Pump::take_spare();
        assert!(q.flushed());
        assert!(q.client_done.is_none());
        assert!(q.from_client.to_server.pieces().is_empty());
        assert!(q.from_server.to_client.pieces().is_empty());
        assert_eq!(q.replies.capacity(), 0);
        // More given back than kept: the keep stays at its bound.
        for _ in 0..SPARE_PUMPS_MAX + 5 {
            Pump::give_back(Box::default());
        }
        assert_eq!(SPARE_PUMPS.with(|s| s.borrow().len()), SPARE_PUMPS_MAX);
        SPARE_PUMPS.with(|s| s.borrow_mut().clear());
    }
}
