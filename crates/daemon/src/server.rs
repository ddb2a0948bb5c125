//! Server connections: connect to PostgreSQL, log in (cleartext, md5, SCRAM-SHA-256,
//! including SCRAM pass-through with a client's keys), collect the welcome, and run
//! the small internal queries (reset, check, SET) whose results are swallowed
//! (mirrors server.c login handling and `send_server_startup`).

use std::time::Duration;

use bytes::{Buf, BytesMut};
use pgbouncer_pool_core::ServerId;
use pgbouncer_protocol::auth::md5;
use pgbouncer_protocol::auth::scram::{ScramClient, ScramCredentials};
use pgbouncer_protocol::{
    encode_password, encode_query, encode_sasl_initial_response, encode_sasl_response,
    Authentication, BackendMessage, StartupMessage, TransactionStatus,
};
use tokio::net::{TcpStream, UnixStream};

use crate::stream::Stream;

/// How to log in to the server.
#[derive(Debug, Clone)]
pub enum ServerCredential {
    /// No secret known (trust on the server, or it will fail).
    None,
    /// Plain password: works for every method.
    Plain(String),
    /// `md5...` hash: works for md5 only.
    Md5(String),
    /// SCRAM keys taken from a client's SCRAM login, with the secret's salt and
    /// iterations (SCRAM pass-through).
    ScramKeys {
        /// ClientKey.
        client_key: [u8; 32],
        /// ServerKey.
        server_key: [u8; 32],
        /// Salt of the secret the keys belong to.
        salt: Vec<u8>,
        /// Iterations of that secret.
        iterations: u32,
    },
    /// A SCRAM secret without keys: cannot log in until a client authenticates.
    ScramSecretOnly,
}

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct ServerTarget {
    /// Host name, IP, or a directory for a Unix socket.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Server database.
    pub dbname: String,
    /// Server user.
    pub user: String,
    /// Secret.
    pub credential: ServerCredential,
    /// Extra startup parameters (client_encoding, datestyle, timezone, application_name).
    pub startup_params: Vec<(String, String)>,
    /// Query run once after login.
    pub connect_query: Option<String>,
    /// max_packet_size.
    pub max_packet_size: u32,
    /// TLS towards servers (server_tls_*), as loaded when the connect started.
    pub tls: std::sync::Arc<crate::tls::TlsSetup>,
    /// `db/user` of the pool, for log lines (PgBouncer's `S-<id>: db/user@ip:port`).
    pub pool_label: String,
    /// Which of the database's hosts this is, of how many (`None`: a Unix socket).
    pub host_index: Option<(usize, usize)>,
    /// log_connections / log_disconnections.
    pub log_connections: bool,
    /// log_disconnections.
    pub log_disconnections: bool,
}

/// Why a server login failed: carried to waiting clients.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct LoginError {
    /// SQLSTATE.
    pub code: String,
    /// Message text.
    pub message: String,
    /// The server's severity (`FATAL`) when the server refused the login.
    pub severity: Option<String>,
    /// The server was not reached (connect, TLS, the connection dropped): waiting
    /// clients keep waiting for the next attempt, as in PgBouncer; other failures are
    /// told to them.
    pub unreachable: bool,
}

impl LoginError {
    fn ours(message: impl Into<String>) -> Self {
        LoginError {
            code: "08P01".into(),
            message: message.into(),
            severity: None,
            unreachable: false,
        }
    }

    fn unreachable(message: impl Into<String>) -> Self {
        LoginError {
            unreachable: true,
            ..LoginError::ours(message)
        }
    }
}

/// A logged-in server connection.
#[derive(Debug)]
pub struct ServerConn {
    /// Its id in pool-core.
    pub id: ServerId,
    /// The socket.
    pub stream: Stream,
    /// The server's current ParameterStatus values.
    pub params: Vec<(String, String)>,
    /// BackendKeyData (for cancels).
    pub backend_key: (i32, i32),
    /// Address, for cancels.
    pub host: String,
    /// Port, for cancels.
    pub port: u16,
    /// Read buffer kept between uses (normally empty).
    pub buf: BytesMut,
    /// The named statements this server has prepared (an LRU the link tracker keeps).
    pub statements: pgbouncer_protocol::link::ServerStatements,
    /// `db/user@ip:port`, PgBouncer's name for this connection in log lines.
    pub label: String,
    /// When the socket was opened (the `age=` of the close line).
    pub opened: std::time::Instant,
    /// log_disconnections (as loaded when it was opened).
    pub log_disconnections: bool,
    /// The worker whose reactor the socket is registered with ([`crate::workers`]).
    pub home: usize,
    /// The cache of [`ServerConn::values_of`]: the names asked for, and the answer.
    values_sig: Option<Box<(String, String)>>,
}

