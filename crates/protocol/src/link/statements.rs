//! Named prepared statements across a pool (PgBouncer >= 1.21, prepare.c): one
//! [`Statement`] per distinct query text and parameter types, shared by every client
//! that prepares it; each client's names for them ([`ClientStatements`]); and what each
//! server has prepared, as an LRU of at most `max_prepared_statements`
//! ([`ServerStatements`]).
//!
//! A statement lives as long as a client name or a server cache refers to it: the
//! registry keeps only weak references, so memory follows what is in use.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;

/// One distinct statement: its server-side name and what a Parse for it carries.
#[derive(Debug)]
pub struct Statement {
    id: u64,
    name: String,
    /// The Parse body after the statement name: query, NUL, parameter count and types,
    /// exactly as the client sent them.
    body: Bytes,
}

impl Statement {
    /// The number that names it on servers.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Its name on servers, `PGBOUNCER_<id>` (PgBouncer's `PREPARED_STMT_NAME_FORMAT`).
    pub fn server_name(&self) -> &str {
        &self.name
    }

    /// The Parse body after the name (query, NUL, parameter types).
    pub fn parse_body(&self) -> &Bytes {
        &self.body
    }
}

/// Every statement some client or server still refers to, keyed by its Parse body.
///
/// Shared by all sessions of a process; the lock is taken once per named Parse.
#[derive(Debug, Default)]
pub struct StatementRegistry {
    inner: Mutex<RegistryInner>,
    next: AtomicU64,
}

#[derive(Debug, Default)]
struct RegistryInner {
    by_body: HashMap<Bytes, Weak<Statement>>,
    /// Map size after the last sweep of dead entries (sweeps are amortised).
    swept_at: usize,
}

impl StatementRegistry {
    /// The statement for this Parse body, created on first use.
    pub fn intern(&self, body: Bytes) -> Arc<Statement> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = inner.by_body.get(&body).and_then(Weak::upgrade) {
            return s;
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let stmt = Arc::new(Statement {
            id,
            name: format!("PGBOUNCER_{id}"),
            body: body.clone(),
        });
        inner.by_body.insert(body, Arc::downgrade(&stmt));
        if inner.by_body.len() > 2 * inner.swept_at + 64 {
            inner.by_body.retain(|_, w| w.strong_count() > 0);
            inner.swept_at = inner.by_body.len();
        }
        stmt
    }

    /// Statements still referred to (for tests and SHOW-style reporting; sweeps first).
    pub fn live(&self) -> usize {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.by_body.retain(|_, w| w.strong_count() > 0);
        inner.swept_at = inner.by_body.len();
        inner.by_body.len()
    }
}

/// One client's statement names. Empty (no allocation) until it names a statement.
#[derive(Debug, Default)]
pub struct ClientStatements {
    /// Boxed: most clients never name a statement, and an empty map would still take
    /// 48 bytes in every session.
    #[allow(clippy::box_collection)]
    names: Option<Box<HashMap<Bytes, Arc<Statement>>>>,
}

impl ClientStatements {
    /// The statement the client calls `name`.
    pub fn get(&self, name: &[u8]) -> Option<&Arc<Statement>> {
        self.names.as_ref()?.get(name)
    }

    /// Names `stmt` `name`; returns what the name meant before.
    pub fn insert(&mut self, name: Bytes, stmt: Arc<Statement>) -> Option<Arc<Statement>> {
        self.names
            .get_or_insert_with(Box::default)
            .insert(name, stmt)
    }

    /// Forgets `name`; returns what it meant.
    pub fn remove(&mut self, name: &[u8]) -> Option<Arc<Statement>> {
        let map = self.names.as_mut()?;
        let old = map.remove(name);
        if map.is_empty() {
            self.names = None;
        }
        old
    }

    /// Forgets every name (DISCARD ALL, DEALLOCATE ALL).
    pub fn clear(&mut self) {
        self.names = None;
    }

    /// How many names the client has.
    pub fn len(&self) -> usize {
        self.names.as_ref().map_or(0, |m| m.len())
    }

