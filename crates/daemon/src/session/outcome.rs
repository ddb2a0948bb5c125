//! How a session ends, typed: whether the client is told (FATAL with a SQLSTATE) or
//! just closed, and the one table of texts PgBouncer uses for each ending (client.c
//! `disconnect_client` reasons). Pool-core's reasons, the protocol tracker's and the
//! decoder's keep their own tables; this file holds the session's.

use pgbouncer_pool_core::DisconnectReason;
use pgbouncer_protocol::link::LinkError;
use pgbouncer_protocol::DecodeError;

/// How a session ended.
#[derive(Debug)]
pub(crate) enum Exit {
    /// Close without a word; the reason is for the log.
    Quiet(Quiet),
    /// Send FATAL and close.
    Fatal(Fatal),
}

/// Endings the client is not told about (it left, or it is gone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Quiet {
    /// The client closed its socket.
    ClientEof,
    /// The client sent Terminate.
    ClientCloseRequest,
    /// A cancel request connection, handled.
    CancelRequest,
    /// The console's SHUTDOWN.
    AdminShutdown,
    /// SUSPEND gave up on a write the peer did not read (`suspend_timeout`).
    SuspendTimeout,
    /// A replication server ended its stream.
    ReplicationServerClosed,
    /// A console client sent a message type the console does not take.
    ConsoleUnsupportedPacket,
    /// A console client used the extended query protocol.
    ConsoleExtendedQuery,
    /// A cancel request answered the client's wait; the session goes on.
    CancelledWait,
    /// The TLS handshake failed (logged with its error; nothing can be said in clear).
    TlsHandshakeFailed,
}

/// Endings the client is told about with a FATAL ErrorResponse.
#[derive(Debug, Clone)]
pub(crate) enum Fatal {
    /// Pool-core disconnected the client (limits, timeouts, KILL, ...).
    Pool(DisconnectReason),
    /// The protocol tracker refused what a peer sent.
    Link(LinkError),
    /// The startup packet did not decode.
    Decode(DecodeError),
    /// The server refused the login; its SQLSTATE and text go to the client.
    Server {
        code: String,
        message: String,
    },
    /// Authentication failed (the text comes from `auth`).
    Auth(String),
    ClientLoginTimeout,
    BouncerConfigError,
    NotAllowed,
    NoUsername,
    UnsupportedStartupParameter(String),
    UnsupportedOptions,
    UnsupportedOptionsParameter(String),
    NoSuchDatabase(String),
    NoSuchUser,
    /// The server connection failed while linked.
    ServerConnCrashed,
    /// A tracked parameter's SET failed on the server.
    InvalidServerParameter(String),
    QueryTimeout,
    IdleTransactionTimeout,
    TransactionTimeout,
    /// `server_fast_close`: the server had to go after this transaction.
    DatabaseConfigurationChanged,
    /// A replication connection's own server login was refused.
    ReplicationLoginFailed,
    /// The auth_query's database is DISABLEd.
    AuthDatabaseDisabled(String),
    /// `client_tls_sslmode` requires TLS and the client started in clear text.
    SslRequired,
    /// Bytes came after the SSLRequest before the handshake (possibly injected).
    UnencryptedAfterSslRequest,
    /// As above, after a GSSENCRequest.
    UnencryptedAfterGssRequest,
}

impl Exit {
    /// The `/metrics` reason when this ended a login, `None` for endings that are not
    /// a failed login.
    pub(crate) fn login_failure(&self) -> Option<crate::http::LoginFailure> {
        use crate::http::LoginFailure as L;
        Some(match self {
            Exit::Quiet(Quiet::TlsHandshakeFailed) => L::Tls,
            Exit::Quiet(_) => return None,
            Exit::Fatal(f) => match f {
                Fatal::Auth(_) => L::Auth,
                Fatal::NoSuchUser => L::NoSuchUser,
                Fatal::NoSuchDatabase(_) => L::NoSuchDatabase,
                Fatal::NotAllowed => L::NotAllowed,
                Fatal::Pool(DisconnectReason::ShuttingDown) => L::Unavailable,
                Fatal::Pool(_) => L::Limit,
                Fatal::ClientLoginTimeout => L::Timeout,
                Fatal::SslRequired
                | Fatal::UnencryptedAfterSslRequest
                | Fatal::UnencryptedAfterGssRequest => L::Tls,
                Fatal::Server { .. } | Fatal::ReplicationLoginFailed => L::Server,
                Fatal::Decode(_)
                | Fatal::NoUsername
                | Fatal::UnsupportedStartupParameter(_)
                | Fatal::UnsupportedOptions
                | Fatal::UnsupportedOptionsParameter(_) => L::BadStartup,
                Fatal::BouncerConfigError | Fatal::AuthDatabaseDisabled(_) => L::Unavailable,
                _ => return None,
            },
        })
    }
}

