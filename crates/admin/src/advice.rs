//! The pool-size advisor (`SHOW ADVICE`, ours): per pool, whether `pool_size` and
//! `reserve_pool_size` fit the load, and whether `max_client_conn` fits the clients.
//!
//! It reads what pool-core measured over the last complete stats period and the one
//! under way (peak busy servers, peak queued clients, the wait-time distribution) and
//! the period averages (transactions per second, mean transaction time). By Little's
//! law the mean number of busy servers is arrival rate × time in the server; the peaks
//! say what the bursts needed. Rules, in order:
//!
//! * `pool_size` too small: clients queued (`cl_waiting` peaked above 0), their p95 wait
//!   was at least [`WAIT_TOO_LONG_US`], and every server of the pool was busy at that
//!   peak. Suggested: the concurrency clients asked for at the peak, busy + queued
//!   (capped by `max_db_connections` / `max_user_connections`, which the reason names).
//! * `pool_size` too large: over a full period clients did not wait (p95 below
//!   [`WAIT_TOO_LONG_US`]), and at most half of the pool was ever busy. Suggested: the busy peak plus a quarter for bursts (at
//!   least `min_pool_size` and 1). Idle servers hold PostgreSQL backends for nothing.
//! * `reserve_pool_size` too small: the reserve was used up (servers peaked at
//!   `pool_size + reserve_pool_size`) and clients still waited.
//! * `max_client_conn` too small: logins were refused for it, or the client peak
//!   reached 95 % of it. Too large: it (plus the servers it may need) exceeds the
//!   process's file descriptor limit, so accept() would fail before the limit is hit.

use pgbouncer_pool_core::{Histogram, PoolView};
use pgbouncer_protocol::{Column, ResultSet};

use crate::snapshot::Snapshot;

/// A p95 wait at or above this (10 ms) counts as clients waiting for a server.
pub const WAIT_TOO_LONG_US: u64 = 10_000;

/// What to do with a setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It fits.
    Ok,
    /// Raise it to the suggested value.
    Raise,
    /// Lower it to the suggested value.
    Lower,
}

impl Verdict {
    /// `ok`, `raise` or `lower`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Raise => "raise",
            Verdict::Lower => "lower",
        }
    }
}

/// One piece of advice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advice {
    /// The pool's database (empty for global settings).
    pub database: String,
    /// The pool's user (empty for global settings).
    pub user: String,
    /// The setting: `pool_size`, `reserve_pool_size` or `max_client_conn`.
    pub setting: &'static str,
    /// Its value in force.
    pub current: u64,
    /// The value advised (the current one when the verdict is `ok`).
    pub suggested: u64,
    /// What to do.
    pub verdict: Verdict,
    /// Why, with the measurements.
    pub reason: String,
}

/// What the advisor reads of one pool: the last period and the current one together.
struct Window {
    peak_active: u32,
    peak_servers: u32,
    peak_waiting: u32,
    wait: Histogram,
    /// Whether a complete period is part of it (no "too large" from a partial one).
    full: bool,
}

fn window(p: &PoolView<'_>) -> Window {
    let (last, cur) = (&p.stats.last, &p.stats.current);
    let mut wait = last.wait_hist.clone();
    wait.merge(&cur.wait_hist);
    Window {
        peak_active: last.peaks.sv_active.max(cur.peaks.sv_active),
        peak_servers: last.peaks.servers.max(cur.peaks.servers),
        peak_waiting: last.peaks.cl_waiting.max(cur.peaks.cl_waiting),
        wait,
        full: p.stats.periods > 0,
    }
}

fn ms(us: u64) -> String {
    if us >= 10_000 {
        format!("{} ms", us / 1000)
    } else {
        format!("{:.1} ms", us as f64 / 1000.0)
    }
}

