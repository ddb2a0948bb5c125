//! Codec round trips, one `proptest!` per message family: `decode(encode(m)) == m` with all
//! bytes consumed, and every two-piece split decodes to `None` then the message.

#![allow(clippy::unwrap_used)]

mod common;

use bytes::Bytes;
use common::check_codec;
use pgbouncer_protocol::*;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

fn bytes(max: usize) -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

fn cbytes(max: usize) -> impl Strategy<Value = Bytes> {
    vec(1u8..=255, 0..max).prop_map(Bytes::from)
}

fn text() -> impl Strategy<Value = String> {
    "[^\u{0}]{0,12}"
}

fn name() -> impl Strategy<Value = String> {
    "[^\u{0}]{1,12}"
}

fn nullable() -> impl Strategy<Value = Option<Bytes>> {
    option::of(bytes(24))
}

fn frontend() -> impl Strategy<Value = FrontendMessage> {
    let kind = prop_oneof![Just(b'S'), Just(b'P')];
    prop_oneof![
        cbytes(300).prop_map(|query| FrontendMessage::Query { query }),
        (cbytes(12), cbytes(40), vec(any::<u32>(), 0..4)).prop_map(|(name, query, param_types)| {
            FrontendMessage::Parse {
                name,
                query,
                param_types,
            }
        }),
        (
            cbytes(12),
            cbytes(12),
            vec(any::<i16>(), 0..3),
            vec(nullable(), 0..4),
            vec(any::<i16>(), 0..3)
        )
            .prop_map(
                |(portal, statement, param_formats, params, result_formats)| {
                    FrontendMessage::Bind {
                        portal,
                        statement,
                        param_formats,
                        params,
                        result_formats,
                    }
                }
            ),
        (kind.clone(), cbytes(12))
            .prop_map(|(kind, name)| FrontendMessage::Describe { kind, name }),
        (cbytes(12), any::<i32>())
            .prop_map(|(portal, max_rows)| FrontendMessage::Execute { portal, max_rows }),
        (kind, cbytes(12)).prop_map(|(kind, name)| FrontendMessage::Close { kind, name }),
        Just(FrontendMessage::Sync),
        Just(FrontendMessage::Flush),
        Just(FrontendMessage::Terminate),
        bytes(400).prop_map(FrontendMessage::CopyData),
        Just(FrontendMessage::CopyDone),
        cbytes(20).prop_map(|message| FrontendMessage::CopyFail { message }),
        (
            any::<u32>(),
            vec(any::<i16>(), 0..3),
            vec(nullable(), 0..3),
            any::<i16>()
        )
            .prop_map(|(function_oid, arg_formats, args, result_format)| {
                FrontendMessage::FunctionCall {
                    function_oid,
                    arg_formats,
                    args,
                    result_format,
                }
            }),
        bytes(40).prop_map(FrontendMessage::PasswordMessage),
    ]
}

fn authentication() -> impl Strategy<Value = Authentication> {
    prop_oneof![
        Just(Authentication::Ok),
        Just(Authentication::KerberosV5),
        Just(Authentication::CleartextPassword),
        any::<[u8; 4]>().prop_map(|salt| Authentication::Md5Password { salt }),
        Just(Authentication::Gss),
        bytes(30).prop_map(Authentication::GssContinue),
        Just(Authentication::Sspi),
        vec(name(), 0..3).prop_map(|mechanisms| Authentication::Sasl { mechanisms }),
        bytes(30).prop_map(Authentication::SaslContinue),
        bytes(30).prop_map(Authentication::SaslFinal),
    ]
}

fn error_fields() -> impl Strategy<Value = ErrorFields> {
    vec((1u8..=255, text()), 0..5).prop_map(|fields| ErrorFields { fields })
}

fn copy_response() -> impl Strategy<Value = CopyResponse> {
    (any::<i8>(), vec(any::<i16>(), 0..4)).prop_map(|(format, column_formats)| CopyResponse {
        format,
        column_formats,
    })
}

fn field() -> impl Strategy<Value = FieldDescription> {
    (
        text(),
        any::<u32>(),
        any::<i16>(),
        any::<u32>(),
        any::<i16>(),
        any::<i32>(),
        any::<i16>(),
    )
        .prop_map(
            |(name, table_oid, column_id, type_oid, type_size, type_modifier, format)| {
                FieldDescription {
                    name,
                    table_oid,
                    column_id,
                    type_oid,
                    type_size,
                    type_modifier,
                    format,
                }
            },
        )
}

