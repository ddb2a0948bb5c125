//! Fuzz target: `pgbouncer_protocol::fuzzing::fuzz_frontend`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pgbouncer_protocol::fuzzing::fuzz_frontend(data));
