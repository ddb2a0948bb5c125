//! Shared test helpers: sample messages of every kind and the split-decoding check.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::fmt::Debug;

use bytes::{Bytes, BytesMut};
use pgbouncer_protocol::*;

pub const MAX: u32 = DEFAULT_MAX_PACKET_SIZE;

pub type Decode<M> = fn(&mut BytesMut, u32) -> Result<Option<M>, DecodeError>;

pub fn encoded<M>(m: &M, encode: fn(&M, &mut BytesMut)) -> Bytes {
    let mut buf = BytesMut::new();
    encode(m, &mut buf);
    buf.freeze()
}

/// Checks `decode(encode(m)) == m` with all bytes consumed, that two back-to-back copies
/// decode one at a time, and that every split into two pieces (every byte boundary for small
/// messages; `hint` and the header boundaries for larger ones) gives `Ok(None)` for the first
/// piece, consuming nothing, then the message.
pub fn check_codec<M: PartialEq + Debug + Clone>(
    m: &M,
    encode: fn(&M, &mut BytesMut),
    decode: Decode<M>,
    hint: usize,
) {
    let wire = encoded(m, encode);
    let mut buf = BytesMut::from(&wire[..]);
    assert_eq!(decode(&mut buf, MAX).unwrap().as_ref(), Some(m));
    assert!(buf.is_empty(), "bytes left after {m:?}");

    let mut two = BytesMut::from(&wire[..]);
    two.extend_from_slice(&wire);
    assert_eq!(decode(&mut two, MAX).unwrap().as_ref(), Some(m));
    assert_eq!(two.len(), wire.len());
    assert_eq!(decode(&mut two, MAX).unwrap().as_ref(), Some(m));
    assert!(two.is_empty());

    let splits: Vec<usize> = if wire.len() <= 256 {
        (0..wire.len()).collect()
    } else {
        vec![0, 1, 4, 5, 8, hint % wire.len(), wire.len() - 1]
    };
    for at in splits {
        let mut buf = BytesMut::from(&wire[..at]);
        assert_eq!(
            decode(&mut buf, MAX).unwrap(),
            None,
            "split at {at} of {m:?}"
        );
        assert_eq!(buf.len(), at, "consumed bytes of an incomplete message");
        buf.extend_from_slice(&wire[at..]);
        assert_eq!(decode(&mut buf, MAX).unwrap().as_ref(), Some(m));
        assert!(buf.is_empty());
    }
}

fn b(s: &'static str) -> Bytes {
    Bytes::from_static(s.as_bytes())
}

/// One or more examples of every frontend message.
pub fn sample_frontend() -> Vec<FrontendMessage> {
    vec![
        FrontendMessage::Query {
            query: b("select 1"),
        },
        FrontendMessage::Parse {
            name: b("s1"),
            query: b("select $1"),
            param_types: vec![23],
        },
        FrontendMessage::Bind {
            portal: b(""),
            statement: b("s1"),
            param_formats: vec![0],
            params: vec![Some(b("42")), None],
            result_formats: vec![1],
        },
        FrontendMessage::Describe {
            kind: b'S',
            name: b("s1"),
        },
        FrontendMessage::Execute {
            portal: b(""),
            max_rows: 0,
        },
        FrontendMessage::Close {
            kind: b'P',
            name: b(""),
        },
        FrontendMessage::Sync,
        FrontendMessage::Flush,
        FrontendMessage::Terminate,
        FrontendMessage::CopyData(b("1\tx\n")),
        FrontendMessage::CopyDone,
        FrontendMessage::CopyFail { message: b("oops") },
        FrontendMessage::FunctionCall {
            function_oid: 1598,
            arg_formats: vec![],
            args: vec![None],
            result_format: 0,
        },
        FrontendMessage::PasswordMessage(b("secret\0")),
    ]
}

/// One or more examples of every backend message.
pub fn sample_backend() -> Vec<BackendMessage> {
    let copy = CopyResponse {
        format: 0,
        column_formats: vec![0, 0],
    };
    vec![
        BackendMessage::Authentication(Authentication::Ok),
        BackendMessage::Authentication(Authentication::Md5Password { salt: [1, 2, 3, 4] }),
        BackendMessage::Authentication(Authentication::Sasl {
            mechanisms: vec!["SCRAM-SHA-256".into()],
        }),
        BackendMessage::Authentication(Authentication::SaslContinue(b("r=abc,s=c2FsdA==,i=4096"))),
        BackendMessage::Authentication(Authentication::SaslFinal(b("v=abc"))),
        BackendMessage::ParameterStatus {
            name: "server_version".into(),
            value: "17.0".into(),
        },
        BackendMessage::BackendKeyData {
            process_id: 1234,
            secret_key: -5678,
        },
        BackendMessage::ReadyForQuery {
            status: TransactionStatus::Idle,
        },
        BackendMessage::RowDescription {
            fields: vec![FieldDescription {
                name: "id".into(),
                table_oid: 16384,
                column_id: 1,
                type_oid: 23,
                type_size: 4,
                type_modifier: -1,
                format: 0,
            }],
        },
        BackendMessage::DataRow {
            values: vec![Some(b("1")), None],
        },
        BackendMessage::CommandComplete { tag: b("SELECT 1") },
        BackendMessage::EmptyQueryResponse,
        BackendMessage::ErrorResponse(ErrorFields::new("ERROR", "42601", "syntax error")),
        BackendMessage::NoticeResponse(ErrorFields::new("NOTICE", "00000", "hi")),
        BackendMessage::NotificationResponse {
            process_id: 7,
            channel: "ch".into(),
            payload: "payload".into(),
        },
        BackendMessage::ParseComplete,
        BackendMessage::BindComplete,
        BackendMessage::CloseComplete,
        BackendMessage::NoData,
        BackendMessage::PortalSuspended,
        BackendMessage::ParameterDescription {
            types: vec![23, 25],
        },
        BackendMessage::CopyInResponse(copy.clone()),
        BackendMessage::CopyOutResponse(copy.clone()),
        BackendMessage::CopyBothResponse(copy),
        BackendMessage::CopyData(b("data")),
        BackendMessage::CopyDone,
        BackendMessage::FunctionCallResponse {
            value: Some(b("x")),
        },
        BackendMessage::NegotiateProtocolVersion {
            newest_minor: 0,
            unrecognized: vec!["_pq_.foo".into()],
        },
    ]
}

/// One example of every startup packet.
pub fn sample_startup() -> Vec<StartupPacket> {
    vec![
        StartupPacket::Startup(StartupMessage::new(vec![
            ("user".into(), "bob".into()),
            ("database".into(), "db".into()),
        ])),
        StartupPacket::SslRequest,
        StartupPacket::GssEncRequest,
        StartupPacket::CancelRequest(CancelRequest {
            process_id: 1,
            secret_key: 2,
        }),
    ]
}
