//! The reference docs against the catalogs they document: every error code (`ErrorCode::ALL`)
//! and every event kind (`EventKind::ALL`) has a row in docs/reference/errors.md and
//! events.md, and no row names one that does not exist; the `pveum role add` lines of the
//! docs grant exactly `pve_role::REQUIRED_PRIVILEGES`.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use agentlab_model::model::{ErrorCode, EventKind};
use std::collections::BTreeSet;
use std::path::Path;

fn doc(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/reference").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The code spans in the first cell of each row of every table whose header's first cell is
/// `header` (e.g. `| code | HTTP | … |`).
fn first_column(markdown: &str, header: &str) -> Vec<String> {
    let mut spans = Vec::new();
    let mut table: Option<bool> = None; // Some(wanted) inside a table
    for line in markdown.lines() {
        let line = line.trim();
        if !line.starts_with('|') {
            table = None;
            continue;
        }
        let first = line.split('|').nth(1).unwrap_or("").trim();
        match table {
            None => table = Some(first == header),
            Some(false) => {}
            Some(true) if first.starts_with("---") || first.starts_with(":--") => {}
            Some(true) => spans.extend(first.split('`').skip(1).step_by(2).map(str::to_string)),
        }
    }
    spans
}

fn compare(doc_name: &str, documented: &[String], actual: &BTreeSet<String>) {
    let mut seen = BTreeSet::new();
    let twice: Vec<&String> = documented.iter().filter(|name| !seen.insert(name.as_str())).collect();
    let missing: Vec<&String> = actual.iter().filter(|name| !seen.contains(name.as_str())).collect();
    let unknown: Vec<&&str> = seen.iter().filter(|name| !actual.contains(**name)).collect();
    assert!(
        twice.is_empty() && missing.is_empty() && unknown.is_empty(),
        "docs/reference/{doc_name} is out of date:\n  no row for: {missing:?}\n  rows for what does not exist: {unknown:?}\n  \
         more than one row: {twice:?}"
    );
}

#[test]
fn errors_md_has_a_row_for_every_error_code_and_no_other() {
    let documented = first_column(&doc("errors.md"), "code");
    let actual: BTreeSet<String> = ErrorCode::ALL.iter().map(|c| c.as_str().to_string()).collect();
    compare("errors.md", &documented, &actual);
}

#[test]
fn events_md_has_a_row_for_every_event_kind_and_no_other() {
    let text = doc("events.md");
    // `sandbox.<op>.<phase>` stands for every operation's events, one row per phase; the ops
    // are the rows of the table headed `<op>`.
    let mut actual = BTreeSet::new();
    for kind in EventKind::ALL {
        let name = kind.name().into_owned();
        actual.insert(match kind {
            EventKind::Operation { op, .. } => {
                let phase = name.strip_prefix(&format!("sandbox.{op}.")).expect("sandbox.<op>.<phase>");
                format!("sandbox.<op>.{phase}")
            }
            _ => name,
        });
    }
    compare("events.md", &first_column(&text, "event"), &actual);
    let ops: BTreeSet<String> = EventKind::OPERATIONS.iter().map(|op| op.to_string()).collect();
    compare("events.md (the `<op>` table)", &first_column(&text, "`<op>`"), &ops);
}

/// The privileges of every `pveum role add AgentLab --privs "…"` line of a doc page.
fn role_lines(markdown: &str) -> Vec<Vec<String>> {
    markdown
        .lines()
        .filter_map(|line| line.trim().strip_prefix("pveum role add AgentLab --privs \""))
        .map(|rest| rest.split('"').next().unwrap_or("").split(',').map(str::to_string).collect())
        .collect()
}

#[test]
fn the_documented_role_is_exactly_the_one_the_daemon_checks() {
    use agentlab_model::model::pve_role::{REQUIRED_PRIVILEGES, role_add_command};
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs");
    for page in ["tutorials/install.md", "reference/proxmox.md"] {
        let text = std::fs::read_to_string(root.join(page)).unwrap();
        let lines = role_lines(&text);
        assert!(!lines.is_empty(), "docs/{page} has no `pveum role add AgentLab --privs` line");
        for privileges in lines {
            assert_eq!(
                privileges,
                REQUIRED_PRIVILEGES,
                "docs/{page}: the AgentLab role must be `{}` (actors/model/src/model/pve_role.rs)",
                role_add_command()
            );
        }
    }
}
