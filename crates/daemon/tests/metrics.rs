//! The HTTP listener against a real PostgreSQL: `/metrics` publishes every family of
//! pgbouncer_exporter with its type and labels (the list is
//! `tests/data/pgbouncer_exporter_metrics.txt`), with the values the console shows;
//! ours (histograms, login failures by reason) count what happened; `/healthz` and
//! `/readyz` answer as documented; the JSON log format writes one object per line.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use pg_harness::{PgCluster, MD5_PASSWORD, MD5_USER};

/// `GET path` over HTTP/1.1: (status, body).
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let path = path.to_string();
    tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let status = text[9..12].parse().unwrap();
        let body = text.split_once("\r\n\r\n").map_or("", |b| b.1).to_string();
        (status, body)
    })
    .await
    .unwrap()
}

/// One sample's labels.
type Labels = HashMap<String, String>;

/// One parsed exposition: sample name → every (labels, value), and family → type.
#[derive(Default, Debug)]
struct Exposition {
    samples: HashMap<String, Vec<(Labels, f64)>>,
    types: HashMap<String, String>,
}

fn parse(text: &str) -> Exposition {
    let mut e = Exposition::default();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            e.types.insert(name.into(), kind.into());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (head, value) = line.rsplit_once(' ').unwrap();
        let (name, labels) = match head.split_once('{') {
            Some((n, l)) => (n, l.trim_end_matches('}')),
            None => (head, ""),
        };
        let labels = labels
            .split("\",")
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once("=\"").unwrap();
                (k.to_string(), v.trim_end_matches('"').to_string())
            })
            .collect();
        let value = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap(),
        };
        e.samples
            .entry(name.into())
            .or_default()
            .push((labels, value));
    }
    e
}

impl Exposition {
    /// The value of `name` whose labels include every pair of `with`.
    fn value(&self, name: &str, with: &[(&str, &str)]) -> Option<f64> {
        self.samples.get(name)?.iter().find_map(|(labels, v)| {
            with.iter()
                .all(|(k, want)| labels.get(*k).map(String::as_str) == Some(*want))
                .then_some(*v)
        })
    }
}

