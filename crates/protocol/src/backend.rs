//! `BackendMessage`: every tagged message a server sends, decoded and encoded.
//!
//! PostgreSQL docs, "Message Formats" (backend messages) and "Message Flow". The daemon
//! forwards most of these untouched via [`crate::Header::peek`]; full decoding is for the
//! messages the pooler acts on and for tests.

use bytes::{BufMut, Bytes, BytesMut};

use crate::authentication::Authentication;
use crate::cursor::Cursor;
use crate::decode::DecodeError;
use crate::frontend::{i16s, put_i16s};
use crate::header::{begin, finish, put_cstr, put_nullable, split_frame};
use crate::response::ErrorFields;
use crate::status::TransactionStatus;

/// Tags of backend (server to client) messages.
pub mod backend_tag {
    /// Authentication* messages.
    pub const AUTHENTICATION: u8 = b'R';
    /// ParameterStatus.
    pub const PARAMETER_STATUS: u8 = b'S';
    /// BackendKeyData.
    pub const BACKEND_KEY_DATA: u8 = b'K';
    /// ReadyForQuery.
    pub const READY_FOR_QUERY: u8 = b'Z';
    /// RowDescription.
    pub const ROW_DESCRIPTION: u8 = b'T';
    /// DataRow.
    pub const DATA_ROW: u8 = b'D';
    /// CommandComplete.
    pub const COMMAND_COMPLETE: u8 = b'C';
    /// EmptyQueryResponse.
    pub const EMPTY_QUERY_RESPONSE: u8 = b'I';
    /// ErrorResponse.
    pub const ERROR_RESPONSE: u8 = b'E';
    /// NoticeResponse.
    pub const NOTICE_RESPONSE: u8 = b'N';
    /// NotificationResponse.
    pub const NOTIFICATION_RESPONSE: u8 = b'A';
    /// ParseComplete.
    pub const PARSE_COMPLETE: u8 = b'1';
    /// BindComplete.
    pub const BIND_COMPLETE: u8 = b'2';
    /// CloseComplete.
    pub const CLOSE_COMPLETE: u8 = b'3';
    /// NoData.
    pub const NO_DATA: u8 = b'n';
    /// PortalSuspended.
    pub const PORTAL_SUSPENDED: u8 = b's';
    /// ParameterDescription.
    pub const PARAMETER_DESCRIPTION: u8 = b't';
    /// CopyInResponse.
    pub const COPY_IN_RESPONSE: u8 = b'G';
    /// CopyOutResponse.
    pub const COPY_OUT_RESPONSE: u8 = b'H';
    /// CopyBothResponse.
    pub const COPY_BOTH_RESPONSE: u8 = b'W';
    /// CopyData.
    pub const COPY_DATA: u8 = b'd';
    /// CopyDone.
    pub const COPY_DONE: u8 = b'c';
    /// FunctionCallResponse.
    pub const FUNCTION_CALL_RESPONSE: u8 = b'V';
    /// NegotiateProtocolVersion.
    pub const NEGOTIATE_PROTOCOL_VERSION: u8 = b'v';
}

/// One column of a RowDescription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldDescription {
    /// Column name (no NUL).
    pub name: String,
    /// OID of the table, or 0.
    pub table_oid: u32,
    /// Attribute number in the table, or 0.
    pub column_id: i16,
    /// OID of the data type.
    pub type_oid: u32,
    /// `pg_type.typlen`; negative for variable width.
    pub type_size: i16,
    /// `pg_attribute.atttypmod`.
    pub type_modifier: i32,
    /// 0 text, 1 binary.
    pub format: i16,
}

/// Body of CopyInResponse, CopyOutResponse and CopyBothResponse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyResponse {
    /// Overall format: 0 text, 1 binary.
    pub format: i8,
    /// Per-column format codes.
    pub column_formats: Vec<i16>,
}

