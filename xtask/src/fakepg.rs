//! A minimal fake PostgreSQL for the pooler-bound benchmark: it accepts any login and
//! answers every query at once with one row, so the pooler in front of it is the
//! bottleneck. Blocking std I/O, one thread per connection (the pooler opens few).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A running fake server; stops accepting when dropped.
pub(crate) struct FakePg {
    pub(crate) port: u16,
    stop: Arc<AtomicBool>,
}

impl Drop for FakePg {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port)); // wake the accept loop
    }
}

pub(crate) fn start() -> std::io::Result<FakePg> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            if flag.load(Ordering::Relaxed) {
                break;
            }
            if let Ok(conn) = conn {
                let _ = conn.set_nodelay(true);
                std::thread::spawn(move || {
                    let _ = serve(conn);
                });
            }
        }
    });
    Ok(FakePg { port, stop })
}

fn msg(out: &mut Vec<u8>, tag: u8, body: &[u8]) {
    out.push(tag);
    out.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    out.extend_from_slice(body);
}

fn cstr(v: &mut Vec<u8>, s: &str) {
    v.extend_from_slice(s.as_bytes());
    v.push(0);
}

fn serve(mut s: TcpStream) -> std::io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut have = 0usize;
    // Startup phase (SSLRequest answered 'N').
    loop {
        while have < 8 {
            let n = s.read(&mut buf[have..])?;
            if n == 0 {
                return Ok(());
            }
            have += n;
        }
        let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        let code = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
        while have < len {
            let n = s.read(&mut buf[have..])?;
            if n == 0 {
                return Ok(());
            }
            have += n;
        }
        buf.copy_within(len..have, 0);
        have -= len;
        if code == 80_877_103 {
            s.write_all(b"N")?;
            continue;
        }
        break;
    }
    let mut out = Vec::new();
    msg(&mut out, b'R', &0u32.to_be_bytes());
    for (k, v) in [
        ("server_version", "15.0"),
        ("server_encoding", "UTF8"),
        ("client_encoding", "UTF8"),
        ("DateStyle", "ISO, MDY"),
        ("TimeZone", "UTC"),
        ("IntervalStyle", "postgres"),
        ("integer_datetimes", "on"),
        ("standard_conforming_strings", "on"),
        ("application_name", ""),
        ("is_superuser", "on"),
    ] {
        let mut b = Vec::new();
        cstr(&mut b, k);
        cstr(&mut b, v);
        msg(&mut out, b'S', &b);
    }
    msg(&mut out, b'K', &[0, 0, 0, 1, 0, 0, 0, 2]);
    msg(&mut out, b'Z', b"I");
    s.write_all(&out)?;
    // Canned replies.
    let mut row_desc = Vec::new();
    row_desc.extend_from_slice(&1u16.to_be_bytes());
    cstr(&mut row_desc, "?column?");
    row_desc.extend_from_slice(&[
        0, 0, 0, 0, 0, 0, 0, 0, 0, 23, 0, 4, 0xff, 0xff, 0xff, 0xff, 0, 0,
    ]);
    let mut data_row = Vec::new();
    data_row.extend_from_slice(&1u16.to_be_bytes());
    data_row.extend_from_slice(&1u32.to_be_bytes());
    data_row.push(b'1');
    let mut complete = Vec::new();
    cstr(&mut complete, "SELECT 1");
    loop {
        // Answer every complete message in the buffer, then write once.
        out.clear();
        let mut pos = 0;
        while have - pos >= 5 {
            let tag = buf[pos];
            let len = u32::from_be_bytes([buf[pos + 1], buf[pos + 2], buf[pos + 3], buf[pos + 4]])
                as usize;
            if have - pos < len + 1 {
                break;
            }
            pos += len + 1;
            match tag {
                b'Q' => {
                    msg(&mut out, b'T', &row_desc);
                    msg(&mut out, b'D', &data_row);
                    msg(&mut out, b'C', &complete);
                    msg(&mut out, b'Z', b"I");
                }
                b'P' => msg(&mut out, b'1', &[]),
                b'B' => msg(&mut out, b'2', &[]),
                b'D' => msg(&mut out, b'T', &row_desc),
                b'E' => {
                    msg(&mut out, b'D', &data_row);
                    msg(&mut out, b'C', &complete);
                }
                b'C' => msg(&mut out, b'3', &[]),
                b'S' => msg(&mut out, b'Z', b"I"),
                b'X' => return Ok(()),
                _ => {}
            }
        }
        buf.copy_within(pos..have, 0);
        have -= pos;
        if !out.is_empty() {
            s.write_all(&out)?;
        }
        if have == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        let n = s.read(&mut buf[have..])?;
        if n == 0 {
            return Ok(());
        }
        have += n;
    }
}
