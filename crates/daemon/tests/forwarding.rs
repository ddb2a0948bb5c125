//! Forwarding you can trust: a transaction stays on its server from its first message
//! to its ReadyForQuery, messages of any size stream through, and a client that leaves
//! half-way or sends nonsense never harms the next one. Raw wire clients send exactly
//! what drivers send; psycopg 2 and 3, asyncpg and pgbench run as they do in production.

mod common;

use std::time::Duration;

use common::wire::*;
use common::*;
use pg_harness::{PgCluster, MD5_PASSWORD, MD5_USER};
use pgbouncer_protocol::BackendMessage;

async fn wire(d: &pgbouncer_rs::Daemon, extra: &[(&str, &str)]) -> Wire {
    Wire::connect(d.addr(), MD5_USER, MD5_PASSWORD, "appdb", extra).await
}

/// `SHOW POOLS`' `cl_waiting` for appdb/md5user, read through the console.
async fn cl_waiting(d: &pgbouncer_rs::Daemon) -> i64 {
    let console = connect(&conninfo(d, "admin", "adminpass", "pgbouncer"))
        .await
        .unwrap();
    let msgs = console.simple_query("SHOW POOLS").await.unwrap();
    for m in msgs {
        if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
            if r.get("database") == Some("appdb") && r.get("user") == Some(MD5_USER) {
                return r.get("cl_waiting").unwrap().parse().unwrap();
            }
        }
    }
    0
}

/// Polls until `n` clients wait for a server (bounded: 10 s).
async fn wait_for_waiting(d: &pgbouncer_rs::Daemon, n: i64) {
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for _ in 0..500 {
        tick.tick().await;
        if cl_waiting(d).await == n {
            return;
        }
    }
    panic!("expected {n} client(s) waiting for a server");
}

/// What psycopg 3's pipeline mode and asyncpg send: Parse/Bind/Execute("BEGIN") and a
/// Flush, no Sync. The server is inside the first client's transaction; a second client
/// must wait for it instead of running inside that transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extended_transaction_begun_with_flush_keeps_its_server() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    for prepared in ["200", "0"] {
        let dir = Scratch::new("flush-begin");
        let d = start(
            pg,
            &dir,
            &format!(
                "pool_mode = transaction\ndefault_pool_size = 1\nmax_prepared_statements = {prepared}\nquery_wait_timeout = 15"
            ),
        )
        .await;
        let mut a = wire(&d, &[]).await;
        a.send_msgs(&[
            parse("", "BEGIN"),
            bind("", &[]),
            execute(),
            parse("", "SET LOCAL application_name = 'inside-a'"),
            bind("", &[]),
            execute(),
            flush(),
        ])
        .await;
        assert_eq!(tags(&a.recv_n(6).await), "12C12C");
        // B asks for the only server while A's transaction is open: it has to wait.
        let mut b = wire(&d, &[]).await;
        b.send_msgs(&[query("select current_setting('application_name')")])
            .await;
        wait_for_waiting(&d, 1).await;
        a.send_msgs(&[parse("", "COMMIT"), bind("", &[]), execute(), sync()])
            .await;
        let done = a.until_ready().await;
        assert_eq!(tags(&done), "12CZ", "{done:?}");
        let got = b.until_ready().await;
        assert_eq!(
            first_value(&got).as_deref(),
            Some(""),
            "B ran inside A's transaction (max_prepared_statements = {prepared})"
        );
    }
}

/// Parse/Bind/Execute without Sync or Flush: PostgreSQL holds the answer until a Sync
/// comes, so the server belongs to this client until then; the next client must never
/// receive these rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_of_an_unsynced_execute_never_reach_another_client() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("unsynced");
    let d = start(
        pg,
        &dir,
        "pool_mode = transaction\ndefault_pool_size = 1\nmax_prepared_statements = 0\nquery_wait_timeout = 15",
    )
    .await;
    let mut a = wire(&d, &[]).await;
    a.send_msgs(&[parse("", "select 'rows-of-a'"), bind("", &[]), execute()])
        .await;
    let mut b = wire(&d, &[]).await;
    b.send_msgs(&[query("select 'rows-of-b'")]).await;
    wait_for_waiting(&d, 1).await;
    a.send_msgs(&[sync()]).await;
    let got_a = a.until_ready().await;
    assert_eq!(tags(&got_a), "12DCZ");
    assert_eq!(first_value(&got_a).as_deref(), Some("rows-of-a"));
    let got_b = b.until_ready().await;
    assert_eq!(rows(&got_b), vec![vec![Some("rows-of-b".to_string())]]);
}

