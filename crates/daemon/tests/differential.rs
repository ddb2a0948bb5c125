//! The differential test: random client scripts (simple and extended queries,
//! pipelines with and without Sync and Flush, errors mid-pipeline, transactions and
//! savepoints, named statements, COPY in and out, messages up to 16 MiB, cancels,
//! aborts at random byte offsets, writes split at random offsets) run by four clients
//! at once through the pooler on one or two servers, and the same scripts run directly
//! against PostgreSQL. Every client must receive exactly what PostgreSQL sends it
//! directly, never another client's values, and no server may be left inside a
//! transaction.
//!
//! `DIFF_OPS` (default 100 000) is how many client messages to send in all; `DIFF_SEED`
//! fixes proptest's seed (default 1, so CI runs the same scenarios every time; failures
//! shrink). `cargo xtask soak-protocol` runs it with a million.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use common::script::{self, Expect, Plan, Setup, Step};
use common::wire::Wire;
use common::*;
use pg_harness::{PgCluster, MD5_PASSWORD, MD5_USER};
use pgbouncer_protocol::{BackendMessage, CancelRequest, StartupPacket};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestRunner};

const CLIENTS: usize = 4;
/// Steps per client script (before the model expands choices).
const STEPS: usize = 40;

/// Client messages sent through the pooler, over all scenarios.
static OPS: AtomicU64 = AtomicU64::new(0);
/// Scenarios run so far (shrinking included).
static RUNS: AtomicU64 = AtomicU64::new(0);

/// The scripts with every cancel marker made unique to one run.
fn tagged(scripts: &[Vec<Step>], tag: &str) -> Vec<Vec<Step>> {
    scripts
        .iter()
        .map(|steps| {
            steps
                .iter()
                .map(|st| match &st.expect {
                    Expect::Cancel { marker } => {
                        let marker = format!("{marker}-{tag}");
                        Step {
                            msgs: vec![pgbouncer_protocol::FrontendMessage::Query {
                                query: format!("select pg_sleep(60), '{marker}'")
                                    .into_bytes()
                                    .into(),
                            }],
                            cuts: st.cuts.clone(),
                            expect: Expect::Cancel { marker },
                        }
                    }
                    _ => st.clone(),
                })
                .collect()
        })
        .collect()
}

fn setup() -> impl Strategy<Value = Setup> {
    prop_oneof![
        Just(Setup {
            session: false,
            pool_size: 1,
            prepared: 200
        }),
        Just(Setup {
            session: false,
            pool_size: 2,
            prepared: 2
        }),
        Just(Setup {
            session: false,
            pool_size: 2,
            prepared: 0
        }),
        Just(Setup {
            session: true,
            pool_size: 2,
            prepared: 200
        }),
    ]
}

fn scenario() -> impl Strategy<Value = (Setup, Vec<Plan>)> {
    (setup(), prop::collection::vec(script::plan(STEPS), CLIENTS))
}

#[test]
fn every_client_gets_exactly_what_postgresql_sends_it_directly() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    if trace() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(create_tables(pg));
    let target: u64 = env_or("DIFF_OPS", 100_000);
    let seed: u64 = env_or("DIFF_SEED", 1);
    let mut scenarios = 0;
    // Batches of scenarios (about 300 messages each) until the target is reached; each
    // batch has its own fixed seed, so a run is repeatable.
    for batch in 0.. {
        let done = OPS.load(Ordering::Relaxed);
        if done >= target {
            break;
        }
        let cases = ((target - done).div_ceil(300)).clamp(1, 200) as u32;
        let mut runner = TestRunner::new(Config {
            cases,
            rng_seed: RngSeed::Fixed(seed.wrapping_mul(1000).wrapping_add(batch)),
            max_shrink_iters: env_or("DIFF_SHRINK", 300) as u32,
            failure_persistence: None,
            ..Config::default()
        });
        let result = runner.run(&scenario(), |(setup, plans)| {
            rt.block_on(run_scenario(pg, setup, &plans))
                .map_err(TestCaseError::fail)
        });
        if let Err(e) = result {
            panic!("seed {seed}, batch {batch}: {e}");
        }
        scenarios += cases;
    }
    let ops = OPS.load(Ordering::Relaxed);
    eprintln!("differential: {scenarios} scenarios, {ops} client messages, 0 divergences");
    assert!(ops >= target, "only {ops} of {target} operations ran");
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn create_tables(pg: &PgCluster) {
    let admin = connect(&pg.socket_conninfo("postgres", "appdb"))
        .await
        .unwrap();
    for i in 0..CLIENTS {
        admin
            .batch_execute(&format!(
                "create table if not exists diff_c{i} (n int, t text);\
                 alter table diff_c{i} owner to {MD5_USER};"
            ))
            .await
            .unwrap();
    }
}

