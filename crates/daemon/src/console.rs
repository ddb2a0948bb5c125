//! The admin console's I/O side: the virtual database `pgbouncer`. Parsing, access
//! rules and rendering live in the pure `pgbouncer-admin` crate; this file reads the
//! queries, builds snapshots, carries out control commands and writes the replies
//! (mirrors admin.c's connection handling).

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use pgbouncer_admin::{
    self as admin, AdminClientInfo, ConfigEntry, ConnInfo, Effect, Reply, Snapshot,
};
use pgbouncer_pool_core::{ClientId, Event};
use pgbouncer_protocol::{
    encode_auth_ok, encode_backend_key_data, encode_parameter_status, encode_ready_for_query,
    FrontendMessage, TransactionStatus,
};

use crate::auth::{self, LoginIo};
use crate::config::{keys, AuthType};
use crate::daemon::ShutdownMode;
use crate::runtime::Runtime;
use crate::session::{Exit, Fatal, Quiet};
use crate::shared::Shared;
use crate::stream::Stream;

/// What the console needs from the session.
pub(crate) struct ConsoleIo<'a> {
    /// Shared state.
    pub(crate) shared: &'a Arc<Shared>,
    /// Configuration.
    pub(crate) rt: &'a Arc<Runtime>,
    /// Client socket.
    pub(crate) stream: &'a mut Stream,
    /// Read buffer.
    pub(crate) buf: &'a mut BytesMut,
    /// max_packet_size.
    pub(crate) max: u32,
    /// When `client_login_timeout` ends the login.
    pub(crate) deadline: Option<tokio::time::Instant>,
}

/// Serves a console session until the client leaves.
/// `secret`: the user's, from `auth_file` or auth_query (`None`: unknown).
pub(crate) async fn serve(
    io: ConsoleIo<'_>,
    id: ClientId,
    user: &str,
    secret: Option<crate::auth::userlist::Secret>,
) -> Exit {
    let rt = io.rt.clone();
    // PgBouncer compat: user `pgbouncer` over the Unix socket from our own OS user is an
    // admin without a password.
    let same_uid = user == "pgbouncer"
        && matches!(io.stream, Stream::Unix(_))
        && io
            .stream
            .peer_uid()
            .is_some_and(|uid| Some(uid) == own_uid());
    let is_admin = same_uid || rt.admin_users.iter().any(|u| u == user);
    let is_stats =
        is_admin || rt.stats_users.iter().any(|u| u == user) || rt.auth_type == AuthType::Any;
    if !is_stats {
        return login_failed(io.shared, Fatal::NotAllowed);
    }
    let shared = io.shared.clone();
    let plain_scram = {
        let shared = shared.clone();
        move |u: &str, p: &str| shared.plain_scram_secret(u, p)
    };
    let facts = auth::ConnFacts {
        unix: matches!(io.stream, Stream::Unix(_)),
        addr: io.stream.peer().0.parse().ok(),
        peer_uid: io.stream.peer_uid(),
        tls: io.stream.is_tls(),
        cert_name: io.stream.peer_certificate_name(),
        database: admin::ADMIN_DB.to_string(),
        replication: false,
    };
    let mut login = LoginIo {
        stream: io.stream,
        buf: io.buf,
        max: io.max.min(65_536),
    };
    if !same_uid {
        let auth = auth::authenticate(&mut login, &rt, user, secret, &facts, &plain_scram);
        let result = match io.deadline {
            Some(at) => match tokio::time::timeout_at(at, auth).await {
                Ok(r) => r,
                Err(_) => return login_failed(&shared, Fatal::ClientLoginTimeout),
            },
            None => auth.await,
        };
        if let Err(f) = result {
            return login_failed(&shared, Fatal::Auth(f.0));
        }
    }
    // Counted like any client of database `pgbouncer` and of its user, and limited by
    // max_db_/max_user_client_connections unless an admin (PgBouncer).
    if let Err(reason) =
        shared
            .lock()
            .pooler
            .console_client_connected(id, admin::ADMIN_DB, user, is_admin)
    {
        return login_failed(&shared, Fatal::Pool(reason));
    }
    shared.counters.login();
    let counted = ConsoleCounted {
        shared: shared.clone(),
        id,
    };
    let stream = login.stream;
    let buf = login.buf;
    let mut out = BytesMut::with_capacity(256);
    encode_auth_ok(&mut out);
    for (k, v) in [
        ("server_version", PGBOUNCER_SERVER_VERSION),
        ("client_encoding", "UTF8"),
        ("server_encoding", "UTF8"),
        ("DateStyle", "ISO"),
        ("TimeZone", "GMT"),
        ("standard_conforming_strings", "on"),
        ("is_superuser", "on"),
    ] {
        encode_parameter_status(&mut out, k, v);
    }
    encode_backend_key_data(
        &mut out,
        rand::random::<i32>() & 0x7fff_ffff,
        rand::random(),
    );
    login_notice(&mut out, &rt);
    encode_ready_for_query(&mut out, TransactionStatus::Idle);
    if stream.write_all(&out).await.is_err() {
        return Quiet::ClientEof.into();
    }
    let now = shared.now();
    let (addr, port) = stream.peer();
    let (local_addr, local_port) = stream.local();
    let local_addr = local_addr.into();
    shared.lock().admin_clients.insert(
        id,
        AdminClientInfo {
            id,
            user: user.to_string(),
            connect_time: now,
            request_time: now,
            conn: ConnInfo {
                addr: addr.into(),
                port,
                local_addr,
                local_port,
                tls: stream.tls_info().into(),
                ..Default::default()
            },
        },
    );
    shared.lock().console_stats.client_login_count += 1;
    let mut suspended_here = false;
    let exit = console_loop(
        &shared,
        stream,
        buf,
        io.max,
        is_admin,
        is_stats,
        &mut suspended_here,
    )
    .await;
    shared.lock().admin_clients.remove(&id);
    drop(counted);
    if suspended_here {
        // PgBouncer compat: the console that suspended left, so resume.
        shared.set_suspended(false);
    }
    exit
}

