//! What a parsed command makes the daemon do, with PgBouncer's state checks and their
//! error texts (mirrors the `admin_cmd_*` functions of PgBouncer's admin.c).
//!
//! [`plan`] is pure: it reads the pooler and two daemon flags and returns an [`Effect`];
//! the daemon feeds the events to the pooler, does the I/O, and sends the reply.

use pgbouncer_pool_core::{ClientId, Event, Instant, Pooler};

use crate::command::{Command, Show, ShutdownMode};
use crate::error::AdminError;
use crate::guc::{fake_guc, set_fake_guc};
use crate::reply::Reply;
use crate::show::ADMIN_DB;

/// The daemon-side state the checks need besides the pooler.
#[derive(Debug, Clone, Copy)]
pub struct ControlState<'a> {
    /// The pooler (pause, disable and client state).
    pub pooler: &'a Pooler,
    /// SUSPEND is in force.
    pub suspended: bool,
    /// A `SHUTDOWN WAIT_*` (or SIGINT/SIGTERM) is in progress.
    pub shutting_down: bool,
}

/// What the daemon does for one command that passed [`plan`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Effect {
    /// Send this reply now (fake GUC SHOW / SET).
    Reply(Reply),
    /// Build a [`Snapshot`](crate::Snapshot) and send [`show`](crate::show)'s reply.
    Show(Show),
    /// Feed `events` to the pooler, then reply `Reply::Tag(tag)` at once (DISABLE, ENABLE,
    /// RECONNECT, KILL, KILL_CLIENT).
    Apply {
        /// The events, in order.
        events: Vec<Event>,
        /// The CommandComplete tag.
        tag: String,
    },
    /// Feed `Event::Pause { database }`; reply tag `PAUSE` when the pooler queues
    /// `Action::PauseDone` with the same `database` (it does so at once when no server is
    /// in use). ReadyForQuery waits too: the console blocks, as in PgBouncer.
    Pause {
        /// The database, or all.
        database: Option<String>,
    },
    /// Global (`None`): end SUSPEND if in force (resume reading sockets). Then feed
    /// `Event::Resume { database }` and reply tag `RESUME`.
    Resume {
        /// The database, or all.
        database: Option<String>,
    },
    /// Flush socket buffers, stop reading and accepting, then reply `SUSPEND` (dropping
    /// sockets not flushed within `suspend_timeout`). If this console disconnects while
    /// suspended, resume.
    Suspend,
    /// Reply `WAIT_CLOSE` once [`wait_close_done`] holds for `database` (checked after each
    /// pooler step).
    WaitClose {
        /// The database, or all.
        database: Option<String>,
    },
    /// `Immediate`: exit now, no reply. `WaitForServers`: feed `Event::Pause { database:
    /// None }`, close TCP listeners, reply `SHUTDOWN`, exit when no server remains.
    /// `WaitForClients`: close TCP listeners, reply `SHUTDOWN`, exit when no client remains.
    Shutdown(ShutdownMode),
    /// Reload the config files, feed `Event::Reload`, reply `RELOAD`, or
    /// [`AdminError::reload_failed`] if the files are bad (keep the old config).
    Reload,
    /// Apply the `[pgbouncer]` setting, then reply [`Reply::set_done`]`(key, value)`, or
    /// [`AdminError::set_failed`] for an unknown key or bad value. Keys that need a restart
    /// are accepted and ignored, as in PgBouncer.
    Set {
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
}

/// Checks `cmd` against the current state and says what to do. `database_exists` answers
/// for `[databases]` entries and, with a `*` entry, any name (PgBouncer's
/// `find_or_register_database`). Access must be checked before (see
/// [`parse_checked`](crate::parse_checked)).
pub fn plan(
    cmd: Command,
    state: &ControlState<'_>,
    database_exists: impl Fn(&str) -> bool,
) -> Result<Effect, AdminError> {
    let pooler = state.pooler;
    let globally_paused = state.suspended || pooler.is_paused(None);
    let target = |db: &str, admin_err: fn(&str) -> AdminError| {
        if db == ADMIN_DB {
            Err(admin_err(db))
        } else if !database_exists(db) {
            Err(AdminError::no_such_database(db))
        } else {
            Ok(())
        }
    };
    let apply = |event: Event, tag: &str| Effect::Apply {
        events: vec![event],
        tag: tag.to_owned(),
    };
    Ok(match cmd {
        Command::Show(s) => Effect::Show(s),
        Command::FakeGuc(name) => Effect::Reply(fake_guc(&name)),
        Command::SetFakeGuc(_) => Effect::Reply(set_fake_guc()),
        Command::Pause(database) => {
            if globally_paused {
                return Err(AdminError::already_paused());
            }
            if let Some(db) = &database {
                target(db, AdminError::cannot_pause_admin_db)?;
            }
            Effect::Pause { database }
        }
        Command::Resume(None) => {
            if state.shutting_down {
                return Err(AdminError::shutting_down());
            }
            if !globally_paused {
                return Err(AdminError::not_paused());
            }
            Effect::Resume { database: None }
        }
        Command::Resume(Some(db)) => {
            if !database_exists(&db) && db != ADMIN_DB {
                return Err(AdminError::no_such_database(&db));
            }
            if db == ADMIN_DB || !pooler.is_paused(Some(&db)) {
                return Err(AdminError::database_not_paused(&db));
            }
            Effect::Resume { database: Some(db) }
        }
        Command::Suspend => {
            if globally_paused {
                return Err(AdminError::already_paused());
            }
            let any_paused = pooler
                .pools(Instant::ZERO)
                .any(|p| pooler.is_paused(Some(&p.key.database)));
            if any_paused {
                return Err(AdminError::cannot_suspend_with_paused_databases());
            }
            Effect::Suspend
        }
        Command::Disable(db) => {
            target(&db, AdminError::cannot_disable_admin_db)?;
            apply(Event::Disable { database: db }, "DISABLE")
        }
        Command::Enable(db) => {
            target(&db, AdminError::cannot_enable_admin_db)?;
            apply(Event::Enable { database: db }, "ENABLE")
        }
        Command::Reconnect(database) => {
            if let Some(db) = &database {
                target(db, AdminError::cannot_reconnect_admin_db)?;
            }
            apply(Event::Reconnect { database }, "RECONNECT")
        }
        Command::Kill(database) => {
            if globally_paused {
                return Err(AdminError::already_paused());
            }
            if let Some(db) = &database {
                target(db, AdminError::cannot_kill_admin_db)?;
            }
            apply(Event::Kill { database }, "KILL")
        }
        Command::KillClient(id) => {
            let client = ClientId(id);
            if pooler.client_pool(client).is_none() {
                return Err(AdminError::client_not_found());
            }
            apply(Event::KillClient { client }, "KILL_CLIENT")
        }
        Command::WaitClose(database) => {
            if let Some(db) = &database {
                target(db, AdminError::cannot_wait_in_admin_db)?;
            }
            Effect::WaitClose { database }
        }
        Command::Shutdown(mode) => Effect::Shutdown(mode),
        Command::Reload => Effect::Reload,
        Command::Set { key, value } => Effect::Set { key, value },
    })
}

/// Whether a pending `WAIT_CLOSE` for `database` (all when `None`) may be answered: no
/// server in scope is still marked `close_needed`.
pub fn wait_close_done(pooler: &Pooler, now: Instant, database: Option<&str>) -> bool {
    !pooler
        .servers(now)
        .iter()
        .any(|s| s.close_needed && database.is_none_or(|d| &*s.pool.database == d))
}
