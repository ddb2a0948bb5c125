//! Scripted scenarios, one per setting or behaviour, named as sentences.

use super::*;

#[test]
fn first_client_gets_a_new_server_and_the_next_reuses_it() {
    let mut sim = Sim::new(test_config());
    let a = sim.client_logged_in("db", "app");
    sim.client_wants_server(a);
    let s = sim.server_connects();
    assert_eq!(sim.linked(a), Some(s));
    sim.release(a);
    let b = sim.client_logged_in("db", "app");
    sim.client_wants_server(b);
    assert_eq!(sim.linked(b), Some(s));
    assert!(sim.pending_connects.is_empty());
}

#[test]
fn waiting_clients_are_served_in_fifo_order() {
    let config = Config {
        default_pool_size: 1,
        ..test_config()
    };
    let mut sim = Sim::new(config);
    let clients: Vec<_> = (0..4).map(|_| sim.client_logged_in("db", "app")).collect();
    for &c in &clients {
        sim.client_wants_server(c);
    }
    sim.server_connects();
    for (i, &c) in clients.iter().enumerate() {
        assert!(
            sim.linked(c).is_some(),
            "client {i} should hold the server now"
        );
        for &other in &clients[i + 1..] {
            assert!(sim.linked(other).is_none());
        }
        sim.advance(secs(1));
        sim.release(c);
    }
    assert_eq!(
        sim.pool("db", "app").stats.totals.server_assignment_count,
        4
    );
}

#[test]
fn waiting_client_is_disconnected_after_query_wait_timeout() {
    let config = Config {
        default_pool_size: 1,
        query_wait_timeout: secs(5),
        ..test_config()
    };
    let mut sim = Sim::new(config);
    let (a, b) = (
        sim.client_logged_in("db", "app"),
        sim.client_logged_in("db", "app"),
    );
    sim.client_wants_server(a);
    sim.server_connects();
    sim.client_wants_server(b);
    sim.advance(secs(4));
    assert_eq!(sim.disconnected(b), None);
    sim.advance(secs(1));
    assert_eq!(
        sim.disconnected(b),
        Some(DisconnectReason::QueryWaitTimeout)
    );
    assert_eq!(sim.pool("db", "app").cl_waiting, 0);
    assert_eq!(sim.disconnected(a), None);
}

#[test]
fn max_client_conn_refuses_the_client_over_the_limit_only() {
    let config = Config {
        max_client_conn: 2,
        ..test_config()
    };
    let mut sim = Sim::new(config);
    let a = sim.client_logged_in("db", "app");
    let b = sim.client_logged_in("db", "app");
    let c = sim.client_connects("db", "app");
    assert_eq!(sim.disconnected(c), Some(DisconnectReason::MaxClientConn));
    assert_eq!(
        DisconnectReason::MaxClientConn.message(),
        "no more connections allowed (max_client_conn)"
    );
    assert_eq!(sim.disconnected(a), None);
    assert_eq!(sim.disconnected(b), None);
    sim.client_closes(a);
    let d = sim.client_connects("db", "app");
    assert_eq!(sim.disconnected(d), None);
}

#[test]
fn pool_never_opens_more_than_default_pool_size_servers() {
    let config = Config {
        default_pool_size: 3,
        ..test_config()
    };
    let mut sim = Sim::new(config);
    let clients: Vec<_> = (0..10).map(|_| sim.client_logged_in("db", "app")).collect();
    for &c in &clients {
        sim.client_wants_server(c);
    }
    // A cold pool logs in one server at a time until one login succeeds.
    assert_eq!(sim.pending_connects.len(), 1);
    sim.server_connects();
    assert_eq!(sim.pending_connects.len(), 2);
    while !sim.pending_connects.is_empty() {
        sim.server_connects();
    }
    assert_eq!(sim.pool("db", "app").sv_active, 3);
    assert_eq!(sim.pool("db", "app").cl_waiting, 7);
}

#[test]
fn default_pool_size_zero_means_unlimited() {
    let config = Config {
        default_pool_size: 0,
        ..test_config()
    };
    let mut sim = Sim::new(config);
    let clients: Vec<_> = (0..30).map(|_| sim.client_logged_in("db", "app")).collect();
    for &c in &clients {
        sim.client_wants_server(c);
    }
    assert_eq!(
        sim.pending_connects.len(),
        1,
        "one login until one succeeds"
    );
    sim.server_connects();
    assert_eq!(sim.pending_connects.len(), 29);
}

#[test]
fn per_database_and_per_user_pool_size_override_the_default() {
    let mut config = Config {
        default_pool_size: 5,
        ..test_config()
    };
    config.databases[0].pool_size = Some(2);
    config.databases.push(DatabaseConfig {
        name: "other".into(),
        ..Default::default()
    });
    config.users.push(UserConfig {
        name: "big".into(),
        pool_size: Some(4),
        ..Default::default()
    });
    let mut sim = Sim::new(config);
    for _ in 0..6 {
        let c = sim.client_logged_in("db", "app");
        sim.client_wants_server(c);
    }
    assert_eq!(
        sim.pending_connects.len(),
        1,
        "one login until one succeeds"
    );
    sim.server_connects();
    assert_eq!(sim.pending_connects.len(), 1, "db pool_size");
    sim.pending_connects.clear();
    let before = sim.pooler.servers.len();
    let first = sim.client_logged_in("db", "big");
    sim.client_wants_server(first);
    sim.server_connects();
    for _ in 0..5 {
        let c = sim.client_logged_in("db", "big");
        sim.client_wants_server(c);
    }
    assert_eq!(
        sim.pooler.servers.len() - before,
        4,
        "user pool_size beats the database's"
    );
}

#[test]
fn reserve_pool_is_used_only_after_reserve_pool_timeout() {
    let config = Config {
        default_pool_size: 1,
        reserve_pool_size: 1,
        reserve_pool_timeout: secs(3),
        ..test_config()
    };
    let mut sim = Sim::new(config);
    let (a, b) = (
        sim.client_logged_in("db", "app"),
        sim.client_logged_in("db", "app"),
    );
    sim.client_wants_server(a);
    sim.server_connects();
    sim.client_wants_server(b);
    sim.advance(secs(2));
    assert!(sim.pending_connects.is_empty(), "reserve used too early");
    sim.advance(secs(1));
    assert_eq!(
        sim.pending_connects.len(),
        1,
        "reserve not used after the timeout"
    );
    sim.server_connects();
    assert!(sim.linked(b).is_some());
}

#[test]
fn reserve_connection_is_closed_when_released_with_nobody_waiting() {
    let config = Config {
        default_pool_size: 1,
        reserve_pool_size: 1,
        reserve_pool_timeout: secs(1),
        ..test_config()
    };
    let mut sim = Sim::new(config);
    let (a, b) = (
        sim.client_logged_in("db", "app"),
        sim.client_logged_in("db", "app"),
    );
    sim.client_wants_server(a);
    sim.server_connects();
    sim.client_wants_server(b);
    sim.advance(secs(1));
    sim.server_connects();
    sim.release(a);
    sim.release(b);
    assert_eq!(
        sim.closed.values().collect::<Vec<_>>(),
        vec![&ServerCloseReason::PoolShrink]
    );
    assert_eq!(sim.server_count(), 1);
}