impl ServerConn {
    /// Registers the socket with this worker's reactor if another worker's holds it
    /// (thread-per-core: a server moves to the worker of the client it serves, so its
    /// readiness never wakes another thread).
    pub fn bring_home(&mut self) -> std::io::Result<()> {
        let here = crate::workers::current();
        if self.home != here {
            self.stream.rehome()?;
            self.home = here;
        }
        Ok(())
    }

    /// The value of a server parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        // Names are nearly always spelled as the server reports them: an exact match
        // first, before the case-insensitive one (this runs at every link).
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .or_else(|| {
                self.params
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(name))
            })
            .map(|(_, v)| v.as_str())
    }

    /// Records a ParameterStatus.
    pub fn set_param(&mut self, name: &str, value: &str) {
        match self
            .params
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some(p) if p.1 == value => {}
            Some(p) => {
                p.1 = value.to_string();
                self.values_sig = None;
            }
            None => {
                self.params.push((name.to_string(), value.to_string()));
                self.values_sig = None;
            }
        }
    }

    /// This server's values of `names` (`name\0` each) as `name=value\0` each (a name
    /// it has no value for as `name\x01`), cached until a value changes or other
    /// names are asked for: what a session compares its own values with at each link.
    pub fn values_of(&mut self, names: &str) -> &str {
        let fresh = self.values_sig.as_ref().is_some_and(|c| c.0 == names);
        if !fresh {
            let mut values = String::with_capacity(names.len() * 2);
            for name in names.split('\0').filter(|n| !n.is_empty()) {
                values.push_str(name);
                match self.param(name) {
                    Some(v) => {
                        values.push('=');
                        values.push_str(v);
                        values.push('\0');
                    }
                    None => values.push('\x01'),
                }
            }
            self.values_sig = Some(Box::new((names.to_string(), values)));
        }
        self.values_sig.as_ref().map_or("", |c| c.1.as_str())
    }

    /// Runs `sql` and swallows its results; errors in the results are reported as
    /// `Err(message)`. ParameterStatus messages update `params`.
    pub async fn run_internal(&mut self, sql: &str) -> Result<(), String> {
        let upper = sql.to_ascii_uppercase();
        if upper.contains("DISCARD") || upper.contains("DEALLOCATE") {
            self.statements.clear();
        }
        let mut out = BytesMut::new();
        encode_query(&mut out, sql);
        self.stream
            .write_all(&out)
            .await
            .map_err(|e| e.to_string())?;
        let mut failure = None;
        loop {
            let msg = self.read_message().await.map_err(|e| e.message)?;
            match msg {
                BackendMessage::ErrorResponse(e) => {
                    failure = Some(e.message().unwrap_or("error").to_string());
                }
                BackendMessage::ParameterStatus { name, value } => self.set_param(&name, &value),
                BackendMessage::ReadyForQuery { status } => {
                    if status != TransactionStatus::Idle && failure.is_none() {
                        failure = Some("server left in a transaction".into());
                    }
                    return failure.map_or(Ok(()), Err);
                }
                _ => {}
            }
        }
    }

    /// Reads one whole message.
    pub(crate) async fn read_message(&mut self) -> Result<BackendMessage, LoginError> {
        loop {
            match BackendMessage::decode(&mut self.buf, pgbouncer_protocol::DEFAULT_MAX_PACKET_SIZE)
            {
                Ok(Some(m)) => return Ok(m),
                Ok(None) => {}
                Err(e) => return Err(LoginError::ours(format!("bad server packet: {e}"))),
            }
            self.buf.reserve(4096);
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) => {
                    return Err(LoginError::unreachable(
                        "server closed the connection unexpectedly",
                    ))
                }
                Ok(_) => {}
                Err(e) => return Err(LoginError::unreachable(format!("server read failed: {e}"))),
            }
        }
    }

    /// Sends Terminate and drops the connection, without waiting.
    pub fn terminate(self) {
        let _ = self.stream.try_write(pgbouncer_protocol::TERMINATE_MESSAGE);
    }

    /// Closes the connection, logging why as PgBouncer does:
    /// `S-<id>: db/user@ip:port closing because: <reason> (age=<N>s)`.
    pub fn close(self, reason: &str) {
        if self.log_disconnections {
            tracing::info!(
                "S-{}: {} closing because: {reason} (age={}s)",
                self.id.0,
                self.label,
                self.opened.elapsed().as_secs()
            );
        }
        self.terminate();
    }
}

