//! Entry points for the cargo-fuzz targets in the top-level `fuzz/` directory; the corpus
//! replay test (`tests/fuzz_corpus.rs`) runs the same functions under stable `cargo test`.
//!
//! Each function feeds arbitrary bytes to the decoders (PostgreSQL docs, "Message Formats")
//! and the SASL/SCRAM parsers, and panics only if a decoder breaks its contract: consuming
//! more than it was given, consuming something other than one whole message, or decoding a
//! message that does not survive `decode(encode(m))`.

use std::fmt::Debug;

use bytes::BytesMut;

use crate::auth::md5;
use crate::auth::scram::{ScramClient, ScramCredentials, ScramSecret, ScramServer};
use crate::{
    password_from_body, BackendMessage, DecodeError, FrontendMessage, Header, SaslInitialResponse,
    StartupPacket, DEFAULT_MAX_PACKET_SIZE,
};

/// A small limit, to exercise `MessageTooLarge` as well as the default.
const SMALL_MAX: u32 = 8192;

type Decode<M> = fn(&mut BytesMut, u32) -> Result<Option<M>, DecodeError>;

/// Decodes `data` as a stream of client messages, and walks it with [`Header::peek`].
pub fn fuzz_frontend(data: &[u8]) {
    decode_all(data, true, FrontendMessage::decode, FrontendMessage::encode);
    skip_all(data);
}

/// Decodes `data` as a stream of server messages, and walks it with [`Header::peek`].
pub fn fuzz_backend(data: &[u8]) {
    decode_all(data, true, BackendMessage::decode, BackendMessage::encode);
    skip_all(data);
}

/// Decodes `data` as startup-phase packets, then the rest as client messages.
pub fn fuzz_startup(data: &[u8]) {
    decode_all(data, false, StartupPacket::decode, StartupPacket::encode);
    let mut buf = BytesMut::from(data);
    if let Ok(Some(_)) = StartupPacket::decode(&mut buf, DEFAULT_MAX_PACKET_SIZE) {
        fuzz_frontend(&buf);
    }
}

/// Feeds `data` to every SASL, SCRAM and password parser. A `\n` splits it into a first and
/// a second message of the exchange.
pub fn fuzz_scram(data: &[u8]) {
    let _ = ScramSecret::parse(&String::from_utf8_lossy(data));
    let _ = SaslInitialResponse::parse(data);
    let _ = password_from_body(data);
    let _ = md5::verify("pw", "user", [1, 2, 3, 4], data);
    let (first, second) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let secret = ScramSecret::from_password(b"pw", b"salt", 1);
    if let Ok((server, _)) = ScramServer::new(secret, first, b"fuzz") {
        let _ = server.finish(second);
    }
    // Keys, not a password: a hostile iteration count must not slow the fuzzer down.
    let keys = ScramCredentials::Keys {
        client_key: [1; 32],
        server_key: [2; 32],
    };
    // The client nonce is base64("fuzz") = "ZnV6eg==".
    let (mut client, _) = ScramClient::new(keys, b"fuzz");
    if client.handle_server_first(first).is_ok() {
        let _ = client.verify_server_final(second);
    }
}

fn decode_all<M: PartialEq + Debug>(
    data: &[u8],
    tagged: bool,
    decode: Decode<M>,
    encode: fn(&M, &mut BytesMut),
) {
    for max in [DEFAULT_MAX_PACKET_SIZE, SMALL_MAX] {
        let mut buf = BytesMut::from(data);
        loop {
            let before = buf.len();
            let header = Header::peek(&buf, max);
            match decode(&mut buf, max) {
                Ok(Some(message)) => {
                    let consumed = before - buf.len();
                    assert!(consumed > 0, "decoded a message from nothing");
                    if tagged {
                        let Ok(Some(h)) = header else {
                            panic!("decoded a message Header::peek rejects")
                        };
                        assert_eq!(consumed, h.total_len(), "consumed a different length");
                    }
                    check_round_trip(&message, decode, encode);
                }
                Ok(None) => {
                    assert_eq!(buf.len(), before, "consumed bytes without a message");
                    break;
                }
                Err(_) => {
                    assert!(buf.len() <= before);
                    break;
                }
            }
        }
    }
}

fn check_round_trip<M: PartialEq + Debug>(
    message: &M,
    decode: Decode<M>,
    encode: fn(&M, &mut BytesMut),
) {
    let mut encoded = BytesMut::new();
    encode(message, &mut encoded);
    match decode(&mut encoded, DEFAULT_MAX_PACKET_SIZE) {
        Ok(Some(again)) => assert_eq!(&again, message, "decode(encode(m)) != m"),
        other => panic!("re-encoded {message:?} does not decode: {other:?}"),
    }
    assert!(encoded.is_empty(), "re-encoded message has trailing bytes");
}

fn skip_all(data: &[u8]) {
    let mut rest = data;
    while let Ok(Some(h)) = Header::peek(rest, SMALL_MAX) {
        assert!(h.total_len() >= Header::SIZE);
        let Some(next) = rest.get(h.total_len()..) else {
            break;
        };
        rest = next;
    }
}
