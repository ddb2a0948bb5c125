//! `cargo xtask ci` and `cargo xtask test`: the whole gate that `.ci/run` calls, step by
//! step with a pass/fail summary, and its test part on its own.

use crate::cmd;
use crate::{layering, tidy, Failure, Outcome};

/// Set by `test --fast`; pg-harness's `require_postgres` then skips PostgreSQL tests.
const FAST_ENV: &str = pg_harness::FAST_ENV;
/// Built and run by the test step when it exists (written with pool-core).
const EMBED_EXAMPLE: &str = "crates/pool-core/examples/embed_pool_core.rs";

/// How one CI step ended.
enum StepResult {
    Passed,
    Failed(String),
    Skipped(&'static str),
}

/// One CI step: runs and reports.
type Step = fn() -> Result<StepResult, Failure>;

/// Runs every step even after a failure, prints a summary, fails if any step failed.
pub(crate) fn ci() -> Outcome {
    let steps: [(&str, Step); 9] = [
        ("fmt", || {
            passed(cmd::run(
                cmd::cargo().args(["fmt", "--all", "--", "--check"]),
            ))
        }),
        ("clippy", || {
            passed(cmd::run(cmd::cargo().args([
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ])))
        }),
        ("layering", || passed(layering::run())),
        ("tidy", || passed(tidy::run())),
        ("test", || passed(test(false))),
        ("doc", || {
            passed(cmd::run(
                cmd::cargo().env("RUSTDOCFLAGS", "-D warnings").args([
                    "doc",
                    "--workspace",
                    "--no-deps",
                ]),
            ))
        }),
        ("deploy", deploy),
        ("fuzz", fuzz),
        ("deny", deny),
    ];

    let mut results = Vec::new();
    for (name, step) in steps {
        println!("\n==> ci step: {name}");
        let result = match step() {
            Ok(result) => result,
            Err(Failure::Failed(message) | Failure::Usage(message)) => StepResult::Failed(message),
        };
        results.push((name, result));
    }

    println!("\n==> ci summary");
    let (mut passed_count, mut failed_count, mut skipped_count) = (0, 0, 0);
    for (name, result) in &results {
        match result {
            StepResult::Passed => {
                passed_count += 1;
                println!("  pass  {name}");
            }
            StepResult::Failed(message) => {
                failed_count += 1;
                println!("  FAIL  {name}: {message}");
            }
            StepResult::Skipped(why) => {
                skipped_count += 1;
                println!("  skip  {name}: {why}");
            }
        }
    }
    println!("ci: {passed_count} passed, {failed_count} failed, {skipped_count} skipped");
    if failed_count == 0 {
        Ok(())
    } else {
        Err(Failure::Failed(format!("{failed_count} step(s) failed")))
    }
}

/// `cargo xtask test [--fast]`.
pub(crate) fn test_command(args: &[&str]) -> Outcome {
    match args {
        [] => test(false),
        ["--fast"] => test(true),
        [other, ..] => Err(Failure::Usage(format!("unexpected argument `{other}`"))),
    }
}

/// Every test target, then doctests, then the embedding example; runs all three even if
/// one fails, so one run shows every failure.
fn test(fast: bool) -> Outcome {
    let mut all_targets = cmd::cargo();
    all_targets.args(["test", "--workspace", "--all-targets", "--no-fail-fast"]);
    let mut doc = cmd::cargo();
    doc.args(["test", "--workspace", "--doc"]);
    if fast {
        println!("{FAST_ENV}=1: PostgreSQL-backed tests will skip");
        all_targets.env(FAST_ENV, "1");
        doc.env(FAST_ENV, "1");
    }
    let mut failures = Vec::new();
    failures.extend(cmd::run(&mut all_targets).err());
    failures.extend(cmd::run(&mut doc).err());
    if cmd::root().join(EMBED_EXAMPLE).is_file() {
        failures.extend(
            cmd::run(cmd::cargo().args([
                "run",
                "--quiet",
                "-p",
                "pgbouncer-pool-core",
                "--example",
                "embed_pool_core",
            ]))
            .err(),
        );
    } else {
        println!("{EMBED_EXAMPLE} not found: example run skipped");
    }
    match failures.len() {
        0 => Ok(()),
        n => Err(Failure::Failed(format!("{n} test command(s) failed"))),
    }
}

/// Seconds each fuzz target runs in CI (`CI_FUZZ_SECONDS` overrides).
const CI_FUZZ_SECONDS: u64 = 20;

/// Whether this is the CI machine (`.ci/run` sets `CI`): a missing tool fails there
/// instead of skipping.
fn on_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// The deployment files (`deploy/`): promtool on the alert rules and their unit tests,
/// the Kubernetes manifests against the schemas, the compose file, the Dockerfiles, the
/// systemd units (`xtask/deploy-check.sh`; with `CI` set a missing tool fails).
fn deploy() -> Result<StepResult, Failure> {
    let script = cmd::root().join("xtask/deploy-check.sh");
    passed(cmd::run(std::process::Command::new("bash").arg(script)))
}

/// Every fuzz target for a short, bounded time (a crash fails the step and leaves its
/// input in `fuzz/artifacts/`).
fn fuzz() -> Result<StepResult, Failure> {
    if crate::fuzz::fuzz_command().is_err() && !on_ci() {
        println!("cargo-fuzz not installed: skipped (.ci/install installs it)");
        return Ok(StepResult::Skipped("cargo-fuzz not installed"));
    }
    let seconds = std::env::var("CI_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(CI_FUZZ_SECONDS);
    let mut failures = Vec::new();
    for target in crate::fuzz::TARGETS {
        if let Err(Failure::Failed(m) | Failure::Usage(m)) =
            crate::fuzz::run_one_scratch(target, seconds)
        {
            failures.push(format!("{target}: {m}"));
        }
    }
    if failures.is_empty() {
        Ok(StepResult::Passed)
    } else {
        Err(Failure::Failed(failures.join("; ")))
    }
}

/// `cargo deny check` (advisories, licenses, bans, sources). The advisory database is
/// the snapshot under `.ci/advisory-db` when the network cannot reach GitHub (see
/// `crate::advisories`).
fn deny() -> Result<StepResult, Failure> {
    if !cmd::probe(cmd::cargo().args(["deny", "--version"])) {
        if on_ci() {
            return Err(Failure::Failed(
                "cargo-deny is not installed (.ci/install installs it)".into(),
            ));
        }
        println!("cargo-deny not installed: skipped");
        return Ok(StepResult::Skipped("cargo-deny not installed"));
    }
    passed(crate::advisories::deny_check())
}

fn passed(outcome: Outcome) -> Result<StepResult, Failure> {
    outcome.map(|()| StepResult::Passed)
}
