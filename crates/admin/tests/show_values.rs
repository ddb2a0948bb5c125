//! SHOW output over a real `Pooler` driven through events, compared as psql-style tables.

mod common;

use pgbouncer_admin::{show, AdminClientInfo, ConfigEntry, ConnInfo, Reply, Show, Snapshot};
use pgbouncer_pool_core::{ClientId, Event, Pooler, Usage};
use pgbouncer_protocol::ResultSet;

use common::{connect, secs, want};

fn set(what: Show, snap: &Snapshot<'_>) -> ResultSet {
    match show(&what, snap) {
        Reply::Rows { set, .. } => set,
        other => panic!("{what:?}: {other:?}"),
    }
}

fn table(what: Show, snap: &Snapshot<'_>) -> String {
    set(what, snap).to_text_table()
}

/// The values of `column` in every row, NULL as "NULL".
fn column(set: &ResultSet, name: &str) -> Vec<String> {
    let i = set
        .columns()
        .iter()
        .position(|c| c.name == name)
        .unwrap_or_else(|| panic!("no column {name}"));
    set.rows()
        .iter()
        .map(|r| r[i].clone().unwrap_or_else(|| "NULL".into()))
        .collect()
}

fn with_console(snap: &mut Snapshot<'_>) {
    snap.admin_clients.push(AdminClientInfo {
        id: ClientId(9),
        user: "admin".into(),
        connect_time: secs(5.0),
        request_time: secs(9.0),
        conn: ConnInfo {
            addr: "unix".into(),
            port: 6432,
            local_addr: "unix".into(),
            local_port: 6432,
            remote_pid: 4242,
            ..ConnInfo::default()
        },
    });
}

#[test]
fn show_pools_counts_clients_and_servers_per_pool() {
    let p = common::scenario();
    let mut snap = common::snapshot(&p);
    with_console(&mut snap);
    let t = set(Show::Pools, &snap);
    assert_eq!(column(&t, "database"), ["db1", "db2", "pgbouncer"]);
    assert_eq!(column(&t, "user"), ["alice", "bob", "pgbouncer"]);
    assert_eq!(column(&t, "cl_active"), ["1", "2", "1"]);
    assert_eq!(column(&t, "cl_waiting"), ["1", "0", "0"]);
    assert_eq!(column(&t, "sv_active"), ["1", "0", "0"]);
    assert_eq!(column(&t, "sv_idle"), ["0", "1", "0"]);
    assert_eq!(column(&t, "maxwait"), ["9", "0", "0"]);
    assert_eq!(column(&t, "maxwait_us"), ["500000", "0", "0"]);
    assert_eq!(
        column(&t, "pool_mode"),
        ["transaction", "session", "statement"]
    );
    assert_eq!(
        column(&t, "load_balance_hosts"),
        ["round-robin", "NULL", "NULL"]
    );
}

#[test]
fn show_clients_lists_states_times_and_links() {
    let p = common::scenario();
    let mut snap = common::snapshot(&p);
    with_console(&mut snap);
    let expected = concat!(
        " type | user  | database  | replication |  state  |   addr    | port  | local_addr | local_port |      connect_time       |      request_time       | wait | wait_us | close_needed |      ptr      |     link      | remote_pid | tls | application_name | prepared_statements | id\n",
        "------+-------+-----------+-------------+---------+-----------+-------+------------+------------+-------------------------+-------------------------+------+---------+--------------+---------------+---------------+------------+-----+------------------+---------------------+----\n",
        " C    | alice | db1       | none        | active  | 127.0.0.1 | 40001 | 127.0.0.1  |       6432 | 2023-11-14 22:13:10 UTC | 2023-11-14 22:13:10 UTC |    0 |       0 |            0 | 0x10000000001 | 0x20000000001 |          0 |     | psql             |                   0 |  1\n",
        " C    | alice | db1       | none        | waiting |           |     0 |            |          0 | 2023-11-14 22:13:10 UTC | 2023-11-14 22:13:10 UTC |    9 |  500000 |            0 | 0x10000000002 |               |          0 |     |                  |                   0 |  2\n",
        " C    | bob   | db2       | none        | idle    |           |     0 |            |          0 | 2023-11-14 22:13:11 UTC | 2023-11-14 22:13:12 UTC |    0 |       0 |            0 | 0x10000000003 |               |          0 |     |                  |                   0 |  3\n",
        " C    | carol | db2       | none        | idle    |           |     0 |            |          0 | 2023-11-14 22:13:13 UTC | 2023-11-14 22:13:13 UTC |    0 |       0 |            0 | 0x10000000004 |               |          0 |     |                  |                   0 |  4\n",
        " C    | admin | pgbouncer | none        | idle    | unix      |  6432 | unix       |       6432 | 2023-11-14 22:13:15 UTC | 2023-11-14 22:13:19 UTC |    0 |       0 |            0 | 0x10000000009 |               |       4242 |     |                  |                   0 |  9\n",
        "(5 rows)\n",
    );
    assert_eq!(table(Show::Clients, &snap), expected);
}

