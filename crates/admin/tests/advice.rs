//! The pool-size advisor on loads whose right answer is known, driven through pool-core
//! events as the daemon drives it.

mod common;

use std::time::Duration;

use pgbouncer_admin::advice::{advise, Advice, Verdict};
use pgbouncer_admin::{show, Reply, Show, Snapshot};
use pgbouncer_pool_core::{Action, ClientId, Config, Event, Instant, PoolMode, Pooler, Usage};

use common::{connect, secs, wall};

/// Carries out pool-core's orders the way a healthy PostgreSQL would: every server
/// connect succeeds and every reset is clean, until nothing is left to do.
fn settle(p: &mut Pooler, now: Instant) {
    loop {
        let actions: Vec<Action> = std::iter::from_fn(|| p.poll_action()).collect();
        if actions.is_empty() {
            return;
        }
        for a in actions {
            match a {
                Action::ConnectServer { server, .. } => {
                    p.handle(now, Event::ServerConnected { server })
                }
                Action::ResetServer { server } => {
                    p.handle(now, Event::ServerResetDone { server, ok: true })
                }
                _ => {}
            }
        }
    }
}

fn want(p: &mut Pooler, now: Instant, client: ClientId) {
    p.handle(now, Event::ClientWantsServer { client });
    settle(p, now);
}

fn release(p: &mut Pooler, now: Instant, client: ClientId) {
    let usage = Usage {
        xact_count: 1,
        query_count: 1,
        xact_time_us: 100_000,
        query_time_us: 100_000,
        ..Usage::default()
    };
    p.handle(
        now,
        Event::ClientReleasedServer {
            client,
            reusable: true,
            usage,
        },
    );
    settle(p, now);
}

fn config(pool_size: u32) -> Config {
    Config {
        pool_mode: PoolMode::Transaction,
        default_pool_size: pool_size,
        max_client_conn: 100,
        ..Config::default()
    }
}

fn advice_for<'a>(all: &'a [Advice], setting: &str) -> &'a Advice {
    all.iter()
        .find(|a| a.setting == setting)
        .unwrap_or_else(|| panic!("no advice on {setting}: {all:?}"))
}

fn snap(p: &Pooler, now: Instant) -> Snapshot<'_> {
    Snapshot::new(p, now, wall())
}

#[test]
fn five_concurrent_transactions_on_a_pool_of_two_ask_for_five() {
    let mut p = Pooler::new(config(2));
    let clients: Vec<_> = (1..=5)
        .map(|i| connect(&mut p, secs(0.0), i, "app", "web"))
        .collect();
    for c in &clients {
        want(&mut p, secs(0.0), *c);
    }
    // Two run, three queue; each transaction takes 100 ms.
    release(&mut p, secs(0.1), clients[0]);
    release(&mut p, secs(0.1), clients[1]);
    release(&mut p, secs(0.2), clients[2]);
    let all = advise(&snap(&p, secs(0.3)));
    let a = advice_for(&all, "pool_size");
    assert_eq!((a.database.as_str(), a.user.as_str()), ("app", "web"));
    assert_eq!(a.verdict, Verdict::Raise, "{a:?}");
    assert_eq!((a.current, a.suggested), (2, 5), "{a:?}");
    assert!(
        a.reason
            .contains("2 servers were busy at peak and 3 clients queued"),
        "{a:?}"
    );
    assert!(a.reason.contains("raise pool_size to 5"), "{a:?}");
}

#[test]
fn a_cap_on_database_connections_caps_the_suggestion_and_says_so() {
    let mut cfg = config(2);
    cfg.max_db_connections = 3;
    let mut p = Pooler::new(cfg);
    let clients: Vec<_> = (1..=5)
        .map(|i| connect(&mut p, secs(0.0), i, "app", "web"))
        .collect();
    for c in &clients {
        want(&mut p, secs(0.0), *c);
    }
    release(&mut p, secs(0.1), clients[0]);
    release(&mut p, secs(0.1), clients[1]);
    let all = advise(&snap(&p, secs(0.2)));
    let a = advice_for(&all, "pool_size");
    assert_eq!((a.verdict, a.suggested), (Verdict::Raise, 3), "{a:?}");
    assert!(a.reason.contains("capped by max_db_connections"), "{a:?}");
}

