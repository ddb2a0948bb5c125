//! The records pool-core keeps per client, server, pool, database and user
//! (PgBouncer: `PgSocket`, `PgPool`, `PgDatabase`, `PgUser`, without the I/O parts).

use std::collections::VecDeque;
use std::sync::Arc;

use crate::config::PoolSettings;
use crate::ids::{ClientId, PoolKey, ServerId};
use crate::stats::PoolStats;
use crate::time::Instant;

/// Client states. PgBouncer: `CL_LOGIN`, `CL_ACTIVE`, `CL_WAITING`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientState {
    /// Sent its startup packet, not yet authenticated.
    Login,
    /// Logged in; linked to a server or idle.
    Active,
    /// Queued for a server.
    Waiting,
}

impl ClientState {
    /// The state name `SHOW CLIENTS` prints (`idle` for an unlinked active client).
    pub fn show_name(self, linked: bool) -> &'static str {
        match self {
            ClientState::Login => "login",
            ClientState::Active if linked => "active",
            ClientState::Active => "idle",
            ClientState::Waiting => "waiting",
        }
    }
}

/// Server states. PgBouncer: `SV_LOGIN`, `SV_IDLE`, `SV_ACTIVE`, `SV_TESTED`,
/// `SV_BEING_CANCELED` (`SV_USED` is derived: an idle server due for a check).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    /// Connecting and logging in.
    Login,
    /// In the pool, unlinked.
    Idle,
    /// Linked to a client.
    Active,
    /// Running the reset or check query.
    Tested,
    /// Released by its client while a cancel request for it is still being forwarded:
    /// kept out of the pool until the cancel is done, so it cannot cancel the next
    /// client's query. PgBouncer: `SV_BEING_CANCELED`.
    BeingCanceled,
}

#[derive(Debug)]
pub(crate) struct Client {
    pub(crate) pool: usize,
    pub(crate) login_user: Arc<str>,
    pub(crate) state: ClientState,
    pub(crate) link: Option<ServerId>,
    pub(crate) connect_time: Instant,
    /// When it started waiting, or when it last became idle.
    pub(crate) request_time: Instant,
    /// The cancel key, valid when `has_cancel_key` (kept as two fields rather than an
    /// `Option<u64>`, which would take 16 bytes, in every client entry).
    pub(crate) cancel_key: u64,
    pub(crate) has_cancel_key: bool,
    /// It waits for (or has) a replication server of its own.
    pub(crate) replication: bool,
    /// It waits with its welcome sent and has not been told yet that it is queued
    /// (`query_wait_notify`).
    pub(crate) wait_notice: bool,
    /// Where the embedder serves it (`Pooler::set_client_locality`; 0 by default).
    pub(crate) locality: u16,
    /// Times a waiting client of another locality was served before it while it was
    /// first in the queue (bounded by `MAX_BYPASS`).
    pub(crate) bypassed: u8,
}

impl Client {
    /// The client's cancel key, once it has logged in.
    pub(crate) fn cancel_key(&self) -> Option<u64> {
        self.has_cancel_key.then_some(self.cancel_key)
    }
}

#[derive(Debug)]
pub(crate) struct Server {
    pub(crate) pool: usize,
    pub(crate) state: ServerState,
    pub(crate) link: Option<ClientId>,
    pub(crate) connect_time: Instant,
    /// When it went idle (or started its current state).
    pub(crate) state_since: Instant,
    pub(crate) close_needed: bool,
    /// Cancel requests forwarded to it and not finished yet.
    pub(crate) cancels: u32,
    /// A client used it since it was last checked (or opened): due for
    /// `server_check_query` once idle `server_check_delay` (PgBouncer's SV_USED).
    /// A fresh or just-checked server is not checked again.
    pub(crate) used: bool,
    /// Its current `Tested` state is a check (not a reset).
    pub(crate) checking: bool,
    /// A replication client's own server: never idle, never shared.
    pub(crate) replication: bool,
    /// The locality of the client it last served (servers move with their client).
    pub(crate) locality: u16,
}

