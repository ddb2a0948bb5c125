//! Where each pooler's CPU goes (part of `cargo xtask bench`): the reference harness's
//! scenarios (`-S -M simple` at 10, 100 and 1000 clients, `-S -C` md5 logins, `-S -M
//! extended`) through PgBouncer and through pgbouncer-rs against one throwaway
//! PostgreSQL, runs interleaved, each pooler warmed up first (its servers connected).
//! For every scenario it prints user and kernel µs per transaction and context switches
//! per transaction for both poolers (from `/proc/<pid>/stat` and the threads'
//! `status`), next to the ratios. The reference harness reports only the total.

use std::path::Path;
use std::process::{Command, Stdio};

use pg_harness::{APP_DB, MD5_PASSWORD, MD5_USER};

use crate::bench::{clock_ticks, cpu_split, free_port, pgbench_tps, pgbench_txns, wait_port, Proc};
use crate::latency::{pgbench_cluster_with, start_target};
use crate::{Failure, Outcome};

/// The scenarios: a name and pgbench's arguments.
const SCENARIOS: &[(&str, &[&str])] = &[
    ("select -c 10", &["-S", "-M", "simple", "-c", "10"]),
    ("select -c 100", &["-S", "-M", "simple", "-c", "100"]),
    ("select -c 1000", &["-S", "-M", "simple", "-c", "1000"]),
    ("connect md5 -c 50", &["-S", "-C", "-c", "50"]),
    ("extended -c 50", &["-S", "-M", "extended", "-c", "50"]),
];

/// One measured run.
#[derive(Default, Clone, Copy)]
struct Sample {
    txns: f64,
    seconds: f64,
    user: f64,
    system: f64,
    switches: f64,
}

impl Sample {
    fn add(&mut self, o: Sample) {
        self.txns += o.txns;
        self.seconds += o.seconds;
        self.user += o.user;
        self.system += o.system;
        self.switches += o.switches;
    }
    fn per_txn(&self, v: f64, scale: f64) -> f64 {
        v * scale / self.txns.max(1.0)
    }
}

fn failed(e: impl std::fmt::Display) -> Failure {
    Failure::Failed(e.to_string())
}

/// The relay part's scenarios. A relay opens one PostgreSQL connection per client, so
/// this part's cluster has room for [`RELAY_MAX_CONNECTIONS`].
const RELAY_SCENARIOS: &[(&str, &[&str])] = &[
    ("select -c 10", &["-S", "-M", "simple", "-c", "10"]),
    ("select -c 100", &["-S", "-M", "simple", "-c", "100"]),
    ("extended -c 50", &["-S", "-M", "extended", "-c", "50"]),
];

/// 100 relayed clients, the poolers' 20 servers, and the warm-up's 20.
const RELAY_MAX_CONNECTIONS: u32 = 150;

pub(crate) fn run(root: &Path, quick: bool) -> Outcome {
    println!("\n== CPU split: user and kernel time and context switches per transaction");
    let mut targets = vec!["pgbouncer-rs"];
    with_pgbouncer(&mut targets);
    measure(root, quick, &targets, SCENARIOS, 100)
}

/// `--relay`: the same measurement through two relays that forward bytes and do nothing
/// else (`xtask/relay`, one thread each: tokio's epoll reactor, and io_uring through
/// tokio-uring), next to both poolers. No pooler built on an I/O layer can cost less
/// than the relay built on it, so the relays bound what io_uring could save and how much
/// of pgbouncer-rs's cost is its own work rather than the I/O layer's.
pub(crate) fn relay(root: &Path, quick: bool) -> Outcome {
    println!("\n== Relay floor: a byte relay on epoll (tokio) and on io_uring (tokio-uring), next to the poolers");
    let mut targets = vec!["pgbouncer-rs", "relay-epoll", "relay-uring"];
    with_pgbouncer(&mut targets);
    measure(
        root,
        quick,
        &targets,
        RELAY_SCENARIOS,
        RELAY_MAX_CONNECTIONS,
    )
}

fn with_pgbouncer(targets: &mut Vec<&str>) {
    if Path::new(crate::latency::PGBOUNCER).exists() {
        targets.insert(0, "pgbouncer");
    } else {
        println!("   (PgBouncer not installed: apt-get install -y pgbouncer to compare)");
    }
}

/// Starts `target`: a pooler (`start_target`), or `relay-epoll` / `relay-uring`.
fn start(root: &Path, dir: &Path, target: &str, pg_port: u16) -> Result<(Proc, u16), Failure> {
    let Some(mode) = target.strip_prefix("relay-") else {
        return start_target(root, dir, target, pg_port);
    };
    let port = free_port()?;
    let child = Command::new(root.join("target/release/relay-floor"))
        .args([mode, &port.to_string(), &pg_port.to_string()])
        .stdout(Stdio::null())
        .spawn()
        .map_err(failed)?;
    let proc = Proc(child);
    if !wait_port(port) {
        return Err(failed(format!("{target} did not start")));
    }
    Ok((proc, port))
}

