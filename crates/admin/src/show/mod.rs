//! Rendering of every `SHOW` as a [`ResultSet`] with the newest PgBouncer columns (names,
//! order, types), mirroring the `admin_show_*` functions of PgBouncer's admin.c.
//!
//! What we do not have renders as PgBouncer renders its empty case:
//!
//! * `SHOW FDS`: no rows. There is no `-R` online restart, so there are no fds to hand over.
//! * `SHOW DNS_HOSTS` / `SHOW DNS_ZONES`: no rows; the daemon resolves through the system
//!   resolver and keeps no DNS cache. The `dns_*` rows of SHOW LISTS are 0.
//! * `SHOW PEER_POOLS`: no rows; a forwarded cancel uses a short connection of its own,
//!   not a pool.
//! * `SHOW MEM`: PgBouncer lists its slab allocators. We have none; the rows name the same
//!   caches with `used` = live objects and 0 for size, free and memtotal.
//! * `sv_being_canceled` counts released servers held out of the pool until a cancel
//!   request forwarded to them is done. The other cancel-request states
//!   (`cl_active_cancel_req`, `cl_waiting_cancel_req`, `sv_active_cancel`) are 0: cancel
//!   requests are forwarded by the daemon without entering a pool.
//! * Timestamps are UTC (see [`timestamp`](crate::timestamp)).
//!
//! `SHOW LATENCY` is ours: wait, query and transaction time percentiles per pool, from
//! pool-core's histograms.

mod databases;
mod pools;
mod sockets;
mod stats;

pub use sockets::{client_ptr, server_ptr};

use pgbouncer_protocol::{Column, ResultSet};

use crate::command::Show;
use crate::reply::Reply;
use crate::snapshot::Snapshot;

/// The admin console's database, user, and pool mode.
pub const ADMIN_DB: &str = "pgbouncer";

/// The PgBouncer release whose console output we reproduce.
pub const PGBOUNCER_COMPAT_VERSION: &str = "1.26.1";

/// The `SHOW VERSION` text: `pgbouncer-rs <version> (compatible with PgBouncer 1.26.1)`.
///
/// We are not PgBouncer, so we do not claim to be; monitoring tools that look for
/// `PgBouncer X.Y.Z` anywhere in the text (pgbouncer_exporter, Datadog) still find the
/// release whose behaviour we follow.
pub fn version_text() -> String {
    format!(
        "pgbouncer-rs {} (compatible with PgBouncer {PGBOUNCER_COMPAT_VERSION})",
        env!("CARGO_PKG_VERSION")
    )
}

/// The `D` field of `SHOW HELP` (PgBouncer's text, plus our `SHOW LATENCY` line).
pub const HELP_DETAIL: &str =
    "\n\tSHOW HELP|CONFIG|DATABASES|POOLS|CLIENTS|SERVERS|USERS|VERSION\n\
\tSHOW PEERS|PEER_POOLS\n\
\tSHOW FDS|SOCKETS|ACTIVE_SOCKETS|LISTS|MEM|STATE\n\
\tSHOW DNS_HOSTS|DNS_ZONES\n\
\tSHOW STATS|STATS_TOTALS|STATS_AVERAGES|TOTALS\n\
\tSHOW LATENCY|ADVICE\n\
\tSET key = arg\n\
\tRELOAD\n\
\tPAUSE [<db>]\n\
\tRESUME [<db>]\n\
\tDISABLE <db>\n\
\tENABLE <db>\n\
\tRECONNECT [<db>]\n\
\tKILL [<db>]\n\
\tKILL_CLIENT <client_id>\n\
\tSUSPEND\n\
\tSHUTDOWN\n\
\tSHUTDOWN WAIT_FOR_SERVERS|WAIT_FOR_CLIENTS\n\
\tWAIT_CLOSE [<db>]";

/// The answer to `SHOW what`: a result set with tag `SHOW`, or for `SHOW HELP` a NOTICE
/// `Console usage` followed by `SHOW`. Access is not checked here (see
/// [`check_access`](crate::check_access)).
pub fn show(what: &Show, snap: &Snapshot<'_>) -> Reply {
    let set = match what {
        Show::Help => {
            return Reply::Notice {
                message: "Console usage".into(),
                detail: Some(HELP_DETAIL.into()),
                then_tag: "SHOW".into(),
            }
        }
        Show::Pools => pools::pools(snap),
        Show::Latency => pools::latency(snap),
        Show::Advice => crate::advice::show_advice(snap),
        Show::Stats => stats::stats(snap),
        Show::StatsTotals => stats::stats_totals(snap),
        Show::StatsAverages => stats::stats_averages(snap),
        Show::Totals => stats::totals(snap),
        Show::Clients => sockets::clients(snap),
        Show::Servers => sockets::servers(snap),
        Show::Sockets => sockets::sockets(snap, false),
        Show::ActiveSockets => sockets::sockets(snap, true),
        Show::Databases => databases::databases(snap),
        Show::Users => databases::users(snap),
        Show::Config => config(snap),
        Show::Lists => lists(snap),
        Show::Mem => mem(snap),
        Show::State => state(snap),
        Show::Version => {
            let mut set = ResultSet::new(vec![Column::text("version")]);
            set.push_row(vec![Some(version_text())]);
            set
        }
        Show::Fds => ResultSet::new(fds_columns()),
        Show::DnsHosts => ResultSet::new(vec![
            Column::text("hostname"),
            Column::int8("ttl"),
            Column::text("addrs"),
        ]),
        Show::DnsZones => ResultSet::new(vec![
            Column::text("zonename"),
            Column::int8("serial"),
            Column::int4("count"),
        ]),
        Show::Peers => {
            let mut set = ResultSet::new(vec![
                Column::int4("peer_id"),
                Column::text("host"),
                Column::int4("port"),
                Column::int4("pool_size"),
            ]);
            let mut peers = snap.peers.clone();
            peers.sort();
            for (id, host, port, pool_size) in peers {
                set.push_row(vec![
                    Some(id.to_string()),
                    Some(host),
                    Some(port.to_string()),
                    Some(pool_size.to_string()),
                ]);
            }
            set
        }
        Show::PeerPools => ResultSet::new(
            [
                "peer_id",
                "cl_active_cancel_req",
                "cl_waiting_cancel_req",
                "sv_active_cancel",
                "sv_login",
            ]
            .map(Column::int4)
            .to_vec(),
        ),
    };
    Reply::rows(set)
}

