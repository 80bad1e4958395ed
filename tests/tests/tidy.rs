//! Repository hygiene, checked on every test run: module docs on every file, no debugging
//! leftovers, no second TLS stack, the architecture doc naming every crate.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a broken fixture should fail the test at once, with its cause"
)]

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

/// The workspace members, read from the root `Cargo.toml` (one quoted path per entry).
fn workspace_members() -> Vec<String> {
    let manifest = std::fs::read_to_string(repo_root().join("Cargo.toml")).unwrap();
    let start = manifest.find("members = [").expect("the root Cargo.toml lists its members");
    let list = &manifest[start..];
    let list = &list[..list.find(']').expect("the members list is closed")];
    let members: Vec<String> = list.split('"').skip(1).step_by(2).map(str::to_string).collect();
    assert!(members.len() > 5, "too few members read from Cargo.toml: {members:?}");
    members
}

/// The `name = "…"` of a member's `[package]`.
fn package_name(member: &str) -> String {
    let manifest = std::fs::read_to_string(repo_root().join(member).join("Cargo.toml")).unwrap();
    let line = manifest.lines().find(|l| l.starts_with("name = ")).expect("a package name");
    line.trim_start_matches("name = ").trim_matches('"').to_string()
}

#[test]
fn architecture_doc_names_every_crate() {
    let doc = std::fs::read_to_string(repo_root().join("docs/ARCHITECTURE.md")).unwrap();
    for member in workspace_members() {
        let name = package_name(&member);
        assert!(doc.contains(&format!("`{member}/`")), "docs/ARCHITECTURE.md does not describe `{member}/`");
        assert!(doc.contains(&format!("`{name}`")), "docs/ARCHITECTURE.md does not name the crate `{name}`");
    }
}

#[test]
fn no_crate_is_cut_in_two_by_a_default_feature() {
    // A default feature that other members turn off is how a "small" crate silently grows:
    // a workspace build unifies it back on. Crate boundaries carry the invariants instead.
    for member in workspace_members() {
        let manifest = std::fs::read_to_string(repo_root().join(&member).join("Cargo.toml")).unwrap();
        assert!(!manifest.contains("[features]"), "{member}/Cargo.toml has a [features] table");
    }
    let root = std::fs::read_to_string(repo_root().join("Cargo.toml")).unwrap();
    for line in root.lines().filter(|l| l.starts_with("agentlab-")) {
        assert!(!line.contains("default-features") && !line.contains("features"), "root Cargo.toml: {line}");
    }
}
