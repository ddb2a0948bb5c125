//! The client direction: which messages are allowed, what each one owes, and the
//! prepared-statement rewriting of Parse, Bind, Describe and Close (PgBouncer's
//! client.c `handle_client_work` and prepare.c).

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

use super::error::hex8;
use super::framing::Step;
use super::queue::{Expect, Undo};
use super::{put_message, FromClient, Link, LinkError, Output, Statement, NAME_LIMIT};
use crate::backend::backend_tag;
use crate::frontend::frontend_tag as t;
use crate::header::Header;

/// What to do with the body of the client message being read.
#[derive(Debug)]
pub(crate) enum Body {
    /// Pass it on as it arrives.
    Forward,
    /// Hold it until the fields a rewrite needs are complete.
    Hold {
        kind: Hold,
        hdr: [u8; Header::SIZE],
        buf: BytesMut,
        /// Where the header starts in the chunk being fed, while the message came whole
        /// in it (then the held bytes are still there to forward without a copy).
        at: Option<usize>,
    },
}

/// Which prepared-statement message is being held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hold {
    /// A Parse until its name ends (unnamed ones then stream).
    ParseName,
    /// A named Parse, whole: its text becomes a statement.
    Parse { name_len: usize },
    /// A Bind until its portal and statement names end (the parameters then stream).
    BindNames,
    /// A Describe (kind and name).
    Describe,
    /// A Close (kind and name).
    Close,
}

