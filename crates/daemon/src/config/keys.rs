//! Every `[pgbouncer]` key PgBouncer knows, with its default, value type and whether a
//! RELOAD applies it (mirrors `bouncer_params[]` in main.c; order as `SHOW CONFIG`).

/// How a value is parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `strtol(base 0)`: decimal, `0x` hex, leading-`0` octal.
    Int,
    /// Same as `Int`; only 0 and non-zero matter.
    Bool,
    /// Seconds as a non-negative float.
    Time,
    /// Milliseconds as an integer (tcp_user_timeout).
    Millis,
    /// Raw text.
    Str,
    /// One of a fixed set of names (case-insensitive).
    Lookup(&'static [&'static str]),
}

/// One key.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    /// The ini name.
    pub name: &'static str,
    /// Default, as PgBouncer prints it in `SHOW CONFIG`'s default column; `None` = NULL.
    pub default: Option<&'static str>,
    /// Value type.
    pub kind: Kind,
    /// Applied by RELOAD/SET (false: startup only).
    pub reloadable: bool,
}

const POOL_MODES: &[&str] = &["session", "transaction", "statement"];
const AUTH_TYPES: &[&str] = &[
    "any",
    "trust",
    "plain",
    "md5",
    "cert",
    "hba",
    "scram-sha-256",
    "pam",
    "ldap",
];
const SSLMODES: &[&str] = &[
    "disable",
    "allow",
    "prefer",
    "require",
    "verify-ca",
    "verify-full",
];

const fn k(name: &'static str, default: Option<&'static str>, kind: Kind, reloadable: bool) -> Key {
    Key {
        name,
        default,
        kind,
        reloadable,
    }
}

use super::strip_inline_comment;
use Kind::*;

