//! Prepared-statement mode: renaming, made-up and swallowed replies in protocol order,
//! the per-server LRU, and undoing what the server never ran.

use super::*;

fn names(out: &[u8]) -> Vec<String> {
    decode_fe(out)
        .into_iter()
        .map(|m| match m {
            FrontendMessage::Parse { name, .. } => format!("P {}", String::from_utf8_lossy(&name)),
            FrontendMessage::Bind { statement, .. } => {
                format!("B {}", String::from_utf8_lossy(&statement))
            }
            FrontendMessage::Describe { name, .. } => {
                format!("D {}", String::from_utf8_lossy(&name))
            }
            FrontendMessage::Close { name, .. } => format!("C {}", String::from_utf8_lossy(&name)),
            FrontendMessage::Execute { .. } => "E".into(),
            FrontendMessage::Sync => "S".into(),
            other => format!("{other:?}"),
        })
        .collect()
}

fn tags(out: &[u8]) -> String {
    decode_be(out).iter().map(|m| m.tag() as char).collect()
}

/// A second link on another server, sharing the registry and the client's names.
fn relink(h: H, server: ServerStatements) -> H {
    let (client, _) = h.link.into_statements();
    H {
        link: Link::new(cfg(100), client, server),
        reg: h.reg,
        fc: FromClient::default(),
        fs: FromServer::default(),
    }
}

#[test]
fn a_named_statement_is_renamed_and_prepared_again_on_a_server_that_lacks_it() {
    let mut h = H::new(cfg(100));
    let out = h.client_msgs(&[
        parse("s1", "select $1"),
        bind("s1"),
        exec(),
        FrontendMessage::Sync,
    ]);
    assert_eq!(names(&out), ["P PGBOUNCER_1", "B PGBOUNCER_1", "E", "S"]);
    let got = h.server_msgs(&[
        BackendMessage::ParseComplete,
        BackendMessage::BindComplete,
        cc("SELECT 1"),
        z(IDLE),
    ]);
    assert_eq!(tags(&got), "12CZ");
    assert!(h.link.is_clean());
    assert_eq!(h.link.take_counts().client_parses, 1);
    // The next transaction lands on a fresh server: a Parse is injected, its reply
    // swallowed.
    let mut h = relink(h, ServerStatements::default());
    let out = h.client_msgs(&[bind("s1"), exec(), FrontendMessage::Sync]);
    assert_eq!(names(&out), ["P PGBOUNCER_1", "B PGBOUNCER_1", "E", "S"]);
    let got = h.server_msgs(&[
        BackendMessage::ParseComplete,
        BackendMessage::BindComplete,
        cc("SELECT 1"),
        z(IDLE),
    ]);
    assert_eq!(tags(&got), "2CZ");
    assert!(h.link.is_clean());
    let c = h.link.take_counts();
    assert_eq!((c.client_parses, c.server_parses, c.binds), (0, 1, 1));
}

#[test]
fn a_parse_the_server_already_has_is_answered_in_its_turn() {
    let mut h = H::new(cfg(100));
    h.client_msgs(&[parse("a", "select 1"), FrontendMessage::Sync]);
    h.server_msgs(&[BackendMessage::ParseComplete, z(IDLE)]);
    // Another name for the same text: nothing goes to the server for it, and its
    // ParseComplete comes after the reply to the query before it.
    let out = h.client_msgs(&[q("select 2"), parse("b", "select 1"), FrontendMessage::Sync]);
    assert_eq!(names(&out)[1..], ["S"]);
    let got = h.server_msgs(&[row("2"), cc("SELECT 1"), z(IDLE)]);
    assert_eq!(
        tags(&got),
        "DCZ1",
        "ParseComplete only after the query's ReadyForQuery"
    );
    assert!(!h.link.is_clean());
    let got = h.server_msgs(&[z(IDLE)]);
    assert_eq!(tags(&got), "Z");
    assert!(h.link.is_clean());
}

#[test]
fn close_of_a_statement_is_answered_by_us_in_order() {
    let mut h = H::new(cfg(100));
    h.client_msgs(&[parse("a", "select 1"), FrontendMessage::Sync]);
    h.server_msgs(&[BackendMessage::ParseComplete, z(IDLE)]);
    // Nothing outstanding: answered at once.
    let (to_server, to_client) = h.client(&fe(&[close("a")])).unwrap();
    assert!(to_server.is_empty());
    assert_eq!(tags(&to_client), "3");
    assert!(h.link.client_statements().is_empty());
    assert!(h.link.is_clean());
}