#[test]
fn max_db_connections_caps_servers_across_users_and_evicts_idle_ones() {
    let config = Config {
        default_pool_size: 5,
        max_db_connections: 2,
        ..test_config()
    };
    let mut sim = Sim::new(config);
    let a = sim.client_logged_in("db", "u1");
    let b = sim.client_logged_in("db", "u1");
    sim.client_wants_server(a);
    sim.client_wants_server(b);
    sim.server_connects();
    sim.server_connects();
    let c = sim.client_logged_in("db", "u2");
    sim.client_wants_server(c);
    assert!(sim.pending_connects.is_empty(), "over max_db_connections");
    sim.release(a);
    // a's server is idle in u1's pool: it is evicted to make room for u2.
    sim.advance(secs(1));
    assert_eq!(sim.pending_connects.len(), 1);
    assert!(sim
        .closed
        .values()
        .any(|r| *r == ServerCloseReason::Evicted));
}

#[test]
fn max_user_connections_caps_servers_across_databases() {
    let mut config = Config {
        default_pool_size: 5,
        max_user_connections: 1,
        ..test_config()
    };
    config.databases.push(DatabaseConfig {
        name: "db2".into(),
        ..Default::default()
    });
    let mut sim = Sim::new(config);
    let a = sim.client_logged_in("db", "u");
    let b = sim.client_logged_in("db2", "u");
    sim.client_wants_server(a);
    sim.client_wants_server(b);
    assert_eq!(sim.pending_connects.len(), 1);
}

#[test]
fn max_db_client_connections_and_max_user_client_connections_refuse_logins() {
    let config = Config {
        max_db_client_connections: 1,
        max_user_client_connections: 5,
        ..test_config()
    };
    let mut sim = Sim::new(config);
    let _a = sim.client_logged_in("db", "u");
    let b = sim.client_connects("db", "u");
    assert_eq!(
        sim.disconnected(b),
        Some(DisconnectReason::MaxDbClientConnections)
    );
    let config = Config {
        max_user_client_connections: 1,
        ..test_config()
    };
    let mut sim = Sim::new(config);
    let _a = sim.client_logged_in("db", "u");
    let b = sim.client_connects("db", "u");
    assert_eq!(
        sim.disconnected(b),
        Some(DisconnectReason::MaxUserClientConnections)
    );
}

#[test]
fn server_idle_timeout_closes_idle_servers_but_keeps_min_pool_size() {
    let config = Config {
        server_idle_timeout: secs(10),
        min_pool_size: 1,
        default_pool_size: 3,
        ..test_config()
    };
    let mut sim = Sim::new(config);
    let (a, b) = (
        sim.client_logged_in("db", "app"),
        sim.client_logged_in("db", "app"),
    );
    sim.client_wants_server(a);
    sim.client_wants_server(b);
    while !sim.pending_connects.is_empty() {
        sim.server_connects();
    }
    sim.release(a);
    sim.release(b);
    assert_eq!(sim.server_count(), 2);
    sim.advance(secs(10));
    assert_eq!(sim.server_count(), 1, "min_pool_size keeps one");
    assert!(sim
        .closed
        .values()
        .all(|r| *r == ServerCloseReason::IdleTimeout));
}

#[test]
fn server_lifetime_closes_a_server_when_it_is_released_after_its_lifetime() {
    let config = Config {
        server_lifetime: secs(60),
        server_idle_timeout: secs(0),
        ..test_config()
    };
    let mut sim = Sim::new(config);
    let a = sim.client_logged_in("db", "app");
    sim.client_wants_server(a);
    let s = sim.server_connects();
    sim.advance(secs(61));
    assert!(
        sim.closed.is_empty(),
        "a linked server is never closed for its lifetime"
    );
    sim.release(a);
    assert_eq!(sim.closed.get(&s), Some(&ServerCloseReason::LifetimeOver));
}

#[test]
fn server_lifetime_closes_idle_servers_via_the_timer() {
    let config = Config {
        server_lifetime: secs(60),
        server_idle_timeout: secs(0),
        ..test_config()
    };
    let mut sim = Sim::new(config);
    let a = sim.client_logged_in("db", "app");
    sim.client_wants_server(a);
    let s = sim.server_connects();
    sim.release(a);
    sim.advance(secs(60));
    assert_eq!(sim.closed.get(&s), Some(&ServerCloseReason::LifetimeOver));
}

#[test]
fn server_lifetime_zero_uses_each_server_once() {
    let config = Config {
        server_lifetime: secs(0),
        ..test_config()
    };
    let mut sim = Sim::new(config);
    let a = sim.client_logged_in("db", "app");
    sim.client_wants_server(a);
    let s = sim.server_connects();
    sim.release(a);
    assert_eq!(sim.closed.get(&s), Some(&ServerCloseReason::LifetimeOver));
}

#[test]
fn server_connect_timeout_drops_a_login_that_takes_too_long() {
    let config = Config {
        server_connect_timeout: secs(5),
        ..test_config()
    };
    let mut sim = Sim::new(config);
    let a = sim.client_logged_in("db", "app");
    sim.client_wants_server(a);
    let s = sim.pending_connects[0];
    sim.advance(secs(5));
    assert_eq!(sim.closed.get(&s), Some(&ServerCloseReason::ConnectTimeout));
}

#[test]
fn failed_server_login_is_sent_to_all_waiting_clients_with_the_server_sqlstate() {
    let mut sim = Sim::new(test_config());
    let (a, b) = (
        sim.client_logged_in("db", "app"),
        sim.client_logged_in("db", "app"),
    );
    sim.client_wants_server(a);
    sim.client_wants_server(b);
    sim.server_fails("28P01", "password authentication failed for user \"app\"");
    for c in [a, b] {
        let reason = sim.disconnected(c).expect("disconnected");
        assert_eq!(reason.sqlstate(), "28P01");
        assert_eq!(
            reason.message(),
            "password authentication failed for user \"app\""
        );
    }
}

#[test]
fn server_login_retry_fails_new_clients_fast_with_the_cached_error() {
    let config = Config {
        server_login_retry: secs(15),
        ..test_config()
    };
    let mut sim = Sim::new(config);
    let a = sim.client_logged_in("db", "app");
    sim.client_wants_server(a);
    sim.server_fails("3D000", "database \"nope\" does not exist");
    let b = sim.client_logged_in("db", "app");
    sim.client_wants_server(b);
    assert_eq!(
        sim.disconnected(b).unwrap().message(),
        "server login has been failing, cached error: database \"nope\" does not exist (server_login_retry)"
    );
    sim.advance(secs(15));
    let c = sim.client_logged_in("db", "app");
    sim.client_wants_server(c);
    assert_eq!(sim.disconnected(c), None);
    assert_eq!(
        sim.pending_connects.len(),
        1,
        "retried after server_login_retry"
    );
}

