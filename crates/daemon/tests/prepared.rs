//! Named prepared statements through transaction pooling (PgBouncer >= 1.21's
//! max_prepared_statements): drivers that prepare statements keep working while their
//! transactions land on different servers.

mod common;

use common::*;
use pg_harness::{PgCluster, MD5_PASSWORD, MD5_USER};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn driver_prepared_statements_work_across_servers_in_transaction_mode() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("prepared");
    let d = start(pg, &dir, "pool_mode = transaction\ndefault_pool_size = 3").await;
    // tokio-postgres prepares every parameterized query as a named statement (s0, s1,
    // ...) and binds it in a later round trip, so Parse and Bind can hit different servers.
    let mut tasks = Vec::new();
    for c in 0..12i32 {
        let ci = md5_conninfo(&d);
        tasks.push(tokio::spawn(async move {
            let client = connect(&ci).await.unwrap();
            let stmt = client
                .prepare("select $1::int * 2, pg_backend_pid()")
                .await
                .unwrap();
            let other = client.prepare("select $1::text || '!'").await.unwrap();
            for i in 0..40i32 {
                let row = client.query_one(&stmt, &[&(c * 1000 + i)]).await.unwrap();
                assert_eq!(row.get::<_, i32>(0), (c * 1000 + i) * 2);
                let row = client.query_one(&other, &[&format!("c{c}")]).await.unwrap();
                assert_eq!(row.get::<_, String>(0), format!("c{c}!"));
                // Ad-hoc parameterized queries: prepared, used once, closed.
                let row = client.query_one("select $1::int + 1", &[&i]).await.unwrap();
                assert_eq!(row.get::<_, i32>(0), i + 1);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert!(pg.connection_count(Some(MD5_USER)) <= 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_prepared_mode_has_no_failed_transactions_in_transaction_mode() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let _ = pg.create_database("preparedb", MD5_USER);
    let dir = Scratch::new("pgbench-prepared");
    let text = ini(pg, &dir, "pool_mode = transaction\ndefault_pool_size = 5").replace(
        "[pgbouncer]",
        &format!(
            "preparedb = host=127.0.0.1 port={} dbname=preparedb\n[pgbouncer]",
            pg.port()
        ),
    );
    let d = pgbouncer_rs::Daemon::start(settings(&text, &dir))
        .await
        .unwrap();
    let ci = conninfo(&d, MD5_USER, MD5_PASSWORD, "preparedb");
    let init = run(pg, "pgbench", &["-i", "-s", "1", "-q", &ci]).await;
    assert!(init.status.success(), "{}", stderr(&init));
    // Every pgbench client names its statements P_0, P_1 ... with the same text: the
    // pooler must keep each client's names apart and servers' statements shared.
    // TPC-B with at most pool_size clients: pgbench prepares each statement synchronously
    // inside its open transaction, which with more clients than servers would deadlock
    // pgbench's own threads (in any transaction pooler).
    let o = run(
        pg,
        "pgbench",
        &[
            "-M", "prepared", "-c", "5", "-j", "2", "-t", "200", "-n", &ci,
        ],
    )
    .await;
    let out = stdout(&o);
    assert!(o.status.success(), "{out}\n{}", stderr(&o));
    assert!(
        out.contains("number of failed transactions: 0 (0.000%)"),
        "{out}"
    );
    let o = run(
        pg,
        "pgbench",
        &[
            "-M", "prepared", "-S", "-c", "20", "-j", "2", "-t", "500", "-n", &ci,
        ],
    )
    .await;
    let out = stdout(&o);
    assert!(
        o.status.success() && out.contains("number of failed transactions: 0 (0.000%)"),
        "{out}\n{}",
        stderr(&o)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_errors_and_deallocate_all_keep_the_statement_tracking_right() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("prepared-errors");
    let d = start(pg, &dir, "pool_mode = transaction\ndefault_pool_size = 1").await;
    let c = connect(&md5_conninfo(&d)).await.unwrap();
    // A Parse the server refuses is not remembered as prepared.
    let e = c
        .prepare("select * from no_such_table where x = $1")
        .await
        .unwrap_err();
    assert_eq!(db_error(&e).1, "42P01");
    let stmt = c.prepare("select $1::int").await.unwrap();
    assert_eq!(
        c.query_one(&stmt, &[&7i32]).await.unwrap().get::<_, i32>(0),
        7
    );
    // An execution error inside a batch: the queue skips to Sync and recovers.
    let div = c.prepare("select 1 / $1::int").await.unwrap();
    let e = c.query_one(&div, &[&0i32]).await.unwrap_err();
    assert_eq!(db_error(&e).1, "22012");
    assert_eq!(
        c.query_one(&div, &[&1i32]).await.unwrap().get::<_, i32>(0),
        1
    );
    // DEALLOCATE ALL: the server and the client forget everything; new prepares work.
    c.simple_query("deallocate all").await.unwrap();
    let again = c.prepare("select $1::int + 100").await.unwrap();
    assert_eq!(
        c.query_one(&again, &[&1i32])
            .await
            .unwrap()
            .get::<_, i32>(0),
        101
    );
}

/// psycopg 3 preparing statements while the console changes max_prepared_statements:
/// the server keeps at most the limit in force when it prepares (PgBouncer's LRU), a
/// raised limit applies to the client already connected, a lowered one at the next
/// prepare.
const EVICT_WITH_SET: &str = r#"
import os, psycopg
admin = psycopg.connect(os.environ["ADMIN"], autocommit=True)
def limit(n):
    admin.execute(f"SET max_prepared_statements = {n}")
def on_server(cur):
    return cur.execute("SELECT count(*) FROM pg_prepared_statements").fetchone()[0]
limit(1)
with psycopg.connect(os.environ["DSN"], autocommit=True) as c:
    cur = c.cursor()
    for i in range(5):
        assert cur.execute(f"SELECT '{i}'", prepare=True).fetchone()[0] == str(i)
    assert on_server(cur) == 1, on_server(cur)
    limit(5)
    for i in range(5, 10):
        assert cur.execute(f"SELECT '{i}'", prepare=True).fetchone()[0] == str(i)
    assert on_server(cur) == 5, on_server(cur)
    limit(2)
    assert on_server(cur) == 5
    assert cur.execute("SELECT '10'", prepare=True).fetchone()[0] == "10"
    assert on_server(cur) == 2, on_server(cur)
print("ok")
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_prepared_statements_set_at_run_time_applies_to_connected_clients() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("prepared-set");
    let d = start(pg, &dir, "pool_mode = transaction\ndefault_pool_size = 1").await;
    let env = [
        ("DSN", md5_conninfo(&d)),
        ("ADMIN", conninfo(&d, "admin", "adminpass", "pgbouncer")),
    ];
    if let Some(out) = python_with("psycopg", EVICT_WITH_SET, &env).await {
        assert_eq!(out.trim(), "ok");
    }
}
