//! The server direction: which reply answers which request, errors and the skip to
//! Sync, COPY, ReadyForQuery and the transaction status, DISCARD ALL (PgBouncer's
//! server.c `handle_server_work`; PostgreSQL's postgres.c error recovery).

use bytes::BytesMut;

use super::error::hex8;
use super::framing::Step;
use super::queue::Expect;
use super::{FromServer, Link, LinkError};
use crate::backend::backend_tag as b;
use crate::frontend::frontend_tag as t;
use crate::header::Header;
use crate::status::TransactionStatus;

/// ParameterStatus bodies longer than this are forwarded without being tracked.
const PARAM_LIMIT: usize = 64 * 1024;
/// `DEALLOCATE ALL\0` is the longest command tag we look at.
const TAG_LIMIT: usize = 16;

/// What to do with the body of the server message being read.
#[derive(Debug)]
pub(crate) enum Body {
    /// Pass it on.
    Forward,
    /// Drop it (the reply to something we injected).
    Discard,
    /// Keep a copy (up to `limit` bytes); `withhold` holds the message back until it is
    /// complete (ReadyForQuery, which may be refused).
    Capture {
        tag: u8,
        withhold: bool,
        at: Option<usize>,
        limit: usize,
        buf: BytesMut,
    },
}

impl Link {
    /// Feeds the next chunk the server sent. On `Err` the server must be closed and the
    /// client disconnected with [`LinkError::pgbouncer_message`].
    pub fn from_server(&mut self, data: &[u8], out: &mut FromServer) -> Result<(), LinkError> {
        let max = self.cfg.max_packet_size;
        let mut pos = 0;
        while pos < data.len() {
            if let Some(end) = self.whole_data_row(data, pos, max) {
                // The bulk of a result set, taken in one step: what the general path
                // below does for a DataRow (forward it, the server is not ready).
                self.server_tag = b::DATA_ROW;
                self.ready = false;
                out.to_client.input(pos..end);
                self.settle(&mut out.to_client);
                pos = end;
                continue;
            }
            let step =
                self.server
                    .step(data, &mut pos, max)
                    .map_err(|e| LinkError::ServerBadHeader {
                        hex: hex8(&e.start),
                        len: e.len,
                        max,
                    })?;
            match step {
                Step::NeedMore => break,
                Step::Header { header, at } => {
                    self.server_header(header, at, out)?;
                    if header.body_len() == 0 {
                        self.server_end(pos, out)?;
                    }
                }
                Step::Body { start, end, last } => {
                    match &mut self.sbody {
                        Body::Forward => out.to_client.input(start..end),
                        Body::Discard => {}
                        Body::Capture {
                            withhold,
                            limit,
                            buf,
                            ..
                        } => {
                            let room = limit.saturating_sub(buf.len()).min(end - start);
                            buf.extend_from_slice(&data[start..start + room]);
                            if !*withhold {
                                out.to_client.input(start..end);
                            }
                        }
                    }
                    if last {
                        self.server_end(pos, out)?;
                    }
                }
            }
        }
        // A held message's header position only means something in its own chunk.
        if let Body::Capture { at, .. } = &mut self.sbody {
            *at = None;
        }
        Ok(())
    }

    fn server_header(
        &mut self,
        h: Header,
        at: Option<usize>,
        out: &mut FromServer,
    ) -> Result<(), LinkError> {
        let tag = h.tag;
        if tag == b::READY_FOR_QUERY && h.len != 5 {
            // Held back whole until its status is known: only the real size is taken.
            return Err(LinkError::ServerBrokenReady { len: h.len });
        }
        self.server_tag = tag;
        self.sbody = match tag {
            b::READY_FOR_QUERY => Body::Capture {
                tag,
                withhold: true,
                at,
                limit: 1,
                buf: std::mem::take(&mut self.spare_capture),
            },
            b::PARAMETER_STATUS => Body::Capture {
                tag,
                withhold: false,
                at,
                limit: PARAM_LIMIT,
                buf: std::mem::take(&mut self.spare_capture),
            },
            b::COMMAND_COMPLETE if self.prepared() => Body::Capture {
                tag,
                withhold: false,
                at,
                limit: TAG_LIMIT,
                buf: std::mem::take(&mut self.spare_capture),
            },
            b::PARSE_COMPLETE if self.front_is_injected(t::PARSE) => Body::Discard,
            b::CLOSE_COMPLETE if self.front_is_injected(t::CLOSE) => Body::Discard,
            b::ERROR_RESPONSE
            | b::NOTICE_RESPONSE
            | b::NOTIFICATION_RESPONSE
            | b::COMMAND_COMPLETE
            | b::PARSE_COMPLETE
            | b::BIND_COMPLETE
            | b::CLOSE_COMPLETE
            | b::PARAMETER_DESCRIPTION
            | b::ROW_DESCRIPTION
            | b::NO_DATA
            | b::EMPTY_QUERY_RESPONSE
            | b::PORTAL_SUSPENDED
            | b::DATA_ROW
            | b::COPY_DATA
            | b::COPY_DONE
            | b::COPY_IN_RESPONSE
            | b::COPY_OUT_RESPONSE
            | b::COPY_BOTH_RESPONSE
            | b::FUNCTION_CALL_RESPONSE => Body::Forward,
            _ => return Err(LinkError::ServerUnknownMessage { tag }),
        };
        let forwarded = match &self.sbody {
            Body::Forward => true,
            Body::Capture { withhold, .. } => !withhold,
            Body::Discard => false,
        };
        if forwarded {
            match at {
                Some(at) => out.to_client.input(at..at + Header::SIZE),
                None => out.to_client.own_bytes(self.server.held_header()),
            }
        }
        Ok(())
    }

