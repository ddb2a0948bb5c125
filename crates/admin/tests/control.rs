//! `plan`: PgBouncer's state checks for control commands and the effects they ask for.

mod common;

use pgbouncer_admin::{
    parse, plan, wait_close_done, Command, ControlState, Effect, Show, ShutdownMode,
};
use pgbouncer_pool_core::{Event, Pooler};

use common::secs;

fn run(sql: &str, pooler: &Pooler, suspended: bool) -> Result<Effect, String> {
    let state = ControlState {
        pooler,
        suspended,
        shutting_down: false,
    };
    plan(parse(sql).unwrap(), &state, |db| db.starts_with("db")).map_err(|e| e.message)
}

#[test]
fn pause_checks_state_and_database() {
    let mut p = common::scenario();
    assert!(matches!(
        run("pause db1", &p, false),
        Ok(Effect::Pause { database: Some(d) }) if d == "db1"
    ));
    assert!(matches!(
        run("pause", &p, false),
        Ok(Effect::Pause { database: None })
    ));
    assert_eq!(
        run("pause nope", &p, false).unwrap_err(),
        "no such database: nope"
    );
    assert_eq!(
        run("pause pgbouncer", &p, false).unwrap_err(),
        "cannot pause admin db: pgbouncer"
    );
    assert_eq!(
        run("pause", &p, true).unwrap_err(),
        "already suspended/paused"
    );
    p.handle(secs(5.0), Event::Pause { database: None });
    common::drain(&mut p);
    assert_eq!(
        run("pause db1", &p, false).unwrap_err(),
        "already suspended/paused"
    );
    assert_eq!(
        run("kill db1", &p, false).unwrap_err(),
        "already suspended/paused"
    );
    assert_eq!(
        run("suspend", &p, false).unwrap_err(),
        "already suspended/paused"
    );
    assert!(matches!(
        run("resume", &p, false),
        Ok(Effect::Resume { database: None })
    ));
}

#[test]
fn resume_needs_something_paused() {
    let mut p = common::scenario();
    assert_eq!(
        run("resume", &p, false).unwrap_err(),
        "pooler is not paused/suspended"
    );
    assert!(matches!(
        run("resume", &p, true),
        Ok(Effect::Resume { database: None })
    ));
    assert_eq!(
        run("resume db1", &p, false).unwrap_err(),
        "database db1 is not paused"
    );
    assert_eq!(
        run("resume zz", &p, false).unwrap_err(),
        "no such database: zz"
    );
    p.handle(
        secs(5.0),
        Event::Pause {
            database: Some("db1".into()),
        },
    );
    assert!(matches!(
        run("resume db1", &p, false),
        Ok(Effect::Resume { database: Some(_) })
    ));
    assert_eq!(
        run("suspend", &p, false).unwrap_err(),
        "cannot suspend with paused databases"
    );
    // PgBouncer checks shutdown first.
    let state = ControlState {
        pooler: &p,
        suspended: true,
        shutting_down: true,
    };
    assert_eq!(
        plan(Command::Resume(None), &state, |_| true)
            .unwrap_err()
            .message,
        "pooler is shutting down"
    );
}

#[test]
fn disable_enable_reconnect_kill_feed_events_and_reply_at_once() {
    let p = common::scenario();
    for (sql, tag) in [
        ("disable db1", "DISABLE"),
        ("enable db1", "ENABLE"),
        ("reconnect", "RECONNECT"),
        ("reconnect db2", "RECONNECT"),
        ("kill db2", "KILL"),
        ("kill_client 2", "KILL_CLIENT"),
    ] {
        let Ok(Effect::Apply { events, tag: t }) = run(sql, &p, false) else {
            panic!("{sql}")
        };
        assert_eq!(t, tag);
        assert_eq!(events.len(), 1);
    }
    let Ok(Effect::Apply { events, .. }) = run("disable db1", &p, false) else {
        panic!()
    };
    assert!(matches!(&events[0], Event::Disable { database } if database == "db1"));
    assert_eq!(
        run("disable pgbouncer", &p, false).unwrap_err(),
        "cannot disable admin db: pgbouncer"
    );
    assert_eq!(
        run("enable pgbouncer", &p, false).unwrap_err(),
        "cannot enable admin db: pgbouncer"
    );
    assert_eq!(
        run("reconnect pgbouncer", &p, false).unwrap_err(),
        "cannot reconnect admin db: pgbouncer"
    );
    assert_eq!(
        run("kill pgbouncer", &p, false).unwrap_err(),
        "cannot kill admin db: pgbouncer"
    );
    assert_eq!(
        run("wait_close pgbouncer", &p, false).unwrap_err(),
        "cannot wait in admin db: pgbouncer"
    );
    assert_eq!(
        run("enable x", &p, false).unwrap_err(),
        "no such database: x"
    );
    assert_eq!(
        run("kill_client 77", &p, false).unwrap_err(),
        "client not found"
    );
}

#[test]
fn other_commands_pass_through() {
    let p = common::scenario();
    assert!(matches!(
        run("show pools", &p, false),
        Ok(Effect::Show(Show::Pools))
    ));
    assert!(matches!(
        run("show timezone", &p, false),
        Ok(Effect::Reply(_))
    ));
    assert!(matches!(
        run("set timezone to 'x'", &p, false),
        Ok(Effect::Reply(_))
    ));
    assert!(matches!(run("reload", &p, false), Ok(Effect::Reload)));
    assert!(matches!(
        run("shutdown wait_for_servers", &p, false),
        Ok(Effect::Shutdown(ShutdownMode::WaitForServers))
    ));
    assert!(matches!(
        run("set default_pool_size = 3", &p, false),
        Ok(Effect::Set { key, value }) if key == "default_pool_size" && value == "3"
    ));
    assert!(matches!(
        run("wait_close", &p, false),
        Ok(Effect::WaitClose { database: None })
    ));
}

#[test]
fn wait_close_is_done_once_no_server_needs_closing() {
    let mut p = common::scenario();
    assert!(wait_close_done(&p, secs(5.0), None));
    p.handle(secs(5.0), Event::Reconnect { database: None });
    common::drain(&mut p);
    // S1 is linked, so it is only marked; idle S2 was closed at once.
    assert!(!wait_close_done(&p, secs(5.0), None));
    assert!(!wait_close_done(&p, secs(5.0), Some("db1")));
    assert!(wait_close_done(&p, secs(5.0), Some("db2")));
}
