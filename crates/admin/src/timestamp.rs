//! Timestamps of `SHOW CLIENTS` / `SHOW SERVERS`: pool-core's monotonic [`Instant`]s turned
//! into wall-clock text `YYYY-MM-DD HH:MM:SS UTC`.
//!
//! PgBouncer prints local time with the zone abbreviation (`strftime("%Y-%m-%d %H:%M:%S
//! %Z")`); we always print UTC, so no time zone database is needed and output does not
//! depend on the host's `TZ`. The calendar maths is Howard Hinnant's `civil_from_days`.

use std::time::{SystemTime, UNIX_EPOCH};

use pgbouncer_pool_core::Instant;

/// Maps instants of the daemon's monotonic clock to wall-clock time, given one moment read
/// from both clocks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    now: Instant,
    /// `wall_clock_now` as microseconds since the Unix epoch (0 if before it).
    wall_us: u64,
}

impl Clock {
    pub(crate) fn new(now: Instant, wall_clock_now: SystemTime) -> Self {
        let wall_us = wall_clock_now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        Clock { now, wall_us }
    }

    /// `instant` as `YYYY-MM-DD HH:MM:SS UTC`.
    pub(crate) fn format(&self, instant: Instant) -> String {
        let ago = self.now.as_micros().saturating_sub(instant.as_micros());
        format_unix_secs(self.wall_us.saturating_sub(ago) / 1_000_000)
    }
}

/// Seconds since the Unix epoch as `YYYY-MM-DD HH:MM:SS UTC`.
pub(crate) fn format_unix_secs(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// (year, month, day) of the proleptic Gregorian calendar, `days` after 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32; // [1, 31]
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32; // [1, 12]
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn known_dates_format_as_utc() {
        assert_eq!(format_unix_secs(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_unix_secs(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(format_unix_secs(1_700_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(format_unix_secs(4_107_542_399), "2100-02-28 23:59:59 UTC");
    }

    #[test]
    fn instants_are_placed_back_from_the_wall_clock() {
        let wall = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let clock = Clock::new(Instant::from_micros(90_000_000), wall);
        assert_eq!(
            clock.format(Instant::from_micros(30_000_000)),
            "2023-11-14 22:12:20 UTC"
        );
    }
}
