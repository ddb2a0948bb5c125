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

use Kind::*;

/// The key table, alphabetical except that `pool_mode` precedes `pool_idle_timeout`.
pub const KEYS: &[Key] = &[
    k("admin_users", Some(""), Str, true),
    k("application_name_add_host", Some("0"), Bool, true),
    k("auth_dbname", None, Str, true),
    k("auth_file", None, Str, true),
    k("auth_hba_file", Some(""), Str, true),
    k("auth_ident_file", None, Str, true),
    k("auth_ldap_options", None, Str, true),
    k(
        "auth_query",
        Some("SELECT rolname, CASE WHEN rolvaliduntil < now() THEN NULL ELSE rolpassword END FROM pg_authid WHERE rolname=$1 AND rolcanlogin"),
        Str,
        true,
    ),
    k("auth_type", Some("md5"), Lookup(AUTH_TYPES), true),
    k("auth_user", None, Str, true),
    k("autodb_idle_timeout", Some("3600"), Time, true),
    k("cancel_wait_timeout", Some("10"), Time, true),
    k("client_idle_timeout", Some("0"), Time, true),
    k("client_login_timeout", Some("60"), Time, true),
    k("client_tls13_ciphers", None, Str, true),
    k("client_tls_ca_file", Some(""), Str, true),
    k("client_tls_cert_file", Some(""), Str, true),
    k("client_tls_ciphers", Some("default"), Str, true),
    k("client_tls_dheparams", Some("auto"), Str, true),
    k("client_tls_ecdhcurve", Some("auto"), Str, true),
    k("client_tls_key_file", Some(""), Str, true),
    k("client_tls_protocols", Some("secure"), Str, true),
    k("client_tls_sslmode", Some("disable"), Lookup(SSLMODES), true),
    k("conffile", None, Str, true),
    k("default_pool_size", Some("20"), Int, true),
    k("disable_pqexec", Some("0"), Bool, false),
    k("dns_max_ttl", Some("15"), Time, true),
    k("dns_nxdomain_ttl", Some("15"), Time, true),
    k("dns_zone_check_period", Some("0"), Time, true),
    k("idle_transaction_timeout", Some("0"), Time, true),
    k("ignore_startup_parameters", Some(""), Str, true),
    k("job_name", Some("pgbouncer"), Str, false),
    k("listen_addr", Some(""), Str, false),
    k("listen_backlog", Some("128"), Int, false),
    k("listen_port", Some("6432"), Int, false),
    k("log_connections", Some("1"), Bool, true),
    k("log_disconnections", Some("1"), Bool, true),
    // Ours: one JSON object per log line.
    k("log_format", Some("text"), Lookup(&["text", "json"]), false),
    k("log_pooler_errors", Some("1"), Bool, true),
    k("log_stats", Some("1"), Bool, true),
    k("logfile", Some(""), Str, true),
    k("login_notify_message", Some(""), Str, true),
    k("max_client_conn", Some("100"), Int, true),
    k("max_db_client_connections", Some("0"), Int, true),
    k("max_db_connections", Some("0"), Int, true),
    k("max_packet_size", Some("2147483647"), Int, true),
    k("max_prepared_statements", Some("200"), Int, true),
    k("max_user_client_connections", Some("0"), Int, true),
    k("max_user_connections", Some("0"), Int, true),
    // Ours: the HTTP listener for /metrics, /healthz, /readyz and the dashboard.
    k("metrics_listen_addr", Some("127.0.0.1"), Str, false),
    k("metrics_listen_port", Some("0"), Int, false),
    k("min_pool_size", Some("0"), Int, true),
    k("peer_id", Some("0"), Int, true),
    k("pidfile", Some(""), Str, false),
    k("pkt_buf", Some("4096"), Int, false),
    k("pool_mode", Some("session"), Lookup(POOL_MODES), true),
    k("pool_idle_timeout", Some("0"), Time, true),
    k("query_timeout", Some("0"), Time, true),
    k("query_wait_notify", Some("5"), Int, true),
    k("query_wait_timeout", Some("120"), Time, true),
    k("reserve_pool_size", Some("0"), Int, true),
    k("reserve_pool_timeout", Some("5"), Time, true),
    k("resolv_conf", Some(""), Str, false),
    k("sbuf_loopcnt", Some("5"), Int, true),
    k("scram_iterations", Some("4096"), Int, true),
    k("server_check_delay", Some("30"), Time, true),
    k("server_check_query", Some("<empty>"), Str, true),
    k("server_connect_timeout", Some("15"), Time, true),
    k("server_fast_close", Some("0"), Bool, true),
    k("server_idle_timeout", Some("600"), Time, true),
    k("server_lifetime", Some("3600"), Time, true),
    k("server_login_retry", Some("15"), Time, true),
    k("server_reset_query", Some("DISCARD ALL"), Str, true),
    k("server_reset_query_always", Some("0"), Bool, true),
    k("server_round_robin", Some("0"), Bool, true),
    k("server_tls13_ciphers", None, Str, true),
    k("server_tls_ca_file", Some(""), Str, true),
    k("server_tls_cert_file", Some(""), Str, true),
    k("server_tls_ciphers", Some("default"), Str, true),
    k("server_tls_key_file", Some(""), Str, true),
    k("server_tls_protocols", Some("secure"), Str, true),
    k("server_tls_sslmode", Some("prefer"), Lookup(SSLMODES), true),
    // Ours: open TLS towards servers directly (PostgreSQL 17 `sslnegotiation=direct`).
    k("server_tls_sslnegotiation", Some("postgres"), Lookup(&["postgres", "direct"]), true),
    k("service_name", Some("pgbouncer"), Str, false),
    k("so_reuseport", Some("0"), Bool, false),
    k("stats_period", Some("60"), Int, true),
    k("stats_users", Some(""), Str, true),
    k("suspend_timeout", Some("10"), Time, true),
    k("syslog", Some("0"), Bool, true),
    k("syslog_facility", Some("daemon"), Str, true),
    k("syslog_ident", Some("pgbouncer"), Str, true),
    k("tcp_defer_accept", Some("1"), Bool, true),
    k("tcp_keepalive", Some("1"), Bool, true),
    k("tcp_keepcnt", Some("0"), Int, true),
    k("tcp_keepidle", Some("0"), Int, true),
    k("tcp_keepintvl", Some("0"), Int, true),
    k("tcp_socket_buffer", Some("0"), Int, true),
    k("tcp_user_timeout", Some("0"), Millis, true),
    k("track_extra_parameters", Some("IntervalStyle"), Str, false),
    k("transaction_timeout", Some("0"), Time, true),
    k("unix_socket_dir", Some("/tmp"), Str, false),
    k("unix_socket_group", Some(""), Str, false),
    k("unix_socket_mode", Some("0777"), Int, false),
    k("user", None, Str, false),
    k("verbose", Some("0"), Int, true),
];

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
