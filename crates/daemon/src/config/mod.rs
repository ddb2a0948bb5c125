//! Configuration: PgBouncer's `pgbouncer.ini` (plus `PGBOUNCER_*` environment overrides,
//! layered with the `config` crate) turned into typed [`Settings`] and a plain
//! `pool_core::Config`. Only the daemon knows file formats.

pub mod databases;
pub mod ini;
pub mod keys;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pgbouncer_pool_core as core;
use pgbouncer_pool_core::PoolMode;

pub use databases::{DatabaseDef, UserDef};
use ini::{Ini, IniError, Origin};
use keys::{Kind, KEYS};

/// One `[peers]` entry: `<peer_id> = host=... port=...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerDef {
    /// The key as written.
    pub name: String,
    /// Its `peer_id`.
    pub id: u16,
    /// `host=`: an address or name, or a Unix socket directory (starting with `/`).
    pub host: String,
    /// `port=` (6432 when missing).
    pub port: u16,
    /// `pool_size=`, shown by SHOW PEERS (each forwarded cancel uses one short
    /// connection, so it limits nothing here).
    pub pool_size: Option<u32>,
}

fn parse_peer(key: &str, value: &str, origin: &Origin) -> Result<PeerDef, ConfigError> {
    let bad = |what: &str, v: &str, why: &str| ConfigError::Value {
        origin: origin.clone(),
        key: what.into(),
        value: v.into(),
        why: why.into(),
    };
    let id = key
        .trim()
        .parse::<u16>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| bad("peer id", key, "a peer id is a number from 1 to 65535"))?;
    let mut peer = PeerDef {
        name: key.to_string(),
        id,
        host: String::new(),
        port: 6432,
        pool_size: None,
    };
    for (k, v) in databases::parse_connstring(value, origin)? {
        match k.as_str() {
            "host" => peer.host = v,
            "port" => {
                peer.port = v
                    .parse()
                    .map_err(|_| bad("port", &v, "not a port number"))?
            }
            "pool_size" => {
                peer.pool_size = Some(
                    v.parse()
                        .map_err(|_| bad("pool_size", &v, "not a number"))?,
                )
            }
            _ => return Err(bad(&k, &v, "unknown [peers] parameter")),
        }
    }
    if peer.host.is_empty() {
        return Err(bad("host", value, "a peer needs host="));
    }
    Ok(peer)
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The ini file itself is unreadable or malformed.
    #[error(transparent)]
    Ini(#[from] IniError),
    /// An unknown `[pgbouncer]` key.
    #[error("{origin}: unknown parameter: {key}")]
    UnknownKey {
        /// Where.
        origin: Origin,
        /// The key.
        key: String,
    },
    /// An unknown section.
    #[error("{origin}: unknown section: [{section}]")]
    UnknownSection {
        /// Where (the first entry of the section, or line 0).
        origin: Origin,
        /// The section.
        section: String,
    },
    /// A value that does not parse.
    #[error("{origin}: invalid value for {key}: {value:?}: {why}")]
    Value {
        /// Where.
        origin: Origin,
        /// The key.
        key: String,
        /// The value.
        value: String,
        /// Why it is wrong.
        why: String,
    },
    /// The layered (environment) configuration failed.
    #[error("environment configuration: {0}")]
    Layer(String),
    /// A combination of settings that cannot work.
    #[error("bouncer config error: {0}")]
    Invalid(String),
}

/// How clients authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthType {
    /// No password; user name ignored (databases must force a user).
    Any,
    /// No password; user must be known.
    Trust,
    /// Cleartext password.
    Plain,
    /// MD5 (or SCRAM when the stored secret is SCRAM).
    Md5,
    /// SCRAM-SHA-256.
    ScramSha256,
    /// pg_hba-style rules.
    Hba,
    /// TLS client certificate.
    Cert,
    /// PAM.
    Pam,
    /// LDAP.
    Ldap,
}

impl AuthType {
    fn parse(s: &str) -> AuthType {
        match s.to_ascii_lowercase().as_str() {
            "any" => AuthType::Any,
            "trust" => AuthType::Trust,
            "plain" => AuthType::Plain,
            "scram-sha-256" => AuthType::ScramSha256,
            "hba" => AuthType::Hba,
            "cert" => AuthType::Cert,
            "pam" => AuthType::Pam,
            "ldap" => AuthType::Ldap,
            _ => AuthType::Md5,
        }
    }
}

