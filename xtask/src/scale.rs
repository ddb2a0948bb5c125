//! Scale checks (part of `cargo xtask bench`): 10 000 idle clients held open with the
//! pooler's peak RSS next to PgBouncer's holding the same, and login storms (many
//! clients connecting at once, a new connection per transaction) with md5 and with
//! SCRAM. The backend is xtask's fake PostgreSQL, so only the pooler is measured.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::bench::{clock_ticks, cpu_seconds, free_port, is_root, wait_port, Proc};
use crate::{fakepg, Failure, Outcome};

fn rss_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn spawn(root: &Path, pgbouncer: bool, ini: &Path) -> Result<Proc, Failure> {
    let child = if !pgbouncer {
        Command::new(root.join("target/release/pgbouncer-rs"))
            .arg(ini)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
    } else if is_root() {
        Command::new("setpriv")
            .args([
                "--reuid=postgres",
                "--regid=postgres",
                "--init-groups",
                "/usr/sbin/pgbouncer",
            ])
            .arg(ini)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
    } else {
        Command::new("/usr/sbin/pgbouncer")
            .arg(ini)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
    };
    child.map(Proc).map_err(|e| Failure::Failed(e.to_string()))
}

fn write_ini(
    dir: &Path,
    port: u16,
    backend: u16,
    auth: &str,
) -> Result<std::path::PathBuf, Failure> {
    let ini = dir.join(format!("{port}.ini"));
    let userlist = dir.join("userlist.txt");
    std::fs::write(&userlist, "\"bench\" \"benchpass\"\n")
        .map_err(|e| Failure::Failed(e.to_string()))?;
    std::fs::write(
        &ini,
        format!(
            "[databases]\nbench = host=127.0.0.1 port={backend} dbname=bench user=bench\n[pgbouncer]\n\
             listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\nauth_type = {auth}\n\
             auth_file = {}\npool_mode = transaction\ndefault_pool_size = 20\nmax_client_conn = 19000\n\
             log_connections = 0\nlog_disconnections = 0\nserver_check_delay = 3600\n",
            userlist.display()
        ),
    )
    .map_err(|e| Failure::Failed(e.to_string()))?;
    for f in [&ini, &userlist] {
        let _ = Command::new("chmod")
            .args(["644", &f.to_string_lossy()])
            .status();
    }
    Ok(ini)
}

/// Opens one client with auth_type=any and waits for ReadyForQuery.
fn idle_client(port: u16) -> std::io::Result<TcpStream> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    let mut body = Vec::new();
    body.extend_from_slice(&196_608u32.to_be_bytes());
    for kv in ["user", "bench", "database", "bench"] {
        body.extend_from_slice(kv.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut pkt = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    pkt.extend_from_slice(&body);
    s.write_all(&pkt)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut buf = [0u8; 4096];
    let mut seen = Vec::new();
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        seen.extend_from_slice(&buf[..n]);
        if seen.ends_with(b"Z\0\0\0\x05I") {
            return Ok(s);
        }
        if seen.first() == Some(&b'E') {
            return Err(std::io::Error::other(
                String::from_utf8_lossy(&seen).to_string(),
            ));
        }
    }
}

