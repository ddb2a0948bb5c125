//! Simulation harness: a virtual clock, fake clients and fake servers driving a `Pooler`,
//! with invariants checked after every step.

#![allow(clippy::unwrap_used)]

mod props;
mod scenarios;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::entities::{ClientState, ServerState};
use crate::*;

pub(crate) fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

pub(crate) fn test_config() -> Config {
    Config {
        pool_mode: PoolMode::Transaction,
        default_pool_size: 2,
        max_client_conn: 100,
        server_check_enabled: false,
        server_reset_enabled: false,
        databases: vec![DatabaseConfig {
            name: "db".into(),
            ..Default::default()
        }],
        ..Config::default()
    }
}

/// A simulated server connection: it knows which server it is, so the harness can check
/// that every order carries the right one.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Conn(pub(crate) ServerId);

/// The simulated world around a `Pooler`, in [`Custody`] of the simulated connections.
pub(crate) struct Sim {
    pub(crate) pooler: Custody<Conn>,
    /// Connections the driver has: linked to a client, or running a reset or check.
    out: HashMap<ServerId, Conn>,
    pub(crate) now: Instant,
    next_client: u32,
    /// Servers the pooler asked for that have not connected yet, in order.
    pub(crate) pending_connects: Vec<ServerId>,
    pub(crate) links: HashMap<ClientId, ServerId>,
    pub(crate) disconnected: HashMap<ClientId, DisconnectReason>,
    pub(crate) closed: HashMap<ServerId, ServerCloseReason>,
    pub(crate) resets: Vec<ServerId>,
    pub(crate) checks: Vec<ServerId>,
    pub(crate) cancels: Vec<(ClientId, ServerId)>,
    pub(crate) cancelled_waits: Vec<ClientId>,
    /// Clients told they are queued (`query_wait_notify`), in order.
    pub(crate) wait_notices: Vec<ClientId>,
    pub(crate) pause_done: Vec<Option<String>>,
    pub(crate) fast_closed: Vec<ClientId>,
    pub(crate) freed: Vec<PoolKey>,
    /// Servers that have ever been handed to a client while another held them.
    pub(crate) all_actions: Vec<Action>,
}

impl Sim {
    pub(crate) fn new(config: Config) -> Self {
        Sim {
            pooler: Custody::new(Pooler::new(config)),
            out: HashMap::new(),
            now: Instant::from_micros(1_000_000),
            next_client: 1,
            pending_connects: Vec::new(),
            links: HashMap::new(),
            disconnected: HashMap::new(),
            closed: HashMap::new(),
            resets: Vec::new(),
            checks: Vec::new(),
            cancels: Vec::new(),
            cancelled_waits: Vec::new(),
            wait_notices: Vec::new(),
            pause_done: Vec::new(),
            fast_closed: Vec::new(),
            freed: Vec::new(),
            all_actions: Vec::new(),
        }
    }

    pub(crate) fn event(&mut self, e: Event) {
        // What a driver hands in with the event: a new connection, one back from its
        // reset or check query, or a client's server released clean. Connections it
        // closes itself (a failed query, a dirty release, a server gone) are dropped.
        let conn = match &e {
            Event::ServerConnected { server } => Some(Conn(*server)),
            Event::ServerResetDone { server, ok } => self.out.remove(server).filter(|_| *ok),
            Event::ClientReleasedServer {
                client, reusable, ..
            } => self
                .pooler
                .clients
                .get(client)
                .and_then(|c| c.link)
                .and_then(|s| self.out.remove(&s))
                .filter(|_| *reusable),
            Event::ServerClosed { server } => {
                self.out.remove(server);
                None
            }
            _ => None,
        };
        let refused = self.pooler.handle(self.now, e, conn);
        if let Some(Conn(server)) = refused {
            assert!(
                !self.pooler.servers.contains_key(&server),
                "the connection of {server}, which pool-core knows, was refused"
            );
        }
        self.drain();
    }

