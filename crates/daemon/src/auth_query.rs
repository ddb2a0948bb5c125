//! `auth_user` + `auth_query`: secrets of users missing from `auth_file` are looked up
//! on the server (mirrors client.c `start_auth_query` / `handle_auth_query_response`).
//!
//! One connection per (database, auth_user) is kept and shared, queries run one at a
//! time over it: a login storm costs one server connection, not one per login. No SET is
//! ever sent on it (PgBouncer's CVE-2025-12819 fix).

use std::collections::HashMap;

use bytes::BytesMut;
use pgbouncer_pool_core::{PoolKey, ServerId};
use pgbouncer_protocol::{BackendMessage, FrontendMessage};
use tokio::sync::Mutex;

use crate::auth::userlist::Secret;
use crate::server::{self, ServerConn};
use crate::shared::Shared;

/// Cached auth connections.
#[derive(Debug, Default)]
pub struct AuthConns {
    conns: Mutex<HashMap<PoolKey, ServerConn>>,
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
    pub async fn lookup(
        &self,
        shared: &Shared,
        database: &str,
        auth_user: &str,
        query: &str,
        user: &str,
    ) -> Result<Lookup, String> {
        let key = PoolKey::new(database, auth_user);
        let mut conns = self.conns.lock().await;
        if !conns.contains_key(&key) {
            let target = {
                let core = shared.lock();
                shared.server_target(&core, &key)
            }
            .ok_or_else(|| format!("no such database: {database}"))?;
            let timeout = shared.runtime().settings.time("server_connect_timeout");
            let conn = server::connect(ServerId(0), &target, timeout, rand::random())
                .await
                .map_err(|e| e.message)?;
            conns.insert(key.clone(), conn);
        }
        let conn = conns.get_mut(&key).ok_or("auth connection vanished")?;
        let result = run(conn, query, user).await;
        if result.is_err() {
            conns.remove(&key); // a broken or confused connection is not reused
        }
        result
    }
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
