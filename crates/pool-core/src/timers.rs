//! Deadlines: everything that happens because time passed (mirrors janitor.c:
//! `pool_client_maint`, `pool_server_maint`, `check_unused_servers`).
//!
//! Events only move the next wake-up earlier (`Pooler::note`); `handle_timeout` scans
//! clients and servers once the wake-up is due, acts on what expired, and computes the
//! exact next wake-up. So the per-event cost is constant and the scan runs only when
//! something may have expired.

use std::time::Duration;

use crate::entities::{ClientState, ServerState};
use crate::event::Action;
use crate::ids::{ClientId, ServerId};
use crate::pooler::Pooler;
use crate::reason::{DisconnectReason, ServerCloseReason};
use crate::time::{deadline, earliest, Instant};

fn due(since: Instant, timeout: Duration, now: Instant) -> Result<(), Option<Instant>> {
    if timeout.is_zero() {
        return Err(None);
    }
    let at = since + timeout;
    if at <= now {
        Ok(())
    } else {
        Err(Some(at))
    }
}

impl Pooler {
    /// Acts on every deadline that has passed. Can queue `DisconnectClient`,
    /// `CloseServer`, `ConnectServer`, `CheckServer` and `Link`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = self.now.max(now);
        let now = self.now;
        match self.next_wakeup {
            Some(at) if at <= now => {}
            _ => return,
        }
        self.next_wakeup = None;
        self.roll_stats(now);
        self.expire_clients(now);
        self.expire_servers(now);
        for pool in 0..self.pools.len() {
            self.activate(now, pool);
            self.ensure_min_pool(now, pool);
            if let Some(f) = &self.pools[pool].login_failure {
                // Wake up when the retry window ends.
                if f.until > now {
                    let until = f.until;
                    self.note(Some(until));
                }
            }
        }
        self.activate_blocked(now);
        self.fill_forced_min_pools(now);
        self.free_idle_autodb_pools(now);
    }

    /// Frees the pools that have had no client and no server for `autodb_idle_timeout`
    /// (auto-databases, PgBouncer's `cleanup_inactive_autodatabases`) or
    /// `pool_idle_timeout` (any other pool, PgBouncer 1.26). Paused or disabled
    /// databases keep their pools, and so do forced-user pools that `min_pool_size`
    /// keeps filled.
    fn free_idle_autodb_pools(&mut self, now: Instant) {
        let (auto_timeout, pool_timeout) = (
            self.config.autodb_idle_timeout,
            self.config.pool_idle_timeout,
        );
        if auto_timeout.is_zero() && pool_timeout.is_zero() {
            return;
        }
        let mut i = self.pools.len();
        while i > 0 {
            i -= 1;
            let p = &self.pools[i];
            let empty = p.counts.clients() == 0 && p.counts.servers() == 0;
            let db = self.config.database(&p.key.database);
            let auto = db.is_none();
            let kept_filled =
                db.is_some_and(|d| d.forced_user.is_some()) && p.settings.min_pool_size > 0;
            let held = self
                .databases
                .get(&*p.key.database)
                .is_some_and(|d| d.paused || d.disabled);
            let timeout = match (auto, auto_timeout.is_zero(), pool_timeout.is_zero()) {
                (true, false, false) => auto_timeout.min(pool_timeout),
                (true, false, true) => auto_timeout,
                (_, _, false) => pool_timeout,
                _ => Duration::ZERO,
            };
            if !empty || held || timeout.is_zero() || (!auto && kept_filled) {
                self.pools[i].empty_since = None;
                continue;
            }
            let since = *self.pools[i].empty_since.get_or_insert(now);
            match deadline(since, timeout) {
                Some(at) if at <= now => self.free_pool(i, now - since, auto),
                at => self.note(at),
            }
        }
    }

    /// Removes pool `i` (no client or server refers to it): the last pool takes its
    /// index, and what referred to the last pool is renumbered.
    fn free_pool(&mut self, i: usize, idle: Duration, auto: bool) {
        let freed = self.pools.swap_remove(i);
        self.pool_index.remove(&freed.key);
        self.freed_totals.add(&freed.stats.totals);
        let moved_from = self.pools.len();
        if i < moved_from {
            self.pool_index.insert(self.pools[i].key.clone(), i);
            for c in self.clients.values_mut().filter(|c| c.pool == moved_from) {
                c.pool = i;
            }
            for s in self.servers.values_mut().filter(|s| s.pool == moved_from) {
                s.pool = i;
            }
        }
        let database = freed.key.database.clone();
        if !self.pools.iter().any(|p| p.key.database == database) {
            if let Some(d) = self.databases.get(&*database) {
                if d.clients == 0 && d.servers == 0 && !d.paused && !d.disabled {
                    self.databases.remove(&*database);
                }
            }
        }
        tracing::debug!(pool = %freed.key, "auto-database pool freed after autodb_idle_timeout");
        self.actions.push_back(Action::PoolFreed {
            pool: freed.key,
            idle,
            auto,
        });
    }

    fn roll_stats(&mut self, now: Instant) {
        let period = self.config.stats_period.max(Duration::from_secs(1));
        let Some(mut at) = self.next_stats_roll else {
            return;
        };
        if at <= now {
            let period_us = u64::try_from(period.as_micros()).unwrap_or(u64::MAX);
            for p in &mut self.pools {
                p.stats.roll(period_us, &p.counts);
            }
            self.client_peak.last = self.client_peak.current;
            self.client_peak.current = self.client_count;
            while at <= now {
                at = at + period;
            }
            self.next_stats_roll = Some(at);
        }
        self.note(Some(at));
    }

    fn expire_clients(&mut self, now: Instant) {
        let cfg = &self.config;
        let mut next = None;
        let mut expired: Vec<(ClientId, DisconnectReason)> = Vec::new();
        let mut told: Vec<ClientId> = Vec::new();
        let notice_after = cfg.wait_notice_after();
        for (&id, c) in &self.clients {
            if c.wait_notice && c.state == ClientState::Waiting {
                match due(c.request_time, notice_after, now) {
                    Ok(()) => told.push(id),
                    Err(at) => next = earliest(next, at),
                }
            }
            let check = match (c.state, c.link) {
                (ClientState::Login, _) => due(c.connect_time, cfg.client_login_timeout, now)
                    .map(|()| DisconnectReason::ClientLoginTimeout),
                (ClientState::Active, None) => due(
                    c.request_time,
                    self.pools[c.pool].settings.client_idle_timeout,
                    now,
                )
                .map(|()| DisconnectReason::ClientIdleTimeout),
                (ClientState::Waiting, _) => {
                    let wait = due(
                        c.request_time,
                        self.pools[c.pool].settings.query_wait_timeout,
                        now,
                    )
                    .map(|()| DisconnectReason::QueryWaitTimeout);
                    let query = due(c.request_time, cfg.query_timeout, now)
                        .map(|()| DisconnectReason::QueryTimeoutWaiting);
                    match (wait, query) {
                        (Ok(r), _) | (_, Ok(r)) => Ok(r),
                        (Err(a), Err(b)) => {
                            let reserve = self.pools[c.pool].settings.reserve_pool_size > 0;
                            let r = if reserve {
                                due(c.request_time, cfg.reserve_pool_timeout, now)
                                    .err()
                                    .flatten()
                            } else {
                                None
                            };
                            Err(earliest(earliest(a, b), r))
                        }
                    }
                }
                (ClientState::Active, Some(_)) => Err(None),
            };
            match check {
                Ok(reason) => expired.push((id, reason)),
                Err(at) => next = earliest(next, at),
            }
        }
        told.sort();
        for client in told {
            if let Some(c) = self.clients.get_mut(&client) {
                c.wait_notice = false;
            }
            self.actions.push_back(Action::NotifyWaiting { client });
        }
        expired.sort_by_key(|(id, _)| *id);
        for (client, reason) in expired {
            self.disconnect_client(now, client, reason);
        }
        self.note(next);
    }

    fn expire_servers(&mut self, now: Instant) {
        let mut next = None;
        let mut expired: Vec<(ServerId, ServerCloseReason)> = Vec::new();
        let mut idle_per_pool = vec![0u32; self.pools.len()];
        let mut ids: Vec<_> = self.servers.keys().copied().collect();
        ids.sort();
        for id in ids {
            let s = &self.servers[&id];
            let p = &self.pools[s.pool];
            let check = match s.state {
                ServerState::Login => due(s.state_since, self.config.server_connect_timeout, now)
                    .map(|()| ServerCloseReason::ConnectTimeout),
                ServerState::Idle => {
                    let life = due(s.connect_time, p.settings.server_lifetime, now)
                        .map(|()| ServerCloseReason::LifetimeOver);
                    let keep =
                        p.counts.servers() - idle_per_pool[s.pool] <= p.settings.min_pool_size;
                    let idle = if keep {
                        Err(None)
                    } else {
                        due(s.state_since, self.config.server_idle_timeout, now)
                            .map(|()| ServerCloseReason::IdleTimeout)
                    };
                    match (life, idle) {
                        (Ok(r), _) | (_, Ok(r)) => Ok(r),
                        (Err(a), Err(b)) => Err(earliest(a, b)),
                    }
                }
                ServerState::Active | ServerState::Tested | ServerState::BeingCanceled => Err(None),
            };
            match check {
                Ok(reason) => {
                    idle_per_pool[s.pool] += 1;
                    expired.push((id, reason));
                }
                Err(at) => next = earliest(next, at),
            }
        }
        for (server, reason) in expired {
            let failed_login = reason == ServerCloseReason::ConnectTimeout;
            let pool = self.servers.get(&server).map(|s| s.pool);
            self.close_server(now, server, reason);
            if let (true, Some(pool)) = (failed_login, pool) {
                self.login_failed(now, pool, "server connect timeout".into());
            }
        }
        self.note(next);
    }
}
