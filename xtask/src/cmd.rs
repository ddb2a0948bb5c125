//! Running external commands the xtask way: print `$ cmd args` first, inherit the
//! terminal, turn a failure into [`Failure::Failed`]. Also locates the workspace root.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::{Failure, Outcome};

/// The workspace root: the parent of this crate's manifest directory.
pub(crate) fn root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// The cargo that runs us (`$CARGO`), else `cargo` from `PATH`.
pub(crate) fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

/// `cmd` as a shell line, with its explicitly set environment in front.
pub(crate) fn display(cmd: &Command) -> String {
    let mut parts: Vec<String> = cmd
        .get_envs()
        .filter_map(|(k, v)| {
            Some(format!(
                "{}={}",
                k.to_string_lossy(),
                quote(&v?.to_string_lossy())
            ))
        })
        .collect();
    let program = Path::new(cmd.get_program());
    let program = if program.ends_with("cargo") || cmd.get_program() == "cargo" {
        "cargo".to_owned()
    } else {
        program.to_string_lossy().into_owned()
    };
    parts.push(program);
    parts.extend(cmd.get_args().map(|a| quote(&a.to_string_lossy())));
    parts.join(" ")
}

/// `word` single-quoted when a shell would split or interpret it.
fn quote(word: &str) -> String {
    if !word.is_empty() && !word.contains([' ', '"', '\'', '$', '*', '?']) {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// Prints and runs `cmd` with inherited stdio; a non-zero exit is a failure.
pub(crate) fn run(cmd: &mut Command) -> Outcome {
    let line = display(cmd);
    println!("$ {line}");
    let status = cmd
        .status()
        .map_err(|e| Failure::Failed(format!("cannot run `{line}`: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(Failure::Failed(format!("`{line}` failed ({status})")))
    }
}

/// Prints and runs `cmd`, returning its stdout (stderr passes through).
pub(crate) fn output(cmd: &mut Command) -> Result<String, Failure> {
    let line = display(cmd);
    println!("$ {line}");
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| Failure::Failed(format!("cannot run `{line}`: {e}")))?;
    if !out.status.success() {
        return Err(Failure::Failed(format!("`{line}` failed ({})", out.status)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// True when `cmd` runs and exits 0, without printing anything (a capability probe).
pub(crate) fn probe(cmd: &mut Command) -> bool {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