async fn console_loop(
    shared: &Arc<Shared>,
    stream: &mut Stream,
    buf: &mut BytesMut,
    max: u32,
    is_admin: bool,
    is_stats: bool,
    suspended_here: &mut bool,
) -> Exit {
    loop {
        let msg = match FrontendMessage::decode(buf, max) {
            Ok(Some(m)) => m,
            Ok(None) => {
                buf.reserve(4096);
                match stream.read_buf(buf).await {
                    Ok(0) | Err(_) => return Quiet::ClientEof.into(),
                    Ok(_) => continue,
                }
            }
            Err(e) => return Fatal::Decode(e).into(),
        };
        let mut out = BytesMut::new();
        match msg {
            FrontendMessage::Terminate => return Quiet::ClientCloseRequest.into(),
            FrontendMessage::Query { query } => {
                {
                    let stats = &mut shared.lock().console_stats;
                    stats.xact_count += 1;
                    stats.query_count += 1;
                }
                let sql = String::from_utf8_lossy(&query).to_string();
                let reply = run_command(shared, &sql, is_admin, is_stats, suspended_here).await;
                match reply {
                    Some(r) => r.encode(&mut out),
                    None => return Quiet::AdminShutdown.into(),
                }
                encode_ready_for_query(&mut out, TransactionStatus::Idle);
            }
            FrontendMessage::Parse { .. }
            | FrontendMessage::Bind { .. }
            | FrontendMessage::Execute { .. } => {
                Reply::Error(admin::AdminError::extended_query_not_supported()).encode(&mut out);
                let _ = stream.write_all(&out).await;
                return Quiet::ConsoleExtendedQuery.into();
            }
            other => {
                Reply::Error(admin::AdminError::unsupported_packet(other.tag())).encode(&mut out);
                let _ = stream.write_all(&out).await;
                return Quiet::ConsoleUnsupportedPacket.into();
            }
        }
        if stream.write_all(&out).await.is_err() {
            return Quiet::ClientEof.into();
        }
    }
}