impl Link {
    /// Feeds the next chunk the client sent. On `Err` the client must be disconnected
    /// with [`LinkError::pgbouncer_message`]; what `out` holds then may be dropped.
    pub fn from_client(
        &mut self,
        data: &[u8],
        registry: &super::StatementRegistry,
        out: &mut FromClient,
    ) -> Result<(), LinkError> {
        let max = self.cfg.max_packet_size;
        if let Body::Hold { at, .. } = &mut self.cbody {
            *at = None; // offsets into the previous chunk
        }
        let mut pos = 0;
        while pos < data.len() {
            let step =
                self.client
                    .step(data, &mut pos, max)
                    .map_err(|b| LinkError::ClientBadHeader {
                        hex: hex8(&b.start),
                        len: b.len,
                        max,
                    })?;
            match step {
                Step::NeedMore => break,
                Step::Header { header, at } => {
                    out.requests = true;
                    if header.tag == t::TERMINATE {
                        out.terminated = true;
                        return Ok(());
                    }
                    self.client_header(header, at, out)?;
                    if header.body_len() == 0 {
                        self.client_end(registry, out)?;
                    }
                }
                Step::Body { start, end, last } => {
                    self.client_body(data, start, end, out)?;
                    if last {
                        self.client_end(registry, out)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// A client message starts: check its type, and decide what its body needs.
    fn client_header(
        &mut self,
        h: Header,
        at: Option<usize>,
        out: &mut FromClient,
    ) -> Result<(), LinkError> {
        let tag = h.tag;
        if !is_request(tag) {
            return Err(LinkError::ClientUnknownMessage { tag });
        }
        self.cbody = Body::Forward;
        if self.skipping {
            // The server ignores everything up to the next Sync (postgres.c
            // `ignore_till_sync`): pass it on untouched, only the Sync is answered.
            if tag == t::SYNC {
                self.skipping = false;
                self.queue.push(Expect::Ready(tag));
            }
            emit_header(&mut out.to_server, at, self.client.held_header());
            return Ok(());
        }
        if self.client_copy {
            self.copy_message(tag);
            emit_header(&mut out.to_server, at, self.client.held_header());
            return Ok(());
        }
        if self.prepared() {
            let kind = match tag {
                t::PARSE => Some(Hold::ParseName),
                t::BIND => Some(Hold::BindNames),
                t::DESCRIBE => Some(Hold::Describe),
                t::CLOSE => Some(Hold::Close),
                _ => None,
            };
            if let Some(kind) = kind {
                // Held in the spare buffer, a Parse too: most are unnamed, and a named
                // one moves to a buffer of its own once its name ends (`client_body`).
                let buf = std::mem::take(&mut self.spare_hold);
                self.cbody = Body::Hold {
                    kind,
                    hdr: *self.client.held_header(),
                    buf,
                    at,
                };
                return Ok(());
            }
        }
        emit_header(&mut out.to_server, at, self.client.held_header());
        self.push_forwarded(tag);
        Ok(())
    }

    /// The queue entry for a request forwarded as it is.
    fn push_forwarded(&mut self, tag: u8) {
        let e = match tag {
            t::QUERY | t::FUNCTION_CALL | t::SYNC => Expect::Ready(tag),
            t::PARSE | t::BIND | t::DESCRIBE | t::EXECUTE | t::CLOSE => Expect::Reply {
                tag,
                forward: true,
                undo: Undo::None,
            },
            t::COPY_DATA | t::COPY_DONE | t::COPY_FAIL => Expect::Copy(tag),
            _ => return, // Flush: nothing answers it
        };
        self.queue.push(e);
    }

    /// A message inside the client's COPY data (postgres.c `CopyGetData`): CopyData is
    /// data, CopyDone/CopyFail end it, Flush and Sync are ignored, anything else makes
    /// the COPY fail (and is consumed by it).
    fn copy_message(&mut self, tag: u8) {
        match tag {
            t::COPY_DATA => self.copy_data_seen = true,
            t::COPY_DONE | t::COPY_FAIL => self.client_copy = false,
            t::FLUSH => {}
            t::SYNC => {
                if self.copy_data_seen {
                    self.copy_ambiguous += 1;
                }
            }
            _ => {
                self.client_copy = false;
                if self.copy_data_seen {
                    self.copy_ambiguous += 1;
                }
            }
        }
    }

    fn client_body(
        &mut self,
        data: &[u8],
        start: usize,
        end: usize,
        out: &mut FromClient,
    ) -> Result<(), LinkError> {
        let Body::Hold { kind, buf, hdr, .. } = &mut self.cbody else {
            out.to_server.input(start..end);
            return Ok(());
        };
        buf.extend_from_slice(&data[start..end]);
        match *kind {
            Hold::ParseName => match buf.iter().position(|&b| b == 0) {
                Some(0) => self.release_held(t::PARSE, out),
                Some(i) => {
                    *kind = Hold::Parse { name_len: i };
                    // A named Parse's buffer becomes the statement's shared text for
                    // good: it moves to one of the body's size, and the spare stays.
                    let body_len = Header::peek(&hdr[..], u32::MAX)
                        .ok()
                        .flatten()
                        .map_or(buf.len(), |h| h.body_len().max(buf.len()));
                    let mut own = BytesMut::with_capacity(body_len);
                    own.extend_from_slice(buf);
                    let spare = std::mem::replace(buf, own);
                    super::keep_spare(&mut self.spare_hold, spare);
                }
                None => check_name_len(buf.len(), "Parse")?,
            },
            Hold::Parse { .. } => {}
            Hold::BindNames => {
                if let Some((portal, name)) = two_cstrs(buf) {
                    self.bind(portal, name, out)?;
                } else {
                    check_name_len(buf.len(), "Bind")?;
                }
            }
            Hold::Describe => check_name_len(buf.len(), "Describe")?,
            Hold::Close => check_name_len(buf.len(), "Close")?,
        }
        Ok(())
    }

    /// The current client message is complete.
    fn client_end(
        &mut self,
        registry: &super::StatementRegistry,
        out: &mut FromClient,
    ) -> Result<(), LinkError> {
        let body = std::mem::replace(&mut self.cbody, Body::Forward);
        if let Body::Hold { kind, hdr, buf, at } = body {
            if self.ignored_now() {
                self.pass_held(hdr, buf, at, out);
            } else {
                match kind {
                    Hold::ParseName => {
                        return Err(LinkError::ClientBrokenMessage { kind: "Parse" });
                    }
                    Hold::Parse { name_len } => {
                        self.named_parse(buf.freeze(), name_len, registry, out)?
                    }
                    Hold::BindNames => {
                        // Both names must end before the message does.
                        return Err(LinkError::ClientBrokenMessage { kind: "Bind" });
                    }
                    Hold::Describe => self.describe(hdr, buf, at, out)?,
                    Hold::Close => self.close(hdr, buf, at, out)?,
                }
            }
        }
        self.settle(&mut out.to_client);
        Ok(())
    }

    /// Whether the server will not run the held message: it began skipping to a Sync
    /// (an error before it) or a COPY began before it, while it was being held.
    fn ignored_now(&self) -> bool {
        self.skipping || self.client_copy
    }

    /// Passes a held message on as it came, to a server that will not run it (see
    /// [`Link::ignored_now`]); inside a COPY it counts as a message that ends the COPY.
    fn pass_held(
        &mut self,
        hdr: [u8; Header::SIZE],
        buf: BytesMut,
        at: Option<usize>,
        out: &mut FromClient,
    ) {
        self.forward_held(&hdr, buf, at, out);
        if !self.skipping && self.client_copy {
            self.copy_message(hdr[0]);
        }
    }

    /// Forwards a held message's header and bytes unchanged: as a range of the chunk
    /// when it is all there, else copied. The buffer is kept for the next hold.
    fn forward_held(
        &mut self,
        hdr: &[u8; Header::SIZE],
        mut buf: BytesMut,
        at: Option<usize>,
        out: &mut FromClient,
    ) {
        match at {
            Some(at) => out.to_server.input(at..at + Header::SIZE + buf.len()),
            None => {
                out.to_server.own_bytes(hdr);
                out.to_server.own_bytes(&buf);
            }
        }
        self.recycle(&mut buf);
    }

    /// Keeps a hold buffer for the next held message, unless a long name made it big.
    pub(super) fn recycle(&mut self, buf: &mut BytesMut) {
        super::keep_spare(&mut self.spare_hold, std::mem::take(buf));
    }

    /// Sends the held header and bytes on unchanged and streams the rest of the body.
    fn release_held(&mut self, tag: u8, out: &mut FromClient) {
        let ignored = self.ignored_now();
        if let Body::Hold { hdr, buf, at, .. } = std::mem::replace(&mut self.cbody, Body::Forward) {
            if ignored {
                self.pass_held(hdr, buf, at, out);
                return;
            }
            self.forward_held(&hdr, buf, at, out);
        }
        self.push_forwarded(tag);
    }

    /// A named Parse, whole (prepare.c `handle_parse_command`).
    fn named_parse(
        &mut self,
        body: Bytes,
        name_len: usize,
        registry: &super::StatementRegistry,
        out: &mut FromClient,
    ) -> Result<(), LinkError> {
        let broken = LinkError::ClientBrokenMessage { kind: "Parse" };
        let name = body.slice(..name_len);
        let rest = body.slice(name_len + 1..);
        let q = rest.iter().position(|&b| b == 0).ok_or(broken.clone())?;
        let count = rest.get(q + 1..q + 3).ok_or(broken.clone())?;
        let n = i16::from_be_bytes([count[0], count[1]]);
        let n = usize::try_from(n).map_err(|_| broken.clone())?;
        let stmt_len = q + 3 + 4 * n;
        if rest.len() < stmt_len {
            return Err(broken);
        }
        if self.client_statements.get(&name).is_some() {
            return Err(LinkError::PreparedNameInUse {
                name: String::from_utf8_lossy(&name).into_owned(),
            });
        }
        let stmt = registry.intern(rest.slice(..stmt_len));
        self.client_statements.insert(name.clone(), stmt.clone());
        self.counts.client_parses += 1;
        if self.server_statements.touch(stmt.id()) {
            self.queue.push(Expect::Synthetic {
                reply: backend_tag::PARSE_COMPLETE,
                undo: Undo::Named(name, stmt),
            });
        } else {
            self.send_parse(&stmt, true, Undo::RegisteredNamed(stmt.clone(), name), out);
        }
        Ok(())
    }

    /// Sends `Parse(PGBOUNCER_<id>)` for `stmt`, registers it on the server and evicts
    /// what the cache limit asks for (prepare.c `register_prepared_statement`).
    fn send_parse(
        &mut self,
        stmt: &Arc<Statement>,
        forward: bool,
        undo: Undo,
        out: &mut FromClient,
    ) {
        let name = stmt.server_name();
        let body = stmt.parse_body();
        let len = 4 + name.len() + 1 + body.len();
        out.to_server.own_with(|b| {
            b.put_u8(t::PARSE);
            b.put_u32(len as u32);
            b.put_slice(name.as_bytes());
            b.put_u8(0);
        });
        out.to_server.shared(body.clone());
        self.counts.server_parses += 1;
        self.queue.push(Expect::Reply {
            tag: t::PARSE,
            forward,
            undo,
        });
        self.server_statements.insert(stmt.clone());
        for old in self
            .server_statements
            .evict_over(self.cfg.max_prepared_statements)
        {
            self.counts.evictions += 1;
            let name = old.server_name();
            out.to_server.own_with(|b| {
                put_message(b, t::CLOSE, |b| {
                    b.put_u8(b'S');
                    b.put_slice(name.as_bytes());
                    b.put_u8(0);
                })
            });
            self.queue.push(Expect::Reply {
                tag: t::CLOSE,
                forward: false,
                undo: Undo::Evicted(old.clone()),
            });
        }
    }

    /// Makes sure the server has `stmt` before a Bind or Describe uses it, injecting a
    /// Parse whose reply the client never sees.
    fn ensure_prepared(&mut self, stmt: &Arc<Statement>, out: &mut FromClient) {
        if !self.server_statements.touch(stmt.id()) {
            self.send_parse(stmt, false, Undo::Registered(stmt.clone()), out);
        }
    }

    /// The client's statement `name`, or the error that closes it.
    fn client_statement(&self, name: &[u8]) -> Result<Arc<Statement>, LinkError> {
        self.client_statements
            .get(name)
            .cloned()
            .ok_or_else(|| LinkError::PreparedNotFound {
                name: String::from_utf8_lossy(name).into_owned(),
            })
    }

    /// A Bind whose names are complete (`portal` and `name` lengths in the held buffer):
    /// rename the statement and stream the parameters (prepare.c `handle_bind_command`).
    fn bind(&mut self, portal: usize, name: usize, out: &mut FromClient) -> Result<(), LinkError> {
        if name == 0 || self.ignored_now() {
            self.release_held(t::BIND, out);
            return Ok(());
        }
        let Body::Hold {
            hdr, mut buf, at, ..
        } = std::mem::replace(&mut self.cbody, Body::Forward)
        else {
            return Ok(());
        };
        let stmt = self.client_statement(&buf[portal + 1..portal + 1 + name])?;
        self.ensure_prepared(&stmt, out);
        let old_len = u32::from_be_bytes([hdr[1], hdr[2], hdr[3], hdr[4]]) as usize;
        let server_name = stmt.server_name();
        let len = u32::try_from(old_len - name + server_name.len())
            .map_err(|_| LinkError::ClientBrokenMessage { kind: "Bind" })?;
        let rest_at = portal + 1 + name + 1;
        out.to_server.own_with(|b| {
            b.put_u8(t::BIND);
            b.put_u32(len);
            b.put_slice(&buf[..portal + 1]);
            b.put_slice(server_name.as_bytes());
            b.put_u8(0);
            if at.is_none() {
                b.put_slice(&buf[rest_at..]);
            }
        });
        if let Some(at) = at {
            // What followed the names is still in the chunk: forwarded from there.
            let body = at + Header::SIZE;
            out.to_server.input(body + rest_at..body + buf.len());
        }
        self.recycle(&mut buf);
        self.counts.binds += 1;
        self.queue.push(Expect::Reply {
            tag: t::BIND,
            forward: true,
            undo: Undo::None,
        });
        Ok(())
    }

    /// A whole Describe: statements are renamed (prepare.c `handle_describe_command`).
    fn describe(
        &mut self,
        hdr: [u8; Header::SIZE],
        mut buf: BytesMut,
        at: Option<usize>,
        out: &mut FromClient,
    ) -> Result<(), LinkError> {
        let (kind, name) =
            kind_and_name(&buf).ok_or(LinkError::ClientBrokenMessage { kind: "Describe" })?;
        if kind != b'S' || name.is_empty() {
            self.forward_held(&hdr, buf, at, out);
            self.push_forwarded(t::DESCRIBE);
            return Ok(());
        }
        let stmt = self.client_statement(name)?;
        self.recycle(&mut buf);
        self.ensure_prepared(&stmt, out);
        let server_name = stmt.server_name();
        out.to_server.own_with(|b| {
            put_message(b, t::DESCRIBE, |b| {
                b.put_u8(b'S');
                b.put_slice(server_name.as_bytes());
                b.put_u8(0);
            })
        });
        self.push_forwarded(t::DESCRIBE);
        Ok(())
    }

    /// A whole Close: the client forgets a statement name and we answer; the server
    /// keeps the statement for others (prepare.c `handle_close_statement_command`).
    fn close(
        &mut self,
        hdr: [u8; Header::SIZE],
        buf: BytesMut,
        at: Option<usize>,
        out: &mut FromClient,
    ) -> Result<(), LinkError> {
        let (kind, name) =
            kind_and_name(&buf).ok_or(LinkError::ClientBrokenMessage { kind: "Close" })?;
        if kind != b'S' || name.is_empty() {
            self.forward_held(&hdr, buf, at, out);
            self.push_forwarded(t::CLOSE);
            return Ok(());
        }
        let undo = match self.client_statements.remove(name) {
            Some(stmt) => Undo::Unnamed(Bytes::copy_from_slice(name), stmt),
            None => Undo::None,
        };
        self.queue.push(Expect::Synthetic {
            reply: backend_tag::CLOSE_COMPLETE,
            undo,
        });
        Ok(())
    }

    /// Sends made-up replies whose turn has come and drops COPY markers nothing waits
    /// for, so the front of the queue is always something the server owes.
    pub(super) fn settle(&mut self, to_client: &mut Output) {
        loop {
            match self.queue.front() {
                Some(Expect::Synthetic { reply, .. }) => {
                    let reply = *reply;
                    to_client.own_with(|b| put_message(b, reply, |_| {}));
                }
                Some(Expect::Copy(_)) => {}
                _ => return,
            }
            self.queue.pop();
        }
    }
}

/// Whether clients may send `tag` after login (Terminate aside).
pub(super) fn is_request(tag: u8) -> bool {
    matches!(
        tag,
        t::QUERY
            | t::FUNCTION_CALL
            | t::SYNC
            | t::FLUSH
            | t::PARSE
            | t::BIND
            | t::DESCRIBE
            | t::EXECUTE
            | t::CLOSE
            | t::COPY_DATA
            | t::COPY_DONE
            | t::COPY_FAIL
    )
}

/// Emits a header: from the chunk when it is all there, else the held copy.
fn emit_header(out: &mut Output, at: Option<usize>, held: &[u8; Header::SIZE]) {
    match at {
        Some(at) => out.input(at..at + Header::SIZE),
        None => out.own_bytes(held),
    }
}

fn check_name_len(len: usize, kind: &'static str) -> Result<(), LinkError> {
    if len > NAME_LIMIT {
        Err(LinkError::ClientNameTooLong {
            kind,
            len,
            max: NAME_LIMIT,
        })
    } else {
        Ok(())
    }
}

/// The lengths of the first two C strings in `buf`, if both are complete.
fn two_cstrs(buf: &[u8]) -> Option<(usize, usize)> {
    let a = buf.iter().position(|&b| b == 0)?;
    let b = buf[a + 1..].iter().position(|&b| b == 0)?;
    Some((a, b))
}

/// A Describe or Close body: the kind byte and the name.
fn kind_and_name(buf: &[u8]) -> Option<(u8, &[u8])> {
    let (&kind, rest) = buf.split_first()?;
    if kind != b'S' && kind != b'P' {
        return None;
    }
    let end = rest.iter().position(|&b| b == 0)?;
    Some((kind, &rest[..end]))
}
