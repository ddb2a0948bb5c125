//! One client connection from accept to close: startup, authentication, welcome, and
//! the forwarding loop that links it to servers as its pool mode says
//! (mirrors client.c and the forwarding half of sbuf.c / proto.c).
//!
//! Only headers are parsed on the way through; bodies are looked at for ReadyForQuery
//! (release decisions) and ParameterStatus (parameter tracking) only.

use std::sync::Arc;
use std::time::{Duration, Instant as WallInstant};

use bytes::BytesMut;
use pgbouncer_pool_core::{ClientId, DisconnectReason, Event, PoolKey, PoolMode, Usage};
use pgbouncer_protocol::{
    encode_auth_ok, encode_backend_key_data, encode_error, encode_parameter_status,
    encode_ready_for_query, BackendMessage, StartupMessage, StartupPacket, TransactionStatus,
};

use crate::auth::{self, LoginIo};
use crate::runtime::Runtime;
use crate::scanner::{Scanner, Visitor};
use crate::server::ServerConn;
use crate::shared::{SessionMsg, Shared};
use crate::stream::Stream;

/// Client reads start small (queries are small, and a thousand waiting clients each hold
/// their pending query) and grow to `READ_CHUNK` while the client streams (COPY, big
/// binds). An idle client holds no buffer at all.
const SMALL_READ: usize = 1024;
const READ_CHUNK: usize = 32 * 1024;
/// Server reads: result sets can be big; the buffer lives with the server connection.
const SERVER_READ_CHUNK: usize = 32 * 1024;

/// How a session ended.
#[derive(Debug)]
pub(crate) enum Exit {
    /// Close silently; the text is for the log.
    Quiet(String),
    /// Send FATAL with this SQLSTATE and message, then close.
    Fatal(String, String),
}

impl Exit {
    pub(crate) fn fatal(msg: impl Into<String>) -> Exit {
        Exit::Fatal("08P01".into(), msg.into())
    }

    fn from_reason(r: &DisconnectReason) -> Exit {
        Exit::Fatal(r.sqlstate().to_string(), r.message())
    }
}

/// Serves one accepted client connection until it closes.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    stream: Stream,
    peer: (String, u16),
    local: (String, u16),
) {
    let (addr, port) = peer;
    let rt = shared.runtime();
    let mut s = Session {
        id: shared.next_client_id(),
        shared,
        max: rt.max_packet_size,
        rt,
        client: stream,
        cbuf: BytesMut::new(),
        rx: None,
        pool: None,
        mode: PoolMode::Session,
        vars: Vec::new(),
        addr,
        port,
        started: WallInstant::now(),
        label: String::new(),
        timeouts: QueryTimeouts::default(),
        local,
    };
    let exit = s.run().await;
    Box::pin(s.finish(exit)).await;
}

struct Session {
    shared: Arc<Shared>,
    rt: Arc<Runtime>,
    id: ClientId,
    client: Stream,
    cbuf: BytesMut,
    rx: Option<Arc<crate::mailbox::Mailbox>>,
    pool: Option<PoolKey>,
    mode: PoolMode,
    /// Tracked parameters the client set (startup, options, ParameterStatus).
    vars: Vec<(String, String)>,
    addr: String,
    port: u16,
    started: WallInstant,
    label: String,
    max: u32,
    timeouts: QueryTimeouts,
    /// The listener's address (no getsockname per client).
    local: (String, u16),
}

/// State of the link between the client and a server.
struct Link {
    conn: ServerConn,
    /// Query/Sync/FunctionCall messages sent and not yet answered by ReadyForQuery.
    pending: u32,
    status: TransactionStatus,
    cscan: Scanner,
    sscan: Scanner,
    usage: Usage,
    query_start: Option<WallInstant>,
    xact_start: Option<WallInstant>,
    /// Since when the client has been idle inside a transaction.
    idle_in_xact_since: Option<WallInstant>,
}

/// The timeouts a session enforces itself because they depend on per-query state that
/// only it sees (pool-core would need an event per query): `query_timeout`,
/// `idle_transaction_timeout`, `transaction_timeout`, with `[users]` overrides.
#[derive(Debug, Clone, Copy, Default)]
struct QueryTimeouts {
    query: Duration,
    idle_transaction: Duration,
    transaction: Duration,
}

