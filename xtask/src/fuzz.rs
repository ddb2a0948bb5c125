//! `cargo xtask fuzz [TARGET|all] [--seconds N]`: time-limited cargo-fuzz runs in
//! `fuzz/`. cargo-fuzz needs nightly features; with no nightly toolchain, the stable one
//! runs it with `RUSTC_BOOTSTRAP=1` (the same compiler, its unstable flags unlocked).

use std::process::Command;

use crate::cmd;
use crate::{Failure, Outcome};

/// Default run time in seconds, per target.
const DEFAULT_SECONDS: u64 = 60;

/// Every target in `fuzz/Cargo.toml`.
pub(crate) const TARGETS: &[&str] = &[
    "frontend", "backend", "startup", "scram", "link", "console", "config",
];

/// Parses the arguments and runs the targets.
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
    let target = target.ok_or_else(|| Failure::Usage("fuzz needs a TARGET (or `all`)".into()))?;
    let targets: Vec<&str> = if target == "all" {
        TARGETS.to_vec()
    } else if TARGETS.contains(&target.as_str()) {
        vec![target.as_str()]
    } else {
        return Err(Failure::Usage(format!(
            "unknown target `{target}` (targets: {})",
            TARGETS.join(", ")
        )));
    };
    for t in targets {
        run_one(t, seconds)?;
    }
    Ok(())
}

/// Runs one target for `seconds`, growing its checked-in corpus; a crash fails (its
/// input is in `fuzz/artifacts/`).
pub(crate) fn run_one(target: &str, seconds: u64) -> Outcome {
    let mut fuzz = fuzz_command()?;
    cmd::run(
        fuzz.current_dir(cmd::root().join("fuzz"))
            .args(["run", target, "--"])
            .arg(format!("-max_total_time={seconds}")),
    )
}

/// Like [`run_one`], but new inputs go to a scratch corpus under `target/` (the
/// checked-in one is read, not written): what CI runs, so a checkout stays clean.
pub(crate) fn run_one_scratch(target: &str, seconds: u64) -> Outcome {
    let root = cmd::root();
    let scratch = root.join("target/fuzz-scratch-corpus").join(target);
    std::fs::create_dir_all(&scratch)
        .map_err(|e| Failure::Failed(format!("{}: {e}", scratch.display())))?;
    let mut fuzz = fuzz_command()?;
    cmd::run(
        fuzz.current_dir(root.join("fuzz"))
            .args(["run", target])
            .arg(&scratch)
            .arg(root.join("fuzz/corpus").join(target))
            .arg("--")
            .arg(format!("-max_total_time={seconds}")),
    )
}

/// `cargo +nightly fuzz` when a nightly toolchain is there, else the stable `cargo fuzz`
/// with `RUSTC_BOOTSTRAP=1`; an error when cargo-fuzz itself is missing.
pub(crate) fn fuzz_command() -> Result<Command, Failure> {
    if cmd::probe(Command::new("cargo").args(["+nightly", "fuzz", "--help"])) {
        let mut c = Command::new("cargo");
        c.args(["+nightly", "fuzz"]);
        return Ok(c);
    }
    if cmd::probe(Command::new("cargo").args(["fuzz", "--help"])) {
        let mut c = Command::new("cargo");
        c.env("RUSTC_BOOTSTRAP", "1").arg("fuzz");
        return Ok(c);
    }
    Err(Failure::Failed(
        "cargo-fuzz is not installed (`cargo install cargo-fuzz`; .ci/install does it)".to_owned(),
    ))
}
