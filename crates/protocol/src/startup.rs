//! Untagged startup-phase packets: StartupMessage, SSLRequest, GSSENCRequest, CancelRequest.
//!
//! PostgreSQL docs, "Message Formats" and "Message Flow: Start-up"; the layout checks and
//! the 10000-byte limit mirror `ProcessStartupPacket` in PostgreSQL's `backend_startup.c`.

use bytes::{BufMut, Bytes, BytesMut};

use crate::cursor::Cursor;
use crate::decode::DecodeError;
use crate::header::{finish, put_cstr, reserve_for};

/// PostgreSQL's `MAX_STARTUP_PACKET_LENGTH`: longer startup packets are refused.
pub const MAX_STARTUP_PACKET_LENGTH: u32 = 10000;

/// Request code of an SSLRequest (1234.5679).
pub const SSL_REQUEST_CODE: u32 = 80877103;
/// The one-byte answer to an SSLRequest or GSSENCRequest that is refused.
pub const ENCRYPTION_REFUSED: &[u8] = b"N";
/// The one-byte answer to an SSLRequest that is accepted (the TLS handshake follows).
pub const ENCRYPTION_ACCEPTED: &[u8] = b"S";

/// A server's one-byte answer to an SSLRequest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslAnswer {
    /// `S`: the TLS handshake follows.
    Accepted,
    /// `N`: go on in clear text (or give up).
    Refused,
    /// Anything else (an ErrorResponse from a server too old to know SSLRequest).
    Other(u8),
}

impl SslAnswer {
    /// Reads the answer byte.
    pub fn parse(byte: u8) -> SslAnswer {
        match byte {
            b'S' => SslAnswer::Accepted,
            b'N' => SslAnswer::Refused,
            other => SslAnswer::Other(other),
        }
    }
}

/// Whether a connection's first byte starts a TLS handshake record (PostgreSQL 17
/// direct TLS, no SSLRequest first). A startup packet starts with its length, whose
/// first byte is 0 for every legal length.
pub fn is_direct_tls(first: u8) -> bool {
    first == 0x16
}

/// Request code of a GSSENCRequest (1234.5680).
pub const GSSENC_REQUEST_CODE: u32 = 80877104;
/// Request code of a CancelRequest (1234.5678).
pub const CANCEL_REQUEST_CODE: u32 = 80877102;

/// A protocol version as sent in a StartupMessage (`major << 16 | minor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProtocolVersion {
    /// Major version; only 3 is supported.
    pub major: u16,
    /// Minor version.
    pub minor: u16,
}

impl ProtocolVersion {
    /// Protocol 3.0, the version PgBouncer speaks.
    pub const V3_0: ProtocolVersion = ProtocolVersion { major: 3, minor: 0 };

    /// The 32-bit code on the wire.
    pub fn code(self) -> u32 {
        (u32::from(self.major) << 16) | u32::from(self.minor)
    }

    /// Splits a 32-bit code.
    pub fn from_code(code: u32) -> Self {
        ProtocolVersion {
            major: (code >> 16) as u16,
            minor: (code & 0xffff) as u16,
        }
    }
}

/// A packet of the startup phase, before any tagged message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupPacket {
    /// StartupMessage: protocol version and parameters.
    Startup(StartupMessage),
    /// SSLRequest.
    SslRequest,
    /// GSSENCRequest.
    GssEncRequest,
    /// CancelRequest.
    CancelRequest(CancelRequest),
}

/// A StartupMessage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartupMessage {
    /// Requested protocol version (major 3).
    pub protocol_version: ProtocolVersion,
    /// Parameters in the order sent (`user`, `database`, `options`, ...).
    ///
    /// Names must be non-empty and neither names nor values may contain NUL, or the encoded
    /// packet will not decode to the same value.
    pub params: Vec<(String, String)>,
}

/// A CancelRequest: the key from BackendKeyData of the session to cancel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CancelRequest {
    /// Process ID from BackendKeyData.
    pub process_id: i32,
    /// Secret key from BackendKeyData.
    pub secret_key: i32,
}

