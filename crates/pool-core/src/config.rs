//! The plain configuration pool-core runs on: durations and integers, no file format.
//!
//! Field names are PgBouncer's ini keys. The daemon parses `pgbouncer.ini` and converts it
//! to this struct; pool-core never sees the ini text (mirrors `bouncer_params[]` in main.c
//! for the pooling-related keys only).

use std::time::Duration;

/// How long a server stays with one client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PoolMode {
    /// Released when the client disconnects.
    Session,
    /// Released when a transaction finishes (ReadyForQuery idle).
    Transaction,
    /// Released after every statement; transactions are refused.
    Statement,
}

impl PoolMode {
    /// PgBouncer's name, as in `SHOW POOLS`.
    pub fn as_str(self) -> &'static str {
        match self {
            PoolMode::Session => "session",
            PoolMode::Transaction => "transaction",
            PoolMode::Statement => "statement",
        }
    }

    /// Parses PgBouncer's name, case-insensitively.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "session" => Some(PoolMode::Session),
            "transaction" => Some(PoolMode::Transaction),
            "statement" => Some(PoolMode::Statement),
            _ => None,
        }
    }
}

/// One `[databases]` entry, as far as pooling is concerned.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DatabaseConfig {
    /// The name clients connect to.
    pub name: String,
    /// Forced server user (`user=` in the connection string): every client of this
    /// database shares one pool logged in as this user.
    pub forced_user: Option<String>,
    /// Per-database `pool_size`.
    pub pool_size: Option<u32>,
    /// Per-database `min_pool_size`.
    pub min_pool_size: Option<u32>,
    /// Per-database `reserve_pool_size`.
    pub reserve_pool_size: Option<u32>,
    /// Per-database `pool_mode`.
    pub pool_mode: Option<PoolMode>,
    /// Per-database `max_db_connections` (0 or unset: the global value).
    pub max_db_connections: Option<u32>,
    /// Per-database `max_db_client_connections`.
    pub max_db_client_connections: Option<u32>,
    /// Per-database `server_lifetime`.
    pub server_lifetime: Option<Duration>,
    /// Per-database `query_wait_timeout`.
    pub query_wait_timeout: Option<Duration>,
}

/// One `[users]` entry.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UserConfig {
    /// The user name.
    pub name: String,
    /// Per-user `pool_mode` (beats the database's).
    pub pool_mode: Option<PoolMode>,
    /// Per-user `pool_size` (beats the database's).
    pub pool_size: Option<u32>,
    /// Per-user `reserve_pool_size`.
    pub reserve_pool_size: Option<u32>,
    /// Per-user `max_user_connections`.
    pub max_user_connections: Option<u32>,
    /// Per-user `max_user_client_connections`.
    pub max_user_client_connections: Option<u32>,
    /// Per-user `query_wait_timeout` (beats the database's).
    pub query_wait_timeout: Option<Duration>,
    /// Per-user `client_idle_timeout`.
    pub client_idle_timeout: Option<Duration>,
}

