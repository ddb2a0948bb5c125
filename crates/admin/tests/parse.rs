//! The console grammar: every command form, quoting, SET forms, and error texts.

use pgbouncer_admin::{parse, AdminError, Command, Show, ShutdownMode};

fn ok(sql: &str) -> Command {
    parse(sql).unwrap_or_else(|e| panic!("{sql:?}: {e}"))
}

fn err(sql: &str) -> String {
    parse(sql).expect_err(sql).message
}

#[test]
fn every_show_parses_case_insensitively_with_or_without_semicolon() {
    for s in Show::ALL {
        let name = s.name();
        assert_eq!(ok(&format!("show {name}")), Command::Show(s));
        assert_eq!(
            ok(&format!("  SHOW {}  ;  ", name.to_uppercase())),
            Command::Show(s)
        );
        assert_eq!(ok(&format!("select {name};")), Command::Show(s));
    }
    assert_eq!(ok("sHoW\tPoOlS\r\n;\n"), Command::Show(Show::Pools));
}

#[test]
fn control_commands_parse_with_optional_and_required_arguments() {
    let some = |s: &str| Some(s.to_owned());
    assert_eq!(ok("PAUSE"), Command::Pause(None));
    assert_eq!(ok("pause db1;"), Command::Pause(some("db1")));
    assert_eq!(ok("RESUME"), Command::Resume(None));
    assert_eq!(ok("resume MyDb"), Command::Resume(some("MyDb")));
    assert_eq!(ok("suspend"), Command::Suspend);
    assert_eq!(ok("disable db1"), Command::Disable("db1".into()));
    assert_eq!(ok("enable db1"), Command::Enable("db1".into()));
    assert_eq!(ok("reconnect"), Command::Reconnect(None));
    assert_eq!(ok("reconnect db1"), Command::Reconnect(some("db1")));
    assert_eq!(ok("kill"), Command::Kill(None));
    assert_eq!(ok("kill db1"), Command::Kill(some("db1")));
    assert_eq!(ok("kill_client 42"), Command::KillClient(42));
    assert_eq!(ok("shutdown"), Command::Shutdown(ShutdownMode::Immediate));
    assert_eq!(
        ok("SHUTDOWN wait_for_servers"),
        Command::Shutdown(ShutdownMode::WaitForServers)
    );
    assert_eq!(
        ok("shutdown WAIT_FOR_CLIENTS;"),
        Command::Shutdown(ShutdownMode::WaitForClients)
    );
    assert_eq!(ok("reload;"), Command::Reload);
    assert_eq!(ok("wait_close"), Command::WaitClose(None));
    assert_eq!(ok("wait_close db1"), Command::WaitClose(some("db1")));
}

