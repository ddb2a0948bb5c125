//! The dashboard at `/` of the metrics listener, looked at in a real browser: the
//! `pgbouncer-rs` binary on an ini file with `metrics_listen_port` set, pgbench with a
//! fixed number of clients on a small transaction-mode pool, and
//! `xtask/browser/dashboard_check.py` (Playwright driving headless Chromium) comparing
//! the page with the admin console's SHOW POOLS and SHOW ADVICE.
//!
//! Without Playwright or a browser the browser test skips loudly, and fails under CI
//! (`.ci/install` installs Debian's `chromium` and the `playwright` pip package).
//! `UPDATE_DASHBOARD_SCREENSHOT=1` writes its screenshot to `docs/dashboard.png`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::pooler::Pooler;
use common::{free_port, psql, run, stderr, Scratch};
use pg_harness::{PgCluster, MD5_PASSWORD, MD5_USER};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The page as the daemon embeds it.
const PAGE: &str = include_str!("../src/http/dashboard.html");
/// pgbench clients, and the pool they share.
const CLIENTS: u32 = 8;
const POOL_SIZE: u32 = 3;
const POOL: &str = "appdb/md5user";
/// Upper bound of the pgbench run; it is killed as soon as the check is done.
const BENCH_SECONDS: u32 = 150;

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"))
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Whether the browser check can run here: `dashboard_check.py --probe` starts the
/// browser once. Outside CI a missing piece is a loud skip; under CI, a failure.
async fn browser_ready(script: &Path) -> bool {
    let probe = tokio::process::Command::new("python3")
        .arg(script)
        .arg("--probe")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let why = match tokio::time::timeout(Duration::from_secs(90), probe).await {
        Ok(Ok(o)) if o.status.success() => return true,
        Ok(Ok(o)) => format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout).trim(),
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Ok(Err(e)) => format!("cannot run python3: {e}"),
        Err(_) => "the browser probe did not finish in 90 s".into(),
    };
    assert!(
        !ci(),
        "CI is set but the dashboard browser check cannot run: {why} \
         (.ci/install installs chromium and playwright)"
    );
    eprintln!("SKIPPED: the dashboard browser check: {why}");
    false
}

/// The body of `GET path` on the metrics listener, or None if it does not answer.
async fn http_get(port: u16, path: &str) -> Option<String> {
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        let head = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        s.write_all(head.as_bytes()).await.ok()?;
        let mut reply = String::new();
        s.read_to_string(&mut reply).await.ok()?;
        reply.starts_with("HTTP/1.1 200").then_some(())?;
        Some(reply.split_once("\r\n\r\n")?.1.to_string())
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .ok()
        .flatten()
}

/// Samples of `pool` in /api/history with transactions in them.
fn busy_samples(history: &str, pool: &str) -> usize {
    let v: serde_json::Value = serde_json::from_str(history).unwrap_or_default();
    v["samples"].as_array().map_or(0, |samples| {
        samples
            .iter()
            .filter(|s| s["pools"][pool]["xact_per_s"].as_u64().unwrap_or(0) > 0)
            .count()
    })
}

