//! [`Snapshot`]: the plain data a SHOW renders, filled by the daemon. Pool, client, server
//! and statistics data come from the [`Pooler`] itself; the snapshot adds what only the
//! daemon knows (socket addresses, TLS, `[databases]` hosts, console sessions, settings).

use std::collections::HashMap;
use std::time::SystemTime;

use pgbouncer_pool_core::{ClientId, Instant, Pooler, ServerId};

/// Everything [`show`](crate::show) reads. Build it with [`Snapshot::new`] and fill in the
/// fields you have; anything left empty renders as PgBouncer does for an absent value.
#[derive(Debug, Clone)]
pub struct Snapshot<'a> {
    /// The pooler (pools, clients, servers, stats, effective settings).
    pub pooler: &'a Pooler,
    /// The daemon's monotonic clock now, the clock pool-core runs on.
    pub now: Instant,
    /// The wall clock at the same moment: a timestamp shown for `instant` is
    /// `wall_clock_now - (now - instant)`, printed in UTC.
    pub wall_clock_now: SystemTime,
    /// `listen_port`: the port of the `pgbouncer` row of SHOW DATABASES.
    pub listen_port: u16,
    /// `[databases]` entries (and auto-databases created through `*`), any order. The
    /// admin database `pgbouncer` is added by the renderer.
    pub databases: Vec<DatabaseInfo>,
    /// Known user names (`[users]`, auth_file, auth_query results), any order; pool
    /// settings come from the pooler's config. The `pgbouncer` user is added by the renderer.
    pub users: Vec<String>,
    /// Socket details of clients known to the pooler.
    pub clients: HashMap<ClientId, ConnInfo>,
    /// Socket details of servers known to the pooler.
    pub servers: HashMap<ServerId, ConnInfo>,
    /// Console sessions (not in the pooler): shown in SHOW CLIENTS and counted in the
    /// `pgbouncer` row of SHOW POOLS.
    pub admin_clients: Vec<AdminClientInfo>,
    /// `[pgbouncer]` settings for SHOW CONFIG, in the order to show them.
    pub config: Vec<ConfigEntry>,
    /// Whether SUSPEND is in force (SHOW STATE).
    pub suspended: bool,
    /// Clients past their startup packet and still authenticating: not known to the
    /// pooler yet (no pool), counted in SHOW LISTS `used_clients` and `login_clients`.
    pub logins_in_progress: usize,
    /// The console's own traffic (pool `pgbouncer/pgbouncer` in PgBouncer): successful
    /// console logins in `client_login_count`, each command one transaction and one
    /// query. Counted by whoever serves the console.
    pub console_totals: pgbouncer_pool_core::StatCounters,
    /// `[peers]`: (peer_id, host, port, pool_size), for SHOW PEERS.
    pub peers: Vec<(u16, String, u16, u32)>,
    /// The process's open-file limit, if known (the advisor checks `max_client_conn`
    /// against it).
    pub fd_limit: Option<u64>,
}

impl<'a> Snapshot<'a> {
    /// A snapshot with nothing but the pooler and the two clocks.
    pub fn new(pooler: &'a Pooler, now: Instant, wall_clock_now: SystemTime) -> Self {
        Snapshot {
            pooler,
            now,
            wall_clock_now,
            listen_port: 6432,
            databases: Vec::new(),
            users: Vec::new(),
            clients: HashMap::new(),
            servers: HashMap::new(),
            admin_clients: Vec::new(),
            config: Vec::new(),
            suspended: false,
            logins_in_progress: 0,
            console_totals: Default::default(),
            fd_limit: None,
            peers: Vec::new(),
        }
    }
}

/// One `[databases]` entry, as far as the pooler's config does not already say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DatabaseInfo {
    /// The name clients connect to.
    pub name: String,
    /// `host=` as written (may be a comma list); `None` for a unix socket.
    pub host: Option<String>,
    /// `port=`.
    pub port: u16,
    /// `dbname=` (the server-side name).
    pub dbname: String,
    /// `load_balance_hosts=` (`round-robin`/`disable`); shown only when `host` is a list.
    pub load_balance_hosts: Option<String>,
}

/// Socket-level facts about one client or server connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnInfo {
    /// Peer address, or `unix`.
    pub addr: std::sync::Arc<str>,
    /// Peer port (the listen port for unix sockets).
    pub port: u16,
    /// Local address, or `unix`.
    /// (Shared: every client of a listener has the same one.)
    pub local_addr: std::sync::Arc<str>,
    /// Local port.
    pub local_port: u16,
    /// Unix: the peer's PID; servers otherwise: the first 4 bytes of their cancel key.
    pub remote_pid: i32,
    /// TLS description (`TLSv1.3/TLS_AES_256_GCM_SHA384/...`), empty for plain sockets.
    pub tls: Box<str>,
    /// `application_name`, empty if none.
    pub application_name: Box<str>,
    /// Prepared statements tracked on this connection.
    pub prepared_statements: u32,
    /// Replication kind of the connection.
    pub replication: Replication,
    /// Bytes received and not yet processed (`pkt_avail` of SHOW SOCKETS).
    pub recv_pending: u32,
    /// Bytes queued for sending (`send_avail` of SHOW SOCKETS).
    pub send_pending: u32,
}

/// The `replication` column.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Replication {
    /// A normal connection.
    #[default]
    None,
    /// `replication=database`.
    Logical,
    /// `replication=true`.
    Physical,
}

impl Replication {
    /// The column text: `none`, `logical` or `physical`.
    pub fn as_str(self) -> &'static str {
        match self {
            Replication::None => "none",
            Replication::Logical => "logical",
            Replication::Physical => "physical",
        }
    }
}

/// One console session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminClientInfo {
    /// Its id (minted by the daemon from the same counter as other clients).
    pub id: ClientId,
    /// The user it logged in as.
    pub user: String,
    /// When it connected.
    pub connect_time: Instant,
    /// When it last sent a query.
    pub request_time: Instant,
    /// Socket details.
    pub conn: ConnInfo,
}

/// One row of SHOW CONFIG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    /// The `[pgbouncer]` key.
    pub key: String,
    /// The value in force, as PgBouncer prints it.
    pub value: String,
    /// The default value.
    pub default: String,
    /// Whether RELOAD / SET can change it (`yes` / `no`).
    pub changeable: bool,
}