#[test]
fn a_pool_of_twenty_that_never_has_more_than_two_busy_is_told_to_shrink() {
    let mut p = Pooler::new(config(20));
    let a1 = connect(&mut p, secs(0.0), 1, "app", "web");
    let a2 = connect(&mut p, secs(0.0), 2, "app", "web");
    for t in 0..50 {
        let now = secs(f64::from(t));
        want(&mut p, now, a1);
        want(&mut p, now, a2);
        release(&mut p, secs(f64::from(t) + 0.1), a1);
        release(&mut p, secs(f64::from(t) + 0.1), a2);
    }
    // Before a full stats period has passed, there is no verdict on "too large".
    let early = advise(&snap(&p, secs(50.0)));
    assert_eq!(advice_for(&early, "pool_size").verdict, Verdict::Ok);
    p.handle_timeout(secs(61.0)); // stats_period (60 s) ends
    settle(&mut p, secs(61.0));
    let all = advise(&snap(&p, secs(61.0)));
    let a = advice_for(&all, "pool_size");
    assert_eq!(a.verdict, Verdict::Lower, "{a:?}");
    // Peak 2 busy, plus a quarter for bursts rounded up.
    assert_eq!((a.current, a.suggested), (20, 3), "{a:?}");
    assert!(
        a.reason.contains("at most 2 of 20 servers were busy"),
        "{a:?}"
    );
}

#[test]
fn a_pool_that_fits_is_left_alone() {
    let mut p = Pooler::new(config(4));
    let clients: Vec<_> = (1..=3)
        .map(|i| connect(&mut p, secs(0.0), i, "app", "web"))
        .collect();
    for c in &clients {
        want(&mut p, secs(0.0), *c);
    }
    for c in &clients {
        release(&mut p, secs(0.1), *c);
    }
    p.handle_timeout(secs(61.0));
    settle(&mut p, secs(61.0));
    let all = advise(&snap(&p, secs(61.0)));
    let a = advice_for(&all, "pool_size");
    assert_eq!((a.verdict, a.suggested), (Verdict::Ok, 4), "{a:?}");
    assert!(a.reason.contains("peak 3 of 4 servers busy"), "{a:?}");
    assert_eq!(advice_for(&all, "max_client_conn").verdict, Verdict::Ok);
}

#[test]
fn a_reserve_that_is_used_up_while_clients_still_wait_is_raised() {
    let mut cfg = config(1);
    cfg.reserve_pool_size = 1;
    cfg.reserve_pool_timeout = Duration::from_millis(100);
    let mut p = Pooler::new(cfg);
    let clients: Vec<_> = (1..=3)
        .map(|i| connect(&mut p, secs(0.0), i, "app", "web"))
        .collect();
    for c in &clients {
        want(&mut p, secs(0.0), *c);
    }
    // The reserve opens for the second client once it has waited 100 ms.
    p.handle_timeout(secs(0.2));
    settle(&mut p, secs(0.2));
    release(&mut p, secs(0.5), clients[0]); // the third waited 500 ms
    let all = advise(&snap(&p, secs(0.6)));
    let r = advice_for(&all, "reserve_pool_size");
    assert_eq!(r.verdict, Verdict::Raise, "{all:?}");
    assert_eq!((r.current, r.suggested), (1, 3), "{r:?}");
    assert_eq!(advice_for(&all, "pool_size").verdict, Verdict::Raise);
}

#[test]
fn refused_logins_raise_max_client_conn_and_a_limit_above_the_fds_lowers_it() {
    let mut cfg = config(2);
    cfg.max_client_conn = 3;
    let mut p = Pooler::new(cfg);
    for i in 1..=4 {
        connect(&mut p, secs(0.0), i, "app", "web");
    }
    let all = advise(&snap(&p, secs(0.1)));
    let a = advice_for(&all, "max_client_conn");
    assert_eq!(
        (a.verdict, a.current, a.suggested),
        (Verdict::Raise, 3, 5),
        "{a:?}"
    );
    assert!(a.reason.contains("1 logins refused"), "{a:?}");

    let mut cfg = config(2);
    cfg.max_client_conn = 10_000;
    let p = Pooler::new(cfg);
    let mut s = snap(&p, secs(0.0));
    s.fd_limit = Some(1024);
    let all = advise(&s);
    let a = advice_for(&all, "max_client_conn");
    assert_eq!((a.verdict, a.suggested), (Verdict::Lower, 1008), "{a:?}");
}

#[test]
fn show_advice_renders_one_row_per_advice() {
    let mut p = Pooler::new(config(2));
    let c = connect(&mut p, secs(0.0), 1, "app", "web");
    want(&mut p, secs(0.0), c);
    let Reply::Rows { set, .. } = show(&Show::Advice, &snap(&p, secs(1.0))) else {
        panic!("SHOW ADVICE is a result set");
    };
    let names: Vec<_> = set.columns().iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "database",
            "user",
            "setting",
            "current",
            "suggested",
            "verdict",
            "reason"
        ]
    );
    // pool_size and reserve_pool_size of app/web, then max_client_conn.
    assert_eq!(set.rows().len(), 3);
    assert_eq!(set.rows()[2][2].as_deref(), Some("max_client_conn"));
}
