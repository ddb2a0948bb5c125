//! `[databases]` and `[users]` entries: PgBouncer's connection-string syntax
//! (`key=value key='quoted value'`, `''` escapes a quote; mirrors loader.c
//! `parse_database` / `parse_user`).

use std::time::Duration;

use pgbouncer_pool_core::PoolMode;

use super::ini::Origin;
use super::keys::parse_int;
use super::ConfigError;

/// One `[databases]` entry.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DatabaseDef {
    /// The name clients use (`*` for the fallback entry).
    pub name: String,
    /// Host list (`host=`); empty: the unix socket directory.
    pub hosts: Vec<String>,
    /// Server port.
    pub port: u16,
    /// Server database name (default: the entry name).
    pub dbname: Option<String>,
    /// Forced server user.
    pub user: Option<String>,
    /// Password for the forced user.
    pub password: Option<String>,
    /// auth_user override.
    pub auth_user: Option<String>,
    /// auth_query override.
    pub auth_query: Option<String>,
    /// auth_dbname override.
    pub auth_dbname: Option<String>,
    /// pool_size override.
    pub pool_size: Option<u32>,
    /// min_pool_size override.
    pub min_pool_size: Option<u32>,
    /// reserve_pool_size override.
    pub reserve_pool_size: Option<u32>,
    /// pool_mode override.
    pub pool_mode: Option<PoolMode>,
    /// max_db_connections override.
    pub max_db_connections: Option<u32>,
    /// max_db_client_connections override.
    pub max_db_client_connections: Option<u32>,
    /// server_lifetime override (integer seconds).
    pub server_lifetime: Option<Duration>,
    /// query_wait_timeout override (integer seconds).
    pub query_wait_timeout: Option<Duration>,
    /// Query run once after each server login.
    pub connect_query: Option<String>,
    /// Server startup parameter.
    pub client_encoding: Option<String>,
    /// Server startup parameter.
    pub datestyle: Option<String>,
    /// Server startup parameter.
    pub timezone: Option<String>,
    /// Server startup parameter.
    pub application_name: Option<String>,
    /// `round-robin` or `disable`.
    pub load_balance_hosts: Option<String>,
}

/// Whether two definitions of a database reach the same server the same way: what a
/// server connection was opened with (pool sizes and modes may differ).
pub fn same_target(a: &DatabaseDef, b: &DatabaseDef) -> bool {
    a.hosts == b.hosts
        && a.port == b.port
        && a.dbname == b.dbname
        && a.user == b.user
        && a.password == b.password
        && a.auth_user == b.auth_user
        && a.auth_query == b.auth_query
        && a.auth_dbname == b.auth_dbname
        && a.connect_query == b.connect_query
        && a.client_encoding == b.client_encoding
        && a.datestyle == b.datestyle
        && a.timezone == b.timezone
        && a.application_name == b.application_name
        && a.load_balance_hosts == b.load_balance_hosts
}

impl DatabaseDef {
    /// The server-side database name.
    pub fn server_dbname(&self, client_db: &str) -> String {
        self.dbname.clone().unwrap_or_else(|| client_db.to_string())
    }
}

/// One `[users]` entry.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UserDef {
    /// The user name.
    pub name: String,
    /// pool_mode override.
    pub pool_mode: Option<PoolMode>,
    /// pool_size override.
    pub pool_size: Option<u32>,
    /// reserve_pool_size override.
    pub reserve_pool_size: Option<u32>,
    /// max_user_connections override.
    pub max_user_connections: Option<u32>,
    /// max_user_client_connections override.
    pub max_user_client_connections: Option<u32>,
    /// Per-user timeouts (integer seconds).
    pub query_timeout: Option<Duration>,
    /// Per-user timeout.
    pub idle_transaction_timeout: Option<Duration>,
    /// Per-user timeout.
    pub client_idle_timeout: Option<Duration>,
    /// Per-user timeout.
    pub transaction_timeout: Option<Duration>,
    /// Per-user timeout.
    pub query_wait_timeout: Option<Duration>,
}

/// Splits a connection string into key/value pairs.
pub fn parse_connstring(s: &str, origin: &Origin) -> Result<Vec<(String, String)>, ConfigError> {
    let bad = |why: &str| ConfigError::Value {
        origin: origin.clone(),
        key: "connection string".into(),
        value: s.into(),
        why: why.into(),
    };
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') {
            return Err(bad(&format!("missing '=' after {key:?}")));
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'\'') {
            chars.next();
            loop {
                match chars.next() {
                    Some('\'') if chars.peek() == Some(&'\'') => {
                        chars.next();
                        value.push('\'');
                    }
                    Some('\'') => break,
                    Some(c) => value.push(c),
                    None => return Err(bad("unterminated quoted value")),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        if value.is_empty() {
            return Err(bad(&format!("empty value for {key:?}")));
        }
        out.push((key.to_ascii_lowercase(), value));
    }
    Ok(out)
}

fn num(key: &str, v: &str, origin: &Origin) -> Result<u32, ConfigError> {
    parse_int(v)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| ConfigError::Value {
            origin: origin.clone(),
            key: key.into(),
            value: v.into(),
            why: "not a non-negative integer".into(),
        })
}

fn mode(key: &str, v: &str, origin: &Origin) -> Result<PoolMode, ConfigError> {
    PoolMode::parse(v).ok_or_else(|| ConfigError::Value {
        origin: origin.clone(),
        key: key.into(),
        value: v.into(),
        why: "not session, transaction or statement".into(),
    })
}

