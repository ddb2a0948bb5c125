//! The state every session shares: pool-core's `Custody` (the `Pooler` and the idle
//! server connections it holds) plus the I/O objects it refers to (session mailboxes),
//! behind one mutex.
//!
//! Design (measured in `docs/ARCHITECTURE.md`): sessions run on every core and take the
//! lock only at transaction boundaries (want a server, release it) for about a
//! microsecond; the byte forwarding itself never touches shared state. A waiting client
//! gets its server through its mailbox; a client that can be served at once gets it as
//! the return value, without a channel hop. Actions are dispatched under the lock and
//! never await: slow work (connects, reset queries, cancels) is spawned.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use pgbouncer_pool_core::{
    Action, ClientId, Custody, DisconnectReason, Event, IdMap, Instant, PoolKey, Pooler, ServerId,
};
use tokio::sync::Notify;

use crate::mailbox::Mailbox;

use crate::auth::userlist::Secret;
use crate::runtime::Runtime;
use crate::server::{self, ServerConn, ServerCredential, ServerTarget};

/// Reopens log destinations from new settings.
pub struct LogReopen(pub Box<dyn Fn(&crate::config::Settings) + Send + Sync>);

impl std::fmt::Debug for LogReopen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogReopen")
    }
}

/// A message to a client session.
#[derive(Debug)]
pub enum SessionMsg {
    /// Your server (boxed: the queue stays small).
    Link(Box<ServerConn>),
    /// Send this error and close.
    Disconnect(DisconnectReason),
    /// Your wait was cancelled by a cancel request.
    CancelWait,
    /// You have waited `query_wait_notify` seconds: tell the client it is queued.
    WaitNotice,
    /// `server_fast_close`: leave after the current transaction.
    FastClose,
    /// A replication client's own server: this id is reserved for it in the pool.
    ReplicationServer(ServerId),
}

/// A pool's welcome: the server's ParameterStatus values from its first login, and
/// the tracked ones among them (the defaults of every client that did not set them).
#[derive(Debug, Default)]
pub struct Welcome {
    /// Every parameter the server reported.
    pub params: Vec<(String, String)>,
    /// The tracked ones, under their canonical names.
    pub tracked: Vec<(String, String)>,
    /// The bytes `params` take as ParameterStatus messages (the welcome buffer is sized
    /// from it, so building it never grows it).
    pub params_len: usize,
}

impl Welcome {
    /// Splits out the tracked parameters once per pool.
    pub fn new(params: Vec<(String, String)>, rt: &Runtime) -> Welcome {
        let tracked = params
            .iter()
            .filter_map(|(n, v)| {
                rt.reported_tracked_name(n)
                    .map(|t| (t.to_string(), v.clone()))
            })
            .collect();
        let params_len = params.iter().map(|(n, v)| status_len(n, v)).sum();
        Welcome {
            params,
            tracked,
            params_len,
        }
    }
}

/// The length of a ParameterStatus message for `name` and `value`.
pub fn status_len(name: &str, value: &str) -> usize {
    // Tag, length, and the two strings with their terminators.
    1 + 4 + name.len() + 1 + value.len() + 1
}

/// SCRAM keys learned from a client login, for pass-through to servers.
#[derive(Debug, Clone)]
pub struct ScramKeys {
    /// ClientKey.
    pub client_key: [u8; 32],
    /// ServerKey.
    pub server_key: [u8; 32],
    /// The secret's salt.
    pub salt: Vec<u8>,
    /// The secret's iterations.
    pub iterations: u32,
}

