//! Drives pool-core without tokio: a tiny single-threaded "proxy" with fake servers,
//! showing the contract (handle an event, drain actions, honour poll_timeout).
//!
//! Run with `cargo run -p pgbouncer-pool-core --example embed_pool_core`.

use std::collections::VecDeque;
use std::time::Duration;

use pgbouncer_pool_core::{
    Action, ClientId, Config, DatabaseConfig, Event, Instant, PoolKey, PoolMode, Pooler, Usage,
};

fn main() {
    let config = Config {
        pool_mode: PoolMode::Transaction,
        default_pool_size: 2,
        query_wait_timeout: Duration::from_secs(3),
        databases: vec![DatabaseConfig {
            name: "appdb".into(),
            ..Default::default()
        }],
        ..Config::default()
    };
    let mut pooler = Pooler::new(config);
    // Our own clock: a counter we advance by hand (a real proxy would use its runtime's).
    let mut now = Instant::from_micros(0);
    let mut inbox: VecDeque<Event> = VecDeque::new();
    let pool = PoolKey::new("appdb", "app");

    // Five clients log in and each wants to run one transaction.
    for i in 0..5 {
        let client = ClientId(i);
        inbox.push_back(Event::ClientConnected {
            client,
            pool: pool.clone(),
            login_user: "app".into(),
        });
        inbox.push_back(Event::ClientLoggedIn {
            client,
            cancel_key: u64::from(i),
        });
        inbox.push_back(Event::ClientWantsServer { client });
    }

    let mut finished = 0;
    let mut connects = 0;
    while finished < 5 {
        // 1. Feed every pending event, then drain the actions it produced.
        while let Some(event) = inbox.pop_front() {
            pooler.handle(now, event);
            while let Some(action) = pooler.poll_action() {
                match action {
                    Action::ConnectServer { server, pool } => {
                        connects += 1;
                        println!("connect {server} for {pool}");
                        // A real proxy dials PostgreSQL here; ours succeeds at once.
                        inbox.push_back(Event::ServerConnected { server });
                    }
                    Action::Link { client, server } => {
                        println!("{client} runs its transaction on {server}");
                        // ... bytes flow ... then the transaction ends:
                        let usage = Usage {
                            xact_count: 1,
                            query_count: 1,
                            ..Usage::default()
                        };
                        inbox.push_back(Event::ClientReleasedServer {
                            client,
                            reusable: true,
                            usage,
                        });
                        finished += 1;
                    }
                    other => println!("action: {other:?}"),
                }
            }
        }
        // 2. Sleep until the next deadline (here: jump the clock), then tell the core.
        if let Some(wake) = pooler.poll_timeout() {
            now = wake.max(now + Duration::from_millis(1));
            pooler.handle_timeout(now);
            while let Some(action) = pooler.poll_action() {
                println!("timeout action: {action:?}");
            }
        }
    }
    let stats = pooler.pools(now).next().expect("one pool").stats.totals;
    println!(
        "5 transactions on {connects} server connections; xact_count={} server_assignment_count={}",
        stats.xact_count, stats.server_assignment_count
    );
    assert_eq!(connects, 2, "pool size 2: five clients share two servers");
    assert_eq!(stats.xact_count, 5);
}
