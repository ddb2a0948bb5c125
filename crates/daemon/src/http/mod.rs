//! The optional HTTP listener (`metrics_listen_addr` / `metrics_listen_port`, off while
//! the port is 0): `/metrics` (Prometheus), `/healthz`, `/readyz`, the dashboard at `/`
//! and the JSON it reads (`/api/snapshot`, `/api/history`).
//!
//! It runs on its own thread with its own single-threaded runtime, so a slow or
//! flooding scraper never takes a worker from forwarding: it only takes the pool lock,
//! briefly, as a console SHOW does. Connections are capped ([`MAX_CONNECTIONS`]) and
//! must send their request head within [`HEADER_TIMEOUT`].

mod counters;
mod history;
mod json;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};

pub use counters::{Counters, LoginFailure};

use crate::shared::Shared;

/// Connections served at once; more wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 64;
/// How long a connection may take to send its request head.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// `/healthz` fails when the main runtime has not beaten for this long.
pub const STALL_LIMIT: Duration = Duration::from_secs(5);

/// The dashboard page: plain HTML and a small script, no external resources.
const DASHBOARD: &str = include_str!("dashboard.html");

/// Liveness and readiness facts, set by the daemon.
#[derive(Debug, Default)]
pub struct Health {
    /// Milliseconds on the daemon clock of the main runtime's last heartbeat.
    beat_ms: AtomicU64,
    /// The client listeners are bound and accepting.
    listening: AtomicBool,
}

impl Health {
    /// The main runtime is alive at `now_ms`.
    pub fn beat(&self, now_ms: u64) {
        self.beat_ms.store(now_ms, Ordering::Relaxed);
    }

    /// The client listeners are up (or, at shutdown, down).
    pub fn set_listening(&self, up: bool) {
        self.listening.store(up, Ordering::Relaxed);
    }

    fn stalled_for(&self, now_ms: u64) -> Duration {
        Duration::from_millis(now_ms.saturating_sub(self.beat_ms.load(Ordering::Relaxed)))
    }
}

/// The running listener.
#[derive(Debug)]
pub struct HttpServer {
    /// The address bound.
    pub addr: SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HttpServer {
    /// Stops the listener and waits for its thread.
    pub fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Binds `addr:port` (now, so a bad address fails the start) and serves it on a thread
/// of its own.
pub fn start(shared: Arc<Shared>, addr: &str, port: u16) -> std::io::Result<HttpServer> {
    let host = if addr.is_empty() || addr == "*" {
        "0.0.0.0"
    } else {
        addr
    };
    let listener = std::net::TcpListener::bind((host, port))?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let thread = std::thread::Builder::new()
        .name("pgbrs-http".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!("metrics listener: cannot start its runtime: {e}");
                    return;
                }
            };
            rt.block_on(serve(shared, listener, stopped));
        })?;
    tracing::info!("metrics listening on http://{bound}");
    Ok(HttpServer {
        addr: bound,
        stop,
        thread: Some(thread),
    })
}

async fn serve(
    shared: Arc<Shared>,
    listener: std::net::TcpListener,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("metrics listener: {e}");
            return;
        }
    };
    let history = Arc::new(history::History::default());
    tokio::spawn(history::sample_every_second(
        shared.clone(),
        history.clone(),
        stop.clone(),
    ));
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = stop.changed() => return,
        };
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::debug!("metrics listener: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let shared = shared.clone();
        let history = history.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let reply = route(&shared, &history, &req);
                async move { Ok::<_, std::convert::Infallible>(reply) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            drop(permit);
        });
    }
}

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r.headers_mut().insert(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-store"),
    );
    r
}

fn route<B>(
    shared: &Arc<Shared>,
    history: &history::History,
    req: &Request<B>,
) -> Response<Full<Bytes>> {
    const TEXT: &str = "text/plain; charset=utf-8";
    const JSON: &str = "application/json";
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(StatusCode::METHOD_NOT_ALLOWED, TEXT, "only GET\n");
    }
    match req.uri().path() {
        "/metrics" => reply(
            StatusCode::OK,
            pgbouncer_admin::metrics::CONTENT_TYPE,
            metrics_text(shared),
        ),
        "/healthz" => {
            let stalled = shared.health.stalled_for(now_ms(shared));
            if stalled > STALL_LIMIT {
                let msg = format!("event loop stalled for {} ms\n", stalled.as_millis());
                reply(StatusCode::SERVICE_UNAVAILABLE, TEXT, msg)
            } else {
                reply(StatusCode::OK, TEXT, "ok\n")
            }
        }
        "/readyz" => match not_ready(shared) {
            None => reply(StatusCode::OK, TEXT, "ready\n"),
            Some(why) => reply(StatusCode::SERVICE_UNAVAILABLE, TEXT, why),
        },
        "/" | "/index.html" => reply(StatusCode::OK, "text/html; charset=utf-8", DASHBOARD),
        "/api/snapshot" => reply(StatusCode::OK, JSON, json::snapshot(shared).to_string()),
        "/api/history" => {
            // `?since=<t_ms>`: only newer samples (the dashboard asks for the new ones).
            let since = req
                .uri()
                .query()
                .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("since=")))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            reply(StatusCode::OK, JSON, history.to_json(since).to_string())
        }
        _ => reply(StatusCode::NOT_FOUND, TEXT, "not found\n"),
    }
}

