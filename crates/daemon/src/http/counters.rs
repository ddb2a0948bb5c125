//! What only the daemon sees, counted for `/metrics`: logins and their failures, TLS
//! handshakes, the prepared-statement cache. Relaxed atomics: a scrape may see one
//! counter a moment ahead of another, never a lost increment.

use std::sync::atomic::{AtomicU64, Ordering};

/// Why a client login failed, as the `reason` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginFailure {
    /// Wrong password, certificate or SCRAM proof.
    Auth,
    /// No such user (auth_file, auth_query).
    NoSuchUser,
    /// No such database.
    NoSuchDatabase,
    /// The hba file refused it.
    NotAllowed,
    /// `max_client_conn` and the other client limits.
    Limit,
    /// `client_login_timeout`.
    Timeout,
    /// Clear text where TLS is required, or a failed TLS handshake.
    Tls,
    /// The server refused the login made for it (auth_query, replication, welcome).
    Server,
    /// A startup packet or parameter we do not take.
    BadStartup,
    /// The pooler is shutting down, or a setting makes the login impossible.
    Unavailable,
}

impl LoginFailure {
    /// Every reason, in label order.
    pub const ALL: [LoginFailure; 10] = [
        LoginFailure::Auth,
        LoginFailure::NoSuchUser,
        LoginFailure::NoSuchDatabase,
        LoginFailure::NotAllowed,
        LoginFailure::Limit,
        LoginFailure::Timeout,
        LoginFailure::Tls,
        LoginFailure::Server,
        LoginFailure::BadStartup,
        LoginFailure::Unavailable,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            LoginFailure::Auth => "auth_failed",
            LoginFailure::NoSuchUser => "no_such_user",
            LoginFailure::NoSuchDatabase => "no_such_database",
            LoginFailure::NotAllowed => "not_allowed",
            LoginFailure::Limit => "client_limit",
            LoginFailure::Timeout => "login_timeout",
            LoginFailure::Tls => "tls",
            LoginFailure::Server => "server_refused",
            LoginFailure::BadStartup => "bad_startup",
            LoginFailure::Unavailable => "unavailable",
        }
    }
}

/// The counters.
#[derive(Debug, Default)]
pub struct Counters {
    logins: AtomicU64,
    failures: [AtomicU64; LoginFailure::ALL.len()],
    /// [client ok, client failed, server ok, server failed].
    tls: [AtomicU64; 4],
    prepared_hits: AtomicU64,
    prepared_misses: AtomicU64,
    prepared_evictions: AtomicU64,
}

fn bump(a: &AtomicU64, n: u64) {
    a.fetch_add(n, Ordering::Relaxed);
}

impl Counters {
    /// A client logged in (a pool, the console, a replication connection).
    pub fn login(&self) {
        bump(&self.logins, 1);
    }

    /// A client login failed.
    pub fn login_failed(&self, why: LoginFailure) {
        let i = LoginFailure::ALL
            .iter()
            .position(|w| *w == why)
            .unwrap_or(0);
        bump(&self.failures[i], 1);
    }

    /// A TLS handshake with a client (`server == false`) or a server ended.
    pub fn tls_handshake(&self, server: bool, ok: bool) {
        bump(&self.tls[usize::from(server) * 2 + usize::from(!ok)], 1);
    }

    /// A link's prepared-statement work: client Parses, Parses sent to the server, and
    /// statements closed on the server to make room. A client Parse the server already
    /// had is a hit.
    pub fn prepared(&self, client_parses: u64, server_parses: u64, evictions: u64) {
        if client_parses | server_parses | evictions == 0 {
            return;
        }
        bump(
            &self.prepared_hits,
            client_parses.saturating_sub(server_parses),
        );
        bump(&self.prepared_misses, server_parses);
        bump(&self.prepared_evictions, evictions);
    }

    /// The values, for [`pgbouncer_admin::metrics::DaemonMetrics`].
    pub fn fill(&self, m: &mut pgbouncer_admin::metrics::DaemonMetrics) {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        m.logins = get(&self.logins);
        m.login_failures = LoginFailure::ALL
            .iter()
            .zip(&self.failures)
            .map(|(w, n)| (w.label().to_string(), get(n)))
            .collect();
        m.tls_handshakes = vec![
            ("client", "ok", get(&self.tls[0])),
            ("client", "failed", get(&self.tls[1])),
            ("server", "ok", get(&self.tls[2])),
            ("server", "failed", get(&self.tls[3])),
        ];
        m.prepared_hits = get(&self.prepared_hits);
        m.prepared_misses = get(&self.prepared_misses);
        m.prepared_evictions = get(&self.prepared_evictions);
        m.parked_clients = crate::session::park::parked() as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_land_under_their_labels() {
        let c = Counters::default();
        c.login();
        c.login_failed(LoginFailure::NoSuchUser);
        c.login_failed(LoginFailure::NoSuchUser);
        c.tls_handshake(true, false);
        c.prepared(5, 2, 1);
        let mut m = Default::default();
        c.fill(&mut m);
        assert_eq!(m.logins, 1);
        assert!(m.login_failures.contains(&("no_such_user".into(), 2)));
        assert!(m.tls_handshakes.contains(&("server", "failed", 1)));
        assert_eq!(
            (m.prepared_hits, m.prepared_misses, m.prepared_evictions),
            (3, 2, 1)
        );
    }
}
