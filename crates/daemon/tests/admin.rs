//! The admin console (`pgbouncer` virtual database) with real clients: every SHOW through
//! tokio-postgres, psql and raw protocol messages (column names, order and types), values
//! under load, PAUSE/RESUME, RELOAD, SET, DISABLE/ENABLE, KILL, KILL_CLIENT, access rules
//! and error texts (PgBouncer's admin.c behaviour, pgbouncer-surface.md section 4).

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use common::*;
use pg_harness::{PgCluster, MD5_PASSWORD, MD5_USER};
use pgbouncer_protocol::{
    auth::md5, encode_password, encode_query, oid, Authentication, BackendMessage, StartupMessage,
    StartupPacket, DEFAULT_MAX_PACKET_SIZE,
};
use pgbouncer_rs::Daemon;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_postgres::{Client, SimpleQueryMessage};

/// How long a future must stay pending to count as "waiting" (it is never asserted to
/// finish within this time; only that it has not finished yet).
const STILL_PENDING: Duration = Duration::from_millis(300);
/// Upper bound for anything that should happen "soon"; only hit when a test fails.
const LIMIT: Duration = Duration::from_secs(15);

const T: u32 = oid::TEXT;
const I4: u32 = oid::INT4;
const I8: u32 = oid::INT8;
const N: u32 = oid::NUMERIC;
const B: u32 = oid::BYTEA;

// ---------------------------------------------------------------------------------------
// Expected columns, written from pgbouncer-surface.md section 4.2 (not from the admin
// crate), plus our SHOW LATENCY.

const SOCKET: [(&str, u32); 21] = [
    ("type", T),
    ("user", T),
    ("database", T),
    ("replication", T),
    ("state", T),
    ("addr", T),
    ("port", I4),
    ("local_addr", T),
    ("local_port", I4),
    ("connect_time", T),
    ("request_time", T),
    ("wait", I4),
    ("wait_us", I4),
    ("close_needed", I4),
    ("ptr", T),
    ("link", T),
    ("remote_pid", I4),
    ("tls", T),
    ("application_name", T),
    ("prepared_statements", I4),
    ("id", I4),
];

const SOCKET_DEBUG: [&str; 7] = [
    "recv_pos",
    "pkt_pos",
    "pkt_remain",
    "send_pos",
    "send_remain",
    "pkt_avail",
    "send_avail",
];

fn cols(list: &[(&str, u32)]) -> Vec<(String, u32)> {
    list.iter().map(|(n, t)| (n.to_string(), *t)).collect()
}

fn typed(first: &[(&str, u32)], rest: &[&str], oid: u32) -> Vec<(String, u32)> {
    let mut v = cols(first);
    v.extend(rest.iter().map(|n| (n.to_string(), oid)));
    v
}

/// Every SHOW with its expected `(name, type oid)` list; `HELP` has no result set.
fn expected_columns() -> Vec<(&'static str, Vec<(String, u32)>)> {
    let stats_counts = [
        "server_assignment_count",
        "xact_count",
        "query_count",
        "bytes_received",
        "bytes_sent",
        "xact_time",
        "query_time",
        "wait_time",
    ];
    let mut totals = stats_counts.to_vec();
    totals.extend([
        "client_parse_count",
        "server_parse_count",
        "bind_count",
        "client_login_count",
    ]);
    let mut averages = stats_counts.to_vec();
    averages.extend([
        "avg_client_parse_count",
        "avg_server_parse_count",
        "avg_bind_count",
        "avg_client_login_count",
    ]);
    let sockets = typed(&SOCKET, &SOCKET_DEBUG, I4);
    let mut latency = vec![];
    for kind in ["wait", "query", "xact"] {
        for q in ["p50", "p95", "p99"] {
            latency.push(format!("{kind}_{q}_us"));
        }
    }
    let latency: Vec<&str> = latency.iter().map(String::as_str).collect();
    vec![
        ("HELP", vec![]),
        (
            "POOLS",
            typed(
                &[("database", T), ("user", T)],
                &[
                    "cl_active",
                    "cl_waiting",
                    "cl_active_cancel_req",
                    "cl_waiting_cancel_req",
                    "sv_active",
                    "sv_active_cancel",
                    "sv_being_canceled",
                    "sv_idle",
                    "sv_used",
                    "sv_tested",
                    "sv_login",
                    "maxwait",
                    "maxwait_us",
                ],
                I4,
            )
            .into_iter()
            .chain(cols(&[("pool_mode", T), ("load_balance_hosts", T)]))
            .collect(),
        ),
        (
            "STATS",
            typed(
                &[("database", T)],
                &[
                    "total_server_assignment_count",
                    "total_xact_count",
                    "total_query_count",
                    "total_received",
                    "total_sent",
                    "total_xact_time",
                    "total_query_time",
                    "total_wait_time",
                    "total_client_parse_count",
                    "total_server_parse_count",
                    "total_bind_count",
                    "total_client_login_count",
                    "avg_server_assignment_count",
                    "avg_xact_count",
                    "avg_query_count",
                    "avg_recv",
                    "avg_sent",
                    "avg_xact_time",
                    "avg_query_time",
                    "avg_wait_time",
                    "avg_client_parse_count",
                    "avg_server_parse_count",
                    "avg_bind_count",
                    "avg_client_login_count",
                ],
                N,
            ),
        ),
        ("STATS_TOTALS", typed(&[("database", T)], &totals, N)),
        ("STATS_AVERAGES", typed(&[("database", T)], &averages, N)),
        ("TOTALS", cols(&[("name", T), ("value", N)])),
        ("CLIENTS", cols(&SOCKET)),
        ("SERVERS", cols(&SOCKET)),
        (
            "DATABASES",
            cols(&[
                ("name", T),
                ("host", T),
                ("port", I4),
                ("database", T),
                ("force_user", T),
                ("pool_size", I4),
                ("min_pool_size", I4),
                ("reserve_pool_size", I4),
                ("server_lifetime", I4),
                ("pool_mode", T),
                ("load_balance_hosts", T),
                ("max_connections", I4),
                ("current_connections", I4),
                ("max_client_connections", I4),
                ("current_client_connections", I4),
                ("paused", I4),
                ("disabled", I4),
            ]),
        ),
        (
            "USERS",
            cols(&[
                ("name", T),
                ("pool_size", T),
                ("reserve_pool_size", T),
                ("pool_mode", T),
                ("max_user_connections", I4),
                ("current_connections", I4),
                ("max_user_client_connections", I4),
                ("current_client_connections", I4),
            ]),
        ),
        (
            "CONFIG",
            cols(&[("key", T), ("value", T), ("default", T), ("changeable", T)]),
        ),
        ("LISTS", cols(&[("list", T), ("items", I4)])),
        (
            "MEM",
            typed(&[("name", T)], &["size", "used", "free", "memtotal"], I4),
        ),
        (
            "FDS",
            cols(&[
                ("fd", I4),
                ("task", T),
                ("user", T),
                ("database", T),
                ("addr", T),
                ("port", I4),
                ("cancel", I8),
                ("link", I4),
                ("client_encoding", T),
                ("std_strings", T),
                ("datestyle", T),
                ("timezone", T),
                ("password", T),
                ("scram_client_key", B),
                ("scram_server_key", B),
            ]),
        ),
        ("SOCKETS", sockets.clone()),
        ("ACTIVE_SOCKETS", sockets),
        (
            "DNS_HOSTS",
            cols(&[("hostname", T), ("ttl", I8), ("addrs", T)]),
        ),
        (
            "DNS_ZONES",
            cols(&[("zonename", T), ("serial", I8), ("count", I4)]),
        ),
        ("STATE", cols(&[("key", T), ("value", T)])),
        ("VERSION", cols(&[("version", T)])),
        (
            "PEERS",
            cols(&[
                ("peer_id", I4),
                ("host", T),
                ("port", I4),
                ("pool_size", I4),
            ]),
        ),
        (
            "PEER_POOLS",
            typed(
                &[("peer_id", I4)],
                &[
                    "cl_active_cancel_req",
                    "cl_waiting_cancel_req",
                    "sv_active_cancel",
                    "sv_login",
                ],
                I4,
            ),
        ),
        (
            "LATENCY",
            typed(&[("database", T), ("user", T)], &latency, I8),
        ),
    ]
}