/// Generates [`KEYS`] and [`Typed`] from one table, so the two cannot disagree: each
/// line is `name: Kind = default, reloadable;`.
macro_rules! key_table {
    ($( $(#[$doc:meta])* $name:ident : $kind:ident $( ( $arg:expr ) )? = $default:expr, $reload:expr; )*) => {
        /// Every key, in `SHOW CONFIG` order.
        pub const KEYS: &[Key] = &[
            $( k(stringify!($name), $default, key_table!(@kind $kind $( ( $arg ) )?), $reload), )*
        ];

        /// Every `[pgbouncer]` setting, parsed once per (re)load with PgBouncer's rules
        /// and defaults: what the daemon reads, instead of looking keys up by name.
        /// Numbers are `i64` as PgBouncer reads them (`strtol`), times are durations,
        /// booleans are "non-zero", lookups are lower-cased, and NULL strings are empty.
        #[derive(Debug, Clone, PartialEq)]
        #[allow(missing_docs)]
        pub struct Typed {
            $( pub $name: key_table!(@type $kind), )*
        }

        impl Typed {
            /// Parses `values` (a key's text, `None` for NULL; missing keys take their
            /// defaults).
            pub fn from_values(values: &std::collections::BTreeMap<&'static str, Option<String>>) -> Typed {
                Typed {
                    $( $name: {
                        let raw = values
                            .get(stringify!($name))
                            .cloned()
                            .unwrap_or_else(|| ($default as Option<&str>).map(str::to_string));
                        key_table!(@parse $kind raw.as_deref().unwrap_or(""))
                    }, )*
                }
            }
        }
    };
    (@kind Lookup ( $arg:expr )) => { Kind::Lookup($arg) };
    (@kind $kind:ident) => { Kind::$kind };
    (@type Int) => { i64 };
    (@type Bool) => { bool };
    (@type Time) => { std::time::Duration };
    (@type Millis) => { std::time::Duration };
    (@type Str) => { String };
    (@type Lookup) => { String };
    (@parse Int $raw:expr) => { parse_int(strip_inline_comment($raw)).unwrap_or(0) };
    (@parse Bool $raw:expr) => { parse_int(strip_inline_comment($raw)).unwrap_or(0) != 0 };
    (@parse Time $raw:expr) => { parse_time(strip_inline_comment($raw)).unwrap_or_default() };
    (@parse Millis $raw:expr) => {
        std::time::Duration::from_millis(
            u64::try_from(parse_int(strip_inline_comment($raw)).unwrap_or(0)).unwrap_or(0),
        )
    };
    (@parse Str $raw:expr) => { $raw.to_string() };
    (@parse Lookup $raw:expr) => { strip_inline_comment($raw).to_ascii_lowercase() };
}

// The key table, alphabetical except that `pool_mode` precedes `pool_idle_timeout`; it
// also generates `Typed`, the parsed settings every reader uses.
key_table! {
    admin_users: Str = Some(""), true;
    application_name_add_host: Bool = Some("0"), true;
    auth_dbname: Str = None, true;
    auth_file: Str = None, true;
    auth_hba_file: Str = Some(""), true;
    auth_ident_file: Str = None, true;
    auth_ldap_options: Str = None, true;
    auth_query: Str = Some("SELECT rolname, CASE WHEN rolvaliduntil < now() THEN NULL ELSE rolpassword END FROM pg_authid WHERE rolname=$1 AND rolcanlogin"), true;
    auth_type: Lookup(AUTH_TYPES) = Some("md5"), true;
    auth_user: Str = None, true;
    autodb_idle_timeout: Time = Some("3600"), true;
    cancel_wait_timeout: Time = Some("10"), true;
    client_idle_timeout: Time = Some("0"), true;
    client_login_timeout: Time = Some("60"), true;
    client_tls13_ciphers: Str = None, true;
    client_tls_ca_file: Str = Some(""), true;
    client_tls_cert_file: Str = Some(""), true;
    client_tls_ciphers: Str = Some("default"), true;
    client_tls_dheparams: Str = Some("auto"), true;
    client_tls_ecdhcurve: Str = Some("auto"), true;
    client_tls_key_file: Str = Some(""), true;
    client_tls_protocols: Str = Some("secure"), true;
    client_tls_sslmode: Lookup(SSLMODES) = Some("disable"), true;
    conffile: Str = None, true;
    default_pool_size: Int = Some("20"), true;
    disable_pqexec: Bool = Some("0"), false;
    dns_max_ttl: Time = Some("15"), true;
    dns_nxdomain_ttl: Time = Some("15"), true;
    dns_zone_check_period: Time = Some("0"), true;
    idle_transaction_timeout: Time = Some("0"), true;
    ignore_startup_parameters: Str = Some(""), true;
    job_name: Str = Some("pgbouncer"), false;
    listen_addr: Str = Some(""), false;
    listen_backlog: Int = Some("128"), false;
    listen_port: Int = Some("6432"), false;
    log_connections: Bool = Some("1"), true;
    log_disconnections: Bool = Some("1"), true;
    // Ours: one JSON object per log line.
    log_format: Lookup(&["text", "json"]) = Some("text"), false;
    log_pooler_errors: Bool = Some("1"), true;
    log_stats: Bool = Some("1"), true;
    logfile: Str = Some(""), true;
    login_notify_message: Str = Some(""), true;
    max_client_conn: Int = Some("100"), true;
    max_db_client_connections: Int = Some("0"), true;
    max_db_connections: Int = Some("0"), true;
    max_packet_size: Int = Some("2147483647"), true;
    max_prepared_statements: Int = Some("200"), true;
    max_user_client_connections: Int = Some("0"), true;
    max_user_connections: Int = Some("0"), true;
    // Ours: the HTTP listener for /metrics, /healthz, /readyz and the dashboard.
    metrics_listen_addr: Str = Some("127.0.0.1"), false;
    metrics_listen_port: Int = Some("0"), false;
    min_pool_size: Int = Some("0"), true;
    peer_id: Int = Some("0"), true;
    pidfile: Str = Some(""), false;
    pkt_buf: Int = Some("4096"), false;
    pool_mode: Lookup(POOL_MODES) = Some("session"), true;
    pool_idle_timeout: Time = Some("0"), true;
    query_timeout: Time = Some("0"), true;
    query_wait_notify: Int = Some("5"), true;
    query_wait_timeout: Time = Some("120"), true;
    reserve_pool_size: Int = Some("0"), true;
    reserve_pool_timeout: Time = Some("5"), true;
    resolv_conf: Str = Some(""), false;
    sbuf_loopcnt: Int = Some("5"), true;
    scram_iterations: Int = Some("4096"), true;
    server_check_delay: Time = Some("30"), true;
    server_check_query: Str = Some("<empty>"), true;
    server_connect_timeout: Time = Some("15"), true;
    server_fast_close: Bool = Some("0"), true;
    server_idle_timeout: Time = Some("600"), true;
    server_lifetime: Time = Some("3600"), true;
    server_login_retry: Time = Some("15"), true;
    server_reset_query: Str = Some("DISCARD ALL"), true;
    server_reset_query_always: Bool = Some("0"), true;
    server_round_robin: Bool = Some("0"), true;
    server_tls13_ciphers: Str = None, true;
    server_tls_ca_file: Str = Some(""), true;
    server_tls_cert_file: Str = Some(""), true;
    server_tls_ciphers: Str = Some("default"), true;
    server_tls_key_file: Str = Some(""), true;
    server_tls_protocols: Str = Some("secure"), true;
    server_tls_sslmode: Lookup(SSLMODES) = Some("prefer"), true;
    // Ours: open TLS towards servers directly (PostgreSQL 17 `sslnegotiation=direct`).
    server_tls_sslnegotiation: Lookup(&["postgres", "direct"]) = Some("postgres"), true;
    service_name: Str = Some("pgbouncer"), false;
    so_reuseport: Bool = Some("0"), false;
    stats_period: Int = Some("60"), true;
    stats_users: Str = Some(""), true;
    suspend_timeout: Time = Some("10"), true;
    syslog: Bool = Some("0"), true;
    syslog_facility: Str = Some("daemon"), true;
    syslog_ident: Str = Some("pgbouncer"), true;
    tcp_defer_accept: Bool = Some("1"), true;
    tcp_keepalive: Bool = Some("1"), true;
    tcp_keepcnt: Int = Some("0"), true;
    tcp_keepidle: Int = Some("0"), true;
    tcp_keepintvl: Int = Some("0"), true;
    tcp_socket_buffer: Int = Some("0"), true;
    tcp_user_timeout: Millis = Some("0"), true;
    track_extra_parameters: Str = Some("IntervalStyle"), false;
    transaction_timeout: Time = Some("0"), true;
    unix_socket_dir: Str = Some("/tmp"), false;
    unix_socket_group: Str = Some(""), false;
    unix_socket_mode: Int = Some("0777"), false;
    user: Str = None, false;
    verbose: Int = Some("0"), true;
}

/// The key called `name` (case-insensitive).
pub fn find(name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.name.eq_ignore_ascii_case(name))
}

/// PgBouncer's `strtol(s, &end, 0)` with trailing junk rejected.
pub fn parse_int(s: &str) -> Option<i64> {
    let t = s.trim();
    let (neg, t) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let v = if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        i64::from_str_radix(h, 16).ok()?
    } else if t.len() > 1 && t.starts_with('0') {
        i64::from_str_radix(&t[1..], 8).ok()?
    } else {
        t.parse::<i64>().ok()?
    };
    Some(if neg { -v } else { v })
}

