//! `auth_hba_file`: pg_hba.conf-style rules that pick the login method for each connection
//! (mirrors hba.c `hba_load_rules`, `parse_line`, `parse_names`, `next_token` and `hba_eval`).
//!
//! PgBouncer reads a subset of PostgreSQL's pg_hba.conf: record types `local`, `host`,
//! `hostssl` and `hostnossl`; databases `all`, `replication`, `sameuser`, names and `@file`;
//! users `all`, names and `@file`; addresses `all` or an IP with a CIDR prefix or a separate
//! mask column; methods `trust`, `reject`, `md5`, `password`, `peer`, `cert`,
//! `scram-sha-256` and `ldap <options>`, plus `map=name` after `peer` and `cert`. Anything
//! else is an [`HbaError`] naming the file and line.
//!
//! PgBouncer compat: PgBouncer logs a bad line and skips it. [`HbaFile::parse`] refuses the
//! whole file instead, because a skipped `reject` line silently opens access;
//! [`HbaFile::parse_lenient`] keeps PgBouncer's skip-and-warn behaviour for callers that
//! want it. Like PgBouncer (and unlike PostgreSQL), a trailing backslash does not continue
//! a record; such a line is an error rather than a silently broken rule.

use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::ident::IdentMap;

/// `@file` includes nested deeper than this are refused; this also stops include cycles.
const MAX_INCLUDE_DEPTH: usize = 10;

/// A parsed `auth_hba_file`: its rules in file order.
#[derive(Debug, Clone)]
pub struct HbaFile {
    rules: Vec<Rule>,
    file: PathBuf,
}

impl HbaFile {
    /// Reads and parses the hba file at `path` (and its `@file` includes).
    pub fn load(path: &Path) -> Result<HbaFile, HbaError> {
        let text = std::fs::read_to_string(path).map_err(|source| HbaError::Read {
            file: path.to_path_buf(),
            source,
        })?;
        HbaFile::parse(&text, path)
    }

    /// Parses hba `text`; `path` names it in errors and anchors relative `@file` includes
    /// (resolved against its directory, as PostgreSQL and PgBouncer do). The first bad line
    /// fails the whole file.
    pub fn parse(text: &str, path: &Path) -> Result<HbaFile, HbaError> {
        let (file, mut errors) = HbaFile::parse_lenient(text, path);
        if errors.is_empty() {
            Ok(file)
        } else {
            Err(errors.swap_remove(0))
        }
    }

    /// Parses like [`HbaFile::parse`] but skips bad lines and returns their errors, as
    /// PgBouncer does (it logs `could not parse hba config line N` and goes on).
    pub fn parse_lenient(text: &str, path: &Path) -> (HbaFile, Vec<HbaError>) {
        let mut rules = Vec::new();
        let mut errors = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let ctx = LineCtx {
                file: path,
                line: i + 1,
            };
            match parse_line(line, &ctx) {
                Ok(Some(rule)) => rules.push(rule),
                Ok(None) => {}
                Err(e) => errors.push(e),
            }
        }
        (
            HbaFile {
                rules,
                file: path.to_path_buf(),
            },
            errors,
        )
    }

    /// Checks that every `map=name` exists in the ident file (`None`: no `auth_ident_file`),
    /// as PgBouncer does when it loads the hba file.
    pub fn check_maps(&self, ident: Option<&IdentMap>) -> Result<(), HbaError> {
        for rule in &self.rules {
            let Some(map) = &rule.map else { continue };
            if !ident.is_some_and(|ident| ident.has_map(map)) {
                return Err(HbaError::Syntax {
                    file: self.file.clone(),
                    line: rule.line,
                    what: HbaSyntax::UnknownMap(map.clone()),
                });
            }
        }
        Ok(())
    }

    /// The first rule that matches `conn`, or `None` when no rule does (the daemon then
    /// sends FATAL `no authentication method is found`).
    pub fn find(&self, conn: &HbaConn<'_>) -> Option<HbaMatch> {
        self.rules
            .iter()
            .find(|rule| rule.matches(conn))
            .map(|rule| HbaMatch {
                method: rule.method.clone(),
                map: rule.map.clone(),
                line: rule.line,
            })
    }
}

/// The login method a matching rule chose.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HbaMethod {
    /// `trust`: no password (the user must still be known).
    Trust,
    /// `reject`: refuse the login (PgBouncer: `login rejected`).
    Reject,
    /// `md5`: AuthenticationMD5Password, or SCRAM when the stored secret is SCRAM.
    Md5,
    /// `password`: cleartext password (PgBouncer: `AUTH_TYPE_PLAIN`).
    Password,
    /// `peer`: the OS user of a unix-socket peer must be the database user (or map to it).
    Peer,
    /// `cert`: the TLS client certificate's name must be the user (or map to it).
    Cert,
    /// `scram-sha-256`: SASL with SCRAM-SHA-256 only.
    ScramSha256,
    /// `ldap` with the rest of the line as its options, verbatim (minus a trailing comment).
    Ldap(String),
}

/// The rule that decides a connection's login method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HbaMatch {
    /// The method to use.
    pub method: HbaMethod,
    /// The ident map named by `map=`, for `peer` and `cert`.
    pub map: Option<String>,
    /// 1-based line of the rule in the hba file, for logs.
    pub line: usize,
}

/// What [`HbaFile::find`] knows about a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HbaConn<'a> {
    /// Came in over a unix socket (only `local` rules apply).
    pub unix: bool,
    /// TLS is active (`hostssl` needs it, `hostnossl` refuses it).
    pub tls: bool,
    /// Peer address of a TCP connection; `None` matches only address `all`.
    pub addr: Option<IpAddr>,
    /// Database name from the startup packet.
    pub database: &'a str,
    /// User name from the startup packet.
    pub user: &'a str,
    /// A physical replication connection (`replication=true`): it matches only rules whose
    /// database field has `replication`. Logical replication (`replication=database`)
    /// matches like a normal connection, so pass `false` for it.
    pub replication: bool,
}