impl StartupMessage {
    /// A protocol 3.0 StartupMessage.
    pub fn new(params: Vec<(String, String)>) -> Self {
        StartupMessage {
            protocol_version: ProtocolVersion::V3_0,
            params,
        }
    }

    /// The value of the first parameter called `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Writes the packet.
    pub fn encode(&self, buf: &mut BytesMut) {
        let at = buf.len();
        buf.put_u32(0);
        buf.put_u32(self.protocol_version.code());
        for (name, value) in &self.params {
            put_cstr(buf, name.as_bytes());
            put_cstr(buf, value.as_bytes());
        }
        buf.put_u8(0);
        finish(buf, at);
    }

    fn decode_body(version: ProtocolVersion, body: Bytes) -> Result<Self, DecodeError> {
        // PostgreSQL accepts any layout error only as this one message.
        if body.last() != Some(&0) {
            return Err(DecodeError::InvalidStartupLayout);
        }
        // One NUL ends each name and value, one the list: the pairs, counted up front
        // so the list is allocated once.
        let pairs = body.iter().filter(|&&b| b == 0).count() / 2;
        let mut cur = Cursor::new(body);
        let mut params = Vec::with_capacity(pairs);
        loop {
            let name = cur
                .cstr("startup parameter name")
                .map_err(|_| DecodeError::InvalidStartupLayout)?;
            if name.is_empty() {
                break;
            }
            let value = cur
                .cstr("startup parameter value")
                .map_err(|_| DecodeError::InvalidStartupLayout)?;
            params.push((
                utf8(name, "startup parameter name")?,
                utf8(value, "startup parameter value")?,
            ));
        }
        if cur.remaining() != 0 {
            return Err(DecodeError::InvalidStartupLayout);
        }
        Ok(StartupMessage {
            protocol_version: version,
            params,
        })
    }
}

impl StartupPacket {
    /// Decodes one startup-phase packet from the front of `buf`.
    ///
    /// `Ok(None)` while incomplete (nothing consumed); on `Some` exactly one packet is consumed.
    /// The length is checked (at least 8, at most `min(10000, max_packet_size)`, exactly 8 for
    /// SSL/GSS requests and 16 for cancel requests) and the protocol version is checked before
    /// waiting for the body.
    pub fn decode(
        buf: &mut BytesMut,
        max_packet_size: u32,
    ) -> Result<Option<StartupPacket>, DecodeError> {
        let &[a, b, c, d, ..] = &buf[..] else {
            return Ok(None);
        };
        let len = u32::from_be_bytes([a, b, c, d]);
        if len < 8 {
            return Err(DecodeError::LengthTooSmall { len });
        }
        let max = max_packet_size.min(MAX_STARTUP_PACKET_LENGTH);
        if len > max {
            return Err(DecodeError::MessageTooLarge { len, max });
        }
        let &[_, _, _, _, e, f, g, h, ..] = &buf[..] else {
            return Ok(None);
        };
        let code = u32::from_be_bytes([e, f, g, h]);
        let expect_len = |expected: u32| {
            if len == expected {
                Ok(())
            } else {
                Err(DecodeError::UnexpectedLength { len, expected })
            }
        };
        match code {
            SSL_REQUEST_CODE | GSSENC_REQUEST_CODE => expect_len(8)?,
            CANCEL_REQUEST_CODE => expect_len(16)?,
            _ => {
                let version = ProtocolVersion::from_code(code);
                if version.major != 3 {
                    return Err(DecodeError::UnsupportedProtocolVersion {
                        major: version.major,
                        minor: version.minor,
                    });
                }
            }
        }
        let total = len as usize;
        if buf.len() < total {
            reserve_for(buf, total);
            return Ok(None);
        }
        let packet = buf.split_to(total).freeze();
        let body = packet.slice(8..);
        let decoded = match code {
            SSL_REQUEST_CODE => StartupPacket::SslRequest,
            GSSENC_REQUEST_CODE => StartupPacket::GssEncRequest,
            CANCEL_REQUEST_CODE => {
                let mut cur = Cursor::new(body);
                let process_id = cur.i32("process id")?;
                let secret_key = cur.i32("secret key")?;
                StartupPacket::CancelRequest(CancelRequest {
                    process_id,
                    secret_key,
                })
            }
            _ => StartupPacket::Startup(StartupMessage::decode_body(
                ProtocolVersion::from_code(code),
                body,
            )?),
        };
        Ok(Some(decoded))
    }