#[test]
fn double_quoted_words_are_unquoted_with_doubled_quotes_collapsed() {
    assert_eq!(ok(r#""show" "pools""#), Command::Show(Show::Pools));
    assert_eq!(ok(r#"pause "my db""#), Command::Pause(Some("my db".into())));
    assert_eq!(ok(r#"pause "a""b";"#), Command::Pause(Some("a\"b".into())));
    assert_eq!(
        ok(r#"pause "Mixed-Case.db""#),
        Command::Pause(Some("Mixed-Case.db".into()))
    );
}

#[test]
fn fake_gucs_show_and_set() {
    assert_eq!(
        ok("show client_encoding"),
        Command::FakeGuc("client_encoding".into())
    );
    assert_eq!(ok("SHOW DateStyle"), Command::FakeGuc("datestyle".into()));
    assert_eq!(ok("select timezone;"), Command::FakeGuc("timezone".into()));
    assert_eq!(
        ok("show default_transaction_isolation"),
        Command::FakeGuc("default_transaction_isolation".into())
    );
    assert_eq!(
        ok("show standard_conforming_strings"),
        Command::FakeGuc("standard_conforming_strings".into())
    );
    assert_eq!(
        ok("SET client_encoding = 'UTF8'"),
        Command::SetFakeGuc("client_encoding".into())
    );
    assert_eq!(
        ok("set DATESTYLE to iso"),
        Command::SetFakeGuc("datestyle".into())
    );
}

#[test]
fn set_takes_words_or_single_quoted_strings_with_equals_or_to() {
    let set = |k: &str, v: &str| Command::Set {
        key: k.into(),
        value: v.into(),
    };
    assert_eq!(
        ok("set default_pool_size = 30"),
        set("default_pool_size", "30")
    );
    assert_eq!(
        ok("SET default_pool_size=30;"),
        set("default_pool_size", "30")
    );
    assert_eq!(
        ok("set default_pool_size to 30"),
        set("default_pool_size", "30")
    );
    assert_eq!(ok("set admin_users = 'a, b'"), set("admin_users", "a, b"));
    assert_eq!(
        ok("set ignore_startup_parameters = 'it''s'"),
        set("ignore_startup_parameters", "it's")
    );
    assert_eq!(ok("set log_connections = ''"), set("log_connections", ""));
    assert_eq!(
        ok(r#"set "pool_mode" = "session""#),
        set("pool_mode", "session")
    );
    // PgBouncer compat: the regex backtracks, so `ato` splits into key `a` and `to`.
    assert_eq!(ok("set ato b"), set("a", "b"));
    assert_eq!(ok("set x tob"), set("x", "b"));
}

#[test]
fn misses_give_invalid_command_with_the_query_text() {
    for q in [
        "",
        "   ",
        "show",
        "show nothing",
        "select 1",
        "show pools clients",
        "show pools; show clients;",
        "frobnicate",
        "reload now",
        "suspend db1",
        "shutdown later",
        "set x",
        "set x = ",
        "show\"pools\"",
        "pause 'db1'",
        "show pools,",
        "set key = 'unterminated",
    ] {
        assert_eq!(
            err(q),
            format!("invalid command '{q}', use SHOW HELP;"),
            "{q:?}"
        );
    }
    assert_eq!(parse("nope").unwrap_err().code, "08P01");
}

#[test]
fn too_long_words_and_empty_set_keys_are_bad_arguments() {
    let long_cmd = "a".repeat(16);
    assert_eq!(err(&long_cmd), "bad arguments");
    assert_eq!(err(&format!("pause {}", "d".repeat(64))), "bad arguments");
    assert!(parse(&format!("pause {}", "d".repeat(63))).is_ok());
    assert_eq!(
        err(&format!("set k = '{}'", "v".repeat(254))),
        "bad arguments"
    );
    assert!(parse(&format!("set k = '{}'", "v".repeat(253))).is_ok());
    assert_eq!(err(r#"set "" = 1"#), "bad arguments");
}

#[test]
fn argument_errors_of_admin_commands() {
    assert_eq!(parse("disable"), Err(AdminError::database_required()));
    assert_eq!(err("enable;"), "a database is required");
    assert_eq!(err("kill_client"), "invalid client pointer supplied");
    assert_eq!(err("kill_client abc"), "invalid client pointer supplied");
    assert_eq!(ok("kill_client 7abc"), Command::KillClient(7));
    assert_eq!(err("kill_client 99999999999"), "client not found");
}

#[test]
fn command_tags_follow_pgbouncer() {
    let tag = |sql: &str| ok(sql).tag();
    assert_eq!(tag("show pools").as_deref(), Some("SHOW"));
    assert_eq!(tag("show timezone").as_deref(), Some("SHOW"));
    assert_eq!(tag("set timezone = 'UTC'").as_deref(), Some("SET"));
    assert_eq!(
        tag("set default_pool_size = 5").as_deref(),
        Some("SET default_pool_size=5")
    );
    assert_eq!(tag("kill_client 3").as_deref(), Some("KILL_CLIENT"));
    assert_eq!(tag("wait_close").as_deref(), Some("WAIT_CLOSE"));
    assert_eq!(
        tag("shutdown wait_for_clients").as_deref(),
        Some("SHUTDOWN")
    );
    assert_eq!(tag("shutdown"), None);
}