// ---------------------------------------------------------------------------------------
// Helpers.

fn admin_conninfo(d: &Daemon) -> String {
    conninfo(d, "admin", "adminpass", "pgbouncer")
}

/// A result set from `simple_query`: column names and rows of (name -> value).
#[derive(Debug, Default)]
struct Table {
    columns: Vec<String>,
    rows: Vec<HashMap<String, Option<String>>>,
}

impl Table {
    /// The rows whose `col` equals `value`.
    fn rows_where(&self, col: &str, value: &str) -> Vec<&HashMap<String, Option<String>>> {
        self.rows
            .iter()
            .filter(|r| r.get(col).cloned().flatten().as_deref() == Some(value))
            .collect()
    }
}

/// A text cell.
fn cell(row: &HashMap<String, Option<String>>, col: &str) -> String {
    row.get(col)
        .unwrap_or_else(|| panic!("no column {col} in {row:?}"))
        .clone()
        .unwrap_or_else(|| panic!("{col} is NULL in {row:?}"))
}

/// An integer cell.
fn int(row: &HashMap<String, Option<String>>, col: &str) -> i64 {
    let v = cell(row, col);
    v.trim()
        .parse()
        .unwrap_or_else(|_| panic!("{col} = {v:?} is not an integer"))
}

async fn table(c: &Client, sql: &str) -> Table {
    let msgs = c
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let mut t = Table::default();
    for m in msgs {
        match m {
            SimpleQueryMessage::RowDescription(c) => {
                t.columns = c.iter().map(|c| c.name().to_string()).collect();
            }
            SimpleQueryMessage::Row(r) => {
                let row = r
                    .columns()
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (c.name().to_string(), r.get(i).map(str::to_string)))
                    .collect();
                t.rows.push(row);
            }
            _ => {}
        }
    }
    t
}

/// The SHOW POOLS row of `db`/`user`, if the pool exists.
async fn pool_row(admin: &Client, db: &str, user: &str) -> Option<HashMap<String, Option<String>>> {
    let t = table(admin, "SHOW POOLS").await;
    t.rows
        .into_iter()
        .find(|r| cell(r, "database") == db && cell(r, "user") == user)
}

/// The SHOW CONFIG value of `key`.
async fn config_value(admin: &Client, key: &str) -> String {
    let t = table(admin, "SHOW CONFIG").await;
    let rows = t.rows_where("key", key);
    assert_eq!(rows.len(), 1, "SHOW CONFIG rows for {key}");
    cell(rows[0], "value")
}

