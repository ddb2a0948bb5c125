//! Parked idle clients, against the `pgbouncer-rs` binary (only its worker threads
//! park): a client that has been idle for a tick or two loses its task and its reactor
//! registration, and carries on as before when it speaks again, when pool-core has a
//! message for it, or when it leaves. Every wait is bounded; loopback only.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::pooler::Pooler;
use common::*;
use pg_harness::{PgCluster, MD5_PASSWORD, MD5_USER};

fn write_ini(pg: &PgCluster, dir: &Scratch, extra: &str) -> (std::path::PathBuf, u16) {
    let metrics = free_port();
    let text = ini(
        pg,
        dir,
        &format!("pool_mode = transaction\nmetrics_listen_port = {metrics}\n{extra}"),
    );
    let path = dir.0.join("pgbouncer.ini");
    std::fs::write(&path, text).unwrap();
    (path, metrics)
}

/// `pgbouncer_parked_clients` from `/metrics`.
fn parked(metrics: u16) -> u64 {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", metrics)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("pgbouncer_parked_clients "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .expect("no pgbouncer_parked_clients in /metrics")
}

/// Waits (bounded) until `parked(metrics)` is `want`.
async fn wait_parked(metrics: u16, want: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = tokio::task::spawn_blocking(move || parked(metrics))
            .await
            .unwrap();
        if now == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{now} clients parked, {want} expected"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn conninfo(p: &Pooler, app: &str) -> String {
    format!(
        "host=127.0.0.1 port={} user={MD5_USER} password={MD5_PASSWORD} dbname=appdb \
         application_name={app}",
        p.port
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_clients_park_and_carry_on_where_they_stopped() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("parking-carry-on");
    let (path, metrics) = write_ini(pg, &dir, "default_pool_size = 2");
    let p = Pooler::start(&path);
    let n = 20;
    let mut clients = Vec::new();
    for i in 0..n {
        clients.push(connect(&conninfo(&p, &format!("app{i}"))).await.unwrap());
    }
    // All of them idle: all of them park.
    wait_parked(metrics, n as u64).await;
    // Each carries on with its own state (its application_name, set at login and
    // applied to whichever server it gets), through 2 servers.
    for _ in 0..3 {
        for (i, c) in clients.iter().enumerate() {
            let row = c
                .query_one(
                    "select current_setting('application_name'), $1::int",
                    &[&(i as i32)],
                )
                .await
                .unwrap();
            assert_eq!(row.get::<_, String>(0), format!("app{i}"));
            assert_eq!(row.get::<_, i32>(1), i as i32);
        }
        // And they park again.
        wait_parked(metrics, n as u64).await;
    }
    // A transaction that spans a wait keeps its server: a client idle inside a
    // transaction is linked, so it never parks.
    let c = &clients[0];
    c.batch_execute("begin; create temp table t(x int); insert into t values (7)")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        tokio::task::spawn_blocking(move || parked(metrics))
            .await
            .unwrap(),
        n as u64 - 1
    );
    let row = c.query_one("select x from t", &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 7);
    c.batch_execute("rollback").await.unwrap();
    // Parked clients that leave are gone: nothing stays parked.
    drop(clients);
    wait_parked(metrics, 0).await;
    let console = format!(
        "host=127.0.0.1 port={} user=admin password=adminpass dbname=pgbouncer",
        p.port
    );
    let admin = connect(&console).await.unwrap();
    let rows = admin.simple_query("SHOW CLIENTS").await.unwrap();
    let listed = rows
        .iter()
        .filter(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_)))
        .count();
    // Only the console itself.
    assert_eq!(listed, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_client_hears_what_pool_core_tells_it() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("parking-told");
    let (path, metrics) = write_ini(pg, &dir, "client_idle_timeout = 2\nlog_disconnections = 1");
    let p = Pooler::start(&path);
    let c = connect(&conninfo(&p, "sleeper")).await.unwrap();
    c.simple_query("select 1").await.unwrap();
    wait_parked(metrics, 1).await;
    // client_idle_timeout comes through the mailbox: the parked session wakes, sends
    // PgBouncer's error and closes.
    let line = p.wait_for_line(
        &["closing because: client_idle_timeout"],
        Duration::from_secs(20),
    );
    assert!(line.is_some(), "no client_idle_timeout: {:?}", p.all_log());
    let e = c.simple_query("select 1").await.unwrap_err();
    assert!(c.is_closed(), "{e}");
    wait_parked(metrics, 0).await;
}
