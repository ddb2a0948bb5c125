//! The log lines of daemons started in this test process: one global subscriber (info
//! and above) that keeps every line in memory, so a test can look for what an operator
//! would see. Tests run in parallel in one process, so a search should include something
//! only its own daemon logs (a database name, a port).

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Sink;

impl std::io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let mut lines = LINES.lock().unwrap_or_else(|e| e.into_inner());
        lines.extend(text.lines().map(str::to_string));
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Starts keeping log lines (idempotent).
pub fn capture() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(|| Sink)
            .try_init();
    });
}

/// Waits up to `limit` for a line containing every one of `parts`.
pub fn wait_for(parts: &[&str], limit: Duration) -> Option<String> {
    let deadline = Instant::now() + limit;
    loop {
        {
            let lines = LINES.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(l) = lines.iter().find(|l| parts.iter().all(|p| l.contains(p))) {
                return Some(l.clone());
            }
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
