//! `AdminError`: every error text the admin console sends, in one place (mirrors the
//! `admin_error(...)` calls of PgBouncer's admin.c).
//!
//! Console errors are ErrorResponse with severity `ERROR` and SQLSTATE `08P01`, and the
//! connection stays open; the one exception is a failed RELOAD (`F0000`).

use thiserror::Error;

/// SQLSTATE of every console error but a failed RELOAD (protocol_violation).
pub const CODE_PROTOCOL_VIOLATION: &str = "08P01";
/// SQLSTATE of a failed RELOAD (config_file_error).
pub const CODE_CONFIG_FILE_ERROR: &str = "F0000";

/// An error answer of the admin console: sent as ErrorResponse `S=ERROR C=code M=message`,
/// then ReadyForQuery.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{message}")]
pub struct AdminError {
    /// SQLSTATE: `08P01`, or `F0000` for a failed RELOAD.
    pub code: &'static str,
    /// PgBouncer's exact message text.
    pub message: String,
}

impl AdminError {
    fn new(message: impl Into<String>) -> Self {
        AdminError {
            code: CODE_PROTOCOL_VIOLATION,
            message: message.into(),
        }
    }

    /// `invalid command '<query>', use SHOW HELP;` (the query as received).
    pub fn invalid_command(query: &str) -> Self {
        Self::new(format!("invalid command '{query}', use SHOW HELP;"))
    }

    /// `bad arguments`: a word or value over PgBouncer's length limits, or an empty SET key.
    pub fn bad_arguments() -> Self {
        Self::new("bad arguments")
    }

    /// `admin access needed`.
    pub fn admin_access_needed() -> Self {
        Self::new("admin access needed")
    }

    /// `no such database: <db>`.
    pub fn no_such_database(db: &str) -> Self {
        Self::new(format!("no such database: {db}"))
    }

    /// `already suspended/paused`.
    pub fn already_paused() -> Self {
        Self::new("already suspended/paused")
    }

    /// `pooler is not paused/suspended` (global RESUME while running).
    pub fn not_paused() -> Self {
        Self::new("pooler is not paused/suspended")
    }

    /// `pooler is shutting down` (RESUME during SHUTDOWN WAIT_*).
    pub fn shutting_down() -> Self {
        Self::new("pooler is shutting down")
    }

    /// `database <db> is not paused`.
    pub fn database_not_paused(db: &str) -> Self {
        Self::new(format!("database {db} is not paused"))
    }

    /// `cannot pause admin db: <db>`.
    pub fn cannot_pause_admin_db(db: &str) -> Self {
        Self::new(format!("cannot pause admin db: {db}"))
    }

    /// `cannot reconnect admin db: <db>`.
    pub fn cannot_reconnect_admin_db(db: &str) -> Self {
        Self::new(format!("cannot reconnect admin db: {db}"))
    }

    /// `cannot kill admin db: <db>`.
    pub fn cannot_kill_admin_db(db: &str) -> Self {
        Self::new(format!("cannot kill admin db: {db}"))
    }

    /// `cannot wait in admin db: <db>`.
    pub fn cannot_wait_in_admin_db(db: &str) -> Self {
        Self::new(format!("cannot wait in admin db: {db}"))
    }

    /// `cannot disable admin db: <db>`.
    pub fn cannot_disable_admin_db(db: &str) -> Self {
        Self::new(format!("cannot disable admin db: {db}"))
    }

    /// `cannot enable admin db: <db>`.
    pub fn cannot_enable_admin_db(db: &str) -> Self {
        Self::new(format!("cannot enable admin db: {db}"))
    }

    /// `cannot suspend with paused databases`.
    pub fn cannot_suspend_with_paused_databases() -> Self {
        Self::new("cannot suspend with paused databases")
    }

    /// `a database is required` (DISABLE / ENABLE without an argument).
    pub fn database_required() -> Self {
        Self::new("a database is required")
    }

    /// `client not found` (KILL_CLIENT with an unknown id).
    pub fn client_not_found() -> Self {
        Self::new("client not found")
    }

    /// `invalid client pointer supplied` (KILL_CLIENT with a non-number).
    pub fn invalid_client_pointer() -> Self {
        Self::new("invalid client pointer supplied")
    }

    /// `SET failed` (unknown or invalid `[pgbouncer]` key or value).
    pub fn set_failed() -> Self {
        Self::new("SET failed")
    }

    /// `RELOAD failed, see logs for additional details`, SQLSTATE `F0000`.
    pub fn reload_failed() -> Self {
        AdminError {
            code: CODE_CONFIG_FILE_ERROR,
            message: "RELOAD failed, see logs for additional details".into(),
        }
    }

    /// `extended query protocol not supported by admin console` (Parse/Bind/Execute; the
    /// daemon disconnects after sending it).
    pub fn extended_query_not_supported() -> Self {
        Self::new("extended query protocol not supported by admin console")
    }

    /// `unsupported packet type for admin console: <tag>` with the tag byte as a decimal
    /// number (the daemon disconnects after sending it).
    pub fn unsupported_packet(tag: u8) -> Self {
        Self::new(format!("unsupported packet type for admin console: {tag}"))
    }
}
