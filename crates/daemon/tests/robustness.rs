//! Bad input closes only the guilty client with a clear error; a client that leaves
//! mid-transaction never leaves a dirty server in the pool; session mode resets servers.

mod common;

use std::time::Duration;

use common::*;
use pg_harness::PgCluster;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends raw bytes and returns everything the pooler answers until it closes.
async fn raw(d: &pgbouncer_rs::Daemon, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(d.addr()).await.unwrap();
    s.write_all(bytes).await.unwrap();
    s.shutdown().await.unwrap(); // the client is done talking
    let mut out = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    assert!(r.is_ok(), "the pooler should close the connection");
    out
}

fn fatal_message(reply: &[u8]) -> String {
    assert_eq!(
        reply.first(),
        Some(&b'E'),
        "expected an ErrorResponse, got {reply:?}"
    );
    let text = String::from_utf8_lossy(&reply[5..]).to_string();
    let field = |c: char| {
        text.split('\0')
            .find_map(|f| f.strip_prefix(c))
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(field('S'), "FATAL");
    assert_eq!(field('C'), "08P01");
    field('M')
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_truncated_and_oversized_packets_close_only_that_client() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("garbage");
    let d = start(pg, &dir, "pool_mode = transaction").await;
    let keep = connect(&md5_conninfo(&d)).await.unwrap();
    keep.simple_query("select 1").await.unwrap();

    // Garbage: a "length" far beyond the startup packet limit.
    let reply = raw(&d, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(
        fatal_message(&reply).starts_with("bad packet header"),
        "{reply:?}"
    );
    // Length 0x7fffffff.
    let reply = raw(&d, &[0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0]).await;
    assert!(fatal_message(&reply).starts_with("bad packet header"));
    // A startup packet without its terminator.
    let mut p = vec![0, 0, 0, 0, 0, 3, 0, 0];
    p.extend_from_slice(b"user\0md5user\0database\0appdb\0");
    let len = p.len() as u32;
    p[..4].copy_from_slice(&len.to_be_bytes());
    let reply = raw(&d, &p).await;
    assert_eq!(
        fatal_message(&reply),
        "invalid startup packet layout: expected terminator as last byte"
    );
    // Truncated: the client sends half a packet and hangs up.
    let reply = raw(&d, &[0, 0, 0, 40, 0, 3]).await;
    assert!(
        reply.is_empty(),
        "nothing to say to a client that left: {reply:?}"
    );
    // An old V2 startup.
    let reply = raw(&d, &[0, 0, 0, 8, 0, 2, 0, 0]).await;
    assert_eq!(fatal_message(&reply), "old V2 protocol not supported");
    // A logged-in client sending a huge message length.
    let mut s = TcpStream::connect(d.addr()).await.unwrap();
    let mut p = vec![0, 0, 0, 0, 0, 3, 0, 0];
    p.extend_from_slice(b"user\0md5user\0database\0appdb\0\0");
    let len = p.len() as u32;
    p[..4].copy_from_slice(&len.to_be_bytes());
    s.write_all(&p).await.unwrap();
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).await.unwrap();
    assert_eq!(buf[0], b'R', "md5 challenge expected: {:?}", &buf[..n]);
    s.write_all(b"p\x7f\xff\xff\xff").await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out.first(), Some(&b'E'));

    // Everyone else is fine.
    let rows = keep.simple_query("select 3").await.unwrap();
    assert!(!rows.is_empty());
    let o = psql(pg, &md5_conninfo(&d), "select 4").await;
    assert_eq!(stdout(&o), "4", "{}", stderr(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_disconnects_mid_transaction_never_leaves_a_dirty_server_in_the_pool() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("dirty");
    let d = start(pg, &dir, "pool_mode = transaction\ndefault_pool_size = 1").await;
    let pid_a = {
        let a = connect(&md5_conninfo(&d)).await.unwrap();
        let rows = a
            .simple_query("begin; select pg_advisory_xact_lock(4242); select pg_backend_pid()")
            .await
            .unwrap();
        value(&rows).unwrap()
        // dropped here: the client goes away inside its transaction
    };
    let b = connect(&md5_conninfo(&d)).await.unwrap();
    let pid_b = value(&b.simple_query("select pg_backend_pid()").await.unwrap()).unwrap();
    assert_ne!(
        pid_a, pid_b,
        "the server of the abandoned transaction must not be reused"
    );
    // PostgreSQL ends the abandoned backend on its own time: wait for it (bounded).
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut gone = false;
    for _ in 0..500 {
        tick.tick().await;
        let n = pg
            .psql(
                "postgres",
                &format!("select count(*) from pg_stat_activity where pid = {pid_a}"),
            )
            .unwrap();
        if n == "0" {
            gone = true;
            break;
        }
    }
    assert!(gone, "the abandoned backend was closed");
    let rows = b
        .simple_query("select pg_try_advisory_xact_lock(4242)::text")
        .await
        .unwrap();
    assert_eq!(
        value(&rows).as_deref(),
        Some("true"),
        "the abandoned transaction's lock is gone"
    );
    let idle_in_tx: i64 = pg
        .psql(
            "postgres",
            "select count(*) from pg_stat_activity where state like 'idle in transaction%'",
        )
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(idle_in_tx, 0);
}

fn value(rows: &[tokio_postgres::SimpleQueryMessage]) -> Option<String> {
    rows.iter().rev().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
        _ => None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_mode_keeps_one_server_per_client_and_resets_it_with_discard_all() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("session");
    let d = start(pg, &dir, "pool_mode = session\ndefault_pool_size = 1").await;
    let pid_a;
    {
        let a = connect(&md5_conninfo(&d)).await.unwrap();
        a.simple_query("prepare leftover as select 1")
            .await
            .unwrap();
        let r = a.query_one("select pg_backend_pid()", &[]).await.unwrap();
        pid_a = r.get::<_, i32>(0);
        let r = a.query_one("select pg_backend_pid()", &[]).await.unwrap();
        assert_eq!(
            r.get::<_, i32>(0),
            pid_a,
            "session mode: same server all along"
        );
    }
    let b = connect(&md5_conninfo(&d)).await.unwrap();
    let r = b.query_one("select pg_backend_pid()", &[]).await.unwrap();
    assert_eq!(
        r.get::<_, i32>(0),
        pid_a,
        "pool size 1: the server was reused"
    );
    let e = b.simple_query("execute leftover").await.unwrap_err();
    assert_eq!(
        db_error(&e).1,
        "26000",
        "DISCARD ALL must have dropped the statement"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_clients_are_all_served_when_the_pool_has_one_server() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("fifo");
    let d = start(pg, &dir, "pool_mode = transaction\ndefault_pool_size = 1").await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let ci = md5_conninfo(&d);
        tasks.push(tokio::spawn(async move {
            let c = connect(&ci).await.unwrap();
            for _ in 0..5 {
                c.simple_query(&format!("select {i}, pg_sleep(0.001)"))
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}
