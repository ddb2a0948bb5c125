//! Latency percentiles (part of `cargo xtask bench`): `pgbench -S -c 1000` through
//! PgBouncer and through pgbouncer-rs, against one throwaway PostgreSQL with
//! `max_connections = 100` (so 1000 direct clients would fail), runs interleaved. pgbench
//! logs every transaction (`-l`); the p50, p95 and p99 of those latencies are printed next
//! to each other. The reference harness reports only averages.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use pg_harness::{ClusterOptions, PgCluster, APP_DB, MD5_PASSWORD, MD5_USER};

use crate::bench::{free_port, is_root, wait_port, Proc};
use crate::{Failure, Outcome};

const CLIENTS: u32 = 1000;

/// One pgbench run's latencies (µs) and TPS.
struct Run {
    latencies: Vec<u64>,
    tps: f64,
}

fn failed(e: impl std::fmt::Display) -> Failure {
    Failure::Failed(e.to_string())
}

pub(crate) fn run(root: &Path, quick: bool) -> Outcome {
    let pgbouncer = Path::new(PGBOUNCER);
    println!(
        "\n== latency: pgbench -S -M simple -c {CLIENTS} through each pooler, per-transaction log"
    );
    if !pgbouncer.exists() {
        println!("   (PgBouncer not installed: apt-get install -y pgbouncer to compare)");
    }
    let pg = pgbench_cluster()?;
    let bin = pg.bin_dir().to_path_buf();
    let dir = std::env::temp_dir().join(format!("pgbrs-latency-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(failed)?;
    let _ = Command::new("chmod")
        .args(["777", &dir.to_string_lossy()])
        .status();
    let mut targets = vec!["pgbouncer-rs"];
    if pgbouncer.exists() {
        targets.insert(0, "pgbouncer");
    }
    let reps = if quick { 1 } else { 2 };
    let seconds = if quick { 8 } else { 15 };
    let mut results: Vec<(&str, Vec<Run>)> = targets.iter().map(|t| (*t, Vec::new())).collect();
    for rep in 0..reps {
        for (target, runs) in results.iter_mut() {
            let (proc, port) = start_target(root, &dir, target, pg.port())?;
            let prefix = dir.join(format!("{target}-{rep}"));
            let r = pgbench(&bin, port, seconds, &prefix)?;
            drop(proc);
            println!(
                "   {target:<14} run {}: {:>7.0} TPS, {} transactions logged",
                rep + 1,
                r.tps,
                r.latencies.len()
            );
            runs.push(r);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    print_table(&results);
    Ok(())
}

/// Where Debian's PgBouncer package puts the binary.
pub(crate) const PGBOUNCER: &str = "/usr/sbin/pgbouncer";

/// Starts `target` ("pgbouncer" or "pgbouncer-rs") with the harness's settings in `dir`
/// in front of the test database on `pg_port`, and waits for its port.
pub(crate) fn start_target(
    root: &Path,
    dir: &Path,
    target: &str,
    pg_port: u16,
) -> Result<(Proc, u16), Failure> {
    let port = free_port()?;
    let ini = pooler_ini(dir, target, pg_port, port)?;
    let binary = if target == "pgbouncer" {
        PathBuf::from(PGBOUNCER)
    } else {
        root.join("target/release/pgbouncer-rs")
    };
    let proc = spawn_pooler(&binary, &ini)?;
    if !wait_port(port) {
        return Err(failed(format!("{target} did not start")));
    }
    Ok((proc, port))
}

/// A throwaway PostgreSQL (`max_connections = 100`) with pgbench's tables (scale 10) in
/// the test database, owned by the md5 test user.
pub(crate) fn pgbench_cluster() -> Result<PgCluster, Failure> {
    pgbench_cluster_with(100)
}

/// `pgbench_cluster` with room for `max_connections` connections.
pub(crate) fn pgbench_cluster_with(max_connections: u32) -> Result<PgCluster, Failure> {
    let pg = PgCluster::start(ClusterOptions {
        max_connections,
        ..ClusterOptions::default()
    })
    .map_err(failed)?;
    let init = Command::new(pg.bin_dir().join("pgbench"))
        .args(["-i", "-q", "-s", "10"])
        .arg(pg.conninfo(MD5_USER, Some(MD5_PASSWORD), APP_DB))
        .output()
        .map_err(failed)?;
    if !init.status.success() {
        return Err(failed(String::from_utf8_lossy(&init.stderr)));
    }
    Ok(pg)
}

/// Writes `<name>.ini` and a userlist in `dir` for a pooler on `port` in front of the
/// test database on `pg_port`: md5, transaction mode, pool size 20 (the harness's
/// settings). Both files are world-readable, for PgBouncer running as `postgres`.
pub(crate) fn pooler_ini(
    dir: &Path,
    name: &str,
    pg_port: u16,
    port: u16,
) -> Result<PathBuf, Failure> {
    let userlist = dir.join("userlist.txt");
    std::fs::write(&userlist, format!("\"{MD5_USER}\" \"{MD5_PASSWORD}\"\n")).map_err(failed)?;
    let ini = dir.join(format!("{name}.ini"));
    std::fs::write(
        &ini,
        format!(
            "[databases]\n{APP_DB} = host=127.0.0.1 port={pg_port} dbname={APP_DB}\n[pgbouncer]\n\
             listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
             auth_type = md5\nauth_file = {}\npool_mode = transaction\n\
             default_pool_size = 20\nmax_client_conn = 2000\n\
             log_connections = 0\nlog_disconnections = 0\n",
            userlist.display()
        ),
    )
    .map_err(failed)?;
    for f in [&ini, &userlist] {
        let _ = Command::new("chmod")
            .args(["644", &f.to_string_lossy()])
            .status();
    }
    Ok(ini)
}

/// Starts a pooler on `ini` with the fd limit raised to the hard limit (1000 clients);
/// as the `postgres` user when run as root (PgBouncer refuses root).
fn spawn_pooler(binary: &Path, ini: &Path) -> Result<Proc, Failure> {
    let script = "ulimit -n \"$(ulimit -Hn)\"; exec \"$0\" \"$1\"";
    let mut c = if is_root() {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "bash",
        ]);
        c
    } else {
        Command::new("bash")
    };
    c.arg("-c")
        .arg(script)
        .arg(binary)
        .arg(ini)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c.spawn().map(Proc).map_err(failed)
}

/// Runs pgbench with a per-transaction log under `prefix` and reads it back.
fn pgbench(bin: &Path, port: u16, seconds: u32, prefix: &Path) -> Result<Run, Failure> {
    let out = Command::new("bash")
        .arg("-c")
        .arg("ulimit -n \"$(ulimit -Hn)\"; exec \"$@\"")
        .arg("pgbench")
        .arg(bin.join("pgbench"))
        .args(["-n", "-S", "-M", "simple", "-j", "2", "-l", "--log-prefix"])
        .arg(prefix)
        .args(["-c", &CLIENTS.to_string(), "-T", &seconds.to_string()])
        .arg(format!(
            "host=127.0.0.1 port={port} user={MD5_USER} password={MD5_PASSWORD} dbname={APP_DB}"
        ))
        .output()
        .map_err(failed)?;
    let text = String::from_utf8_lossy(&out.stdout);
    let tps = text
        .lines()
        .find_map(|l| l.strip_prefix("tps = "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0.0);
    let mut latencies = Vec::new();
    let parent = prefix.parent().unwrap_or(Path::new("."));
    let stem = prefix
        .file_name()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    let logs: Vec<PathBuf> = std::fs::read_dir(parent)
        .map_err(failed)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{stem}.")))
        })
        .collect();
    for log in logs {
        let body = std::fs::read_to_string(&log).map_err(failed)?;
        // client_id transaction_no time_us script_no epoch epoch_us
        latencies.extend(body.lines().filter_map(|l| {
            l.split_whitespace()
                .nth(2)
                .and_then(|t| t.parse::<u64>().ok())
        }));
        let _ = std::fs::remove_file(&log);
    }
    if latencies.is_empty() {
        return Err(failed(format!(
            "pgbench logged no transactions: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(Run { latencies, tps })
}

/// The `q` quantile (nearest rank) of sorted values.
fn quantile(sorted: &[u64], q: f64) -> u64 {
    let rank = ((sorted.len() as f64) * q).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

fn print_table(results: &[(&str, Vec<Run>)]) {
    let summary: Vec<(&str, f64, [u64; 3])> = results
        .iter()
        .map(|(t, runs)| {
            let mut all: Vec<u64> = runs
                .iter()
                .flat_map(|r| r.latencies.iter().copied())
                .collect();
            all.sort_unstable();
            let tps = runs.iter().map(|r| r.tps).sum::<f64>() / runs.len().max(1) as f64;
            (
                *t,
                tps,
                [
                    quantile(&all, 0.5),
                    quantile(&all, 0.95),
                    quantile(&all, 0.99),
                ],
            )
        })
        .collect();
    let base = summary.iter().find(|s| s.0 == "pgbouncer");
    println!("\n| target | TPS | p50 ms | p95 ms | p99 ms | p99 vs PgBouncer |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (t, tps, q) in &summary {
        let ratio = base.map_or("–".into(), |b| {
            format!("{:.2}×", q[2] as f64 / (b.2[2] as f64).max(1.0))
        });
        println!(
            "| {t} | {tps:.0} | {:.1} | {:.1} | {:.1} | {ratio} |",
            q[0] as f64 / 1000.0,
            q[1] as f64 / 1000.0,
            q[2] as f64 / 1000.0
        );
    }
}

#[cfg(test)]
mod tests {
    use super::quantile;

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(quantile(&v, 0.5), 50);
        assert_eq!(quantile(&v, 0.99), 99);
        assert_eq!(quantile(&v, 1.0), 100);
        assert_eq!(quantile(&[7], 0.99), 7);
    }
}