/// A message from a server, after the startup packet.
///
/// Counts written as `Int16` on the wire (fields, columns, values) must stay below 32768,
/// and text fields must not contain NUL, or the encoded message will not decode to the
/// same value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendMessage {
    /// Authentication* (tag `'R'`).
    Authentication(Authentication),
    /// ParameterStatus.
    ParameterStatus {
        /// Parameter name.
        name: String,
        /// Current value.
        value: String,
    },
    /// BackendKeyData (protocol 3.0: 4-byte secret key).
    BackendKeyData {
        /// Backend process ID.
        process_id: i32,
        /// Cancel secret.
        secret_key: i32,
    },
    /// ReadyForQuery.
    ReadyForQuery {
        /// Transaction status.
        status: TransactionStatus,
    },
    /// RowDescription.
    RowDescription {
        /// One entry per column.
        fields: Vec<FieldDescription>,
    },
    /// DataRow.
    DataRow {
        /// Column values; `None` is NULL.
        values: Vec<Option<Bytes>>,
    },
    /// CommandComplete.
    CommandComplete {
        /// Command tag (`SELECT 1`), without NUL.
        tag: Bytes,
    },
    /// EmptyQueryResponse.
    EmptyQueryResponse,
    /// ErrorResponse.
    ErrorResponse(ErrorFields),
    /// NoticeResponse.
    NoticeResponse(ErrorFields),
    /// NotificationResponse (LISTEN/NOTIFY).
    NotificationResponse {
        /// Notifying backend's process ID.
        process_id: i32,
        /// Channel name.
        channel: String,
        /// Payload.
        payload: String,
    },
    /// ParseComplete.
    ParseComplete,
    /// BindComplete.
    BindComplete,
    /// CloseComplete.
    CloseComplete,
    /// NoData.
    NoData,
    /// PortalSuspended.
    PortalSuspended,
    /// ParameterDescription.
    ParameterDescription {
        /// Parameter type OIDs.
        types: Vec<u32>,
    },
    /// CopyInResponse.
    CopyInResponse(CopyResponse),
    /// CopyOutResponse.
    CopyOutResponse(CopyResponse),
    /// CopyBothResponse.
    CopyBothResponse(CopyResponse),
    /// CopyData.
    CopyData(Bytes),
    /// CopyDone.
    CopyDone,
    /// FunctionCallResponse.
    FunctionCallResponse {
        /// Result; `None` is NULL.
        value: Option<Bytes>,
    },
    /// NegotiateProtocolVersion.
    NegotiateProtocolVersion {
        /// Newest minor protocol version the server supports.
        newest_minor: u32,
        /// Protocol options (`_pq_.*`) the server did not recognize.
        unrecognized: Vec<String>,
    },
}

impl BackendMessage {
    /// Decodes one message from the front of `buf`.
    ///
    /// `Ok(None)` while incomplete (nothing consumed); on `Some` exactly one message is
    /// consumed. The length is checked against 4 and `max_packet_size` first. After an error
    /// the offending message may have been consumed; the connection is unusable anyway.
    pub fn decode(
        buf: &mut BytesMut,
        max_packet_size: u32,
    ) -> Result<Option<BackendMessage>, DecodeError> {
        let Some((tag, body)) = split_frame(buf, max_packet_size)? else {
            return Ok(None);
        };
        Self::decode_body(tag, body).map(Some)
    }

    /// Decodes a message from its tag and body (header already removed).
    pub fn decode_body(tag: u8, body: Bytes) -> Result<BackendMessage, DecodeError> {
        use backend_tag as t;
        let mut cur = Cursor::new(body);
        let msg = match tag {
            t::AUTHENTICATION => {
                BackendMessage::Authentication(Authentication::decode_body(&mut cur)?)
            }
            t::PARAMETER_STATUS => BackendMessage::ParameterStatus {
                name: cur.string("parameter name")?,
                value: cur.string("parameter value")?,
            },
            t::BACKEND_KEY_DATA => BackendMessage::BackendKeyData {
                process_id: cur.i32("process id")?,
                secret_key: cur.i32("secret key")?,
            },
            t::READY_FOR_QUERY => {
                let status = TransactionStatus::from_byte(cur.u8("transaction status")?).ok_or(
                    DecodeError::InvalidValue {
                        field: "transaction status",
                    },
                )?;
                BackendMessage::ReadyForQuery { status }
            }
            t::ROW_DESCRIPTION => decode_row_description(&mut cur)?,
            t::DATA_ROW => {
                let n = cur.count16(4, "column count")?;
                let mut values = Vec::with_capacity(n);
                for _ in 0..n {
                    values.push(cur.nullable("column value")?);
                }
                BackendMessage::DataRow { values }
            }
            t::COMMAND_COMPLETE => BackendMessage::CommandComplete {
                tag: cur.cstr("command tag")?,
            },
            t::EMPTY_QUERY_RESPONSE => BackendMessage::EmptyQueryResponse,
            t::ERROR_RESPONSE => BackendMessage::ErrorResponse(ErrorFields::decode_body(&mut cur)?),
            t::NOTICE_RESPONSE => {
                BackendMessage::NoticeResponse(ErrorFields::decode_body(&mut cur)?)
            }
            t::NOTIFICATION_RESPONSE => BackendMessage::NotificationResponse {
                process_id: cur.i32("process id")?,
                channel: cur.string("channel")?,
                payload: cur.string("payload")?,
            },
            t::PARSE_COMPLETE => BackendMessage::ParseComplete,
            t::BIND_COMPLETE => BackendMessage::BindComplete,
            t::CLOSE_COMPLETE => BackendMessage::CloseComplete,
            t::NO_DATA => BackendMessage::NoData,
            t::PORTAL_SUSPENDED => BackendMessage::PortalSuspended,
            t::PARAMETER_DESCRIPTION => {
                let n = cur.count16(4, "parameter count")?;
                let mut types = Vec::with_capacity(n);
                for _ in 0..n {
                    types.push(cur.u32("parameter type")?);
                }
                BackendMessage::ParameterDescription { types }
            }
            t::COPY_IN_RESPONSE => BackendMessage::CopyInResponse(decode_copy(&mut cur)?),
            t::COPY_OUT_RESPONSE => BackendMessage::CopyOutResponse(decode_copy(&mut cur)?),
            t::COPY_BOTH_RESPONSE => BackendMessage::CopyBothResponse(decode_copy(&mut cur)?),
            t::COPY_DATA => BackendMessage::CopyData(cur.rest()),
            t::COPY_DONE => BackendMessage::CopyDone,
            t::FUNCTION_CALL_RESPONSE => BackendMessage::FunctionCallResponse {
                value: cur.nullable("function result")?,
            },
            t::NEGOTIATE_PROTOCOL_VERSION => {
                let newest_minor = cur.u32("newest minor version")?;
                let n = cur.count32(1, "unrecognized option count")?;
                let mut unrecognized = Vec::with_capacity(n);
                for _ in 0..n {
                    unrecognized.push(cur.string("unrecognized option")?);
                }
                BackendMessage::NegotiateProtocolVersion {
                    newest_minor,
                    unrecognized,
                }
            }
            _ => return Err(DecodeError::UnknownTag { tag }),
        };
        cur.finish()?;
        Ok(msg)
    }

