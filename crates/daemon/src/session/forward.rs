//! Forwarding while linked: header-only scanning both ways, release decisions on
//! ReadyForQuery, parameter sync (mirrors proto.c / sbuf.c's forwarding).

use bytes::{BufMut, Bytes};
use pgbouncer_protocol::Header;

use super::*;

impl Session {
    /// Brings the server's tracked parameters in line with the client's (one combined
    /// SET, replies swallowed), as PgBouncer's varcache does.
    pub(super) async fn sync_vars(&mut self, l: &mut Link) -> Result<(), Exit> {
        let mut sql = String::new();
        let defaults = self
            .defaults
            .tracked
            .iter()
            .filter(|(n, _)| get_var(&self.vars, n).is_none());
        for (name, value) in self.vars.iter().chain(defaults) {
            let differs = l
                .conn
                .param(name)
                .is_none_or(|v| !v.eq_ignore_ascii_case(value));
            if differs {
                sql.push_str(&format!("SET {name}='{}';", value.replace('\'', "''")));
            }
        }
        if sql.is_empty() {
            return Ok(());
        }
        l.conn.run_internal(&sql).await.map_err(|e| {
            tracing::warn!("C-{}: invalid server parameter: {e}", self.id.0);
            Exit::fatal(format!("invalid server parameter: {e}"))
        })?;
        // The server's canonical spelling becomes the client's value.
        for (name, value) in self.vars.iter_mut() {
            if let Some(v) = l.conn.param(name) {
                *value = v.to_string();
            }
        }
        Ok(())
    }