/// Why an hba file could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HbaError {
    /// The hba file itself could not be read.
    #[error("{}: cannot read hba file: {source}", file.display())]
    Read {
        /// The hba file.
        file: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A line the parser does not accept.
    #[error("{}:{line}: {what}", file.display())]
    Syntax {
        /// The hba file, or the `@file` include holding the bad line.
        file: PathBuf,
        /// 1-based line in `file`.
        line: usize,
        /// What is wrong.
        what: HbaSyntax,
    },
}

/// What is wrong with an hba line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HbaSyntax {
    /// The first field is not `local`, `host`, `hostssl` or `hostnossl`.
    #[error("unknown record type: {0}")]
    UnknownType(String),
    /// The line ended before this field.
    #[error("missing {0} field")]
    MissingField(&'static str),
    /// A `"` without its closing `"`.
    #[error("unterminated quoted string")]
    UnterminatedQuote,
    /// `a,,b` or a list that starts with a comma.
    #[error("empty entry in {0} list")]
    EmptyListEntry(&'static str),
    /// `samerole` or `samegroup`.
    #[error("unsupported keyword: {0}")]
    UnsupportedKeyword(String),
    /// `+group` membership.
    #[error("group membership is not supported: {0}")]
    UnsupportedGroup(String),
    /// A bare `@`.
    #[error("missing file name after @")]
    EmptyInclude,
    /// An `@file` could not be read.
    #[error("cannot read included file {}: {source}", file.display())]
    IncludeRead {
        /// The resolved include path.
        file: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// `@file` includes nested more than ten deep (or in a cycle).
    #[error("@file includes nested deeper than {max}: {}", file.display())]
    IncludeDepth {
        /// The include that was refused.
        file: PathBuf,
        /// The limit.
        max: usize,
    },
    /// A host name, `samehost`, `samenet` or anything else that is not an IP address.
    #[error("unsupported address: {0}")]
    UnsupportedAddress(String),
    /// A CIDR suffix that is not a number within the address family's width.
    #[error("invalid CIDR prefix length: {0}")]
    BadPrefix(String),
    /// A mask column that is not an address of the same family.
    #[error("invalid address mask: {0}")]
    BadMask(String),
    /// A method PgBouncer does not implement (`ident`, `gss`, `pam`, ...).
    #[error("unsupported method: {0}")]
    UnsupportedMethod(String),
    /// `map=` after a method other than `peer` or `cert`.
    #[error("map= is only valid for peer and cert, not {0}")]
    MapNotAllowed(String),
    /// `map=` with nothing after it.
    #[error("empty ident map name in map=")]
    EmptyMap,
    /// Anything after the method other than one `map=name`.
    #[error("unsupported authentication option: {0}")]
    UnsupportedOption(String),
    /// A record continued onto the next line with a trailing backslash.
    #[error("line continuation with a trailing backslash is not supported")]
    LineContinuation,
    /// `map=name` names a map that the ident file does not define.
    #[error("ident map {0} is not found in auth_ident_file")]
    UnknownMap(String),
}

/// One hba record. PgBouncer: `struct HBARule`.
#[derive(Debug, Clone)]
struct Rule {
    line: usize,
    kind: RuleKind,
    database: Names,
    user: Names,
    address: Address,
    method: HbaMethod,
    map: Option<String>,
}

impl Rule {
    fn matches(&self, conn: &HbaConn<'_>) -> bool {
        let transport = match self.kind {
            RuleKind::Local => conn.unix,
            RuleKind::Host => !conn.unix,
            RuleKind::HostSsl => !conn.unix && conn.tls,
            RuleKind::HostNoSsl => !conn.unix && !conn.tls,
        };
        if !transport || (!conn.unix && !self.address.matches(conn.addr)) {
            return false;
        }
        let database = if conn.replication {
            self.database.replication
        } else {
            self.database.matches(conn.database, conn.user)
        };
        database && self.user.matches(conn.user, "")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RuleKind {
    Local,
    Host,
    HostSsl,
    HostNoSsl,
}

/// A database or user field. PgBouncer: `struct HBAName`.
#[derive(Debug, Clone, Default)]
struct Names {
    all: bool,
    sameuser: bool,
    replication: bool,
    names: Vec<String>,
}

impl Names {
    /// `user` is the connection's user, for `sameuser` in the database field.
    fn matches(&self, name: &str, user: &str) -> bool {
        // The `replication` keyword never matches a database named "replication": only a
        // quoted "replication" does, as in PostgreSQL.
        self.all || (self.sameuser && name == user) || self.names.iter().any(|n| n == name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Database,
    User,
}

impl Field {
    fn name(self) -> &'static str {
        match self {
            Field::Database => "database",
            Field::User => "user",
        }
    }
}

/// The address column; `local` rules have none and use `All`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Address {
    All,
    V4 { net: u32, mask: u32 },
    V6 { net: u128, mask: u128 },
}

impl Address {
    fn new(ip: IpAddr, mask: IpAddr) -> Option<Address> {
        // Host bits set in the address are ignored, as in PostgreSQL: `10.1.2.3/8` is
        // `10.0.0.0/8`. (PgBouncer logs "address does not match mask" and then never
        // matches the rule.)
        match (ip, mask) {
            (IpAddr::V4(ip), IpAddr::V4(mask)) => {
                let mask = u32::from(mask);
                Some(Address::V4 {
                    net: u32::from(ip) & mask,
                    mask,
                })
            }
            (IpAddr::V6(ip), IpAddr::V6(mask)) => {
                let mask = u128::from(mask);
                Some(Address::V6 {
                    net: u128::from(ip) & mask,
                    mask,
                })
            }
            _ => None,
        }
    }

    fn matches(&self, addr: Option<IpAddr>) -> bool {
        match (*self, addr) {
            (Address::All, _) => true,
            (_, None) => false,
            (Address::V4 { net, mask }, Some(IpAddr::V4(a))) => u32::from(a) & mask == net,
            // An IPv4 client on a dual-stack socket shows up as ::ffff:a.b.c.d.
            (Address::V4 { net, mask }, Some(IpAddr::V6(a))) => a
                .to_ipv4_mapped()
                .is_some_and(|a| u32::from(a) & mask == net),
            (Address::V6 { net, mask }, Some(IpAddr::V6(a))) => u128::from(a) & mask == net,
            (Address::V6 { .. }, Some(IpAddr::V4(_))) => false,
        }
    }
}

/// Where a line comes from, for errors.
struct LineCtx<'a> {
    file: &'a Path,
    line: usize,
}

impl LineCtx<'_> {
    fn err(&self, what: HbaSyntax) -> HbaError {
        HbaError::Syntax {
            file: self.file.to_path_buf(),
            line: self.line,
            what,
        }
    }
}

/// A token of an hba or ident line. PgBouncer: `TOK_IDENT`, `TOK_STRING`, `TOK_COMMA`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Token {
    /// An unquoted word; keywords are recognised only in this form.
    Word(String),
    /// A double-quoted string, `""` unescaped to `"`.
    Quoted(String),
    /// A list separator.
    Comma,
}

/// A `"` without its closing `"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct UnterminatedQuote;

/// Splits one line into tokens, as hba.c `next_token`: whitespace separates, `#` starts a
/// comment, a word also ends at `,` or `"`.
#[derive(Debug, Clone)]
pub(super) struct Lexer<'a> {
    line: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    /// A lexer at the start of `line`.
    pub(super) fn new(line: &'a str) -> Self {
        Lexer { line, pos: 0 }
    }

    /// The text not consumed yet.
    pub(super) fn rest(&self) -> &'a str {
        self.line.get(self.pos..).unwrap_or("")
    }

    /// The next token, or `None` at the end of the line or at a comment.
    pub(super) fn next_token(&mut self) -> Result<Option<Token>, UnterminatedQuote> {
        let bytes = self.line.as_bytes();
        while bytes.get(self.pos).is_some_and(u8::is_ascii_whitespace) {
            self.pos += 1;
        }
        let Some(&first) = bytes.get(self.pos) else {
            return Ok(None);
        };
        // Every index the lexer stops at is just before or after an ASCII byte, so the
        // slices below fall on char boundaries.
        match first {
            b'#' => {
                self.pos = bytes.len();
                Ok(None)
            }
            b',' => {
                self.pos += 1;
                Ok(Some(Token::Comma))
            }
            b'"' => {
                let mut out = String::new();
                let mut i = self.pos + 1;
                loop {
                    let rest = self.line.get(i..).unwrap_or("");
                    let Some(q) = rest.find('"') else {
                        return Err(UnterminatedQuote);
                    };
                    out.push_str(&rest[..q]);
                    i += q + 1;
                    if bytes.get(i) == Some(&b'"') {
                        out.push('"');
                        i += 1;
                    } else {
                        break;
                    }
                }
                self.pos = i;
                Ok(Some(Token::Quoted(out)))
            }
            _ => {
                let start = self.pos;
                let mut i = start + 1;
                while let Some(&b) = bytes.get(i) {
                    if matches!(b, b',' | b'#' | b'"') || b.is_ascii_whitespace() {
                        break;
                    }
                    i += 1;
                }
                self.pos = i;
                Ok(Some(Token::Word(
                    self.line.get(start..i).unwrap_or("").to_string(),
                )))
            }
        }
    }

    /// Whether the record's last word ends with `\` (PostgreSQL's line continuation).
    pub(super) fn ends_with_backslash(line: &str) -> bool {
        let mut lex = Lexer::new(line);
        let mut last = None;
        while let Ok(Some(tok)) = lex.next_token() {
            last = Some(tok);
        }
        matches!(last, Some(Token::Word(w)) if w.ends_with('\\'))
    }
}

