//! Entry points for the cargo-fuzz targets in the top-level `fuzz/` directory; the corpus
//! replay test (`tests/fuzz_corpus.rs`) runs the same functions under stable `cargo test`.
//!
//! Each function feeds arbitrary bytes to the decoders (PostgreSQL docs, "Message Formats")
//! and the SASL/SCRAM parsers, and panics only if a decoder breaks its contract: consuming
//! more than it was given, consuming something other than one whole message, or decoding a
//! message that does not survive `decode(encode(m))`. The link tracker's target checks
//! that any chunking of a conversation gives the same decisions as whole chunks, and
//! that the tracker's memory stays bounded.

use std::fmt::Debug;

use bytes::BytesMut;

use crate::auth::md5;
use crate::auth::scram::{ScramClient, ScramCredentials, ScramSecret, ScramServer};
use crate::link::{
    ClientStatements, FromClient, FromServer, Link, LinkConfig, LinkError, ServerStatements,
    StatementRegistry,
};
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

/// One side's bytes in a conversation fed to [`check_link_conversation`].
#[derive(Debug, Clone)]
pub struct Segment {
    /// `true`: the client sent these bytes; `false`: the server did.
    pub from_client: bool,
    /// The bytes.
    pub bytes: Vec<u8>,
    /// Where the second tracker gets them split (clamped to the length).
    pub cut: usize,
}

/// What a tracker made of one segment, for comparing two trackers.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    to_server: Vec<u8>,
    to_client: Vec<u8>,
    terminated: bool,
    params: Vec<(String, String)>,
    readies: (u32, u32),
    error: Option<String>,
}

/// Feeds a conversation to two trackers, one segment whole and one split in two, and
/// panics if they decide differently (output bytes, errors, clean or not), or if a
/// tracker holds more than its bound. Stops at the first error or Terminate.
pub fn check_link_conversation(cfg: LinkConfig, segments: &[Segment]) {
    let registry = StatementRegistry::default();
    let new = || {
        Link::new(
            cfg,
            ClientStatements::default(),
            ServerStatements::default(),
        )
    };
    let (mut whole, mut split) = (new(), new());
    let bound = crate::link::NAME_LIMIT.max(cfg.max_packet_size as usize) + 64 * 1024 + 64;
    for seg in segments {
        let a = feed(&mut whole, &registry, seg, &[&seg.bytes]);
        let cut = seg.cut.min(seg.bytes.len());
        let (x, y) = seg.bytes.split_at(cut);
        let b = feed(&mut split, &registry, seg, &[x, y]);
        assert_eq!(a, b, "whole and split feeds decided differently");
        if a.error.is_some() {
            return; // both links are unusable now
        }
        assert_eq!(whole.is_clean(), split.is_clean());
        assert_eq!(whole.owed(), split.owed());
        assert!(
            whole.held_bytes() <= bound,
            "holds {} bytes",
            whole.held_bytes()
        );
        assert!(
            split.held_bytes() <= bound,
            "holds {} bytes",
            split.held_bytes()
        );
        if a.terminated {
            return;
        }
    }
}

fn feed(link: &mut Link, registry: &StatementRegistry, seg: &Segment, parts: &[&[u8]]) -> Seen {
    let mut seen = Seen {
        to_server: Vec::new(),
        to_client: Vec::new(),
        terminated: false,
        params: Vec::new(),
        readies: (0, 0),
        error: None,
    };
    for part in parts {
        let result = if seg.from_client {
            let mut out = FromClient::default();
            let r = link.from_client(part, registry, &mut out);
            seen.to_server.extend(out.to_server.to_vec(part));
            seen.to_client.extend(out.to_client.to_vec(&[]));
            seen.terminated |= out.terminated;
            r
        } else {
            let mut out = FromServer::default();
            let r = link.from_server(part, &mut out);
            seen.to_client.extend(out.to_client.to_vec(part));
            seen.params.extend(out.params);
            seen.readies.0 += out.readies;
            seen.readies.1 += out.idle_readies;
            r
        };
        if let Err(e) = result {
            // Output before an error is dropped by callers; the hex of a bad header
            // shows what was buffered, which depends on the chunking.
            seen.to_server.clear();
            seen.to_client.clear();
            seen.error = Some(match e {
                LinkError::ClientBadHeader { len, max, .. } => format!("client header {len}/{max}"),
                LinkError::ServerBadHeader { len, max, .. } => format!("server header {len}/{max}"),
                other => other.to_string(),
            });
            return seen;
        }
        if seen.terminated {
            return seen;
        }
    }
    seen
}

/// Reads `data` as a tracker conversation: byte 0 picks the configuration, then each
/// segment is a head byte (bit 0: from the server; the rest: where to split), a
/// big-endian `u16` length and the bytes. See [`check_link_conversation`].
pub fn fuzz_link(data: &[u8]) {
    let Some((&mode, mut rest)) = data.split_first() else {
        return;
    };
    let cfg = LinkConfig {
        max_packet_size: if mode & 1 != 0 {
            SMALL_MAX
        } else {
            DEFAULT_MAX_PACKET_SIZE
        },
        max_prepared_statements: if mode & 2 != 0 {
            usize::from(mode >> 4) + 1
        } else {
            0
        },
        statement_mode: mode & 4 != 0,
    };
    let mut segments = Vec::new();
    while let [head, hi, lo, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(tail.len());
        segments.push(Segment {
            from_client: head & 1 == 0,
            bytes: tail[..len].to_vec(),
            cut: usize::from(head >> 1) * 4,
        });
        rest = &tail[len..];
    }
    check_link_conversation(cfg, &segments);
}
