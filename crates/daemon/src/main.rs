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
  -d, --daemon         not supported: run under a service manager
  -q, --quiet          do not log to stderr
  -v, --verbose        increase verbosity (repeatable)
  -u, --user=USERNAME  not supported: start pgbouncer-rs as that user
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
    file: Option<PathBuf>,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut a = Args {
        quiet: false,
        verbose: 0,
        daemon: false,
        check: false,
        file: None,
    };
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "-V" | "--version" => {
                println!("pgbouncer-rs {}", env!("CARGO_PKG_VERSION"));
                println!("compatible with PgBouncer 1.25");
                return Ok(None);
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(None);
            }
            "-q" | "--quiet" => a.quiet = true,
            "-d" | "--daemon" => a.daemon = true,
            "--check-config" => a.check = true,
            "-u" | "--user" => {
                return Err("-u is not supported: start pgbouncer-rs as that user".into())
            }
            s if s.starts_with("--user=") => {
                return Err("--user is not supported: start pgbouncer-rs as that user".into())
            }
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
    if args.check {
        println!("configuration OK");
        return ExitCode::SUCCESS;
    }
    if args.daemon {
        eprintln!("pgbouncer-rs: -d is not supported; run it under a service manager (it stays in the foreground)");
        return ExitCode::from(1);
    }
    let verbose = args
        .verbose
        .max(u8::try_from(settings.int("verbose").clamp(0, 9)).unwrap_or(0));
    if let Err(e) = logging::init(!args.quiet, Some(settings.str("logfile")), verbose) {
        eprintln!("FATAL cannot open logfile: {e}");
        return ExitCode::from(1);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("FATAL cannot start runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(run(settings))
}

async fn run(settings: Settings) -> ExitCode {
    let pidfile_path = settings.str("pidfile").to_string();
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
    let mode = match wait_for_signals(&daemon).await {
        Ok(m) => m,
        Err(e) => {
            tracing::error!("FATAL cannot install signal handlers: {e}");
            return ExitCode::from(1);
        }
    };
    tracing::info!("shutting down ({mode:?})");
    let shutdown = daemon.shutdown(mode);
    let mut again = signal(SignalKind::interrupt()).ok();
    let mut again_term = signal(SignalKind::terminate()).ok();
    tokio::select! {
        () = shutdown => {}
        _ = async { if let Some(s) = again.as_mut() { s.recv().await } else { std::future::pending().await } } => {
            tracing::info!("second signal: exiting now");
        }
        _ = async { if let Some(s) = again_term.as_mut() { s.recv().await } else { std::future::pending().await } } => {
            tracing::info!("second signal: exiting now");
        }
    }
    ExitCode::SUCCESS
}

async fn wait_for_signals(daemon: &Daemon) -> std::io::Result<ShutdownMode> {
    let mut hup = signal(SignalKind::hangup())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut quit = signal(SignalKind::quit())?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    let mut usr2 = signal(SignalKind::user_defined2())?;
    let mut stop = daemon.shared.shutdown.subscribe();
    let mut request = daemon.shared.shutdown_request.subscribe();
    loop {
        tokio::select! {
            _ = hup.recv() => {
                tracing::info!("got SIGHUP, re-reading config");
                if let Err(e) = pgbouncer_rs::daemon::reload_from_disk(&daemon.shared) {
                    tracing::error!("config file loading failed: {e}");
                }
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