#[test]
fn cannot_connect_now_keeps_clients_waiting() {
    let mut sim = Sim::new(test_config());
    let a = sim.client_logged_in("db", "app");
    sim.client_wants_server(a);
    sim.server_fails("57P03", "the database system is starting up");
    assert_eq!(sim.disconnected(a), None);
    sim.advance(secs(15));
    sim.server_connects();
    assert!(sim.linked(a).is_some());
}

#[test]
fn client_idle_timeout_disconnects_unlinked_idle_clients() {
    let config = Config {
        client_idle_timeout: secs(30),
        ..test_config()
    };
    let mut sim = Sim::new(config);
    let a = sim.client_logged_in("db", "app");
    let b = sim.client_logged_in("db", "app");
    sim.client_wants_server(b);
    sim.server_connects();
    sim.advance(secs(30));
    assert_eq!(
        sim.disconnected(a),
        Some(DisconnectReason::ClientIdleTimeout)
    );
    assert_eq!(sim.disconnected(b), None, "a linked client is not idle");
}

#[test]
fn client_login_timeout_disconnects_clients_that_never_finish_login() {
    let config = Config {
        client_login_timeout: secs(60),
        ..test_config()
    };
    let mut sim = Sim::new(config);
    let a = sim.client_connects("db", "app");
    sim.advance(secs(60));
    assert_eq!(
        sim.disconnected(a),
        Some(DisconnectReason::ClientLoginTimeout)
    );
}

#[test]
fn query_timeout_applies_to_waiting_clients() {
    let config = Config {
        default_pool_size: 1,
        query_timeout: secs(2),
        ..test_config()
    };
    let mut sim = Sim::new(config);
    let (a, b) = (
        sim.client_logged_in("db", "app"),
        sim.client_logged_in("db", "app"),
    );
    sim.client_wants_server(a);
    sim.server_connects();
    sim.client_wants_server(b);
    sim.advance(secs(2));
    assert_eq!(
        sim.disconnected(b),
        Some(DisconnectReason::QueryTimeoutWaiting)
    );
}

#[test]
fn client_leaving_mid_transaction_never_returns_its_server_to_the_pool() {
    let mut sim = Sim::new(test_config());
    let a = sim.client_logged_in("db", "app");
    sim.client_wants_server(a);
    let s = sim.server_connects();
    sim.client_closes(a);
    assert_eq!(
        sim.closed.get(&s),
        Some(&ServerCloseReason::ClientDisconnectedDirty)
    );
    assert_eq!(sim.pool("db", "app").sv_idle, 0);
}

#[test]
fn dirty_release_closes_the_server() {
    let mut sim = Sim::new(test_config());
    let a = sim.client_logged_in("db", "app");
    sim.client_wants_server(a);
    let s = sim.server_connects();
    sim.release_dirty(a);
    assert_eq!(sim.closed.get(&s), Some(&ServerCloseReason::Dirty));
}

#[test]
fn session_mode_runs_the_reset_query_before_the_server_is_reused() {
    let config = Config {
        pool_mode: PoolMode::Session,
        server_reset_enabled: true,
        ..test_config()
    };
    let mut sim = Sim::new(config);
    let a = sim.client_logged_in("db", "app");
    sim.client_wants_server(a);
    let s = sim.server_connects();
    sim.release(a);
    assert_eq!(sim.resets, vec![s]);
    let b = sim.client_logged_in("db", "app");
    sim.client_wants_server(b);
    assert_eq!(sim.linked(b), None, "not before the reset finished");
    sim.event(Event::ServerResetDone {
        server: s,
        ok: true,
    });
    assert_eq!(sim.linked(b), Some(s));
}

#[test]
fn transaction_mode_skips_the_reset_query_unless_server_reset_query_always() {
    let config = Config {
        server_reset_enabled: true,
        ..test_config()
    };
    let mut sim = Sim::new(config.clone());
    let a = sim.client_logged_in("db", "app");
    sim.client_wants_server(a);
    sim.server_connects();
    sim.release(a);
    assert!(sim.resets.is_empty());
    let mut sim = Sim::new(Config {
        server_reset_query_always: true,
        ..config
    });
    let a = sim.client_logged_in("db", "app");
    sim.client_wants_server(a);
    sim.server_connects();
    sim.release(a);
    assert_eq!(sim.resets.len(), 1);
}

#[test]
fn failed_reset_closes_the_server() {
    let config = Config {
        pool_mode: PoolMode::Session,
        server_reset_enabled: true,
        ..test_config()
    };
    let mut sim = Sim::new(config);
    let a = sim.client_logged_in("db", "app");
    sim.client_wants_server(a);
    let s = sim.server_connects();
    sim.release(a);
    sim.event(Event::ServerResetDone {
        server: s,
        ok: false,
    });
    assert_eq!(sim.closed.get(&s), Some(&ServerCloseReason::ResetFailed));
}

#[test]
fn server_check_delay_sends_servers_idle_too_long_through_the_check_query() {
    let config = Config {
        server_check_enabled: true,
        server_check_delay: secs(30),
        ..test_config()
    };
    let mut sim = Sim::new(config);
    let a = sim.client_logged_in("db", "app");
    sim.client_wants_server(a);
    let s = sim.server_connects();
    sim.release(a);
    sim.advance(secs(10));
    sim.client_wants_server(a);
    assert_eq!(sim.linked(a), Some(s), "fresh enough: no check");
    sim.release(a);
    sim.advance(secs(31));
    assert_eq!(sim.pool("db", "app").sv_used, 1);
    sim.client_wants_server(a);
    assert_eq!(sim.checks, vec![s]);
    sim.event(Event::ServerResetDone {
        server: s,
        ok: true,
    });
    assert_eq!(sim.linked(a), Some(s));
}

#[test]
fn round_robin_reuses_idle_servers_fifo_and_default_is_lifo() {
    for (round_robin, expect_first) in [(false, true), (true, false)] {
        let config = Config {
            server_round_robin: round_robin,
            ..test_config()
        };
        let mut sim = Sim::new(config);
        let (a, b) = (
            sim.client_logged_in("db", "app"),
            sim.client_logged_in("db", "app"),
        );
        sim.client_wants_server(a);
        sim.client_wants_server(b);
        let s1 = sim.server_connects();
        let s2 = sim.server_connects();
        sim.release(
            sim.links
                .iter()
                .find(|(_, s)| **s == s1)
                .map(|(c, _)| *c)
                .unwrap(),
        );
        sim.release(
            sim.links
                .iter()
                .find(|(_, s)| **s == s2)
                .map(|(c, _)| *c)
                .unwrap(),
        );
        sim.client_wants_server(a);
        let got = sim.linked(a).unwrap();
        // LIFO gives back s2 (released last); FIFO gives s1.
        assert_eq!(got == s2, expect_first, "round_robin={round_robin}");
    }
}

