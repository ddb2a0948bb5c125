//! The console commands as data: [`Command`], [`Show`] and [`ShutdownMode`] (the
//! `cmd_list` and `show_map` tables of PgBouncer's admin.c, plus our `SHOW LATENCY`).

/// One parsed console statement.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command {
    /// `SHOW x` / `SELECT x`.
    Show(Show),
    /// `SHOW` of a fake GUC (`client_encoding`, `datestyle`, ...): the canonical lowercase
    /// name. Answered by [`fake_guc`](crate::fake_guc).
    FakeGuc(String),
    /// `SET` of a fake GUC: answered with NOTICE `SET ignored` and tag `SET`
    /// ([`set_fake_guc`](crate::set_fake_guc)); needs no admin rights.
    SetFakeGuc(String),
    /// `PAUSE [db]`.
    Pause(Option<String>),
    /// `RESUME [db]`.
    Resume(Option<String>),
    /// `SUSPEND`.
    Suspend,
    /// `DISABLE db`.
    Disable(String),
    /// `ENABLE db`.
    Enable(String),
    /// `RECONNECT [db]`.
    Reconnect(Option<String>),
    /// `KILL [db]`.
    Kill(Option<String>),
    /// `KILL_CLIENT id` (the `id` column of `SHOW CLIENTS`).
    KillClient(u32),
    /// `SHUTDOWN [WAIT_FOR_SERVERS | WAIT_FOR_CLIENTS]`.
    Shutdown(ShutdownMode),
    /// `RELOAD`.
    Reload,
    /// `WAIT_CLOSE [db]`.
    WaitClose(Option<String>),
    /// `SET key = value` of a `[pgbouncer]` setting (key as typed, value unquoted).
    Set {
        /// The setting name.
        key: String,
        /// The new value.
        value: String,
    },
}

impl Command {
    /// The CommandComplete tag of a successful run: `SHOW` for shows, `SET key=value` for
    /// SET, otherwise the command name. A plain `SHUTDOWN` has none (the process exits).
    pub fn tag(&self) -> Option<String> {
        let tag = match self {
            Command::Show(_) | Command::FakeGuc(_) => "SHOW",
            Command::SetFakeGuc(_) => "SET",
            Command::Pause(_) => "PAUSE",
            Command::Resume(_) => "RESUME",
            Command::Suspend => "SUSPEND",
            Command::Disable(_) => "DISABLE",
            Command::Enable(_) => "ENABLE",
            Command::Reconnect(_) => "RECONNECT",
            Command::Kill(_) => "KILL",
            Command::KillClient(_) => "KILL_CLIENT",
            Command::Shutdown(ShutdownMode::Immediate) => return None,
            Command::Shutdown(_) => "SHUTDOWN",
            Command::Reload => "RELOAD",
            Command::WaitClose(_) => "WAIT_CLOSE",
            Command::Set { key, value } => return Some(format!("SET {key}={value}")),
        };
        Some(tag.to_owned())
    }
}

/// How `SHUTDOWN` ends the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ShutdownMode {
    /// `SHUTDOWN`: exit now, no reply.
    Immediate,
    /// `SHUTDOWN WAIT_FOR_SERVERS` (SIGINT): PAUSE, close listeners, exit when no server
    /// connection remains.
    WaitForServers,
    /// `SHUTDOWN WAIT_FOR_CLIENTS` (SIGTERM): close listeners, exit when no client remains.
    WaitForClients,
}

/// What `SHOW` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Show {
    /// `SHOW HELP`.
    Help,
    /// `SHOW POOLS`.
    Pools,
    /// `SHOW STATS`.
    Stats,
    /// `SHOW STATS_TOTALS`.
    StatsTotals,
    /// `SHOW STATS_AVERAGES`.
    StatsAverages,
    /// `SHOW TOTALS`.
    Totals,
    /// `SHOW CLIENTS`.
    Clients,
    /// `SHOW SERVERS`.
    Servers,
    /// `SHOW DATABASES`.
    Databases,
    /// `SHOW USERS`.
    Users,
    /// `SHOW CONFIG`.
    Config,
    /// `SHOW LISTS`.
    Lists,
    /// `SHOW MEM`.
    Mem,
    /// `SHOW FDS` (admin only).
    Fds,
    /// `SHOW SOCKETS`.
    Sockets,
    /// `SHOW ACTIVE_SOCKETS`.
    ActiveSockets,
    /// `SHOW DNS_HOSTS`.
    DnsHosts,
    /// `SHOW DNS_ZONES`.
    DnsZones,
    /// `SHOW STATE`.
    State,
    /// `SHOW VERSION`.
    Version,
    /// `SHOW PEERS`.
    Peers,
    /// `SHOW PEER_POOLS`.
    PeerPools,
    /// `SHOW LATENCY`: pgbouncer-rs only, wait/query/transaction percentiles per pool.
    Latency,
    /// `SHOW ADVICE`: pgbouncer-rs only, the pool-size advisor.
    Advice,
}

impl Show {
    /// Every SHOW, in `SHOW HELP` order.
    pub const ALL: [Show; 24] = [
        Show::Help,
        Show::Config,
        Show::Databases,
        Show::Pools,
        Show::Clients,
        Show::Servers,
        Show::Users,
        Show::Version,
        Show::Peers,
        Show::PeerPools,
        Show::Fds,
        Show::Sockets,
        Show::ActiveSockets,
        Show::Lists,
        Show::Mem,
        Show::State,
        Show::DnsHosts,
        Show::DnsZones,
        Show::Stats,
        Show::StatsTotals,
        Show::StatsAverages,
        Show::Totals,
        Show::Latency,
        Show::Advice,
    ];

    /// The lowercase word after `SHOW`.
    pub fn name(self) -> &'static str {
        match self {
            Show::Help => "help",
            Show::Pools => "pools",
            Show::Stats => "stats",
            Show::StatsTotals => "stats_totals",
            Show::StatsAverages => "stats_averages",
            Show::Totals => "totals",
            Show::Clients => "clients",
            Show::Servers => "servers",
            Show::Databases => "databases",
            Show::Users => "users",
            Show::Config => "config",
            Show::Lists => "lists",
            Show::Mem => "mem",
            Show::Fds => "fds",
            Show::Sockets => "sockets",
            Show::ActiveSockets => "active_sockets",
            Show::DnsHosts => "dns_hosts",
            Show::DnsZones => "dns_zones",
            Show::State => "state",
            Show::Version => "version",
            Show::Peers => "peers",
            Show::PeerPools => "peer_pools",
            Show::Latency => "latency",
            Show::Advice => "advice",
        }
    }

    /// The SHOW called `word`, case-insensitively.
    pub fn from_name(word: &str) -> Option<Show> {
        Show::ALL
            .into_iter()
            .find(|s| s.name().eq_ignore_ascii_case(word))
    }
}
