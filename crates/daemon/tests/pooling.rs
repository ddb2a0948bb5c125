//! Pool settings as users see them through a real PostgreSQL: errors and SQLSTATEs of
//! limits and timeouts, statement mode, server recycling, the reserve pool, and a
//! connection storm held under max_db_connections.

mod common;

use std::time::Duration;

use common::*;
use pg_harness::{ClusterOptions, PgCluster, MD5_PASSWORD, MD5_USER};

fn first_value(rows: &[tokio_postgres::SimpleQueryMessage]) -> Option<String> {
    rows.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
        _ => None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_timeout_disconnects_a_client_whose_query_runs_too_long() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("qtimeout");
    let d = start(pg, &dir, "pool_mode = transaction\nquery_timeout = 0.5").await;
    let c = connect(&md5_conninfo(&d)).await.unwrap();
    let e = c.simple_query("select pg_sleep(30)").await.unwrap_err();
    assert_eq!(
        db_error(&e),
        ("FATAL".into(), "08P01".into(), "query timeout".into())
    );
    let ok = connect(&md5_conninfo(&d)).await.unwrap();
    assert_eq!(
        first_value(&ok.simple_query("select 5").await.unwrap()).as_deref(),
        Some("5")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_transaction_timeout_disconnects_a_client_idle_inside_a_transaction() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("idletx");
    let d = start(
        pg,
        &dir,
        "pool_mode = transaction\nidle_transaction_timeout = 0.5",
    )
    .await;
    let (c, conn) = tokio_postgres::connect(&md5_conninfo(&d), tokio_postgres::NoTls)
        .await
        .unwrap();
    let driver = tokio::spawn(conn);
    c.simple_query("begin").await.unwrap();
    // The pooler closes the connection; the driver future ends with its error.
    let ended = tokio::time::timeout(Duration::from_secs(20), driver)
        .await
        .expect("closed by the pooler");
    let e = ended.unwrap().unwrap_err();
    assert_eq!(db_error(&e).2, "idle transaction timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_mode_refuses_transaction_blocks_with_pgbouncers_error() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("stmt");
    let d = start(pg, &dir, "pool_mode = statement").await;
    let c = connect(&md5_conninfo(&d)).await.unwrap();
    assert_eq!(
        first_value(&c.simple_query("select 1").await.unwrap()).as_deref(),
        Some("1")
    );
    let e = c.simple_query("begin").await.unwrap_err();
    assert_eq!(
        db_error(&e),
        (
            "FATAL".into(),
            "08P01".into(),
            "transaction blocks not allowed in statement pooling mode".into()
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_lifetime_recycles_servers_after_they_are_released() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("lifetime");
    let d = start(
        pg,
        &dir,
        "pool_mode = transaction\ndefault_pool_size = 1\nserver_lifetime = 0.3",
    )
    .await;
    let c = connect(&md5_conninfo(&d)).await.unwrap();
    let pid1 = first_value(&c.simple_query("select pg_backend_pid()").await.unwrap()).unwrap();
    let pid2 = first_value(&c.simple_query("select pg_backend_pid()").await.unwrap()).unwrap();
    assert_eq!(pid1, pid2, "young server reused");
    // This transaction outlives the server's lifetime: the server is closed on release.
    c.simple_query("select pg_sleep(0.5)").await.unwrap();
    let pid3 = first_value(&c.simple_query("select pg_backend_pid()").await.unwrap()).unwrap();
    assert_ne!(pid1, pid3, "server recycled after server_lifetime");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserve_pool_serves_a_waiting_client_only_after_reserve_pool_timeout() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    // Without a reserve, the second client waits until query_wait_timeout.
    let dir = Scratch::new("noreserve");
    let d = start(
        pg,
        &dir,
        "pool_mode = transaction\ndefault_pool_size = 1\nquery_wait_timeout = 1",
    )
    .await;
    let a = connect(&md5_conninfo(&d)).await.unwrap();
    a.simple_query("begin; select 1").await.unwrap();
    let b = connect(&md5_conninfo(&d)).await.unwrap();
    let e = b.simple_query("select 2").await.unwrap_err();
    assert_eq!(
        db_error(&e),
        ("FATAL".into(), "08P01".into(), "query_wait_timeout".into())
    );

    // With a reserve, it is served by an extra server while `a` still holds the first.
    let dir = Scratch::new("reserve");
    let d = start(
        pg,
        &dir,
        "pool_mode = transaction\ndefault_pool_size = 1\nreserve_pool_size = 1\nreserve_pool_timeout = 0.3\nquery_wait_timeout = 20",
    )
    .await;
    let a = connect(&md5_conninfo(&d)).await.unwrap();
    let pid_a = first_value(
        &a.simple_query("begin; select pg_backend_pid()")
            .await
            .unwrap(),
    )
    .unwrap();
    let b = connect(&md5_conninfo(&d)).await.unwrap();
    let pid_b = first_value(&b.simple_query("select pg_backend_pid()").await.unwrap()).unwrap();
    assert_ne!(pid_a, pid_b, "the reserve server, not a's");
    let admin = connect(&conninfo(&d, "admin", "adminpass", "pgbouncer"))
        .await
        .unwrap();
    let stats = admin.simple_query("show stats_totals").await.unwrap();
    let wait_us: u64 = stats
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("appdb") => {
                r.get("wait_time").and_then(|v| v.parse().ok())
            }
            _ => None,
        })
        .unwrap();
    assert!(
        wait_us >= 300_000,
        "b was served only after reserve_pool_timeout (waited {wait_us} us)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_client_conn_refuses_extra_clients_with_pgbouncers_error() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("maxclient");
    let d = start(pg, &dir, "pool_mode = transaction\nmax_client_conn = 2").await;
    let _a = connect(&md5_conninfo(&d)).await.unwrap();
    let _b = connect(&md5_conninfo(&d)).await.unwrap();
    let e = connect(&md5_conninfo(&d)).await.unwrap_err();
    assert_eq!(
        db_error(&e),
        (
            "FATAL".into(),
            "08P01".into(),
            "no more connections allowed (max_client_conn)".into()
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_clients_connecting_per_request_for_thirty_seconds_stay_under_max_db_connections(
) {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::start(ClusterOptions {
        max_connections: 40,
        ..Default::default()
    })
    .unwrap();
    let dir = Scratch::new("storm");
    let d = start(
        &pg,
        &dir,
        "pool_mode = transaction\ndefault_pool_size = 20\nreserve_pool_size = 5\nreserve_pool_timeout = 1\n\
         max_db_connections = 30\nmax_client_conn = 1000\nquery_wait_timeout = 60",
    )
    .await;
    let watcher = PeakWatcher::start(
        &pg,
        "select count(*)::int from pg_stat_activity where usename in ('md5user', 'plainuser')",
        Duration::from_millis(20),
    );
    // Two users, so two pools compete for the database's 30 connections.
    let script = dir.0.join("req.sql");
    std::fs::write(&script, "select count(*) from pg_class;\n").unwrap();
    let runs: Vec<_> = [(MD5_USER, MD5_PASSWORD), ("plainuser", "plainpass")]
        .into_iter()
        .map(|(u, p)| {
            let ci = conninfo(&d, u, p, "appdb");
            let script = script.to_string_lossy().to_string();
            let bin = pg.bin_dir().join("pgbench");
            tokio::spawn(async move {
                tokio::process::Command::new(bin)
                    .args([
                        "-n", "-C", "-c", "250", "-j", "2", "-T", "30", "-f", &script, &ci,
                    ])
                    .output()
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut total = 0u64;
    for r in runs {
        let o = r.await.unwrap();
        let out = String::from_utf8_lossy(&o.stdout).to_string();
        assert!(
            o.status.success(),
            "{out}\n{}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            out.contains("number of failed transactions: 0 (0.000%)"),
            "{out}"
        );
        total += out
            .lines()
            .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
            .and_then(|n| n.split('/').next())
            .and_then(|n| n.trim().parse::<u64>().ok())
            .unwrap_or(0);
    }
    let peak = watcher.finish().await;
    assert!(total > 0);
    assert!(
        peak <= 30,
        "PostgreSQL saw {peak} connections from the pooler (max_db_connections = 30)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_timeout_disconnects_a_client_whose_transaction_stays_open_too_long() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("xacttimeout");
    let d = start(
        pg,
        &dir,
        "pool_mode = transaction\ntransaction_timeout = 0.5",
    )
    .await;
    let c = connect(&md5_conninfo(&d)).await.unwrap();
    // Short queries inside one long transaction: no single query is slow.
    c.simple_query("begin").await.unwrap();
    let mut result = Ok(());
    for _ in 0..100 {
        if let Err(e) = c.simple_query("select pg_sleep(0.05)").await {
            result = Err(e);
            break;
        }
    }
    let e = result.expect_err("the transaction outlived transaction_timeout");
    assert_eq!(
        db_error(&e),
        ("FATAL".into(), "08P01".into(), "transaction timeout".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn application_name_add_host_appends_the_client_address_to_application_name() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("appname");
    let d = start(
        pg,
        &dir,
        "pool_mode = transaction\napplication_name_add_host = 1",
    )
    .await;
    let c = connect(&format!("{} application_name=myapp", md5_conninfo(&d)))
        .await
        .unwrap();
    let name = first_value(
        &c.simple_query("select current_setting('application_name')")
            .await
            .unwrap(),
    )
    .unwrap();
    assert!(name.starts_with("myapp - 127.0.0.1:"), "{name}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_fast_close_ends_a_session_after_its_transaction_when_the_database_is_reconnected() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("fastclose");
    let d = start(pg, &dir, "pool_mode = session\nserver_fast_close = 1").await;
    let (c, conn) = tokio_postgres::connect(&md5_conninfo(&d), tokio_postgres::NoTls)
        .await
        .unwrap();
    let driver = tokio::spawn(conn);
    c.simple_query("begin; select 1").await.unwrap();
    let admin = connect(&conninfo(&d, "admin", "adminpass", "pgbouncer"))
        .await
        .unwrap();
    admin.simple_query("RECONNECT appdb").await.unwrap();
    // The transaction in progress is not interrupted...
    c.simple_query("select 2").await.unwrap();
    c.simple_query("commit").await.unwrap();
    // ...but once it is over, the session is closed with PgBouncer's error.
    let ended = tokio::time::timeout(Duration::from_secs(20), driver)
        .await
        .expect("closed by the pooler");
    assert_eq!(
        db_error(&ended.unwrap().unwrap_err()),
        (
            "FATAL".into(),
            "08P01".into(),
            "database configuration changed".into()
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_user_query_wait_timeout_and_client_idle_timeout_override_the_global_ones() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("usertimeouts");
    let text = ini(
        pg,
        &dir,
        "pool_mode = transaction\ndefault_pool_size = 1\nquery_wait_timeout = 120",
    )
    .replace(
        "[pgbouncer]",
        &format!("[users]\n{MD5_USER} = query_wait_timeout=1 client_idle_timeout=1\n[pgbouncer]"),
    );
    let d = pgbouncer_rs::Daemon::start(settings(&text, &dir))
        .await
        .unwrap();
    let holder = connect(&md5_conninfo(&d)).await.unwrap();
    holder.simple_query("begin").await.unwrap();
    let waiter = connect(&md5_conninfo(&d)).await.unwrap();
    let e = waiter.simple_query("select 1").await.unwrap_err();
    assert_eq!(
        db_error(&e).2,
        "query_wait_timeout",
        "the user's 1 s, not the global 120 s"
    );
    holder.simple_query("commit").await.unwrap();
    // An idle client of that user is dropped after its 1 s client_idle_timeout.
    let (idle, conn) = tokio_postgres::connect(&md5_conninfo(&d), tokio_postgres::NoTls)
        .await
        .unwrap();
    let driver = tokio::spawn(conn);
    idle.simple_query("select 1").await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(20), driver)
        .await
        .expect("closed by the pooler");
    assert_eq!(
        db_error(&ended.unwrap().unwrap_err()).2,
        "client_idle_timeout"
    );
}

/// Backends of `user` on `db` as PostgreSQL sees them.
fn backends(pg: &PgCluster, db: &str) -> i64 {
    pg.psql(
        "postgres",
        &format!(
            "select count(*) from pg_stat_activity where datname = '{db}' and usename = 'md5user'"
        ),
    )
    .unwrap()
    .parse()
    .unwrap()
}

/// Polls (bounded) until `cond` holds on the backend count.
async fn wait_backends(pg: &PgCluster, db: &str, cond: impl Fn(i64) -> bool) -> i64 {
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let mut n = -1;
    for _ in 0..400 {
        tick.tick().await;
        n = backends(pg, db);
        if cond(n) {
            return n;
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_pool_size_opens_servers_for_a_pool_and_server_idle_timeout_closes_the_rest() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let _ = pg.create_database("minpooldb", MD5_USER);
    let dir = Scratch::new("minpool");
    let text = ini(pg, &dir, "pool_mode = transaction\nmin_pool_size = 3\ndefault_pool_size = 6\nserver_idle_timeout = 0.5")
        .replace("[pgbouncer]", &format!("minpooldb = host=127.0.0.1 port={} dbname=minpooldb\n[pgbouncer]", pg.port()));
    let d = pgbouncer_rs::Daemon::start(settings(&text, &dir))
        .await
        .unwrap();
    let c = connect(&conninfo(&d, MD5_USER, MD5_PASSWORD, "minpooldb"))
        .await
        .unwrap();
    // min_pool_size: three servers are opened for the pool without any query.
    assert_eq!(wait_backends(pg, "minpooldb", |n| n >= 3).await, 3);
    // Five concurrent transactions grow the pool past the minimum...
    let mut held = Vec::new();
    for _ in 0..5 {
        let h = connect(&conninfo(&d, MD5_USER, MD5_PASSWORD, "minpooldb"))
            .await
            .unwrap();
        h.simple_query("begin; select 1").await.unwrap();
        held.push(h);
    }
    assert_eq!(wait_backends(pg, "minpooldb", |n| n >= 5).await, 5);
    for h in &held {
        h.simple_query("commit").await.unwrap();
    }
    // ...and server_idle_timeout closes the idle extra ones, down to min_pool_size.
    assert_eq!(wait_backends(pg, "minpooldb", |n| n <= 3).await, 3);
    drop(c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_user_connections_and_max_db_client_connections_hold_across_pools() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("usercap");
    let d = start(
        pg,
        &dir,
        "pool_mode = transaction\nmax_user_connections = 1\nmax_db_client_connections = 2",
    )
    .await;
    // Two databases, one user: one server connection in total.
    // A unique application_name tells this test's backends apart in the shared cluster.
    let tag = " application_name=usercap_test";
    let a = connect(&(conninfo(&d, MD5_USER, MD5_PASSWORD, "appdb") + tag))
        .await
        .unwrap();
    let b = connect(&(conninfo(&d, MD5_USER, MD5_PASSWORD, "postgres") + tag))
        .await
        .unwrap();
    a.simple_query("select 1").await.unwrap();
    // b needs the user's only slot: a's idle server (other pool) is evicted for it.
    b.simple_query("select 1").await.unwrap();
    let total: i64 = pg
        .psql(
            "postgres",
            "select count(*) from pg_stat_activity where application_name = 'usercap_test'",
        )
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        total <= 1,
        "max_user_connections = 1, PostgreSQL sees {total}"
    );
    // A third client of appdb exceeds max_db_client_connections = 2.
    let _second = connect(&conninfo(&d, MD5_USER, MD5_PASSWORD, "appdb"))
        .await
        .unwrap();
    let e = connect(&conninfo(&d, MD5_USER, MD5_PASSWORD, "appdb"))
        .await
        .unwrap_err();
    assert_eq!(
        db_error(&e),
        (
            "FATAL".into(),
            "08P01".into(),
            "client connections exceeded (max_db_client_connections)".into()
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_login_timeout_closes_a_client_that_never_finishes_logging_in() {
    use tokio::io::AsyncReadExt;
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("logintimeout");
    let d = start(pg, &dir, "client_login_timeout = 0.3").await;
    // Connects and says nothing.
    let mut s = tokio::net::TcpStream::connect(d.addr()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("closed by the pooler")
        .unwrap();
    let text = String::from_utf8_lossy(&out);
    assert!(
        out.first() == Some(&b'E') && text.contains("client_login_timeout"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_check_query_runs_on_servers_idle_longer_than_server_check_delay() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let _ = pg.create_database("checkdb", MD5_USER);
    let setup = format!(
        "host=127.0.0.1 port={} user={MD5_USER} password={MD5_PASSWORD} dbname=checkdb",
        pg.port()
    );
    let o = psql(
        pg,
        &setup,
        "create table if not exists check_log(at timestamptz); truncate check_log",
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let dir = Scratch::new("checkdelay");
    let text = ini(
        pg,
        &dir,
        "pool_mode = transaction\ndefault_pool_size = 1\nserver_check_delay = 0.2\nserver_check_query = insert into check_log values (now())",
    )
    .replace("[pgbouncer]", &format!("checkdb = host=127.0.0.1 port={} dbname=checkdb\n[pgbouncer]", pg.port()));
    let d = pgbouncer_rs::Daemon::start(settings(&text, &dir))
        .await
        .unwrap();
    let c = connect(&conninfo(&d, MD5_USER, MD5_PASSWORD, "checkdb"))
        .await
        .unwrap();
    c.simple_query("select 1").await.unwrap();
    // Back-to-back use: no check.
    c.simple_query("select 2").await.unwrap();
    assert_eq!(
        first_value(
            &c.simple_query("select count(*) from check_log")
                .await
                .unwrap()
        )
        .as_deref(),
        Some("0")
    );
    // Idle longer than server_check_delay: SHOW POOLS counts it as `used`, and the next
    // client gets it only after the check query ran on it.
    let admin = connect(&conninfo(&d, "admin", "adminpass", "pgbouncer"))
        .await
        .unwrap();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let mut used = false;
    for _ in 0..200 {
        tick.tick().await;
        let rows = admin.simple_query("show pools").await.unwrap();
        used = rows.iter().any(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                r.get("database") == Some("checkdb") && r.get("sv_used") == Some("1")
            }
            _ => false,
        });
        if used {
            break;
        }
    }
    assert!(used, "the idle server became `used`");
    let n = first_value(
        &c.simple_query("select count(*) from check_log")
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(n, "1", "the check query ran once before reuse");
}

/// Runs `sql` and returns the first column of its first row.
async fn one(c: &tokio_postgres::Client, sql: &str) -> String {
    first_value(&c.simple_query(sql).await.unwrap()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_reset_query_cleans_a_session_servers_state_before_the_next_client() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("resetquery");
    // Session mode, one server: the second client gets the first one's server.
    let d = start(pg, &dir, "pool_mode = session\ndefault_pool_size = 1").await;
    let a = connect(&md5_conninfo(&d)).await.unwrap();
    a.simple_query("set statement_timeout = '4321ms'; prepare leaked as select 1")
        .await
        .unwrap();
    let pid_a = one(&a, "select pg_backend_pid()").await;
    drop(a);
    let b = connect(&md5_conninfo(&d)).await.unwrap();
    assert_eq!(
        one(&b, "select pg_backend_pid()").await,
        pid_a,
        "same server"
    );
    // The default server_reset_query (DISCARD ALL) ran in between.
    assert_eq!(one(&b, "show statement_timeout").await, "0");
    assert_eq!(
        one(&b, "select count(*) from pg_prepared_statements").await,
        "0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_reset_query_always_resets_transaction_mode_servers_at_every_release() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    for (always, expected) in [("0", "4321ms"), ("1", "0")] {
        let dir = Scratch::new(&format!("resetalways{always}"));
        let d = start(
            pg,
            &dir,
            &format!("pool_mode = transaction\ndefault_pool_size = 1\nserver_reset_query_always = {always}"),
        )
        .await;
        let a = connect(&md5_conninfo(&d)).await.unwrap();
        let b = connect(&md5_conninfo(&d)).await.unwrap();
        // A session-level SET outside a transaction: the server is released right after.
        a.simple_query("set statement_timeout = '4321ms'")
            .await
            .unwrap();
        // Without the reset the setting leaks to the next client of that server, as
        // PgBouncer documents for transaction mode; with it, it does not.
        assert_eq!(
            one(&b, "show statement_timeout").await,
            expected,
            "server_reset_query_always = {always}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_mode_of_a_user_overrides_the_databases_which_overrides_the_global_one() {
    use pg_harness::{PLAIN_PASSWORD, PLAIN_USER};
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("modeprecedence");
    let text = ini(pg, &dir, "pool_mode = session")
        .replace(
            &format!("appdb = host=127.0.0.1 port={} dbname=appdb", pg.port()),
            &format!(
                "appdb = host=127.0.0.1 port={} dbname=appdb pool_mode=statement",
                pg.port()
            ),
        )
        .replace(
            "[pgbouncer]",
            &format!("[users]\n{PLAIN_USER} = pool_mode=transaction\n[pgbouncer]"),
        );
    let d = pgbouncer_rs::Daemon::start(settings(&text, &dir))
        .await
        .unwrap();
    // The database's statement mode: a transaction block is refused.
    let md5_app = connect(&md5_conninfo(&d)).await.unwrap();
    let e = md5_app.simple_query("begin").await.unwrap_err();
    assert_eq!(
        db_error(&e).2,
        "transaction blocks not allowed in statement pooling mode"
    );
    // The user's transaction mode wins over the database's statement mode.
    let plain_app = connect(&conninfo(&d, PLAIN_USER, PLAIN_PASSWORD, "appdb"))
        .await
        .unwrap();
    plain_app
        .simple_query("begin; select 1; commit")
        .await
        .unwrap();
    // Elsewhere the global session mode holds.
    let md5_pg = connect(&conninfo(&d, MD5_USER, MD5_PASSWORD, "postgres"))
        .await
        .unwrap();
    md5_pg
        .simple_query("begin; select 1; commit")
        .await
        .unwrap();
    // SHOW POOLS reports each pool's effective mode.
    let admin = connect(&conninfo(&d, "admin", "adminpass", "pgbouncer"))
        .await
        .unwrap();
    let mut modes = Vec::new();
    for m in admin.simple_query("SHOW POOLS").await.unwrap() {
        if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
            let (db, user, mode) = (r.get("database"), r.get("user"), r.get("pool_mode"));
            if db != Some("pgbouncer") {
                modes.push(format!(
                    "{}/{}={}",
                    db.unwrap(),
                    user.unwrap(),
                    mode.unwrap()
                ));
            }
        }
    }
    modes.sort();
    assert_eq!(
        modes,
        [
            format!("appdb/{MD5_USER}=statement"),
            format!("appdb/{PLAIN_USER}=transaction"),
            format!("postgres/{MD5_USER}=session"),
        ]
    );
}
