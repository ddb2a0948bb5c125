//! `cargo xtask demo`: the product in one command. Starts a throwaway PostgreSQL with a
//! deliberately small `max_connections`, runs pgbouncer-rs in front of it with
//! `examples/pgbouncer.ini` (port and userlist adapted), shows that hundreds of clients
//! that connect for every request all succeed while PostgreSQL sees at most
//! `default_pool_size` connections, then stays up for psql until Ctrl-C.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pg_harness::{ClusterOptions, PgCluster, MD5_PASSWORD, MD5_USER};

use crate::cmd;
use crate::{Failure, Outcome};

const MAX_CONNECTIONS: u32 = 30;
const CLIENTS: u32 = 300;

/// Kills the pooler when the demo ends, however it ends.
struct Pooler(Child);

impl Drop for Pooler {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

pub(crate) fn run(args: &[&str]) -> Outcome {
    let no_wait = match args {
        [] => false,
        ["--no-wait"] => true,
        _ => return Err(Failure::Usage("usage: cargo xtask demo [--no-wait]".into())),
    };
    let root = cmd::root();
    if pg_harness::find_bin_dir().is_err() {
        println!("PostgreSQL binaries not found: installing them with .ci/install");
        cmd::run(&mut Command::new(root.join(".ci/install")))?;
    }
    let mut build = cmd::cargo();
    build.args(["build", "--release", "-p", "pgbouncer-rs"]);
    cmd::run(&mut build)?;
    let binary = root.join("target/release/pgbouncer-rs");

    println!("\n== 1. A throwaway PostgreSQL with max_connections = {MAX_CONNECTIONS}");
    let pg = PgCluster::start(ClusterOptions {
        max_connections: MAX_CONNECTIONS,
        ..Default::default()
    })
    .map_err(|e| Failure::Failed(e.to_string()))?;
    let psql = pg.bin_dir().join("psql");
    let pgbench = pg.bin_dir().join("pgbench");
    let dir = pg
        .data_dir()
        .parent()
        .unwrap_or(Path::new("/tmp"))
        .join("demo");
    std::fs::create_dir_all(&dir).map_err(|e| Failure::Failed(e.to_string()))?;
    let script = dir.join("request.sql");
    std::fs::write(&script, "SELECT count(*) FROM pg_class;\n")
        .map_err(|e| Failure::Failed(e.to_string()))?;

    let direct = pg.conninfo(MD5_USER, Some(MD5_PASSWORD), "appdb");
    println!("\n== 2. {CLIENTS} clients straight at PostgreSQL (pgbench -c {CLIENTS})");
    let o = Command::new(&pgbench)
        .args(["-n", "-c", &CLIENTS.to_string(), "-j", "2", "-T", "3", "-f"])
        .arg(&script)
        .arg(&direct)
        .output()
        .map_err(|e| Failure::Failed(e.to_string()))?;
    let err = String::from_utf8_lossy(&o.stderr);
    match err
        .lines()
        .find(|l| l.contains("too many clients") || l.contains("remaining connection slots"))
    {
        Some(line) => println!("   fails as expected: {}", line.trim()),
        None => println!("   exit status {:?}", o.status.code()),
    }

    println!("\n== 3. pgbouncer-rs in front, with examples/pgbouncer.ini");
    let userlist = format!(
        "\"{MD5_USER}\" \"{}\"\n\"admin\" \"adminpass\"\n\"stats\" \"statspass\"\n",
        pg.role_secret(MD5_USER)
            .map_err(|e| Failure::Failed(e.to_string()))?
    );
    std::fs::write(dir.join("userlist.txt"), userlist)
        .map_err(|e| Failure::Failed(e.to_string()))?;
    let example = std::fs::read_to_string(root.join("examples/pgbouncer.ini"))
        .map_err(|e| Failure::Failed(e.to_string()))?;
    let port = free_port()?;
    let metrics_port = free_port()?;
    let ini = example
        .replace("port=5432", &format!("port={}", pg.port()))
        .replace("listen_port = 6432", &format!("listen_port = {port}"))
        .replace(
            "metrics_listen_port = 9127",
            &format!("metrics_listen_port = {metrics_port}"),
        )
        .replace(
            "auth_file = userlist.txt",
            &format!("auth_file = {}", dir.join("userlist.txt").display()),
        );
    let ini_path = dir.join("pgbouncer.ini");
    std::fs::write(&ini_path, ini).map_err(|e| Failure::Failed(e.to_string()))?;
    println!("   $ {} {}", binary.display(), ini_path.display());
    let mut child = Command::new(&binary)
        .arg(&ini_path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Failure::Failed(format!("cannot start pgbouncer-rs: {e}")))?;
    let stderr = child.stderr.take();
    let pooler = Pooler(child);
    wait_listening(stderr)?;

    let dashboard = format!("http://127.0.0.1:{metrics_port}/");
    check_http(metrics_port)?;
    println!("   dashboard: {dashboard}   (metrics: {dashboard}metrics)");
    let through =
        format!("host=127.0.0.1 port={port} user={MD5_USER} password={MD5_PASSWORD} dbname=appdb");
    println!("\n== 4. {CLIENTS} clients through pgbouncer-rs, a new connection for every request (pgbench -C)");
    let peak = Arc::new(AtomicU32::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (peak, stop, psql) = (peak.clone(), stop.clone(), psql.clone());
        let conninfo = pg.socket_conninfo("postgres", "postgres");
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let o = Command::new(&psql)
                    .args(["-X", "-At", &conninfo, "-c"])
                    .arg(format!(
                        "select count(*) from pg_stat_activity where usename = '{MD5_USER}'"
                    ))
                    .output();
                if let Some(n) = o.ok().and_then(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .trim()
                        .parse::<u32>()
                        .ok()
                }) {
                    peak.fetch_max(n, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let o = Command::new(&pgbench)
        .args([
            "-n",
            "-C",
            "-c",
            &CLIENTS.to_string(),
            "-j",
            "2",
            "-T",
            "5",
            "-f",
        ])
        .arg(&script)
        .arg(&through)
        .output()
        .map_err(|e| Failure::Failed(e.to_string()))?;
    stop.store(true, Ordering::Relaxed);
    let _ = watcher.join();
    let out = String::from_utf8_lossy(&o.stdout);
    for line in out.lines().filter(|l| {
        l.starts_with("number of transactions actually processed")
            || l.starts_with("number of failed")
            || l.starts_with("tps")
    }) {
        println!("   {line}");
    }
    let peak = peak.load(Ordering::Relaxed);
    println!("   PostgreSQL saw at most {peak} connections from the pooler (default_pool_size = 20, max_connections = {MAX_CONNECTIONS})");
    if !o.status.success() || !out.contains("number of failed transactions: 0 ") {
        return Err(Failure::Failed(format!(
            "pgbench through the pooler failed:\n{out}\n{}",
            String::from_utf8_lossy(&o.stderr)
        )));
    }
    if peak > 20 {
        return Err(Failure::Failed(format!(
            "PostgreSQL saw {peak} connections, more than the pool size"
        )));
    }

    println!("\n== 5. pgbouncer-rs is up. Try:");
    println!("   open {dashboard} in a browser: pools, latency, errors and SHOW ADVICE, live");
    println!("   psql \"{through}\"");
    println!("   psql \"host=127.0.0.1 port={port} user=admin password=adminpass dbname=pgbouncer\" -c 'SHOW POOLS'");
    println!("   curl {dashboard}metrics");
    if no_wait {
        drop(pooler);
        return Ok(());
    }
    // A steady load, so the dashboard has something to show: 40 clients, 300
    // transactions a second in all, through the pooler, until Ctrl-C.
    println!(
        "   a background load keeps the pools moving: pgbench -c 40 -R 300 (Ctrl-C stops it all)"
    );
    let mut load = Command::new(&pgbench)
        .args([
            "-n", "-c", "40", "-j", "2", "-R", "300", "-T", "86400", "-f",
        ])
        .arg(&script)
        .arg(&through)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| Failure::Failed(e.to_string()))?;
    loop {
        std::thread::sleep(Duration::from_secs(5));
        if let Ok(Some(status)) = load.try_wait() {
            println!("   background load ended ({status})");
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
    }
}

/// The HTTP listener answers `/healthz` and `/metrics` (so the printed URL works).
fn check_http(port: u16) -> Result<(), Failure> {
    use std::io::{Read, Write};
    for path in ["/healthz", "/metrics"] {
        // The listener binds right after the client listeners log "listening on".
        let mut tries = 0;
        let mut s = loop {
            match std::net::TcpStream::connect(("127.0.0.1", port)) {
                Ok(s) => break s,
                Err(e) if tries >= 50 => {
                    return Err(Failure::Failed(format!("metrics listener: {e}")))
                }
                Err(_) => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        };
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| Failure::Failed(e.to_string()))?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n\r\n"
        )
        .map_err(|e| Failure::Failed(e.to_string()))?;
        let mut text = String::new();
        s.read_to_string(&mut text)
            .map_err(|e| Failure::Failed(e.to_string()))?;
        if !text.starts_with("HTTP/1.1 200") {
            return Err(Failure::Failed(format!("GET {path}: {text}")));
        }
    }
    Ok(())
}

fn free_port() -> Result<u16, Failure> {
    let l =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| Failure::Failed(e.to_string()))?;
    Ok(l.local_addr()
        .map_err(|e| Failure::Failed(e.to_string()))?
        .port())
}

fn wait_listening(stderr: Option<std::process::ChildStderr>) -> Result<(), Failure> {
    let stderr = stderr.ok_or_else(|| Failure::Failed("no stderr".into()))?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                if line.contains("listening on") {
                    println!("   {line}");
                    return Ok(());
                }
                if line.contains("FATAL") {
                    return Err(Failure::Failed(line));
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(_) => break,
        }
    }
    Err(Failure::Failed(
        "pgbouncer-rs did not start listening".into(),
    ))
}
