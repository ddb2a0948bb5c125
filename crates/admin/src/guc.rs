//! Fake GUCs: answers for clients that poke at server settings without checking where they
//! are (mirrors `fake_param_list`, `fake_show` and `fake_set` in PgBouncer's admin.c).

use pgbouncer_protocol::{Column, ResultSet};

use crate::reply::Reply;

/// The fake parameters and their values. PgBouncer compat: `extra_float_digits` is in
/// admin.c's list too, though the docs name only the first five.
pub const FAKE_GUCS: [(&str, &str); 6] = [
    ("client_encoding", "UTF-8"),
    ("default_transaction_isolation", "read committed"),
    ("standard_conforming_strings", "on"),
    ("datestyle", "ISO"),
    ("timezone", "GMT"),
    ("extra_float_digits", "2"),
];

/// The canonical (lowercase) name of the fake GUC called `name`, case-insensitively.
pub(crate) fn fake_guc_name(name: &str) -> Option<&'static str> {
    FAKE_GUCS
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(n, _)| *n)
}

/// `SHOW <fake guc>`: one text column named after the parameter, one row, tag `SHOW`. An
/// unknown name gives an empty value.
pub fn fake_guc(name: &str) -> Reply {
    let (name, value) = FAKE_GUCS
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .copied()
        .unwrap_or((name, ""));
    let mut set = ResultSet::new(vec![Column::text(name)]);
    set.push_row(vec![Some(value.to_owned())]);
    Reply::rows(set)
}

/// `SET <fake guc> = ...`: NOTICE `SET ignored`, then tag `SET`.
pub fn set_fake_guc() -> Reply {
    Reply::Notice {
        message: "SET ignored".into(),
        detail: None,
        then_tag: "SET".into(),
    }
}
