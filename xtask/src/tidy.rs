//! `cargo xtask tidy`: source hygiene that rustfmt and clippy do not check (STYLE.md
//! sections 6 and 8): every file opens with a `//!` doc, files stay within the size
//! budget, no `dbg!`, no printing from library crates, no mutable statics in product code.

use std::path::{Path, PathBuf};

use crate::cmd;
use crate::{Failure, Outcome};

/// Non-test lines past which a file is listed as over budget (a warning).
const WARN_LINES: usize = 800;
/// Non-test lines past which a file fails tidy.
const MAX_LINES: usize = 1500;
/// Library crates, which must not print: they report through return values and tracing.
const LIBRARY_SRC: &[&str] = &[
    "crates/protocol/src",
    "crates/pool-core/src",
    "crates/admin/src",
];
/// Product crates, which must hold no process-wide mutable state.
const PRODUCT_SRC: &[&str] = &[
    "crates/protocol/src",
    "crates/pool-core/src",
    "crates/admin/src",
    "crates/daemon/src",
];
/// Trees scanned, relative to the workspace root (missing ones are skipped).
const TREES: &[&str] = &["crates", "xtask", "fuzz", "examples"];

/// Scans every `.rs` file and prints problems; fails if any is an error.
pub(crate) fn run() -> Outcome {
    let root = cmd::root();
    let mut files = Vec::new();
    for tree in TREES {
        collect_rs(&root.join(tree), &mut files);
    }
    files.sort();
    println!("tidy: checking {} files", files.len());

    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    for path in &files {
        let rel = path.strip_prefix(&root).unwrap_or(path);
        let rel_str = rel.to_string_lossy().replace('\\', "/");
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) => {
                errors.push(format!("{rel_str}: unreadable: {e}"));
                continue;
            }
        };
        check_file(&rel_str, &text, &mut errors, &mut warnings);
    }

    for warning in &warnings {
        println!("tidy: warning: {warning}");
    }
    for error in &errors {
        println!("tidy: error: {error}");
    }
    if errors.is_empty() {
        println!("tidy: ok ({} warning(s))", warnings.len());
        Ok(())
    } else {
        Err(Failure::Failed(format!("{} problem(s)", errors.len())))
    }
}

/// All checks for one file; `rel` is its path from the root with `/` separators.
fn check_file(rel: &str, text: &str, errors: &mut Vec<String>, warnings: &mut Vec<String>) {
    let lines: Vec<&str> = text.lines().collect();
    if !has_module_doc(&lines) {
        errors.push(format!("{rel}: no `//!` doc before the first line of code"));
    }
    // Lines before the first `#[cfg(test)]` are product code.
    let code_end = lines
        .iter()
        .position(|l| l.trim_start().starts_with("#[cfg(test)]"))
        .unwrap_or(lines.len());
    if !is_test_file(rel) {
        if code_end > MAX_LINES {
            errors.push(format!(
                "{rel}: {code_end} non-test lines (limit {MAX_LINES})"
            ));
        } else if code_end > WARN_LINES {
            warnings.push(format!(
                "{rel}: {code_end} non-test lines (budget {WARN_LINES})"
            ));
        }
    }

    let in_library = LIBRARY_SRC.iter().any(|p| rel.starts_with(p)) && !is_test_file(rel);
    let in_product = PRODUCT_SRC.iter().any(|p| rel.starts_with(p)) && !is_test_file(rel);
    // Built at run time so this file does not trip its own check.
    let dbg = format!("{}!(", "dbg");
    let prints = ["println!(", "eprintln!(", "print!(", "eprint!("];
    for (index, line) in lines.iter().enumerate() {
        let code = line.trim_start();
        if code.starts_with("//") {
            continue;
        }
        let at = format!("{rel}:{}", index + 1);
        if code.contains(&dbg) {
            errors.push(format!("{at}: `{dbg}` left in"));
        }
        if index >= code_end {
            continue;
        }
        if in_library && prints.iter().any(|p| contains_macro(code, p)) {
            errors.push(format!("{at}: printing from a library crate (use tracing)"));
        }
        if in_product && is_mutable_static(code) {
            errors.push(format!("{at}: process-wide mutable state: {}", code.trim()));
        }
    }
}

