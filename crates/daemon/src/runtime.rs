//! The configuration a running daemon works from: settings plus everything derived
//! from them once per (re)load (userlist, parsed lists), swapped as a whole on RELOAD.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use crate::auth::userlist::{self, Secret, Userlist};
use crate::config::{AuthType, DbEntry, Settings};

/// Parameters PgBouncer always tracks per client and re-applies to servers.
pub const TRACKED: &[&str] = &[
    "client_encoding",
    "DateStyle",
    "TimeZone",
    "standard_conforming_strings",
    "application_name",
];

/// Parameters servers report (GUC_REPORT) that no client can change with SET: never
/// tracked, never SET by the pooler.
const REPORTED_READ_ONLY: &[&str] = &[
    "server_version",
    "server_encoding",
    "integer_datetimes",
    "in_hot_standby",
    "is_superuser",
    "session_authorization",
];

/// Startup parameters that need no configuration to be accepted.
const KNOWN_STARTUP: &[&str] = &["user", "database", "options", "replication"];

/// Settings plus derived values.
#[derive(Debug)]
pub struct Runtime {
    /// The settings.
    pub settings: Settings,
    /// The settings, parsed: what everything reads.
    pub cfg: crate::config::keys::Typed,
    /// The auth file's users.
    pub userlist: Userlist,
    /// auth_type.
    pub auth_type: AuthType,
    /// Tracked parameter names (the built-in five plus track_extra_parameters).
    pub tracked: Vec<String>,
    /// ignore_startup_parameters, lowercased.
    pub ignored: HashSet<String>,
    /// admin_users.
    pub admin_users: Vec<String>,
    /// stats_users.
    pub stats_users: Vec<String>,
    /// max_packet_size.
    pub max_packet_size: u32,
    /// log_connections.
    pub log_connections: bool,
    /// log_disconnections.
    pub log_disconnections: bool,
    /// log_pooler_errors.
    pub log_pooler_errors: bool,
    /// server_reset_query.
    pub server_reset_query: String,
    /// server_check_query (already mapped: `<empty>` is the empty query).
    pub server_check_query: String,
    /// unix_socket_dir (used for servers without host=).
    pub unix_socket_dir: String,
    /// auth_hba_file, parsed (auth_type = hba).
    pub hba: Option<crate::auth::hba::HbaFile>,
    /// auth_ident_file, parsed.
    pub ident: Option<crate::auth::ident::IdentMap>,
    /// Settings every login reads, parsed once per (re)load.
    pub per_login: PerLogin,
    /// TLS towards clients and servers, built from the `*_tls_*` settings.
    pub tls: Arc<crate::tls::TlsSetup>,
}

/// Settings read on every accept or login, parsed once instead of looked up by name
/// (and parsed) each time.
#[derive(Debug, Clone)]
pub struct PerLogin {
    /// client_login_timeout.
    pub client_login_timeout: std::time::Duration,
    /// max_prepared_statements (0: named statements pass through untouched).
    pub max_prepared_statements: usize,
    /// application_name_add_host.
    pub application_name_add_host: bool,
    /// query_timeout, idle_transaction_timeout, transaction_timeout (global values).
    pub query_timeout: std::time::Duration,
    /// idle_transaction_timeout.
    pub idle_transaction_timeout: std::time::Duration,
    /// transaction_timeout.
    pub transaction_timeout: std::time::Duration,
    /// Client socket options.
    pub socket: crate::net::SocketTuning,
}

impl PerLogin {
    fn new(s: &Settings) -> PerLogin {
        let t = s.typed();
        PerLogin {
            client_login_timeout: t.client_login_timeout,
            max_prepared_statements: usize::try_from(t.max_prepared_statements).unwrap_or(0),
            application_name_add_host: t.application_name_add_host,
            query_timeout: t.query_timeout,
            idle_transaction_timeout: t.idle_transaction_timeout,
            transaction_timeout: t.transaction_timeout,
            socket: crate::net::SocketTuning::new(s),
        }
    }
}