impl QueryTimeouts {
    fn new(rt: &Runtime, user: &str) -> Self {
        let s = &rt.settings;
        let u = s.users.iter().find(|u| u.name == user);
        QueryTimeouts {
            query: u
                .and_then(|u| u.query_timeout)
                .unwrap_or_else(|| s.time("query_timeout")),
            idle_transaction: u
                .and_then(|u| u.idle_transaction_timeout)
                .unwrap_or_else(|| s.time("idle_transaction_timeout")),
            transaction: u
                .and_then(|u| u.transaction_timeout)
                .unwrap_or_else(|| s.time("transaction_timeout")),
        }
    }

    /// The next deadline for this link and the error it gives.
    fn deadline(&self, l: &Link) -> Option<(WallInstant, &'static str)> {
        let mut best: Option<(WallInstant, &'static str)> = None;
        let mut consider = |at: Option<WallInstant>, d: Duration, msg| {
            if let (Some(at), false) = (at, d.is_zero()) {
                let at = at + d;
                if best.is_none_or(|(b, _)| at < b) {
                    best = Some((at, msg));
                }
            }
        };
        if l.pending > 0 {
            consider(l.query_start, self.query, "query timeout");
        }
        consider(
            l.idle_in_xact_since,
            self.idle_transaction,
            "idle transaction timeout",
        );
        if l.status != TransactionStatus::Idle || l.pending > 0 {
            consider(l.xact_start, self.transaction, "transaction timeout");
        }
        best
    }
}

impl Link {
    fn new(conn: ServerConn) -> Link {
        Link {
            conn,
            pending: 0,
            status: TransactionStatus::Idle,
            cscan: Scanner::default(),
            sscan: Scanner::default(),
            usage: Usage::default(),
            query_start: None,
            xact_start: None,
            idle_in_xact_since: None,
        }
    }

    /// Idle, nothing outstanding, at message boundaries on both sides.
    fn is_clean(&self) -> bool {
        self.pending == 0
            && self.status == TransactionStatus::Idle
            && self.cscan.at_boundary()
            && self.sscan.at_boundary()
            && self.conn.buf.is_empty()
    }
}

impl Session {
    async fn run(&mut self) -> Exit {
        let login_timeout = self.rt.settings.time("client_login_timeout");
        let startup = if login_timeout.is_zero() {
            self.read_startup().await
        } else {
            match tokio::time::timeout(login_timeout, self.read_startup()).await {
                Ok(r) => r,
                Err(_) => Err(Exit::fatal("client_login_timeout")),
            }
        };
        let startup = match startup {
            Ok(Some(m)) => m,
            Ok(None) => return Exit::Quiet("cancel request".into()),
            Err(e) => return e,
        };
        // Boxed: the login state (auth exchanges) would otherwise sit in every idle
        // session task for its whole life.
        let mut link = match Box::pin(self.login(startup)).await {
            Ok(link) => link,
            Err(e) => return e,
        };
        loop {
            let mut l = match link.take() {
                Some(l) => l,
                None => match self.idle().await {
                    Ok(Some(l)) => l,
                    Ok(None) => return Exit::Quiet("client close request".into()),
                    Err(e) => return e,
                },
            };
            // Boxed: only a linked session pays for the forwarding state; an idle one
            // keeps a small task.
            match Box::pin(self.forward(&mut l)).await {
                Ok(Released::Yes) => self.release(l),
                Ok(Released::ClientLeft(reason)) => {
                    self.give_back(l, true);
                    return Exit::Quiet(reason);
                }
                Err(e) => {
                    self.give_back(l, false);
                    return e;
                }
            }
        }
    }

    /// Reads the startup packet, answering SSL/GSS requests with 'N'. `Ok(None)` for a
    /// cancel request (handled here).
    async fn read_startup(&mut self) -> Result<Option<StartupMessage>, Exit> {
        loop {
            match StartupPacket::decode(&mut self.cbuf, self.max) {
                Ok(Some(StartupPacket::SslRequest)) | Ok(Some(StartupPacket::GssEncRequest)) => {
                    self.client
                        .write_all(b"N")
                        .await
                        .map_err(|_| Exit::Quiet("client unexpected eof".into()))?;
                }
                Ok(Some(StartupPacket::CancelRequest(c))) => {
                    let key = cancel_key(c.process_id, c.secret_key);
                    self.shared.handle(Event::CancelRequested { key }, None);
                    return Ok(None);
                }
                Ok(Some(StartupPacket::Startup(m))) => return Ok(Some(m)),
                Ok(None) => {
                    self.cbuf.reserve(1024);
                    match self.client.read_buf(&mut self.cbuf).await {
                        Ok(0) | Err(_) => return Err(Exit::Quiet("client unexpected eof".into())),
                        Ok(_) => {}
                    }
                }
                Err(e) => return Err(Exit::fatal(e.pgbouncer_message())),
            }
        }
    }