    fn drain(&mut self) {
        while let Some((a, conn)) = self.pooler.poll_action() {
            self.all_actions.push(a.clone());
            match &a {
                Action::Link { server, .. }
                | Action::ResetServer { server }
                | Action::CheckServer { server } => {
                    assert_eq!(
                        conn.as_ref(),
                        Some(&Conn(*server)),
                        "{a:?} carries its connection"
                    );
                    assert!(!self.out.contains_key(server), "{server} given out twice");
                }
                Action::CloseServer { server, .. } => match &conn {
                    Some(c) => {
                        assert_eq!(c, &Conn(*server), "{a:?} carries its own connection");
                        assert!(!self.out.contains_key(server), "{server} was out and held");
                    }
                    // In use: the driver closes the connection it has.
                    None => {
                        self.out.remove(server);
                    }
                },
                _ => assert!(conn.is_none(), "{a:?} carries a connection"),
            }
            if let (Some(c), false) = (conn, matches!(a, Action::CloseServer { .. })) {
                self.out.insert(c.0, c);
            }
            match a {
                Action::ConnectServer { server, .. } => self.pending_connects.push(server),
                Action::Link { client, server } => {
                    assert!(
                        !self.links.values().any(|s| *s == server),
                        "{server} linked to two clients"
                    );
                    self.links.insert(client, server);
                }
                Action::ResetServer { server } => self.resets.push(server),
                Action::CheckServer { server } => self.checks.push(server),
                Action::CloseServer { server, reason } => {
                    self.links.retain(|_, s| *s != server);
                    self.pending_connects.retain(|s| *s != server);
                    self.closed.insert(server, reason);
                }
                Action::DisconnectClient { client, reason } => {
                    self.links.remove(&client);
                    self.disconnected.insert(client, reason);
                }
                Action::SendCancel { client, server } => self.cancels.push((client, server)),
                Action::CancelWait { client } => self.cancelled_waits.push(client),
                Action::NotifyWaiting { client } => {
                    assert_eq!(
                        self.pooler.clients.get(&client).map(|c| c.state),
                        Some(crate::entities::ClientState::Waiting),
                        "{client} told it is queued while not waiting"
                    );
                    self.wait_notices.push(client);
                }
                Action::PauseDone { database } => self.pause_done.push(database),
                Action::CloseAfterTransaction { client, .. } => self.fast_closed.push(client),
                Action::PoolFreed { pool, .. } => self.freed.push(pool),
                Action::OpenReplicationServer { client, server } => {
                    assert!(
                        !self.links.values().any(|s| *s == server),
                        "{server} linked to two clients"
                    );
                    self.links.insert(client, server);
                }
            }
        }
        self.check_invariants();
    }

    /// A client of `db` logged in as `user`.
    pub(crate) fn client_logged_in(&mut self, db: &str, user: &str) -> ClientId {
        let client = self.client_connects(db, user);
        self.event(Event::ClientLoggedIn {
            client,
            cancel_key: u64::from(client.0) * 1000,
        });
        client
    }

    /// A client sent its startup packet (not logged in yet).
    pub(crate) fn client_connects(&mut self, db: &str, user: &str) -> ClientId {
        let client = ClientId(self.next_client);
        self.next_client += 1;
        self.event(Event::ClientConnected {
            client,
            pool: PoolKey::new(db, user),
            login_user: user.into(),
        });
        client
    }

    pub(crate) fn client_wants_server(&mut self, client: ClientId) {
        self.event(Event::ClientWantsServer { client });
    }

    /// The client finishes its transaction and gives its server back, clean.
    pub(crate) fn release(&mut self, client: ClientId) {
        self.links.remove(&client);
        let usage = Usage {
            xact_count: 1,
            query_count: 1,
            xact_time_us: 100,
            ..Usage::default()
        };
        self.event(Event::ClientReleasedServer {
            client,
            reusable: true,
            usage,
        });
    }

    pub(crate) fn release_dirty(&mut self, client: ClientId) {
        self.links.remove(&client);
        self.event(Event::ClientReleasedServer {
            client,
            reusable: false,
            usage: Usage::default(),
        });
    }

    pub(crate) fn client_closes(&mut self, client: ClientId) {
        self.links.remove(&client);
        self.event(Event::ClientClosed { client });
    }

    /// The oldest pending server connect succeeds; returns its id.
    pub(crate) fn server_connects(&mut self) -> ServerId {
        assert!(
            !self.pending_connects.is_empty(),
            "no server connect is pending"
        );
        let server = self.pending_connects.remove(0);
        self.event(Event::ServerConnected { server });
        server
    }

    pub(crate) fn server_fails(&mut self, code: &str, message: &str) -> ServerId {
        let server = self.pending_connects.remove(0);
        self.event(Event::ServerConnectFailed {
            server,
            code: code.into(),
            message: message.into(),
        });
        server
    }

    pub(crate) fn advance(&mut self, d: Duration) {
        let target = self.now + d;
        // Wake up at every deadline on the way, as a driver would.
        loop {
            match self.pooler.poll_timeout() {
                Some(at) if at <= target => {
                    self.now = self.now.max(at);
                    self.pooler.handle_timeout(self.now);
                    self.drain();
                }
                _ => break,
            }
        }
        self.now = target;
        self.pooler.handle_timeout(self.now);
        self.drain();
    }

    pub(crate) fn linked(&self, client: ClientId) -> Option<ServerId> {
        self.links.get(&client).copied()
    }

