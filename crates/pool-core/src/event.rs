//! The events pool-core takes and the actions it queues for its driver.
//!
//! Events are facts from the network or operator commands; actions are orders to the
//! daemon (or any other driver), named as imperatives.

use std::sync::Arc;

use crate::ids::{ClientId, PoolKey, ServerId};
use crate::reason::{DisconnectReason, ServerCloseReason};
use crate::stats::Usage;
use crate::Config;

/// A fact reported to [`Pooler::handle`](crate::Pooler::handle).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// A client sent its startup packet; it will use `pool` and logs in as `login_user`.
    /// Client limits are checked here (PgBouncer checks them after the StartupMessage).
    ClientConnected {
        /// The daemon-minted id.
        client: ClientId,
        /// The pool its queries will run on (forced user already applied).
        pool: PoolKey,
        /// The user name the client sent.
        login_user: Arc<str>,
    },
    /// The client passed authentication; `cancel_key` is the 8-byte key it was given.
    ClientLoggedIn {
        /// The client.
        client: ClientId,
        /// Its BackendKeyData, as one number (pid in the high 32 bits).
        cancel_key: u64,
    },
    /// The client has a query to run and needs a server.
    ClientWantsServer {
        /// The client.
        client: ClientId,
    },
    /// The client is done with its server. `reusable` is false when the session could not
    /// see the server return to an idle, clean state (the server is then closed).
    ClientReleasedServer {
        /// The client.
        client: ClientId,
        /// Whether the server may go back to the pool.
        reusable: bool,
        /// Work done since the last report.
        usage: Usage,
    },
    /// Work done by a linked client, reported without releasing (session mode).
    ClientUsage {
        /// The client.
        client: ClientId,
        /// Work done since the last report.
        usage: Usage,
    },
    /// The client connection is gone. A server still linked to it is closed.
    ClientClosed {
        /// The client.
        client: ClientId,
    },
    /// As `ClientWantsServer`, for a client that still waits for its welcome (no
    /// server parameters are cached for its pool yet): while logins are failing it waits
    /// for the next attempt instead of getting the cached error, as PgBouncer's clients
    /// waiting for the welcome do.
    ClientWantsWelcome {
        /// The client.
        client: ClientId,
    },
    /// A replication client (`replication=` in its startup packet) needs a server of its
    /// own: one that logs in with the replication parameter, serves only this client,
    /// and closes when it leaves. It counts toward `pool_size` like any server. When the
    /// pool is full an idle normal server of the pool is closed for it (`evicted`),
    /// else the client waits in the queue. Answered by `OpenReplicationServer`.
    ReplicationServerWanted {
        /// The client.
        client: ClientId,
    },
    /// SHUTDOWN WAIT_FOR_SERVERS (SIGINT): like a global PAUSE, and every client that
    /// waits for a server or asks for one from now on is told `server shutting down`;
    /// transactions running finish, released servers close, and `PauseDone` comes when
    /// none is left.
    ShutdownWaitForServers,
    /// A server could not be reached (connection refused, host unreachable, DNS, a
    /// failed TLS handshake): recorded as a failed login for `server_login_retry`, but
    /// the clients waiting on the pool keep waiting (for a server that comes up, or their
    /// own timeouts), as in PgBouncer. A login the server itself refused is
    /// `ServerConnectFailed`.
    ServerUnreachable {
        /// The server.
        server: ServerId,
        /// The reason, cached for `server login has been failing` errors.
        message: String,
    },
    /// A server the core asked for finished connecting and logging in.
    ServerConnected {
        /// The server.
        server: ServerId,
    },
    /// A server connect or login failed.
    ServerConnectFailed {
        /// The server.
        server: ServerId,
        /// SQLSTATE to give the waiting clients.
        code: String,
        /// Message to give the waiting clients.
        message: String,
    },
    /// A server finished its reset or check query; `ok` false closes it.
    ServerResetDone {
        /// The server.
        server: ServerId,
        /// Whether the query succeeded.
        ok: bool,
    },
    /// A server connection is gone (the daemon already dropped the socket).
    ServerClosed {
        /// The server.
        server: ServerId,
    },
    /// A cancel request arrived with this key.
    CancelRequested {
        /// The key from the CancelRequest packet.
        key: u64,
    },
    /// A cancel forwarded with [`Action::SendCancel`] is done (the server closed the
    /// cancel connection, or forwarding failed or timed out). Every `SendCancel` must be
    /// answered by one of these.
    CancelFinished {
        /// The server the cancel was for.
        server: ServerId,
    },
    /// PAUSE (all databases when `None`).
    Pause {
        /// The database, or all.
        database: Option<String>,
    },
    /// RESUME (all databases when `None`).
    Resume {
        /// The database, or all.
        database: Option<String>,
    },
    /// DISABLE db: new logins are refused.
    Disable {
        /// The database.
        database: String,
    },
    /// ENABLE db.
    Enable {
        /// The database.
        database: String,
    },
    /// KILL db (all when `None`): drop clients and servers, and pause.
    Kill {
        /// The database, or all.
        database: Option<String>,
    },
    /// KILL_CLIENT.
    KillClient {
        /// The client.
        client: ClientId,
    },
    /// RECONNECT db (all when `None`): close servers as soon as they are released.
    Reconnect {
        /// The database, or all.
        database: Option<String>,
    },
    /// A new configuration (RELOAD).
    Reload(Box<Config>),
}