/// The first cell of the first row of a simple query.
async fn scalar(c: &Client, sql: &str) -> Result<String, tokio_postgres::Error> {
    let msgs = c.simple_query(sql).await?;
    Ok(msgs
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{sql}: no row")))
}

/// Connects with tokio-postgres and keeps the connection task's result, which carries a
/// FATAL error the pooler sends while the client is idle.
async fn connect_watched(
    conninfo: &str,
) -> (Client, JoinHandle<Result<(), tokio_postgres::Error>>) {
    let (client, conn) = tokio_postgres::connect(conninfo, tokio_postgres::NoTls)
        .await
        .unwrap();
    (client, tokio::spawn(conn))
}

/// Awaits the end of a watched connection and returns the FATAL error that ended it.
async fn disconnect_error(
    conn: JoinHandle<Result<(), tokio_postgres::Error>>,
) -> (String, String, String) {
    let r = tokio::time::timeout(LIMIT, conn)
        .await
        .expect("the pooler should close the connection")
        .unwrap();
    let e = r.expect_err("the connection should end with an error");
    db_error(&e)
}

/// A bounded poll loop: `next` waits one tick and panics after `LIMIT`.
struct Ticker {
    tick: tokio::time::Interval,
    left: u32,
    what: &'static str,
}

impl Ticker {
    fn new(what: &'static str) -> Ticker {
        let period = Duration::from_millis(20);
        Ticker {
            tick: tokio::time::interval(period),
            left: (LIMIT.as_millis() / period.as_millis()) as u32,
            what,
        }
    }

    async fn next(&mut self) {
        assert!(self.left > 0, "gave up waiting for {}", self.what);
        self.left -= 1;
        self.tick.tick().await;
    }
}

/// Creates database `name` (owned by md5user) in the shared cluster, so that
/// `pg_stat_activity` can be filtered to this test's backends.
async fn create_db(pg: &'static PgCluster, name: &'static str) {
    tokio::task::spawn_blocking(move || pg.create_database(name, MD5_USER).unwrap())
        .await
        .unwrap();
}

/// The ini text of [`common::ini`] plus a `[databases]` entry `name` for the database of
/// the same name.
fn ini_with_db(pg: &PgCluster, dir: &Scratch, name: &str, extra: &str) -> String {
    ini(pg, dir, extra).replace(
        "[pgbouncer]",
        &format!(
            "{name} = host=127.0.0.1 port={} dbname={name}\n[pgbouncer]",
            pg.port()
        ),
    )
}

/// A superuser connection straight to PostgreSQL (unix socket).
async fn direct(pg: &PgCluster) -> Client {
    connect(&pg.socket_conninfo("postgres", "postgres"))
        .await
        .unwrap()
}

/// Backends of md5user in `db` that are inside a transaction or running a query.
async fn busy_backends(direct: &Client, db: &str) -> i64 {
    let row = direct
        .query_one(
            "select count(*) from pg_stat_activity where datname = $1 and usename = $2 \
             and state in ('active', 'idle in transaction')",
            &[&db, &MD5_USER],
        )
        .await
        .unwrap();
    row.get(0)
}

/// A client that speaks raw protocol messages, to see what tokio-postgres hides
/// (CommandComplete tags, type OIDs, NOTICEs).
struct Raw {
    s: TcpStream,
    buf: BytesMut,
}

impl Raw {
    /// Logs in (cleartext or md5) and reads up to the first ReadyForQuery.
    async fn login(d: &Daemon, user: &str, password: &str, database: &str) -> Raw {
        let s = TcpStream::connect(d.addr()).await.unwrap();
        let mut raw = Raw {
            s,
            buf: BytesMut::new(),
        };
        let mut out = BytesMut::new();
        StartupPacket::Startup(StartupMessage::new(vec![
            ("user".into(), user.into()),
            ("database".into(), database.into()),
        ]))
        .encode(&mut out);
        raw.s.write_all(&out).await.unwrap();
        loop {
            match raw.recv().await {
                Some(BackendMessage::Authentication(Authentication::Md5Password { salt })) => {
                    let mut out = BytesMut::new();
                    let resp = md5::client_response(password, user, salt);
                    encode_password(&mut out, resp.as_bytes());
                    raw.s.write_all(&out).await.unwrap();
                }
                Some(BackendMessage::Authentication(Authentication::CleartextPassword)) => {
                    let mut out = BytesMut::new();
                    encode_password(&mut out, password.as_bytes());
                    raw.s.write_all(&out).await.unwrap();
                }
                Some(BackendMessage::ReadyForQuery { .. }) => return raw,
                Some(BackendMessage::ErrorResponse(e)) => panic!("login failed: {e:?}"),
                Some(_) => {}
                None => panic!("closed during login"),
            }
        }
    }

    /// The next message, or `None` when the pooler closed the connection.
    async fn recv(&mut self) -> Option<BackendMessage> {
        loop {
            match BackendMessage::decode(&mut self.buf, DEFAULT_MAX_PACKET_SIZE).unwrap() {
                Some(m) => return Some(m),
                None => {
                    let n = tokio::time::timeout(LIMIT, self.s.read_buf(&mut self.buf))
                        .await
                        .expect("the pooler should answer")
                        .unwrap_or(0);
                    if n == 0 {
                        return None;
                    }
                }
            }
        }
    }

    /// Sends a simple query and returns every message up to ReadyForQuery (included) or
    /// the end of the connection.
    async fn query(&mut self, sql: &str) -> Vec<BackendMessage> {
        let mut out = BytesMut::new();
        encode_query(&mut out, sql);
        self.s.write_all(&out).await.unwrap();
        let mut msgs = Vec::new();
        while let Some(m) = self.recv().await {
            let done = matches!(m, BackendMessage::ReadyForQuery { .. });
            msgs.push(m);
            if done {
                break;
            }
        }
        msgs
    }
}

fn raw_columns(msgs: &[BackendMessage]) -> Option<Vec<(String, u32)>> {
    msgs.iter().find_map(|m| match m {
        BackendMessage::RowDescription { fields } => Some(
            fields
                .iter()
                .map(|f| (f.name.clone(), f.type_oid))
                .collect(),
        ),
        _ => None,
    })
}

fn raw_tag(msgs: &[BackendMessage]) -> Option<String> {
    msgs.iter().find_map(|m| match m {
        BackendMessage::CommandComplete { tag } => Some(String::from_utf8_lossy(tag).to_string()),
        _ => None,
    })
}

/// Severity, SQLSTATE and message of the ErrorResponse (or NoticeResponse) among `msgs`.
fn raw_fields(msgs: &[BackendMessage], notice: bool) -> Option<(String, String, String)> {
    msgs.iter().find_map(|m| match (m, notice) {
        (BackendMessage::ErrorResponse(f), false) | (BackendMessage::NoticeResponse(f), true) => {
            let get = |c: u8| f.field(c).unwrap_or_default().to_string();
            Some((get(b'S'), get(b'C'), get(b'M')))
        }
        _ => None,
    })
}

// ---------------------------------------------------------------------------------------
// 1. Every SHOW, through tokio-postgres, psql and raw messages.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_show_command_has_pgbouncers_columns_in_order_through_tokio_postgres_and_raw_messages(
) {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("admin-show");
    let d = start(pg, &dir, "pool_mode = transaction").await;
    // Something to show: a client with a pool and a server.
    let app = connect(&md5_conninfo(&d)).await.unwrap();
    app.simple_query("select 1").await.unwrap();
    let admin = connect(&admin_conninfo(&d)).await.unwrap();
    let mut raw = Raw::login(&d, "admin", "adminpass", "pgbouncer").await;
    for (what, expected) in expected_columns() {
        let sql = format!("SHOW {what}");
        let t = table(&admin, &sql).await;
        let names: Vec<String> = expected.iter().map(|(n, _)| n.clone()).collect();
        assert_eq!(t.columns, names, "{sql}: column names via tokio-postgres");
        let msgs = raw.query(&sql).await;
        assert_eq!(
            raw_fields(&msgs, false),
            None,
            "{sql}: unexpected error {msgs:?}"
        );
        assert_eq!(raw_tag(&msgs).as_deref(), Some("SHOW"), "{sql}: tag");
        if what == "HELP" {
            assert_eq!(raw_columns(&msgs), None, "SHOW HELP has no result set");
            let (sev, code, msg) = raw_fields(&msgs, true).expect("SHOW HELP sends a NOTICE");
            assert_eq!((sev.as_str(), code.as_str()), ("NOTICE", "00000"));
            assert_eq!(msg, "Console usage");
        } else {
            assert_eq!(
                raw_columns(&msgs),
                Some(expected),
                "{sql}: (name, type) via raw messages"
            );
        }
        assert!(
            matches!(msgs.last(), Some(BackendMessage::ReadyForQuery { .. })),
            "{sql}: ends with ReadyForQuery"
        );
    }
    // SELECT x is SHOW x; case and a trailing semicolon do not matter.
    let show = table(&admin, "SHOW POOLS").await;
    for alias in ["SELECT pools", "select POOLS;", "  show pools ;  "] {
        let t = table(&admin, alias).await;
        assert_eq!(t.columns, show.columns, "{alias}");
        assert_eq!(t.rows.len(), show.rows.len(), "{alias}");
    }
    // The rows make sense: the app pool, the console pool, our database.
    assert_eq!(show.rows_where("database", "appdb").len(), 1);
    let console = show.rows_where("database", "pgbouncer");
    assert_eq!(console.len(), 1);
    assert_eq!(cell(console[0], "user"), "pgbouncer");
    assert_eq!(cell(console[0], "pool_mode"), "statement");
    let version = scalar(&admin, "SHOW VERSION").await.unwrap();
    assert!(
        version.starts_with("pgbouncer-rs ")
            && version.ends_with("(compatible with PgBouncer 1.26.1)"),
        "{version}"
    );
    let state = table(&admin, "SHOW STATE").await;
    let keys: Vec<String> = state.rows.iter().map(|r| cell(r, "key")).collect();
    assert_eq!(keys, ["active", "paused", "suspended"]);
    assert_eq!(cell(&state.rows[0], "value"), "yes");
    let dbs = table(&admin, "SHOW DATABASES").await;
    for name in ["appdb", "postgres", "pgbouncer"] {
        assert_eq!(
            dbs.rows_where("name", name).len(),
            1,
            "SHOW DATABASES {name}"
        );
    }
    let clients = table(&admin, "SHOW CLIENTS").await;
    let app_rows = clients.rows_where("database", "appdb");
    assert_eq!(app_rows.len(), 1, "{:?}", clients.rows);
    assert_eq!(cell(app_rows[0], "type"), "C");
    assert_eq!(cell(app_rows[0], "user"), MD5_USER);
    assert!(
        cell(app_rows[0], "connect_time").ends_with(" UTC"),
        "{app_rows:?}"
    );
    let servers = table(&admin, "SHOW SERVERS").await;
    assert!(
        servers
            .rows_where("database", "appdb")
            .iter()
            .all(|r| cell(r, "type") == "S"),
        "{:?}",
        servers.rows
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_show_command_prints_its_header_through_psql() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("admin-psql");
    let d = start(pg, &dir, "pool_mode = transaction").await;
    let conninfo = admin_conninfo(&d);
    for (what, expected) in expected_columns() {
        let sql = format!("SHOW {what}");
        let o = run(
            pg,
            "psql",
            &[
                "-X",
                "-A",
                "-F",
                "|",
                "-v",
                "ON_ERROR_STOP=1",
                &conninfo,
                "-c",
                &sql,
            ],
        )
        .await;
        assert!(o.status.success(), "psql {sql}: {}", stderr(&o));
        let out = stdout(&o);
        if what == "HELP" {
            assert!(stderr(&o).contains("Console usage"), "{}", stderr(&o));
            assert!(stderr(&o).contains("SHOW LATENCY"), "{}", stderr(&o));
            continue;
        }
        let header = out.lines().next().unwrap_or_default();
        let names: Vec<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(header, names.join("|"), "psql {sql}");
        let footer = out.lines().last().unwrap_or_default();
        assert!(
            footer.starts_with('(') && footer.contains("row"),
            "psql {sql}: {out}"
        );
    }
    let pools = run(
        pg,
        "psql",
        &["-X", "-A", "-t", &conninfo, "-c", "SHOW POOLS"],
    )
    .await;
    let console = stdout(&pools)
        .lines()
        .find_map(|l| l.strip_prefix("pgbouncer|pgbouncer|").map(str::to_string))
        .unwrap_or_else(|| panic!("no console pool row: {}", stdout(&pools)));
    let cl_active: u32 = console.split('|').next().unwrap().parse().unwrap();
    assert!(
        cl_active >= 1,
        "the psql session itself is a cl_active of the console pool: {console}"
    );
}

// ---------------------------------------------------------------------------------------
// 2. Values under load.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_pools_counts_busy_servers_and_a_waiting_client_as_postgresql_sees_them() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    const DB: &str = "admin_load";
    create_db(pg, DB).await;
    let dir = Scratch::new("admin-load");
    let text = ini_with_db(
        pg,
        &dir,
        DB,
        "pool_mode = transaction\ndefault_pool_size = 2",
    );
    let d = Daemon::start(settings(&text, &dir)).await.unwrap();
    let info = conninfo(&d, MD5_USER, MD5_PASSWORD, DB);
    let admin = connect(&admin_conninfo(&d)).await.unwrap();
    let pg_direct = direct(pg).await;

    let a = connect(&info).await.unwrap();
    let b = connect(&info).await.unwrap();
    a.simple_query("begin; select 1").await.unwrap();
    b.simple_query("begin; select 1").await.unwrap();
    let c = Arc::new(connect(&info).await.unwrap());
    let waiting = {
        let c = c.clone();
        tokio::spawn(async move { scalar(&c, "select 'c done'").await })
    };

    let mut t = Ticker::new("cl_waiting >= 1 with maxwait > 0 in SHOW POOLS");
    let row = loop {
        t.next().await;
        let Some(row) = pool_row(&admin, DB, MD5_USER).await else {
            continue;
        };
        let wait_us = int(&row, "maxwait") * 1_000_000 + int(&row, "maxwait_us");
        if int(&row, "cl_waiting") >= 1 && wait_us > 0 {
            break row;
        }
    };
    assert_eq!(int(&row, "cl_waiting"), 1, "{row:?}");
    assert_eq!(int(&row, "cl_active"), 2, "{row:?}");
    assert_eq!(int(&row, "sv_active"), 2, "{row:?}");
    assert_eq!(int(&row, "sv_idle"), 0, "{row:?}");
    assert_eq!(cell(&row, "pool_mode"), "transaction");
    assert_eq!(
        busy_backends(&pg_direct, DB).await,
        2,
        "PostgreSQL sees the two servers SHOW POOLS calls active"
    );
    let clients = table(&admin, "SHOW CLIENTS").await;
    let states: Vec<String> = clients
        .rows_where("database", DB)
        .iter()
        .map(|r| cell(r, "state"))
        .collect();
    assert_eq!(
        states.iter().filter(|s| *s == "waiting").count(),
        1,
        "{states:?}"
    );
    assert_eq!(
        states.iter().filter(|s| *s == "active").count(),
        2,
        "{states:?}"
    );

    a.simple_query("commit").await.unwrap();
    let got = tokio::time::timeout(LIMIT, waiting)
        .await
        .expect("the waiting client gets the released server")
        .unwrap()
        .unwrap();
    assert_eq!(got, "c done");
    b.simple_query("commit").await.unwrap();
    let mut t = Ticker::new("cl_waiting back to 0 and no server active");
    let row = loop {
        t.next().await;
        let row = pool_row(&admin, DB, MD5_USER).await.unwrap();
        if int(&row, "cl_waiting") == 0 && int(&row, "sv_active") == 0 {
            break row;
        }
    };
    assert_eq!(
        int(&row, "maxwait") * 1_000_000 + int(&row, "maxwait_us"),
        0
    );
    assert_eq!(busy_backends(&pg_direct, DB).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_stats_counts_exactly_the_queries_and_transactions_a_client_ran() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("admin-stats");
    let d = start(pg, &dir, "pool_mode = transaction").await;
    let admin = connect(&admin_conninfo(&d)).await.unwrap();
    let app = connect(&md5_conninfo(&d)).await.unwrap();
    let stats_row = |t: Table| {
        t.rows
            .into_iter()
            .find(|r| cell(r, "database") == "appdb")
            .expect("a SHOW STATS row for appdb")
    };
    let before = stats_row(table(&admin, "SHOW STATS").await);
    const QUERIES: i64 = 25;
    for i in 0..QUERIES {
        let v = scalar(&app, &format!("select {i}")).await.unwrap();
        assert_eq!(v, i.to_string());
    }
    // Stats are booked when the server is released, which may trail the client's reply.
    let mut t = Ticker::new("SHOW STATS to count the queries");
    let after = loop {
        t.next().await;
        let row = stats_row(table(&admin, "SHOW STATS").await);
        if int(&row, "total_xact_count") >= int(&before, "total_xact_count") + QUERIES
            && int(&row, "total_query_count") >= int(&before, "total_query_count") + QUERIES
        {
            break row;
        }
    };
    for col in ["total_xact_count", "total_query_count"] {
        assert_eq!(
            int(&after, col) - int(&before, col),
            QUERIES,
            "{col}: before {before:?} after {after:?}"
        );
    }
    for col in ["total_received", "total_sent", "total_query_time"] {
        assert!(int(&after, col) > int(&before, col), "{col}: {after:?}");
    }
    // The same counters through STATS_TOTALS and TOTALS.
    let totals = stats_row(table(&admin, "SHOW STATS_TOTALS").await);
    assert_eq!(int(&totals, "xact_count"), int(&after, "total_xact_count"));
    assert_eq!(
        int(&totals, "query_count"),
        int(&after, "total_query_count")
    );
    let all = table(&admin, "SHOW TOTALS").await;
    let total = |name: &str| int(all.rows_where("name", name)[0], "value");
    assert!(total("total_query_count") >= int(&after, "total_query_count"));
}

// ---------------------------------------------------------------------------------------
// 3. PAUSE / RESUME.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_waits_for_open_transactions_and_holds_new_queries_until_resume() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    const DB: &str = "admin_pause";
    create_db(pg, DB).await;
    let dir = Scratch::new("admin-pause");
    let text = ini_with_db(
        pg,
        &dir,
        DB,
        "pool_mode = transaction\ndefault_pool_size = 2",
    );
    let d = Daemon::start(settings(&text, &dir)).await.unwrap();
    let info = conninfo(&d, MD5_USER, MD5_PASSWORD, DB);
    let admin = connect(&admin_conninfo(&d)).await.unwrap();
    let pauser = Arc::new(connect(&admin_conninfo(&d)).await.unwrap());
    let pg_direct = direct(pg).await;

    let a = connect(&info).await.unwrap();
    let b = Arc::new(connect(&info).await.unwrap());
    a.simple_query("begin; select 1").await.unwrap();

    let mut pause = {
        let pauser = pauser.clone();
        tokio::spawn(async move { pauser.simple_query("PAUSE").await.map(drop) })
    };
    assert!(
        tokio::time::timeout(STILL_PENDING, &mut pause)
            .await
            .is_err(),
        "PAUSE must wait while a transaction holds a server"
    );
    a.simple_query("commit").await.unwrap();
    tokio::time::timeout(LIMIT, &mut pause)
        .await
        .expect("PAUSE completes once the transaction ended")
        .unwrap()
        .expect("PAUSE succeeds");
    let state = table(&admin, "SHOW STATE").await;
    assert_eq!(cell(state.rows_where("key", "paused")[0], "value"), "yes");

    // While paused, a query waits in the pooler and never reaches PostgreSQL.
    let mut held = {
        let b = b.clone();
        tokio::spawn(async move { scalar(&b, "select 'held_during_pause'").await })
    };
    assert!(
        tokio::time::timeout(STILL_PENDING, &mut held)
            .await
            .is_err(),
        "a query must wait while the pooler is paused"
    );
    let seen = pg_direct
        .query_one(
            "select count(*) from pg_stat_activity where query like '%held\\_during\\_pause%' \
             and pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        seen.get::<_, i64>(0),
        0,
        "the held query reached PostgreSQL"
    );
    assert_eq!(busy_backends(&pg_direct, DB).await, 0);
    let row = pool_row(&admin, DB, MD5_USER).await.unwrap();
    assert_eq!(int(&row, "cl_waiting"), 1, "{row:?}");
    let e = admin.simple_query("PAUSE").await.unwrap_err();
    assert_eq!(
        db_error(&e),
        (
            "ERROR".into(),
            "08P01".into(),
            "already suspended/paused".into()
        )
    );

    admin.simple_query("RESUME").await.unwrap();
    let got = tokio::time::timeout(LIMIT, held)
        .await
        .expect("the held query runs after RESUME")
        .unwrap()
        .expect("no error after RESUME");
    assert_eq!(got, "held_during_pause");
    let state = table(&admin, "SHOW STATE").await;
    assert_eq!(cell(state.rows_where("key", "paused")[0], "value"), "no");
    let e = admin.simple_query("RESUME").await.unwrap_err();
    assert_eq!(db_error(&e).2, "pooler is not paused/suspended");
}

