//! The `pgbouncer-rs` binary: PgBouncer's command line
//! (`pgbouncer-rs [-d] [-q] [-v...] [-u user] [-V] [-h] config.ini`).

use std::path::PathBuf;
use std::process::ExitCode;

use pgbouncer_rs::config::Settings;
use pgbouncer_rs::pidfile::PidFile;
use pgbouncer_rs::{logging, Daemon, ShutdownMode};
use tokio::signal::unix::{signal, SignalKind};

const USAGE: &str =
    "pgbouncer-rs is a PostgreSQL connection pooler, drop-in compatible with PgBouncer.

Usage:
  pgbouncer-rs [OPTION]... CONFIG_FILE

Options:
  -d, --daemon         run in the background (needs pidfile)
  -q, --quiet          do not log to stderr
  -v, --verbose        increase verbosity (repeatable)
  -u, --user=USERNAME  run as this user (when started as root)
  -V, --version        show version, then exit
  -h, --help           show this help, then exit
      --check-config   check the configuration file and exit

Without CONFIG_FILE, the configuration comes from PGBOUNCER_* and DATABASES_*
environment variables (see docs/configuration.md).";

struct Args {
    quiet: bool,
    verbose: u8,
    daemon: bool,
    check: bool,
    user: Option<String>,
    file: Option<PathBuf>,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut a = Args {
        quiet: false,
        verbose: 0,
        daemon: false,
        check: false,
        user: None,
        file: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-V" | "--version" => {
                // Line 1 is SHOW VERSION's text, as PgBouncer's -V and SHOW VERSION agree;
                // then the libraries, as PgBouncer lists libevent, adns and tls.
                println!("{}", pgbouncer_admin::version_text());
                println!("tokio runtime");
                println!("tls: rustls 0.23 (ring)");
                return Ok(None);
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(None);
            }
            "-q" | "--quiet" => a.quiet = true,
            "-d" | "--daemon" => a.daemon = true,
            "--check-config" => a.check = true,
            "-u" | "--user" => a.user = Some(args.next().ok_or("-u needs a user name")?),
            s if s.starts_with("--user=") => a.user = Some(s["--user=".len()..].to_string()),
            "-R" | "--reboot" => {
                return Err("-R (online restart) is not supported: use so_reuseport".into())
            }
            s if s.starts_with("-v") && s[1..].chars().all(|c| c == 'v') => {
                a.verbose += (s.len() - 1) as u8
            }
            "--verbose" => a.verbose += 1,
            s if s.starts_with('-') => return Err(format!("unknown option: {s}")),
            s => {
                if a.file.is_some() {
                    return Err("too many configuration files".into());
                }
                a.file = Some(PathBuf::from(s));
            }
        }
    }
    Ok(Some(a))
}

/// Set in the environment of the process we re-execute for `-d` / `-u`.
const CHILD_MARK: &str = "PGBRS_REEXEC_CHILD";

/// The arguments we were started with, minus `-d` and `-u USER`.
fn child_args() -> Vec<String> {
    let mut out = Vec::new();
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "-d" | "--daemon" => {}
            "-u" | "--user" => {
                it.next();
            }
            s if s.starts_with("--user=") => {}
            _ => out.push(a),
        }
    }
    out
}

/// Starts ourselves again (without `-d`/`-u`): detached in a new session for `-d`
/// (util-linux `setsid`), as another user for `-u` (util-linux `setpriv`). Safe Rust
/// cannot fork or setuid, and a re-exec gives the same result for a service manager.
fn respawn(user: Option<&str>, detach: bool) -> ExitCode {
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("FATAL cannot find our own executable: {e}");
            return ExitCode::from(1);
        }
    };
    let mut cmd = std::process::Command::new(if detach { "setsid" } else { "setpriv" });
    if !detach {
        let user = user.unwrap_or_default();
        cmd.args([
            format!("--reuid={user}"),
            format!("--regid={user}"),
            "--init-groups".into(),
        ]);
    } else if let Some(user) = user {
        cmd.args([
            "setpriv".to_string(),
            format!("--reuid={user}"),
            format!("--regid={user}"),
            "--init-groups".into(),
        ]);
    }
    cmd.arg(exe).args(child_args()).env(CHILD_MARK, "1");
    if detach {
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        return match cmd.spawn() {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("FATAL cannot daemonize: {e}");
                ExitCode::from(1)
            }
        };
    }
    // Same PID as before: setpriv execs us, so signals and the pidfile keep working.
    let err = std::os::unix::process::CommandExt::exec(&mut cmd);
    eprintln!("FATAL cannot switch user: {err}");
    ExitCode::from(1)
}