/// Advice for every pool (sorted by database and user), then `max_client_conn`.
pub fn advise(snap: &Snapshot<'_>) -> Vec<Advice> {
    let cfg = snap.pooler.config();
    let mut pools: Vec<_> = snap.pooler.pools(snap.now).collect();
    pools.sort_by(|a, b| (&a.key.database, &a.key.user).cmp(&(&b.key.database, &b.key.user)));
    let mut out = Vec::new();
    for p in &pools {
        let w = window(p);
        let size = p.settings.pool_size;
        let reserve = p.settings.reserve_pool_size;
        let p95 = w.wait.quantile(0.95);
        // Little's law: mean busy servers = transactions/s × seconds per transaction.
        let mean_busy =
            p.stats.averages.xact_count as f64 * p.stats.averages.xact_time as f64 / 1e6;
        // Averages exist once a stats period has passed.
        let mean = if w.full {
            format!(" (mean {mean_busy:.1} busy)")
        } else {
            String::new()
        };
        let advice = |setting, current: u32, suggested: u32, verdict, reason| Advice {
            database: p.key.database.to_string(),
            user: p.key.user.to_string(),
            setting,
            current: u64::from(current),
            suggested: u64::from(suggested),
            verdict,
            reason,
        };
        if size == 0 {
            out.push(advice(
                "pool_size",
                0,
                0,
                Verdict::Ok,
                "unlimited (pool_size = 0)".into(),
            ));
            continue;
        }
        let waited = w.peak_waiting > 0 && p95 >= WAIT_TOO_LONG_US;
        let saturated = w.peak_active >= size;
        if waited && saturated {
            let wanted = w.peak_active + w.peak_waiting;
            let cap = [
                cfg.max_db_connections(&p.key.database),
                cfg.max_user_connections(&p.key.user),
            ]
            .into_iter()
            .filter(|c| *c > 0)
            .min();
            let suggested = cap.map_or(wanted, |c| wanted.min(c)).max(size + 1);
            let mut reason = format!(
                "clients waited p95 {} for a server; {} servers were busy at peak and {} clients queued; raise pool_size to {suggested}",
                ms(p95),
                w.peak_active,
                w.peak_waiting
            );
            if cap.is_some_and(|c| c < wanted) {
                reason.push_str(" (capped by max_db_connections/max_user_connections)");
            }
            out.push(advice("pool_size", size, suggested, Verdict::Raise, reason));
        } else if w.full && !waited && size >= 4 && w.peak_active * 2 <= size {
            let suggested = (w.peak_active + w.peak_active.div_ceil(4))
                .max(p.settings.min_pool_size)
                .max(1);
            let reason = format!(
                "at most {} of {size} servers were busy at once and clients waited p95 {}{mean}; lower pool_size to {suggested}: idle servers hold PostgreSQL connections",
                w.peak_active,
                ms(p95)
            );
            out.push(advice("pool_size", size, suggested, Verdict::Lower, reason));
        } else {
            let reason = format!(
                "peak {} of {size} servers busy, {} clients queued, p95 wait {}{mean}",
                w.peak_active,
                w.peak_waiting,
                ms(p95)
            );
            out.push(advice("pool_size", size, size, Verdict::Ok, reason));
        }
        if reserve > 0 && w.peak_servers >= size + reserve && waited {
            let suggested = reserve + w.peak_waiting;
            let reason = format!(
                "all {reserve} reserve servers were in use and {} clients still queued (p95 wait {}); raise reserve_pool_size to {suggested}",
                w.peak_waiting,
                ms(p95)
            );
            out.push(advice(
                "reserve_pool_size",
                reserve,
                suggested,
                Verdict::Raise,
                reason,
            ));
        } else {
            let used = w.peak_servers.saturating_sub(size).min(reserve);
            let reason = format!("{used} of {reserve} reserve servers used at peak");
            out.push(advice(
                "reserve_pool_size",
                reserve,
                reserve,
                Verdict::Ok,
                reason,
            ));
        }
    }
    out.push(max_client_conn(snap));
    out
}

fn max_client_conn(snap: &Snapshot<'_>) -> Advice {
    let cfg = snap.pooler.config();
    let max = u64::from(cfg.max_client_conn);
    let peak = u64::from(snap.pooler.peak_clients()) + snap.admin_clients.len() as u64;
    let refused = snap.pooler.max_client_conn_refusals();
    let (verdict, suggested, reason) = if max > 0 && (refused > 0 || peak * 100 >= max * 95) {
        let suggested = (peak.max(max) * 3).div_ceil(2);
        let reason = format!(
            "{peak} clients at peak of {max} allowed, {refused} logins refused since start; raise max_client_conn to {suggested}"
        );
        (Verdict::Raise, suggested, reason)
    } else if let Some(limit) = snap.fd_limit.filter(|l| max > 0 && max + 16 > *l) {
        let suggested = limit.saturating_sub(16).max(1);
        let reason = format!(
            "max_client_conn {max} exceeds the open-file limit {limit} (each client needs a descriptor, each server another); lower it to {suggested} or raise the limit"
        );
        (Verdict::Lower, suggested, reason)
    } else {
        (
            Verdict::Ok,
            max,
            format!("{peak} clients at peak of {max} allowed"),
        )
    };
    Advice {
        database: String::new(),
        user: String::new(),
        setting: "max_client_conn",
        current: max,
        suggested,
        verdict,
        reason,
    }
}

/// `SHOW ADVICE`: the advice as a result set.
pub(crate) fn show_advice(snap: &Snapshot<'_>) -> ResultSet {
    let mut set = ResultSet::new(vec![
        Column::text("database"),
        Column::text("user"),
        Column::text("setting"),
        Column::int8("current"),
        Column::int8("suggested"),
        Column::text("verdict"),
        Column::text("reason"),
    ]);
    for a in advise(snap) {
        set.push_row(vec![
            Some(a.database),
            Some(a.user),
            Some(a.setting.to_string()),
            Some(a.current.to_string()),
            Some(a.suggested.to_string()),
            Some(a.verdict.as_str().to_string()),
            Some(a.reason),
        ]);
    }
    set
}