// ---------------------------------------------------------------------------------------
// 4. RELOAD.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_applies_a_bigger_default_pool_size_and_a_broken_file_keeps_the_old_config() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("admin-reload");
    let d = start(pg, &dir, "pool_mode = transaction\ndefault_pool_size = 1").await;
    let admin = connect(&admin_conninfo(&d)).await.unwrap();
    let mut raw = Raw::login(&d, "admin", "adminpass", "pgbouncer").await;
    let warm = connect(&md5_conninfo(&d)).await.unwrap();
    warm.simple_query("select 1").await.unwrap();
    assert_eq!(config_value(&admin, "default_pool_size").await, "1");

    let ini_path = dir.0.join("pgbouncer.ini");
    std::fs::write(
        &ini_path,
        ini(pg, &dir, "pool_mode = transaction\ndefault_pool_size = 3"),
    )
    .unwrap();
    let msgs = raw.query("RELOAD").await;
    assert_eq!(raw_fields(&msgs, false), None, "{msgs:?}");
    assert_eq!(raw_tag(&msgs).as_deref(), Some("RELOAD"));
    assert_eq!(config_value(&admin, "default_pool_size").await, "3");

    // Three clients hold a transaction each: three servers.
    let mut holders = Vec::new();
    let mut pids = HashSet::new();
    for i in 0..3 {
        let c = connect(&md5_conninfo(&d)).await.unwrap();
        let pid = tokio::time::timeout(LIMIT, scalar(&c, "begin; select pg_backend_pid()"))
            .await
            .unwrap_or_else(|_| panic!("client {i} got no server: the pool did not grow"))
            .unwrap();
        pids.insert(pid);
        holders.push(c);
    }
    assert_eq!(pids.len(), 3, "{pids:?}");
    let row = pool_row(&admin, "appdb", MD5_USER).await.unwrap();
    assert_eq!(int(&row, "sv_active"), 3, "{row:?}");
    for c in &holders {
        c.simple_query("commit").await.unwrap();
    }

    // A broken file: RELOAD fails with F0000, and nothing of the file is applied.
    std::fs::write(
        &ini_path,
        ini(
            pg,
            &dir,
            "pool_mode = transaction\ndefault_pool_size = 7\nbogus_key = 1",
        ),
    )
    .unwrap();
    let e = admin.simple_query("RELOAD").await.unwrap_err();
    assert_eq!(
        db_error(&e),
        (
            "ERROR".into(),
            "F0000".into(),
            "RELOAD failed, see logs for additional details".into()
        )
    );
    assert_eq!(config_value(&admin, "default_pool_size").await, "3");
    let v = scalar(&warm, "select 'still pooling'").await.unwrap();
    assert_eq!(v, "still pooling");
    for c in &holders {
        c.simple_query("begin; select 1").await.unwrap();
    }
    let row = pool_row(&admin, "appdb", MD5_USER).await.unwrap();
    assert_eq!(int(&row, "sv_active"), 3, "{row:?}");
}

