//! A raw wire-protocol client for tests: exact bytes out, decoded messages in, so a test
//! can send what drivers send (pipelines, Flush, half messages, odd tags) and see exactly
//! what comes back.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use pgbouncer_protocol::auth::scram::{ScramClient, ScramCredentials};
use pgbouncer_protocol::{
    auth::md5, encode_password, encode_sasl_initial_response, encode_sasl_response, Authentication,
    BackendMessage, FrontendMessage, StartupMessage, DEFAULT_MAX_PACKET_SIZE,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long any single wait for the peer may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A logged-in raw connection (over TCP, or over TLS: any byte stream).
pub struct Wire<S = TcpStream> {
    pub stream: S,
    buf: BytesMut,
    /// BackendKeyData from the welcome.
    pub key: (i32, i32),
    /// ParameterStatus messages of the welcome, in order.
    pub params: Vec<(String, String)>,
}

impl Wire<TcpStream> {
    /// Connects to `addr` and logs in as `user` on `db` (trust, cleartext, md5 or
    /// SCRAM), with extra startup parameters. Reads the welcome up to ReadyForQuery.
    pub async fn connect(
        addr: std::net::SocketAddr,
        user: &str,
        password: &str,
        db: &str,
        extra: &[(&str, &str)],
    ) -> Wire {
        match Wire::try_connect(addr, user, password, db, extra).await {
            Ok(w) => w,
            Err(e) => panic!("login failed: {e:?}"),
        }
    }

    /// Like [`Wire::connect`], but a refused login is the (severity, code, message) of
    /// the error (or of the close, as `("", "", "closed")`). The password is sent as
    /// given, even when empty (libpq would refuse to send an empty one).
    pub async fn try_connect(
        addr: std::net::SocketAddr,
        user: &str,
        password: &str,
        db: &str,
        extra: &[(&str, &str)],
    ) -> Result<Wire, (String, String, String)> {
        let stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        Wire::login(stream, user, password, db, extra).await
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Wire<S> {
    /// Wraps an open stream without logging in (for tests of what comes before).
    pub fn from_stream(stream: S) -> Wire<S> {
        Wire {
            stream,
            buf: BytesMut::new(),
            key: (0, 0),
            params: Vec::new(),
        }
    }

    /// Logs in on an open `stream` (see [`Wire::try_connect`]).
    pub async fn login(
        stream: S,
        user: &str,
        password: &str,
        db: &str,
        extra: &[(&str, &str)],
    ) -> Result<Wire<S>, (String, String, String)> {
        let mut w = Wire {
            stream,
            buf: BytesMut::new(),
            key: (0, 0),
            params: Vec::new(),
        };
        let mut params = vec![
            ("user".to_string(), user.to_string()),
            ("database".to_string(), db.to_string()),
        ];
        params.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let mut out = BytesMut::new();
        StartupMessage::new(params).encode(&mut out);
        w.send(&out).await;
        let mut scram = None;
        loop {
            let Some(m) = w.try_recv().await else {
                return Err((String::new(), String::new(), "closed".into()));
            };
            let mut out = BytesMut::new();
            match m {
                BackendMessage::Authentication(Authentication::Ok) => {}
                BackendMessage::Authentication(Authentication::CleartextPassword) => {
                    encode_password(&mut out, password.as_bytes());
                }
                BackendMessage::Authentication(Authentication::Md5Password { salt }) => {
                    let resp = md5::client_response(password, user, salt);
                    encode_password(&mut out, resp.as_bytes());
                }
                BackendMessage::Authentication(Authentication::Sasl { .. }) => {
                    let creds = ScramCredentials::Password(password.as_bytes().to_vec());
                    let (client, first) = ScramClient::new(creds, b"wire-test-client-nonce");
                    encode_sasl_initial_response(&mut out, "SCRAM-SHA-256", &first);
                    scram = Some(client);
                }
                BackendMessage::Authentication(Authentication::SaslContinue(data)) => {
                    let client = scram.as_mut().expect("SASLContinue before SASL");
                    let last = client.handle_server_first(&data).expect("server-first");
                    encode_sasl_response(&mut out, &last);
                }
                BackendMessage::Authentication(Authentication::SaslFinal(data)) => {
                    let client = scram.as_ref().expect("SASLFinal before SASL");
                    client.verify_server_final(&data).expect("server signature");
                }
                BackendMessage::BackendKeyData {
                    process_id,
                    secret_key,
                } => w.key = (process_id, secret_key),
                BackendMessage::ParameterStatus { name, value } => w.params.push((name, value)),
                BackendMessage::ReadyForQuery { .. } => return Ok(w),
                m @ BackendMessage::ErrorResponse(_) => {
                    return Err(errors(&[m]).remove(0));
                }
                _ => {}
            }
            if !out.is_empty() {
                w.send(&out).await;
            }
        }
    }

    /// Writes all of `bytes`.
    pub async fn send(&mut self, bytes: &[u8]) {
        tokio::time::timeout(PATIENCE, self.stream.write_all(bytes))
            .await
            .expect("write timed out")
            .unwrap();
    }

    /// Writes the encoded messages as one write.
    pub async fn send_msgs(&mut self, msgs: &[FrontendMessage]) {
        let mut out = BytesMut::new();
        for m in msgs {
            m.encode(&mut out);
        }
        self.send(&out).await;
    }

    /// The next message, or `None` when the peer closed the connection.
    pub async fn try_recv(&mut self) -> Option<BackendMessage> {
        loop {
            if let Some(m) = BackendMessage::decode(&mut self.buf, DEFAULT_MAX_PACKET_SIZE).unwrap()
            {
                return Some(m);
            }
            self.buf.reserve(64 * 1024);
            let n = tokio::time::timeout(PATIENCE, self.stream.read_buf(&mut self.buf))
                .await
                .expect("no message from the peer in time")
                .unwrap_or(0);
            if n == 0 {
                return None;
            }
        }
    }

    /// The next message within `limit`: `Err` says whether the peer closed or was silent.
    pub async fn recv_within(&mut self, limit: Duration) -> Result<BackendMessage, String> {
        loop {
            match BackendMessage::decode(&mut self.buf, DEFAULT_MAX_PACKET_SIZE) {
                Ok(Some(m)) => return Ok(m),
                Ok(None) => {}
                Err(e) => return Err(format!("undecodable message: {e}")),
            }
            self.buf.reserve(64 * 1024);
            match tokio::time::timeout(limit, self.stream.read_buf(&mut self.buf)).await {
                Err(_) => return Err(format!("nothing more within {limit:?}")),
                Ok(Ok(0)) | Ok(Err(_)) => return Err("the peer closed the connection".into()),
                Ok(Ok(_)) => {}
            }
        }
    }

    /// The next message; the peer must not close.
    pub async fn recv(&mut self) -> BackendMessage {
        self.try_recv()
            .await
            .expect("the peer closed the connection")
    }

    /// Messages up to and including the next ReadyForQuery.
    pub async fn until_ready(&mut self) -> Vec<BackendMessage> {
        let mut out = Vec::new();
        loop {
            let m = self.recv().await;
            let done = matches!(m, BackendMessage::ReadyForQuery { .. });
            out.push(m);
            if done {
                return out;
            }
        }
    }

    /// Exactly `n` messages.
    pub async fn recv_n(&mut self, n: usize) -> Vec<BackendMessage> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.recv().await);
        }
        out
    }

    /// Everything until the peer closes (bounded by [`PATIENCE`] per read).
    pub async fn until_closed(&mut self) -> Vec<BackendMessage> {
        let mut out = Vec::new();
        while let Some(m) = self.try_recv().await {
            out.push(m);
        }
        out
    }

    /// Runs a simple query and returns its messages up to ReadyForQuery.
    pub async fn simple(&mut self, sql: &str) -> Vec<BackendMessage> {
        self.send_msgs(&[query(sql)]).await;
        self.until_ready().await
    }
}