#[test]
fn show_servers_names_login_servers_new_and_links_back() {
    let mut p = common::scenario();
    let c6 = connect(&mut p, secs(6.0), 6, "db3", "dave");
    p.handle(secs(6.0), Event::ClientWantsServer { client: c6 });
    common::drain(&mut p); // ConnectServer: S3 stays in login
    let snap = common::snapshot(&p);
    let t = set(Show::Servers, &snap);
    assert_eq!(column(&t, "type"), ["S", "S", "S"]);
    assert_eq!(column(&t, "state"), ["active", "idle", "new"]);
    assert_eq!(column(&t, "database"), ["db1", "db2", "db3"]);
    assert_eq!(column(&t, "link"), ["0x10000000001", "", ""]);
    assert_eq!(column(&t, "id"), ["1", "2", "3"]);
    assert_eq!(column(&t, "close_needed"), ["0", "0", "0"]);
}

#[test]
fn show_stats_sums_usage_per_database_and_includes_pgbouncer() {
    let p = common::scenario();
    let snap = common::snapshot(&p);
    let t = set(Show::Stats, &snap);
    assert_eq!(column(&t, "database"), ["db1", "db2", "pgbouncer"]);
    assert_eq!(column(&t, "total_server_assignment_count"), ["1", "1", "0"]);
    assert_eq!(column(&t, "total_xact_count"), ["0", "2", "0"]);
    assert_eq!(column(&t, "total_query_count"), ["0", "3", "0"]);
    assert_eq!(column(&t, "total_received"), ["0", "110", "0"]);
    assert_eq!(column(&t, "total_sent"), ["0", "2020", "0"]);
    assert_eq!(column(&t, "total_xact_time"), ["0", "1000", "0"]);
    assert_eq!(column(&t, "total_query_time"), ["0", "900", "0"]);
    assert_eq!(column(&t, "total_client_login_count"), ["2", "2", "0"]);
    let totals = table(Show::Totals, &snap);
    assert!(
        totals.contains(" total_client_bytes            |   110\n"),
        "{totals}"
    );
    assert!(
        totals.contains(" total_server_bytes            |  2020\n"),
        "{totals}"
    );
    assert!(
        totals.contains(" avg_ps_bind_count             |     0\n"),
        "{totals}"
    );
    assert!(totals.ends_with("(24 rows)\n"));
}

#[test]
fn stats_averages_weigh_times_by_counts_across_pools_of_a_database() {
    let mut p = Pooler::new(common::config());
    for (id, user, xacts, each_us) in [(1, "alice", 600, 100), (2, "bob", 1200, 400)] {
        let c = connect(&mut p, secs(0.0), id, "db1", user);
        want(&mut p, secs(0.0), c);
        p.handle(
            secs(1.0),
            Event::ClientReleasedServer {
                client: c,
                reusable: true,
                usage: Usage {
                    xact_count: xacts,
                    query_count: xacts,
                    xact_time_us: xacts * each_us,
                    query_time_us: xacts * each_us,
                    ..Usage::default()
                },
            },
        );
        common::drain(&mut p);
    }
    p.handle_timeout(secs(60.0));
    common::drain(&mut p);
    let snap = Snapshot::new(&p, secs(60.0), common::wall());
    let t = set(Show::StatsAverages, &snap);
    assert_eq!(column(&t, "database"), ["db1", "pgbouncer"]);
    assert_eq!(column(&t, "xact_count"), ["30", "0"]);
    // (600 × 100 + 1200 × 400) / 1800, as PgBouncer's delta time / delta count.
    assert_eq!(column(&t, "xact_time"), ["300", "0"]);
    assert_eq!(column(&t, "query_time"), ["300", "0"]);
}

