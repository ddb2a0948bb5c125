//! `auth_file` (userlist.txt): `"user" "secret"` lines, as PgBouncer reads them
//! (mirrors loader.c `load_auth_file`). `""` inside a field is one `"`; lines starting
//! with `;` are comments (`#` is not); a malformed line stops parsing.

use std::collections::HashMap;
use std::path::Path;

/// A stored secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Secret {
    /// Plain-text password.
    Plain(String),
    /// `md5` + hex(md5(password + user)).
    Md5(String),
    /// `SCRAM-SHA-256$...` verifier.
    Scram(String),
}

impl Secret {
    /// Classifies a secret as PgBouncer does.
    pub fn parse(s: &str) -> Secret {
        if s.len() == 35 && s.starts_with("md5") && s[3..].bytes().all(|b| b.is_ascii_hexdigit()) {
            Secret::Md5(s.to_string())
        } else if s.starts_with("SCRAM-SHA-256$") {
            Secret::Scram(s.to_string())
        } else {
            Secret::Plain(s.to_string())
        }
    }
}

/// Why the auth file could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UserlistError {
    /// Unreadable.
    #[error("{path}: cannot read auth file: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A malformed line.
    #[error("{path}:{line}: broken auth file")]
    Broken {
        /// The file.
        path: String,
        /// 1-based line.
        line: usize,
    },
}

/// User name to secret.
pub type Userlist = HashMap<String, Secret>;

/// Reads `path`.
pub fn load(path: &Path) -> Result<Userlist, UserlistError> {
    let text = std::fs::read_to_string(path).map_err(|source| UserlistError::Io {
        path: path.display().to_string(),
        source,
    })?;
    parse(&text).map_err(|line| UserlistError::Broken {
        path: path.display().to_string(),
        line,
    })
}

/// Parses userlist text; `Err(line)` on a malformed line.
pub fn parse(text: &str) -> Result<Userlist, usize> {
    let mut users = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_start();
        if t.is_empty() || t.starts_with(';') {
            continue;
        }
        let (user, rest) = quoted(t).ok_or(i + 1)?;
        let (secret, _ignored) = quoted(rest.trim_start()).ok_or(i + 1)?;
        users.insert(user, Secret::parse(&secret));
    }
    Ok(users)
}

fn quoted(s: &str) -> Option<(String, &str)> {
    let mut rest = s.strip_prefix('"')?;
    let mut out = String::new();
    loop {
        let i = rest.find('"')?;
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(r) = rest.strip_prefix('"') {
            out.push('"');
            rest = r;
        } else {
            return Some((out, rest));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userlist_lines_parse_with_quotes_comments_and_secret_kinds() {
        let text = "; comment\n\"admin\" \"md545f2603610af569b6155c45067268c6b\"\n\
                    \"we\"\"ird\" \"pa ss\" trailing junk\n\
                    \"s\" \"SCRAM-SHA-256$4096:c2FsdA==$AAAA:BBBB\"\n\n";
        let u = parse(text).unwrap();
        assert_eq!(
            u["admin"],
            Secret::Md5("md545f2603610af569b6155c45067268c6b".into())
        );
        assert_eq!(u["we\"ird"], Secret::Plain("pa ss".into()));
        assert!(matches!(u["s"], Secret::Scram(_)));
    }

    #[test]
    fn a_hash_sign_is_not_a_comment_and_breaks_the_file() {
        assert_eq!(parse("\"a\" \"b\"\n# nope\n"), Err(2));
    }
}