/// Everything behind the lock.
#[derive(Debug)]
pub struct Core {
    /// The pool state machine, holding the connections of the servers in the pool
    /// (boxed once when connected: a hand-off moves a pointer, not the connection).
    pub pooler: Custody<Box<ServerConn>>,
    sessions: IdMap<ClientId, Arc<Mailbox>>,
    cancel_targets: IdMap<ServerId, (String, u16, i32, i32)>,
    /// Server parameters per pool from the first login (PgBouncer's welcome message).
    pub welcome: HashMap<PoolKey, Arc<Welcome>>,
    /// SCRAM pass-through keys per user.
    pub scram_keys: HashMap<String, ScramKeys>,
    /// Secrets found by auth_query, used to log in to servers as those users.
    pub dynamic_secrets: HashMap<String, Secret>,
    pause_waiters: Vec<(Option<String>, tokio::sync::oneshot::Sender<()>)>,
    /// Socket facts per client, for SHOW CLIENTS.
    /// Boxed: the map's slots stay small (a map has up to twice as many slots as
    /// entries, and there is one entry per client).
    pub client_info: IdMap<ClientId, Box<pgbouncer_admin::ConnInfo>>,
    /// Socket facts per server, for SHOW SERVERS.
    pub server_info: IdMap<ServerId, pgbouncer_admin::ConnInfo>,
    /// Console sessions, for SHOW CLIENTS / SHOW POOLS.
    pub admin_clients: HashMap<ClientId, pgbouncer_admin::AdminClientInfo>,
    /// Auto-databases (`*`) registered by an authenticated client, until their pools are
    /// freed (`autodb_idle_timeout`): SHOW DATABASES lists them.
    pub autodbs: std::collections::BTreeSet<String>,
    /// The console's own traffic: logins, and one transaction and query per command
    /// (PgBouncer's `pgbouncer` pool in SHOW STATS and SHOW TOTALS).
    pub console_stats: pgbouncer_pool_core::StatCounters,
    /// Cancel forwards started by the event being handled, for its cancel connection to
    /// wait on (taken by [`Shared::forward_cancel`]).
    cancel_tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Shared daemon state.
#[derive(Debug)]
pub struct Shared {
    core: Mutex<Core>,
    runtime: RwLock<Arc<Runtime>>,
    timer: Notify,
    armed: AtomicU64,
    epoch: tokio::time::Instant,
    /// One id sequence for every socket: clients (console and cancel connections
    /// included) and, through pool-core, servers, as PgBouncer numbers them.
    next_client: Arc<AtomicU32>,
    /// Clients past their startup packet and still authenticating (pool-core counts a
    /// client only once it is authenticated; these count against `max_client_conn` too).
    logins: Arc<AtomicU32>,
    scram_cache: Mutex<HashMap<String, (String, pgbouncer_protocol::auth::scram::ScramSecret)>>,
    /// Wakes the listeners and sessions on shutdown.
    pub shutdown: tokio::sync::watch::Sender<bool>,
    /// `max_prepared_statements` in force (read per link without the runtime lock).
    max_prepared: std::sync::atomic::AtomicUsize,
    /// Closes the Unix-socket listener: at the end of a shutdown, later than the TCP
    /// ones, so the console stays reachable while a shutdown waits (as PgBouncer).
    pub close_unix: tokio::sync::watch::Sender<bool>,
    /// Named prepared statements: one server-side name per distinct statement.
    pub(crate) prepared: pgbouncer_protocol::link::StatementRegistry,
    /// Connections that run auth_query.
    pub auth_conns: crate::auth_query::AuthConns,
    /// Next host of each database's host list.
    host_cursor: Mutex<HashMap<String, usize>>,
    /// Reopens the log destinations after a reload (set by `main`).
    log_reopen: Mutex<Option<LogReopen>>,
    /// SUSPEND in force: sessions stop reading, listeners stop accepting.
    suspended: std::sync::atomic::AtomicBool,
    resumed: Notify,
    /// Session writes waiting for their peer, which SUSPEND flushes or drops.
    pub flush: crate::flush::Flusher,
    /// A shutdown asked for by the console (`SHUTDOWN ...`), for `main` to carry out.
    pub shutdown_request: tokio::sync::watch::Sender<Option<crate::daemon::ShutdownMode>>,
    /// Logins, TLS handshakes and prepared statements, for `/metrics`.
    pub counters: crate::http::Counters,
    /// Liveness and readiness, for `/healthz` and `/readyz`.
    pub health: crate::http::Health,
}

/// One client's place among those authenticating ([`Shared::login_slot`]).
#[derive(Debug)]
pub(crate) struct LoginSlot(Arc<AtomicU32>);

impl Drop for LoginSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Shared {
    /// New shared state for `runtime`.
    pub fn new(runtime: Arc<Runtime>) -> Arc<Shared> {
        let ids = Arc::new(AtomicU32::new(1));
        let max_prepared = runtime.per_login.max_prepared_statements;
        let pooler = Custody::new(Pooler::with_ids(
            runtime.settings.pool_config(),
            ids.clone(),
        ));
        let (shutdown, _) = tokio::sync::watch::channel(false);
        let (close_unix, _) = tokio::sync::watch::channel(false);
        let (shutdown_request, _) = tokio::sync::watch::channel(None);
        Arc::new(Shared {
            core: Mutex::new(Core {
                pooler,
                sessions: IdMap::default(),
                cancel_targets: IdMap::default(),
                welcome: HashMap::new(),
                scram_keys: HashMap::new(),
                dynamic_secrets: HashMap::new(),
                pause_waiters: Vec::new(),
                client_info: IdMap::default(),
                server_info: IdMap::default(),
                admin_clients: HashMap::new(),
                console_stats: Default::default(),
                autodbs: Default::default(),
                cancel_tasks: Vec::new(),
            }),
            runtime: RwLock::new(runtime),
            timer: Notify::new(),
            armed: AtomicU64::new(u64::MAX),
            epoch: tokio::time::Instant::now(),
            next_client: ids,
            logins: Arc::default(),
            scram_cache: Mutex::new(HashMap::new()),
            shutdown,
            close_unix,
            max_prepared: std::sync::atomic::AtomicUsize::new(max_prepared),
            log_reopen: Mutex::new(None),
            host_cursor: Mutex::new(HashMap::new()),
            suspended: std::sync::atomic::AtomicBool::new(false),
            resumed: Notify::new(),
            flush: Default::default(),
            auth_conns: Default::default(),
            prepared: Default::default(),
            shutdown_request,
            counters: Default::default(),
            health: Default::default(),
        })
    }

