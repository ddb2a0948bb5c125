//! `cargo xtask layering`: the dependency fence of STYLE.md section 1. The pure crates'
//! normal dependency trees must not reach the async runtime, sockets, serde or config.

use crate::cmd;
use crate::{Failure, Outcome};

/// Crates that make a crate impure: runtime, sockets, serialization, config files.
const IMPURE: &[&str] = &[
    "tokio",
    "mio",
    "socket2",
    "serde",
    "serde_core",
    "config",
    "tokio-util",
];

/// (package, crates forbidden anywhere in its normal dependency tree).
fn fences() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut pool_core = IMPURE.to_vec();
    pool_core.extend(["pgbouncer-protocol", "rand"]);
    vec![
        ("pgbouncer-protocol", IMPURE.to_vec()),
        ("pgbouncer-pool-core", pool_core),
        ("pgbouncer-admin", vec!["tokio", "mio", "socket2", "config"]),
    ]
}

/// Runs `cargo tree -e normal -p <pkg> --prefix none` per fenced crate and reports every
/// forbidden crate found.
pub(crate) fn run() -> Outcome {
    let mut offenders = Vec::new();
    for (package, forbidden) in fences() {
        let tree = cmd::output(
            cmd::cargo().args(["tree", "-e", "normal", "-p", package, "--prefix", "none"]),
        )?;
        let mut found: Vec<&str> = tree
            .lines()
            .filter_map(|line| line.split_whitespace().next())
            .filter(|name| forbidden.contains(name))
            .collect();
        found.sort_unstable();
        found.dedup();
        for name in found {
            offenders.push(format!("{package} depends on {name}"));
        }
    }
    if offenders.is_empty() {
        println!("layering: ok");
        return Ok(());
    }
    for offender in &offenders {
        println!("layering: {offender}");
    }
    Err(Failure::Failed(format!(
        "{} forbidden dependency edge(s)",
        offenders.len()
    )))
}
