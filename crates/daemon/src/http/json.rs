//! `/api/snapshot`: the pools as SHOW POOLS and SHOW LATENCY show them, totals, login
//! failures and the advisor's answer, as one JSON object for the dashboard.

use serde_json::{json, Value};

use crate::shared::Shared;

/// The current state.
pub(crate) fn snapshot(shared: &Shared) -> Value {
    let mut daemon = pgbouncer_admin::metrics::DaemonMetrics::default();
    shared.counters.fill(&mut daemon);
    let rt = shared.runtime();
    let core = shared.lock();
    let mut snap = crate::console::snapshot(shared, &core, &rt);
    snap.fd_limit = super::fd_limit();
    let mut pools: Vec<_> = core.pooler.pools(snap.now).collect();
    pools.sort_by(|a, b| (&a.key.database, &a.key.user).cmp(&(&b.key.database, &b.key.user)));
    let mut servers = 0u64;
    let pools: Vec<Value> = pools
        .iter()
        .map(|p| {
            let q = |h: &pgbouncer_pool_core::Histogram, x: f64| h.quantile(x);
            let s = &p.stats;
            servers += u64::from(p.sv_active + p.sv_idle + p.sv_used + p.sv_tested + p.sv_login);
            json!({
                "database": &*p.key.database,
                "user": &*p.key.user,
                "pool_mode": p.pool_mode().as_str(),
                "cl_active": p.cl_active,
                "cl_waiting": p.cl_waiting,
                "sv_active": p.sv_active,
                "sv_idle": p.sv_idle,
                "sv_used": p.sv_used,
                "sv_tested": p.sv_tested,
                "sv_login": p.sv_login,
                "maxwait_us": p.maxwait_us,
                "pool_size": p.settings.pool_size,
                "reserve_pool_size": p.settings.reserve_pool_size,
                "wait_p50_us": q(&s.wait_hist, 0.5),
                "wait_p95_us": q(&s.wait_hist, 0.95),
                "wait_p99_us": q(&s.wait_hist, 0.99),
                "query_p50_us": q(&s.query_hist, 0.5),
                "query_p95_us": q(&s.query_hist, 0.95),
                "query_p99_us": q(&s.query_hist, 0.99),
                "xact_p50_us": q(&s.xact_hist, 0.5),
                "xact_p95_us": q(&s.xact_hist, 0.95),
                "xact_p99_us": q(&s.xact_hist, 0.99),
                "total_xact_count": s.totals.xact_count,
                "total_query_count": s.totals.query_count,
                "last_login_error": p.last_login_error,
            })
        })
        .collect();
    let advice: Vec<Value> = pgbouncer_admin::advice::advise(&snap)
        .into_iter()
        .map(|a| {
            json!({
                "database": a.database,
                "user": a.user,
                "setting": a.setting,
                "current": a.current,
                "suggested": a.suggested,
                "verdict": a.verdict.as_str(),
                "reason": a.reason,
            })
        })
        .collect();
    let failures: u64 = daemon.login_failures.iter().map(|f| f.1).sum();
    json!({
        "time_ms": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        "version": pgbouncer_admin::version_text(),
        "pools": pools,
        "totals": {
            "clients": core.pooler.client_count(),
            "max_client_conn": core.pooler.config().max_client_conn,
            "servers": servers,
            "logins": daemon.logins,
            "login_failures": failures,
        },
        "errors": daemon.login_failures.iter()
            .filter(|f| f.1 > 0)
            .map(|(reason, count)| json!({"reason": reason, "count": count}))
            .collect::<Vec<_>>(),
        "advice": advice,
    })
}
