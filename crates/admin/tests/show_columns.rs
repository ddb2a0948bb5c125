//! Every SHOW has exactly the newest PgBouncer column names, order and types.

mod common;

use pgbouncer_admin::{show, Reply, Show};
use pgbouncer_protocol::oid::{BYTEA, INT4, INT8, NUMERIC, TEXT};

fn columns(what: Show) -> Vec<(String, u32)> {
    let p = common::scenario();
    let snap = common::snapshot(&p);
    match show(&what, &snap) {
        Reply::Rows { set, tag } => {
            assert_eq!(tag, "SHOW");
            for row in set.rows() {
                assert_eq!(row.len(), set.columns().len(), "{what:?} row arity");
            }
            set.columns()
                .iter()
                .map(|c| (c.name.clone(), c.type_oid))
                .collect()
        }
        other => panic!("{what:?}: {other:?}"),
    }
}

fn typed(names: &[&str], oid: u32) -> Vec<(String, u32)> {
    names.iter().map(|n| (n.to_string(), oid)).collect()
}

fn with(first: &[(&str, u32)], rest: Vec<(String, u32)>) -> Vec<(String, u32)> {
    let mut v: Vec<_> = first.iter().map(|(n, t)| (n.to_string(), *t)).collect();
    v.extend(rest);
    v
}

const SOCKET: [(&str, u32); 21] = [
    ("type", TEXT),
    ("user", TEXT),
    ("database", TEXT),
    ("replication", TEXT),
    ("state", TEXT),
    ("addr", TEXT),
    ("port", INT4),
    ("local_addr", TEXT),
    ("local_port", INT4),
    ("connect_time", TEXT),
    ("request_time", TEXT),
    ("wait", INT4),
    ("wait_us", INT4),
    ("close_needed", INT4),
    ("ptr", TEXT),
    ("link", TEXT),
    ("remote_pid", INT4),
    ("tls", TEXT),
    ("application_name", TEXT),
    ("prepared_statements", INT4),
    ("id", INT4),
];

#[test]
fn show_stats_has_25_columns_all_numeric_but_database() {
    let expected = with(
        &[("database", TEXT)],
        typed(
            &[
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
            ],
            NUMERIC,
        ),
    );
    assert_eq!(expected.len(), 25);
    assert_eq!(columns(Show::Stats), expected);
}

#[test]
fn show_stats_totals_and_averages() {
    let common = [
        "server_assignment_count",
        "xact_count",
        "query_count",
        "bytes_received",
        "bytes_sent",
        "xact_time",
        "query_time",
        "wait_time",
    ];
    let mut totals = common.to_vec();
    totals.extend([
        "client_parse_count",
        "server_parse_count",
        "bind_count",
        "client_login_count",
    ]);
    assert_eq!(
        columns(Show::StatsTotals),
        with(&[("database", TEXT)], typed(&totals, NUMERIC))
    );
    let mut avgs = common.to_vec();
    avgs.extend([
        "avg_client_parse_count",
        "avg_server_parse_count",
        "avg_bind_count",
        "avg_client_login_count",
    ]);
    assert_eq!(
        columns(Show::StatsAverages),
        with(&[("database", TEXT)], typed(&avgs, NUMERIC))
    );
    assert_eq!(
        columns(Show::Totals),
        with(&[("name", TEXT), ("value", NUMERIC)], vec![])
    );
}

#[test]
fn show_clients_and_servers_have_21_columns() {
    let expected = with(&SOCKET, vec![]);
    assert_eq!(columns(Show::Clients), expected);
    assert_eq!(columns(Show::Servers), expected);
}

#[test]
fn show_sockets_add_seven_debug_columns() {
    let debug = typed(
        &[
            "recv_pos",
            "pkt_pos",
            "pkt_remain",
            "send_pos",
            "send_remain",
            "pkt_avail",
            "send_avail",
        ],
        INT4,
    );
    assert_eq!(columns(Show::Sockets), with(&SOCKET, debug.clone()));
    assert_eq!(columns(Show::ActiveSockets), with(&SOCKET, debug));
}

#[test]
fn show_pools_has_load_balance_hosts_last() {
    let mut expected = with(&[("database", TEXT), ("user", TEXT)], vec![]);
    expected.extend(typed(
        &[
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
        ],
        INT4,
    ));
    expected.extend(typed(&["pool_mode", "load_balance_hosts"], TEXT));
    assert_eq!(columns(Show::Pools), expected);
}