    /// The current runtime configuration.
    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the runtime configuration (RELOAD) and tells pool-core.
    pub fn set_runtime(self: &Arc<Self>, rt: Arc<Runtime>) {
        if let Some(f) = self
            .log_reopen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            (f.0)(&rt.settings);
        }
        let config = rt.settings.pool_config();
        self.max_prepared
            .store(rt.per_login.max_prepared_statements, Ordering::Relaxed);
        let old = std::mem::replace(
            &mut *self.runtime.write().unwrap_or_else(|e| e.into_inner()),
            rt.clone(),
        );
        self.handle(Event::Reload(Box::new(config)), None);
        self.reconnect_changed_databases(&old, &rt);
        if old.tls.server.fingerprint != rt.tls.server.fingerprint {
            // Servers keep the TLS they were opened with; new settings (or a rotated
            // CA or key) mean re-opening them, idle ones now and busy ones when
            // released, as PgBouncer tags its pools dirty.
            tracing::info!("server TLS settings changed: reconnecting servers");
            // The welcome came from servers with the old settings: new clients wait for
            // a login with the new ones (PgBouncer's tag_pool_dirty).
            self.lock().welcome.clear();
            self.handle(Event::Reconnect { database: None }, None);
        }
    }

    /// After a reload: every database whose connection (host, port, dbname, forced user,
    /// password, startup parameters, connect_query, auth_*) changed gets its servers
    /// re-opened, idle ones now and busy ones when released, and its cached welcome
    /// dropped, so the next query reaches the new target (PgBouncer tags such pools
    /// dirty: `database configuration changed`).
    fn reconnect_changed_databases(self: &Arc<Self>, old: &Runtime, new: &Runtime) {
        let names: Vec<String> = {
            let core = self.lock();
            let mut names: Vec<String> = core
                .pooler
                .pools(self.now())
                .map(|p| p.key.database.to_string())
                .collect();
            names.sort();
            names.dedup();
            names
        };
        for name in names {
            let (Some(a), Some(b)) = (old.database(&name), new.database(&name)) else {
                continue; // new or removed: pool-core's reload handles it
            };
            if !crate::config::databases::same_target(&a, &b) {
                tracing::info!("database {name}: configuration changed, reconnecting its servers");
                {
                    let mut core = self.lock();
                    core.welcome.retain(|k, _| *k.database != *name);
                }
                self.auth_conns.forget_database(&name);
                self.handle(
                    Event::Reconnect {
                        database: Some(name),
                    },
                    None,
                );
            }
        }
    }

    /// A SCRAM secret for a user whose auth_file entry is a plain password: derived
    /// once (PBKDF2 is expensive) with a random salt and `scram_iterations`.
    pub fn plain_scram_secret(
        &self,
        user: &str,
        password: &str,
    ) -> pgbouncer_protocol::auth::scram::ScramSecret {
        let mut cache = self.scram_cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((p, s)) = cache.get(user) {
            if p == password {
                return s.clone();
            }
        }
        let iterations = u32::try_from(self.runtime().cfg.scram_iterations.max(1)).unwrap_or(4096);
        let salt: [u8; 16] = rand::random();
        let secret = pgbouncer_protocol::auth::scram::ScramSecret::from_password(
            password.as_bytes(),
            &salt,
            iterations,
        );
        cache.insert(user.to_string(), (password.to_string(), secret.clone()));
        secret
    }