/// Connects and logs in to the server.
pub async fn connect(
    id: ServerId,
    t: &ServerTarget,
    timeout: Duration,
    nonce: [u8; 18],
) -> Result<ServerConn, LoginError> {
    let fut = connect_inner(id, t, nonce);
    if timeout.is_zero() {
        return fut.await;
    }
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => {
            if t.log_disconnections {
                tracing::info!(
                    "S-{}: {}@{} closing because: connect timeout (age={}s)",
                    id.0,
                    t.pool_label,
                    address(&t.host, t.port),
                    timeout.as_secs()
                );
            }
            Err(LoginError::unreachable("server connect timeout"))
        }
    }
}

/// Opens the socket only.
pub async fn open_socket(host: &str, port: u16) -> std::io::Result<Stream> {
    if host.starts_with('/') {
        let path = format!("{host}/.s.PGSQL.{port}");
        Ok(Stream::Unix(UnixStream::connect(path).await?))
    } else {
        let s = TcpStream::connect((host, port)).await?;
        let _ = s.set_nodelay(true);
        Ok(Stream::Tcp(s))
    }
}

/// Negotiates TLS on a new server socket as `server_tls_sslmode` says: an SSLRequest
/// (or, with `server_tls_sslnegotiation = direct`, the handshake at once), then the
/// handshake with the certificate checks of the mode. A server that refuses TLS is used
/// in clear text only below `require`; a failed handshake is never retried in clear.
/// Unix sockets never use TLS.
pub async fn secure(
    stream: Stream,
    host: &str,
    side: &crate::tls::ServerSide,
) -> Result<Stream, LoginError> {
    use crate::tls::SslMode;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut tcp, config) = match (stream, &side.config) {
        (Stream::Tcp(tcp), Some(config)) if side.mode != SslMode::Disable => (tcp, config.clone()),
        (other, _) => return Ok(other),
    };
    if !side.direct {
        let mut out = BytesMut::new();
        pgbouncer_protocol::StartupPacket::SslRequest.encode(&mut out);
        tcp.write_all(&out)
            .await
            .map_err(|e| LoginError::unreachable(format!("server write failed: {e}")))?;
        // Room for two bytes: a second one before the handshake was not encrypted.
        let mut answer = [0u8; 2];
        let n = tcp
            .read(&mut answer)
            .await
            .map_err(|e| LoginError::unreachable(format!("server read failed: {e}")))?;
        if n == 0 {
            return Err(LoginError::unreachable(
                "server closed the connection at SSLRequest",
            ));
        }
        if n > 1 {
            return Err(LoginError::ours(
                "received unencrypted data after SSL response",
            ));
        }
        match pgbouncer_protocol::SslAnswer::parse(answer[0]) {
            pgbouncer_protocol::SslAnswer::Accepted => {}
            pgbouncer_protocol::SslAnswer::Refused if side.mode < SslMode::Require => {
                return Ok(Stream::Tcp(tcp));
            }
            pgbouncer_protocol::SslAnswer::Refused => {
                return Err(LoginError::unreachable("server refused SSL"));
            }
            pgbouncer_protocol::SslAnswer::Other(_) => {
                return Err(LoginError::ours("bad sslreq answer"));
            }
        }
    }
    // Only now, when the server wants TLS: a setting that leaves no usable TLS version
    // still lets `prefer` reach a server without TLS, as PgBouncer would.
    if let Some(why) = &side.unusable {
        return Err(LoginError::unreachable(format!(
            "TLS handshake error: {why}"
        )));
    }
    let name = crate::tls::server_name(host).map_err(|e| LoginError::ours(e.to_string()))?;
    match crate::tls::TlsStream::connect(tcp, config, name).await {
        Ok(tls) => Ok(Stream::Tls(Box::new(tls))),
        Err(e) => Err(LoginError::unreachable(handshake_error(&e))),
    }
}