/// Runs one console command. `None`: the process is exiting (plain SHUTDOWN).
async fn run_command(
    shared: &Arc<Shared>,
    sql: &str,
    is_admin: bool,
    is_stats: bool,
    suspended_here: &mut bool,
) -> Option<Reply> {
    let cmd = match admin::parse_checked(sql, is_admin, is_stats) {
        Ok(c) => c,
        Err(e) => return Some(Reply::Error(e)),
    };
    let rt = shared.runtime();
    let shutting_down = *shared.shutdown.borrow();
    let effect = {
        let core = shared.lock();
        let state = admin::ControlState {
            pooler: &core.pooler,
            suspended: shared.is_suspended(),
            shutting_down,
        };
        admin::plan(cmd, &state, |db| rt.database(db).is_some())
    };
    let effect = match effect {
        Ok(e) => e,
        Err(e) => return Some(Reply::Error(e)),
    };
    Some(match effect {
        Effect::Reply(r) => r,
        Effect::Show(what) => {
            let core = shared.lock();
            let snap = snapshot(shared, &core, &rt);
            admin::show(&what, &snap)
        }
        Effect::Apply { events, tag } => {
            let mut core = shared.lock();
            for e in events {
                shared.handle_locked(&mut core, e, None);
            }
            Reply::Tag(tag)
        }
        Effect::Pause { database } => {
            let done = {
                let mut core = shared.lock();
                let rx = shared.wait_pause(&mut core, database.clone());
                shared.handle_locked(&mut core, Event::Pause { database }, None);
                rx
            };
            let _ = done.await;
            Reply::Tag("PAUSE".into())
        }
        Effect::Resume { database } => {
            if database.is_none() && shared.is_suspended() {
                shared.set_suspended(false);
                *suspended_here = false;
            }
            shared.handle(Event::Resume { database }, None);
            Reply::Tag("RESUME".into())
        }
        Effect::Suspend => {
            // Every session finishes the write it is doing and reads nothing more;
            // listeners stop accepting. Writes still waiting for their peer after
            // suspend_timeout are dropped with their connections. RESUME (or this
            // console leaving) ends it.
            shared.set_suspended(true);
            *suspended_here = true;
            let limit = rt.cfg.suspend_timeout;
            let dropped = shared.flush.settle(limit, || shared.is_suspended()).await;
            if dropped > 0 {
                tracing::warn!(
                    "SUSPEND: dropped {dropped} connection(s) not flushed within suspend_timeout"
                );
            }
            Reply::Tag("SUSPEND".into())
        }
        Effect::WaitClose { database } => {
            loop {
                let done = {
                    let core = shared.lock();
                    admin::wait_close_done(&core.pooler, shared.now(), database.as_deref())
                };
                if done {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Reply::Tag("WAIT_CLOSE".into())
        }
        Effect::Shutdown(mode) => {
            let mode = match mode {
                admin::ShutdownMode::Immediate => ShutdownMode::Immediate,
                admin::ShutdownMode::WaitForServers => ShutdownMode::WaitForServers,
                admin::ShutdownMode::WaitForClients => ShutdownMode::WaitForClients,
            };
            let _ = shared.shutdown_request.send(Some(mode));
            if mode == ShutdownMode::Immediate {
                return None;
            }
            Reply::Tag("SHUTDOWN".into())
        }
        Effect::Reload => match crate::daemon::reload_from_disk(shared) {
            Ok(()) => Reply::Tag("RELOAD".into()),
            Err(_) => Reply::Error(admin::AdminError::reload_failed()),
        },
        Effect::Set { key, value } => match set(shared, &rt, &key, &value) {
            Ok(SetOutcome::Done) => Reply::set_done(&key, &value),
            Ok(SetOutcome::TlsKept) => Reply::Notice {
                message: "TLS settings could not be applied, still using old configuration".into(),
                detail: None,
                then_tag: format!("SET {key}={value}"),
            },
            Err(()) => Reply::Error(admin::AdminError::set_failed()),
        },
        _ => Reply::Error(admin::AdminError::bad_arguments()),
    })
}

/// How a `SET` went.
enum SetOutcome {
    /// Applied.
    Done,
    /// The value is set, but the TLS it asks for could not be built: the old TLS stays
    /// in force (PgBouncer's NOTICE says so).
    TlsKept,
}

fn set(shared: &Arc<Shared>, rt: &Runtime, key: &str, value: &str) -> Result<SetOutcome, ()> {
    let k = keys::find(key).ok_or(())?;
    if !keys::validate(k.kind, value) {
        return Err(());
    }
    if !k.reloadable {
        return Ok(SetOutcome::Done); // accepted and ignored, as PgBouncer does
    }
    let mut settings = rt.settings.clone();
    settings.values.insert(k.name, Some(value.to_string()));
    match Runtime::new(settings.clone()) {
        Ok(new) => {
            shared.set_runtime(new);
            Ok(SetOutcome::Done)
        }
        Err(crate::runtime::RuntimeError::Tls(e)) if k.name.contains("_tls") => {
            tracing::error!("TLS setup failed: {e}");
            let new = Runtime::with_tls(settings, rt.tls.clone()).map_err(|_| ())?;
            shared.set_runtime(new);
            Ok(SetOutcome::TlsKept)
        }
        Err(_) => Err(()),
    }
}

/// The snapshot every SHOW (and `/metrics`) renders from.
pub(crate) fn snapshot<'a>(
    shared: &Shared,
    core: &'a crate::shared::Core,
    rt: &Runtime,
) -> Snapshot<'a> {
    let mut snap = Snapshot::new(&core.pooler, shared.now(), std::time::SystemTime::now());
    snap.listen_port = rt.cfg.listen_port();
    snap.logins_in_progress = shared.logins_in_progress() as usize;
    snap.console_totals = core.console_stats;
    snap.databases = rt
        .settings
        .databases
        .iter()
        .map(|d| admin::DatabaseInfo {
            name: d.name.clone(),
            host: (!d.hosts.is_empty()).then(|| d.hosts.join(",")),
            port: d.port,
            dbname: d.server_dbname(&d.name),
            load_balance_hosts: d.load_balance_hosts.clone(),
        })
        .collect();
    // Registered auto-databases, as the `*` entry makes them.
    if let Some(auto) = &rt.settings.autodb {
        for name in &core.autodbs {
            snap.databases.push(admin::DatabaseInfo {
                name: name.clone(),
                host: (!auto.hosts.is_empty()).then(|| auto.hosts.join(",")),
                port: auto.port,
                dbname: auto.server_dbname(name),
                load_balance_hosts: auto.load_balance_hosts.clone(),
            });
        }
    }
    // PgBouncer lists every user it knows: [users], auth_file, and those auth_query
    // found, with or without a pool.
    snap.users = rt
        .settings
        .users
        .iter()
        .map(|u| u.name.clone())
        .chain(rt.userlist.keys().cloned())
        .chain(core.dynamic_secrets.keys().cloned())
        .collect();
    snap.clients = core
        .client_info
        .iter()
        .map(|(id, info)| (*id, (**info).clone()))
        .collect();
    snap.servers = core
        .server_info
        .iter()
        .map(|(id, info)| (*id, info.clone()))
        .collect();
    snap.admin_clients = core.admin_clients.values().cloned().collect();
    let default_pool_size = crate::config::clamp_u32(rt.cfg.default_pool_size);
    snap.peers = rt
        .settings
        .peers
        .iter()
        .map(|p| {
            let size = p.pool_size.unwrap_or(default_pool_size);
            (p.id, p.host.clone(), p.port, size)
        })
        .collect();
    snap.config = keys::KEYS
        .iter()
        .map(|k| ConfigEntry {
            key: k.name.to_string(),
            value: rt
                .settings
                .values
                .get(k.name)
                .cloned()
                .flatten()
                .unwrap_or_default(),
            default: k.default.unwrap_or("").to_string(),
            changeable: k.reloadable,
        })
        .collect();
    snap
}

