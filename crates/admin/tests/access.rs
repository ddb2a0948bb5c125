//! Who may run what, and PgBouncer's order of syntax, access and argument errors.

use pgbouncer_admin::{check_access, parse, parse_checked, required_access, Access, Show};

#[test]
fn stats_users_may_show_everything_but_fds() {
    for s in Show::ALL {
        let cmd = parse(&format!("show {}", s.name())).unwrap();
        let expected = if s == Show::Fds {
            Access::Admin
        } else {
            Access::Stats
        };
        assert_eq!(required_access(&cmd), expected, "{s:?}");
        assert_eq!(check_access(&cmd, true, false), Ok(()));
    }
    let fds = parse("show fds").unwrap();
    assert_eq!(
        check_access(&fds, false, true).unwrap_err().message,
        "admin access needed"
    );
    assert_eq!(
        check_access(&parse("show pools").unwrap(), false, true),
        Ok(())
    );
    assert!(check_access(&parse("show pools").unwrap(), false, false).is_err());
}

#[test]
fn control_commands_need_admin_but_fake_set_does_not() {
    for q in [
        "pause",
        "resume db",
        "suspend",
        "disable db",
        "enable db",
        "reconnect",
        "kill",
        "kill_client 1",
        "shutdown",
        "reload",
        "wait_close",
        "set default_pool_size = 1",
    ] {
        let cmd = parse(q).unwrap();
        assert_eq!(required_access(&cmd), Access::Admin, "{q}");
        assert_eq!(
            check_access(&cmd, false, true).unwrap_err().message,
            "admin access needed"
        );
        assert_eq!(check_access(&cmd, true, false), Ok(()));
    }
    let set = parse("set timezone = 'UTC'").unwrap();
    assert_eq!(check_access(&set, false, true), Ok(()));
    assert_eq!(
        check_access(&parse("show datestyle").unwrap(), false, true),
        Ok(())
    );
}

#[test]
fn parse_checked_orders_errors_as_pgbouncer() {
    // Syntax errors come before the access check.
    assert_eq!(
        parse_checked("reload now", false, true)
            .unwrap_err()
            .message,
        "invalid command 'reload now', use SHOW HELP;"
    );
    assert_eq!(
        parse_checked(&format!("pause {}", "x".repeat(70)), false, true)
            .unwrap_err()
            .message,
        "bad arguments"
    );
    // Argument errors of admin commands come after it.
    assert_eq!(
        parse_checked("disable", false, true).unwrap_err().message,
        "admin access needed"
    );
    assert_eq!(
        parse_checked("disable", true, false).unwrap_err().message,
        "a database is required"
    );
    assert_eq!(
        parse_checked("kill_client x", true, false)
            .unwrap_err()
            .message,
        "invalid client pointer supplied"
    );
    assert!(parse_checked("show stats", false, true).is_ok());
}