#[test]
fn pause_waits_for_active_servers_and_resume_serves_waiting_clients() {
    let mut sim = Sim::new(test_config());
    let (a, b) = (
        sim.client_logged_in("db", "app"),
        sim.client_logged_in("db", "app"),
    );
    sim.client_wants_server(a);
    sim.server_connects();
    sim.event(Event::Pause { database: None });
    assert!(sim.pause_done.is_empty(), "a is still in a transaction");
    sim.release(a);
    assert_eq!(sim.pause_done, vec![None]);
    assert_eq!(sim.server_count(), 0);
    sim.client_wants_server(b);
    assert!(sim.pending_connects.is_empty(), "paused: b waits");
    sim.event(Event::Resume { database: None });
    sim.server_connects();
    assert!(sim.linked(b).is_some());
    assert_eq!(sim.disconnected(b), None);
}

#[test]
fn pause_of_one_database_leaves_the_others_running() {
    let mut config = test_config();
    config.databases.push(DatabaseConfig {
        name: "db2".into(),
        ..Default::default()
    });
    let mut sim = Sim::new(config);
    sim.event(Event::Pause {
        database: Some("db".into()),
    });
    assert_eq!(sim.pause_done, vec![Some("db".to_string())]);
    let a = sim.client_logged_in("db", "app");
    let b = sim.client_logged_in("db2", "app");
    sim.client_wants_server(a);
    sim.client_wants_server(b);
    assert_eq!(sim.pending_connects.len(), 1);
    sim.server_connects();
    assert!(sim.linked(b).is_some());
}

#[test]
fn disabled_database_refuses_new_clients() {
    let mut sim = Sim::new(test_config());
    sim.event(Event::Disable {
        database: "db".into(),
    });
    let a = sim.client_connects("db", "app");
    assert_eq!(
        sim.disconnected(a).unwrap().message(),
        "database \"db\" is disabled"
    );
    sim.event(Event::Enable {
        database: "db".into(),
    });
    let b = sim.client_connects("db", "app");
    assert_eq!(sim.disconnected(b), None);
}

#[test]
fn kill_drops_clients_and_servers_of_the_database_and_pauses_it() {
    let mut sim = Sim::new(test_config());
    let a = sim.client_logged_in("db", "app");
    sim.client_wants_server(a);
    sim.server_connects();
    sim.event(Event::Kill {
        database: Some("db".into()),
    });
    assert_eq!(sim.disconnected(a), Some(DisconnectReason::DatabaseRemoved));
    assert_eq!(sim.server_count(), 0);
    assert!(sim.pooler.is_paused(Some("db")));
}

#[test]
fn kill_client_disconnects_one_client_with_admin_forced_disconnect() {
    let mut sim = Sim::new(test_config());
    let a = sim.client_logged_in("db", "app");
    let b = sim.client_logged_in("db", "app");
    sim.event(Event::KillClient { client: a });
    assert_eq!(
        sim.disconnected(a).unwrap().message(),
        "admin forced disconnect"
    );
    assert_eq!(sim.disconnected(b), None);
}

#[test]
fn reconnect_closes_idle_servers_now_and_busy_ones_on_release() {
    let mut sim = Sim::new(test_config());
    let (a, b) = (
        sim.client_logged_in("db", "app"),
        sim.client_logged_in("db", "app"),
    );
    sim.client_wants_server(a);
    sim.client_wants_server(b);
    let s1 = sim.server_connects();
    let s2 = sim.server_connects();
    let holder_of_s1 = if sim.linked(a) == Some(s1) { a } else { b };
    sim.release(holder_of_s1);
    sim.event(Event::Reconnect { database: None });
    assert_eq!(sim.closed.get(&s1), Some(&ServerCloseReason::CloseNeeded));
    assert!(
        !sim.closed.contains_key(&s2),
        "busy server stays until released"
    );
    let holder_of_s2 = if holder_of_s1 == a { b } else { a };
    sim.release(holder_of_s2);
    assert_eq!(sim.closed.get(&s2), Some(&ServerCloseReason::CloseNeeded));
}

#[test]
fn reload_shrinking_the_pool_closes_surplus_idle_servers_never_busy_ones() {
    let config = Config {
        default_pool_size: 3,
        ..test_config()
    };
    let mut sim = Sim::new(config.clone());
    let cs: Vec<_> = (0..3).map(|_| sim.client_logged_in("db", "app")).collect();
    for &c in &cs {
        sim.client_wants_server(c);
    }
    for _ in 0..3 {
        sim.server_connects();
    }
    sim.release(cs[0]);
    sim.event(Event::Reload(Box::new(Config {
        default_pool_size: 1,
        ..config
    })));
    assert_eq!(sim.closed.len(), 1, "only the idle one is closed now");
    assert!(cs[1..].iter().all(|c| sim.linked(*c).is_some()));
    sim.release(cs[1]);
    assert_eq!(sim.server_count(), 1);
}

#[test]
fn reload_growing_the_pool_serves_waiting_clients() {
    let config = Config {
        default_pool_size: 1,
        ..test_config()
    };
    let mut sim = Sim::new(config.clone());
    let (a, b) = (
        sim.client_logged_in("db", "app"),
        sim.client_logged_in("db", "app"),
    );
    sim.client_wants_server(a);
    sim.server_connects();
    sim.client_wants_server(b);
    sim.event(Event::Reload(Box::new(Config {
        default_pool_size: 2,
        ..config
    })));
    assert_eq!(sim.pending_connects.len(), 1);
}

#[test]
fn cancel_request_for_a_linked_client_goes_to_its_server() {
    let mut sim = Sim::new(test_config());
    let a = sim.client_logged_in("db", "app");
    sim.client_wants_server(a);
    let s = sim.server_connects();
    sim.event(Event::CancelRequested {
        key: u64::from(a.0) * 1000,
    });
    assert_eq!(sim.cancels, vec![(a, s)]);
    sim.event(Event::CancelRequested { key: 999_999 });
    assert_eq!(sim.cancels.len(), 1, "unknown key ignored");
}

#[test]
fn cancel_request_for_a_waiting_client_removes_it_from_the_queue() {
    let config = Config {
        default_pool_size: 1,
        ..test_config()
    };
    let mut sim = Sim::new(config);
    let (a, b) = (
        sim.client_logged_in("db", "app"),
        sim.client_logged_in("db", "app"),
    );
    sim.client_wants_server(a);
    sim.server_connects();
    sim.client_wants_server(b);
    sim.event(Event::CancelRequested {
        key: u64::from(b.0) * 1000,
    });
    assert_eq!(sim.cancelled_waits, vec![b]);
    assert_eq!(sim.pool("db", "app").cl_waiting, 0);
    sim.release(a);
    assert_eq!(sim.linked(b), None);
}