/// Messages bigger than any buffer stream through: a 1 MiB and a 16 MiB simple query, a
/// 40 KB named Parse and Bind in prepared-statement mode (also when a SET must go first),
/// a 16 KB statement name, pipelined Parses, a Parse the size of the read buffer after a
/// Flush, and a pipeline whose Sync arrives late after an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_messages_and_odd_pipelines_complete() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("large");
    let d = start(pg, &dir, "pool_mode = transaction\ndefault_pool_size = 2").await;

    for size in [1 << 20, 16 << 20] {
        let mut w = wire(&d, &[]).await;
        let sql = format!("select length('{}')", "x".repeat(size));
        let got = w.simple(&sql).await;
        assert_eq!(first_value(&got), Some(size.to_string()), "{size} bytes");
    }

    // A named Parse and a Bind of 40 KB each; the second client's encoding differs from
    // the pool's, so a SET goes to the server before its messages.
    for extra in [&[][..], &[("client_encoding", "LATIN1")][..]] {
        let mut w = wire(&d, extra).await;
        let big = "y".repeat(40_000);
        let sql = format!("select $1::text || '{big}'");
        let param = "z".repeat(40_000);
        w.send_msgs(&[
            parse("big", &sql),
            bind("big", &[Some(param.as_bytes())]),
            execute(),
            sync(),
        ])
        .await;
        let got = w.until_ready().await;
        assert_eq!(tags(&got), "12DCZ", "{:?}", errors(&got));
        assert_eq!(first_value(&got).map(|v| v.len()), Some(80_000));
    }

    // A 16 KB statement name through Parse, Describe, Bind, Execute and Close.
    let mut w = wire(&d, &[]).await;
    let name = "n".repeat(16 * 1024);
    w.send_msgs(&[
        parse(&name, "select 42"),
        describe_statement(&name),
        bind(&name, &[]),
        execute(),
        close_statement(&name),
        sync(),
    ])
    .await;
    let got = w.until_ready().await;
    assert_eq!(tags(&got), "1tT2DC3Z", "{:?}", errors(&got));

    // Two ~2 KB Parses in one pipeline, then Sync.
    let mut w = wire(&d, &[]).await;
    let q1 = format!("select '{}'", "a".repeat(2000));
    let q2 = format!("select '{}'", "b".repeat(2000));
    w.send_msgs(&[parse("p1", &q1), parse("p2", &q2), sync()])
        .await;
    assert_eq!(tags(&w.until_ready().await), "11Z");
    w.send_msgs(&[bind("p2", &[]), execute(), sync()]).await;
    let got = w.until_ready().await;
    assert_eq!(first_value(&got).map(|v| v.len()), Some(2000));

    // Flush, then a Parse exactly the size of a read chunk, then Sync.
    for chunk in [1024usize, 32 * 1024] {
        let mut w = wire(&d, &[]).await;
        w.send_msgs(&[flush()]).await;
        // Parse = tag + length + name\0 + query\0 + int16.
        let name = format!("chunk{chunk}");
        let fixed = 1 + 4 + name.len() + 1 + 1 + 2;
        let sql = format!("select '{}'", "c".repeat(chunk - fixed - "select ''".len()));
        let msg = encode(&[parse(&name, &sql)]);
        assert_eq!(msg.len(), chunk);
        w.send(&msg).await;
        w.send_msgs(&[sync()]).await;
        assert_eq!(tags(&w.until_ready().await), "1Z");
    }

    // An error in a pipeline, then an Execute and a late Sync: PostgreSQL skips to the
    // Sync and answers it.
    let mut w = wire(&d, &[]).await;
    w.send_msgs(&[parse("", "select nonsense_column"), flush()])
        .await;
    let got = w.recv().await;
    assert!(matches!(got, BackendMessage::ErrorResponse(_)), "{got:?}");
    w.send_msgs(&[bind("", &[]), execute(), flush()]).await;
    w.send_msgs(&[sync()]).await;
    assert_eq!(tags(&w.until_ready().await), "Z");
    let got = w.simple("select 'after'").await;
    assert_eq!(first_value(&got).as_deref(), Some("after"));
}

