//! Operator commands at the core level: PAUSE, RESUME, KILL, RECONNECT and RELOAD
//! (mirrors admin.c's effects on pools, without the console I/O).

use crate::config::Config;
use crate::entities::{ClientState, ServerState};
use crate::event::Action;
use crate::ids::{ClientId, ServerId};
use crate::pooler::Pooler;
use crate::reason::{DisconnectReason, ServerCloseReason};
use crate::time::Instant;

impl Pooler {
    fn in_scope(&self, pool: usize, database: Option<&str>) -> bool {
        database.is_none_or(|d| &*self.pools[pool].key.database == d)
    }

    fn servers_in_scope(&self, database: Option<&str>) -> Vec<(ServerId, ServerState)> {
        let mut v: Vec<_> = self
            .servers
            .iter()
            .filter(|(_, s)| self.in_scope(s.pool, database))
            .map(|(id, s)| (*id, s.state))
            .collect();
        v.sort_by_key(|(id, _)| *id);
        v
    }

    pub(crate) fn pause(&mut self, now: Instant, database: Option<String>) {
        match &database {
            None => {
                self.global_pause = true;
                self.global_pause_pending = true;
            }
            Some(d) => {
                let db = self.database_mut(d);
                db.paused = true;
                db.pause_pending = true;
                // Seen by `pool_paused` at once (the cache is recomputed after the event).
                self.some_db_paused = true;
            }
        }
        for (server, state) in self.servers_in_scope(database.as_deref()) {
            if state == ServerState::Idle {
                self.close_server(now, server, ServerCloseReason::CloseNeeded);
            }
        }
        self.check_pause_done();
    }

    pub(crate) fn shutdown_wait_for_servers(&mut self, now: Instant) {
        self.shutting_down = true;
        let waiting: Vec<ClientId> = self
            .pools
            .iter()
            .flat_map(|p| p.waiting.iter().copied())
            .collect();
        for client in waiting {
            if self
                .clients
                .get(&client)
                .is_some_and(|c| c.state == ClientState::Waiting)
            {
                self.disconnect_client(now, client, DisconnectReason::ServerShuttingDown);
            }
        }
        self.pause(now, None);
    }

    /// Queues `PauseDone` for every pending PAUSE whose servers are all gone.
    pub(crate) fn check_pause_done(&mut self) {
        if self.global_pause_pending && self.servers.is_empty() {
            self.global_pause_pending = false;
            self.actions.push_back(Action::PauseDone { database: None });
        }
        let pending: Vec<_> = self
            .databases
            .iter()
            .filter(|(_, d)| d.pause_pending && d.servers == 0)
            .map(|(n, _)| n.clone())
            .collect();
        for name in pending {
            self.database_mut(&name).pause_pending = false;
            self.actions.push_back(Action::PauseDone {
                database: Some(name.to_string()),
            });
        }
    }

    pub(crate) fn resume(&mut self, now: Instant, database: Option<String>) {
        match &database {
            None => {
                self.global_pause = false;
                self.global_pause_pending = false;
                for db in self.databases.values_mut() {
                    db.paused = false;
                    db.pause_pending = false;
                }
            }
            Some(d) => {
                let db = self.database_mut(d);
                db.paused = false;
                db.pause_pending = false;
            }
        }
        for pool in 0..self.pools.len() {
            if self.in_scope(pool, database.as_deref()) {
                self.activate(now, pool);
            }
        }
    }

    pub(crate) fn kill(&mut self, now: Instant, database: Option<String>) {
        let scope = database.as_deref();
        let mut clients: Vec<_> = self
            .clients
            .iter()
            .filter(|(_, c)| self.in_scope(c.pool, scope))
            .map(|(id, _)| *id)
            .collect();
        clients.sort();
        for client in clients {
            self.disconnect_client(now, client, DisconnectReason::DatabaseRemoved);
        }
        for (server, _) in self.servers_in_scope(scope) {
            self.close_server(now, server, ServerCloseReason::DatabaseRemoved);
        }
        match database {
            None => self.global_pause = true,
            Some(d) => {
                self.database_mut(&d).paused = true;
                self.some_db_paused = true;
            }
        }
    }

    pub(crate) fn reconnect(&mut self, now: Instant, database: Option<String>) {
        // A new target (or new TLS settings) is unproven: its first login runs alone.
        for p in &mut self.pools {
            if database.as_deref().is_none_or(|d| *p.key.database == *d) {
                p.proven = false;
            }
        }
        for (server, state) in self.servers_in_scope(database.as_deref()) {
            if state == ServerState::Idle {
                self.close_server(now, server, ServerCloseReason::CloseNeeded);
            } else if let Some(s) = self.servers.get_mut(&server) {
                s.close_needed = true;
                let session = self.pools[s.pool].settings.pool_mode == crate::PoolMode::Session;
                if let (true, true, Some(client)) = (self.config.server_fast_close, session, s.link)
                {
                    self.actions
                        .push_back(Action::CloseAfterTransaction { client, server });
                }
            }
        }
    }

    /// Applies a new configuration to live pools: new sizes and modes, surplus idle
    /// servers closed (never a busy one), waiting clients served if the pool grew.
    pub(crate) fn reload(&mut self, now: Instant, config: Config) {
        self.config = config;
        self.fill_forced_min_pools(now);
        for pool in 0..self.pools.len() {
            let key = self.pools[pool].key.clone();
            self.pools[pool].settings = self.config.pool_settings(&key.database, &key.user);
            let size = self.pools[pool].settings.pool_size;
            let limit = size + self.pools[pool].settings.reserve_pool_size;
            let mut logins: Vec<_> = self
                .servers
                .iter()
                .filter(|(_, s)| s.pool == pool && s.state == ServerState::Login)
                .map(|(id, _)| *id)
                .collect();
            logins.sort();
            while size > 0 && self.pools[pool].counts.servers() > limit {
                let victim = match logins.pop() {
                    Some(login) => login,
                    None => match self.pools[pool].idle.front() {
                        Some(&oldest) => oldest,
                        None => break,
                    },
                };
                self.close_server(now, victim, ServerCloseReason::PoolShrink);
            }
            self.activate(now, pool);
            self.ensure_min_pool(now, pool);
        }
        // Removed databases: their clients are told so, as PgBouncer does.
        let removed: Vec<_> = self
            .pools
            .iter()
            .map(|p| p.key.database.clone())
            .filter(|d| !self.config.databases.is_empty() && self.config.database(d).is_none())
            .collect();
        for database in removed {
            if self
                .pools
                .iter()
                .any(|p| p.key.database == database && p.counts.clients() > 0)
            {
                self.kill(now, Some(database.to_string()));
                self.database_mut(&database).paused = false;
            }
        }
        self.note(Some(now));
    }
}
