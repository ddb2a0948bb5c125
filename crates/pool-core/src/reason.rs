//! Why pool-core disconnects a client or closes a server, with PgBouncer's exact texts.
//!
//! Every compatibility string lives here so it is reviewed in one place
//! (PgBouncer: the `disconnect_client`/`disconnect_server` call sites).

/// Why a client is disconnected. `message()` is the text PgBouncer sends in its FATAL
/// ErrorResponse; `sqlstate()` is the code (08P01 unless noted).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// `max_client_conn` reached.
    MaxClientConn,
    /// `max_db_client_connections` reached for the client's database.
    MaxDbClientConnections,
    /// `max_user_client_connections` reached for the client's user.
    MaxUserClientConnections,
    /// Waited longer than `query_wait_timeout` for a server.
    QueryWaitTimeout,
    /// `query_timeout` passed while the client was still queued.
    QueryTimeoutWaiting,
    /// `query_timeout` passed while the query ran on a server.
    QueryTimeout,
    /// Unlinked and idle longer than `client_idle_timeout`.
    ClientIdleTimeout,
    /// Did not finish logging in within `client_login_timeout`.
    ClientLoginTimeout,
    /// Idle in transaction longer than `idle_transaction_timeout`.
    IdleTransactionTimeout,
    /// The server login of the client's pool failed; carries the server's code and text.
    ServerLoginFailed {
        /// The server's SQLSTATE (or 08P01 for failures on our side).
        code: String,
        /// The server's message text.
        message: String,
    },
    /// A new server was needed inside the `server_login_retry` window.
    ServerLoginRetry {
        /// The text of the cached error.
        message: String,
    },
    /// The database is disabled (`DISABLE db`).
    DatabaseDisabled {
        /// The database name.
        database: String,
    },
    /// `KILL db`, or the database was removed by a reload.
    DatabaseRemoved,
    /// `KILL_CLIENT id`.
    AdminForcedDisconnect,
    /// The pooler is shutting down and this client may not stay.
    ShuttingDown,
    /// Queued when `SHUTDOWN WAIT_FOR_SERVERS` started.
    ServerShuttingDown,
    /// Statement pooling mode and the client opened a transaction.
    StatementModeTransaction,
    /// The client's server went away in a state that cannot be recovered.
    ServerConnectionLost,
}

impl DisconnectReason {
    /// The message text PgBouncer sends for this reason.
    pub fn message(&self) -> String {
        match self {
            Self::MaxClientConn => "no more connections allowed (max_client_conn)".into(),
            Self::MaxDbClientConnections => {
                "client connections exceeded (max_db_client_connections)".into()
            }
            Self::MaxUserClientConnections => {
                "client connections exceeded (max_user_client_connections)".into()
            }
            Self::QueryWaitTimeout => "query_wait_timeout".into(),
            Self::QueryTimeoutWaiting => "query_timeout".into(),
            Self::QueryTimeout => "query timeout".into(),
            Self::ClientIdleTimeout => "client_idle_timeout".into(),
            Self::ClientLoginTimeout => "client_login_timeout".into(),
            Self::IdleTransactionTimeout => "idle transaction timeout".into(),
            Self::ServerLoginFailed { message, .. } => message.clone(),
            Self::ServerLoginRetry { message } => format!(
                "server login has been failing, cached error: {message} (server_login_retry)"
            ),
            Self::DatabaseDisabled { database } => format!("database \"{database}\" is disabled"),
            Self::DatabaseRemoved => "database removed".into(),
            Self::AdminForcedDisconnect => "admin forced disconnect".into(),
            Self::ShuttingDown => "pooler is shutting down".into(),
            Self::ServerShuttingDown => "server shutting down".into(),
            Self::StatementModeTransaction => {
                "transaction blocks not allowed in statement pooling mode".into()
            }
            Self::ServerConnectionLost => "server conn crashed?".into(),
        }
    }

    /// The SQLSTATE sent with the message.
    pub fn sqlstate(&self) -> &str {
        match self {
            Self::ServerLoginFailed { code, .. } => code,
            _ => "08P01",
        }
    }
}

/// Why a server connection is closed. `message()` is PgBouncer's log wording
/// (`closing because: <message>`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerCloseReason {
    /// Older than `server_lifetime`.
    LifetimeOver,
    /// Idle longer than `server_idle_timeout`.
    IdleTimeout,
    /// Connect and login took longer than `server_connect_timeout`.
    ConnectTimeout,
    /// The client left while the server was in a transaction or had a query running.
    ClientDisconnectedDirty,
    /// The session released the server in a state it could not clean up.
    Dirty,
    /// The reset or check query failed.
    ResetFailed,
    /// More servers than the (reloaded) pool size allows.
    PoolShrink,
    /// Closed to make room under `max_db_connections` / `max_user_connections`.
    Evicted,
    /// RECONNECT, a config change, or PAUSE.
    CloseNeeded,
    /// The database was killed or removed.
    DatabaseRemoved,
    /// The linked client's `query_timeout` fired.
    QueryTimeout,
    /// The pooler shuts down.
    Shutdown,
}

impl ServerCloseReason {
    /// PgBouncer's wording for the log line.
    pub fn message(&self) -> &'static str {
        match self {
            Self::LifetimeOver => "server lifetime over",
            Self::IdleTimeout => "server idle timeout",
            Self::ConnectTimeout => "connect timeout",
            Self::ClientDisconnectedDirty => "client disconnect while server was not ready",
            Self::Dirty => "server was not clean",
            Self::ResetFailed => "server reset query failed",
            Self::PoolShrink => "too many servers in the pool",
            Self::Evicted => "evicted",
            Self::CloseNeeded => "database configuration changed",
            Self::DatabaseRemoved => "database removed",
            Self::QueryTimeout => "query timeout",
            Self::Shutdown => "pooler shutdown",
        }
    }
}