#[test]
fn the_server_cache_is_an_lru_of_max_prepared_statements() {
    let mut h = H::new(cfg(2));
    let mut msgs = Vec::new();
    for i in 0..3 {
        msgs.push(parse(&format!("s{i}"), &format!("select {i}")));
    }
    msgs.push(FrontendMessage::Sync);
    let out = h.client_msgs(&msgs);
    assert_eq!(
        names(&out),
        [
            "P PGBOUNCER_1",
            "P PGBOUNCER_2",
            "P PGBOUNCER_3",
            "C PGBOUNCER_1",
            "S"
        ]
    );
    let got = h.server_msgs(&[
        BackendMessage::ParseComplete,
        BackendMessage::ParseComplete,
        BackendMessage::ParseComplete,
        BackendMessage::CloseComplete,
        z(IDLE),
    ]);
    assert_eq!(
        tags(&got),
        "111Z",
        "the eviction's CloseComplete is swallowed"
    );
    assert_eq!(h.link.server_statements().ids_by_age(), vec![2, 3]);
    // Using s0 again prepares it again and evicts the least recently used (2).
    let out = h.client_msgs(&[bind("s0"), exec(), FrontendMessage::Sync]);
    assert_eq!(
        names(&out),
        ["P PGBOUNCER_1", "C PGBOUNCER_2", "B PGBOUNCER_1", "E", "S"]
    );
}

#[test]
fn name_reuse_and_unknown_names_close_the_client_with_pgbouncers_errors() {
    let mut h = H::new(cfg(100));
    h.client_msgs(&[parse("a", "select 1")]);
    let e = h.client(&fe(&[parse("a", "select 2")])).unwrap_err();
    assert_eq!(
        e.pgbouncer_message(),
        "prepared statement name is already in use"
    );
    let mut h = H::new(cfg(100));
    let e = h.client(&fe(&[bind("nope")])).unwrap_err();
    assert_eq!(e.pgbouncer_message(), "prepared statement did not exist");
    let e = H::new(cfg(100))
        .client(&fe(&[describe("nope")]))
        .unwrap_err();
    assert_eq!(
        e,
        LinkError::PreparedNotFound {
            name: "nope".into()
        }
    );
}

#[test]
fn what_the_server_skipped_after_an_error_is_undone() {
    let mut h = H::new(cfg(100));
    h.client_msgs(&[parse("kept", "select 0"), FrontendMessage::Sync]);
    h.server_msgs(&[BackendMessage::ParseComplete, z(IDLE)]);
    // A failing Parse, then a Parse and a Close the server skips.
    h.client_msgs(&[
        parse("bad", "select nonsense"),
        parse("good", "select 1"),
        close("kept"),
        FrontendMessage::Sync,
    ]);
    let got = h.server_msgs(&[err(), z(IDLE)]);
    assert_eq!(
        tags(&got),
        "EZ",
        "no made-up CloseComplete for a skipped Close"
    );
    let c = h.link.client_statements();
    assert!(c.get(b"bad").is_none(), "the failed Parse created nothing");
    assert!(
        c.get(b"good").is_none(),
        "the skipped Parse created nothing"
    );
    assert!(c.get(b"kept").is_some(), "the skipped Close closed nothing");
    assert_eq!(h.link.server_statements().len(), 1);
    assert!(h.link.is_clean());
    // So the client may use those names again, as with PostgreSQL directly.
    h.client_msgs(&[parse("bad", "select 2"), FrontendMessage::Sync]);
}

#[test]
fn discard_all_forgets_every_statement_but_those_prepared_after_it() {
    let mut h = H::new(cfg(100));
    h.client_msgs(&[parse("a", "select 1"), FrontendMessage::Sync]);
    h.server_msgs(&[BackendMessage::ParseComplete, z(IDLE)]);
    h.client_msgs(&[
        q("discard all"),
        parse("b", "select 2"),
        FrontendMessage::Sync,
    ]);
    h.server_msgs(&[cc("DISCARD ALL"), z(IDLE)]);
    assert!(h.link.client_statements().get(b"a").is_none());
    assert!(h.link.client_statements().get(b"b").is_some());
    assert_eq!(h.link.server_statements().len(), 1);
    h.server_msgs(&[BackendMessage::ParseComplete, z(IDLE)]);
    assert!(h.link.is_clean());
}