/// True when a `//!` (or `/*!`) line comes before the first line that is neither blank,
/// a comment nor an inner attribute (`#![...]`, possibly spanning lines).
fn has_module_doc(lines: &[&str]) -> bool {
    let mut attribute_depth: i32 = 0;
    for line in lines {
        let t = line.trim();
        if attribute_depth > 0 {
            attribute_depth += bracket_balance(t);
            continue;
        }
        if t.starts_with("//!") || t.starts_with("/*!") {
            return true;
        }
        if t.is_empty() || t.starts_with("//") {
            continue;
        }
        if t.starts_with("#![") {
            attribute_depth = bracket_balance(t).max(0);
            continue;
        }
        return false;
    }
    false
}

fn bracket_balance(line: &str) -> i32 {
    line.chars().fold(0, |depth, c| match c {
        '[' => depth + 1,
        ']' => depth - 1,
        _ => depth,
    })
}

/// Integration tests, benches, examples and test modules are not product code.
fn is_test_file(rel: &str) -> bool {
    rel.split('/')
        .any(|part| matches!(part, "tests" | "benches" | "examples"))
        || rel.ends_with("/tests.rs")
}

/// `code` calls macro `name` (e.g. `print!(`) as a whole word, not as part of `eprint!(`.
fn contains_macro(code: &str, name: &str) -> bool {
    code.match_indices(name).any(|(i, _)| {
        !code[..i]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}

/// `static mut`, or a `static` whose type mentions `Mutex` or `RwLock`.
fn is_mutable_static(code: &str) -> bool {
    let mut rest = code;
    if let Some(after) = rest.strip_prefix("pub") {
        rest = after.trim_start();
        if rest.starts_with('(') {
            rest = rest.split_once(')').map_or("", |(_, r)| r.trim_start());
        }
    }
    let Some(item) = rest.strip_prefix("static ") else {
        return false;
    };
    let item = item.trim_start();
    if item.starts_with("mut ") {
        return true;
    }
    item.split_once(':')
        .is_some_and(|(_, ty)| ty.contains("Mutex") || ty.contains("RwLock"))
}

/// Every `.rs` file under `dir`, skipping build output (`target`, `target-*`).
fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            if name == "target" || name.starts_with("target-") || name.starts_with('.') {
                continue;
            }
            collect_rs(&path, out);
        } else if kind.is_file() && name.ends_with(".rs") {
            out.push(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_doc_may_follow_inner_attributes_and_comments() {
        assert!(has_module_doc(&["#![forbid(unsafe_code)]", "", "//! Doc."]));
        assert!(has_module_doc(&[
            "#![cfg_attr(",
            "  x,",
            ")]",
            "// note",
            "//! Doc."
        ]));
        assert!(!has_module_doc(&["use std::io;", "//! Doc."]));
        assert!(!has_module_doc(&[]));
    }

    #[test]
    fn mutable_statics_are_recognised() {
        assert!(is_mutable_static("static mut COUNTER: u32 = 0;"));
        assert!(is_mutable_static(
            "pub(crate) static STATE: Mutex<Vec<u8>> = todo;"
        ));
        assert!(is_mutable_static(
            "pub static S: std::sync::RwLock<u8> = todo;"
        ));
        assert!(!is_mutable_static("static NAMES: &[&str] = &[];"));
        assert!(!is_mutable_static("let x: Mutex<u8> = todo;"));
    }

    #[test]
    fn print_macros_are_matched_as_whole_names() {
        assert!(contains_macro("    print!(\"x\")", "print!("));
        assert!(!contains_macro("eprint!(\"x\")", "print!("));
        assert!(contains_macro("eprint!(\"x\")", "eprint!("));
    }

    #[test]
    fn printing_from_a_library_crate_fails_but_tests_may_print() {
        let (mut errors, mut warnings) = (Vec::new(), Vec::new());
        let text = "//! Doc.\nfn f() { println!(\"x\"); }\n#[cfg(test)]\nmod tests { fn t() { println!(\"y\"); } }\n";
        check_file("crates/admin/src/lib.rs", text, &mut errors, &mut warnings);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].starts_with("crates/admin/src/lib.rs:2:"));
        errors.clear();
        check_file(
            "crates/daemon/src/main.rs",
            text,
            &mut errors,
            &mut warnings,
        );
        assert!(errors.is_empty(), "{errors:?}");
    }
}
