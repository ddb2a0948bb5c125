//! Replays the checked-in corpus of the daemon's fuzz targets (`fuzz/corpus/console`,
//! `fuzz/corpus/config`) through the same functions the targets call, under `cargo test`.

use std::path::PathBuf;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_file() {
            run(&std::fs::read(&path).unwrap());
            n += 1;
        }
    }
    assert!(n > 0, "corpus {} is empty", dir.display());
}

#[test]
fn console_corpus_replays_cleanly() {
    replay("console", pgbouncer_rs::fuzzing::fuzz_console);
}

#[test]
fn config_corpus_replays_cleanly() {
    replay("config", pgbouncer_rs::fuzzing::fuzz_config);
}