#[test]
fn min_pool_size_opens_servers_once_the_pool_has_a_client() {
    let config = Config {
        min_pool_size: 2,
        default_pool_size: 5,
        ..test_config()
    };
    let mut sim = Sim::new(config);
    let _a = sim.client_logged_in("db", "app");
    // One login at a time until one succeeds, then the rest of the fill.
    assert_eq!(sim.pending_connects.len(), 1);
    sim.server_connects();
    assert_eq!(sim.pending_connects.len(), 1);
    sim.server_connects();
    assert_eq!(sim.pool("db", "app").sv_idle, 2);
}

#[test]
fn stats_count_assignments_wait_time_and_averages_per_period() {
    let config = Config {
        default_pool_size: 1,
        stats_period: secs(10),
        ..test_config()
    };
    let mut sim = Sim::new(config);
    let (a, b) = (
        sim.client_logged_in("db", "app"),
        sim.client_logged_in("db", "app"),
    );
    sim.client_wants_server(a);
    sim.server_connects();
    sim.client_wants_server(b);
    sim.advance(secs(2));
    sim.release(a);
    sim.release(b);
    let stats = sim.pool("db", "app").stats.totals;
    assert_eq!(stats.server_assignment_count, 2);
    assert_eq!(stats.xact_count, 2);
    assert_eq!(stats.wait_time, 2_000_000);
    sim.advance(secs(10));
    let avg = sim.pool("db", "app").stats.averages;
    assert_eq!(avg.xact_time, 100);
    assert_eq!(avg.wait_time, 1_000_000);
}

#[test]
fn poll_timeout_is_none_when_nothing_is_pending_and_extra_timeouts_do_nothing() {
    let config = Config {
        server_idle_timeout: secs(0),
        server_lifetime: secs(0),
        client_login_timeout: secs(0),
        stats_period: secs(60),
        ..test_config()
    };
    let mut sim = Sim::new(config);
    let a = sim.client_logged_in("db", "app");
    let wake = sim
        .pooler
        .poll_timeout()
        .expect("stats roll is always scheduled");
    sim.pooler
        .handle_timeout(Instant::from_micros(wake.as_micros() - 1));
    assert!(sim.pooler.poll_action().is_none());
    assert_eq!(sim.disconnected(a), None);
}

#[test]
fn a_waiting_client_gets_a_new_server_when_the_holder_leaves_mid_transaction() {
    let config = Config {
        default_pool_size: 1,
        ..test_config()
    };
    let mut sim = Sim::new(config);
    let (a, b) = (
        sim.client_logged_in("db", "app"),
        sim.client_logged_in("db", "app"),
    );
    sim.client_wants_server(a);
    sim.server_connects();
    sim.client_wants_server(b);
    sim.client_closes(a); // dirty: its server is closed, the slot is free
    assert_eq!(
        sim.pending_connects.len(),
        1,
        "a replacement server is opened at once"
    );
    sim.server_connects();
    assert!(sim.linked(b).is_some());
}

#[test]
fn query_wait_timeout_per_user_beats_per_database_beats_global() {
    let mut config = Config {
        default_pool_size: 1,
        query_wait_timeout: secs(100),
        ..test_config()
    };
    config.databases[0].query_wait_timeout = Some(secs(10));
    config.users.push(UserConfig {
        name: "quick".into(),
        query_wait_timeout: Some(secs(2)),
        ..Default::default()
    });
    let mut sim = Sim::new(config);
    for user in ["quick", "app"] {
        let a = sim.client_logged_in("db", user);
        sim.client_wants_server(a);
        sim.server_connects();
    }
    let (q, s) = (
        sim.client_logged_in("db", "quick"),
        sim.client_logged_in("db", "app"),
    );
    sim.client_wants_server(q);
    sim.client_wants_server(s);
    sim.advance(secs(2));
    assert_eq!(
        sim.disconnected(q),
        Some(DisconnectReason::QueryWaitTimeout),
        "user setting: 2 s"
    );
    assert_eq!(sim.disconnected(s), None);
    sim.advance(secs(8));
    assert_eq!(
        sim.disconnected(s),
        Some(DisconnectReason::QueryWaitTimeout),
        "database setting: 10 s"
    );
}

#[test]
fn client_idle_timeout_per_user_beats_the_global_one() {
    let mut config = Config {
        client_idle_timeout: secs(0),
        ..test_config()
    };
    config.users.push(UserConfig {
        name: "short".into(),
        client_idle_timeout: Some(secs(5)),
        ..Default::default()
    });
    let mut sim = Sim::new(config);
    let short = sim.client_logged_in("db", "short");
    let other = sim.client_logged_in("db", "app");
    sim.advance(secs(5));
    assert_eq!(
        sim.disconnected(short),
        Some(DisconnectReason::ClientIdleTimeout)
    );
    assert_eq!(
        sim.disconnected(other),
        None,
        "no global client_idle_timeout"
    );
}

#[test]
fn server_fast_close_asks_session_clients_to_leave_after_their_transaction_on_reconnect() {
    let config = Config {
        pool_mode: PoolMode::Session,
        server_fast_close: true,
        ..test_config()
    };
    let mut sim = Sim::new(config);
    let a = sim.client_logged_in("db", "app");
    sim.client_wants_server(a);
    sim.server_connects();
    sim.event(Event::Reconnect { database: None });
    assert_eq!(sim.fast_closed, vec![a]);
    let mut sim = Sim::new(Config {
        pool_mode: PoolMode::Session,
        ..test_config()
    });
    let a = sim.client_logged_in("db", "app");
    sim.client_wants_server(a);
    sim.server_connects();
    sim.event(Event::Reconnect { database: None });
    assert!(
        sim.fast_closed.is_empty(),
        "off by default: the server closes when the client leaves"
    );
}

#[test]
fn a_server_released_while_its_cancel_is_in_flight_waits_for_the_cancel() {
    // The cancel may still reach the server after the query it was for has ended; the
    // next client must not get the server before the cancel is done.
    let config = Config {
        default_pool_size: 1,
        ..test_config()
    };
    let mut sim = Sim::new(config);
    let (a, b) = (
        sim.client_logged_in("db", "app"),
        sim.client_logged_in("db", "app"),
    );
    sim.client_wants_server(a);
    let s = sim.server_connects();
    sim.event(Event::CancelRequested {
        key: u64::from(a.0) * 1000,
    });
    assert_eq!(sim.cancels, vec![(a, s)]);
    sim.release(a);
    assert_eq!(sim.pool("db", "app").sv_being_canceled, 1);
    sim.client_wants_server(b);
    assert_eq!(sim.linked(b), None, "held while the cancel is in flight");
    assert!(
        sim.pending_connects.is_empty(),
        "the held server counts toward the pool"
    );
    sim.event(Event::CancelFinished { server: s });
    assert_eq!(sim.linked(b), Some(s));
    assert_eq!(sim.pool("db", "app").sv_being_canceled, 0);
}