    /// Checks the startup parameters, authenticates, and sends the welcome. Returns the
    /// server link when the welcome needed one and the pool mode keeps it (session).
    async fn login(&mut self, m: StartupMessage) -> Result<Option<Box<Link>>, Exit> {
        let user = m.param("user").unwrap_or("").to_string();
        if user.is_empty() {
            return Err(Exit::fatal("no username supplied"));
        }
        let database = m
            .param("database")
            .filter(|d| !d.is_empty())
            .unwrap_or(&user)
            .to_string();
        self.label = format!("{database}/{user}@{}:{}", self.addr, self.port);
        self.timeouts = QueryTimeouts::new(&self.rt, &user);
        for (k, v) in &m.params {
            match k.as_str() {
                "user" | "database" | "replication" => {}
                "options" => self.parse_options(v)?,
                _ if k.starts_with("_pq_.") => {}
                _ => match self.rt.tracked_name(k) {
                    Some(name) => set_var(&mut self.vars, name, v),
                    None if self.rt.ignored.contains(&k.to_lowercase()) => {}
                    None => return Err(Exit::fatal(format!("unsupported startup parameter: {k}"))),
                },
            }
        }
        let replication = m
            .param("replication")
            .filter(|r| {
                !matches!(
                    r.to_ascii_lowercase().as_str(),
                    "false" | "0" | "off" | "no"
                )
            })
            .map(str::to_string);
        if self.rt.log_connections {
            tracing::info!(
                "C-{}: {} login attempt: db={database} user={user} tls=no",
                self.id.0,
                self.label
            );
        }
        if database == "pgbouncer" {
            let id = self.id;
            return Err(crate::console::serve(self.console_io(), id, &user).await);
        }
        let db = self.rt.database(&database);
        let pool = PoolKey::new(
            &database,
            db.as_ref().and_then(|d| d.user.as_deref()).unwrap_or(&user),
        );
        if db.is_some() {
            self.rx = Some(self.shared.register(self.id));
            let (local_addr, local_port) = self.local.clone();
            self.shared.lock().client_info.insert(
                self.id,
                pgbouncer_admin::ConnInfo {
                    addr: self.addr.clone(),
                    port: self.port,
                    local_addr,
                    local_port,
                    application_name: get_var(&self.vars, "application_name")
                        .unwrap_or("")
                        .to_string(),
                    ..Default::default()
                },
            );
            self.shared.handle(
                Event::ClientConnected {
                    client: self.id,
                    pool: pool.clone(),
                    login_user: user.as_str().into(),
                },
                None,
            );
            self.check_mailbox()?;
        }
        let secret = self.find_secret(&user, &database, db.as_ref()).await?;
        let rt = self.rt.clone();
        let shared = self.shared.clone();
        let plain_scram = move |u: &str, p: &str| shared.plain_scram_secret(u, p);
        let facts = auth::ConnFacts {
            unix: self.addr == "unix",
            addr: self.addr.parse().ok(),
            peer_uid: self.client.peer_uid(),
            database: database.clone(),
            replication: replication.as_deref().is_some_and(|r| r != "database"),
        };
        // PgBouncer compat: password and SASL packets are small (MAX_PASSWORD); a
        // bigger length during login is an attack or garbage, not a password.
        let login_max = self.max.min(65_536);
        let mut io = LoginIo {
            stream: &mut self.client,
            buf: &mut self.cbuf,
            max: login_max,
        };
        let ok = auth::authenticate(&mut io, &rt, &user, secret, &facts, &plain_scram)
            .await
            .map_err(|f| Exit::fatal(f.0))?;
        if let Some(keys) = ok.scram_keys {
            self.shared.lock().scram_keys.insert(user.clone(), keys);
        }
        if db.is_none() {
            return Err(Exit::fatal(format!("no such database: {database}")));
        }
        self.mode = self
            .shared
            .lock()
            .pooler
            .client_pool_mode(self.id)
            .unwrap_or(PoolMode::Session);
        self.pool = Some(pool.clone());
        let pid = rand::random::<i32>() & 0x7fff_ffff;
        let secret = rand::random::<i32>();
        self.shared.handle(
            Event::ClientLoggedIn {
                client: self.id,
                cancel_key: cancel_key(pid, secret),
            },
            None,
        );
        if let Some(value) = replication {
            return Err(Box::pin(self.replicate(&pool, &value, pid, secret)).await);
        }
        let cached = self.shared.lock().welcome.get(&pool).cloned();
        let mut kept = None;
        let params = match cached {
            Some(p) => p,
            None => {
                let conn = self.acquire().await?;
                let p = conn.params.clone();
                if self.mode == PoolMode::Session {
                    kept = Some(Box::new(Link::new(conn)));
                } else {
                    let _ = self.shared.release(self.id, conn, Usage::default());
                }
                p
            }
        };
        self.send_welcome(&params, pid, secret).await?;
        Ok(kept)
    }

