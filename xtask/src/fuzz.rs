//! `cargo xtask fuzz TARGET [--seconds N]`: a time-limited cargo-fuzz run in `fuzz/`,
//! which needs a nightly toolchain and cargo-fuzz.

use std::process::Command;

use crate::cmd;
use crate::{Failure, Outcome};

/// Default run time in seconds.
const DEFAULT_SECONDS: u64 = 60;

/// Parses the arguments, checks for nightly + cargo-fuzz, runs the target.
pub(crate) fn run(args: &[&str]) -> Outcome {
    let mut target = None;
    let mut seconds = DEFAULT_SECONDS;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match *arg {
            "--seconds" => {
                let value = args
                    .next()
                    .ok_or_else(|| Failure::Usage("--seconds needs a value".into()))?;
                seconds = value
                    .parse()
                    .map_err(|_| Failure::Usage(format!("--seconds: `{value}` is not a number")))?;
            }
            flag if flag.starts_with('-') => {
                return Err(Failure::Usage(format!("unknown option `{flag}`")));
            }
            name if target.is_none() => target = Some(name.to_owned()),
            extra => return Err(Failure::Usage(format!("unexpected argument `{extra}`"))),
        }
    }
    let target = target.ok_or_else(|| Failure::Usage("fuzz needs a TARGET".into()))?;

    // `+nightly` is understood by rustup's `cargo` proxy, not by `$CARGO`.
    if !cmd::probe(Command::new("cargo").args(["+nightly", "fuzz", "--help"])) {
        return Err(Failure::Failed(
            "`cargo +nightly fuzz` is not available; fuzzing needs a nightly toolchain and \
             cargo-fuzz:\n    rustup toolchain install nightly\n    cargo install cargo-fuzz"
                .to_owned(),
        ));
    }
    cmd::run(
        Command::new("cargo")
            .current_dir(cmd::root().join("fuzz"))
            .args(["+nightly", "fuzz", "run", &target, "--"])
            .arg(format!("-max_total_time={seconds}")),
    )
}
