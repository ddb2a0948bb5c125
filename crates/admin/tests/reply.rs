//! Wire encoding of replies: result sets, notices with detail, tags and errors.

use bytes::{Bytes, BytesMut};
use pgbouncer_admin::{fake_guc, set_fake_guc, AdminError, Reply};
use pgbouncer_protocol::{BackendMessage, FIELD_DETAIL};

fn decode(reply: &Reply) -> Vec<BackendMessage> {
    let mut buf = BytesMut::new();
    reply.encode(&mut buf);
    let mut msgs = Vec::new();
    while let Some(m) = BackendMessage::decode(&mut buf, 1 << 20).unwrap() {
        msgs.push(m);
    }
    assert!(buf.is_empty());
    msgs
}

fn complete(tag: &'static str) -> BackendMessage {
    BackendMessage::CommandComplete {
        tag: Bytes::from_static(tag.as_bytes()),
    }
}

#[test]
fn fake_guc_is_one_text_column_named_after_the_parameter() {
    let msgs = decode(&fake_guc("client_encoding"));
    let BackendMessage::RowDescription { fields } = &msgs[0] else {
        panic!("{msgs:?}")
    };
    assert_eq!(fields.len(), 1);
    assert_eq!(fields[0].name, "client_encoding");
    assert_eq!(
        msgs[1],
        BackendMessage::DataRow {
            values: vec![Some(Bytes::from_static(b"UTF-8"))]
        }
    );
    assert_eq!(msgs[2], complete("SHOW"));
    assert_eq!(msgs.len(), 3);
}

#[test]
fn notice_carries_severity_code_message_and_detail_then_the_tag() {
    let reply = Reply::Notice {
        message: "Console usage".into(),
        detail: Some("\n\tSHOW HELP".into()),
        then_tag: "SHOW".into(),
    };
    let msgs = decode(&reply);
    let BackendMessage::NoticeResponse(f) = &msgs[0] else {
        panic!("{msgs:?}")
    };
    assert_eq!(f.severity(), Some("NOTICE"));
    assert_eq!(f.code(), Some("00000"));
    assert_eq!(f.message(), Some("Console usage"));
    assert_eq!(f.field(FIELD_DETAIL), Some("\n\tSHOW HELP"));
    assert_eq!(msgs[1], complete("SHOW"));

    let msgs = decode(&set_fake_guc());
    let BackendMessage::NoticeResponse(f) = &msgs[0] else {
        panic!("{msgs:?}")
    };
    assert_eq!(f.message(), Some("SET ignored"));
    assert_eq!(f.field(FIELD_DETAIL), None);
    assert_eq!(msgs[1], complete("SET"));
}

#[test]
fn errors_are_error_severity_with_their_sqlstate_and_no_ready_for_query() {
    let msgs = decode(&Reply::Error(AdminError::no_such_database("x")));
    assert_eq!(msgs.len(), 1);
    let BackendMessage::ErrorResponse(f) = &msgs[0] else {
        panic!("{msgs:?}")
    };
    assert_eq!(f.severity(), Some("ERROR"));
    assert_eq!(f.code(), Some("08P01"));
    assert_eq!(f.message(), Some("no such database: x"));
    assert_eq!(f.fields.len(), 3);

    let msgs = decode(&AdminError::reload_failed().into());
    let BackendMessage::ErrorResponse(f) = &msgs[0] else {
        panic!("{msgs:?}")
    };
    assert_eq!(f.code(), Some("F0000"));
    assert_eq!(
        f.message(),
        Some("RELOAD failed, see logs for additional details")
    );
}

#[test]
fn tags_are_command_complete_only() {
    assert_eq!(decode(&Reply::Tag("PAUSE".into())), [complete("PAUSE")]);
    assert_eq!(
        decode(&Reply::set_done("default_pool_size", "30")),
        [complete("SET default_pool_size=30")]
    );
}

#[test]
fn error_texts_match_pgbouncer() {
    let cases = [
        (AdminError::admin_access_needed(), "admin access needed"),
        (AdminError::already_paused(), "already suspended/paused"),
        (AdminError::not_paused(), "pooler is not paused/suspended"),
        (AdminError::shutting_down(), "pooler is shutting down"),
        (
            AdminError::database_not_paused("d"),
            "database d is not paused",
        ),
        (
            AdminError::cannot_pause_admin_db("pgbouncer"),
            "cannot pause admin db: pgbouncer",
        ),
        (
            AdminError::cannot_reconnect_admin_db("p"),
            "cannot reconnect admin db: p",
        ),
        (
            AdminError::cannot_kill_admin_db("p"),
            "cannot kill admin db: p",
        ),
        (
            AdminError::cannot_wait_in_admin_db("p"),
            "cannot wait in admin db: p",
        ),
        (
            AdminError::cannot_disable_admin_db("p"),
            "cannot disable admin db: p",
        ),
        (
            AdminError::cannot_enable_admin_db("p"),
            "cannot enable admin db: p",
        ),
        (
            AdminError::cannot_suspend_with_paused_databases(),
            "cannot suspend with paused databases",
        ),
        (AdminError::set_failed(), "SET failed"),
        (
            AdminError::extended_query_not_supported(),
            "extended query protocol not supported by admin console",
        ),
        (
            AdminError::unsupported_packet(b'd'),
            "unsupported packet type for admin console: 100",
        ),
    ];
    for (e, text) in cases {
        assert_eq!(e.to_string(), text);
        assert_eq!(e.code, "08P01");
    }
}