#[test]
fn a_cancel_that_finishes_while_the_server_is_still_linked_changes_nothing() {
    let mut sim = Sim::new(test_config());
    let a = sim.client_logged_in("db", "app");
    sim.client_wants_server(a);
    let s = sim.server_connects();
    sim.event(Event::CancelRequested {
        key: u64::from(a.0) * 1000,
    });
    sim.event(Event::CancelFinished { server: s });
    sim.release(a);
    assert_eq!(sim.pool("db", "app").sv_idle, 1);
    assert_eq!(sim.pool("db", "app").sv_being_canceled, 0);
}

#[test]
fn an_idle_auto_database_pool_is_freed_after_autodb_idle_timeout_and_others_go_on() {
    let config = Config {
        autodb_idle_timeout: secs(100),
        server_idle_timeout: secs(10),
        ..test_config()
    };
    let mut sim = Sim::new(config);
    // "auto1" and "auto2" are not in [databases]: auto-databases. "db" is configured.
    let (a, b, c) = (
        sim.client_logged_in("auto1", "app"),
        sim.client_logged_in("db", "app"),
        sim.client_logged_in("auto2", "app"),
    );
    for client in [a, b, c] {
        sim.client_wants_server(client);
        sim.server_connects();
        sim.release(client);
    }
    sim.client_closes(a);
    sim.client_closes(b);
    // The servers go at server_idle_timeout; auto1 and db are then empty.
    sim.advance(secs(20));
    assert!(sim.has_pool("auto1", "app") && sim.has_pool("db", "app"));
    sim.advance(secs(100));
    assert!(
        !sim.has_pool("auto1", "app"),
        "idle auto-database pool kept"
    );
    assert!(
        sim.has_pool("db", "app"),
        "a configured database's pool was freed"
    );
    assert!(
        sim.has_pool("auto2", "app"),
        "an auto-database pool with a client was freed"
    );
    assert_eq!(sim.freed, vec![PoolKey::new("auto1", "app")]);
    // The pool that took the freed one's place still serves its client.
    sim.client_wants_server(c);
    sim.server_connects();
    assert!(sim.linked(c).is_some());
    sim.release(c);
    assert_eq!(
        sim.pool("auto2", "app")
            .stats
            .totals
            .server_assignment_count,
        2
    );
    // A new client of auto1 gets a fresh pool.
    let d = sim.client_logged_in("auto1", "app");
    sim.client_wants_server(d);
    sim.server_connects();
    assert!(sim.linked(d).is_some());
}

#[test]
fn autodb_idle_timeout_zero_keeps_auto_database_pools() {
    let config = Config {
        autodb_idle_timeout: Duration::ZERO,
        ..test_config()
    };
    let mut sim = Sim::new(config);
    let a = sim.client_logged_in("auto1", "app");
    sim.client_closes(a);
    sim.advance(secs(100_000));
    assert!(sim.has_pool("auto1", "app"));
    assert!(sim.freed.is_empty());
}

#[test]
fn an_unreachable_server_keeps_waiting_clients_until_a_retry_succeeds() {
    let config = Config {
        server_login_retry: secs(3),
        ..test_config()
    };
    let mut sim = Sim::new(config);
    let a = sim.client_logged_in("db", "app");
    sim.client_wants_server(a);
    let server = sim.pending_connects.remove(0);
    sim.event(Event::ServerUnreachable {
        server,
        message: "connect failed".into(),
    });
    // Not failed: it waits, and no new attempt starts inside server_login_retry.
    assert_eq!(sim.disconnected(a), None);
    assert!(sim.pending_connects.is_empty());
    // A client with its welcome that needs a server now gets the cached error; one that
    // still waits for its welcome waits too.
    let b = sim.client_logged_in("db", "app");
    sim.client_wants_server(b);
    assert_eq!(
        sim.disconnected(b).unwrap().message(),
        "server login has been failing, cached error: connect failed (server_login_retry)"
    );
    let c = sim.client_logged_in("db", "app");
    sim.event(Event::ClientWantsWelcome { client: c });
    assert_eq!(sim.disconnected(c), None);
    sim.advance(secs(3));
    assert!(
        !sim.pending_connects.is_empty(),
        "retried after server_login_retry"
    );
    while !sim.pending_connects.is_empty() {
        sim.server_connects();
    }
    assert!(
        sim.linked(a).is_some(),
        "the first waiting client gets a server"
    );
    assert!(
        sim.linked(c).is_some(),
        "and so does the one waiting for its welcome"
    );
    sim.check_invariants();
}

#[test]
fn server_check_delay_zero_checks_each_released_server_once_and_fresh_ones_never() {
    let config = Config {
        server_check_delay: secs(0),
        server_check_enabled: true,
        ..test_config()
    };
    let mut sim = Sim::new(config);
    let a = sim.client_logged_in("db", "app");
    sim.client_wants_server(a);
    sim.server_connects();
    assert!(
        sim.linked(a).is_some(),
        "a fresh server is used without a check"
    );
    assert!(sim.checks.is_empty());
    sim.release(a);
    let b = sim.client_logged_in("db", "app");
    sim.client_wants_server(b);
    assert_eq!(
        sim.checks.len(),
        1,
        "a released server is checked before reuse"
    );
    let server = sim.checks.remove(0);
    sim.event(Event::ServerResetDone { server, ok: true });
    assert_eq!(
        sim.linked(b),
        Some(server),
        "the passing check hands it to the client"
    );
    assert!(sim.checks.is_empty(), "checked once, not again and again");
    sim.check_invariants();
}

#[test]
fn pool_idle_timeout_frees_empty_pools_of_configured_databases_but_not_kept_ones() {
    let mut config = Config {
        pool_idle_timeout: secs(30),
        server_idle_timeout: secs(10),
        ..test_config()
    };
    config.databases.push(crate::DatabaseConfig {
        name: "kept".into(),
        forced_user: Some("app".into()),
        min_pool_size: Some(1),
        ..Default::default()
    });
    let mut sim = Sim::new(config);
    let (a, b) = (
        sim.client_logged_in("db", "app"),
        sim.client_logged_in("db", "other"),
    );
    for client in [a, b] {
        sim.client_wants_server(client);
        sim.server_connects();
        sim.release(client);
    }
    sim.client_closes(a);
    // db/app: no client; its server goes at server_idle_timeout, then 30 s empty.
    sim.advance(secs(20));
    assert!(sim.has_pool("db", "app"));
    sim.advance(secs(31));
    assert!(!sim.has_pool("db", "app"), "the empty pool was kept");
    assert!(
        sim.has_pool("db", "other"),
        "a pool with a client was freed"
    );
    assert_eq!(sim.freed, vec![PoolKey::new("db", "app")]);
    // A forced-user pool with min_pool_size is never freed, even when its servers fail.
    let k = sim.client_logged_in("kept", "app");
    sim.client_wants_server(k);
    while !sim.pending_connects.is_empty() {
        sim.server_connects();
    }
    sim.release(k);
    sim.client_closes(k);
    sim.advance(secs(100));
    assert!(sim.has_pool("kept", "app"));
    sim.check_invariants();
}