fn secs(key: &str, v: &str, origin: &Origin) -> Result<Duration, ConfigError> {
    num(key, v, origin).map(|n| Duration::from_secs(u64::from(n)))
}

/// Parses one `[databases]` line.
pub fn parse_database(
    name: &str,
    value: &str,
    origin: &Origin,
) -> Result<DatabaseDef, ConfigError> {
    if name == "pgbouncer" {
        return Err(ConfigError::Value {
            origin: origin.clone(),
            key: name.into(),
            value: value.into(),
            why: "database name \"pgbouncer\" is reserved".into(),
        });
    }
    let mut d = DatabaseDef {
        name: name.into(),
        port: 5432,
        ..Default::default()
    };
    for (k, v) in parse_connstring(value, origin)? {
        match k.as_str() {
            "dbname" => d.dbname = Some(v),
            "host" => d.hosts = v.split(',').map(|h| h.trim().to_string()).collect(),
            "port" => {
                d.port = u16::try_from(num(&k, &v, origin)?).map_err(|_| ConfigError::Value {
                    origin: origin.clone(),
                    key: k.clone(),
                    value: v.clone(),
                    why: "port out of range".into(),
                })?
            }
            "user" => d.user = Some(v),
            "password" => d.password = Some(v),
            "auth_user" => d.auth_user = Some(v),
            "auth_query" => d.auth_query = Some(v),
            "auth_dbname" => d.auth_dbname = Some(v),
            "pool_size" => d.pool_size = Some(num(&k, &v, origin)?),
            "min_pool_size" => d.min_pool_size = Some(num(&k, &v, origin)?),
            "reserve_pool" | "reserve_pool_size" => {
                d.reserve_pool_size = Some(num(&k, &v, origin)?)
            }
            "pool_mode" => d.pool_mode = Some(mode(&k, &v, origin)?),
            "max_db_connections" => d.max_db_connections = Some(num(&k, &v, origin)?),
            "max_db_client_connections" => d.max_db_client_connections = Some(num(&k, &v, origin)?),
            "server_lifetime" => d.server_lifetime = Some(secs(&k, &v, origin)?),
            "query_wait_timeout" => d.query_wait_timeout = Some(secs(&k, &v, origin)?),
            "connect_query" => d.connect_query = Some(v),
            "client_encoding" => d.client_encoding = Some(v),
            "datestyle" => d.datestyle = Some(v),
            "timezone" => d.timezone = Some(v),
            "application_name" => d.application_name = Some(v),
            "load_balance_hosts" => d.load_balance_hosts = Some(v),
            _ => {
                return Err(ConfigError::Value {
                    origin: origin.clone(),
                    key: k.clone(),
                    value: v,
                    why: format!("unrecognized connection parameter: {k}"),
                })
            }
        }
    }
    Ok(d)
}

/// Parses one `[users]` line.
pub fn parse_user(name: &str, value: &str, origin: &Origin) -> Result<UserDef, ConfigError> {
    let mut u = UserDef {
        name: name.into(),
        ..Default::default()
    };
    for (k, v) in parse_connstring(value, origin)? {
        match k.as_str() {
            "pool_mode" => u.pool_mode = Some(mode(&k, &v, origin)?),
            "pool_size" => u.pool_size = Some(num(&k, &v, origin)?),
            "reserve_pool_size" => u.reserve_pool_size = Some(num(&k, &v, origin)?),
            "max_user_connections" => u.max_user_connections = Some(num(&k, &v, origin)?),
            "max_user_client_connections" => {
                u.max_user_client_connections = Some(num(&k, &v, origin)?)
            }
            "query_timeout" => u.query_timeout = Some(secs(&k, &v, origin)?),
            "idle_transaction_timeout" => u.idle_transaction_timeout = Some(secs(&k, &v, origin)?),
            "client_idle_timeout" => u.client_idle_timeout = Some(secs(&k, &v, origin)?),
            "transaction_timeout" => u.transaction_timeout = Some(secs(&k, &v, origin)?),
            "query_wait_timeout" => u.query_wait_timeout = Some(secs(&k, &v, origin)?),
            _ => {
                return Err(ConfigError::Value {
                    origin: origin.clone(),
                    key: k.clone(),
                    value: v,
                    why: format!("unrecognized user parameter: {k}"),
                })
            }
        }
    }
    Ok(u)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o() -> Origin {
        Origin {
            file: "t.ini".into(),
            line: 3,
        }
    }

    #[test]
    fn connection_strings_parse_quotes_and_reject_unknown_keys() {
        let d = parse_database(
            "appdb",
            "host=127.0.0.1 port=5433 dbname=app user=u password='it''s secret' pool_size=7",
            &o(),
        )
        .unwrap();
        assert_eq!(d.hosts, vec!["127.0.0.1"]);
        assert_eq!(d.port, 5433);
        assert_eq!(d.password.as_deref(), Some("it's secret"));
        assert_eq!(d.pool_size, Some(7));
        let err = parse_database("x", "host=a bogus=1", &o()).unwrap_err();
        assert!(
            err.to_string()
                .contains("unrecognized connection parameter: bogus"),
            "{err}"
        );
        assert!(err.to_string().starts_with("t.ini:3"), "{err}");
    }

    #[test]
    fn the_pgbouncer_database_name_is_reserved() {
        assert!(parse_database("pgbouncer", "host=x", &o()).is_err());
    }

    #[test]
    fn user_entries_take_pool_mode_and_limits() {
        let u = parse_user("app", "pool_mode=session max_user_connections=3", &o()).unwrap();
        assert_eq!(u.pool_mode, Some(PoolMode::Session));
        assert_eq!(u.max_user_connections, Some(3));
    }
}
