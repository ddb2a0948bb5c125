//! Drop-in compatibility with real clients: auth_query, hba with peer over the Unix
//! socket, cancel requests, COPY in transaction mode, and configuration from the
//! environment only.

mod common;

use std::time::Duration;

use common::*;
use pg_harness::{PgCluster, MD5_PASSWORD, MD5_USER, SCRAM_PASSWORD, SCRAM_USER};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_query_fetches_md5_and_scram_secrets_from_the_server() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("authq");
    // Only the auth_user is in the userlist: everyone else is looked up.
    let text = ini(pg, &dir, "auth_user = postgres\npool_mode = transaction");
    std::fs::write(dir.0.join("userlist.txt"), "\"postgres\" \"\"\n").unwrap();
    let d = pgbouncer_rs::Daemon::start(settings(&text, &dir))
        .await
        .unwrap();
    for (user, pass) in [(MD5_USER, MD5_PASSWORD), (SCRAM_USER, SCRAM_PASSWORD)] {
        let o = psql(
            pg,
            &conninfo(&d, user, pass, "appdb"),
            "select current_user",
        )
        .await;
        assert_eq!(stdout(&o), user, "{user}: {}", stderr(&o));
    }
    let e = connect(&conninfo(&d, MD5_USER, "wrong", "appdb"))
        .await
        .unwrap_err();
    assert_eq!(db_error(&e).2, "password authentication failed");
    let e = connect(&conninfo(&d, "ghost_user", "x", "appdb"))
        .await
        .unwrap_err();
    assert_eq!(
        db_error(&e),
        ("FATAL".into(), "08P01".into(), "no such user".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hba_rules_pick_the_method_per_user_and_address() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("hba");
    let hba = dir.0.join("pg_hba.conf");
    std::fs::write(
        &hba,
        "# TYPE DATABASE USER ADDRESS METHOD\n\
         host all md5user 127.0.0.1/32 md5\n\
         host all plainuser 127.0.0.0 255.0.0.0 password\n\
         host all scramuser 127.0.0.1/32 scram-sha-256\n\
         host all all 0.0.0.0/0 reject\n",
    )
    .unwrap();
    let extra = format!("auth_type = hba\nauth_hba_file = {}", hba.display());
    let d = start(pg, &dir, &extra).await;
    for (user, pass) in [
        (MD5_USER, MD5_PASSWORD),
        ("plainuser", "plainpass"),
        (SCRAM_USER, SCRAM_PASSWORD),
    ] {
        let o = psql(pg, &conninfo(&d, user, pass, "appdb"), "select 1").await;
        assert_eq!(stdout(&o), "1", "{user}: {}", stderr(&o));
        let e = connect(&conninfo(&d, user, "wrong", "appdb"))
            .await
            .unwrap_err();
        assert!(db_error(&e).2.ends_with("authentication failed"), "{user}");
    }
    let e = connect(&conninfo(&d, "admin", "adminpass", "appdb"))
        .await
        .unwrap_err();
    assert_eq!(db_error(&e).2, "login rejected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_socket_listener_serves_clients_and_peer_auth_maps_the_os_user() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("unix");
    let os_user = std::env::var("USER").unwrap_or_else(|_| "root".into());
    let hba = dir.0.join("hba.conf");
    std::fs::write(
        &hba,
        "local all all peer map=app\nhost all all 127.0.0.1/32 md5\n",
    )
    .unwrap();
    let ident = dir.0.join("ident.conf");
    std::fs::write(&ident, format!("app {os_user} {MD5_USER}\n")).unwrap();
    let port = free_port();
    // unix_socket_group by name: our own primary group (always allowed).
    let gid: u32 = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("Gid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .parse()
        .unwrap();
    let group = std::fs::read_to_string("/etc/group")
        .unwrap()
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 2 && f[2] == gid.to_string()).then(|| f[0].to_string())
        })
        .unwrap_or_else(|| gid.to_string());
    let extra = format!(
        "auth_type = hba\nauth_hba_file = {}\nauth_ident_file = {}\nunix_socket_dir = {}\nlisten_port = {port}\nunix_socket_group = {group}\nunix_socket_mode = 0770",
        hba.display(),
        ident.display(),
        dir.0.display()
    );
    let text = ini(pg, &dir, &extra).replace("listen_port = 0\nunix_socket_dir =\n", "");
    let d = pgbouncer_rs::Daemon::start(settings(&text, &dir))
        .await
        .unwrap();
    let socket = dir.0.join(format!(".s.PGSQL.{port}"));
    assert!(socket.exists(), "unix socket {socket:?} missing");
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let meta = std::fs::metadata(&socket).unwrap();
        assert_eq!(meta.gid(), gid, "unix_socket_group applied");
        assert_eq!(
            meta.permissions().mode() & 0o777,
            0o770,
            "unix_socket_mode applied"
        );
    }
    // peer: no password, the OS user maps to md5user.
    let ci = format!(
        "host={} port={port} user={MD5_USER} dbname=appdb",
        dir.0.display()
    );
    let o = psql(pg, &ci, "select current_user").await;
    assert_eq!(stdout(&o), MD5_USER, "{}", stderr(&o));
    // Not in the map: refused.
    let ci = format!(
        "host={} port={port} user=plainuser dbname=appdb",
        dir.0.display()
    );
    let o = psql(pg, &ci, "select 1").await;
    assert!(
        stderr(&o).contains("unix socket login rejected"),
        "{}",
        stderr(&o)
    );
    // TCP still works with md5.
    let o = psql(pg, &md5_conninfo(&d), "select 2").await;
    assert_eq!(stdout(&o), "2", "{}", stderr(&o));
    // The admin console via the socket as `pgbouncer` from our own OS user, no password.
    let ci = format!(
        "host={} port={port} user=pgbouncer dbname=pgbouncer",
        dir.0.display()
    );
    let o = psql(pg, &ci, "show state").await;
    assert!(
        stdout(&o).contains("paused|no"),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );
    d.shutdown(pgbouncer_rs::ShutdownMode::Immediate).await;
    assert!(!socket.exists(), "socket file removed at shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_request_stops_a_running_query_on_the_right_server() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("cancel");
    let d = start(pg, &dir, "pool_mode = transaction").await;
    let c = connect(&md5_conninfo(&d)).await.unwrap();
    let other = connect(&md5_conninfo(&d)).await.unwrap();
    let token = c.cancel_token();
    let running = tokio::spawn(async move { c.simple_query("select pg_sleep(10)").await });
    // Wait until the sleep is really running on a server.
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for _ in 0..250 {
        tick.tick().await;
        let n = pg
            .psql("postgres", "select count(*) from pg_stat_activity where query = 'select pg_sleep(10)' and state = 'active'")
            .unwrap();
        if n == "1" {
            break;
        }
    }
    token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let r = tokio::time::timeout(Duration::from_secs(8), running)
        .await
        .expect("cancel took effect")
        .unwrap();
    let e = r.unwrap_err();
    assert_eq!(db_error(&e).1, "57014", "{e}");
    // The other client and the pool are fine.
    let rows = other.simple_query("select 1").await.unwrap();
    assert!(!rows.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_in_and_out_work_in_transaction_mode() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("copy");
    let d = start(pg, &dir, "pool_mode = transaction\ndefault_pool_size = 2").await;
    let data = dir.0.join("in.txt");
    let rows: String = (1..=50_000).map(|i| format!("{i}\tline {i}\n")).collect();
    std::fs::write(&data, &rows).unwrap();
    let out = dir.0.join("out.txt");
    let script = format!(
        "create table if not exists copy_t(a int, b text);\ntruncate copy_t;\n\\copy copy_t from '{}'\nselect count(*) from copy_t;\n\\copy (select * from copy_t order by a) to '{}'\n",
        data.display(),
        out.display()
    );
    let script_path = dir.0.join("copy.sql");
    std::fs::write(&script_path, &script).unwrap();
    let o = run(
        pg,
        "psql",
        &[
            "-X",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            &md5_conninfo(&d),
            "-f",
            &script_path.to_string_lossy(),
        ],
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("50000"), "{}", stdout(&o));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), rows);
    // A COPY that fails half way (bad data) leaves a usable server behind.
    let bad = dir.0.join("bad.sql");
    std::fs::write(
        &bad,
        "copy copy_t from stdin;\n1\tok\nnot-a-number\tbad\n\\.\n",
    )
    .unwrap();
    let o = run(
        pg,
        "psql",
        &[
            "-X",
            "-A",
            "-t",
            &md5_conninfo(&d),
            "-f",
            &bad.to_string_lossy(),
        ],
    )
    .await;
    assert!(
        stderr(&o).contains("invalid input syntax for type integer"),
        "{}",
        stderr(&o)
    );
    let o = psql(pg, &md5_conninfo(&d), "select count(*) from copy_t").await;
    assert_eq!(stdout(&o), "50000", "{}", stderr(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_runs_from_environment_variables_alone() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let port = free_port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_pgbouncer-rs"))
        .env_clear()
        .env("DATABASES_HOST", "127.0.0.1")
        .env("DATABASES_PORT", pg.port().to_string())
        .env("DATABASES_USER", MD5_USER)
        .env("DATABASES_PASSWORD", MD5_PASSWORD)
        .env("DATABASES_DBNAME", "appdb")
        .env("PGBOUNCER_LISTEN_ADDR", "127.0.0.1")
        .env("PGBOUNCER_LISTEN_PORT", port.to_string())
        .env("PGBOUNCER_UNIX_SOCKET_DIR", "")
        .env("PGBOUNCER_AUTH_TYPE", "any")
        .env("PGBOUNCER_POOL_MODE", "transaction")
        .env("PGBOUNCER_DEFAULT_POOL_SIZE", "5")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let ci = format!("host=127.0.0.1 port={port} user=whoever dbname=mydb");
    let mut last = String::new();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    for _ in 0..200 {
        tick.tick().await;
        let o = psql(pg, &ci, "select current_user, current_database()").await;
        if o.status.success() {
            last = stdout(&o);
            break;
        }
        last = stderr(&o);
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(last, format!("{MD5_USER}|appdb"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_connections_are_passed_through_on_a_dedicated_server() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = common::replication_cluster();
    let dir = Scratch::new("repl");
    let d = start(&pg, &dir, "pool_mode = transaction").await;
    for mode in ["database", "true"] {
        let ci = format!("{} replication={mode}", md5_conninfo(&d));
        let o = psql(&pg, &ci, "IDENTIFY_SYSTEM").await;
        assert!(o.status.success(), "replication={mode}: {}", stderr(&o));
        let out = stdout(&o);
        let system_id = pg
            .psql(
                "postgres",
                "select system_identifier from pg_control_system()",
            )
            .unwrap();
        assert!(out.starts_with(&system_id), "replication={mode}: {out}");
    }
    // `options` of a replication connection go to its server verbatim, whatever they
    // set (a normal client could only set tracked parameters there).
    let ci = format!(
        "{} replication=database options='-c enable_seqscan=off'",
        md5_conninfo(&d)
    );
    let o = psql(&pg, &ci, "SHOW enable_seqscan").await;
    assert_eq!(stdout(&o), "off", "{}", stderr(&o));
    // A replication login PostgreSQL refuses (no pg_hba line for it): `login failed`.
    let ci = format!(
        "{} replication=database",
        conninfo(&d, SCRAM_USER, SCRAM_PASSWORD, "appdb")
    );
    let o = psql(&pg, &ci, "IDENTIFY_SYSTEM").await;
    assert!(
        stderr(&o).contains("FATAL:  login failed"),
        "{}",
        stderr(&o)
    );
    // A normal client of the same pool still pools as usual.
    let o = psql(&pg, &md5_conninfo(&d), "select 3").await;
    assert_eq!(stdout(&o), "3", "{}", stderr(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_auth_type_accepts_the_right_secret_and_refuses_the_rest_with_pgbouncers_errors() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    // (auth_type, user, right password, text for a wrong password, text for an unknown user)
    let cases: [(&str, &str, &str, Option<&str>, &str); 5] = [
        (
            "trust",
            MD5_USER,
            "anything",
            None,
            "\"trust\" authentication failed",
        ),
        (
            "plain",
            "plainuser",
            "plainpass",
            Some("password authentication failed"),
            "password authentication failed",
        ),
        (
            "md5",
            MD5_USER,
            MD5_PASSWORD,
            Some("password authentication failed"),
            "password authentication failed",
        ),
        (
            "scram-sha-256",
            SCRAM_USER,
            SCRAM_PASSWORD,
            Some("SASL authentication failed"),
            "SASL authentication failed",
        ),
        (
            "md5",
            SCRAM_USER,
            SCRAM_PASSWORD,
            Some("SASL authentication failed"),
            "password authentication failed",
        ),
    ];
    for (auth, user, pass, wrong, unknown) in cases {
        let dir = Scratch::new("authmatrix");
        let d = start(pg, &dir, &format!("auth_type = {auth}")).await;
        let ok = psql(
            pg,
            &conninfo(&d, user, pass, "appdb"),
            "select current_user",
        )
        .await;
        assert_eq!(stdout(&ok), user, "{auth}/{user}: {}", stderr(&ok));
        if let Some(wrong) = wrong {
            let e = connect(&conninfo(&d, user, "wrong", "appdb"))
                .await
                .unwrap_err();
            assert_eq!(
                db_error(&e),
                ("FATAL".into(), "08P01".into(), wrong.into()),
                "{auth}/{user}"
            );
        }
        let e = connect(&conninfo(&d, "nobody_here", "x", "appdb"))
            .await
            .unwrap_err();
        assert_eq!(
            db_error(&e),
            ("FATAL".into(), "08P01".into(), unknown.into()),
            "{auth} unknown user"
        );
        let e = connect(&conninfo(&d, user, pass, "nosuchdb"))
            .await
            .unwrap_err();
        assert_eq!(
            db_error(&e),
            (
                "FATAL".into(),
                "08P01".into(),
                "no such database: nosuchdb".into()
            ),
            "{auth} unknown db"
        );
    }
    // any: the user name is ignored, every database forces one.
    let dir = Scratch::new("authany");
    let text = ini(pg, &dir, "auth_type = any").replace(
        &format!("appdb = host=127.0.0.1 port={} dbname=appdb", pg.port()),
        &format!("appdb = host=127.0.0.1 port={} dbname=appdb user={MD5_USER} password={MD5_PASSWORD}", pg.port()),
    )
    .replace(&format!("postgres = host=127.0.0.1 port={} dbname=postgres\n", pg.port()), "");
    let d = pgbouncer_rs::Daemon::start(settings(&text, &dir))
        .await
        .unwrap();
    let o = psql(
        pg,
        &conninfo(&d, "whoever", "whatever", "appdb"),
        "select current_user",
    )
    .await;
    assert_eq!(stdout(&o), MD5_USER, "{}", stderr(&o));
    let e = connect(&conninfo(&d, "whoever", "x", "nosuchdb"))
        .await
        .unwrap_err();
    assert_eq!(db_error(&e).2, "no such database: nosuchdb");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_list_with_load_balance_hosts_disable_moves_past_a_dead_host() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("hostlist");
    // 127.0.0.2 is loopback but PostgreSQL does not listen there: that host is dead.
    let text = ini(pg, &dir, "pool_mode = transaction\nserver_login_retry = 0").replace(
        &format!("appdb = host=127.0.0.1 port={} dbname=appdb", pg.port()),
        &format!(
            "appdb = host=127.0.0.2,127.0.0.1 port={} dbname=appdb load_balance_hosts=disable",
            pg.port()
        ),
    );
    let d = pgbouncer_rs::Daemon::start(settings(&text, &dir))
        .await
        .unwrap();
    let mut first_ok = None;
    let mut errors = Vec::new();
    for attempt in 0..5 {
        let o = psql(pg, &md5_conninfo(&d), "select 1").await;
        if stdout(&o) == "1" {
            first_ok = Some(attempt);
            break;
        }
        errors.push(stderr(&o));
    }
    assert!(
        first_ok.is_some(),
        "the live host is reached after the dead one failed: {errors:?}"
    );
    for _ in 0..5 {
        let o = psql(pg, &md5_conninfo(&d), "select 2").await;
        assert_eq!(stdout(&o), "2", "stays on the live host: {}", stderr(&o));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_request_for_a_client_still_waiting_for_a_server_cancels_its_query() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("cancelwait");
    let d = start(
        pg,
        &dir,
        "pool_mode = transaction\ndefault_pool_size = 1\nquery_wait_timeout = 60",
    )
    .await;
    let holder = connect(&md5_conninfo(&d)).await.unwrap();
    holder.simple_query("begin; select 1").await.unwrap(); // holds the only server
    let waiter = std::sync::Arc::new(connect(&md5_conninfo(&d)).await.unwrap());
    let token = waiter.cancel_token();
    let mut queued = {
        let w = waiter.clone();
        tokio::spawn(async move { w.simple_query("select 42").await.map(|_| ()) })
    };
    // It cannot run: the only server is held.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut queued)
            .await
            .is_err()
    );
    token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let r = tokio::time::timeout(Duration::from_secs(10), queued)
        .await
        .expect("answered")
        .unwrap();
    let e = r.unwrap_err();
    assert_eq!(
        db_error(&e),
        (
            "ERROR".into(),
            "57014".into(),
            "canceling statement due to user request".into()
        )
    );
    // The waiter is still connected and works once the server is free.
    holder.simple_query("commit").await.unwrap();
    let rows = tokio::time::timeout(Duration::from_secs(10), waiter.simple_query("select 7"))
        .await
        .unwrap()
        .unwrap();
    assert!(!rows.is_empty());
}

/// What the relay saw of one connection it swallowed: the bytes it was sent, and
/// whether the pooler has closed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Swallowed {
    Read(usize),
    Closed,
}

/// A TCP relay in front of PostgreSQL. It forwards connections both ways until
/// `swallow` is set; from then on it accepts new connections, reads what they send and
/// never answers, reporting on `events` what it read and when the other side closed.
async fn relay(
    pg_port: u16,
) -> (
    u16,
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    tokio::sync::mpsc::UnboundedReceiver<Swallowed>,
) {
    use std::sync::atomic::Ordering;
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let swallow = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let flag = swallow.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            if flag.load(Ordering::Acquire) {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 256];
                    let mut total = 0;
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        total += n;
                        let _ = tx.send(Swallowed::Read(total));
                    }
                    let _ = tx.send(Swallowed::Closed);
                });
            } else {
                tokio::spawn(async move {
                    if let Ok(mut up) = tokio::net::TcpStream::connect(("127.0.0.1", pg_port)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut s, &mut up).await;
                    }
                });
            }
        }
    });
    (port, swallow, rx)
}

