//! Checkout + checkin rate of pool-core: a client asks for a server, gets it linked,
//! and releases it, with 10, 1 000 and 100 000 logged-in clients in one pool.
#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use pgbouncer_pool_core::{Action, ClientId, Config, Event, Instant, PoolKey, Pooler, Usage};

fn setup(clients: u32) -> Pooler {
    let config = Config {
        default_pool_size: 20,
        max_client_conn: clients + 10,
        server_check_enabled: false,
        ..Config::default()
    };
    let mut p = Pooler::new(config);
    let now = Instant::from_micros(1);
    let key = PoolKey::new("db", "app");
    for i in 0..clients {
        let client = ClientId(i);
        p.handle(
            now,
            Event::ClientConnected {
                client,
                pool: key.clone(),
                login_user: "app".into(),
            },
        );
        p.handle(
            now,
            Event::ClientLoggedIn {
                client,
                cancel_key: u64::from(i),
            },
        );
    }
    // Warm the pool: 20 servers connected and idle.
    for i in 0..20 {
        p.handle(
            now,
            Event::ClientWantsServer {
                client: ClientId(i % clients),
            },
        );
        while let Some(a) = p.poll_action() {
            if let Action::ConnectServer { server, .. } = a {
                p.handle(now, Event::ServerConnected { server });
            }
        }
        p.handle(
            now,
            Event::ClientReleasedServer {
                client: ClientId(i % clients),
                reusable: true,
                usage: Usage::default(),
            },
        );
        while p.poll_action().is_some() {}
    }
    p
}

fn checkout_checkin(c: &mut Criterion) {
    let mut group = c.benchmark_group("checkout_checkin");
    group.throughput(Throughput::Elements(1));
    for clients in [10u32, 1_000, 100_000] {
        group.bench_with_input(
            BenchmarkId::from_parameter(clients),
            &clients,
            |b, &clients| {
                let mut p = setup(clients);
                let mut i = 0u32;
                let mut t = 2u64;
                b.iter(|| {
                    let client = ClientId(i % clients);
                    i = i.wrapping_add(7919);
                    t += 1;
                    let now = Instant::from_micros(t);
                    p.handle(now, Event::ClientWantsServer { client });
                    while let Some(a) = p.poll_action() {
                        black_box(a);
                    }
                    let usage = Usage {
                        xact_count: 1,
                        query_count: 1,
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
                    while let Some(a) = p.poll_action() {
                        black_box(a);
                    }
                });
            },
        );
    }
    group.finish();
}

criterion_group!(benches, checkout_checkin);
criterion_main!(benches);