    /// Where a DataRow that starts at `pos`, at a message boundary, ends, when all of it
    /// is in `data` and its length is acceptable (anything else takes the general path).
    fn whole_data_row(&self, data: &[u8], pos: usize, max: u32) -> Option<usize> {
        if !self.server.at_boundary() {
            return None;
        }
        let header = Header::peek(data.get(pos..)?, max).ok()??;
        let end = pos.checked_add(header.total_len())?;
        (header.tag == b::DATA_ROW && end <= data.len()).then_some(end)
    }

    /// The front of the queue is a request we injected with this tag.
    fn front_is_injected(&self, tag: u8) -> bool {
        matches!(self.queue.front(), Some(Expect::Reply { tag: t, forward: false, .. }) if *t == tag)
    }

    /// The current server message is complete; `pos` is where it ends in `data`.
    fn server_end(&mut self, pos: usize, out: &mut FromServer) -> Result<(), LinkError> {
        let body = std::mem::replace(&mut self.sbody, Body::Forward);
        let (tag, captured) = match body {
            Body::Capture {
                tag,
                withhold: true,
                at,
                buf,
                ..
            } => {
                let status = buf.first().and_then(|s| TransactionStatus::from_byte(*s));
                let Some(status) = status else {
                    // Not a status PostgreSQL sends: forward it, never trust the link.
                    self.desync("ReadyForQuery with an unknown status");
                    self.emit_held(pos, at, &buf, out);
                    return Ok(());
                };
                if self.cfg.statement_mode && status != TransactionStatus::Idle {
                    return Err(LinkError::StatementModeTransaction);
                }
                self.emit_held(pos, at, &buf, out);
                (tag, buf)
            }
            Body::Capture { tag, buf, .. } => (tag, buf),
            Body::Forward | Body::Discard => (self.server_tag, BytesMut::new()),
        };
        self.ready = match tag {
            b::READY_FOR_QUERY => true,
            b::NOTIFICATION_RESPONSE | b::PARAMETER_STATUS => self.ready,
            _ => false,
        };
        match tag {
            b::READY_FOR_QUERY => self.ready_for_query(&captured, out),
            b::ERROR_RESPONSE => self.error_response(),
            b::PARSE_COMPLETE => self.answered(t::PARSE),
            b::BIND_COMPLETE => self.answered(t::BIND),
            b::CLOSE_COMPLETE => self.answered(t::CLOSE),
            b::ROW_DESCRIPTION | b::NO_DATA => self.answered_if(t::DESCRIBE),
            b::COMMAND_COMPLETE => {
                if self.server_copy {
                    self.end_copy();
                }
                if self.prepared()
                    && (captured.as_ref() == b"DISCARD ALL\0"
                        || captured.as_ref() == b"DEALLOCATE ALL\0")
                {
                    self.forget_statements();
                }
                self.answered_if(t::EXECUTE);
            }
            b::EMPTY_QUERY_RESPONSE | b::PORTAL_SUSPENDED => self.answered_if(t::EXECUTE),
            b::COPY_IN_RESPONSE | b::COPY_BOTH_RESPONSE => self.start_copy(),
            b::PARAMETER_STATUS => {
                if let Some(p) = parameter(&captured) {
                    out.params.push(p);
                }
            }
            _ => {}
        }
        self.keep_capture(captured);
        self.settle(&mut out.to_client);
        Ok(())
    }

    /// Keeps a capture buffer for the next captured message, unless it grew large (a
    /// long ParameterStatus): every ReadyForQuery is captured, so this saves an
    /// allocation per reply.
    fn keep_capture(&mut self, buf: BytesMut) {
        super::keep_spare(&mut self.spare_capture, buf);
    }

    /// Writes a withheld message: from the chunk when it is all there, else copied.
    fn emit_held(&self, pos: usize, at: Option<usize>, body: &[u8], out: &mut FromServer) {
        match at {
            Some(at) => out.to_client.input(at..pos),
            None => {
                out.to_client.own_bytes(self.server.held_header());
                out.to_client.own_bytes(body);
            }
        }
    }

