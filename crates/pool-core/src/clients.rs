//! Client lifecycle in the pooler: limits at connect, login, queueing for a server,
//! release, close and cancel (mirrors client.c and objects.c's client half).

use std::sync::Arc;

use crate::entities::{Client, ClientState};
use crate::event::Action;
use crate::ids::{ClientId, PoolKey, ServerId};
use crate::pooler::{unknown_client, Pooler};
use crate::reason::{DisconnectReason, ServerCloseReason};
use crate::stats::Usage;
use crate::time::{deadline, Instant};

impl Pooler {
    pub(crate) fn client_connected(
        &mut self,
        now: Instant,
        client: ClientId,
        key: PoolKey,
        login_user: Arc<str>,
    ) {
        if self.clients.contains_key(&client) {
            debug_assert!(false, "duplicate client id {client}");
            tracing::warn!(%client, "duplicate client id ignored");
            return;
        }
        let refuse = |reason| Action::DisconnectClient { client, reason };
        if self.config.max_client_conn > 0 && self.client_count >= self.config.max_client_conn {
            self.max_client_conn_refusals += 1;
            self.actions
                .push_back(refuse(DisconnectReason::MaxClientConn));
            return;
        }
        let db_max = self.config.max_db_client_connections(&key.database);
        let db = self.database_at(&key.database);
        if db.disabled {
            let reason = DisconnectReason::DatabaseDisabled {
                database: key.database.to_string(),
            };
            self.actions.push_back(refuse(reason));
            return;
        }
        if db_max > 0 && db.clients >= db_max {
            self.actions
                .push_back(refuse(DisconnectReason::MaxDbClientConnections));
            return;
        }
        let user_max = self.config.max_user_client_connections(&login_user);
        if user_max > 0 && self.user_at(&login_user).clients >= user_max {
            self.actions
                .push_back(refuse(DisconnectReason::MaxUserClientConnections));
            return;
        }
        let pool = self.pool_for(&key, now);
        self.database_at(&key.database).clients += 1;
        self.user_at(&login_user).clients += 1;
        self.client_count += 1;
        self.client_peak.current = self.client_peak.current.max(self.client_count);
        let p = &mut self.pools[pool];
        p.counts.cl_login += 1;
        p.stats.current.peaks.observe(&p.counts);
        self.pools[pool].last_used = now;
        self.clients.insert(
            client,
            Client {
                pool,
                login_user,
                state: ClientState::Login,
                link: None,
                connect_time: now,
                request_time: now,
                cancel_key: 0,
                has_cancel_key: false,
                replication: false,
                wait_notice: false,
                locality: 0,
                bypassed: 0,
            },
        );
        self.note(deadline(now, self.config.client_login_timeout));
    }

    pub(crate) fn client_logged_in(&mut self, now: Instant, client: ClientId, cancel_key: u64) {
        let Some(c) = self.clients.get_mut(&client) else {
            return unknown_client(client);
        };
        if c.state != ClientState::Login {
            return;
        }
        c.cancel_key = cancel_key;
        c.has_cancel_key = true;
        c.request_time = now;
        let pool = c.pool;
        self.set_client_state(client, ClientState::Active);
        self.cancel_keys.insert(cancel_key, client);
        self.pools[pool].stats.totals.client_login_count += 1;
        self.note(deadline(now, self.pools[pool].settings.client_idle_timeout));
        self.ensure_min_pool(now, pool);
    }

    /// A client asks for a server. `fast_fail`: while the pool has no server and its
    /// logins are failing, give the cached error at once (PgBouncer's
    /// `check_fast_fail`); a client still waiting for its welcome waits instead.
    pub(crate) fn client_wants_server(&mut self, now: Instant, client: ClientId, fast_fail: bool) {
        let Some(c) = self.clients.get_mut(&client) else {
            return unknown_client(client);
        };
        if c.state != ClientState::Active || c.link.is_some() {
            tracing::debug!(%client, state = ?c.state, "client wants a server in a wrong state");
            return;
        }
        let pool = c.pool;
        c.request_time = now;
        if self.shutting_down {
            return self.disconnect_client(now, client, DisconnectReason::ServerShuttingDown);
        }
        let locality = c.locality;
        self.pools[pool].last_used = now;
        // Nobody queued before it and an idle server is free: linked at once, without
        // going through the queue (PgBouncer's find_server).
        if self.pools[pool].waiting.is_empty() && !self.pool_paused(pool) {
            if let Some(server) = self.take_idle(now, pool, locality) {
                self.link(now, client, server);
                return;
            }
        }
        let p = &self.pools[pool];
        if p.counts.servers() == 0 && fast_fail {
            if let Some(f) = p.login_failure.as_ref().filter(|f| f.until > now) {
                let reason = DisconnectReason::ServerLoginRetry {
                    message: f.message.clone(),
                };
                return self.disconnect_client(now, client, reason);
            }
        }
        self.set_client_state(client, ClientState::Waiting);
        if let Some(c) = self.clients.get_mut(&client) {
            // Only a client that has its welcome is told it is queued.
            c.wait_notice = fast_fail && !self.config.query_wait_notify.is_zero();
        }
        self.pools[pool].waiting.push_back(client);
        self.note(deadline(now, self.pools[pool].settings.query_wait_timeout));
        self.note(deadline(now, self.config.query_timeout));
        if fast_fail {
            self.note(deadline(now, self.config.wait_notice_after()));
        }
        if self.pools[pool].settings.reserve_pool_size > 0 {
            self.note(deadline(now, self.config.reserve_pool_timeout));
        }
        self.activate(now, pool);
    }

