//! Fuzz target: `pgbouncer_protocol::fuzzing::fuzz_backend`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pgbouncer_protocol::fuzzing::fuzz_backend(data));