/// `-u USER` / `user =`: only root can become another user.
fn switch_user(user: &str, daemon: bool, no_pidfile: bool) -> ExitCode {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        });
    if uid.as_deref() != Some("0") {
        eprintln!("FATAL setuid to {user} failed: only root can switch users");
        return ExitCode::from(1);
    }
    if daemon && no_pidfile {
        eprintln!("FATAL daemon needs pidfile configured");
        return ExitCode::from(1);
    }
    respawn(Some(user), daemon)
}

fn env() -> Vec<(String, String)> {
    std::env::vars().collect()
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Some(a)) => a,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pgbouncer-rs: {e}\n\n{USAGE}");
            return ExitCode::from(1);
        }
    };
    let env = env();
    if args.file.is_none()
        && !env
            .iter()
            .any(|(k, _)| k.starts_with("PGBOUNCER_") || k == "DATABASES_HOST")
    {
        eprintln!("pgbouncer-rs: no configuration file specified");
        return ExitCode::from(1);
    }
    let settings = match Settings::load(args.file.as_deref(), &env) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("FATAL cannot load config file: {e}");
            return ExitCode::from(1);
        }
    };
    let cfg = settings.typed();
    if args.check {
        // Everything a start derives too: auth, hba and ident files, TLS keys,
        // certificates and cipher settings.
        if let Err(e) = pgbouncer_rs::runtime::Runtime::new(settings) {
            eprintln!("FATAL {e}");
            return ExitCode::from(1);
        }
        println!("configuration OK");
        return ExitCode::SUCCESS;
    }
    let user = args
        .user
        .clone()
        .or_else(|| Some(cfg.user.clone()).filter(|u| !u.is_empty()));
    if let Some(user) = user {
        if std::env::var_os(CHILD_MARK).is_none() || args.daemon {
            return switch_user(&user, args.daemon, cfg.pidfile.is_empty());
        }
    }
    if args.daemon && std::env::var_os(CHILD_MARK).is_none() {
        if cfg.pidfile.is_empty() {
            eprintln!("FATAL daemon needs pidfile configured");
            return ExitCode::from(1);
        }
        return respawn(None, true);
    }
    let quiet = args.quiet || args.daemon;
    let verbose = args
        .verbose
        .max(u8::try_from(cfg.verbose.clamp(0, 9)).unwrap_or(0));
    let log = match logging::init(!quiet, &settings, verbose) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("FATAL cannot open logfile: {e}");
            return ExitCode::from(1);
        }
    };
    // Thread-per-core: this thread is worker 0 (listeners, timers, signals and its
    // share of sessions); `run` starts the others.
    let runtime = match pgbouncer_rs::workers::runtime() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("FATAL cannot start runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(run(settings, log))
}

/// Raises the descriptor limit and logs it, in PgBouncer's words (its check_limits).
fn log_fd_limit(daemon: &Daemon) {
    let rt = daemon.shared.runtime();
    let Some(limit) = pgbouncer_rs::net::raise_fd_limit() else {
        return;
    };
    let expected = pgbouncer_rs::net::expected_fd_use(&rt.settings, rt.userlist.len());
    if limit.soft > limit.was {
        tracing::info!(
            "raised the file descriptor limit from {} to {}",
            limit.was,
            limit.soft
        );
    }
    tracing::info!(
        "kernel file descriptor limit: {} (hard: {}); max_client_conn: {}, max expected fd use: {}",
        limit.soft,
        limit.hard,
        pgbouncer_rs::config::clamp_u32(rt.cfg.max_client_conn),
        expected
    );
    if expected > limit.soft {
        tracing::warn!(
            "max expected fd use ({expected}) is above the file descriptor limit ({}): \
             new connections will be refused when descriptors run out",
            limit.soft
        );
    }
}

