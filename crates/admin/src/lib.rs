//! The pgbouncer-rs admin console: parses the console's SQL-ish commands and renders
//! PgBouncer's result sets over pool-core state. Pure: no I/O, no clock, no runtime.
//!
//! The daemon, for each simple Query on the `pgbouncer` database:
//!
//! 1. [`parse_checked`] the text with the session's rights (admin / stats user), giving a
//!    [`Command`] or an [`AdminError`] in PgBouncer's error order;
//! 2. [`plan`] the command against the pooler, giving an [`Effect`];
//! 3. carries out the effect: for [`Effect::Show`] it fills a [`Snapshot`] and calls
//!    [`show`]; control commands feed pool-core [`Event`](pgbouncer_pool_core::Event)s;
//! 4. [`Reply::encode`]s the answer, then appends ReadyForQuery.
//!
//! ```
//! use std::time::SystemTime;
//! use bytes::BytesMut;
//! use pgbouncer_admin::{parse_checked, show, Command, Show, Snapshot};
//! use pgbouncer_pool_core::{Config, Instant, Pooler};
//!
//! let pooler = Pooler::new(Config::default());
//! let cmd = parse_checked("show pools;", false, true).unwrap();
//! assert_eq!(cmd, Command::Show(Show::Pools));
//! let snap = Snapshot::new(&pooler, Instant::ZERO, SystemTime::UNIX_EPOCH);
//! let reply = show(&Show::Pools, &snap);
//! let mut out = BytesMut::new();
//! reply.encode(&mut out); // RowDescription, DataRow (pgbouncer/pgbouncer), CommandComplete
//! ```
//!
//! Console errors follow PgBouncer (reference: `pgbouncer-surface.md` section 4): ERROR,
//! SQLSTATE `08P01` (`F0000` for a failed RELOAD), connection kept open.

#![forbid(unsafe_code)]
#![warn(clippy::unwrap_used)]

mod access;
pub mod advice;
mod command;
mod control;
mod error;
mod guc;
pub mod metrics;
mod parse;
mod reply;
mod show;
mod snapshot;
mod timestamp;

pub use access::{check_access, parse_checked, required_access, Access};
pub use command::{Command, Show, ShutdownMode};
pub use control::{plan, wait_close_done, ControlState, Effect};
pub use error::{AdminError, CODE_CONFIG_FILE_ERROR, CODE_PROTOCOL_VIOLATION};
pub use guc::{fake_guc, set_fake_guc, FAKE_GUCS};
pub use parse::parse;
pub use reply::Reply;
pub use show::{
    client_ptr, server_ptr, show, version_text, ADMIN_DB, HELP_DETAIL, PGBOUNCER_COMPAT_VERSION,
};
pub use snapshot::{AdminClientInfo, ConfigEntry, ConnInfo, DatabaseInfo, Replication, Snapshot};