/// Starts a 1.5 s query on `c`, sends a cancel request for it once PostgreSQL shows it
/// running, and returns the query's task. The cancel runs in its own task: the pooler
/// closes a client's cancel connection only when its forward to the server is done.
async fn cancel_while_running(
    pg: &PgCluster,
    c: std::sync::Arc<tokio_postgres::Client>,
) -> tokio::task::JoinHandle<Result<(), tokio_postgres::Error>> {
    const SLEEP: &str = "select pg_sleep(1.5)";
    let token = c.cancel_token();
    let running = tokio::spawn(async move { c.simple_query(SLEEP).await.map(|_| ()) });
    let q = format!(
        "select count(*) from pg_stat_activity where query = '{SLEEP}' and state = 'active'"
    );
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for _ in 0..250 {
        tick.tick().await;
        if pg.psql("postgres", &q).unwrap() == "1" {
            break;
        }
    }
    tokio::spawn(async move { token.cancel_query(tokio_postgres::NoTls).await });
    running
}

/// The relay's next report, if one comes within `wait`.
async fn next_seen(
    seen: &mut tokio::sync::mpsc::UnboundedReceiver<Swallowed>,
    wait: Duration,
) -> Option<Swallowed> {
    tokio::time::timeout(wait, seen.recv()).await.ok().flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_wait_timeout_bounds_a_cancel_request_the_server_never_answers() {
    use std::sync::atomic::Ordering;
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("cancelwaittimeout");
    let (port, swallow, mut seen) = relay(pg.port()).await;
    let text = ini(pg, &dir, "pool_mode = transaction\ncancel_wait_timeout = 1").replace(
        &format!("appdb = host=127.0.0.1 port={}", pg.port()),
        &format!("appdb = host=127.0.0.1 port={port}"),
    );
    let d = pgbouncer_rs::Daemon::start(settings(&text, &dir))
        .await
        .unwrap();
    let admin = connect(&conninfo(&d, "admin", "adminpass", "pgbouncer"))
        .await
        .unwrap();
    let c = std::sync::Arc::new(connect(&md5_conninfo(&d)).await.unwrap());
    c.simple_query("select 1").await.unwrap();
    // From now on the "server" takes cancel connections and never acts on them.
    swallow.store(true, Ordering::Release);

    // cancel_wait_timeout = 1: the pooler gives up on the unanswered cancel.
    let running = cancel_while_running(pg, c.clone()).await;
    assert_eq!(
        next_seen(&mut seen, Duration::from_secs(15)).await,
        Some(Swallowed::Read(16))
    );
    assert_eq!(
        next_seen(&mut seen, Duration::from_secs(15)).await,
        Some(Swallowed::Closed),
        "the pooler should drop the cancel connection after cancel_wait_timeout"
    );
    running.await.unwrap().expect("the query was not cancelled");
    // The server, held while the cancel was in flight, is back: no new login needed.
    c.simple_query("select 1").await.unwrap();

    // cancel_wait_timeout = 0: the cancel request (16 bytes) is sent and the pooler
    // keeps waiting for the server to act on it.
    admin
        .simple_query("SET cancel_wait_timeout = 0")
        .await
        .unwrap();
    let running = cancel_while_running(pg, c.clone()).await;
    assert_eq!(
        next_seen(&mut seen, Duration::from_secs(15)).await,
        Some(Swallowed::Read(16))
    );
    // Never acted on, so the query simply finishes.
    running.await.unwrap().expect("the query was not cancelled");
    assert_eq!(
        next_seen(&mut seen, Duration::from_secs(2)).await,
        None,
        "with cancel_wait_timeout = 0 the pooler keeps waiting for the server"
    );
}

/// Cancels for one client never cancel another client's query on the same server: a
/// server released while a cancel for it is in flight stays out of the pool until the
/// cancel is done (PgBouncer: SV_BEING_CANCELED). Client A's short queries race its own
/// cancels; client B runs on the same (only) server right after, and must never see
/// `canceling statement due to user request`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_cancel_never_hits_the_next_clients_query() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("cancelrace");
    let d = start(pg, &dir, "pool_mode = transaction\ndefault_pool_size = 1").await;
    let a = std::sync::Arc::new(connect(&md5_conninfo(&d)).await.unwrap());
    let b = connect(&md5_conninfo(&d)).await.unwrap();
    let mut b_cancelled = 0;
    let mut a_cancelled = 0;
    for i in 0..100 {
        let token = a.cancel_token();
        let a2 = a.clone();
        // A's query ends on its own after a few milliseconds; the cancel may arrive
        // just before or just after that.
        let q = tokio::spawn(async move { a2.simple_query("select pg_sleep(0.003)").await });
        let delay = Duration::from_micros(2500 + (i % 10) * 100);
        let cancel = tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            token.cancel_query(tokio_postgres::NoTls).await
        });
        if q.await.unwrap().is_err() {
            a_cancelled += 1;
        }
        // B's statement runs on the same server as soon as A released it.
        match b.simple_query("select pg_sleep(0.002), 'b'").await {
            Ok(_) => {}
            Err(e) => {
                assert_eq!(db_error(&e).1, "57014", "{e}");
                b_cancelled += 1;
            }
        }
        cancel.await.unwrap().unwrap();
    }
    eprintln!("A's queries cancelled: {a_cancelled} of 100");
    assert_eq!(b_cancelled, 0, "a cancel for A hit B's query");
}
