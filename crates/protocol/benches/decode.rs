//! Decode/encode throughput of a realistic server stream (PostgreSQL docs, "Message Flow:
//! Simple Query"): RowDescription, 100 DataRows, CommandComplete, ReadyForQuery.
//!
//! `cargo bench -p pgbouncer-protocol`; under `cargo test --benches` each bench runs once.

// `criterion_group!` generates an undocumented `pub fn`.
#![allow(missing_docs)]

use bytes::{Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use pgbouncer_protocol::{
    encode_command_complete, encode_data_row, encode_ready_for_query, BackendMessage, Column,
    Header, ResultSet, TransactionStatus, DEFAULT_MAX_PACKET_SIZE,
};

fn rows() -> Vec<[Option<String>; 4]> {
    (0..100)
        .map(|i| {
            [
                Some(i.to_string()),
                Some(format!("user_{i}@example.com")),
                if i % 7 == 0 {
                    None
                } else {
                    Some("2024-01-01 12:00:00+00".to_owned())
                },
                Some("x".repeat(40)),
            ]
        })
        .collect()
}

fn server_stream() -> Bytes {
    let mut rs = ResultSet::new(vec![
        Column::int4("id"),
        Column::text("email"),
        Column::text("created_at"),
        Column::text("payload"),
    ]);
    for row in rows() {
        rs.push_row(row.to_vec());
    }
    let mut buf = BytesMut::new();
    rs.encode(&mut buf, "SELECT 100");
    encode_ready_for_query(&mut buf, TransactionStatus::Idle);
    buf.freeze()
}

fn bench_decode(c: &mut Criterion) {
    let stream = server_stream();
    let mut group = c.benchmark_group("server_stream");
    group.throughput(Throughput::Bytes(stream.len() as u64));
    group.bench_function("BackendMessage::decode", |b| {
        b.iter(|| {
            let mut buf = BytesMut::from(&stream[..]);
            let mut n = 0;
            while let Ok(Some(m)) = BackendMessage::decode(&mut buf, DEFAULT_MAX_PACKET_SIZE) {
                black_box(&m);
                n += 1;
            }
            assert_eq!(n, 103);
        })
    });
    group.bench_function("Header::peek skip", |b| {
        b.iter(|| {
            let mut rest = &stream[..];
            let mut n = 0;
            while let Ok(Some(h)) = Header::peek(black_box(rest), DEFAULT_MAX_PACKET_SIZE) {
                rest = &rest[h.total_len()..];
                n += 1;
            }
            assert_eq!(n, 103);
        })
    });
    group.finish();
}

fn bench_encode(c: &mut Criterion) {
    let rows = rows();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    for row in &rows {
        encode_data_row(&mut buf, row);
    }
    let mut group = c.benchmark_group("encode");
    group.throughput(Throughput::Bytes(buf.len() as u64));
    group.bench_function("100 DataRows", |b| {
        b.iter(|| {
            buf.clear();
            for row in &rows {
                encode_data_row(&mut buf, black_box(row));
            }
            encode_command_complete(&mut buf, "SELECT 100");
            black_box(&buf);
        })
    });
    group.finish();
}

criterion_group!(benches, bench_decode, bench_encode);
criterion_main!(benches);
