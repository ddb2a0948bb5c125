//! The `pgbouncer-rs` binary as a child process: started on an ini file, its stderr log
//! lines collected, killed on drop.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `pgbouncer-rs` started from its ini file.
pub struct Pooler {
    pub child: Child,
    pub port: u16,
    lines: std::sync::mpsc::Receiver<String>,
    seen: std::cell::RefCell<Vec<String>>,
}

impl Pooler {
    pub fn start(ini_path: &std::path::Path) -> Pooler {
        Pooler::start_with_soft_nofile(ini_path, None)
    }

    /// Starts it with the soft descriptor limit lowered to `soft` first (`ulimit -Sn`).
    pub fn start_with_soft_nofile(ini_path: &std::path::Path, soft: Option<u32>) -> Pooler {
        Pooler::start_limited(ini_path, soft.map(|n| format!("ulimit -Sn {n}")))
    }

    /// Starts it after the shell command `limit` (a `ulimit`).
    // The child is waited for in Drop (clippy cannot see through the struct).
    #[allow(clippy::zombie_processes)]
    pub fn start_limited(ini_path: &std::path::Path, limit: Option<String>) -> Pooler {
        let bin = env!("CARGO_BIN_EXE_pgbouncer-rs");
        let mut cmd = match limit {
            None => {
                let mut c = Command::new(bin);
                c.arg(ini_path);
                c
            }
            Some(limit) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("{limit} && exec \"$0\" \"$1\""))
                    .arg(bin)
                    .arg(ini_path);
                c
            }
        };
        let mut child = cmd
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
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
                if let Some(addr) = line.split("listening on ").nth(1) {
                    let port = addr.rsplit(':').next().unwrap().trim().parse().unwrap();
                    seen.push(line);
                    return Pooler {
                        child,
                        port,
                        lines: rx,
                        seen: std::cell::RefCell::new(seen),
                    };
                }
                seen.push(line);
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("pgbouncer-rs did not start: {seen:?}");
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    /// A `/proc/<pid>/status` field in kB (VmRSS now, VmHWM the peak).
    pub fn mem_kb(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap()
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// The log lines printed since the last call.
    pub fn log(&self) -> Vec<String> {
        let new: Vec<String> = self.lines.try_iter().collect();
        self.seen.borrow_mut().extend(new.iter().cloned());
        new
    }

    /// Every log line so far (all calls of [`Pooler::log`] included).
    pub fn all_log(&self) -> Vec<String> {
        self.log();
        self.seen.borrow().clone()
    }

    /// Waits up to `limit` for a log line containing every one of `parts`.
    pub fn wait_for_line(&self, parts: &[&str], limit: Duration) -> Option<String> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(l) = self
                .all_log()
                .into_iter()
                .find(|l| parts.iter().all(|p| l.contains(p)))
            {
                return Some(l);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Pooler {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
