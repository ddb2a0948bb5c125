//! The server connections themselves, kept by pool-core while nobody uses them.
//!
//! [`Pooler`] decides with ids; [`Custody`] is a [`Pooler`] that also keeps the driver's
//! handle of every server that is in the pool and not in use (idle, or released while
//! a cancel for it is in flight), and gives it out with the order that needs it: a
//! `Link` hands the client its server's handle, a `ResetServer` or `CheckServer` the
//! handle to run the query on, a `CloseServer` the handle to close when pool-core held
//! it. The driver hands handles in with the events that give a server to the pool. So
//! the driver keeps no map of idle servers of its own, and a server can only reach a
//! client through pool-core's decision.
//!
//! ```
//! use pgbouncer_pool_core::{Action, ClientId, Config, Custody, Event, Instant, PoolKey, Pooler};
//!
//! // The handle is whatever the driver uses for a server connection.
//! let mut pool: Custody<&str> = Custody::new(Pooler::new(Config::default()));
//! let now = Instant::ZERO;
//! let client = ClientId(1);
//! let key = PoolKey::new("app", "alice");
//! let login_user = "alice".into();
//! let _ = pool.handle(now, Event::ClientConnected { client, pool: key, login_user }, None);
//! let _ = pool.handle(now, Event::ClientLoggedIn { client, cancel_key: 7 }, None);
//! let _ = pool.handle(now, Event::ClientWantsServer { client }, None);
//! let Some((Action::ConnectServer { server, .. }, None)) = pool.poll_action() else {
//!     panic!("a server is opened for the client");
//! };
//! // The connection is up: its handle goes to pool-core, which links it at once.
//! assert!(pool.handle(now, Event::ServerConnected { server }, Some("socket")).is_none());
//! let Some((Action::Link { .. }, Some(conn))) = pool.poll_action() else {
//!     panic!("the client gets the server");
//! };
//! assert_eq!(conn, "socket");
//! ```

use std::ops::{Deref, DerefMut};

use crate::event::{Action, Event};
use crate::ids::ServerId;
use crate::pooler::{IdMap, Pooler};
use crate::time::Instant;

/// A [`Pooler`] that keeps the handles (`S`) of the servers in its pool.
///
/// Reads go to the pooler through `Deref`; events go through [`Custody::handle`] and
/// orders come out of [`Custody::poll_action`], which shadow the pooler's own.
#[derive(Debug)]
pub struct Custody<S> {
    pooler: Pooler,
    handles: IdMap<ServerId, S>,
}

impl<S> Custody<S> {
    /// Takes `pooler` (with no servers yet) into custody.
    pub fn new(pooler: Pooler) -> Self {
        Custody {
            pooler,
            handles: IdMap::default(),
        }
    }

    /// Feeds `event` to the pooler. `conn` is the handle of the server the event gives
    /// to the pool:
    /// - `ServerConnected`: the new server;
    /// - `ServerResetDone` with `ok`: the server the reset or check query ran on;
    /// - `ClientReleasedServer` with `reusable`: the client's server.
    ///
    /// A handle pool-core cannot take (any other event, a server or client it does not
    /// know, a server it closed meanwhile) is returned, for the driver to close.
    #[must_use = "a handle pool-core did not take is the driver's to close"]
    pub fn handle(&mut self, now: Instant, event: Event, conn: Option<S>) -> Option<S> {
        let refused = match (&event, conn) {
            (Event::ServerConnected { server }, Some(conn))
            | (Event::ServerResetDone { server, ok: true }, Some(conn)) => self.keep(*server, conn),
            (
                Event::ClientReleasedServer {
                    client,
                    reusable: true,
                    ..
                },
                Some(conn),
            ) => match self.pooler.clients.get(client).and_then(|c| c.link) {
                // A client's link names a server pool-core knows (links are symmetric).
                Some(server) => self.handles.insert(server, conn),
                None => Some(conn),
            },
            // The driver says the connection is gone: whatever was kept for it is stale.
            (Event::ServerClosed { server }, conn) => conn.or_else(|| self.handles.remove(server)),
            (_, conn) => conn,
        };
        self.pooler.handle(now, event);
        refused
    }

    /// Keeps `conn` for `server` if pool-core knows it. Two handles for one server: the
    /// newer is kept, the older given back.
    fn keep(&mut self, server: ServerId, conn: S) -> Option<S> {
        if self.pooler.servers.contains_key(&server) {
            self.handles.insert(server, conn)
        } else {
            Some(conn)
        }
    }