fn next(lex: &mut Lexer<'_>, ctx: &LineCtx<'_>) -> Result<Option<Token>, HbaError> {
    lex.next_token()
        .map_err(|UnterminatedQuote| ctx.err(HbaSyntax::UnterminatedQuote))
}

/// One line: `Ok(None)` for blank and comment lines. PgBouncer: `parse_line`.
fn parse_line(line: &str, ctx: &LineCtx<'_>) -> Result<Option<Rule>, HbaError> {
    let mut lex = Lexer::new(line);
    let kind = match next(&mut lex, ctx)? {
        None => return Ok(None),
        Some(Token::Word(w)) => match w.as_str() {
            "local" => RuleKind::Local,
            "host" => RuleKind::Host,
            "hostssl" => RuleKind::HostSsl,
            "hostnossl" => RuleKind::HostNoSsl,
            _ => return Err(ctx.err(HbaSyntax::UnknownType(w))),
        },
        Some(Token::Quoted(q)) => return Err(ctx.err(HbaSyntax::UnknownType(q))),
        Some(Token::Comma) => return Err(ctx.err(HbaSyntax::UnknownType(",".into()))),
    };
    if Lexer::ends_with_backslash(line) {
        return Err(ctx.err(HbaSyntax::LineContinuation));
    }
    let mut database = Names::default();
    parse_names(&mut lex, ctx, Field::Database, &mut database)?;
    let mut user = Names::default();
    parse_names(&mut lex, ctx, Field::User, &mut user)?;
    let address = match kind {
        RuleKind::Local => Address::All,
        _ => parse_address(&mut lex, ctx)?,
    };
    let (method, map) = parse_method(&mut lex, ctx)?;
    Ok(Some(Rule {
        line: ctx.line,
        kind,
        database,
        user,
        address,
        method,
        map,
    }))
}