    /// Forwards in both directions until the server can be released.
    pub(super) async fn forward(&mut self, l: &mut Link) -> Result<Released, Exit> {
        self.sync_vars(l).await?;
        if !self.cbuf.is_empty() {
            self.client_to_server(l).await?;
        }
        loop {
            if l.is_clean() && self.mode != PoolMode::Session {
                return Ok(Released::Yes);
            }
            if self.fast_close && l.is_clean() {
                return Err(Exit::fatal("database configuration changed"));
            }
            if self.shared.is_suspended() {
                // SUSPEND: what was read has been written on; read nothing more.
                self.shared.wait_resumed().await;
            }
            let rx = self
                .rx
                .clone()
                .ok_or_else(|| Exit::fatal("bouncer config error"))?;
            let deadline = self.timeouts.deadline(l);
            let timer = async {
                match deadline {
                    Some((at, msg)) => {
                        tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
                        msg
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                msg = timer => return Err(Exit::fatal(msg)),
                r = l.conn.stream.readable() => {
                    if r.is_err() { return Err(Exit::fatal("server conn crashed?")); }
                    self.server_to_client(l).await?;
                }
                r = self.client.readable() => {
                    if r.is_err() { return Ok(Released::ClientLeft("client unexpected eof".into())); }
                    reserve_client_read(&mut self.cbuf);
                    match self.client.try_read_buf(&mut self.cbuf) {
                        Ok(0) => return Ok(Released::ClientLeft("client unexpected eof".into())),
                        Ok(_) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                        Err(_) => return Ok(Released::ClientLeft("client unexpected eof".into())),
                    }
                    if let Some(reason) = self.client_to_server(l).await? {
                        return Ok(Released::ClientLeft(reason));
                    }
                }
                msg = rx.recv() => match msg {
                    SessionMsg::Disconnect(r) => return Err(Exit::from_reason(&r)),
                    SessionMsg::FastClose => self.fast_close = true,
                    SessionMsg::Link(stray) => {
                        // pool-core links only waiting clients; never expected here.
                        tracing::error!(
                            "C-{}: got server S-{} while linked; closing it",
                            self.id.0,
                            stray.id.0
                        );
                        stray.terminate();
                    }
                    SessionMsg::CancelWait => {}
                },
            }
        }
    }

    /// Sends the buffered client bytes to the server. Returns a reason when the client
    /// sent Terminate (which is not forwarded).
    pub(super) async fn client_to_server(&mut self, l: &mut Link) -> Result<Option<String>, Exit> {
        if self.prepared_mode {
            return self.client_to_server_prepared(l).await;
        }
        let mut v = ClientVisitor::default();
        l.cscan
            .scan(&self.cbuf, self.max, &mut v)
            .map_err(|e| Exit::fatal(e.pgbouncer_message()))?;
        if v.any {
            l.idle_in_xact_since = None;
        }
        if v.any && l.query_start.is_none() {
            let now = WallInstant::now();
            l.query_start = Some(now);
            if l.xact_start.is_none() {
                l.xact_start = Some(now);
            }
        }
        l.pending += v.pending;
        l.usage.bytes_received += self.cbuf.len() as u64;
        l.usage.client_parse_count += v.parses;
        l.usage.server_parse_count += v.parses;
        l.usage.bind_count += v.binds;
        let mut end = self.cbuf.len();
        if v.terminate && self.cbuf.ends_with(b"X\0\0\0\x04") {
            end -= 5;
        }
        if end > 0 {
            self.shared
                .flush
                .write_all(&l.conn.stream, &self.cbuf[..end])
                .await
                .map_err(|e| write_failed(e, Exit::fatal("server conn crashed?")))?;
        }
        self.cbuf.clear();
        Ok(v.terminate.then(|| "client close request".to_string()))
    }

    /// The client side in prepared-statement mode: whole messages only (a partial one
    /// waits in `cbuf`), named statements renamed, Parse/Close answered or injected as
    /// `prepared.rs` describes.
    async fn client_to_server_prepared(&mut self, l: &mut Link) -> Result<Option<String>, Exit> {
        let mut v = ClientVisitor::default();
        let mut server_parses = 0u64;
        // Taken out (no copy) so the loop can look at it while updating `self`.
        let data = std::mem::take(&mut self.cbuf);
        // Common case: no named statement in this batch. Then the bytes go out as they
        // are and only the expectation queue is kept (no copy, no allocation).
        if !needs_rewrite(&data, self.max) {
            let mut pos = 0;
            while let Ok(Some(h)) = Header::peek(&data[pos..], self.max) {
                let total = h.total_len();
                if data.len() - pos < total {
                    break;
                }
                v.header(h.tag, h.len);
                if matches!(h.tag, b'P' | b'B' | b'D' | b'C' | b'E' | b'S' | b'Q' | b'F') {
                    l.queue.push(prepared::Expect::Forwarded {
                        kind: h.tag,
                        parsed: None,
                    });
                }
                if h.tag == b'P' {
                    server_parses += 1;
                }
                pos += total;
            }
            let end = if v.terminate && data[..pos].ends_with(b"X\0\0\0\x04") {
                pos - 5
            } else {
                pos
            };
            self.cbuf = data;
            return self
                .finish_client_batch(l, &v, server_parses, pos, end, None)
                .await;
        }
        let mut out = BytesMut::with_capacity(data.len() + 64);
        let mut pos = 0;
        while let Some(h) =
            Header::peek(&data[pos..], self.max).map_err(|e| Exit::fatal(e.pgbouncer_message()))?
        {
            let total = h.total_len();
            if data.len() - pos < total {
                break;
            }
            let msg = &data[pos..pos + total];
            pos += total;
            v.header(h.tag, h.len);
            let body = &msg[Header::SIZE..];
            let bad = || Exit::fatal("unknown pkt");
            match h.tag {
                b'P' => {
                    let (name, rest) = prepared::cstr(body).ok_or_else(bad)?;
                    if name.is_empty() {
                        out.extend_from_slice(msg);
                        server_parses += 1;
                        l.queue.push(prepared::Expect::Forwarded {
                            kind: b'P',
                            parsed: None,
                        });
                        continue;
                    }
                    let (query, types) = prepared::cstr(rest).ok_or_else(bad)?;
                    let stmt = self
                        .shared
                        .prepared
                        .get(Bytes::copy_from_slice(query), Bytes::copy_from_slice(types));
                    let name = Bytes::copy_from_slice(name);
                    let stmts = self.stmts.get_or_insert_with(Box::default);
                    if let Some(old) = stmts.get(&name) {
                        if old.id != stmt.id {
                            return Err(Exit::fatal("prepared statement name is already in use"));
                        }
                    }
                    stmts.insert(name, stmt.clone());
                    if l.conn.prepared.contains(&stmt.id) {
                        l.queue
                            .push(prepared::Expect::Synthetic(prepared::PARSE_COMPLETE));
                    } else {
                        stmt.encode_parse(&mut out);
                        server_parses += 1;
                        l.conn.prepared.insert(stmt.id);
                        l.queue.push(prepared::Expect::Forwarded {
                            kind: b'P',
                            parsed: Some(stmt.id),
                        });
                    }
                }
                b'B' => {
                    let (portal, rest) = prepared::cstr(body).ok_or_else(bad)?;
                    let (name, rest) = prepared::cstr(rest).ok_or_else(bad)?;
                    if name.is_empty() {
                        out.extend_from_slice(msg);
                    } else {
                        let stmt = self.known_stmt(name)?;
                        server_parses += self.ensure_prepared(l, &stmt, &mut out);
                        let server_name = format!("PGBOUNCER_{}", stmt.id);
                        let len = 4 + portal.len() + 1 + server_name.len() + 1 + rest.len();
                        out.put_u8(b'B');
                        out.put_u32(len as u32);
                        out.put_slice(portal);
                        out.put_u8(0);
                        out.put_slice(server_name.as_bytes());
                        out.put_u8(0);
                        out.put_slice(rest);
                    }
                    l.queue.push(prepared::Expect::Forwarded {
                        kind: b'B',
                        parsed: None,
                    });
                }
                b'D' | b'C' => {
                    let kind = *body.first().ok_or_else(bad)?;
                    let (name, _) = prepared::cstr(&body[1..]).ok_or_else(bad)?;
                    if kind != b'S' || name.is_empty() {
                        out.extend_from_slice(msg);
                        l.queue.push(prepared::Expect::Forwarded {
                            kind: h.tag,
                            parsed: None,
                        });
                    } else if h.tag == b'C' {
                        // Close of a statement: the client forgets its name, the server
                        // keeps the statement for others; we answer.
                        if let Some(stmts) = self.stmts.as_mut() {
                            stmts.remove(name);
                        }
                        l.queue
                            .push(prepared::Expect::Synthetic(prepared::CLOSE_COMPLETE));
                    } else {
                        let stmt = self.known_stmt(name)?;
                        server_parses += self.ensure_prepared(l, &stmt, &mut out);
                        let server_name = format!("PGBOUNCER_{}", stmt.id);
                        out.put_u8(b'D');
                        out.put_u32((4 + 1 + server_name.len() + 1) as u32);
                        out.put_u8(b'S');
                        out.put_slice(server_name.as_bytes());
                        out.put_u8(0);
                        l.queue.push(prepared::Expect::Forwarded {
                            kind: b'D',
                            parsed: None,
                        });
                    }
                }
                b'X' => {}
                tag @ (b'E' | b'S' | b'Q' | b'F') => {
                    out.extend_from_slice(msg);
                    l.queue.push(prepared::Expect::Forwarded {
                        kind: tag,
                        parsed: None,
                    });
                }
                _ => out.extend_from_slice(msg),
            }
        }
        self.cbuf = data;
        let end = out.len();
        self.finish_client_batch(l, &v, server_parses, pos, end, Some(out))
            .await
    }

    /// Bookkeeping and writes after a client batch in prepared-statement mode: `pos`
    /// bytes of `cbuf` were consumed; `out` (rewritten) or `cbuf[..end]` (as is) goes to
    /// the server; made-up replies whose turn came go to the client.
    async fn finish_client_batch(
        &mut self,
        l: &mut Link,
        v: &ClientVisitor,
        server_parses: u64,
        pos: usize,
        end: usize,
        out: Option<BytesMut>,
    ) -> Result<Option<String>, Exit> {
        if v.any {
            l.idle_in_xact_since = None;
            if l.query_start.is_none() {
                let now = WallInstant::now();
                l.query_start = Some(now);
                l.xact_start.get_or_insert(now);
            }
        }
        l.pending += v.pending;
        l.usage.bytes_received += pos as u64;
        l.usage.client_parse_count += v.parses;
        l.usage.server_parse_count += server_parses;
        l.usage.bind_count += v.binds;
        let sent = match &out {
            Some(out) if !out.is_empty() => self.shared.flush.write_all(&l.conn.stream, out).await,
            None if end > 0 => {
                self.shared
                    .flush
                    .write_all(&l.conn.stream, &self.cbuf[..end])
                    .await
            }
            _ => Ok(()),
        };
        sent.map_err(|e| write_failed(e, Exit::fatal("server conn crashed?")))?;
        let _ = self.cbuf.split_to(pos);
        // Made-up replies whose turn has come (nothing before them is outstanding).
        let mut now_due = BytesMut::new();
        l.queue.flush_synthetic(&mut now_due);
        if !now_due.is_empty() {
            self.shared
                .flush
                .write_all(&self.client, &now_due)
                .await
                .map_err(|e| write_failed(e, Exit::Quiet("client unexpected eof".into())))?;
        }
        Ok(v.terminate.then(|| "client close request".to_string()))
    }

    /// The statement this client calls `name`.
    fn known_stmt(&self, name: &[u8]) -> Result<Arc<prepared::Stmt>, Exit> {
        self.stmts
            .as_ref()
            .and_then(|s| s.get(name))
            .cloned()
            .ok_or_else(|| Exit::fatal("prepared statement did not exist"))
    }

    /// Injects a Parse when the linked server lacks `stmt`; returns the Parses sent.
    fn ensure_prepared(&self, l: &mut Link, stmt: &prepared::Stmt, out: &mut BytesMut) -> u64 {
        if l.conn.prepared.contains(&stmt.id) {
            return 0;
        }
        stmt.encode_parse(out);
        l.conn.prepared.insert(stmt.id);
        l.queue.push(prepared::Expect::Swallow(stmt.id));
        1
    }

    /// The server side while made-up or swallowed replies are queued: whole messages,
    /// copied into `out` in protocol order.
    fn server_slow(
        &mut self,
        l: &mut Link,
        out: &mut BytesMut,
        v: &mut ServerVisitor<'_>,
    ) -> Result<(), Exit> {
        let buf = std::mem::take(&mut l.conn.buf);
        let mut pos = 0;
        loop {
            l.queue.flush_synthetic(out);
            let Some(h) = Header::peek(&buf[pos..], self.max)
                .map_err(|e| Exit::fatal(format!("server sent a bad packet: {e}")))?
            else {
                break;
            };
            let total = h.total_len();
            if buf.len() - pos < total {
                break;
            }
            let msg = &buf[pos..pos + total];
            pos += total;
            let mut failed = None;
            let forward = l.queue.on_server_message(h.tag, &mut failed);
            if let Some(id) = failed {
                l.conn.prepared.remove(&id);
            }
            if v.wants_body(h.tag) {
                v.body(h.tag, &msg[Header::SIZE..]);
            }
            if forward {
                out.extend_from_slice(msg);
            }
        }
        l.queue.flush_synthetic(out);
        let mut rest = buf;
        let _ = rest.split_to(pos);
        l.conn.buf = rest;
        Ok(())
    }

    pub(super) async fn server_to_client(&mut self, l: &mut Link) -> Result<(), Exit> {
        l.conn.buf.reserve(SERVER_READ_CHUNK);
        match l.conn.stream.try_read_buf(&mut l.conn.buf) {
            Ok(0) => return Err(Exit::fatal("server conn crashed?")),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
            Err(_) => return Err(Exit::fatal("server conn crashed?")),
        }
        let slow = self.prepared_mode && l.queue.special > 0 && l.sscan.at_boundary();
        let mut out = BytesMut::new();
        let (rfq, params, failed, discarded) = {
            let queue = if self.prepared_mode && !slow {
                Some(&mut l.queue)
            } else {
                None
            };
            let mut v = ServerVisitor::new(queue);
            if slow {
                v.queue = None;
            }
            if !slow {
                l.sscan
                    .scan(&l.conn.buf, self.max, &mut v)
                    .map_err(|e| Exit::fatal(format!("server sent a bad packet: {e}")))?;
            }
            (v.rfq, v.params, v.failed_parses, v.discarded)
        };
        let (rfq, params, discarded) = if slow {
            let mut v = ServerVisitor::new(None);
            v.discarded = discarded;
            self.server_slow(l, &mut out, &mut v)?;
            (v.rfq, v.params, v.discarded)
        } else {
            if self.prepared_mode {
                l.queue.flush_synthetic(&mut out);
                for id in failed {
                    l.conn.prepared.remove(&id);
                }
            }
            (rfq, params, discarded)
        };
        if discarded {
            // DISCARD ALL / DEALLOCATE ALL: the server and this client forget them all.
            l.conn.prepared.clear();
            self.stmts = None;
        }
        let v = ServerVisitor {
            rfq,
            params,
            ..ServerVisitor::new(None)
        };
        let data: &[u8] = if slow { &out } else { &l.conn.buf };
        // PgBouncer compat: in statement mode a ReadyForQuery that opens a transaction
        // is not forwarded; the client gets the FATAL error in its place.
        let refused =
            self.mode == PoolMode::Statement && v.rfq.iter().any(|s| *s != TransactionStatus::Idle);
        let mut end = data.len();
        if refused && (data.ends_with(b"Z\0\0\0\x05T") || data.ends_with(b"Z\0\0\0\x05E")) {
            end -= 6;
        }
        self.shared
            .flush
            .write_all(&self.client, &data[..end])
            .await
            .map_err(|e| write_failed(e, Exit::Quiet("client unexpected eof".into())))?;
        l.usage.bytes_sent += end as u64;
        if !slow {
            l.conn.buf.clear();
            if !out.is_empty() {
                self.shared
                    .flush
                    .write_all(&self.client, &out)
                    .await
                    .map_err(|e| write_failed(e, Exit::Quiet("client unexpected eof".into())))?;
            }
        }
        for (name, value) in v.params {
            l.conn.set_param(&name, &value);
            if let Some(t) = self.rt.tracked_name(&name) {
                let t = t.to_string();
                set_var(&mut self.vars, &t, &value);
            }
        }
        for status in v.rfq {
            l.pending = l.pending.saturating_sub(1);
            l.status = status;
            let now = WallInstant::now();
            if let Some(start) = l.query_start.take() {
                l.usage.query_count += 1;
                l.usage.query_time_us += (now - start).as_micros() as u64;
            }
            if status == TransactionStatus::Idle {
                if let Some(start) = l.xact_start.take() {
                    l.usage.xact_count += 1;
                    l.usage.xact_time_us += (now - start).as_micros() as u64;
                }
            } else if self.mode == PoolMode::Statement {
                return Err(Exit::fatal(
                    "transaction blocks not allowed in statement pooling mode",
                ));
            }
            if l.pending > 0 {
                l.query_start = Some(now);
            } else if status != TransactionStatus::Idle {
                l.idle_in_xact_since = Some(now);
            }
        }
        if self.mode == PoolMode::Session && l.usage.xact_count > 0 && l.pending == 0 {
            let usage = std::mem::take(&mut l.usage);
            self.shared.handle(
                Event::ClientUsage {
                    client: self.id,
                    usage,
                },
                None,
            );
        }
        Ok(())
    }
}

/// Whether a batch of client messages holds anything prepared-statement mode must
/// rewrite or answer: a named Parse, a Bind of a named statement, a Describe or Close of
/// a named statement, or a Terminate.
fn needs_rewrite(data: &[u8], max: u32) -> bool {
    let mut pos = 0;
    while let Ok(Some(h)) = Header::peek(&data[pos..], max) {
        let total = h.total_len();
        if data.len() - pos < total {
            return false;
        }
        let body = &data[pos + Header::SIZE..pos + total];
        let named = match h.tag {
            b'P' => body.first().is_some_and(|b| *b != 0),
            b'B' => {
                prepared::cstr(body).is_some_and(|(_, rest)| rest.first().is_some_and(|b| *b != 0))
            }
            b'D' | b'C' => body.first() == Some(&b'S') && body.get(1).is_some_and(|b| *b != 0),
            b'X' => true,
            _ => false,
        };
        if named {
            return true;
        }
        pos += total;
    }
    false
}