/// The console's `server_version` ParameterStatus: `<release>/bouncer`, as PgBouncer.
const PGBOUNCER_SERVER_VERSION: &str = concat!("1.26.1", "/bouncer");

/// A console login that failed: counted for `/metrics`, then the session's ending.
fn login_failed(shared: &Shared, f: Fatal) -> Exit {
    let e: Exit = f.into();
    if let Some(why) = e.login_failure() {
        shared.counters.login_failed(why);
    }
    e
}

/// Our effective uid, from /proc (std has no getuid).
fn own_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// `login_notify_message`: a NOTICE in every welcome (the console's too), after
/// BackendKeyData, as PgBouncer 1.26 sends it; nothing when it is empty.
pub(crate) fn login_notice(out: &mut bytes::BytesMut, rt: &Runtime) {
    let text = rt.cfg.login_notify_message.as_str();
    if !text.is_empty() {
        pgbouncer_protocol::encode_notice(out, "00000", text);
    }
}

/// A console client counted by pool-core: uncounted when it goes, however it goes.
struct ConsoleCounted {
    shared: Arc<Shared>,
    id: ClientId,
}

impl Drop for ConsoleCounted {
    fn drop(&mut self) {
        self.shared
            .handle(Event::ClientClosed { client: self.id }, None);
    }
}
