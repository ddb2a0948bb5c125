//! ErrorResponse and NoticeResponse bodies: a list of typed fields.
//!
//! PostgreSQL docs, "Message Formats" (ErrorResponse, NoticeResponse) and "Error and Notice
//! Message Fields". PgBouncer sends only severity, SQLSTATE and message (`pktbuf_write_generic`
//! with "SCM").

use bytes::{BufMut, BytesMut};

use crate::backend::backend_tag;
use crate::cursor::Cursor;
use crate::decode::DecodeError;
use crate::header::{begin, finish, put_cstr};

/// Field type of the localized severity (`ERROR`, `FATAL`, `NOTICE`, ...).
pub const FIELD_SEVERITY: u8 = b'S';
/// Field type of the non-localized severity.
pub const FIELD_SEVERITY_NONLOCALIZED: u8 = b'V';
/// Field type of the SQLSTATE code.
pub const FIELD_CODE: u8 = b'C';
/// Field type of the primary message.
pub const FIELD_MESSAGE: u8 = b'M';
/// Field type of the detail.
pub const FIELD_DETAIL: u8 = b'D';
/// Field type of the hint.
pub const FIELD_HINT: u8 = b'H';

/// The fields of an ErrorResponse or NoticeResponse, in wire order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ErrorFields {
    /// `(field type, value)` pairs; field types are non-zero and values contain no NUL.
    pub fields: Vec<(u8, String)>,
}

impl ErrorFields {
    /// Fields `S`, `C`, `M` in that order, as PgBouncer sends them.
    pub fn new(severity: &str, code: &str, message: impl Into<String>) -> Self {
        ErrorFields {
            fields: vec![
                (FIELD_SEVERITY, severity.to_owned()),
                (FIELD_CODE, code.to_owned()),
                (FIELD_MESSAGE, message.into()),
            ],
        }
    }

    /// The first field of type `field_type`.
    pub fn field(&self, field_type: u8) -> Option<&str> {
        self.fields
            .iter()
            .find(|(t, _)| *t == field_type)
            .map(|(_, v)| v.as_str())
    }

    /// Severity (`S`).
    pub fn severity(&self) -> Option<&str> {
        self.field(FIELD_SEVERITY)
    }

    /// SQLSTATE (`C`).
    pub fn code(&self) -> Option<&str> {
        self.field(FIELD_CODE)
    }

    /// Primary message (`M`).
    pub fn message(&self) -> Option<&str> {
        self.field(FIELD_MESSAGE)
    }

    pub(crate) fn decode_body(cur: &mut Cursor) -> Result<ErrorFields, DecodeError> {
        let mut fields = Vec::new();
        loop {
            let field_type = cur.u8("error field type")?;
            if field_type == 0 {
                break;
            }
            let raw = cur.cstr("error field value")?;
            // A server whose messages are not in UTF-8 must not make us drop the error.
            fields.push((field_type, String::from_utf8_lossy(&raw).into_owned()));
        }
        Ok(ErrorFields { fields })
    }

    pub(crate) fn encode_body(&self, buf: &mut BytesMut) {
        for (t, v) in &self.fields {
            buf.put_u8(*t);
            put_cstr(buf, v.as_bytes());
        }
        buf.put_u8(0);
    }
}

fn write_scm(buf: &mut BytesMut, tag: u8, severity: &str, code: &str, message: &str) {
    let at = begin(buf, tag);
    for (t, v) in [
        (FIELD_SEVERITY, severity),
        (FIELD_CODE, code),
        (FIELD_MESSAGE, message),
    ] {
        buf.put_u8(t);
        put_cstr(buf, v.as_bytes());
    }
    buf.put_u8(0);
    finish(buf, at);
}

/// Writes an ErrorResponse with fields `S`, `C`, `M`.
pub fn encode_error(buf: &mut BytesMut, severity: &str, code: &str, message: &str) {
    write_scm(buf, backend_tag::ERROR_RESPONSE, severity, code, message);
}

/// Writes a NoticeResponse with severity `NOTICE` and the given SQLSTATE (usually `00000`).
pub fn encode_notice(buf: &mut BytesMut, code: &str, message: &str) {
    write_scm(buf, backend_tag::NOTICE_RESPONSE, "NOTICE", code, message);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::backend::BackendMessage;

    #[test]
    fn encode_error_writes_exactly_severity_code_message() {
        let mut buf = BytesMut::new();
        encode_error(&mut buf, "FATAL", "08P01", "no more connections allowed");
        let mut expected = BytesMut::new();
        BackendMessage::ErrorResponse(ErrorFields::new(
            "FATAL",
            "08P01",
            "no more connections allowed",
        ))
        .encode(&mut expected);
        assert_eq!(buf, expected);
        assert_eq!(
            &buf[5..],
            b"SFATAL\0C08P01\0Mno more connections allowed\0\0"
        );
        let Some(BackendMessage::ErrorResponse(f)) =
            BackendMessage::decode(&mut buf, 8192).unwrap()
        else {
            panic!("not an error")
        };
        assert_eq!(f.severity(), Some("FATAL"));
        assert_eq!(f.code(), Some("08P01"));
        assert_eq!(f.message(), Some("no more connections allowed"));
        assert_eq!(f.field(FIELD_HINT), None);
    }

    #[test]
    fn notice_has_severity_notice() {
        let mut buf = BytesMut::new();
        encode_notice(&mut buf, "00000", "hello");
        assert_eq!(buf[0], b'N');
        assert_eq!(&buf[5..], b"SNOTICE\0C00000\0Mhello\0\0");
    }

    #[test]
    fn non_utf8_error_text_is_kept_lossily() {
        let mut buf = BytesMut::from(&b"E\0\0\0\x0bMcaf\xe9\0\0"[..]);
        let Some(BackendMessage::ErrorResponse(f)) =
            BackendMessage::decode(&mut buf, 8192).unwrap()
        else {
            panic!("not an error")
        };
        assert_eq!(f.message(), Some("caf\u{fffd}"));
    }
}
