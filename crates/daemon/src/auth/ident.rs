//! `auth_ident_file`: user name maps for `map=` on `peer` and `cert` hba rules (mirrors
//! hba.c `ident_load_map` and `parse_ident_line`).
//!
//! Each line is `mapname system-user pg-user`, where pg-user may be the keyword `all`;
//! names may be double-quoted, `#` starts a comment. As in PgBouncer there are no regular
//! expressions, no `\1` substitution and no `include` lines: those are errors here rather
//! than rules that silently never match.

use std::io;
use std::path::{Path, PathBuf};

use super::hba::{Lexer, Token, UnterminatedQuote};

/// A parsed `auth_ident_file`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentMap {
    mappings: Vec<Mapping>,
}

/// Why an ident file could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentError {
    /// The file could not be read.
    #[error("{}: cannot read ident file: {source}", file.display())]
    Read {
        /// The ident file.
        file: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A line the parser does not accept.
    #[error("{}:{line}: {what}", file.display())]
    Syntax {
        /// The ident file.
        file: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        what: IdentSyntax,
    },
}

/// What is wrong with an ident line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentSyntax {
    /// The line ended before this field.
    #[error("missing {0} field")]
    MissingField(&'static str),
    /// A `"` without its closing `"`.
    #[error("unterminated quoted string")]
    UnterminatedQuote,
    /// A comma where a name was expected.
    #[error("unexpected comma")]
    UnexpectedComma,
    /// A system user starting with `/`, which PostgreSQL reads as a regular expression.
    #[error("regular expressions are not supported: {0}")]
    Regex(String),
    /// `include`, `include_if_exists` or `include_dir`.
    #[error("include directives are not supported: {0}")]
    Include(String),
    /// Text after the third field.
    #[error("unexpected text after the database user: {0}")]
    TrailingText(String),
}

impl IdentMap {
    /// Reads and parses the ident file at `path`.
    pub fn load(path: &Path) -> Result<IdentMap, IdentError> {
        let text = std::fs::read_to_string(path).map_err(|source| IdentError::Read {
            file: path.to_path_buf(),
            source,
        })?;
        IdentMap::parse(&text, path)
    }

    /// Parses ident `text`; `path` names it in errors. The first bad line fails the file
    /// (PgBouncer logs `could not parse ident config line N` and skips it).
    pub fn parse(text: &str, path: &Path) -> Result<IdentMap, IdentError> {
        let mut mappings = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let syntax = |what| IdentError::Syntax {
                file: path.to_path_buf(),
                line: i + 1,
                what,
            };
            if let Some(mapping) = parse_line(line).map_err(syntax)? {
                mappings.push(mapping);
            }
        }
        Ok(IdentMap { mappings })
    }

    /// Whether the file defines a map named `map`.
    pub fn has_map(&self, map: &str) -> bool {
        self.mappings.iter().any(|m| m.map == map)
    }

    /// Whether map `map` lets OS or certificate user `system_user` log in as `pg_user`.
    pub fn allows(&self, map: &str, system_user: &str, pg_user: &str) -> bool {
        self.mappings.iter().any(|m| {
            m.map == map
                && m.system_user == system_user
                && match &m.pg_user {
                    PgUser::All => true,
                    PgUser::Name(name) => name == pg_user,
                }
        })
    }
}

/// One line. PgBouncer: `struct Mapping` inside its `struct IdentMap`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mapping {
    map: String,
    system_user: String,
    pg_user: PgUser,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PgUser {
    All,
    Name(String),
}

fn next(lex: &mut Lexer<'_>) -> Result<Option<Token>, IdentSyntax> {
    lex.next_token()
        .map_err(|UnterminatedQuote| IdentSyntax::UnterminatedQuote)
}

