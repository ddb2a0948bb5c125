//! `cargo xtask bench --soak [MINUTES]` (default 30): steady load through pgbouncer-rs for
//! a long time, sampling its RSS, to show that memory does not grow. The load is two
//! pgbench runs at once against one throwaway PostgreSQL: 100 clients running
//! select-only transactions on kept connections, and 10 clients opening a new connection
//! per transaction (so logins, disconnects and pool churn are part of it).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pg_harness::{APP_DB, MD5_PASSWORD, MD5_USER};

use crate::bench::{free_port, wait_port, Proc};
use crate::{Failure, Outcome};

fn failed(e: impl std::fmt::Display) -> Failure {
    Failure::Failed(e.to_string())
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Transactions processed and failed, from pgbench's summary.
fn pgbench_counts(stdout: &str) -> (u64, u64) {
    let find = |prefix: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|n| n.split(['/', ' ']).next())
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    };
    (
        find("number of transactions actually processed: "),
        find("number of failed transactions: "),
    )
}

pub(crate) fn run(root: &Path, minutes: u64) -> Outcome {
    println!(
        "\n== soak: {minutes} min of steady load through pgbouncer-rs (100 kept clients + 10 reconnecting), RSS sampled"
    );
    let pg = crate::latency::pgbench_cluster()?;
    let bin = pg.bin_dir().to_path_buf();
    let dir = std::env::temp_dir().join(format!("pgbrs-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(failed)?;
    let port = free_port()?;
    let ini = crate::latency::pooler_ini(&dir, "pgbouncer", pg.port(), port)?;
    let pooler = Proc(
        Command::new(root.join("target/release/pgbouncer-rs"))
            .arg(&ini)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(failed)?,
    );
    if !wait_port(port) {
        return Err(failed("pgbouncer-rs did not start"));
    }
    let pid = pooler.0.id();
    let seconds = (minutes * 60).to_string();
    let conninfo = format!(
        "host=127.0.0.1 port={port} user={MD5_USER} password={MD5_PASSWORD} dbname={APP_DB}"
    );
    let start_pgbench = |extra: &[&str]| {
        Command::new(bin.join("pgbench"))
            .args(["-n", "-S", "-M", "simple", "-j", "1", "-T", &seconds])
            .args(extra)
            .arg(&conninfo)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(failed)
    };
    let kept = start_pgbench(&["-c", "100"])?;
    let churn = start_pgbench(&["-c", "10", "-C"])?;
    let started = Instant::now();
    let total = Duration::from_secs(minutes * 60);
    let mut samples: Vec<(u64, u64)> = Vec::new();
    println!("| minute | RSS MiB |");
    println!("|---:|---:|");
    while started.elapsed() < total {
        std::thread::sleep(Duration::from_secs(10));
        let secs = started.elapsed().as_secs();
        let rss = rss_kib(pid);
        samples.push((secs, rss));
        if secs % 60 < 10 {
            println!("| {} | {:.1} |", secs / 60, rss as f64 / 1024.0);
        }
    }
    let kept = kept.wait_with_output().map_err(failed)?;
    let churn = churn.wait_with_output().map_err(failed)?;
    drop(pooler);
    let _ = std::fs::remove_dir_all(&dir);
    let (kept_txns, kept_failed) = pgbench_counts(&String::from_utf8_lossy(&kept.stdout));
    let (churn_txns, churn_failed) = pgbench_counts(&String::from_utf8_lossy(&churn.stdout));
    // Growth is judged after a one-minute warm-up (pools fill, buffers reach their size).
    let warm = samples
        .iter()
        .find(|(s, _)| *s >= 60)
        .map_or(0, |(_, r)| *r);
    let last = samples.last().map_or(0, |(_, r)| *r);
    let peak = samples.iter().map(|(_, r)| *r).max().unwrap_or(0);
    println!(
        "\n| kept-connection txns (failed) | reconnect txns (failed) | RSS after 1 min MiB | RSS at end MiB | peak MiB | growth after warm-up |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {kept_txns} ({kept_failed}) | {churn_txns} ({churn_failed}) | {:.1} | {:.1} | {:.1} | {:+.1} MiB |",
        warm as f64 / 1024.0,
        last as f64 / 1024.0,
        peak as f64 / 1024.0,
        (last as f64 - warm as f64) / 1024.0
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::pgbench_counts;

    #[test]
    fn pgbench_summary_counts_are_read() {
        let out = "number of transactions actually processed: 12345\n\
                   number of failed transactions: 0 (0.000%)\n";
        assert_eq!(pgbench_counts(out), (12345, 0));
        let out = "number of transactions actually processed: 500/1000\n";
        assert_eq!(pgbench_counts(out), (500, 0));
    }
}
