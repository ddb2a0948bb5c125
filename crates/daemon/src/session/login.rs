//! Client login: the startup packet, startup parameters, authentication, the welcome
//! message, and replication pass-through (mirrors client.c's login half).

use super::*;

impl Session {
    /// Reads the startup packet: answers an SSLRequest with 'S' and a TLS handshake when
    /// client TLS is on (else 'N', as GSSENCRequest always), accepts direct TLS (the
    /// first byte a TLS handshake record), and refuses clear text when TLS is required.
    /// `Ok(None)` for a cancel request (handled here).
    pub(super) async fn read_startup(&mut self) -> Result<Option<StartupMessage>, Exit> {
        loop {
            if self
                .cbuf
                .first()
                .is_some_and(|b| pgbouncer_protocol::is_direct_tls(*b))
                && self.tls_offer().is_some()
            {
                // Boxed (as below): the handshake's state, kept out of every login.
                Box::pin(self.start_tls(true)).await?;
                continue;
            }
            match StartupPacket::decode(&mut self.cbuf, self.max) {
                Ok(Some(StartupPacket::SslRequest)) => {
                    if !self.cbuf.is_empty() {
                        return Err(Fatal::UnencryptedAfterSslRequest.into());
                    }
                    if self.tls_offer().is_some() {
                        self.client
                            .write_all(pgbouncer_protocol::ENCRYPTION_ACCEPTED)
                            .await
                            .map_err(|_| Exit::Quiet(Quiet::ClientEof))?;
                        Box::pin(self.start_tls(false)).await?;
                    } else {
                        self.refuse_encryption().await?;
                    }
                }
                Ok(Some(StartupPacket::GssEncRequest)) => {
                    if !self.cbuf.is_empty() {
                        return Err(Fatal::UnencryptedAfterGssRequest.into());
                    }
                    self.refuse_encryption().await?;
                }
                Ok(Some(StartupPacket::CancelRequest(c))) => {
                    let (pid, mut secret) = (c.process_id, c.secret_key);
                    let own = self.rt.cfg.peer_id;
                    if own > 0 {
                        // Peering: a key another peer issued goes to that peer.
                        let issuer = pgbouncer_protocol::cancel::peer_of(pid);
                        if i64::from(issuer) != own {
                            self.forward_cancel_to_peer(issuer, pid, secret).await;
                            return Ok(None);
                        }
                        secret = pgbouncer_protocol::cancel::as_issued(secret);
                    }
                    let key = cancel_key(pid, secret);
                    // Closed only once the cancel reached the server (or gave up), as a
                    // PostgreSQL server closes it only after acting on it.
                    self.shared.forward_cancel(key).await;
                    return Ok(None);
                }
                Ok(Some(StartupPacket::Startup(m))) => {
                    let mode = self.rt.tls.client.mode;
                    let tcp = matches!(self.client, Stream::Tcp(_));
                    if mode >= crate::tls::SslMode::Require && tcp {
                        return Err(Fatal::SslRequired.into());
                    }
                    return Ok(Some(m));
                }
                Ok(None) => {
                    self.cbuf.reserve(1024);
                    match self.client.read_buf(&mut self.cbuf).await {
                        Ok(0) | Err(_) => return Err(Quiet::ClientEof.into()),
                        Ok(_) => {}
                    }
                }
                Err(e) => return Err(Fatal::Decode(e).into()),
            }
        }
    }

    async fn refuse_encryption(&mut self) -> Result<(), Exit> {
        self.client
            .write_all(pgbouncer_protocol::ENCRYPTION_REFUSED)
            .await
            .map_err(|_| Exit::Quiet(Quiet::ClientEof))
    }

    /// The TLS configuration to offer this client: client TLS is on and the client is on
    /// TCP without TLS yet (Unix sockets never get TLS, as in PgBouncer).
    fn tls_offer(&self) -> Option<&crate::tls::ClientSide> {
        match self.client {
            Stream::Tcp(_) if self.rt.tls.client.config.is_some() => Some(&self.rt.tls.client),
            _ => None,
        }
    }