/// `Ok(None)` for blank and comment lines.
fn parse_line(line: &str) -> Result<Option<Mapping>, IdentSyntax> {
    let mut lex = Lexer::new(line);
    let map = match next(&mut lex)? {
        None => return Ok(None),
        Some(Token::Comma) => return Err(IdentSyntax::UnexpectedComma),
        Some(Token::Word(w) | Token::Quoted(w)) => w,
    };
    let system_user = match next(&mut lex)? {
        None => return Err(IdentSyntax::MissingField("system user")),
        Some(Token::Comma) => return Err(IdentSyntax::UnexpectedComma),
        Some(Token::Word(w)) if w.starts_with('/') => return Err(IdentSyntax::Regex(w)),
        Some(Token::Word(w) | Token::Quoted(w)) => w,
    };
    let pg_user = match next(&mut lex)? {
        None if matches!(
            map.as_str(),
            "include" | "include_if_exists" | "include_dir"
        ) =>
        {
            return Err(IdentSyntax::Include(map));
        }
        None => return Err(IdentSyntax::MissingField("database user")),
        Some(Token::Comma) => return Err(IdentSyntax::UnexpectedComma),
        Some(Token::Word(w)) if w == "all" => PgUser::All,
        Some(Token::Word(w) | Token::Quoted(w)) => PgUser::Name(w),
    };
    match next(&mut lex)? {
        None => Ok(Some(Mapping {
            map,
            system_user,
            pg_user,
        })),
        Some(Token::Comma) => Err(IdentSyntax::TrailingText(",".into())),
        Some(Token::Word(w) | Token::Quoted(w)) => Err(IdentSyntax::TrailingText(w)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> IdentMap {
        IdentMap::parse(text, Path::new("ident.conf")).unwrap()
    }

    fn error(text: &str) -> (usize, IdentSyntax) {
        match IdentMap::parse(text, Path::new("ident.conf")) {
            Err(IdentError::Syntax { line, what, .. }) => (line, what),
            other => panic!("expected a syntax error, got {other:?}"),
        }
    }

    #[test]
    fn mapping_allows_only_its_system_user_as_its_pg_user() {
        let ident = parse("certs alice.example.com alice\n");
        assert!(ident.allows("certs", "alice.example.com", "alice"));
        assert!(!ident.allows("certs", "alice.example.com", "bob"));
        assert!(!ident.allows("certs", "mallory", "alice"));
        assert!(!ident.allows("other", "alice.example.com", "alice"));
    }

    #[test]
    fn all_as_pg_user_allows_any_database_user() {
        let ident = parse("admins root all\n");
        assert!(ident.allows("admins", "root", "postgres"));
        assert!(ident.allows("admins", "root", "app"));
        assert!(!ident.allows("admins", "nobody", "app"));
    }

    #[test]
    fn quoted_all_is_a_user_named_all() {
        let ident = parse("m root \"all\"\n");
        assert!(ident.allows("m", "root", "all"));
        assert!(!ident.allows("m", "root", "app"));
    }

    #[test]
    fn several_lines_add_to_one_map() {
        let ident = parse("m alice app\nm bob app\nm bob report\n");
        assert!(ident.allows("m", "alice", "app"));
        assert!(ident.allows("m", "bob", "report"));
        assert!(!ident.allows("m", "alice", "report"));
        assert!(ident.has_map("m"));
        assert!(!ident.has_map("n"));
    }

    #[test]
    fn comments_blank_lines_and_quotes_are_understood() {
        let ident = parse("# header\n\n  m \"CN=Some \"\"One\"\"\" app # trailing\n");
        assert!(ident.allows("m", "CN=Some \"One\"", "app"));
    }

    #[test]
    fn short_lines_are_errors_with_their_line_number() {
        assert_eq!(
            error("m a b\nm a\n"),
            (2, IdentSyntax::MissingField("database user"))
        );
        assert_eq!(error("m\n"), (1, IdentSyntax::MissingField("system user")));
    }

    #[test]
    fn regexes_includes_and_extra_fields_are_errors() {
        assert_eq!(
            error("m /^(.*)$ \\1\n"),
            (1, IdentSyntax::Regex("/^(.*)$".into()))
        );
        assert_eq!(
            error("include other.conf\n"),
            (1, IdentSyntax::Include("include".into()))
        );
        assert_eq!(
            error("\nm a b c\n"),
            (2, IdentSyntax::TrailingText("c".into()))
        );
        assert_eq!(error("m a,b c\n"), (1, IdentSyntax::UnexpectedComma));
        assert_eq!(error("m \"a b\n"), (1, IdentSyntax::UnterminatedQuote));
    }

    #[test]
    fn error_display_names_file_and_line() {
        let err = IdentMap::parse("m a\n", Path::new("ident.conf")).unwrap_err();
        assert_eq!(err.to_string(), "ident.conf:1: missing database user field");
    }

    #[test]
    fn missing_file_is_a_read_error() {
        let err = IdentMap::load(Path::new("/nonexistent/pgbouncer-rs/ident.conf")).unwrap_err();
        assert!(matches!(err, IdentError::Read { .. }), "{err:?}");
    }
}