/// Seconds as a non-negative float, as `CF_TIME_USEC`.
pub fn parse_time(s: &str) -> Option<std::time::Duration> {
    let v: f64 = s.trim().parse().ok()?;
    (v.is_finite() && v >= 0.0).then(|| std::time::Duration::from_secs_f64(v))
}

/// Checks `value` against `kind`.
pub fn validate(kind: Kind, value: &str) -> bool {
    match kind {
        Int | Bool | Millis => parse_int(value).is_some(),
        Time => parse_time(value).is_some(),
        Str => true,
        Lookup(names) => names.iter().any(|n| n.eq_ignore_ascii_case(value.trim())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_follow_strtol_base_zero() {
        assert_eq!(parse_int("0777"), Some(511));
        assert_eq!(parse_int("0x10"), Some(16));
        assert_eq!(parse_int("42"), Some(42));
        assert_eq!(parse_int("0"), Some(0));
        assert_eq!(parse_int("12abc"), None);
        assert_eq!(parse_int("on"), None);
    }

    #[test]
    fn times_are_fractional_seconds() {
        assert_eq!(
            parse_time("0.5"),
            Some(std::time::Duration::from_millis(500))
        );
        assert_eq!(parse_time("-1"), None);
    }

    #[test]
    fn typed_settings_take_pgbouncers_defaults_and_parsing() {
        let defaults = Typed::from_values(&Default::default());
        assert_eq!(defaults.default_pool_size, 20);
        assert_eq!(defaults.listen_port, 6432);
        assert_eq!(defaults.unix_socket_mode, 0o777);
        assert!(defaults.log_connections);
        assert_eq!(
            defaults.query_wait_timeout,
            std::time::Duration::from_secs(120)
        );
        assert_eq!(defaults.server_reset_query, "DISCARD ALL");
        assert_eq!(defaults.auth_type, "md5");
        assert_eq!(defaults.auth_user, ""); // NULL
        let mut values = std::collections::BTreeMap::new();
        values.insert("max_client_conn", Some("0x10 ; hex".to_string()));
        values.insert("pool_mode", Some("Transaction".to_string()));
        values.insert("tcp_user_timeout", Some("1500".to_string()));
        values.insert("server_lifetime", Some("0.5".to_string()));
        values.insert("auth_dbname", None);
        let t = Typed::from_values(&values);
        assert_eq!(t.max_client_conn, 16);
        assert_eq!(t.pool_mode, "transaction");
        assert_eq!(t.tcp_user_timeout, std::time::Duration::from_millis(1500));
        assert_eq!(t.server_lifetime, std::time::Duration::from_millis(500));
        assert_eq!(t.auth_dbname, "");
    }

    #[test]
    fn key_table_is_sorted_like_show_config() {
        let names: Vec<_> = KEYS.iter().map(|k| k.name).collect();
        let mut sorted = names.clone();
        sorted.sort();
        // pool_mode precedes pool_idle_timeout in PgBouncer's table.
        let pm = sorted.iter().position(|n| *n == "pool_mode").unwrap();
        let pit = sorted
            .iter()
            .position(|n| *n == "pool_idle_timeout")
            .unwrap();
        sorted.swap(pm, pit);
        assert_eq!(names, sorted);
    }
}