    /// Runs the TLS handshake on the client socket. `direct`: the bytes read so far are
    /// the start of the ClientHello (no SSLRequest came first). As PgBouncer, a client
    /// that offers ALPN must offer `postgresql` (rustls refuses the handshake otherwise),
    /// and one that offers none is let in (asyncpg's `direct_tls` sends none);
    /// PostgreSQL 17 itself insists on ALPN for direct TLS.
    async fn start_tls(&mut self, direct: bool) -> Result<(), Exit> {
        let rt = self.rt.clone();
        if self.tls_offer().is_none() {
            return Err(Fatal::BouncerConfigError.into());
        }
        let Stream::Tcp(tcp) = self.client.take() else {
            return Err(Fatal::BouncerConfigError.into());
        };
        let initial = std::mem::take(&mut self.cbuf);
        match crate::tls::TlsStream::accept(tcp, &rt.tls.client, &initial).await {
            Ok(tls) => {
                if direct {
                    tracing::debug!(
                        "C-{}: direct TLS, ALPN {:?}",
                        self.id.0,
                        tls.alpn().map(|a| String::from_utf8_lossy(&a).into_owned())
                    );
                }
                self.client = Stream::Tls(Box::new(tls));
                self.shared.counters.tls_handshake(false, true);
                Ok(())
            }
            Err(e) => {
                self.shared.counters.tls_handshake(false, false);
                tracing::warn!("C-{}: {} TLS handshake error: {e}", self.id.0, self.label());
                Err(Quiet::TlsHandshakeFailed.into())
            }
        }
    }

