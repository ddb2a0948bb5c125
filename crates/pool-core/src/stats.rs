//! Per-pool statistics with PgBouncer's definitions (mirrors stats.c): running totals,
//! per-`stats_period` averages, and latency histograms (ours; PgBouncer has averages only).

use crate::time::Instant;

/// Work a client reports when it releases its server or at a transaction boundary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Transactions finished.
    pub xact_count: u64,
    /// Queries (Query messages and extended-protocol Syncs) finished.
    pub query_count: u64,
    /// Bytes received from the client.
    pub bytes_received: u64,
    /// Bytes sent to the client.
    pub bytes_sent: u64,
    /// Microseconds spent in transactions.
    pub xact_time_us: u64,
    /// Microseconds spent in queries.
    pub query_time_us: u64,
    /// Parse messages from the client.
    pub client_parse_count: u64,
    /// Parse messages sent to servers.
    pub server_parse_count: u64,
    /// Bind messages.
    pub bind_count: u64,
}

/// Counters with PgBouncer's `SHOW STATS` names (times in microseconds).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatCounters {
    /// Times a server was assigned to a client.
    pub server_assignment_count: u64,
    /// Transactions.
    pub xact_count: u64,
    /// Queries.
    pub query_count: u64,
    /// Bytes received from clients.
    pub bytes_received: u64,
    /// Bytes sent to clients.
    pub bytes_sent: u64,
    /// Time in transactions.
    pub xact_time: u64,
    /// Time in queries.
    pub query_time: u64,
    /// Time clients waited for a server.
    pub wait_time: u64,
    /// Parse messages from clients.
    pub client_parse_count: u64,
    /// Parse messages sent to servers.
    pub server_parse_count: u64,
    /// Bind messages.
    pub bind_count: u64,
    /// Client logins.
    pub client_login_count: u64,
}

impl StatCounters {
    /// Adds a client's usage report.
    pub fn add_usage(&mut self, u: &Usage) {
        self.xact_count += u.xact_count;
        self.query_count += u.query_count;
        self.bytes_received += u.bytes_received;
        self.bytes_sent += u.bytes_sent;
        self.xact_time += u.xact_time_us;
        self.query_time += u.query_time_us;
        self.client_parse_count += u.client_parse_count;
        self.server_parse_count += u.server_parse_count;
        self.bind_count += u.bind_count;
    }

    /// Element-wise sum, for per-database totals.
    pub fn add(&mut self, o: &StatCounters) {
        self.server_assignment_count += o.server_assignment_count;
        self.xact_count += o.xact_count;
        self.query_count += o.query_count;
        self.bytes_received += o.bytes_received;
        self.bytes_sent += o.bytes_sent;
        self.xact_time += o.xact_time;
        self.query_time += o.query_time;
        self.wait_time += o.wait_time;
        self.client_parse_count += o.client_parse_count;
        self.server_parse_count += o.server_parse_count;
        self.bind_count += o.bind_count;
        self.client_login_count += o.client_login_count;
    }

    /// PgBouncer's averages between two snapshots `period_us` apart: counts and bytes per
    /// second; xact/query time per transaction/query; wait time per assignment.
    pub fn averages(&self, previous: &StatCounters, period_us: u64) -> StatCounters {
        let secs = (period_us / 1_000_000).max(1);
        let d = |a: u64, b: u64| a.saturating_sub(b);
        let per = |t: u64, n: u64| t.checked_div(n).unwrap_or(0);
        let xacts = d(self.xact_count, previous.xact_count);
        let queries = d(self.query_count, previous.query_count);
        let assigns = d(
            self.server_assignment_count,
            previous.server_assignment_count,
        );
        StatCounters {
            server_assignment_count: assigns / secs,
            xact_count: xacts / secs,
            query_count: queries / secs,
            bytes_received: d(self.bytes_received, previous.bytes_received) / secs,
            bytes_sent: d(self.bytes_sent, previous.bytes_sent) / secs,
            xact_time: per(d(self.xact_time, previous.xact_time), xacts),
            query_time: per(d(self.query_time, previous.query_time), queries),
            wait_time: per(d(self.wait_time, previous.wait_time), assigns),
            client_parse_count: d(self.client_parse_count, previous.client_parse_count) / secs,
            server_parse_count: d(self.server_parse_count, previous.server_parse_count) / secs,
            bind_count: d(self.bind_count, previous.bind_count) / secs,
            client_login_count: d(self.client_login_count, previous.client_login_count) / secs,
        }
    }
}

