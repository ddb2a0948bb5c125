//! [`PgCluster`]: one running throwaway server, its queries for tests, and its teardown.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::binaries::{find_bin_dir, tool};
use crate::error::HarnessError;
use crate::privilege::RunAs;
use crate::roles::{bootstrap_sql, quote_ident, quote_literal, SUPERUSER};
use crate::setup::{self, Started};
use crate::watchdog;

/// How many free ports are tried when another process grabs ours before `postgres` binds.
const START_ATTEMPTS: u32 = 5;
/// How long a stopping server gets for its fast shutdown before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Server log lines quoted in a start error.
const LOG_TAIL_LINES: usize = 30;

/// The one cluster of [`PgCluster::shared`]; never dropped: its watchdog cleans up.
static SHARED: OnceLock<Result<PgCluster, HarnessError>> = OnceLock::new();

/// How to configure a new cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// `max_connections`, with `superuser_reserved_connections = 0` so all of them are
    /// usable by test roles. Default 100.
    pub max_connections: u32,
    /// Lines appended to `postgresql.conf` after the harness's own, so they win.
    pub extra_conf: Vec<String>,
    /// Files written into the data directory before the first start (name, contents),
    /// owned by the server's user with mode 0600: a TLS key and certificates, which
    /// `extra_conf` then names (`ssl_cert_file = 'server.crt'`).
    pub data_files: Vec<(String, String)>,
    /// `pg_hba.conf` lines put before the harness's own (first match wins): for
    /// example `hostnossl all all 127.0.0.1/32 reject` for a server that requires TLS.
    pub hba_first: Vec<String>,
}

impl ClusterOptions {
    /// `ssl = on` with `server` as the server's certificate and key, and `client_ca` as
    /// the CA that client certificates must chain to (`ssl_ca_file`, for `cert` rules).
    pub fn with_tls(mut self, server: &crate::certs::Leaf, client_ca: &crate::certs::Ca) -> Self {
        self.extra_conf.extend([
            "ssl = on".to_string(),
            "ssl_cert_file = 'server.crt'".to_string(),
            "ssl_key_file = 'server.key'".to_string(),
            "ssl_ca_file = 'root.crt'".to_string(),
        ]);
        self.data_files.extend([
            ("server.crt".to_string(), server.cert_pem.clone()),
            ("server.key".to_string(), server.key_pem.clone()),
            ("root.crt".to_string(), client_ca.cert_pem.clone()),
        ]);
        self
    }
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            max_connections: 100,
            extra_conf: Vec::new(),
            data_files: Vec::new(),
            hba_first: Vec::new(),
        }
    }
}

/// A running PostgreSQL server in its own temporary directory, listening on
/// `127.0.0.1:`[`port`](Self::port) and on a unix socket in [`socket_dir`](Self::socket_dir).
///
/// Dropping it (or [`stop`](Self::stop)) shuts the server down and deletes the directory.
#[derive(Debug)]
pub struct PgCluster {
    dir: PathBuf,
    data_dir: PathBuf,
    bin_dir: PathBuf,
    log_path: PathBuf,
    port: u16,
    pid: u32,
    server: Child,
    watchdog: Option<Child>,
    stopped: bool,
}

impl PgCluster {
    /// Creates, starts and bootstraps a cluster: `initdb`, the harness configuration, a
    /// free port (up to 5 tries on a clash), readiness polling for up to 60 s, then the
    /// test roles and [`APP_DB`](crate::APP_DB). Under root, the server runs as `postgres`
    /// (or a created `pgharness` user).
    ///
    /// # Errors
    ///
    /// [`HarnessError::NotInstalled`] without binaries; otherwise the failing step, with
    /// the server log's tail when the server did not come up.
    pub fn start(opts: ClusterOptions) -> Result<PgCluster, HarnessError> {
        let bin_dir = find_bin_dir()?;
        let run_as = RunAs::detect()?;
        let dir = setup::make_temp_dir(&run_as)?;
        let result = Self::start_in(bin_dir, &run_as, dir.clone(), &opts);
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        let cluster = result?;
        // From here on, Drop owns the cleanup.
        cluster.psql("postgres", &bootstrap_sql())?;
        Ok(cluster)
    }

