//! Log lines in PgBouncer's format (`2026-01-01 12:00:00.123 UTC [pid] LOG msg`) to
//! stderr and/or `logfile`, with `verbose` mapping to DEBUG/NOISE.

use std::fmt;
use std::io::Write;
use std::sync::{Arc, Mutex};

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

/// PgBouncer-style line format, or (`log_format = json`) the same fields as one JSON
/// object per line.
struct PgbFormat {
    pid: u32,
    json: bool,
}

impl<S, N> FormatEvent<S, N> for PgbFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let level = match *event.metadata().level() {
            Level::ERROR => "ERROR",
            Level::WARN => "WARNING",
            Level::INFO => "LOG",
            Level::DEBUG => "DEBUG",
            Level::TRACE => "NOISE",
        };
        let now = std::time::SystemTime::now();
        if !self.json {
            write!(w, "{} [{}] {level} ", Stamp(now), self.pid)?;
            write_fields(&mut w, event)?;
            return writeln!(w);
        }
        let time = timestamp(now);
        let mut message = String::new();
        write_fields(&mut message, event)?;
        writeln!(w, "{}", json_line(&time, self.pid, level, &message))
    }
}

/// Writes an event's fields as tracing's default field format does (the message, then
/// ` name=value` for the others, values escaped the same way), straight into `w`:
/// without the per-character writes of the default escaping, a log line costs a
/// fraction of it (two lines per login).
fn write_fields(w: &mut dyn fmt::Write, event: &Event<'_>) -> fmt::Result {
    let mut v = Fields {
        w,
        first: true,
        result: Ok(()),
    };
    event.record(&mut v);
    v.result
}

struct Fields<'a> {
    w: &'a mut dyn fmt::Write,
    first: bool,
    result: fmt::Result,
}

impl tracing::field::Visit for Fields<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        if self.result.is_err() {
            return;
        }
        let pad = if self.first { "" } else { " " };
        self.first = false;
        let name = field.name();
        self.result = if name == "message" {
            escaped(&mut *self.w, format_args!("{pad}{value:?}"))
        } else {
            let name = name.strip_prefix("r#").unwrap_or(name);
            write!(self.w, "{pad}{name}=")
                .and_then(|()| escaped(&mut *self.w, format_args!("{value:?}")))
        };
    }
}

thread_local! {
    /// Where [`compose`] builds a line's text.
    static LINE: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
    /// Where a field is formatted before it is escaped and written.
    static SCRATCH: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// Runs `f` with the per-thread buffer `key`, emptied (a buffer grown past 4 KiB is
/// freed afterwards). Re-entered (a value being formatted logs something itself), it is
/// busy: `f` gets a buffer of its own.
fn with_buffer<R>(
    key: &'static std::thread::LocalKey<std::cell::RefCell<String>>,
    f: impl FnOnce(&mut String) -> R,
) -> R {
    key.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            buf.clear();
            let r = f(&mut buf);
            if buf.capacity() > 4096 {
                *buf = String::new();
            }
            r
        }
        Err(_) => f(&mut String::new()),
    })
}

/// Appends `n` in decimal to `out`, without the formatter.
pub fn push_decimal(out: &mut String, n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        // `n % 10` is a digit: the cast cannot truncate.
        digits[i] = (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &digits[i..] {
        out.push(char::from_digit(u32::from(d), 10).unwrap_or('0'));
    }
}

/// A log line's text, appended piece by piece (see [`compose`]).
pub struct LineText<'a>(&'a mut String);

impl LineText<'_> {
    /// Appends `s`.
    pub fn s(&mut self, s: &str) -> &mut Self {
        self.0.push_str(s);
        self
    }

    /// Appends `n` in decimal.
    pub fn n(&mut self, n: u64) -> &mut Self {
        push_decimal(self.0, n);
        self
    }
}

