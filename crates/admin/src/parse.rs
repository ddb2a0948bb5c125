//! The console grammar (mirrors `admin_parse_query` and `copy_arg` in PgBouncer's admin.c).
//!
//! PgBouncer matches three case-insensitive POSIX regexes, in this order:
//!
//! * `^WS0 WORD (WS1 WORD)? WS0 (; WS0)?$`: a command and an optional argument;
//! * `^WS0 set WS1 WORD WS0 (=|to) WS0 'string' WS0 (; WS0)?$`;
//! * `^WS0 set WS1 WORD WS0 (=|to) WS0 WORD WS0 (; WS0)?$`;
//!
//! where WS is `[ \t\n\r]`, WORD is `[0-9a-z_]+` or `"double quoted"` (`""` escapes a quote)
//! and a string is `'single quoted'` (`''` escapes). Raw lengths (quotes included) must stay
//! under 16 bytes for the command, 64 for the argument or SET key, 256 for a SET value, or
//! the answer is `bad arguments`. We scan by hand instead of using a regex crate; the only
//! backtracking the regexes do is in `set KEYto value`, reproduced by [`split_set_key`].

use crate::command::{Command, Show, ShutdownMode};
use crate::error::AdminError;
use crate::guc::fake_guc_name;

const MAX_CMD: usize = 16;
const MAX_ARG: usize = 64;
const MAX_VAL: usize = 256;

/// Parses one console query.
///
/// Every error is returned here; use [`parse_checked`](crate::parse_checked) to get them in
/// PgBouncer's order relative to the access check (a stats user typing `DISABLE` gets
/// `admin access needed`, not `a database is required`).
pub fn parse(sql: &str) -> Result<Command, AdminError> {
    parse_stages(sql)?
}

/// The two stages of PgBouncer's error order: the outer error is a syntax error (sent before
/// any access check), the inner one an argument error of an admin-only command (sent after
/// it).
pub(crate) fn parse_stages(sql: &str) -> Result<Result<Command, AdminError>, AdminError> {
    let syntax = || AdminError::invalid_command(sql);
    if let Some((cmd, arg)) = match_normal(sql) {
        let cmd = unquote_checked(cmd, '"', MAX_CMD)?;
        let arg = match arg {
            Some(a) => unquote_checked(a, '"', MAX_ARG)?,
            None => String::new(),
        };
        return command(&cmd, arg).ok_or_else(syntax);
    }
    if let Some((key, value)) = match_set(sql) {
        let key = unquote_checked(key, '"', MAX_ARG)?;
        if key.is_empty() {
            return Err(AdminError::bad_arguments());
        }
        let quote = if value.starts_with('\'') { '\'' } else { '"' };
        let value = unquote_checked(value, quote, MAX_VAL)?;
        return Ok(Ok(match fake_guc_name(&key) {
            Some(name) => Command::SetFakeGuc(name.to_owned()),
            None => Command::Set { key, value },
        }));
    }
    Err(syntax())
}

/// Maps a command word and its argument (empty when absent) to a command; `None` is a
/// syntax error.
fn command(cmd: &str, arg: String) -> Option<Result<Command, AdminError>> {
    let opt = |arg: String| (!arg.is_empty()).then_some(arg);
    let cmd = cmd.to_ascii_lowercase();
    Some(Ok(match cmd.as_str() {
        "show" | "select" => {
            if let Some(name) = fake_guc_name(&arg) {
                Command::FakeGuc(name.to_owned())
            } else {
                Command::Show(Show::from_name(&arg)?)
            }
        }
        "pause" => Command::Pause(opt(arg)),
        "resume" => Command::Resume(opt(arg)),
        "reconnect" => Command::Reconnect(opt(arg)),
        "kill" => Command::Kill(opt(arg)),
        "wait_close" => Command::WaitClose(opt(arg)),
        "disable" | "enable" if arg.is_empty() => {
            return Some(Err(AdminError::database_required()))
        }
        "disable" => Command::Disable(arg),
        "enable" => Command::Enable(arg),
        "kill_client" => return Some(kill_client(&arg)),
        "suspend" if arg.is_empty() => Command::Suspend,
        "reload" if arg.is_empty() => Command::Reload,
        "shutdown" => Command::Shutdown(match arg.to_ascii_lowercase().as_str() {
            "" => ShutdownMode::Immediate,
            "wait_for_servers" => ShutdownMode::WaitForServers,
            "wait_for_clients" => ShutdownMode::WaitForClients,
            _ => return None,
        }),
        _ => return None,
    }))
}