    /// Registers what to do with the log destinations after a reload.
    pub fn set_log_reopen(&self, f: LogReopen) {
        *self.log_reopen.lock().unwrap_or_else(|e| e.into_inner()) = Some(f);
    }

    /// Whether SUSPEND is in force.
    pub fn is_suspended(&self) -> bool {
        self.suspended.load(Ordering::Acquire)
    }

    /// SUSPEND (`true`) or its end (`false`).
    pub fn set_suspended(&self, on: bool) {
        self.suspended.store(on, Ordering::Release);
        if !on {
            self.flush.resume();
            self.resumed.notify_waiters();
        }
    }

    /// Waits while SUSPEND is in force (returns at once otherwise).
    pub async fn wait_resumed(&self) {
        while self.is_suspended() {
            let notified = self.resumed.notified();
            if !self.is_suspended() {
                break;
            }
            notified.await;
        }
    }

    /// pool-core's clock.
    pub fn now(&self) -> Instant {
        self.now_at(std::time::Instant::now())
    }

    /// pool-core's clock at `wall`, a reading the caller took during the same wake-up
    /// (a clock read costs about as much as a small event). The one conversion from the
    /// wall clock, so that every event sees the same clock.
    pub fn now_at(&self, wall: std::time::Instant) -> Instant {
        let since = wall.saturating_duration_since(self.epoch.into_std());
        Instant::from_micros(since.as_micros() as u64)
    }

    /// The wall clock at pool-core's `at` (for a timer).
    pub fn wall_at(&self, at: Instant) -> tokio::time::Instant {
        self.epoch + std::time::Duration::from_micros(at.as_micros())
    }

    /// A slot for a client about to authenticate, if `max_client_conn` leaves room for
    /// it beside the clients pool-core counts (PgBouncer counts a client from its
    /// startup packet on). Freed when dropped.
    pub(crate) fn login_slot(&self) -> Option<LoginSlot> {
        let core = self.lock();
        let max = core.pooler.config().max_client_conn;
        let logging_in = self.logins.load(Ordering::Relaxed);
        if max > 0 && logging_in.saturating_add(core.pooler.client_count()) >= max {
            return None;
        }
        self.logins.fetch_add(1, Ordering::Relaxed);
        Some(LoginSlot(self.logins.clone()))
    }

    /// `max_prepared_statements` in force now.
    pub fn max_prepared_statements(&self) -> usize {
        self.max_prepared.load(Ordering::Relaxed)
    }

    /// Whether a shutdown has begun (new logins are refused, except to the console).
    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Clients authenticating now.
    pub fn logins_in_progress(&self) -> u32 {
        self.logins.load(Ordering::Relaxed)
    }

    /// A fresh client id.
    pub fn next_client_id(&self) -> ClientId {
        ClientId(self.next_client.fetch_add(1, Ordering::Relaxed))
    }

