//! proptest-generated event sequences with invariants checked after every step.

use proptest::prelude::*;

use super::*;

#[derive(Debug, Clone)]
enum Step {
    Connect { db: u8, user: u8 },
    Want(u8),
    Release(u8),
    ReleaseDirty(u8),
    Close(u8),
    ServerUp,
    ServerFails,
    ServerUnreachable,
    WantWelcome(u8),
    ResetDone(bool),
    ServerDies(u8),
    Advance(u16),
    Pause,
    Resume,
    Reconnect,
    Cancel(u8),
    CancelDone,
    Reload(u8),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0..3u8, 0..2u8).prop_map(|(db, user)| Step::Connect { db, user }),
        6 => any::<u8>().prop_map(Step::Want),
        5 => any::<u8>().prop_map(Step::Release),
        1 => any::<u8>().prop_map(Step::ReleaseDirty),
        2 => any::<u8>().prop_map(Step::Close),
        4 => Just(Step::ServerUp),
        1 => Just(Step::ServerFails),
        1 => Just(Step::ServerUnreachable),
        1 => any::<u8>().prop_map(Step::WantWelcome),
        1 => any::<bool>().prop_map(Step::ResetDone),
        1 => any::<u8>().prop_map(Step::ServerDies),
        3 => (0..20_000u16).prop_map(Step::Advance),
        1 => Just(Step::Pause),
        1 => Just(Step::Resume),
        1 => Just(Step::Reconnect),
        1 => any::<u8>().prop_map(Step::Cancel),
        1 => Just(Step::CancelDone),
        1 => (0..4u8).prop_map(Step::Reload),
    ]
}

fn config(seed: u8) -> Config {
    let mut c = Config {
        default_pool_size: 2 + u32::from(seed % 3),
        reserve_pool_size: u32::from(seed % 2),
        reserve_pool_timeout: secs(1),
        max_db_connections: if seed.is_multiple_of(2) { 3 } else { 0 },
        max_client_conn: 12,
        query_wait_timeout: secs(5),
        server_idle_timeout: secs(7),
        server_lifetime: secs(20),
        client_idle_timeout: if seed.is_multiple_of(3) {
            secs(9)
        } else {
            secs(0)
        },
        autodb_idle_timeout: secs(u64::from(seed % 4) * 5),
        server_reset_enabled: seed % 2 == 1,
        server_check_enabled: seed % 3 == 1,
        server_check_delay: secs(3),
        pool_mode: if seed % 4 == 3 {
            PoolMode::Session
        } else {
            PoolMode::Transaction
        },
        ..test_config()
    };
    c.databases.push(DatabaseConfig {
        name: "db1".into(),
        ..Default::default()
    });
    c
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_event_sequences_keep_every_invariant(
        seed in any::<u8>(),
        steps in proptest::collection::vec(step(), 1..120),
    ) {
        let mut sim = Sim::new(config(seed));
        let mut clients: Vec<ClientId> = Vec::new();
        let pick = |v: &Vec<ClientId>, i: u8| (!v.is_empty()).then(|| v[usize::from(i) % v.len()]);
        for s in steps {
            match s {
                Step::Connect { db, user } => {
                    // "auto" is not in [databases]: its pool is freed when idle.
                    let db = ["db", "db1", "auto"][usize::from(db)];
                    let user = if user == 0 { "u0" } else { "u1" };
                    clients.push(sim.client_logged_in(db, user));
                }
                Step::Want(i) => if let Some(c) = pick(&clients, i) { sim.client_wants_server(c) },
                Step::Release(i) => if let Some(c) = pick(&clients, i) {
                    if sim.linked(c).is_some() { sim.release(c) }
                },
                Step::ReleaseDirty(i) => if let Some(c) = pick(&clients, i) {
                    if sim.linked(c).is_some() { sim.release_dirty(c) }
                },
                Step::Close(i) => if let Some(c) = pick(&clients, i) {
                    sim.client_closes(c);
                    clients.retain(|x| *x != c);
                },
                Step::ServerUp => if !sim.pending_connects.is_empty() { sim.server_connects(); },
                Step::ServerFails => if !sim.pending_connects.is_empty() {
                    sim.server_fails("28P01", "nope");
                },
                Step::ServerUnreachable => if !sim.pending_connects.is_empty() {
                    let server = sim.pending_connects.remove(0);
                    sim.event(Event::ServerUnreachable { server, message: "connect failed".into() });
                },
                Step::WantWelcome(i) => if let Some(c) = pick(&clients, i) {
                    sim.event(Event::ClientWantsWelcome { client: c })
                },
                Step::ResetDone(ok) => {
                    let tested: Vec<_> = sim.resets.drain(..).chain(sim.checks.drain(..)).collect();
                    for server in tested {
                        sim.event(Event::ServerResetDone { server, ok });
                    }
                }
                Step::ServerDies(i) => {
                    let mut ids: Vec<_> = sim.pooler.servers.keys().copied().collect();
                    ids.sort();
                    if !ids.is_empty() {
                        let server = ids[usize::from(i) % ids.len()];
                        sim.links.retain(|_, s| *s != server);
                        sim.pending_connects.retain(|s| *s != server);
                        sim.event(Event::ServerClosed { server });
                    }
                }
                Step::Advance(ms) => sim.advance(Duration::from_millis(u64::from(ms))),
                Step::Pause => sim.event(Event::Pause { database: None }),
                Step::Resume => sim.event(Event::Resume { database: None }),
                Step::Reconnect => sim.event(Event::Reconnect { database: None }),
                Step::Cancel(i) => if let Some(c) = pick(&clients, i) {
                    sim.event(Event::CancelRequested { key: u64::from(c.0) * 1000 });
                },
                Step::CancelDone => if !sim.cancels.is_empty() {
                    let (_, server) = sim.cancels.remove(0);
                    sim.event(Event::CancelFinished { server });
                },
                Step::Reload(n) => {
                    let mut c = config(seed);
                    c.default_pool_size = 1 + u32::from(n);
                    sim.event(Event::Reload(Box::new(c)));
                }
            }
            clients.retain(|c| !sim.disconnected.contains_key(c));
        }
    }
}
