//! Scenario tests of the tracker: client bytes in, server replies scripted as
//! PostgreSQL sends them, and what is written and whether the link is clean checked
//! after each step.

#![allow(clippy::unwrap_used)]

use bytes::{Bytes, BytesMut};

use super::*;
use crate::backend::{BackendMessage, CopyResponse};
use crate::frontend::FrontendMessage;
use crate::response::ErrorFields;
use crate::status::TransactionStatus;

pub(super) struct H {
    pub(super) link: Link,
    pub(super) reg: StatementRegistry,
    fc: FromClient,
    fs: FromServer,
}

pub(super) fn cfg(prepared: usize) -> LinkConfig {
    LinkConfig {
        max_packet_size: crate::DEFAULT_MAX_PACKET_SIZE,
        max_prepared_statements: prepared,
        statement_mode: false,
    }
}

impl H {
    pub(super) fn new(cfg: LinkConfig) -> H {
        H {
            link: Link::new(
                cfg,
                ClientStatements::default(),
                ServerStatements::default(),
            ),
            reg: StatementRegistry::default(),
            fc: FromClient::default(),
            fs: FromServer::default(),
        }
    }

    /// Feeds client bytes; returns (to server, to client).
    pub(super) fn client(&mut self, data: &[u8]) -> Result<(Vec<u8>, Vec<u8>), LinkError> {
        self.fc.clear();
        self.link.from_client(data, &self.reg, &mut self.fc)?;
        Ok((
            self.fc.to_server.to_vec(data),
            self.fc.to_client.to_vec(&[]),
        ))
    }

    pub(super) fn client_msgs(&mut self, msgs: &[FrontendMessage]) -> Vec<u8> {
        let data = fe(msgs);
        let (to_server, to_client) = self.client(&data).unwrap();
        assert!(to_client.is_empty(), "unexpected made-up replies");
        to_server
    }

    /// Feeds server bytes; returns what goes to the client.
    pub(super) fn server(&mut self, data: &[u8]) -> Result<Vec<u8>, LinkError> {
        self.fs.clear();
        self.link.from_server(data, &mut self.fs)?;
        Ok(self.fs.to_client.to_vec(data))
    }

    pub(super) fn server_msgs(&mut self, msgs: &[BackendMessage]) -> Vec<u8> {
        self.server(&be(msgs)).unwrap()
    }
}

pub(super) fn fe(msgs: &[FrontendMessage]) -> Vec<u8> {
    let mut b = BytesMut::new();
    for m in msgs {
        m.encode(&mut b);
    }
    b.to_vec()
}

pub(super) fn be(msgs: &[BackendMessage]) -> Vec<u8> {
    let mut b = BytesMut::new();
    for m in msgs {
        m.encode(&mut b);
    }
    b.to_vec()
}

fn decode_fe(mut data: &[u8]) -> Vec<FrontendMessage> {
    let mut buf = BytesMut::from(data);
    let mut out = Vec::new();
    while let Some(m) = FrontendMessage::decode(&mut buf, u32::MAX >> 1).unwrap() {
        out.push(m);
    }
    data = &data[data.len()..];
    assert!(buf.is_empty() && data.is_empty(), "trailing bytes");
    out
}

fn decode_be(data: &[u8]) -> Vec<BackendMessage> {
    let mut buf = BytesMut::from(data);
    let mut out = Vec::new();
    while let Some(m) = BackendMessage::decode(&mut buf, u32::MAX >> 1).unwrap() {
        out.push(m);
    }
    assert!(buf.is_empty(), "trailing bytes");
    out
}

pub(super) fn q(sql: &str) -> FrontendMessage {
    FrontendMessage::Query {
        query: Bytes::copy_from_slice(sql.as_bytes()),
    }
}

pub(super) fn parse(name: &str, sql: &str) -> FrontendMessage {
    FrontendMessage::Parse {
        name: Bytes::copy_from_slice(name.as_bytes()),
        query: Bytes::copy_from_slice(sql.as_bytes()),
        param_types: vec![],
    }
}

pub(super) fn bind(stmt: &str) -> FrontendMessage {
    FrontendMessage::Bind {
        portal: Bytes::new(),
        statement: Bytes::copy_from_slice(stmt.as_bytes()),
        param_formats: vec![],
        params: vec![Some(Bytes::from_static(b"param"))],
        result_formats: vec![],
    }
}

