//! `LinkError`: why the tracker refuses a stream, who is to blame, and the text
//! PgBouncer sends (client.c `handle_client_work`, proto.c `get_header`, messages.c,
//! prepare.c, server.c `handle_server_work`).

use thiserror::Error;

/// Which peer broke the protocol: that side is the one disconnected with the error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    /// The client sent something we refuse.
    Client,
    /// The server sent something we cannot follow.
    Server,
}

/// A stream the tracker cannot go on with. Every variant carries values; the texts
/// PgBouncer uses are in [`LinkError::pgbouncer_message`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum LinkError {
    /// A client header whose length is below 4 or above `max_packet_size`; `hex` is the
    /// start of what was buffered there, as PgBouncer prints it.
    #[error("client header {hex} has length {len} (max_packet_size {max})")]
    ClientBadHeader {
        /// Up to 8 bytes from the header on, in hex.
        hex: String,
        /// The declared length.
        len: u32,
        /// The limit.
        max: u32,
    },
    /// A message type clients may not send after login.
    #[error("unknown message type {tag:#04x} from client")]
    ClientUnknownMessage {
        /// The tag.
        tag: u8,
    },
    /// A Parse, Bind, Describe or Close whose fields do not parse.
    #[error("broken {kind} message from client")]
    ClientBrokenMessage {
        /// "Parse", "Bind", "Describe" or "Close".
        kind: &'static str,
    },
    /// A statement or portal name longer than the tracker holds.
    #[error("client {kind} names are {len} bytes, over the {max}-byte limit")]
    ClientNameTooLong {
        /// The message kind.
        kind: &'static str,
        /// Bytes of names seen.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A named Parse reusing one of the client's statement names without a Close.
    #[error("prepared statement '{name}' was already prepared")]
    PreparedNameInUse {
        /// The client's statement name.
        name: String,
    },
    /// A Bind or Describe of a statement name the client never prepared.
    #[error("prepared statement '{name}' not found")]
    PreparedNotFound {
        /// The client's statement name.
        name: String,
    },
    /// A server header with a length below 4 or above `max_packet_size`.
    #[error("server header {hex} has length {len} (max_packet_size {max})")]
    ServerBadHeader {
        /// Up to 8 bytes from the header on, in hex.
        hex: String,
        /// The declared length.
        len: u32,
        /// The limit.
        max: u32,
    },
    /// A ReadyForQuery whose length is not 5.
    #[error("ReadyForQuery of length {len} from server")]
    ServerBrokenReady {
        /// The declared length.
        len: u32,
    },
    /// A message type a logged-in server does not send.
    #[error("unknown message type {tag:#04x} from server")]
    ServerUnknownMessage {
        /// The tag.
        tag: u8,
    },
    /// Statement pooling: the server reported a transaction block.
    #[error("transaction block in statement pooling mode")]
    StatementModeTransaction,
}

impl LinkError {
    /// Which side broke the protocol.
    pub fn blame(&self) -> Blame {
        match self {
            LinkError::ServerBadHeader { .. }
            | LinkError::ServerBrokenReady { .. }
            | LinkError::ServerUnknownMessage { .. }
            | LinkError::StatementModeTransaction => Blame::Server,
            _ => Blame::Client,
        }
    }

    /// The FATAL message PgBouncer sends the client (SQLSTATE 08P01) when it closes it
    /// for this error.
    pub fn pgbouncer_message(&self) -> String {
        match self {
            LinkError::ClientBadHeader { hex, .. } => format!("bad packet header: '{hex}'"),
            LinkError::ClientUnknownMessage { .. } => "unknown pkt".to_owned(),
            LinkError::ClientBrokenMessage { kind } => format!("broken {kind} packet"),
            // PgBouncer compat: it buffers such packets whole; we hold names only, up to
            // a limit, and refuse longer ones as broken.
            LinkError::ClientNameTooLong { kind, .. } => format!("broken {kind} packet"),
            LinkError::PreparedNameInUse { .. } => {
                "prepared statement name is already in use".to_owned()
            }
            LinkError::PreparedNotFound { .. } => "prepared statement did not exist".to_owned(),
            LinkError::ServerBadHeader { hex, .. } => format!("bad packet header: '{hex}'"),
            LinkError::ServerBrokenReady { .. } => "broken ReadyForQuery packet".to_owned(),
            LinkError::ServerUnknownMessage { .. } => "unknown pkt".to_owned(),
            LinkError::StatementModeTransaction => {
                "transaction blocks not allowed in statement pooling mode".to_owned()
            }
        }
    }
}

/// Up to 8 bytes as lowercase hex (PgBouncer's `hdr2hex`).
pub(crate) fn hex8(bytes: &[u8]) -> String {
    bytes.iter().take(8).map(|b| format!("{b:02x}")).collect()
}