    /// Writes the packet.
    pub fn encode(&self, buf: &mut BytesMut) {
        match self {
            StartupPacket::Startup(m) => m.encode(buf),
            StartupPacket::SslRequest => {
                buf.put_u32(8);
                buf.put_u32(SSL_REQUEST_CODE);
            }
            StartupPacket::GssEncRequest => {
                buf.put_u32(8);
                buf.put_u32(GSSENC_REQUEST_CODE);
            }
            StartupPacket::CancelRequest(c) => {
                buf.put_u32(16);
                buf.put_u32(CANCEL_REQUEST_CODE);
                buf.put_i32(c.process_id);
                buf.put_i32(c.secret_key);
            }
        }
    }
}

fn utf8(raw: Bytes, field: &'static str) -> Result<String, DecodeError> {
    String::from_utf8(raw.to_vec()).map_err(|_| DecodeError::InvalidUtf8 { field })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn raw(len: u32, code: u32, body: &[u8]) -> BytesMut {
        let mut b = BytesMut::new();
        b.put_u32(len);
        b.put_u32(code);
        b.put_slice(body);
        b
    }

    #[test]
    fn truncated_startup_packet_waits_for_more() {
        let mut buf = raw(20, 196608, b"user\0");
        assert_eq!(StartupPacket::decode(&mut buf, 8192), Ok(None));
        assert_eq!(buf.len(), 13);
    }

    #[test]
    fn startup_without_terminator_is_an_invalid_layout() {
        let mut buf = raw(17, 196608, b"user\0bob\0");
        assert_eq!(
            StartupPacket::decode(&mut buf, 8192),
            Err(DecodeError::InvalidStartupLayout)
        );
        assert_eq!(
            DecodeError::InvalidStartupLayout.to_string(),
            "invalid startup packet layout: expected terminator as last byte"
        );
    }

    #[test]
    fn parameter_without_value_is_an_invalid_layout() {
        let mut buf = raw(14, 196608, b"user\0\0");
        assert_eq!(
            StartupPacket::decode(&mut buf, 8192),
            Err(DecodeError::InvalidStartupLayout)
        );
    }

    #[test]
    fn v2_startup_is_rejected_with_pgbouncer_text() {
        let mut buf = raw(296, 2 << 16, b"");
        let err = StartupPacket::decode(&mut buf, 8192).unwrap_err();
        assert_eq!(
            err,
            DecodeError::UnsupportedProtocolVersion { major: 2, minor: 0 }
        );
        assert_eq!(err.pgbouncer_message(), "old V2 protocol not supported");
    }

    #[test]
    fn oversized_startup_is_rejected_before_the_body_arrives() {
        let mut buf = raw(10001, 196608, b"");
        assert_eq!(
            StartupPacket::decode(&mut buf, DEFAULT_MAX),
            Err(DecodeError::MessageTooLarge {
                len: 10001,
                max: 10000
            })
        );
    }
    const DEFAULT_MAX: u32 = crate::header::DEFAULT_MAX_PACKET_SIZE;

    #[test]
    fn cancel_request_must_be_sixteen_bytes() {
        let mut buf = raw(12, CANCEL_REQUEST_CODE, b"\0\0\0\x01");
        assert_eq!(
            StartupPacket::decode(&mut buf, 8192),
            Err(DecodeError::UnexpectedLength {
                len: 12,
                expected: 16
            })
        );
    }

    #[test]
    fn minor_version_is_kept_and_params_are_found_by_name() {
        let mut buf = raw(0, (3 << 16) | 2, b"user\0bob\0database\0db\0\0");
        let len = buf.len() as u32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        let Some(StartupPacket::Startup(m)) = StartupPacket::decode(&mut buf, 8192).unwrap() else {
            panic!("not a startup message")
        };
        assert_eq!(m.protocol_version, ProtocolVersion { major: 3, minor: 2 });
        assert_eq!(m.param("database"), Some("db"));
        assert_eq!(m.param("nope"), None);
        assert!(buf.is_empty());
    }
}
