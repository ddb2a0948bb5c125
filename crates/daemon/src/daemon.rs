//! Composition: bind listeners, start the timer task, accept connections, react to
//! signals and shutdown requests (mirrors main.c and pooler.c).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pgbouncer_pool_core::Event;
use tokio::task::JoinHandle;

use crate::config::Settings;
use crate::net::{self, BindError};
use crate::runtime::Runtime;
use crate::session;
use crate::shared::Shared;
use crate::stream::Stream;

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The auth, hba or ident file.
    #[error(transparent)]
    Runtime(#[from] crate::runtime::RuntimeError),
    /// Listeners.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// The metrics listener.
    #[error("cannot listen on metrics_listen_addr {0}: {1}")]
    Metrics(String, std::io::Error),
}

/// How to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownMode {
    /// Close everything now (SIGQUIT, `SHUTDOWN`).
    Immediate,
    /// Stop accepting, wait until no server is in use (SIGINT, `WAIT_FOR_SERVERS`).
    WaitForServers,
    /// Stop accepting, wait until every client has left (SIGTERM, `WAIT_FOR_CLIENTS`).
    WaitForClients,
}

/// A running daemon.
#[derive(Debug)]
pub struct Daemon {
    /// Shared state.
    pub shared: Arc<Shared>,
    /// TCP addresses actually bound.
    pub addrs: Vec<SocketAddr>,
    /// The Unix socket path, if any.
    pub unix_path: Option<std::path::PathBuf>,
    /// The metrics/health listener, if `metrics_listen_port` is set.
    pub http: Option<crate::http::HttpServer>,
    tasks: Vec<JoinHandle<()>>,
}

impl Daemon {
    /// Binds and starts serving `settings`. Must run inside a tokio runtime.
    pub async fn start(settings: Settings) -> Result<Daemon, StartError> {
        let rt = Runtime::new(settings)?;
        let listeners = net::bind(&rt.settings).await?;
        let shared = Shared::new(rt);
        let mut tasks = vec![
            tokio::spawn(shared.clone().run_timers()),
            tokio::spawn(log_stats(shared.clone())),
            tokio::spawn(heartbeat(shared.clone())),
        ];
        let mut addrs = Vec::new();
        for l in listeners.tcp {
            if let Ok(a) = l.local_addr() {
                tracing::info!("listening on {a}");
                addrs.push(a);
            }
            let shared = shared.clone();
            tasks.push(tokio::spawn(async move { accept_tcp(shared, l).await }));
        }
        // A socket systemd handed over stays systemd's: not removed at exit.
        let unix_path = listeners
            .unix
            .as_ref()
            .filter(|_| !listeners.activated)
            .map(|(_, p)| p.clone());
        if let Some((l, path)) = listeners.unix {
            tracing::info!("listening on unix:{}", path.display());
            let shared = shared.clone();
            tasks.push(tokio::spawn(async move { accept_unix(shared, l).await }));
        }
        shared.health.set_listening(true);
        let http = match u16::try_from(rt_port(&shared)) {
            Ok(0) | Err(_) => None,
            Ok(port) => {
                let addr = shared.runtime().cfg.metrics_listen_addr.clone();
                let server = crate::http::start(shared.clone(), &addr, port)
                    .map_err(|e| StartError::Metrics(format!("{addr}:{port}"), e))?;
                Some(server)
            }
        };
        Ok(Daemon {
            shared,
            addrs,
            unix_path,
            http,
            tasks,
        })
    }

    /// The first TCP address (tests use `listen_port = 0`).
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// Reloads the configuration from `settings` (RELOAD / SIGHUP).
    pub fn reload(&self, settings: Settings) -> Result<(), StartError> {
        let rt = Runtime::new(settings)?;
        self.shared.set_runtime(rt);
        Ok(())
    }

    /// Stops as `mode` says and waits for it to finish.
    pub async fn shutdown(mut self, mode: ShutdownMode) {
        let _ = self.shared.shutdown.send(true); // listeners stop accepting
        self.shared.health.set_listening(false);
        match mode {
            ShutdownMode::Immediate => {}
            ShutdownMode::WaitForServers => {
                let done = {
                    let mut core = self.shared.lock();
                    let rx = self.shared.wait_pause(&mut core, None);
                    self.shared
                        .handle_locked(&mut core, Event::ShutdownWaitForServers, None);
                    rx
                };
                let _ = done.await;
            }
            ShutdownMode::WaitForClients => loop {
                // Console clients count too (PgBouncer waits for every client).
                let clients = {
                    let core = self.shared.lock();
                    core.pooler.client_count() as usize + core.admin_clients.len()
                };
                if clients == 0 && self.shared.logins_in_progress() == 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            },
        }
        let _ = self.shared.close_unix.send(true);
        for t in &self.tasks {
            t.abort();
        }
        if let Some(p) = &self.unix_path {
            let _ = std::fs::remove_file(p);
        }
        if let Some(http) = self.http.take() {
            http.stop();
        }
    }
}

fn rt_port(shared: &Shared) -> i64 {
    shared.runtime().cfg.metrics_listen_port
}

/// Beats once a second on the main runtime, for `/healthz`: a stalled runtime stops
/// beating while the HTTP thread still answers.
async fn heartbeat(shared: Arc<Shared>) {
    let mut stop = shared.shutdown.subscribe();
    loop {
        shared.health.beat(shared.now().as_micros() / 1000);
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.changed() => return,
        }
    }
}

