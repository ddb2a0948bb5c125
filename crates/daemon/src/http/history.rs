//! The dashboard's memory: one sample per second of every pool (clients, servers,
//! throughput, latency percentiles of that second), the last ten minutes.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pgbouncer_pool_core::{Histogram, PoolKey};
use serde_json::{json, Value};

use crate::shared::Shared;

/// Samples kept: ten minutes at one per second.
pub(crate) const KEEP: usize = 600;

/// One pool at one second.
#[derive(Debug, Clone)]
struct PoolSample {
    cl_active: u32,
    cl_waiting: u32,
    sv_active: u32,
    sv_idle: u32,
    xact_per_s: u64,
    query_per_s: u64,
    wait_p95_us: u64,
    query_p95_us: u64,
}

#[derive(Debug, Clone)]
struct Sample {
    t_ms: u64,
    pools: Vec<(String, PoolSample)>,
}

/// What the previous second left, to take differences from.
#[derive(Debug, Default)]
struct Previous {
    at_ms: u64,
    per_pool: HashMap<PoolKey, (u64, u64, Histogram, Histogram)>,
}

/// The ring of samples.
#[derive(Debug, Default)]
pub(crate) struct History {
    samples: Mutex<VecDeque<Sample>>,
    previous: Mutex<Previous>,
}

impl History {
    /// Takes one sample now (the pool lock is held while the pools are read).
    pub(crate) fn sample(&self, shared: &Shared) {
        let now = shared.now();
        let t_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut prev = self.previous.lock().unwrap_or_else(|e| e.into_inner());
        let elapsed_ms = (now.as_micros() / 1000).saturating_sub(prev.at_ms).max(1);
        let mut next = HashMap::new();
        let mut pools = Vec::new();
        {
            let core = shared.lock();
            for p in core.pooler.pools(now) {
                let totals = &p.stats.totals;
                let (xacts, queries, wait_h, query_h) = match prev.per_pool.remove(p.key) {
                    Some((x, q, w, qh)) => (
                        totals.xact_count.saturating_sub(x),
                        totals.query_count.saturating_sub(q),
                        p.stats.wait_hist.since(&w),
                        p.stats.query_hist.since(&qh),
                    ),
                    None => (0, 0, Histogram::default(), Histogram::default()),
                };
                pools.push((
                    format!("{}/{}", p.key.database, p.key.user),
                    PoolSample {
                        cl_active: p.cl_active,
                        cl_waiting: p.cl_waiting,
                        sv_active: p.sv_active,
                        sv_idle: p.sv_idle + p.sv_used,
                        xact_per_s: xacts * 1000 / elapsed_ms,
                        query_per_s: queries * 1000 / elapsed_ms,
                        wait_p95_us: wait_h.quantile(0.95),
                        query_p95_us: query_h.quantile(0.95),
                    },
                ));
                next.insert(
                    p.key.clone(),
                    (
                        totals.xact_count,
                        totals.query_count,
                        p.stats.wait_hist.clone(),
                        p.stats.query_hist.clone(),
                    ),
                );
            }
        }
        prev.per_pool = next;
        prev.at_ms = now.as_micros() / 1000;
        drop(prev);
        pools.sort_by(|a, b| a.0.cmp(&b.0));
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        if samples.len() == KEEP {
            samples.pop_front();
        }
        samples.push_back(Sample { t_ms, pools });
    }

    /// `{"interval_ms": 1000, "samples": [{"t_ms", "pools": {"db/user": {...}}}]}`, the
    /// samples taken after `since_ms` (wall clock, as `t_ms`).
    pub(crate) fn to_json(&self, since_ms: u64) -> Value {
        let samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let list: Vec<Value> = samples
            .iter()
            .filter(|s| s.t_ms > since_ms)
            .map(|s| {
                let pools: serde_json::Map<String, Value> = s
                    .pools
                    .iter()
                    .map(|(k, p)| {
                        (
                            k.clone(),
                            json!({
                                "cl_active": p.cl_active,
                                "cl_waiting": p.cl_waiting,
                                "sv_active": p.sv_active,
                                "sv_idle": p.sv_idle,
                                "xact_per_s": p.xact_per_s,
                                "query_per_s": p.query_per_s,
                                "wait_p95_us": p.wait_p95_us,
                                "query_p95_us": p.query_p95_us,
                            }),
                        )
                    })
                    .collect();
                json!({"t_ms": s.t_ms, "pools": pools})
            })
            .collect();
        json!({"interval_ms": 1000, "samples": list})
    }
}

/// Samples once a second until `stop`.
pub(crate) async fn sample_every_second(
    shared: Arc<Shared>,
    history: Arc<History>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = tick.tick() => history.sample(&shared),
            _ = stop.changed() => return,
        }
    }
}
