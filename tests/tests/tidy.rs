//! Repository hygiene, checked on every test run: module docs on every file, no debugging
//! leftovers, no second TLS stack, the architecture doc naming every crate.

use agentlab_e2e::repo_root;
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

fn sources() -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    rust_files(&repo_root(), &mut files);
    files.sort();
    files.into_iter().map(|p| (p.clone(), std::fs::read_to_string(&p).unwrap_or_default())).collect()
}

#[test]
fn every_rust_file_starts_with_a_module_doc() {
    let missing: Vec<String> = sources()
        .into_iter()
        .filter(|(_, text)| !text.trim_start().starts_with("//!"))
        .map(|(p, _)| p.display().to_string())
        .collect();
    assert!(missing.is_empty(), "files without a `//!` doc comment:\n{}", missing.join("\n"));
}

#[test]
fn no_debugging_leftovers() {
    let banned = [concat!("todo", "!("), concat!("dbg", "!("), concat!("unimplemented", "!(")];
    let mut found = Vec::new();
    for (path, text) in sources() {
        for (n, line) in text.lines().enumerate() {
            if banned.iter().any(|b| line.contains(b)) {
                found.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn long_files_are_listed() {
    // Not a failure: a file past ~400 lines usually holds two jobs; this keeps them visible.
    let long: Vec<String> = sources()
        .into_iter()
        .filter(|(_, text)| text.lines().count() > 400)
        .map(|(p, text)| format!("{} ({} lines)", p.display(), text.lines().count()))
        .collect();
    println!("files over 400 lines: {}", if long.is_empty() { "none".to_string() } else { long.join(", ") });
}

#[test]
fn one_tls_stack_ring_not_aws_lc() {
    let lock = std::fs::read_to_string(repo_root().join("Cargo.lock")).unwrap_or_default();
    assert!(lock.contains("name = \"ring\""), "rustls must use ring");
    assert!(!lock.contains("name = \"aws-lc-sys\""), "aws-lc-sys crept in (a dependency enabled rustls defaults)");
    assert!(!lock.contains("name = \"openssl-sys\""), "openssl-sys crept in");
}

#[test]
fn architecture_doc_names_every_crate() {
    let doc = std::fs::read_to_string(repo_root().join("docs/ARCHITECTURE.md")).unwrap_or_default();
    for krate in ["actors/", "proxmox/", "netfilter/", "supervisor/", "cli/", "guest/", "tests/"] {
        assert!(doc.contains(krate), "docs/ARCHITECTURE.md does not describe {krate}");
    }
}
