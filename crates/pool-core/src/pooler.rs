//! The `Pooler`: every pool, client and server, driven by events and time
//! (mirrors objects.c: `find_server`, `release_server`, `activate_client`, and
//! `launch_new_connection`).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::config::{Config, PoolMode};
use crate::entities::{
    Client, ClientState, Database, LoginFailure, Pool, Server, ServerState, User,
};
use crate::event::{Action, Event};
use crate::ids::{ClientId, PoolKey, ServerId};
use crate::reason::{DisconnectReason, ServerCloseReason};
use crate::stats::elapsed_us;
use crate::time::{deadline, earliest, Instant};

/// Most clients at once, per stats period.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ClientPeak {
    pub(crate) current: u32,
    pub(crate) last: u32,
}

/// PgBouncer's pooling semantics as a sans-IO state machine.
///
/// Contract: after every call to [`handle`](Self::handle) or
/// [`handle_timeout`](Self::handle_timeout), drain [`poll_action`](Self::poll_action)
/// until it returns `None`, then read [`poll_timeout`](Self::poll_timeout) and call
/// `handle_timeout` no later than that. Time never goes backwards; an early or extra
/// `handle_timeout` does nothing. Unknown ids are a caller bug: they are logged and
/// ignored, never a panic.
#[derive(Debug)]
pub struct Pooler {
    pub(crate) config: Config,
    pub(crate) pools: Vec<Pool>,
    pub(crate) pool_index: HashMap<PoolKey, usize>,
    pub(crate) clients: IdMap<ClientId, Client>,
    /// Console clients (no pool, never a server): counted in their database's and login
    /// user's client counts, as PgBouncer counts admin connections.
    pub(crate) console_clients: IdMap<ClientId, (Arc<str>, Arc<str>)>,
    pub(crate) servers: IdMap<ServerId, Server>,
    pub(crate) cancel_keys: IdMap<u64, ClientId>,
    pub(crate) databases: HashMap<Arc<str>, Database>,
    pub(crate) users: HashMap<Arc<str>, User>,
    pub(crate) client_count: u32,
    /// Most clients at once (pool clients; console clients are not counted), in the
    /// current and the last complete stats period.
    pub(crate) client_peak: ClientPeak,
    /// Logins refused because `max_client_conn` was reached, since start.
    pub(crate) max_client_conn_refusals: u64,
    /// The running totals of freed pools, so sums over all pools never go backwards.
    pub(crate) freed_totals: crate::stats::StatCounters,
    /// Where server ids come from: shared with the driver's client ids when it wants one
    /// id sequence for every socket, as PgBouncer numbers them ([`Pooler::with_ids`]).
    pub(crate) ids: std::sync::Arc<std::sync::atomic::AtomicU32>,
    pub(crate) actions: VecDeque<Action>,
    pub(crate) next_wakeup: Option<Instant>,
    pub(crate) next_stats_roll: Option<Instant>,
    pub(crate) global_pause: bool,
    pub(crate) global_pause_pending: bool,
    /// SHUTDOWN WAIT_FOR_SERVERS: no client gets a server any more.
    pub(crate) shutting_down: bool,
    /// Some database is paused (so `pool_paused` need not look it up when none is).
    pub(crate) some_db_paused: bool,
    /// Some `max_db_connections` / `max_user_connections` limit is set (so pools may be
    /// blocked by other pools); derived from the config.
    pub(crate) cross_pool_limits: bool,
    pub(crate) now: Instant,
}

/// How many of the most recent idle servers `take_idle` looks at for one of the
/// client's locality.
const LOCALITY_SCAN: usize = 8;

/// How many of the first waiting clients `prefer_local_waiter` looks at.
const WAITER_SCAN: usize = 8;