    fn ready_for_query(&mut self, captured: &[u8], out: &mut FromServer) {
        let status = captured
            .first()
            .and_then(|s| TransactionStatus::from_byte(*s))
            .unwrap_or(TransactionStatus::Failed);
        match self.queue.front() {
            Some(Expect::Ready(_)) => {
                self.queue.pop();
            }
            _ => self.desync("ReadyForQuery nothing asked for"),
        }
        self.status = status;
        out.readies += 1;
        if status == TransactionStatus::Idle {
            out.idle_readies += 1;
        }
    }

    /// The reply that ends a request with `tag` arrived.
    fn answered(&mut self, tag: u8) {
        match self.queue.front() {
            Some(Expect::Reply { tag: t, .. }) if *t == tag => {
                self.queue.pop();
            }
            _ => self.desync("a reply to a request not at the front"),
        }
    }

    /// A reply that ends a request with `tag` only when one is at the front (a
    /// RowDescription inside a simple query answers nothing by itself).
    fn answered_if(&mut self, tag: u8) {
        if matches!(self.queue.front(), Some(Expect::Reply { tag: t, .. }) if *t == tag) {
            self.queue.pop();
        }
    }

    /// An ErrorResponse: in extended protocol the server now skips to the next Sync,
    /// and the requests it skips owe nothing (postgres.c `ignore_till_sync`).
    fn error_response(&mut self) {
        if self.server_copy {
            self.end_copy();
            if self.copy_ambiguous > 0 {
                // Some Syncs or requests went inside the COPY data: whether the server
                // read them as COPY or after the error cannot be told.
                self.desync("a COPY failed with Syncs among its data");
            }
        }
        match self.queue.front() {
            Some(Expect::Ready(_)) => {} // ReadyForQuery follows
            Some(Expect::Reply { .. }) => self.skip_to_sync(),
            _ => self.desync("an error nothing asked for"), // the server is going away
        }
    }

    fn skip_to_sync(&mut self) {
        let mut skipped = Vec::new();
        while let Some(e) = self.queue.front() {
            if matches!(e, Expect::Ready(t::SYNC)) {
                break;
            }
            if let Some(e) = self.queue.pop() {
                skipped.push(e);
            }
        }
        for e in skipped.iter().rev() {
            if let Some(u) = e.undo() {
                u.undo(&mut self.client_statements, &mut self.server_statements);
            }
        }
        if self.queue.is_empty() {
            self.skipping = true;
        }
    }

    /// CopyInResponse / CopyBothResponse: the client messages already queued after the
    /// COPY's request belong to it, up to CopyDone/CopyFail (postgres.c `CopyGetData`).
    fn start_copy(&mut self) {
        self.server_copy = true;
        self.copy_data_seen = false;
        self.copy_ambiguous = 0;
        let mut ended = false;
        while let Some(e) = self.queue.get(1) {
            match e {
                Expect::Copy(t::COPY_DATA) => {
                    self.copy_data_seen = true;
                    self.queue.remove(1);
                }
                Expect::Copy(_) => {
                    self.queue.remove(1);
                    ended = true;
                    break;
                }
                Expect::Ready(t::SYNC) => {
                    if self.copy_data_seen {
                        self.copy_ambiguous += 1;
                    }
                    self.queue.remove(1);
                }
                _ => {
                    // Any other request fails the COPY and is consumed by it.
                    if self.copy_data_seen {
                        self.copy_ambiguous += 1;
                    }
                    if let Some(e) = self.queue.remove(1) {
                        if let Some(u) = e.undo() {
                            u.undo(&mut self.client_statements, &mut self.server_statements);
                        }
                    }
                    ended = true;
                    break;
                }
            }
        }
        self.client_copy = !ended;
    }

    /// The server's answers stopped matching what was asked: the link is never clean
    /// again (the first reason is kept for the log).
    pub(super) fn desync(&mut self, why: &'static str) {
        self.uncertain.get_or_insert(why);
    }

    fn end_copy(&mut self) {
        self.server_copy = false;
        self.client_copy = false;
        self.copy_data_seen = false;
    }

    /// DISCARD ALL / DEALLOCATE ALL ran: the server and the client have no statements,
    /// except those the requests queued after it prepare again.
    fn forget_statements(&mut self) {
        self.client_statements.clear();
        self.server_statements.clear();
        for e in self.queue.after_front() {
            if let Some(u) = e.undo() {
                u.redo(&mut self.client_statements, &mut self.server_statements);
            }
        }
    }
}

/// `name\0value\0` of a ParameterStatus.
fn parameter(body: &[u8]) -> Option<(String, String)> {
    let n = body.iter().position(|&c| c == 0)?;
    let rest = &body[n + 1..];
    let v = rest.iter().position(|&c| c == 0)?;
    Some((
        String::from_utf8_lossy(&body[..n]).into_owned(),
        String::from_utf8_lossy(&rest[..v]).into_owned(),
    ))
}