#[test]
fn show_databases_reflects_pause_and_disable_events() {
    let mut p = common::scenario();
    p.handle(
        secs(5.0),
        Event::Pause {
            database: Some("db2".into()),
        },
    );
    p.handle(
        secs(5.0),
        Event::Disable {
            database: "db1".into(),
        },
    );
    common::drain(&mut p);
    let mut snap = common::snapshot(&p);
    with_console(&mut snap);
    let expected = concat!(
        "   name    |       host        | port | database  | force_user | pool_size | min_pool_size | reserve_pool_size | server_lifetime | pool_mode | load_balance_hosts | max_connections | current_connections | max_client_connections | current_client_connections | paused | disabled\n",
        "-----------+-------------------+------+-----------+------------+-----------+---------------+-------------------+-----------------+-----------+--------------------+-----------------+---------------------+------------------------+----------------------------+--------+----------\n",
        " db1       | 10.0.0.1,10.0.0.2 | 5432 | app       |            |         1 |             0 |                 0 |            3600 |           | round-robin        |               0 |                   1 |                      0 |                          3 |      0 |        1\n",
        " db2       |                   | 5433 | db2       | bob        |         5 |             0 |                 0 |            3600 | session   |                    |               0 |                   0 |                      0 |                          2 |      1 |        0\n",
        " pgbouncer |                   | 6432 | pgbouncer | pgbouncer  |         2 |             0 |                 0 |            3600 | statement |                    |               0 |                   0 |                      0 |                          1 |      0 |        0\n",
        "(3 rows)\n",
    );
    assert_eq!(table(Show::Databases, &snap), expected);
}

#[test]
fn show_state_follows_global_pause_and_suspend() {
    let mut p = common::scenario();
    let yes_no = |snap: &Snapshot<'_>| column(&set(Show::State, snap), "value");
    assert_eq!(yes_no(&common::snapshot(&p)), ["yes", "no", "no"]);
    p.handle(secs(5.0), Event::Pause { database: None });
    common::drain(&mut p);
    assert_eq!(yes_no(&common::snapshot(&p)), ["no", "yes", "no"]);
    let mut snap = common::snapshot(&p);
    snap.suspended = true;
    assert_eq!(yes_no(&snap), ["no", "no", "yes"]);
}

#[test]
fn show_users_pads_set_sizes_and_counts_connections() {
    let mut config = common::config();
    config.users.push(pgbouncer_pool_core::UserConfig {
        name: "alice".into(),
        pool_size: Some(7),
        pool_mode: Some(pgbouncer_pool_core::PoolMode::Statement),
        ..Default::default()
    });
    let mut p = Pooler::new(config);
    let c = connect(&mut p, secs(0.0), 1, "db1", "alice");
    want(&mut p, secs(0.0), c);
    let snap = Snapshot::new(&p, secs(1.0), common::wall());
    let expected = concat!(
        "   name    | pool_size | reserve_pool_size | pool_mode | max_user_connections | current_connections | max_user_client_connections | current_client_connections\n",
        "-----------+-----------+-------------------+-----------+----------------------+---------------------+-----------------------------+----------------------------\n",
        " alice     |         7 |                   | statement |                    0 |                   1 |                           0 |                          1\n",
        " pgbouncer |           |                   |           |                    0 |                   0 |                           0 |                          0\n",
        "(2 rows)\n",
    );
    assert_eq!(table(Show::Users, &snap), expected);
    assert_eq!(
        column(&set(Show::Users, &snap), "pool_size")[0],
        "        7"
    );
}

#[test]
fn show_lists_config_version_and_latency() {
    let p = common::scenario();
    let mut snap = common::snapshot(&p);
    snap.config.push(ConfigEntry {
        key: "default_pool_size".into(),
        value: "1".into(),
        default: "20".into(),
        changeable: true,
    });
    let lists = set(Show::Lists, &snap);
    assert_eq!(
        column(&lists, "list"),
        [
            "databases",
            "users",
            "peers",
            "pools",
            "peer_pools",
            "free_clients",
            "used_clients",
            "login_clients",
            "free_servers",
            "used_servers",
            "dns_names",
            "dns_zones",
            "dns_queries",
            "dns_pending"
        ]
    );
    assert_eq!(
        column(&lists, "items"),
        ["3", "4", "0", "3", "0", "0", "5", "1", "0", "2", "0", "0", "0", "0"]
    );
    assert_eq!(
        table(Show::Config, &snap),
        concat!(
            "        key        | value | default | changeable\n",
            "-------------------+-------+---------+------------\n",
            " default_pool_size | 1     | 20      | yes\n",
            "(1 row)\n",
        )
    );
    let version = column(&set(Show::Version, &snap), "version");
    assert_eq!(
        version,
        [format!(
            "pgbouncer-rs {} (compatible with PgBouncer 1.26.1)",
            env!("CARGO_PKG_VERSION")
        )]
    );
    let latency = set(Show::Latency, &snap);
    assert_eq!(column(&latency, "database"), ["db1", "db2"]);
    // db2's two usage reports: 900 µs / 1 xact, then 100 µs / 1 xact.
    assert_eq!(column(&latency, "xact_p50_us"), ["0", "96"]);
    assert_eq!(column(&latency, "xact_p99_us"), ["0", "896"]);
}
