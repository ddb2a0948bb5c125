//! Finding the PostgreSQL server binaries: `PG_BIN`, then `pg_config --bindir`, then the
//! newest `/usr/lib/postgresql/*/bin` (Debian's layout), then `PATH`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::HarnessError;

/// The directory holding `initdb` and `postgres`, searched in this order: the `PG_BIN`
/// environment variable, `pg_config --bindir`, the highest-versioned
/// `/usr/lib/postgresql/*/bin`, then every `PATH` entry.
///
/// # Errors
///
/// [`HarnessError::NotInstalled`] naming every place searched.
pub fn find_bin_dir() -> Result<PathBuf, HarnessError> {
    let mut searched = Vec::new();
    let mut candidates: Vec<PathBuf> = Vec::new();

    match std::env::var_os("PG_BIN") {
        Some(dir) => {
            searched.push(format!("PG_BIN={}", Path::new(&dir).display()));
            candidates.push(PathBuf::from(dir));
        }
        None => searched.push("PG_BIN (unset)".to_owned()),
    }
    searched.push("pg_config --bindir".to_owned());
    if let Some(dir) = pg_config_bindir() {
        candidates.push(dir);
    }
    searched.push("/usr/lib/postgresql/*/bin".to_owned());
    candidates.extend(debian_bin_dirs());
    searched.push("PATH".to_owned());
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path));
    }

    candidates
        .into_iter()
        .find(|dir| has_server_binaries(dir))
        .ok_or(HarnessError::NotInstalled { searched })
}

/// `dir/name` when it exists, else the bare `name` for a `PATH` lookup (Debian puts
/// `psql` and `pg_isready` wrappers in `/usr/bin` but keeps `initdb` out of `PATH`).
pub(crate) fn tool(bin_dir: &Path, name: &str) -> PathBuf {
    let path = bin_dir.join(name);
    if path.is_file() {
        path
    } else {
        PathBuf::from(name)
    }
}

fn has_server_binaries(dir: &Path) -> bool {
    dir.join("initdb").is_file() && dir.join("postgres").is_file()
}

fn pg_config_bindir() -> Option<PathBuf> {
    let output = Command::new("pg_config")
        .arg("--bindir")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let dir = String::from_utf8(output.stdout).ok()?;
    let dir = dir.trim();
    (!dir.is_empty()).then(|| PathBuf::from(dir))
}

/// `/usr/lib/postgresql/<version>/bin`, highest version first.
fn debian_bin_dirs() -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") else {
        return Vec::new();
    };
    let mut versions: Vec<(Vec<u32>, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let version = name
                .split('.')
                .map(str::parse::<u32>)
                .collect::<Result<Vec<_>, _>>()
                .ok()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    versions.sort_by(|a, b| b.0.cmp(&a.0));
    versions.into_iter().map(|(_, dir)| dir).collect()
}
