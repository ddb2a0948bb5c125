//! `pidfile`: created exclusively with `<pid>\n`; a stale one (dead pid) is replaced, a
//! live one makes startup fail; removed at exit (mirrors main.c `write_pidfile`).

use std::io::Write;
use std::path::{Path, PathBuf};

/// A written pidfile, removed on drop.
#[derive(Debug)]
pub struct PidFile(PathBuf);

/// Why the pidfile could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PidFileError {
    /// Another live process owns it.
    #[error("pidfile {path} exists and process {pid} is running")]
    Running {
        /// The file.
        path: String,
        /// Its pid.
        pid: u32,
    },
    /// I/O.
    #[error("pidfile {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
}

impl PidFile {
    /// Writes our pid to `path`.
    pub fn create(path: &Path) -> Result<PidFile, PidFileError> {
        let p = path.display().to_string();
        if let Ok(text) = std::fs::read_to_string(path) {
            if let Ok(pid) = text.trim().parse::<u32>() {
                if Path::new(&format!("/proc/{pid}")).exists() && pid != std::process::id() {
                    return Err(PidFileError::Running { path: p, pid });
                }
            }
            tracing::info!("removing stale pidfile {p}");
            let _ = std::fs::remove_file(path);
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|source| PidFileError::Io {
                path: p.clone(),
                source,
            })?;
        writeln!(f, "{}", std::process::id())
            .map_err(|source| PidFileError::Io { path: p, source })?;
        Ok(PidFile(path.to_path_buf()))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_pidfile_refuses_and_a_stale_one_is_replaced() {
        let dir = std::env::temp_dir().join(format!("pidf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.pid");
        std::fs::write(&path, "1\n").unwrap(); // pid 1 is alive
        assert!(matches!(
            PidFile::create(&path),
            Err(PidFileError::Running { pid: 1, .. })
        ));
        std::fs::write(&path, "4194304999\n").unwrap(); // no such pid
        let pf = PidFile::create(&path).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap().trim(),
            std::process::id().to_string()
        );
        drop(pf);
        assert!(!path.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