    /// Locks the core.
    pub fn lock(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a session mailbox.
    pub fn register(&self, client: ClientId) -> Arc<Mailbox> {
        let mailbox = Arc::new(Mailbox::default());
        self.lock().sessions.insert(client, mailbox.clone());
        mailbox
    }

    /// Removes a session mailbox and tells pool-core the client is gone.
    pub fn client_gone(self: &Arc<Self>, client: ClientId) {
        let mut core = self.lock();
        if let Some(mailbox) = core.sessions.remove(&client) {
            // A server mailed to us after we stopped listening is clean: take it back.
            for msg in mailbox.drain() {
                if let SessionMsg::Link(conn) = msg {
                    self.take_back(&mut core, client, conn);
                }
            }
        }
        core.client_info.remove(&client);
        self.handle_locked(&mut core, Event::ClientClosed { client }, None);
    }

    /// A server linked to a client that is already gone is still clean: it goes back to
    /// the pool (pool-core is told the client released it).
    fn take_back(&self, core: &mut Core, client: ClientId, conn: Box<ServerConn>) {
        let now = self.now();
        let event = Event::ClientReleasedServer {
            client,
            reusable: true,
            usage: Default::default(),
        };
        Self::feed(core, now, event, Some(conn));
    }

    /// Feeds pool-core an event, with the server connection it hands over if any; a
    /// connection pool-core gives back (a server it no longer knows, or one it held for
    /// a server the event says is gone) is closed.
    fn feed(core: &mut Core, now: Instant, event: Event, conn: Option<Box<ServerConn>>) {
        if let Some(conn) = core.pooler.handle(now, event, conn) {
            conn.terminate();
        }
    }

    /// [`Shared::feed`], then the resulting actions dispatched; as `handle`, a server
    /// linked to `me` at once is returned.
    fn hand_in(
        self: &Arc<Self>,
        core: &mut Core,
        event: Event,
        conn: Option<Box<ServerConn>>,
        me: Option<ClientId>,
        now: Instant,
    ) -> Option<Box<ServerConn>> {
        Self::feed(core, now, event, conn);
        let mine = self.drain(core, me);
        self.rearm(core);
        mine
    }

    /// Feeds an event to pool-core and dispatches the resulting actions. If `me` gets a
    /// server linked at once, it is returned instead of being mailed.
    pub fn handle(self: &Arc<Self>, event: Event, me: Option<ClientId>) -> Option<Box<ServerConn>> {
        let mut core = self.lock();
        self.handle_locked(&mut core, event, me)
    }

    /// `handle` at `now`, a clock reading the caller already has.
    pub fn handle_at(
        self: &Arc<Self>,
        event: Event,
        me: Option<ClientId>,
        now: Instant,
    ) -> Option<Box<ServerConn>> {
        let mut core = self.lock();
        self.handle_locked_at(&mut core, event, me, now)
    }

    /// `handle` with the lock already held.
    pub fn handle_locked(
        self: &Arc<Self>,
        core: &mut Core,
        event: Event,
        me: Option<ClientId>,
    ) -> Option<Box<ServerConn>> {
        let now = self.now();
        self.handle_locked_at(core, event, me, now)
    }

    fn handle_locked_at(
        self: &Arc<Self>,
        core: &mut Core,
        event: Event,
        me: Option<ClientId>,
        now: Instant,
    ) -> Option<Box<ServerConn>> {
        self.hand_in(core, event, None, me, now)
    }

    fn rearm(&self, core: &Core) {
        if let Some(at) = core.pooler.poll_timeout() {
            if at.as_micros() < self.armed.load(Ordering::Relaxed) {
                self.timer.notify_one();
            }
        }
    }

    fn drain(self: &Arc<Self>, core: &mut Core, me: Option<ClientId>) -> Option<Box<ServerConn>> {
        let mut mine = None;
        while let Some((action, conn)) = core.pooler.poll_action() {
            self.dispatch(core, action, conn, me, &mut mine);
        }
        mine
    }

    fn dispatch(
        self: &Arc<Self>,
        core: &mut Core,
        action: Action,
        conn: Option<Box<ServerConn>>,
        me: Option<ClientId>,
        mine: &mut Option<Box<ServerConn>>,
    ) {
        match action {
            Action::ConnectServer { server, pool } => self.spawn_connect(core, server, pool),
            Action::Link { client, server } => {
                let Some(conn) = conn else {
                    tracing::error!(%server, %client, "linked server has no connection");
                    let now = self.now();
                    Self::feed(core, now, Event::ServerClosed { server }, None);
                    return;
                };
                if Some(client) == me {
                    *mine = Some(conn);
                    return;
                }
                match core.sessions.get(&client) {
                    Some(mailbox) => mailbox.send(SessionMsg::Link(conn)),
                    None => {
                        // The session is gone but pool-core has not heard yet: take the
                        // server back (it is clean) and forget the client.
                        self.take_back(core, client, conn);
                        let now = self.now();
                        Self::feed(core, now, Event::ClientClosed { client }, None);
                    }
                }
            }
            Action::ResetServer { server } => {
                let q = self.runtime().server_reset_query.clone();
                self.spawn_internal_query(core, server, conn, q);
            }
            Action::CheckServer { server } => {
                let q = self.runtime().server_check_query.clone();
                self.spawn_internal_query(core, server, conn, q);
            }
            Action::CloseServer { server, reason } => {
                core.cancel_targets.remove(&server);
                core.server_info.remove(&server);
                // Held by pool-core when idle; a server in use is closed by its session.
                if let Some(conn) = conn {
                    conn.close(reason.message());
                }
            }
            Action::DisconnectClient { client, reason } => {
                if let Some(mailbox) = core.sessions.get(&client) {
                    mailbox.send(SessionMsg::Disconnect(reason));
                }
            }
            Action::SendCancel { client, server } => {
                let Some((host, port, pid, key)) = core.cancel_targets.get(&server).cloned() else {
                    let now = self.now();
                    Self::feed(core, now, Event::CancelFinished { server }, None);
                    return;
                };
                {
                    tracing::debug!(%client, %server, pid, "forwarding cancel request");
                    // cancel_wait_timeout bounds the whole forward (connect included).
                    let limit = self.runtime().cfg.cancel_wait_timeout;
                    let shared = self.clone();
                    let task = tokio::spawn(async move {
                        let send = send_cancel(&host, port, pid, key);
                        let sent = if limit.is_zero() {
                            send.await
                        } else {
                            tokio::time::timeout(limit, send).await.unwrap_or_else(|_| {
                                Err(std::io::Error::new(
                                    std::io::ErrorKind::TimedOut,
                                    "cancel_wait_timeout",
                                ))
                            })
                        };
                        if let Err(e) = sent {
                            tracing::warn!("S-{}: cancel request not delivered: {e}", server.0);
                        }
                        // Done: a server its client released meanwhile may be reused.
                        shared.handle(Event::CancelFinished { server }, None);
                    });
                    core.cancel_tasks.push(task);
                }
            }
            Action::CancelWait { client } => {
                if let Some(mailbox) = core.sessions.get(&client) {
                    mailbox.send(SessionMsg::CancelWait);
                }
            }
            Action::NotifyWaiting { client } => {
                if let Some(mailbox) = core.sessions.get(&client) {
                    mailbox.send(SessionMsg::WaitNotice);
                }
            }
            Action::CloseAfterTransaction { client, .. } => {
                if let Some(mailbox) = core.sessions.get(&client) {
                    mailbox.send(SessionMsg::FastClose);
                }
            }
            Action::PauseDone { database } => {
                let waiters = std::mem::take(&mut core.pause_waiters);
                for (db, tx) in waiters {
                    if db.is_none() || db == database {
                        let _ = tx.send(());
                    } else {
                        core.pause_waiters.push((db, tx));
                    }
                }
            }
            Action::PoolFreed { pool, idle, auto } => {
                // What is kept per pool goes with it (PgBouncer logs at this point too).
                core.welcome.remove(&pool);
                self.auth_conns.forget_database(&pool.database);
                if auto {
                    tracing::info!(
                        "freeing idle auto-database pool: db={} user={}",
                        pool.database,
                        pool.user
                    );
                    let database = pool.database.to_string();
                    if !core
                        .pooler
                        .pools(self.now())
                        .any(|p| *p.key.database == *database)
                    {
                        core.autodbs.remove(&database);
                    }
                } else {
                    tracing::info!(
                        "cleaning up idle pool for user {} on db {} because: pool idle timeout (age= {}s)",
                        pool.user,
                        pool.database,
                        idle.as_secs()
                    );
                }
            }
            Action::OpenReplicationServer { client, server } => match core.sessions.get(&client) {
                Some(mailbox) => mailbox.send(SessionMsg::ReplicationServer(server)),
                None => {
                    let now = self.now();
                    Self::feed(core, now, Event::ClientClosed { client }, None);
                }
            },
            _ => tracing::warn!(?action, "unhandled pool action"),
        }
    }

    /// A client's cancel request: routes it and returns once the cancels it started are
    /// done (PostgreSQL closed their connections, or they failed or timed out), so the
    /// client's cancel connection closes only then, as PostgreSQL's own would.
    pub async fn forward_cancel(self: &Arc<Self>, key: u64) {
        let tasks = {
            let mut core = self.lock();
            core.cancel_tasks.clear();
            self.handle_locked(&mut core, Event::CancelRequested { key }, None);
            std::mem::take(&mut core.cancel_tasks)
        };
        for t in tasks {
            let _ = t.await;
        }
    }

    /// Registers a waiter for PAUSE completion.
    pub fn wait_pause(
        &self,
        core: &mut Core,
        database: Option<String>,
    ) -> tokio::sync::oneshot::Receiver<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        core.pause_waiters.push((database, tx));
        rx
    }

