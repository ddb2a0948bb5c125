//! Fuzz target: `pgbouncer_rs::fuzzing::fuzz_config` (ini, hba, ident and auth files).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pgbouncer_rs::fuzzing::fuzz_config(data));