pub(super) fn exec() -> FrontendMessage {
    FrontendMessage::Execute {
        portal: Bytes::new(),
        max_rows: 0,
    }
}

pub(super) fn describe(name: &str) -> FrontendMessage {
    FrontendMessage::Describe {
        kind: b'S',
        name: Bytes::copy_from_slice(name.as_bytes()),
    }
}

pub(super) fn close(name: &str) -> FrontendMessage {
    FrontendMessage::Close {
        kind: b'S',
        name: Bytes::copy_from_slice(name.as_bytes()),
    }
}

pub(super) fn z(s: TransactionStatus) -> BackendMessage {
    BackendMessage::ReadyForQuery { status: s }
}

pub(super) const IDLE: TransactionStatus = TransactionStatus::Idle;
pub(super) const IN_TX: TransactionStatus = TransactionStatus::InTransaction;

pub(super) fn err() -> BackendMessage {
    BackendMessage::ErrorResponse(ErrorFields::new("ERROR", "42703", "column does not exist"))
}

pub(super) fn cc(tag: &str) -> BackendMessage {
    BackendMessage::CommandComplete {
        tag: Bytes::copy_from_slice(tag.as_bytes()),
    }
}

fn row(v: &str) -> BackendMessage {
    BackendMessage::DataRow {
        values: vec![Some(Bytes::copy_from_slice(v.as_bytes()))],
    }
}

fn copy_in() -> BackendMessage {
    BackendMessage::CopyInResponse(CopyResponse {
        format: 0,
        column_formats: vec![0],
    })
}

#[test]
fn a_simple_query_streams_both_ways_untouched_and_leaves_the_link_clean() {
    let mut h = H::new(cfg(0));
    let data = fe(&[q("select 1")]);
    h.fc.clear();
    h.link.from_client(&data, &h.reg, &mut h.fc).unwrap();
    assert_eq!(h.fc.to_server.as_single_input(), Some(0..data.len()));
    assert!(!h.link.is_clean());
    let reply = be(&[row("1"), cc("SELECT 1"), z(IDLE)]);
    h.fs.clear();
    h.link.from_server(&reply, &mut h.fs).unwrap();
    assert_eq!(h.fs.to_client.as_single_input(), Some(0..reply.len()));
    assert_eq!((h.fs.readies, h.fs.idle_readies), (1, 1));
    assert!(h.link.is_clean());
}

#[test]
fn a_transaction_opened_through_flush_keeps_the_link() {
    let mut h = H::new(cfg(0));
    h.client_msgs(&[parse("", "BEGIN"), bind(""), exec(), FrontendMessage::Flush]);
    h.server_msgs(&[
        BackendMessage::ParseComplete,
        BackendMessage::BindComplete,
        cc("BEGIN"),
    ]);
    assert!(!h.link.is_clean(), "the server is inside a transaction");
    assert!(h.link.in_transaction());
    h.client_msgs(&[parse("", "COMMIT"), bind(""), exec(), FrontendMessage::Sync]);
    h.server_msgs(&[
        BackendMessage::ParseComplete,
        BackendMessage::BindComplete,
        cc("COMMIT"),
        z(IDLE),
    ]);
    assert!(h.link.is_clean());
}

#[test]
fn an_execute_without_sync_keeps_the_link_until_the_sync_is_answered() {
    let mut h = H::new(cfg(0));
    h.client_msgs(&[parse("", "select 1"), bind(""), exec()]);
    assert!(!h.link.is_clean());
    h.client_msgs(&[FrontendMessage::Sync]);
    h.server_msgs(&[BackendMessage::ParseComplete, BackendMessage::BindComplete]);
    assert!(!h.link.is_clean());
    h.server_msgs(&[row("1"), cc("SELECT 1"), z(IDLE)]);
    assert!(h.link.is_clean());
}

#[test]
fn an_error_in_a_pipeline_skips_to_the_sync_and_a_late_sync_is_still_answered() {
    let mut h = H::new(cfg(0));
    h.client_msgs(&[parse("", "select nonsense"), FrontendMessage::Flush]);
    h.server_msgs(&[err()]);
    assert!(!h.link.is_clean());
    // Sent after the error: the server ignores them until the Sync.
    h.client_msgs(&[bind(""), exec(), q("select 2"), FrontendMessage::Flush]);
    assert!(!h.link.is_clean());
    h.client_msgs(&[FrontendMessage::Sync]);
    h.server_msgs(&[z(IDLE)]);
    assert!(h.link.is_clean(), "the Sync's ReadyForQuery ended the skip");
}