// ---------------------------------------------------------------------------------------
// 5. Access.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_admin_and_stats_users_get_in_and_stats_users_cannot_control() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("admin-access");
    let text = ini(pg, &dir, "pool_mode = transaction\nstats_users = stats");
    let userlist = dir.0.join("userlist.txt");
    let mut users = std::fs::read_to_string(&userlist).unwrap();
    users.push_str("\"stats\" \"statspass\"\n\"nobody\" \"nobodypass\"\n");
    std::fs::write(&userlist, users).unwrap();
    let d = Daemon::start(settings(&text, &dir)).await.unwrap();

    for (user, pass) in [("nobody", "nobodypass"), (MD5_USER, MD5_PASSWORD)] {
        let e = connect(&conninfo(&d, user, pass, "pgbouncer"))
            .await
            .unwrap_err();
        assert_eq!(
            db_error(&e),
            ("FATAL".into(), "08P01".into(), "not allowed".into()),
            "{user}"
        );
    }
    let e = connect(&conninfo(&d, "stats", "wrong", "pgbouncer"))
        .await
        .unwrap_err();
    assert_eq!(db_error(&e).2, "password authentication failed");

    let stats = connect(&conninfo(&d, "stats", "statspass", "pgbouncer"))
        .await
        .unwrap();
    let pools = table(&stats, "SHOW POOLS").await;
    assert_eq!(pools.columns[..3], ["database", "user", "cl_active"]);
    table(&stats, "SHOW STATS").await;
    table(&stats, "SHOW CLIENTS").await;
    for cmd in [
        "PAUSE",
        "KILL_CLIENT 1",
        "SHOW FDS",
        "RELOAD",
        "SET default_pool_size = 9",
    ] {
        let e = stats.simple_query(cmd).await.unwrap_err();
        assert_eq!(
            db_error(&e),
            ("ERROR".into(), "08P01".into(), "admin access needed".into()),
            "{cmd}"
        );
    }
    // The session survives its errors.
    assert_eq!(
        table(&stats, "SHOW STATE").await.rows[1]["key"].as_deref(),
        Some("paused")
    );
    let admin = connect(&admin_conninfo(&d)).await.unwrap();
    assert_eq!(table(&admin, "SHOW FDS").await.rows.len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_client_disconnects_that_client_with_admin_forced_disconnect() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("admin-killclient");
    let d = start(pg, &dir, "pool_mode = transaction").await;
    let admin = connect(&admin_conninfo(&d)).await.unwrap();
    let (victim, victim_conn) =
        connect_watched(&format!("{} application_name=victim", md5_conninfo(&d))).await;
    victim.simple_query("select 1").await.unwrap();
    let bystander = connect(&md5_conninfo(&d)).await.unwrap();
    bystander.simple_query("select 1").await.unwrap();

    let clients = table(&admin, "SHOW CLIENTS").await;
    let rows = clients.rows_where("application_name", "victim");
    assert_eq!(rows.len(), 1, "{:?}", clients.rows);
    let id = int(rows[0], "id");
    let ids: HashSet<i64> = clients.rows.iter().map(|r| int(r, "id")).collect();
    assert_eq!(ids.len(), clients.rows.len(), "ids are unique");

    admin
        .simple_query(&format!("KILL_CLIENT {id}"))
        .await
        .unwrap();
    assert_eq!(
        disconnect_error(victim_conn).await,
        (
            "FATAL".into(),
            "08P01".into(),
            "admin forced disconnect".into()
        )
    );
    assert!(victim.simple_query("select 1").await.is_err());
    let mut t = Ticker::new("the killed client to leave SHOW CLIENTS");
    loop {
        t.next().await;
        let clients = table(&admin, "SHOW CLIENTS").await;
        if clients.rows_where("application_name", "victim").is_empty() {
            break;
        }
    }
    let e = admin
        .simple_query(&format!("KILL_CLIENT {id}"))
        .await
        .unwrap_err();
    assert_eq!(db_error(&e).2, "client not found");
    assert_eq!(scalar(&bystander, "select 2").await.unwrap(), "2");
}