fn now_ms(shared: &Shared) -> u64 {
    shared.now().as_micros() / 1000
}

/// Why the pooler should get no traffic now, or `None` when it can take it: the
/// listeners must be up, no shutdown under way, not SUSPENDed, and the last server
/// login of every pool must have worked (a pool whose server refuses logins or is
/// unreachable fails its clients).
fn not_ready(shared: &Shared) -> Option<String> {
    if !shared.health.listening.load(Ordering::Relaxed) {
        return Some("listeners are not up\n".into());
    }
    if shared.is_shutting_down() {
        return Some("shutting down\n".into());
    }
    if shared.is_suspended() {
        return Some("suspended\n".into());
    }
    let core = shared.lock();
    let mut failing = String::new();
    for p in core.pooler.pools(shared.now()) {
        if let Some(e) = p.last_login_error {
            failing.push_str(&format!(
                "pool {}/{}: server login failed: {e}\n",
                p.key.database, p.key.user
            ));
        }
    }
    (!failing.is_empty()).then_some(failing)
}

/// `/metrics`: the console's data, rendered under the pool lock like a SHOW.
pub fn metrics_text(shared: &Shared) -> String {
    let mut daemon = process_metrics();
    shared.counters.fill(&mut daemon);
    let rt = shared.runtime();
    let core = shared.lock();
    let mut snap = crate::console::snapshot(shared, &core, &rt);
    snap.fd_limit = fd_limit();
    pgbouncer_admin::metrics::render(&snap, &daemon)
}

/// The open-file limit of this process.
pub(crate) fn fd_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

/// Process and per-thread figures from /proc (Linux): CPU, memory, descriptors.
fn process_metrics() -> pgbouncer_admin::metrics::DaemonMetrics {
    let mut m = pgbouncer_admin::metrics::DaemonMetrics::default();
    let tick = 100.0; // USER_HZ on Linux
    if let Some((utime, stime, start)) = read_stat("/proc/self/stat") {
        m.process_cpu_seconds = (utime + stime) as f64 / tick;
        m.process_start_time_seconds = boot_time().unwrap_or(0.0) + start as f64 / tick;
    }
    if let Ok(statm) = std::fs::read_to_string("/proc/self/statm") {
        let pages: u64 = statm
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        m.process_resident_memory_bytes = pages * 4096;
    }
    m.process_open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
    m.process_max_fds = fd_limit().unwrap_or(0);
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for t in tasks.flatten() {
            let dir = t.path();
            let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
            let name = name.trim();
            // The forwarding workers (tokio names them) and the main thread.
            if !(name.starts_with("tokio")
                || name.starts_with("pgbouncer")
                || name.starts_with("pgbrs"))
            {
                continue;
            }
            if let Some((u, s, _)) = read_stat(&dir.join("stat").to_string_lossy()) {
                let label = format!("{name}-{}", t.file_name().to_string_lossy());
                m.worker_cpu_seconds.push((label, (u + s) as f64 / tick));
            }
        }
        m.worker_cpu_seconds.sort_by(|a, b| a.0.cmp(&b.0));
    }
    m
}

/// utime, stime and starttime (clock ticks) of a `/proc/.../stat` file.
fn read_stat(path: &str) -> Option<(u64, u64, u64)> {
    let text = std::fs::read_to_string(path).ok()?;
    // The command name may hold spaces: fields start after its closing parenthesis.
    let rest = &text[text.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14, stime 15, starttime 22.
    let get = |n: usize| f.get(n - 3)?.parse().ok();
    Some((get(14)?, get(15)?, get(22)?))
}

fn boot_time() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("btime "))?;
    line[6..].trim().parse().ok()
}
