//! The deployment files in `docs/deployments/`, run the way operators run them: the real
//! `pgbouncer-rs` binary started on each file (after replacing only the literal
//! placeholders `port=5432`, `listen_port = 6432`, `/etc/pgbouncer/...`,
//! `/var/run/postgresql`, ... with values for this run), then real clients: psql,
//! psycopg (what Django uses), pgbench and the admin console.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::{free_port, psql, run, stderr, stdout, userlist, Scratch};
use pg_harness::{PgCluster, MD5_PASSWORD, MD5_USER, SCRAM_PASSWORD, SCRAM_USER};

/// The text of `docs/deployments/<name>`.
fn deployment(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs/deployments")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Replaces each literal placeholder (which must be present) and nothing else.
fn substitute(text: &str, pairs: &[(&str, String)]) -> String {
    let mut out = text.to_string();
    for (from, to) in pairs {
        assert!(out.contains(from), "placeholder {from:?} missing");
        out = out.replace(from, to);
    }
    out
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Where the pooler should become reachable.
enum Listen {
    Tcp(u16),
    Unix(PathBuf),
}

/// The running binary; killed and reaped on drop, so a failing assert never leaks it.
struct Pooler {
    child: Child,
    log: PathBuf,
}

impl Pooler {
    /// Starts `cmd` with stdout discarded and stderr in `log`.
    fn spawn(mut cmd: Command, log: PathBuf) -> Pooler {
        let err = std::fs::File::create(&log).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap();
        Pooler { child, log }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls (bounded) until `at` accepts connections.
    async fn wait_listening(&mut self, at: &Listen) {
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        for _ in 0..400 {
            tick.tick().await;
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("pgbouncer-rs exited with {status}:\n{}", self.stderr());
            }
            let up = match at {
                Listen::Tcp(port) => tokio::net::TcpStream::connect(("127.0.0.1", *port))
                    .await
                    .is_ok(),
                Listen::Unix(path) => tokio::net::UnixStream::connect(path).await.is_ok(),
            };
            if up {
                return;
            }
        }
        panic!("pgbouncer-rs did not start listening:\n{}", self.stderr());
    }

    /// SIGTERM (PgBouncer's `SHUTDOWN WAIT_FOR_CLIENTS`), then waits (bounded) for a
    /// clean exit.
    async fn stop(&mut self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        for _ in 0..400 {
            tick.tick().await;
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "exit {status}:\n{}", self.stderr());
                return;
            }
        }
        panic!("pgbouncer-rs did not exit on SIGTERM:\n{}", self.stderr());
    }
}

impl Drop for Pooler {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pgbouncer-rs"))
}

