//! Prometheus metrics over the same data the console shows.
//!
//! The pgbouncer_exporter families are read from the very result sets `SHOW DATABASES`,
//! `SHOW STATS_TOTALS`, `SHOW POOLS`, `SHOW LISTS`, `SHOW CONFIG`, `SHOW CLIENTS` and
//! `SHOW VERSION` render, column by column as the exporter maps them, so a dashboard
//! built on the exporter and an operator at the console see the same numbers. Ours come
//! from the same pool-core statistics (latency histograms, pool sizes) or from the
//! daemon's own counters passed in as [`DaemonMetrics`].
//!
//! The encoding is OpenMetrics text (prometheus-client), which Prometheus scrapes
//! natively; counters carry their `_total` suffix as the exporter's do.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use pgbouncer_protocol::ResultSet;
use prometheus_client::encoding::{EncodeMetric, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::command::Show;
use crate::reply::Reply;
use crate::show::show;
use crate::snapshot::Snapshot;

/// The content type of [`render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What only the daemon counts (sockets, TLS, processes), for [`render`].
#[derive(Debug, Clone, Default)]
pub struct DaemonMetrics {
    /// Successful client logins (pools and console).
    pub logins: u64,
    /// Failed client logins by reason (`password`, `no_such_user`, `hba_reject`, ...).
    pub login_failures: Vec<(String, u64)>,
    /// TLS handshakes by side (`client`, `server`) and result (`ok`, `failed`).
    pub tls_handshakes: Vec<(&'static str, &'static str, u64)>,
    /// Prepared statements found in the server's cache at Bind/Describe time.
    pub prepared_hits: u64,
    /// Prepared statements that had to be parsed on the server first.
    pub prepared_misses: u64,
    /// Prepared statements closed on a server to make room (`max_prepared_statements`).
    pub prepared_evictions: u64,
    /// Idle clients parked now: no task and no reactor registration until their client
    /// sends something or pool-core has a message for them.
    pub parked_clients: u64,
    /// CPU seconds (user + system) per worker thread, by thread name.
    pub worker_cpu_seconds: Vec<(String, f64)>,
    /// Process CPU seconds (user + system).
    pub process_cpu_seconds: f64,
    /// Resident memory in bytes.
    pub process_resident_memory_bytes: u64,
    /// Open file descriptors.
    pub process_open_fds: u64,
    /// The file descriptor limit.
    pub process_max_fds: u64,
    /// Start time, seconds since the Unix epoch.
    pub process_start_time_seconds: f64,
}

type Labels = Vec<(String, String)>;

/// One family of gauges or counters with their label sets.
#[derive(Debug)]
struct Family {
    kind: MetricType,
    samples: Vec<(Labels, f64)>,
}

impl EncodeMetric for Family {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        for (labels, v) in &self.samples {
            let e = encoder.encode_family(labels)?;
            match self.kind {
                MetricType::Counter => encode_counter(e, *v)?,
                _ => encode_gauge(e, *v)?,
            }
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        self.kind
    }

    fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}

fn encode_counter(mut e: MetricEncoder, v: f64) -> Result<(), std::fmt::Error> {
    e.encode_counter::<prometheus_client::encoding::NoLabelSet, _, f64>(&v, None)
}

fn encode_gauge(mut e: MetricEncoder, v: f64) -> Result<(), std::fmt::Error> {
    e.encode_gauge(&v)
}

/// One histogram family: per label set, sum (seconds), count and `le` buckets.
#[derive(Debug)]
struct HistogramFamily {
    samples: Vec<(Labels, Hist)>,
}

#[derive(Debug)]
struct Hist {
    sum: f64,
    count: u64,
    /// (upper bound in seconds, samples in this bucket alone); the last is +Inf.
    buckets: Vec<(f64, u64)>,
}

impl EncodeMetric for HistogramFamily {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        for (labels, h) in &self.samples {
            let mut e = encoder.encode_family(labels)?;
            e.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                h.sum, h.count, &h.buckets, None,
            )?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }

    fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}

