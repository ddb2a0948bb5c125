//! `cargo xtask bench [--quick] [--micro-only | --no-micro] [--no-macro] [--no-scale | --scale-only] [--no-latency | --latency-only] [--no-split | --split-only] [--relay | --relay-only] [--save NAME | --baseline NAME]`
//! `cargo xtask bench --soak [MINUTES]`: only the soak (`soak.rs`), 30 minutes by default.
//!
//! 1. criterion micro-benches: protocol decode/encode MB/s, pool-core checkout+checkin
//!    rate, and the cost of the pool hand-off (mutex vs channel).
//! 2. pooler-bound: a fake PostgreSQL (xtask's own, answers at once) behind
//!    pgbouncer-rs with 1 and 2 worker threads and behind PgBouncer, pgbench with a
//!    one-line script in front; prints transactions per pooler-CPU-second and ratios.
//! 3. scale (`scale.rs`): 10 000 idle clients and login storms.
//! 4. latency (`latency.rs`): p50/p95/p99 at 1000 clients, PgBouncer next to pgbouncer-rs.
//! 5. CPU split (`cpusplit.rs`): the harness's scenarios through PgBouncer and
//!    pgbouncer-rs, user and kernel µs and context switches per transaction, with ratios.
//!    With `--relay` (not run by default), the same through two byte relays that do no
//!    pooling (`xtask/relay`: tokio's epoll reactor and io_uring), the floor of each I/O
//!    layer.
//! 6. macro: the reference pgbench harness (`../shared/bench/run.sh`, or `$BENCH_HARNESS`)
//!    with direct PostgreSQL, PgBouncer and pgbouncer-rs interleaved in one run; it prints
//!    the ratio table. Numbers never gate CI.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{cmd, fakepg, Failure, Outcome};

struct Opts {
    quick: bool,
    micro: bool,
    pooler_bound: bool,
    macro_bench: bool,
    scale: bool,
    latency: bool,
    split: bool,
    relay: bool,
    soak: Option<u64>,
    criterion_args: Vec<String>,
}

fn parse(args: &[&str]) -> Result<Opts, Failure> {
    let mut o = Opts {
        quick: false,
        micro: true,
        pooler_bound: true,
        macro_bench: true,
        scale: true,
        latency: true,
        split: true,
        relay: false,
        soak: None,
        criterion_args: vec![],
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match *a {
            "--quick" => o.quick = true,
            "--micro-only" => {
                o.pooler_bound = false;
                o.macro_bench = false;
                o.scale = false;
                o.latency = false;
                o.split = false;
            }
            "--no-latency" => o.latency = false,
            "--no-split" => o.split = false,
            "--relay" => o.relay = true,
            "--relay-only" => {
                o.relay = true;
                o.micro = false;
                o.pooler_bound = false;
                o.macro_bench = false;
                o.scale = false;
                o.latency = false;
                o.split = false;
            }
            "--split-only" => {
                o.micro = false;
                o.pooler_bound = false;
                o.macro_bench = false;
                o.scale = false;
                o.latency = false;
            }
            "--soak" => {
                let minutes = match it.clone().next().map(|m| m.parse::<u64>()) {
                    Some(Ok(m)) => {
                        it.next();
                        m
                    }
                    _ => 30,
                };
                o.soak = Some(minutes.max(1));
            }
            "--latency-only" => {
                o.micro = false;
                o.pooler_bound = false;
                o.macro_bench = false;
                o.scale = false;
                o.split = false;
            }
            "--no-micro" => o.micro = false,
            "--no-macro" => o.macro_bench = false,
            "--no-scale" => o.scale = false,
            "--scale-only" => {
                o.micro = false;
                o.pooler_bound = false;
                o.macro_bench = false;
                o.latency = false;
                o.split = false;
            }
            "--save" | "--baseline" => {
                let name = it
                    .next()
                    .ok_or_else(|| Failure::Usage(format!("{a} needs a name")))?;
                let flag = if *a == "--save" {
                    "--save-baseline"
                } else {
                    "--baseline"
                };
                o.criterion_args
                    .extend([flag.to_string(), name.to_string()]);
            }
            other => return Err(Failure::Usage(format!("unexpected argument `{other}`"))),
        }
    }
    Ok(o)
}

pub(crate) fn run(args: &[&str]) -> Outcome {
    let o = parse(args)?;
    let root = cmd::root();
    let mut build = cmd::cargo();
    build.args(["build", "--release", "-p", "pgbouncer-rs"]);
    cmd::run(&mut build)?;
    if let Some(minutes) = o.soak {
        return crate::soak::run(&root, minutes);
    }
    if o.micro {
        micro(&o)?;
    }
    if o.pooler_bound {
        pooler_bound(&root, &o)?;
    }
    if o.scale {
        crate::scale::run(&root, o.quick)?;
    }
    if o.latency {
        crate::latency::run(&root, o.quick)?;
    }
    if o.split {
        crate::cpusplit::run(&root, o.quick)?;
    }
    if o.relay {
        let mut build = cmd::cargo();
        build.args(["build", "--release", "-p", "relay-floor"]);
        cmd::run(&mut build)?;
        crate::cpusplit::relay(&root, o.quick)?;
    }
    if o.macro_bench {
        macro_bench(&root, &o)?;
    }
    Ok(())
}