/// The console's answer to `sql` as rows of `|`-separated cells.
async fn console(pg: &PgCluster, d: &pgbouncer_rs::Daemon, sql: &str) -> Vec<Vec<String>> {
    let o = psql(pg, &conninfo(d, "admin", "adminpass", "pgbouncer"), sql).await;
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o)
        .lines()
        .map(|l| l.split('|').map(str::to_string).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_name_every_exporter_family_with_the_consoles_values() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("metrics");
    let d = start(
        pg,
        &dir,
        &format!("metrics_listen_port = {}\nlog_connections = 1", free_port()),
    )
    .await;
    let http = d.http.as_ref().expect("metrics listener").addr;
    for _ in 0..3 {
        let o = psql(pg, &md5_conninfo(&d), "select 1").await;
        assert_eq!(stdout(&o), "1", "{}", stderr(&o));
    }
    let bad = psql(pg, &conninfo(&d, MD5_USER, "wrong", "appdb"), "select 1").await;
    assert!(!bad.status.success());
    // One client stays connected, for the per-client family.
    let (client, conn) = tokio_postgres::connect(
        &format!("{} application_name=metrics-test", md5_conninfo(&d)),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    client.simple_query("select 1").await.unwrap();

    let (status, text) = get(http, "/metrics").await;
    assert_eq!(status, 200, "{text}");
    assert!(text.ends_with("# EOF\n"), "{text}");
    let e = parse(&text);

    // Every exporter family, with its type and its label names.
    let list = include_str!("data/pgbouncer_exporter_metrics.txt");
    let mut checked = 0;
    for line in list
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let mut parts = line.split_whitespace();
        let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
        let labels: Vec<&str> = parts.next().map_or(Vec::new(), |l| l.split(',').collect());
        let family = match kind {
            "counter" => name.strip_suffix("_total").unwrap(),
            _ => name,
        };
        assert_eq!(
            e.types.get(family).map(String::as_str),
            Some(kind),
            "type of {family}"
        );
        let samples = e
            .samples
            .get(name)
            .unwrap_or_else(|| panic!("no {name} in\n{text}"));
        for (got, _) in samples {
            let mut names: Vec<&str> = got.keys().map(String::as_str).collect();
            names.sort_unstable();
            let mut want = labels.clone();
            want.sort_unstable();
            assert_eq!(names, want, "labels of {name}");
        }
        checked += 1;
    }
    assert_eq!(checked, 53, "the list has 53 metrics");

    // The values are the console's.
    let stats = console(pg, &d, "show stats_totals").await;
    let appdb = stats
        .iter()
        .find(|r| r[0] == "appdb")
        .expect("appdb stats row");
    let xacts: f64 = appdb[1].parse().unwrap();
    assert!(xacts >= 4.0, "{stats:?}");
    let db = [("database", "appdb")];
    assert_eq!(
        e.value("pgbouncer_stats_totals_sql_transactions_pooled_total", &db),
        Some(xacts)
    );
    assert_eq!(
        e.value("pgbouncer_stats_sql_transactions_pooled_total", &db),
        Some(xacts)
    );
    let pool = [("database", "appdb"), ("user", MD5_USER)];
    let pools = console(pg, &d, "show pools").await;
    let row = pools
        .iter()
        .find(|r| r[0] == "appdb")
        .expect("appdb pool row");
    let sv_idle: f64 = row[9].parse().unwrap();
    assert_eq!(
        e.value("pgbouncer_pools_server_idle_connections", &pool),
        Some(sv_idle)
    );
    assert_eq!(
        e.value("pgbouncer_config_max_client_connections", &[]),
        Some(100.0)
    );

    // Ours: latency histograms, logins and their failures by reason.
    let count = e
        .value("pgbouncer_pool_query_seconds_count", &pool)
        .unwrap();
    assert!(count >= 4.0, "{count}");
    let inf = [("database", "appdb"), ("user", MD5_USER), ("le", "+Inf")];
    assert_eq!(
        e.value("pgbouncer_pool_query_seconds_bucket", &inf),
        Some(count)
    );
    assert_eq!(
        e.types.get("pgbouncer_pool_wait_seconds").unwrap(),
        "histogram"
    );
    assert_eq!(e.value("pgbouncer_pool_size", &pool), Some(20.0));
    assert!(e.value("pgbouncer_client_logins_total", &[]).unwrap() >= 4.0);
    assert_eq!(
        e.value(
            "pgbouncer_client_login_failures_total",
            &[("reason", "auth_failed")]
        ),
        Some(1.0)
    );
    assert!(e.value("process_resident_memory_bytes", &[]).unwrap() > 0.0);
    assert!(e.samples.contains_key("pgbouncer_worker_cpu_seconds_total"));

    // SHOW ADVICE and the dashboard's JSON read the same pools.
    let advice = console(pg, &d, "show advice").await;
    assert!(
        advice
            .iter()
            .any(|r| r[2] == "pool_size" && r[0] == "appdb"),
        "{advice:?}"
    );
    let (status, json) = get(http, "/api/snapshot").await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let p = v["pools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["database"] == "appdb")
        .unwrap();
    assert_eq!(p["sv_idle"].as_f64(), Some(sv_idle));
    assert_eq!(v["totals"]["login_failures"], 1);

    let idle = [
        ("database", "appdb"),
        ("application_name", "metrics-test"),
        ("state", "active"),
    ];
    assert_eq!(
        e.value("pgbouncer_client_connections", &idle),
        Some(1.0),
        "{:?}",
        e.samples.get("pgbouncer_client_connections")
    );
    let (status, _) = get(http, "/nope").await;
    assert_eq!(status, 404);
    drop(client);
    d.shutdown(pgbouncer_rs::ShutdownMode::Immediate).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_and_readyz_say_whether_to_send_traffic() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("health");
    let closed = free_port();
    let text = ini(
        pg,
        &dir,
        &format!(
            "metrics_listen_port = {}\nserver_login_retry = 30\nquery_wait_timeout = 2",
            free_port()
        ),
    )
    .replacen(
        "[databases]\n",
        &format!("[databases]\ndown = host=127.0.0.1 port={closed} dbname=appdb\n"),
        1,
    );
    let d = pgbouncer_rs::Daemon::start(settings(&text, &dir))
        .await
        .unwrap();
    let http = d.http.as_ref().unwrap().addr;
    assert_eq!(get(http, "/healthz").await, (200, "ok\n".into()));
    assert_eq!(get(http, "/readyz").await, (200, "ready\n".into()));
    let o = psql(pg, &md5_conninfo(&d), "select 1").await;
    assert_eq!(stdout(&o), "1", "{}", stderr(&o));
    assert_eq!(get(http, "/readyz").await.0, 200);

    // A pool whose server cannot be reached makes the pooler not ready.
    let o = psql(
        pg,
        &format!(
            "host=127.0.0.1 port={} user={MD5_USER} password={MD5_PASSWORD} dbname=down connect_timeout=20",
            d.addr().port()
        ),
        "select 1",
    )
    .await;
    assert!(!o.status.success());
    let (status, body) = get(http, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("pool down/"), "{body}");
    assert!(body.contains("server login failed"), "{body}");
    // Still alive: liveness is about the process, not the databases.
    assert_eq!(get(http, "/healthz").await.0, 200);

    // The history grows by a sample a second; `since` returns only newer ones.
    let mut last = None;
    for _ in 0..50 {
        let (_, body) = get(http, "/api/history").await;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        if let Some(s) = v["samples"].as_array().and_then(|s| s.last()) {
            last = s["t_ms"].as_u64();
            assert!(
                s["pools"].get(format!("appdb/{MD5_USER}")).is_some(),
                "{body}"
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let last = last.expect("a history sample within 5 s");
    let (_, body) = get(http, &format!("/api/history?since={last}")).await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        v["samples"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["t_ms"].as_u64() > Some(last)),
        "{body}"
    );
    d.shutdown(pgbouncer_rs::ShutdownMode::Immediate).await;
}

#[test]
fn a_busy_metrics_port_stops_the_start() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = Scratch::new("metrics-busy");
    let ini = dir.0.join("pgbouncer.ini");
    std::fs::write(
        &ini,
        format!(
            "[databases]\n* = host=127.0.0.1\n[pgbouncer]\nlisten_addr = 127.0.0.1\n\
             listen_port = 0\nunix_socket_dir =\nauth_type = trust\nmetrics_listen_port = {port}\n"
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pgbouncer-rs"))
        .arg(&ini)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "cannot listen on metrics_listen_addr 127.0.0.1:{port}"
        )),
        "{err}"
    );
}

#[test]
fn log_format_json_writes_one_object_per_line() {
    let dir = Scratch::new("json-log");
    let ini = dir.0.join("pgbouncer.ini");
    std::fs::write(
        &ini,
        "[databases]\n* = host=127.0.0.1\n[pgbouncer]\nlisten_addr = 127.0.0.1\n\
         listen_port = 0\nunix_socket_dir =\nauth_type = trust\nlog_format = json\n",
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_pgbouncer-rs"))
        .arg(&ini)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    let first = lines.next().unwrap().unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let v: serde_json::Value =
        serde_json::from_str(&first).unwrap_or_else(|e| panic!("{first}: {e}"));
    assert_eq!(v["level"], "LOG", "{first}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .starts_with("listening on 127.0.0.1:"),
        "{first}"
    );
    assert!(v["time"].as_str().unwrap().ends_with(" UTC"), "{first}");
    assert_eq!(v["pid"], child.id(), "{first}");
}