    /// Builds where and how to log in for `pool`.
    pub fn server_target(&self, core: &Core, pool: &PoolKey) -> Option<ServerTarget> {
        let rt = self.runtime();
        let db = rt.database(&pool.database)?;
        let forced = db.user.as_deref() == Some(&*pool.user);
        let credential = match (&db.password, forced) {
            (Some(p), true) => ServerCredential::Plain(p.clone()),
            _ => match rt
                .secret(&pool.user)
                .or_else(|| core.dynamic_secrets.get(&*pool.user))
            {
                Some(Secret::Plain(p)) => ServerCredential::Plain(p.clone()),
                Some(Secret::Md5(h)) => ServerCredential::Md5(h.clone()),
                Some(Secret::Scram(_)) => match core.scram_keys.get(&*pool.user) {
                    Some(k) => ServerCredential::ScramKeys {
                        client_key: k.client_key,
                        server_key: k.server_key,
                        salt: k.salt.clone(),
                        iterations: k.iterations,
                    },
                    None => ServerCredential::ScramSecretOnly,
                },
                None => ServerCredential::None,
            },
        };
        // Host lists: `load_balance_hosts = round-robin` (default) moves to the next host
        // for every new connection; `disable` stays on one until a connect fails.
        let (host, host_index) = if db.hosts.is_empty() {
            (rt.unix_socket_dir.clone(), None)
        } else {
            let mut cursors = self.host_cursor.lock().unwrap_or_else(|e| e.into_inner());
            let cursor = cursors.entry(db.name.clone()).or_insert(0);
            let index = *cursor % db.hosts.len();
            if db.load_balance_hosts.as_deref() != Some("disable") {
                *cursor = cursor.wrapping_add(1);
            }
            (db.hosts[index].clone(), Some((index, db.hosts.len())))
        };
        let mut startup_params = Vec::new();
        for (k, v) in [
            ("client_encoding", &db.client_encoding),
            ("datestyle", &db.datestyle),
            ("timezone", &db.timezone),
            ("application_name", &db.application_name),
        ] {
            if let Some(v) = v {
                startup_params.push((k.to_string(), v.clone()));
            }
        }
        Some(ServerTarget {
            host,
            port: db.port,
            dbname: db.server_dbname(&pool.database),
            user: pool.user.to_string(),
            credential,
            startup_params,
            connect_query: db.connect_query.clone(),
            max_packet_size: rt.max_packet_size,
            tls: rt.tls.clone(),
            pool_label: format!("{}/{}", pool.database, pool.user),
            host_index,
            log_connections: rt.log_connections,
            log_disconnections: rt.log_disconnections,
        })
    }

