//! Replays the checked-in cargo-fuzz corpus (`fuzz/corpus/<target>/`) through the same
//! `pgbouncer_protocol::fuzzing` functions the fuzz targets call, under stable `cargo test`.
//!
//! To regenerate the seed files: `PGBOUNCER_WRITE_FUZZ_CORPUS=1 cargo test -p
//! pgbouncer-protocol --test fuzz_corpus` (adds or overwrites `seed-*` files only).

#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::path::PathBuf;

use bytes::{BufMut, BytesMut};
use pgbouncer_protocol::fuzzing;
use pgbouncer_protocol::*;

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target)
}

fn replay(target: &str, run: fn(&[u8])) {
    let dir = corpus_dir(target);
    let entries: Vec<_> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {} is missing: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    assert!(!entries.is_empty(), "corpus {} is empty", dir.display());
    for path in entries {
        run(&fs::read(&path).unwrap());
    }
}

#[test]
fn frontend_corpus_replays_cleanly() {
    write_seeds_if_asked();
    replay("frontend", fuzzing::fuzz_frontend);
}

#[test]
fn backend_corpus_replays_cleanly() {
    write_seeds_if_asked();
    replay("backend", fuzzing::fuzz_backend);
}

#[test]
fn startup_corpus_replays_cleanly() {
    write_seeds_if_asked();
    replay("startup", fuzzing::fuzz_startup);
}

#[test]
fn scram_corpus_replays_cleanly() {
    write_seeds_if_asked();
    replay("scram", fuzzing::fuzz_scram);
}

#[test]
fn link_corpus_replays_cleanly() {
    write_seeds_if_asked();
    replay("link", fuzzing::fuzz_link);
}

fn write_seeds_if_asked() {
    if std::env::var_os("PGBOUNCER_WRITE_FUZZ_CORPUS").is_none() {
        return;
    }
    let frontend: Vec<Vec<u8>> = common::sample_frontend()
        .iter()
        .map(|m| common::encoded(m, FrontendMessage::encode).to_vec())
        .collect();
    let backend: Vec<Vec<u8>> = common::sample_backend()
        .iter()
        .map(|m| common::encoded(m, BackendMessage::encode).to_vec())
        .collect();
    let startup: Vec<Vec<u8>> = common::sample_startup()
        .iter()
        .map(|m| common::encoded(m, StartupPacket::encode).to_vec())
        .collect();
    write("frontend", with_variants(frontend));
    write("backend", with_variants(backend));
    let mut startup_seeds = with_variants(startup.clone());
    let mut v2 = BytesMut::new();
    v2.put_u32(296);
    v2.put_u32(0x0002_0000);
    startup_seeds.push(v2.to_vec());
    let mut no_terminator = BytesMut::new();
    no_terminator.put_u32(17);
    no_terminator.put_u32(196608);
    no_terminator.put_slice(b"user\0bob\0");
    startup_seeds.push(no_terminator.to_vec());
    let mut then_query = startup[0].clone();
    then_query.extend_from_slice(&common::encoded(
        &common::sample_frontend()[0],
        FrontendMessage::encode,
    ));
    startup_seeds.push(then_query);
    write("startup", startup_seeds);
    write("scram", scram_seeds());
    write("link", link_seeds());
}