    pub(crate) fn disconnected(&self, client: ClientId) -> Option<DisconnectReason> {
        self.disconnected.get(&client).cloned()
    }

    pub(crate) fn pool(&self, db: &str, user: &str) -> PoolView<'_> {
        self.pooler
            .pools(self.now)
            .find(|p| &*p.key.database == db && &*p.key.user == user)
            .expect("pool exists")
    }

    pub(crate) fn has_pool(&self, db: &str, user: &str) -> bool {
        self.pooler
            .pools(self.now)
            .any(|p| &*p.key.database == db && &*p.key.user == user)
    }

    pub(crate) fn server_count(&self) -> usize {
        self.pooler.servers.len()
    }

    /// Invariants that must hold after every step.
    pub(crate) fn check_invariants(&self) {
        let p = &self.pooler;
        // The pool index matches the pools, and every client and server has a pool
        // (freeing auto-database pools renumbers them).
        assert_eq!(p.pool_index.len(), p.pools.len());
        for (i, pool) in p.pools.iter().enumerate() {
            assert_eq!(
                p.pool_index.get(&pool.key),
                Some(&i),
                "pool index of {}",
                pool.key
            );
        }
        for c in p.clients.values() {
            assert!(c.pool < p.pools.len(), "client of a freed pool");
        }
        for s in p.servers.values() {
            assert!(s.pool < p.pools.len(), "server of a freed pool");
        }
        // A server is linked to at most one client, and links are symmetric.
        let mut seen = HashSet::new();
        for (id, c) in &p.clients {
            if let Some(s) = c.link {
                assert!(seen.insert(s), "{s} linked to two clients");
                let server = &p.servers[&s];
                assert_eq!(server.link, Some(*id), "asymmetric link {id} -> {s}");
                assert_eq!(server.state, ServerState::Active);
                assert_eq!(c.state, ClientState::Active);
            }
        }
        // pool-core holds the connection of every idle server, and of no server it does
        // not know or that the driver has.
        for (id, s) in &p.servers {
            if s.state == ServerState::Idle {
                assert!(self.pooler.holds(*id), "idle {id} without its connection");
            }
        }
        for id in self.pooler.held_ids() {
            let state = p.servers.get(id).map(|s| s.state);
            assert!(
                matches!(state, Some(ServerState::Idle | ServerState::BeingCanceled)),
                "{id} held in {state:?}"
            );
            assert!(!self.out.contains_key(id), "{id} held and out");
        }
        for (id, s) in &p.servers {
            if s.state == ServerState::Active {
                let c = s.link.expect("active server is linked");
                assert_eq!(p.clients[&c].link, Some(*id));
            } else {
                assert!(s.link.is_none(), "{id} in {:?} has a link", s.state);
            }
        }
        // Per-state counts add up.
        for (i, pool) in p.pools.iter().enumerate() {
            let mut counts = crate::entities::Counts::default();
            for c in p.clients.values().filter(|c| c.pool == i) {
                *counts.client_slot(c.state) += 1;
            }
            for s in p.servers.values().filter(|s| s.pool == i) {
                *counts.server_slot(s.state) += 1;
            }
            assert_eq!(counts, pool.counts, "counts of pool {}", pool.key);
            assert_eq!(pool.waiting.len() as u32, pool.counts.cl_waiting);
            assert_eq!(pool.idle.len() as u32, pool.counts.sv_idle);
            // Never a new server beyond pool_size + reserve (a reload that shrinks the
            // pool leaves busy servers until they are released).
            let size = pool.settings.pool_size;
            if size > 0 && pool.counts.servers() > size + pool.settings.reserve_pool_size {
                assert!(
                    pool.counts.sv_login == 0 && pool.counts.sv_idle == 0,
                    "pool {} has {} servers",
                    pool.key,
                    pool.counts.servers()
                );
            }
            // No client waits past its deadline (timeouts fire exactly on time).
            let wait_limit = pool.settings.query_wait_timeout;
            if !wait_limit.is_zero() {
                for c in pool.waiting.iter().map(|c| &p.clients[c]) {
                    assert!(p.now - c.request_time <= wait_limit);
                }
            }
        }
        // No database exceeds max_db_connections.
        for (name, db) in &p.databases {
            let max = p.config.max_db_connections(name);
            if max > 0 {
                assert!(
                    db.servers <= max,
                    "db {name} has {} servers > {max}",
                    db.servers
                );
            }
            let n = p
                .servers
                .values()
                .filter(|s| p.pools[s.pool].key.database == *name)
                .count();
            assert_eq!(n as u32, db.servers);
        }
        assert_eq!(p.client_count as usize, p.clients.len());
    }
}