/// The whole loaded configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Every `[pgbouncer]` key's current value (text), defaults included.
    pub values: BTreeMap<&'static str, Option<String>>,
    /// Where each explicitly set key came from.
    pub origins: BTreeMap<&'static str, String>,
    /// The `[databases]` entries, without `*`.
    pub databases: Vec<DatabaseDef>,
    /// The `*` entry.
    pub autodb: Option<DatabaseDef>,
    /// The `[users]` entries.
    pub users: Vec<UserDef>,
    /// `[peers]`: the other processes sharing the port, by `peer_id`.
    pub peers: Vec<PeerDef>,
    /// The ini file, if any.
    pub file: Option<PathBuf>,
}

/// Environment variables the loader reads, passed in so tests stay hermetic.
pub type Env = Vec<(String, String)>;

/// A `[databases]` entry: one of the settings', or made from the `*` entry for an
/// auto-database. The made one is boxed: an entry is some 400 bytes, and a login holds
/// one across its waits.
#[derive(Debug)]
pub enum DbEntry<'a> {
    /// Listed in `[databases]`.
    Listed(&'a DatabaseDef),
    /// An auto-database's, from the `*` entry.
    Auto(Box<DatabaseDef>),
}

impl std::ops::Deref for DbEntry<'_> {
    type Target = DatabaseDef;

    fn deref(&self) -> &DatabaseDef {
        match self {
            DbEntry::Listed(d) => d,
            DbEntry::Auto(d) => d,
        }
    }
}

impl Settings {
    /// Loads `file` (if any) and the environment overrides from `env`.
    pub fn load(file: Option<&Path>, env: &Env) -> Result<Settings, ConfigError> {
        let ini = match file {
            Some(f) => Ini::load(f)?,
            None => Ini::default(),
        };
        Self::from_ini(&ini, file, env)
    }

    /// Builds settings from a parsed ini and environment.
    pub fn from_ini(ini: &Ini, file: Option<&Path>, env: &Env) -> Result<Settings, ConfigError> {
        let mut values: BTreeMap<&'static str, Option<String>> = KEYS
            .iter()
            .map(|k| (k.name, k.default.map(str::to_string)))
            .collect();
        let mut origins = BTreeMap::new();
        let mut databases = Vec::new();
        let mut autodb = None;
        let mut users = Vec::new();
        let mut peers = Vec::new();
        let mut saw_main = false;
        for section in &ini.sections {
            match section.name.as_str() {
                "pgbouncer" => {
                    saw_main = true;
                    for e in &section.entries {
                        let key = keys::find(&e.key).ok_or_else(|| ConfigError::UnknownKey {
                            origin: e.origin.clone(),
                            key: e.key.clone(),
                        })?;
                        let value = checked_value(key.kind, key.name, &e.value, &e.origin)?;
                        values.insert(key.name, Some(value));
                        origins.insert(key.name, e.origin.to_string());
                    }
                }
                "databases" => {
                    for e in &section.entries {
                        let d = databases::parse_database(&e.key, &e.value, &e.origin)?;
                        if e.key == "*" {
                            autodb = Some(d);
                        } else {
                            databases.retain(|x: &DatabaseDef| x.name != e.key);
                            databases.push(d);
                        }
                    }
                }
                "users" => {
                    for e in &section.entries {
                        users.push(databases::parse_user(&e.key, &e.value, &e.origin)?);
                    }
                }
                "peers" => {
                    for e in &section.entries {
                        peers.retain(|p: &PeerDef| p.name != e.key);
                        peers.push(parse_peer(&e.key, &e.value, &e.origin)?);
                    }
                }
                other => {
                    let origin =
                        section
                            .entries
                            .first()
                            .map(|e| e.origin.clone())
                            .unwrap_or(Origin {
                                file: file.map(Into::into).unwrap_or_default(),
                                line: 0,
                            });
                    return Err(ConfigError::UnknownSection {
                        origin,
                        section: other.into(),
                    });
                }
            }
        }
        if file.is_some() && !saw_main {
            return Err(ConfigError::Invalid("main section missing".into()));
        }
        apply_env(&mut values, &mut origins, env)?;
        if let Some(d) = env_database(env)? {
            autodb = Some(d);
        }
        let s = Settings {
            values,
            origins,
            databases,
            autodb,
            users,
            peers,
            file: file.map(Into::into),
        };
        s.validate()?;
        Ok(s)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let t = self.typed();
        if self.auth_type() == AuthType::Any {
            let unforced = self
                .databases
                .iter()
                .chain(&self.autodb)
                .find(|d| d.user.is_none());
            if let Some(d) = unforced {
                return Err(ConfigError::Invalid(format!(
                    "auth_type=any needs a forced user= for every database ({} has none)",
                    d.name
                )));
            }
        }
        if t.auth_dbname.as_str() == "pgbouncer" {
            // Per-database auth_dbname=pgbouncer loads and fails at login instead.
            return Err(ConfigError::Invalid(
                "cannot use the reserved \"pgbouncer\" database as an auth_dbname".into(),
            ));
        }
        if self.listen_port() == 0 && t.listen_addr.is_empty() {
            return Err(ConfigError::Invalid("listen_port must be set".into()));
        }
        Ok(())
    }