/// A client that sends 7 bytes of a 100-byte Query and disconnects: the server got half
/// a message, so it is closed, and the next client gets a working one. Every pool mode,
/// with and without prepared-statement tracking.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_leaving_mid_message_does_not_stall_the_pool() {
    use tokio::io::AsyncWriteExt;
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    for mode in ["session", "transaction", "statement"] {
        for prepared in ["0", "200"] {
            let dir = Scratch::new("half");
            let d = start(
                pg,
                &dir,
                &format!(
                    "pool_mode = {mode}\ndefault_pool_size = 1\nquery_wait_timeout = 10\nmax_prepared_statements = {prepared}"
                ),
            )
            .await;
            let sql = format!("select '{}'", "h".repeat(100 - 5 - 1 - "select ''".len()));
            let msg = encode(&[query(&sql)]);
            assert_eq!(msg.len(), 100);
            for _ in 0..2 {
                let mut w = wire(&d, &[]).await;
                w.send(&msg[..7]).await;
                // Half-close: the pooler reads the 7 bytes, then end of stream, and
                // closes us; by then it has dealt with the half message.
                w.stream.shutdown().await.unwrap();
                assert!(w.until_closed().await.is_empty());
                let mut next = wire(&d, &[]).await;
                let got = next.simple("select 'next'").await;
                assert_eq!(
                    first_value(&got).as_deref(),
                    Some("next"),
                    "{mode}, max_prepared_statements = {prepared}: {got:?}"
                );
            }
        }
    }
}

/// Unknown message types and oversized headers are refused with PgBouncer's errors; a
/// Terminate ends the client where it stands and never reaches the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_after_login_is_refused_and_terminate_is_never_forwarded() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("badinput");
    let d = start(
        pg,
        &dir,
        "pool_mode = transaction\ndefault_pool_size = 1\nmax_packet_size = 65536",
    )
    .await;

    let fatal = |msgs: &[BackendMessage]| -> String {
        let e = errors(msgs);
        assert_eq!(e.len(), 1, "{msgs:?}");
        assert_eq!((e[0].0.as_str(), e[0].1.as_str()), ("FATAL", "08P01"));
        e[0].2.clone()
    };

    // An unknown message type, with and without a server linked.
    for linked in [false, true] {
        let mut w = wire(&d, &[]).await;
        if linked {
            w.send_msgs(&[query("begin")]).await;
            w.until_ready().await;
        }
        w.send(b"y\0\0\0\x04").await;
        assert_eq!(fatal(&w.until_closed().await), "unknown pkt");
    }
    // A header claiming 2 GiB, and one just over max_packet_size.
    for len in [0x8000_0000u32, 65_537] {
        let mut w = wire(&d, &[]).await;
        let mut msg = vec![b'Q'];
        msg.extend_from_slice(&len.to_be_bytes());
        msg.extend_from_slice(b"select 1");
        w.send(&msg).await;
        let m = fatal(&w.until_closed().await);
        assert!(m.starts_with("bad packet header: '51"), "{m}");
    }
    // A Terminate between two queries in one write: the first runs, the second never does,
    // and the server stays in the pool (same backend for the next client).
    let mut w = wire(&d, &[]).await;
    let pid = first_value(&w.simple("select pg_backend_pid()").await).unwrap();
    let mut out = encode(&[query("select 'first'")]);
    out.extend_from_slice(b"X\0\0\0\x04");
    out.extend_from_slice(&encode(&[query("select 'second'")]));
    w.send(&out).await;
    let got = w.until_closed().await;
    assert_eq!(rows(&got), vec![vec![Some("first".to_string())]]);
    let mut next = wire(&d, &[]).await;
    let again = first_value(&next.simple("select pg_backend_pid()").await).unwrap();
    assert_eq!(again, pid, "the server was closed or replaced");
}