/// An order to the driver, drained with [`Pooler::poll_action`](crate::Pooler::poll_action).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Action {
    /// Open a server connection for `pool`, then report `ServerConnected` or
    /// `ServerConnectFailed`.
    ConnectServer {
        /// The id minted for it.
        server: ServerId,
        /// Its pool.
        pool: PoolKey,
    },
    /// `server` is `client`'s replication server (see `ReplicationServerWanted`): it is
    /// already counted and linked; the client's session opens and uses it. It goes away
    /// with the client (`ClientClosed`), or earlier with `ServerClosed`.
    OpenReplicationServer {
        /// The replication client.
        client: ClientId,
        /// The id minted for its server.
        server: ServerId,
    },
    /// Give `server` to `client`.
    Link {
        /// The client.
        client: ClientId,
        /// The server, idle and clean.
        server: ServerId,
    },
    /// Run `server_reset_query` on `server`, then report `ServerResetDone`.
    ResetServer {
        /// The server.
        server: ServerId,
    },
    /// Run `server_check_query` on `server`, then report `ServerResetDone`.
    CheckServer {
        /// The server.
        server: ServerId,
    },
    /// Close `server`; pool-core has already forgotten it.
    CloseServer {
        /// The server.
        server: ServerId,
        /// Why.
        reason: ServerCloseReason,
    },
    /// Send `reason` to `client` as a FATAL error and close it; pool-core has already
    /// forgotten it (and any server it held).
    DisconnectClient {
        /// The client.
        client: ClientId,
        /// Why.
        reason: DisconnectReason,
    },
    /// Forward a cancel request for `client`'s query to `server`, then report
    /// [`Event::CancelFinished`]. Until then, if the client releases the server, it is
    /// held out of the pool (`BeingCanceled`).
    SendCancel {
        /// The client whose query is cancelled.
        client: ClientId,
        /// The server running it.
        server: ServerId,
    },
    /// `client` has waited in the queue for more than `query_wait_notify` seconds:
    /// tell it so (PgBouncer's NOTICE `No server connection available in postgres
    /// backend, client being queued`). Once per wait; it stays queued.
    NotifyWaiting {
        /// The client.
        client: ClientId,
    },
    /// `client` was waiting for a server and got cancelled: answer its pending request
    /// with a cancellation error; it is no longer queued.
    CancelWait {
        /// The client.
        client: ClientId,
    },
    /// `server_fast_close`: `server` (linked to `client`, session mode) must close as soon
    /// as its current transaction ends; the client is disconnected with it.
    CloseAfterTransaction {
        /// The client.
        client: ClientId,
        /// Its server.
        server: ServerId,
    },
    /// A PAUSE finished: no server of `database` (all when `None`) is in use any more.
    PauseDone {
        /// The database, or all.
        database: Option<String>,
    },
    /// A pool was freed after `autodb_idle_timeout` (an auto-database) or
    /// `pool_idle_timeout` without clients or servers: whatever the driver keeps per
    /// pool may go too.
    PoolFreed {
        /// The freed pool.
        pool: PoolKey,
        /// How long it had been empty.
        idle: std::time::Duration,
        /// It belonged to an auto-database (`*`).
        auto: bool,
    },
}
