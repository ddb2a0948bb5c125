//! `ResultSet`: builds the RowDescription + DataRow* + CommandComplete answer of the admin
//! console (`SHOW POOLS`, ...), all columns in text format.
//!
//! PostgreSQL docs, "Message Flow: Simple Query"; mirrors PgBouncer's `pktbuf_write_RowDescription`
//! / `pktbuf_write_DataRow` in `pktbuf.c` as used by `admin.c`.

use bytes::{BufMut, BytesMut};

use crate::backend::{backend_tag, put_field, FieldDescription};
use crate::header::{begin, finish, put_nullable};
use crate::status::encode_command_complete;

/// Type OIDs used by the admin console.
pub mod oid {
    /// `bool`.
    pub const BOOL: u32 = 16;
    /// `bytea`.
    pub const BYTEA: u32 = 17;
    /// `int8`.
    pub const INT8: u32 = 20;
    /// `int4`.
    pub const INT4: u32 = 23;
    /// `text`.
    pub const TEXT: u32 = 25;
    /// `numeric`.
    pub const NUMERIC: u32 = 1700;
}

/// A result column: name and type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Column name.
    pub name: String,
    /// Type OID (see [`oid`]).
    pub type_oid: u32,
}

impl Column {
    /// A column of type `oid`.
    pub fn new(name: impl Into<String>, type_oid: u32) -> Self {
        Column {
            name: name.into(),
            type_oid,
        }
    }

    /// A `text` column.
    pub fn text(name: impl Into<String>) -> Self {
        Column::new(name, oid::TEXT)
    }

    /// An `int4` column.
    pub fn int4(name: impl Into<String>) -> Self {
        Column::new(name, oid::INT4)
    }

    /// An `int8` column.
    pub fn int8(name: impl Into<String>) -> Self {
        Column::new(name, oid::INT8)
    }

    /// A `numeric` column.
    pub fn numeric(name: impl Into<String>) -> Self {
        Column::new(name, oid::NUMERIC)
    }

    /// `pg_type.typlen` of the column's type: -1 for variable width.
    pub fn type_size(&self) -> i16 {
        match self.type_oid {
            oid::BOOL => 1,
            oid::INT4 => 4,
            oid::INT8 => 8,
            _ => -1,
        }
    }

    /// Whether psql right-aligns this column (numbers).
    fn is_numeric(&self) -> bool {
        matches!(self.type_oid, oid::INT4 | oid::INT8 | oid::NUMERIC)
    }
}

/// A text-format result set under construction.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResultSet {
    columns: Vec<Column>,
    rows: Vec<Vec<Option<String>>>,
}

impl ResultSet {
    /// An empty result set with these columns.
    pub fn new(columns: Vec<Column>) -> Self {
        ResultSet {
            columns,
            rows: Vec::new(),
        }
    }

    /// Appends a row; `None` is NULL. The row must have one value per column.
    pub fn push_row(&mut self, row: Vec<Option<String>>) {
        debug_assert_eq!(row.len(), self.columns.len(), "row arity");
        self.rows.push(row);
    }

    /// The columns.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// The rows pushed so far.
    pub fn rows(&self) -> &[Vec<Option<String>>] {
        &self.rows
    }

    /// Writes RowDescription, one DataRow per row, and CommandComplete with `command_tag`
    /// (PgBouncer sends `SHOW`).
    pub fn encode(&self, buf: &mut BytesMut, command_tag: &str) {
        let at = begin(buf, backend_tag::ROW_DESCRIPTION);
        buf.put_i16(self.columns.len() as i16);
        for c in &self.columns {
            put_field(
                buf,
                &FieldDescription {
                    name: c.name.clone(),
                    table_oid: 0,
                    column_id: 0,
                    type_oid: c.type_oid,
                    type_size: c.type_size(),
                    type_modifier: -1,
                    format: 0,
                },
            );
        }
        finish(buf, at);
        for row in &self.rows {
            let at = begin(buf, backend_tag::DATA_ROW);
            buf.put_i16(row.len() as i16);
            for v in row {
                put_nullable(buf, v.as_deref().map(str::as_bytes));
            }
            finish(buf, at);
        }
        encode_command_complete(buf, command_tag);
    }

    /// Renders the result like psql's aligned format (headers centered, numbers right-aligned,
    /// NULL empty, `(N rows)` footer), with trailing spaces trimmed from every line.
    pub fn to_text_table(&self) -> String {
        let widths: Vec<usize> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(i).and_then(|v| v.as_deref()))
                    .map(|v| v.chars().count())
                    .fold(c.name.chars().count(), usize::max)
            })
            .collect();
        let mut out = String::new();
        let header: Vec<String> = self
            .columns
            .iter()
            .zip(&widths)
            .map(|(c, &w)| {
                let len = c.name.chars().count();
                let left = (w - len) / 2;
                format!(
                    "{}{}{}",
                    " ".repeat(left),
                    c.name,
                    " ".repeat(w - len - left)
                )
            })
            .collect();
        push_line(&mut out, &header);
        let rule: Vec<String> = widths.iter().map(|&w| "-".repeat(w + 2)).collect();
        out.push_str(&rule.join("+"));
        out.push('\n');
        for row in &self.rows {
            let cells: Vec<String> = self
                .columns
                .iter()
                .zip(&widths)
                .enumerate()
                .map(|(i, (c, &w))| {
                    let v = row.get(i).and_then(|v| v.as_deref()).unwrap_or("");
                    if c.is_numeric() {
                        format!("{v:>w$}")
                    } else {
                        format!("{v:<w$}")
                    }
                })
                .collect();
            push_line(&mut out, &cells);
        }
        let n = self.rows.len();
        out.push_str(&format!("({n} {})\n", if n == 1 { "row" } else { "rows" }));
        out
    }
}

fn push_line(out: &mut String, cells: &[String]) {
    let line = format!(" {}", cells.join(" | "));
    out.push_str(line.trim_end());
    out.push('\n');
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::backend::BackendMessage;

    fn sample() -> ResultSet {
        let mut rs = ResultSet::new(vec![Column::text("database"), Column::int8("cl_active")]);
        rs.push_row(vec![Some("pgbouncer".into()), Some("1".into())]);
        rs.push_row(vec![Some("db".into()), None]);
        rs
    }

    #[test]
    fn text_table_looks_like_psql() {
        assert_eq!(
            sample().to_text_table(),
            concat!(
                " database  | cl_active\n",
                "-----------+-----------\n",
                " pgbouncer |         1\n",
                " db        |\n",
                "(2 rows)\n",
            )
        );
    }

    #[test]
    fn encode_writes_description_rows_and_command_complete() {
        let mut buf = BytesMut::new();
        sample().encode(&mut buf, "SHOW");
        let mut msgs = Vec::new();
        while let Some(m) = BackendMessage::decode(&mut buf, 8192).unwrap() {
            msgs.push(m);
        }
        assert_eq!(msgs.len(), 4);
        let BackendMessage::RowDescription { fields } = &msgs[0] else {
            panic!("no row description")
        };
        assert_eq!(fields[1].type_oid, oid::INT8);
        assert_eq!(fields[1].type_size, 8);
        assert_eq!(fields[0].type_size, -1);
        assert_eq!(
            msgs[2],
            BackendMessage::DataRow {
                values: vec![Some(Bytes::from_static(b"db")), None]
            }
        );
        assert_eq!(
            msgs[3],
            BackendMessage::CommandComplete {
                tag: Bytes::from_static(b"SHOW")
            }
        );
    }
}