#[test]
fn the_dashboard_page_is_small_and_loads_nothing_from_elsewhere() {
    assert!(
        PAGE.len() < 25 * 1024,
        "dashboard.html is {} bytes",
        PAGE.len()
    );
    let lower = PAGE.to_ascii_lowercase();
    for needle in [
        "http://",
        "https://",
        "src=",
        "@import",
        "url(",
        "<link rel=\"stylesheet",
    ] {
        assert!(
            !lower.contains(needle),
            "dashboard.html contains {needle:?}"
        );
    }
    // The only link is the empty inline favicon (so the browser asks for no /favicon.ico).
    assert_eq!(lower.matches("<link").count(), 1);
    assert!(lower.contains("<link rel=\"icon\" href=\"data:,\">"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_what_show_pools_shows_while_pgbench_runs() {
    if !pg_harness::require_postgres() {
        return;
    }
    let script = repo_root().join("xtask/browser/dashboard_check.py");
    if !browser_ready(&script).await {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("dashboard");
    let http_port = free_port();
    let text = common::ini(
        pg,
        &dir,
        &format!(
            "pool_mode = transaction\ndefault_pool_size = {POOL_SIZE}\nreserve_pool_size = 0\n\
             metrics_listen_port = {http_port}"
        ),
    );
    let ini_path = dir.0.join("pgbouncer.ini");
    std::fs::write(&ini_path, text).unwrap();
    let mut pooler = Pooler::start(&ini_path);
    // The client listener comes up (and is logged) a moment before the metrics one.
    assert!(
        pooler
            .wait_for_line(&["metrics listening on"], Duration::from_secs(10))
            .is_some(),
        "no metrics listener: {:?}",
        pooler.all_log()
    );

    // The page is served as the daemon embeds it.
    let page = http_get(http_port, "/").await.expect("GET / failed");
    assert_eq!(page, PAGE);

    let app = format!(
        "host=127.0.0.1 port={} user={MD5_USER} password={MD5_PASSWORD} dbname=appdb",
        pooler.port
    );
    let o = run(pg, "pgbench", &["-i", "-q", "-s", "1", &app]).await;
    assert!(o.status.success(), "pgbench -i: {}", stderr(&o));
    // One refused login, so the login failures panel has a row.
    let wrong = app.replace(MD5_PASSWORD, "wrong");
    let o = psql(pg, &wrong, "select 1").await;
    assert!(!o.status.success(), "a wrong password was let in");
    let pgbench = {
        let p = pg.bin_dir().join("pgbench");
        if p.exists() {
            p
        } else {
            PathBuf::from("pgbench")
        }
    };
    let clients = CLIENTS.to_string();
    let seconds = BENCH_SECONDS.to_string();
    let mut bench = tokio::process::Command::new(pgbench)
        .args(["-n", "-S", "-c", &clients, "-j", "2", "-T", &seconds, &app])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    // A few seconds of history with transactions in it (bounded); for the docs' picture,
    // most of the charts' first minute.
    let update_screenshot = std::env::var("UPDATE_DASHBOARD_SCREENSHOT").is_ok_and(|v| v == "1");
    let want = if update_screenshot { 45 } else { 5 };
    let deadline = Instant::now() + Duration::from_secs(30 + want);
    loop {
        let history = http_get(http_port, "/api/history")
            .await
            .unwrap_or_default();
        if busy_samples(&history, POOL) >= want as usize {
            break;
        }
        assert!(
            pooler.alive(),
            "pgbouncer-rs exited: {:?}",
            pooler.all_log()
        );
        if bench.try_wait().unwrap().is_some() {
            let o = bench.wait_with_output().await.unwrap();
            panic!(
                "pgbench ended early: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        assert!(
            Instant::now() < deadline,
            "too little busy history: {history}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let shot = dir.0.join("dashboard.png");
    let check = tokio::process::Command::new("python3")
        .arg(&script)
        .arg(format!("http://127.0.0.1:{http_port}/"))
        .arg("127.0.0.1")
        .arg(pooler.port.to_string())
        .arg("admin")
        .arg(&shot)
        .args([
            "--password",
            "adminpass",
            "--pool",
            POOL,
            "--clients",
            &clients,
        ])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let check = tokio::time::timeout(Duration::from_secs(200), check)
        .await
        .expect("dashboard_check.py did not finish in 200 s")
        .unwrap();

    // Stop the load (by its PID) before judging, so a failed assert leaves nothing behind.
    bench.start_kill().unwrap();
    let bench = bench.wait_with_output().await.unwrap();
    let out = String::from_utf8_lossy(&check.stdout);
    eprintln!("{out}");
    assert!(
        check.status.success(),
        "dashboard_check.py failed ({}):\n{out}\n{}\npgbench: {}\npgbouncer-rs: {:?}",
        check.status,
        String::from_utf8_lossy(&check.stderr),
        String::from_utf8_lossy(&bench.stderr),
        pooler.all_log().iter().rev().take(20).collect::<Vec<_>>(),
    );
    assert!(out.lines().any(|l| l == "dashboard_check: ok"), "{out}");

    let dest = if update_screenshot {
        repo_root().join("docs/dashboard.png")
    } else {
        std::env::temp_dir().join(format!("pgbrs-dashboard-{}.png", std::process::id()))
    };
    std::fs::copy(&shot, &dest).unwrap();
    eprintln!("screenshot: {}", dest.canonicalize().unwrap().display());
}
