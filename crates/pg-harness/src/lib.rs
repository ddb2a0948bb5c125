//! Throwaway PostgreSQL clusters for tests, started from the system's PostgreSQL binaries.
//!
//! [`PgCluster::start`] runs `initdb` into a fresh temporary directory, starts `postgres`
//! on a free `127.0.0.1` port with its unix socket inside that directory, waits until it
//! accepts connections and creates the test roles ([`MD5_USER`], [`SCRAM_USER`],
//! [`PLAIN_USER`], [`TRUST_USER`]) and the database [`APP_DB`]. Dropping the cluster stops
//! the server and removes the directory; a watchdog process does the same if the test
//! process dies first. [`PgCluster::shared`] gives one cluster per test binary.
//!
//! Tests start with [`require_postgres`], which skips loudly on a developer machine without
//! PostgreSQL and fails under CI. Besides std, the crate uses rcgen for test certificates
//! ([`certs`]).

mod binaries;
pub mod certs;
mod cluster;
mod error;
mod privilege;
mod roles;
mod setup;
mod skip;
mod watchdog;

pub use binaries::find_bin_dir;
pub use cluster::{ClusterOptions, PgCluster};
pub use error::HarnessError;
pub use roles::{
    APP_DB, MD5_PASSWORD, MD5_USER, PLAIN_PASSWORD, PLAIN_USER, SCRAM_PASSWORD, SCRAM_USER,
    SUPERUSER, TRUST_USER,
};
pub use skip::{require_postgres, FAST_ENV};