/// A log-linear latency histogram in microseconds: 8 sub-buckets per power of two,
/// so a percentile is exact to within 12.5 %. Fixed size, no allocation per sample.
#[derive(Debug, Clone)]
pub struct Histogram {
    buckets: [u32; Histogram::BUCKETS],
    count: u64,
    sum: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: [0; Histogram::BUCKETS],
            count: 0,
            sum: 0,
        }
    }
}

impl Histogram {
    const SUB: u32 = 8;
    const BUCKETS: usize = 64 * 8;

    fn index(v: u64) -> usize {
        if v < u64::from(Self::SUB) {
            return v as usize;
        }
        let exp = 63 - v.leading_zeros(); // >= 3
        let shift = exp - 3;
        let sub = ((v >> shift) & 7) as u32;
        ((exp - 2) * Self::SUB + sub) as usize
    }

    fn lower_bound(i: usize) -> u64 {
        let i = i as u32;
        if i < Self::SUB {
            return u64::from(i);
        }
        let exp = i / Self::SUB + 2;
        let sub = u64::from(i % Self::SUB);
        (8 + sub) << (exp - 3)
    }

    /// Records one sample.
    pub fn record(&mut self, micros: u64) {
        let i = Self::index(micros).min(Self::BUCKETS - 1);
        self.buckets[i] = self.buckets[i].saturating_add(1);
        self.count += 1;
        self.sum = self.sum.saturating_add(micros);
    }

    /// Number of samples.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Adds `other`'s samples to these.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.buckets.iter_mut().zip(other.buckets.iter()) {
            *a = a.saturating_add(*b);
        }
        self.count += other.count;
        self.sum = self.sum.saturating_add(other.sum);
    }

    /// The samples recorded since `earlier` was copied from this histogram.
    pub fn since(&self, earlier: &Histogram) -> Histogram {
        let mut out = self.clone();
        for (a, b) in out.buckets.iter_mut().zip(earlier.buckets.iter()) {
            *a = a.saturating_sub(*b);
        }
        out.count = self.count.saturating_sub(earlier.count);
        out.sum = self.sum.saturating_sub(earlier.sum);
        out
    }

    /// Sum of all samples, in microseconds.
    pub fn sum(&self) -> u64 {
        self.sum
    }

    /// Samples known to be at most `bound` microseconds: those of every bucket that
    /// lies wholly at or below it (a Prometheus `le` bucket; exact to within one of our
    /// buckets, 12.5 %).
    pub fn count_at_most(&self, bound: u64) -> u64 {
        let mut n = 0u64;
        for (i, c) in self.buckets.iter().enumerate() {
            // Bucket i holds [lower_bound(i), lower_bound(i + 1)).
            let upper = if i + 1 < Self::BUCKETS {
                Self::lower_bound(i + 1)
            } else {
                u64::MAX
            };
            if upper.saturating_sub(1) > bound {
                break;
            }
            n += u64::from(*c);
        }
        n
    }

    /// The value at quantile `q` (0.0..=1.0), as the lower bound of its bucket; 0 if empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((self.count as f64) * q.clamp(0.0, 1.0)).ceil().max(1.0) as u64;
        let mut seen = 0u64;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += u64::from(*n);
            if seen >= rank {
                return Self::lower_bound(i);
            }
        }
        Self::lower_bound(Self::BUCKETS - 1)
    }
}

/// The most a pool held at once during a stats period: what the pool-size advisor
/// compares with the configured sizes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Peaks {
    /// Servers linked to clients.
    pub sv_active: u32,
    /// Servers of every state (login, idle, active, tested, being canceled).
    pub servers: u32,
    /// Clients queued for a server.
    pub cl_waiting: u32,
    /// Clients of the pool (active, waiting, logging in).
    pub clients: u32,
}