#[test]
fn requests_after_a_failed_one_owe_nothing_but_the_sync() {
    let mut h = H::new(cfg(0));
    h.client_msgs(&[
        parse("", "select nonsense"),
        bind(""),
        exec(),
        q("select 'ignored'"),
        FrontendMessage::Sync,
        q("select 3"),
    ]);
    h.server_msgs(&[err(), z(IDLE)]);
    assert!(!h.link.is_clean(), "the last query is still owed");
    h.server_msgs(&[row("3"), cc("SELECT 1"), z(IDLE)]);
    assert!(h.link.is_clean());
}

#[test]
fn an_error_inside_a_simple_query_waits_for_its_ready_for_query() {
    let mut h = H::new(cfg(0));
    h.client_msgs(&[q("select 1/0"), q("select 1")]);
    h.server_msgs(&[err(), z(IDLE)]);
    assert!(!h.link.is_clean());
    h.server_msgs(&[row("1"), cc("SELECT 1"), z(IDLE)]);
    assert!(h.link.is_clean());
}

#[test]
fn terminate_ends_the_stream_where_it_stands() {
    let mut h = H::new(cfg(0));
    let mut data = fe(&[q("select 1")]);
    data.extend_from_slice(b"X\0\0\0\x04");
    data.extend_from_slice(&fe(&[q("select 2")]));
    h.fc.clear();
    h.link.from_client(&data, &h.reg, &mut h.fc).unwrap();
    assert!(h.fc.terminated);
    assert_eq!(h.fc.to_server.to_vec(&data), fe(&[q("select 1")]));
}

#[test]
fn unknown_types_and_bad_lengths_are_refused_with_pgbouncers_texts() {
    let mut h = H::new(cfg(0));
    let e = h.client(b"y\0\0\0\x04").unwrap_err();
    assert_eq!(e.pgbouncer_message(), "unknown pkt");
    assert_eq!(e.blame(), Blame::Client);
    let mut h = H::new(LinkConfig {
        max_packet_size: 8192,
        ..cfg(0)
    });
    let e = h.client(b"Q\0\0\x40\0select").unwrap_err();
    assert_eq!(
        e.pgbouncer_message(),
        "bad packet header: '510000400073656c'"
    );
    let e = H::new(cfg(0)).client(b"Q\0\0\0\x02").unwrap_err();
    assert!(e
        .pgbouncer_message()
        .starts_with("bad packet header: '5100000002"));
    let e = H::new(cfg(0)).server(b"K\0\0\0\x0c12345678").unwrap_err();
    assert_eq!(e.blame(), Blame::Server);
}

#[test]
fn copy_from_stdin_in_a_simple_query() {
    let mut h = H::new(cfg(0));
    h.client_msgs(&[q("copy t from stdin")]);
    h.server_msgs(&[copy_in()]);
    assert!(!h.link.is_clean());
    h.client_msgs(&[
        FrontendMessage::CopyData(Bytes::from_static(b"1\n")),
        FrontendMessage::Sync, // ignored inside COPY
        FrontendMessage::CopyData(Bytes::from_static(b"2\n")),
        FrontendMessage::CopyDone,
    ]);
    h.server_msgs(&[cc("COPY 2"), z(IDLE)]);
    assert!(h.link.is_clean());
}

#[test]
fn copy_through_extended_protocol_ignores_the_pipelined_sync() {
    // libpq: Parse/Bind/Describe/Execute/Sync, then the data, CopyDone and another Sync.
    let mut h = H::new(cfg(0));
    h.client_msgs(&[
        parse("", "copy t from stdin"),
        bind(""),
        exec(),
        FrontendMessage::Sync,
    ]);
    h.server_msgs(&[
        BackendMessage::ParseComplete,
        BackendMessage::BindComplete,
        copy_in(),
    ]);
    h.client_msgs(&[
        FrontendMessage::CopyData(Bytes::from_static(b"1\n")),
        FrontendMessage::CopyDone,
        FrontendMessage::Sync,
    ]);
    h.server_msgs(&[cc("COPY 1"), z(IDLE)]);
    assert!(h.link.is_clean());
}