    /// A replication connection (`replication=database` or `true`): always session
    /// pooled on a dedicated server that logs in with the replication parameter, then the
    /// bytes are relayed both ways untouched (PgBouncer >= 1.23 semantics).
    async fn replicate(&mut self, pool: &PoolKey, value: &str, pid: i32, secret: i32) -> Exit {
        let target = {
            let core = self.shared.lock();
            self.shared.server_target(&core, pool)
        };
        let Some(mut target) = target else {
            return Exit::fatal(format!("no such database: {}", pool.database));
        };
        target
            .startup_params
            .push(("replication".into(), value.to_string()));
        for (k, v) in &self.vars {
            target.startup_params.push((k.clone(), v.clone()));
        }
        let timeout = self.rt.settings.time("server_connect_timeout");
        let id = pgbouncer_pool_core::ServerId(0);
        let mut conn = match crate::server::connect(id, &target, timeout, rand::random()).await {
            Ok(c) => c,
            Err(e) => return Exit::Fatal(e.code, e.message),
        };
        let params = conn.params.clone();
        if let Err(e) = self.send_welcome(&params, pid, secret).await {
            return e;
        }
        let mut cbuf = std::mem::take(&mut self.cbuf);
        loop {
            if !cbuf.is_empty() {
                if conn.stream.write_all(&cbuf).await.is_err() {
                    return Exit::fatal("server conn crashed?");
                }
                cbuf.clear();
            }
            if !conn.buf.is_empty() {
                if self.client.write_all(&conn.buf).await.is_err() {
                    return Exit::Quiet("client unexpected eof".into());
                }
                conn.buf.clear();
            }
            tokio::select! {
                r = self.client.readable() => {
                    if r.is_err() {
                        return Exit::Quiet("client unexpected eof".into());
                    }
                    cbuf.reserve(READ_CHUNK);
                    match self.client.try_read_buf(&mut cbuf) {
                        Ok(0) => return Exit::Quiet("client close request".into()),
                        Err(e) if e.kind() != std::io::ErrorKind::WouldBlock => {
                            return Exit::Quiet("client unexpected eof".into());
                        }
                        _ => {}
                    }
                }
                r = conn.stream.readable() => {
                    if r.is_err() {
                        return Exit::fatal("server conn crashed?");
                    }
                    conn.buf.reserve(SERVER_READ_CHUNK);
                    match conn.stream.try_read_buf(&mut conn.buf) {
                        Ok(0) => return Exit::Quiet("server closed the replication connection".into()),
                        Err(e) if e.kind() != std::io::ErrorKind::WouldBlock => {
                            return Exit::fatal("server conn crashed?");
                        }
                        _ => {}
                    }
                }
            }
        }
    }

    /// The user's secret: from auth_file, else via auth_query when an auth_user is set
    /// (per database or global), as PgBouncer does.
    async fn find_secret(
        &mut self,
        user: &str,
        database: &str,
        db: Option<&crate::config::DatabaseDef>,
    ) -> Result<Option<crate::auth::userlist::Secret>, Exit> {
        if let Some(s) = self.rt.secret(user) {
            return Ok(Some(s.clone()));
        }
        let settings = &self.rt.settings;
        let auth_user = db
            .and_then(|d| d.auth_user.clone())
            .or_else(|| Some(settings.str("auth_user").to_string()).filter(|s| !s.is_empty()));
        let (Some(auth_user), Some(db)) = (auth_user, db) else {
            return Ok(None);
        };
        let query = db
            .auth_query
            .clone()
            .unwrap_or_else(|| settings.str("auth_query").to_string());
        let auth_db = db
            .auth_dbname
            .clone()
            .or_else(|| Some(settings.str("auth_dbname").to_string()).filter(|s| !s.is_empty()))
            .unwrap_or_else(|| database.to_string());
        if auth_db == "pgbouncer" {
            return Err(Exit::fatal("bouncer config error"));
        }
        let shared = self.shared.clone();
        match shared
            .auth_conns
            .lookup(&shared, &auth_db, &auth_user, &query, user)
            .await
        {
            Ok(crate::auth_query::Lookup::Found(secret)) => {
                shared
                    .lock()
                    .dynamic_secrets
                    .insert(user.to_string(), secret.clone());
                Ok(Some(secret))
            }
            Ok(crate::auth_query::Lookup::NoSuchUser) => Err(Exit::fatal("no such user")),
            Err(e) => {
                tracing::warn!("C-{}: auth_query failed: {e}", self.id.0);
                Err(Exit::fatal("bouncer config error"))
            }
        }
    }

