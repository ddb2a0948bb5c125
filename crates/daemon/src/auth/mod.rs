//! Client authentication, as PgBouncer does it against `auth_file` secrets
//! (mirrors client.c `send_client_authreq` / `check_client_passwd` and scram.c).

pub mod hba;
pub mod ident;
pub mod userlist;

use bytes::BytesMut;
use pgbouncer_protocol::auth::md5;
use pgbouncer_protocol::auth::scram::{ScramSecret, ScramServer};
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
        return hba_auth(io, rt, user, facts, secret, plain_scram).await;
    }
    match rt.auth_type {
        AuthType::Any => Ok(AuthSuccess::default()),
        AuthType::Trust => match secret {
            Some(_) => Ok(AuthSuccess::default()),
            None => Err(AuthFailure("\"trust\" authentication failed".into())),
        },
        AuthType::Plain => plain(io, user, secret.as_ref(), plain_scram).await,
        AuthType::Md5 | AuthType::Hba => match secret {
            Some(Secret::Scram(s)) => scram(io, ScramSecret::parse(&s), true).await,
            other => md5_exchange(io, user, other.as_ref()).await,
        },
        AuthType::ScramSha256 => match secret {
            Some(Secret::Scram(s)) => scram(io, ScramSecret::parse(&s), true).await,
            Some(Secret::Plain(p)) => scram(io, Some(plain_scram(user, &p)), false).await,
            _ => scram(io, None, false).await,
        },
        AuthType::Cert | AuthType::Pam | AuthType::Ldap => {
            Err(AuthFailure("no authentication method is found".into()))
        }
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
        tls: false,
        addr: facts.addr,
        database: &facts.database,
        user,
        replication: facts.replication,
    };
    let Some(rule) = rt.hba.as_ref().and_then(|h| h.find(&conn)) else {
        return Err(AuthFailure("no authentication method is found".into()));
    };
    match rule.method {
        HbaMethod::Trust => Ok(AuthSuccess::default()),
        HbaMethod::Reject => Err(AuthFailure("login rejected".into())),
        HbaMethod::Password => plain(io, user, secret.as_ref(), plain_scram).await,
        HbaMethod::Md5 => match secret {
            Some(Secret::Scram(s)) => scram(io, ScramSecret::parse(&s), true).await,
            other => md5_exchange(io, user, other.as_ref()).await,
        },
        HbaMethod::ScramSha256 => match secret {
            Some(Secret::Scram(s)) => scram(io, ScramSecret::parse(&s), true).await,
            Some(Secret::Plain(p)) => scram(io, Some(plain_scram(user, &p)), false).await,
            _ => scram(io, None, false).await,
        },
        HbaMethod::Peer => {
            let fail = || AuthFailure("unix socket login rejected".into());
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
        HbaMethod::Cert => Err(AuthFailure("certificate authentication failed".into())),
        _ => Err(AuthFailure("LDAP authentication failed".into())),
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
    let mut out = BytesMut::new();
    encode_auth_cleartext(&mut out);
    io.send(&out).await?;
    let body = io.password_body().await?;
    let given = password_from_body(&body).map_err(|e| AuthFailure(e.pgbouncer_message()))?;
    if given.is_empty() {
        return Err(AuthFailure("empty password returned by client".into()));
    }
    let ok = match secret {
        Some(Secret::Plain(p)) => p.as_bytes() == given,
        Some(Secret::Md5(h)) => md5::hash_password(user, given) == *h,
        Some(Secret::Scram(s)) => ScramSecret::parse(s).is_some_and(|stored| {
            let mine = ScramSecret::from_password(given, &stored.salt, stored.iterations);
            mine.stored_key == stored.stored_key
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
    let mut out = BytesMut::new();
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

async fn scram(
    io: &mut LoginIo<'_>,
    secret: Option<ScramSecret>,
    pass_through: bool,
) -> Result<AuthSuccess, AuthFailure> {
    let fail = || AuthFailure("SASL authentication failed".into());
    // Unknown users still run the exchange against a throwaway secret (mock auth).
    let known = secret.is_some();
    let secret = secret.unwrap_or_else(|| {
        let salt: [u8; 16] = rand::random();
        ScramSecret::from_password(&rand::random::<[u8; 16]>(), &salt, 4096)
    });
    let mut out = BytesMut::new();
    encode_auth_sasl(&mut out, &["SCRAM-SHA-256"]);
    io.send(&out).await?;
    let body = io.password_body().await?;
    let init = SaslInitialResponse::parse(&body).map_err(|_| fail())?;
    if init.mechanism != "SCRAM-SHA-256" {
        return Err(AuthFailure(
            "client selected an invalid SASL authentication mechanism".into(),
        ));
    }
    let first = init.data.unwrap_or_default();
    let nonce: [u8; 18] = rand::random();
    let keys_base = (secret.server_key, secret.salt.clone(), secret.iterations);
    let (server, server_first) = ScramServer::new(secret, &first, &nonce).map_err(|_| fail())?;
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