fn micro(o: &Opts) -> Outcome {
    println!("\n== micro-benchmarks (criterion)");
    for (pkg, bench) in [
        ("pgbouncer-protocol", "decode"),
        ("pgbouncer-pool-core", "checkout"),
        ("pgbouncer-rs", "pool_handoff"),
    ] {
        let mut c = cmd::cargo();
        c.args(["bench", "-p", pkg, "--bench", bench, "--"]);
        if o.quick {
            c.args(["--warm-up-time", "0.5", "--measurement-time", "1"]);
        }
        c.args(&o.criterion_args);
        cmd::run(&mut c)?;
    }
    Ok(())
}

/// A pooler process, killed on drop.
pub(crate) struct Proc(pub(crate) Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-QUIT", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// utime + stime of `pid` (and its reaped children) in seconds.
pub(crate) fn cpu_seconds(pid: u32, ticks: f64) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<f64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    // fields after the comm: state is index 0, utime 11, stime 12, cutime 13, cstime 14
    f.get(11..15).map_or(0.0, |v| v.iter().sum::<f64>()) / ticks
}

/// (user seconds, system seconds, context switches) of `pid`: utime and stime from
/// `/proc/<pid>/stat` (reaped children included), and voluntary plus involuntary
/// switches summed over every thread (`/proc/<pid>/task/*/status`).
pub(crate) fn cpu_split(pid: u32, ticks: f64) -> (f64, f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<f64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    let get = |i: usize| f.get(i).copied().unwrap_or(0.0);
    let user = (get(11) + get(13)) / ticks;
    let system = (get(12) + get(14)) / ticks;
    let mut switches = 0u64;
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            let status = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
            for line in status.lines() {
                if let Some(v) = line
                    .strip_prefix("voluntary_ctxt_switches:")
                    .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
                {
                    switches += v.trim().parse::<u64>().unwrap_or(0);
                }
            }
        }
    }
    (user, system, switches)
}