/// How many times the first waiting client may be passed over for locality. With two
/// workers a passed-over head is usually served by its own worker's next release long
/// before the limit. Measured at `pgbench -c 100` on two workers: with 2, 0.22 server
/// moves between workers per transaction (each two epoll_ctl calls and often a
/// wake-up of the other thread); with 8, 0.12, and 4 % more transactions per second.
pub(crate) const MAX_BYPASS: u8 = 8;
impl Pooler {
    /// A pooler with no clients, servers or pools yet.
    pub fn new(config: Config) -> Self {
        // Forced-user databases with min_pool_size are filled without a client: wake at
        // once to create their pools.
        let wake = has_forced_min_pools(&config).then_some(Instant::ZERO);
        Pooler {
            cross_pool_limits: cross_pool_limits(&config),
            config,
            pools: Vec::new(),
            pool_index: HashMap::new(),
            clients: IdMap::default(),
            console_clients: IdMap::default(),
            servers: IdMap::default(),
            cancel_keys: IdMap::default(),
            databases: HashMap::new(),
            users: HashMap::new(),
            client_count: 0,
            client_peak: ClientPeak::default(),
            max_client_conn_refusals: 0,
            freed_totals: crate::stats::StatCounters::default(),
            ids: std::sync::Arc::new(std::sync::atomic::AtomicU32::new(1)),
            actions: VecDeque::new(),
            next_wakeup: wake,
            next_stats_roll: None,
            global_pause: false,
            global_pause_pending: false,
            shutting_down: false,
            some_db_paused: false,
            now: Instant::ZERO,
        }
    }

    /// A pooler whose server ids come from `ids`, a counter the driver also takes its
    /// client ids from: then every socket, client or server, has its own number in
    /// creation order (PgBouncer's SHOW SOCKETS ids).
    pub fn with_ids(config: Config, ids: std::sync::Arc<std::sync::atomic::AtomicU32>) -> Self {
        Pooler {
            ids,
            ..Pooler::new(config)
        }
    }

    /// A console client logged in to `database` as `login_user`: counted against that
    /// database's `max_db_client_connections` and the user's
    /// `max_user_client_connections` unless `exempt` (PgBouncer exempts admin users on
    /// the console, who still count). Leaves with `Event::ClientClosed`.
    pub fn console_client_connected(
        &mut self,
        client: ClientId,
        database: &str,
        login_user: &str,
        exempt: bool,
    ) -> Result<(), DisconnectReason> {
        if !exempt {
            let db_max = self.config.max_db_client_connections(database);
            if db_max > 0 && self.database_mut(database).clients >= db_max {
                return Err(DisconnectReason::MaxDbClientConnections);
            }
            let user_max = self.config.max_user_client_connections(login_user);
            if user_max > 0 && self.user_mut(login_user).clients >= user_max {
                return Err(DisconnectReason::MaxUserClientConnections);
            }
        }
        self.database_mut(database).clients += 1;
        self.user_mut(login_user).clients += 1;
        self.console_clients
            .insert(client, (Arc::from(database), Arc::from(login_user)));
        Ok(())
    }

