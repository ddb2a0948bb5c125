//! Decoder robustness: arbitrary bytes never panic and never consume more than given, plus
//! targeted hostile inputs.

#![allow(clippy::unwrap_used)]

mod common;

use bytes::{BufMut, BytesMut};
use pgbouncer_protocol::auth::scram::{ScramSecret, ScramServer};
use pgbouncer_protocol::fuzzing;
use pgbouncer_protocol::*;
use proptest::collection::vec;
use proptest::prelude::*;

const FRONTEND_TAGS: &[u8] = b"QPBDECSHXdcfFp";
const BACKEND_TAGS: &[u8] = b"RSKZTDCIENA123nstGHWdcVv";

/// A header whose length matches a random body, so the body parsers get exercised.
fn framed(tags: &'static [u8]) -> impl Strategy<Value = Vec<u8>> {
    (prop::sample::select(tags), vec(any::<u8>(), 0..64)).prop_map(|(tag, body)| {
        let mut out = vec![tag];
        out.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        out.extend_from_slice(&body);
        out
    })
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_break_the_frontend_decoder(data in vec(any::<u8>(), 0..512)) {
        fuzzing::fuzz_frontend(&data);
    }

    #[test]
    fn framed_garbage_never_breaks_the_frontend_decoder(frames in vec(framed(FRONTEND_TAGS), 1..4)) {
        fuzzing::fuzz_frontend(&frames.concat());
    }

    #[test]
    fn arbitrary_bytes_never_break_the_backend_decoder(data in vec(any::<u8>(), 0..512)) {
        fuzzing::fuzz_backend(&data);
    }

    #[test]
    fn framed_garbage_never_breaks_the_backend_decoder(frames in vec(framed(BACKEND_TAGS), 1..4)) {
        fuzzing::fuzz_backend(&frames.concat());
    }

    #[test]
    fn arbitrary_bytes_never_break_the_startup_decoder(data in vec(any::<u8>(), 0..512)) {
        fuzzing::fuzz_startup(&data);
    }

    #[test]
    fn startup_packets_with_garbage_params_never_break_the_decoder(
        minor in any::<u16>(),
        body in vec(any::<u8>(), 0..64),
    ) {
        let mut data = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        data.extend_from_slice(&((3u32 << 16) | u32::from(minor)).to_be_bytes());
        data.extend_from_slice(&body);
        fuzzing::fuzz_startup(&data);
    }

    #[test]
    fn header_peek_never_panics_and_never_claims_less_than_a_header(
        data in vec(any::<u8>(), 0..16),
        max in any::<u32>(),
    ) {
        if let Ok(Some(h)) = Header::peek(&data, max) {
            prop_assert!(h.len >= 4 && h.len <= max);
            prop_assert!(h.total_len() >= Header::SIZE);
        }
    }

    #[test]
    fn arbitrary_bytes_never_break_the_sasl_and_scram_parsers(data in vec(any::<u8>(), 0..300)) {
        fuzzing::fuzz_scram(&data);
    }

    #[test]
    fn scram_shaped_garbage_never_breaks_the_server(
        nonce in "[ -~]{0,40}",
        tail in "[ -~]{0,80}",
    ) {
        let secret = ScramSecret::from_password(b"pw", b"salt", 1);
        let first = format!("n,,n=,r={nonce}");
        if let Ok((server, _)) = ScramServer::new(secret, first.as_bytes(), b"x") {
            let _ = server.finish(tail.as_bytes());
        }
    }

    #[test]
    fn arbitrary_text_never_breaks_scram_secret_parsing(s in "SCRAM-SHA-256\\$[0-9a-zA-Z+/=:$]{0,120}") {
        if let Some(secret) = ScramSecret::parse(&s) {
            prop_assert_eq!(ScramSecret::parse(&secret.to_string()), Some(secret));
        }
    }
}

#[test]
fn huge_declared_length_is_too_large_without_allocating() {
    for decode in [
        |b: &mut BytesMut| FrontendMessage::decode(b, 8192).map(|_| ()),
        |b: &mut BytesMut| BackendMessage::decode(b, 8192).map(|_| ()),
    ] {
        let mut buf = BytesMut::from(&b"D\x7f\xff\xff\xff"[..]);
        let capacity = buf.capacity();
        assert_eq!(
            decode(&mut buf),
            Err(DecodeError::MessageTooLarge {
                len: 0x7fff_ffff,
                max: 8192
            })
        );
        assert_eq!(buf.capacity(), capacity);
        assert_eq!(buf.len(), 5);
    }
    assert_eq!(
        DecodeError::MessageTooLarge {
            len: 9000,
            max: 8192
        }
        .to_string(),
        "message length 9000 exceeds max_packet_size 8192"
    );
}

#[test]
fn lengths_zero_and_three_are_too_small() {
    for len in [0u32, 3] {
        let mut buf = BytesMut::new();
        buf.put_u8(b'Q');
        buf.put_u32(len);
        assert_eq!(
            FrontendMessage::decode(&mut buf, 8192),
            Err(DecodeError::LengthTooSmall { len })
        );
        assert_eq!(
            BackendMessage::decode(&mut buf, 8192),
            Err(DecodeError::LengthTooSmall { len })
        );
        assert_eq!(
            Header::peek(&buf, 8192),
            Err(DecodeError::LengthTooSmall { len })
        );
    }
    assert!(DecodeError::LengthTooSmall { len: 3 }
        .pgbouncer_message()
        .starts_with("bad packet header: '"));
}

#[test]
fn truncated_startup_packet_is_incomplete() {
    let wire = common::encoded(&common::sample_startup()[0], StartupPacket::encode);
    for cut in 0..wire.len() {
        let mut buf = BytesMut::from(&wire[..cut]);
        assert_eq!(StartupPacket::decode(&mut buf, 8192), Ok(None));
        assert_eq!(buf.len(), cut);
    }
}

#[test]
fn startup_without_terminator_is_an_invalid_layout() {
    let mut buf = BytesMut::new();
    buf.put_u32(8 + 9);
    buf.put_u32(196608);
    buf.put_slice(b"user\0bob\0");
    let err = StartupPacket::decode(&mut buf, 8192).unwrap_err();
    assert_eq!(err, DecodeError::InvalidStartupLayout);
    assert_eq!(
        err.pgbouncer_message(),
        "invalid startup packet layout: expected terminator as last byte"
    );
}

#[test]
fn v2_startup_is_an_unsupported_protocol_version() {
    let mut buf = BytesMut::new();
    buf.put_u32(296);
    buf.put_u32(0x0002_0000);
    let err = StartupPacket::decode(&mut buf, 8192).unwrap_err();
    assert_eq!(
        err,
        DecodeError::UnsupportedProtocolVersion { major: 2, minor: 0 }
    );
    assert_eq!(err.pgbouncer_message(), "old V2 protocol not supported");
}

#[test]
fn unknown_tags_are_errors_in_both_directions() {
    let mut buf = BytesMut::from(&b"!\0\0\0\x04"[..]);
    assert_eq!(
        FrontendMessage::decode(&mut buf, 8192),
        Err(DecodeError::UnknownTag { tag: b'!' })
    );
    let mut buf = BytesMut::from(&b"!\0\0\0\x04"[..]);
    assert_eq!(
        BackendMessage::decode(&mut buf, 8192),
        Err(DecodeError::UnknownTag { tag: b'!' })
    );
}