/// `sscanf(arg, "%llu")`: an optional sign, then digits; what follows them is ignored.
fn kill_client(arg: &str) -> Result<Command, AdminError> {
    let (negative, rest) = match arg.as_bytes().first() {
        Some(b'-') => (true, &arg[1..]),
        Some(b'+') => (false, &arg[1..]),
        _ => (false, arg),
    };
    let digits: &str = &rest[..rest.bytes().take_while(u8::is_ascii_digit).count()];
    if digits.is_empty() {
        return Err(AdminError::invalid_client_pointer());
    }
    // strtoull saturates on overflow and negates a leading minus modulo 2^64; no such id
    // exists among our 32-bit ids, so any of these is simply not found.
    let id = digits.parse::<u64>().unwrap_or(u64::MAX);
    let id = if negative { id.wrapping_neg() } else { id };
    u32::try_from(id)
        .map(Command::KillClient)
        .map_err(|_| AdminError::client_not_found())
}

fn is_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r')
}

fn is_word_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

fn skip_ws(s: &str, mut i: usize) -> usize {
    while i < s.len() && is_ws(s.as_bytes()[i]) {
        i += 1;
    }
    i
}

/// The end of a quoted token starting at `i` (which holds `quote`), doubled quotes
/// included; `None` if unterminated.
fn quoted_end(s: &str, i: usize, quote: u8) -> Option<usize> {
    let b = s.as_bytes();
    let mut j = i + 1;
    loop {
        match b.get(j) {
            None => return None,
            Some(&c) if c == quote => {
                if b.get(j + 1) == Some(&quote) {
                    j += 2;
                } else {
                    return Some(j + 1);
                }
            }
            Some(_) => j += 1,
        }
    }
}

/// The end of a WORD starting at `i`, if one starts there.
fn word_end(s: &str, i: usize) -> Option<usize> {
    let b = s.as_bytes();
    match b.get(i) {
        Some(b'"') => quoted_end(s, i, b'"'),
        Some(&c) if is_word_char(c) => {
            Some(i + b[i..].iter().take_while(|c| is_word_char(**c)).count())
        }
        _ => None,
    }
}

/// Whether `s[i..]` is `WS0 (; WS0)?` up to the end.
fn is_tail(s: &str, i: usize) -> bool {
    let i = skip_ws(s, i);
    if i == s.len() {
        return true;
    }
    s.as_bytes()[i] == b';' && skip_ws(s, i + 1) == s.len()
}

/// `^WS0 WORD (WS1 WORD)? WS0 (; WS0)?$`: the raw command and argument tokens.
fn match_normal(s: &str) -> Option<(&str, Option<&str>)> {
    let start = skip_ws(s, 0);
    let end = word_end(s, start)?;
    let cmd = &s[start..end];
    if is_tail(s, end) {
        return Some((cmd, None));
    }
    let arg_start = skip_ws(s, end);
    if arg_start == end {
        return None;
    }
    let arg_end = word_end(s, arg_start)?;
    is_tail(s, arg_end).then_some((cmd, Some(&s[arg_start..arg_end])))
}

/// The two SET regexes: the raw key and value tokens.
fn match_set(s: &str) -> Option<(&str, &str)> {
    let i = skip_ws(s, 0);
    if !s.get(i..i + 3)?.eq_ignore_ascii_case("set") {
        return None;
    }
    let key_start = skip_ws(s, i + 3);
    if key_start == i + 3 {
        return None;
    }
    split_set_key(s, key_start)
}

/// Tries key lengths from the longest down, as POSIX leftmost-longest matching does: in
/// `set ato b` the key is `a` and `to` the operator.
fn split_set_key(s: &str, key_start: usize) -> Option<(&str, &str)> {
    let max_end = word_end(s, key_start)?;
    let shortest = if s.as_bytes()[key_start] == b'"' {
        max_end
    } else {
        key_start + 1
    };
    (shortest..=max_end)
        .rev()
        .find_map(|key_end| set_rest(s, key_end).map(|v| (&s[key_start..key_end], v)))
}

/// After the key: `WS0 (=|to) WS0 (WORD|'string') WS0 (; WS0)?$`, giving the raw value.
fn set_rest(s: &str, key_end: usize) -> Option<&str> {
    let i = skip_ws(s, key_end);
    let after_op = if s[i..].starts_with('=') {
        i + 1
    } else if s.get(i..i + 2)?.eq_ignore_ascii_case("to") {
        i + 2
    } else {
        return None;
    };
    let v = skip_ws(s, after_op);
    let v_end = match s.as_bytes().get(v) {
        Some(b'\'') => quoted_end(s, v, b'\'')?,
        _ => word_end(s, v)?,
    };
    is_tail(s, v_end).then_some(&s[v..v_end])
}

/// `copy_arg`: rejects raw tokens of `max` bytes or more, then strips the quotes and
/// collapses doubled quotes.
fn unquote_checked(raw: &str, quote: char, max: usize) -> Result<String, AdminError> {
    if raw.len() >= max {
        return Err(AdminError::bad_arguments());
    }
    let Some(inner) = raw
        .strip_prefix(quote)
        .and_then(|r| r.strip_suffix(quote))
        .filter(|_| raw.len() >= 2)
    else {
        return Ok(raw.to_owned());
    };
    let doubled: String = [quote, quote].iter().collect();
    Ok(inner.replace(&doubled, &quote.to_string()))
}