/// Histogram bucket bounds in microseconds (100 µs to 10 s).
const BOUNDS_US: [u64; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

fn histogram(h: &pgbouncer_pool_core::Histogram) -> Hist {
    let mut buckets = Vec::with_capacity(BOUNDS_US.len() + 1);
    let mut below = 0;
    for b in BOUNDS_US {
        let n = h.count_at_most(b);
        buckets.push((b as f64 / 1e6, n - below));
        below = n;
    }
    buckets.push((f64::INFINITY, h.count() - below));
    Hist {
        sum: h.sum() as f64 / 1e6,
        count: h.count(),
        buckets,
    }
}

/// A family of either kind.
#[derive(Debug)]
enum Fam {
    Plain(Family),
    Histograms(HistogramFamily),
}

impl EncodeMetric for Fam {
    fn encode(&self, encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        match self {
            Fam::Plain(f) => f.encode(encoder),
            Fam::Histograms(h) => h.encode(encoder),
        }
    }

    fn metric_type(&self) -> MetricType {
        match self {
            Fam::Plain(f) => f.metric_type(),
            Fam::Histograms(h) => h.metric_type(),
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Fam::Plain(f) => f.is_empty(),
            Fam::Histograms(h) => h.is_empty(),
        }
    }
}

/// Families in the order they are printed.
#[derive(Default)]
struct Families {
    list: Vec<(String, String, Fam)>,
    index: HashMap<String, usize>,
}

impl Families {
    fn add(&mut self, kind: MetricType, name: &str, help: &str, labels: Labels, v: f64) {
        let i = *self.index.entry(name.to_string()).or_insert_with(|| {
            let empty = Family {
                kind,
                samples: Vec::new(),
            };
            self.list
                .push((name.to_string(), help.to_string(), Fam::Plain(empty)));
            self.list.len() - 1
        });
        if let Fam::Plain(f) = &mut self.list[i].2 {
            f.samples.push((labels, v));
        }
    }

    fn gauge(&mut self, name: &str, help: &str, labels: Labels, v: f64) {
        self.add(MetricType::Gauge, name, help, labels, v);
    }

    /// `name` without `_total` (the encoder appends it).
    fn counter(&mut self, name: &str, help: &str, labels: Labels, v: f64) {
        self.add(MetricType::Counter, name, help, labels, v);
    }

    fn histograms(&mut self, name: &str, help: &str, samples: Vec<(Labels, Hist)>) {
        let fam = Fam::Histograms(HistogramFamily { samples });
        self.list.push((name.to_string(), help.to_string(), fam));
    }

    fn encode(self) -> String {
        let mut registry = Registry::default();
        for (name, help, metric) in self.list {
            registry.register(name, help, metric);
        }
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
            out.clear();
            let _ = writeln!(out, "# EOF");
        }
        out
    }
}

/// The rows of a SHOW, each as column name → text (NULL as "").
fn table(what: Show, snap: &Snapshot<'_>) -> Vec<BTreeMap<String, String>> {
    let Reply::Rows { set, .. } = show(&what, snap) else {
        return Vec::new();
    };
    rows(&set)
}

fn rows(set: &ResultSet) -> Vec<BTreeMap<String, String>> {
    set.rows()
        .iter()
        .map(|row| {
            set.columns()
                .iter()
                .zip(row)
                .map(|(c, v)| (c.name.clone(), v.clone().unwrap_or_default()))
                .collect()
        })
        .collect()
}

fn num(row: &BTreeMap<String, String>, column: &str) -> Option<f64> {
    row.get(column).and_then(|v| v.parse().ok())
}

fn labels(row: &BTreeMap<String, String>, names: &[&str]) -> Labels {
    names
        .iter()
        .map(|n| (n.to_string(), row.get(*n).cloned().unwrap_or_default()))
        .collect()
}

