//! `FrontendMessage`: every tagged message a client sends, decoded and encoded.
//!
//! PostgreSQL docs, "Message Formats" (frontend messages) and "Message Flow" (simple query,
//! extended query, COPY, function call, termination).

use bytes::{BufMut, Bytes, BytesMut};

use crate::cursor::Cursor;
use crate::decode::DecodeError;
use crate::header::{begin, finish, put_cstr, put_empty, put_nullable, split_frame};

/// Tags of frontend (client to server) messages.
pub mod frontend_tag {
    /// Query.
    pub const QUERY: u8 = b'Q';
    /// Parse.
    pub const PARSE: u8 = b'P';
    /// Bind.
    pub const BIND: u8 = b'B';
    /// Describe.
    pub const DESCRIBE: u8 = b'D';
    /// Execute.
    pub const EXECUTE: u8 = b'E';
    /// Close.
    pub const CLOSE: u8 = b'C';
    /// Sync.
    pub const SYNC: u8 = b'S';
    /// Flush.
    pub const FLUSH: u8 = b'H';
    /// Terminate.
    pub const TERMINATE: u8 = b'X';
    /// CopyData.
    pub const COPY_DATA: u8 = b'd';
    /// CopyDone.
    pub const COPY_DONE: u8 = b'c';
    /// CopyFail.
    pub const COPY_FAIL: u8 = b'f';
    /// FunctionCall.
    pub const FUNCTION_CALL: u8 = b'F';
    /// PasswordMessage, SASLInitialResponse, SASLResponse and GSSResponse.
    pub const PASSWORD_MESSAGE: u8 = b'p';
}

/// A message from a client, after the startup phase.
///
/// Counts written as `Int16` on the wire (formats, parameters) must stay below 32768 and
/// byte fields below 2 GiB, or the encoded message will not decode to the same value.
/// Names and queries must not contain NUL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrontendMessage {
    /// Query: a simple-protocol query string.
    Query {
        /// SQL text, without the trailing NUL.
        query: Bytes,
    },
    /// Parse: prepare a statement.
    Parse {
        /// Statement name (empty: the unnamed statement).
        name: Bytes,
        /// SQL text.
        query: Bytes,
        /// Parameter type OIDs (0: unspecified).
        param_types: Vec<u32>,
    },
    /// Bind: create a portal from a prepared statement.
    Bind {
        /// Portal name.
        portal: Bytes,
        /// Statement name.
        statement: Bytes,
        /// Parameter format codes.
        param_formats: Vec<i16>,
        /// Parameter values; `None` is NULL.
        params: Vec<Option<Bytes>>,
        /// Result column format codes.
        result_formats: Vec<i16>,
    },
    /// Describe a statement (`b'S'`) or portal (`b'P'`).
    Describe {
        /// `b'S'` or `b'P'`.
        kind: u8,
        /// Statement or portal name.
        name: Bytes,
    },
    /// Execute a portal.
    Execute {
        /// Portal name.
        portal: Bytes,
        /// Row limit; 0 is no limit.
        max_rows: i32,
    },
    /// Close a statement (`b'S'`) or portal (`b'P'`).
    Close {
        /// `b'S'` or `b'P'`.
        kind: u8,
        /// Statement or portal name.
        name: Bytes,
    },
    /// Sync.
    Sync,
    /// Flush.
    Flush,
    /// Terminate.
    Terminate,
    /// CopyData.
    CopyData(Bytes),
    /// CopyDone.
    CopyDone,
    /// CopyFail.
    CopyFail {
        /// Error message, without NUL.
        message: Bytes,
    },
    /// FunctionCall (fast-path function call).
    FunctionCall {
        /// OID of the function.
        function_oid: u32,
        /// Argument format codes.
        arg_formats: Vec<i16>,
        /// Arguments; `None` is NULL.
        args: Vec<Option<Bytes>>,
        /// Result format code.
        result_format: i16,
    },
    /// Tag `'p'`, raw body. PasswordMessage, SASLInitialResponse, SASLResponse and
    /// GSSResponse share this tag and are told apart only by the authentication exchange
    /// in progress: see [`crate::password_from_body`] and [`crate::SaslInitialResponse`].
    PasswordMessage(Bytes),
}

impl FrontendMessage {
    /// Decodes one message from the front of `buf`.
    ///
    /// `Ok(None)` while incomplete (nothing consumed); on `Some` exactly one message is
    /// consumed. The length is checked against 4 and `max_packet_size` first. After an error
    /// the offending message may have been consumed; the connection is unusable anyway.
    pub fn decode(
        buf: &mut BytesMut,
        max_packet_size: u32,
    ) -> Result<Option<FrontendMessage>, DecodeError> {
        let Some((tag, body)) = split_frame(buf, max_packet_size)? else {
            return Ok(None);
        };
        Self::decode_body(tag, body).map(Some)
    }