async fn run(settings: Settings, log: logging::LogHandle) -> ExitCode {
    let workers = pgbouncer_rs::workers::wanted();
    if let Err(e) = pgbouncer_rs::workers::install(workers) {
        tracing::error!("FATAL cannot start worker threads: {e}");
        return ExitCode::from(1);
    }
    let cfg = settings.typed();
    let pidfile_path = cfg.pidfile.clone();
    let _pidfile = if pidfile_path.is_empty() {
        None
    } else {
        match PidFile::create(std::path::Path::new(&pidfile_path)) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::error!("FATAL {e}");
                return ExitCode::from(1);
            }
        }
    };
    let signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("FATAL cannot install signal handlers: {e}");
            return ExitCode::from(1);
        }
    };
    let daemon = match Daemon::start(settings).await {
        Ok(d) => d,
        Err(e) => {
            tracing::error!("FATAL {e}");
            return ExitCode::from(1);
        }
    };
    tracing::info!(
        "process up: pgbouncer-rs {}, pid {}",
        env!("CARGO_PKG_VERSION"),
        std::process::id()
    );
    tracing::info!("{workers} worker threads (TOKIO_WORKER_THREADS to change)");
    log_fd_limit(&daemon);
    pgbouncer_rs::systemd::notify("READY=1");
    daemon
        .shared
        .set_log_reopen(pgbouncer_rs::shared::LogReopen(Box::new(move |s| {
            if let Err(e) = log.apply(s) {
                tracing::error!("cannot reopen logfile: {e}");
            }
        })));
    let mut signals = signals;
    let mode = match wait_for_signals(&daemon, &mut signals).await {
        Ok(m) => m,
        Err(e) => {
            tracing::error!("FATAL cannot install signal handlers: {e}");
            return ExitCode::from(1);
        }
    };
    tracing::info!("shutting down ({mode:?})");
    pgbouncer_rs::systemd::notify("STOPPING=1");
    let shared = daemon.shared.clone();
    let shutdown = daemon.shutdown(mode);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            _ = signals.int.recv() => {
                tracing::info!("second signal: exiting now");
                break;
            }
            _ = signals.term.recv() => {
                tracing::info!("second signal: exiting now");
                break;
            }
            _ = signals.quit.recv() => break,
            _ = signals.usr2.recv() => {
                // RESUME would undo the pause a WAIT_FOR_SERVERS shutdown rests on.
                tracing::info!("got SIGUSR2 while shutting down, ignoring");
            }
            _ = signals.hup.recv() => {
                let _ = pgbouncer_rs::daemon::reload_from_disk(&shared);
            }
        }
    }
    ExitCode::SUCCESS
}

/// The signals we handle, installed before the listeners exist: a signal that arrives
/// right after "listening on" must not hit the default action (which ends the process).
struct Signals {
    hup: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    quit: tokio::signal::unix::Signal,
    usr1: tokio::signal::unix::Signal,
    usr2: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            hup: signal(SignalKind::hangup())?,
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            quit: signal(SignalKind::quit())?,
            usr1: signal(SignalKind::user_defined1())?,
            usr2: signal(SignalKind::user_defined2())?,
        })
    }
}

async fn wait_for_signals(daemon: &Daemon, signals: &mut Signals) -> std::io::Result<ShutdownMode> {
    let Signals {
        hup,
        int,
        term,
        quit,
        usr1,
        usr2,
    } = signals;
    let mut stop = daemon.shared.shutdown.subscribe();
    let mut request = daemon.shared.shutdown_request.subscribe();
    loop {
        tokio::select! {
            _ = hup.recv() => {
                tracing::info!("got SIGHUP, re-reading config");
                pgbouncer_rs::systemd::reloading();
                // (A failure is logged by the reload itself.)
                let _ = pgbouncer_rs::daemon::reload_from_disk(&daemon.shared);
                pgbouncer_rs::systemd::notify("READY=1");
            }
            _ = int.recv() => return Ok(ShutdownMode::WaitForServers),
            _ = term.recv() => return Ok(ShutdownMode::WaitForClients),
            _ = quit.recv() => return Ok(ShutdownMode::Immediate),
            _ = usr1.recv() => {
                tracing::info!("got SIGUSR1, pausing all activity");
                daemon.shared.handle(pgbouncer_pool_core::Event::Pause { database: None }, None);
            }
            _ = usr2.recv() => {
                tracing::info!("got SIGUSR2, resuming all activity");
                daemon.shared.handle(pgbouncer_pool_core::Event::Resume { database: None }, None);
            }
            _ = stop.changed() => return Ok(ShutdownMode::Immediate),
            _ = request.changed() => {
                if let Some(mode) = *request.borrow() {
                    return Ok(mode);
                }
            }
        }
    }
}