/// Empties the clients' tables and ends backends an earlier failed case may have left
/// running (a sleeping query whose client gave up), so every run starts the same.
async fn truncate(pg: &PgCluster) {
    let admin = connect(&pg.socket_conninfo("postgres", "appdb"))
        .await
        .unwrap();
    admin
        .batch_execute(&format!(
            "select pg_terminate_backend(pid) from pg_stat_activity where usename = '{MD5_USER}'"
        ))
        .await
        .unwrap();
    let tables: Vec<String> = (0..CLIENTS).map(|i| format!("diff_c{i}")).collect();
    admin
        .batch_execute(&format!("truncate {}", tables.join(", ")))
        .await
        .unwrap();
}

async fn run_scenario(pg: &'static PgCluster, setup: Setup, plans: &[Plan]) -> Result<(), String> {
    let scripts: Vec<Vec<Step>> = plans
        .iter()
        .enumerate()
        .map(|(me, p)| script::script(p, me, setup))
        .collect();
    let dir = Scratch::new("diff");
    let mode = if setup.session {
        "session"
    } else {
        "transaction"
    };
    let d = start(
        pg,
        &dir,
        &format!(
            "pool_mode = {mode}\ndefault_pool_size = {}\nmax_prepared_statements = {}\n\
             query_wait_timeout = 120",
            setup.pool_size, setup.prepared
        ),
    )
    .await;
    let direct_addr: std::net::SocketAddr = format!("127.0.0.1:{}", pg.port()).parse().unwrap();
    if trace() {
        eprintln!(
            "[scenario] pooler {} {setup:?}\n[plans] {plans:?}",
            d.addr()
        );
    }

    // Cancel markers differ per run, so a query left over from another run is never
    // mistaken for this one's.
    let n = RUNS.fetch_add(1, Ordering::Relaxed);
    truncate(pg).await;
    let direct = run_all(pg, direct_addr, &tagged(&scripts, &format!("d{n}"))).await?;
    truncate(pg).await;
    let pooled = run_all(pg, d.addr(), &tagged(&scripts, &format!("p{n}"))).await?;

    for (me, (want, got)) in direct.iter().zip(&pooled).enumerate() {
        for (i, (w, g)) in want.iter().zip(got).enumerate() {
            leak_check(me, g)?;
            if w != g {
                return Err(format!(
                    "client {me} step {i} of {setup:?} diverged\nsent: {:?}\ndirect: {w:?}\npooled: {g:?}",
                    scripts[me][i].msgs
                ));
            }
        }
    }
    no_server_left_in_a_transaction(pg).await?;
    d.shutdown(pgbouncer_rs::ShutdownMode::Immediate).await;
    let sent: usize = scripts
        .iter()
        .flat_map(|s| s.iter())
        .map(|st| st.msgs.len())
        .sum();
    OPS.fetch_add(sent as u64, Ordering::Relaxed);
    Ok(())
}