    /// Decodes a message from its tag and body (header already removed).
    pub fn decode_body(tag: u8, body: Bytes) -> Result<FrontendMessage, DecodeError> {
        use frontend_tag as t;
        let mut cur = Cursor::new(body);
        let msg = match tag {
            t::QUERY => FrontendMessage::Query {
                query: cur.cstr("query")?,
            },
            t::PARSE => {
                let name = cur.cstr("statement name")?;
                let query = cur.cstr("query")?;
                let n = cur.count16(4, "parameter type count")?;
                let mut param_types = Vec::with_capacity(n);
                for _ in 0..n {
                    param_types.push(cur.u32("parameter type")?);
                }
                FrontendMessage::Parse {
                    name,
                    query,
                    param_types,
                }
            }
            t::BIND => decode_bind(&mut cur)?,
            t::DESCRIBE | t::CLOSE => {
                let kind = cur.u8("describe/close kind")?;
                if kind != b'S' && kind != b'P' {
                    return Err(DecodeError::InvalidValue {
                        field: "describe/close kind",
                    });
                }
                let name = cur.cstr("name")?;
                if tag == t::DESCRIBE {
                    FrontendMessage::Describe { kind, name }
                } else {
                    FrontendMessage::Close { kind, name }
                }
            }
            t::EXECUTE => FrontendMessage::Execute {
                portal: cur.cstr("portal name")?,
                max_rows: cur.i32("max rows")?,
            },
            t::SYNC => FrontendMessage::Sync,
            t::FLUSH => FrontendMessage::Flush,
            t::TERMINATE => FrontendMessage::Terminate,
            t::COPY_DATA => FrontendMessage::CopyData(cur.rest()),
            t::COPY_DONE => FrontendMessage::CopyDone,
            t::COPY_FAIL => FrontendMessage::CopyFail {
                message: cur.cstr("copy fail message")?,
            },
            t::FUNCTION_CALL => decode_function_call(&mut cur)?,
            t::PASSWORD_MESSAGE => FrontendMessage::PasswordMessage(cur.rest()),
            _ => return Err(DecodeError::UnknownTag { tag }),
        };
        cur.finish()?;
        Ok(msg)
    }

    /// The tag byte of this message.
    pub fn tag(&self) -> u8 {
        use frontend_tag as t;
        match self {
            FrontendMessage::Query { .. } => t::QUERY,
            FrontendMessage::Parse { .. } => t::PARSE,
            FrontendMessage::Bind { .. } => t::BIND,
            FrontendMessage::Describe { .. } => t::DESCRIBE,
            FrontendMessage::Execute { .. } => t::EXECUTE,
            FrontendMessage::Close { .. } => t::CLOSE,
            FrontendMessage::Sync => t::SYNC,
            FrontendMessage::Flush => t::FLUSH,
            FrontendMessage::Terminate => t::TERMINATE,
            FrontendMessage::CopyData(_) => t::COPY_DATA,
            FrontendMessage::CopyDone => t::COPY_DONE,
            FrontendMessage::CopyFail { .. } => t::COPY_FAIL,
            FrontendMessage::FunctionCall { .. } => t::FUNCTION_CALL,
            FrontendMessage::PasswordMessage(_) => t::PASSWORD_MESSAGE,
        }
    }

    /// Appends the encoded message to `buf`.
    pub fn encode(&self, buf: &mut BytesMut) {
        let at = begin(buf, self.tag());
        match self {
            FrontendMessage::Query { query } => put_cstr(buf, query),
            FrontendMessage::Parse {
                name,
                query,
                param_types,
            } => {
                put_cstr(buf, name);
                put_cstr(buf, query);
                buf.put_i16(param_types.len() as i16);
                for t in param_types {
                    buf.put_u32(*t);
                }
            }
            FrontendMessage::Bind {
                portal,
                statement,
                param_formats,
                params,
                result_formats,
            } => {
                put_cstr(buf, portal);
                put_cstr(buf, statement);
                put_i16s(buf, param_formats);
                buf.put_i16(params.len() as i16);
                for p in params {
                    put_nullable(buf, p.as_deref());
                }
                put_i16s(buf, result_formats);
            }
            FrontendMessage::Describe { kind, name } | FrontendMessage::Close { kind, name } => {
                buf.put_u8(*kind);
                put_cstr(buf, name);
            }
            FrontendMessage::Execute { portal, max_rows } => {
                put_cstr(buf, portal);
                buf.put_i32(*max_rows);
            }
            FrontendMessage::Sync
            | FrontendMessage::Flush
            | FrontendMessage::Terminate
            | FrontendMessage::CopyDone => {}
            FrontendMessage::CopyData(data) | FrontendMessage::PasswordMessage(data) => {
                buf.put_slice(data)
            }
            FrontendMessage::CopyFail { message } => put_cstr(buf, message),
            FrontendMessage::FunctionCall {
                function_oid,
                arg_formats,
                args,
                result_format,
            } => {
                buf.put_u32(*function_oid);
                put_i16s(buf, arg_formats);
                buf.put_i16(args.len() as i16);
                for a in args {
                    put_nullable(buf, a.as_deref());
                }
                buf.put_i16(*result_format);
            }
        }
        finish(buf, at);
    }
}