/// The periodic `stats:` log line (`log_stats`, every `stats_period`), with PgBouncer's
/// wording: per-second rates and average times over the last period, all pools summed.
async fn log_stats(shared: Arc<Shared>) {
    let mut stop = shared.shutdown.subscribe();
    let mut previous = pgbouncer_pool_core::StatCounters::default();
    let mut last = tokio::time::Instant::now();
    loop {
        let period = Duration::from_secs(shared.runtime().cfg.stats_period.max(1) as u64);
        tokio::select! {
            () = tokio::time::sleep(period) => {}
            _ = stop.changed() => return,
        }
        let mut totals = pgbouncer_pool_core::StatCounters::default();
        {
            let core = shared.lock();
            totals.add(core.pooler.freed_totals());
            for p in core.pooler.pools(shared.now()) {
                totals.add(&p.stats.totals);
            }
        }
        let elapsed = last.elapsed().as_micros().max(1) as u64;
        last = tokio::time::Instant::now();
        let avg = totals.averages(&previous, elapsed);
        previous = totals;
        if shared.runtime().cfg.log_stats {
            tracing::info!(
                "stats: {} xacts/s, {} queries/s, {} client parses/s, {} server parses/s, {} binds/s, in {} B/s, out {} B/s, xact {} us, query {} us, wait {} us",
                avg.xact_count, avg.query_count, avg.client_parse_count, avg.server_parse_count,
                avg.bind_count, avg.bytes_received, avg.bytes_sent, avg.xact_time, avg.query_time,
                avg.wait_time
            );
        }
    }
}

/// RELOAD / SIGHUP: re-reads the ini (and environment) the daemon started from. Every
/// `[pgbouncer]` key starts from its default again, except startup-only keys (kept as
/// they were) and keys whose default is NULL (kept when the file no longer sets them),
/// as PgBouncer does. A bad file (or TLS that cannot be set up) keeps the old
/// configuration; the error is logged here.
pub fn reload_from_disk(shared: &Arc<Shared>) -> Result<(), String> {
    let r = reload_inner(shared);
    match &r {
        Err(e) if e.starts_with("TLS setup failed") => tracing::error!("{e}"),
        Err(e) => tracing::error!("config file loading failed: {e}"),
        Ok(()) => {}
    }
    r
}

fn reload_inner(shared: &Arc<Shared>) -> Result<(), String> {
    let old = shared.runtime();
    let env: Vec<(String, String)> = std::env::vars().collect();
    let mut new = Settings::load(old.settings.file.as_deref(), &env).map_err(|e| e.to_string())?;
    for k in crate::config::keys::KEYS {
        let keep = !k.reloadable || (k.default.is_none() && !new.origins.contains_key(k.name));
        if keep {
            if let Some(v) = old.settings.values.get(k.name) {
                new.values.insert(k.name, v.clone());
            }
        }
    }
    let rt = Runtime::new(new).map_err(|e| e.to_string())?;
    shared.set_runtime(rt);
    Ok(())
}

/// How long a listener pauses after accept() failed for lack of resources.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// Logs a failed accept() and, when it was for lack of resources, pauses the listener.
/// `false`: shutdown began meanwhile.
async fn after_accept_error(
    e: &std::io::Error,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> bool {
    if !accept_error_pauses(e) {
        // An error of that one connection (the peer reset it, a network error pending
        // on it): the next one is fine.
        tracing::debug!("accept() failed: {e}");
        return true;
    }
    tracing::warn!("accept() failed: {e}");
    // Out of descriptors or memory: retrying at once would spin and flood the log.
    // PgBouncer stops listening for 5 s; a second is enough for descriptors to come
    // back and short for clients.
    tokio::select! {
        () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => true,
        _ = stop.changed() => false,
    }
}

/// Whether an accept() error is about the process or the system (descriptors, memory),
/// which pausing helps, rather than about the one connection it would have returned.
fn accept_error_pauses(e: &std::io::Error) -> bool {
    // EMFILE, ENFILE, ENOBUFS, ENOMEM (Linux numbers).
    matches!(e.raw_os_error(), Some(24 | 23 | 105 | 12))
}

async fn accept_tcp(shared: Arc<Shared>, l: tokio::net::TcpListener) {
    let mut stop = shared.shutdown.subscribe();
    let local = Arc::new(
        l.local_addr()
            .map(|a| (Arc::<str>::from(a.ip().to_string()), a.port()))
            .unwrap_or_else(|_| (Arc::from("?"), 0)),
    );
    loop {
        if shared.is_suspended() {
            shared.wait_resumed().await;
        }
        tokio::select! {
            r = l.accept() => match r {
                Ok((s, peer)) => {
                    net::tune_client_socket(&s, &shared.runtime().per_login.socket);
                    let peer = (net::ip_text(peer.ip()), peer.port());
                    let (shared, local) = (shared.clone(), local.clone());
                    crate::workers::spawn_session(Stream::Tcp(s), move |s| {
                        session::serve(shared, s, peer, local)
                    });
                }
                Err(e) => {
                    if !after_accept_error(&e, &mut stop).await {
                        return;
                    }
                }
            },
            _ = stop.changed() => return,
        }
    }
}

async fn accept_unix(shared: Arc<Shared>, l: tokio::net::UnixListener) {
    // Not `shutdown`: during a shutdown that waits, the Unix socket still takes console
    // logins (others get `pooler is shutting down`), as PgBouncer keeps it open.
    let mut stop = shared.close_unix.subscribe();
    loop {
        tokio::select! {
            r = l.accept() => match r {
                Ok((s, _)) => {
                    let local = Arc::new((Arc::from("unix"), shared.runtime().cfg.listen_port()));
                    let peer = ("unix".to_string(), 0);
                    let shared = shared.clone();
                    crate::workers::spawn_session(Stream::Unix(s), move |s| {
                        session::serve(shared, s, peer, local)
                    });
                }
                Err(e) => {
                    if !after_accept_error(&e, &mut stop).await {
                        return;
                    }
                }
            },
            _ = stop.changed() => return,
        }
    }
}