    /// Every `[pgbouncer]` setting, parsed (see [`keys::Typed`]). Parsed on each call:
    /// keep the result (the runtime does, as `Runtime::cfg`).
    pub fn typed(&self) -> keys::Typed {
        keys::Typed::from_values(&self.values)
    }

    /// The raw text of `key` ("" for NULL). Only for keys whose name is composed at run
    /// time (the `client_`/`server_` TLS families); everything else reads [`Self::typed`].
    pub(crate) fn raw(&self, key: &str) -> &str {
        self.values
            .get(key)
            .and_then(|v| v.as_deref())
            .unwrap_or("")
    }

    /// `auth_type`.
    pub fn auth_type(&self) -> AuthType {
        self.typed().auth_type()
    }

    /// `listen_port`.
    pub fn listen_port(&self) -> u16 {
        self.typed().listen_port()
    }

    /// The `[databases]` entry for `name`, falling back to `*` (borrowed when the entry
    /// exists: a login looks it up and clones nothing).
    pub fn database(&self, name: &str) -> Option<DbEntry<'_>> {
        match self.databases.iter().find(|d| d.name == name) {
            Some(d) => Some(DbEntry::Listed(d)),
            None => self.autodb.as_ref().map(|d| {
                DbEntry::Auto(Box::new(DatabaseDef {
                    name: name.to_string(),
                    ..d.clone()
                }))
            }),
        }
    }

    /// The plain pool-core configuration.
    pub fn pool_config(&self) -> core::Config {
        let t = self.typed();
        let check_query = t.server_check_query.as_str();
        core::Config {
            pool_mode: t.pool_mode(),
            default_pool_size: clamp_u32(t.default_pool_size),
            min_pool_size: clamp_u32(t.min_pool_size),
            reserve_pool_size: clamp_u32(t.reserve_pool_size),
            reserve_pool_timeout: t.reserve_pool_timeout,
            max_client_conn: clamp_u32(t.max_client_conn),
            max_db_connections: clamp_u32(t.max_db_connections),
            max_user_connections: clamp_u32(t.max_user_connections),
            max_db_client_connections: clamp_u32(t.max_db_client_connections),
            max_user_client_connections: clamp_u32(t.max_user_client_connections),
            server_round_robin: t.server_round_robin,
            server_lifetime: t.server_lifetime,
            server_idle_timeout: t.server_idle_timeout,
            server_connect_timeout: t.server_connect_timeout,
            server_login_retry: t.server_login_retry,
            server_check_delay: t.server_check_delay,
            server_check_enabled: !check_query.trim().is_empty(),
            server_reset_enabled: !t.server_reset_query.trim().is_empty(),
            server_reset_query_always: t.server_reset_query_always,
            server_fast_close: t.server_fast_close,
            query_wait_timeout: t.query_wait_timeout,
            query_wait_notify: Duration::from_secs(u64::try_from(t.query_wait_notify).unwrap_or(0)),
            query_timeout: t.query_timeout,
            client_idle_timeout: t.client_idle_timeout,
            client_login_timeout: t.client_login_timeout,
            idle_transaction_timeout: t.idle_transaction_timeout,
            stats_period: Duration::from_secs(t.stats_period.max(1) as u64),
            autodb_idle_timeout: t.autodb_idle_timeout,
            pool_idle_timeout: t.pool_idle_timeout,
            databases: self
                .databases
                .iter()
                .map(|d| core::DatabaseConfig {
                    name: d.name.clone(),
                    forced_user: d.user.clone(),
                    pool_size: d.pool_size,
                    min_pool_size: d.min_pool_size,
                    reserve_pool_size: d.reserve_pool_size,
                    pool_mode: d.pool_mode,
                    max_db_connections: d.max_db_connections,
                    max_db_client_connections: d.max_db_client_connections,
                    server_lifetime: d.server_lifetime,
                    query_wait_timeout: d.query_wait_timeout,
                })
                .collect(),
            users: self
                .users
                .iter()
                .map(|u| core::UserConfig {
                    name: u.name.clone(),
                    pool_mode: u.pool_mode,
                    pool_size: u.pool_size,
                    reserve_pool_size: u.reserve_pool_size,
                    max_user_connections: u.max_user_connections,
                    max_user_client_connections: u.max_user_client_connections,
                    query_wait_timeout: u.query_wait_timeout,
                    client_idle_timeout: u.client_idle_timeout,
                })
                .collect(),
        }
    }
}

