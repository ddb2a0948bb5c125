//! The `pgbouncer-rs` binary as operators run it: foreground, logs on stderr, pidfile,
//! clean exit on SIGTERM / SIGINT, `--version`, config errors with file and line.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use pg_harness::PgCluster;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pgbouncer-rs"))
}

/// Starts the binary on `ini` and waits for its "listening on" line (bounded).
fn spawn(ini_path: &std::path::Path) -> (Child, u16, std::sync::mpsc::Receiver<String>) {
    let mut child = bin()
        .arg(ini_path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            if let Some(addr) = line.split("listening on ").nth(1) {
                let port = addr.rsplit(':').next().unwrap().trim().parse().unwrap();
                return (child, port, rx);
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("pgbouncer-rs did not start");
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

/// Waits (bounded) for the child to exit; kills it if it does not.
fn wait_exit(mut child: Child) -> std::process::ExitStatus {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(status) => status.unwrap(),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("pgbouncer-rs did not exit");
        }
    }
}

#[test]
fn version_and_help_print_and_exit_zero() {
    let o = bin().arg("--version").output().unwrap();
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("pgbouncer-rs "));
    let o = bin().arg("-V").output().unwrap();
    assert!(o.status.success());
    let o = bin().arg("-h").output().unwrap();
    assert!(String::from_utf8_lossy(&o.stdout).contains("Usage:"));
}

#[test]
fn no_config_file_and_bad_config_exit_with_an_error_naming_file_and_line() {
    let o = bin().env_clear().output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no configuration file specified"));
    let dir = Scratch::new("badcfg");
    let path = dir.0.join("bad.ini");
    std::fs::write(
        &path,
        "[pgbouncer]\nlisten_port = 6432\nmax_client_conn = lots\n",
    )
    .unwrap();
    let o = bin().arg(&path).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("bad.ini:3"), "{err}");
    let o = bin().arg("--check-config").arg(&path).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn runs_in_the_foreground_writes_its_pidfile_and_exits_cleanly_on_sigterm_and_sigint() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    for sig in ["-TERM", "-INT"] {
        let dir = Scratch::new("bin");
        let pidfile = dir.0.join("pgbouncer.pid");
        let text = ini(
            pg,
            &dir,
            &format!(
                "pool_mode = transaction\npidfile = {}\nlog_connections = 1",
                pidfile.display()
            ),
        );
        let path = dir.0.join("pgbouncer.ini");
        std::fs::write(&path, text).unwrap();
        let (child, port, logs) = spawn(&path);
        let pid: u32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(pid, child.id());
        let conninfo =
            format!("host=127.0.0.1 port={port} user=md5user password=md5pass dbname=appdb");
        let o = std::process::Command::new(pg.bin_dir().join("psql"))
            .args(["-X", "-At", &conninfo, "-c", "select 41 + 1"])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&o.stdout).trim(),
            "42",
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        // A second instance refuses to start over the live pidfile.
        let o = bin().arg(&path).output().unwrap();
        assert_eq!(o.status.code(), Some(1));
        signal(&child, sig);
        let status = wait_exit(child);
        assert!(status.success(), "{sig}: {status:?}");
        assert!(!pidfile.exists(), "pidfile removed at exit");
        let lines: Vec<String> = logs.try_iter().collect();
        assert!(
            lines
                .iter()
                .any(|l| l.contains(" LOG ") && l.contains("login attempt: db=appdb user=md5user")),
            "{lines:?}"
        );
    }
}