fn status() -> impl Strategy<Value = TransactionStatus> {
    prop_oneof![
        Just(TransactionStatus::Idle),
        Just(TransactionStatus::InTransaction),
        Just(TransactionStatus::Failed),
    ]
}

fn backend() -> impl Strategy<Value = BackendMessage> {
    prop_oneof![
        authentication().prop_map(BackendMessage::Authentication),
        (text(), text()).prop_map(|(name, value)| BackendMessage::ParameterStatus { name, value }),
        (any::<i32>(), any::<i32>()).prop_map(|(process_id, secret_key)| {
            BackendMessage::BackendKeyData {
                process_id,
                secret_key,
            }
        }),
        status().prop_map(|status| BackendMessage::ReadyForQuery { status }),
        vec(field(), 0..4).prop_map(|fields| BackendMessage::RowDescription { fields }),
        vec(nullable(), 0..20).prop_map(|values| BackendMessage::DataRow { values }),
        cbytes(20).prop_map(|tag| BackendMessage::CommandComplete { tag }),
        Just(BackendMessage::EmptyQueryResponse),
        error_fields().prop_map(BackendMessage::ErrorResponse),
        error_fields().prop_map(BackendMessage::NoticeResponse),
        (any::<i32>(), text(), text()).prop_map(|(process_id, channel, payload)| {
            BackendMessage::NotificationResponse {
                process_id,
                channel,
                payload,
            }
        }),
        Just(BackendMessage::ParseComplete),
        Just(BackendMessage::BindComplete),
        Just(BackendMessage::CloseComplete),
        Just(BackendMessage::NoData),
        Just(BackendMessage::PortalSuspended),
        vec(any::<u32>(), 0..5).prop_map(|types| BackendMessage::ParameterDescription { types }),
        copy_response().prop_map(BackendMessage::CopyInResponse),
        copy_response().prop_map(BackendMessage::CopyOutResponse),
        copy_response().prop_map(BackendMessage::CopyBothResponse),
        bytes(400).prop_map(BackendMessage::CopyData),
        Just(BackendMessage::CopyDone),
        nullable().prop_map(|value| BackendMessage::FunctionCallResponse { value }),
        (any::<u32>(), vec(text(), 0..3)).prop_map(|(newest_minor, unrecognized)| {
            BackendMessage::NegotiateProtocolVersion {
                newest_minor,
                unrecognized,
            }
        }),
    ]
}

fn startup() -> impl Strategy<Value = StartupPacket> {
    prop_oneof![
        (any::<u16>(), vec((name(), text()), 0..5)).prop_map(|(minor, params)| {
            StartupPacket::Startup(StartupMessage {
                protocol_version: ProtocolVersion { major: 3, minor },
                params,
            })
        }),
        Just(StartupPacket::SslRequest),
        Just(StartupPacket::GssEncRequest),
        (any::<i32>(), any::<i32>()).prop_map(|(process_id, secret_key)| {
            StartupPacket::CancelRequest(CancelRequest {
                process_id,
                secret_key,
            })
        }),
    ]
}

proptest! {
    #[test]
    fn frontend_messages_survive_encode_decode_and_any_split(m in frontend(), hint in any::<usize>()) {
        check_codec(&m, FrontendMessage::encode, FrontendMessage::decode, hint);
    }

    #[test]
    fn backend_messages_survive_encode_decode_and_any_split(m in backend(), hint in any::<usize>()) {
        check_codec(&m, BackendMessage::encode, BackendMessage::decode, hint);
    }

    #[test]
    fn startup_packets_survive_encode_decode_and_any_split(m in startup(), hint in any::<usize>()) {
        check_codec(&m, StartupPacket::encode, StartupPacket::decode, hint);
    }

    #[test]
    fn sasl_initial_response_survives_encode_and_parse(mechanism in name(), data in nullable()) {
        let m = SaslInitialResponse { mechanism, data };
        let mut buf = bytes::BytesMut::new();
        m.encode(&mut buf);
        let Some(FrontendMessage::PasswordMessage(body)) = FrontendMessage::decode(&mut buf, common::MAX).unwrap() else {
            panic!("not a password message");
        };
        prop_assert_eq!(SaslInitialResponse::parse(&body).unwrap(), m);
    }
}

#[test]
fn every_sample_message_survives_encode_decode_and_any_split() {
    for m in common::sample_frontend() {
        check_codec(&m, FrontendMessage::encode, FrontendMessage::decode, 0);
    }
    for m in common::sample_backend() {
        check_codec(&m, BackendMessage::encode, BackendMessage::decode, 0);
    }
    for m in common::sample_startup() {
        check_codec(&m, StartupPacket::encode, StartupPacket::decode, 0);
    }
}
