//! cargo-deny with or without GitHub: the advisories check needs the RustSec database,
//! which cargo-deny clones from GitHub. The CI machine reaches crates.io but not GitHub,
//! so when the fetch fails the check runs offline against the snapshot checked in under
//! `.ci/advisory-db` (its date is printed, so a stale snapshot is visible in the log).

use std::fs;
use std::path::Path;

use crate::cmd;
use crate::{Failure, Outcome};

/// The snapshot, relative to the workspace root.
const SNAPSHOT: &str = ".ci/advisory-db";
/// The commit date of the snapshot (`git show -s --format=%cI` of the copied commit).
const SNAPSHOT_DATE: &str = "2026-08-21T08:28:40+02:00";
/// Where cargo-deny looks for the default database (`https://github.com/RustSec/advisory-db`)
/// under its `db-path`: the directory name it derives from that URL.
const DB_DIR: &str = "advisory-db-3157b0e258782691";

/// `cargo deny check`, online if the advisory database can be fetched, else offline
/// against the snapshot.
pub(crate) fn deny_check() -> Outcome {
    if cmd::probe(cmd::cargo().args(["deny", "fetch", "db"])) {
        return cmd::run(cmd::cargo().args(["deny", "check"]));
    }
    println!(
        "cannot fetch the advisory database (no route to GitHub): checking against the \
         snapshot in {SNAPSHOT} of {SNAPSHOT_DATE}"
    );
    let root = cmd::root();
    let db_root = root.join("target/advisory-db-snapshot");
    prepare_snapshot(&root.join(SNAPSHOT), &db_root.join(DB_DIR))?;
    let config = root.join("target/deny-offline.toml");
    let base = fs::read_to_string(root.join("deny.toml"))
        .map_err(|e| Failure::Failed(format!("deny.toml: {e}")))?;
    let with_path = base.replacen(
        "[advisories]",
        &format!("[advisories]\ndb-path = \"{}\"", db_root.display()),
        1,
    );
    if with_path == base {
        return Err(Failure::Failed(
            "deny.toml has no [advisories] section".into(),
        ));
    }
    fs::write(&config, with_path).map_err(|e| Failure::Failed(format!("{e}")))?;
    cmd::run(
        cmd::cargo()
            .arg("deny")
            .arg("--offline")
            .arg("--config")
            .arg(&config)
            .arg("check"),
    )
}

/// Makes `db` a git repository holding the snapshot (cargo-deny reads the database's age
/// from its HEAD commit), unless it already holds this snapshot.
fn prepare_snapshot(snapshot: &Path, db: &Path) -> Outcome {
    let marker = db.join(".snapshot-date");
    if fs::read_to_string(&marker).is_ok_and(|d| d == SNAPSHOT_DATE) {
        return Ok(());
    }
    let io = |e: std::io::Error| Failure::Failed(format!("advisory snapshot: {e}"));
    if db.exists() {
        fs::remove_dir_all(db).map_err(io)?;
    }
    copy_dir(snapshot, db).map_err(io)?;
    let git = |args: &[&str]| {
        let mut c = std::process::Command::new("git");
        c.current_dir(db)
            .args([
                "-c",
                "user.name=advisory-snapshot",
                "-c",
                "user.email=ci@localhost",
            ])
            .args(args)
            .env("GIT_AUTHOR_DATE", SNAPSHOT_DATE)
            .env("GIT_COMMITTER_DATE", SNAPSHOT_DATE);
        cmd::run(&mut c)
    };
    git(&["init", "-q"])?;
    git(&["add", "-A"])?;
    git(&["commit", "-q", "-m", "RustSec advisory-db snapshot"])?;
    fs::write(&marker, SNAPSHOT_DATE).map_err(io)
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}