/// The text of a failed server handshake, with OpenSSL's words for a certificate that
/// did not verify (operators and PgBouncer's tests grep `certificate verify failed`).
fn handshake_error(e: &std::io::Error) -> String {
    let certificate = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|r| matches!(r, rustls::Error::InvalidCertificate(_)));
    if certificate {
        format!("TLS handshake error: certificate verify failed: {e}")
    } else {
        format!("TLS handshake error: {e}")
    }
}

async fn connect_inner(
    id: ServerId,
    t: &ServerTarget,
    nonce: [u8; 18],
) -> Result<ServerConn, LoginError> {
    let opened = std::time::Instant::now();
    let stream = match open_socket(&t.host, t.port).await {
        Ok(s) => s,
        Err(e) => {
            let reason = connect_failure(&e);
            if t.log_disconnections {
                tracing::info!(
                    "S-{}: {}@{} closing because: {reason} (age=0s)",
                    id.0,
                    t.pool_label,
                    address(&t.host, t.port)
                );
            }
            return Err(LoginError::unreachable(format!(
                "could not connect to server {}:{}: {e}",
                t.host, t.port
            )));
        }
    };
    let (ip, port) = stream.peer();
    let label = if ip == "unix" {
        format!("{}@unix:{}", t.pool_label, t.port)
    } else {
        format!("{}@{}", t.pool_label, address(&ip, port))
    };
    if t.log_connections {
        match stream.local() {
            (local, _) if local == "unix" => {
                tracing::info!("S-{}: {label} new connection to server", id.0)
            }
            (local, local_port) => tracing::info!(
                "S-{}: {label} new connection to server (from {})",
                id.0,
                address(&local, local_port)
            ),
        }
    }
    let closing = |reason: &str| {
        if t.log_disconnections {
            tracing::info!(
                "S-{}: {label} closing because: {reason} (age={}s)",
                id.0,
                opened.elapsed().as_secs()
            );
        }
    };
    let stream = match secure(stream, &t.host, &t.tls.server).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("S-{}: {label} {}", id.0, e.message);
            closing(&e.message);
            return Err(e);
        }
    };
    let mut conn = ServerConn {
        id,
        stream,
        params: Vec::new(),
        backend_key: (0, 0),
        host: t.host.clone(),
        port: t.port,
        buf: BytesMut::with_capacity(4096),
        statements: Default::default(),
        label: label.clone(),
        opened,
        log_disconnections: t.log_disconnections,
        home: crate::workers::current(),
        values_sig: None,
    };
    match login(&mut conn, t, nonce).await {
        Ok(()) => Ok(conn),
        Err(e) => {
            match &e.severity {
                Some(sev) => tracing::warn!(
                    "S-{}: {label} server login failed: {sev} {}",
                    id.0,
                    e.message
                ),
                None => tracing::warn!("S-{}: {label} server login failed: {}", id.0, e.message),
            }
            // A replication login's refusal is `login failed` (PgBouncer's reason); the
            // server's words are in the line above.
            let replication = t.startup_params.iter().any(|(k, _)| k == "replication");
            if replication && e.severity.is_some() {
                closing("login failed");
            } else {
                closing(&e.message);
            }
            Err(e)
        }
    }
}

/// `ip:port`, with IPv6 addresses in brackets, as PgBouncer prints them.
pub fn address(ip: &str, port: u16) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

/// PgBouncer's reason for a server connection that never opened.
fn connect_failure(e: &std::io::Error) -> &'static str {
    // getaddrinfo failures surface as "failed to lookup address information".
    if e.to_string().contains("lookup address") || e.kind() == std::io::ErrorKind::NotFound {
        "server DNS lookup failed"
    } else {
        "connect failed"
    }
}