    fn spawn_connect(self: &Arc<Self>, core: &mut Core, server: ServerId, pool: PoolKey) {
        let Some(target) = self.server_target(core, &pool) else {
            let now = self.now();
            let event = Event::ServerConnectFailed {
                server,
                code: "08P01".into(),
                message: format!("no such database: {}", pool.database),
            };
            Self::feed(core, now, event, None);
            return;
        };
        let timeout = core.pooler.config().server_connect_timeout;
        let shared = self.clone();
        let nonce: [u8; 18] = rand::random();
        tokio::spawn(async move {
            let result = server::connect(server, &target, timeout, nonce).await;
            match &result {
                Ok(conn) if !conn.stream.tls_info().is_empty() => {
                    shared.counters.tls_handshake(true, true)
                }
                Err(e) if e.message.starts_with("TLS handshake error") => {
                    shared.counters.tls_handshake(true, false)
                }
                _ => {}
            }
            let mut core = shared.lock();
            let event = match result {
                Ok(conn) => {
                    if core.pooler.server_state(server).is_none() {
                        conn.terminate(); // given up on meanwhile (connect timeout)
                        return;
                    }
                    core.cancel_targets.insert(
                        server,
                        (
                            target.host.clone(),
                            target.port,
                            conn.backend_key.0,
                            conn.backend_key.1,
                        ),
                    );
                    if let std::collections::hash_map::Entry::Vacant(e) = core.welcome.entry(pool) {
                        e.insert(Arc::new(Welcome::new(
                            conn.params.clone(),
                            &shared.runtime(),
                        )));
                    }
                    let (addr, port) = conn.stream.peer();
                    let (local_addr, local_port) = conn.stream.local();
                    let local_addr = local_addr.into();
                    core.server_info.insert(
                        server,
                        pgbouncer_admin::ConnInfo {
                            addr: addr.into(),
                            port,
                            local_addr,
                            local_port,
                            remote_pid: conn.backend_key.0,
                            tls: conn.stream.tls_info().into(),
                            application_name: conn.param("application_name").unwrap_or("").into(),
                            ..Default::default()
                        },
                    );
                    let now = shared.now();
                    let event = Event::ServerConnected { server };
                    shared.hand_in(&mut core, event, Some(Box::new(conn)), None, now);
                    return;
                }
                Err(e) => {
                    // `load_balance_hosts = disable`: the next attempt tries the host after
                    // the one that failed. Moved past it once, however many attempts
                    // failed on it (parallel logins would otherwise step over the next
                    // host, or come back to the bad one).
                    if let Some((index, count)) = target.host_index {
                        if let Some(c) = shared
                            .host_cursor
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .get_mut(&*pool.database)
                        {
                            if *c % count == index {
                                *c = index + 1;
                            }
                        }
                    }
                    if e.unreachable {
                        Event::ServerUnreachable {
                            server,
                            message: e.message,
                        }
                    } else {
                        Event::ServerConnectFailed {
                            server,
                            code: e.code,
                            message: e.message,
                        }
                    }
                }
            };
            shared.handle_locked(&mut core, event, None);
        });
    }

