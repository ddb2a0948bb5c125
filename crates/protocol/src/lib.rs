//! PostgreSQL wire protocol 3.0 codec for pgbouncer-rs: both directions, no I/O, no runtime,
//! never panics on peer input.
//!
//! * [`Header::peek`]: tag and length of the next message without touching its body, for
//!   zero-copy forwarding.
//! * [`StartupPacket`], [`FrontendMessage`], [`BackendMessage`]: `decode(&mut BytesMut,
//!   max_packet_size) -> Result<Option<_>, DecodeError>` (`Ok(None)` while incomplete,
//!   exactly one message consumed on `Some`) and `encode(&self, &mut BytesMut)`.
//! * Allocation-free encoders for what the daemon writes itself (`encode_ready_for_query`,
//!   `encode_error`, `encode_auth_sasl`, ...), [`ResultSet`] for the admin console.
//! * [`auth`]: MD5 and SCRAM-SHA-256, as server and as client; randomness is passed in.
//! * [`link`]: the protocol tracker of a client-server link: what to forward, inject or
//!   answer, and when the server is clean enough to go back to the pool.
//!
//! See the PostgreSQL documentation, chapter "Frontend/Backend Protocol", sections "Message
//! Flow" and "Message Formats".
//!
//! # Example
//!
//! ```rust
//! use bytes::BytesMut;
//! use pgbouncer_protocol::{
//!     encode_query, encode_ready_for_query, BackendMessage, FrontendMessage, Header,
//!     TransactionStatus, DEFAULT_MAX_PACKET_SIZE,
//! };
//!
//! // A client sends a query; we decode it.
//! let mut from_client = BytesMut::new();
//! encode_query(&mut from_client, "select 1");
//! let msg = FrontendMessage::decode(&mut from_client, DEFAULT_MAX_PACKET_SIZE).unwrap();
//! assert!(matches!(msg, Some(FrontendMessage::Query { .. })));
//!
//! // A server answers; we only peek at headers to forward, and decode what we act on.
//! let mut from_server = BytesMut::new();
//! encode_ready_for_query(&mut from_server, TransactionStatus::Idle);
//! let header = Header::peek(&from_server, DEFAULT_MAX_PACKET_SIZE).unwrap().unwrap();
//! assert_eq!((header.tag, header.total_len()), (b'Z', 6));
//! let msg = BackendMessage::decode(&mut from_server, DEFAULT_MAX_PACKET_SIZE).unwrap();
//! assert_eq!(msg, Some(BackendMessage::ReadyForQuery { status: TransactionStatus::Idle }));
//! ```

#![forbid(unsafe_code)]
#![warn(clippy::unwrap_used)]

pub mod auth;
mod authentication;
mod backend;
pub mod cancel;
mod cursor;
mod decode;
mod frontend;
pub mod fuzzing;
mod header;
pub mod link;
mod password;
mod response;
mod result_set;
mod startup;
mod status;

pub use authentication::{
    encode_auth_cleartext, encode_auth_md5, encode_auth_ok, encode_auth_sasl,
    encode_auth_sasl_continue, encode_auth_sasl_final, Authentication,
};
pub use backend::{backend_tag, encode_data_row, BackendMessage, CopyResponse, FieldDescription};
pub use decode::DecodeError;
pub use frontend::{
    encode_query, encode_terminate, frontend_tag, FrontendMessage, TERMINATE_MESSAGE,
};
pub use header::{Header, DEFAULT_MAX_PACKET_SIZE};
pub use password::{
    encode_password, encode_sasl_initial_response, encode_sasl_response, password_from_body,
    SaslInitialResponse,
};
pub use response::{
    encode_error, encode_notice, ErrorFields, FIELD_CODE, FIELD_DETAIL, FIELD_HINT, FIELD_MESSAGE,
    FIELD_SEVERITY, FIELD_SEVERITY_NONLOCALIZED,
};
pub use result_set::{oid, Column, ResultSet};
pub use startup::{
    is_direct_tls, CancelRequest, ProtocolVersion, SslAnswer, StartupMessage, StartupPacket,
    CANCEL_REQUEST_CODE, ENCRYPTION_ACCEPTED, ENCRYPTION_REFUSED, GSSENC_REQUEST_CODE,
    MAX_STARTUP_PACKET_LENGTH, SSL_REQUEST_CODE,
};
pub use status::{
    encode_backend_key_data, encode_command_complete, encode_parameter_status,
    encode_ready_for_query, TransactionStatus,
};