/// `pgbouncer-rs --check-config <ini>` accepts the file.
fn assert_config_ok(ini: &Path) {
    let o = bin().arg("--check-config").arg(ini).output().unwrap();
    assert!(
        o.status.success(),
        "--check-config {}: {}",
        ini.display(),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Asserts that psql succeeded and returns its output.
fn ok(o: &Output, what: &str) -> String {
    assert!(o.status.success(), "{what}: {}", stderr(o));
    stdout(o)
}

/// The `SHOW POOLS` row of (`db`, `user`) from `psql -At` output, split into columns.
fn pool_row(show_pools: &str, db: &str, user: &str) -> Option<Vec<String>> {
    show_pools
        .lines()
        .map(|l| l.split('|').map(str::to_string).collect::<Vec<_>>())
        .find(|c| c.len() >= 16 && c[0] == db && c[1] == user)
}

/// SHOW POOLS column index.
const SV_ACTIVE: usize = 6;
const SV_IDLE: usize = 9;
const SV_USED: usize = 10;
const SV_TESTED: usize = 11;
const SV_LOGIN: usize = 12;
const POOL_MODE: usize = 15;

fn servers_in(row: &[String]) -> u32 {
    [SV_ACTIVE, SV_IDLE, SV_USED, SV_TESTED, SV_LOGIN]
        .iter()
        .map(|&i| row[i].parse::<u32>().unwrap())
        .sum()
}

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"))
}

/// What a Django request cycle does through psycopg 3 with `CONN_MAX_AGE = 0`: connect,
/// client-side binding (`ClientCursor`, Django's default), autocommit, set the time zone
/// when it differs, `atomic()` blocks (BEGIN/COMMIT), a nested `atomic()` (SAVEPOINT)
/// that fails and rolls back, an `atomic()` that raises (ROLLBACK). 8 threads (gunicorn
/// `--threads 8`) do 10 requests each.
const DJANGO_SCRIPT: &str = r#"
import os, sys, threading
import psycopg

DSN = os.environ["DSN"]
TZ = "Europe/Paris"

def connect():
    conn = psycopg.connect(DSN, cursor_factory=psycopg.ClientCursor, autocommit=True)
    if conn.info.parameter_status("TimeZone") != TZ:
        conn.execute("SELECT set_config('TimeZone', %s, false)", [TZ])
    return conn

with connect() as conn:
    conn.execute("DROP TABLE IF EXISTS polls_choice")
    conn.execute("CREATE TABLE polls_choice (id bigserial PRIMARY KEY, "
                 "choice_text varchar(200) NOT NULL, votes integer NOT NULL)")

errors = []
tz_mismatches = []

def request(n):
    try:
        with connect() as conn:
            with conn.transaction():
                pk = conn.execute("INSERT INTO polls_choice (choice_text, votes) "
                                  "VALUES (%s, %s) RETURNING id", [f"choice {n}", 0]).fetchone()[0]
                conn.execute("UPDATE polls_choice SET votes = votes + 1 WHERE id = %s", [pk])
                try:
                    with conn.transaction():
                        conn.execute("SELECT 1 / 0")
                except psycopg.errors.DivisionByZero:
                    pass
            try:
                with conn.transaction():
                    conn.execute("UPDATE polls_choice SET votes = votes + 100 WHERE id = %s", [pk])
                    raise ValueError("rolled back")
            except ValueError:
                pass
            tz = conn.execute("SHOW TimeZone").fetchone()[0]
            if tz != TZ:
                tz_mismatches.append(tz)
    except Exception as e:
        errors.append(repr(e))

def worker(i):
    for j in range(10):
        request(i * 10 + j)

threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()

with connect() as conn:
    rows, votes = conn.execute("SELECT count(*), sum(votes) FROM polls_choice").fetchone()
print(f"rows={rows} votes={votes} errors={len(errors)}")
print(f"time zone mismatches={len(tz_mismatches)} {sorted(set(tz_mismatches))}")
for e in errors[:5]:
    print(e, file=sys.stderr)
"#;

fn psycopg_available() -> bool {
    Command::new("python3")
        .args(["-c", "import psycopg"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `django-transaction.ini` with `django-userlist.txt`, running. Fields drop in order:
/// the pooler is killed before its directory is removed.
struct Django {
    pooler: Pooler,
    port: u16,
    sock_dir: PathBuf,
    logfile: PathBuf,
    pidfile: PathBuf,
    _dir: Scratch,
}

async fn start_django(pg: &PgCluster) -> Django {
    let dir = Scratch::new("deploy-django");
    let users = deployment("django-userlist.txt");
    // The shipped hash is md5user's real one, as PostgreSQL stores it.
    let secret = pg.role_secret(MD5_USER).unwrap();
    assert!(
        users.contains(&format!("\"{MD5_USER}\" \"{secret}\"")),
        "django-userlist.txt does not hold md5user's hash {secret}"
    );
    let userlist_path = dir.0.join("userlist.txt");
    std::fs::write(&userlist_path, users).unwrap();
    let sock_dir = dir.0.join("run");
    std::fs::create_dir_all(&sock_dir).unwrap();
    let logfile = dir.0.join("pgbouncer.log");
    let pidfile = dir.0.join("pgbouncer.pid");
    let port = free_port();
    let ini = substitute(
        &deployment("django-transaction.ini"),
        &[
            ("port=5432", format!("port={}", pg.port())),
            ("listen_port = 6432", format!("listen_port = {port}")),
            ("/etc/pgbouncer/userlist.txt", path_str(&userlist_path)),
            ("/var/run/postgresql", path_str(&sock_dir)),
            ("/var/log/pgbouncer/pgbouncer.log", path_str(&logfile)),
            ("/var/run/pgbouncer/pgbouncer.pid", path_str(&pidfile)),
        ],
    );
    let ini_path = dir.0.join("pgbouncer.ini");
    std::fs::write(&ini_path, ini).unwrap();
    assert_config_ok(&ini_path);
    let mut cmd = bin();
    cmd.arg(&ini_path);
    let mut pooler = Pooler::spawn(cmd, dir.0.join("stderr.log"));
    pooler.wait_listening(&Listen::Tcp(port)).await;
    Django {
        pooler,
        port,
        sock_dir,
        logfile,
        pidfile,
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_django_transaction_mode_file_serves_psql_psycopg_pgbench_and_the_console() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let mut django = start_django(pg).await;
    let Django {
        port,
        ref sock_dir,
        ref logfile,
        ref pidfile,
        ..
    } = django;
    let (sock_dir, logfile, pidfile) = (sock_dir.clone(), logfile.clone(), pidfile.clone());

    let app =
        format!("host=127.0.0.1 port={port} user={MD5_USER} password={MD5_PASSWORD} dbname=appdb");
    let o = psql(pg, &app, "select current_user, current_database()").await;
    assert_eq!(ok(&o, "psql"), format!("{MD5_USER}|appdb"));
    // The same through the Unix socket next to PostgreSQL's.
    let over_socket = format!(
        "host={} port={port} user={MD5_USER} password={MD5_PASSWORD} dbname=appdb",
        sock_dir.display()
    );
    let o = psql(pg, &over_socket, "select 7").await;
    assert_eq!(ok(&o, "psql over the socket"), "7");
    // ignore_startup_parameters = extra_float_digits: accepted (here inside options).
    let o = psql(
        pg,
        &format!("{app} options='-c extra_float_digits=3'"),
        "select 1",
    )
    .await;
    assert_eq!(ok(&o, "extra_float_digits"), "1");
    let o = psql(pg, &format!("{app} options='-c work_mem=64MB'"), "select 1").await;
    assert!(
        stderr(&o).contains("unsupported startup parameter in options: work_mem"),
        "{}",
        stderr(&o)
    );
    let o = psql(
        pg,
        &format!("host=127.0.0.1 port={port} user={MD5_USER} password=wrong dbname=appdb"),
        "select 1",
    )
    .await;
    assert!(
        stderr(&o).contains("password authentication failed"),
        "{}",
        stderr(&o)
    );

    // Django through psycopg 3.
    if psycopg_available() {
        let o = tokio::process::Command::new("python3")
            .args(["-c", DJANGO_SCRIPT])
            .env("DSN", &app)
            .output()
            .await
            .unwrap();
        let out = stdout(&o);
        assert_eq!(
            out.lines().next().unwrap_or_default(),
            "rows=80 votes=80 errors=0",
            "psycopg: {out}\n{}",
            stderr(&o)
        );
        // Asserted precisely by
        // a_client_in_transaction_mode_does_not_inherit_the_time_zone_an_earlier_client_set.
        eprintln!("psycopg: {out}");
    } else if ci() {
        panic!("CI is set but python3 cannot import psycopg");
    } else {
        eprintln!("SKIPPED: the psycopg (Django) part: python3 cannot import psycopg");
    }

    // pgbench: 30 clients on a pool of 20 (+5 reserve), simple protocol.
    let o = run(pg, "pgbench", &["-i", "-q", "-s", "1", &app]).await;
    assert!(o.status.success(), "pgbench -i: {}", stderr(&o));
    let o = run(
        pg,
        "pgbench",
        &["-n", "-c", "30", "-j", "2", "-T", "3", "-M", "simple", &app],
    )
    .await;
    let out = stdout(&o);
    assert!(o.status.success(), "pgbench: {out}\n{}", stderr(&o));
    let processed: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
        .and_then(|n| n.split('/').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no transaction count in: {out}"));
    assert!(processed > 0, "{out}");
    if let Some(failed) = out
        .lines()
        .find(|l| l.starts_with("number of failed transactions:"))
    {
        assert!(failed.contains(": 0 "), "{failed}");
    }
    let on_server = pg.connection_count(Some(MD5_USER));
    assert!(
        on_server <= 25,
        "PostgreSQL sees {on_server} md5user connections, more than pool + reserve"
    );

    // The admin console, as the seeds' runbooks use it.
    let admin =
        format!("host=127.0.0.1 port={port} user=admin password=adminpass dbname=pgbouncer");
    let pools = ok(&psql(pg, &admin, "SHOW POOLS").await, "SHOW POOLS");
    let row = pool_row(&pools, "appdb", MD5_USER)
        .unwrap_or_else(|| panic!("no appdb/md5user pool in:\n{pools}"));
    assert_eq!(row[POOL_MODE], "transaction", "{pools}");
    assert!(servers_in(&row) <= 25, "{pools}");
    assert!(servers_in(&row) >= 1, "{pools}");
    // The inline `; comment`s were dropped from the values.
    let config = ok(&psql(pg, &admin, "SHOW CONFIG").await, "SHOW CONFIG");
    for line in [
        "max_client_conn|1000|",
        "default_pool_size|20|",
        "reserve_pool_size|5|",
        "max_db_connections|50|",
        "pool_mode|transaction|",
        "ignore_startup_parameters|extra_float_digits|",
    ] {
        assert!(config.contains(line), "{line} not in:\n{config}");
    }
    // stats_users may look but not touch.
    let stats = format!(
        "host=127.0.0.1 port={port} user={MD5_USER} password={MD5_PASSWORD} dbname=pgbouncer"
    );
    ok(
        &psql(pg, &stats, "SHOW STATS").await,
        "SHOW STATS as md5user",
    );
    let o = psql(pg, &stats, "PAUSE").await;
    assert!(stderr(&o).contains("admin access needed"), "{}", stderr(&o));

    // logfile and pidfile from the file.
    let pid: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(pid, django.pooler.child.id());
    let log = std::fs::read_to_string(&logfile).unwrap();
    assert!(
        log.contains(&format!("login attempt: db=appdb user={MD5_USER}")),
        "logfile:\n{log}"
    );
    django.pooler.stop().await;
    assert!(!pidfile.exists(), "pidfile removed at exit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hba_and_auth_query_file_looks_up_md5_and_scram_users_on_the_server() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("deploy-hba");
    // Only the auth_user: PostgreSQL trusts postgres from 127.0.0.1.
    let userlist_path = dir.0.join("userlist.txt");
    std::fs::write(&userlist_path, "\"postgres\" \"\"\n").unwrap();
    let hba_path = dir.0.join("pg_hba.conf");
    std::fs::write(&hba_path, deployment("pg_hba.conf")).unwrap();
    let sock_dir = dir.0.join("run");
    std::fs::create_dir_all(&sock_dir).unwrap();
    let port = free_port();
    let ini = substitute(
        &deployment("hba-auth-query.ini"),
        &[
            ("port=5432", format!("port={}", pg.port())),
            ("listen_port = 6432", format!("listen_port = {port}")),
            ("/etc/pgbouncer/userlist.txt", path_str(&userlist_path)),
            ("/etc/pgbouncer/pg_hba.conf", path_str(&hba_path)),
            ("/var/run/postgresql", path_str(&sock_dir)),
        ],
    );
    let ini_path = dir.0.join("pgbouncer.ini");
    std::fs::write(&ini_path, ini).unwrap();
    assert_config_ok(&ini_path);
    let mut cmd = bin();
    cmd.arg(&ini_path);
    let mut pooler = Pooler::spawn(cmd, dir.0.join("stderr.log"));
    pooler.wait_listening(&Listen::Tcp(port)).await;

    let conninfo = |user: &str, password: &str| {
        format!("host=127.0.0.1 port={port} user={user} password={password} dbname=appdb")
    };
    for (user, password) in [(MD5_USER, MD5_PASSWORD), (SCRAM_USER, SCRAM_PASSWORD)] {
        // Twice: the second login runs auth_query again and reuses the pool.
        for _ in 0..2 {
            let o = psql(pg, &conninfo(user, password), "select current_user").await;
            assert_eq!(ok(&o, user), user);
        }
        let o = psql(pg, &conninfo(user, "wrong"), "select 1").await;
        assert!(
            stderr(&o).contains("authentication failed"),
            "{user}: {}",
            stderr(&o)
        );
    }
    // plainuser exists on the server, but the hba file rejects it.
    let o = psql(pg, &conninfo("plainuser", "plainpass"), "select 1").await;
    assert!(stderr(&o).contains("login rejected"), "{}", stderr(&o));
    // auth_query finds no row.
    let o = psql(pg, &conninfo("ghost_user", "x"), "select 1").await;
    assert!(stderr(&o).contains("no such user"), "{}", stderr(&o));
    // The console from the pooler's own OS user over the socket, no password.
    let console = format!(
        "host={} port={port} user=pgbouncer dbname=pgbouncer",
        sock_dir.display()
    );
    let pools = ok(&psql(pg, &console, "SHOW POOLS").await, "SHOW POOLS");
    for user in [MD5_USER, SCRAM_USER] {
        let row =
            pool_row(&pools, "appdb", user).unwrap_or_else(|| panic!("no {user} pool:\n{pools}"));
        assert_eq!(row[POOL_MODE], "transaction");
    }
    let config = ok(&psql(pg, &console, "SHOW CONFIG").await, "SHOW CONFIG");
    assert!(config.contains("auth_type|hba|"), "{config}");
    assert!(config.contains("auth_user|postgres|"), "{config}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_mode_unix_socket_file_keeps_session_state_and_resets_it_between_clients() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("deploy-unix");
    let userlist_path = dir.0.join("userlist.txt");
    std::fs::write(&userlist_path, userlist(pg)).unwrap();
    // The pooler's socket goes next to PostgreSQL's, and servers are reached through
    // PostgreSQL's socket in the same directory: both are /var/run/postgresql.
    let sock_dir = pg.socket_dir().to_path_buf();
    let port = free_port();
    let ini = substitute(
        &deployment("session-unix.ini"),
        &[
            ("port=5432", format!("port={}", pg.port())),
            ("listen_port = 6432", format!("listen_port = {port}")),
            ("/etc/pgbouncer/userlist.txt", path_str(&userlist_path)),
            ("/var/run/postgresql", path_str(&sock_dir)),
        ],
    );
    let ini_path = dir.0.join("pgbouncer.ini");
    std::fs::write(&ini_path, ini).unwrap();
    assert_config_ok(&ini_path);
    let socket = sock_dir.join(format!(".s.PGSQL.{port}"));
    let mut cmd = bin();
    cmd.arg(&ini_path);
    let mut pooler = Pooler::spawn(cmd, dir.0.join("stderr.log"));
    pooler.wait_listening(&Listen::Unix(socket.clone())).await;
    // listen_addr is empty: no TCP listener.
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err(),
        "a TCP listener exists despite an empty listen_addr"
    );

    let app = format!(
        "host={} port={port} user={MD5_USER} password={MD5_PASSWORD} dbname=appdb",
        sock_dir.display()
    );
    // Session state survives across transactions of one client.
    let o = run(
        pg,
        "psql",
        &[
            "-X",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            &app,
            "-c",
            "set myapp.tenant = 'acme'",
            "-c",
            "create temp table cart(item text)",
            "-c",
            "begin; insert into cart values ('book'); commit",
            "-c",
            "select current_setting('myapp.tenant'), (select count(*) from cart), pg_backend_pid()",
        ],
    )
    .await;
    let out = ok(&o, "session");
    let last = out.lines().last().unwrap_or_default().to_string();
    let cols: Vec<&str> = last.split('|').collect();
    assert_eq!(&cols[..2], &["acme", "1"], "{out}");
    let first_pid = cols[2].to_string();

    // After the client leaves, DISCARD ALL runs and the server goes back to idle.
    let admin = format!(
        "host={} port={port} user=admin password=adminpass dbname=pgbouncer",
        sock_dir.display()
    );
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let mut pools = String::new();
    for _ in 0..200 {
        tick.tick().await;
        pools = ok(&psql(pg, &admin, "SHOW POOLS").await, "SHOW POOLS");
        if let Some(row) = pool_row(&pools, "appdb", MD5_USER) {
            if row[SV_IDLE] == "1" && servers_in(&row) == 1 {
                assert_eq!(row[POOL_MODE], "session");
                break;
            }
        }
    }
    let row = pool_row(&pools, "appdb", MD5_USER).unwrap();
    assert_eq!(
        (row[SV_IDLE].as_str(), servers_in(&row)),
        ("1", 1),
        "{pools}"
    );
    // The next client gets the same server connection, reset.
    let o = psql(
        pg,
        &app,
        "select current_setting('myapp.tenant', true), (select count(*) from pg_class where relname = 'cart' and relpersistence = 't'), pg_backend_pid()",
    )
    .await;
    assert_eq!(ok(&o, "after reset"), format!("|0|{first_pid}"));

    // SCRAM users log in too (the server trusts the socket).
    let o = psql(
        pg,
        &format!(
            "host={} port={port} user={SCRAM_USER} password={SCRAM_PASSWORD} dbname=appdb_reports",
            sock_dir.display()
        ),
        "select current_user, current_database()",
    )
    .await;
    assert_eq!(ok(&o, "scramuser"), format!("{SCRAM_USER}|appdb"));
    let dbs = ok(&psql(pg, &admin, "SHOW DATABASES").await, "SHOW DATABASES");
    let reports = dbs
        .lines()
        .find(|l| l.starts_with("appdb_reports|"))
        .unwrap_or_else(|| panic!("{dbs}"));
    let cols: Vec<&str> = reports.split('|').collect();
    // name|host|port|database|force_user|pool_size: no host (the socket dir), pool_size 2.
    assert_eq!(
        &cols[..6],
        &[
            "appdb_reports",
            "",
            &pg.port().to_string(),
            "appdb",
            "",
            "2"
        ],
        "{dbs}"
    );
    pooler.stop().await;
    assert!(!socket.exists(), "{} left behind", socket.display());
}

/// `KEY=value` lines of a docker `--env-file`: blank lines and `#` lines skipped.
fn env_file(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|l| {
            let (k, v) = l
                .split_once('=')
                .unwrap_or_else(|| panic!("not KEY=value: {l}"));
            (k.to_string(), v.to_string())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_container_env_file_runs_the_binary_without_an_ini_file() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("deploy-env");
    let port = free_port();
    let text = substitute(
        &deployment("container.env"),
        &[
            (
                "DATABASES_PORT=5432",
                format!("DATABASES_PORT={}", pg.port()),
            ),
            (
                "PGBOUNCER_LISTEN_PORT=6432",
                format!("PGBOUNCER_LISTEN_PORT={port}"),
            ),
        ],
    );
    let vars = env_file(&text);
    let o = bin()
        .arg("--check-config")
        .env_clear()
        .envs(vars.iter().cloned())
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "--check-config: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let mut cmd = bin();
    cmd.env_clear().envs(vars.iter().cloned());
    let mut pooler = Pooler::spawn(cmd, dir.0.join("stderr.log"));
    pooler.wait_listening(&Listen::Tcp(port)).await;

    // auth_type=any: any user name, no password; the server sees DATABASES_USER and
    // DATABASES_DBNAME whatever database name the client asked for.
    let o = psql(
        pg,
        &format!("host=127.0.0.1 port={port} user=whoever dbname=mydb"),
        "select current_user, current_database()",
    )
    .await;
    assert_eq!(ok(&o, "psql"), format!("{MD5_USER}|appdb"));
    let o = psql(
        pg,
        &format!(
            "host=127.0.0.1 port={port} user=django dbname=mydb options='-c extra_float_digits=3'"
        ),
        "begin; select 1; commit",
    )
    .await;
    ok(&o, "transaction");

    // Everyone may look at the console; only admin_users may act.
    let anyone = format!("host=127.0.0.1 port={port} user=whoever dbname=pgbouncer");
    let pools = ok(&psql(pg, &anyone, "SHOW POOLS").await, "SHOW POOLS");
    let row = pool_row(&pools, "mydb", MD5_USER)
        .unwrap_or_else(|| panic!("no mydb/md5user pool:\n{pools}"));
    assert_eq!(row[POOL_MODE], "transaction");
    let o = psql(pg, &anyone, "RELOAD").await;
    assert!(stderr(&o).contains("admin access needed"), "{}", stderr(&o));
    let admin = format!("host=127.0.0.1 port={port} user=admin dbname=pgbouncer");
    let config = ok(&psql(pg, &admin, "SHOW CONFIG").await, "SHOW CONFIG");
    for line in [
        "max_client_conn|1000|",
        "default_pool_size|20|",
        "auth_type|any|",
        &format!("listen_port|{port}|"),
    ] {
        assert!(config.contains(line), "{line} not in:\n{config}");
    }
    // RELOAD with no file re-reads the environment.
    ok(&psql(pg, &admin, "RELOAD").await, "RELOAD");
    let o = psql(
        pg,
        &format!("host=127.0.0.1 port={port} user=whoever dbname=mydb"),
        "select 2",
    )
    .await;
    assert_eq!(ok(&o, "after RELOAD"), "2");
}

/// PgBouncer fills a client's unset tracked parameters (TimeZone, DateStyle, ...) from
/// the pool's welcome at login (`varcache_fill_unset` in `welcome_client`), so a client
/// always runs with the values it was told at login: when it is lent a server on which
/// an earlier client changed one, the pooler SETs it back first. Django relies on this:
/// it only runs `set_config('TimeZone', ...)` when the login's TimeZone differs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_in_transaction_mode_does_not_inherit_the_time_zone_an_earlier_client_set() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let django = start_django(pg).await;
    let app = format!(
        "host=127.0.0.1 port={} user={MD5_USER} password={MD5_PASSWORD} dbname=appdb",
        django.port
    );
    let original = pg.psql("appdb", "show timezone").unwrap();
    let zone = if original == "Asia/Tokyo" {
        "Europe/Paris"
    } else {
        "Asia/Tokyo"
    };
    // One server in the pool; the first client leaves it with another time zone.
    let o = psql(pg, &app, &format!("set timezone = '{zone}'")).await;
    ok(&o, "set timezone");
    // The next client sent no TimeZone at startup and was told `original` at login.
    let o = psql(pg, &app, "show timezone").await;
    assert_eq!(
        ok(&o, "show timezone"),
        original,
        "a new client ran with the time zone the previous client set"
    );
}