    fn spawn_internal_query(
        self: &Arc<Self>,
        core: &mut Core,
        server: ServerId,
        conn: Option<Box<ServerConn>>,
        sql: String,
    ) {
        let Some(mut conn) = conn else {
            let now = self.now();
            Self::feed(
                core,
                now,
                Event::ServerResetDone { server, ok: false },
                None,
            );
            return;
        };
        let shared = self.clone();
        tokio::spawn(async move {
            let ok = if conn.stream.has_unexpected_input() {
                false
            } else {
                match conn.run_internal(&sql).await {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::warn!(server = %conn.id, "reset/check query failed: {e}");
                        false
                    }
                }
            };
            let mut core = shared.lock();
            let kept = if ok {
                Some(conn)
            } else {
                conn.close(pgbouncer_pool_core::ServerCloseReason::ResetFailed.message());
                None
            };
            let now = shared.now();
            shared.hand_in(
                &mut core,
                Event::ServerResetDone { server, ok },
                kept,
                None,
                now,
            );
        });
    }

    /// Hands a server a session cannot use back to pool-core as unusable, closing it
    /// with `reason` (PgBouncer's `closing because:` text).
    pub fn drop_server(self: &Arc<Self>, client: ClientId, conn: Box<ServerConn>, reason: &str) {
        conn.close(reason);
        self.handle(
            Event::ClientReleasedServer {
                client,
                reusable: false,
                usage: Default::default(),
            },
            None,
        );
    }

    /// Returns a clean server to the pool (after a transaction in transaction mode), at
    /// `now`.
    pub fn release(
        self: &Arc<Self>,
        client: ClientId,
        conn: Box<ServerConn>,
        usage: pgbouncer_pool_core::Usage,
        now: Instant,
    ) -> Option<Box<ServerConn>> {
        let mut core = self.lock();
        let event = Event::ClientReleasedServer {
            client,
            reusable: true,
            usage,
        };
        // A server pool-core forgot meanwhile (closed while in use) is closed by feed.
        self.hand_in(&mut core, event, Some(conn), Some(client), now)
    }

    /// Drives pool-core's timers until shutdown.
    pub async fn run_timers(self: Arc<Self>) {
        let mut stop = self.shutdown.subscribe();
        loop {
            let wake = self.lock().pooler.poll_timeout();
            self.armed
                .store(wake.map_or(u64::MAX, |w| w.as_micros()), Ordering::Relaxed);
            let sleep = async {
                match wake {
                    Some(at) => {
                        let deadline = self.wall_at(at);
                        tokio::time::sleep_until(deadline).await;
                        true
                    }
                    None => std::future::pending().await,
                }
            };
            let fire = tokio::select! {
                f = sleep => f,
                () = self.timer.notified() => false,
                _ = stop.changed() => return,
            };
            if fire {
                let mut core = self.lock();
                let now = self.now();
                core.pooler.handle_timeout(now);
                let _ = self.drain(&mut core, None);
            }
        }
    }
}

/// Sends a CancelRequest to a server on a new connection. In clear text, as PgBouncer
/// and libpq send it: PostgreSQL reads a cancel request before any TLS negotiation
/// (and before pg_hba.conf), and its key is only good for that one backend.
pub async fn send_cancel(host: &str, port: u16, pid: i32, key: i32) -> std::io::Result<()> {
    let mut s = server::open_socket(host, port).await?;
    let mut buf = bytes::BytesMut::new();
    pgbouncer_protocol::StartupPacket::CancelRequest(pgbouncer_protocol::CancelRequest {
        process_id: pid,
        secret_key: key,
    })
    .encode(&mut buf);
    s.write_all(&buf).await?;
    // PostgreSQL closes the connection once it has acted on the request; until then
    // the cancel is still in flight (and cancel_wait_timeout still bounds it).
    let mut sink = bytes::BytesMut::with_capacity(64);
    while s.read_buf(&mut sink).await? > 0 {
        sink.clear();
    }
    Ok(())
}
