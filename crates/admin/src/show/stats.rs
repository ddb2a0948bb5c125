//! SHOW STATS, STATS_TOTALS, STATS_AVERAGES and TOTALS (mirrors stats.c:
//! `admin_database_stats*` and `show_stat_totals`).
//!
//! Rows are per database, sums over its pools, sorted by name, and include `pgbouncer`
//! (all zeros). Averages of counts and bytes are per second and add up across pools; time
//! averages (per transaction, per query, per assignment) are combined weighted by the
//! matching per-second count, which is what PgBouncer's delta/delta gives up to rounding.

use std::collections::BTreeMap;

use pgbouncer_pool_core::StatCounters;
use pgbouncer_protocol::{Column, ResultSet};

use super::{cell, ADMIN_DB};
use crate::snapshot::Snapshot;

/// The twelve counters in column order.
fn values(c: &StatCounters) -> [u64; 12] {
    [
        c.server_assignment_count,
        c.xact_count,
        c.query_count,
        c.bytes_received,
        c.bytes_sent,
        c.xact_time,
        c.query_time,
        c.wait_time,
        c.client_parse_count,
        c.server_parse_count,
        c.bind_count,
        c.client_login_count,
    ]
}

/// Totals and combined averages of a group of pools.
#[derive(Default)]
struct Sums {
    totals: StatCounters,
    averages: StatCounters,
    /// Σ time × count for the three time averages: xact, query, wait.
    weighted: [u128; 3],
}

impl Sums {
    fn add(&mut self, totals: &StatCounters, averages: &StatCounters) {
        self.totals.add(totals);
        let a = averages;
        self.weighted[0] += u128::from(a.xact_time) * u128::from(a.xact_count);
        self.weighted[1] += u128::from(a.query_time) * u128::from(a.query_count);
        self.weighted[2] += u128::from(a.wait_time) * u128::from(a.server_assignment_count);
        let (xt, qt, wt) = (
            self.averages.xact_time,
            self.averages.query_time,
            self.averages.wait_time,
        );
        self.averages.add(a);
        // Without a count to weigh by (less than one per second), keep the larger time.
        self.averages.xact_time = xt.max(a.xact_time);
        self.averages.query_time = qt.max(a.query_time);
        self.averages.wait_time = wt.max(a.wait_time);
    }

    fn averages(&self) -> StatCounters {
        let mut a = self.averages;
        let per = |w: u128, n: u64, fallback: u64| {
            if n == 0 {
                fallback
            } else {
                u64::try_from(w / u128::from(n)).unwrap_or(u64::MAX)
            }
        };
        a.xact_time = per(self.weighted[0], a.xact_count, a.xact_time);
        a.query_time = per(self.weighted[1], a.query_count, a.query_time);
        a.wait_time = per(self.weighted[2], a.server_assignment_count, a.wait_time);
        a
    }
}

fn per_database(snap: &Snapshot<'_>) -> BTreeMap<String, Sums> {
    let mut dbs: BTreeMap<String, Sums> = BTreeMap::new();
    dbs.entry(ADMIN_DB.into())
        .or_default()
        .add(&snap.console_totals, &Default::default());
    for p in snap.pooler.pools(snap.now) {
        dbs.entry(p.key.database.to_string())
            .or_default()
            .add(&p.stats.totals, &p.stats.averages);
    }
    dbs
}

fn with_database(names: &[&str]) -> Vec<Column> {
    let mut columns = vec![Column::text("database")];
    columns.extend(names.iter().map(|n| Column::numeric(*n)));
    columns
}

fn push(set: &mut ResultSet, db: &str, parts: &[[u64; 12]]) {
    let mut row = vec![cell(db)];
    for part in parts {
        row.extend(part.iter().map(cell));
    }
    set.push_row(row);
}

pub(super) fn stats(snap: &Snapshot<'_>) -> ResultSet {
    let mut set = ResultSet::new(with_database(&[
        "total_server_assignment_count",
        "total_xact_count",
        "total_query_count",
        "total_received",
        "total_sent",
        "total_xact_time",
        "total_query_time",
        "total_wait_time",
        "total_client_parse_count",
        "total_server_parse_count",
        "total_bind_count",
        "total_client_login_count",
        "avg_server_assignment_count",
        "avg_xact_count",
        "avg_query_count",
        "avg_recv",
        "avg_sent",
        "avg_xact_time",
        "avg_query_time",
        "avg_wait_time",
        "avg_client_parse_count",
        "avg_server_parse_count",
        "avg_bind_count",
        "avg_client_login_count",
    ]));
    for (db, s) in per_database(snap) {
        push(&mut set, &db, &[values(&s.totals), values(&s.averages())]);
    }
    set
}

const COMMON: [&str; 8] = [
    "server_assignment_count",
    "xact_count",
    "query_count",
    "bytes_received",
    "bytes_sent",
    "xact_time",
    "query_time",
    "wait_time",
];

pub(super) fn stats_totals(snap: &Snapshot<'_>) -> ResultSet {
    let mut names = COMMON.to_vec();
    names.extend([
        "client_parse_count",
        "server_parse_count",
        "bind_count",
        "client_login_count",
    ]);
    let mut set = ResultSet::new(with_database(&names));
    for (db, s) in per_database(snap) {
        push(&mut set, &db, &[values(&s.totals)]);
    }
    set
}

pub(super) fn stats_averages(snap: &Snapshot<'_>) -> ResultSet {
    let mut names = COMMON.to_vec();
    // PgBouncer compat: only these four carry an `avg_` prefix.
    names.extend([
        "avg_client_parse_count",
        "avg_server_parse_count",
        "avg_bind_count",
        "avg_client_login_count",
    ]);
    let mut set = ResultSet::new(with_database(&names));
    for (db, s) in per_database(snap) {
        push(&mut set, &db, &[values(&s.averages())]);
    }
    set
}

/// `SHOW TOTALS`: one `name, value` row per counter over all pools, totals then averages.
pub(super) fn totals(snap: &Snapshot<'_>) -> ResultSet {
    const NAMES: [&str; 12] = [
        "server_assignment_count",
        "xact_count",
        "query_count",
        "client_bytes",
        "server_bytes",
        "xact_time",
        "query_time",
        "wait_time",
        "ps_client_parse_count",
        "ps_server_parse_count",
        "ps_bind_count",
        "client_login_count",
    ];
    let mut all = Sums::default();
    all.add(&snap.console_totals, &Default::default());
    for p in snap.pooler.pools(snap.now) {
        all.add(&p.stats.totals, &p.stats.averages);
    }
    let mut set = ResultSet::new(vec![Column::text("name"), Column::numeric("value")]);
    for (prefix, vals) in [
        ("total", values(&all.totals)),
        ("avg", values(&all.averages())),
    ] {
        for (name, v) in NAMES.iter().zip(vals) {
            set.push_row(vec![cell(format!("{prefix}_{name}")), cell(v)]);
        }
    }
    set
}