    fn parse_options(&mut self, options: &str) -> Result<(), Exit> {
        let ignore_all = self.rt.ignored.contains("options");
        let mut words = options.split_whitespace();
        while let Some(w) = words.next() {
            let kv = if w == "-c" {
                words.next().unwrap_or("")
            } else if let Some(rest) = w.strip_prefix("-c") {
                rest
            } else if let Some(rest) = w.strip_prefix("--") {
                rest
            } else if ignore_all {
                continue;
            } else {
                return Err(Exit::fatal(
                    "unsupported options startup parameter: only '-c config=val' and '--config=val' are allowed",
                ));
            };
            let Some((k, v)) = kv.split_once('=') else {
                return Err(Exit::fatal(format!(
                    "unsupported startup parameter in options: {kv}"
                )));
            };
            match self.rt.tracked_name(k) {
                Some(name) => set_var(&mut self.vars, name, v),
                None if ignore_all || self.rt.ignored.contains(&k.to_lowercase()) => {}
                None => {
                    return Err(Exit::fatal(format!(
                        "unsupported startup parameter in options: {k}"
                    )))
                }
            }
        }
        Ok(())
    }

    fn console_io(&mut self) -> crate::console::ConsoleIo<'_> {
        crate::console::ConsoleIo {
            shared: &self.shared,
            rt: &self.rt,
            stream: &mut self.client,
            buf: &mut self.cbuf,
            max: self.max,
        }
    }