/// Why the runtime configuration could not be built from settings.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// auth_file.
    #[error(transparent)]
    Userlist(#[from] userlist::UserlistError),
    /// auth_hba_file.
    #[error(transparent)]
    Hba(#[from] crate::auth::hba::HbaError),
    /// auth_ident_file.
    #[error(transparent)]
    Ident(#[from] crate::auth::ident::IdentError),
    /// The TLS settings (keys, certificates, protocols, ciphers).
    #[error("TLS setup failed: {0}")]
    Tls(#[from] crate::tls::TlsError),
}

impl Runtime {
    /// Derives the runtime view; reads the auth file and builds TLS.
    pub fn new(settings: Settings) -> Result<Arc<Runtime>, RuntimeError> {
        let (tls, warnings) = crate::tls::TlsSetup::new(&settings)?;
        for w in warnings {
            tracing::warn!("{w}");
        }
        Self::with_tls(settings, Arc::new(tls))
    }

    /// As [`Runtime::new`], keeping `tls` (a `SET` whose TLS could not be applied keeps
    /// the TLS it had, as PgBouncer does).
    pub fn with_tls(
        settings: Settings,
        tls: Arc<crate::tls::TlsSetup>,
    ) -> Result<Arc<Runtime>, RuntimeError> {
        let cfg = settings.typed();
        let userlist = match cfg.auth_file.as_str() {
            "" => Userlist::new(),
            f => userlist::load(&PathBuf::from(f))?,
        };
        let ident = match cfg.auth_ident_file.as_str() {
            "" => None,
            f => Some(crate::auth::ident::IdentMap::load(&PathBuf::from(f))?),
        };
        let hba = match cfg.auth_hba_file.as_str() {
            "" => None,
            f => {
                let h = crate::auth::hba::HbaFile::load(&PathBuf::from(f))?;
                h.check_maps(ident.as_ref())?;
                Some(h)
            }
        };
        let mut tracked: Vec<String> = TRACKED.iter().map(|s| s.to_string()).collect();
        for extra in crate::config::split_list(&cfg.track_extra_parameters) {
            if !tracked.iter().any(|t| t.eq_ignore_ascii_case(&extra)) {
                tracked.push(extra);
            }
        }
        let check = cfg.server_check_query.clone();
        let per_login = PerLogin::new(&settings);
        let unix_socket_dir = cfg.unix_socket_dir.clone();
        Ok(Arc::new(Runtime {
            auth_type: cfg.auth_type(),
            ignored: crate::config::split_list(&cfg.ignore_startup_parameters)
                .iter()
                .map(|s| s.to_lowercase())
                .collect(),
            admin_users: crate::config::split_list(&cfg.admin_users),
            stats_users: crate::config::split_list(&cfg.stats_users),
            max_packet_size: cfg.max_packet_size(),
            log_connections: cfg.log_connections,
            log_disconnections: cfg.log_disconnections,
            log_pooler_errors: cfg.log_pooler_errors,
            server_reset_query: cfg.server_reset_query.clone(),
            server_check_query: if check == "<empty>" {
                String::new()
            } else {
                check
            },
            unix_socket_dir,
            cfg,
            hba,
            ident,
            per_login,
            tracked,
            userlist,
            settings,
            tls,
        }))
    }

    /// The canonical tracked name for `name`, if it is tracked.
    pub fn tracked_name(&self, name: &str) -> Option<&str> {
        self.tracked
            .iter()
            .find(|t| t.eq_ignore_ascii_case(name))
            .map(String::as_str)
    }

    /// The name under which a parameter the server reported (ParameterStatus) is tracked
    /// per client: the configured ones, and, as PgBouncer 1.26 does, every other
    /// parameter the server reports that a client can SET (on PostgreSQL 15
    /// `IntervalStyle` and `default_transaction_read_only`; on 18 also `search_path`).
    pub fn reported_tracked_name<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        if let Some(t) = self.tracked_name(name) {
            return Some(t);
        }
        let read_only = REPORTED_READ_ONLY
            .iter()
            .any(|r| r.eq_ignore_ascii_case(name));
        (!read_only && !name.is_empty()).then_some(name)
    }

    /// Whether a startup parameter is acceptable (known, tracked or ignored).
    pub fn startup_param_ok(&self, name: &str) -> bool {
        KNOWN_STARTUP.contains(&name)
            || name.starts_with("_pq_.")
            || self.tracked_name(name).is_some()
            || self.ignored.contains(&name.to_lowercase())
    }

    /// The database entry for `name`.
    pub fn database(&self, name: &str) -> Option<DbEntry<'_>> {
        self.settings.database(name)
    }

    /// The stored secret of `user`.
    pub fn secret(&self, user: &str) -> Option<&Secret> {
        self.userlist.get(user)
    }
}
