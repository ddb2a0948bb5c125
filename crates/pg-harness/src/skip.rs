//! Deciding whether a PostgreSQL-backed test runs: skip loudly on a laptop without
//! PostgreSQL, fail under CI, skip on request with [`FAST_ENV`].

use crate::binaries::find_bin_dir;

/// Environment variable that `cargo xtask test --fast` sets: when it is `1`,
/// [`require_postgres`] returns false so PostgreSQL-backed tests skip.
pub const FAST_ENV: &str = "PGBOUNCER_RS_FAST";

/// Call first in every PostgreSQL-backed test: `if !require_postgres() { return; }`.
///
/// Returns true when the binaries are there. Returns false, printing a `SKIPPED:` line to
/// stderr, when [`FAST_ENV`] is `1` or when the binaries are missing on a machine without
/// `CI`.
///
/// # Panics
///
/// When the binaries are missing and `CI` is set (to anything but empty, `0` or `false`):
/// CI must never pass by skipping.
pub fn require_postgres() -> bool {
    if std::env::var(FAST_ENV).is_ok_and(|v| v == "1") {
        eprintln!("SKIPPED: {FAST_ENV}=1, PostgreSQL-backed test not run");
        return false;
    }
    match find_bin_dir() {
        Ok(_) => true,
        Err(err) => {
            let ci = std::env::var("CI")
                .is_ok_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"));
            if ci {
                panic!("CI is set but PostgreSQL is not usable: {err}; .ci/run installs it");
            }
            eprintln!("SKIPPED: PostgreSQL binaries not found ({err})");
            false
        }
    }
}