#[test]
fn a_forced_user_database_with_min_pool_size_is_filled_without_clients() {
    let mut config = test_config();
    config.databases.push(crate::DatabaseConfig {
        name: "kept".into(),
        forced_user: Some("bouncer".into()),
        min_pool_size: Some(2),
        pool_size: Some(3),
        ..Default::default()
    });
    let mut sim = Sim::new(config);
    sim.advance(secs(1));
    assert_eq!(
        sim.pending_connects.len(),
        1,
        "a server opened with no client (one login at a time until one succeeds)"
    );
    while !sim.pending_connects.is_empty() {
        sim.server_connects();
    }
    assert_eq!(sim.pool("kept", "bouncer").sv_idle, 2);
    // A lost server is replaced.
    let victim = sim.pool("kept", "bouncer").sv_idle;
    assert_eq!(victim, 2);
    let server = *sim.pooler.pools[0].idle.front().unwrap();
    sim.event(Event::ServerClosed { server });
    sim.advance(secs(1));
    assert_eq!(sim.pending_connects.len(), 1);
    // A reload that raises min_pool_size fills up to the new value.
    sim.server_connects();
    let mut bigger = test_config();
    bigger.databases.push(crate::DatabaseConfig {
        name: "kept".into(),
        forced_user: Some("bouncer".into()),
        min_pool_size: Some(3),
        pool_size: Some(3),
        ..Default::default()
    });
    sim.event(Event::Reload(Box::new(bigger)));
    assert_eq!(sim.pending_connects.len(), 1);
    sim.check_invariants();
}

#[test]
fn shutdown_wait_for_servers_lets_running_transactions_finish_and_fails_the_rest() {
    let config = Config {
        default_pool_size: 1,
        ..test_config()
    };
    let mut sim = Sim::new(config);
    let (a, b) = (
        sim.client_logged_in("db", "app"),
        sim.client_logged_in("db", "app"),
    );
    sim.client_wants_server(a);
    sim.server_connects();
    sim.client_wants_server(b); // queued behind a
    sim.event(Event::ShutdownWaitForServers);
    assert_eq!(
        sim.disconnected(b).map(|r| r.message()),
        Some("server shutting down".into())
    );
    assert!(sim.linked(a).is_some(), "the running transaction goes on");
    sim.release(a);
    assert_eq!(sim.server_count(), 0, "the released server closes");
    assert_eq!(sim.pause_done, vec![None]);
    sim.client_wants_server(a);
    assert_eq!(
        sim.disconnected(a).map(|r| r.message()),
        Some("server shutting down".into())
    );
    sim.check_invariants();
}

#[test]
fn replication_clients_count_toward_pool_size_and_wait_for_a_free_slot() {
    let config = Config {
        default_pool_size: 2,
        ..test_config()
    };
    let mut sim = Sim::new(config);
    let r: Vec<_> = (0..3).map(|_| sim.client_logged_in("db", "app")).collect();
    for &c in &r {
        sim.event(Event::ReplicationServerWanted { client: c });
    }
    // Two run at once, each on a server of its own; the third waits.
    let (s0, s1) = (sim.linked(r[0]).unwrap(), sim.linked(r[1]).unwrap());
    assert_ne!(s0, s1);
    assert_eq!(sim.linked(r[2]), None);
    assert!(
        sim.pending_connects.is_empty(),
        "no normal connect for them"
    );
    let p = sim.pool("db", "app");
    assert_eq!((p.sv_active, p.cl_waiting), (2, 1));
    // A normal client of the full pool waits too.
    let n = sim.client_logged_in("db", "app");
    sim.client_wants_server(n);
    assert_eq!(sim.linked(n), None);
    // The first leaves: its server closes (never reused), the next in the queue, the
    // third replication client, gets a new one.
    sim.client_closes(r[0]);
    assert!(sim.closed.contains_key(&s0));
    let s2 = sim.linked(r[2]).expect("the waiting replication client");
    assert!(s2 != s0 && s2 != s1);
    assert_eq!(sim.linked(n), None);
    sim.client_closes(r[1]);
    sim.server_connects();
    assert!(sim.linked(n).is_some(), "the normal client after them");
}

#[test]
fn a_replication_client_of_a_full_pool_evicts_an_idle_normal_server() {
    let config = Config {
        default_pool_size: 2,
        ..test_config()
    };
    let mut sim = Sim::new(config);
    let a = sim.client_logged_in("db", "app");
    let b = sim.client_logged_in("db", "app");
    sim.client_wants_server(a);
    sim.client_wants_server(b);
    let sa = sim.server_connects();
    let sb = sim.server_connects();
    sim.release(a);
    sim.release(b);
    assert_eq!(sim.pool("db", "app").sv_idle, 2);
    let r = sim.client_logged_in("db", "app");
    sim.event(Event::ReplicationServerWanted { client: r });
    let evicted: Vec<_> = [sa, sb]
        .into_iter()
        .filter(|s| sim.closed.get(s) == Some(&ServerCloseReason::Evicted))
        .collect();
    assert_eq!(evicted.len(), 1, "{:?}", sim.closed);
    assert!(sim.linked(r).is_some());
    let p = sim.pool("db", "app");
    assert_eq!((p.sv_idle, p.sv_active), (1, 1));
}

#[test]
fn an_idle_server_of_the_clients_locality_is_preferred_over_the_most_recent_one() {
    let mut sim = Sim::new(test_config());
    let (a, b, c) = (
        sim.client_logged_in("db", "app"),
        sim.client_logged_in("db", "app"),
        sim.client_logged_in("db", "app"),
    );
    sim.pooler.set_client_locality(a, 1);
    sim.pooler.set_client_locality(b, 2);
    sim.pooler.set_client_locality(c, 1);
    sim.client_wants_server(a);
    sim.client_wants_server(b);
    sim.server_connects();
    sim.server_connects();
    let (sa, sb) = (sim.linked(a).unwrap(), sim.linked(b).unwrap());
    sim.release(a);
    sim.release(b);
    // Plain LIFO would hand c the server b released last; c shares a's locality.
    sim.client_wants_server(c);
    assert_eq!(sim.linked(c), Some(sa));
    // No idle server of its locality left: the most recent one, as before.
    sim.release(c);
    sim.pooler.set_client_locality(a, 3);
    sim.client_wants_server(a);
    assert_eq!(sim.linked(a), Some(sa), "LIFO among other localities");
    sim.client_wants_server(b);
    assert_eq!(sim.linked(b), Some(sb));
    // Limits and counters are untouched by the preference.
    assert_eq!(sim.pool("db", "app").sv_active, 2);
}