    async fn send_welcome(
        &mut self,
        server_params: &[(String, String)],
        pid: i32,
        secret: i32,
    ) -> Result<(), Exit> {
        let mut out = BytesMut::with_capacity(512);
        encode_auth_ok(&mut out);
        for (name, value) in server_params {
            let v = get_var(&self.vars, name).unwrap_or(value);
            encode_parameter_status(&mut out, name, v);
        }
        for (name, value) in &self.vars {
            if !server_params
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case(name))
            {
                encode_parameter_status(&mut out, name, value);
            }
        }
        encode_backend_key_data(&mut out, pid, secret);
        encode_ready_for_query(&mut out, TransactionStatus::Idle);
        self.client
            .write_all(&out)
            .await
            .map_err(|_| Exit::Quiet("client unexpected eof".into()))
    }

    /// A disconnect queued while we were not listening.
    fn check_mailbox(&mut self) -> Result<(), Exit> {
        if let Some(rx) = self.rx.as_mut() {
            if let Some(SessionMsg::Disconnect(r)) = rx.try_recv() {
                return Err(Exit::from_reason(&r));
            }
        }
        Ok(())
    }

    /// Asks pool-core for a server and waits for it, watching the client for EOF.
    async fn acquire(&mut self) -> Result<ServerConn, Exit> {
        loop {
            let conn = match self
                .shared
                .handle(Event::ClientWantsServer { client: self.id }, Some(self.id))
            {
                Some(c) => c,
                None => self.wait_for_link().await?,
            };
            if conn.stream.has_unexpected_input() {
                // Closed or chatty while idle: never hand it to a client.
                self.shared.drop_server(self.id, conn);
                continue;
            }
            return Ok(conn);
        }
    }

    async fn wait_for_link(&mut self) -> Result<ServerConn, Exit> {
        let Some(rx) = self.rx.clone() else {
            return Err(Exit::fatal("bouncer config error"));
        };
        let mut eof = false;
        loop {
            tokio::select! {
                msg = rx.recv() => match msg {
                    SessionMsg::Link(conn) => return Ok(*conn),
                    SessionMsg::Disconnect(r) => return Err(Exit::from_reason(&r)),
                    SessionMsg::CancelWait => {
                        self.cbuf.clear();
                        let mut out = BytesMut::new();
                        encode_error(&mut out, "ERROR", "57014", "canceling statement due to user request");
                        encode_ready_for_query(&mut out, TransactionStatus::Idle);
                        let _ = self.client.write_all(&out).await;
                        return Err(Exit::Quiet("__cancelled_wait".into()));
                    }
                },
                r = self.client.readable(), if !eof => {
                    if r.is_err() { return Err(Exit::Quiet("client unexpected eof".into())); }
                    if self.cbuf.len() > 1 << 20 {
                        eof = true; // enough buffered; wait for the server only
                        continue;
                    }
                    reserve_client_read(&mut self.cbuf);
                    match self.client.try_read_buf(&mut self.cbuf) {
                        Ok(0) => return Err(Exit::Quiet("client unexpected eof".into())),
                        Ok(_) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(_) => return Err(Exit::Quiet("client unexpected eof".into())),
                    }
                }
            }
        }
    }

    /// No server: wait for the client's next request (or Terminate / EOF), then get one.
    /// `Ok(None)`: the client said goodbye.
    async fn idle(&mut self) -> Result<Option<Box<Link>>, Exit> {
        loop {
            if !self.cbuf.is_empty() {
                if self.cbuf.starts_with(b"X\0\0\0\x04") {
                    return Ok(None);
                }
                match self.acquire().await {
                    Ok(conn) => return Ok(Some(Box::new(Link::new(conn)))),
                    Err(Exit::Quiet(r)) if r == "__cancelled_wait" => continue,
                    Err(e) => return Err(e),
                }
            }
            // Nothing buffered and no server: give the buffer back, so that thousands
            // of idle clients cost little memory (PgBouncer returns pkt_buf the same way).
            self.cbuf = BytesMut::new();
            let rx = self
                .rx
                .clone()
                .ok_or_else(|| Exit::fatal("bouncer config error"))?;
            tokio::select! {
                msg = rx.recv() => match msg {
                    SessionMsg::Disconnect(r) => return Err(Exit::from_reason(&r)),
                    SessionMsg::Link(conn) => return Ok(Some(Box::new(Link::new(*conn)))),
                    SessionMsg::CancelWait => {}
                },
                r = self.client.readable() => {
                    if r.is_err() { return Ok(None); }
                    reserve_client_read(&mut self.cbuf);
                    match self.client.try_read_buf(&mut self.cbuf) {
                        Ok(0) => return Err(Exit::Quiet("client unexpected eof".into())),
                        Ok(_) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(_) => return Err(Exit::Quiet("client unexpected eof".into())),
                    }
                }
            }
        }
    }

    /// Brings the server's tracked parameters in line with the client's (one combined
    /// SET, replies swallowed), as PgBouncer's varcache does.
    async fn sync_vars(&mut self, l: &mut Link) -> Result<(), Exit> {
        let mut sql = String::new();
        for (name, value) in &self.vars {
            let differs = l
                .conn
                .param(name)
                .is_none_or(|v| !v.eq_ignore_ascii_case(value));
            if differs {
                sql.push_str(&format!("SET {name}='{}';", value.replace('\'', "''")));
            }
        }
        if sql.is_empty() {
            return Ok(());
        }
        l.conn.run_internal(&sql).await.map_err(|e| {
            tracing::warn!("C-{}: invalid server parameter: {e}", self.id.0);
            Exit::fatal(format!("invalid server parameter: {e}"))
        })?;
        // The server's canonical spelling becomes the client's value.
        for (name, value) in self.vars.iter_mut() {
            if let Some(v) = l.conn.param(name) {
                *value = v.to_string();
            }
        }
        Ok(())
    }

    /// Forwards in both directions until the server can be released.
    async fn forward(&mut self, l: &mut Link) -> Result<Released, Exit> {
        self.sync_vars(l).await?;
        if !self.cbuf.is_empty() {
            self.client_to_server(l).await?;
        }
        loop {
            if l.is_clean() && self.mode != PoolMode::Session {
                return Ok(Released::Yes);
            }
            let rx = self
                .rx
                .clone()
                .ok_or_else(|| Exit::fatal("bouncer config error"))?;
            let deadline = self.timeouts.deadline(l);
            let timer = async {
                match deadline {
                    Some((at, msg)) => {
                        tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
                        msg
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                msg = timer => return Err(Exit::fatal(msg)),
                r = l.conn.stream.readable() => {
                    if r.is_err() { return Err(Exit::fatal("server conn crashed?")); }
                    self.server_to_client(l).await?;
                }
                r = self.client.readable() => {
                    if r.is_err() { return Ok(Released::ClientLeft("client unexpected eof".into())); }
                    reserve_client_read(&mut self.cbuf);
                    match self.client.try_read_buf(&mut self.cbuf) {
                        Ok(0) => return Ok(Released::ClientLeft("client unexpected eof".into())),
                        Ok(_) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                        Err(_) => return Ok(Released::ClientLeft("client unexpected eof".into())),
                    }
                    if let Some(reason) = self.client_to_server(l).await? {
                        return Ok(Released::ClientLeft(reason));
                    }
                }
                msg = rx.recv() => {
                    if let SessionMsg::Disconnect(r) = msg {
                        return Err(Exit::from_reason(&r));
                    }
                }
            }
        }
    }

    /// Sends the buffered client bytes to the server. Returns a reason when the client
    /// sent Terminate (which is not forwarded).
    async fn client_to_server(&mut self, l: &mut Link) -> Result<Option<String>, Exit> {
        let mut v = ClientVisitor {
            pending: 0,
            terminate: false,
            parses: 0,
            binds: 0,
            any: false,
        };
        l.cscan
            .scan(&self.cbuf, self.max, &mut v)
            .map_err(|e| Exit::fatal(e.pgbouncer_message()))?;
        if v.any {
            l.idle_in_xact_since = None;
        }
        if v.any && l.query_start.is_none() {
            let now = WallInstant::now();
            l.query_start = Some(now);
            if l.xact_start.is_none() {
                l.xact_start = Some(now);
            }
        }
        l.pending += v.pending;
        l.usage.bytes_received += self.cbuf.len() as u64;
        l.usage.client_parse_count += v.parses;
        l.usage.server_parse_count += v.parses;
        l.usage.bind_count += v.binds;
        let mut end = self.cbuf.len();
        if v.terminate && self.cbuf.ends_with(b"X\0\0\0\x04") {
            end -= 5;
        }
        if end > 0 {
            l.conn
                .stream
                .write_all(&self.cbuf[..end])
                .await
                .map_err(|_| Exit::fatal("server conn crashed?"))?;
        }
        self.cbuf.clear();
        Ok(v.terminate.then(|| "client close request".to_string()))
    }

    async fn server_to_client(&mut self, l: &mut Link) -> Result<(), Exit> {
        l.conn.buf.reserve(SERVER_READ_CHUNK);
        match l.conn.stream.try_read_buf(&mut l.conn.buf) {
            Ok(0) => return Err(Exit::fatal("server conn crashed?")),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
            Err(_) => return Err(Exit::fatal("server conn crashed?")),
        }
        let mut v = ServerVisitor {
            rfq: Vec::new(),
            params: Vec::new(),
        };
        l.sscan
            .scan(&l.conn.buf, self.max, &mut v)
            .map_err(|e| Exit::fatal(format!("server sent a bad packet: {e}")))?;
        // PgBouncer compat: in statement mode a ReadyForQuery that opens a transaction
        // is not forwarded; the client gets the FATAL error in its place.
        let refused =
            self.mode == PoolMode::Statement && v.rfq.iter().any(|s| *s != TransactionStatus::Idle);
        let mut end = l.conn.buf.len();
        if refused
            && (l.conn.buf.ends_with(b"Z\0\0\0\x05T") || l.conn.buf.ends_with(b"Z\0\0\0\x05E"))
        {
            end -= 6;
        }
        self.client
            .write_all(&l.conn.buf[..end])
            .await
            .map_err(|_| Exit::Quiet("client unexpected eof".into()))?;
        l.usage.bytes_sent += l.conn.buf.len() as u64;
        l.conn.buf.clear();
        for (name, value) in v.params {
            l.conn.set_param(&name, &value);
            if let Some(t) = self.rt.tracked_name(&name) {
                let t = t.to_string();
                set_var(&mut self.vars, &t, &value);
            }
        }
        for status in v.rfq {
            l.pending = l.pending.saturating_sub(1);
            l.status = status;
            let now = WallInstant::now();
            if let Some(start) = l.query_start.take() {
                l.usage.query_count += 1;
                l.usage.query_time_us += (now - start).as_micros() as u64;
            }
            if status == TransactionStatus::Idle {
                if let Some(start) = l.xact_start.take() {
                    l.usage.xact_count += 1;
                    l.usage.xact_time_us += (now - start).as_micros() as u64;
                }
            } else if self.mode == PoolMode::Statement {
                return Err(Exit::fatal(
                    "transaction blocks not allowed in statement pooling mode",
                ));
            }
            if l.pending > 0 {
                l.query_start = Some(now);
            } else if status != TransactionStatus::Idle {
                l.idle_in_xact_since = Some(now);
            }
        }
        if self.mode == PoolMode::Session && l.usage.xact_count > 0 && l.pending == 0 {
            let usage = std::mem::take(&mut l.usage);
            self.shared.handle(
                Event::ClientUsage {
                    client: self.id,
                    usage,
                },
                None,
            );
        }
        Ok(())
    }

    fn release(&mut self, l: Box<Link>) {
        let Link { conn, usage, .. } = *l;
        let _ = self.shared.release(self.id, conn, usage);
    }

    /// The client is leaving while linked: a clean server goes back to the pool (with
    /// a reset in session mode), anything else is closed.
    fn give_back(&mut self, l: Box<Link>, client_left_cleanly: bool) {
        if client_left_cleanly && l.is_clean() {
            let _ = self.shared.release(self.id, l.conn, l.usage);
        } else {
            l.conn.terminate();
        }
    }

    async fn finish(&mut self, exit: Exit) {
        let age = self.started.elapsed().as_secs();
        let reason = match &exit {
            Exit::Quiet(r) => r.clone(),
            Exit::Fatal(_, m) => m.clone(),
        };
        if let Exit::Fatal(code, msg) = &exit {
            let mut out = BytesMut::new();
            encode_error(&mut out, "FATAL", code, msg);
            let _ = tokio::time::timeout(Duration::from_secs(1), self.client.write_all(&out)).await;
            if self.rt.log_pooler_errors {
                tracing::warn!("C-{}: {} pooler error: {msg}", self.id.0, self.label);
            }
        }
        if self.rt.log_disconnections && !self.label.is_empty() {
            tracing::info!(
                "C-{}: {} closing because: {reason} (age={age}s)",
                self.id.0,
                self.label
            );
        }
        if self.rx.is_some() {
            self.shared.client_gone(self.id);
        }
    }
}

enum Released {
    Yes,
    ClientLeft(String),
}

struct ClientVisitor {
    pending: u32,
    terminate: bool,
    parses: u64,
    binds: u64,
    any: bool,
}

impl Visitor for ClientVisitor {
    fn header(&mut self, tag: u8, _len: u32) {
        match tag {
            b'Q' | b'S' | b'F' => self.pending += 1,
            b'X' => self.terminate = true,
            b'P' => self.parses += 1,
            b'B' => self.binds += 1,
            _ => {}
        }
        if tag != b'X' {
            self.any = true;
        }
    }
    fn body(&mut self, _tag: u8, _body: &[u8]) {}
    fn wants_body(&self, _tag: u8) -> bool {
        false
    }
}

struct ServerVisitor {
    rfq: Vec<TransactionStatus>,
    params: Vec<(String, String)>,
}

impl Visitor for ServerVisitor {
    fn header(&mut self, _tag: u8, _len: u32) {}
    fn body(&mut self, tag: u8, body: &[u8]) {
        match tag {
            b'Z' => {
                let status = body.first().and_then(|b| TransactionStatus::from_byte(*b));
                self.rfq.push(status.unwrap_or(TransactionStatus::Failed));
            }
            b'S' => {
                if let Ok(BackendMessage::ParameterStatus { name, value }) =
                    BackendMessage::decode_body(b'S', bytes::Bytes::copy_from_slice(body))
                {
                    self.params.push((name, value));
                }
            }
            _ => {}
        }
    }
    fn wants_body(&self, tag: u8) -> bool {
        tag == b'Z' || tag == b'S'
    }
}

/// The 64-bit key pool-core uses for a BackendKeyData pair.
pub(crate) fn cancel_key(pid: i32, secret: i32) -> u64 {
    (u64::from(pid as u32) << 32) | u64::from(secret as u32)
}

fn set_var(vars: &mut Vec<(String, String)>, name: &str, value: &str) {
    match vars.iter_mut().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
        Some(v) => v.1 = value.to_string(),
        None => vars.push((name.to_string(), value.to_string())),
    }
}

fn get_var<'a>(vars: &'a [(String, String)], name: &str) -> Option<&'a str> {
    vars.iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// A buffer that already holds a lot means the client is streaming: read more at once.
fn reserve_client_read(cbuf: &mut BytesMut) {
    let want = if cbuf.len() >= SMALL_READ {
        READ_CHUNK
    } else {
        SMALL_READ
    };
    cbuf.reserve(want);
}
