//! Property tests of the link tracker: any chunking of a conversation gives the same
//! decisions as whole chunks (output bytes, errors, clean or not), arbitrary bytes never
//! panic, and what the tracker holds stays bounded.

#![allow(clippy::unwrap_used)]

use bytes::{Bytes, BytesMut};
use pgbouncer_protocol::fuzzing::{check_link_conversation, Segment};
use pgbouncer_protocol::link::LinkConfig;
use pgbouncer_protocol::*;
use proptest::prelude::*;

fn name() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        Just(Bytes::new()),
        Just(Bytes::from_static(b"a")),
        Just(Bytes::from_static(b"b")),
        Just(Bytes::from(vec![b'n'; 300])),
    ]
}

fn text(max: usize) -> impl Strategy<Value = Bytes> {
    prop::collection::vec(b'a'..=b'z', 0..max).prop_map(Bytes::from)
}

fn client_message() -> impl Strategy<Value = FrontendMessage> {
    prop_oneof![
        text(40).prop_map(|query| FrontendMessage::Query { query }),
        (name(), text(40)).prop_map(|(name, query)| FrontendMessage::Parse {
            name,
            query,
            param_types: vec![23],
        }),
        (name(), text(3000)).prop_map(|(statement, p)| FrontendMessage::Bind {
            portal: Bytes::new(),
            statement,
            param_formats: vec![],
            params: vec![Some(p), None],
            result_formats: vec![0],
        }),
        (prop_oneof![Just(b'S'), Just(b'P')], name())
            .prop_map(|(kind, name)| FrontendMessage::Describe { kind, name }),
        (prop_oneof![Just(b'S'), Just(b'P')], name())
            .prop_map(|(kind, name)| FrontendMessage::Close { kind, name }),
        Just(FrontendMessage::Execute {
            portal: Bytes::new(),
            max_rows: 0
        }),
        Just(FrontendMessage::Sync),
        Just(FrontendMessage::Flush),
        text(2000).prop_map(FrontendMessage::CopyData),
        Just(FrontendMessage::CopyDone),
        text(10).prop_map(|message| FrontendMessage::CopyFail { message }),
        Just(FrontendMessage::FunctionCall {
            function_oid: 1,
            arg_formats: vec![],
            args: vec![],
            result_format: 0
        }),
    ]
}

fn server_message() -> impl Strategy<Value = BackendMessage> {
    let status = prop_oneof![
        Just(TransactionStatus::Idle),
        Just(TransactionStatus::InTransaction),
        Just(TransactionStatus::Failed),
    ];
    prop_oneof![
        4 => status.prop_map(|status| BackendMessage::ReadyForQuery { status }),
        2 => Just(BackendMessage::ErrorResponse(ErrorFields::new("ERROR", "42601", "syntax"))),
        1 => Just(BackendMessage::NoticeResponse(ErrorFields::new("NOTICE", "00000", "hi"))),
        2 => Just(BackendMessage::ParseComplete),
        2 => Just(BackendMessage::BindComplete),
        1 => Just(BackendMessage::CloseComplete),
        1 => Just(BackendMessage::NoData),
        1 => Just(BackendMessage::PortalSuspended),
        1 => Just(BackendMessage::EmptyQueryResponse),
        1 => Just(BackendMessage::ParameterDescription { types: vec![23] }),
        2 => text(2000).prop_map(|v| BackendMessage::DataRow { values: vec![Some(v)] }),
        2 => prop_oneof![Just("SELECT 1"), Just("DISCARD ALL"), Just("COPY 3")]
            .prop_map(|t| BackendMessage::CommandComplete { tag: Bytes::from_static(t.as_bytes()) }),
        1 => (text(8), text(8)).prop_map(|(n, v)| BackendMessage::ParameterStatus {
            name: String::from_utf8(n.to_vec()).unwrap(),
            value: String::from_utf8(v.to_vec()).unwrap(),
        }),
        1 => Just(BackendMessage::CopyInResponse(CopyResponse { format: 0, column_formats: vec![0] })),
        1 => Just(BackendMessage::CopyOutResponse(CopyResponse { format: 0, column_formats: vec![0] })),
        1 => text(100).prop_map(BackendMessage::CopyData),
        1 => Just(BackendMessage::CopyDone),
    ]
}

fn segment() -> impl Strategy<Value = Segment> {
    let client = (
        prop::collection::vec(client_message(), 1..6),
        any::<usize>(),
    )
        .prop_map(|(msgs, cut)| {
            let mut b = BytesMut::new();
            for m in &msgs {
                m.encode(&mut b);
            }
            Segment {
                from_client: true,
                cut: cut % (b.len() + 1),
                bytes: b.to_vec(),
            }
        });
    let server = (
        prop::collection::vec(server_message(), 1..6),
        any::<usize>(),
    )
        .prop_map(|(msgs, cut)| {
            let mut b = BytesMut::new();
            for m in &msgs {
                m.encode(&mut b);
            }
            Segment {
                from_client: false,
                cut: cut % (b.len() + 1),
                bytes: b.to_vec(),
            }
        });
    prop_oneof![client, server]
}

fn config() -> impl Strategy<Value = LinkConfig> {
    (
        prop_oneof![Just(8192u32), Just(DEFAULT_MAX_PACKET_SIZE)],
        prop_oneof![Just(0usize), Just(1), Just(3), Just(200)],
        any::<bool>(),
    )
        .prop_map(
            |(max_packet_size, max_prepared_statements, statement_mode)| LinkConfig {
                max_packet_size,
                max_prepared_statements,
                statement_mode,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_chunking_of_a_conversation_gives_the_same_decisions(
        cfg in config(),
        segments in prop::collection::vec(segment(), 1..12),
    ) {
        check_link_conversation(cfg, &segments);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_stay_bounded(
        cfg in config(),
        raw in prop::collection::vec((any::<bool>(), prop::collection::vec(any::<u8>(), 0..300), any::<usize>()), 1..10),
    ) {
        let segments: Vec<Segment> = raw
            .into_iter()
            .map(|(from_client, bytes, cut)| Segment { from_client, cut: cut % (bytes.len() + 1), bytes })
            .collect();
        check_link_conversation(cfg, &segments);
    }
}