// ---------------------------------------------------------------------------------------
// 6. Errors.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_errors_are_08p01_and_keep_the_session_usable() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("admin-errors");
    let d = start(pg, &dir, "pool_mode = transaction").await;
    let admin = connect(&admin_conninfo(&d)).await.unwrap();
    let cases = [
        (
            "SHOW NOTHING",
            "invalid command 'SHOW NOTHING', use SHOW HELP;",
        ),
        ("PAUSE nosuchdb", "no such database: nosuchdb"),
        ("RESUME", "pooler is not paused/suspended"),
        ("PAUSE pgbouncer", "cannot pause admin db: pgbouncer"),
        ("DISABLE", "a database is required"),
        (
            "select 1; select 2",
            "invalid command 'select 1; select 2', use SHOW HELP;",
        ),
        ("SET no_such_key = 1", "SET failed"),
    ];
    for (sql, message) in cases {
        let e = admin.simple_query(sql).await.unwrap_err();
        assert_eq!(
            db_error(&e),
            ("ERROR".into(), "08P01".into(), message.into()),
            "{sql}"
        );
        let v = scalar(&admin, "SHOW VERSION").await.unwrap();
        assert!(v.starts_with("pgbouncer-rs "), "after {sql}: {v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_extended_query_protocol_gets_an_error_and_the_console_closes() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("admin-extended");
    let d = start(pg, &dir, "pool_mode = transaction").await;
    let admin = connect(&admin_conninfo(&d)).await.unwrap();
    let e = admin.query("SHOW VERSION", &[]).await.unwrap_err();
    assert_eq!(
        db_error(&e),
        (
            "ERROR".into(),
            "08P01".into(),
            "extended query protocol not supported by admin console".into()
        )
    );
    let mut t = Ticker::new("the console to close the connection");
    while !admin.is_closed() {
        t.next().await;
    }
    // Other console sessions are unaffected.
    let other = connect(&admin_conninfo(&d)).await.unwrap();
    table(&other, "SHOW POOLS").await;
}

// ---------------------------------------------------------------------------------------
// 7. SET.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_default_pool_size_answers_its_tag_and_shows_in_show_config() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("admin-set");
    let d = start(pg, &dir, "pool_mode = transaction").await;
    let admin = connect(&admin_conninfo(&d)).await.unwrap();
    assert_eq!(config_value(&admin, "default_pool_size").await, "20");

    let mut raw = Raw::login(&d, "admin", "adminpass", "pgbouncer").await;
    let msgs = raw.query("SET default_pool_size = 5").await;
    assert_eq!(raw_fields(&msgs, false), None, "{msgs:?}");
    assert_eq!(raw_tag(&msgs).as_deref(), Some("SET default_pool_size=5"));
    assert_eq!(config_value(&admin, "default_pool_size").await, "5");

    let o = psql(pg, &admin_conninfo(&d), "SET default_pool_size TO 6").await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "SET default_pool_size=6");
    let config = table(&admin, "SHOW CONFIG").await;
    let row = config.rows_where("key", "default_pool_size")[0];
    assert_eq!(cell(row, "value"), "6");
    assert_eq!(cell(row, "default"), "20");
    assert_eq!(cell(row, "changeable"), "yes");
}

// ---------------------------------------------------------------------------------------
// 8. DISABLE / ENABLE / KILL.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_rejects_new_logins_until_enable_and_kill_drops_clients_until_resume() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("admin-disable");
    let d = start(pg, &dir, "pool_mode = transaction").await;
    let admin = connect(&admin_conninfo(&d)).await.unwrap();
    let (old, old_conn) = connect_watched(&md5_conninfo(&d)).await;
    old.simple_query("select 1").await.unwrap();

    admin.simple_query("DISABLE appdb").await.unwrap();
    let e = connect(&md5_conninfo(&d)).await.unwrap_err();
    assert_eq!(
        db_error(&e),
        (
            "FATAL".into(),
            "08P01".into(),
            "database \"appdb\" is disabled".into()
        )
    );
    let dbs = table(&admin, "SHOW DATABASES").await;
    assert_eq!(int(dbs.rows_where("name", "appdb")[0], "disabled"), 1);
    assert_eq!(
        scalar(&old, "select 'existing clients keep working'")
            .await
            .unwrap(),
        "existing clients keep working"
    );
    admin.simple_query("ENABLE appdb").await.unwrap();
    let fresh = connect(&md5_conninfo(&d)).await.unwrap();
    assert_eq!(scalar(&fresh, "select 3").await.unwrap(), "3");
    let dbs = table(&admin, "SHOW DATABASES").await;
    assert_eq!(int(dbs.rows_where("name", "appdb")[0], "disabled"), 0);

    let mut raw = Raw::login(&d, "admin", "adminpass", "pgbouncer").await;
    let msgs = raw.query("KILL appdb").await;
    assert_eq!(raw_fields(&msgs, false), None, "{msgs:?}");
    assert_eq!(raw_tag(&msgs).as_deref(), Some("KILL"));
    assert_eq!(
        disconnect_error(old_conn).await,
        ("FATAL".into(), "08P01".into(), "database removed".into())
    );
    let dbs = table(&admin, "SHOW DATABASES").await;
    assert_eq!(int(dbs.rows_where("name", "appdb")[0], "paused"), 1);

    // A killed database is paused: a new client's query waits for RESUME.
    let info = md5_conninfo(&d);
    let mut later = tokio::spawn(async move {
        let c = connect(&info).await?;
        scalar(&c, "select 'after kill'").await
    });
    assert!(
        tokio::time::timeout(STILL_PENDING, &mut later)
            .await
            .is_err(),
        "a query on a killed database must wait for RESUME"
    );
    let e = admin.simple_query("RESUME postgres").await.unwrap_err();
    assert_eq!(db_error(&e).2, "database postgres is not paused");
    admin.simple_query("RESUME appdb").await.unwrap();
    let got = tokio::time::timeout(LIMIT, later)
        .await
        .expect("the query runs after RESUME")
        .unwrap()
        .expect("no error after RESUME");
    assert_eq!(got, "after kill");
}

