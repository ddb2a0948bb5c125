//! Client authentication, as PgBouncer does it against `auth_file` secrets
//! (mirrors client.c `send_client_authreq` / `check_client_passwd` and scram.c).

pub mod hba;
pub mod ident;
pub mod userlist;

use bytes::BytesMut;
use pgbouncer_protocol::auth::scram::{ScramSecret, ScramServer};
use pgbouncer_protocol::auth::{constant_time_eq, md5};
use pgbouncer_protocol::{
    encode_auth_cleartext, encode_auth_md5, encode_auth_sasl, encode_auth_sasl_continue,
    encode_auth_sasl_final, password_from_body, FrontendMessage, SaslInitialResponse,
};

use crate::config::AuthType;
use crate::runtime::Runtime;
use crate::shared::ScramKeys;
use crate::stream::Stream;
use userlist::Secret;

/// Why a login was refused: the FATAL message PgBouncer sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthFailure(pub String);

/// The client side of a login: its socket and read buffer.
pub struct LoginIo<'a> {
    /// The client socket.
    pub stream: &'a mut Stream,
    /// Bytes read but not consumed.
    pub buf: &'a mut BytesMut,
    /// max_packet_size.
    pub max: u32,
}

impl LoginIo<'_> {
    async fn send(&mut self, out: &BytesMut) -> Result<(), AuthFailure> {
        self.stream
            .write_all(out)
            .await
            .map_err(|_| AuthFailure("client unexpected eof".into()))
    }

    /// Reads the next PasswordMessage-family body.
    async fn password_body(&mut self) -> Result<bytes::Bytes, AuthFailure> {
        loop {
            match FrontendMessage::decode(self.buf, self.max) {
                Ok(Some(FrontendMessage::PasswordMessage(b))) => return Ok(b),
                Ok(Some(FrontendMessage::Terminate)) => {
                    return Err(AuthFailure("client close request".into()))
                }
                Ok(Some(_)) => return Err(AuthFailure("unknown pkt".into())),
                Ok(None) => {}
                Err(e) => return Err(AuthFailure(e.pgbouncer_message())),
            }
            self.buf.reserve(1024);
            match self.stream.read_buf(self.buf).await {
                Ok(0) | Err(_) => return Err(AuthFailure("client unexpected eof".into())),
                Ok(_) => {}
            }
        }
    }
}

/// What a successful login yields.
#[derive(Debug, Default)]
pub struct AuthSuccess {
    /// SCRAM keys for pass-through, when the client proved a SCRAM secret.
    pub scram_keys: Option<ScramKeys>,
}

/// Facts about the connection that auth methods look at.
#[derive(Debug, Clone, Default)]
pub struct ConnFacts {
    /// Connected over the Unix socket.
    pub unix: bool,
    /// Client address (TCP).
    pub addr: Option<std::net::IpAddr>,
    /// Peer uid (Unix socket), for `peer`.
    pub peer_uid: Option<u32>,
    /// The connection is TLS (`hostssl` / `hostnossl`).
    pub tls: bool,
    /// The common name of the client's certificate, when it sent one that verified
    /// against `client_tls_ca_file` (for `cert`).
    pub cert_name: Option<String>,
    /// The database asked for.
    pub database: String,
    /// A replication connection.
    pub replication: bool,
}

/// Runs the authentication exchange for `user`.
pub async fn authenticate(
    io: &mut LoginIo<'_>,
    rt: &Runtime,
    user: &str,
    secret: Option<Secret>,
    facts: &ConnFacts,
    plain_scram: &(dyn Fn(&str, &str) -> ScramSecret + Sync),
) -> Result<AuthSuccess, AuthFailure> {
    if rt.auth_type == AuthType::Hba {
        return Box::pin(hba_auth(io, rt, user, facts, secret, plain_scram)).await;
    }
    match rt.auth_type {
        AuthType::Any => Ok(AuthSuccess::default()),
        AuthType::Trust => trust(secret.as_ref()),
        AuthType::Plain => plain(io, user, usable(user, secret).as_ref(), plain_scram).await,
        AuthType::Md5 | AuthType::Hba => match usable(user, secret) {
            Some(Secret::Scram(s)) => {
                Box::pin(scram(io, rt, user, ScramSecret::parse(&s), true)).await
            }
            other => md5_exchange(io, user, other.as_ref()).await,
        },
        AuthType::ScramSha256 => {
            Box::pin(scram_any(io, rt, user, usable(user, secret), plain_scram)).await
        }
        AuthType::Cert => cert(rt, user, facts, None),
        AuthType::Pam | AuthType::Ldap => {
            Err(AuthFailure("no authentication method is found".into()))
        }
    }
}