/// Builds a log line's text with `build`, in a per-thread buffer, and passes it to
/// `log` (which logs it as `"{text}"`): the text a connection's `login attempt` and
/// `closing because` lines carry, without a pass through the formatter for each of
/// their ten or so values (that was most of a login's logging cost).
pub fn compose(build: impl FnOnce(&mut LineText<'_>), log: impl FnOnce(&str)) {
    with_buffer(&LINE, |buf| {
        build(&mut LineText(buf));
        log(buf);
    });
}

/// Writes `args` to `w` through [`Escaping`]: formatted first into a per-thread buffer,
/// so that the escape scan and the write to `w` run once per field instead of once per
/// formatted piece (a connection's log line has about 15).
fn escaped(w: &mut dyn fmt::Write, args: fmt::Arguments<'_>) -> fmt::Result {
    with_buffer(&SCRATCH, |buf| {
        fmt::Write::write_fmt(buf, args)?;
        fmt::Write::write_str(&mut Escaping(w), buf)
    })
}

/// Escapes what could drive a terminal (ESC, BEL, BS, FF, DEL and the C1 controls) as
/// tracing's default formatter does; everything else is copied in runs.
struct Escaping<'a>(&'a mut dyn fmt::Write);

impl fmt::Write for Escaping<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // Nearly every string has none of them: one pass over the bytes (the C1
        // controls are 0xc2 0x80-0x9f in UTF-8), then one write.
        if !may_need_escaping(s.as_bytes())
            || !s
                .bytes()
                .any(|b| matches!(b, 0x07 | 0x08 | 0x0c | 0x1b | 0x7f | 0xc2))
        {
            return self.0.write_str(s);
        }
        let mut start = 0;
        for (i, ch) in s.char_indices() {
            let escaped = match ch {
                '\x1b' | '\x07' | '\x08' | '\x0c' | '\x7f' | '\u{80}'..='\u{9f}' => ch,
                _ => continue,
            };
            self.0.write_str(&s[start..i])?;
            match escaped {
                c if (c as u32) < 0x80 => write!(self.0, "\\x{:02x}", c as u32)?,
                c => write!(self.0, "\\u{{{:x}}}", c as u32)?,
            }
            start = i + ch.len_utf8();
        }
        self.0.write_str(&s[start..])
    }
}

/// Whether `bytes` has anything outside printable ASCII (a control, DEL, or a byte of a
/// multi-byte character), eight bytes at a time: false for nearly every log line, which
/// then needs no byte-by-byte look.
fn may_need_escaping(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    // A byte below 0x20 (the borrow sets its high bit), at or above 0x80, or 0x7f (+1
    // carries into the high bit).
    let odd = |x: u64| (x.wrapping_sub(ONES * 0x20) | x | x.wrapping_add(ONES)) & HIGH != 0;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(c);
        if odd(u64::from_ne_bytes(word)) {
            return true;
        }
    }
    chunks
        .remainder()
        .iter()
        .any(|&b| !(0x20..0x7f).contains(&b))
}

/// One JSON log object: the text line's timestamp, pid, level and message, and the
/// message's connection prefix (`C-5: db/user@addr:port`, `S-7: ...`) split out as
/// `connection` when it has one.
fn json_line(time: &str, pid: u32, level: &str, message: &str) -> String {
    let mut obj = serde_json::Map::new();
    obj.insert("time".into(), time.into());
    obj.insert("pid".into(), pid.into());
    obj.insert("level".into(), level.into());
    let conn = message
        .split_once(' ')
        .filter(|(head, _)| head.len() > 2 && (head.starts_with("C-") || head.starts_with("S-")))
        .and_then(|(_, rest)| {
            // `C-5: db/user@addr:port message`: the socket is the next word.
            let (socket, msg) = rest.split_once(' ')?;
            socket.contains('@').then(|| {
                let id = &message[..message.len() - rest.len() - 1];
                (format!("{id} {socket}"), msg)
            })
        });
    match conn {
        Some((c, msg)) => {
            obj.insert("connection".into(), c.into());
            obj.insert("message".into(), msg.into());
        }
        None => {
            obj.insert("message".into(), message.into());
        }
    }
    serde_json::Value::Object(obj).to_string()
}