pub(crate) fn run(root: &Path, quick: bool) -> Outcome {
    let clients = if quick { 2_000 } else { 10_000 };
    println!("\n== scale: {clients} idle clients held open (peak RSS), login storms");
    let fake = fakepg::start().map_err(|e| Failure::Failed(format!("fake server: {e}")))?;
    let dir = std::env::temp_dir().join(format!("pgbrs-scale-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| Failure::Failed(e.to_string()))?;
    let _ = Command::new("chmod")
        .args(["755", &dir.to_string_lossy()])
        .status();
    let have_pgbouncer = Path::new("/usr/sbin/pgbouncer").exists();
    let mut targets = vec![("pgbouncer-rs", false)];
    if have_pgbouncer {
        targets.push(("pgbouncer", true));
    }
    println!("| target | idle clients | RSS before MiB | peak RSS MiB | KiB per idle client |");
    println!("|---|---:|---:|---:|---:|");
    for (name, is_pgb) in &targets {
        let port = free_port()?;
        let ini = write_ini(&dir, port, fake.port, "any")?;
        let p = spawn(root, *is_pgb, &ini)?;
        if !wait_port(port) {
            return Err(Failure::Failed(format!("{name} did not start")));
        }
        let pid = p.0.id();
        // One client first so the pool's welcome exists, as in real life.
        let first = idle_client(port).map_err(|e| Failure::Failed(format!("{name}: {e}")))?;
        let before = rss_kb(pid, "VmRSS:");
        let mut held = vec![first];
        for i in 0..clients {
            match idle_client(port) {
                Ok(s) => held.push(s),
                Err(e) => return Err(Failure::Failed(format!("{name}: client {i}: {e}"))),
            }
        }
        let peak = rss_kb(pid, "VmHWM:");
        println!(
            "| {name} | {clients} | {:.1} | {:.1} | {:.2} |",
            before as f64 / 1024.0,
            peak as f64 / 1024.0,
            (peak.saturating_sub(before)) as f64 / clients as f64
        );
        drop(held);
        drop(p);
    }
    storms(root, &dir, fake.port, &targets, quick)?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn storms(root: &Path, dir: &Path, backend: u16, targets: &[(&str, bool)], quick: bool) -> Outcome {
    let bin = pg_harness::find_bin_dir().map_err(|e| Failure::Failed(e.to_string()))?;
    let script = dir.join("select1.sql");
    std::fs::write(&script, "select 1;\n").map_err(|e| Failure::Failed(e.to_string()))?;
    let seconds = if quick { "5" } else { "10" };
    let ticks = clock_ticks();
    println!(
        "\n| storm | target | clients | connections/s | failed | pooler CPU µs per login+txn |"
    );
    println!("|---|---|---:|---:|---:|---:|");
    for (auth, clients) in [("md5", 1000), ("scram-sha-256", 200)] {
        for (name, is_pgb) in targets {
            let port = free_port()?;
            let ini = write_ini(dir, port, backend, auth)?;
            let p = spawn(root, *is_pgb, &ini)?;
            if !wait_port(port) {
                return Err(Failure::Failed(format!("{name} did not start")));
            }
            let pid = p.0.id();
            let before = cpu_seconds(pid, ticks);
            let started = Instant::now();
            let out = Command::new(bin.join("pgbench"))
                .args([
                    "-n",
                    "-C",
                    "-c",
                    &clients.to_string(),
                    "-j",
                    "2",
                    "-T",
                    seconds,
                    "-f",
                ])
                .arg(&script)
                .arg(format!(
                    "host=127.0.0.1 port={port} user=bench password=benchpass dbname=bench"
                ))
                .output()
                .map_err(|e| Failure::Failed(e.to_string()))?;
            let cpu = cpu_seconds(pid, ticks) - before;
            let _ = started;
            drop(p);
            let text = String::from_utf8_lossy(&out.stdout);
            let txns = crate::bench::pgbench_txns(&text);
            let failed = text
                .lines()
                .find_map(|l| l.strip_prefix("number of failed transactions: "))
                .map(|l| l.split_whitespace().next().unwrap_or("?").to_string())
                .unwrap_or_else(|| "?".into());
            let tps = text
                .lines()
                .find_map(|l| l.strip_prefix("tps = "))
                .and_then(|l| l.split_whitespace().next())
                .unwrap_or("0")
                .to_string();
            let errors = String::from_utf8_lossy(&out.stderr)
                .lines()
                .filter(|l| l.contains("error"))
                .count();
            println!(
                "| {auth} | {name} | {clients} | {tps} | {failed} (+{errors} client errors) | {:.0} |",
                cpu * 1e6 / txns.max(1.0)
            );
        }
    }
    Ok(())
}