/// Conversations in `fuzz_link`'s format: a mode byte, then segments of (head byte: bit 0
/// set for the server, the rest the split point / 4; u16 length; bytes).
fn link_seeds() -> Vec<Vec<u8>> {
    let fe = |msgs: &[FrontendMessage]| {
        let mut b = BytesMut::new();
        for m in msgs {
            m.encode(&mut b);
        }
        b.to_vec()
    };
    let be = |msgs: &[BackendMessage]| {
        let mut b = BytesMut::new();
        for m in msgs {
            m.encode(&mut b);
        }
        b.to_vec()
    };
    let conv = |mode: u8, segs: &[(bool, Vec<u8>)]| {
        let mut out = vec![mode];
        for (i, (from_client, bytes)) in segs.iter().enumerate() {
            let cut = (i as u8 * 3) % 64;
            out.push((cut << 1) | u8::from(!from_client));
            out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
            out.extend_from_slice(bytes);
        }
        out
    };
    let q = |s: &str| FrontendMessage::Query {
        query: s.as_bytes().to_vec().into(),
    };
    let parse = |n: &str, s: &str| FrontendMessage::Parse {
        name: n.as_bytes().to_vec().into(),
        query: s.as_bytes().to_vec().into(),
        param_types: vec![],
    };
    let bind = |n: &str| FrontendMessage::Bind {
        portal: Default::default(),
        statement: n.as_bytes().to_vec().into(),
        param_formats: vec![],
        params: vec![Some(b"1".to_vec().into())],
        result_formats: vec![],
    };
    let exec = FrontendMessage::Execute {
        portal: Default::default(),
        max_rows: 0,
    };
    let idle = BackendMessage::ReadyForQuery {
        status: TransactionStatus::Idle,
    };
    let in_tx = BackendMessage::ReadyForQuery {
        status: TransactionStatus::InTransaction,
    };
    let cc = |t: &str| BackendMessage::CommandComplete {
        tag: t.as_bytes().to_vec().into(),
    };
    let row = BackendMessage::DataRow {
        values: vec![Some(b"1".to_vec().into())],
    };
    let err = BackendMessage::ErrorResponse(ErrorFields::new("ERROR", "42601", "syntax error"));
    let copy_in = BackendMessage::CopyInResponse(CopyResponse {
        format: 0,
        column_formats: vec![0],
    });
    vec![
        conv(
            0,
            &[
                (true, fe(&[q("select 1")])),
                (false, be(&[row.clone(), cc("SELECT 1"), idle.clone()])),
            ],
        ),
        conv(
            0,
            &[
                (
                    true,
                    fe(&[
                        parse("", "begin"),
                        bind(""),
                        exec.clone(),
                        FrontendMessage::Flush,
                    ]),
                ),
                (
                    false,
                    be(&[
                        BackendMessage::ParseComplete,
                        BackendMessage::BindComplete,
                        cc("BEGIN"),
                    ]),
                ),
                (true, fe(&[q("commit")])),
                (false, be(&[cc("COMMIT"), idle.clone()])),
            ],
        ),
        conv(
            2 | (3 << 4),
            &[
                (
                    true,
                    fe(&[
                        parse("s1", "select $1"),
                        bind("s1"),
                        exec.clone(),
                        FrontendMessage::Sync,
                    ]),
                ),
                (
                    false,
                    be(&[
                        BackendMessage::ParseComplete,
                        BackendMessage::BindComplete,
                        row.clone(),
                        cc("SELECT 1"),
                        idle.clone(),
                    ]),
                ),
                (
                    true,
                    fe(&[
                        bind("s1"),
                        exec.clone(),
                        FrontendMessage::Close {
                            kind: b'S',
                            name: b"s1".to_vec().into(),
                        },
                        FrontendMessage::Sync,
                    ]),
                ),
                (
                    false,
                    be(&[BackendMessage::BindComplete, cc("SELECT 1"), idle.clone()]),
                ),
            ],
        ),
        conv(
            2,
            &[
                (
                    true,
                    fe(&[
                        parse("bad", "selec"),
                        parse("b", "select 2"),
                        FrontendMessage::Sync,
                    ]),
                ),
                (false, be(&[err.clone(), idle.clone()])),
                (true, fe(&[q("discard all")])),
                (false, be(&[cc("DISCARD ALL"), idle.clone()])),
            ],
        ),
        conv(
            0,
            &[
                (true, fe(&[q("copy t from stdin")])),
                (false, be(std::slice::from_ref(&copy_in))),
                (
                    true,
                    fe(&[
                        FrontendMessage::CopyData(b"1\n".to_vec().into()),
                        FrontendMessage::Sync,
                        FrontendMessage::CopyDone,
                    ]),
                ),
                (false, be(&[cc("COPY 1"), idle.clone()])),
            ],
        ),
        conv(
            4,
            &[
                (true, fe(&[q("begin")])),
                (false, be(&[cc("BEGIN"), in_tx])),
            ],
        ),
        conv(1, &[(true, b"Q\x7f\xff\xff\xffselect".to_vec())]),
        conv(0, &[(true, b"y\0\0\0\x04".to_vec())]),
        conv(
            0,
            &[(
                true,
                [fe(&[q("select 1")]), b"X\0\0\0\x04".to_vec(), fe(&[q("x")])].concat(),
            )],
        ),
        conv(0, &[(false, b"K\0\0\0\x0c\0\0\0\x01\0\0\0\x02".to_vec())]),
    ]
}

/// Each message whole, truncated, concatenated with the next, plus garbage and huge lengths.
fn with_variants(messages: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        out.push(m.clone());
        out.push(m[..m.len() / 2].to_vec());
        let mut pair = m.clone();
        pair.extend_from_slice(&messages[(i + 1) % messages.len()]);
        out.push(pair);
    }
    out.push(b"Q\x7f\xff\xff\xffselect".to_vec());
    out.push(b"D\0\0\0\0".to_vec());
    out.push(b"\0\0\0\x03".to_vec());
    out.push(vec![0xff; 40]);
    out.push(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec());
    out
}

fn scram_seeds() -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = [
        "n,,n=,r=abcdef\nc=biws,r=abcdefZnV6eg==,p=AAAA",
        "y,,n=user,r=abc\nc=eSws,r=abcZnV6eg==,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        "p=tls-server-end-point,,n=,r=abc",
        "n,a=admin,n=,r=abc",
        "n,,m=ext,n=,r=abc",
        "n,,n=,r=abc,x=ext",
        "r=ZnV6eg==server,s=c2FsdA==,i=4096\nv=AAAA",
        "r=ZnV6eg==server,s=c2FsdA==,i=4096\ne=invalid-proof",
        "r=ZnV6eg==server,s=c2FsdA==,i=0",
        "r=ZnV6eg==server,s=c2FsdA==,i=99999999999",
        "r=other,s=c2FsdA==,i=1",
        "SCRAM-SHA-256$4096:AQIDBAUGBwgJCgsMDQ4PEA==$8rrDg00OqaiWXJ7p+sCgHEIaBSHY89ZJl3mfIsf32oY=:05L1f+yZbiN8O0AnO40Og85NNRhvzTS57naKRWCcsIA=",
        "SCRAM-SHA-256$0:AA==$AA==:AA==",
        "md54ab2c5d00339c4b2a4e921d2dc4edec7",
        "secret\0",
        "SCRAM-SHA-256\0\0\0\0\x0bn,,n=,r=abc",
        "",
        "\n",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    out.push(format!("n,,n=,r={}", "a".repeat(600)).into_bytes());
    out.push(vec![b'n'; 1500]);
    out.push(b"n,,n=,r=ab\x01c".to_vec());
    out.push(b"SCRAM-SHA-256\0\xff\xff\xff\xff".to_vec());
    out.push(b"n,,n=,r=\xff\xfe".to_vec());
    out
}

fn write(target: &str, seeds: Vec<Vec<u8>>) {
    let dir = corpus_dir(target);
    fs::create_dir_all(&dir).unwrap();
    for (i, seed) in seeds.iter().enumerate() {
        fs::write(dir.join(format!("seed-{i:03}")), seed).unwrap();
    }
}
