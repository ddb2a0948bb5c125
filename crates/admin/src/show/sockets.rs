//! SHOW CLIENTS, SERVERS, SOCKETS and ACTIVE_SOCKETS (mirrors `socket_header`,
//! `socket_row` and `admin_show_{clients,servers,sockets,active_sockets}`).
//!
//! Rows go pool by pool, pools sorted by (database, user), in PgBouncer's list order within
//! a pool (clients: active then waiting; servers: active, idle, used, tested, new), by id
//! within a list. SHOW CLIENTS does not list clients still logging in (PgBouncer keeps them
//! on a separate list); SHOW SOCKETS lists them last as `cl_login`. Console sessions are
//! clients of `pgbouncer/pgbouncer`, shown `idle` as PgBouncer 1.25 does (never linked).
//!
//! `ptr` is `0x` plus hex of a stable number: `0x10000000000 + id` for clients and
//! `0x20000000000 + id` for servers, so client and server pointers never collide and
//! `link` names the other side's `ptr`. `id` is the plain `ClientId` / `ServerId` number.

use std::time::Duration;

use pgbouncer_pool_core::{ClientId, Instant, ServerId};
use pgbouncer_protocol::{Column, ResultSet};

use super::{cell, ADMIN_DB};
use crate::snapshot::{ConnInfo, Snapshot};
use crate::timestamp::Clock;

const CLIENT_PTR_BASE: u64 = 0x100_0000_0000;
const SERVER_PTR_BASE: u64 = 0x200_0000_0000;

/// The `ptr` of a client.
pub fn client_ptr(id: ClientId) -> String {
    format!("0x{:x}", CLIENT_PTR_BASE | u64::from(id.0))
}

/// The `ptr` of a server.
pub fn server_ptr(id: ServerId) -> String {
    format!("0x{:x}", SERVER_PTR_BASE | u64::from(id.0))
}

/// One socket to render, with its sort key.
struct Entry<'a> {
    /// (section, database, user, list rank, id): section 1 holds login clients, last.
    key: (u8, String, String, u8, u32),
    server: bool,
    user: String,
    /// The list state as SHOW SOCKETS names it (`cl_active`, `sv_login`, ...).
    list: &'static str,
    linked: bool,
    conn: &'a ConnInfo,
    connect_time: Instant,
    request_time: Instant,
    wait: Duration,
    close_needed: bool,
    ptr: String,
    link: String,
    id: u32,
}

fn client_entries<'a>(snap: &'a Snapshot<'_>, empty: &'a ConnInfo) -> Vec<Entry<'a>> {
    let mut v: Vec<Entry<'a>> = snap
        .pooler
        .clients(snap.now)
        .into_iter()
        .map(|c| {
            let (section, rank, list) = match c.state {
                "login" => (1, 0, "cl_login"),
                "waiting" => (0, 1, "cl_waiting"),
                _ => (0, 0, "cl_active"),
            };
            Entry {
                key: (
                    section,
                    c.pool.database.to_string(),
                    c.pool.user.to_string(),
                    rank,
                    c.id.0,
                ),
                server: false,
                user: c.login_user.to_string(),
                list,
                linked: c.link.is_some(),
                conn: snap.clients.get(&c.id).unwrap_or(empty),
                connect_time: c.connect_time,
                request_time: c.request_time,
                wait: c.wait,
                close_needed: false,
                ptr: client_ptr(c.id),
                link: c.link.map(server_ptr).unwrap_or_default(),
                id: c.id.0,
            }
        })
        .collect();
    v.extend(snap.admin_clients.iter().map(|a| Entry {
        key: (0, ADMIN_DB.into(), ADMIN_DB.into(), 0, a.id.0),
        server: false,
        user: a.user.clone(),
        list: "cl_active",
        linked: false,
        conn: &a.conn,
        connect_time: a.connect_time,
        request_time: a.request_time,
        wait: Duration::ZERO,
        close_needed: false,
        ptr: client_ptr(a.id),
        link: String::new(),
        id: a.id.0,
    }));
    v
}

