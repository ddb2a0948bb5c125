//! Listening sockets: TCP on every `listen_addr` entry and the Unix socket
//! `<unix_socket_dir>/.s.PGSQL.<port>` (mirrors pooler.c `pooler_setup`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use socket2::{Domain, Socket, TcpKeepalive, Type};
use tokio::net::{TcpListener, TcpStream, UnixListener};

use crate::config::Settings;

/// The bound listeners.
#[derive(Debug)]
pub struct Listeners {
    /// TCP listeners.
    pub tcp: Vec<TcpListener>,
    /// The Unix listener and its path.
    pub unix: Option<(UnixListener, PathBuf)>,
    /// Handed over by the service manager (systemd socket activation): not ours to
    /// remove at exit.
    pub activated: bool,
}

/// Why binding failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BindError {
    /// Nothing could be bound.
    #[error("could not listen on any address: {0}")]
    NoListener(String),
    /// The Unix socket is served by another process.
    #[error("unix socket {0} is in use, cannot continue")]
    UnixInUse(String),
    /// I/O error.
    #[error("{what}: {source}")]
    Io {
        /// What we tried.
        what: String,
        /// The error.
        source: std::io::Error,
    },
}

fn addresses(listen_addr: &str, port: u16) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for a in listen_addr
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
    {
        if a == "*" {
            out.push(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port));
            out.push(SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port));
        } else if let Ok(ip) = a.parse::<IpAddr>() {
            out.push(SocketAddr::new(ip, port));
        } else if let Ok(resolved) = (a, port).to_socket_addrs() {
            out.extend(resolved);
        }
    }
    out
}

fn bind_tcp(addr: SocketAddr, s: &Settings) -> std::io::Result<TcpListener> {
    let t = s.typed();
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    sock.set_reuse_address(true)?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    if t.so_reuseport {
        sock.set_reuse_port(true)?;
    }
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    sock.listen(i32::try_from(t.listen_backlog.max(1)).unwrap_or(128))?;
    TcpListener::from_std(sock.into())
}

/// Binds every configured listener. Fails only when none can be bound. Sockets passed
/// by systemd socket activation (`LISTEN_FDS`) are used instead when there are any, as
/// PgBouncer does: `listen_addr`, `listen_port` and `unix_socket_dir` are then not
/// bound.
pub async fn bind(s: &Settings) -> Result<Listeners, BindError> {
    let t = s.typed();
    if let Some(l) = activated_listeners()? {
        return Ok(l);
    }
    let port = s.listen_port();
    let mut tcp = Vec::new();
    let mut errors = Vec::new();
    for addr in addresses(t.listen_addr.as_str(), port) {
        match bind_tcp(addr, s) {
            Ok(l) => tcp.push(l),
            Err(e) => {
                tracing::warn!("cannot listen on {addr}: {e}");
                errors.push(format!("{addr}: {e}"));
            }
        }
    }
    let dir = t.unix_socket_dir.as_str();
    let unix = if dir.is_empty() || port == 0 {
        None
    } else {
        Some(bind_unix(dir, port, s).await?)
    };
    if tcp.is_empty() && unix.is_none() {
        return Err(BindError::NoListener(errors.join("; ")));
    }
    Ok(Listeners {
        tcp,
        unix,
        activated: false,
    })
}

/// The listening sockets systemd passed (`LISTEN_PID` / `LISTEN_FDS`), if any: TCP and
/// Unix stream sockets, in order.
fn activated_listeners() -> Result<Option<Listeners>, BindError> {
    let mut fds = listenfd::ListenFd::from_env();
    if fds.len() == 0 {
        return Ok(None);
    }
    let io = |what: &str| {
        let what = what.to_string();
        move |source| BindError::Io { what, source }
    };
    let mut out = Listeners {
        tcp: Vec::new(),
        unix: None,
        activated: true,
    };
    for i in 0..fds.len() {
        if let Some(l) = fds.take_tcp_listener(i).map_err(io("activated socket"))? {
            l.set_nonblocking(true).map_err(io("activated socket"))?;
            out.tcp
                .push(TcpListener::from_std(l).map_err(io("activated socket"))?);
        } else if let Some(l) = fds.take_unix_listener(i).map_err(io("activated socket"))? {
            l.set_nonblocking(true).map_err(io("activated socket"))?;
            let path = l
                .local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(PathBuf::from))
                .unwrap_or_default();
            let l = UnixListener::from_std(l).map_err(io("activated socket"))?;
            if out.unix.is_some() {
                tracing::warn!(
                    "more than one activated Unix socket: {} ignored",
                    path.display()
                );
                continue;
            }
            out.unix = Some((l, path));
        }
    }
    if out.tcp.is_empty() && out.unix.is_none() {
        return Err(BindError::NoListener(
            "LISTEN_FDS passed no TCP or Unix stream socket".into(),
        ));
    }
    tracing::info!(
        "using {} socket(s) from systemd socket activation",
        fds.len()
    );
    Ok(Some(out))
}

async fn bind_unix(
    dir: &str,
    port: u16,
    s: &Settings,
) -> Result<(UnixListener, PathBuf), BindError> {
    let t = s.typed();
    let path = PathBuf::from(dir).join(format!(".s.PGSQL.{port}"));
    if path.exists() {
        if tokio::net::UnixStream::connect(&path).await.is_ok() {
            return Err(BindError::UnixInUse(path.display().to_string()));
        }
        let _ = std::fs::remove_file(&path); // stale
    }
    let l = UnixListener::bind(&path).map_err(|source| BindError::Io {
        what: format!("bind {}", path.display()),
        source,
    })?;
    let mode = u32::try_from(t.unix_socket_mode).unwrap_or(0o777);
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode));
    let group = t.unix_socket_group.as_str();
    if !group.is_empty() {
        match group_id(group) {
            Some(gid) => {
                if let Err(e) = std::os::unix::fs::chown(&path, None, Some(gid)) {
                    tracing::warn!("unix_socket_group {group}: {e}");
                }
            }
            None => tracing::warn!("unix_socket_group {group}: no such group"),
        }
    }
    Ok((l, path))
}

