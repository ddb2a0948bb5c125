//! Fuzz target: `pgbouncer_rs::fuzzing::fuzz_console` (the admin console grammar).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pgbouncer_rs::fuzzing::fuzz_console(data));