/// Counters of one pool by state, PgBouncer's `SHOW POOLS` names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) cl_login: u32,
    pub(crate) cl_active: u32,
    pub(crate) cl_waiting: u32,
    pub(crate) sv_login: u32,
    pub(crate) sv_idle: u32,
    pub(crate) sv_active: u32,
    pub(crate) sv_tested: u32,
    pub(crate) sv_being_canceled: u32,
}

impl Counts {
    pub(crate) fn servers(&self) -> u32 {
        self.sv_login + self.sv_idle + self.sv_active + self.sv_tested + self.sv_being_canceled
    }

    pub(crate) fn clients(&self) -> u32 {
        self.cl_login + self.cl_active + self.cl_waiting
    }

    pub(crate) fn client_slot(&mut self, s: ClientState) -> &mut u32 {
        match s {
            ClientState::Login => &mut self.cl_login,
            ClientState::Active => &mut self.cl_active,
            ClientState::Waiting => &mut self.cl_waiting,
        }
    }

    pub(crate) fn server_slot(&mut self, s: ServerState) -> &mut u32 {
        match s {
            ServerState::Login => &mut self.sv_login,
            ServerState::Idle => &mut self.sv_idle,
            ServerState::Active => &mut self.sv_active,
            ServerState::Tested => &mut self.sv_tested,
            ServerState::BeingCanceled => &mut self.sv_being_canceled,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Pool {
    pub(crate) key: PoolKey,
    pub(crate) settings: PoolSettings,
    pub(crate) counts: Counts,
    /// FIFO of waiting clients (may hold ids that left the queue; checked on pop).
    pub(crate) waiting: VecDeque<ClientId>,
    /// Idle servers, most recently released at the back.
    pub(crate) idle: VecDeque<ServerId>,
    pub(crate) stats: PoolStats,
    /// Last failed server login: until when new logins are held back, and the error.
    pub(crate) login_failure: Option<LoginFailure>,
    /// A server login succeeded, and none failed since, nor did the database's target
    /// change (RECONNECT): logins may then run in parallel. Until then one runs at a
    /// time, as PgBouncer always does, so a bad host or password fails once, not once
    /// per waiting client.
    pub(crate) proven: bool,
    /// The database's pause/close state is in `Database`; this marks RECONNECT epochs.
    pub(crate) last_used: Instant,
    /// Since when the timer has seen it without clients or servers (auto-databases are
    /// freed after `autodb_idle_timeout` of that).
    pub(crate) empty_since: Option<Instant>,
}

#[derive(Debug, Clone)]
pub(crate) struct LoginFailure {
    pub(crate) until: Instant,
    pub(crate) message: String,
}

impl Pool {
    /// A login is in flight and the pool is not [`Pool::proven`]: no other may start.
    pub(crate) fn login_in_flight_alone(&self) -> bool {
        !self.proven && self.counts.sv_login > 0
    }

    pub(crate) fn new(key: PoolKey, settings: PoolSettings, now: Instant) -> Self {
        Pool {
            key,
            settings,
            counts: Counts::default(),
            waiting: VecDeque::new(),
            idle: VecDeque::new(),
            stats: PoolStats::default(),
            login_failure: None,
            proven: false,
            last_used: now,
            empty_since: None,
        }
    }
}

/// Per-database state: pause, disable, and connection counts across its pools.
#[derive(Debug, Default)]
pub(crate) struct Database {
    pub(crate) paused: bool,
    pub(crate) disabled: bool,
    pub(crate) servers: u32,
    pub(crate) clients: u32,
    /// A PAUSE of this database is waiting for its servers to go.
    pub(crate) pause_pending: bool,
}

/// Per-user connection counts across pools.
#[derive(Debug, Default)]
pub(crate) struct User {
    pub(crate) servers: u32,
    pub(crate) clients: u32,
}