/// Everything pool-core needs to know; names follow PgBouncer's keys.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Default pool mode.
    pub pool_mode: PoolMode,
    /// Servers per pool; 0 = unlimited.
    pub default_pool_size: u32,
    /// Servers kept open per pool even when idle.
    pub min_pool_size: u32,
    /// Extra servers a pool may open once a client has waited `reserve_pool_timeout`.
    pub reserve_pool_size: u32,
    /// How long a client waits before the reserve pool is used; zero disables it.
    pub reserve_pool_timeout: Duration,
    /// Maximum client connections (all databases, login included).
    pub max_client_conn: u32,
    /// Server connections per database (all users); 0 = unlimited.
    pub max_db_connections: u32,
    /// Server connections per user (all databases); 0 = unlimited.
    pub max_user_connections: u32,
    /// Client connections per database; 0 = unlimited.
    pub max_db_client_connections: u32,
    /// Client connections per user; 0 = unlimited.
    pub max_user_client_connections: u32,
    /// LIFO (false) or FIFO (true) reuse of idle servers.
    pub server_round_robin: bool,
    /// Close a server once it is older than this, when it is released; zero: use once.
    pub server_lifetime: Duration,
    /// Close servers idle this long; zero disables.
    pub server_idle_timeout: Duration,
    /// Connect plus login must finish within this.
    pub server_connect_timeout: Duration,
    /// After a failed login, wait this long before trying again.
    pub server_login_retry: Duration,
    /// Idle time after which a server is checked before reuse.
    pub server_check_delay: Duration,
    /// Whether a check query is configured (empty `server_check_query` disables checks).
    pub server_check_enabled: bool,
    /// Whether a reset query is configured (empty `server_reset_query` disables it).
    pub server_reset_enabled: bool,
    /// Run the reset query in transaction and statement modes too.
    pub server_reset_query_always: bool,
    /// Session mode: a server marked for closing (RECONNECT) is closed right after the
    /// current transaction, together with its client.
    pub server_fast_close: bool,
    /// Longest wait in the queue.
    pub query_wait_timeout: Duration,
    /// A client with its welcome that has waited in the queue for more than this many
    /// whole seconds is told so, once per wait ([`Action::NotifyWaiting`]); zero
    /// disables.
    ///
    /// [`Action::NotifyWaiting`]: crate::Action::NotifyWaiting
    pub query_wait_notify: Duration,
    /// Longest query (disconnects client and server); zero disables.
    pub query_timeout: Duration,
    /// Disconnect clients unlinked and idle this long; zero disables.
    pub client_idle_timeout: Duration,
    /// Disconnect clients that do not finish login in time; zero disables.
    pub client_login_timeout: Duration,
    /// Disconnect clients idle in a transaction this long; zero disables.
    pub idle_transaction_timeout: Duration,
    /// Averages window for stats.
    pub stats_period: Duration,
    /// A pool of a database not in [`Config::databases`] (an auto-database, `*`) that has
    /// had no client and no server this long is freed; zero disables.
    pub autodb_idle_timeout: Duration,
    /// Any other pool with no client and no server this long is freed too (PgBouncer
    /// 1.26 `pool_idle_timeout`), except a forced-user pool that `min_pool_size` keeps
    /// filled; zero disables.
    pub pool_idle_timeout: Duration,
    /// The `[databases]` entries.
    pub databases: Vec<DatabaseConfig>,
    /// The `[users]` entries.
    pub users: Vec<UserConfig>,
}

impl Default for Config {
    /// PgBouncer's defaults.
    fn default() -> Self {
        Config {
            pool_mode: PoolMode::Session,
            default_pool_size: 20,
            min_pool_size: 0,
            reserve_pool_size: 0,
            reserve_pool_timeout: Duration::from_secs(5),
            max_client_conn: 100,
            max_db_connections: 0,
            max_user_connections: 0,
            max_db_client_connections: 0,
            max_user_client_connections: 0,
            server_round_robin: false,
            server_lifetime: Duration::from_secs(3600),
            server_idle_timeout: Duration::from_secs(600),
            server_connect_timeout: Duration::from_secs(15),
            server_login_retry: Duration::from_secs(15),
            server_check_delay: Duration::from_secs(30),
            server_check_enabled: true,
            server_reset_enabled: true,
            server_reset_query_always: false,
            server_fast_close: false,
            query_wait_timeout: Duration::from_secs(120),
            query_wait_notify: Duration::from_secs(5),
            query_timeout: Duration::ZERO,
            client_idle_timeout: Duration::ZERO,
            client_login_timeout: Duration::from_secs(60),
            idle_transaction_timeout: Duration::ZERO,
            stats_period: Duration::from_secs(60),
            autodb_idle_timeout: Duration::from_secs(3600),
            pool_idle_timeout: Duration::ZERO,
            databases: Vec::new(),
            users: Vec::new(),
        }
    }
}

impl Config {
    /// How long a wait lasts before its client is told it is queued: more than
    /// `query_wait_notify` whole seconds, as PgBouncer counts them. Zero: never.
    pub(crate) fn wait_notice_after(&self) -> Duration {
        if self.query_wait_notify.is_zero() {
            Duration::ZERO
        } else {
            Duration::from_secs(self.query_wait_notify.as_secs() + 1)
        }
    }