/// The startup packet, authentication and the welcome, on an open connection.
async fn login(conn: &mut ServerConn, t: &ServerTarget, nonce: [u8; 18]) -> Result<(), LoginError> {
    let mut params = vec![
        ("user".to_string(), t.user.clone()),
        ("database".to_string(), t.dbname.clone()),
    ];
    params.extend(t.startup_params.iter().cloned());
    let mut out = BytesMut::new();
    StartupMessage::new(params).encode(&mut out);
    write(conn, &out).await?;
    let mut scram: Option<ScramClient> = None;
    loop {
        match conn.read_message().await? {
            BackendMessage::Authentication(a) => {
                out.clear();
                login_step(conn, t, a, &mut scram, &nonce, &mut out)?;
                if !out.is_empty() {
                    write(conn, &out).await?;
                }
            }
            BackendMessage::ParameterStatus { name, value } => conn.set_param(&name, &value),
            BackendMessage::BackendKeyData {
                process_id,
                secret_key,
            } => conn.backend_key = (process_id, secret_key),
            BackendMessage::ErrorResponse(e) => {
                return Err(LoginError {
                    code: e.code().unwrap_or("08P01").to_string(),
                    message: e.message().unwrap_or("server login failed").to_string(),
                    severity: e.severity().map(str::to_string),
                    unreachable: false,
                });
            }
            BackendMessage::NoticeResponse(_) | BackendMessage::NegotiateProtocolVersion { .. } => {
            }
            BackendMessage::ReadyForQuery { .. } => break,
            other => {
                return Err(LoginError::ours(format!(
                    "unexpected message during server login: {}",
                    other.tag() as char
                )))
            }
        }
    }
    if let Some(q) = &t.connect_query {
        if let Err(e) = conn.run_internal(q).await {
            tracing::warn!("S-{}: {} connect_query failed: {e}", conn.id.0, conn.label);
        }
    }
    conn.buf.advance(0);
    Ok(())
}

async fn write(conn: &mut ServerConn, out: &[u8]) -> Result<(), LoginError> {
    conn.stream
        .write_all(out)
        .await
        .map_err(|e| LoginError::unreachable(format!("server write failed: {e}")))
}

fn login_step(
    conn: &mut ServerConn,
    t: &ServerTarget,
    a: Authentication,
    scram: &mut Option<ScramClient>,
    nonce: &[u8; 18],
    out: &mut BytesMut,
) -> Result<(), LoginError> {
    let wrong = || LoginError::ours("server login failed: wrong password type");
    match a {
        Authentication::Ok => {}
        Authentication::CleartextPassword => match &t.credential {
            ServerCredential::Plain(p) => encode_password(out, p.as_bytes()),
            _ => return Err(wrong()),
        },
        Authentication::Md5Password { salt } => {
            let secret = match &t.credential {
                ServerCredential::Plain(p) => p.as_str(),
                ServerCredential::Md5(h) => h.as_str(),
                _ => return Err(wrong()),
            };
            let resp = md5::client_response(secret, &t.user, salt);
            encode_password(out, resp.as_bytes());
        }
        Authentication::Sasl { mechanisms } => {
            if !mechanisms.iter().any(|m| m == "SCRAM-SHA-256") {
                return Err(LoginError::ours(
                    "server login failed: none of the server's SASL authentication mechanisms are supported",
                ));
            }
            let creds = match &t.credential {
                ServerCredential::Plain(p) => ScramCredentials::Password(p.as_bytes().to_vec()),
                ServerCredential::ScramKeys {
                    client_key,
                    server_key,
                    ..
                } => ScramCredentials::Keys {
                    client_key: *client_key,
                    server_key: *server_key,
                },
                _ => return Err(wrong()),
            };
            let (client, first) = ScramClient::new(creds, nonce);
            *scram = Some(client);
            encode_sasl_initial_response(out, "SCRAM-SHA-256", &first);
        }
        Authentication::SaslContinue(data) => {
            let client = scram
                .as_mut()
                .ok_or_else(|| LoginError::ours("unexpected SASL continue"))?;
            let reply = client
                .handle_server_first(&data)
                .map_err(|e| LoginError::ours(format!("server login failed: {e}")))?;
            if let ServerCredential::ScramKeys {
                salt, iterations, ..
            } = &t.credential
            {
                if client
                    .server_params()
                    .is_some_and(|(s, i)| s != salt.as_slice() || i != *iterations)
                {
                    return Err(LoginError::ours(
                        "server login failed: SCRAM secret of the pooler differs from the server's",
                    ));
                }
            }
            encode_sasl_response(out, &reply);
        }
        Authentication::SaslFinal(data) => {
            let client = scram
                .as_ref()
                .ok_or_else(|| LoginError::ours("unexpected SASL final"))?;
            client.verify_server_final(&data).map_err(|_| {
                LoginError::ours("server login failed: failed to verify server signature")
            })?;
        }
        _ => {
            return Err(LoginError::ours(
                "server login failed: unsupported authentication method",
            ))
        }
    }
    let _ = conn;
    Ok(())
}