fn l(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `SHOW DATABASES` columns the exporter publishes: (column, metric, help).
const DATABASE_GAUGES: &[(&str, &str, &str)] = &[
    (
        "pool_size",
        "pool_size",
        "Maximum number of server connections",
    ),
    (
        "reserve_pool_size",
        "reserve_pool",
        "Maximum number of additional connections for this database",
    ),
    (
        "max_connections",
        "max_connections",
        "Maximum number of allowed connections for this database",
    ),
    (
        "current_connections",
        "current_connections",
        "Current number of connections for this database",
    ),
    (
        "paused",
        "paused",
        "1 if this database is currently paused, else 0",
    ),
    (
        "disabled",
        "disabled",
        "1 if this database is currently disabled, else 0",
    ),
];

/// `SHOW STATS_TOTALS` columns: (column, metric without `_total`, scale, help).
const STATS_COUNTERS: &[(&str, &str, f64, &str)] = &[
    ("query_count", "queries_pooled", 1.0, "Total number of SQL queries pooled"),
    ("query_time", "queries_duration_seconds", 1e-6, "Total number of seconds spent by pgbouncer when actively connected to PostgreSQL, executing queries"),
    ("bytes_received", "received_bytes", 1.0, "Total volume in bytes of network traffic received by pgbouncer, shown as bytes"),
    ("bytes_sent", "sent_bytes", 1.0, "Total volume in bytes of network traffic sent by pgbouncer, shown as bytes"),
    ("wait_time", "client_wait_seconds", 1e-6, "Time spent by clients waiting for a server in seconds"),
    ("xact_count", "sql_transactions_pooled", 1.0, "Total number of SQL transactions pooled"),
    ("xact_time", "server_in_transaction_seconds", 1e-6, "Total number of seconds spent by pgbouncer when connected to PostgreSQL in a transaction, either idle in transaction or executing queries"),
    ("client_parse_count", "client_parses", 1.0, "Total number of prepared statement Parse messages received from clients"),
    ("server_parse_count", "server_parses", 1.0, "Total number of prepared statement Parse messages sent by pgbouncer to PostgreSQL"),
    ("bind_count", "binds", 1.0, "Total number of prepared statements readied for execution with a Bind message"),
    ("server_assignment_count", "server_assignments", 1.0, "Total number of client connections which have been served since process start"),
];

/// The names exporter releases before 0.11 used (`SHOW STATS`), which many published
/// dashboards still query: the same values again under `pgbouncer_stats_*`.
const LEGACY_STATS: &[(&str, &str)] = &[
    ("query_count", "queries_pooled"),
    ("query_time", "queries_duration_seconds"),
    ("bytes_received", "received_bytes"),
    ("query_count", "queries"),
    ("bytes_sent", "sent_bytes"),
    ("wait_time", "client_wait_seconds"),
    ("xact_count", "sql_transactions_pooled"),
    ("xact_time", "server_in_transaction_seconds"),
];

/// `SHOW POOLS` columns: (column, metric, help).
const POOL_GAUGES: &[(&str, &str, &str)] = &[
    ("cl_active", "client_active_connections", "Client connections linked to server connection and able to process queries, shown as connection"),
    ("cl_active_cancel_req", "client_active_cancel_connections", "Client connections that have forwarded query cancellations to the server and are waiting for the server response"),
    ("cl_waiting", "client_waiting_connections", "Client connections waiting on a server connection, shown as connection"),
    ("cl_waiting_cancel_req", "client_waiting_cancel_connections", "Client connections that have not forwarded query cancellations to the server yet"),
    ("sv_active", "server_active_connections", "Server connections linked to a client connection, shown as connection"),
    ("sv_active_cancel", "server_active_cancel_connections", "Server connections that are currently forwarding a cancel request"),
    ("sv_being_canceled", "server_being_canceled_connections", "Servers that normally could become idle but are waiting to do so until all in-flight cancel requests have completed that were sent to cancel a query on this server"),
    ("sv_idle", "server_idle_connections", "Server connections idle and ready for a client query, shown as connection"),
    ("sv_used", "server_used_connections", "Server connections idle more than server_check_delay, needing server_check_query, shown as connection"),
    ("sv_tested", "server_testing_connections", "Server connections currently running either server_reset_query or server_check_query, shown as connection"),
    ("sv_login", "server_login_connections", "Server connections currently in the process of logging in, shown as connection"),
];

/// `SHOW LISTS` rows: (list, metric, help).
const LISTS: &[(&str, &str, &str)] = &[
    ("databases", "databases", "Count of databases"),
    ("users", "users", "Count of users"),
    ("pools", "pools", "Count of pools"),
    ("free_clients", "free_clients", "Count of free clients"),
    ("used_clients", "used_clients", "Count of used clients"),
    (
        "login_clients",
        "login_clients",
        "Count of clients in login state",
    ),
    ("free_servers", "free_servers", "Count of free servers"),
    ("used_servers", "used_servers", "Count of used servers"),
    (
        "dns_names",
        "cached_dns_names",
        "Count of DNS names in the cache",
    ),
    (
        "dns_zones",
        "cached_dns_zones",
        "Count of DNS zones in the cache",
    ),
    (
        "dns_queries",
        "in_flight_dns_queries",
        "Count of in-flight DNS queries",
    ),
];

/// Renders every metric: pgbouncer_exporter's families from the SHOW result sets, then
/// ours. `pgbouncer_up` is 1: the numbers come from the pooler itself.
pub fn render(snap: &Snapshot<'_>, daemon: &DaemonMetrics) -> String {
    let mut f = Families::default();
    exporter_families(&mut f, snap);
    own_families(&mut f, snap, daemon);
    f.encode()
}

fn exporter_families(f: &mut Families, snap: &Snapshot<'_>) {
    f.gauge(
        "pgbouncer_up",
        "The pgbouncer scrape succeeded",
        l(&[]),
        1.0,
    );
    for row in table(Show::Version, snap) {
        let version = row.get("version").cloned().unwrap_or_default();
        f.gauge(
            "pgbouncer_version_info",
            "The pgbouncer version info",
            l(&[("version", &version)]),
            1.0,
        );
    }
    let lists: HashMap<String, f64> = table(Show::Lists, snap)
        .into_iter()
        .filter_map(|r| Some((r.get("list")?.clone(), num(&r, "items")?)))
        .collect();
    for (list, metric, help) in LISTS {
        if let Some(v) = lists.get(*list) {
            f.gauge(&format!("pgbouncer_{metric}"), help, l(&[]), *v);
        }
    }
    let config: HashMap<String, String> = table(Show::Config, snap)
        .into_iter()
        .filter_map(|r| Some((r.get("key")?.clone(), r.get("value")?.clone())))
        .collect();
    for (key, metric, help) in [
        (
            "max_client_conn",
            "max_client_connections",
            "Config maximum number of client connections",
        ),
        (
            "max_user_connections",
            "max_user_connections",
            "Config maximum number of server connections per user",
        ),
    ] {
        if let Some(v) = config.get(key).and_then(|v| v.parse::<f64>().ok()) {
            f.gauge(&format!("pgbouncer_config_{metric}"), help, l(&[]), v);
        }
    }
    let db_labels = [
        "name",
        "host",
        "port",
        "database",
        "force_user",
        "pool_mode",
    ];
    for row in table(Show::Databases, snap) {
        for (column, metric, help) in DATABASE_GAUGES {
            if let Some(v) = num(&row, column) {
                let name = format!("pgbouncer_databases_{metric}");
                f.gauge(&name, help, labels(&row, &db_labels), v);
            }
        }
    }
    let stats = table(Show::StatsTotals, snap);
    for (column, metric, scale, help) in STATS_COUNTERS {
        for row in &stats {
            if let Some(v) = num(row, column) {
                let name = format!("pgbouncer_stats_totals_{metric}");
                f.counter(&name, help, labels(row, &["database"]), v * scale);
            }
        }
    }
    for (column, metric) in LEGACY_STATS {
        let (_, _, scale, help) = STATS_COUNTERS
            .iter()
            .find(|s| s.0 == *column)
            .copied()
            .unwrap_or((column, metric, 1.0, ""));
        for row in &stats {
            if let Some(v) = num(row, column) {
                let name = format!("pgbouncer_stats_{metric}");
                f.counter(&name, help, labels(row, &["database"]), v * scale);
            }
        }
    }
    let pools = table(Show::Pools, snap);
    for (column, metric, help) in POOL_GAUGES {
        for row in &pools {
            if let Some(v) = num(row, column) {
                let name = format!("pgbouncer_pools_{metric}");
                f.gauge(&name, help, labels(row, &["database", "user"]), v);
            }
        }
    }
    for row in &pools {
        // The exporter reads whole seconds from `maxwait`; `maxwait_us` adds the rest.
        let secs = num(row, "maxwait").unwrap_or(0.0) + num(row, "maxwait_us").unwrap_or(0.0) / 1e6;
        f.gauge(
            "pgbouncer_pools_client_maxwait_seconds",
            "Age of oldest unserved client connection, shown as second",
            labels(row, &["database", "user"]),
            secs,
        );
    }
    let mut clients: BTreeMap<Labels, f64> = BTreeMap::new();
    for row in table(Show::Clients, snap) {
        let key = labels(&row, &["database", "user", "application_name", "state"]);
        *clients.entry(key).or_default() += 1.0;
    }
    for (key, n) in clients {
        f.gauge(
            "pgbouncer_client_connections",
            "Number of client connections grouped by database, user, application name, and state",
            key,
            n,
        );
    }
}

fn own_families(f: &mut Families, snap: &Snapshot<'_>, d: &DaemonMetrics) {
    let mut wait = Vec::new();
    let mut query = Vec::new();
    let mut xact = Vec::new();
    let mut pools: Vec<_> = snap.pooler.pools(snap.now).collect();
    pools.sort_by(|a, b| (&a.key.database, &a.key.user).cmp(&(&b.key.database, &b.key.user)));
    for p in &pools {
        let key = l(&[("database", &p.key.database), ("user", &p.key.user)]);
        f.gauge(
            "pgbouncer_pool_size",
            "Effective pool_size of the pool (database or user setting, else default_pool_size)",
            key.clone(),
            f64::from(p.settings.pool_size),
        );
        f.gauge(
            "pgbouncer_pool_reserve_size",
            "Effective reserve_pool_size of the pool",
            key.clone(),
            f64::from(p.settings.reserve_pool_size),
        );
        f.gauge(
            "pgbouncer_pool_min_size",
            "Effective min_pool_size of the pool",
            key.clone(),
            f64::from(p.settings.min_pool_size),
        );
        wait.push((key.clone(), histogram(&p.stats.wait_hist)));
        query.push((key.clone(), histogram(&p.stats.query_hist)));
        xact.push((key, histogram(&p.stats.xact_hist)));
    }
    f.histograms(
        "pgbouncer_pool_wait_seconds",
        "Time clients waited for a server, per assignment",
        wait,
    );
    f.histograms(
        "pgbouncer_pool_query_seconds",
        "Query times (average per reported batch of queries)",
        query,
    );
    f.histograms(
        "pgbouncer_pool_transaction_seconds",
        "Transaction times (average per reported batch of transactions)",
        xact,
    );
    f.counter(
        "pgbouncer_client_logins",
        "Successful client logins",
        l(&[]),
        d.logins as f64,
    );
    for (reason, n) in &d.login_failures {
        f.counter(
            "pgbouncer_client_login_failures",
            "Failed client logins by reason",
            l(&[("reason", reason)]),
            *n as f64,
        );
    }
    for (side, result, n) in &d.tls_handshakes {
        f.counter(
            "pgbouncer_tls_handshakes",
            "TLS handshakes by side (client, server) and result (ok, failed)",
            l(&[("side", side), ("result", result)]),
            *n as f64,
        );
    }
    for (name, v, help) in [
        (
            "pgbouncer_prepared_statement_cache_hits",
            d.prepared_hits,
            "Prepared statements already on the server when used",
        ),
        (
            "pgbouncer_prepared_statement_cache_misses",
            d.prepared_misses,
            "Prepared statements parsed on a server before use",
        ),
        (
            "pgbouncer_prepared_statement_cache_evictions",
            d.prepared_evictions,
            "Prepared statements closed on a server to stay within max_prepared_statements",
        ),
    ] {
        f.counter(name, help, l(&[]), v as f64);
    }
    f.gauge(
        "pgbouncer_parked_clients",
        "Idle client connections parked (no task, no reactor registration)",
        l(&[]),
        d.parked_clients as f64,
    );
    for (worker, secs) in &d.worker_cpu_seconds {
        f.counter(
            "pgbouncer_worker_cpu_seconds",
            "CPU time (user and system) of each worker thread",
            l(&[("worker", worker)]),
            *secs,
        );
    }
    f.counter(
        "process_cpu_seconds",
        "Total user and system CPU time spent in seconds",
        l(&[]),
        d.process_cpu_seconds,
    );
    for (name, v, help) in [
        (
            "process_resident_memory_bytes",
            d.process_resident_memory_bytes as f64,
            "Resident memory size in bytes",
        ),
        (
            "process_open_fds",
            d.process_open_fds as f64,
            "Number of open file descriptors",
        ),
        (
            "process_max_fds",
            d.process_max_fds as f64,
            "Maximum number of open file descriptors",
        ),
        (
            "process_start_time_seconds",
            d.process_start_time_seconds,
            "Start time of the process since unix epoch in seconds",
        ),
    ] {
        f.gauge(name, help, l(&[]), v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgbouncer_pool_core::{Config, Instant, Pooler};
    use std::time::SystemTime;

    #[test]
    fn an_empty_pooler_renders_the_exporter_families_that_have_rows() {
        let pooler = Pooler::new(Config::default());
        let snap = Snapshot::new(&pooler, Instant::ZERO, SystemTime::UNIX_EPOCH);
        let text = render(&snap, &DaemonMetrics::default());
        assert!(
            text.contains("# TYPE pgbouncer_up gauge\npgbouncer_up 1.0\n"),
            "{text}"
        );
        assert!(
            text.contains("pgbouncer_version_info{version=\"pgbouncer-rs "),
            "{text}"
        );
        assert!(text.contains("pgbouncer_used_clients 0"), "{text}");
        // The admin database has a stats row, as in SHOW STATS_TOTALS.
        assert!(
            text.contains("pgbouncer_stats_totals_queries_pooled_total{database=\"pgbouncer\"} 0"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_end_at_the_count() {
        let mut h = pgbouncer_pool_core::Histogram::default();
        for us in [50, 200, 200, 3_000, 20_000_000] {
            h.record(us);
        }
        let hist = histogram(&h);
        assert_eq!(hist.count, 5);
        assert_eq!(hist.buckets.iter().map(|b| b.1).sum::<u64>(), 5);
        assert_eq!(hist.buckets[0], (0.0001, 1)); // 50 us
        assert_eq!(hist.buckets[1].1, 2); // 200 us twice
        assert_eq!(hist.buckets.last().map(|b| b.1), Some(1)); // 20 s: +Inf only
        assert!((hist.sum - 20.00345).abs() < 1e-9);
    }
}