/// A non-NULL cell.
pub(crate) fn cell(v: impl ToString) -> Option<String> {
    Some(v.to_string())
}

fn fds_columns() -> Vec<Column> {
    use pgbouncer_protocol::oid::{BYTEA, INT4, INT8, TEXT};
    [
        ("fd", INT4),
        ("task", TEXT),
        ("user", TEXT),
        ("database", TEXT),
        ("addr", TEXT),
        ("port", INT4),
        ("cancel", INT8),
        ("link", INT4),
        ("client_encoding", TEXT),
        ("std_strings", TEXT),
        ("datestyle", TEXT),
        ("timezone", TEXT),
        ("password", TEXT),
        ("scram_client_key", BYTEA),
        ("scram_server_key", BYTEA),
    ]
    .into_iter()
    .map(|(n, t)| Column::new(n, t))
    .collect()
}

fn config(snap: &Snapshot<'_>) -> ResultSet {
    let mut set = ResultSet::new(
        ["key", "value", "default", "changeable"]
            .map(Column::text)
            .to_vec(),
    );
    for e in &snap.config {
        set.push_row(vec![
            cell(&e.key),
            cell(&e.value),
            cell(&e.default),
            cell(if e.changeable { "yes" } else { "no" }),
        ]);
    }
    set
}

fn state(snap: &Snapshot<'_>) -> ResultSet {
    // PgBouncer compat: one pause mode, so SUSPEND shows paused=no.
    let suspended = snap.suspended;
    let paused = !suspended && snap.pooler.is_paused(None);
    let yes_no = |b: bool| cell(if b { "yes" } else { "no" });
    let mut set = ResultSet::new(vec![Column::text("key"), Column::text("value")]);
    set.push_row(vec![cell("active"), yes_no(!paused && !suspended)]);
    set.push_row(vec![cell("paused"), yes_no(paused)]);
    set.push_row(vec![cell("suspended"), yes_no(suspended)]);
    set
}

/// Object counts shared by SHOW LISTS and SHOW MEM.
struct Counts {
    databases: usize,
    users: usize,
    pools: usize,
    clients: usize,
    login_clients: usize,
    servers: usize,
}

fn counts(snap: &Snapshot<'_>) -> Counts {
    let clients = snap.pooler.clients(snap.now);
    Counts {
        databases: databases::database_rows(snap).len(),
        users: databases::user_names(snap).len(),
        pools: snap.pooler.pools(snap.now).count() + 1,
        clients: clients.len() + snap.admin_clients.len() + snap.logins_in_progress,
        login_clients: clients.iter().filter(|c| c.state == "login").count()
            + snap.logins_in_progress,
        servers: snap.pooler.servers(snap.now).len(),
    }
}

fn lists(snap: &Snapshot<'_>) -> ResultSet {
    let c = counts(snap);
    let mut set = ResultSet::new(vec![Column::text("list"), Column::int4("items")]);
    for (name, n) in [
        ("databases", c.databases),
        ("users", c.users),
        ("peers", 0),
        ("pools", c.pools),
        ("peer_pools", 0),
        ("free_clients", 0),
        ("used_clients", c.clients),
        ("login_clients", c.login_clients),
        ("free_servers", 0),
        ("used_servers", c.servers),
        ("dns_names", 0),
        ("dns_zones", 0),
        ("dns_queries", 0),
        ("dns_pending", 0),
    ] {
        set.push_row(vec![cell(name), cell(n)]);
    }
    set
}

fn mem(snap: &Snapshot<'_>) -> ResultSet {
    let c = counts(snap);
    let mut set = ResultSet::new(vec![
        Column::text("name"),
        Column::int4("size"),
        Column::int4("used"),
        Column::int4("free"),
        Column::int4("memtotal"),
    ]);
    for (name, used) in [
        ("user_cache", c.users),
        ("db_cache", c.databases),
        ("pool_cache", c.pools),
        ("server_cache", c.servers),
        ("client_cache", c.clients),
    ] {
        set.push_row(vec![cell(name), cell(0), cell(used), cell(0), cell(0)]);
    }
    set
}