fn measure(
    root: &Path,
    quick: bool,
    targets: &[&str],
    scenarios: &[(&'static str, &[&str])],
    max_connections: u32,
) -> Outcome {
    let pg = pgbench_cluster_with(max_connections)?;
    let bin = pg.bin_dir().to_path_buf();
    let dir = std::env::temp_dir().join(format!("pgbrs-split-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(failed)?;
    let _ = Command::new("chmod")
        .args(["777", &dir.to_string_lossy()])
        .status();
    let (reps, seconds) = if quick { (1, 5) } else { (3, 10) };
    let ticks = clock_ticks();
    let mut table: Vec<(&str, &str, Sample)> = Vec::new();
    for (scenario, args) in scenarios {
        for _ in 0..reps {
            for target in targets {
                let (proc, port) = start(root, &dir, target, pg.port())?;
                let pid = proc.0.id();
                // Warm-up: the pool's servers are connected before the measured run.
                pgbench(&bin, port, &["-S", "-c", "20"], 2)?;
                let before = cpu_split(pid, ticks);
                let (txns, tps) = pgbench(&bin, port, args, seconds)?;
                let after = cpu_split(pid, ticks);
                drop(proc);
                let s = Sample {
                    txns,
                    seconds: txns / tps.max(1e-9),
                    user: after.0 - before.0,
                    system: after.1 - before.1,
                    switches: after.2.saturating_sub(before.2) as f64,
                };
                println!(
                    "   {scenario:<18} {target:<13} {tps:>8.0} TPS   user {:>5.1} kernel {:>5.1} us/txn   {:.2} switches/txn",
                    s.per_txn(s.user, 1e6),
                    s.per_txn(s.system, 1e6),
                    s.per_txn(s.switches, 1.0)
                );
                match table
                    .iter_mut()
                    .find(|(sc, t, _)| sc == scenario && t == target)
                {
                    Some((_, _, total)) => total.add(s),
                    None => table.push((scenario, target, s)),
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    print_table(&table);
    Ok(())
}

/// Runs pgbench for `seconds`; (transactions, TPS).
fn pgbench(bin: &Path, port: u16, args: &[&str], seconds: u32) -> Result<(f64, f64), Failure> {
    let out = Command::new("bash")
        .arg("-c")
        .arg("ulimit -n \"$(ulimit -Hn)\"; exec \"$@\"")
        .arg("pgbench")
        .arg(bin.join("pgbench"))
        .args(["-n", "-j", "2", "-T", &seconds.to_string()])
        .args(args)
        .arg(format!(
            "host=127.0.0.1 port={port} user={MD5_USER} password={MD5_PASSWORD} dbname={APP_DB}"
        ))
        .output()
        .map_err(failed)?;
    let text = String::from_utf8_lossy(&out.stdout);
    let (txns, tps) = (pgbench_txns(&text), pgbench_tps(&text));
    if txns == 0.0 {
        return Err(failed(format!(
            "pgbench {args:?} failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok((txns, tps))
}

fn print_table(table: &[(&str, &str, Sample)]) {
    println!(
        "\n| scenario | pooler | TPS | user µs/txn | kernel µs/txn | CPU µs/txn | switches/txn | CPU vs PgBouncer | user vs PgBouncer | TPS vs PgBouncer |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (scenario, target, s) in table {
        let base = table
            .iter()
            .find(|(sc, t, _)| sc == scenario && *t == "pgbouncer")
            .map(|(_, _, b)| b);
        let tps = |x: &Sample| x.txns / x.seconds.max(1e-9);
        let cpu = |x: &Sample| x.per_txn(x.user + x.system, 1e6);
        let ratio = |f: &dyn Fn(&Sample) -> f64| {
            base.map_or("–".to_string(), |b| {
                format!("{:.2}×", f(s) / f(b).max(1e-9))
            })
        };
        println!(
            "| {scenario} | {target} | {:.0} | {:.1} | {:.1} | {:.1} | {:.2} | {} | {} | {} |",
            tps(s),
            s.per_txn(s.user, 1e6),
            s.per_txn(s.system, 1e6),
            cpu(s),
            s.per_txn(s.switches, 1.0),
            ratio(&cpu),
            ratio(&|x: &Sample| x.per_txn(x.user, 1e6)),
            ratio(&tps),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::Sample;

    #[test]
    fn runs_add_up_weighted_by_their_transactions() {
        let mut total = Sample::default();
        // 1 000 transactions at 2 µs user each, then 3 000 at 6 µs.
        for (txns, user) in [(1_000.0, 0.002), (3_000.0, 0.018)] {
            total.add(Sample {
                txns,
                seconds: 1.0,
                user,
                system: user / 2.0,
                switches: txns,
            });
        }
        assert!((total.per_txn(total.user, 1e6) - 5.0).abs() < 1e-9);
        assert!((total.per_txn(total.system, 1e6) - 2.5).abs() < 1e-9);
        assert!((total.per_txn(total.switches, 1.0) - 1.0).abs() < 1e-9);
        assert!((total.txns / total.seconds - 2_000.0).abs() < 1e-9);
    }
}
