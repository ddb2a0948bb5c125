//! A byte relay with no pooling and no protocol work: each accepted connection gets its
//! own upstream connection and bytes are copied both ways until either side closes.
//!
//! It answers one question for issue 15: what does forwarding alone cost per
//! transaction on one thread, with tokio's epoll reactor and with io_uring
//! (tokio-uring)? `cargo xtask bench --relay-only` runs pgbench through it next to
//! PgBouncer and pgbouncer-rs and prints CPU per transaction for each. A pooler cannot
//! cost less than the relay built on the same I/O layer, so the two relays bound what
//! the pooler can gain from moving to io_uring and what is left to gain on epoll.
//!
//! ```text
//! relay-floor epoll|uring LISTEN_PORT UPSTREAM_PORT
//! ```
//!
//! Both modes run on one thread, like one pgbouncer-rs worker. The buffers are 16 KiB,
//! as pgbouncer-rs reads; both sides of every connection have TCP_NODELAY, as the
//! poolers set.

use std::net::SocketAddr;
use std::process::ExitCode;

const BUF: usize = 16 * 1024;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parsed = match args.as_slice() {
        [mode, listen, upstream] => listen
            .parse::<u16>()
            .ok()
            .zip(upstream.parse::<u16>().ok())
            .map(|(l, u)| (mode.as_str(), l, u)),
        _ => None,
    };
    let Some((mode, listen, upstream)) = parsed else {
        eprintln!("usage: relay-floor epoll|uring LISTEN_PORT UPSTREAM_PORT");
        return ExitCode::from(2);
    };
    let listen = SocketAddr::from(([127, 0, 0, 1], listen));
    let upstream = SocketAddr::from(([127, 0, 0, 1], upstream));
    let result = match mode {
        "epoll" => epoll::run(listen, upstream),
        #[cfg(target_os = "linux")]
        "uring" => uring::run(listen, upstream),
        other => {
            eprintln!("relay-floor: unknown mode `{other}` (epoll or uring)");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("relay-floor: {e}");
            ExitCode::FAILURE
        }
    }
}

/// tokio's current-thread runtime: readiness from epoll, then `recv`/`send`.
mod epoll {
    use std::net::SocketAddr;

    use tokio::net::{TcpListener, TcpStream};

    pub(crate) fn run(listen: SocketAddr, upstream: SocketAddr) -> std::io::Result<()> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let listener = TcpListener::bind(listen).await?;
            loop {
                let (mut client, _) = listener.accept().await?;
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    // One task per connection, both directions, as a pgbouncer-rs session.
                    let _ = tokio::io::copy_bidirectional_with_sizes(
                        &mut client,
                        &mut server,
                        super::BUF,
                        super::BUF,
                    )
                    .await;
                });
            }
        })
    }
}

/// tokio-uring: a `recv` is kept submitted on each socket, and a completed read is
/// written to the other side with a `send`, all through one ring.
#[cfg(target_os = "linux")]
mod uring {
    use std::net::SocketAddr;
    use std::rc::Rc;

    use tokio_uring::net::{TcpListener, TcpStream};

    pub(crate) fn run(listen: SocketAddr, upstream: SocketAddr) -> std::io::Result<()> {
        tokio_uring::start(async move {
            let listener = TcpListener::bind(listen)?;
            loop {
                let (client, _) = listener.accept().await?;
                tokio_uring::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (client, server) = (Rc::new(client), Rc::new(server));
                    // A completion-based read owns its buffer until it completes, so each
                    // direction is its own task with a read always in flight.
                    tokio_uring::spawn(copy(client.clone(), server.clone()));
                    copy(server, client).await;
                });
            }
        })
    }

    async fn copy(from: Rc<TcpStream>, to: Rc<TcpStream>) {
        let mut buf = vec![0u8; super::BUF];
        loop {
            let (read, back) = from.read(buf).await;
            let n = match read {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let (written, back) = to
                .write_all(tokio_uring::buf::BoundedBuf::slice(back, ..n))
                .await;
            buf = back.into_inner();
            if written.is_err() {
                break;
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Write);
    }
}
