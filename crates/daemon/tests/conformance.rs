//! What an operator or a PgBouncer-aware tool sees, compared with PgBouncer's behaviour:
//! log lines (server prefix, `new connection to server (from …)`, `closing because: …
//! (age=…)`, `server login failed: FATAL …`, `login attempt … replication=`), and
//! RELOAD of a database whose connection changed. The binary runs as a child process so
//! its log is the real one.

mod common;

use std::time::Duration;

use common::pooler::Pooler;
use common::*;
use pg_harness::{PgCluster, MD5_PASSWORD, MD5_USER};

fn start(
    pg: &PgCluster,
    dir: &Scratch,
    databases: &str,
    extra: &str,
) -> (Pooler, std::path::PathBuf) {
    let text = ini(
        pg,
        dir,
        &format!("log_connections = 1\nlog_disconnections = 1\nserver_login_retry = 0\n{extra}"),
    )
    .replace("log_connections = 0\nlog_disconnections = 0\n", "")
    .replacen("[databases]\n", &format!("[databases]\n{databases}"), 1);
    let path = dir.0.join("pgbouncer.ini");
    std::fs::write(&path, &text).unwrap();
    (Pooler::start(&path), path)
}

/// The console as `admin`.
fn admin_at(p: &Pooler) -> String {
    format!(
        "host=127.0.0.1 port={} user=admin password=adminpass dbname=pgbouncer",
        p.port
    )
}

