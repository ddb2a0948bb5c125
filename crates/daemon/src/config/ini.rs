//! PgBouncer's ini dialect (mirrors libusual's cfparser.c as PgBouncer uses it).
//!
//! - Sections `[name]`; keys `[A-Za-z0-9_.*-]+` or `'single quoted'`.
//! - A line whose first non-blank character is `;` or `#` is a comment. A `;` or `#`
//!   later in a line is part of the value, as in PgBouncer, except after whitespace in
//!   a value of `[pgbouncer]` that would otherwise fail to parse (see `settings.rs`).
//! - `%include file` (relative paths against the current directory, nesting up to 10).
//! - Values are the rest of the line, trimmed.

use std::path::{Path, PathBuf};

/// Where a key came from, for error messages with file and line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The file.
    pub file: PathBuf,
    /// 1-based line number.
    pub line: usize,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// One `key = value` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The key as written (case kept).
    pub key: String,
    /// The value, trimmed.
    pub value: String,
    /// Where it was.
    pub origin: Origin,
}

/// One `[section]` with its entries in file order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Section {
    /// Lowercased section name.
    pub name: String,
    /// Entries in order.
    pub entries: Vec<Entry>,
}

/// A parsed ini file (with includes expanded).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ini {
    /// Sections in order; a section may appear more than once.
    pub sections: Vec<Section>,
}

/// Why an ini file could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IniError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A line is not a section, comment, include or key = value.
    #[error("{origin}: syntax error in configuration ({text:?})")]
    Syntax {
        /// Where.
        origin: Origin,
        /// The line.
        text: String,
    },
    /// `%include` nested too deep.
    #[error("{origin}: too deep %include nesting")]
    IncludeDepth {
        /// Where.
        origin: Origin,
    },
}

impl Ini {
    /// Reads and parses `path`, expanding `%include`.
    pub fn load(path: &Path) -> Result<Ini, IniError> {
        let mut ini = Ini::default();
        ini.load_into(path, 0, None)?;
        Ok(ini)
    }

    /// Parses `text` as if read from `path` (includes are read from disk).
    pub fn parse(text: &str, path: &Path) -> Result<Ini, IniError> {
        let mut ini = Ini::default();
        ini.parse_into(text, path, 0)?;
        Ok(ini)
    }

    fn load_into(
        &mut self,
        path: &Path,
        depth: usize,
        from: Option<Origin>,
    ) -> Result<(), IniError> {
        if depth > 10 {
            return Err(IniError::IncludeDepth {
                origin: from.unwrap_or(Origin {
                    file: path.into(),
                    line: 0,
                }),
            });
        }
        let text = std::fs::read_to_string(path).map_err(|source| IniError::Io {
            path: path.into(),
            source,
        })?;
        self.parse_into(&text, path, depth)
    }

    fn parse_into(&mut self, text: &str, path: &Path, depth: usize) -> Result<(), IniError> {
        for (i, raw) in text.lines().enumerate() {
            let origin = Origin {
                file: path.into(),
                line: i + 1,
            };
            let line = raw.trim();
            if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
                continue;
            }
            if let Some(rest) = line.strip_prefix("%include") {
                let file = rest.trim();
                if file.is_empty() || !rest.starts_with(char::is_whitespace) {
                    return Err(IniError::Syntax {
                        origin,
                        text: raw.into(),
                    });
                }
                self.load_into(Path::new(file), depth + 1, Some(origin))?;
                continue;
            }
            if let Some(name) = line.strip_prefix('[') {
                let Some(name) = name.strip_suffix(']') else {
                    return Err(IniError::Syntax {
                        origin,
                        text: raw.into(),
                    });
                };
                self.sections.push(Section {
                    name: name.trim().to_ascii_lowercase(),
                    entries: Vec::new(),
                });
                continue;
            }
            let Some((key, value)) = split_key_value(line) else {
                return Err(IniError::Syntax {
                    origin,
                    text: raw.into(),
                });
            };
            let Some(section) = self.sections.last_mut() else {
                return Err(IniError::Syntax {
                    origin,
                    text: raw.into(),
                });
            };
            section.entries.push(Entry {
                key,
                value: value.trim().to_string(),
                origin,
            });
        }
        Ok(())
    }
}

fn split_key_value(line: &str) -> Option<(String, &str)> {
    if let Some(rest) = line.strip_prefix('\'') {
        let end = rest.find('\'')?;
        let key = rest[..end].to_string();
        let after = rest[end + 1..].trim_start();
        let value = after.strip_prefix('=')?;
        return Some((key, value));
    }
    let end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '*' | '-')))
        .unwrap_or(line.len());
    if end == 0 {
        return None;
    }
    let key = line[..end].to_string();
    let value = line[end..].trim_start().strip_prefix('=')?;
    Some((key, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_sections_and_values_parse_like_pgbouncer() {
        let text = "; c\n# c\n[databases]\nappdb = host=127.0.0.1 dbname=x\n\n[PgBouncer]\n\
                    listen_port=6432\nauth_file = /a;b # not a comment\n'odd key' = 1\n";
        let ini = Ini::parse(text, Path::new("t.ini")).unwrap();
        assert_eq!(ini.sections.len(), 2);
        assert_eq!(ini.sections[1].name, "pgbouncer");
        let e = &ini.sections[1].entries;
        assert_eq!(e[0].key, "listen_port");
        assert_eq!(e[0].value, "6432");
        assert_eq!(e[1].value, "/a;b # not a comment");
        assert_eq!(e[1].origin.line, 8);
        assert_eq!(e[2].key, "odd key");
    }

    #[test]
    fn a_key_outside_any_section_is_a_syntax_error_with_its_line() {
        let err = Ini::parse("\nfoo = 1\n", Path::new("x.ini")).unwrap_err();
        assert!(err.to_string().starts_with("x.ini:2:"), "{err}");
    }

    #[test]
    fn include_reads_another_file() {
        let dir = std::env::temp_dir().join(format!("ini-inc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let inc = dir.join("inc.ini");
        std::fs::write(&inc, "max_client_conn = 5\n").unwrap();
        let text = format!("[pgbouncer]\n%include {}\n", inc.display());
        let ini = Ini::parse(&text, Path::new("main.ini")).unwrap();
        assert_eq!(ini.sections[0].entries[0].key, "max_client_conn");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
