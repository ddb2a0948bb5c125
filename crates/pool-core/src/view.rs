//! Read-only views of pools, clients and servers, for the admin console and metrics.
//! Field names are PgBouncer's `SHOW POOLS` / `SHOW CLIENTS` / `SHOW SERVERS` columns.

use std::time::Duration;

use crate::config::{PoolMode, PoolSettings};
use crate::entities::{ClientState, ServerState};
use crate::ids::{ClientId, PoolKey, ServerId};
use crate::pooler::Pooler;
use crate::stats::PoolStats;
use crate::time::Instant;

/// One pool as `SHOW POOLS` shows it.
#[derive(Debug, Clone)]
pub struct PoolView<'a> {
    /// Database and user.
    pub key: &'a PoolKey,
    /// Effective settings.
    pub settings: PoolSettings,
    /// Clients linked to a server or idle.
    pub cl_active: u32,
    /// Clients queued for a server.
    pub cl_waiting: u32,
    /// Clients still logging in.
    pub cl_login: u32,
    /// Servers linked to clients.
    pub sv_active: u32,
    /// Idle servers ready for use.
    pub sv_idle: u32,
    /// Idle servers that will be checked before reuse.
    pub sv_used: u32,
    /// Servers running a reset or check query.
    pub sv_tested: u32,
    /// Released servers waiting for a cancel request to them to finish.
    pub sv_being_canceled: u32,
    /// Servers logging in.
    pub sv_login: u32,
    /// Longest current wait in the queue, in microseconds.
    pub maxwait_us: u64,
    /// Statistics.
    pub stats: &'a PoolStats,
    /// The error of the pool's last server login, if that login failed (cleared by the
    /// next one that succeeds).
    pub last_login_error: Option<&'a str>,
}

impl PoolView<'_> {
    /// The effective pool mode.
    pub fn pool_mode(&self) -> PoolMode {
        self.settings.pool_mode
    }
}

/// One client as `SHOW CLIENTS` shows it.
#[derive(Debug, Clone)]
pub struct ClientView<'a> {
    /// Its id.
    pub id: ClientId,
    /// Its pool.
    pub pool: &'a PoolKey,
    /// The user it logged in as.
    pub login_user: &'a str,
    /// `login`, `active`, `idle` or `waiting`.
    pub state: &'static str,
    /// The server it is linked to.
    pub link: Option<ServerId>,
    /// When it connected (caller's clock).
    pub connect_time: Instant,
    /// When it last started waiting or became idle.
    pub request_time: Instant,
    /// Current wait, if waiting.
    pub wait: Duration,
}

/// One server as `SHOW SERVERS` shows it.
#[derive(Debug, Clone)]
pub struct ServerView<'a> {
    /// Its id.
    pub id: ServerId,
    /// Its pool.
    pub pool: &'a PoolKey,
    /// `login`, `idle`, `used`, `active` or `tested`.
    pub state: &'static str,
    /// The client it is linked to.
    pub link: Option<ClientId>,
    /// When it connected (caller's clock).
    pub connect_time: Instant,
    /// When it entered its current state.
    pub request_time: Instant,
    /// Marked for closing on release.
    pub close_needed: bool,
}

impl Pooler {
    /// Every pool, in creation order (a freed pool's place is taken by the last one). `now` is used for `maxwait` and `sv_used`.
    pub fn pools(&self, now: Instant) -> impl Iterator<Item = PoolView<'_>> {
        self.pools.iter().map(move |p| {
            let used = p
                .idle
                .iter()
                .filter_map(|s| self.servers.get(s))
                .filter(|s| {
                    self.config.server_check_enabled
                        && s.used
                        && now - s.state_since >= self.config.server_check_delay
                })
                .count() as u32;
            let maxwait_us = p
                .waiting
                .front()
                .and_then(|c| self.clients.get(c))
                .map_or(0, |c| (now - c.request_time).as_micros() as u64);
            PoolView {
                key: &p.key,
                settings: p.settings,
                cl_active: p.counts.cl_active,
                cl_waiting: p.counts.cl_waiting,
                cl_login: p.counts.cl_login,
                sv_active: p.counts.sv_active,
                sv_idle: p.counts.sv_idle - used,
                sv_used: used,
                sv_tested: p.counts.sv_tested,
                sv_being_canceled: p.counts.sv_being_canceled,
                sv_login: p.counts.sv_login,
                maxwait_us,
                stats: &p.stats,
                last_login_error: p.login_failure.as_ref().map(|f| f.message.as_str()),
            }
        })
    }

    /// Every client, by id.
    pub fn clients(&self, now: Instant) -> Vec<ClientView<'_>> {
        let mut v: Vec<_> = self
            .clients
            .iter()
            .map(|(id, c)| ClientView {
                id: *id,
                pool: &self.pools[c.pool].key,
                login_user: &c.login_user,
                state: c.state.show_name(c.link.is_some()),
                link: c.link,
                connect_time: c.connect_time,
                request_time: c.request_time,
                wait: if c.state == ClientState::Waiting {
                    now - c.request_time
                } else {
                    Duration::ZERO
                },
            })
            .collect();
        v.sort_by_key(|c| c.id);
        v
    }

    /// Every server, by id.
    pub fn servers(&self, now: Instant) -> Vec<ServerView<'_>> {
        let mut v: Vec<_> = self
            .servers
            .iter()
            .map(|(id, s)| ServerView {
                id: *id,
                pool: &self.pools[s.pool].key,
                state: match s.state {
                    ServerState::Login => "login",
                    ServerState::Idle
                        if self.config.server_check_enabled
                            && s.used
                            && now - s.state_since >= self.config.server_check_delay =>
                    {
                        "used"
                    }
                    ServerState::Idle => "idle",
                    ServerState::Active => "active",
                    ServerState::Tested => "tested",
                    ServerState::BeingCanceled => "being_canceled",
                },
                link: s.link,
                connect_time: s.connect_time,
                request_time: s.state_since,
                close_needed: s.close_needed,
            })
            .collect();
        v.sort_by_key(|s| s.id);
        v
    }

    /// Server connections of `database` (all users) and its client count.
    pub fn database_counts(&self, database: &str) -> (u32, u32) {
        self.databases
            .get(database)
            .map_or((0, 0), |d| (d.servers, d.clients))
    }

    /// Server connections of `user` (all databases) and its client count.
    pub fn user_counts(&self, user: &str) -> (u32, u32) {
        self.users
            .get(user)
            .map_or((0, 0), |u| (u.servers, u.clients))
    }
}
