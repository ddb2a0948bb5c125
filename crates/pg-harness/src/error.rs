//! The harness's one error type, [`HarnessError`].

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Why a cluster could not be started or queried.
#[derive(Debug)]
#[non_exhaustive]
pub enum HarnessError {
    /// No directory holding both `initdb` and `postgres` was found. Tests use this to
    /// skip (see [`crate::require_postgres`]).
    NotInstalled {
        /// Every place that was looked at, in order.
        searched: Vec<String>,
    },
    /// A file-system or process-spawning operation failed.
    Io {
        /// What was being done, e.g. `create directory /tmp/pg-harness-1-0-5`.
        action: String,
        /// The underlying error.
        source: io::Error,
    },
    /// A helper program ran but exited unsuccessfully.
    CommandFailed {
        /// The command line, for copying into a shell.
        command: String,
        /// The exit code, `None` when killed by a signal.
        code: Option<i32>,
        /// What the program wrote to stderr (and stdout when stderr was empty).
        stderr: String,
    },
    /// The unprivileged user that runs `initdb`/`postgres` under root could not be set up.
    User {
        /// The user name.
        user: String,
        /// What went wrong.
        detail: String,
    },
    /// `postgres` did not come up.
    StartFailed {
        /// The data directory of the failed cluster.
        data_dir: PathBuf,
        /// How many ports were tried.
        attempts: u32,
        /// The last lines of the server log.
        log_tail: String,
    },
    /// [`crate::PgCluster::role_secret`] was asked about a role that does not exist.
    NoSuchRole {
        /// The role name.
        role: String,
    },
    /// The shared cluster failed to start earlier in this process; this is its message.
    SharedStartFailed {
        /// The original error's text.
        message: String,
    },
}

impl HarnessError {
    /// True when the PostgreSQL binaries are missing (as opposed to a broken install).
    pub fn is_not_installed(&self) -> bool {
        matches!(self, HarnessError::NotInstalled { .. })
    }

    /// A copy for a caller that cannot take the original (the shared cluster's error is
    /// handed to every test); keeps `NotInstalled` detectable.
    pub(crate) fn duplicate(&self) -> HarnessError {
        match self {
            HarnessError::NotInstalled { searched } => HarnessError::NotInstalled {
                searched: searched.clone(),
            },
            other => HarnessError::SharedStartFailed {
                message: other.to_string(),
            },
        }
    }

    pub(crate) fn io(action: impl Into<String>, source: io::Error) -> HarnessError {
        HarnessError::Io {
            action: action.into(),
            source,
        }
    }
}

impl fmt::Display for HarnessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HarnessError::NotInstalled { searched } => write!(
                f,
                "postgresql binaries (initdb, postgres) not found; searched: {}; \
                 set PG_BIN to the directory holding them",
                searched.join(", ")
            ),
            HarnessError::Io { action, source } => write!(f, "{action}: {source}"),
            HarnessError::CommandFailed {
                command,
                code,
                stderr,
            } => {
                let code = code.map_or_else(|| "a signal".to_owned(), |c| format!("code {c}"));
                write!(f, "`{command}` exited with {code}: {}", stderr.trim_end())
            }
            HarnessError::User { user, detail } => {
                write!(f, "cannot run postgres as user {user}: {detail}")
            }
            HarnessError::StartFailed {
                data_dir,
                attempts,
                log_tail,
            } => write!(
                f,
                "postgres in {} did not start after {attempts} attempt(s); server log tail:\n{}",
                data_dir.display(),
                log_tail.trim_end()
            ),
            HarnessError::NoSuchRole { role } => write!(f, "role {role} does not exist"),
            HarnessError::SharedStartFailed { message } => {
                write!(f, "the shared cluster failed to start: {message}")
            }
        }
    }
}

impl std::error::Error for HarnessError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HarnessError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
