//! PgBouncer's pooling semantics as a runtime-agnostic, sans-IO state machine.
//!
//! [`Pooler`] holds every pool, client and server. Its driver (our daemon, or your own
//! proxy) reports facts as [`Event`]s together with the current [`Instant`], drains the
//! [`Action`]s it queues, and calls [`Pooler::handle_timeout`] when
//! [`Pooler::poll_timeout`] says so. pool-core opens no socket, reads no clock and draws
//! no random numbers; it does not know the wire protocol either. A driver that wants
//! pool-core to keep its idle server connections too wraps the `Pooler` in a
//! [`Custody`]: events then hand connections in, and actions carry them out.
//!
//! ```
//! use pgbouncer_pool_core::{Action, ClientId, Config, Event, Instant, PoolKey, Pooler};
//!
//! let mut pooler = Pooler::new(Config { default_pool_size: 1, ..Config::default() });
//! let now = Instant::from_micros(0);
//! let client = ClientId(1);
//! let pool = PoolKey::new("appdb", "app");
//! pooler.handle(now, Event::ClientConnected { client, pool, login_user: "app".into() });
//! pooler.handle(now, Event::ClientLoggedIn { client, cancel_key: 42 });
//! pooler.handle(now, Event::ClientWantsServer { client });
//! let Some(Action::ConnectServer { server, .. }) = pooler.poll_action() else { panic!() };
//! pooler.handle(now, Event::ServerConnected { server });
//! assert_eq!(pooler.poll_action(), Some(Action::Link { client, server }));
//! ```
#![forbid(unsafe_code)]
#![warn(clippy::unwrap_used)]

mod clients;
mod config;
mod custody;
mod entities;
mod event;
mod ids;
mod ops;
mod pooler;
mod reason;
mod stats;
mod time;
mod timers;
mod view;

#[cfg(test)]
mod tests;

pub use config::{Config, DatabaseConfig, PoolMode, PoolSettings, UserConfig};
pub use custody::Custody;
pub use entities::{ClientState, ServerState};
pub use event::{Action, Event};
pub use ids::{ClientId, PoolKey, ServerId};
pub use pooler::{IdHasher, IdMap, Pooler};
pub use reason::{DisconnectReason, ServerCloseReason};
pub use stats::{Histogram, Peaks, Period, PoolStats, StatCounters, Usage};
pub use time::Instant;
pub use view::{ClientView, PoolView, ServerView};