fn conninfo_at(p: &Pooler, db: &str) -> String {
    format!(
        "host=127.0.0.1 port={} user={MD5_USER} password={MD5_PASSWORD} dbname={db}",
        p.port
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_log_lines_carry_pgbouncers_prefix_and_reasons() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("conf-log");
    let closed_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (p, _) = start(
        pg,
        &dir,
        &format!(
            "nodb = host=127.0.0.1 port={port} dbname=nosuchdb\n\
             down = host=127.0.0.1 port={closed_port} dbname=appdb\n",
            port = pg.port()
        ),
        "query_wait_timeout = 2",
    );
    let o = psql(pg, &conninfo_at(&p, "appdb"), "select 1").await;
    assert_eq!(stdout(&o), "1", "{}", stderr(&o));
    let wait = Duration::from_secs(10);
    let prefix = format!("appdb/{MD5_USER}@127.0.0.1:{}", pg.port());
    let line = p
        .wait_for_line(
            &[&prefix, "new connection to server (from 127.0.0.1:"],
            wait,
        )
        .unwrap_or_else(|| panic!("{:#?}", p.all_log()));
    assert!(line.contains(" LOG S-"), "{line}");
    assert!(
        p.wait_for_line(&["login attempt: db=appdb", "tls=no replication=no"], wait)
            .is_some(),
        "{:#?}",
        p.all_log()
    );

    // PostgreSQL refuses the login: its severity and message, then the close.
    let o = psql(pg, &conninfo_at(&p, "nodb"), "select 1").await;
    assert!(
        stderr(&o).contains("database \"nosuchdb\" does not exist"),
        "{}",
        stderr(&o)
    );
    let nodb = format!("nodb/{MD5_USER}@127.0.0.1:{}", pg.port());
    for want in [
        "server login failed: FATAL database \"nosuchdb\" does not exist".to_string(),
        "closing because: database \"nosuchdb\" does not exist (age=0s)".to_string(),
    ] {
        assert!(
            p.wait_for_line(&[&nodb, &want], wait).is_some(),
            "{want}: {:#?}",
            p.all_log()
        );
    }

    // Nothing listens: `connect failed`, and the client is not failed with it but waits
    // (here until query_wait_timeout), as in PgBouncer.
    let o = psql(pg, &conninfo_at(&p, "down"), "select 1").await;
    assert!(stderr(&o).contains("query_wait_timeout"), "{}", stderr(&o));
    let down = format!("down/{MD5_USER}@127.0.0.1:{closed_port}");
    assert!(
        p.wait_for_line(&[&down, "closing because: connect failed (age=0s)"], wait)
            .is_some(),
        "{:#?}",
        p.all_log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_of_a_changed_database_reopens_its_servers_on_the_new_target() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("conf-reload");
    let (p, path) = start(
        pg,
        &dir,
        &format!("moving = host=127.0.0.1 port={} dbname=appdb\n", pg.port()),
        "pool_mode = transaction",
    );
    let c = connect(&conninfo_at(&p, "moving")).await.unwrap();
    let db = |rows: Vec<tokio_postgres::SimpleQueryMessage>| {
        rows.into_iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                _ => None,
            })
            .unwrap()
    };
    assert_eq!(
        db(c.simple_query("select current_database()").await.unwrap()),
        "appdb"
    );
    // The same entry now names another database on the same server.
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("dbname=appdb\n", "dbname=postgres\n");
    std::fs::write(&path, text).unwrap();
    let admin = admin_at(&p);
    let o = psql(pg, &admin, "RELOAD").await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        p.wait_for_line(
            &["moving/", "closing because: database configuration changed"],
            Duration::from_secs(10)
        )
        .is_some(),
        "{:#?}",
        p.all_log()
    );
    // The open client's next transaction runs on the new target.
    assert_eq!(
        db(c.simple_query("select current_database()").await.unwrap()),
        "postgres"
    );
    // A RELOAD that changes nothing keeps the server.
    let pid = db(c.simple_query("select pg_backend_pid()").await.unwrap());
    let o = psql(pg, &admin, "RELOAD").await;
    // (RELOAD answers after the reconnect decision: no wait needed.)
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        db(c.simple_query("select pg_backend_pid()").await.unwrap()),
        pid
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_notify_message_and_query_wait_notify_send_pgbouncers_notices() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("conf-notices");
    let (p, _) = start(
        pg,
        &dir,
        "",
        "login_notify_message = welcome to the pool\nquery_wait_notify = 1\n\
         pool_mode = session\ndefault_pool_size = 1",
    );
    // In every welcome, the console's too.
    let o = psql(pg, &conninfo_at(&p, "appdb"), "select 1").await;
    assert!(
        stderr(&o).contains("NOTICE:  welcome to the pool"),
        "{}",
        stderr(&o)
    );
    let admin = admin_at(&p);
    let o = psql(pg, &admin, "SHOW VERSION").await;
    assert!(
        stderr(&o).contains("NOTICE:  welcome to the pool"),
        "{}",
        stderr(&o)
    );

    // The only server is held by a session: the next client waits, and after more than
    // query_wait_notify seconds it is told once.
    let holder = connect(&conninfo_at(&p, "appdb")).await.unwrap();
    holder.simple_query("select 1").await.unwrap();
    let waiting = {
        let conninfo = conninfo_at(&p, "appdb");
        tokio::spawn(async move { psql(pg, &conninfo, "select 'served'").await })
    };
    // The wait itself is what is tested: until SHOW POOLS shows it longer than
    // query_wait_notify (1 s) plus the whole second PgBouncer rounds to.
    let mut waited = false;
    for _ in 0..100 {
        let pools = stdout(&psql(pg, &admin, "show pools").await);
        let maxwait = pools
            .lines()
            .find(|l| l.starts_with("appdb|"))
            .and_then(|l| l.split('|').nth(13))
            .and_then(|v| v.parse::<u32>().ok());
        if maxwait.is_some_and(|w| w >= 2) {
            waited = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(waited, "the second client never waited 2 s");
    drop(holder);
    let o = waiting.await.unwrap();
    assert_eq!(stdout(&o), "served", "{}", stderr(&o));
    let notices = stderr(&o)
        .matches("No server connection available in postgres backend, client being queued")
        .count();
    assert_eq!(notices, 1, "{}", stderr(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_shutdown_keeps_the_unix_socket_for_the_console() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("conf-shutdown");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let text = ini(pg, &dir, "")
        .replace("listen_port = 0", &format!("listen_port = {port}"))
        .replace(
            "unix_socket_dir =\n",
            &format!("unix_socket_dir = {}\n", dir.0.display()),
        );
    let path = dir.0.join("pgbouncer.ini");
    std::fs::write(&path, &text).unwrap();
    let mut p = Pooler::start(&path);
    let held = connect(&conninfo_at(&p, "appdb")).await.unwrap();
    held.simple_query("select 1").await.unwrap();

    let signal = |sig: &str, pid: u32| {
        let ok = std::process::Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig}");
    };
    let pid = p.child.id();
    signal("-TERM", pid);
    assert!(p
        .wait_for_line(&["shutting down"], Duration::from_secs(10))
        .is_some());
    // TCP closes (the accept task drops its listener soon after the log line); the Unix
    // socket serves the console and refuses the rest.
    let mut tcp_closed = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            tcp_closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(tcp_closed, "the TCP listener stayed open after SIGTERM");
    let unix = |user: &str, password: &str, db: &str| {
        format!(
            "host={} port={port} user={user} password={password} dbname={db}",
            dir.0.display()
        )
    };
    let o = psql(pg, &unix("admin", "adminpass", "pgbouncer"), "SHOW VERSION").await;
    assert!(stdout(&o).contains("pgbouncer-rs"), "{}", stderr(&o));
    let o = psql(pg, &unix(MD5_USER, MD5_PASSWORD, "appdb"), "select 1").await;
    assert!(
        stderr(&o).contains("pooler is shutting down"),
        "{}",
        stderr(&o)
    );
    // SIGUSR2 must not resume anything now.
    signal("-USR2", pid);
    assert!(p
        .wait_for_line(
            &["got SIGUSR2 while shutting down, ignoring"],
            Duration::from_secs(10)
        )
        .is_some());
    assert!(p.alive(), "the held client keeps the pooler up");
    // The last client leaves: the pooler exits.
    drop(held);
    let mut exited = false;
    for _ in 0..100 {
        if !p.alive() {
            exited = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(exited, "{:#?}", p.all_log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_idle_timeout_frees_an_empty_pool_with_pgbouncers_log_line() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("conf-poolidle");
    let (p, _) = start(
        pg,
        &dir,
        "",
        "pool_idle_timeout = 1\nserver_idle_timeout = 1\npool_mode = transaction",
    );
    let o = psql(pg, &conninfo_at(&p, "appdb"), "select 1").await;
    assert_eq!(stdout(&o), "1", "{}", stderr(&o));
    let line = format!(
        "cleaning up idle pool for user {MD5_USER} on db appdb because: pool idle timeout (age= "
    );
    assert!(
        p.wait_for_line(&[&line], Duration::from_secs(15)).is_some(),
        "{:#?}",
        p.all_log()
    );
    let admin = admin_at(&p);
    let o = psql(pg, &admin, "SHOW POOLS").await;
    assert!(
        !stdout(&o).contains(&format!("appdb|{MD5_USER}")),
        "{}",
        stdout(&o)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_are_parsed_as_pgbouncer_parses_them() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("conf-options");
    let (p, _) = start(pg, &dir, "", "pool_mode = transaction");
    let with = |options: &str| format!("{} options='{options}'", conninfo_at(&p, "appdb"));
    // A backslash escapes a space (libpq's own quoting doubles it in the conninfo).
    let o = psql(pg, &with(r"-c datestyle=German,\\ YMD"), "show datestyle").await;
    assert_eq!(stdout(&o), "German, YMD", "{}", stderr(&o));
    let o = psql(
        pg,
        &with("--timezone=UTC -cclient_encoding=LATIN1"),
        "show client_encoding",
    )
    .await;
    assert_eq!(stdout(&o), "LATIN1", "{}", stderr(&o));
    for (options, error) in [
        (
            "-c timezone",
            "unsupported options startup parameter: only '-c config=val' and '--config=val' are allowed",
        ),
        (
            "-x a=1",
            "unsupported options startup parameter: only '-c config=val' and '--config=val' are allowed",
        ),
        (
            "-c enable_seqscan=off",
            "unsupported startup parameter in options: enable_seqscan",
        ),
    ] {
        let o = psql(pg, &with(options), "select 1").await;
        assert!(stderr(&o).contains(error), "{options}: {}", stderr(&o));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_dbname_that_cannot_be_used_is_refused_with_pgbouncers_words() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("conf-authdb");
    let port = pg.port();
    let (p, _) = start(
        pg,
        &dir,
        &format!(
            "authdb = host=127.0.0.1 port={port} dbname=postgres\n\
             viaauthdb = host=127.0.0.1 port={port} dbname=appdb auth_dbname=authdb\n\
             viaconsole = host=127.0.0.1 port={port} dbname=appdb auth_dbname=pgbouncer\n\
             viaglobal = host=127.0.0.1 port={port} dbname=appdb\n"
        ),
        "auth_user = postgres\nauth_dbname = nosuchauthdb",
    );
    // A user missing from auth_file needs auth_query, on an auth database that:
    let login = |db: &str| {
        format!(
            "host=127.0.0.1 port={} user={} password=x dbname={db}",
            p.port,
            pg_harness::TRUST_USER
        )
    };
    // ... is not configured (the global auth_dbname);
    let o = psql(pg, &login("viaglobal"), "select 1").await;
    assert!(
        stderr(&o).contains("bouncer config error"),
        "{}",
        stderr(&o)
    );
    assert!(p
        .wait_for_line(
            &["authentication database \"nosuchauthdb\" is not configured."],
            Duration::from_secs(5)
        )
        .is_some());
    // ... is the console;
    let o = psql(pg, &login("viaconsole"), "select 1").await;
    assert!(
        stderr(&o).contains("bouncer config error"),
        "{}",
        stderr(&o)
    );
    assert!(p
        .wait_for_line(
            &["cannot use the reserved \"pgbouncer\" database as an auth_dbname"],
            Duration::from_secs(5)
        )
        .is_some());
    // ... is disabled.
    let admin = admin_at(&p);
    let o = psql(pg, &admin, "DISABLE authdb").await;
    assert!(o.status.success(), "{}", stderr(&o));
    let o = psql(pg, &login("viaauthdb"), "select 1").await;
    assert!(
        stderr(&o).contains("authentication database \"authdb\" is disabled"),
        "{}",
        stderr(&o)
    );
    // A global auth_dbname = pgbouncer does not load at all.
    let bad = dir.0.join("bad.ini");
    std::fs::write(
        &bad,
        std::fs::read_to_string(dir.0.join("pgbouncer.ini"))
            .unwrap()
            .replace("auth_dbname = nosuchauthdb", "auth_dbname = pgbouncer"),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pgbouncer-rs"))
        .arg("--check-config")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("cannot use the reserved \"pgbouncer\" database as an auth_dbname"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_pool_size_fills_a_forced_user_database_with_no_client() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("conf-minpool");
    let (_p, _) = start(
        pg,
        &dir,
        &format!(
            "filled = host=127.0.0.1 port={} dbname=appdb user={MD5_USER} min_pool_size=3 \
             application_name=minpoolfill\n",
            pg.port()
        ),
        "",
    );
    let count = || {
        pg.psql(
            "postgres",
            "select count(*) from pg_stat_activity where application_name = 'minpoolfill'",
        )
        .unwrap()
    };
    let mut seen = String::new();
    for _ in 0..50 {
        seen = count();
        if seen == "3" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        seen, "3",
        "servers opened for the forced user without a client"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auth_query_login_that_postgres_refuses_reaches_the_client_with_its_sqlstate() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("conf-authfail");
    let port = pg.port();
    let (p, _) = start(
        pg,
        &dir,
        &format!(
            "gone = host=127.0.0.1 port={port} dbname=nosuchdb\n\
             viagone = host=127.0.0.1 port={port} dbname=appdb auth_dbname=gone\n"
        ),
        "auth_user = postgres",
    );
    let conninfo = format!(
        "host=127.0.0.1 port={} user={} password=x dbname=viagone",
        p.port,
        pg_harness::TRUST_USER
    );
    let Err(e) = connect(&conninfo).await else {
        panic!("logged in through a missing auth database");
    };
    let (_, code, message) = db_error(&e);
    assert_eq!(code, "3D000", "{message}");
    assert_eq!(message, "database \"nosuchdb\" does not exist");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verbose_applies_at_run_time() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("conf-verbose");
    let (p, _) = start(pg, &dir, "", "pool_mode = transaction");
    let admin = admin_at(&p);
    let app = conninfo_at(&p, "appdb");
    psql(pg, &app, "select 1").await;
    assert!(
        !p.all_log().iter().any(|l| l.contains(" DEBUG ")),
        "DEBUG lines at verbose = 0"
    );
    let o = psql(pg, &admin, "SET verbose = 1").await;
    assert!(o.status.success(), "{}", stderr(&o));
    psql(pg, &app, "select 1").await;
    assert!(
        p.wait_for_line(&[" DEBUG "], Duration::from_secs(5))
            .is_some(),
        "no DEBUG line after SET verbose = 1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_wait_for_servers_tells_waiting_clients_and_lets_transactions_finish() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("conf-waitservers");
    let (mut p, _) = start(
        pg,
        &dir,
        "",
        "pool_mode = transaction\ndefault_pool_size = 1",
    );
    let a = connect(&conninfo_at(&p, "appdb")).await.unwrap();
    a.simple_query("begin").await.unwrap();
    let b = connect(&conninfo_at(&p, "appdb")).await.unwrap();
    let waiting = tokio::spawn(async move { b.simple_query("select 'b'").await.map(|_| ()) });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ok = std::process::Command::new("kill")
        .args(["-INT", &p.child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let err = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the waiting client hung")
        .unwrap()
        .expect_err("the waiting client got a server during the shutdown");
    assert_eq!(db_error(&err).2, "server shutting down");
    // The transaction that holds the server finishes.
    a.simple_query("select 1").await.unwrap();
    a.simple_query("commit").await.unwrap();
    let mut exited = false;
    for _ in 0..100 {
        if !p.alive() {
            exited = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(exited, "{:#?}", p.all_log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auto_database_is_registered_on_first_use_and_listed() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("conf-autodb");
    let (p, _) = start(
        pg,
        &dir,
        &format!("* = host=127.0.0.1 port={}\n", pg.port()),
        "",
    );
    let o = psql(
        pg,
        &conninfo_at(&p, "template1"),
        "select current_database()",
    )
    .await;
    assert_eq!(stdout(&o), "template1", "{}", stderr(&o));
    assert!(p
        .wait_for_line(
            &["registered new auto-database: template1"],
            Duration::from_secs(5)
        )
        .is_some());
    let admin = admin_at(&p);
    let o = psql(pg, &admin, "SHOW DATABASES").await;
    let row = stdout(&o)
        .lines()
        .find(|l| l.starts_with("template1|"))
        .map(str::to_string)
        .unwrap_or_default();
    assert!(
        row.starts_with(&format!("template1|127.0.0.1|{}|template1|", pg.port())),
        "{}",
        stdout(&o)
    );
    // A second login does not register it again.
    psql(pg, &conninfo_at(&p, "template1"), "select 1").await;
    let registered = p
        .all_log()
        .iter()
        .filter(|l| l.contains("registered new auto-database"))
        .count();
    assert_eq!(registered, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_startup_parameter_is_set_once_and_its_canonical_spelling_adopted() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("conf-varcache");
    let (p, _) = start(pg, &dir, "", "pool_mode = transaction\nverbose = 1");
    let conninfo = format!("{} options='-c DateStyle=ISO'", conninfo_at(&p, "appdb"));
    let c = connect(&conninfo).await.unwrap();
    c.simple_query("select 1").await.unwrap();
    c.simple_query("select 1").await.unwrap();
    assert!(p
        .wait_for_line(
            &["varcache_apply: SET DateStyle='ISO';"],
            Duration::from_secs(5)
        )
        .is_some());
    assert!(p
        .wait_for_line(
            &["varcache_set_canonical: setting DateStyle to its canonical version ISO -> ISO, MDY"],
            Duration::from_secs(5)
        )
        .is_some());
    let applied = p
        .all_log()
        .iter()
        .filter(|l| l.contains("varcache_apply:"))
        .count();
    assert_eq!(applied, 1, "the second query sent a SET again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_balance_hosts_disable_moves_past_a_bad_first_host_once() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("conf-lbdisable");
    let (p, _) = start(
        pg,
        &dir,
        &format!(
            "lb = host=unresolvable-hostname.invalid,127.0.0.1 port={} dbname=appdb \
             load_balance_hosts=disable\n",
            pg.port()
        ),
        "server_login_retry = 1\npool_mode = transaction",
    );
    // Two clients at once: both attempts on the bad host fail, then both are served by
    // the second host (it must not be skipped, nor the bad one come back).
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let conninfo = conninfo_at(&p, "lb");
            tokio::spawn(async move { psql(pg, &conninfo, "select 'ok'").await })
        })
        .collect();
    for c in clients {
        let o = c.await.unwrap();
        assert_eq!(stdout(&o), "ok", "{}", stderr(&o));
    }
    assert!(p
        .wait_for_line(
            &["closing because: server DNS lookup failed"],
            Duration::from_secs(5)
        )
        .is_some());
    assert!(p
        .wait_for_line(
            &[&format!(
                "@127.0.0.1:{} new connection to server",
                pg.port()
            )],
            Duration::from_secs(5)
        )
        .is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_timeout_runs_only_while_a_query_is_in_flight() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("conf-querytimeout");
    let (p, _) = start(pg, &dir, "", "pool_mode = transaction\nquery_timeout = 1");
    let c = connect(&conninfo_at(&p, "appdb")).await.unwrap();
    c.simple_query("begin").await.unwrap();
    // Idle in the transaction for longer than query_timeout: nothing is running.
    tokio::time::sleep(Duration::from_millis(1800)).await;
    c.simple_query("select 1").await.unwrap();
    c.simple_query("commit").await.unwrap();
    // A query that runs longer is stopped.
    let e = c.simple_query("select pg_sleep(3)").await.unwrap_err();
    assert!(db_error(&e).2.contains("query timeout"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_welcome_names_the_pooler_its_pool_mode_and_prepared_statement_limit() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("conf-pgb-params");
    let d = common::start(
        pg,
        &dir,
        "pool_mode = transaction\nmax_prepared_statements = 7",
    )
    .await;
    let w = common::wire::Wire::connect(d.addr(), MD5_USER, MD5_PASSWORD, "appdb", &[]).await;
    let get = |name: &str| {
        w.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(
        get("pgbouncer.version").as_deref(),
        Some(pgbouncer_admin::PGBOUNCER_COMPAT_VERSION)
    );
    assert_eq!(get("pgbouncer.pool_mode").as_deref(), Some("transaction"));
    assert_eq!(
        get("pgbouncer.max_prepared_statements").as_deref(),
        Some("7")
    );
    // The server's own parameters are still there.
    assert!(get("server_version").is_some(), "{:?}", w.params);
    drop(w);
    d.shutdown(pgbouncer_rs::ShutdownMode::Immediate).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_users_missing_from_auth_file_are_looked_up_with_auth_query() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("conf-console-authq");
    let port = pg.port();
    // md5user is not in auth_file here: only auth_query knows its secret. The console
    // has no [databases] entry, so the global auth_dbname says where to ask.
    let (p, _) = start(
        pg,
        &dir,
        &format!("authdb = host=127.0.0.1 port={port} dbname=postgres\n"),
        &format!("auth_user = postgres\nauth_dbname = authdb\nstats_users = {MD5_USER}"),
    );
    std::fs::write(
        dir.0.join("userlist.txt"),
        "\"postgres\" \"\"\n\"admin\" \"adminpass\"\n",
    )
    .unwrap();
    let o = psql(pg, &admin_at(&p), "RELOAD").await;
    assert!(o.status.success(), "{}", stderr(&o));
    let console = |password: &str| {
        format!(
            "host=127.0.0.1 port={} user={MD5_USER} password={password} dbname=pgbouncer",
            p.port
        )
    };
    let o = psql(pg, &console(MD5_PASSWORD), "show version").await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("pgbouncer-rs "), "{}", stdout(&o));
    let o = psql(pg, &console("wrong"), "show version").await;
    assert!(
        stderr(&o).contains("password authentication failed"),
        "{}",
        stderr(&o)
    );
    // The auth database must not be the console itself.
    let bad = dir.0.join("console-auth.ini");
    std::fs::write(
        &bad,
        std::fs::read_to_string(dir.0.join("pgbouncer.ini"))
            .unwrap()
            .replace("auth_dbname = authdb\n", "")
            .replacen(
                "[databases]\n",
                &format!("[databases]\n* = host=127.0.0.1 port={port} auth_dbname=pgbouncer\n"),
                1,
            ),
    )
    .unwrap();
    let p2 = Pooler::start(&bad);
    let o = psql(
        pg,
        &format!(
            "host=127.0.0.1 port={} user={MD5_USER} password={MD5_PASSWORD} dbname=pgbouncer",
            p2.port
        ),
        "show version",
    )
    .await;
    assert!(
        stderr(&o).contains("bouncer config error"),
        "{}",
        stderr(&o)
    );
    assert!(p2
        .wait_for_line(
            &["cannot use the reserved \"pgbouncer\" database as an auth_dbname"],
            Duration::from_secs(5)
        )
        .is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_servers_count_toward_pool_size_and_evict_idle_normal_servers() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = common::replication_cluster();
    let dir = Scratch::new("conf-repl-size");
    let (p, _) = start(
        &pg,
        &dir,
        &format!(
            "small = host=127.0.0.1 port={} dbname=appdb pool_size=1\n",
            pg.port()
        ),
        "",
    );
    let normal = conninfo_at(&p, "small");
    let repl = format!("{normal} replication=database");

    // A normal client leaves an idle server, which fills the pool of one.
    let o = psql(&pg, &normal, "select 1").await;
    assert_eq!(stdout(&o), "1", "{}", stderr(&o));
    // A replication client needs the slot: the idle server is evicted for it.
    let o = psql(&pg, &repl, "IDENTIFY_SYSTEM").await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        p.wait_for_line(&["closing because: evicted"], Duration::from_secs(5))
            .is_some(),
        "{:#?}",
        p.all_log()
    );

    // While one replication client holds the only slot, a second one waits for it.
    let first = {
        let (pg_bin, repl) = (pg.bin_dir().join("psql"), repl.clone());
        tokio::spawn(async move {
            tokio::process::Command::new(pg_bin)
                .args(["-X", "-At", &repl, "-c", "select pg_sleep(3)"])
                .output()
                .await
                .unwrap()
        })
    };
    let console = admin_at(&p);
    let busy = wait_for_pool(&pg, &console, |sv_active, _| sv_active == 1).await;
    assert!(busy, "the first replication client never got its server");
    let second = {
        let (pg_bin, repl) = (pg.bin_dir().join("psql"), repl.clone());
        tokio::spawn(async move {
            tokio::process::Command::new(pg_bin)
                .args(["-X", "-At", &repl, "-c", "select 2"])
                .output()
                .await
                .unwrap()
        })
    };
    let queued = wait_for_pool(&pg, &console, |sv_active, cl_waiting| {
        sv_active == 1 && cl_waiting == 1
    })
    .await;
    assert!(queued, "the second replication client did not queue");
    let (first, second) = (first.await.unwrap(), second.await.unwrap());
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&second.stdout).trim(), "2");
    // Replication servers close with their clients.
    let gone = wait_for_pool(&pg, &console, |sv_active, cl_waiting| {
        sv_active == 0 && cl_waiting == 0
    })
    .await;
    assert!(gone);
    let left = pg
        .psql(
            "postgres",
            "select count(*) from pg_stat_activity where backend_type = 'walsender'",
        )
        .unwrap();
    assert_eq!(left, "0");
}

/// Polls SHOW POOLS for the `small` pool (up to 10 s) until `ok(sv_active, cl_waiting)`.
async fn wait_for_pool(pg: &PgCluster, console: &str, ok: impl Fn(u32, u32) -> bool) -> bool {
    for _ in 0..100 {
        let o = psql(pg, console, "show pools").await;
        let out = stdout(&o);
        if let Some(row) = out.lines().find(|l| l.starts_with("small|")) {
            let cells: Vec<&str> = row.split('|').collect();
            let num = |i: usize| {
                cells
                    .get(i)
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(u32::MAX)
            };
            // database|user|cl_active|cl_waiting|cl_active_cancel_req|cl_waiting_cancel_req|sv_active
            if ok(num(6), num(3)) {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Sends a CancelRequest for `key` to `addr` and waits until the pooler closes it.
async fn send_cancel_to(addr: std::net::SocketAddr, key: (i32, i32)) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut out = bytes::BytesMut::new();
    pgbouncer_protocol::StartupPacket::CancelRequest(pgbouncer_protocol::CancelRequest {
        process_id: key.0,
        secret_key: key.1,
    })
    .encode(&mut out);
    s.write_all(&out).await.unwrap();
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut sink)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_that_reaches_the_wrong_peer_is_forwarded_to_the_peer_that_issued_the_key() {
    use pgbouncer_protocol::cancel;
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let (dir_a, dir_b) = (Scratch::new("conf-peer-a"), Scratch::new("conf-peer-b"));
    // Two peers on two ports (so_reuseport would put them on one; which process a cancel
    // reaches is then up to the kernel, as here up to the test).
    let port_b = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let a = common::start(
        pg,
        &dir_a,
        &format!("peer_id = 1\n[peers]\n2 = host=127.0.0.1 port={port_b}"),
    )
    .await;
    let b_ini = common::ini(
        pg,
        &dir_b,
        &format!(
            "peer_id = 2\n[peers]\n1 = host=127.0.0.1 port={}",
            a.addr().port()
        ),
    )
    .replace("listen_port = 0", &format!("listen_port = {port_b}"));
    let b = pgbouncer_rs::Daemon::start(settings(&b_ini, &dir_b))
        .await
        .unwrap();

    let mut w = common::wire::Wire::connect(a.addr(), MD5_USER, MD5_PASSWORD, "appdb", &[]).await;
    assert_eq!(cancel::peer_of(w.key.0), 1, "peer 1 issued the key");
    assert_eq!(cancel::ttl(w.key.1), cancel::INITIAL_TTL);
    assert!(w.key.0 > 0);

    // Waits until PostgreSQL runs `sql` (a cancel before that would find nothing to stop).
    let wait_running = |sql: &'static str| async move {
        let running = format!(
            "select count(*) from pg_stat_activity where query = '{sql}' and state = 'active'"
        );
        for _ in 0..100 {
            if pg.psql("postgres", &running).unwrap() == "1" {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{sql} never started");
    };
    // A cancel whose hops are used up is dropped: the query runs to its end.
    w.send_msgs(&[common::wire::query("select pg_sleep(1)")])
        .await;
    wait_running("select pg_sleep(1)").await;
    send_cancel_to(b.addr(), (w.key.0, cancel::with_ttl(w.key.1, 0))).await;
    let msgs = w.until_ready().await;
    assert!(common::wire::errors(&msgs).is_empty(), "{msgs:?}");

    // Sent to peer 2, the cancel is forwarded to peer 1 and stops the query.
    w.send_msgs(&[common::wire::query("select pg_sleep(30)")])
        .await;
    wait_running("select pg_sleep(30)").await;
    send_cancel_to(b.addr(), w.key).await;
    let msgs = w.until_ready().await;
    let errs = common::wire::errors(&msgs);
    assert_eq!(errs.len(), 1, "{msgs:?}");
    assert_eq!(errs[0].1, "57014", "{errs:?}");
    drop(w);
    let o = psql(
        pg,
        &conninfo(&a, "admin", "adminpass", "pgbouncer"),
        "show peers",
    )
    .await;
    assert_eq!(
        stdout(&o),
        format!("2|127.0.0.1|{port_b}|20"),
        "{}",
        stderr(&o)
    );
    b.shutdown(pgbouncer_rs::ShutdownMode::Immediate).await;
    a.shutdown(pgbouncer_rs::ShutdownMode::Immediate).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_settable_parameter_the_server_reports_is_tracked_per_client() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("conf-guc-report");
    let d = common::start(pg, &dir, "pool_mode = transaction\ndefault_pool_size = 2").await;
    let connect = || async {
        let (c, conn) = tokio_postgres::connect(&md5_conninfo(&d), tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        c
    };
    let value = |msgs: Vec<tokio_postgres::SimpleQueryMessage>| {
        msgs.into_iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                _ => None,
            })
            .unwrap()
    };
    let (a, b) = (connect().await, connect().await);
    // IntervalStyle and default_transaction_read_only are GUC_REPORT parameters that are
    // not in PgBouncer's fixed list: A changes them on the server it happens to get.
    a.simple_query("SET IntervalStyle = 'iso_8601'")
        .await
        .unwrap();
    a.simple_query("SET default_transaction_read_only = on")
        .await
        .unwrap();
    // B takes that server (the most recently released) inside a transaction, so A's
    // next queries run on the other server.
    b.simple_query("BEGIN").await.unwrap();
    assert_eq!(
        value(b.simple_query("SHOW IntervalStyle").await.unwrap()),
        "postgres"
    );
    assert_eq!(
        value(
            b.simple_query("SHOW default_transaction_read_only")
                .await
                .unwrap()
        ),
        "off"
    );
    assert_eq!(
        value(a.simple_query("SHOW IntervalStyle").await.unwrap()),
        "iso_8601"
    );
    assert_eq!(
        value(
            a.simple_query("SHOW default_transaction_read_only")
                .await
                .unwrap()
        ),
        "on"
    );
    b.simple_query("COMMIT").await.unwrap();
    // Read-only reported parameters are never SET.
    assert!(!value(a.simple_query("SHOW server_version").await.unwrap()).is_empty());
    drop((a, b));
    d.shutdown(pgbouncer_rs::ShutdownMode::Immediate).await;
}