/// Runs every script at once against `addr`; the answers, per client per step.
async fn run_all(
    pg: &'static PgCluster,
    addr: std::net::SocketAddr,
    scripts: &[Vec<Step>],
) -> Result<Vec<Vec<Vec<BackendMessage>>>, String> {
    let mut tasks = Vec::new();
    for (me, steps) in scripts.iter().enumerate() {
        let steps = steps.clone();
        tasks.push(tokio::spawn(async move {
            run_client(pg, addr, me, &steps).await
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.map_err(|e| format!("client task failed: {e}"))??);
    }
    Ok(out)
}

async fn run_client(
    pg: &'static PgCluster,
    addr: std::net::SocketAddr,
    me: usize,
    steps: &[Step],
) -> Result<Vec<Vec<BackendMessage>>, String> {
    let mut w = Wire::connect(addr, MD5_USER, MD5_PASSWORD, "appdb", &[]).await;
    let mut answers = Vec::new();
    for step in steps {
        let mut bytes = BytesMut::new();
        for m in &step.msgs {
            m.encode(&mut bytes);
        }
        if let Expect::Abort(at) = step.expect {
            let n = bytes.len() * usize::from(at) / 1000;
            w.send(&bytes[..n]).await;
            answers.push(Vec::new());
            return Ok(answers);
        }
        let started = std::time::Instant::now();
        if trace() {
            eprintln!(
                "[{addr} c{me}] step {} {:?}: {:?}",
                answers.len(),
                step.expect,
                abbreviate(&step.msgs)
            );
        }
        send_in_pieces(&mut w, &bytes, &step.cuts).await;
        let mut got = Vec::new();
        let read = match &step.expect {
            Expect::Readies(n) => readies(&mut w, *n, &mut got).await,
            Expect::Messages(n) => messages(&mut w, *n, &mut got).await,
            Expect::Cancel { marker } => match wait_running(pg, &w, marker).await {
                Ok(true) => {
                    cancel(addr, w.key).await;
                    readies(&mut w, 1, &mut got).await
                }
                Ok(false) => readies(&mut w, 1, &mut got).await,
                Err(e) => Err(e),
            },
            Expect::Abort(_) => Ok(()),
        };
        if let Err(e) = read {
            return Err(format!(
                "client {me} at {addr}, step {} ({:?}): {e}\nsent: {:?}\ngot so far: {got:?}",
                answers.len(),
                step.expect,
                step.msgs
            ));
        }
        if trace() {
            eprintln!(
                "[{addr} c{me}] step {} done in {:?}: {}",
                answers.len(),
                started.elapsed(),
                got.len()
            );
        }
        answers.push(got);
    }
    Ok(answers)
}

fn trace() -> bool {
    std::env::var_os("DIFF_TRACE").is_some()
}

/// Messages for a trace line, long fields cut short.
fn abbreviate(msgs: &[pgbouncer_protocol::FrontendMessage]) -> String {
    let mut s = format!("{msgs:?}");
    if s.len() > 300 {
        s.truncate(300);
        s.push_str("...");
    }
    s
}

/// How long one answer may take: a 16 MiB query in a debug build, or, in session mode,
/// the wait for a server while two other clients run their whole scripts.
const PATIENCE: Duration = Duration::from_secs(120);

async fn send_in_pieces(w: &mut Wire, bytes: &[u8], cuts: &[u16]) {
    let mut at: Vec<usize> = cuts
        .iter()
        .map(|c| bytes.len() * usize::from(*c) / 1000)
        .collect();
    at.sort_unstable();
    at.dedup();
    let mut from = 0;
    for cut in at.into_iter().chain(std::iter::once(bytes.len())) {
        if cut > from {
            w.send(&bytes[from..cut]).await;
            tokio::task::yield_now().await;
            from = cut;
        }
    }
}

async fn readies(w: &mut Wire, n: usize, out: &mut Vec<BackendMessage>) -> Result<(), String> {
    let mut seen = 0;
    while seen < n {
        let m = w.recv_within(PATIENCE).await?;
        if matches!(m, BackendMessage::ReadyForQuery { .. }) {
            seen += 1;
        }
        out.push(m);
    }
    Ok(())
}

/// `n` messages, or up to the first ErrorResponse (after which nothing comes until
/// a Sync).
async fn messages(w: &mut Wire, n: usize, out: &mut Vec<BackendMessage>) -> Result<(), String> {
    while out.len() < n {
        let m = w.recv_within(PATIENCE).await?;
        let error = matches!(m, BackendMessage::ErrorResponse(_));
        out.push(m);
        if error {
            break;
        }
    }
    Ok(())
}

/// Waits until PostgreSQL sleeps in the query with `marker` (true), or until an answer
/// comes without it having run (false: it failed at once, so there is nothing to cancel
/// and the answer shows why). Bounded like [`PATIENCE`].
///
/// Only a query inside `pg_sleep` is cancelled: a cancel that lands while PostgreSQL
/// still parses or plans gives an error without the RowDescription, one that lands in
/// the sleep gives it after, and which one happens must not depend on the extra hop.
async fn wait_running(pg: &PgCluster, w: &Wire, marker: &str) -> Result<bool, String> {
    let admin = connect(&pg.socket_conninfo("postgres", "postgres"))
        .await
        .unwrap();
    let sql = format!(
        "select count(*)::int from pg_stat_activity where state = 'active' \
         and wait_event = 'PgSleep' and query like '%{marker}%' and pid <> pg_backend_pid()"
    );
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    for _ in 0..12_000 {
        tick.tick().await;
        let running = admin
            .query_one(sql.as_str(), &[])
            .await
            .unwrap()
            .get::<_, i32>(0);
        if running > 0 {
            return Ok(true);
        }
        let mut probe = [0u8; 1];
        // (A zero timeout polls the peek once: an answer already there is seen.)
        if tokio::time::timeout(Duration::ZERO, w.stream.peek(&mut probe))
            .await
            .is_ok()
        {
            return Ok(false);
        }
    }
    Err(format!("the query {marker} neither ran nor was answered"))
}

async fn cancel(addr: std::net::SocketAddr, key: (i32, i32)) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut out = BytesMut::new();
    StartupPacket::CancelRequest(CancelRequest {
        process_id: key.0,
        secret_key: key.1,
    })
    .encode(&mut out);
    s.write_all(&out).await.unwrap();
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut sink)).await;
}