/// The transactions pgbench's summary says it processed (0 if it has none).
pub(crate) fn pgbench_txns(summary: &str) -> f64 {
    summary
        .lines()
        .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
        .and_then(|n| n.split('/').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The TPS in pgbench's summary (0 if it has none).
pub(crate) fn pgbench_tps(summary: &str) -> f64 {
    summary
        .lines()
        .find_map(|l| l.strip_prefix("tps = "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0.0)
}

pub(crate) fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

pub(crate) fn free_port() -> Result<u16, Failure> {
    let l =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| Failure::Failed(e.to_string()))?;
    Ok(l.local_addr()
        .map_err(|e| Failure::Failed(e.to_string()))?
        .port())
}

pub(crate) fn wait_port(port: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

struct Row {
    target: String,
    tps: f64,
    cpu_us: f64,
    per_core: f64,
    user_us: f64,
    system_us: f64,
    switches: f64,
}

fn pooler_bound(root: &Path, o: &Opts) -> Outcome {
    println!("\n== pooler-bound: pgbench -> pooler -> fake PostgreSQL that answers at once");
    let fake = fakepg::start().map_err(|e| Failure::Failed(format!("fake server: {e}")))?;
    let bin_dir = pg_harness::find_bin_dir().map_err(|e| Failure::Failed(e.to_string()))?;
    let pgbench = bin_dir.join("pgbench");
    let dir = std::env::temp_dir().join(format!("pgbrs-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| Failure::Failed(e.to_string()))?;
    let _ = Command::new("chmod")
        .args(["755", &dir.to_string_lossy()])
        .status();
    let script = dir.join("select1.sql");
    std::fs::write(&script, "select 1;\n").map_err(|e| Failure::Failed(e.to_string()))?;
    let seconds = if o.quick { 5 } else { 15 };
    let ticks = clock_ticks();
    let mut rows = Vec::new();
    let mut targets: Vec<(String, Option<usize>)> = vec![
        ("pgbouncer-rs 1 thread".into(), Some(1)),
        ("pgbouncer-rs 2 threads".into(), Some(2)),
    ];
    let pgbouncer = Path::new("/usr/sbin/pgbouncer");
    if pgbouncer.exists() {
        targets.push(("pgbouncer".into(), None));
    } else {
        println!("   (PgBouncer not installed: apt-get install -y pgbouncer to compare)");
    }
    for (name, threads) in targets {
        let port = free_port()?;
        let ini = dir.join(format!("{port}.ini"));
        std::fs::write(
            &ini,
            format!(
                "[databases]\nbench = host=127.0.0.1 port={} dbname=bench user=bench\n[pgbouncer]\n\
                 listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\nauth_type = any\n\
                 pool_mode = transaction\ndefault_pool_size = 20\nmax_client_conn = 2000\n\
                 log_connections = 0\nlog_disconnections = 0\nserver_check_delay = 3600\n",
                fake.port
            ),
        )
        .map_err(|e| Failure::Failed(e.to_string()))?;
        let _ = Command::new("chmod")
            .args(["644", &ini.to_string_lossy()])
            .status();
        let child = match threads {
            Some(t) => Command::new(root.join("target/release/pgbouncer-rs"))
                .arg(&ini)
                .env("TOKIO_WORKER_THREADS", t.to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn(),
            None if is_root() => Command::new("setpriv")
                .args(["--reuid=postgres", "--regid=postgres", "--init-groups"])
                .arg(pgbouncer)
                .arg(&ini)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn(),
            None => Command::new(pgbouncer)
                .arg(&ini)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn(),
        }
        .map_err(|e| Failure::Failed(format!("{name}: {e}")))?;
        let proc = Proc(child);
        if !wait_port(port) {
            return Err(Failure::Failed(format!("{name} did not start")));
        }
        let pid = proc.0.id();
        let before = cpu_seconds(pid, ticks);
        let split_before = cpu_split(pid, ticks);
        let out = Command::new(&pgbench)
            .args([
                "-n",
                "-M",
                "simple",
                "-c",
                "50",
                "-j",
                "2",
                "-T",
                &seconds.to_string(),
                "-f",
            ])
            .arg(&script)
            .arg(format!(
                "host=127.0.0.1 port={port} user=bench dbname=bench"
            ))
            .output()
            .map_err(|e| Failure::Failed(e.to_string()))?;
        let cpu = cpu_seconds(pid, ticks) - before;
        let split = cpu_split(pid, ticks);
        drop(proc);
        let text = String::from_utf8_lossy(&out.stdout);
        let (txns, tps) = (pgbench_txns(&text), pgbench_tps(&text));
        if txns == 0.0 {
            return Err(Failure::Failed(format!(
                "{name}: pgbench failed: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        let row = Row {
            target: name,
            tps,
            cpu_us: cpu * 1e6 / txns,
            per_core: txns / cpu.max(1e-9),
            user_us: (split.0 - split_before.0) * 1e6 / txns,
            system_us: (split.1 - split_before.1) * 1e6 / txns,
            switches: split.2.saturating_sub(split_before.2) as f64 / txns,
        };
        println!(
            "   {:<24} tps {:>9.0}   pooler CPU {:>6.1} us/txn (user {:.1}, kernel {:.1}), {:.2} context switches/txn   {:>8.0} txn per pooler-core-second",
            row.target, row.tps, row.cpu_us, row.user_us, row.system_us, row.switches, row.per_core
        );
        rows.push(row);
    }
    let _ = std::fs::remove_dir_all(&dir);
    print_pooler_bound(&rows);
    Ok(())
}

fn print_pooler_bound(rows: &[Row]) {
    let get = |name: &str| rows.iter().find(|r| r.target == name);
    println!("\n| target | TPS | pooler CPU µs/txn | user µs/txn | kernel µs/txn | context switches/txn | txn per pooler-core-second | per-core vs PgBouncer | TPS vs 1 thread |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let base = get("pgbouncer");
    let one = get("pgbouncer-rs 1 thread");
    for r in rows {
        let vs_pgb = base.map_or("–".into(), |b| format!("{:.2}×", r.per_core / b.per_core));
        let vs_one = one.map_or("–".into(), |b| format!("{:.2}×", r.tps / b.tps));
        println!(
            "| {} | {:.0} | {:.1} | {:.1} | {:.1} | {:.2} | {:.0} | {} | {} |",
            r.target,
            r.tps,
            r.cpu_us,
            r.user_us,
            r.system_us,
            r.switches,
            r.per_core,
            vs_pgb,
            vs_one
        );
    }
}

fn macro_bench(root: &Path, o: &Opts) -> Outcome {
    println!("\n== macro: the reference pgbench harness, direct vs PgBouncer vs pgbouncer-rs");
    let harness = std::env::var_os("BENCH_HARNESS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("../shared/bench/run.sh"));
    if !harness.exists() {
        println!(
            "   harness not found at {} (set BENCH_HARNESS): skipped",
            harness.display()
        );
        return Ok(());
    }
    let out = root
        .join("bench-results")
        .join(format!("{}", std::process::id()));
    let mut c = Command::new("bash");
    c.arg(&harness)
        .env("CANDIDATE", root.join("target/release/pgbouncer-rs"))
        .env("CANDIDATE_NAME", "pgbouncer-rs")
        .env("OUT", &out);
    if o.quick {
        c.env("DURATION", "5")
            .env("REPS", "1")
            .env("SCENARIOS", "select connect extended")
            .env("CLIENTS", "10 100");
    }
    cmd::run(&mut c)?;
    println!("   results: {}", out.display());
    Ok(())
}
