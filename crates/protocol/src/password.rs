//! Interpreting and writing the bodies of tag `'p'` messages: PasswordMessage,
//! SASLInitialResponse and SASLResponse.
//!
//! PostgreSQL docs, "Message Formats" (PasswordMessage, SASLInitialResponse, SASLResponse)
//! and "Message Flow: SASL Authentication".

use bytes::{BufMut, Bytes, BytesMut};

use crate::cursor::Cursor;
use crate::decode::DecodeError;
use crate::frontend::frontend_tag;
use crate::header::{begin, finish, put_cstr, put_nullable};

/// A SASLInitialResponse: the chosen mechanism and the client-first-message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslInitialResponse {
    /// Mechanism name, e.g. `SCRAM-SHA-256`.
    pub mechanism: String,
    /// Initial response; `None` when the client sent length -1.
    pub data: Option<Bytes>,
}

impl SaslInitialResponse {
    /// Parses the body of a `'p'` message sent in answer to AuthenticationSASL.
    pub fn parse(body: &[u8]) -> Result<SaslInitialResponse, DecodeError> {
        let mut cur = Cursor::new(Bytes::copy_from_slice(body));
        let mechanism = cur.string("sasl mechanism")?;
        let data = cur.nullable("sasl initial response")?;
        cur.finish()?;
        Ok(SaslInitialResponse { mechanism, data })
    }

    /// Writes the whole `'p'` message.
    pub fn encode(&self, buf: &mut BytesMut) {
        let at = begin(buf, frontend_tag::PASSWORD_MESSAGE);
        put_cstr(buf, self.mechanism.as_bytes());
        put_nullable(buf, self.data.as_deref());
        finish(buf, at);
    }
}

/// The password in the body of a PasswordMessage: a C string that must fill the body.
pub fn password_from_body(body: &[u8]) -> Result<&[u8], DecodeError> {
    match body.iter().position(|&b| b == 0) {
        None => Err(DecodeError::MissingNul { field: "password" }),
        Some(nul) if nul + 1 != body.len() => Err(DecodeError::TrailingBytes {
            extra: body.len() - nul - 1,
        }),
        Some(nul) => Ok(&body[..nul]),
    }
}

/// Writes a PasswordMessage (cleartext password or `md5...` response).
pub fn encode_password(buf: &mut BytesMut, password: &[u8]) {
    let at = begin(buf, frontend_tag::PASSWORD_MESSAGE);
    put_cstr(buf, password);
    finish(buf, at);
}

/// Writes a SASLInitialResponse.
pub fn encode_sasl_initial_response(buf: &mut BytesMut, mechanism: &str, data: &[u8]) {
    let at = begin(buf, frontend_tag::PASSWORD_MESSAGE);
    put_cstr(buf, mechanism.as_bytes());
    buf.put_i32(data.len() as i32);
    buf.put_slice(data);
    finish(buf, at);
}

/// Writes a SASLResponse.
pub fn encode_sasl_response(buf: &mut BytesMut, data: &[u8]) {
    let at = begin(buf, frontend_tag::PASSWORD_MESSAGE);
    buf.put_slice(data);
    finish(buf, at);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::frontend::FrontendMessage;

    #[test]
    fn sasl_initial_response_round_trips_through_a_password_message() {
        let mut buf = BytesMut::new();
        encode_sasl_initial_response(&mut buf, "SCRAM-SHA-256", b"n,,n=,r=abc");
        let Some(FrontendMessage::PasswordMessage(body)) =
            FrontendMessage::decode(&mut buf, 8192).unwrap()
        else {
            panic!("not a password message")
        };
        let parsed = SaslInitialResponse::parse(&body).unwrap();
        assert_eq!(parsed.mechanism, "SCRAM-SHA-256");
        assert_eq!(parsed.data.as_deref(), Some(&b"n,,n=,r=abc"[..]));
    }

    #[test]
    fn password_must_fill_the_body() {
        assert_eq!(password_from_body(b"secret\0"), Ok(&b"secret"[..]));
        assert_eq!(
            password_from_body(b"secret"),
            Err(DecodeError::MissingNul { field: "password" })
        );
        assert_eq!(
            password_from_body(b"a\0b"),
            Err(DecodeError::TrailingBytes { extra: 1 })
        );
    }

    #[test]
    fn sasl_initial_response_with_negative_length_is_invalid() {
        assert_eq!(
            SaslInitialResponse::parse(b"X\0\xff\xff\xff\xfe"),
            Err(DecodeError::InvalidValue {
                field: "sasl initial response"
            })
        );
    }
}