/// `YYYY-MM-DD HH:MM:SS.mmm UTC`.
pub fn timestamp(t: std::time::SystemTime) -> String {
    Stamp(t).to_string()
}

/// [`timestamp`], written straight into a log line (no string per line).
struct Stamp(std::time::SystemTime);

impl fmt::Display for Stamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self
            .0
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let secs = d.as_secs();
        let (y, m, day) = civil_from_days((secs / 86_400) as i64);
        let s = secs % 86_400;
        let (h, mi, sec) = ((s / 3600) as u32, ((s / 60) % 60) as u32, (s % 60) as u32);
        let ms = d.subsec_millis();
        let Ok(y4) = u32::try_from(y).map(|y| y.min(9999)) else {
            return f.write_str("0000-00-00 00:00:00.000 UTC");
        };
        // Digits by hand: three lines per connection, and fmt's padding was most of
        // their cost.
        let mut b = *b"0000-00-00 00:00:00.000 UTC";
        for (range, v) in [
            (0..4, y4),
            (5..7, m),
            (8..10, day),
            (11..13, h),
            (14..16, mi),
            (17..19, sec),
            (20..23, ms),
        ] {
            let mut v = v;
            for digit in b[range].iter_mut().rev() {
                *digit = b"0123456789"[(v % 10) as usize];
                v /= 10;
            }
        }
        f.write_str(std::str::from_utf8(&b).map_err(|_| fmt::Error)?)
    }
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Where log lines go besides stderr; replaced on RELOAD / SIGHUP.
#[derive(Default)]
struct Sinks {
    file: Option<std::fs::File>,
    syslog: Option<Syslog>,
}

/// `syslog = 1`: RFC 3164 datagrams to the local syslog socket.
struct Syslog {
    socket: std::os::unix::net::UnixDatagram,
    path: std::path::PathBuf,
    ident: String,
    facility: u8,
}

impl Syslog {
    fn open(ident: &str, facility: &str) -> Option<Syslog> {
        // The socket path can be moved for tests; /dev/log is where syslog(3) writes.
        let path =
            std::env::var_os("PGBRS_SYSLOG_SOCKET").map_or_else(|| "/dev/log".into(), Into::into);
        let facility = match facility.to_ascii_lowercase().as_str() {
            "auth" => 4,
            "authpriv" => 10,
            "user" => 1,
            f if f.starts_with("local") => 16 + f[5..].parse::<u8>().unwrap_or(0).min(7),
            _ => 3, // daemon
        };
        let socket = std::os::unix::net::UnixDatagram::unbound().ok()?;
        Some(Syslog {
            socket,
            path,
            ident: ident.to_string(),
            facility,
        })
    }

    /// Sends one formatted line; the level word picks the severity.
    fn send(&self, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        let rest = text
            .split_once("] ")
            .map_or(text.as_ref(), |(_, r)| r)
            .trim_end();
        let (level, msg) = rest.split_once(' ').unwrap_or(("LOG", rest));
        let severity = match level {
            "ERROR" | "FATAL" => 3,
            "WARNING" => 4,
            "DEBUG" | "NOISE" => 7,
            _ => 6,
        };
        let pri = u16::from(self.facility) * 8 + severity;
        let datagram = format!(
            "<{pri}>{}[{}]: {level} {msg}",
            self.ident,
            std::process::id()
        );
        let _ = self.socket.send_to(datagram.as_bytes(), &self.path);
    }
}

/// Writes to stderr, the log file and syslog.
#[derive(Clone)]
struct Tee {
    stderr: bool,
    sinks: Arc<Mutex<Sinks>>,
}

struct TeeWriter(Tee);