/// Client `me` must never see another client's marker (`c<digit>`).
fn leak_check(me: usize, msgs: &[BackendMessage]) -> Result<(), String> {
    for m in msgs {
        let values: Vec<&[u8]> = match m {
            BackendMessage::DataRow { values } => values.iter().flatten().map(|v| &v[..]).collect(),
            BackendMessage::CopyData(d) => vec![&d[..]],
            _ => continue,
        };
        for v in values {
            for w in v.windows(2) {
                if w[0] == b'c' && w[1].is_ascii_digit() && usize::from(w[1] - b'0') != me {
                    return Err(format!(
                        "client {me} received another client's value: {}",
                        String::from_utf8_lossy(v)
                    ));
                }
            }
        }
    }
    Ok(())
}

/// After the scripts (aborts included), no backend of the pool's user is idle inside a
/// transaction (bounded wait: a closed server's backend takes a moment to exit).
async fn no_server_left_in_a_transaction(pg: &PgCluster) -> Result<(), String> {
    let admin = connect(&pg.socket_conninfo("postgres", "postgres"))
        .await
        .unwrap();
    let sql = format!(
        "select count(*)::int from pg_stat_activity where usename = '{MD5_USER}' \
         and state like 'idle in transaction%'"
    );
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for _ in 0..500 {
        tick.tick().await;
        if admin
            .query_one(sql.as_str(), &[])
            .await
            .unwrap()
            .get::<_, i32>(0)
            == 0
        {
            return Ok(());
        }
    }
    Err("a server was left idle in a transaction".into())
}
