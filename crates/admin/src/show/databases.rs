//! SHOW DATABASES and SHOW USERS (mirrors `admin_show_databases` / `admin_show_users`).
//!
//! Effective values are shown: per-database or per-user settings from the pooler's config,
//! else the globals. Rows are sorted by name and include the console's `pgbouncer` entries.
//! Databases and users the pooler has pools for are listed even if the snapshot omits them.
//!
//! `paused` is 1 while the database is paused by `PAUSE db` or `KILL db`, and also under a
//! global PAUSE/KILL (pool-core reports the effective state; PgBouncer shows a global
//! PAUSE only in SHOW STATE).

use std::collections::BTreeSet;

use pgbouncer_protocol::{Column, ResultSet};

use super::{cell, ADMIN_DB};
use crate::snapshot::{DatabaseInfo, Snapshot};

/// The databases to show, sorted by name, `pgbouncer` included.
pub(super) fn database_rows(snap: &Snapshot<'_>) -> Vec<DatabaseInfo> {
    let mut dbs: Vec<DatabaseInfo> = snap.databases.clone();
    let known: BTreeSet<String> = dbs.iter().map(|d| d.name.clone()).collect();
    let mut extra: BTreeSet<String> = snap
        .pooler
        .pools(snap.now)
        .map(|p| p.key.database.to_string())
        .filter(|d| !known.contains(d))
        .collect();
    extra.insert(ADMIN_DB.into());
    for name in extra.into_iter().filter(|d| !known.contains(d)) {
        dbs.push(DatabaseInfo {
            dbname: name.clone(),
            port: snap.listen_port,
            name,
            ..DatabaseInfo::default()
        });
    }
    dbs.sort_by(|a, b| a.name.cmp(&b.name));
    dbs
}

pub(super) fn databases(snap: &Snapshot<'_>) -> ResultSet {
    let t = Column::text;
    let i = Column::int4;
    let mut set = ResultSet::new(vec![
        t("name"),
        t("host"),
        i("port"),
        t("database"),
        t("force_user"),
        i("pool_size"),
        i("min_pool_size"),
        i("reserve_pool_size"),
        i("server_lifetime"),
        t("pool_mode"),
        t("load_balance_hosts"),
        i("max_connections"),
        i("current_connections"),
        i("max_client_connections"),
        i("current_client_connections"),
        i("paused"),
        i("disabled"),
    ]);
    let cfg = snap.pooler.config();
    for info in database_rows(snap) {
        let name = info.name.as_str();
        let dbc = cfg.database(name);
        let admin = name == ADMIN_DB;
        let lifetime = dbc
            .and_then(|d| d.server_lifetime)
            .unwrap_or(cfg.server_lifetime);
        let (servers, clients) = if admin {
            (0, snap.admin_clients.len() as u32)
        } else {
            snap.pooler.database_counts(name)
        };
        let load_balance_hosts = info
            .load_balance_hosts
            .clone()
            .filter(|_| info.host.as_deref().is_some_and(|h| h.contains(',')));
        set.push_row(vec![
            cell(name),
            info.host.clone(),
            cell(info.port),
            cell(&info.dbname),
            if admin {
                cell(ADMIN_DB)
            } else {
                dbc.and_then(|d| d.forced_user.clone())
            },
            cell(if admin {
                2
            } else {
                dbc.and_then(|d| d.pool_size)
                    .unwrap_or(cfg.default_pool_size)
            }),
            cell(
                dbc.and_then(|d| d.min_pool_size)
                    .unwrap_or(cfg.min_pool_size),
            ),
            cell(
                dbc.and_then(|d| d.reserve_pool_size)
                    .unwrap_or(cfg.reserve_pool_size),
            ),
            cell(lifetime.as_secs()),
            if admin {
                cell("statement")
            } else {
                dbc.and_then(|d| d.pool_mode).map(|m| m.as_str().to_owned())
            },
            load_balance_hosts,
            cell(cfg.max_db_connections(name)),
            cell(servers),
            cell(cfg.max_db_client_connections(name)),
            cell(clients),
            cell(u8::from(!admin && snap.pooler.is_paused(Some(name)))),
            cell(u8::from(!admin && snap.pooler.is_disabled(name))),
        ]);
    }
    set
}

/// The users to show, sorted, `pgbouncer` included.
pub(super) fn user_names(snap: &Snapshot<'_>) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = snap.users.iter().cloned().collect();
    names.extend(snap.pooler.pools(snap.now).map(|p| p.key.user.to_string()));
    names.extend(
        snap.pooler
            .clients(snap.now)
            .iter()
            .map(|c| c.login_user.to_string()),
    );
    names.extend(snap.pooler.config().users.iter().map(|u| u.name.clone()));
    names.extend(snap.admin_clients.iter().map(|a| a.user.clone()));
    names.insert(ADMIN_DB.into());
    names
}

pub(super) fn users(snap: &Snapshot<'_>) -> ResultSet {
    let mut set = ResultSet::new(vec![
        Column::text("name"),
        Column::text("pool_size"),
        Column::text("reserve_pool_size"),
        Column::text("pool_mode"),
        Column::int4("max_user_connections"),
        Column::int4("current_connections"),
        Column::int4("max_user_client_connections"),
        Column::int4("current_client_connections"),
    ]);
    let cfg = snap.pooler.config();
    // PgBouncer compat: set sizes are printed with "%9d", unset ones as an empty string.
    let padded = |n: Option<u32>| n.map_or_else(String::new, |n| format!("{n:9}"));
    for name in user_names(snap) {
        let uc = cfg.user(&name);
        let (servers, clients) = snap.pooler.user_counts(&name);
        set.push_row(vec![
            cell(&name),
            cell(padded(uc.and_then(|u| u.pool_size))),
            cell(padded(uc.and_then(|u| u.reserve_pool_size))),
            uc.and_then(|u| u.pool_mode).map(|m| m.as_str().to_owned()),
            cell(cfg.max_user_connections(&name)),
            cell(servers),
            cell(cfg.max_user_client_connections(&name)),
            cell(clients),
        ]);
    }
    set
}