    /// The cluster shared by every test in this test binary, started with default options
    /// on first use. It is never dropped; a watchdog stops it when the process exits.
    ///
    /// # Errors
    ///
    /// The first start's error, again for every caller ([`HarnessError::NotInstalled`]
    /// stays detectable; other errors become [`HarnessError::SharedStartFailed`]).
    pub fn shared() -> Result<&'static PgCluster, HarnessError> {
        match SHARED.get_or_init(|| PgCluster::start(ClusterOptions::default())) {
            Ok(cluster) => Ok(cluster),
            Err(err) => Err(err.duplicate()),
        }
    }

    /// The TCP port on [`host`](Self::host); the unix socket uses the same number.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Always `127.0.0.1`: the server listens on loopback only.
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// The directory holding the `.s.PGSQL.<port>` socket (usable as `host=` in libpq).
    pub fn socket_dir(&self) -> &Path {
        &self.dir
    }

    /// The cluster's data directory (`PGDATA`).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The directory the server binaries came from; `psql` and `pgbench` live there too.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// The postmaster's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// A libpq keyword/value connection string over TCP.
    pub fn conninfo(&self, user: &str, password: Option<&str>, dbname: &str) -> String {
        let mut s = format!(
            "host={} port={} user={} dbname={}",
            self.host(),
            self.port,
            conninfo_value(user),
            conninfo_value(dbname)
        );
        if let Some(password) = password {
            s.push_str(&format!(" password={}", conninfo_value(password)));
        }
        s
    }

    /// A libpq keyword/value connection string over the unix socket (trusted for everyone).
    pub fn socket_conninfo(&self, user: &str, dbname: &str) -> String {
        format!(
            "host={} port={} user={} dbname={}",
            conninfo_value(&self.dir.to_string_lossy()),
            self.port,
            conninfo_value(user),
            conninfo_value(dbname)
        )
    }

    /// Runs `sql` in database `db` as the superuser over the unix socket with
    /// `psql -X -A -t -q -v ON_ERROR_STOP=1`, statement by statement in autocommit mode
    /// (so `CREATE DATABASE` works and `\connect` is allowed). Returns trimmed stdout: one
    /// line per row, columns separated by `|`.
    ///
    /// # Errors
    ///
    /// [`HarnessError::CommandFailed`] with psql's stderr when a statement fails.
    pub fn psql(&self, db: &str, sql: &str) -> Result<String, HarnessError> {
        let mut cmd = Command::new(tool(&self.bin_dir, "psql"));
        cmd.args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&self.dir)
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-U", SUPERUSER, "-d", db, "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        setup::scrub_env(&mut cmd);
        let command = setup::describe(&cmd);
        let mut child = cmd
            .spawn()
            .map_err(|e| HarnessError::io(format!("run {command}"), e))?;
        let mut stdin = child.stdin.take().expect("stdin was configured as piped");
        let input = sql.to_owned();
        // A separate writer: psql's output may fill its pipe before it has read all input.
        let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
        let output = child
            .wait_with_output()
            .map_err(|e| HarnessError::io(format!("wait for {command}"), e))?;
        let _ = writer.join();
        if !output.status.success() {
            return Err(HarnessError::CommandFailed {
                command,
                code: output.status.code(),
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// Creates database `name` owned by `owner`, from `template1`: every role may connect
    /// and create objects in its `public` schema.
    ///
    /// # Errors
    ///
    /// [`HarnessError::CommandFailed`] when PostgreSQL refuses (existing name, no such role).
    pub fn create_database(&self, name: &str, owner: &str) -> Result<(), HarnessError> {
        let sql = format!(
            "CREATE DATABASE {} OWNER {}",
            quote_ident(name),
            quote_ident(owner)
        );
        self.psql("postgres", &sql).map(drop)
    }

    /// `pg_authid.rolpassword` of `role`: `md5<hex>` or `SCRAM-SHA-256$...`, or empty for
    /// a role without a password. This is what a PgBouncer `userlist.txt` holds.
    ///
    /// # Errors
    ///
    /// [`HarnessError::NoSuchRole`], or [`HarnessError::CommandFailed`] when the query fails.
    pub fn role_secret(&self, role: &str) -> Result<String, HarnessError> {
        // The 'x' prefix tells a NULL password (row "x") from a missing role (no row).
        let sql = format!(
            "SELECT 'x' || coalesce(rolpassword, '') FROM pg_authid WHERE rolname = {}",
            quote_literal(role)
        );
        let out = self.psql("postgres", &sql)?;
        match out.strip_prefix('x') {
            Some(secret) => Ok(secret.to_owned()),
            None => Err(HarnessError::NoSuchRole {
                role: role.to_owned(),
            }),
        }
    }

    /// Client backends in `pg_stat_activity`, not counting the asking `psql`, optionally
    /// only those of `user`.
    ///
    /// # Panics
    ///
    /// When the query fails (the server is gone): a test cannot go on without the count.
    pub fn connection_count(&self, user: Option<&str>) -> u32 {
        let mut sql = "SELECT count(*) FROM pg_stat_activity \
                       WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
            .to_owned();
        if let Some(user) = user {
            sql.push_str(&format!(" AND usename = {}", quote_literal(user)));
        }
        let out = self
            .psql("postgres", &sql)
            .unwrap_or_else(|err| panic!("connection_count query failed: {err}"));
        out.parse()
            .unwrap_or_else(|_| panic!("connection_count: unexpected psql output {out:?}"))
    }

    /// Everything the server has logged so far (`log_min_messages = warning`).
    pub fn server_log(&self) -> String {
        std::fs::read(&self.log_path)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    /// Stops the server (fast shutdown, SIGKILL after 10 s) and removes the directory;
    /// the same as dropping it, spelled out.
    pub fn stop(self) {
        drop(self);
    }

    fn start_in(
        bin_dir: PathBuf,
        run_as: &RunAs,
        dir: PathBuf,
        opts: &ClusterOptions,
    ) -> Result<PgCluster, HarnessError> {
        let data_dir = dir.join("data");
        let log_path = dir.join("postgres.log");
        setup::initdb(&bin_dir, run_as, &dir, &data_dir)?;
        let base_conf = setup::prepare_conf(run_as, &data_dir, opts)?;
        for _ in 0..START_ATTEMPTS {
            let port = setup::free_port()?;
            setup::write_conf(run_as, &data_dir, &dir, &base_conf, port, opts)?;
            match setup::start_server(&bin_dir, run_as, &dir, &data_dir, &log_path, port)? {
                Started::Ready(server) => {
                    let pid = setup::postmaster_pid(&data_dir).unwrap_or_else(|| server.id());
                    let mut cluster = PgCluster {
                        dir,
                        data_dir,
                        bin_dir,
                        log_path,
                        port,
                        pid,
                        server,
                        watchdog: None,
                        stopped: false,
                    };
                    cluster.watchdog = Some(watchdog::spawn(pid, &cluster.dir)?);
                    return Ok(cluster);
                }
                Started::PortClash => continue,
                Started::Failed => break,
            }
        }
        Err(HarnessError::StartFailed {
            attempts: START_ATTEMPTS,
            log_tail: setup::tail(&log_path, LOG_TAIL_LINES),
            data_dir,
        })
    }

    fn shutdown(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
        // SIGINT is fast shutdown: unlike SIGTERM it does not wait for open sessions,
        // which a pooler under test may still hold.
        signal(self.pid, "-INT");
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            match self.server.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => {
                    signal(self.pid, "-KILL");
                    let _ = self.server.kill();
                    let _ = self.server.wait();
                    break;
                }
            }
        }
        if std::fs::remove_dir_all(&self.dir).is_err() {
            // A late file (e.g. a backend's temp file) can race the first pass.
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Sends a signal with the `kill` command (std has no `kill(2)` for arbitrary pids).
fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(sig)
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Quotes a libpq connection-string value when it needs it.
fn conninfo_value(value: &str) -> String {
    if !value.is_empty() && !value.contains([' ', '\'', '\\', '=']) {
        return value.to_owned();
    }
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}