#[test]
fn copy_data_sent_before_the_copy_in_response_is_matched_to_the_copy() {
    let mut h = H::new(cfg(0));
    h.client_msgs(&[
        q("copy t from stdin"),
        FrontendMessage::CopyData(Bytes::from_static(b"1\n")),
        FrontendMessage::CopyDone,
        q("select 1"),
    ]);
    h.server_msgs(&[copy_in(), cc("COPY 1"), z(IDLE)]);
    assert!(!h.link.is_clean(), "select 1 is still owed");
    h.server_msgs(&[row("1"), cc("SELECT 1"), z(IDLE)]);
    assert!(h.link.is_clean());
}

#[test]
fn a_copy_that_fails_mid_stream_ends_with_the_queries_ready_for_query() {
    let mut h = H::new(cfg(0));
    h.client_msgs(&[q("copy t from stdin")]);
    h.server_msgs(&[copy_in()]);
    h.client_msgs(&[FrontendMessage::CopyData(Bytes::from_static(b"bad\n"))]);
    h.server_msgs(&[err(), z(IDLE)]);
    // The client goes on sending; the server ignores CopyData and CopyDone now.
    h.client_msgs(&[
        FrontendMessage::CopyData(Bytes::from_static(b"more\n")),
        FrontendMessage::CopyDone,
    ]);
    assert!(h.link.is_clean());
}

#[test]
fn copy_fail_and_stray_copy_messages_outside_copy() {
    let mut h = H::new(cfg(0));
    h.client_msgs(&[q("copy t from stdin")]);
    h.server_msgs(&[copy_in()]);
    h.client_msgs(&[FrontendMessage::CopyFail {
        message: Bytes::from_static(b"no"),
    }]);
    h.server_msgs(&[err(), z(IDLE)]);
    assert!(h.link.is_clean());
    h.client_msgs(&[FrontendMessage::CopyDone]);
    assert!(
        h.link.is_clean(),
        "PostgreSQL ignores CopyDone outside COPY"
    );
}

#[test]
fn statement_mode_refuses_a_transaction_block_without_forwarding_its_ready() {
    let mut h = H::new(LinkConfig {
        statement_mode: true,
        ..cfg(0)
    });
    h.client_msgs(&[q("begin")]);
    let e = h.server(&be(&[cc("BEGIN"), z(IN_TX)])).unwrap_err();
    assert_eq!(
        e.pgbouncer_message(),
        "transaction blocks not allowed in statement pooling mode"
    );
}

#[test]
fn a_notice_or_error_after_ready_makes_the_link_not_clean() {
    let mut h = H::new(cfg(0));
    h.client_msgs(&[q("select 1")]);
    h.server_msgs(&[cc("SELECT 1"), z(IDLE)]);
    assert!(h.link.is_clean());
    h.server_msgs(&[BackendMessage::ErrorResponse(ErrorFields::new(
        "FATAL",
        "57P01",
        "terminating connection due to administrator command",
    ))]);
    assert!(!h.link.is_clean());
    assert!(h.link.is_uncertain());
}

#[test]
fn a_ready_for_query_split_across_chunks_is_written_once_whole() {
    let mut h = H::new(cfg(0));
    h.client_msgs(&[q("select 1")]);
    let reply = be(&[cc("SELECT 1"), z(IDLE)]);
    let (a, b) = reply.split_at(reply.len() - 3);
    let mut got = h.server(a).unwrap();
    assert!(!h.link.is_clean());
    got.extend(h.server(b).unwrap());
    assert_eq!(got, reply);
    assert!(h.link.is_clean());
}

#[test]
fn a_ready_for_query_of_the_wrong_length_is_refused() {
    // Found by the fuzzer: held back until complete, it must be exactly one status byte.
    let mut h = H::new(cfg(0));
    h.client_msgs(&[q("select 1")]);
    let e = h.server(b"Z\0\0\0\x0b\0\x01\0\0\0\x011").unwrap_err();
    assert_eq!(e, LinkError::ServerBrokenReady { len: 11 });
    assert_eq!(e.blame(), Blame::Server);
}

mod prepared;