/// A comma list of names. PgBouncer: `parse_names`.
fn parse_names(
    lex: &mut Lexer<'_>,
    ctx: &LineCtx<'_>,
    field: Field,
    names: &mut Names,
) -> Result<(), HbaError> {
    loop {
        match next(lex, ctx)? {
            None => return Err(ctx.err(HbaSyntax::MissingField(field.name()))),
            Some(Token::Comma) => return Err(ctx.err(HbaSyntax::EmptyListEntry(field.name()))),
            Some(tok) => add_name(tok, field, ctx, names, 0)?,
        }
        let mut probe = lex.clone();
        match probe.next_token() {
            Ok(Some(Token::Comma)) => *lex = probe,
            _ => return Ok(()),
        }
    }
}

fn add_name(
    tok: Token,
    field: Field,
    ctx: &LineCtx<'_>,
    names: &mut Names,
    depth: usize,
) -> Result<(), HbaError> {
    let word = match tok {
        Token::Quoted(q) => {
            names.names.push(q);
            return Ok(());
        }
        // Only include files reach here with commas: there they separate like whitespace.
        Token::Comma => return Ok(()),
        Token::Word(w) => w,
    };
    match (field, word.as_str()) {
        (_, "all") => names.all = true,
        (Field::Database, "sameuser") => names.sameuser = true,
        (Field::Database, "replication") => names.replication = true,
        (Field::Database, "samerole" | "samegroup") => {
            return Err(ctx.err(HbaSyntax::UnsupportedKeyword(word)));
        }
        // PgBouncer compat: `+name` is refused in both fields, as hba.c does.
        _ if word.starts_with('+') => return Err(ctx.err(HbaSyntax::UnsupportedGroup(word))),
        _ => match word.strip_prefix('@') {
            Some(rel) => include_names(rel, field, ctx, names, depth)?,
            None => names.names.push(word),
        },
    }
    Ok(())
}

/// `@file`: names separated by whitespace or commas, on any number of lines, with `#`
/// comments; resolved against the directory of the file that names it.
fn include_names(
    rel: &str,
    field: Field,
    ctx: &LineCtx<'_>,
    names: &mut Names,
    depth: usize,
) -> Result<(), HbaError> {
    if rel.is_empty() {
        return Err(ctx.err(HbaSyntax::EmptyInclude));
    }
    let file = match ctx.file.parent() {
        Some(dir) => dir.join(rel),
        None => PathBuf::from(rel),
    };
    if depth >= MAX_INCLUDE_DEPTH {
        return Err(ctx.err(HbaSyntax::IncludeDepth {
            file,
            max: MAX_INCLUDE_DEPTH,
        }));
    }
    let text = match std::fs::read_to_string(&file) {
        Ok(text) => text,
        Err(source) => return Err(ctx.err(HbaSyntax::IncludeRead { file, source })),
    };
    for (i, line) in text.lines().enumerate() {
        let inner = LineCtx {
            file: &file,
            line: i + 1,
        };
        let mut lex = Lexer::new(line);
        while let Some(tok) = next(&mut lex, &inner)? {
            add_name(tok, field, &inner, names, depth + 1)?;
        }
    }
    Ok(())
}

/// `all`, `addr/bits` or `addr mask`. PgBouncer: `parse_addr`, `parse_nmask`.
fn parse_address(lex: &mut Lexer<'_>, ctx: &LineCtx<'_>) -> Result<Address, HbaError> {
    let word = match next(lex, ctx)? {
        None | Some(Token::Comma) => return Err(ctx.err(HbaSyntax::MissingField("address"))),
        Some(Token::Quoted(q)) => return Err(ctx.err(HbaSyntax::UnsupportedAddress(q))),
        Some(Token::Word(w)) => w,
    };
    if word == "all" {
        return Ok(Address::All);
    }
    let (ip_text, prefix) = match word.split_once('/') {
        Some((ip, prefix)) => (ip, Some(prefix)),
        None => (word.as_str(), None),
    };
    let Ok(ip) = ip_text.parse::<IpAddr>() else {
        return Err(ctx.err(HbaSyntax::UnsupportedAddress(word)));
    };
    let mask = match prefix {
        Some(prefix) => match prefix_mask(ip, prefix) {
            Some(mask) => mask,
            None => return Err(ctx.err(HbaSyntax::BadPrefix(word))),
        },
        None => match next(lex, ctx)? {
            None | Some(Token::Comma) => return Err(ctx.err(HbaSyntax::MissingField("mask"))),
            Some(Token::Word(m) | Token::Quoted(m)) => match m.parse::<IpAddr>() {
                Ok(mask) if mask.is_ipv4() == ip.is_ipv4() => mask,
                _ => return Err(ctx.err(HbaSyntax::BadMask(m))),
            },
        },
    };
    Address::new(ip, mask).ok_or_else(|| ctx.err(HbaSyntax::BadMask(mask.to_string())))
}

/// The netmask for a CIDR prefix of `ip`'s family; `None` unless `prefix` is plain decimal
/// digits within the family's width.
fn prefix_mask(ip: IpAddr, prefix: &str) -> Option<IpAddr> {
    if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let bits: u32 = prefix.parse().ok()?;
    match ip {
        IpAddr::V4(_) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            Some(IpAddr::from(mask.to_be_bytes()))
        }
        IpAddr::V6(_) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            Some(IpAddr::from(mask.to_be_bytes()))
        }
        _ => None,
    }
}

