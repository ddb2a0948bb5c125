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

/// A (database, user) pair to look a [`PoolKey`] up by without building one (which
/// would allocate both names).
pub(crate) trait PoolKeyRef {
    fn database(&self) -> &str;
    fn user(&self) -> &str;
}

impl PoolKeyRef for PoolKey {
    fn database(&self) -> &str {
        &self.database
    }
    fn user(&self) -> &str {
        &self.user
    }
}

impl PoolKeyRef for (&str, &str) {
    fn database(&self) -> &str {
        self.0
    }
    fn user(&self) -> &str {
        self.1
    }
}

impl<'a> std::borrow::Borrow<dyn PoolKeyRef + 'a> for PoolKey {
    fn borrow(&self) -> &(dyn PoolKeyRef + 'a) {
        self
    }
}

// Must hash and compare exactly as the derived impls of `PoolKey` do (an `Arc<str>`
// hashes as its `str`).
impl std::hash::Hash for dyn PoolKeyRef + '_ {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.database().hash(state);
        self.user().hash(state);
    }
}

impl PartialEq for dyn PoolKeyRef + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.database() == other.database() && self.user() == other.user()
    }
}

impl Eq for dyn PoolKeyRef + '_ {}

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn a_pool_key_is_found_by_its_names_without_building_a_key() {
        let mut map = HashMap::new();
        map.insert(PoolKey::new("appdb", "alice"), 7);
        map.insert(PoolKey::new("appdb", "bob"), 8);
        let hit = map.get_key_value(&("appdb", "alice") as &dyn PoolKeyRef);
        assert_eq!(
            hit.map(|(k, v)| (k.to_string(), *v)),
            Some(("appdb/alice".into(), 7))
        );
        assert!(!map.contains_key(&("appdb", "carol") as &dyn PoolKeyRef));
        // "ab"/"c" and "a"/"bc" are different keys.
        map.insert(PoolKey::new("ab", "c"), 9);
        assert!(!map.contains_key(&("a", "bc") as &dyn PoolKeyRef));
    }
}
