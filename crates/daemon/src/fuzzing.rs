//! Entry points for the fuzz targets of the daemon's parsers (`fuzz/`): the console
//! grammar and the configuration files. Each takes arbitrary bytes and must never panic;
//! the checked-in corpus replays under `cargo test` (`tests/fuzz_corpus.rs`).

use std::path::Path;

/// The console grammar: every statement parses to a command or an error, as any user.
pub fn fuzz_console(data: &[u8]) {
    let sql = String::from_utf8_lossy(data);
    let _ = pgbouncer_admin::parse(&sql);
    for (admin, stats) in [(true, true), (false, true), (false, false)] {
        let _ = pgbouncer_admin::parse_checked(&sql, admin, stats);
    }
}

/// The configuration files: `pgbouncer.ini` (with its `[databases]` connection strings
/// and settings), `auth_hba_file`, `auth_ident_file` and `auth_file`. Includes resolve
/// against a directory that does not exist, so nothing is read from disk.
pub fn fuzz_config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let path = Path::new("/nonexistent/pgbouncer-rs-fuzz/pgbouncer.ini");
    if let Ok(ini) = crate::config::ini::Ini::parse(&text, path) {
        let _ = crate::config::Settings::from_ini(&ini, Some(path), &Vec::new());
    }
    let _ = crate::auth::hba::HbaFile::parse_lenient(&text, path);
    let _ = crate::auth::ident::IdentMap::parse(&text, path);
    let _ = crate::auth::userlist::parse(&text);
}