    /// The tag byte of this message.
    pub fn tag(&self) -> u8 {
        use backend_tag as t;
        match self {
            BackendMessage::Authentication(_) => t::AUTHENTICATION,
            BackendMessage::ParameterStatus { .. } => t::PARAMETER_STATUS,
            BackendMessage::BackendKeyData { .. } => t::BACKEND_KEY_DATA,
            BackendMessage::ReadyForQuery { .. } => t::READY_FOR_QUERY,
            BackendMessage::RowDescription { .. } => t::ROW_DESCRIPTION,
            BackendMessage::DataRow { .. } => t::DATA_ROW,
            BackendMessage::CommandComplete { .. } => t::COMMAND_COMPLETE,
            BackendMessage::EmptyQueryResponse => t::EMPTY_QUERY_RESPONSE,
            BackendMessage::ErrorResponse(_) => t::ERROR_RESPONSE,
            BackendMessage::NoticeResponse(_) => t::NOTICE_RESPONSE,
            BackendMessage::NotificationResponse { .. } => t::NOTIFICATION_RESPONSE,
            BackendMessage::ParseComplete => t::PARSE_COMPLETE,
            BackendMessage::BindComplete => t::BIND_COMPLETE,
            BackendMessage::CloseComplete => t::CLOSE_COMPLETE,
            BackendMessage::NoData => t::NO_DATA,
            BackendMessage::PortalSuspended => t::PORTAL_SUSPENDED,
            BackendMessage::ParameterDescription { .. } => t::PARAMETER_DESCRIPTION,
            BackendMessage::CopyInResponse(_) => t::COPY_IN_RESPONSE,
            BackendMessage::CopyOutResponse(_) => t::COPY_OUT_RESPONSE,
            BackendMessage::CopyBothResponse(_) => t::COPY_BOTH_RESPONSE,
            BackendMessage::CopyData(_) => t::COPY_DATA,
            BackendMessage::CopyDone => t::COPY_DONE,
            BackendMessage::FunctionCallResponse { .. } => t::FUNCTION_CALL_RESPONSE,
            BackendMessage::NegotiateProtocolVersion { .. } => t::NEGOTIATE_PROTOCOL_VERSION,
        }
    }

