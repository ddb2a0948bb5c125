//! Running `initdb` and `postgres` as an unprivileged user when we are root: both refuse
//! to run as root, and CI runs as root. Uses `setpriv` (util-linux), which execs the
//! program in place so the child's pid is the server's pid; falls back to `runuser`.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::error::HarnessError;

/// The user created when root has no `postgres` user to borrow.
const FALLBACK_USER: &str = "pgharness";

/// Who runs the server: the current user, or (under root) an unprivileged one.
#[derive(Debug, Clone)]
pub(crate) enum RunAs {
    /// Not root: run programs directly.
    Current,
    /// Root: drop to this user.
    User {
        name: String,
        uid: u32,
        gid: u32,
        /// True when `setpriv` is available; else `runuser` is used.
        setpriv: bool,
    },
}

impl RunAs {
    /// `Current` unless the effective uid is 0; then `postgres`, or `pgharness` (created
    /// with `useradd` if needed).
    pub(crate) fn detect() -> Result<RunAs, HarnessError> {
        if effective_uid()? != 0 {
            return Ok(RunAs::Current);
        }
        let name = if id_of("-u", "postgres").is_some() {
            "postgres".to_owned()
        } else {
            ensure_user(FALLBACK_USER)?;
            FALLBACK_USER.to_owned()
        };
        let user_error = |detail: &str| HarnessError::User {
            user: name.clone(),
            detail: detail.to_owned(),
        };
        let uid = id_of("-u", &name).ok_or_else(|| user_error("`id -u` failed"))?;
        let gid = id_of("-g", &name).ok_or_else(|| user_error("`id -g` failed"))?;
        let setpriv = Command::new("setpriv")
            .arg("--version")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        Ok(RunAs::User {
            name,
            uid,
            gid,
            setpriv,
        })
    }

    /// A `Command` that runs `program` as this user.
    pub(crate) fn command(&self, program: &Path) -> Command {
        match self {
            RunAs::Current => Command::new(program),
            RunAs::User {
                uid, gid, setpriv, ..
            } if *setpriv => {
                let mut cmd = Command::new("setpriv");
                cmd.arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={gid}"))
                    .arg("--init-groups")
                    .arg("--")
                    .arg(program);
                cmd
            }
            RunAs::User { name, .. } => {
                let mut cmd = Command::new("runuser");
                cmd.arg("-u").arg(name).arg("--").arg(program);
                cmd
            }
        }
    }

    /// Gives `path` to this user (no-op for `Current`).
    pub(crate) fn chown(&self, path: &Path) -> Result<(), HarnessError> {
        match self {
            RunAs::Current => Ok(()),
            RunAs::User { uid, gid, .. } => std::os::unix::fs::chown(path, Some(*uid), Some(*gid))
                .map_err(|e| HarnessError::io(format!("chown {}", path.display()), e)),
        }
    }

    /// True when `dir` and every ancestor can be traversed by this user: for a dropped
    /// user that means the "others" execute bit (a root-only `TMPDIR` fails this).
    pub(crate) fn can_traverse(&self, dir: &Path) -> bool {
        use std::os::unix::fs::PermissionsExt;
        match self {
            RunAs::Current => true,
            RunAs::User { .. } => dir
                .ancestors()
                .all(|p| std::fs::metadata(p).is_ok_and(|m| m.permissions().mode() & 0o001 != 0)),
        }
    }
}

/// The effective uid: the second field of `Uid:` in `/proc/self/status`, else `id -u`.
fn effective_uid() -> Result<u32, HarnessError> {
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        let euid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|rest| rest.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok());
        if let Some(euid) = euid {
            return Ok(euid);
        }
    }
    let output = Command::new("id")
        .arg("-u")
        .output()
        .map_err(|e| HarnessError::io("run `id -u`", e))?;
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .map_err(|_| HarnessError::User {
            user: "(self)".to_owned(),
            detail: "cannot read the effective uid".to_owned(),
        })
}

/// `id <flag> <user>` as a number, `None` when the user does not exist.
fn id_of(flag: &str, user: &str) -> Option<u32> {
    let output = Command::new("id")
        .arg(flag)
        .arg(user)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    String::from_utf8_lossy(&output.stdout).trim().parse().ok()
}

/// Creates a system user without a home; a concurrent creation (exit code 9) is fine.
fn ensure_user(name: &str) -> Result<(), HarnessError> {
    if id_of("-u", name).is_some() {
        return Ok(());
    }
    let output = Command::new("useradd")
        .args([
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
        ])
        .arg(name)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| HarnessError::io("run useradd", e))?;
    if output.status.success() || id_of("-u", name).is_some() {
        return Ok(());
    }
    Err(HarnessError::User {
        user: name.to_owned(),
        detail: format!(
            "useradd failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ),
    })
}
