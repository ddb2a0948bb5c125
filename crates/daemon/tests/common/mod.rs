//! Shared helpers for the daemon's integration tests: a real PostgreSQL from
//! pg-harness, a userlist built from its real secrets, and the daemon in-process.

#![allow(dead_code, unreachable_pub, missing_docs)]

use std::path::PathBuf;
use std::process::Output;
use std::sync::atomic::{AtomicU32, Ordering};

use pg_harness::{PgCluster, MD5_PASSWORD, MD5_USER, PLAIN_PASSWORD, PLAIN_USER, SCRAM_USER};
use pgbouncer_rs::config::ini::Ini;
use pgbouncer_rs::config::Settings;
use pgbouncer_rs::Daemon;

pub mod logs;
pub mod pooler;
pub mod script;
pub mod wire;

/// A port that was free on 127.0.0.1 a moment ago (for a listener a test configures).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A scratch directory removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "pgbrs-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// userlist.txt with md5user's md5 hash, scramuser's SCRAM secret (both as stored in
/// PostgreSQL) and plainuser's plain password, plus an admin.
pub fn userlist(pg: &PgCluster) -> String {
    format!(
        "\"{MD5_USER}\" \"{}\"\n\"{SCRAM_USER}\" \"{}\"\n\"{PLAIN_USER}\" \"{PLAIN_PASSWORD}\"\n\"admin\" \"adminpass\"\n",
        pg.role_secret(MD5_USER).unwrap(),
        pg.role_secret(SCRAM_USER).unwrap(),
    )
}

/// An ini for `pg` with `[pgbouncer]` settings `extra` (listen_port 0, no unix socket).
pub fn ini(pg: &PgCluster, dir: &Scratch, extra: &str) -> String {
    std::fs::write(dir.0.join("userlist.txt"), userlist(pg)).unwrap();
    format!(
        "[databases]\nappdb = host=127.0.0.1 port={port} dbname=appdb\n\
         postgres = host=127.0.0.1 port={port} dbname=postgres\n\
         [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = 0\nunix_socket_dir =\n\
         auth_type = md5\nauth_file = {dir}/userlist.txt\nadmin_users = admin\n\
         log_connections = 0\nlog_disconnections = 0\n{extra}\n",
        port = pg.port(),
        dir = dir.0.display(),
    )
}

pub fn settings(text: &str, dir: &Scratch) -> Settings {
    let path = dir.0.join("pgbouncer.ini");
    std::fs::write(&path, text).unwrap();
    let ini = Ini::parse(text, &path).unwrap();
    Settings::from_ini(&ini, Some(&path), &Vec::new()).unwrap()
}

pub async fn start(pg: &PgCluster, dir: &Scratch, extra: &str) -> Daemon {
    let text = ini(pg, dir, extra);
    Daemon::start(settings(&text, dir)).await.unwrap()
}

pub fn conninfo(d: &Daemon, user: &str, password: &str, db: &str) -> String {
    format!(
        "host=127.0.0.1 port={} user={user} password={password} dbname={db}",
        d.addr().port()
    )
}

pub fn md5_conninfo(d: &Daemon) -> String {
    conninfo(d, MD5_USER, MD5_PASSWORD, "appdb")
}

/// Runs a client binary (psql, pgbench) from the PostgreSQL installation.
pub async fn run(pg: &PgCluster, bin: &str, args: &[&str]) -> Output {
    let path = pg.bin_dir().join(bin);
    let exe = if path.exists() {
        path
    } else {
        PathBuf::from(bin)
    };
    tokio::process::Command::new(exe)
        .args(args)
        .env("PGCONNECT_TIMEOUT", "20")
        .output()
        .await
        .unwrap()
}

pub async fn psql(pg: &PgCluster, conninfo: &str, sql: &str) -> Output {
    run(
        pg,
        "psql",
        &[
            "-X",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            conninfo,
            "-c",
            sql,
        ],
    )
    .await
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).trim().to_string()
}

/// Connects with tokio-postgres and drives the connection in the background.
pub async fn connect(conninfo: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(conninfo, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// The SQLSTATE and message of a server-sent error.
pub fn db_error(e: &tokio_postgres::Error) -> (String, String, String) {
    let d = e
        .as_db_error()
        .unwrap_or_else(|| panic!("not a server error: {e}"));
    (
        d.severity().to_string(),
        d.code().code().to_string(),
        d.message().to_string(),
    )
}

/// Samples a `select count(*)::int ...` on PostgreSQL (bounded, every 5-20 ms) while
/// clients run, and keeps the peak: what "PostgreSQL never sees more than N" is checked
/// against.
pub struct PeakWatcher {
    peak: std::sync::Arc<AtomicU32>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl PeakWatcher {
    pub fn start(pg: &PgCluster, count_sql: &str, every: std::time::Duration) -> PeakWatcher {
        let peak = std::sync::Arc::new(AtomicU32::new(0));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        let conninfo = pg.socket_conninfo("postgres", "postgres");
        let sql = count_sql.to_string();
        let task = tokio::spawn(async move {
            let c = connect(&conninfo).await.unwrap();
            let mut tick = tokio::time::interval(every);
            for _ in 0..5000 {
                tick.tick().await;
                if s.load(Ordering::Relaxed) {
                    break;
                }
                let row = c.query_one(sql.as_str(), &[]).await.unwrap();
                p.fetch_max(row.get::<_, i32>(0) as u32, Ordering::Relaxed);
            }
        });
        PeakWatcher { peak, stop, task }
    }

    /// Stops sampling and returns the peak seen.
    pub async fn finish(self) -> u32 {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
        self.peak.load(Ordering::Relaxed)
    }
}

pub fn python_available(module: &str) -> bool {
    std::process::Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs a Python script with `DSN` set; returns stdout, panics with stderr on failure.
/// Skips (None) when the module is missing outside CI.
pub async fn python(module: &str, script: &str, dsn: &str) -> Option<String> {
    python_with(module, script, &[("DSN", dsn.to_string())]).await
}

/// Like [`python`], with the environment variables `env`.
pub async fn python_with(module: &str, script: &str, env: &[(&str, String)]) -> Option<String> {
    if !python_available(module) {
        assert!(
            std::env::var("CI").is_err(),
            "CI is set but python3 cannot import {module}"
        );
        eprintln!("SKIPPED: python3 cannot import {module}");
        return None;
    }
    let run = tokio::process::Command::new("python3")
        .args(["-c", script])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output();
    let o = tokio::time::timeout(std::time::Duration::from_secs(120), run)
        .await
        .expect("the script did not finish in 120 s")
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        o.status.success(),
        "{module} script failed:\n{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    Some(out)
}

/// A cluster of its own that takes replication connections: `wal_level = logical`,
/// room for 5 walsenders and 4 slots, and md5user allowed to replicate (a role
/// attribute and a `replication` pg_hba line: "all" does not cover replication).
pub fn replication_cluster() -> PgCluster {
    let pg = PgCluster::start(pg_harness::ClusterOptions {
        extra_conf: vec![
            "wal_level = logical".into(),
            "max_wal_senders = 5".into(),
            "max_replication_slots = 4".into(),
        ],
        ..Default::default()
    })
    .unwrap();
    let hba = pg.data_dir().join("pg_hba.conf");
    let mut text = std::fs::read_to_string(&hba).unwrap();
    text.insert_str(0, "host replication md5user 127.0.0.1/32 md5\n");
    std::fs::write(&hba, text).unwrap();
    pg.psql(
        "postgres",
        "alter role md5user replication; select pg_reload_conf()",
    )
    .unwrap();
    pg
}