#[test]
fn a_waiter_of_the_servers_locality_may_go_first_but_the_head_is_passed_over_a_bounded_number_of_times(
) {
    let config = Config {
        default_pool_size: 1,
        ..test_config()
    };
    let mut sim = Sim::new(config);
    let (a, b, c) = (
        sim.client_logged_in("db", "app"),
        sim.client_logged_in("db", "app"),
        sim.client_logged_in("db", "app"),
    );
    sim.pooler.set_client_locality(a, 1);
    sim.pooler.set_client_locality(b, 2);
    sim.pooler.set_client_locality(c, 1);
    sim.client_wants_server(a);
    let s = sim.server_connects();
    assert_eq!(sim.linked(a), Some(s));
    sim.client_wants_server(b);
    sim.client_wants_server(c);
    // The server last served locality 1: the locality-1 client behind b goes first,
    // again and again while a and c take turns, up to the limit.
    let (mut holder, mut next) = (a, c);
    for round in 1..=crate::pooler::MAX_BYPASS {
        sim.release(holder);
        assert_eq!(sim.linked(next), Some(s), "b passed over {round} times");
        assert_eq!(sim.linked(b), None);
        sim.client_wants_server(holder);
        (holder, next) = (next, holder);
    }
    // The limit is reached: b gets the server although a locality-1 client waits.
    sim.release(holder);
    assert_eq!(sim.linked(b), Some(s));
    assert_eq!(sim.linked(next), None);
    sim.release(b);
    assert_eq!(sim.linked(next), Some(s));
}

#[test]
fn a_client_gets_a_free_idle_server_without_queueing_but_never_ahead_of_a_waiter() {
    let config = Config {
        default_pool_size: 1,
        ..test_config()
    };
    let mut sim = Sim::new(config);
    let (a, b, c) = (
        sim.client_logged_in("db", "app"),
        sim.client_logged_in("db", "app"),
        sim.client_logged_in("db", "app"),
    );
    sim.client_wants_server(a);
    let s = sim.server_connects();
    sim.release(a);
    sim.advance(secs(61)); // a new stats period: its peaks start from the counts now
                           // An idle server and nobody queued: linked at once, never counted as waiting.
    sim.client_wants_server(b);
    assert_eq!(sim.linked(b), Some(s));
    assert_eq!(sim.pool("db", "app").stats.current.peaks.cl_waiting, 0);
    assert_eq!(sim.pool("db", "app").cl_waiting, 0);
    // Busy: the next one queues; when b releases, the queued client gets the server
    // before a client asking at that moment.
    sim.client_wants_server(a);
    assert_eq!(sim.pool("db", "app").cl_waiting, 1);
    sim.release(b);
    assert_eq!(sim.linked(a), Some(s));
    sim.client_wants_server(c);
    sim.client_wants_server(b);
    sim.release(a);
    assert_eq!(sim.linked(c), Some(s), "c queued first");
    assert_eq!(sim.linked(b), None);
    sim.release(c);
    assert_eq!(sim.linked(b), Some(s));
    assert_eq!(sim.pool("db", "app").stats.current.peaks.cl_waiting, 2);
}

#[test]
fn a_queued_client_is_told_once_after_query_wait_notify_whole_seconds() {
    let config = Config {
        default_pool_size: 1,
        query_wait_notify: secs(2),
        ..test_config()
    };
    let mut sim = Sim::new(config);
    let (a, b, w) = (
        sim.client_logged_in("db", "app"),
        sim.client_logged_in("db", "app"),
        sim.client_connects("db", "app"),
    );
    sim.client_wants_server(a);
    sim.server_connects();
    sim.client_wants_server(b);
    // A client still waiting for its welcome is not told (PgBouncer: welcome_sent).
    sim.event(Event::ClientWantsWelcome { client: w });
    // More than 2 whole seconds: told at 3 s, not before, and only once.
    sim.advance(Duration::from_millis(2_999));
    assert!(sim.wait_notices.is_empty());
    sim.advance(Duration::from_millis(1));
    assert_eq!(sim.wait_notices, vec![b]);
    sim.advance(secs(30));
    assert_eq!(sim.wait_notices, vec![b]);
    // A new wait is told again; one that ends in time is not.
    sim.release(a);
    assert!(sim.linked(b).is_some());
    sim.client_wants_server(a);
    sim.advance(secs(1));
    sim.release(b);
    assert!(sim.linked(a).is_some());
    sim.advance(secs(10));
    assert_eq!(sim.wait_notices, vec![b], "a's wait ended before 3 s");
    sim.client_wants_server(b);
    sim.advance(secs(3));
    assert_eq!(sim.wait_notices, vec![b, b]);
}

#[test]
fn query_wait_notify_zero_tells_nobody() {
    let config = Config {
        default_pool_size: 1,
        query_wait_notify: Duration::ZERO,
        ..test_config()
    };
    let mut sim = Sim::new(config);
    let (a, b) = (
        sim.client_logged_in("db", "app"),
        sim.client_logged_in("db", "app"),
    );
    sim.client_wants_server(a);
    sim.server_connects();
    sim.client_wants_server(b);
    sim.advance(secs(100));
    assert!(sim.wait_notices.is_empty());
    assert!(sim.linked(b).is_none());
}

/// PgBouncer opens one server at a time per pool. We do too until a login succeeds, so a
/// bad host or password fails once however many clients wait; then the pool fills in
/// parallel. A failed login, or a RECONNECT (a new target), makes it wait for one
/// success again.
#[test]
fn logins_run_one_at_a_time_until_one_succeeds_then_in_parallel() {
    let config = Config {
        default_pool_size: 4,
        server_login_retry: secs(1),
        ..test_config()
    };
    let mut sim = Sim::new(config);
    let clients: Vec<_> = (0..4).map(|_| sim.client_logged_in("db", "app")).collect();
    for &c in &clients {
        sim.client_wants_server(c);
    }
    assert_eq!(sim.pending_connects.len(), 1, "a cold pool sends one login");
    let server = sim.pending_connects.remove(0);
    sim.event(Event::ServerUnreachable {
        server,
        message: "server DNS lookup failed".into(),
    });
    assert!(
        sim.pending_connects.is_empty(),
        "held back for server_login_retry"
    );
    sim.advance(secs(1));
    assert_eq!(
        sim.pending_connects.len(),
        1,
        "after a failure, one login again"
    );
    sim.server_connects();
    assert!(sim.linked(clients[0]).is_some());
    assert_eq!(
        sim.pending_connects.len(),
        3,
        "proven: the rest in parallel"
    );
    while !sim.pending_connects.is_empty() {
        sim.server_connects();
    }
    assert_eq!(sim.pool("db", "app").sv_active, 4);
    // A new target: the next logins run one at a time until one succeeds.
    for &c in &clients {
        sim.release(c);
    }
    sim.event(Event::Reconnect { database: None });
    assert_eq!(sim.pool("db", "app").sv_idle, 0);
    for &c in &clients {
        sim.client_wants_server(c);
    }
    assert_eq!(sim.pending_connects.len(), 1, "RECONNECT: one login first");
    sim.server_connects();
    assert_eq!(sim.pending_connects.len(), 3);
}
