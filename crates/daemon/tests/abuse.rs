//! Abuse, against the `pgbouncer-rs` binary (so its memory is its own): thousands of
//! silent connections, a storm of logins with wrong passwords and unknown users, a
//! client that floods without reading, a server that stops reading. Each runs beside
//! ordinary clients that must keep being served, prints the load held and the memory
//! used (`abuse:` lines, recorded in docs/security.md), and ends by itself: every wait
//! is bounded. Loopback only.
//!
//! `ABUSE_SCALE` (default 1) scales the connection counts (the full figures: 5 000
//! silent connections, 10 000 failed logins).

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::pooler::Pooler;
use common::wire::{self, Wire};
use common::*;
use pg_harness::{PgCluster, MD5_PASSWORD, MD5_USER};
use pgbouncer_protocol::{
    auth::md5, encode_password, Authentication, BackendMessage, StartupMessage,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `n` scaled by `ABUSE_SCALE`, and capped by the descriptors this process (and the
/// pooler, which raises its limit the same way) can have: each connection costs one on
/// both sides. The cap is printed when it bites.
fn scaled(n: usize) -> usize {
    let scale: f64 = std::env::var("ABUSE_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let want = ((n as f64 * scale) as usize).max(1);
    let budget = pgbouncer_rs::net::raise_fd_limit()
        .map_or(1024, |l| usize::try_from(l.soft).unwrap_or(usize::MAX))
        .saturating_sub(256)
        .max(64);
    if want > budget {
        eprintln!("abuse: {want} connections wanted, {budget} fit in the descriptor limit");
    }
    want.min(budget)
}

/// The binary, started on an ini; killed when dropped.
fn write_ini(pg: &PgCluster, dir: &Scratch, extra: &str) -> std::path::PathBuf {
    let text =
        ini(pg, dir, extra).replace("listen_port = 0", "listen_port = 0\nlog_pooler_errors = 0");
    let path = dir.0.join("pgbouncer.ini");
    std::fs::write(&path, text).unwrap();
    path
}

/// Ordinary clients: `clients` connections running `queries` queries each, all of which
/// must succeed. Returns the number of queries served.
async fn ordinary_load(addr: std::net::SocketAddr, clients: usize, queries: usize) -> u64 {
    let served = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for c in 0..clients {
        let served = served.clone();
        tasks.push(tokio::spawn(async move {
            let mut w = Wire::connect(addr, MD5_USER, MD5_PASSWORD, "appdb", &[]).await;
            for q in 0..queries {
                let sql = format!("select {}", c * 1000 + q);
                let msgs = w.simple(&sql).await;
                assert_eq!(
                    wire::first_value(&msgs),
                    Some((c * 1000 + q).to_string()),
                    "an ordinary client got {msgs:?}"
                );
                served.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(120), t)
            .await
            .expect("ordinary clients were not served in time")
            .unwrap();
    }
    served.load(Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_silent_connections_cost_little_and_leave_at_client_login_timeout() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("abuse-silent");
    let n = scaled(5000);
    let path = write_ini(
        pg,
        &dir,
        "client_login_timeout = 5\nmax_client_conn = 20000",
    );
    let mut p = Pooler::start(&path);
    let before = p.mem_kb("VmRSS");
    let mut silent = Vec::with_capacity(n);
    for _ in 0..n {
        silent.push(TcpStream::connect(p.addr()).await.unwrap());
    }
    let served = ordinary_load(p.addr(), 4, 100).await;
    let held = p.mem_kb("VmRSS");
    // Every one is closed by the pooler, none by us.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut closed = 0;
    for mut s in silent {
        let mut b = [0u8; 256];
        match tokio::time::timeout_at(deadline, s.read(&mut b)).await {
            Ok(Ok(_)) | Ok(Err(_)) => closed += 1,
            Err(_) => break,
        }
    }
    assert_eq!(closed, n, "silent connections still open a minute later");
    let after = p.mem_kb("VmRSS");
    let per = (held.saturating_sub(before)) * 1024 / n as u64;
    eprintln!(
        "abuse: {n} silent connections held: RSS {before} kB -> {held} kB ({per} B each), \
         {served} ordinary queries served meanwhile, all {n} closed at client_login_timeout, \
         RSS after {after} kB"
    );
    // Bounded: a silent connection holds a task and a socket, not buffers.
    assert!(per < 16 * 1024, "{per} bytes per silent connection");
    assert!(p.alive());
}

/// One login attempt with a wrong password (md5) as `user`: the error's message, or how
/// the attempt failed to get that far.
async fn failed_login(addr: std::net::SocketAddr, user: String) -> String {
    let attempt = async {
        let mut s = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let mut out = BytesMut::new();
        StartupMessage::new(vec![
            ("user".into(), user.clone()),
            ("database".into(), "appdb".into()),
        ])
        .encode(&mut out);
        s.write_all(&out).await.map_err(|e| format!("write: {e}"))?;
        let mut buf = BytesMut::new();
        loop {
            while let Some(m) =
                BackendMessage::decode(&mut buf, 1 << 20).map_err(|e| e.to_string())?
            {
                match m {
                    BackendMessage::Authentication(Authentication::Md5Password { salt }) => {
                        let mut out = BytesMut::new();
                        let resp = md5::client_response("not-the-password", &user, salt);
                        encode_password(&mut out, resp.as_bytes());
                        s.write_all(&out).await.map_err(|e| format!("write: {e}"))?;
                    }
                    BackendMessage::ErrorResponse(e) => {
                        return Ok::<String, String>(e.message().unwrap_or_default().to_string())
                    }
                    other => return Err(format!("unexpected {other:?}")),
                }
            }
            if s.read_buf(&mut buf)
                .await
                .map_err(|e| format!("read: {e}"))?
                == 0
            {
                return Err("closed without an error".into());
            }
        }
    };
    match tokio::time::timeout(Duration::from_secs(60), attempt).await {
        Ok(Ok(message)) => message,
        Ok(Err(how)) => how,
        Err(_) => "no answer within 60 s".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_failed_logins_is_refused_while_others_are_served() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("abuse-storm");
    let n = scaled(10_000);
    let path = write_ini(pg, &dir, "max_client_conn = 20000\npool_mode = transaction");
    let mut p = Pooler::start(&path);
    let before = p.mem_kb("VmRSS");
    let started = Instant::now();
    let addr = p.addr();
    let storm: Vec<_> = (0..n)
        .map(|i| {
            // Half claim a real user with a wrong password, half users that do not exist.
            let user = if i % 2 == 0 {
                MD5_USER.to_string()
            } else {
                format!("storm_{i}")
            };
            tokio::spawn(failed_login(addr, user))
        })
        .collect();
    let served = ordinary_load(addr, 2, 200).await;
    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    for t in storm {
        *outcomes.entry(t.await.unwrap()).or_default() += 1;
    }
    let took = started.elapsed();
    let peak = p.mem_kb("VmHWM");
    eprintln!(
        "abuse: {n} failed logins at once in {took:?}: {outcomes:?}; {served} ordinary \
         queries served meanwhile; RSS {before} kB, peak {peak} kB"
    );
    assert_eq!(
        outcomes
            .get("password authentication failed")
            .copied()
            .unwrap_or(0),
        n,
        "every attempt must end with the password error: {outcomes:?}"
    );
    // No pool for a user name a client only claimed.
    let mut admin = Wire::connect(addr, "admin", "adminpass", "pgbouncer", &[]).await;
    let pools = wire::rows(&admin.simple("SHOW POOLS").await);
    assert!(
        !pools
            .iter()
            .any(|r| r[1].as_deref().is_some_and(|u| u.starts_with("storm_"))),
        "pools of unauthenticated users: {pools:?}"
    );
    assert!(p.alive());
}

/// Writes `bytes` of pipelined queries without reading anything, until all is written or
/// nothing more is taken for two seconds (backpressure). Returns what was written.
async fn flood(s: &mut TcpStream, bytes: usize) -> usize {
    let one = wire::encode(&[wire::query("select 1")]);
    let chunk: Vec<u8> = one.iter().copied().cycle().take(one.len() * 4096).collect();
    let mut written = 0;
    while written < bytes {
        match tokio::time::timeout(Duration::from_secs(2), s.write(&chunk)).await {
            Ok(Ok(n)) if n > 0 => written += n,
            _ => break,
        }
    }
    written
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_floods_without_reading_is_held_back_and_costs_bounded_memory() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("abuse-flood");
    let path = write_ini(pg, &dir, "pool_mode = transaction\ndefault_pool_size = 2");
    let mut p = Pooler::start(&path);
    let before = p.mem_kb("VmRSS");
    let mut w = Wire::connect(p.addr(), MD5_USER, MD5_PASSWORD, "appdb", &[]).await;
    let gib = 1 << 30;
    let written = flood(&mut w.stream, gib).await;
    let held = p.mem_kb("VmRSS");
    let served = ordinary_load(p.addr(), 2, 100).await;
    eprintln!(
        "abuse: a client sending 1 GiB of queries without reading was held back after \
         {written} bytes; RSS {before} kB -> {held} kB; {served} ordinary queries served meanwhile"
    );
    assert!(written < gib, "all of 1 GiB was taken without backpressure");
    assert!(
        held < before + 64 * 1024,
        "RSS grew from {before} kB to {held} kB"
    );
    drop(w);
    // The flooder's server was mid-pipeline: closed, and the pool goes on.
    assert_eq!(ordinary_load(p.addr(), 2, 20).await, 40);
    assert!(p.alive());
}

/// A fake PostgreSQL that logs anyone in and then never reads again.
async fn stuck_server() -> (u16, tokio::task::JoinHandle<()>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok(Ok((mut s, _))) =
            tokio::time::timeout(Duration::from_secs(120), l.accept()).await
        {
            let mut buf = BytesMut::new();
            // The startup packet: length-prefixed (an SSLRequest first is answered 'N',
            // as by a PostgreSQL without TLS).
            loop {
                if buf.len() >= 4 {
                    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
                    if buf.len() >= 8
                        && len == 8
                        && buf[4..8] == pgbouncer_protocol::SSL_REQUEST_CODE.to_be_bytes()
                    {
                        let _ = buf.split_to(8);
                        let _ = s.write_all(b"N").await;
                        continue;
                    }
                    if buf.len() >= len {
                        break;
                    }
                }
                if s.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                    break;
                }
            }
            let mut out = BytesMut::new();
            pgbouncer_protocol::encode_auth_ok(&mut out);
            for (k, v) in [
                ("server_version", "15.0"),
                ("client_encoding", "UTF8"),
                ("DateStyle", "ISO, MDY"),
                ("TimeZone", "UTC"),
                ("standard_conforming_strings", "on"),
                ("integer_datetimes", "on"),
            ] {
                pgbouncer_protocol::encode_parameter_status(&mut out, k, v);
            }
            pgbouncer_protocol::encode_backend_key_data(&mut out, 4242, 4242);
            pgbouncer_protocol::encode_ready_for_query(
                &mut out,
                pgbouncer_protocol::TransactionStatus::Idle,
            );
            let _ = s.write_all(&out).await;
            held.push(s); // never read again
        }
    });
    (port, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_stops_reading_holds_back_only_its_client() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("abuse-stuck");
    let (stuck_port, stuck) = stuck_server().await;
    let text = ini(pg, &dir, "pool_mode = transaction\nlog_pooler_errors = 0").replacen(
        "[databases]\n",
        &format!("[databases]\nstuck = host=127.0.0.1 port={stuck_port} dbname=stuck\n"),
        1,
    );
    let path = dir.0.join("pgbouncer.ini");
    std::fs::write(&path, text).unwrap();
    let mut p = Pooler::start(&path);
    let before = p.mem_kb("VmRSS");
    let mut w = Wire::connect(p.addr(), MD5_USER, MD5_PASSWORD, "stuck", &[]).await;
    // A 256 MiB query to a server that reads nothing.
    let big = 256 << 20;
    let mut msg = BytesMut::with_capacity(big + 16);
    msg.extend_from_slice(b"Q");
    msg.extend_from_slice(&((big + 4 + 1) as u32).to_be_bytes());
    msg.resize(msg.len() + big, b' ');
    msg.extend_from_slice(&[0]);
    let mut written = 0;
    while written < msg.len() {
        match tokio::time::timeout(Duration::from_secs(2), w.stream.write(&msg[written..])).await {
            Ok(Ok(n)) if n > 0 => written += n,
            _ => break,
        }
    }
    let held = p.mem_kb("VmRSS");
    let served = ordinary_load(p.addr(), 2, 100).await;
    eprintln!(
        "abuse: a server that stops reading took {written} of a {big}-byte query before \
         the client was held back; RSS {before} kB -> {held} kB; {served} ordinary queries \
         served meanwhile on another database"
    );
    assert!(
        written < msg.len(),
        "a stuck server's client was never held back"
    );
    assert!(
        held < before + 64 * 1024,
        "RSS grew from {before} kB to {held} kB"
    );
    drop(w);
    assert_eq!(ordinary_load(p.addr(), 1, 10).await, 10);
    assert!(p.alive());
    stuck.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_descriptor_limit_is_raised_and_logged_like_pgbouncer() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("abuse-fd");
    let path = write_ini(pg, &dir, "max_client_conn = 500");
    let p = Pooler::start_with_soft_nofile(&path, Some(256));
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut log = Vec::new();
    while Instant::now() < deadline
        && !log
            .iter()
            .any(|l: &String| l.contains("kernel file descriptor limit"))
    {
        log.extend(p.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let line = log
        .iter()
        .find(|l| l.contains("kernel file descriptor limit: "))
        .unwrap_or_else(|| panic!("no limit line in {log:?}"));
    assert!(
        line.contains("max_client_conn: 500, max expected fd use: "),
        "{line}"
    );
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", p.child.id())).unwrap();
    let open = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let fields: Vec<&str> = open.split_whitespace().collect();
    assert_eq!(
        fields[3], fields[4],
        "soft limit not raised to the hard one: {open}"
    );
    assert_ne!(fields[3], "256", "{open}");
    assert!(
        log.iter()
            .any(|l| l.contains("raised the file descriptor limit from 256")),
        "{log:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_descriptors_refuses_new_connections_and_recovers() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("abuse-emfile");
    let path = write_ini(pg, &dir, "max_client_conn = 1000\npool_mode = transaction");
    // A hard limit of 64 descriptors: raising the soft one cannot help.
    let mut p = Pooler::start_limited(&path, Some("ulimit -n 64".into()));
    let mut ok = Wire::connect(p.addr(), MD5_USER, MD5_PASSWORD, "appdb", &[]).await;
    assert_eq!(
        wire::first_value(&ok.simple("select 1").await).as_deref(),
        Some("1")
    );
    // Far more connections than descriptors: the kernel queues them, accept fails.
    let mut held = Vec::new();
    for _ in 0..100 {
        if let Ok(Ok(s)) =
            tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(p.addr())).await
        {
            held.push(s);
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    // The client that was in keeps its server and gets its answers.
    assert_eq!(
        wire::first_value(&ok.simple("select 2").await).as_deref(),
        Some("2")
    );
    assert!(p.alive(), "the pooler died when descriptors ran out");
    let log = p.log();
    let refusals = log
        .iter()
        .filter(|l| l.contains("accept() failed: Too many open files"))
        .count();
    assert!(refusals > 0, "no accept() failure logged: {log:?}");
    drop(held);
    // Once descriptors are free again, new clients get in (polled, bounded).
    let mut back = None;
    for _ in 0..50 {
        if let Ok(w) = Wire::try_connect(p.addr(), MD5_USER, MD5_PASSWORD, "appdb", &[]).await {
            back = Some(w);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut back = back.expect("no new client got in after descriptors were freed");
    assert_eq!(
        wire::first_value(&back.simple("select 3").await).as_deref(),
        Some("3")
    );
    eprintln!(
        "abuse: hard descriptor limit 64, 100 connections queued: {refusals} accept() \
         failures logged in about a second (one per pause), the linked client kept being served, new \
         clients got in once descriptors were free"
    );
}
