//! `cargo xtask soak-protocol [--ops N]`: the differential test against PostgreSQL
//! (`crates/daemon/tests/differential.rs`) in a release build with N client messages
//! (default one million); it prints the scenario and message counts it ran.

use crate::cmd;
use crate::{Failure, Outcome};

/// Messages for the long run.
const DEFAULT_OPS: u64 = 1_000_000;

pub(crate) fn run(args: &[&str]) -> Outcome {
    let mut ops = DEFAULT_OPS;
    let mut seed = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .ok_or_else(|| Failure::Usage(format!("{name} needs a value")))
                .and_then(|v| {
                    v.parse::<u64>()
                        .map_err(|_| Failure::Usage(format!("{name}: `{v}` is not a number")))
                })
        };
        match *arg {
            "--ops" => ops = value("--ops")?,
            "--seed" => seed = Some(value("--seed")?),
            other => return Err(Failure::Usage(format!("unexpected argument `{other}`"))),
        }
    }
    let mut test = cmd::cargo();
    test.env("DIFF_OPS", ops.to_string());
    if let Some(seed) = seed {
        test.env("DIFF_SEED", seed.to_string());
    }
    test.args([
        "test",
        "--release",
        "-p",
        "pgbouncer-rs",
        "--test",
        "differential",
        "--",
        "--nocapture",
    ]);
    cmd::run(&mut test)
}
