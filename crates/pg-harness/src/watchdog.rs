//! A detached shell that stops the server and removes its directory once the test process
//! has gone, so a panicking or killed test (or the never-dropped shared cluster) leaks no
//! `postgres`. A normal drop kills the watchdog first.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::error::HarnessError;

/// Polls the owner pid once a second; then fast shutdown (SIGINT), up to 10 s of grace,
/// SIGKILL, and `rm -rf` of the directory. Arguments: owner pid, postgres pid, directory.
const SCRIPT: &str = r#"
while kill -0 "$1" 2>/dev/null; do sleep 1; done
kill -INT "$2" 2>/dev/null
i=0
while kill -0 "$2" 2>/dev/null && [ "$i" -lt 50 ]; do sleep 0.2; i=$((i+1)); done
kill -KILL "$2" 2>/dev/null
rm -rf "$3"
"#;

/// Starts the watchdog in its own process group, so a Ctrl-C aimed at the test run does
/// not kill it before it has cleaned up.
pub(crate) fn spawn(postgres_pid: u32, dir: &Path) -> Result<Child, HarnessError> {
    Command::new("sh")
        .arg("-c")
        .arg(SCRIPT)
        .arg("pg-harness-watchdog")
        .arg(std::process::id().to_string())
        .arg(postgres_pid.to_string())
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| HarnessError::io("spawn the watchdog shell", e))
}
