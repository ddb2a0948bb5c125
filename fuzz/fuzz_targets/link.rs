//! The link tracker: any conversation, any chunking, the same decisions, bounded memory.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| pgbouncer_protocol::fuzzing::fuzz_link(data));
