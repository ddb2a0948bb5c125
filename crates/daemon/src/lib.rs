//! pgbouncer-rs: a PostgreSQL connection pooler, drop-in compatible with PgBouncer.
//!
//! The binary composes the pure crates: `pgbouncer-protocol` (wire format),
//! `pgbouncer-pool-core` (pool state machine) and `pgbouncer-admin` (console), with
//! tokio for sockets, timers and signals. The library form exists so integration tests
//! can run the daemon in-process.

pub mod auth;
mod auth_query;
pub mod config;
mod console;
pub mod daemon;
pub mod flush;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod logging;
mod mailbox;
pub mod net;
pub mod pidfile;
pub mod runtime;
pub mod server;
mod session;
pub mod shared;
pub mod stream;
pub mod systemd;
pub mod tls;
pub mod workers;

pub use daemon::{Daemon, ShutdownMode, StartError};
