//! The binary under a service manager: sd_notify messages at start, reload and stop
//! (`Type=notify`), and listening sockets handed over by socket activation, as
//! `systemd-socket-activate` (systemd's own tool) passes them.

mod common;

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::Scratch;

fn ini(dir: &Scratch, listen: &str) -> std::path::PathBuf {
    let path = dir.0.join("pgbouncer.ini");
    let users = dir.0.join("userlist.txt");
    std::fs::write(&users, "\"admin\" \"\"\n").unwrap();
    std::fs::write(
        &path,
        format!(
            "[databases]\n* = host=127.0.0.1\n[pgbouncer]\n{listen}\nunix_socket_dir =\n\
             auth_type = trust\nauth_file = {}\nadmin_users = admin\n",
            users.display()
        ),
    )
    .unwrap();
    path
}

fn kill(pid: u32, signal: &str) {
    let ok = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {signal} {pid}");
}

#[test]
fn ready_reloading_and_stopping_reach_the_notify_socket() {
    let dir = Scratch::new("sd-notify");
    let sock_path = dir.0.join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let ini = ini(&dir, "listen_addr = 127.0.0.1\nlisten_port = 0");
    let mut child = Command::new(env!("CARGO_BIN_EXE_pgbouncer-rs"))
        .arg(&ini)
        .env("NOTIFY_SOCKET", &sock_path)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 256];
    let mut next = || {
        let n = sock.recv(&mut buf).expect("a notify message");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    assert_eq!(next(), "READY=1");
    kill(child.id(), "-HUP");
    let reloading = next();
    let mut lines = reloading.lines();
    assert_eq!(lines.next(), Some("RELOADING=1"), "{reloading}");
    let usec: u64 = lines
        .next()
        .and_then(|l| l.strip_prefix("MONOTONIC_USEC="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{reloading}"));
    assert!(usec > 0);
    assert_eq!(next(), "READY=1");
    kill(child.id(), "-INT");
    assert_eq!(next(), "STOPPING=1");
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
}

#[test]
fn sockets_passed_by_socket_activation_are_served() {
    if Command::new("systemd-socket-activate")
        .arg("--help")
        .stdout(Stdio::null())
        .status()
        .is_err()
    {
        assert!(
            std::env::var_os("CI").is_none(),
            "systemd-socket-activate missing in CI"
        );
        eprintln!("skipped: systemd-socket-activate not installed");
        return;
    }
    let dir = Scratch::new("sd-activate");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // listen_port 1 cannot be bound unprivileged: only the passed socket can work.
    let ini = ini(&dir, "listen_addr = 127.0.0.1\nlisten_port = 1");
    let activator = Command::new("systemd-socket-activate")
        .arg("-l")
        .arg(format!("127.0.0.1:{port}"))
        .arg(env!("CARGO_BIN_EXE_pgbouncer-rs"))
        .arg(&ini)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // systemd-socket-activate becomes the pooler (it execs it): stopped on any exit.
    let activator = Stopped(activator);
    // The first connection starts the pooler, which then answers on the same socket.
    let Ok(bin) = pg_harness::find_bin_dir() else {
        assert!(std::env::var_os("CI").is_none(), "psql missing in CI");
        eprintln!("skipped: psql not installed");
        return;
    };
    let psql = bin.join("psql");
    let mut answer = String::new();
    for _ in 0..50 {
        let out = Command::new(&psql)
            .args([
                "-X",
                "-At",
                &format!(
                    "host=127.0.0.1 port={port} user=admin dbname=pgbouncer connect_timeout=5"
                ),
                "-c",
                "show version",
            ])
            .output()
            .unwrap();
        answer = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.status.success() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(activator);
    assert!(answer.starts_with("pgbouncer-rs "), "{answer}");
}

/// A child stopped with SIGINT (the pooler's safe shutdown) and waited for on drop.
struct Stopped(std::process::Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}