/// `cert` (auth_type or hba): a verified client certificate whose common name is the
/// user name, or maps to it through the `auth_ident_file` map `map`.
fn cert(
    rt: &Runtime,
    user: &str,
    facts: &ConnFacts,
    map: Option<&str>,
) -> Result<AuthSuccess, AuthFailure> {
    let fail = || AuthFailure("certificate authentication failed".into());
    let name = facts.cert_name.as_deref().ok_or_else(fail)?;
    let ok = match map {
        Some(map) => rt.ident.as_ref().is_some_and(|m| m.allows(map, name, user)),
        None => name == user,
    };
    if ok {
        Ok(AuthSuccess::default())
    } else {
        Err(fail())
    }
}

/// `auth_type = hba`: the first matching `auth_hba_file` rule picks the method.
async fn hba_auth(
    io: &mut LoginIo<'_>,
    rt: &Runtime,
    user: &str,
    facts: &ConnFacts,
    secret: Option<Secret>,
    plain_scram: &(dyn Fn(&str, &str) -> ScramSecret + Sync),
) -> Result<AuthSuccess, AuthFailure> {
    use hba::{HbaConn, HbaMethod};
    let conn = HbaConn {
        unix: facts.unix,
        tls: facts.tls,
        addr: facts.addr,
        database: &facts.database,
        user,
        replication: facts.replication,
    };
    let Some(rule) = rt.hba.as_ref().and_then(|h| h.find(&conn)) else {
        return Err(AuthFailure("no authentication method is found".into()));
    };
    match rule.method {
        HbaMethod::Trust => trust(secret.as_ref()),
        HbaMethod::Reject => Err(AuthFailure("login rejected".into())),
        HbaMethod::Password => plain(io, user, usable(user, secret).as_ref(), plain_scram).await,
        HbaMethod::Md5 => match usable(user, secret) {
            Some(Secret::Scram(s)) => scram(io, rt, user, ScramSecret::parse(&s), true).await,
            other => md5_exchange(io, user, other.as_ref()).await,
        },
        HbaMethod::ScramSha256 => scram_any(io, rt, user, usable(user, secret), plain_scram).await,
        HbaMethod::Peer => {
            let fail = || AuthFailure("unix socket login rejected".into());
            // PgBouncer compat: peer, like trust, admits only users it knows.
            if secret.is_none() {
                return Err(fail());
            }
            let system_user = facts.peer_uid.and_then(user_name_of_uid).ok_or_else(fail)?;
            let ok = match &rule.map {
                Some(map) => rt
                    .ident
                    .as_ref()
                    .is_some_and(|m| m.allows(map, &system_user, user)),
                None => system_user == user,
            };
            if ok {
                Ok(AuthSuccess::default())
            } else {
                Err(fail())
            }
        }
        HbaMethod::Cert => cert(rt, user, facts, rule.map.as_deref()),
        _ => Err(AuthFailure("LDAP authentication failed".into())),
    }
}

/// `trust` (and hba `trust`): no password, but only for users in `auth_file` (or found
/// by `auth_query`), as PgBouncer.
fn trust(secret: Option<&Secret>) -> Result<AuthSuccess, AuthFailure> {
    match secret {
        Some(_) => Ok(AuthSuccess::default()),
        None => Err(AuthFailure("\"trust\" authentication failed".into())),
    }
}

/// The secret a password method may check against: an empty password (or the md5 hash
/// of one) never is. PgBouncer refuses empty secrets only in its md5 and plain paths; we
/// refuse them in every method, SCRAM and the console included (see docs/security.md).
/// Such a user then runs the same exchange as an unknown one and fails at its end.
fn usable(user: &str, secret: Option<Secret>) -> Option<Secret> {
    match secret? {
        Secret::Plain(p) if p.is_empty() => None,
        Secret::Md5(h) if md5::is_hash_of(&h, user, b"") => None,
        other => Some(other),
    }
}

/// The SCRAM exchange for whatever secret the user has (a plain-text one is turned into
/// a verifier once and cached).
async fn scram_any(
    io: &mut LoginIo<'_>,
    rt: &Runtime,
    user: &str,
    secret: Option<Secret>,
    plain_scram: &(dyn Fn(&str, &str) -> ScramSecret + Sync),
) -> Result<AuthSuccess, AuthFailure> {
    match secret {
        Some(Secret::Scram(s)) => scram(io, rt, user, ScramSecret::parse(&s), true).await,
        Some(Secret::Plain(p)) => scram(io, rt, user, Some(plain_scram(user, &p)), false).await,
        _ => scram(io, rt, user, None, false).await,
    }
}

/// The login name of `uid` from /etc/passwd.
fn user_name_of_uid(uid: u32) -> Option<String> {
    let text = std::fs::read_to_string("/etc/passwd").ok()?;
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        let _pw = f.next()?;
        (f.next()?.parse::<u32>().ok()? == uid).then(|| name.to_string())
    })
}

