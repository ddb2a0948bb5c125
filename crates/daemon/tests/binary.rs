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
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    // Line 1 is what SHOW VERSION answers (tools compare the two).
    assert_eq!(
        out.lines().next(),
        Some(pgbouncer_admin::version_text().as_str()),
        "{out}"
    );
    assert!(out.contains("\ntls: rustls"), "{out}");
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

/// Runs psql against the pooler's console.
fn console(pg: &PgCluster, port: u16, sql: &str) -> String {
    let o = std::process::Command::new(pg.bin_dir().join("psql"))
        .args([
            "-X",
            "-At",
            &format!("host=127.0.0.1 port={port} user=admin password=adminpass dbname=pgbouncer"),
            "-c",
            sql,
        ])
        .output()
        .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Polls the console (bounded) until `sql` prints something containing `want`.
fn wait_console(pg: &PgCluster, port: u16, sql: &str, want: &str) -> String {
    let mut last = String::new();
    for _ in 0..200 {
        last = console(pg, port, sql);
        if last.contains(want) {
            return last;
        }
        std::thread::yield_now();
    }
    panic!("console never showed {want:?} for {sql:?}: {last}");
}

#[test]
fn sighup_reloads_sigusr1_pauses_sigusr2_resumes_and_sigquit_exits_at_once() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("signals");
    let path = dir.0.join("pgbouncer.ini");
    std::fs::write(
        &path,
        ini(pg, &dir, "pool_mode = transaction\ndefault_pool_size = 3"),
    )
    .unwrap();
    let (child, port, _logs) = spawn(&path);
    assert!(console(pg, port, "show config").contains("default_pool_size|3|"));
    // SIGHUP: the changed file is read again.
    std::fs::write(
        &path,
        ini(pg, &dir, "pool_mode = transaction\ndefault_pool_size = 7"),
    )
    .unwrap();
    signal(&child, "-HUP");
    wait_console(pg, port, "show config", "default_pool_size|7|");
    // SIGUSR1 pauses, SIGUSR2 resumes.
    signal(&child, "-USR1");
    wait_console(pg, port, "show state", "paused|yes");
    signal(&child, "-USR2");
    wait_console(pg, port, "show state", "paused|no");
    // SIGQUIT: immediate exit, even with a client connected.
    let _held = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    signal(&child, "-QUIT");
    let status = wait_exit(child);
    assert!(status.success(), "{status:?}");
}

#[test]
fn so_reuseport_lets_two_processes_share_one_port() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut children = Vec::new();
    for i in 0..2 {
        let dir = Scratch::new(&format!("reuse{i}"));
        let text = ini(pg, &dir, "so_reuseport = 1\npool_mode = transaction")
            .replace("listen_port = 0", &format!("listen_port = {port}"));
        let path = dir.0.join("pgbouncer.ini");
        std::fs::write(&path, text).unwrap();
        let (child, p, _logs) = spawn(&path);
        assert_eq!(p, port);
        children.push((child, dir));
    }
    let conninfo = format!("host=127.0.0.1 port={port} user=md5user password=md5pass dbname=appdb");
    for _ in 0..4 {
        let o = std::process::Command::new(pg.bin_dir().join("psql"))
            .args(["-X", "-At", &conninfo, "-c", "select 1"])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&o.stdout).trim(),
            "1",
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    for (child, _dir) in children {
        signal(&child, "-TERM");
        assert!(wait_exit(child).success());
    }
}

#[test]
fn dash_d_daemonizes_with_a_pidfile_and_dash_u_runs_as_another_user() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("daemonize");
    // The daemon may run as postgres (-u): it must be able to write its pidfile here.
    let _ = Command::new("chmod")
        .args(["777", &dir.0.to_string_lossy()])
        .status();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let pidfile = dir.0.join("p.pid");
    let text = ini(
        pg,
        &dir,
        &format!("pidfile = {}\npool_mode = transaction", pidfile.display()),
    )
    .replace("listen_port = 0", &format!("listen_port = {port}"));
    let path = dir.0.join("pgbouncer.ini");
    std::fs::write(&path, text).unwrap();
    let _ = Command::new("chmod")
        .args([
            "644",
            &path.to_string_lossy(),
            &dir.0.join("userlist.txt").to_string_lossy(),
        ])
        .status();
    // Without a pidfile, -d is refused.
    let bare = dir.0.join("bare.ini");
    std::fs::write(&bare, "[pgbouncer]\nlisten_port = 1\n").unwrap();
    let o = bin().args(["-d"]).arg(&bare).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("daemon needs pidfile configured"));
    let as_root = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
    let mut args = vec!["-d".to_string()];
    if as_root {
        args.extend(["-u".to_string(), "postgres".to_string()]);
    }
    let o = bin().args(&args).arg(&path).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The parent returned at once; the daemon writes its pidfile and serves.
    let mut pid = None;
    let mut served = false;
    for _ in 0..400 {
        if pid.is_none() {
            pid = std::fs::read_to_string(&pidfile)
                .ok()
                .and_then(|p| p.trim().parse::<u32>().ok());
        }
        let o = Command::new(pg.bin_dir().join("psql"))
            .args([
                "-X",
                "-At",
                &format!("host=127.0.0.1 port={port} user=md5user password=md5pass dbname=appdb"),
                "-c",
                "select 1",
            ])
            .output()
            .unwrap();
        if String::from_utf8_lossy(&o.stdout).trim() == "1" && pid.is_some() {
            served = true;
            break;
        }
        std::thread::yield_now();
    }
    let pid = pid.expect("the daemon wrote its pidfile");
    if as_root {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let uid = status
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .unwrap()
            .split_whitespace()
            .nth(1)
            .unwrap()
            .to_string();
        assert_ne!(uid, "0", "-u postgres dropped root");
    }
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    assert!(served, "the daemonized pooler served a query");
    for _ in 0..2000 {
        if !pidfile.exists() {
            break;
        }
        std::thread::yield_now();
    }
}