    /// Whether the client has no names.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What one server has prepared, least recently used first (PgBouncer keeps its hash in
/// LRU order and evicts from the front).
#[derive(Debug, Default)]
pub struct ServerStatements {
    by_id: HashMap<u64, (Arc<Statement>, u64)>,
    by_use: BTreeMap<u64, u64>,
    tick: u64,
}

impl ServerStatements {
    /// Whether the server has `id`.
    pub fn contains(&self, id: u64) -> bool {
        self.by_id.contains_key(&id)
    }

    /// Marks `id` as just used; false if the server does not have it.
    pub fn touch(&mut self, id: u64) -> bool {
        let tick = self.next_tick();
        let Some((_, used)) = self.by_id.get_mut(&id) else {
            return false;
        };
        self.by_use.remove(used);
        *used = tick;
        self.by_use.insert(tick, id);
        true
    }

    /// Records that the server has `stmt` (most recently used).
    pub fn insert(&mut self, stmt: Arc<Statement>) {
        let id = stmt.id;
        if self.touch(id) {
            return;
        }
        let tick = self.next_tick();
        self.by_id.insert(id, (stmt, tick));
        self.by_use.insert(tick, id);
    }

    /// Forgets `id`; returns the statement if the server had it.
    pub fn remove(&mut self, id: u64) -> Option<Arc<Statement>> {
        let (stmt, used) = self.by_id.remove(&id)?;
        self.by_use.remove(&used);
        Some(stmt)
    }

    /// Removes least recently used statements until at most `limit` remain, and returns
    /// them, oldest first.
    pub fn evict_over(&mut self, limit: usize) -> Vec<Arc<Statement>> {
        let mut out = Vec::new();
        while self.by_id.len() > limit {
            let Some((_, id)) = self.by_use.pop_first() else {
                break;
            };
            if let Some((stmt, _)) = self.by_id.remove(&id) {
                out.push(stmt);
            }
        }
        out
    }

    /// Forgets everything (DISCARD ALL, DEALLOCATE ALL).
    pub fn clear(&mut self) {
        self.by_id.clear();
        self.by_use.clear();
    }

    /// How many statements the server has.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether the server has none.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The ids, least recently used first.
    pub fn ids_by_age(&self) -> Vec<u64> {
        self.by_use.values().copied().collect()
    }

    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn body(q: &str) -> Bytes {
        let mut v = q.as_bytes().to_vec();
        v.extend_from_slice(&[0, 0, 0]);
        Bytes::from(v)
    }

    #[test]
    fn the_same_text_gets_the_same_statement_while_it_is_referred_to() {
        let r = StatementRegistry::default();
        let a = r.intern(body("select 1"));
        let b = r.intern(body("select 1"));
        let c = r.intern(body("select 2"));
        assert!(Arc::ptr_eq(&a, &b));
        assert_ne!(a.id(), c.id());
        assert_eq!(a.server_name(), format!("PGBOUNCER_{}", a.id()));
        drop((a, b, c));
        assert_eq!(r.live(), 0, "nothing refers to them any more");
    }

    #[test]
    fn the_server_cache_evicts_the_least_recently_used() {
        let r = StatementRegistry::default();
        let s: Vec<_> = (0..4).map(|i| r.intern(body(&format!("q{i}")))).collect();
        let mut cache = ServerStatements::default();
        for st in &s {
            cache.insert(st.clone());
        }
        assert!(cache.touch(s[0].id()));
        let out = cache.evict_over(2);
        assert_eq!(
            out.iter().map(|x| x.id()).collect::<Vec<_>>(),
            vec![s[1].id(), s[2].id()]
        );
        assert_eq!(cache.ids_by_age(), vec![s[3].id(), s[0].id()]);
    }

    #[test]
    fn client_names_are_dropped_when_empty() {
        let r = StatementRegistry::default();
        let mut c = ClientStatements::default();
        assert!(c
            .insert(Bytes::from_static(b"a"), r.intern(body("x")))
            .is_none());
        assert_eq!(c.len(), 1);
        assert!(c.remove(b"a").is_some());
        assert!(c.is_empty());
        assert!(c.names.is_none());
    }
}