impl Peaks {
    pub(crate) fn observe(&mut self, c: &crate::entities::Counts) {
        self.sv_active = self.sv_active.max(c.sv_active);
        self.servers = self.servers.max(c.servers());
        self.cl_waiting = self.cl_waiting.max(c.cl_waiting);
        self.clients = self.clients.max(c.clients());
    }
}

/// What happened in one stats period (the current one, or the last complete one).
#[derive(Debug, Clone, Default)]
pub struct Period {
    /// The largest counts seen.
    pub peaks: Peaks,
    /// Wait-for-server times of the clients served in the period.
    pub wait_hist: Histogram,
}

/// Statistics of one pool.
#[derive(Debug, Clone, Default)]
pub struct PoolStats {
    /// Running totals.
    pub totals: StatCounters,
    /// Totals at the start of the current stats period.
    pub(crate) period_start: StatCounters,
    /// Averages over the last complete stats period.
    pub averages: StatCounters,
    /// Wait-for-server times.
    pub wait_hist: Histogram,
    /// Transaction times.
    pub xact_hist: Histogram,
    /// Query times.
    pub query_hist: Histogram,
    /// The period under way.
    pub current: Period,
    /// The last complete period (empty until one has passed).
    pub last: Period,
    /// Stats periods completed since the pool was created.
    pub periods: u64,
}

impl PoolStats {
    /// Ends a period; the next one starts from the counts the pool has now.
    pub(crate) fn roll(&mut self, period_us: u64, counts: &crate::entities::Counts) {
        self.averages = self.totals.averages(&self.period_start, period_us);
        self.period_start = self.totals;
        self.last = std::mem::take(&mut self.current);
        self.periods += 1;
        self.current.peaks.observe(counts);
    }

    pub(crate) fn record_wait(&mut self, micros: u64) {
        self.wait_hist.record(micros);
        self.current.wait_hist.record(micros);
    }

    pub(crate) fn add_usage(&mut self, u: &Usage) {
        self.totals.add_usage(u);
        if let Some(t) = u.xact_time_us.checked_div(u.xact_count) {
            self.xact_hist.record(t);
        }
        if let Some(t) = u.query_time_us.checked_div(u.query_count) {
            self.query_hist.record(t);
        }
    }
}

/// Marker so `Instant` stays used in docs of this module's consumers.
pub(crate) fn elapsed_us(now: Instant, since: Instant) -> u64 {
    now.as_micros().saturating_sub(since.as_micros())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_are_within_a_bucket_of_the_truth() {
        let mut h = Histogram::default();
        for v in 1..=1000u64 {
            h.record(v);
        }
        let p50 = h.quantile(0.5);
        let p99 = h.quantile(0.99);
        assert!((440..=500).contains(&p50), "p50 {p50}");
        assert!((870..=990).contains(&p99), "p99 {p99}");
        assert_eq!(Histogram::default().quantile(0.5), 0);
        assert_eq!(h.sum(), 500_500);
        assert_eq!(h.count_at_most(0), 0);
        assert_eq!(h.count_at_most(7), 7);
        // 1000 lies in the bucket [960, 1024): counted from 1023 on.
        assert_eq!(h.count_at_most(1000), 959);
        assert_eq!(h.count_at_most(1023), 1000);
        let half = h.count_at_most(500);
        assert!((440..=500).contains(&half), "<=500: {half}");
    }

    #[test]
    fn averages_divide_deltas_by_the_period_and_times_by_counts() {
        let prev = StatCounters {
            xact_count: 10,
            xact_time: 1000,
            ..Default::default()
        };
        let now = StatCounters {
            xact_count: 130,
            xact_time: 13_000,
            ..Default::default()
        };
        let avg = now.averages(&prev, 60_000_000);
        assert_eq!(avg.xact_count, 2);
        assert_eq!(avg.xact_time, 100);
    }
}