/// The text values of every DataRow in `msgs`, row by row.
pub fn rows(msgs: &[BackendMessage]) -> Vec<Vec<Option<String>>> {
    msgs.iter()
        .filter_map(|m| match m {
            BackendMessage::DataRow { values } => Some(
                values
                    .iter()
                    .map(|v| v.as_ref().map(|b| String::from_utf8_lossy(b).into_owned()))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// The first column of the first row.
pub fn first_value(msgs: &[BackendMessage]) -> Option<String> {
    rows(msgs)
        .into_iter()
        .next()
        .and_then(|r| r.into_iter().next().flatten())
}

/// The (severity, code, message) of every ErrorResponse in `msgs`.
pub fn errors(msgs: &[BackendMessage]) -> Vec<(String, String, String)> {
    msgs.iter()
        .filter_map(|m| match m {
            BackendMessage::ErrorResponse(e) => Some((
                e.severity().unwrap_or_default().to_string(),
                e.code().unwrap_or_default().to_string(),
                e.message().unwrap_or_default().to_string(),
            )),
            _ => None,
        })
        .collect()
}

/// One letter per message (the tag), for compact assertions: `"12DCZ"`.
pub fn tags(msgs: &[BackendMessage]) -> String {
    msgs.iter().map(|m| m.tag() as char).collect()
}

pub fn query(sql: &str) -> FrontendMessage {
    FrontendMessage::Query {
        query: Bytes::copy_from_slice(sql.as_bytes()),
    }
}

pub fn parse(name: &str, sql: &str) -> FrontendMessage {
    FrontendMessage::Parse {
        name: Bytes::copy_from_slice(name.as_bytes()),
        query: Bytes::copy_from_slice(sql.as_bytes()),
        param_types: Vec::new(),
    }
}

/// Bind of `statement` to the unnamed portal with text parameters.
pub fn bind(statement: &str, params: &[Option<&[u8]>]) -> FrontendMessage {
    FrontendMessage::Bind {
        portal: Bytes::new(),
        statement: Bytes::copy_from_slice(statement.as_bytes()),
        param_formats: Vec::new(),
        params: params
            .iter()
            .map(|p| p.map(Bytes::copy_from_slice))
            .collect(),
        result_formats: Vec::new(),
    }
}

pub fn execute() -> FrontendMessage {
    FrontendMessage::Execute {
        portal: Bytes::new(),
        max_rows: 0,
    }
}

pub fn describe_statement(name: &str) -> FrontendMessage {
    FrontendMessage::Describe {
        kind: b'S',
        name: Bytes::copy_from_slice(name.as_bytes()),
    }
}

pub fn close_statement(name: &str) -> FrontendMessage {
    FrontendMessage::Close {
        kind: b'S',
        name: Bytes::copy_from_slice(name.as_bytes()),
    }
}

pub fn sync() -> FrontendMessage {
    FrontendMessage::Sync
}

pub fn flush() -> FrontendMessage {
    FrontendMessage::Flush
}

/// Encodes messages into one buffer.
pub fn encode(msgs: &[FrontendMessage]) -> BytesMut {
    let mut out = BytesMut::new();
    for m in msgs {
        m.encode(&mut out);
    }
    out
}