fn server_entries<'a>(snap: &'a Snapshot<'_>, empty: &'a ConnInfo) -> Vec<Entry<'a>> {
    snap.pooler
        .servers(snap.now)
        .into_iter()
        .map(|s| {
            let (rank, list) = match s.state {
                "active" => (0, "sv_active"),
                "idle" => (1, "sv_idle"),
                "used" => (2, "sv_used"),
                "tested" => (3, "sv_tested"),
                "being_canceled" => (4, "sv_being_canceled"),
                _ => (5, "sv_login"),
            };
            Entry {
                key: (
                    0,
                    s.pool.database.to_string(),
                    s.pool.user.to_string(),
                    rank + 2,
                    s.id.0,
                ),
                server: true,
                user: s.pool.user.to_string(),
                list,
                linked: s.link.is_some(),
                conn: snap.servers.get(&s.id).unwrap_or(empty),
                connect_time: s.connect_time,
                request_time: s.request_time,
                wait: Duration::ZERO,
                close_needed: s.close_needed,
                ptr: server_ptr(s.id),
                link: s.link.map(client_ptr).unwrap_or_default(),
                id: s.id.0,
            }
        })
        .collect()
}

/// The state SHOW CLIENTS / SHOW SERVERS print for a list state.
fn plain_state(e: &Entry<'_>) -> &'static str {
    match e.list {
        "cl_active" if !e.linked => "idle",
        "cl_active" | "sv_active" => "active",
        "cl_waiting" => "waiting",
        "sv_idle" => "idle",
        "sv_used" => "used",
        "sv_tested" => "tested",
        "sv_being_canceled" => "being_canceled",
        "sv_login" => "new",
        _ => "login",
    }
}

fn columns(debug: bool) -> Vec<Column> {
    let mut c = vec![
        Column::text("type"),
        Column::text("user"),
        Column::text("database"),
        Column::text("replication"),
        Column::text("state"),
        Column::text("addr"),
        Column::int4("port"),
        Column::text("local_addr"),
        Column::int4("local_port"),
        Column::text("connect_time"),
        Column::text("request_time"),
        Column::int4("wait"),
        Column::int4("wait_us"),
        Column::int4("close_needed"),
        Column::text("ptr"),
        Column::text("link"),
        Column::int4("remote_pid"),
        Column::text("tls"),
        Column::text("application_name"),
        Column::int4("prepared_statements"),
        Column::int4("id"),
    ];
    if debug {
        c.extend(
            [
                "recv_pos",
                "pkt_pos",
                "pkt_remain",
                "send_pos",
                "send_remain",
                "pkt_avail",
                "send_avail",
            ]
            .map(Column::int4),
        );
    }
    c
}

fn row(e: &Entry<'_>, clock: &Clock, debug: bool) -> Vec<Option<String>> {
    let c = e.conn;
    let wait_us = e.wait.as_micros();
    let mut r = vec![
        cell(if e.server { "S" } else { "C" }),
        cell(&e.user),
        cell(&e.key.1),
        cell(c.replication.as_str()),
        cell(if debug { e.list } else { plain_state(e) }),
        cell(&c.addr),
        cell(c.port),
        cell(&c.local_addr),
        cell(c.local_port),
        cell(clock.format(e.connect_time)),
        cell(clock.format(e.request_time)),
        cell(wait_us / 1_000_000),
        cell(wait_us % 1_000_000),
        cell(u8::from(e.close_needed)),
        cell(&e.ptr),
        cell(&e.link),
        cell(c.remote_pid),
        cell(&c.tls),
        cell(&c.application_name),
        cell(c.prepared_statements),
        cell(e.id),
    ];
    if debug {
        r.extend([0, 0, 0, 0, 0].map(cell));
        r.extend([cell(c.recv_pending), cell(c.send_pending)]);
    }
    r
}

fn render(snap: &Snapshot<'_>, mut entries: Vec<Entry<'_>>, debug: bool) -> ResultSet {
    entries.sort_by(|a, b| a.key.cmp(&b.key));
    let clock = Clock::new(snap.now, snap.wall_clock_now);
    let mut set = ResultSet::new(columns(debug));
    for e in &entries {
        set.push_row(row(e, &clock, debug));
    }
    set
}

pub(super) fn clients(snap: &Snapshot<'_>) -> ResultSet {
    let empty = ConnInfo::default();
    let mut entries = client_entries(snap, &empty);
    entries.retain(|e| e.list != "cl_login");
    render(snap, entries, false)
}

pub(super) fn servers(snap: &Snapshot<'_>) -> ResultSet {
    let empty = ConnInfo::default();
    render(snap, server_entries(snap, &empty), false)
}

/// SHOW SOCKETS, or with `only_busy` SHOW ACTIVE_SOCKETS (sockets with buffered data).
pub(super) fn sockets(snap: &Snapshot<'_>, only_busy: bool) -> ResultSet {
    let empty = ConnInfo::default();
    let mut entries = client_entries(snap, &empty);
    entries.extend(server_entries(snap, &empty));
    if only_busy {
        entries.retain(|e| e.conn.recv_pending > 0 || e.conn.send_pending > 0);
    }
    render(snap, entries, true)
}
