//! The harness against the real PostgreSQL binaries: start, password logins per auth
//! method, role secrets, connection counting, and cleanup on drop. Starts three clusters
//! in all (one with `max_connections = 40` shared by most tests, the shared default one,
//! and one that is dropped).

use std::net::TcpStream;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use pg_harness::{
    require_postgres, ClusterOptions, HarnessError, PgCluster, APP_DB, MD5_PASSWORD, MD5_USER,
    PLAIN_PASSWORD, PLAIN_USER, SCRAM_PASSWORD, SCRAM_USER, SUPERUSER, TRUST_USER,
};

/// The cluster most tests share, with a small `max_connections`.
fn cluster40() -> &'static PgCluster {
    static CLUSTER: OnceLock<PgCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        PgCluster::start(ClusterOptions {
            max_connections: 40,
            ..ClusterOptions::default()
        })
        .expect("cluster with max_connections = 40 starts")
    })
}

/// `psql` with a connection string, never prompting for a password.
fn psql_conninfo(cluster: &PgCluster, conninfo: &str, sql: &str) -> Output {
    Command::new(cluster.bin_dir().join("psql"))
        .args(["-X", "-w", "-A", "-t", "-q", "-d", conninfo, "-c", sql])
        .stdin(Stdio::null())
        .output()
        .expect("psql runs")
}

fn wait_for(what: &str, deadline: Duration, mut condition: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    while !condition() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        // Each check runs psql or a connect, which paces the loop by itself.
        std::thread::yield_now();
    }
}

#[test]
fn superuser_psql_runs_queries_and_max_connections_is_applied() {
    if !require_postgres() {
        return;
    }
    let cluster = cluster40();
    assert_eq!(cluster.psql("postgres", "select 1 + 1").unwrap(), "2");
    assert_eq!(cluster.psql(APP_DB, "SHOW max_connections").unwrap(), "40");
    assert_eq!(cluster.host(), "127.0.0.1");
    assert!(cluster.data_dir().join("PG_VERSION").is_file());
    assert!(cluster.server_log().len() < 1_000_000);
}

#[test]
fn a_failing_statement_is_an_error_with_postgres_message() {
    if !require_postgres() {
        return;
    }
    let err = cluster40()
        .psql("postgres", "select * from no_such_table")
        .unwrap_err();
    match &err {
        HarnessError::CommandFailed { stderr, .. } => {
            assert!(stderr.contains("no_such_table"), "{stderr}")
        }
        other => panic!("unexpected error {other}"),
    }
}

#[test]
fn each_role_logs_in_over_tcp_with_its_password_and_fails_with_a_wrong_one() {
    if !require_postgres() {
        return;
    }
    let cluster = cluster40();
    for (user, password) in [
        (MD5_USER, MD5_PASSWORD),
        (SCRAM_USER, SCRAM_PASSWORD),
        (PLAIN_USER, PLAIN_PASSWORD),
    ] {
        let good = psql_conninfo(
            cluster,
            &cluster.conninfo(user, Some(password), APP_DB),
            &format!("create table {user}_t(x int); select current_user"),
        );
        assert!(
            good.status.success(),
            "{user}: {}",
            String::from_utf8_lossy(&good.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&good.stdout).trim(), user);
        let _ = cluster.psql(APP_DB, &format!("drop table if exists {user}_t"));

        let bad = psql_conninfo(
            cluster,
            &cluster.conninfo(user, Some("wrong"), APP_DB),
            "select 1",
        );
        assert!(
            !bad.status.success(),
            "{user} logged in with a wrong password"
        );
        let stderr = String::from_utf8_lossy(&bad.stderr);
        assert!(
            stderr.contains("password authentication failed"),
            "{stderr}"
        );
    }
    let trust = psql_conninfo(
        cluster,
        &cluster.conninfo(TRUST_USER, None, APP_DB),
        "select 1",
    );
    assert!(trust.status.success());
}

#[test]
fn role_secrets_are_md5_and_scram_hashes() {
    if !require_postgres() {
        return;
    }
    let cluster = cluster40();
    let md5 = cluster.role_secret(MD5_USER).unwrap();
    assert!(md5.starts_with("md5") && md5.len() == 35, "{md5}");
    let scram = cluster.role_secret(SCRAM_USER).unwrap();
    assert!(scram.starts_with("SCRAM-SHA-256$"), "{scram}");
    assert_eq!(cluster.role_secret(TRUST_USER).unwrap(), "");
    assert!(matches!(
        cluster.role_secret("nobody"),
        Err(HarnessError::NoSuchRole { .. })
    ));
}

#[test]
fn created_databases_accept_objects_from_their_owner() {
    if !require_postgres() {
        return;
    }
    let cluster = cluster40();
    cluster.create_database("scram_db", SCRAM_USER).unwrap();
    let out = psql_conninfo(
        cluster,
        &cluster.conninfo(SCRAM_USER, Some(SCRAM_PASSWORD), "scram_db"),
        "create table t(x int); insert into t values (7); select x from t",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "7");
}

#[test]
fn connection_count_sees_an_open_session_of_a_user() {
    if !require_postgres() {
        return;
    }
    let cluster = cluster40();
    assert_eq!(cluster.connection_count(Some(TRUST_USER)), 0);
    let mut session = Command::new(cluster.bin_dir().join("psql"))
        .args(["-X", "-w", "-q", "-d"])
        .arg(cluster.conninfo(TRUST_USER, None, APP_DB))
        .args(["-c", "select pg_sleep(60)"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the session to appear", Duration::from_secs(20), || {
        cluster.connection_count(Some(TRUST_USER)) == 1
    });
    assert!(cluster.connection_count(None) >= 1);
    session.kill().unwrap();
    session.wait().unwrap();
    let _ = cluster.psql(
        "postgres",
        &format!(
            "select pg_terminate_backend(pid) from pg_stat_activity where usename = '{TRUST_USER}'"
        ),
    );
    wait_for("the session to go", Duration::from_secs(20), || {
        cluster.connection_count(Some(TRUST_USER)) == 0
    });
}

#[test]
fn shared_returns_one_cluster_for_the_whole_process() {
    if !require_postgres() {
        return;
    }
    let a = PgCluster::shared().unwrap();
    let b = PgCluster::shared().unwrap();
    assert!(std::ptr::eq(a, b));
    assert_eq!(a.psql("postgres", "SHOW max_connections").unwrap(), "100");
    let socket = a.socket_conninfo(SUPERUSER, APP_DB);
    let out = psql_conninfo(a, &socket, "select current_database()");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), APP_DB);
}

#[test]
fn dropping_a_cluster_stops_the_server_and_removes_its_directory() {
    if !require_postgres() {
        return;
    }
    let cluster = PgCluster::start(ClusterOptions {
        extra_conf: vec!["work_mem = '7MB'".to_owned()],
        ..ClusterOptions::default()
    })
    .unwrap();
    let port = cluster.port();
    let dir = cluster.socket_dir().to_path_buf();
    assert!(TcpStream::connect(("127.0.0.1", port)).is_ok());
    assert_eq!(cluster.psql("postgres", "SHOW work_mem").unwrap(), "7MB");
    cluster.stop();
    assert!(!dir.exists(), "{} still exists", dir.display());
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
}