#[test]
fn console_shutdown_wait_for_clients_exits_once_the_last_client_leaves() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("console-shutdown");
    let path = dir.0.join("pgbouncer.ini");
    std::fs::write(&path, ini(pg, &dir, "pool_mode = transaction")).unwrap();
    let (mut child, port, _logs) = spawn(&path);
    // A client stays connected while the console asks for the shutdown.
    let mut held = std::process::Command::new(pg.bin_dir().join("psql"))
        .args([
            "-X",
            "-At",
            &format!("host=127.0.0.1 port={port} user=md5user password=md5pass dbname=appdb"),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Make sure the held client is logged in before shutting down.
    let _ = wait_console(pg, port, "show clients", "md5user");
    let out = console(pg, port, "SHUTDOWN WAIT_FOR_CLIENTS");
    assert!(
        out.contains("SHUTDOWN") || out.is_empty() || !out.contains("ERROR"),
        "{out}"
    );
    assert!(
        child.try_wait().unwrap().is_none(),
        "still running while a client is connected"
    );
    // The last client leaves: the process exits with status 0.
    drop(held.stdin.take());
    let _ = held.wait();
    let status = wait_exit(child);
    assert!(status.success(), "{status:?}");
}

#[test]
fn syslog_gets_the_log_lines_and_sighup_reopens_a_rotated_logfile() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("syslog");
    let sock_path = dir.0.join("syslog.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let logfile = dir.0.join("pgbouncer.log");
    let path = dir.0.join("pgbouncer.ini");
    let extra = format!(
        "pool_mode = transaction\nsyslog = 1\nsyslog_ident = pgbrs-test\nsyslog_facility = local3\nlog_connections = 1\nlogfile = {}",
        logfile.display()
    );
    std::fs::write(&path, ini(pg, &dir, &extra)).unwrap();
    let mut child = bin()
        .arg(&path)
        .env("PGBRS_SYSLOG_SOCKET", &sock_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).expect("a syslog datagram");
    let first = String::from_utf8_lossy(&buf[..n]).to_string();
    // local3 = 19, LOG = info (6): 19 * 8 + 6 = 158.
    assert!(first.starts_with("<158>pgbrs-test["), "{first}");
    let port: u16 = std::fs::read_to_string(&logfile)
        .unwrap()
        .lines()
        .find_map(|l| {
            l.split("listening on 127.0.0.1:")
                .nth(1)
                .map(|p| p.trim().parse().unwrap())
        })
        .expect("listening line in the logfile");
    // Rotate the log file away and send SIGHUP: a new file is opened.
    let rotated = dir.0.join("pgbouncer.log.1");
    std::fs::rename(&logfile, &rotated).unwrap();
    signal(&child, "-HUP");
    let conninfo = format!("host=127.0.0.1 port={port} user=md5user password=md5pass dbname=appdb");
    let mut found = false;
    for _ in 0..200 {
        let _ = Command::new(pg.bin_dir().join("psql"))
            .args(["-X", "-At", &conninfo, "-c", "select 1"])
            .output();
        if std::fs::read_to_string(&logfile).is_ok_and(|t| t.contains("login attempt")) {
            found = true;
            break;
        }
        std::thread::yield_now();
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(found, "the reopened logfile gets new lines");
    let mut saw_login = false;
    while let Ok(n) = sock.recv(&mut buf) {
        if String::from_utf8_lossy(&buf[..n]).contains("login attempt") {
            saw_login = true;
            break;
        }
    }
    assert!(saw_login, "syslog got the login line");
}
