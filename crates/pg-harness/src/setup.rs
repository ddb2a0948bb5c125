//! The steps of bringing a cluster up: a private temporary directory, `initdb`,
//! `postgresql.conf` and `pg_hba.conf`, and starting `postgres` on a free port until it
//! answers `pg_isready` (PostgreSQL docs: 19.3 "Starting the Database Server").

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::binaries::tool;
use crate::cluster::ClusterOptions;
use crate::error::HarnessError;
use crate::privilege::RunAs;
use crate::roles::{pg_hba_conf, SUPERUSER};

/// How long one start attempt may take before it counts as failed.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// The pause between two `pg_isready` probes.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Unix socket paths are limited to 107 bytes; `/.s.PGSQL.65535` takes 16 of them.
const MAX_SOCKET_DIR_LEN: usize = 90;

/// Makes every temporary directory name unique within the process.
static DIR_COUNTER: AtomicU32 = AtomicU32::new(0);

/// Creates `<tmp>/pg-harness-<pid>-<counter>-<nanos>`, mode 0700, owned by `run_as`.
///
/// Falls back to `/tmp` when `std::env::temp_dir()` is too long for a socket path or not
/// traversable by the unprivileged user.
pub(crate) fn make_temp_dir(run_as: &RunAs) -> Result<PathBuf, HarnessError> {
    use std::os::unix::fs::PermissionsExt;

    let mut base = std::env::temp_dir();
    if base.as_os_str().len() > MAX_SOCKET_DIR_LEN - 40 || !run_as.can_traverse(&base) {
        base = PathBuf::from("/tmp");
    }
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let counter = DIR_COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = base.join(format!(
        "pg-harness-{}-{counter}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir(&dir)
        .map_err(|e| HarnessError::io(format!("create directory {}", dir.display()), e))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| HarnessError::io(format!("chmod {}", dir.display()), e))?;
    run_as.chown(&dir)?;
    Ok(dir)
}

/// Runs `initdb` for `data_dir` (which must not exist yet) inside `dir`.
pub(crate) fn initdb(
    bin_dir: &Path,
    run_as: &RunAs,
    dir: &Path,
    data_dir: &Path,
) -> Result<(), HarnessError> {
    let mut cmd = run_as.command(&tool(bin_dir, "initdb"));
    cmd.arg("-D")
        .arg(data_dir)
        .args(["-U", SUPERUSER, "-A", "trust", "--no-sync", "-E", "UTF8"])
        .arg("--locale=C")
        .current_dir(dir);
    run(&mut cmd)
}

/// Writes `pg_hba.conf` and returns the `postgresql.conf` that `initdb` wrote, to which
/// [`write_conf`] appends the harness settings on every start attempt.
pub(crate) fn prepare_conf(
    run_as: &RunAs,
    data_dir: &Path,
    opts: &ClusterOptions,
) -> Result<String, HarnessError> {
    let hba = data_dir.join("pg_hba.conf");
    let mut lines = String::new();
    for line in &opts.hba_first {
        lines.push_str(line);
        lines.push('\n');
    }
    write_owned(run_as, &hba, &(lines + &pg_hba_conf()))?;
    for (name, contents) in &opts.data_files {
        let path = data_dir.join(name);
        write_owned(run_as, &path, contents)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| HarnessError::io(format!("chmod {}", path.display()), e))?;
    }
    let conf = data_dir.join("postgresql.conf");
    std::fs::read_to_string(&conf)
        .map_err(|e| HarnessError::io(format!("read {}", conf.display()), e))
}

/// Rewrites `postgresql.conf` as `initdb`'s version plus our settings for `port`; later
/// lines win, and `opts.extra_conf` comes last so a test can override anything.
pub(crate) fn write_conf(
    run_as: &RunAs,
    data_dir: &Path,
    socket_dir: &Path,
    base: &str,
    port: u16,
    opts: &ClusterOptions,
) -> Result<(), HarnessError> {
    let socket_dir = socket_dir.display().to_string().replace('\'', "''");
    let mut conf = format!(
        "{base}\n# pg-harness\n\
         listen_addresses = '127.0.0.1'\n\
         port = {port}\n\
         unix_socket_directories = '{socket_dir}'\n\
         max_connections = {}\n\
         superuser_reserved_connections = 0\n\
         fsync = off\n\
         synchronous_commit = off\n\
         full_page_writes = off\n\
         shared_buffers = 32MB\n\
         wal_level = minimal\n\
         max_wal_senders = 0\n\
         log_min_messages = warning\n\
         logging_collector = off\n",
        opts.max_connections
    );
    for line in &opts.extra_conf {
        conf.push_str(line);
        conf.push('\n');
    }
    write_owned(run_as, &data_dir.join("postgresql.conf"), &conf)
}