    /// Checks the startup parameters, authenticates, and sends the welcome. Returns the
    /// server link when the welcome needed one and the pool mode keeps it (session).
    /// `deadline`: when `client_login_timeout` ends the login.
    pub(super) async fn login(
        &mut self,
        m: StartupMessage,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<Option<Box<Linked>>, Exit> {
        let user = m.param("user").unwrap_or("").to_string();
        if user.is_empty() {
            return Err(Fatal::NoUsername.into());
        }
        let database = m
            .param("database")
            .filter(|d| !d.is_empty())
            .unwrap_or(&user)
            .to_string();
        // Shares the names of an existing pool's key when the user logs in as itself.
        self.who = Some(self.shared.lock().pooler.pool_key(&database, &user));
        self.timeouts = QueryTimeouts::new(&self.rt, &user);
        let replication = m
            .param("replication")
            .filter(|r| {
                !matches!(
                    r.to_ascii_lowercase().as_str(),
                    "false" | "0" | "off" | "no"
                )
            })
            .map(str::to_string);
        for (k, v) in &m.params {
            match k.as_str() {
                "user" | "database" | "replication" => {}
                // A replication connection has a server of its own: its options go to
                // the server verbatim, whatever they set (PgBouncer does the same).
                "options" if replication.is_some() => {}
                "options" => self.parse_options(v)?,
                _ if k.starts_with("_pq_.") => {}
                _ => match self.rt.tracked_name(k) {
                    Some(name) => {
                        self.vars_sig = None;
                        set_var(&mut self.vars, name, v)
                    }
                    None if self.rt.ignored.contains(&k.to_lowercase()) => {}
                    None => return Err(Fatal::UnsupportedStartupParameter(k.clone()).into()),
                },
            }
        }
        if self.rt.per_login.application_name_add_host {
            // PgBouncer compat: "<name> - <addr>:<port>", so servers show who is behind.
            let name = get_var(&self.vars, "application_name")
                .unwrap_or("app")
                .to_string();
            let with_host = if self.addr.contains(':') {
                format!("{name} - [{}]:{}", self.addr, self.port)
            } else {
                format!("{name} - {}:{}", self.addr, self.port)
            };
            self.set_var("application_name", &with_host);
        }
        if self.rt.log_connections {
            let tls = match self.client.tls_info() {
                "" => "no",
                info => info,
            };
            let replication = match replication.as_deref() {
                None => "no",
                Some("database") => "database",
                Some(_) => "yes",
            };
            crate::logging::compose(
                |t| {
                    t.s("C-").n(self.id.0.into()).s(": ");
                    self.label_into(t);
                    t.s(" login attempt: db=").s(&database).s(" user=").s(&user);
                    t.s(" tls=").s(tls).s(" replication=").s(replication);
                },
                |line| tracing::info!("{line}"),
            );
        }
        if database == "pgbouncer" {
            let secret = self.console_secret(&user).await?;
            // The console authenticates on its own and counts its login (or failure).
            self.logged_in = true;
            let id = self.id;
            let serve = crate::console::serve(self.console_io(deadline), id, &user, secret);
            return Err(Box::pin(serve).await);
        }
        if self.shared.is_shutting_down() {
            // Only the Unix socket still listens; it serves the console only.
            return Err(Fatal::Pool(pgbouncer_pool_core::DisconnectReason::ShuttingDown).into());
        }
        // Counted against max_client_conn from here on, but known to pool-core (which
        // creates pools) only once authenticated.
        let Some(slot) = self.shared.login_slot() else {
            return Err(Fatal::Pool(pgbouncer_pool_core::DisconnectReason::MaxClientConn).into());
        };
        let rt = self.rt.clone();
        let replicating = replication.as_deref().is_some_and(|r| r != "database");
        // The exchange is boxed, and the `[databases]` entry (16 bytes, `DbEntry`) moves
        // into it from a block: with the exchange inline the login's state would be past
        // 1 KiB, where every allocation of it missed malloc's per-thread cache and often
        // made malloc consolidate its free lists.
        let (pool, known_db, auth) = {
            let db = rt.database(&database);
            let pool = match db.as_ref().and_then(|d| d.user.as_deref()) {
                Some(forced) => self.shared.lock().pooler.pool_key(&database, forced),
                None => self
                    .who
                    .clone()
                    .unwrap_or_else(|| PoolKey::new(&database, &user)),
            };
            let known = db.is_some();
            let auth = Box::pin(self.authenticate(&user, &database, db, replicating));
            (pool, known, auth)
        };
        {
            // (A block: the outcome's storage ends here too.)
            let ok = match deadline {
                Some(at) => tokio::time::timeout_at(at, auth)
                    .await
                    .map_err(|_| Exit::Fatal(Fatal::ClientLoginTimeout))??,
                None => auth.await?,
            };
            if let Some(keys) = ok.scram_keys {
                self.shared.lock().scram_keys.insert(user.clone(), keys);
            }
        }
        if !known_db {
            return Err(Fatal::NoSuchDatabase(database).into());
        }
        if !self
            .rt
            .settings
            .databases
            .iter()
            .any(|d| d.name == database)
            && self.shared.lock().autodbs.insert(database.clone())
        {
            // Only once authenticated: made-up names cost nothing.
            tracing::info!(
                "C-{}: {} registered new auto-database: {database}",
                self.id.0,
                self.label()
            );
        }
        let rx = self.shared.register(self.id);
        super::park::enroll(&rx);
        self.rx = Some(rx);
        let (local_addr, local_port) = (self.local.0.clone(), self.local.1);
        self.shared.lock().client_info.insert(
            self.id,
            Box::new(pgbouncer_admin::ConnInfo {
                addr: self.addr.clone(),
                port: self.port,
                local_addr,
                local_port,
                tls: self.client.tls_info().into(),
                application_name: get_var(&self.vars, "application_name").unwrap_or("").into(),
                ..Default::default()
            }),
        );
        self.shared.handle(
            pgbouncer_pool_core::Event::ClientConnected {
                client: self.id,
                pool: pool.clone(),
                login_user: match &self.who {
                    Some(who) => who.user.clone(),
                    None => user.as_str().into(),
                },
            },
            None,
        );
        // Only now: until pool-core counts the client, the slot does.
        drop(slot);
        self.check_mailbox()?;
        self.mode = {
            let mut core = self.shared.lock();
            // Idle servers last used on this worker go to this client first.
            let worker = u16::try_from(crate::workers::current()).unwrap_or(u16::MAX);
            core.pooler.set_client_locality(self.id, worker);
            core.pooler
                .client_pool_mode(self.id)
                .unwrap_or(PoolMode::Session)
        };
        let mut pid = rand::random::<i32>() & 0x7fff_ffff;
        let mut secret = rand::random::<i32>();
        if let Ok(peer_id @ 1..) = u16::try_from(self.rt.cfg.peer_id) {
            (pid, secret) = pgbouncer_protocol::cancel::issue(pid, secret, peer_id);
        }
        self.shared.handle(
            pgbouncer_pool_core::Event::ClientLoggedIn {
                client: self.id,
                cancel_key: cancel_key(pid, secret),
            },
            None,
        );
        self.logged_in = true;
        self.shared.counters.login();
        if let Some(value) = replication {
            let options = m.param("options").map(str::to_string);
            return Err(Box::pin(self.replicate(&pool, &value, options, pid, secret)).await);
        }
        let cached = self.shared.lock().welcome.get(&pool).cloned();
        let mut kept = None;
        let params = match cached {
            Some(p) => p,
            None => {
                let (conn, _) = self.acquire().await?;
                let p = self
                    .shared
                    .lock()
                    .welcome
                    .get(&pool)
                    .cloned()
                    .unwrap_or_else(|| {
                        Arc::new(crate::shared::Welcome::new(conn.params.clone(), &self.rt))
                    });
                if self.mode == PoolMode::Session {
                    kept = Some(Box::new(self.linked(conn)));
                } else {
                    let _ = self
                        .shared
                        .release(self.id, conn, Usage::default(), self.shared.now());
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
    pub(super) async fn replicate(
        &mut self,
        pool: &PoolKey,
        value: &str,
        options: Option<String>,
        pid: i32,
        secret: i32,
    ) -> Exit {
        let target = {
            let core = self.shared.lock();
            self.shared.server_target(&core, pool)
        };
        let Some(mut target) = target else {
            return Fatal::NoSuchDatabase(pool.database.to_string()).into();
        };
        target
            .startup_params
            .push(("replication".into(), value.to_string()));
        if let Some(options) = options {
            target.startup_params.push(("options".into(), options));
        }
        for (k, v) in &self.vars {
            target.startup_params.push((k.clone(), v.clone()));
        }
        // Its server counts toward pool_size: pool-core grants one (closing an idle
        // normal server of the pool if the pool is full) or queues the client.
        let id = match self.wait_replication_server().await {
            Ok(id) => id,
            Err(e) => return e,
        };
        let timeout = self.rt.cfg.server_connect_timeout;
        let mut conn = match crate::server::connect(id, &target, timeout, rand::random()).await {
            Ok(c) => c,
            Err(e) => {
                // As PgBouncer: a replication login can fail for reasons of its own (no
                // REPLICATION role, no pg_hba line for replication), so it is logged
                // and the client told `login failed`; nobody else is failed.
                if let Some(severity) = &e.severity {
                    tracing::error!(
                        "C-{}: {} S: login failed: {severity}: {}",
                        self.id.0,
                        self.label(),
                        e.message
                    );
                    return Fatal::ReplicationLoginFailed.into();
                }
                return Fatal::Server {
                    code: e.code,
                    message: e.message,
                }
                .into();
            }
        };
        let params = Arc::new(crate::shared::Welcome::new(conn.params.clone(), &self.rt));
        if let Err(e) = self.send_welcome(&params, pid, secret).await {
            return e;
        }
        let mut cbuf = std::mem::take(&mut self.cbuf);
        loop {
            // Through the flusher, so SUSPEND sees (and after suspend_timeout drops) a
            // replication stream whose peer stopped reading.
            if let Err(e) = self.shared.flush.write_all(&conn.stream, &cbuf).await {
                return write_failed(e, Fatal::ServerConnCrashed);
            }
            cbuf.clear();
            if let Err(e) = self.shared.flush.write_all(&self.client, &conn.buf).await {
                return write_failed(e, Quiet::ClientEof);
            }
            conn.buf.clear();
            if self.shared.is_suspended() {
                Box::pin(self.shared.wait_resumed()).await;
            }
            tokio::select! {
                r = self.client.readable() => {
                    if r.is_err() {
                        return Quiet::ClientEof.into();
                    }
                    cbuf.reserve(READ_CHUNK);
                    match self.client.try_read_buf(&mut cbuf) {
                        Ok(0) => return Quiet::ClientCloseRequest.into(),
                        Err(e) if e.kind() != std::io::ErrorKind::WouldBlock => {
                            return Quiet::ClientEof.into();
                        }
                        _ => {}
                    }
                }
                r = conn.stream.readable() => {
                    if r.is_err() {
                        return Fatal::ServerConnCrashed.into();
                    }
                    conn.buf.reserve(SERVER_READ_CHUNK);
                    match conn.stream.try_read_buf(&mut conn.buf) {
                        Ok(0) => return Quiet::ReplicationServerClosed.into(),
                        Err(e) if e.kind() != std::io::ErrorKind::WouldBlock => {
                            return Fatal::ServerConnCrashed.into();
                        }
                        _ => {}
                    }
                }
            }
        }
    }

    /// Hands a cancel request to the peer that issued its key (`[peers]`), one hop
    /// less to live; dropped when the hops are used up or the peer is not configured.
    async fn forward_cancel_to_peer(&self, issuer: u16, pid: i32, secret: i32) {
        use pgbouncer_protocol::cancel;
        let Some(peer) = self.rt.settings.peers.iter().find(|p| p.id == issuer) else {
            tracing::debug!(
                "C-{}: cancel request for unknown peer {issuer}: dropped",
                self.id.0
            );
            return;
        };
        let ttl = cancel::ttl(secret);
        if ttl == 0 {
            tracing::warn!(
                "C-{}: failed to forward cancel request because its TTL was exhausted",
                self.id.0
            );
            return;
        }
        let limit = self.rt.cfg.cancel_wait_timeout;
        let send = crate::shared::send_cancel(
            &peer.host,
            peer.port,
            pid,
            cancel::with_ttl(secret, ttl - 1),
        );
        let sent = if limit.is_zero() {
            send.await
        } else {
            tokio::time::timeout(limit, send)
                .await
                .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
        };
        match sent {
            Ok(()) => tracing::debug!("C-{}: cancel request forwarded to peer {issuer}", self.id.0),
            Err(e) => tracing::warn!(
                "C-{}: cancel request to peer {issuer} ({}:{}) failed: {e}",
                self.id.0,
                peer.host,
                peer.port
            ),
        }
    }

    /// Asks pool-core for a replication server and waits for its id. The wait ends with
    /// the pool's `query_wait_timeout` (a Disconnect), or when the client goes away;
    /// bytes the client sends meanwhile are kept for the server.
    async fn wait_replication_server(&mut self) -> Result<pgbouncer_pool_core::ServerId, Exit> {
        use crate::shared::SessionMsg;
        self.shared.handle(
            pgbouncer_pool_core::Event::ReplicationServerWanted { client: self.id },
            None,
        );
        let Some(rx) = self.rx.clone() else {
            return Err(Fatal::ServerConnCrashed.into());
        };
        loop {
            tokio::select! {
                msg = rx.recv() => match msg {
                    SessionMsg::ReplicationServer(id) => return Ok(id),
                    SessionMsg::Disconnect(r) => return Err(r.into()),
                    _ => {}
                },
                r = self.client.readable() => {
                    if r.is_err() {
                        return Err(Quiet::ClientEof.into());
                    }
                    self.cbuf.reserve(READ_CHUNK);
                    match self.client.try_read_buf(&mut self.cbuf) {
                        Ok(0) => return Err(Quiet::ClientCloseRequest.into()),
                        Err(e) if e.kind() != std::io::ErrorKind::WouldBlock => {
                            return Err(Quiet::ClientEof.into());
                        }
                        _ => {}
                    }
                }
            }
        }
    }

    /// Finds the user's secret and runs the authentication exchange.
    async fn authenticate(
        &mut self,
        user: &str,
        database: &str,
        db: Option<crate::config::DbEntry<'_>>,
        replication: bool,
    ) -> Result<auth::AuthSuccess, Exit> {
        let secret = self.find_secret(user, database, db.as_deref()).await?;
        let rt = self.rt.clone();
        let shared = self.shared.clone();
        let plain_scram = move |u: &str, p: &str| shared.plain_scram_secret(u, p);
        let facts = auth::ConnFacts {
            unix: &*self.addr == "unix",
            addr: self.addr.parse().ok(),
            peer_uid: self.client.peer_uid(),
            tls: self.client.is_tls(),
            cert_name: self.client.peer_certificate_name(),
            database: database.to_string(),
            replication,
        };
        // PgBouncer compat: password and SASL packets are small (MAX_PASSWORD); a
        // bigger length during login is an attack or garbage, not a password.
        let login_max = self.max.min(65_536);
        let mut io = LoginIo {
            stream: &mut self.client,
            buf: &mut self.cbuf,
            max: login_max,
        };
        auth::authenticate(&mut io, &rt, user, secret, &facts, &plain_scram)
            .await
            .map_err(|f| Exit::Fatal(Fatal::Auth(f.0)))
    }

    /// The user's secret: from auth_file, else via auth_query when an auth_user is set
    /// (per database or global), as PgBouncer does.
    pub(super) async fn find_secret(
        &mut self,
        user: &str,
        database: &str,
        db: Option<&crate::config::DatabaseDef>,
    ) -> Result<Option<crate::auth::userlist::Secret>, Exit> {
        if let Some(s) = self.rt.secret(user) {
            return Ok(Some(s.clone()));
        }
        let auth_user = db
            .and_then(|d| d.auth_user.clone())
            .or_else(|| Some(self.rt.cfg.auth_user.clone()).filter(|s| !s.is_empty()));
        let (Some(auth_user), Some(db)) = (auth_user, db) else {
            return Ok(None);
        };
        let query = db
            .auth_query
            .clone()
            .unwrap_or_else(|| self.rt.cfg.auth_query.clone());
        let auth_db = db
            .auth_dbname
            .clone()
            .or_else(|| Some(self.rt.cfg.auth_dbname.clone()).filter(|s| !s.is_empty()))
            .unwrap_or_else(|| database.to_string());
        // Boxed: an auth_query connection is the largest state a login can hold, and
        // most logins find their secret in auth_file.
        Box::pin(self.lookup_secret(user, &auth_user, &query, auth_db)).await
    }

    /// The secret of a console user: `auth_file`, else auth_query. The console has no
    /// `[databases]` entry of its own, so the auth database is the global
    /// `auth_dbname`, else the `*` entry's (PgBouncer's order for the admin database);
    /// without either there is nowhere to ask.
    pub(super) async fn console_secret(
        &mut self,
        user: &str,
    ) -> Result<Option<crate::auth::userlist::Secret>, Exit> {
        if let Some(s) = self.rt.secret(user) {
            return Ok(Some(s.clone()));
        }
        // Only for users the console would let in: no lookups for anybody else.
        let rt = &self.rt;
        let allowed = rt
            .admin_users
            .iter()
            .chain(&rt.stats_users)
            .any(|u| u == user);
        if !allowed {
            return Ok(None);
        }
        let settings = &self.rt.settings;
        let cfg = &self.rt.cfg;
        let global = |v: &String| Some(v.clone()).filter(|s| !s.is_empty());
        let auto = settings.autodb.as_ref();
        let auth_user = global(&cfg.auth_user).or_else(|| auto.and_then(|d| d.auth_user.clone()));
        let auth_db = global(&cfg.auth_dbname).or_else(|| auto.and_then(|d| d.auth_dbname.clone()));
        let (Some(auth_user), Some(auth_db)) = (auth_user, auth_db) else {
            return Ok(None);
        };
        let query = auto
            .and_then(|d| d.auth_query.clone())
            .unwrap_or_else(|| self.rt.cfg.auth_query.clone());
        // Boxed: an auth_query connection is the largest state a login can hold, and
        // most logins find their secret in auth_file.
        Box::pin(self.lookup_secret(user, &auth_user, &query, auth_db)).await
    }

    /// Runs `query` for `user` as `auth_user` on `auth_db`.
    async fn lookup_secret(
        &mut self,
        user: &str,
        auth_user: &str,
        query: &str,
        auth_db: String,
    ) -> Result<Option<crate::auth::userlist::Secret>, Exit> {
        if auth_db == "pgbouncer" {
            tracing::error!(
                "C-{}: {} cannot use the reserved \"pgbouncer\" database as an auth_dbname",
                self.id.0,
                self.label()
            );
            return Err(Fatal::BouncerConfigError.into());
        }
        if self.rt.database(&auth_db).is_none() {
            tracing::error!(
                "C-{}: {} authentication database \"{auth_db}\" is not configured.",
                self.id.0,
                self.label()
            );
            return Err(Fatal::BouncerConfigError.into());
        }
        if self.shared.lock().pooler.is_disabled(&auth_db) {
            return Err(Fatal::AuthDatabaseDisabled(auth_db).into());
        }
        let shared = self.shared.clone();
        match shared
            .auth_conns
            .lookup(&shared, &auth_db, auth_user, query, user)
            .await
        {
            Ok(crate::auth_query::Lookup::Found(secret)) => {
                shared
                    .lock()
                    .dynamic_secrets
                    .insert(user.to_string(), secret.clone());
                Ok(Some(secret))
            }
            Ok(crate::auth_query::Lookup::NoSuchUser) => Err(Fatal::NoSuchUser.into()),
            Err(e) => {
                tracing::warn!("C-{}: auth_query failed: {e}", self.id.0);
                match e.refused {
                    // PostgreSQL refused the auth_user: its words reach the client.
                    Some(code) => Err(Fatal::Server {
                        code,
                        message: e.message,
                    }
                    .into()),
                    None => Err(Fatal::BouncerConfigError.into()),
                }
            }
        }
    }

    pub(super) fn parse_options(&mut self, options: &str) -> Result<(), Exit> {
        let ignore_all = self.rt.ignored.contains("options");
        for (k, v) in options_settings(options).ok_or(Fatal::UnsupportedOptions)? {
            match self.rt.tracked_name(&k) {
                Some(name) => {
                    self.vars_sig = None;
                    set_var(&mut self.vars, name, &v)
                }
                None if ignore_all || self.rt.ignored.contains(&k.to_lowercase()) => {}
                None => {
                    tracing::warn!(
                        "C-{}: {} unsupported startup parameter in options: {k}={v}",
                        self.id.0,
                        self.label()
                    );
                    return Err(Fatal::UnsupportedOptionsParameter(k).into());
                }
            }
        }
        Ok(())
    }

    pub(super) fn console_io(
        &mut self,
        deadline: Option<tokio::time::Instant>,
    ) -> crate::console::ConsoleIo<'_> {
        crate::console::ConsoleIo {
            shared: &self.shared,
            rt: &self.rt,
            stream: &mut self.client,
            buf: &mut self.cbuf,
            max: self.max,
            deadline,
        }
    }

    pub(super) async fn send_welcome(
        &mut self,
        welcome: &Arc<crate::shared::Welcome>,
        pid: i32,
        secret: i32,
    ) -> Result<(), Exit> {
        // PgBouncer compat (varcache_fill_unset): tracked parameters the client did not
        // set take the pool's original values, so a server another client changed is
        // put back before this client's queries run (see `sync_vars`).
        self.defaults = welcome.clone();
        self.vars_sig = None;
        self.welcomed = true;
        let server_params = &welcome.params;
        // AuthenticationOk, the statuses (the client's own settings, the three of
        // PgBouncer 1.26), BackendKeyData, a login notice and ReadyForQuery.
        let vars_len: usize = self
            .vars
            .iter()
            .map(|(n, v)| crate::shared::status_len(n, v))
            .sum();
        let notice = self.rt.cfg.login_notify_message.len();
        let mut out = BytesMut::with_capacity(welcome.params_len + vars_len + notice + 256);
        encode_auth_ok(&mut out);
        for (name, value) in server_params.iter() {
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
        // PgBouncer 1.26: what the pooler is and does, for drivers that adapt to it.
        let max_prepared = self.shared.max_prepared_statements().to_string();
        for (name, value) in [
            (
                "pgbouncer.version",
                pgbouncer_admin::PGBOUNCER_COMPAT_VERSION,
            ),
            ("pgbouncer.pool_mode", self.mode.as_str()),
            ("pgbouncer.max_prepared_statements", max_prepared.as_str()),
        ] {
            encode_parameter_status(&mut out, name, value);
        }
        encode_backend_key_data(&mut out, pid, secret);
        crate::console::login_notice(&mut out, &self.rt);
        encode_ready_for_query(&mut out, TransactionStatus::Idle);
        self.client
            .write_all(&out)
            .await
            .map_err(|_| Exit::Quiet(Quiet::ClientEof))
    }
}

/// The settings of a startup `options` value, as PgBouncer reads it: arguments separated
/// by whitespace, each `-c key=value`, `-ckey=value` or `--key=value`, a backslash
/// escaping the next character (`\ ` a space, `\\` a backslash), the key ending at the
/// first `=` after unescaping. `None` for any other argument or one without `=`.
fn options_settings(options: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut rest = options.trim_start();
    while !rest.is_empty() {
        rest = match rest.strip_prefix("-c") {
            Some(r) => r.trim_start(),
            None => rest.strip_prefix("--")?,
        };
        let mut token = String::new();
        let mut chars = rest.char_indices();
        let mut end = rest.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, escaped)) => token.push(escaped),
                    None => break,
                },
                c if c.is_whitespace() => {
                    end = i;
                    break;
                }
                c => token.push(c),
            }
        }
        rest = rest[end..].trim_start();
        let (k, v) = token.split_once('=')?;
        out.push((k.to_string(), v.to_string()));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::options_settings;

    fn kv(pairs: &[(&str, &str)]) -> Option<Vec<(String, String)>> {
        Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn options_take_pgbouncers_forms_and_escapes() {
        assert_eq!(options_settings("-c a=1"), kv(&[("a", "1")]));
        assert_eq!(
            options_settings("-ca=1 --b=2"),
            kv(&[("a", "1"), ("b", "2")])
        );
        assert_eq!(options_settings("-c   a=1"), kv(&[("a", "1")]));
        assert_eq!(
            options_settings(r"-c datestyle=German,\ YMD"),
            kv(&[("datestyle", "German, YMD")])
        );
        assert_eq!(
            options_settings(r"-c t\imezone=UTC"),
            kv(&[("timezone", "UTC")])
        );
        assert_eq!(options_settings(r"-c a=b\\c"), kv(&[("a", r"b\c")]));
        assert_eq!(options_settings(""), kv(&[]));
        assert_eq!(options_settings("-c timezone"), None);
        assert_eq!(options_settings("-x a=1"), None);
        assert_eq!(options_settings("a=1"), None);
    }
}