/// PgBouncer compat extension: users' ini files often carry `value   ; comment` or
/// `value  # comment`, which PgBouncer itself would reject for numbers. For typed values
/// we drop such a trailing comment when the value would not parse otherwise.
pub(crate) fn strip_inline_comment(v: &str) -> &str {
    let cut = v
        .char_indices()
        .find(|&(i, c)| (c == ';' || c == '#') && i > 0 && v[..i].ends_with(char::is_whitespace))
        .map(|(i, _)| i);
    match cut {
        Some(i) => v[..i].trim(),
        None => v.trim(),
    }
}

fn checked_value(
    kind: Kind,
    key: &str,
    value: &str,
    origin: &Origin,
) -> Result<String, ConfigError> {
    if keys::validate(kind, value) {
        return Ok(value.trim().to_string());
    }
    if kind != Kind::Str {
        let stripped = strip_inline_comment(value);
        if keys::validate(kind, stripped) {
            tracing::warn!(%origin, key, "ignoring an inline comment after the value");
            return Ok(stripped.to_string());
        }
    }
    Err(ConfigError::Value {
        origin: origin.clone(),
        key: key.into(),
        value: value.into(),
        why: match kind {
            Kind::Int | Kind::Bool | Kind::Millis => "not an integer".into(),
            Kind::Time => "not a number of seconds".into(),
            Kind::Lookup(names) => format!("expected one of {}", names.join(", ")),
            Kind::Str => "invalid".into(),
        },
    })
}

/// `PGBOUNCER_<KEY>` overrides `<key>`, layered with the `config` crate.
fn apply_env(
    values: &mut BTreeMap<&'static str, Option<String>>,
    origins: &mut BTreeMap<&'static str, String>,
    env: &Env,
) -> Result<(), ConfigError> {
    let source: config::Map<String, String> = env.iter().cloned().collect();
    let layered = config::Config::builder()
        .add_source(
            config::Environment::with_prefix("PGBOUNCER")
                .prefix_separator("_")
                .source(Some(source)),
        )
        .build()
        .map_err(|e| ConfigError::Layer(e.to_string()))?;
    let table = layered
        .try_deserialize::<std::collections::HashMap<String, String>>()
        .map_err(|e| ConfigError::Layer(e.to_string()))?;
    for (k, v) in table {
        let env_name = format!("PGBOUNCER_{}", k.to_ascii_uppercase());
        let origin = Origin {
            file: PathBuf::from(format!("${env_name}")),
            line: 0,
        };
        let key = keys::find(&k).ok_or_else(|| ConfigError::UnknownKey {
            origin: origin.clone(),
            key: k.clone(),
        })?;
        let value = checked_value(key.kind, key.name, &v, &origin)?;
        values.insert(key.name, Some(value));
        origins.insert(key.name, format!("${env_name}"));
    }
    Ok(())
}

/// `DATABASES_HOST`, `DATABASES_PORT`, `DATABASES_USER`, `DATABASES_PASSWORD` and
/// `DATABASES_DBNAME` define the `*` database, as the pgbouncer container images do.
fn env_database(env: &Env) -> Result<Option<DatabaseDef>, ConfigError> {
    let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let Some(host) = get("DATABASES_HOST") else {
        return Ok(None);
    };
    let origin = Origin {
        file: "$DATABASES_PORT".into(),
        line: 0,
    };
    let port = match get("DATABASES_PORT") {
        Some(p) => p.trim().parse::<u16>().map_err(|_| ConfigError::Value {
            origin,
            key: "DATABASES_PORT".into(),
            value: p.clone(),
            why: "not a port".into(),
        })?,
        None => 5432,
    };
    Ok(Some(DatabaseDef {
        name: "*".into(),
        hosts: vec![host],
        port,
        dbname: get("DATABASES_DBNAME"),
        user: get("DATABASES_USER"),
        password: get("DATABASES_PASSWORD"),
        ..Default::default()
    }))
}

impl keys::Typed {
    /// `auth_type`.
    pub fn auth_type(&self) -> AuthType {
        AuthType::parse(&self.auth_type)
    }

