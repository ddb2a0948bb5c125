//! Shared test fixtures: a pooler driven through events into a known state.

#![allow(dead_code, unreachable_pub)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pgbouncer_admin::{ConnInfo, DatabaseInfo, Snapshot};
use pgbouncer_pool_core::{
    Action, ClientId, Config, DatabaseConfig, Event, Instant, PoolKey, PoolMode, Pooler, Usage,
};

pub fn secs(s: f64) -> Instant {
    Instant::from_micros((s * 1_000_000.0) as u64)
}

/// 2023-11-14 22:13:20 UTC at monotonic t = 10 s.
pub fn wall() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

pub fn drain(p: &mut Pooler) -> Vec<Action> {
    std::iter::from_fn(|| p.poll_action()).collect()
}

pub fn connect(p: &mut Pooler, now: Instant, id: u32, db: &str, user: &str) -> ClientId {
    connect_as(p, now, id, db, user, user)
}

/// A client logging in as `login_user` on the pool of `pool_user` (forced user).
pub fn connect_as(
    p: &mut Pooler,
    now: Instant,
    id: u32,
    db: &str,
    pool_user: &str,
    login_user: &str,
) -> ClientId {
    let client = ClientId(id);
    p.handle(
        now,
        Event::ClientConnected {
            client,
            pool: PoolKey::new(db, pool_user),
            login_user: login_user.into(),
        },
    );
    p.handle(
        now,
        Event::ClientLoggedIn {
            client,
            cancel_key: u64::from(id),
        },
    );
    drain(p);
    client
}

/// Asks for a server and, if pool-core opens one, reports it connected.
pub fn want(p: &mut Pooler, now: Instant, client: ClientId) {
    p.handle(now, Event::ClientWantsServer { client });
    for a in drain(p) {
        if let Action::ConnectServer { server, .. } = a {
            p.handle(now, Event::ServerConnected { server });
            drain(p);
        }
    }
}

pub fn config() -> Config {
    Config {
        pool_mode: PoolMode::Transaction,
        default_pool_size: 1,
        databases: vec![
            DatabaseConfig {
                name: "db1".into(),
                ..Default::default()
            },
            DatabaseConfig {
                name: "db2".into(),
                pool_size: Some(5),
                pool_mode: Some(PoolMode::Session),
                forced_user: Some("bob".into()),
                ..Default::default()
            },
        ],
        ..Config::default()
    }
}

/// db1/alice: C1 linked to S1, C2 waiting since 0.5 s. db2/bob: C3 used S2 for one
/// transaction then released it (S2 idle), C4 (carol, forced to bob) idle, C5 still logging in.
pub fn scenario() -> Pooler {
    let mut p = Pooler::new(config());
    let c1 = connect(&mut p, secs(0.0), 1, "db1", "alice");
    want(&mut p, secs(0.0), c1);
    let c2 = connect(&mut p, secs(0.5), 2, "db1", "alice");
    want(&mut p, secs(0.5), c2);
    let c3 = connect(&mut p, secs(1.0), 3, "db2", "bob");
    want(&mut p, secs(1.0), c3);
    p.handle(
        secs(2.0),
        Event::ClientUsage {
            client: c3,
            usage: Usage {
                xact_count: 1,
                query_count: 2,
                bytes_received: 100,
                bytes_sent: 2000,
                xact_time_us: 900,
                query_time_us: 800,
                ..Usage::default()
            },
        },
    );
    p.handle(
        secs(2.0),
        Event::ClientReleasedServer {
            client: c3,
            reusable: true,
            usage: Usage {
                xact_count: 1,
                query_count: 1,
                bytes_received: 10,
                bytes_sent: 20,
                xact_time_us: 100,
                query_time_us: 100,
                ..Usage::default()
            },
        },
    );
    for a in drain(&mut p) {
        if let Action::ResetServer { server } = a {
            p.handle(secs(2.0), Event::ServerResetDone { server, ok: true });
            drain(&mut p);
        }
    }
    connect_as(&mut p, secs(3.0), 4, "db2", "bob", "carol");
    p.handle(
        secs(4.0),
        Event::ClientConnected {
            client: ClientId(5),
            pool: PoolKey::new("db1", "alice"),
            login_user: "alice".into(),
        },
    );
    drain(&mut p);
    p
}

pub fn snapshot(p: &Pooler) -> Snapshot<'_> {
    let mut snap = Snapshot::new(p, secs(10.0), wall());
    snap.databases = vec![
        DatabaseInfo {
            name: "db1".into(),
            host: Some("10.0.0.1,10.0.0.2".into()),
            port: 5432,
            dbname: "app".into(),
            load_balance_hosts: Some("round-robin".into()),
        },
        DatabaseInfo {
            name: "db2".into(),
            host: None,
            port: 5433,
            dbname: "db2".into(),
            load_balance_hosts: Some("round-robin".into()),
        },
    ];
    snap.clients.insert(
        ClientId(1),
        ConnInfo {
            addr: "127.0.0.1".into(),
            port: 40001,
            local_addr: "127.0.0.1".into(),
            local_port: 6432,
            application_name: "psql".into(),
            ..ConnInfo::default()
        },
    );
    snap
}