    /// Tells where the embedder serves `client` (a worker thread, say): when several
    /// idle servers are free, the client gets one that last served a client of the
    /// same locality, so a thread-per-core embedder rarely moves a socket between
    /// threads. Limits, queues and stats do not change. Unknown clients are ignored.
    pub fn set_client_locality(&mut self, client: ClientId, locality: u16) {
        if let Some(c) = self.clients.get_mut(&client) {
            c.locality = locality;
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Takes one event. Can queue any [`Action`].
    pub fn handle(&mut self, now: Instant, event: Event) {
        self.now = self.now.max(now);
        let now = self.now;
        if self.next_stats_roll.is_none() {
            self.next_stats_roll = Some(now + self.config.stats_period);
            self.note(self.next_stats_roll);
        }
        let pausing = matches!(
            event,
            Event::Pause { .. }
                | Event::Resume { .. }
                | Event::Kill { .. }
                | Event::Reload(_)
                | Event::ShutdownWaitForServers
        );
        match event {
            Event::ClientConnected {
                client,
                pool,
                login_user,
            } => self.client_connected(now, client, pool, login_user),
            Event::ClientLoggedIn { client, cancel_key } => {
                self.client_logged_in(now, client, cancel_key)
            }
            Event::ClientWantsServer { client } => self.client_wants_server(now, client, true),
            Event::ClientWantsWelcome { client } => self.client_wants_server(now, client, false),
            Event::ReplicationServerWanted { client } => {
                self.replication_server_wanted(now, client)
            }
            Event::ClientReleasedServer {
                client,
                reusable,
                usage,
            } => self.client_released_server(now, client, reusable, &usage),
            Event::ClientUsage { client, usage } => {
                if let Some(c) = self.clients.get(&client) {
                    self.pools[c.pool].stats.add_usage(&usage);
                }
            }
            Event::ClientClosed { client } => self.client_closed(now, client),
            Event::ServerConnected { server } => self.server_connected(now, server),
            Event::ServerConnectFailed {
                server,
                code,
                message,
            } => self.server_connect_failed(now, server, code, message),
            Event::ServerUnreachable { server, message } => {
                self.server_unreachable(now, server, message)
            }
            Event::ServerResetDone { server, ok } => self.server_reset_done(now, server, ok),
            Event::ServerClosed { server } => self.server_closed(now, server),
            Event::CancelRequested { key } => self.cancel_requested(key),
            Event::CancelFinished { server } => self.cancel_finished(now, server),
            Event::Pause { database } => self.pause(now, database),
            Event::ShutdownWaitForServers => self.shutdown_wait_for_servers(now),
            Event::Resume { database } => self.resume(now, database),
            Event::Disable { database } => self.database_mut(&database).disabled = true,
            Event::Enable { database } => self.database_mut(&database).disabled = false,
            Event::Kill { database } => self.kill(now, database),
            Event::KillClient { client } => {
                self.disconnect_client(now, client, DisconnectReason::AdminForcedDisconnect)
            }
            Event::Reconnect { database } => self.reconnect(now, database),
            Event::Reload(config) => self.reload(now, *config),
        }
        if pausing {
            self.some_db_paused = self.databases.values().any(|d| d.paused);
            self.cross_pool_limits = cross_pool_limits(&self.config);
        }
        self.activate_blocked(now);
    }

    /// Pools held back by `max_db_connections` / `max_user_connections` may proceed once
    /// another pool frees a slot or has an idle server to evict.
    pub(crate) fn activate_blocked(&mut self, now: Instant) {
        if !self.cross_pool_limits {
            return;
        }
        for pool in 0..self.pools.len() {
            if self.pools[pool].counts.cl_waiting > 0 {
                self.activate(now, pool);
            }
        }
    }

    /// The next queued action, if any.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next; `None`: nothing is due.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_wakeup
    }

    /// The effective pool mode of `client`'s pool.
    pub fn client_pool_mode(&self, client: ClientId) -> Option<PoolMode> {
        self.clients
            .get(&client)
            .map(|c| self.pools[c.pool].settings.pool_mode)
    }

    /// The key for `database` and `user`. When that pool exists, the key shares its
    /// names, so that a caller minting a key per client does not allocate them each time.
    pub fn pool_key(&self, database: &str, user: &str) -> PoolKey {
        let probe = (database, user);
        match self
            .pool_index
            .get_key_value(&probe as &dyn crate::ids::PoolKeyRef)
        {
            Some((key, _)) => key.clone(),
            None => PoolKey::new(database, user),
        }
    }

    /// The pool `client` belongs to.
    pub fn client_pool(&self, client: ClientId) -> Option<&PoolKey> {
        self.clients.get(&client).map(|c| &self.pools[c.pool].key)
    }

    /// The pool `server` belongs to.
    pub fn server_pool(&self, server: ServerId) -> Option<&PoolKey> {
        self.servers.get(&server).map(|s| &self.pools[s.pool].key)
    }

    /// The state of `server`, if pool-core knows it.
    pub fn server_state(&self, server: ServerId) -> Option<crate::ServerState> {
        self.servers.get(&server).map(|s| s.state)
    }

    /// Whether `database` (or everything) is paused.
    pub fn is_paused(&self, database: Option<&str>) -> bool {
        self.global_pause
            || database.is_some_and(|d| self.databases.get(d).is_some_and(|d| d.paused))
    }

    /// Whether `database` is disabled.
    pub fn is_disabled(&self, database: &str) -> bool {
        self.databases.get(database).is_some_and(|d| d.disabled)
    }

    /// The running totals (SHOW STATS_TOTALS columns) of pools freed so far: add them to
    /// a sum over [`pools`](Self::pools) for process-wide totals that never go backwards.
    pub fn freed_totals(&self) -> &crate::stats::StatCounters {
        &self.freed_totals
    }

    /// Number of client connections known to the core.
    pub fn client_count(&self) -> u32 {
        self.client_count
    }

    /// Logins refused because `max_client_conn` was reached, since start.
    pub fn max_client_conn_refusals(&self) -> u64 {
        self.max_client_conn_refusals
    }

    /// Most pool clients connected at once over the last complete stats period (or
    /// over the current one, if it is larger or none has completed yet).
    pub fn peak_clients(&self) -> u32 {
        self.client_peak.current.max(self.client_peak.last)
    }

    // ---- servers ----

    /// Gives idle servers to waiting clients and opens servers where limits allow.
    /// PgBouncer: `activate_client` + `find_server` + `launch_new_connection`.
    pub(crate) fn activate(&mut self, now: Instant, pool: usize) {
        if self.pool_paused(pool) {
            return;
        }
        while let Some(&client) = self.pools[pool].waiting.front() {
            if self.clients.get(&client).is_some_and(|c| c.replication) {
                if !self.grant_replication(now, pool, client) {
                    break;
                }
                continue;
            }
            let client = self.prefer_local_waiter(pool, client);
            let locality = self.clients.get(&client).map_or(0, |c| c.locality);
            if let Some(server) = self.take_idle(now, pool, locality) {
                self.pools[pool].waiting.pop_front();
                self.link(now, client, server);
                continue;
            }
            let counts = self.pools[pool].counts;
            if counts.sv_login + counts.sv_tested >= counts.cl_waiting {
                break; // enough servers on their way
            }
            if !self.try_open_server(now, pool) {
                break;
            }
        }
    }

    /// Gives the replication client at the head of the queue a server of its own, if
    /// the pool has room or an idle normal server to close for it.
    fn grant_replication(&mut self, now: Instant, pool: usize, client: ClientId) -> bool {
        let p = &self.pools[pool];
        let size = p.settings.pool_size;
        if size > 0 && p.counts.servers() >= size {
            let evict = |s: &Server, _: &[Pool]| s.pool == pool && !s.replication;
            if !self.evict_idle(now, evict) {
                return false;
            }
        }
        self.pools[pool].waiting.pop_front();
        let server = self.mint_server(now, pool, true);
        self.link_as(
            now,
            client,
            server,
            Action::OpenReplicationServer { client, server },
        );
        true
    }

    /// The waiting client to serve next: `first` (the head of the queue), unless the
    /// idle server it would get last served another locality and one of the next few
    /// waiters is of that locality; then that waiter moves to the head. The head is
    /// passed over at most `MAX_BYPASS` times, so the queue stays nearly FIFO and nobody
    /// starves.
    fn prefer_local_waiter(&mut self, pool: usize, first: ClientId) -> ClientId {
        if self.config.server_round_robin {
            return first;
        }
        let p = &self.pools[pool];
        let Some(server) = p.idle.back().and_then(|id| self.servers.get(id)) else {
            return first;
        };
        let wanted = server.locality;
        let Some(head) = self.clients.get(&first) else {
            return first;
        };
        if head.locality == wanted || head.bypassed >= MAX_BYPASS {
            return first;
        }
        let found = p.waiting.iter().take(WAITER_SCAN).position(|id| {
            self.clients
                .get(id)
                .is_some_and(|c| c.locality == wanted && !c.replication)
        });
        let Some(i) = found else {
            return first;
        };
        let p = &mut self.pools[pool];
        let Some(chosen) = p.waiting.remove(i) else {
            return first;
        };
        p.waiting.push_front(chosen);
        if let Some(head) = self.clients.get_mut(&first) {
            head.bypassed += 1;
        }
        chosen
    }

    /// Pops an idle server ready for use. Servers due for a check are sent to
    /// `CheckServer` and skipped; expired ones are closed.
    pub(crate) fn take_idle(
        &mut self,
        now: Instant,
        pool: usize,
        locality: u16,
    ) -> Option<ServerId> {
        loop {
            let p = &mut self.pools[pool];
            let server = if self.config.server_round_robin {
                p.idle.pop_front()
            } else {
                // The most recently used idle server, preferring one of the client's
                // locality among the last few (`set_client_locality`): O(1), and plain
                // LIFO when everything shares one locality.
                let near =
                    p.idle.iter().rev().take(LOCALITY_SCAN).position(|id| {
                        self.servers.get(id).is_some_and(|s| s.locality == locality)
                    });
                match near {
                    Some(i) => p.idle.remove(p.idle.len() - 1 - i),
                    None => p.idle.pop_back(),
                }
            }?;
            let lifetime = p.settings.server_lifetime;
            let Some(s) = self.servers.get(&server) else {
                continue;
            };
            if s.state != ServerState::Idle {
                continue;
            }
            if !lifetime.is_zero() && now - s.connect_time >= lifetime {
                self.close_server(now, server, ServerCloseReason::LifetimeOver);
                continue;
            }
            if self.config.server_check_enabled
                && s.used
                && now - s.state_since >= self.config.server_check_delay
            {
                if let Some(s) = self.servers.get_mut(&server) {
                    s.checking = true;
                }
                self.set_server_state(now, server, ServerState::Tested);
                self.actions.push_back(Action::CheckServer { server });
                continue;
            }
            return Some(server);
        }
    }

    pub(crate) fn link(&mut self, now: Instant, client: ClientId, server: ServerId) {
        self.link_as(now, client, server, Action::Link { client, server });
    }

    /// Links `client` and `server` (both active, the wait counted), then orders
    /// `action` (a `Link`, or an `OpenReplicationServer` for a replication client).
    fn link_as(&mut self, now: Instant, client: ClientId, server: ServerId, action: Action) {
        let c = self
            .clients
            .get_mut(&client)
            .expect("waiting client exists");
        c.link = Some(server);
        let waited = elapsed_us(now, c.request_time);
        let pool = c.pool;
        let locality = c.locality;
        c.bypassed = 0;
        c.wait_notice = false;
        if c.state != ClientState::Active {
            self.set_client_state(client, ClientState::Active);
        }
        self.set_server_state(now, server, ServerState::Active);
        if let Some(s) = self.servers.get_mut(&server) {
            s.link = Some(client);
            s.locality = locality;
        }
        let stats = &mut self.pools[pool].stats;
        stats.totals.server_assignment_count += 1;
        stats.totals.wait_time += waited;
        stats.record_wait(waited);
        self.actions.push_back(action);
    }

    /// Whether a new server may be opened for `pool` now; opens it if so.
    fn try_open_server(&mut self, now: Instant, pool: usize) -> bool {
        let p = &self.pools[pool];
        if p.login_in_flight_alone() {
            return false;
        }
        if let Some(f) = p.login_failure.as_ref().filter(|f| f.until > now) {
            let until = f.until;
            self.note(Some(until));
            return false;
        }
        let total = p.counts.servers();
        let size = p.settings.pool_size;
        if size > 0 && total >= size {
            let reserve = p.settings.reserve_pool_size;
            let timeout = self.config.reserve_pool_timeout;
            if reserve == 0 || timeout.is_zero() || total >= size + reserve {
                return false;
            }
            let Some(head) = p.waiting.front().and_then(|c| self.clients.get(c)) else {
                return false;
            };
            if now - head.request_time < timeout {
                self.note(Some(head.request_time + timeout));
                return false;
            }
            tracing::info!(pool = %p.key, "taking connection from reserve_pool");
        }
        let key = p.key.clone();
        let db_max = self.config.max_db_connections(&key.database);
        if db_max > 0 && self.database_at(&key.database).servers >= db_max {
            let evict = |s: &Server, pools: &[Pool]| {
                s.pool != pool && pools[s.pool].key.database == key.database
            };
            if !self.evict_idle(now, evict) {
                return false;
            }
        }
        let user_max = self.config.max_user_connections(&key.user);
        if user_max > 0 && self.user_at(&key.user).servers >= user_max {
            let evict =
                |s: &Server, pools: &[Pool]| s.pool != pool && pools[s.pool].key.user == key.user;
            if !self.evict_idle(now, evict) {
                return false;
            }
        }
        self.open_server(now, pool);
        true
    }

    /// Closes the longest-idle server matching `filter`, to make room under a limit.
    fn evict_idle(&mut self, now: Instant, filter: impl Fn(&Server, &[Pool]) -> bool) -> bool {
        let victim = self
            .servers
            .iter()
            .filter(|(_, s)| s.state == ServerState::Idle && filter(s, &self.pools))
            .min_by_key(|(id, s)| (s.state_since, **id))
            .map(|(id, _)| *id);
        match victim {
            Some(server) => {
                self.close_server(now, server, ServerCloseReason::Evicted);
                true
            }
            None => false,
        }
    }

    pub(crate) fn open_server(&mut self, now: Instant, pool: usize) {
        let server = self.mint_server(now, pool, false);
        self.note(deadline(now, self.config.server_connect_timeout));
        let key = self.pools[pool].key.clone();
        self.actions
            .push_back(Action::ConnectServer { server, pool: key });
    }

    /// A new server of `pool`, logging in, counted everywhere.
    fn mint_server(&mut self, now: Instant, pool: usize, replication: bool) -> ServerId {
        let server = ServerId(
            self.ids
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                .max(1),
        );
        let key = self.pools[pool].key.clone();
        self.servers.insert(
            server,
            Server {
                pool,
                state: ServerState::Login,
                link: None,
                connect_time: now,
                state_since: now,
                close_needed: false,
                used: false,
                checking: false,
                cancels: 0,
                replication,
                locality: 0,
            },
        );
        let p = &mut self.pools[pool];
        p.counts.sv_login += 1;
        p.stats.current.peaks.observe(&p.counts);
        self.database_at(&key.database).servers += 1;
        self.user_at(&key.user).servers += 1;
        server
    }

    fn server_connected(&mut self, now: Instant, server: ServerId) {
        let Some(s) = self.servers.get_mut(&server) else {
            return unknown_server(server);
        };
        if s.state != ServerState::Login {
            return;
        }
        s.connect_time = now;
        let pool = s.pool;
        self.pools[pool].login_failure = None;
        self.pools[pool].proven = true;
        self.make_idle(now, server);
        // The fill to min_pool_size held back for this first login goes on now.
        self.ensure_min_pool(now, pool);
    }

    fn server_connect_failed(&mut self, now: Instant, server: ServerId, code: String, msg: String) {
        let Some(s) = self.servers.get(&server) else {
            return unknown_server(server);
        };
        let pool = s.pool;
        self.forget_server(server);
        self.login_failed(now, pool, msg.clone());
        // PgBouncer compat: 57P03 (cannot_connect_now) keeps the clients waiting.
        if code != "57P03" {
            let waiting: Vec<ClientId> = self.pools[pool].waiting.iter().copied().collect();
            for client in waiting {
                let reason = DisconnectReason::ServerLoginFailed {
                    code: code.clone(),
                    message: msg.clone(),
                };
                self.disconnect_client(now, client, reason);
            }
        }
        self.check_pause_done();
    }

    fn server_unreachable(&mut self, now: Instant, server: ServerId, message: String) {
        let Some(s) = self.servers.get(&server) else {
            return unknown_server(server);
        };
        let pool = s.pool;
        self.forget_server(server);
        self.login_failed(now, pool, message);
        self.check_pause_done();
    }

    /// A login of `pool` failed: new logins wait `server_login_retry`, and then run one
    /// at a time until one succeeds.
    pub(crate) fn login_failed(&mut self, now: Instant, pool: usize, message: String) {
        let until = now + self.config.server_login_retry;
        let p = &mut self.pools[pool];
        p.proven = false;
        p.login_failure = Some(LoginFailure { until, message });
        self.note(Some(until));
    }

    fn server_reset_done(&mut self, now: Instant, server: ServerId, ok: bool) {
        let Some(s) = self.servers.get(&server) else {
            return unknown_server(server);
        };
        if s.state != ServerState::Tested {
            return;
        }
        if ok {
            if let Some(s) = self.servers.get_mut(&server) {
                if s.checking {
                    s.used = false; // checked: good until a client uses it again
                }
                s.checking = false;
            }
            self.make_idle(now, server);
        } else {
            let pool = s.pool;
            self.close_server(now, server, ServerCloseReason::ResetFailed);
            self.activate(now, pool);
        }
    }

    fn server_closed(&mut self, now: Instant, server: ServerId) {
        let Some(s) = self.servers.get(&server) else {
            return;
        };
        let pool = s.pool;
        if let Some(client) = s.link {
            if let Some(c) = self.clients.get_mut(&client) {
                c.link = None;
            }
        }
        self.forget_server(server);
        self.check_pause_done();
        self.activate(now, pool);
        self.ensure_min_pool(now, pool);
    }

    /// Takes a server back from a client. PgBouncer: `release_server`.
    pub(crate) fn release_server(&mut self, now: Instant, server: ServerId, reusable: bool) {
        let Some(s) = self.servers.get_mut(&server) else {
            return unknown_server(server);
        };
        s.link = None;
        s.used = true;
        let pool = s.pool;
        if !reusable {
            self.close_server(now, server, ServerCloseReason::Dirty);
            self.activate(now, pool);
            return;
        }
        if s.cancels > 0 {
            // A cancel for the query that just ended may still reach the server: keep it
            // out of the pool until the cancel is done (PgBouncer: SV_BEING_CANCELED).
            self.set_server_state(now, server, ServerState::BeingCanceled);
            return;
        }
        self.settle_released(now, server);
    }

    /// A cancel forwarded to `server` is done; a server held for it goes on to the pool.
    pub(crate) fn cancel_finished(&mut self, now: Instant, server: ServerId) {
        let Some(s) = self.servers.get_mut(&server) else {
            return; // closed meanwhile
        };
        s.cancels = s.cancels.saturating_sub(1);
        if s.cancels == 0 && s.state == ServerState::BeingCanceled {
            self.settle_released(now, server);
        }
    }

    /// A released, reusable server: closed if it has to go, reset, or made idle.
    fn settle_released(&mut self, now: Instant, server: ServerId) {
        let Some(s) = self.servers.get(&server) else {
            return unknown_server(server);
        };
        let pool = s.pool;
        let paused = self.pool_paused(pool);
        let p = &self.pools[pool];
        let lifetime = p.settings.server_lifetime;
        let size = p.settings.pool_size;
        let reason = if s.close_needed || paused {
            Some(ServerCloseReason::CloseNeeded)
        } else if lifetime.is_zero() || now - s.connect_time >= lifetime {
            Some(ServerCloseReason::LifetimeOver)
        } else if size > 0
            && (p.counts.servers() > size + p.settings.reserve_pool_size
                || (p.counts.servers() > size && p.counts.cl_waiting == 0))
        {
            // Over the (reloaded) limit, or a reserve connection nobody waits for.
            Some(ServerCloseReason::PoolShrink)
        } else {
            None
        };
        if let Some(reason) = reason {
            self.close_server(now, server, reason);
            self.activate(now, pool);
            return;
        }
        let reset = self.config.server_reset_enabled
            && (p.settings.pool_mode == PoolMode::Session || self.config.server_reset_query_always);
        if reset {
            self.set_server_state(now, server, ServerState::Tested);
            self.actions.push_back(Action::ResetServer { server });
        } else {
            self.make_idle(now, server);
        }
    }

    /// Puts a server in the idle list and hands it out if someone waits.
    fn make_idle(&mut self, now: Instant, server: ServerId) {
        let Some(s) = self.servers.get(&server) else {
            return;
        };
        let pool = s.pool;
        if s.close_needed || self.pool_paused(pool) {
            self.close_server(now, server, ServerCloseReason::CloseNeeded);
            return;
        }
        self.set_server_state(now, server, ServerState::Idle);
        self.pools[pool].idle.push_back(server);
        self.note(deadline(now, self.config.server_idle_timeout));
        self.note(deadline(now, self.pools[pool].settings.server_lifetime));
        self.activate(now, pool);
    }

    /// Forgets a server and tells the driver to close it.
    pub(crate) fn close_server(
        &mut self,
        _now: Instant,
        server: ServerId,
        reason: ServerCloseReason,
    ) {
        if !self.servers.contains_key(&server) {
            return unknown_server(server);
        }
        let linked = self.servers.get(&server).and_then(|s| s.link);
        if let Some(client) = linked.and_then(|c| self.clients.get_mut(&c)) {
            client.link = None;
        }
        self.forget_server(server);
        self.actions
            .push_back(Action::CloseServer { server, reason });
        self.check_pause_done();
    }

    fn forget_server(&mut self, server: ServerId) {
        let Some(s) = self.servers.remove(&server) else {
            return;
        };
        let pool = s.pool;
        *self.pools[pool].counts.server_slot(s.state) -= 1;
        if s.state == ServerState::Idle {
            self.pools[pool].idle.retain(|i| *i != server);
        }
        let key = self.pools[pool].key.clone();
        self.database_at(&key.database).servers -= 1;
        self.user_at(&key.user).servers -= 1;
    }

    pub(crate) fn set_server_state(&mut self, now: Instant, server: ServerId, state: ServerState) {
        let s = self
            .servers
            .get_mut(&server)
            .expect("caller checked the server exists");
        let p = &mut self.pools[s.pool];
        *p.counts.server_slot(s.state) -= 1;
        *p.counts.server_slot(state) += 1;
        p.stats.current.peaks.observe(&p.counts);
        s.state = state;
        s.state_since = now;
    }

    /// Creates the pool of every forced-user database whose `min_pool_size` is above
    /// zero, and fills it, with no client needed (PgBouncer's janitor does this for
    /// such databases; others fill only once a client came).
    pub(crate) fn fill_forced_min_pools(&mut self, now: Instant) {
        let wanted: Vec<PoolKey> = self
            .config
            .databases
            .iter()
            .filter_map(|d| {
                let user = d.forced_user.as_deref()?;
                let min = d.min_pool_size.unwrap_or(self.config.min_pool_size);
                (min > 0).then(|| PoolKey::new(&d.name, user))
            })
            .collect();
        for key in wanted {
            let pool = self.pool_for(&key, now);
            self.ensure_min_pool(now, pool);
        }
    }

    /// Opens servers up to `min_pool_size` where PgBouncer would: for pools with clients
    /// or a forced user.
    pub(crate) fn ensure_min_pool(&mut self, now: Instant, pool: usize) {
        let p = &self.pools[pool];
        let min = p.settings.min_pool_size;
        if min == 0 || self.pool_paused(pool) {
            return;
        }
        let forced = self
            .config
            .database(&p.key.database)
            .is_some_and(|d| d.forced_user.is_some());
        if p.counts.clients() == 0 && !forced {
            return;
        }
        while self.pools[pool].counts.servers() < min {
            if self.pools[pool].login_in_flight_alone()
                || self.pools[pool]
                    .login_failure
                    .as_ref()
                    .is_some_and(|f| f.until > now)
            {
                return;
            }
            let key = self.pools[pool].key.clone();
            let db_max = self.config.max_db_connections(&key.database);
            if db_max > 0 && self.database_at(&key.database).servers >= db_max {
                return;
            }
            let user_max = self.config.max_user_connections(&key.user);
            if user_max > 0 && self.user_at(&key.user).servers >= user_max {
                return;
            }
            self.open_server(now, pool);
        }
    }

    // ---- pools, databases, users ----

    pub(crate) fn pool_for(&mut self, key: &PoolKey, now: Instant) -> usize {
        if let Some(&i) = self.pool_index.get(key) {
            return i;
        }
        let settings = self.config.pool_settings(&key.database, &key.user);
        self.pools.push(Pool::new(key.clone(), settings, now));
        let i = self.pools.len() - 1;
        self.pool_index.insert(key.clone(), i);
        i
    }

    pub(crate) fn pool_paused(&self, pool: usize) -> bool {
        self.global_pause
            || (self.some_db_paused && self.is_paused(Some(&self.pools[pool].key.database)))
    }

    pub(crate) fn database_mut(&mut self, name: &str) -> &mut Database {
        if !self.databases.contains_key(name) {
            self.databases.insert(name.into(), Database::default());
        }
        self.databases.get_mut(name).expect("inserted above")
    }

    pub(crate) fn user_mut(&mut self, name: &str) -> &mut User {
        if !self.users.contains_key(name) {
            self.users.insert(name.into(), User::default());
        }
        self.users.get_mut(name).expect("inserted above")
    }

    /// [`Pooler::database_mut`] for a name held as an `Arc` (a pool's key): one hash of
    /// the name (the entry API, with a clone of the `Arc`) instead of two, on every
    /// login, logout and server open and close.
    pub(crate) fn database_at(&mut self, name: &Arc<str>) -> &mut Database {
        self.databases.entry(Arc::clone(name)).or_default()
    }

    /// [`Pooler::user_mut`] for a name held as an `Arc`, as [`Pooler::database_at`].
    pub(crate) fn user_at(&mut self, name: &Arc<str>) -> &mut User {
        self.users.entry(Arc::clone(name)).or_default()
    }

    /// Moves the next wake-up earlier if `at` is earlier.
    pub(crate) fn note(&mut self, at: Option<Instant>) {
        self.next_wakeup = earliest(self.next_wakeup, at);
    }
}

/// Whether any limit spans pools (`max_db_connections`, `max_user_connections`).
fn cross_pool_limits(config: &Config) -> bool {
    config.max_db_connections > 0
        || config.max_user_connections > 0
        || config
            .databases
            .iter()
            .any(|d| d.max_db_connections.unwrap_or(0) > 0)
        || config
            .users
            .iter()
            .any(|u| u.max_user_connections.unwrap_or(0) > 0)
}

/// A map keyed by an id that pool-core or its caller minted (sequential numbers, or
/// random cancel keys), never by client-chosen data, so hashing needs no protection
/// against collisions crafted on purpose: see [`IdHasher`].
pub type IdMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<IdHasher>>;

/// A fast hasher for integer ids: one multiply (Fibonacci hashing) per integer written.
/// SipHash, the std default, costs far more and protects against attacker-chosen keys,
/// which ids are not.
#[derive(Debug, Default, Clone, Copy)]
pub struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
}

pub(crate) fn unknown_client(client: ClientId) {
    tracing::debug!(%client, "event for an unknown (already gone) client ignored");
}

fn unknown_server(server: ServerId) {
    tracing::debug!(%server, "event for an unknown (already gone) server ignored");
}

/// Whether some forced-user database wants servers without clients (`min_pool_size`).
fn has_forced_min_pools(config: &Config) -> bool {
    config
        .databases
        .iter()
        .any(|d| d.forced_user.is_some() && d.min_pool_size.unwrap_or(config.min_pool_size) > 0)
}
