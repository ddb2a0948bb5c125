//! The headline promise: many clients through few server connections, with zero errors,
//! against a PostgreSQL whose `max_connections` is small.

mod common;

use std::time::Duration;

use common::*;
use pg_harness::{ClusterOptions, PgCluster, MD5_PASSWORD, MD5_USER};

async fn hammer(conninfo: String, clients: usize, sleep: &'static str) -> (usize, Vec<String>) {
    let mut tasks = Vec::new();
    for i in 0..clients {
        let conninfo = conninfo.clone();
        tasks.push(tokio::spawn(async move {
            let c = connect(&conninfo)
                .await
                .map_err(|e| match e.as_db_error() {
                    Some(d) => format!("{}: {}", d.code().code(), d.message()),
                    None => e.to_string(),
                })?;
            let rows = c
                .simple_query(&format!("select {i} + 1, pg_sleep({sleep})"))
                .await
                .map_err(|e| match e.as_db_error() {
                    Some(d) => format!("query: {}: {}", d.code().code(), d.message()),
                    None => e.to_string(),
                })?;
            let v: i32 = rows
                .iter()
                .find_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => {
                        r.get(0).and_then(|v| v.parse().ok())
                    }
                    _ => None,
                })
                .unwrap_or(-1);
            if v != i as i32 + 1 {
                return Err(format!("client {i} got {v}"));
            }
            Ok::<(), String>(())
        }));
    }
    let mut ok = 0;
    let mut errors = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => ok += 1,
            Err(e) => errors.push(e),
        }
    }
    (ok, errors)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_clients_fail_directly_but_all_succeed_through_twenty_pooled_connections() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::start(ClusterOptions {
        max_connections: 40,
        ..Default::default()
    })
    .unwrap();
    let direct = pg.conninfo(MD5_USER, Some(MD5_PASSWORD), "appdb");
    let (_, errors) = hammer(direct, 300, "1").await;
    assert!(
        errors.iter().any(|e| e.contains("too many clients")),
        "direct connections should hit max_connections; errors: {:?}",
        errors.iter().take(3).collect::<Vec<_>>()
    );

    let dir = Scratch::new("load");
    let d = start(
        &pg,
        &dir,
        "pool_mode = transaction\ndefault_pool_size = 20\nmax_client_conn = 1000",
    )
    .await;
    // Watch PostgreSQL's view of our connections while the clients run.
    let watcher = PeakWatcher::start(
        &pg,
        "select count(*)::int from pg_stat_activity where usename = 'md5user'",
        Duration::from_millis(5),
    );
    let (ok, errors) = hammer(md5_conninfo(&d), 300, "0.02").await;
    let peak = watcher.finish().await;
    assert!(
        errors.is_empty(),
        "errors through the pooler: {:?}",
        errors.iter().take(5).collect::<Vec<_>>()
    );
    assert_eq!(ok, 300);
    assert!(
        peak <= 20,
        "PostgreSQL saw {peak} connections from the pooler"
    );
    assert!(
        peak >= 2,
        "the pool should have grown under load, saw {peak}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_select_only_with_fifty_clients_in_transaction_mode_has_no_failed_transactions() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    pg.create_database("benchdb", MD5_USER).unwrap();
    let dir = Scratch::new("pgbench");
    let text = ini(
        pg,
        &dir,
        "pool_mode = transaction\ndefault_pool_size = 20\nmax_client_conn = 200",
    )
    .replace(
        "[pgbouncer]",
        &format!(
            "benchdb = host=127.0.0.1 port={} dbname=benchdb\n[pgbouncer]",
            pg.port()
        ),
    );
    let d = pgbouncer_rs::Daemon::start(settings(&text, &dir))
        .await
        .unwrap();
    let conninfo = conninfo(&d, MD5_USER, MD5_PASSWORD, "benchdb");
    let init = run(pg, "pgbench", &["-i", "-s", "1", "-q", &conninfo]).await;
    assert!(init.status.success(), "pgbench -i: {}", stderr(&init));
    let o = run(
        pg,
        "pgbench",
        &["-S", "-c", "50", "-j", "2", "-T", "10", "-n", &conninfo],
    )
    .await;
    let out = stdout(&o);
    assert!(o.status.success(), "pgbench: {}\n{}", out, stderr(&o));
    assert!(
        out.contains("number of failed transactions: 0 (0.000%)"),
        "{out}"
    );
    let processed: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
        .and_then(|n| n.split('/').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    assert!(processed > 0, "{out}");
    // extended protocol and TPC-B (multi-statement transactions) too
    let o = run(
        pg,
        "pgbench",
        &[
            "-M", "extended", "-c", "10", "-j", "2", "-t", "50", "-n", &conninfo,
        ],
    )
    .await;
    assert!(
        stdout(&o).contains("number of failed transactions: 0 (0.000%)"),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );
}

/// The binary in transaction mode with `extra` settings and `workers` worker threads.
fn start_binary_with_workers(
    pg: &PgCluster,
    dir: &Scratch,
    extra: &str,
    workers: usize,
) -> pooler::Pooler {
    let text = ini(
        pg,
        dir,
        &format!("pool_mode = transaction\nmax_client_conn = 100\n{extra}"),
    );
    let path = dir.0.join("pgbouncer.ini");
    std::fs::write(&path, &text).unwrap();
    pooler::Pooler::start_limited(
        &path,
        Some(format!("export TOKIO_WORKER_THREADS={workers}")),
    )
}

/// Thread-per-core: clients on three worker threads share one pool of two servers.
/// Servers move between workers (registered with the reactor of the client they serve)
/// with every hand-off, and each client still sees only its own time zone, while
/// PostgreSQL never sees more than the pool's two connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_on_three_workers_share_two_servers_and_keep_their_own_settings() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("workers");
    let p = start_binary_with_workers(pg, &dir, "default_pool_size = 2", 3);
    assert!(
        p.wait_for_line(&["3 worker threads"], Duration::from_secs(10))
            .is_some(),
        "the pooler should say how many workers it runs"
    );
    let mut tasks = Vec::new();
    for i in 0..24 {
        // Etc/GMT+N zones, spelled as PostgreSQL reports them back.
        let zone = format!("Etc/GMT+{}", i % 12);
        let conninfo = format!(
            "host=127.0.0.1 port={} user={MD5_USER} password={MD5_PASSWORD} dbname=appdb options='-c TimeZone={zone}'",
            p.port
        );
        tasks.push(tokio::spawn(async move {
            let c = connect(&conninfo).await.map_err(|e| e.to_string())?;
            let mut pids = std::collections::HashSet::new();
            for _ in 0..30 {
                let row = c
                    .query_one("select current_setting('TimeZone'), pg_backend_pid()", &[])
                    .await
                    .map_err(|e| e.to_string())?;
                let got: String = row.get(0);
                if got != zone {
                    return Err(format!("client {i} wants {zone}, its server has {got}"));
                }
                pids.insert(row.get::<_, i32>(1));
            }
            Ok::<_, String>(pids)
        }));
    }
    let mut pids = std::collections::HashSet::new();
    for t in tasks {
        pids.extend(t.await.unwrap().unwrap());
    }
    assert!(
        pids.len() <= 2,
        "one limit across workers: PostgreSQL backends used {pids:?}"
    );
    assert!(!pids.is_empty());
}