/// However the last link ended (clean, mid-message, confused, inside COPY), a tracker
/// given back with `take_statements` and reused with `relink` is the tracker
/// `Link::new` returns, and answers the next link's bytes the same way.
#[test]
fn a_relinked_tracker_is_a_new_one_with_its_buffers() {
    let param = BackendMessage::ParameterStatus {
        name: "application_name".into(),
        value: "x".into(),
    };
    let endings: Vec<(Vec<u8>, Vec<u8>)> = vec![
        // A clean transaction with every kind of captured message.
        (
            fe(&[q("discard all")]),
            be(&[param.clone(), cc("DISCARD ALL"), z(IDLE)]),
        ),
        // A ParameterStatus cut in the middle (its capture in progress).
        (
            fe(&[q("set x")]),
            be(std::slice::from_ref(&param))[..9].to_vec(),
        ),
        // A client message cut in the middle, and a transaction left open.
        (
            fe(&[q("begin"), parse("s1", "select 1")])[..20].to_vec(),
            vec![],
        ),
        // A reply nothing asked for: the tracker no longer trusts the server.
        (vec![], be(&[z(IN_TX)])),
        // Inside COPY.
        (fe(&[q("copy t from stdin")]), be(&[copy_in()])),
    ];
    let next_client = fe(&[q("select 1"), parse("s2", "select 2"), bind("s2"), exec()]);
    let next_server = be(&[row("1"), cc("SELECT 1"), z(IDLE), param, z(IN_TX)]);
    for prepared in [0, 100] {
        for (i, (client, server)) in endings.iter().enumerate() {
            let mut used = H::new(cfg(prepared));
            if !client.is_empty() {
                let _ = used.client(client);
            }
            if !server.is_empty() {
                let _ = used.server(server);
            }
            let (names, cache) = used.link.take_statements();
            used.link.relink(cfg(prepared), names, cache);
            let mut fresh = H::new(cfg(prepared));
            assert_eq!(
                format!("{:?}", used.link),
                format!("{:?}", fresh.link),
                "ending {i}, max_prepared_statements {prepared}"
            );
            assert_eq!(
                used.client(&next_client).unwrap(),
                fresh.client(&next_client).unwrap(),
                "ending {i}"
            );
            assert_eq!(
                used.server(&next_server).unwrap(),
                fresh.server(&next_server).unwrap(),
                "ending {i}"
            );
            assert_eq!(format!("{:?}", used.link), format!("{:?}", fresh.link));
        }
    }
}

/// Rows whole in a chunk take a shorter path than rows split across chunks: both must
/// forward the same bytes and leave the same state, whatever the chunk size.
#[test]
fn a_result_set_reads_the_same_in_every_chunk_size() {
    let rows: Vec<BackendMessage> = (0..6).map(|i| row(&"x".repeat(i * 7))).collect();
    let mut reply_msgs = rows.clone();
    reply_msgs.extend([cc("SELECT 6"), z(IDLE)]);
    let reply = be(&reply_msgs);
    let mut whole = H::new(cfg(100));
    whole.client_msgs(&[q("select x")]);
    assert_eq!(whole.server(&reply).unwrap(), reply);
    assert!(whole.link.is_clean());
    for size in 1..reply.len() {
        let mut h = H::new(cfg(100));
        h.client_msgs(&[q("select x")]);
        let mut got = Vec::new();
        for (i, chunk) in reply.chunks(size).enumerate() {
            got.extend(h.server(chunk).unwrap());
            let done: usize = reply.chunks(size).take(i + 1).map(<[u8]>::len).sum();
            assert_eq!(h.link.is_clean(), done == reply.len(), "chunk size {size}");
        }
        assert_eq!(got, reply, "chunk size {size}");
        assert_eq!(format!("{:?}", h.link), format!("{:?}", whole.link));
    }
    // A row longer than max_packet_size is refused on either path.
    let mut small = cfg(0);
    small.max_packet_size = 20;
    let big = be(&[row(&"y".repeat(40))]);
    for size in [big.len(), 3] {
        let mut h = H::new(small);
        h.client_msgs(&[q("select y")]);
        let r: Result<Vec<_>, _> = big.chunks(size).map(|c| h.server(c)).collect();
        assert!(r.is_err(), "chunk size {size}");
    }
}