impl Write for TeeWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.stderr {
            let _ = std::io::stderr().write_all(buf);
        }
        let mut sinks = self.0.sinks.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = sinks.file.as_mut() {
            let _ = f.write_all(buf);
        }
        if let Some(s) = &sinks.syslog {
            s.send(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Tee {
    type Writer = TeeWriter;
    fn make_writer(&'a self) -> TeeWriter {
        TeeWriter(self.clone())
    }
}

/// Lets the log destinations follow the configuration (RELOAD / SIGHUP reopen
/// `logfile`, so log rotation works as with PgBouncer).
#[derive(Clone)]
pub struct LogHandle(Arc<Mutex<Sinks>>, Option<Arc<LevelControl>>);

/// Changes the log level at run time (`verbose` in the ini file, `SET verbose = N`).
struct LevelControl {
    /// `-v` on the command line: the level never goes below it.
    cli_verbose: u8,
    reload: Box<dyn Fn(Level) + Send + Sync>,
}

impl LogHandle {
    /// (Re)opens `logfile` and syslog per the settings.
    pub fn apply(&self, settings: &crate::config::Settings) -> std::io::Result<()> {
        let cfg = settings.typed();
        let file = match cfg.logfile.as_str() {
            "" => None,
            path => Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            ),
        };
        let syslog = if cfg.syslog {
            Syslog::open(cfg.syslog_ident.as_str(), cfg.syslog_facility.as_str())
        } else {
            None
        };
        let mut sinks = self.0.lock().unwrap_or_else(|e| e.into_inner());
        sinks.file = file;
        sinks.syslog = syslog;
        drop(sinks);
        if let Some(control) = &self.1 {
            let verbose = control
                .cli_verbose
                .max(u8::try_from(cfg.verbose.clamp(0, 9)).unwrap_or(0));
            (control.reload)(level_of(verbose));
        }
        Ok(())
    }
}

/// `verbose`: 0 = LOG, 1 = DEBUG, 2+ = NOISE (PgBouncer's levels).
fn level_of(verbose: u8) -> Level {
    match verbose {
        0 => Level::INFO,
        1 => Level::DEBUG,
        _ => Level::TRACE,
    }
}

/// Installs the global subscriber. `verbose` (from `-v`): 0 = LOG, 1 = DEBUG, 2+ =
/// NOISE; the ini's `verbose` can raise it at run time, never lower it below this.
pub fn init(
    stderr: bool,
    settings: &crate::config::Settings,
    verbose: u8,
) -> std::io::Result<LogHandle> {
    let cfg = settings.typed();
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let sinks = Arc::new(Mutex::new(Sinks::default()));
    let (filter, reload) = tracing_subscriber::reload::Layer::new(
        tracing_subscriber::filter::LevelFilter::from_level(level_of(verbose)),
    );
    let format = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .event_format(PgbFormat {
            pid: std::process::id(),
            json: cfg.log_format.eq_ignore_ascii_case("json"),
        })
        .with_writer(Tee {
            stderr,
            sinks: sinks.clone(),
        });
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(format)
        .try_init();
    let control = LevelControl {
        cli_verbose: verbose,
        reload: Box::new(move |level| {
            let _ =
                reload.modify(|f| *f = tracing_subscriber::filter::LevelFilter::from_level(level));
        }),
    };
    let handle = LogHandle(sinks, Some(Arc::new(control)));
    handle.apply(settings)?;
    Ok(handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_carry_the_text_line_fields() {
        let v: serde_json::Value = serde_json::from_str(&json_line(
            "2026-12-02 10:00:00.000 UTC",
            42,
            "LOG",
            "C-5: app/web@127.0.0.1:5000 login attempt: db=app user=web tls=no",
        ))
        .unwrap();
        assert_eq!(v["pid"], 42);
        assert_eq!(v["level"], "LOG");
        assert_eq!(v["connection"], "C-5: app/web@127.0.0.1:5000");
        assert_eq!(v["message"], "login attempt: db=app user=web tls=no");
        let plain: serde_json::Value =
            serde_json::from_str(&json_line("t", 1, "WARNING", "stats: 1 xacts/s \"q\"")).unwrap();
        assert_eq!(plain["message"], "stats: 1 xacts/s \"q\"");
        assert!(plain.get("connection").is_none());
    }

    #[test]
    fn the_word_scan_finds_every_byte_outside_printable_ascii() {
        for len in [1usize, 7, 8, 9, 16, 23] {
            for at in 0..len {
                for b in 0..=255u8 {
                    let mut bytes = "a".repeat(len).into_bytes();
                    bytes[at] = b;
                    let naive = bytes.iter().any(|&x| !(0x20..0x7f).contains(&x));
                    assert_eq!(
                        may_need_escaping(&bytes),
                        naive,
                        "len {len} at {at} byte {b:#x}"
                    );
                }
            }
        }
        assert!(!may_need_escaping(
            b"C-12: db/user@127.0.0.1:5432 login attempt: db=x"
        ));
    }

    #[test]
    fn a_composed_line_is_the_formatted_one() {
        for n in [0u64, 7, 10, 99, 100, 65_535, u64::from(u32::MAX), u64::MAX] {
            let mut got = String::new();
            compose(
                |t| {
                    t.s("C-")
                        .n(n)
                        .s(": db/user@127.0.0.1:")
                        .n(n % 65_536)
                        .s(" x");
                },
                |text| got = text.to_string(),
            );
            assert_eq!(got, format!("C-{n}: db/user@127.0.0.1:{} x", n % 65_536));
        }
        // Composed inside a composition: both lines whole.
        let mut outer = String::new();
        let mut inner = String::new();
        compose(
            |t| {
                compose(
                    |u| {
                        u.s("inner ").n(1);
                    },
                    |text| inner = text.to_string(),
                );
                t.s("outer ").n(2);
            },
            |text| outer = text.to_string(),
        );
        assert_eq!((outer.as_str(), inner.as_str()), ("outer 2", "inner 1"));
    }

    #[test]
    fn fields_are_written_as_tracing_writes_them_with_terminal_controls_escaped() {
        use tracing_subscriber::layer::SubscriberExt;
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        // The same event through tracing's default field format and through ours (a
        // quoted value is escaped by `Debug` first).
        let emit = || {
            let user = "bob\x1b[31m\u{85}é";
            tracing::info!(pid = 7, name = "x\x07", "C-1: {user} login attempt");
        };
        let mut lines = Vec::new();
        for ours in [false, true] {
            let buf = Buf::default();
            let out = buf.clone();
            let layer = tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .without_time()
                .with_level(false)
                .with_target(false)
                .with_writer(move || out.clone());
            if ours {
                let layer = layer.event_format(PgbFormat {
                    pid: 1,
                    json: false,
                });
                tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), emit);
            } else {
                tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), emit);
            }
            let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
            lines.push(text);
        }
        let theirs = lines[0].trim_end();
        let ours = lines[1].trim_end();
        assert!(
            ours.ends_with(&format!(" [1] LOG {theirs}")),
            "{ours:?} vs {theirs:?}"
        );
        assert_eq!(
            theirs,
            "C-1: bob\\x1b[31m\\u{85}é login attempt pid=7 name=\"x\\u{7}\""
        );
    }

    #[test]
    fn timestamps_are_written_with_every_field_padded() {
        let at = |secs: u64, ms: u64| {
            timestamp(
                std::time::UNIX_EPOCH
                    + std::time::Duration::from_secs(secs)
                    + std::time::Duration::from_millis(ms),
            )
        };
        assert_eq!(at(0, 0), "1970-01-01 00:00:00.000 UTC");
        assert_eq!(at(951_782_400 + 3_723, 45), "2000-02-29 01:02:03.045 UTC");
        assert_eq!(at(1_796_300_000, 999), "2026-12-03 12:13:20.999 UTC");
    }

    #[test]
    fn civil_dates_are_right_around_leap_years() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_779), (2026, 11, 22));
    }
}