    /// The next order, with the handle it needs: `Link`, `ResetServer` and
    /// `CheckServer` carry their server's handle (`None` only if the driver never
    /// handed one in, which it should treat as a server gone), `CloseServer` the handle
    /// when pool-core held it (an idle server) and `None` when the server is in use.
    pub fn poll_action(&mut self) -> Option<(Action, Option<S>)> {
        let action = self.pooler.poll_action()?;
        let conn = match &action {
            Action::Link { server, .. }
            | Action::ResetServer { server }
            | Action::CheckServer { server }
            | Action::CloseServer { server, .. } => self.handles.remove(server),
            _ => None,
        };
        Some((action, conn))
    }

    /// How many server handles pool-core holds now.
    pub fn held(&self) -> usize {
        self.handles.len()
    }

    #[cfg(test)]
    pub(crate) fn holds(&self, server: ServerId) -> bool {
        self.handles.contains_key(&server)
    }

    #[cfg(test)]
    pub(crate) fn held_ids(&self) -> impl Iterator<Item = &ServerId> {
        self.handles.keys()
    }
}

impl<S> Deref for Custody<S> {
    type Target = Pooler;

    fn deref(&self) -> &Pooler {
        &self.pooler
    }
}

/// For the pooler's calls that take no event (`handle_timeout`, localities): the orders
/// they queue still come out of [`Custody::poll_action`].
impl<S> DerefMut for Custody<S> {
    fn deref_mut(&mut self) -> &mut Pooler {
        &mut self.pooler
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{ClientId, PoolKey};
    use crate::Config;

    /// A pool with one client linked to one server, whose handle is `"a"`.
    fn linked() -> (Custody<&'static str>, ClientId, ServerId) {
        // Transaction pooling: a released server goes idle (no reset query).
        let config = Config {
            pool_mode: crate::PoolMode::Transaction,
            ..Config::default()
        };
        let mut c = Custody::new(Pooler::new(config));
        let now = Instant::ZERO;
        let client = ClientId(1);
        let pool = PoolKey::new("db", "u");
        let events = [
            Event::ClientConnected {
                client,
                pool,
                login_user: "u".into(),
            },
            Event::ClientLoggedIn {
                client,
                cancel_key: 1,
            },
            Event::ClientWantsServer { client },
        ];
        for e in events {
            assert!(c.handle(now, e, None).is_none());
        }
        let Some((Action::ConnectServer { server, .. }, None)) = c.poll_action() else {
            panic!("a server is opened");
        };
        assert!(c
            .handle(now, Event::ServerConnected { server }, Some("a"))
            .is_none());
        assert_eq!(
            c.poll_action(),
            Some((Action::Link { client, server }, Some("a")))
        );
        (c, client, server)
    }

    fn release(client: ClientId) -> Event {
        Event::ClientReleasedServer {
            client,
            reusable: true,
            usage: Default::default(),
        }
    }

    #[test]
    fn a_released_handle_is_held_and_an_idle_servers_close_carries_it() {
        let (mut c, client, server) = linked();
        assert!(c
            .handle(Instant::ZERO, release(client), Some("a"))
            .is_none());
        assert_eq!(c.held(), 1);
        assert!(c
            .handle(
                Instant::ZERO,
                Event::Kill {
                    database: Some("db".into())
                },
                None
            )
            .is_none());
        let closes: Vec<_> = std::iter::from_fn(|| c.poll_action())
            .filter(|(a, _)| matches!(a, Action::CloseServer { .. }))
            .collect();
        assert_eq!(closes.len(), 1, "{closes:?}");
        let (Action::CloseServer { server: closed, .. }, conn) = &closes[0] else {
            unreachable!("filtered above");
        };
        assert_eq!((*closed, *conn), (server, Some("a")));
        assert_eq!(c.held(), 0);
    }

    #[test]
    fn handles_pool_core_cannot_take_are_given_back() {
        let (mut c, client, server) = linked();
        let now = Instant::ZERO;
        // A server nobody asked for.
        let stray = Event::ServerConnected {
            server: ServerId(99),
        };
        assert_eq!(c.handle(now, stray, Some("stray")), Some("stray"));
        // A handle with an event that gives no server to the pool.
        let wants = Event::ClientWantsServer { client };
        assert_eq!(c.handle(now, wants, Some("b")), Some("b"));
        // The server is held idle, then reported gone: its stale handle comes back.
        assert!(c.handle(now, release(client), Some("a")).is_none());
        assert_eq!(
            c.handle(now, Event::ServerClosed { server }, None),
            Some("a")
        );
        assert_eq!(c.held(), 0);
        // A client that holds no server releases one.
        assert_eq!(c.handle(now, release(client), Some("c")), Some("c"));
    }
}