#[test]
fn show_databases_has_17_columns() {
    let expected = with(
        &[
            ("name", TEXT),
            ("host", TEXT),
            ("port", INT4),
            ("database", TEXT),
            ("force_user", TEXT),
            ("pool_size", INT4),
            ("min_pool_size", INT4),
            ("reserve_pool_size", INT4),
            ("server_lifetime", INT4),
            ("pool_mode", TEXT),
            ("load_balance_hosts", TEXT),
            ("max_connections", INT4),
            ("current_connections", INT4),
            ("max_client_connections", INT4),
            ("current_client_connections", INT4),
            ("paused", INT4),
            ("disabled", INT4),
        ],
        vec![],
    );
    assert_eq!(columns(Show::Databases), expected);
}

#[test]
fn show_users_has_text_pool_sizes() {
    let expected = with(
        &[
            ("name", TEXT),
            ("pool_size", TEXT),
            ("reserve_pool_size", TEXT),
            ("pool_mode", TEXT),
            ("max_user_connections", INT4),
            ("current_connections", INT4),
            ("max_user_client_connections", INT4),
            ("current_client_connections", INT4),
        ],
        vec![],
    );
    assert_eq!(columns(Show::Users), expected);
}

#[test]
fn small_shows_have_their_columns() {
    let cases: Vec<(Show, Vec<(&str, u32)>)> = vec![
        (Show::Lists, vec![("list", TEXT), ("items", INT4)]),
        (
            Show::Mem,
            vec![
                ("name", TEXT),
                ("size", INT4),
                ("used", INT4),
                ("free", INT4),
                ("memtotal", INT4),
            ],
        ),
        (
            Show::Config,
            vec![
                ("key", TEXT),
                ("value", TEXT),
                ("default", TEXT),
                ("changeable", TEXT),
            ],
        ),
        (Show::State, vec![("key", TEXT), ("value", TEXT)]),
        (Show::Version, vec![("version", TEXT)]),
        (
            Show::Peers,
            vec![
                ("peer_id", INT4),
                ("host", TEXT),
                ("port", INT4),
                ("pool_size", INT4),
            ],
        ),
        (
            Show::PeerPools,
            vec![
                ("peer_id", INT4),
                ("cl_active_cancel_req", INT4),
                ("cl_waiting_cancel_req", INT4),
                ("sv_active_cancel", INT4),
                ("sv_login", INT4),
            ],
        ),
        (
            Show::DnsHosts,
            vec![("hostname", TEXT), ("ttl", INT8), ("addrs", TEXT)],
        ),
        (
            Show::DnsZones,
            vec![("zonename", TEXT), ("serial", INT8), ("count", INT4)],
        ),
        (
            Show::Fds,
            vec![
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
            ],
        ),
    ];
    for (what, expected) in cases {
        assert_eq!(columns(what), with(&expected, vec![]), "{what:?}");
    }
}

#[test]
fn show_latency_is_ours_with_int8_percentiles() {
    let mut names = Vec::new();
    for kind in ["wait", "query", "xact"] {
        for q in ["p50", "p95", "p99"] {
            names.push(format!("{kind}_{q}_us"));
        }
    }
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    assert_eq!(
        columns(Show::Latency),
        with(&[("database", TEXT), ("user", TEXT)], typed(&names, INT8))
    );
}

#[test]
fn show_help_is_a_notice_then_show() {
    let p = common::scenario();
    let snap = common::snapshot(&p);
    let Reply::Notice {
        message,
        detail,
        then_tag,
    } = show(&Show::Help, &snap)
    else {
        panic!("help is a notice")
    };
    assert_eq!(message, "Console usage");
    assert_eq!(then_tag, "SHOW");
    let detail = detail.unwrap();
    assert!(
        detail.starts_with("\n\tSHOW HELP|CONFIG|DATABASES|POOLS|CLIENTS|SERVERS|USERS|VERSION\n")
    );
    assert!(detail.ends_with("\tSHUTDOWN WAIT_FOR_SERVERS|WAIT_FOR_CLIENTS\n\tWAIT_CLOSE [<db>]"));
}
