//! SHOW POOLS (mirrors `admin_show_pools`) and our SHOW LATENCY.
//!
//! Rows are sorted by (database, user), as PgBouncer keeps its pool list, and include the
//! console pool `pgbouncer/pgbouncer` (statement mode, console sessions as `cl_active`).

use pgbouncer_pool_core::PoolView;
use pgbouncer_protocol::{Column, ResultSet};

use super::{cell, ADMIN_DB};
use crate::snapshot::Snapshot;

/// The pools of the pooler plus `None` for the console pool, sorted by (database, user).
pub(super) fn sorted_pools<'a>(
    snap: &'a Snapshot<'_>,
) -> Vec<(String, String, Option<PoolView<'a>>)> {
    let mut v: Vec<_> = snap
        .pooler
        .pools(snap.now)
        .map(|p| (p.key.database.to_string(), p.key.user.to_string(), Some(p)))
        .collect();
    v.push((ADMIN_DB.into(), ADMIN_DB.into(), None));
    v.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    v
}

/// `load_balance_hosts` of `database`: shown only when its host is a list.
pub(super) fn load_balance_hosts(snap: &Snapshot<'_>, database: &str) -> Option<String> {
    snap.databases
        .iter()
        .find(|d| d.name == database)
        .filter(|d| d.host.as_deref().is_some_and(|h| h.contains(',')))
        .and_then(|d| d.load_balance_hosts.clone())
}

pub(super) fn pools(snap: &Snapshot<'_>) -> ResultSet {
    let mut columns = vec![Column::text("database"), Column::text("user")];
    columns.extend(
        [
            "cl_active",
            "cl_waiting",
            "cl_active_cancel_req",
            "cl_waiting_cancel_req",
            "sv_active",
            "sv_active_cancel",
            "sv_being_canceled",
            "sv_idle",
            "sv_used",
            "sv_tested",
            "sv_login",
            "maxwait",
            "maxwait_us",
        ]
        .map(Column::int4),
    );
    columns.push(Column::text("pool_mode"));
    columns.push(Column::text("load_balance_hosts"));
    let mut set = ResultSet::new(columns);
    for (db, user, pool) in sorted_pools(snap) {
        let row = match pool {
            Some(p) => {
                let counts = [
                    p.cl_active,
                    p.cl_waiting,
                    0,
                    0,
                    p.sv_active,
                    0,
                    p.sv_being_canceled,
                    p.sv_idle,
                    p.sv_used,
                    p.sv_tested,
                    p.sv_login,
                ];
                // PgBouncer compat: maxwait is whole seconds, maxwait_us only the remainder.
                let wait = [p.maxwait_us / 1_000_000, p.maxwait_us % 1_000_000];
                let mode = p.pool_mode().as_str();
                pool_row(
                    &db,
                    &user,
                    counts,
                    wait,
                    mode,
                    load_balance_hosts(snap, &db),
                )
            }
            None => {
                let mut counts = [0; 11];
                counts[0] = snap.admin_clients.len() as u32;
                pool_row(&db, &user, counts, [0, 0], "statement", None)
            }
        };
        set.push_row(row);
    }
    set
}

fn pool_row(
    db: &str,
    user: &str,
    counts: [u32; 11],
    wait: [u64; 2],
    mode: &str,
    lbh: Option<String>,
) -> Vec<Option<String>> {
    let mut row = vec![cell(db), cell(user)];
    row.extend(counts.iter().map(cell));
    row.extend(wait.iter().map(cell));
    row.push(cell(mode));
    row.push(lbh);
    row
}

/// `SHOW LATENCY`: per pool (console pool excluded), p50/p95/p99 in microseconds of the
/// wait for a server, of queries and of transactions; 0 without samples. Percentiles are
/// the lower bound of a histogram bucket, exact to within 12.5 %.
pub(super) fn latency(snap: &Snapshot<'_>) -> ResultSet {
    let mut columns = vec![Column::text("database"), Column::text("user")];
    for kind in ["wait", "query", "xact"] {
        for q in ["p50", "p95", "p99"] {
            columns.push(Column::int8(format!("{kind}_{q}_us")));
        }
    }
    let mut set = ResultSet::new(columns);
    for (db, user, pool) in sorted_pools(snap) {
        let Some(p) = pool else { continue };
        let mut row = vec![cell(db), cell(user)];
        for h in [&p.stats.wait_hist, &p.stats.query_hist, &p.stats.xact_hist] {
            row.extend([0.5, 0.95, 0.99].map(|q| cell(h.quantile(q))));
        }
        set.push_row(row);
    }
    set
}