    /// Appends the encoded message to `buf`.
    pub fn encode(&self, buf: &mut BytesMut) {
        let at = begin(buf, self.tag());
        match self {
            BackendMessage::Authentication(a) => a.encode_body(buf),
            BackendMessage::ParameterStatus { name, value } => {
                put_cstr(buf, name.as_bytes());
                put_cstr(buf, value.as_bytes());
            }
            BackendMessage::BackendKeyData {
                process_id,
                secret_key,
            } => {
                buf.put_i32(*process_id);
                buf.put_i32(*secret_key);
            }
            BackendMessage::ReadyForQuery { status } => buf.put_u8(status.as_byte()),
            BackendMessage::RowDescription { fields } => {
                buf.put_i16(fields.len() as i16);
                for f in fields {
                    put_field(buf, f);
                }
            }
            BackendMessage::DataRow { values } => encode_data_row_body(buf, values),
            BackendMessage::CommandComplete { tag } => put_cstr(buf, tag),
            BackendMessage::ErrorResponse(f) | BackendMessage::NoticeResponse(f) => {
                f.encode_body(buf)
            }
            BackendMessage::NotificationResponse {
                process_id,
                channel,
                payload,
            } => {
                buf.put_i32(*process_id);
                put_cstr(buf, channel.as_bytes());
                put_cstr(buf, payload.as_bytes());
            }
            BackendMessage::EmptyQueryResponse
            | BackendMessage::ParseComplete
            | BackendMessage::BindComplete
            | BackendMessage::CloseComplete
            | BackendMessage::NoData
            | BackendMessage::PortalSuspended
            | BackendMessage::CopyDone => {}
            BackendMessage::ParameterDescription { types } => {
                buf.put_i16(types.len() as i16);
                for t in types {
                    buf.put_u32(*t);
                }
            }
            BackendMessage::CopyInResponse(c)
            | BackendMessage::CopyOutResponse(c)
            | BackendMessage::CopyBothResponse(c) => {
                buf.put_i8(c.format);
                put_i16s(buf, &c.column_formats);
            }
            BackendMessage::CopyData(data) => buf.put_slice(data),
            BackendMessage::FunctionCallResponse { value } => put_nullable(buf, value.as_deref()),
            BackendMessage::NegotiateProtocolVersion {
                newest_minor,
                unrecognized,
            } => {
                buf.put_u32(*newest_minor);
                buf.put_i32(unrecognized.len() as i32);
                for u in unrecognized {
                    put_cstr(buf, u.as_bytes());
                }
            }
        }
        finish(buf, at);
    }
}

/// Writes a DataRow from borrowed values, without building a [`BackendMessage`].
pub fn encode_data_row<V: AsRef<[u8]>>(buf: &mut BytesMut, values: &[Option<V>]) {
    let at = begin(buf, backend_tag::DATA_ROW);
    encode_data_row_body(buf, values);
    finish(buf, at);
}

fn encode_data_row_body<V: AsRef<[u8]>>(buf: &mut BytesMut, values: &[Option<V>]) {
    buf.put_i16(values.len() as i16);
    for v in values {
        put_nullable(buf, v.as_ref().map(AsRef::as_ref));
    }
}

pub(crate) fn put_field(buf: &mut BytesMut, f: &FieldDescription) {
    put_cstr(buf, f.name.as_bytes());
    buf.put_u32(f.table_oid);
    buf.put_i16(f.column_id);
    buf.put_u32(f.type_oid);
    buf.put_i16(f.type_size);
    buf.put_i32(f.type_modifier);
    buf.put_i16(f.format);
}

fn decode_row_description(cur: &mut Cursor) -> Result<BackendMessage, DecodeError> {
    // Each field is at least a NUL plus 18 bytes of integers.
    let n = cur.count16(19, "field count")?;
    let mut fields = Vec::with_capacity(n);
    for _ in 0..n {
        fields.push(FieldDescription {
            name: cur.string("field name")?,
            table_oid: cur.u32("table oid")?,
            column_id: cur.i16("column id")?,
            type_oid: cur.u32("type oid")?,
            type_size: cur.i16("type size")?,
            type_modifier: cur.i32("type modifier")?,
            format: cur.i16("format")?,
        });
    }
    Ok(BackendMessage::RowDescription { fields })
}

fn decode_copy(cur: &mut Cursor) -> Result<CopyResponse, DecodeError> {
    Ok(CopyResponse {
        format: cur.i8("copy format")?,
        column_formats: i16s(cur, "column format")?,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn data_row_values_are_slices_of_the_received_buffer() {
        let mut buf = BytesMut::new();
        encode_data_row(&mut buf, &[Some("abc"), None]);
        let Some(BackendMessage::DataRow { values }) =
            BackendMessage::decode(&mut buf, 8192).unwrap()
        else {
            panic!("not a data row")
        };
        assert_eq!(values, vec![Some(Bytes::from_static(b"abc")), None]);
    }

    #[test]
    fn ready_for_query_with_unknown_status_is_invalid() {
        let mut buf = BytesMut::from(&b"Z\0\0\0\x05X"[..]);
        assert_eq!(
            BackendMessage::decode(&mut buf, 8192),
            Err(DecodeError::InvalidValue {
                field: "transaction status"
            })
        );
    }

    #[test]
    fn negative_null_length_other_than_minus_one_is_invalid() {
        let mut buf = BytesMut::from(&b"D\0\0\0\x0a\0\x01\xff\xff\xff\xfe"[..]);
        assert_eq!(
            BackendMessage::decode(&mut buf, 8192),
            Err(DecodeError::InvalidValue {
                field: "column value"
            })
        );
    }
}
