//! Forwarding while linked: header-only scanning both ways, release decisions on
//! ReadyForQuery, parameter sync (mirrors proto.c / sbuf.c's forwarding).

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
                msg = rx.recv() => {
                    if let SessionMsg::Disconnect(r) = msg {
                        return Err(Exit::from_reason(&r));
                    }
                }
            }
        }
    }

    /// Sends the buffered client bytes to the server. Returns a reason when the client
    /// sent Terminate (which is not forwarded).
    pub(super) async fn client_to_server(&mut self, l: &mut Link) -> Result<Option<String>, Exit> {
        let mut v = ClientVisitor {
            pending: 0,
            terminate: false,
            parses: 0,
            binds: 0,
            any: false,
        };
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
            l.conn
                .stream
                .write_all(&self.cbuf[..end])
                .await
                .map_err(|_| Exit::fatal("server conn crashed?"))?;
        }
        self.cbuf.clear();
        Ok(v.terminate.then(|| "client close request".to_string()))
    }

    pub(super) async fn server_to_client(&mut self, l: &mut Link) -> Result<(), Exit> {
        l.conn.buf.reserve(SERVER_READ_CHUNK);
        match l.conn.stream.try_read_buf(&mut l.conn.buf) {
            Ok(0) => return Err(Exit::fatal("server conn crashed?")),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
            Err(_) => return Err(Exit::fatal("server conn crashed?")),
        }
        let mut v = ServerVisitor {
            rfq: Vec::new(),
            params: Vec::new(),
        };
        l.sscan
            .scan(&l.conn.buf, self.max, &mut v)
            .map_err(|e| Exit::fatal(format!("server sent a bad packet: {e}")))?;
        // PgBouncer compat: in statement mode a ReadyForQuery that opens a transaction
        // is not forwarded; the client gets the FATAL error in its place.
        let refused =
            self.mode == PoolMode::Statement && v.rfq.iter().any(|s| *s != TransactionStatus::Idle);
        let mut end = l.conn.buf.len();
        if refused
            && (l.conn.buf.ends_with(b"Z\0\0\0\x05T") || l.conn.buf.ends_with(b"Z\0\0\0\x05E"))
        {
            end -= 6;
        }
        self.client
            .write_all(&l.conn.buf[..end])
            .await
            .map_err(|_| Exit::Quiet("client unexpected eof".into()))?;
        l.usage.bytes_sent += l.conn.buf.len() as u64;
        l.conn.buf.clear();
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
