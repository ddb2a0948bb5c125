//! Authentication request messages (tag `'R'`) sent by a server, and encoders for them.
//!
//! PostgreSQL docs, "Message Formats" (AuthenticationOk ... AuthenticationSASLFinal) and
//! "Message Flow: Start-up".

use bytes::{BufMut, Bytes, BytesMut};

use crate::backend::backend_tag;
use crate::cursor::Cursor;
use crate::decode::DecodeError;
use crate::header::{begin, finish, put_cstr};

/// An Authentication* message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authentication {
    /// AuthenticationOk (code 0).
    Ok,
    /// AuthenticationKerberosV5 (code 2).
    KerberosV5,
    /// AuthenticationCleartextPassword (code 3).
    CleartextPassword,
    /// AuthenticationMD5Password (code 5).
    Md5Password {
        /// Salt to hash the password with.
        salt: [u8; 4],
    },
    /// AuthenticationGSS (code 7).
    Gss,
    /// AuthenticationGSSContinue (code 8).
    GssContinue(Bytes),
    /// AuthenticationSSPI (code 9).
    Sspi,
    /// AuthenticationSASL (code 10).
    Sasl {
        /// Mechanisms offered, in the server's order of preference (non-empty names).
        mechanisms: Vec<String>,
    },
    /// AuthenticationSASLContinue (code 11): server-first-message.
    SaslContinue(Bytes),
    /// AuthenticationSASLFinal (code 12): server-final-message.
    SaslFinal(Bytes),
}

const OK: i32 = 0;
const KERBEROS_V5: i32 = 2;
const CLEARTEXT: i32 = 3;
const MD5: i32 = 5;
const GSS: i32 = 7;
const GSS_CONTINUE: i32 = 8;
const SSPI: i32 = 9;
const SASL: i32 = 10;
const SASL_CONTINUE: i32 = 11;
const SASL_FINAL: i32 = 12;

impl Authentication {
    pub(crate) fn decode_body(cur: &mut Cursor) -> Result<Authentication, DecodeError> {
        Ok(match cur.i32("authentication code")? {
            OK => Authentication::Ok,
            KERBEROS_V5 => Authentication::KerberosV5,
            CLEARTEXT => Authentication::CleartextPassword,
            MD5 => {
                let salt = cur.bytes(4, "md5 salt")?;
                let mut s = [0u8; 4];
                s.copy_from_slice(&salt);
                Authentication::Md5Password { salt: s }
            }
            GSS => Authentication::Gss,
            GSS_CONTINUE => Authentication::GssContinue(cur.rest()),
            SSPI => Authentication::Sspi,
            SASL => {
                let mut mechanisms = Vec::new();
                loop {
                    let m = cur.string("sasl mechanism")?;
                    if m.is_empty() {
                        break;
                    }
                    mechanisms.push(m);
                }
                Authentication::Sasl { mechanisms }
            }
            SASL_CONTINUE => Authentication::SaslContinue(cur.rest()),
            SASL_FINAL => Authentication::SaslFinal(cur.rest()),
            _ => {
                return Err(DecodeError::InvalidValue {
                    field: "authentication code",
                })
            }
        })
    }

    pub(crate) fn encode_body(&self, buf: &mut BytesMut) {
        match self {
            Authentication::Ok => buf.put_i32(OK),
            Authentication::KerberosV5 => buf.put_i32(KERBEROS_V5),
            Authentication::CleartextPassword => buf.put_i32(CLEARTEXT),
            Authentication::Md5Password { salt } => {
                buf.put_i32(MD5);
                buf.put_slice(salt);
            }
            Authentication::Gss => buf.put_i32(GSS),
            Authentication::GssContinue(data) => {
                buf.put_i32(GSS_CONTINUE);
                buf.put_slice(data);
            }
            Authentication::Sspi => buf.put_i32(SSPI),
            Authentication::Sasl { mechanisms } => {
                buf.put_i32(SASL);
                for m in mechanisms {
                    put_cstr(buf, m.as_bytes());
                }
                buf.put_u8(0);
            }
            Authentication::SaslContinue(data) => {
                buf.put_i32(SASL_CONTINUE);
                buf.put_slice(data);
            }
            Authentication::SaslFinal(data) => {
                buf.put_i32(SASL_FINAL);
                buf.put_slice(data);
            }
        }
    }
}

fn auth_message(buf: &mut BytesMut, code: i32, data: &[u8]) {
    let at = begin(buf, backend_tag::AUTHENTICATION);
    buf.put_i32(code);
    buf.put_slice(data);
    finish(buf, at);
}

/// Writes AuthenticationOk.
pub fn encode_auth_ok(buf: &mut BytesMut) {
    auth_message(buf, OK, &[]);
}

/// Writes AuthenticationCleartextPassword.
pub fn encode_auth_cleartext(buf: &mut BytesMut) {
    auth_message(buf, CLEARTEXT, &[]);
}

/// Writes AuthenticationMD5Password.
pub fn encode_auth_md5(buf: &mut BytesMut, salt: [u8; 4]) {
    auth_message(buf, MD5, &salt);
}

/// Writes AuthenticationSASL offering `mechanisms` (e.g. `&["SCRAM-SHA-256"]`).
pub fn encode_auth_sasl(buf: &mut BytesMut, mechanisms: &[&str]) {
    let at = begin(buf, backend_tag::AUTHENTICATION);
    buf.put_i32(SASL);
    for m in mechanisms {
        put_cstr(buf, m.as_bytes());
    }
    buf.put_u8(0);
    finish(buf, at);
}

/// Writes AuthenticationSASLContinue carrying the server-first-message.
pub fn encode_auth_sasl_continue(buf: &mut BytesMut, data: &[u8]) {
    auth_message(buf, SASL_CONTINUE, data);
}

/// Writes AuthenticationSASLFinal carrying the server-final-message.
pub fn encode_auth_sasl_final(buf: &mut BytesMut, data: &[u8]) {
    auth_message(buf, SASL_FINAL, data);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::backend::BackendMessage;

    #[test]
    fn small_encoders_match_the_enum_encoding() {
        type Case = (fn(&mut BytesMut), Authentication);
        let cases: Vec<Case> = vec![
            (encode_auth_ok, Authentication::Ok),
            (encode_auth_cleartext, Authentication::CleartextPassword),
            (
                |b| encode_auth_md5(b, [1, 2, 3, 4]),
                Authentication::Md5Password { salt: [1, 2, 3, 4] },
            ),
            (
                |b| encode_auth_sasl(b, &["SCRAM-SHA-256"]),
                Authentication::Sasl {
                    mechanisms: vec!["SCRAM-SHA-256".into()],
                },
            ),
            (
                |b| encode_auth_sasl_continue(b, b"r=x"),
                Authentication::SaslContinue(Bytes::from_static(b"r=x")),
            ),
            (
                |b| encode_auth_sasl_final(b, b"v=x"),
                Authentication::SaslFinal(Bytes::from_static(b"v=x")),
            ),
        ];
        for (small, message) in cases {
            let (mut a, mut b) = (BytesMut::new(), BytesMut::new());
            small(&mut a);
            BackendMessage::Authentication(message).encode(&mut b);
            assert_eq!(a, b);
        }
    }

    #[test]
    fn unknown_authentication_code_is_invalid() {
        let mut buf = BytesMut::from(&b"R\0\0\0\x08\0\0\0\x63"[..]);
        assert_eq!(
            BackendMessage::decode(&mut buf, 8192),
            Err(DecodeError::InvalidValue {
                field: "authentication code"
            })
        );
    }
}
