//! `cargo xtask <cmd>`: project automation (std plus `pg-harness` only).
//!
//! One `match` over subcommands; each prints the commands it runs as `$ ...` and exits
//! non-zero when something fails. `.ci/run` calls `cargo xtask ci`.

mod advisories;
mod bench;
mod ci;
mod cmd;
mod cpusplit;
mod demo;
mod fakepg;
mod fuzz;
mod latency;
mod layering;
mod pg;
mod scale;
mod soak;
mod soak_protocol;
mod tidy;

use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  ci                          fmt check, clippy, layering, tidy, test, rustdoc, fuzz (20 s
                              per target), cargo deny
  deny                        cargo deny check (offline against .ci/advisory-db when the
                              advisory database cannot be fetched)
  test [--fast]               workspace tests; --fast skips PostgreSQL-backed tests
  layering                    dependency fence of the pure crates
  tidy                        //! headers, file sizes, no dbg!/println!/mutable statics
  pg [--max-connections N]    start a throwaway PostgreSQL until stdin closes
  fuzz TARGET|all [--seconds N]
                              cargo-fuzz runs with a time limit (per target)
  soak-protocol [--ops N] [--seed S]
                              the differential test against PostgreSQL, release build,
                              N client messages (default 1 000 000)
  demo [--no-wait]            PostgreSQL with max_connections 30, 300 clients through pgbouncer-rs
  bench [--quick] [--micro-only|--no-micro] [--no-macro] [--no-scale|--scale-only]
        [--no-latency|--latency-only] [--no-split|--split-only] [--save NAME|--baseline NAME]
        | --soak [MINUTES]
                              criterion micro-benches, pooler-bound run against a fake server,
                              scale checks, p99 latency at 1000 clients, user/kernel time and
                              context switches per transaction per scenario, and the reference
                              pgbench harness next to PgBouncer
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = args.split_first() else {
        eprint!("{USAGE}");
        return ExitCode::from(2);
    };
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    let result = match command.as_str() {
        "ci" => no_args(&rest).and_then(|()| ci::ci()),
        "test" => ci::test_command(&rest),
        "layering" => no_args(&rest).and_then(|()| layering::run()),
        "tidy" => no_args(&rest).and_then(|()| tidy::run()),
        "pg" => pg::run(&rest),
        "fuzz" => fuzz::run(&rest),
        "deny" => no_args(&rest).and_then(|()| advisories::deny_check()),
        "soak-protocol" => soak_protocol::run(&rest),
        "demo" => demo::run(&rest),
        "bench" => bench::run(&rest),
        "help" | "-h" | "--help" => {
            print!("{USAGE}");
            Ok(())
        }
        other => {
            eprintln!("xtask: unknown command `{other}`\n");
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(message)) => {
            eprintln!("xtask {command}: {message}\n");
            eprint!("{USAGE}");
            ExitCode::from(2)
        }
        Err(Failure::Failed(message)) => {
            eprintln!("xtask {command}: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Why a subcommand did not succeed.
#[derive(Debug)]
enum Failure {
    /// Bad arguments: usage is printed, exit code 2.
    Usage(String),
    /// The work failed: exit code 1.
    Failed(String),
}

/// What every subcommand returns.
type Outcome = Result<(), Failure>;

fn no_args(rest: &[&str]) -> Outcome {
    match rest.first() {
        None => Ok(()),
        Some(arg) => Err(Failure::Usage(format!("unexpected argument `{arg}`"))),
    }
}