    /// The `[databases]` entry called `name`.
    pub fn database(&self, name: &str) -> Option<&DatabaseConfig> {
        self.databases.iter().find(|d| d.name == name)
    }

    /// The `[users]` entry called `name`.
    pub fn user(&self, name: &str) -> Option<&UserConfig> {
        self.users.iter().find(|u| u.name == name)
    }

    /// Effective settings of the pool for `database` and `user`: user beats database
    /// beats global, as in PgBouncer.
    pub fn pool_settings(&self, database: &str, user: &str) -> PoolSettings {
        let db = self.database(database);
        let us = self.user(user);
        let pool_mode = us
            .and_then(|u| u.pool_mode)
            .or_else(|| db.and_then(|d| d.pool_mode))
            .unwrap_or(self.pool_mode);
        let pool_size = us
            .and_then(|u| u.pool_size)
            .or_else(|| db.and_then(|d| d.pool_size))
            .unwrap_or(self.default_pool_size);
        let reserve_pool_size = us
            .and_then(|u| u.reserve_pool_size)
            .or_else(|| db.and_then(|d| d.reserve_pool_size))
            .unwrap_or(self.reserve_pool_size);
        let min_pool_size = db
            .and_then(|d| d.min_pool_size)
            .unwrap_or(self.min_pool_size);
        let server_lifetime = db
            .and_then(|d| d.server_lifetime)
            .unwrap_or(self.server_lifetime);
        let query_wait_timeout = us
            .and_then(|u| u.query_wait_timeout)
            .or_else(|| db.and_then(|d| d.query_wait_timeout))
            .unwrap_or(self.query_wait_timeout);
        let client_idle_timeout = us
            .and_then(|u| u.client_idle_timeout)
            .unwrap_or(self.client_idle_timeout);
        PoolSettings {
            query_wait_timeout,
            client_idle_timeout,
            pool_mode,
            pool_size,
            reserve_pool_size,
            min_pool_size: if pool_size == 0 {
                min_pool_size
            } else {
                min_pool_size.min(pool_size)
            },
            server_lifetime,
        }
    }

    /// Effective `max_db_connections` for `database` (0 = unlimited).
    pub fn max_db_connections(&self, database: &str) -> u32 {
        match self.database(database).and_then(|d| d.max_db_connections) {
            Some(n) if n > 0 => n,
            _ => self.max_db_connections,
        }
    }

    /// Effective `max_user_connections` for `user` (0 = unlimited).
    pub fn max_user_connections(&self, user: &str) -> u32 {
        match self.user(user).and_then(|u| u.max_user_connections) {
            Some(n) if n > 0 => n,
            _ => self.max_user_connections,
        }
    }

    /// Effective `max_db_client_connections` for `database` (0 = unlimited).
    pub fn max_db_client_connections(&self, database: &str) -> u32 {
        match self
            .database(database)
            .and_then(|d| d.max_db_client_connections)
        {
            Some(n) if n > 0 => n,
            _ => self.max_db_client_connections,
        }
    }

    /// Effective `max_user_client_connections` for `user` (0 = unlimited).
    pub fn max_user_client_connections(&self, user: &str) -> u32 {
        match self.user(user).and_then(|u| u.max_user_client_connections) {
            Some(n) if n > 0 => n,
            _ => self.max_user_client_connections,
        }
    }
}

/// The resolved settings of one pool.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PoolSettings {
    /// Effective pool mode.
    pub pool_mode: PoolMode,
    /// Effective pool size; 0 = unlimited.
    pub pool_size: u32,
    /// Effective reserve.
    pub reserve_pool_size: u32,
    /// Effective minimum.
    pub min_pool_size: u32,
    /// Effective server lifetime.
    pub server_lifetime: Duration,
    /// Effective `query_wait_timeout` (user > database > global).
    pub query_wait_timeout: Duration,
    /// Effective `client_idle_timeout` (user > global).
    pub client_idle_timeout: Duration,
}