/// The method and its `map=` option.
fn parse_method(
    lex: &mut Lexer<'_>,
    ctx: &LineCtx<'_>,
) -> Result<(HbaMethod, Option<String>), HbaError> {
    let word = match next(lex, ctx)? {
        None | Some(Token::Comma) => return Err(ctx.err(HbaSyntax::MissingField("method"))),
        Some(Token::Quoted(q)) => return Err(ctx.err(HbaSyntax::UnsupportedMethod(q))),
        Some(Token::Word(w)) => w,
    };
    let method = match word.as_str() {
        "trust" => HbaMethod::Trust,
        "reject" => HbaMethod::Reject,
        "md5" => HbaMethod::Md5,
        "password" => HbaMethod::Password,
        "peer" => HbaMethod::Peer,
        "cert" => HbaMethod::Cert,
        "scram-sha-256" => HbaMethod::ScramSha256,
        // PgBouncer compat: everything after `ldap` is its option string (hba.c copies
        // `tp->pos` and eats the rest of the line), so `ldap` takes no `map=`.
        "ldap" => return Ok((HbaMethod::Ldap(strip_comment(lex.rest()).to_string()), None)),
        _ => return Err(ctx.err(HbaSyntax::UnsupportedMethod(word))),
    };
    let mut map = None;
    while let Some(tok) = next(lex, ctx)? {
        let option = match tok {
            Token::Word(w) if map.is_none() && w.starts_with("map=") => w,
            Token::Word(w) | Token::Quoted(w) => {
                return Err(ctx.err(HbaSyntax::UnsupportedOption(w)));
            }
            Token::Comma => return Err(ctx.err(HbaSyntax::UnsupportedOption(",".into()))),
        };
        if !matches!(method, HbaMethod::Peer | HbaMethod::Cert) {
            return Err(ctx.err(HbaSyntax::MapNotAllowed(word)));
        }
        match option.strip_prefix("map=") {
            Some(name) if !name.is_empty() => map = Some(name.to_string()),
            _ => return Err(ctx.err(HbaSyntax::EmptyMap)),
        }
    }
    Ok((method, map))
}