impl Quiet {
    /// The `closing because:` text.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Quiet::ClientEof => "client unexpected eof",
            Quiet::ClientCloseRequest => "client close request",
            Quiet::CancelRequest => "cancel request",
            Quiet::AdminShutdown => "admin shutdown",
            Quiet::SuspendTimeout => crate::flush::SUSPEND_TIMEOUT,
            Quiet::ReplicationServerClosed => "server closed the replication connection",
            Quiet::ConsoleUnsupportedPacket => "unsupported packet type for admin console",
            Quiet::ConsoleExtendedQuery => "extended query protocol not supported by admin console",
            Quiet::CancelledWait => "cancel request",
            Quiet::TlsHandshakeFailed => "TLS handshake failed",
        }
    }
}

impl Fatal {
    /// The SQLSTATE sent with the error.
    pub(crate) fn sqlstate(&self) -> &str {
        match self {
            Fatal::Pool(r) => r.sqlstate(),
            Fatal::Server { code, .. } => code,
            _ => "08P01",
        }
    }

    /// The message sent with the error (PgBouncer's text).
    pub(crate) fn message(&self) -> String {
        match self {
            Fatal::Pool(r) => r.message(),
            Fatal::Link(e) => e.pgbouncer_message(),
            Fatal::Decode(e) => e.pgbouncer_message(),
            Fatal::Server { message, .. } => message.clone(),
            Fatal::Auth(text) => text.clone(),
            Fatal::ClientLoginTimeout => "client_login_timeout".into(),
            Fatal::BouncerConfigError => "bouncer config error".into(),
            Fatal::NotAllowed => "not allowed".into(),
            Fatal::NoUsername => "no username supplied".into(),
            Fatal::UnsupportedStartupParameter(k) => format!("unsupported startup parameter: {k}"),
            Fatal::UnsupportedOptions => "unsupported options startup parameter: only '-c config=val' and '--config=val' are allowed".into(),
            Fatal::UnsupportedOptionsParameter(k) => {
                format!("unsupported startup parameter in options: {k}")
            }
            Fatal::NoSuchDatabase(db) => format!("no such database: {db}"),
            Fatal::NoSuchUser => "no such user".into(),
            Fatal::ServerConnCrashed => "server conn crashed?".into(),
            Fatal::InvalidServerParameter(e) => format!("invalid server parameter: {e}"),
            Fatal::QueryTimeout => "query timeout".into(),
            Fatal::IdleTransactionTimeout => "idle transaction timeout".into(),
            Fatal::TransactionTimeout => "transaction timeout".into(),
            Fatal::DatabaseConfigurationChanged => "database configuration changed".into(),
            Fatal::SslRequired => "SSL required".into(),
            Fatal::ReplicationLoginFailed => "login failed".into(),
            Fatal::AuthDatabaseDisabled(db) => {
                format!("authentication database \"{db}\" is disabled")
            }
            Fatal::UnencryptedAfterSslRequest => {
                "received unencrypted data after SSL request".into()
            }
            Fatal::UnencryptedAfterGssRequest => {
                "received unencrypted data after GSSAPI encryption request".into()
            }
        }
    }
}

impl Exit {
    /// The `closing because:` text of the log line.
    pub(crate) fn reason(&self) -> std::borrow::Cow<'static, str> {
        match self {
            Exit::Quiet(q) => q.reason().into(),
            Exit::Fatal(f) => f.message().into(),
        }
    }
}

impl From<Fatal> for Exit {
    fn from(f: Fatal) -> Exit {
        Exit::Fatal(f)
    }
}

impl From<Quiet> for Exit {
    fn from(q: Quiet) -> Exit {
        Exit::Quiet(q)
    }
}

impl From<LinkError> for Exit {
    fn from(e: LinkError) -> Exit {
        Exit::Fatal(Fatal::Link(e))
    }
}

impl From<DisconnectReason> for Exit {
    fn from(r: DisconnectReason) -> Exit {
        Exit::Fatal(Fatal::Pool(r))
    }
}
