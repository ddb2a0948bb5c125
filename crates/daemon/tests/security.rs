//! Hardening: no way in without the right secret, and nothing an unauthenticated client
//! does outlives its login. Each test names the hole it closes; each failed before the
//! fix (see docs/security.md).

mod common;

use std::time::Duration;

use bytes::BytesMut;
use common::wire::{self, Wire};
use common::*;
use pg_harness::{PgCluster, MD5_PASSWORD, MD5_USER, SCRAM_PASSWORD, SCRAM_USER};
use pgbouncer_protocol::{
    encode_sasl_initial_response, Authentication, BackendMessage, StartupMessage,
    DEFAULT_MAX_PACKET_SIZE,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A database whose server login never depends on the client: whoever the pooler lets
/// in runs as md5user. So a client that gets past the pooler's check really gets in.
fn forced_db(pg: &PgCluster) -> String {
    format!(
        "forced = host=127.0.0.1 port={} dbname=appdb user={MD5_USER} password={MD5_PASSWORD}\n",
        pg.port()
    )
}

/// `ini()` with the forced database added and `userlist` as the auth file.
fn ini_with(pg: &PgCluster, dir: &Scratch, userlist: &str, extra: &str) -> String {
    let text = ini(pg, dir, extra).replacen(
        "[databases]\n",
        &format!("[databases]\n{}", forced_db(pg)),
        1,
    );
    std::fs::write(dir.0.join("userlist.txt"), userlist).unwrap();
    text
}

async fn start_with(
    pg: &PgCluster,
    dir: &Scratch,
    userlist: &str,
    extra: &str,
) -> pgbouncer_rs::Daemon {
    let text = ini_with(pg, dir, userlist, extra);
    pgbouncer_rs::Daemon::start(settings(&text, dir))
        .await
        .unwrap()
}

/// Logs in with the raw client and runs `select 1`: `Ok` only if the query ran.
async fn gets_in(
    d: &pgbouncer_rs::Daemon,
    user: &str,
    password: &str,
    db: &str,
) -> Result<(), String> {
    match Wire::try_connect(d.addr(), user, password, db, &[]).await {
        Ok(mut w) => {
            let sql = if db == "pgbouncer" {
                "SHOW VERSION"
            } else {
                "select 1"
            };
            let msgs = w.simple(sql).await;
            if wire::errors(&msgs).is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "logged in, query failed: {:?}",
                    wire::errors(&msgs)
                ))
            }
        }
        Err(e) => Err(format!("{e:?}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_secrets_never_log_in_whatever_the_method_console_included() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let md5_secret = pg.role_secret(MD5_USER).unwrap();
    let empty_md5 = pgbouncer_protocol::auth::md5::hash_password("hashuser", b"");
    let userlist = format!(
        "\"{MD5_USER}\" \"{md5_secret}\"\n\"ctluser\" \"ctlpass\"\n\"emptyuser\" \"\"\n\
         \"hashuser\" \"{empty_md5}\"\n\"emptyadmin\" \"\"\n\"admin\" \"adminpass\"\n"
    );
    let hba_dir = Scratch::new("sec-empty-hba");
    let hba = hba_dir.0.join("hba.conf");
    std::fs::write(
        &hba,
        "host all emptyuser 127.0.0.1/32 scram-sha-256\n\
         host all hashuser 127.0.0.1/32 md5\n\
         host all emptyadmin 127.0.0.1/32 password\n\
         host all all 127.0.0.1/32 md5\n",
    )
    .unwrap();
    let methods = [
        "auth_type = md5".to_string(),
        "auth_type = scram-sha-256".to_string(),
        "auth_type = plain".to_string(),
        format!("auth_type = hba\nauth_hba_file = {}", hba.display()),
    ];
    for method in &methods {
        let dir = Scratch::new("sec-empty");
        let extra = format!("{method}\nadmin_users = emptyadmin, admin");
        let d = start_with(pg, &dir, &userlist, &extra).await;
        // The control: a real secret works through the same database and method.
        gets_in(&d, "ctluser", "ctlpass", "forced")
            .await
            .unwrap_or_else(|e| panic!("{method}: ctluser: {e}"));
        gets_in(&d, "admin", "adminpass", "pgbouncer")
            .await
            .unwrap_or_else(|e| panic!("{method}: admin console: {e}"));
        for (user, db) in [
            ("emptyuser", "forced"),
            ("hashuser", "forced"),
            ("emptyadmin", "pgbouncer"),
            ("emptyadmin", "forced"),
        ] {
            for password in ["", "x"] {
                let e = gets_in(&d, user, password, db).await.expect_err(&format!(
                    "{method}: {user} with password {password:?} got into {db}"
                ));
                assert!(
                    e.contains("08P01") && e.contains("authentication failed")
                        || e.contains("empty password returned by client"),
                    "{method}: {user}: {e}"
                );
            }
        }
        d.shutdown(pgbouncer_rs::ShutdownMode::Immediate).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_without_a_usable_password_in_auth_query_cannot_log_in() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    pg.psql(
        "postgres",
        "DROP ROLE IF EXISTS sec_nopass; CREATE ROLE sec_nopass LOGIN; \
         DROP ROLE IF EXISTS sec_expired; \
         CREATE ROLE sec_expired LOGIN PASSWORD 'expiredpass' VALID UNTIL '2001-01-01'",
    )
    .unwrap();
    for method in ["md5", "plain", "scram-sha-256"] {
        let dir = Scratch::new("sec-authq");
        // Only the auth_user is in the file; the default auth_query (the CVE-2025-2291
        // one) gives NULL for a role without a password or with an expired one.
        let extra = format!("auth_type = {method}\nauth_user = postgres");
        let d = start_with(pg, &dir, "\"postgres\" \"\"\n", &extra).await;
        // The control: a role with a SCRAM password works through auth_query.
        gets_in(&d, SCRAM_USER, SCRAM_PASSWORD, "forced")
            .await
            .unwrap_or_else(|e| panic!("{method}: scramuser through auth_query: {e}"));
        for (user, password) in [
            ("sec_nopass", "md5"),
            ("sec_nopass", ""),
            ("sec_expired", "md5"),
            ("sec_expired", "expiredpass"),
        ] {
            let e = gets_in(&d, user, password, "forced")
                .await
                .expect_err(&format!(
                    "{method}: {user} with password {password:?} got in"
                ));
            assert!(
                e.contains("authentication failed") || e.contains("empty password"),
                "{e}"
            );
        }
        // The auth_user's own empty secret admits nobody as postgres either.
        gets_in(&d, "postgres", "", "forced")
            .await
            .expect_err("postgres with an empty password got in");
        d.shutdown(pgbouncer_rs::ShutdownMode::Immediate).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_and_any_admit_only_users_they_may() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let userlist = format!("\"{MD5_USER}\" \"\"\n");
    // auth_type = trust, and hba trust: a user missing from auth_file is refused.
    let hba_dir = Scratch::new("sec-trust-hba");
    let hba = hba_dir.0.join("hba.conf");
    std::fs::write(&hba, "host all all 127.0.0.1/32 trust\n").unwrap();
    for method in [
        "auth_type = trust".to_string(),
        format!("auth_type = hba\nauth_hba_file = {}", hba.display()),
    ] {
        let dir = Scratch::new("sec-trust");
        let d = start_with(pg, &dir, &userlist, &method).await;
        gets_in(&d, MD5_USER, "", "forced")
            .await
            .unwrap_or_else(|e| panic!("{method}: md5user: {e}"));
        let e = gets_in(&d, "sec_ghost", "", "forced")
            .await
            .expect_err("a user missing from auth_file got in through trust");
        assert!(
            e.contains("trust") && e.contains("authentication failed"),
            "{method}: {e}"
        );
        d.shutdown(pgbouncer_rs::ShutdownMode::Immediate).await;
    }
    // auth_type = any needs a forced user on every database, or it does not load.
    let dir = Scratch::new("sec-any");
    let text = ini_with(pg, &dir, &userlist, "auth_type = any");
    let path = dir.0.join("pgbouncer.ini");
    std::fs::write(&path, &text).unwrap();
    let ini = pgbouncer_rs::config::ini::Ini::parse(&text, &path).unwrap();
    let err = pgbouncer_rs::config::Settings::from_ini(&ini, Some(&path), &Vec::new())
        .expect_err("auth_type = any loaded with unforced databases");
    assert!(
        err.to_string()
            .contains("auth_type=any needs a forced user"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_that_cannot_be_set_up_refuses_to_start_instead_of_running_in_clear_text() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    for (setting, loads, why) in [
        (
            "client_tls_sslmode = require",
            false,
            "client_tls_key_file and client_tls_cert_file must be set",
        ),
        (
            "client_tls_sslmode = prefer\nclient_tls_key_file = /nonexistent.key\n\
             client_tls_cert_file = /nonexistent.crt",
            false,
            "No such file or directory",
        ),
        (
            "server_tls_sslmode = verify-full\nserver_tls_ca_file = /nonexistent.crt",
            false,
            "No such file or directory",
        ),
        (
            "server_tls_sslmode = require\nserver_tls_ciphers = RC4-MD5",
            false,
            "invalid server_tls_ciphers",
        ),
        (
            "server_tls_sslmode = require\nserver_tls13_ciphers = TLS_AES_128_CCM_SHA256",
            false,
            "failed to set the TLSv1.3 cipher suites",
        ),
        ("server_tls_sslmode = prefer", true, ""),
        ("server_tls_sslmode = require", true, ""),
        ("server_tls_sslmode = disable", true, ""),
        ("client_tls_sslmode = disable", true, ""),
    ] {
        let dir = Scratch::new("sec-tls");
        let text = ini(pg, &dir, setting);
        let path = dir.0.join("pgbouncer.ini");
        std::fs::write(&path, &text).unwrap();
        // The binary itself: it must exit with the reason, not start in clear text.
        let out = tokio::time::timeout(
            Duration::from_secs(20),
            tokio::process::Command::new(env!("CARGO_BIN_EXE_pgbouncer-rs"))
                .arg("--check-config")
                .arg(&path)
                .output(),
        )
        .await
        .expect("the binary did not exit")
        .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string()
            + &String::from_utf8_lossy(&out.stdout);
        if loads {
            assert!(out.status.success(), "{setting}: {stderr}");
        } else {
            assert!(!out.status.success(), "{setting} loaded: {stderr}");
            assert!(stderr.contains("TLS setup failed"), "{setting}: {stderr}");
            assert!(stderr.contains(why), "{setting}: {stderr}");
        }
    }
}

/// Starts a SCRAM exchange as `user` and returns the server-first message's salt and
/// iteration count (`s=` and `i=`), then drops the connection.
async fn scram_salt(addr: std::net::SocketAddr, user: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut out = BytesMut::new();
    StartupMessage::new(vec![
        ("user".into(), user.into()),
        ("database".into(), "forced".into()),
    ])
    .encode(&mut out);
    s.write_all(&out).await.unwrap();
    let mut buf = BytesMut::new();
    loop {
        let m = loop {
            if let Some(m) = BackendMessage::decode(&mut buf, DEFAULT_MAX_PACKET_SIZE).unwrap() {
                break m;
            }
            let n = tokio::time::timeout(wire::PATIENCE, s.read_buf(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "closed before the SCRAM challenge");
        };
        match m {
            BackendMessage::Authentication(Authentication::Sasl { .. }) => {
                let mut out = BytesMut::new();
                encode_sasl_initial_response(
                    &mut out,
                    "SCRAM-SHA-256",
                    b"n,,n=,r=abcdefghijklmnop",
                );
                s.write_all(&out).await.unwrap();
            }
            BackendMessage::Authentication(Authentication::SaslContinue(data)) => {
                let text = String::from_utf8(data.to_vec()).unwrap();
                let field = |k: &str| {
                    text.split(',')
                        .find_map(|f| f.strip_prefix(k))
                        .unwrap()
                        .to_string()
                };
                return (field("s="), field("i="));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scram_challenge_does_not_tell_unknown_users_from_known_ones() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("sec-scram");
    let userlist = format!(
        "\"{MD5_USER}\" \"{}\"\n\"plainuser\" \"plainpass\"\n",
        pg.role_secret(MD5_USER).unwrap()
    );
    let d = start_with(
        pg,
        &dir,
        &userlist,
        "auth_type = scram-sha-256\nscram_iterations = 5000",
    )
    .await;
    let (ghost1, ghost_iter) = scram_salt(d.addr(), "sec_ghost").await;
    let (ghost2, _) = scram_salt(d.addr(), "sec_ghost").await;
    let (other, _) = scram_salt(d.addr(), "sec_other_ghost").await;
    let (plain1, plain_iter) = scram_salt(d.addr(), "plainuser").await;
    let (plain2, _) = scram_salt(d.addr(), "plainuser").await;
    // A known user's salt stays the same; so must an unknown one's, or the change
    // gives it away.
    assert_eq!(plain1, plain2);
    assert_eq!(
        ghost1, ghost2,
        "an unknown user's salt changes between attempts"
    );
    assert_ne!(ghost1, other, "unknown users share one salt");
    assert_eq!(ghost1.len(), plain1.len());
    assert_eq!(
        ghost_iter, plain_iter,
        "an unknown user's iteration count differs"
    );
    // And the exchange fails at its end, like a wrong password.
    let e = gets_in(&d, "sec_ghost", "whatever", "forced")
        .await
        .unwrap_err();
    assert!(e.contains("SASL authentication failed"), "{e}");
    d.shutdown(pgbouncer_rs::ShutdownMode::Immediate).await;
}

/// Sends a startup packet and reads up to the password request, then goes silent.
async fn stuck_in_auth(addr: std::net::SocketAddr, user: &str, db: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut out = BytesMut::new();
    StartupMessage::new(vec![
        ("user".into(), user.into()),
        ("database".into(), db.into()),
    ])
    .encode(&mut out);
    s.write_all(&out).await.unwrap();
    let mut buf = BytesMut::new();
    loop {
        if let Some(m) = BackendMessage::decode(&mut buf, DEFAULT_MAX_PACKET_SIZE).unwrap() {
            assert!(matches!(m, BackendMessage::Authentication(_)), "{m:?}");
            return s;
        }
        let n = tokio::time::timeout(wire::PATIENCE, s.read_buf(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed before asking for a password");
    }
}

/// Reads until the peer closes; the ErrorResponse message seen on the way, if any.
async fn closed_with(mut s: TcpStream, within: Duration) -> Option<String> {
    let mut buf = BytesMut::new();
    let mut error = None;
    let deadline = tokio::time::Instant::now() + within;
    loop {
        while let Ok(Some(m)) = BackendMessage::decode(&mut buf, DEFAULT_MAX_PACKET_SIZE) {
            if let BackendMessage::ErrorResponse(e) = m {
                error = Some(e.message().unwrap_or_default().to_string());
            }
        }
        match tokio::time::timeout_at(deadline, s.read_buf(&mut buf)).await {
            Err(_) => panic!("still open after {within:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => return error,
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_login_timeout_covers_authentication_and_in_auth_clients_count() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("sec-login");
    let d = start(pg, &dir, "client_login_timeout = 2\nmax_client_conn = 3").await;
    let md5 = stuck_in_auth(d.addr(), MD5_USER, "appdb").await;
    let ghost = stuck_in_auth(d.addr(), "sec_ghost", "appdb").await;
    // Two clients in their password exchange and one logged in fill max_client_conn.
    let mut ok = Wire::connect(d.addr(), MD5_USER, MD5_PASSWORD, "appdb", &[]).await;
    let e = Wire::try_connect(d.addr(), MD5_USER, MD5_PASSWORD, "appdb", &[])
        .await
        .err()
        .expect("a fourth client got in past max_client_conn = 3");
    assert_eq!(e.2, "no more connections allowed (max_client_conn)");
    // The console (exempt from max_client_conn) shows the two as logging in.
    let mut admin = Wire::connect(d.addr(), "admin", "adminpass", "pgbouncer", &[]).await;
    let lists = wire::rows(&admin.simple("SHOW LISTS").await);
    let item = |name: &str| {
        lists
            .iter()
            .find(|r| r[0].as_deref() == Some(name))
            .and_then(|r| r[1].clone())
    };
    assert_eq!(item("login_clients").as_deref(), Some("2"), "{lists:?}");
    drop(admin);
    // Nothing bounds a silent password exchange but client_login_timeout.
    for s in [md5, ghost] {
        let error = closed_with(s, Duration::from_secs(15)).await;
        assert_eq!(error.as_deref(), Some("client_login_timeout"));
    }
    // Their slots are free again, and the logged-in client never noticed.
    assert_eq!(
        wire::first_value(&ok.simple("select 7").await).as_deref(),
        Some("7")
    );
    let mut again = Wire::connect(d.addr(), MD5_USER, MD5_PASSWORD, "appdb", &[]).await;
    assert_eq!(
        wire::first_value(&again.simple("select 8").await).as_deref(),
        Some("8")
    );
    d.shutdown(pgbouncer_rs::ShutdownMode::Immediate).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_create_no_pools_and_open_no_servers() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("sec-pools");
    // min_pool_size would open servers for any pool that exists.
    let d = start(pg, &dir, "min_pool_size = 1\npool_mode = transaction").await;
    for i in 0..20 {
        let user = format!("sec_claimed_{i}");
        let e = Wire::try_connect(d.addr(), &user, "guess", "appdb", &[])
            .await
            .err();
        assert!(e.is_some(), "{user} got in");
        let e = Wire::try_connect(d.addr(), MD5_USER, "wrong", "appdb", &[])
            .await
            .err();
        assert!(e.is_some(), "a wrong password got in");
    }
    let mut admin = Wire::connect(d.addr(), "admin", "adminpass", "pgbouncer", &[]).await;
    let pools = wire::rows(&admin.simple("SHOW POOLS").await);
    let users: Vec<String> = pools.iter().filter_map(|r| r[1].clone()).collect();
    assert!(
        !users
            .iter()
            .any(|u| u.starts_with("sec_claimed_") || u == MD5_USER),
        "pools created for unauthenticated clients: {users:?}"
    );
    let servers = wire::rows(&admin.simple("SHOW SERVERS").await);
    assert!(
        servers.is_empty(),
        "servers opened for unauthenticated clients: {servers:?}"
    );
    d.shutdown(pgbouncer_rs::ShutdownMode::Immediate).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auto_database_pool_is_freed_after_autodb_idle_timeout() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("sec-autodb");
    let text = ini(
        pg,
        &dir,
        "autodb_idle_timeout = 1\nserver_idle_timeout = 1\npool_mode = transaction",
    )
    .replacen(
        "[databases]\n",
        &format!("[databases]\n* = host=127.0.0.1 port={}\n", pg.port()),
        1,
    );
    let d = pgbouncer_rs::Daemon::start(settings(&text, &dir))
        .await
        .unwrap();
    // A database only `*` serves.
    pg.psql("postgres", "DROP DATABASE IF EXISTS sec_autodb")
        .unwrap();
    pg.create_database("sec_autodb", MD5_USER).unwrap();
    {
        let mut w = Wire::connect(d.addr(), MD5_USER, MD5_PASSWORD, "sec_autodb", &[]).await;
        assert_eq!(
            wire::first_value(&w.simple("select 5").await).as_deref(),
            Some("5")
        );
    }
    let mut admin = Wire::connect(d.addr(), "admin", "adminpass", "pgbouncer", &[]).await;
    let has_pool =
        |rows: &[Vec<Option<String>>]| rows.iter().any(|r| r[0].as_deref() == Some("sec_autodb"));
    assert!(has_pool(&wire::rows(&admin.simple("SHOW POOLS").await)));
    // Freed once its client and its server are gone and a second has passed: polled,
    // bounded.
    let mut freed = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if !has_pool(&wire::rows(&admin.simple("SHOW POOLS").await)) {
            freed = true;
            break;
        }
    }
    assert!(freed, "the idle auto-database pool is still there");
    // And it comes back on demand.
    let mut w = Wire::connect(d.addr(), MD5_USER, MD5_PASSWORD, "sec_autodb", &[]).await;
    assert_eq!(
        wire::first_value(&w.simple("select 6").await).as_deref(),
        Some("6")
    );
    d.shutdown(pgbouncer_rs::ShutdownMode::Immediate).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_that_times_out_during_auth_query_leaves_no_answer_for_the_next() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("sec-authq-timeout");
    // The lookup of scramuser takes 3 s, longer than client_login_timeout; md5user's is
    // immediate. Both share the one auth connection of (appdb, postgres).
    let query = format!(
        "SELECT rolname, rolpassword FROM pg_authid, \
         pg_sleep(CASE WHEN $1::text = '{SCRAM_USER}' THEN 3 ELSE 0 END) WHERE rolname = $1::text"
    );
    let extra = format!(
        "auth_user = postgres\nauth_query = {query}\nclient_login_timeout = 1\npool_mode = transaction"
    );
    let text = ini(pg, &dir, &extra);
    std::fs::write(dir.0.join("userlist.txt"), "\"postgres\" \"\"\n").unwrap();
    let d = pgbouncer_rs::Daemon::start(settings(&text, &dir))
        .await
        .unwrap();
    let e = Wire::try_connect(d.addr(), SCRAM_USER, SCRAM_PASSWORD, "appdb", &[])
        .await
        .err()
        .expect("a 3 s auth_query finished within client_login_timeout = 1");
    assert_eq!(e.2, "client_login_timeout");
    // The abandoned query's answer (scramuser's secret) must not be taken for md5user's.
    let mut w = Wire::try_connect(d.addr(), MD5_USER, MD5_PASSWORD, "appdb", &[])
        .await
        .unwrap_or_else(|e| panic!("md5user after the timed-out lookup: {e:?}"));
    assert_eq!(
        wire::first_value(&w.simple("select current_user").await).as_deref(),
        Some(MD5_USER)
    );
    d.shutdown(pgbouncer_rs::ShutdownMode::Immediate).await;
}
