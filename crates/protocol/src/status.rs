//! Session status messages: ReadyForQuery, ParameterStatus, BackendKeyData, CommandComplete.
//!
//! PostgreSQL docs, "Message Formats" and "Message Flow: Start-up / Simple Query". These
//! have small allocation-free encoders because the daemon writes them for every client.

use bytes::{BufMut, BytesMut};

use crate::backend::backend_tag;
use crate::header::{begin, finish, put_cstr};

/// Transaction status in ReadyForQuery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransactionStatus {
    /// `'I'`: not in a transaction block.
    Idle,
    /// `'T'`: in a transaction block.
    InTransaction,
    /// `'E'`: in a failed transaction block.
    Failed,
}

impl TransactionStatus {
    /// The status byte.
    pub fn as_byte(self) -> u8 {
        match self {
            TransactionStatus::Idle => b'I',
            TransactionStatus::InTransaction => b'T',
            TransactionStatus::Failed => b'E',
        }
    }

    /// Parses a status byte.
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            b'I' => Some(TransactionStatus::Idle),
            b'T' => Some(TransactionStatus::InTransaction),
            b'E' => Some(TransactionStatus::Failed),
            _ => None,
        }
    }
}

/// Writes ReadyForQuery.
pub fn encode_ready_for_query(buf: &mut BytesMut, status: TransactionStatus) {
    buf.put_u8(backend_tag::READY_FOR_QUERY);
    buf.put_u32(5);
    buf.put_u8(status.as_byte());
}

/// Writes ParameterStatus.
pub fn encode_parameter_status(buf: &mut BytesMut, name: &str, value: &str) {
    let at = begin(buf, backend_tag::PARAMETER_STATUS);
    put_cstr(buf, name.as_bytes());
    put_cstr(buf, value.as_bytes());
    finish(buf, at);
}

/// Writes BackendKeyData.
pub fn encode_backend_key_data(buf: &mut BytesMut, process_id: i32, secret_key: i32) {
    buf.put_u8(backend_tag::BACKEND_KEY_DATA);
    buf.put_u32(12);
    buf.put_i32(process_id);
    buf.put_i32(secret_key);
}

/// Writes CommandComplete with a command tag such as `SHOW` or `SELECT 3`.
pub fn encode_command_complete(buf: &mut BytesMut, tag: &str) {
    let at = begin(buf, backend_tag::COMMAND_COMPLETE);
    put_cstr(buf, tag.as_bytes());
    finish(buf, at);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::backend::BackendMessage;

    fn same(small: impl FnOnce(&mut BytesMut), message: BackendMessage) {
        let (mut a, mut b) = (BytesMut::new(), BytesMut::new());
        small(&mut a);
        message.encode(&mut b);
        assert_eq!(a, b);
    }

    #[test]
    fn small_encoders_match_the_enum_encoding() {
        same(
            |b| encode_ready_for_query(b, TransactionStatus::Failed),
            BackendMessage::ReadyForQuery {
                status: TransactionStatus::Failed,
            },
        );
        same(
            |b| encode_parameter_status(b, "client_encoding", "UTF8"),
            BackendMessage::ParameterStatus {
                name: "client_encoding".into(),
                value: "UTF8".into(),
            },
        );
        same(
            |b| encode_backend_key_data(b, 7, -9),
            BackendMessage::BackendKeyData {
                process_id: 7,
                secret_key: -9,
            },
        );
        same(
            |b| encode_command_complete(b, "SELECT 1"),
            BackendMessage::CommandComplete {
                tag: Bytes::from_static(b"SELECT 1"),
            },
        );
    }

    #[test]
    fn status_bytes_round_trip() {
        for s in [
            TransactionStatus::Idle,
            TransactionStatus::InTransaction,
            TransactionStatus::Failed,
        ] {
            assert_eq!(TransactionStatus::from_byte(s.as_byte()), Some(s));
        }
        assert_eq!(TransactionStatus::from_byte(b'X'), None);
    }
}
