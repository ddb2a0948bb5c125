//! The cost of reaching the shared pool state at a transaction boundary, for the two
//! designs STYLE.md names: a `Mutex<Pooler>` taken by every session (what the daemon
//! does) versus a request/reply channel to one task that owns the `Pooler`. Two client
//! threads each do checkout + checkin (`ClientWantsServer`, `ClientReleasedServer`) in a
//! loop; the figure is time per checkout+checkin pair.

#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant as StdInstant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pgbouncer_pool_core::{Action, ClientId, Config, Event, Instant, PoolKey, Pooler, Usage};
use tokio::sync::{mpsc, oneshot};

const CLIENTS: u32 = 2;

fn pooler() -> Pooler {
    let mut p = Pooler::new(Config {
        default_pool_size: 20,
        server_check_enabled: false,
        ..Config::default()
    });
    let now = Instant::from_micros(1);
    for i in 0..CLIENTS {
        let client = ClientId(i);
        p.handle(
            now,
            Event::ClientConnected {
                client,
                pool: PoolKey::new("db", "u"),
                login_user: "u".into(),
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
    // Two servers, connected and idle.
    for i in 0..CLIENTS {
        p.handle(
            now,
            Event::ClientWantsServer {
                client: ClientId(i),
            },
        );
        while let Some(a) = p.poll_action() {
            if let Action::ConnectServer { server, .. } = a {
                p.handle(now, Event::ServerConnected { server });
            }
        }
    }
    for i in 0..CLIENTS {
        p.handle(
            now,
            Event::ClientReleasedServer {
                client: ClientId(i),
                reusable: true,
                usage: Usage::default(),
            },
        );
    }
    while p.poll_action().is_some() {}
    p
}

fn step(p: &mut Pooler, event: Event) -> usize {
    p.handle(Instant::from_micros(2), event);
    let mut n = 0;
    while p.poll_action().is_some() {
        n += 1;
    }
    n
}

fn mutex_design(iters: u64) -> Duration {
    let shared = Arc::new(Mutex::new(pooler()));
    let start = StdInstant::now();
    let threads: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let shared = shared.clone();
            std::thread::spawn(move || {
                let client = ClientId(i);
                for _ in 0..iters {
                    step(
                        &mut shared.lock().unwrap(),
                        Event::ClientWantsServer { client },
                    );
                    let usage = Usage::default();
                    step(
                        &mut shared.lock().unwrap(),
                        Event::ClientReleasedServer {
                            client,
                            reusable: true,
                            usage,
                        },
                    );
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    start.elapsed() / CLIENTS
}

type Request = (Event, oneshot::Sender<usize>);

fn channel_design(rt: &tokio::runtime::Runtime, iters: u64) -> Duration {
    rt.block_on(async {
        let (tx, mut rx) = mpsc::unbounded_channel::<Request>();
        let owner = tokio::spawn(async move {
            let mut p = pooler();
            while let Some((event, reply)) = rx.recv().await {
                let _ = reply.send(step(&mut p, event));
            }
        });
        let start = StdInstant::now();
        let clients: Vec<_> = (0..CLIENTS)
            .map(|i| {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let client = ClientId(i);
                    for _ in 0..iters {
                        let (r, w) = oneshot::channel();
                        tx.send((Event::ClientWantsServer { client }, r)).unwrap();
                        w.await.unwrap();
                        let (r, w) = oneshot::channel();
                        let usage = Usage::default();
                        tx.send((
                            Event::ClientReleasedServer {
                                client,
                                reusable: true,
                                usage,
                            },
                            r,
                        ))
                        .unwrap();
                        w.await.unwrap();
                    }
                })
            })
            .collect();
        for c in clients {
            c.await.unwrap();
        }
        let elapsed = start.elapsed() / CLIENTS;
        drop(tx);
        owner.await.unwrap();
        elapsed
    })
}

fn handoff(c: &mut Criterion) {
    let mut g = c.benchmark_group("pool_handoff_checkout_checkin");
    g.throughput(Throughput::Elements(1));
    g.bench_function("mutex", |b| b.iter_custom(mutex_design));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    g.bench_function("channel_to_pool_task", |b| {
        b.iter_custom(|iters| channel_design(&rt, iters))
    });
    g.finish();
}

criterion_group!(benches, handoff);
criterion_main!(benches);