/// An idle server that PostgreSQL closed is noticed when a client of another worker
/// takes it (checked before the socket moves, while its own reactor still knows it is
/// readable), and that client gets a fresh server without an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_closed_while_idle_is_replaced_for_a_client_on_another_worker() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("workers-dead");
    let p = start_binary_with_workers(pg, &dir, "default_pool_size = 1", 2);
    let conninfo = format!(
        "host=127.0.0.1 port={} user={MD5_USER} password={MD5_PASSWORD} dbname=appdb",
        p.port
    );
    // Three sessions: the first two stay on the accepting worker, the third goes to
    // the other one (the acceptor then holds clearly more).
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(connect(&conninfo).await.unwrap());
    }
    let pid = |rows: Vec<tokio_postgres::SimpleQueryMessage>| {
        rows.iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                _ => None,
            })
            .unwrap()
    };
    for round in 0..3 {
        // The first client's transaction leaves the one server idle on its worker.
        let before = pid(clients[0]
            .simple_query("select pg_backend_pid()")
            .await
            .unwrap());
        let direct = connect(&pg.conninfo("postgres", None, "postgres"))
            .await
            .unwrap();
        direct
            .simple_query(&format!("select pg_terminate_backend({before})"))
            .await
            .unwrap();
        // Wait until PostgreSQL has closed it.
        for _ in 0..100 {
            let left = direct
                .simple_query(&format!(
                    "select 1 from pg_stat_activity where pid = {before}"
                ))
                .await
                .unwrap();
            if !left
                .iter()
                .any(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_)))
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let after = clients[2]
            .simple_query("select pg_backend_pid()")
            .await
            .unwrap_or_else(|e| panic!("round {round}: the client got {e}"));
        assert_ne!(pid(after), before, "round {round}");
    }
}
