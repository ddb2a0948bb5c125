//! Logins through the pooler against a real PostgreSQL: md5, SCRAM (pass-through),
//! plain; PgBouncer's errors for a wrong password and an unknown database.

mod common;

use common::*;
use pg_harness::{PgCluster, MD5_USER, SCRAM_PASSWORD, SCRAM_USER};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_logs_in_with_md5_scram_and_plain_users_and_queries_run_on_the_right_role() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("login");
    let d = start(pg, &dir, "pool_mode = transaction").await;
    for (user, pass) in [
        (MD5_USER, "md5pass"),
        (SCRAM_USER, SCRAM_PASSWORD),
        (pg_harness::PLAIN_USER, pg_harness::PLAIN_PASSWORD),
    ] {
        let o = psql(
            pg,
            &conninfo(&d, user, pass, "appdb"),
            "select current_user",
        )
        .await;
        assert!(o.status.success(), "{user}: {}", stderr(&o));
        assert_eq!(stdout(&o), user);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_client_auth_is_used_when_auth_type_is_scram_sha_256() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("scram");
    let d = start(pg, &dir, "auth_type = scram-sha-256").await;
    let ok = psql(
        pg,
        &conninfo(&d, SCRAM_USER, SCRAM_PASSWORD, "appdb"),
        "select 1",
    )
    .await;
    assert!(ok.status.success(), "{}", stderr(&ok));
    let plain = psql(
        pg,
        &conninfo(&d, "plainuser", "plainpass", "appdb"),
        "select 2",
    )
    .await;
    assert!(plain.status.success(), "{}", stderr(&plain));
    let e = connect(&conninfo(&d, SCRAM_USER, "wrong", "appdb"))
        .await
        .unwrap_err();
    assert_eq!(
        db_error(&e),
        (
            "FATAL".into(),
            "08P01".into(),
            "SASL authentication failed".into()
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_and_unknown_database_get_pgbouncers_errors_and_others_keep_working() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("errors");
    let d = start(pg, &dir, "pool_mode = transaction").await;
    let keep = connect(&md5_conninfo(&d)).await.unwrap();
    keep.simple_query("select 1").await.unwrap();

    let e = connect(&conninfo(&d, MD5_USER, "wrong", "appdb"))
        .await
        .unwrap_err();
    assert_eq!(
        db_error(&e),
        (
            "FATAL".into(),
            "08P01".into(),
            "password authentication failed".into()
        )
    );
    let e = connect(&conninfo(&d, "nosuchuser", "x", "appdb"))
        .await
        .unwrap_err();
    assert_eq!(db_error(&e).2, "password authentication failed");
    let e = connect(&conninfo(&d, MD5_USER, "md5pass", "nope"))
        .await
        .unwrap_err();
    assert_eq!(
        db_error(&e),
        (
            "FATAL".into(),
            "08P01".into(),
            "no such database: nope".into()
        )
    );

    // The pooler is still serving the existing client and new ones.
    let row = keep.query_one("select 42", &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 42);
    let o = psql(pg, &md5_conninfo(&d), "select 7").await;
    assert_eq!(stdout(&o), "7", "{}", stderr(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_login_failure_is_passed_to_the_client_with_the_servers_sqlstate() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("srvfail");
    let extra = "server_login_retry = 0";
    let text = ini(pg, &dir, extra).replace(
        "[pgbouncer]",
        &format!(
            "ghost = host=127.0.0.1 port={} dbname=ghost_db\n[pgbouncer]",
            pg.port()
        ),
    );
    let d = pgbouncer_rs::Daemon::start(settings(&text, &dir))
        .await
        .unwrap();
    let e = connect(&conninfo(&d, MD5_USER, "md5pass", "ghost"))
        .await
        .unwrap_err();
    let (sev, code, msg) = db_error(&e);
    assert_eq!((sev.as_str(), code.as_str()), ("FATAL", "3D000"));
    assert_eq!(msg, "database \"ghost_db\" does not exist");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_parameters_reach_the_server_and_two_clients_sharing_a_server_each_see_their_own() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("params");
    let d = start(pg, &dir, "pool_mode = transaction\ndefault_pool_size = 1").await;
    let a = connect(&format!(
        "{} application_name=alpha options='-c TimeZone=UTC'",
        md5_conninfo(&d)
    ))
    .await
    .unwrap();
    let b = connect(&format!(
        "{} application_name=beta options='-c TimeZone=Asia/Tokyo'",
        md5_conninfo(&d)
    ))
    .await
    .unwrap();
    let mut pids = std::collections::HashSet::new();
    for _ in 0..3 {
        for (c, app, tz) in [(&a, "alpha", "UTC"), (&b, "beta", "Asia/Tokyo")] {
            let row = c
                .query_one("select current_setting('application_name'), current_setting('TimeZone'), pg_backend_pid()", &[])
                .await
                .unwrap();
            assert_eq!(row.get::<_, String>(0), app);
            assert_eq!(row.get::<_, String>(1), tz);
            pids.insert(row.get::<_, i32>(2));
        }
    }
    assert_eq!(
        pids.len(),
        1,
        "both clients ran on the one server of the pool"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_runs_through_the_pooler_as_an_md5_and_as_a_scram_user() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("pgbench-auth");
    let d = start(pg, &dir, "pool_mode = transaction").await;
    let script = dir.0.join("q.sql");
    std::fs::write(&script, "select count(*) from pg_class;\n").unwrap();
    for (user, pass) in [(MD5_USER, "md5pass"), (SCRAM_USER, SCRAM_PASSWORD)] {
        let ci = conninfo(&d, user, pass, "appdb");
        let o = run(
            pg,
            "pgbench",
            &[
                "-n",
                "-c",
                "4",
                "-j",
                "2",
                "-t",
                "50",
                "-f",
                &script.to_string_lossy(),
                &ci,
            ],
        )
        .await;
        let out = stdout(&o);
        assert!(o.status.success(), "{user}: {out}\n{}", stderr(&o));
        assert!(
            out.contains("number of failed transactions: 0 (0.000%)"),
            "{user}: {out}"
        );
        // And reconnecting for every transaction (-C): SCRAM pass-through each time.
        let o = run(
            pg,
            "pgbench",
            &[
                "-n",
                "-C",
                "-c",
                "2",
                "-t",
                "10",
                "-f",
                &script.to_string_lossy(),
                &ci,
            ],
        )
        .await;
        assert!(
            stdout(&o).contains("number of failed transactions: 0 (0.000%)"),
            "{user}: {}{}",
            stdout(&o),
            stderr(&o)
        );
    }
}