fn url(d: &pgbouncer_rs::Daemon) -> String {
    format!(
        "postgresql://{MD5_USER}:{MD5_PASSWORD}@127.0.0.1:{}/appdb",
        d.addr().port()
    )
}

/// psycopg 3 pipeline mode: transactions of pipelined statements from 6 threads on a
/// 2-server pool, each seeing only its own rows.
const PSYCOPG3_PIPELINE: &str = r#"
import os, threading, psycopg
DSN = os.environ["DSN"]
with psycopg.connect(DSN, autocommit=True) as c:
    c.execute("drop table if exists pipe_t")
    c.execute("create table pipe_t (who int, n int)")
errors = []
def worker(me):
    try:
        with psycopg.connect(DSN) as conn:
            for i in range(30):
                with conn.pipeline():
                    cur = conn.cursor()
                    cur.execute("insert into pipe_t values (%s, %s)", (me, i))
                    cur.execute("select count(*) from pipe_t where who = %s", (me,))
                    cur2 = conn.cursor()
                    cur2.execute("select current_setting('application_name')")
                    conn.execute("set local application_name = %s" % ("'w%d'" % me))
                    n = cur.fetchone()[0]
                    if n != i + 1:
                        errors.append(f"worker {me} saw {n} rows at step {i}")
                conn.commit()
                if conn.execute("select current_setting('application_name')").fetchone()[0] != "":
                    errors.append(f"worker {me}: application_name leaked")
                conn.commit()
    except Exception as e:
        errors.append(repr(e))
threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
for t in threads: t.start()
for t in threads: t.join()
print("errors", len(errors))
for e in errors[:5]: print(e)
assert not errors
"#;

/// psycopg2 sends a client-side interpolated simple query: 1 MiB and 16 MiB parameters.
const PSYCOPG2_LARGE: &str = r#"
import os, psycopg2
conn = psycopg2.connect(os.environ["DSN"])
conn.autocommit = True
cur = conn.cursor()
for size in (1 << 20, 16 << 20):
    cur.execute("select length(%s)", ("q" * size,))
    assert cur.fetchone()[0] == size, size
print("ok")
"#;

/// asyncpg with its default statement cache (named statements, Parse/Describe/Flush, then
/// Bind/Execute/Sync), a pool of 8 connections over 2 servers, transactions included.
const ASYNCPG_CACHE: &str = r#"
import asyncio, os, asyncpg
async def main():
    pool = await asyncpg.create_pool(os.environ["DSN"], min_size=8, max_size=8)
    async def job(i):
        async with pool.acquire() as c:
            for j in range(25):
                assert await c.fetchval("select $1::int + 1", j) == j + 1
                async with c.transaction():
                    v = await c.fetchval("select $1::text || '-' || txid_current()::text", f"t{i}")
                    assert v.startswith(f"t{i}-"), v
    await asyncio.gather(*(job(i) for i in range(16)))
    await pool.close()
    print("ok")
asyncio.run(main())
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg3_pipelines_psycopg2_large_queries_and_asyncpg_work_in_transaction_mode() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("drivers");
    let d = start(
        pg,
        &dir,
        "pool_mode = transaction\ndefault_pool_size = 2\nquery_wait_timeout = 30",
    )
    .await;
    let dsn = url(&d);
    if let Some(out) = python("psycopg", PSYCOPG3_PIPELINE, &dsn).await {
        assert!(out.contains("errors 0"), "{out}");
    }
    if let Some(out) = python("psycopg2", PSYCOPG2_LARGE, &dsn).await {
        assert!(out.contains("ok"), "{out}");
    }
    if let Some(out) = python("asyncpg", ASYNCPG_CACHE, &dsn).await {
        assert!(out.contains("ok"), "{out}");
    }
}
