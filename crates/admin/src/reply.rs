//! `Reply`: what the console answers to one query, and its wire encoding (everything up to,
//! not including, ReadyForQuery, which the daemon appends).

use bytes::BytesMut;
use pgbouncer_protocol::{
    encode_command_complete, encode_error, BackendMessage, ErrorFields, ResultSet, FIELD_DETAIL,
};

use crate::error::AdminError;

/// One console answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// RowDescription, DataRows, CommandComplete `tag`.
    Rows {
        /// The result.
        set: ResultSet,
        /// The CommandComplete tag (`SHOW`).
        tag: String,
    },
    /// NoticeResponse `S=NOTICE C=00000 M=message [D=detail]`, then CommandComplete
    /// `then_tag` (`SHOW HELP`, `SET` of a fake GUC).
    Notice {
        /// The `M` field.
        message: String,
        /// The `D` field, if any.
        detail: Option<String>,
        /// The CommandComplete tag that follows.
        then_tag: String,
    },
    /// CommandComplete only (`PAUSE`, `SET key=value`, ...).
    Tag(String),
    /// ErrorResponse `S=ERROR C=code M=message`; the connection stays open.
    Error(AdminError),
}

impl Reply {
    /// A result set with tag `SHOW`.
    pub fn rows(set: ResultSet) -> Self {
        Reply::Rows {
            set,
            tag: "SHOW".into(),
        }
    }

    /// The reply to a successful `SET key = value`: tag `SET key=value`.
    pub fn set_done(key: &str, value: &str) -> Self {
        Reply::Tag(format!("SET {key}={value}"))
    }

    /// Writes the messages of this reply (not ReadyForQuery).
    pub fn encode(&self, buf: &mut BytesMut) {
        match self {
            Reply::Rows { set, tag } => set.encode(buf, tag),
            Reply::Notice {
                message,
                detail,
                then_tag,
            } => {
                let mut fields = ErrorFields::new("NOTICE", "00000", message.as_str());
                if let Some(d) = detail {
                    fields.fields.push((FIELD_DETAIL, d.clone()));
                }
                BackendMessage::NoticeResponse(fields).encode(buf);
                encode_command_complete(buf, then_tag);
            }
            Reply::Tag(tag) => encode_command_complete(buf, tag),
            Reply::Error(e) => encode_error(buf, "ERROR", e.code, &e.message),
        }
    }
}

impl From<AdminError> for Reply {
    fn from(e: AdminError) -> Self {
        Reply::Error(e)
    }
}
