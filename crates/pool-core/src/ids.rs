//! Identifiers of clients, servers and pools.
//!
//! Ids are minted by whoever creates the entity: the daemon mints `ClientId`s on accept,
//! pool-core mints `ServerId`s when it decides to open a server connection.

use std::fmt;
use std::sync::Arc;

/// A client connection. PgBouncer: a `PgSocket` on the client side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(pub u32);

/// A server connection. PgBouncer: a `PgSocket` on the server side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerId(pub u32);

/// Which pool: one per (database, user), as PgBouncer's `PgPool`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PoolKey {
    /// Database name as clients know it (the `[databases]` entry).
    pub database: Arc<str>,
    /// User the servers of this pool log in as.
    pub user: Arc<str>,
}

impl PoolKey {
    /// A key for `database` and `user`.
    pub fn new(database: &str, user: &str) -> Self {
        PoolKey {
            database: database.into(),
            user: user.into(),
        }
    }
}

impl fmt::Display for PoolKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.database, self.user)
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "C-{}", self.0)
    }
}

impl fmt::Display for ServerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "S-{}", self.0)
    }
}
