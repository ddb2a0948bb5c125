//! The admin console's I/O side: the virtual database `pgbouncer`.

use std::sync::Arc;

use bytes::BytesMut;

use crate::runtime::Runtime;
use crate::session::Exit;
use crate::shared::Shared;
use crate::stream::Stream;

/// What the console needs from the session.
pub struct ConsoleIo<'a> {
    /// Shared state.
    pub shared: &'a Arc<Shared>,
    /// Configuration.
    pub rt: &'a Arc<Runtime>,
    /// Client socket.
    pub stream: &'a mut Stream,
    /// Read buffer.
    pub buf: &'a mut BytesMut,
    /// max_packet_size.
    pub max: u32,
}

/// Serves a console session.
pub(crate) async fn serve(io: ConsoleIo<'_>, user: &str) -> Exit {
    let _ = (io, user);
    Exit::fatal("not allowed")
}