/// A port that was free a moment ago (bind to port 0, read it, release it). Another
/// process may take it before `postgres` binds: [`Started::PortClash`] handles that.
pub(crate) fn free_port() -> Result<u16, HarnessError> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .map_err(|e| HarnessError::io("bind 127.0.0.1:0 to find a free port", e))?;
    listener
        .local_addr()
        .map(|addr| addr.port())
        .map_err(|e| HarnessError::io("read the bound port", e))
}

/// How a start attempt ended.
pub(crate) enum Started {
    /// The server answers on its port.
    Ready(Child),
    /// The port was taken between [`free_port`] and the server's bind: try another.
    PortClash,
    /// The server exited or never became ready; the log tells why.
    Failed,
}

/// Starts `postgres -D data_dir` with output appended to `log`, then polls `pg_isready`
/// every 50 ms until it answers, the child exits, or 60 s pass.
pub(crate) fn start_server(
    bin_dir: &Path,
    run_as: &RunAs,
    dir: &Path,
    data_dir: &Path,
    log: &Path,
    port: u16,
) -> Result<Started, HarnessError> {
    let log_file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| HarnessError::io(format!("open {}", log.display()), e))?;
    let log_start = log_file.metadata().map_or(0, |m| m.len());
    let log_err = log_file
        .try_clone()
        .map_err(|e| HarnessError::io("clone the log handle", e))?;
    let mut cmd = run_as.command(&tool(bin_dir, "postgres"));
    cmd.arg("-D")
        .arg(data_dir)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(log_err);
    scrub_env(&mut cmd);
    let mut child = cmd
        .spawn()
        .map_err(|e| HarnessError::io("spawn postgres", e))?;

    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if child.try_wait().ok().flatten().is_some() {
            let attempt_log = read_from(log, log_start);
            let clash = attempt_log.contains("Address already in use")
                || attempt_log.contains("could not create any TCP/IP sockets");
            return Ok(if clash {
                Started::PortClash
            } else {
                Started::Failed
            });
        }
        if is_ready(bin_dir, port) {
            // Something answered; make sure it was our server and not a squatter.
            if child.try_wait().ok().flatten().is_none() {
                return Ok(Started::Ready(child));
            }
            continue;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(Started::Failed);
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// The postmaster's pid from the first line of `postmaster.pid`.
pub(crate) fn postmaster_pid(data_dir: &Path) -> Option<u32> {
    std::fs::read_to_string(data_dir.join("postmaster.pid"))
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

/// The last `lines` lines of the file at `path` (empty when unreadable).
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    let text = read_from(path, 0);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Removes every `PG*` variable (`PGHOST`, `PGPORT`, `PGDATA`, ...) so the caller's
/// environment cannot redirect a command to another server.
pub(crate) fn scrub_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PG") {
            cmd.env_remove(key);
        }
    }
}

/// Runs `cmd` to completion; a non-zero exit becomes [`HarnessError::CommandFailed`].
pub(crate) fn run(cmd: &mut Command) -> Result<(), HarnessError> {
    scrub_env(cmd);
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| HarnessError::io(format!("run {}", describe(cmd)), e))?;
    if output.status.success() {
        return Ok(());
    }
    let mut stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if stderr.trim().is_empty() {
        stderr = String::from_utf8_lossy(&output.stdout).into_owned();
    }
    Err(HarnessError::CommandFailed {
        command: describe(cmd),
        code: output.status.code(),
        stderr,
    })
}

/// `cmd` as a shell-like line, for error messages.
pub(crate) fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|s| s.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

fn is_ready(bin_dir: &Path, port: u16) -> bool {
    let mut cmd = Command::new(tool(bin_dir, "pg_isready"));
    cmd.args([
        "-q",
        "-t",
        "1",
        "-h",
        "127.0.0.1",
        "-U",
        SUPERUSER,
        "-d",
        "postgres",
    ])
    .arg("-p")
    .arg(port.to_string())
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    scrub_env(&mut cmd);
    cmd.status().is_ok_and(|s| s.success())
}

fn write_owned(run_as: &RunAs, path: &Path, contents: &str) -> Result<(), HarnessError> {
    std::fs::write(path, contents)
        .map_err(|e| HarnessError::io(format!("write {}", path.display()), e))?;
    run_as.chown(path)
}

fn read_from(path: &Path, offset: u64) -> String {
    use std::io::{Seek, SeekFrom};
    let mut bytes = Vec::new();
    if let Ok(mut file) = File::open(path) {
        if file.seek(SeekFrom::Start(offset)).is_ok() {
            let _ = file.read_to_end(&mut bytes);
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}
