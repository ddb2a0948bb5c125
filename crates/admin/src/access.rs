//! Who may run what (mirrors the `admin->admin_user` checks in PgBouncer's admin.c):
//! `stats_users` may run every SHOW except `SHOW FDS`, and SET of a fake GUC; everything
//! else needs `admin_users` (or the same-UID `pgbouncer` user on the unix socket).

use crate::command::{Command, Show};
use crate::error::AdminError;
use crate::parse::parse_stages;

/// The right a command needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Access {
    /// `stats_users` or `admin_users`.
    Stats,
    /// `admin_users` only.
    Admin,
}

/// The right `cmd` needs.
pub fn required_access(cmd: &Command) -> Access {
    match cmd {
        Command::Show(Show::Fds) => Access::Admin,
        Command::Show(_) | Command::FakeGuc(_) | Command::SetFakeGuc(_) => Access::Stats,
        _ => Access::Admin,
    }
}

/// `Err(admin access needed)` unless the console user may run `cmd`. A user that is neither
/// (who should not have got past login) may run nothing.
pub fn check_access(cmd: &Command, is_admin: bool, is_stats: bool) -> Result<(), AdminError> {
    let allowed = match required_access(cmd) {
        Access::Stats => is_admin || is_stats,
        Access::Admin => is_admin,
    };
    if allowed {
        Ok(())
    } else {
        Err(AdminError::admin_access_needed())
    }
}

/// [`parse`](crate::parse) and [`check_access`] with PgBouncer's error order: syntax errors
/// and `bad arguments` first, then `admin access needed`, then argument errors of admin
/// commands (`a database is required`, `invalid client pointer supplied`).
pub fn parse_checked(sql: &str, is_admin: bool, is_stats: bool) -> Result<Command, AdminError> {
    match parse_stages(sql)? {
        Ok(cmd) => check_access(&cmd, is_admin, is_stats).map(|()| cmd),
        Err(_) if !is_admin => Err(AdminError::admin_access_needed()),
        Err(e) => Err(e),
    }
}