// ---------------------------------------------------------------------------------------
// More control commands: per-database PAUSE, RECONNECT + WAIT_CLOSE, fake GUCs.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pausing_one_database_holds_only_its_clients() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("admin-pausedb");
    let d = start(pg, &dir, "pool_mode = transaction").await;
    let admin = connect(&admin_conninfo(&d)).await.unwrap();
    let app = Arc::new(connect(&md5_conninfo(&d)).await.unwrap());
    app.simple_query("select 1").await.unwrap();
    let other = connect(&conninfo(&d, MD5_USER, MD5_PASSWORD, "postgres"))
        .await
        .unwrap();

    admin.simple_query("PAUSE appdb").await.unwrap();
    let dbs = table(&admin, "SHOW DATABASES").await;
    assert_eq!(int(dbs.rows_where("name", "appdb")[0], "paused"), 1);
    assert_eq!(int(dbs.rows_where("name", "postgres")[0], "paused"), 0);
    let state = table(&admin, "SHOW STATE").await;
    assert_eq!(cell(state.rows_where("key", "paused")[0], "value"), "no");
    let mut held = {
        let app = app.clone();
        tokio::spawn(async move { scalar(&app, "select 'appdb resumed'").await })
    };
    assert!(
        tokio::time::timeout(STILL_PENDING, &mut held)
            .await
            .is_err(),
        "appdb is paused"
    );
    assert_eq!(
        scalar(&other, "select 'postgres runs'").await.unwrap(),
        "postgres runs"
    );
    // PgBouncer compat: pausing a paused database again just answers PAUSE.
    tokio::time::timeout(LIMIT, admin.simple_query("PAUSE appdb"))
        .await
        .expect("a second PAUSE of an idle paused database answers at once")
        .unwrap();
    admin.simple_query("RESUME appdb").await.unwrap();
    let got = tokio::time::timeout(LIMIT, held)
        .await
        .expect("appdb runs after RESUME appdb")
        .unwrap()
        .unwrap();
    assert_eq!(got, "appdb resumed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_replaces_servers_after_their_transactions_and_wait_close_waits_for_that() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("admin-reconnect");
    let d = start(pg, &dir, "pool_mode = transaction\ndefault_pool_size = 1").await;
    let admin = connect(&admin_conninfo(&d)).await.unwrap();
    let app = connect(&md5_conninfo(&d)).await.unwrap();
    let old_pid = scalar(&app, "begin; select pg_backend_pid()")
        .await
        .unwrap();

    let mut raw = Raw::login(&d, "admin", "adminpass", "pgbouncer").await;
    let msgs = raw.query("RECONNECT appdb").await;
    assert_eq!(raw_fields(&msgs, false), None, "{msgs:?}");
    assert_eq!(raw_tag(&msgs).as_deref(), Some("RECONNECT"));
    let servers = table(&admin, "SHOW SERVERS").await;
    let rows = servers.rows_where("database", "appdb");
    assert_eq!(rows.len(), 1, "{:?}", servers.rows);
    assert_eq!(int(rows[0], "close_needed"), 1, "{rows:?}");

    let waiter = Arc::new(connect(&admin_conninfo(&d)).await.unwrap());
    let mut wait_close = {
        let waiter = waiter.clone();
        tokio::spawn(async move { waiter.simple_query("WAIT_CLOSE appdb").await.map(drop) })
    };
    assert!(
        tokio::time::timeout(STILL_PENDING, &mut wait_close)
            .await
            .is_err(),
        "WAIT_CLOSE must wait while the old server is in a transaction"
    );
    // The transaction is not disturbed.
    assert_eq!(
        scalar(&app, "select pg_backend_pid()").await.unwrap(),
        old_pid
    );
    app.simple_query("commit").await.unwrap();
    tokio::time::timeout(LIMIT, wait_close)
        .await
        .expect("WAIT_CLOSE completes once the old server is closed")
        .unwrap()
        .unwrap();
    let new_pid = scalar(&app, "select pg_backend_pid()").await.unwrap();
    assert_ne!(new_pid, old_pid, "RECONNECT should give a new server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_gucs_answer_like_pgbouncer() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("admin-guc");
    let d = start(pg, &dir, "").await;
    let mut raw = Raw::login(&d, "admin", "adminpass", "pgbouncer").await;
    for (name, value) in [
        ("client_encoding", "UTF-8"),
        ("default_transaction_isolation", "read committed"),
        ("standard_conforming_strings", "on"),
        ("DateStyle", "ISO"),
        ("TimeZone", "GMT"),
    ] {
        let msgs = raw.query(&format!("SHOW {name}")).await;
        let columns = raw_columns(&msgs).unwrap_or_else(|| panic!("{name}: {msgs:?}"));
        assert_eq!(columns.len(), 1);
        assert!(columns[0].0.eq_ignore_ascii_case(name), "{columns:?}");
        let row = msgs.iter().find_map(|m| match m {
            BackendMessage::DataRow { values } => values[0].clone(),
            _ => None,
        });
        assert_eq!(row.as_deref(), Some(value.as_bytes()), "{name}");
        assert_eq!(raw_tag(&msgs).as_deref(), Some("SHOW"));
    }
    let msgs = raw.query("SET client_encoding = 'UTF8'").await;
    assert_eq!(
        raw_fields(&msgs, true),
        Some(("NOTICE".into(), "00000".into(), "SET ignored".into()))
    );
    assert_eq!(raw_tag(&msgs).as_deref(), Some("SET"));
}

// ---------------------------------------------------------------------------------------
// Found while writing the console docs.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_servers_gives_each_servers_address_port_and_backend_pid() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("admin-servers");
    let d = start(pg, &dir, "pool_mode = transaction\ndefault_pool_size = 1").await;
    let admin = connect(&admin_conninfo(&d)).await.unwrap();
    let app = connect(&format!("{} application_name=linked", md5_conninfo(&d)))
        .await
        .unwrap();
    let pid = scalar(&app, "begin; select pg_backend_pid()")
        .await
        .unwrap();

    let clients = table(&admin, "SHOW CLIENTS").await;
    let client = clients.rows_where("application_name", "linked")[0];
    let servers = table(&admin, "SHOW SERVERS").await;
    let rows = servers.rows_where("database", "appdb");
    assert_eq!(rows.len(), 1, "{:?}", servers.rows);
    let server = rows[0];
    assert_eq!(cell(server, "state"), "active");
    assert_eq!(cell(server, "link"), cell(client, "ptr"));
    assert_eq!(cell(server, "ptr"), cell(client, "link"));
    // PgBouncer shows the server socket's peer and local address and, for TCP, the
    // backend PID from BackendKeyData.
    assert_eq!(
        (
            cell(server, "addr"),
            int(server, "port"),
            cell(server, "local_addr"),
            int(server, "local_port") > 0,
            cell(server, "remote_pid"),
        ),
        (
            "127.0.0.1".to_string(),
            i64::from(pg.port()),
            "127.0.0.1".to_string(),
            true,
            pid,
        ),
        "SHOW SERVERS (addr, port, local_addr, local_port > 0, remote_pid): {server:?}"
    );
    app.simple_query("commit").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_client_gets_a_new_server_when_the_clients_holding_the_pool_leave_mid_transaction(
) {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("admin-stranded");
    let d = start(pg, &dir, "pool_mode = transaction\ndefault_pool_size = 2").await;
    let admin = connect(&admin_conninfo(&d)).await.unwrap();
    let (a, a_conn) = connect_watched(&md5_conninfo(&d)).await;
    let (b, b_conn) = connect_watched(&md5_conninfo(&d)).await;
    a.simple_query("begin; select 1").await.unwrap();
    b.simple_query("begin; select 1").await.unwrap();
    let c = connect(&md5_conninfo(&d)).await.unwrap();
    let waiting = tokio::spawn(async move { scalar(&c, "select 'served'").await });
    let mut t = Ticker::new("cl_waiting = 1");
    loop {
        t.next().await;
        let row = pool_row(&admin, "appdb", MD5_USER).await.unwrap();
        if int(&row, "cl_waiting") == 1 {
            break;
        }
    }
    // Both holders go away inside their transactions: their servers are dirty and
    // closed, so the pool has room again and must open a server for the waiting client.
    drop((a, b));
    for conn in [a_conn, b_conn] {
        tokio::time::timeout(LIMIT, conn)
            .await
            .expect("the holder's connection ends")
            .unwrap()
            .unwrap();
    }
    // A new server is one connect away; 5 s is far beyond that and far below the
    // unrelated timer (server_connect_timeout, 15 s) that eventually rescues the client
    // when the pooler forgets to look at its queue.
    let promptly = Duration::from_secs(5);
    let got = tokio::time::timeout(promptly, waiting).await;
    let pools = pool_row(&admin, "appdb", MD5_USER).await;
    let got = got.unwrap_or_else(|_| {
        panic!(
            "the waiting client was not served although the pool had room for new servers; \
             SHOW POOLS: {pools:?}"
        )
    });
    assert_eq!(got.unwrap().unwrap(), "served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_stops_traffic_until_resume_or_until_the_suspending_console_leaves() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("suspend");
    let d = start(pg, &dir, "pool_mode = transaction").await;
    let client = connect(&md5_conninfo(&d)).await.unwrap();
    client.simple_query("select 1").await.unwrap();
    let admin = connect(&admin_conninfo(&d)).await.unwrap();
    admin.simple_query("SUSPEND").await.unwrap();
    let e = admin.simple_query("SUSPEND").await.unwrap_err();
    assert_eq!(db_error(&e).2, "already suspended/paused");
    // A query sent now is not read while suspended.
    let c = Arc::new(client);
    let mut pending = {
        let c = c.clone();
        tokio::spawn(async move { c.simple_query("select 2").await.map(|_| ()) })
    };
    let early = tokio::time::timeout(Duration::from_millis(500), &mut pending).await;
    assert!(early.is_err(), "the query ran while suspended: {early:?}");
    admin.simple_query("RESUME").await.unwrap();
    // After RESUME the waiting query completes, and the client goes on working.
    tokio::time::timeout(Duration::from_secs(10), pending)
        .await
        .expect("served after RESUME")
        .unwrap()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), c.simple_query("select 3"))
        .await
        .expect("served after RESUME")
        .unwrap();
    // A console that suspends and then leaves resumes the pooler.
    let admin2 = connect(&admin_conninfo(&d)).await.unwrap();
    admin2.simple_query("SUSPEND").await.unwrap();
    drop(admin2);
    tokio::time::timeout(Duration::from_secs(10), c.simple_query("select 4"))
        .await
        .expect("served after the suspending console left")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_drops_a_connection_whose_data_is_not_flushed_within_suspend_timeout() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("suspendtimeout");
    let d = start(pg, &dir, "pool_mode = transaction\nsuspend_timeout = 1").await;
    // A client asks for a large result and never reads it: the pooler's write to it
    // blocks once the socket buffers are full.
    let mut stalled = Raw::login(&d, MD5_USER, MD5_PASSWORD, "appdb").await;
    let mut out = BytesMut::new();
    encode_query(
        &mut out,
        "select repeat('x', 10000) from generate_series(1, 20000)",
    );
    stalled.s.write_all(&out).await.unwrap();
    let reader = connect(&md5_conninfo(&d)).await.unwrap();
    reader.simple_query("select 1").await.unwrap();
    // Wait until the result has filled the buffers (it is 200 MB, far more than they
    // hold): the pooler's write to the client is stuck, so it stops reading the server,
    // and PostgreSQL itself waits to write.
    let mut t = Ticker::new("PostgreSQL to block writing the large result");
    loop {
        let q = "select count(*) from pg_stat_activity where query like 'select repeat(''x'', 10000)%' and wait_event = 'ClientWrite'";
        let n = tokio::task::spawn_blocking(move || pg.psql("postgres", q).unwrap())
            .await
            .unwrap();
        if n == "1" {
            break;
        }
        t.next().await;
    }
    let admin = connect(&admin_conninfo(&d)).await.unwrap();
    // SUSPEND gives up on the stuck write after suspend_timeout and then answers.
    tokio::time::timeout(LIMIT, admin.simple_query("SUSPEND"))
        .await
        .expect("SUSPEND answers once suspend_timeout has passed")
        .unwrap();
    // The stalled client was dropped: what was buffered drains, then the stream ends
    // (without the drop the pooler would keep it open, suspended, indefinitely).
    let mut sink = vec![0u8; 1 << 20];
    let mut total = 0usize;
    loop {
        let n = tokio::time::timeout(LIMIT, stalled.s.read(&mut sink))
            .await
            .expect("the stalled connection should be closed by the pooler")
            .unwrap_or(0);
        if n == 0 {
            break;
        }
        total += n;
    }
    assert!(
        total < 200_000_000,
        "the whole result arrived ({total} bytes): nothing was dropped"
    );
    admin.simple_query("RESUME").await.unwrap();
    // The other client is untouched, and the pool still serves (the dropped client's
    // server, caught mid-result, was closed rather than reused).
    let rows = reader.simple_query("select 41 + 1").await.unwrap();
    let answer = rows.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
        _ => None,
    });
    assert_eq!(answer.as_deref(), Some("42"));
    let clients = table(&admin, "SHOW CLIENTS").await;
    let left = clients.rows_where("user", MD5_USER);
    assert_eq!(left.len(), 1, "only the reader is left: {clients:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consoles_own_logins_and_commands_are_counted_as_pool_pgbouncer() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("admin-console-stats");
    let d = start(pg, &dir, "pool_mode = transaction").await;
    for _ in 0..2 {
        let o = psql(pg, &md5_conninfo(&d), "select 1").await;
        assert_eq!(stdout(&o), "1", "{}", stderr(&o));
    }
    // A failed console login counts for nothing.
    let o = psql(
        pg,
        &conninfo(&d, "admin", "wrong", "pgbouncer"),
        "SHOW VERSION",
    )
    .await;
    assert!(!o.status.success());
    let admin = connect(&admin_conninfo(&d)).await.unwrap();
    admin.simple_query("SHOW VERSION").await.unwrap();
    admin.simple_query("SHOW VERSION").await.unwrap();
    // 2 app logins + 1 console login; 2 app transactions + 3 console commands (this
    // one included).
    let totals = table(&admin, "SHOW TOTALS").await;
    let value = |name: &str| int(totals.rows_where("name", name)[0], "value");
    assert_eq!(value("total_client_login_count"), 3);
    assert_eq!(value("total_xact_count"), 5);
    assert_eq!(value("total_query_count"), 5);
    let stats = table(&admin, "SHOW STATS").await;
    let row = stats.rows_where("database", "pgbouncer")[0];
    assert_eq!(int(row, "total_client_login_count"), 1);
    assert_eq!(int(row, "total_xact_count"), 4, "{row:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_and_servers_share_one_id_sequence_in_creation_order() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("admin-ids");
    let d = start(pg, &dir, "pool_mode = session\nserver_lifetime = 0").await;
    let admin = connect(&admin_conninfo(&d)).await.unwrap();
    let ids = |t: &Table| -> HashSet<i64> { t.rows.iter().map(|r| int(r, "id")).collect() };
    let first = ids(&table(&admin, "SHOW SOCKETS").await);
    let console = *first.iter().max().unwrap();
    for i in 1..=2 {
        let app = connect(&md5_conninfo(&d)).await.unwrap();
        app.simple_query("select 1").await.unwrap();
        // The app client, then the server opened for it.
        let expected: HashSet<i64> = [console, console + 2 * i - 1, console + 2 * i].into();
        assert_eq!(
            ids(&table(&admin, "SHOW SOCKETS").await),
            expected,
            "round {i}"
        );
        let servers = table(&admin, "SHOW SERVERS").await;
        assert_eq!(
            servers
                .rows
                .iter()
                .map(|r| int(r, "id"))
                .collect::<Vec<_>>(),
            [console + 2 * i]
        );
        drop(app);
        // server_lifetime = 0: the server goes with its client.
        for _ in 0..100 {
            if table(&admin, "SHOW SERVERS").await.rows.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_clients_count_against_client_limits_and_only_admins_are_exempt() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("admin-console-limits");
    let d = start(
        pg,
        &dir,
        &format!("stats_users = {MD5_USER}\nmax_user_client_connections = 1"),
    )
    .await;
    let stats_console = conninfo(&d, MD5_USER, MD5_PASSWORD, "pgbouncer");
    let first = connect(&stats_console).await.unwrap();
    let Err(err) = connect(&stats_console).await else {
        panic!("over the user limit, but let in");
    };
    assert_eq!(
        db_error(&err).2,
        "client connections exceeded (max_user_client_connections)"
    );
    // Admins are exempt, and still counted.
    let a1 = connect(&admin_conninfo(&d)).await.unwrap();
    let _a2 = connect(&admin_conninfo(&d)).await.unwrap();
    let users = table(&a1, "SHOW USERS").await;
    let count = |name: &str| {
        int(
            users.rows_where("name", name)[0],
            "current_client_connections",
        )
    };
    assert_eq!(count(MD5_USER), 1);
    assert_eq!(count("admin"), 2);
    let dbs = table(&a1, "SHOW DATABASES").await;
    assert_eq!(
        int(
            dbs.rows_where("name", "pgbouncer")[0],
            "current_client_connections"
        ),
        3
    );
    // Leaving gives the place back.
    drop(first);
    let mut again = None;
    for _ in 0..50 {
        if let Ok(c) = connect(&stats_console).await {
            again = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(again.is_some(), "the user's place was not given back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_users_lists_every_auth_file_user_without_a_pool() {
    if !pg_harness::require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let dir = Scratch::new("admin-users");
    let d = start(pg, &dir, "").await;
    let admin = connect(&admin_conninfo(&d)).await.unwrap();
    let users = table(&admin, "SHOW USERS").await;
    for name in [
        MD5_USER,
        pg_harness::SCRAM_USER,
        pg_harness::PLAIN_USER,
        "admin",
    ] {
        assert_eq!(users.rows_where("name", name).len(), 1, "{name}: {users:?}");
    }
}
