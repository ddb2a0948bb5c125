//! `auth_user` + `auth_query`: secrets of users missing from `auth_file` are looked up
//! on the server (mirrors client.c `start_auth_query` / `handle_auth_query_response`).
//!
//! One connection per (database, auth_user) is kept and shared, queries run one at a
//! time over it: a login storm costs one server connection, not one per login. No SET is
//! ever sent on it (PgBouncer's CVE-2025-12819 fix).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::BytesMut;
use pgbouncer_pool_core::{PoolKey, ServerId};
use pgbouncer_protocol::{BackendMessage, FrontendMessage};
use tokio::sync::Mutex;

use crate::auth::userlist::Secret;
use crate::server::{self, ServerConn};
use crate::shared::Shared;

/// Cached auth connections: one per (database, auth_user), each behind its own lock, so
/// lookups for different databases or auth users run in parallel.
#[derive(Debug, Default)]
pub struct AuthConns {
    conns: std::sync::Mutex<HashMap<PoolKey, Arc<Mutex<Option<ServerConn>>>>>,
}

/// What the lookup found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The user's secret (a NULL one is empty, which no password method accepts).
    Found(Secret),
    /// No row: `no such user`.
    NoSuchUser,
}

impl AuthConns {
    /// Runs `query` with `$1 = user` as `auth_user` on `database`.
    ///
    /// The connection is taken out of its slot for the query and put back only after a
    /// complete answer: if the caller gives up halfway (its login timed out), the
    /// connection is dropped with the future and closed, never reused with an answer
    /// still unread (which the next lookup would take for its own).
    pub async fn lookup(
        &self,
        shared: &Shared,
        database: &str,
        auth_user: &str,
        query: &str,
        user: &str,
    ) -> Result<Lookup, LookupError> {
        let key = PoolKey::new(database, auth_user);
        let slot = self
            .conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key.clone())
            .or_default()
            .clone();
        let result = {
            let mut guard = slot.lock().await;
            let conn = match guard.take() {
                Some(conn) => Ok(conn),
                None => connect(shared, &key, database).await,
            };
            match conn {
                Ok(mut conn) => {
                    let result = run(&mut conn, query, user).await;
                    if result.is_ok() {
                        *guard = Some(conn); // a broken or confused one is not reused
                    }
                    result.map_err(|message| LookupError {
                        refused: None,
                        message,
                    })
                }
                Err(e) => Err(e),
            }
        };
        self.forget_if_empty(&key, slot);
        result
    }

    /// Drops the slot of `key` when it holds no connection and nobody else waits on it,
    /// so that lookups that failed (a database name made up by a client that never
    /// authenticates, say) leave nothing behind.
    fn forget_if_empty(&self, key: &PoolKey, slot: Arc<Mutex<Option<ServerConn>>>) {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        // Our clone and the map's: nobody else holds it.
        let unused =
            Arc::strong_count(&slot) == 2 && slot.try_lock().is_ok_and(|conn| conn.is_none());
        if unused {
            conns.remove(key);
        }
    }

    /// Closes the auth connections of `database` (its pool was freed).
    pub fn forget_database(&self, database: &str) {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        conns.retain(|key, slot| &*key.database != database || Arc::strong_count(slot) > 1);
    }
}

/// Why a lookup failed.
#[derive(Debug)]
pub struct LookupError {
    /// The SQLSTATE when PostgreSQL itself refused the auth_user's login: the client is
    /// told the server's words (PgBouncer sends them on).
    pub refused: Option<String>,
    /// What went wrong.
    pub message: String,
}

impl std::fmt::Display for LookupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

async fn connect(
    shared: &Shared,
    key: &PoolKey,
    database: &str,
) -> Result<ServerConn, LookupError> {
    let target = {
        let core = shared.lock();
        shared.server_target(&core, key)
    }
    .ok_or_else(|| LookupError {
        refused: None,
        message: format!("no such database: {database}"),
    })?;
    let timeout = shared.runtime().cfg.server_connect_timeout;
    server::connect(
        ServerId(shared.next_client_id().0),
        &target,
        timeout,
        rand::random(),
    )
    .await
    .map_err(|e| LookupError {
        refused: e.severity.is_some().then_some(e.code),
        message: e.message,
    })
}

async fn run(conn: &mut ServerConn, query: &str, user: &str) -> Result<Lookup, String> {
    let mut out = BytesMut::new();
    FrontendMessage::Parse {
        name: "".into(),
        query: query.to_string().into(),
        param_types: vec![],
    }
    .encode(&mut out);
    FrontendMessage::Bind {
        portal: "".into(),
        statement: "".into(),
        param_formats: vec![],
        params: vec![Some(user.to_string().into())],
        result_formats: vec![],
    }
    .encode(&mut out);
    FrontendMessage::Execute {
        portal: "".into(),
        max_rows: 0,
    }
    .encode(&mut out);
    FrontendMessage::Sync.encode(&mut out);
    conn.stream
        .write_all(&out)
        .await
        .map_err(|e| e.to_string())?;
    let mut found = None;
    let mut error = None;
    loop {
        match conn.read_message().await.map_err(|e| e.message)? {
            BackendMessage::DataRow { values } => {
                if values.len() != 2 {
                    error = Some(format!(
                        "expected 2 columns from auth_query, not {}",
                        values.len()
                    ));
                    continue;
                }
                // A role without a password (NULL) gets an empty secret, which no
                // password method accepts (PgBouncer stores "" for it too).
                let secret = match &values[1] {
                    Some(v) => Secret::parse(&String::from_utf8_lossy(v)),
                    None => Secret::Plain(String::new()),
                };
                found = Some(secret);
            }
            BackendMessage::ErrorResponse(e) => {
                error = Some(format!(
                    "error response from auth_query: {}",
                    e.message().unwrap_or("")
                ));
            }
            BackendMessage::ReadyForQuery { .. } => break,
            _ => {}
        }
    }
    match (error, found) {
        (Some(e), _) => Err(e),
        (None, Some(s)) => Ok(Lookup::Found(s)),
        (None, None) => Ok(Lookup::NoSuchUser),
    }
}