async fn plain(
    io: &mut LoginIo<'_>,
    user: &str,
    secret: Option<&Secret>,
    plain_scram: &(dyn Fn(&str, &str) -> ScramSecret + Sync),
) -> Result<AuthSuccess, AuthFailure> {
    let mut out = BytesMut::with_capacity(64);
    encode_auth_cleartext(&mut out);
    io.send(&out).await?;
    let body = io.password_body().await?;
    let given = password_from_body(&body).map_err(|e| AuthFailure(e.pgbouncer_message()))?;
    if given.is_empty() {
        return Err(AuthFailure("empty password returned by client".into()));
    }
    let ok = match secret {
        Some(Secret::Plain(p)) => constant_time_eq(p.as_bytes(), given),
        Some(Secret::Md5(h)) => md5::is_hash_of(h, user, given),
        Some(Secret::Scram(s)) => ScramSecret::parse(s).is_some_and(|stored| {
            let mine = ScramSecret::from_password(given, &stored.salt, stored.iterations);
            constant_time_eq(&mine.stored_key, &stored.stored_key)
        }),
        None => false,
    };
    let _ = plain_scram;
    if ok {
        Ok(AuthSuccess::default())
    } else {
        Err(AuthFailure("password authentication failed".into()))
    }
}

async fn md5_exchange(
    io: &mut LoginIo<'_>,
    user: &str,
    secret: Option<&Secret>,
) -> Result<AuthSuccess, AuthFailure> {
    let salt: [u8; 4] = rand::random();
    let mut out = BytesMut::with_capacity(64);
    encode_auth_md5(&mut out, salt);
    io.send(&out).await?;
    let body = io.password_body().await?;
    let given = password_from_body(&body).map_err(|e| AuthFailure(e.pgbouncer_message()))?;
    let ok = match secret {
        Some(Secret::Plain(p)) => md5::verify(p, user, salt, given),
        Some(Secret::Md5(h)) => md5::verify(h, user, salt, given),
        _ => false, // unknown user: the exchange ran for nothing, as PgBouncer's mock auth
    };
    if ok {
        Ok(AuthSuccess::default())
    } else {
        Err(AuthFailure("password authentication failed".into()))
    }
}

/// A random key, drawn once per process, from which unknown users' mock SCRAM salts
/// are derived.
fn mock_key() -> &'static [u8; 32] {
    static KEY: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
    KEY.get_or_init(rand::random)
}

async fn scram(
    io: &mut LoginIo<'_>,
    rt: &Runtime,
    user: &str,
    secret: Option<ScramSecret>,
    pass_through: bool,
) -> Result<AuthSuccess, AuthFailure> {
    let fail = || AuthFailure("SASL authentication failed".into());
    // Unknown users still run the exchange, against a mock secret with a salt that is
    // the same every time (and no PBKDF2), and fail at its end like a wrong password.
    let known = secret.is_some();
    let secret = secret.unwrap_or_else(|| {
        let iterations = u32::try_from(rt.cfg.scram_iterations)
            .ok()
            .filter(|&i| i > 0)
            .unwrap_or(4096);
        ScramSecret::mock(mock_key(), user, iterations)
    });
    // Over TLS, SCRAM-SHA-256-PLUS (channel binding to our certificate) is offered
    // first, as PostgreSQL does; libpq then binds unless told not to.
    let binding: Option<Vec<u8>> = io.stream.channel_binding().map(<[u8]>::to_vec);
    let mut out = BytesMut::with_capacity(64);
    if binding.is_some() {
        encode_auth_sasl(&mut out, &["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]);
    } else {
        encode_auth_sasl(&mut out, &["SCRAM-SHA-256"]);
    }
    io.send(&out).await?;
    let body = io.password_body().await?;
    let init = SaslInitialResponse::parse(&body).map_err(|_| fail())?;
    let plus = match init.mechanism.as_str() {
        "SCRAM-SHA-256" => false,
        "SCRAM-SHA-256-PLUS" if binding.is_some() => true,
        _ => {
            return Err(AuthFailure(
                "client selected an invalid SASL authentication mechanism".into(),
            ))
        }
    };
    let first = init.data.unwrap_or_default();
    let nonce: [u8; 18] = rand::random();
    let keys_base = (secret.server_key, secret.salt.clone(), secret.iterations);
    let offered = binding.as_deref().map(|b| (plus, b));
    let (server, server_first) =
        ScramServer::with_channel_binding(secret, &first, &nonce, offered).map_err(|_| fail())?;
    out.clear();
    encode_auth_sasl_continue(&mut out, &server_first);
    io.send(&out).await?;
    let body = io.password_body().await?;
    let outcome = server.finish(&body).map_err(|_| fail())?;
    if !known {
        return Err(fail());
    }
    out.clear();
    encode_auth_sasl_final(&mut out, &outcome.server_final);
    io.send(&out).await?;
    let scram_keys = pass_through.then_some(ScramKeys {
        client_key: outcome.client_key,
        server_key: keys_base.0,
        salt: keys_base.1,
        iterations: keys_base.2,
    });
    Ok(AuthSuccess { scram_keys })
}