/// `s` up to a `#` outside double quotes, trimmed.
fn strip_comment(s: &str) -> &str {
    let mut quoted = false;
    for (i, b) in s.bytes().enumerate() {
        match b {
            b'"' => quoted = !quoted,
            b'#' if !quoted => return s[..i].trim(),
            _ => {}
        }
    }
    s.trim()
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    fn hba(text: &str) -> HbaFile {
        HbaFile::parse(text, Path::new("pg_hba.conf")).unwrap()
    }

    fn syntax(text: &str) -> (usize, HbaSyntax) {
        syntax_at(text, Path::new("pg_hba.conf"))
    }

    fn syntax_at(text: &str, path: &Path) -> (usize, HbaSyntax) {
        match HbaFile::parse(text, path) {
            Err(HbaError::Syntax { line, what, .. }) => (line, what),
            other => panic!("expected a syntax error, got {other:?}"),
        }
    }

    fn tcp(addr: &str) -> HbaConn<'static> {
        HbaConn {
            unix: false,
            tls: false,
            addr: Some(addr.parse().unwrap()),
            database: "app",
            user: "alice",
            replication: false,
        }
    }

    fn unix() -> HbaConn<'static> {
        HbaConn {
            unix: true,
            addr: None,
            ..tcp("127.0.0.1")
        }
    }

    fn method(file: &HbaFile, conn: HbaConn<'_>) -> Option<HbaMethod> {
        file.find(&conn).map(|m| m.method)
    }

    /// A fresh directory under the system temp dir for include files.
    fn scratch_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("pgbouncer-rs-hba-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn local_rules_match_only_unix_socket_connections() {
        let file = hba("local all all peer\n");
        assert_eq!(method(&file, unix()), Some(HbaMethod::Peer));
        assert_eq!(method(&file, tcp("127.0.0.1")), None);
    }

    #[test]
    fn host_rules_match_tcp_with_or_without_tls_but_not_unix() {
        let file = hba("host all all all md5\n");
        assert_eq!(method(&file, tcp("10.1.2.3")), Some(HbaMethod::Md5));
        assert_eq!(
            method(
                &file,
                HbaConn {
                    tls: true,
                    ..tcp("10.1.2.3")
                }
            ),
            Some(HbaMethod::Md5)
        );
        assert_eq!(method(&file, unix()), None);
    }

    #[test]
    fn hostssl_rules_need_tls_and_hostnossl_rules_refuse_it() {
        let file = hba("hostssl all all all cert\nhostnossl all all all password\n");
        let tls = HbaConn {
            tls: true,
            ..tcp("10.0.0.1")
        };
        assert_eq!(method(&file, tls), Some(HbaMethod::Cert));
        assert_eq!(method(&file, tcp("10.0.0.1")), Some(HbaMethod::Password));
        assert_eq!(method(&file, unix()), None);
    }

    #[test]
    fn every_method_keyword_is_parsed() {
        let text = "local all all trust\nlocal all all reject\nlocal all all md5\n\
                    local all all password\nlocal all all peer\nlocal all all cert\n\
                    local all all scram-sha-256\nlocal all all ldap ldapserver=ldap.example\n";
        let file = hba(text);
        let methods: Vec<_> = file.rules.iter().map(|r| r.method.clone()).collect();
        assert_eq!(
            methods,
            vec![
                HbaMethod::Trust,
                HbaMethod::Reject,
                HbaMethod::Md5,
                HbaMethod::Password,
                HbaMethod::Peer,
                HbaMethod::Cert,
                HbaMethod::ScramSha256,
                HbaMethod::Ldap("ldapserver=ldap.example".into()),
            ]
        );
    }

    #[test]
    fn ldap_keeps_the_rest_of_the_line_as_options_without_the_comment() {
        let file =
            hba("host all all all ldap ldapserver=ldap.example ldapprefix=\"cn=#x,\" # note\n");
        assert_eq!(
            method(&file, tcp("10.0.0.1")),
            Some(HbaMethod::Ldap(
                "ldapserver=ldap.example ldapprefix=\"cn=#x,\"".into()
            ))
        );
    }

    #[test]
    fn map_option_is_returned_with_peer_and_cert() {
        let file = hba("local all all peer map=local\nhostssl all all all cert map=certs\n");
        let m = file.find(&unix()).unwrap();
        assert_eq!(
            (m.method, m.map.as_deref(), m.line),
            (HbaMethod::Peer, Some("local"), 1)
        );
        let m = file
            .find(&HbaConn {
                tls: true,
                ..tcp("10.0.0.1")
            })
            .unwrap();
        assert_eq!(
            (m.method, m.map.as_deref(), m.line),
            (HbaMethod::Cert, Some("certs"), 2)
        );
    }

    #[test]
    fn first_matching_rule_wins() {
        let file = hba("host app bob all reject\n\
             host all all 10.0.0.0/8 trust\n\
             host all all all md5\n");
        assert_eq!(method(&file, tcp("10.9.9.9")), Some(HbaMethod::Trust));
        assert_eq!(
            method(
                &file,
                HbaConn {
                    user: "bob",
                    ..tcp("10.9.9.9")
                }
            ),
            Some(HbaMethod::Reject)
        );
        assert_eq!(method(&file, tcp("192.168.0.1")), Some(HbaMethod::Md5));
        assert_eq!(file.find(&tcp("192.168.0.1")).unwrap().line, 3);
    }

    #[test]
    fn no_matching_rule_gives_none() {
        let file = hba("host app alice 10.0.0.0/8 md5\n");
        assert_eq!(method(&file, tcp("11.0.0.1")), None);
        assert_eq!(
            method(
                &file,
                HbaConn {
                    database: "other",
                    ..tcp("10.0.0.1")
                }
            ),
            None
        );
        assert_eq!(
            method(
                &file,
                HbaConn {
                    user: "bob",
                    ..tcp("10.0.0.1")
                }
            ),
            None
        );
        assert_eq!(method(&hba(""), tcp("10.0.0.1")), None);
    }

    #[test]
    fn comments_and_blank_lines_are_skipped_and_lines_keep_their_numbers() {
        let file = hba("# comment\n\n   \t\nhost all all all trust # why\n");
        assert_eq!(file.find(&tcp("10.0.0.1")).unwrap().line, 4);
    }

    #[test]
    fn crlf_line_endings_are_accepted() {
        let file = hba("# c\r\nhost all all all trust\r\n");
        assert_eq!(method(&file, tcp("10.0.0.1")), Some(HbaMethod::Trust));
    }

    #[test]
    fn database_and_user_comma_lists_match_any_member() {
        let file = hba("host app,report alice,\"Bob Smith\" all trust\n");
        assert!(file
            .find(&HbaConn {
                database: "report",
                ..tcp("10.0.0.1")
            })
            .is_some());
        assert!(file
            .find(&HbaConn {
                user: "Bob Smith",
                ..tcp("10.0.0.1")
            })
            .is_some());
        assert!(file
            .find(&HbaConn {
                database: "other",
                ..tcp("10.0.0.1")
            })
            .is_none());
        assert!(file
            .find(&HbaConn {
                user: "carol",
                ..tcp("10.0.0.1")
            })
            .is_none());
    }

    #[test]
    fn names_are_case_sensitive_and_quotes_allow_spaces_commas_and_quotes() {
        let file = hba("local \"my db\",\"a,b\",\"say \"\"hi\"\"\" all trust\n");
        for db in ["my db", "a,b", "say \"hi\""] {
            assert!(
                file.find(&HbaConn {
                    database: db,
                    ..unix()
                })
                .is_some(),
                "{db}"
            );
        }
        assert!(file
            .find(&HbaConn {
                database: "My db",
                ..unix()
            })
            .is_none());
    }

    #[test]
    fn quoted_keywords_are_plain_names() {
        let file = hba("local \"all\" \"all\" trust\n");
        assert!(file.find(&unix()).is_none());
        assert!(file
            .find(&HbaConn {
                database: "all",
                user: "all",
                ..unix()
            })
            .is_some());
    }

    #[test]
    fn sameuser_matches_a_database_named_like_the_user() {
        let file = hba("local sameuser all trust\n");
        assert!(file
            .find(&HbaConn {
                database: "alice",
                ..unix()
            })
            .is_some());
        assert!(file
            .find(&HbaConn {
                database: "app",
                ..unix()
            })
            .is_none());
    }

    #[test]
    fn replication_keyword_matches_only_physical_replication_connections() {
        let file = hba("local replication all peer\nlocal all all md5\n");
        let repl = HbaConn {
            replication: true,
            ..unix()
        };
        assert_eq!(method(&file, repl), Some(HbaMethod::Peer));
        assert_eq!(
            method(
                &file,
                HbaConn {
                    database: "replication",
                    ..unix()
                }
            ),
            Some(HbaMethod::Md5)
        );
    }

    #[test]
    fn all_does_not_match_physical_replication_connections() {
        let file = hba("local all all trust\n");
        assert_eq!(
            method(
                &file,
                HbaConn {
                    replication: true,
                    ..unix()
                }
            ),
            None
        );
    }

    #[test]
    fn ipv4_cidr_matches_addresses_inside_the_prefix() {
        let file = hba("host all all 192.168.0.0/16 trust\n");
        assert!(file.find(&tcp("192.168.255.1")).is_some());
        assert!(file.find(&tcp("192.169.0.1")).is_none());
        assert!(file.find(&tcp("::1")).is_none());
    }

    #[test]
    fn ipv4_cidr_edge_prefixes_match_everything_or_one_host() {
        let file = hba("host all all 0.0.0.0/0 trust\n");
        assert!(file.find(&tcp("203.0.113.9")).is_some());
        let file = hba("host all all 10.0.0.7/32 trust\n");
        assert!(file.find(&tcp("10.0.0.7")).is_some());
        assert!(file.find(&tcp("10.0.0.6")).is_none());
    }

    #[test]
    fn ipv4_mask_column_matches_like_cidr() {
        let file = hba("host all all 10.0.0.0 255.0.0.0 trust\n");
        assert!(file.find(&tcp("10.200.1.1")).is_some());
        assert!(file.find(&tcp("11.0.0.1")).is_none());
    }

    #[test]
    fn ipv6_cidr_and_mask_column_match() {
        let file = hba("host all all ::1/128 trust\nhost all all fd00:: ff00:: md5\n");
        assert_eq!(method(&file, tcp("::1")), Some(HbaMethod::Trust));
        assert_eq!(method(&file, tcp("fd12:3456::1")), Some(HbaMethod::Md5));
        assert_eq!(method(&file, tcp("fe80::1")), None);
        assert_eq!(method(&file, tcp("127.0.0.1")), None);
    }

    #[test]
    fn ipv4_mapped_ipv6_clients_match_ipv4_rules() {
        let file = hba("host all all 10.0.0.0/8 trust\n");
        let mapped = IpAddr::V6(Ipv4Addr::new(10, 1, 2, 3).to_ipv6_mapped());
        assert!(file
            .find(&HbaConn {
                addr: Some(mapped),
                ..tcp("::1")
            })
            .is_some());
        let outside = IpAddr::V6(Ipv4Addr::new(11, 1, 2, 3).to_ipv6_mapped());
        assert!(file
            .find(&HbaConn {
                addr: Some(outside),
                ..tcp("::1")
            })
            .is_none());
    }

    #[test]
    fn ipv4_compatible_but_unmapped_ipv6_does_not_match_ipv4_rules() {
        let file = hba("host all all 0.0.0.0/0 trust\n");
        let compat = IpAddr::V6(Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0x0a00, 1));
        assert!(file
            .find(&HbaConn {
                addr: Some(compat),
                ..tcp("::1")
            })
            .is_none());
    }

    #[test]
    fn host_bits_outside_the_prefix_are_ignored() {
        let file = hba("host all all 10.1.2.3/8 trust\n");
        assert!(file.find(&tcp("10.200.0.1")).is_some());
    }

    #[test]
    fn address_all_matches_any_address_and_none() {
        let file = hba("host all all all trust\n");
        assert!(file.find(&tcp("::1")).is_some());
        assert!(file
            .find(&HbaConn {
                addr: None,
                ..tcp("::1")
            })
            .is_some());
        let file = hba("host all all 0.0.0.0/0 trust\n");
        assert!(file
            .find(&HbaConn {
                addr: None,
                ..tcp("::1")
            })
            .is_none());
    }

    #[test]
    fn at_file_includes_database_and_user_names() {
        let dir = scratch_dir("include");
        std::fs::write(
            dir.join("dbs"),
            "app, report\n# comment\n\n\"my db\" other\n",
        )
        .unwrap();
        std::fs::create_dir(dir.join("sub")).unwrap();
        std::fs::write(dir.join("sub/users"), "alice @more\n").unwrap();
        std::fs::write(dir.join("sub/more"), "bob\n").unwrap();
        let text = "host @dbs,extra @sub/users all trust\n";
        let file = HbaFile::parse(text, &dir.join("pg_hba.conf")).unwrap();
        for db in ["app", "report", "my db", "other", "extra"] {
            assert!(
                file.find(&HbaConn {
                    database: db,
                    ..tcp("10.0.0.1")
                })
                .is_some(),
                "{db}"
            );
        }
        // `@more` inside sub/users resolves against sub/, not the hba file's directory.
        assert!(file
            .find(&HbaConn {
                user: "bob",
                ..tcp("10.0.0.1")
            })
            .is_some());
        assert!(file
            .find(&HbaConn {
                user: "carol",
                ..tcp("10.0.0.1")
            })
            .is_none());
        assert!(file
            .find(&HbaConn {
                database: "nope",
                ..tcp("10.0.0.1")
            })
            .is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn load_reads_the_file_and_resolves_includes_next_to_it() {
        let dir = scratch_dir("load");
        std::fs::write(dir.join("users"), "alice\n").unwrap();
        std::fs::write(dir.join("pg_hba.conf"), "local all @users trust\n").unwrap();
        let file = HbaFile::load(&dir.join("pg_hba.conf")).unwrap();
        assert_eq!(method(&file, unix()), Some(HbaMethod::Trust));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn missing_hba_file_is_a_read_error() {
        let err = HbaFile::load(Path::new("/nonexistent/pgbouncer-rs/pg_hba.conf")).unwrap_err();
        assert!(matches!(err, HbaError::Read { .. }), "{err:?}");
    }

    #[test]
    fn missing_include_file_is_an_error_on_the_including_line() {
        let dir = scratch_dir("missing-include");
        let (line, what) = syntax_at("\nlocal @nope all trust\n", &dir.join("pg_hba.conf"));
        assert_eq!(line, 2);
        assert!(matches!(&what, HbaSyntax::IncludeRead { file, .. } if file == &dir.join("nope")));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn errors_inside_include_files_name_the_include_and_its_line() {
        let dir = scratch_dir("bad-include");
        std::fs::write(dir.join("users"), "alice\n+admins\n").unwrap();
        let err = HbaFile::parse("local all @users trust\n", &dir.join("pg_hba.conf")).unwrap_err();
        match err {
            HbaError::Syntax {
                file,
                line,
                what: HbaSyntax::UnsupportedGroup(g),
            } => {
                assert_eq!((file, line, g.as_str()), (dir.join("users"), 2, "+admins"));
            }
            other => panic!("{other:?}"),
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn include_cycles_stop_at_the_depth_limit() {
        let dir = scratch_dir("cycle");
        std::fs::write(dir.join("loop"), "a @loop\n").unwrap();
        let err = HbaFile::parse("local all @loop trust\n", &dir.join("pg_hba.conf")).unwrap_err();
        assert!(
            matches!(
                err,
                HbaError::Syntax {
                    what: HbaSyntax::IncludeDepth { max: 10, .. },
                    ..
                }
            ),
            "{err:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn error_display_shows_file_line_and_value() {
        let err = HbaFile::parse(
            "\n\n\n\n\n\nhost all all samenet md5\n",
            Path::new("pg_hba.conf"),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "pg_hba.conf:7: unsupported address: samenet"
        );
    }

    #[test]
    fn unknown_record_types_are_errors() {
        assert!(
            matches!(syntax("hostgssenc all all all trust"), (1, HbaSyntax::UnknownType(t)) if t == "hostgssenc")
        );
        assert!(
            matches!(syntax("\nHOST all all all trust"), (2, HbaSyntax::UnknownType(t)) if t == "HOST")
        );
        assert!(
            matches!(syntax("include other.conf"), (1, HbaSyntax::UnknownType(t)) if t == "include")
        );
    }

    #[test]
    fn unsupported_name_forms_are_errors() {
        assert!(
            matches!(syntax("local samerole all trust"), (1, HbaSyntax::UnsupportedKeyword(k)) if k == "samerole")
        );
        assert!(
            matches!(syntax("local samegroup all trust"), (1, HbaSyntax::UnsupportedKeyword(k)) if k == "samegroup")
        );
        assert!(
            matches!(syntax("local all +admins trust"), (1, HbaSyntax::UnsupportedGroup(g)) if g == "+admins")
        );
        assert!(matches!(
            syntax("local all @ trust"),
            (1, HbaSyntax::EmptyInclude)
        ));
        assert!(matches!(
            syntax("local app,,b all trust"),
            (1, HbaSyntax::EmptyListEntry("database"))
        ));
        assert!(matches!(
            syntax("local ,app all trust"),
            (1, HbaSyntax::EmptyListEntry("database"))
        ));
        assert!(matches!(
            syntax("local \"app all trust"),
            (1, HbaSyntax::UnterminatedQuote)
        ));
    }

    #[test]
    fn unsupported_addresses_are_errors() {
        for addr in [
            "samehost",
            "samenet",
            "db.example.com",
            ".example.com",
            "10.0.0.300/8",
            "fe80::1%eth0/64",
            "\"10.0.0.0/8\"",
        ] {
            let text = format!("host all all {addr} md5");
            assert!(
                matches!(syntax(&text), (1, HbaSyntax::UnsupportedAddress(_))),
                "{addr}"
            );
        }
    }

    #[test]
    fn bad_prefixes_and_masks_are_errors() {
        for addr in [
            "10.0.0.0/33",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "10.0.0.0/8x",
            "::/129",
        ] {
            let text = format!("host all all {addr} md5");
            assert!(
                matches!(syntax(&text), (1, HbaSyntax::BadPrefix(a)) if a == addr),
                "{addr}"
            );
        }
        assert!(
            matches!(syntax("host all all 10.0.0.0 255.0.0 md5"), (1, HbaSyntax::BadMask(m)) if m == "255.0.0")
        );
        assert!(matches!(
            syntax("host all all 10.0.0.0 ffff:: md5"),
            (1, HbaSyntax::BadMask(_))
        ));
        assert!(
            matches!(syntax("host all all 10.0.0.1 md5"), (1, HbaSyntax::BadMask(m)) if m == "md5")
        );
    }

    #[test]
    fn missing_fields_are_errors() {
        assert!(matches!(
            syntax("local"),
            (1, HbaSyntax::MissingField("database"))
        ));
        assert!(matches!(
            syntax("local all"),
            (1, HbaSyntax::MissingField("user"))
        ));
        assert!(matches!(
            syntax("local all all"),
            (1, HbaSyntax::MissingField("method"))
        ));
        assert!(matches!(
            syntax("host all all # no address"),
            (1, HbaSyntax::MissingField("address"))
        ));
        assert!(matches!(
            syntax("host all all 10.0.0.0"),
            (1, HbaSyntax::MissingField("mask"))
        ));
        assert!(matches!(
            syntax("host all all 10.0.0.0/8"),
            (1, HbaSyntax::MissingField("method"))
        ));
    }

    #[test]
    fn unsupported_methods_are_errors() {
        for m in [
            "ident",
            "gss",
            "sspi",
            "pam",
            "radius",
            "scram",
            "MD5",
            "\"trust\"",
        ] {
            let text = format!("host all all all {m}");
            assert!(
                matches!(syntax(&text), (1, HbaSyntax::UnsupportedMethod(_))),
                "{m}"
            );
        }
    }

    #[test]
    fn bad_options_are_errors() {
        assert!(
            matches!(syntax("local all all md5 map=x"), (1, HbaSyntax::MapNotAllowed(m)) if m == "md5")
        );
        assert!(matches!(
            syntax("local all all peer map="),
            (1, HbaSyntax::EmptyMap)
        ));
        assert!(
            matches!(syntax("local all all peer map=a map=b"), (1, HbaSyntax::UnsupportedOption(o)) if o == "map=b")
        );
        assert!(
            matches!(syntax("local all all peer clientcert=1"), (1, HbaSyntax::UnsupportedOption(o)) if o == "clientcert=1")
        );
        assert!(
            matches!(syntax("local all all trust extra"), (1, HbaSyntax::UnsupportedOption(o)) if o == "extra")
        );
    }

    #[test]
    fn trailing_backslash_continuation_is_an_error() {
        assert!(matches!(
            syntax("# ok \\\nhost all all \\\n  all trust\n"),
            (2, HbaSyntax::LineContinuation)
        ));
        assert!(matches!(
            syntax("host all all all trust\\"),
            (1, HbaSyntax::LineContinuation)
        ));
    }

    #[test]
    fn lenient_parse_skips_bad_lines_like_pgbouncer() {
        let (file, errors) = HbaFile::parse_lenient(
            "host all all samenet reject\nhost all all all trust\n",
            Path::new("pg_hba.conf"),
        );
        assert_eq!(errors.len(), 1);
        assert!(matches!(&errors[0], HbaError::Syntax { line: 1, .. }));
        assert_eq!(file.find(&tcp("10.0.0.1")).map(|m| m.line), Some(2));
    }

    #[test]
    fn check_maps_requires_every_map_in_the_ident_file() {
        let file = hba("local all all trust\nlocal all all peer map=local\n");
        let ident = IdentMap::parse("local root postgres\n", Path::new("ident.conf")).unwrap();
        assert!(file.check_maps(Some(&ident)).is_ok());
        let other = IdentMap::parse("other root postgres\n", Path::new("ident.conf")).unwrap();
        let err = file.check_maps(Some(&other)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "pg_hba.conf:2: ident map local is not found in auth_ident_file"
        );
        assert!(file.check_maps(None).is_err());
        assert!(hba("local all all trust\n").check_maps(None).is_ok());
    }
}