/// `ip` as text, as `IpAddr`'s `Display` writes it. An IPv4 address (nearly every
/// client's) is written by hand: `Display` pads and goes through the formatter for each
/// of its four numbers, a third of the cost of a login's log line.
pub fn ip_text(ip: IpAddr) -> String {
    let IpAddr::V4(v4) = ip else {
        return ip.to_string();
    };
    let mut out = String::with_capacity(15);
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        crate::logging::push_decimal(&mut out, u64::from(octet));
    }
    out
}

/// Applies `tcp_keepalive*` and `tcp_user_timeout` to an accepted client socket.
pub fn tune_client_socket(stream: &TcpStream, t: &SocketTuning) {
    let sock = socket2::SockRef::from(stream);
    let _ = sock.set_tcp_nodelay(true);
    if let Some(ka) = &t.keepalive {
        let _ = sock.set_tcp_keepalive(ka);
    }
    if let Some(timeout) = t.user_timeout {
        let _ = sock.set_tcp_user_timeout(Some(timeout));
    }
}

/// The socket options for accepted clients (`tcp_keepalive`, `tcp_keepidle`,
/// `tcp_keepintvl`, `tcp_keepcnt`, `tcp_user_timeout`), derived once per (re)load.
#[derive(Debug, Clone)]
pub struct SocketTuning {
    keepalive: Option<TcpKeepalive>,
    user_timeout: Option<std::time::Duration>,
}

impl SocketTuning {
    /// From the settings.
    pub fn new(s: &Settings) -> SocketTuning {
        let t = s.typed();
        let keepalive = t.tcp_keepalive.then(|| {
            let mut ka = TcpKeepalive::new();
            if t.tcp_keepidle > 0 {
                ka = ka.with_time(std::time::Duration::from_secs(t.tcp_keepidle as u64));
            }
            if t.tcp_keepintvl > 0 {
                ka = ka.with_interval(std::time::Duration::from_secs(t.tcp_keepintvl as u64));
            }
            if t.tcp_keepcnt > 0 {
                ka = ka.with_retries(t.tcp_keepcnt as u32);
            }
            ka
        });
        let user_timeout = (!t.tcp_user_timeout.is_zero()).then_some(t.tcp_user_timeout);
        SocketTuning {
            keepalive,
            user_timeout,
        }
    }
}

/// The gid of a group name (or a number), from /etc/group.
fn group_id(group: &str) -> Option<u32> {
    if let Ok(n) = group.parse() {
        return Some(n);
    }
    let text = std::fs::read_to_string("/etc/group").ok()?;
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == group).then(|| f.nth(1)?.parse().ok())?
    })
}

/// The file-descriptor limits after [`raise_fd_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdLimit {
    /// The soft limit before.
    pub was: u64,
    /// The soft limit now.
    pub soft: u64,
    /// The hard limit.
    pub hard: u64,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (PgBouncer only reports it; a
/// pooler that runs out of descriptors refuses clients it has room for). `None` when
/// the limit cannot be read.
pub fn raise_fd_limit() -> Option<FdLimit> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let before = getrlimit(Resource::Nofile);
    let unlimited = u64::MAX;
    let was = before.current.unwrap_or(unlimited);
    let hard = before.maximum.unwrap_or(unlimited);
    if was < hard {
        let raised = Rlimit {
            current: before.maximum,
            maximum: before.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!("could not raise RLIMIT_NOFILE from {was} to {hard}: {e}");
        }
    }
    let now = getrlimit(Resource::Nofile);
    Some(FdLimit {
        was,
        soft: now.current.unwrap_or(unlimited),
        hard,
    })
}

/// How many descriptors the configuration may use at most, as PgBouncer estimates it:
/// every client, every pool's servers, and a few for listeners and logs.
pub fn expected_fd_use(settings: &crate::config::Settings, users: usize) -> u64 {
    let cfg = settings.typed();
    let default_pool = u64::from(crate::config::clamp_u32(cfg.default_pool_size));
    let reserve = u64::from(crate::config::clamp_u32(cfg.reserve_pool_size));
    let users = users.max(1) as u64;
    let servers: u64 = settings
        .databases
        .iter()
        .map(|d| {
            let per_pool = d.pool_size.map_or(default_pool, u64::from) + reserve;
            if d.user.is_some() {
                per_pool
            } else {
                per_pool * users
            }
        })
        .sum();
    u64::from(crate::config::clamp_u32(cfg.max_client_conn)) + 10 + servers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_text_writes_what_display_writes() {
        let mut ips: Vec<IpAddr> = [0u8, 1, 9, 10, 99, 100, 109, 110, 199, 200, 255]
            .iter()
            .flat_map(|&a| {
                [0u8, 7, 42, 250].map(|b| IpAddr::V4(Ipv4Addr::new(a, b, 10 * (a % 26), 255 - a)))
            })
            .collect();
        ips.push(IpAddr::V6(Ipv6Addr::LOCALHOST));
        ips.push("2001:db8::8a2e:370:7334".parse().unwrap());
        for ip in ips {
            assert_eq!(ip_text(ip), ip.to_string());
        }
    }
}