/// Writes a Query message.
pub fn encode_query(buf: &mut BytesMut, sql: &str) {
    let at = begin(buf, frontend_tag::QUERY);
    put_cstr(buf, sql.as_bytes());
    finish(buf, at);
}

/// A whole Terminate message, for writers that cannot wait (a socket being dropped).
pub const TERMINATE_MESSAGE: &[u8] = &[frontend_tag::TERMINATE, 0, 0, 0, 4];

/// Writes a Terminate message.
pub fn encode_terminate(buf: &mut BytesMut) {
    put_empty(buf, frontend_tag::TERMINATE);
}

fn decode_bind(cur: &mut Cursor) -> Result<FrontendMessage, DecodeError> {
    let portal = cur.cstr("portal name")?;
    let statement = cur.cstr("statement name")?;
    let param_formats = i16s(cur, "parameter format")?;
    let n = cur.count16(4, "parameter count")?;
    let mut params = Vec::with_capacity(n);
    for _ in 0..n {
        params.push(cur.nullable("parameter value")?);
    }
    let result_formats = i16s(cur, "result format")?;
    Ok(FrontendMessage::Bind {
        portal,
        statement,
        param_formats,
        params,
        result_formats,
    })
}

fn decode_function_call(cur: &mut Cursor) -> Result<FrontendMessage, DecodeError> {
    let function_oid = cur.u32("function oid")?;
    let arg_formats = i16s(cur, "argument format")?;
    let n = cur.count16(4, "argument count")?;
    let mut args = Vec::with_capacity(n);
    for _ in 0..n {
        args.push(cur.nullable("argument value")?);
    }
    let result_format = cur.i16("result format")?;
    Ok(FrontendMessage::FunctionCall {
        function_oid,
        arg_formats,
        args,
        result_format,
    })
}

/// An `Int16` count followed by that many `Int16`s.
pub(crate) fn i16s(cur: &mut Cursor, field: &'static str) -> Result<Vec<i16>, DecodeError> {
    let n = cur.count16(2, field)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(cur.i16(field)?);
    }
    Ok(out)
}

pub(crate) fn put_i16s(buf: &mut BytesMut, values: &[i16]) {
    buf.put_i16(values.len() as i16);
    for v in values {
        buf.put_i16(*v);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn query_decodes_without_its_nul() {
        let mut buf = BytesMut::new();
        encode_query(&mut buf, "select 1");
        assert_eq!(&buf[..5], b"Q\0\0\0\x0d");
        let msg = FrontendMessage::decode(&mut buf, 8192).unwrap().unwrap();
        assert_eq!(
            msg,
            FrontendMessage::Query {
                query: Bytes::from_static(b"select 1")
            }
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn unknown_tag_is_an_error() {
        let mut buf = BytesMut::from(&b"?\0\0\0\x04"[..]);
        assert_eq!(
            FrontendMessage::decode(&mut buf, 8192),
            Err(DecodeError::UnknownTag { tag: b'?' })
        );
    }

    #[test]
    fn sync_with_a_body_is_rejected() {
        let mut buf = BytesMut::from(&b"S\0\0\0\x05x"[..]);
        assert_eq!(
            FrontendMessage::decode(&mut buf, 8192),
            Err(DecodeError::TrailingBytes { extra: 1 })
        );
    }

    #[test]
    fn bind_with_a_huge_parameter_count_fails_without_allocating_it() {
        let mut buf = BytesMut::new();
        let at = begin(&mut buf, b'B');
        buf.put_slice(b"\0\0");
        buf.put_i16(0);
        buf.put_i16(i16::MAX);
        finish(&mut buf, at);
        assert!(matches!(
            FrontendMessage::decode(&mut buf, 8192),
            Err(DecodeError::Truncated { .. })
        ));
    }
}