    pub(crate) fn replication_server_wanted(&mut self, now: Instant, client: ClientId) {
        let Some(c) = self.clients.get_mut(&client) else {
            return unknown_client(client);
        };
        if c.state != ClientState::Active || c.link.is_some() {
            tracing::debug!(%client, state = ?c.state, "replication server wanted in a wrong state");
            return;
        }
        if self.shutting_down {
            return self.disconnect_client(now, client, DisconnectReason::ServerShuttingDown);
        }
        c.replication = true;
        c.request_time = now;
        let pool = c.pool;
        self.set_client_state(client, ClientState::Waiting);
        self.pools[pool].waiting.push_back(client);
        self.pools[pool].last_used = now;
        self.note(deadline(now, self.pools[pool].settings.query_wait_timeout));
        self.activate(now, pool);
    }

    pub(crate) fn client_released_server(
        &mut self,
        now: Instant,
        client: ClientId,
        reusable: bool,
        usage: &Usage,
    ) {
        let Some(c) = self.clients.get_mut(&client) else {
            return unknown_client(client);
        };
        let Some(server) = c.link.take() else {
            tracing::debug!(%client, "release without a linked server");
            return;
        };
        c.request_time = now;
        let pool = c.pool;
        self.pools[pool].stats.add_usage(usage);
        self.note(deadline(now, self.pools[pool].settings.client_idle_timeout));
        self.release_server(now, server, reusable);
    }

    pub(crate) fn client_closed(&mut self, now: Instant, client: ClientId) {
        if let Some((database, user)) = self.console_clients.remove(&client) {
            let d = self.database_mut(&database);
            d.clients = d.clients.saturating_sub(1);
            let u = self.user_mut(&user);
            u.clients = u.clients.saturating_sub(1);
            return;
        }
        let pool = self.clients.get(&client).map(|c| c.pool);
        if let Some(server) = self.forget_client(client) {
            self.close_server(now, server, ServerCloseReason::ClientDisconnectedDirty);
            // The slot is free: a waiting client may now get a new server.
            if let Some(pool) = pool {
                self.activate(now, pool);
            }
        }
    }

    /// Forgets a client; returns the server it was still linked to (now unlinked).
    pub(crate) fn forget_client(&mut self, client: ClientId) -> Option<ServerId> {
        let Some(c) = self.clients.get(&client) else {
            unknown_client(client);
            return None;
        };
        let (pool, state, link, key) = (c.pool, c.state, c.link, c.cancel_key());
        *self.pools[pool].counts.client_slot(state) -= 1;
        if state == ClientState::Waiting {
            self.pools[pool].waiting.retain(|w| *w != client);
        }
        if let Some(key) = key {
            self.cancel_keys.remove(&key);
        }
        let c = self.clients.remove(&client).expect("looked up above");
        let database = self.pools[pool].key.database.clone();
        self.database_at(&database).clients -= 1;
        self.user_at(&c.login_user).clients -= 1;
        self.client_count -= 1;
        if let Some(server) = link {
            if let Some(s) = self.servers.get_mut(&server) {
                s.link = None;
            }
        }
        link
    }

    /// Drops a client with `reason`: the driver sends the error and closes the socket.
    pub(crate) fn disconnect_client(
        &mut self,
        now: Instant,
        client: ClientId,
        reason: DisconnectReason,
    ) {
        if !self.clients.contains_key(&client) {
            return unknown_client(client);
        }
        let server = self.forget_client(client);
        self.actions.push_back(Action::DisconnectClient {
            client,
            reason: reason.clone(),
        });
        if let Some(server) = server {
            let why = match reason {
                DisconnectReason::QueryTimeout => ServerCloseReason::QueryTimeout,
                DisconnectReason::DatabaseRemoved => ServerCloseReason::DatabaseRemoved,
                _ => ServerCloseReason::ClientDisconnectedDirty,
            };
            self.close_server(now, server, why);
        }
    }

    pub(crate) fn cancel_requested(&mut self, key: u64) {
        let Some(&client) = self.cancel_keys.get(&key) else {
            tracing::debug!("cancel request with an unknown key");
            return;
        };
        let Some(c) = self.clients.get(&client) else {
            return;
        };
        match (c.state, c.link) {
            (ClientState::Active, Some(server)) => {
                if let Some(s) = self.servers.get_mut(&server) {
                    s.cancels += 1;
                }
                self.actions
                    .push_back(Action::SendCancel { client, server });
            }
            (ClientState::Waiting, _) => {
                let pool = c.pool;
                self.pools[pool].waiting.retain(|w| *w != client);
                self.set_client_state(client, ClientState::Active);
                self.actions.push_back(Action::CancelWait { client });
            }
            _ => tracing::debug!(%client, "cancel request for idle client"),
        }
    }

    pub(crate) fn set_client_state(&mut self, client: ClientId, state: ClientState) {
        let c = self
            .clients
            .get_mut(&client)
            .expect("caller checked the client exists");
        let p = &mut self.pools[c.pool];
        *p.counts.client_slot(c.state) -= 1;
        *p.counts.client_slot(state) += 1;
        p.stats.current.peaks.observe(&p.counts);
        c.state = state;
    }
}
