//! `DecodeError`: everything that can be wrong with bytes received from a peer.
//!
//! Mirrors the checks PostgreSQL and PgBouncer apply to incoming packets (PostgreSQL docs,
//! "Message Formats"; PgBouncer `proto.c: get_header`, `client.c: handle_client_startup`).

use thiserror::Error;

/// Why a buffer could not be decoded as a protocol message.
///
/// Every variant carries values, not sentences; [`DecodeError::pgbouncer_message`] gives the
/// text PgBouncer sends to the peer before it disconnects.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The message body is shorter than the fields it must contain.
    #[error("message truncated: {field} needs {needed} bytes, {available} left")]
    Truncated {
        /// Which field could not be read.
        field: &'static str,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes left in the body.
        available: usize,
    },
    /// The declared length is above the configured limit.
    #[error("message length {len} exceeds max_packet_size {max}")]
    MessageTooLarge {
        /// Declared length (including the length field itself).
        len: u32,
        /// The limit that was applied.
        max: u32,
    },
    /// The declared length is too small to hold the length field (or a startup code).
    #[error("message length {len} is too small")]
    LengthTooSmall {
        /// Declared length.
        len: u32,
    },
    /// The declared length does not match what the message kind requires.
    #[error("message length {len} is invalid, expected {expected}")]
    UnexpectedLength {
        /// Declared length.
        len: u32,
        /// Required length.
        expected: u32,
    },
    /// A message tag this decoder does not know.
    #[error("unknown message tag {tag:#04x}")]
    UnknownTag {
        /// The tag byte.
        tag: u8,
    },
    /// A text field is not valid UTF-8.
    #[error("invalid utf-8 in {field}")]
    InvalidUtf8 {
        /// Which field.
        field: &'static str,
    },
    /// A C string field has no terminating NUL byte inside the body.
    #[error("missing nul terminator in {field}")]
    MissingNul {
        /// Which field.
        field: &'static str,
    },
    /// The body continues after its last field.
    #[error("{extra} trailing bytes after message body")]
    TrailingBytes {
        /// How many bytes were left over.
        extra: usize,
    },
    /// A startup packet whose parameter list does not end with its terminator as last byte.
    #[error("invalid startup packet layout: expected terminator as last byte")]
    InvalidStartupLayout,
    /// A startup packet asking for a protocol version other than 3.x.
    #[error("unsupported protocol version {major}.{minor}")]
    UnsupportedProtocolVersion {
        /// Major version (2 is the old V2 protocol).
        major: u16,
        /// Minor version.
        minor: u16,
    },
    /// A field holds a value outside its allowed set (negative count, unknown code, ...).
    #[error("invalid value in {field}")]
    InvalidValue {
        /// Which field.
        field: &'static str,
    },
}

impl DecodeError {
    /// The text PgBouncer sends (as a FATAL ErrorResponse) when it disconnects a peer for
    /// this error.
    pub fn pgbouncer_message(&self) -> String {
        match self {
            // PgBouncer compat: `bad packet header: '<hex>'`; we only kept the length.
            DecodeError::LengthTooSmall { len } => {
                format!("bad packet header: '{len:08x}'")
            }
            DecodeError::MessageTooLarge { len, .. } => {
                format!("bad packet header: '{len:08x}'")
            }
            DecodeError::UnknownTag { .. } => "unknown pkt".to_owned(),
            DecodeError::UnsupportedProtocolVersion { major: 2, .. } => {
                "old V2 protocol not supported".to_owned()
            }
            DecodeError::UnsupportedProtocolVersion { .. } => "bad packet header".to_owned(),
            DecodeError::InvalidStartupLayout => self.to_string(),
            _ => "broken packet".to_owned(),
        }
    }
}