    /// `pool_mode` (session if unknown).
    pub fn pool_mode(&self) -> PoolMode {
        PoolMode::parse(&self.pool_mode).unwrap_or(PoolMode::Session)
    }

    /// `listen_port` (6432 if out of range).
    pub fn listen_port(&self) -> u16 {
        u16::try_from(self.listen_port).unwrap_or(6432)
    }

    /// `max_packet_size`, at least 64.
    pub fn max_packet_size(&self) -> u32 {
        u32::try_from(self.max_packet_size.max(64)).unwrap_or(u32::MAX)
    }
}

/// An integer setting as a `u32`: negative values are 0, larger ones `u32::MAX`.
pub fn clamp_u32(v: i64) -> u32 {
    u32::try_from(v.max(0)).unwrap_or(u32::MAX)
}

/// A comma-separated list setting, entries trimmed, empty ones dropped.
pub fn split_list(v: &str) -> Vec<String> {
    v.split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str, env: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let ini = Ini::parse(text, Path::new("pgbouncer.ini"))?;
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_ini(&ini, Some(Path::new("pgbouncer.ini")), &env)
    }

    #[test]
    fn the_issue_example_ini_loads_with_pgbouncer_defaults_for_the_rest() {
        let s = load(
            "[databases]\nappdb = host=127.0.0.1 port=5432 dbname=appdb\n[pgbouncer]\n\
             listen_addr = 127.0.0.1\nlisten_port = 6432\nauth_type = md5\n\
             auth_file = userlist.txt\npool_mode = transaction\ndefault_pool_size = 20\n\
             max_client_conn = 1000\nadmin_users = admin\n",
            &[],
        )
        .unwrap();
        let t = s.typed();
        assert_eq!(t.pool_mode(), PoolMode::Transaction);
        assert_eq!(clamp_u32(t.max_client_conn), 1000);
        assert_eq!(t.query_wait_timeout, Duration::from_secs(120));
        assert_eq!(t.server_reset_query.as_str(), "DISCARD ALL");
        assert_eq!(s.database("appdb").unwrap().port, 5432);
        assert!(s.database("nope").is_none());
    }

    #[test]
    fn unknown_keys_and_bad_values_are_rejected_with_file_and_line() {
        let err = load("[pgbouncer]\nlisten_port = 1\nbogus = 2\n", &[]).unwrap_err();
        assert_eq!(err.to_string(), "pgbouncer.ini:3: unknown parameter: bogus");
        let err = load("[pgbouncer]\nmax_client_conn = lots\n", &[]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("pgbouncer.ini:2: invalid value"),
            "{err}"
        );
        let err = load("[pgbouncer]\nlog_connections = on\n", &[]).unwrap_err();
        assert!(err.to_string().contains("log_connections"), "{err}");
    }

    #[test]
    fn trailing_comments_after_numbers_are_tolerated() {
        let s = load(
            "[pgbouncer]\nmax_client_conn = 1000          ; Max client\n\
                      default_pool_size = 20      # Handles 100 users\n",
            &[],
        )
        .unwrap();
        let t = s.typed();
        assert_eq!(clamp_u32(t.max_client_conn), 1000);
        assert_eq!(clamp_u32(t.default_pool_size), 20);
    }

    #[test]
    fn environment_overrides_the_file_and_defines_a_database() {
        let s = load(
            "[pgbouncer]\npool_mode = session\n",
            &[
                ("PGBOUNCER_POOL_MODE", "transaction"),
                ("PGBOUNCER_DEFAULT_POOL_SIZE", "25"),
                ("DATABASES_HOST", "db.internal"),
                ("DATABASES_DBNAME", "upstream"),
                ("HOME", "/root"),
            ],
        )
        .unwrap();
        let t = s.typed();
        assert_eq!(t.pool_mode(), PoolMode::Transaction);
        assert_eq!(clamp_u32(t.default_pool_size), 25);
        let d = s.database("anything").unwrap();
        assert_eq!(d.hosts, vec!["db.internal"]);
        assert_eq!(d.server_dbname("anything"), "upstream");
    }

    #[test]
    fn an_unknown_pgbouncer_env_key_is_an_error() {
        let err = load("[pgbouncer]\n", &[("PGBOUNCER_NOPE", "1")]).unwrap_err();
        assert!(err.to_string().contains("unknown parameter: nope"), "{err}");
    }

    #[test]
    fn a_file_without_the_pgbouncer_section_fails() {
        assert!(load("[databases]\na = host=x\n", &[]).is_err());
    }
}