#[test]
fn bind_parameters_stream_and_only_the_names_are_held() {
    let mut h = H::new(cfg(100));
    h.client_msgs(&[parse("big", "select $1::text"), FrontendMessage::Sync]);
    h.server_msgs(&[BackendMessage::ParseComplete, z(IDLE)]);
    let param = vec![b'p'; 1 << 20];
    let data = fe(&[FrontendMessage::Bind {
        portal: Bytes::new(),
        statement: Bytes::from_static(b"big"),
        param_formats: vec![],
        params: vec![Some(Bytes::from(param))],
        result_formats: vec![],
    }]);
    // Fed in 8 KiB chunks: after the names, every chunk is forwarded as a range.
    let mut total = Vec::new();
    for (i, chunk) in data.chunks(8192).enumerate() {
        h.fc.clear();
        h.link.from_client(chunk, &h.reg, &mut h.fc).unwrap();
        if i > 0 {
            assert_eq!(h.fc.to_server.as_single_input(), Some(0..chunk.len()));
        }
        total.extend(h.fc.to_server.to_vec(chunk));
    }
    let m = decode_fe(&total);
    assert!(
        matches!(&m[0], FrontendMessage::Bind { statement, params, .. }
        if &statement[..] == b"PGBOUNCER_1" && params[0].as_ref().unwrap().len() == 1 << 20)
    );
}

#[test]
fn with_max_prepared_statements_0_names_pass_through() {
    let mut h = H::new(cfg(0));
    let out = h.client_msgs(&[parse("s1", "select 1"), bind("s1"), FrontendMessage::Sync]);
    assert_eq!(names(&out), ["P s1", "B s1", "S"]);
}

#[test]
fn a_message_held_while_the_server_began_skipping_owes_nothing() {
    // Found by the differential test: the Parse's error arrives while the Bind after it
    // is still held (its names not complete); the server ignores that Bind.
    let mut h = H::new(cfg(2));
    let data = fe(&[
        parse("", "select nosuchcolumn"),
        bind(""),
        exec(),
        FrontendMessage::Sync,
    ]);
    let parse_len = fe(&[parse("", "select nosuchcolumn")]).len();
    let (first, rest) = data.split_at(parse_len + 6);
    h.client(first).unwrap();
    h.server_msgs(&[err()]);
    h.client(rest).unwrap();
    h.server_msgs(&[z(IDLE)]);
    assert!(h.link.is_clean(), "{:?}", h.link);
}

/// A Parse is held in the link's spare buffer until its name ends; a named one then
/// moves to a buffer of its own (its text is kept as the statement's). Whatever the
/// chunk size, the bytes forwarded are the same and the spare survives for the next
/// held message.
#[test]
fn parses_read_the_same_in_every_chunk_size_and_the_spare_buffer_survives() {
    let data = fe(&[
        parse("", "select 1"),
        bind(""),
        exec(),
        FrontendMessage::Sync,
        parse("s1", "select $1"),
        bind("s1"),
        exec(),
        FrontendMessage::Sync,
        parse("", "select 2"),
        describe("s1"),
        FrontendMessage::Sync,
    ]);
    let mut whole = H::new(cfg(100));
    let (expected, made_up) = whole.client(&data).unwrap();
    assert!(made_up.is_empty());
    assert_eq!(
        names(&expected),
        [
            "P ",
            "B ",
            "E",
            "S",
            "P PGBOUNCER_1",
            "B PGBOUNCER_1",
            "E",
            "S",
            "P ",
            "D PGBOUNCER_1",
            "S"
        ]
    );
    for size in 1..=data.len() {
        let mut h = H::new(cfg(100));
        let mut got = Vec::new();
        for chunk in data.chunks(size) {
            let (to_server, to_client) = h.client(chunk).unwrap();
            assert!(to_client.is_empty(), "chunk size {size}");
            got.extend(to_server);
        }
        assert_eq!(got, expected, "chunk size {size}");
        assert!(h.link.spare_hold.capacity() > 0, "chunk size {size}");
    }
}
