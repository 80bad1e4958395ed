//! The `agent-runner` binary: version, usage, and `check` on good and bad bootstrap descriptors.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a broken fixture should fail the test at once, with its cause"
)]

use std::process::Command;

fn runner(args: &[&str], descriptor: Option<&std::path::Path>) -> (i32, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_agent-runner"));
    command.args(args);
    if let Some(path) = descriptor {
        command.env("AGENTLAB_BOOTSTRAP", path);
    }
    let out = command.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn version_and_usage() {
    let (code, stdout, _) = runner(&["--version"], None);
    assert_eq!((code, stdout.trim().to_string()), (0, format!("agent-runner {}", env!("CARGO_PKG_VERSION"))));
    assert_eq!(runner(&["bogus"], None).0, 2);
    assert_eq!(runner(&["run", "extra"], None).0, 2);
    // No command means `run`: without a descriptor it stops at once.
    let missing = std::path::Path::new("/nonexistent/agentlab/bootstrap.json");
    let (code, _, stderr) = runner(&[], Some(missing));
    assert_eq!(code, 1);
    assert!(stderr.contains("cannot read bootstrap descriptor"), "{stderr}");
}

#[test]
fn check_accepts_a_good_descriptor_without_printing_the_token() {
    let dir = std::env::temp_dir().join(format!("agent-runner-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token = "k".repeat(64);
    let good = dir.join("good.json");
    std::fs::write(&good, format!(r#"{{"token":"{token}","controller":"http://10.77.0.1:8844","vmid":1001}}"#))
        .unwrap();
    let (code, stdout, stderr) = runner(&["check"], Some(&good));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("vmid 1001"), "{stdout}");
    assert!(!stdout.contains(&token) && !stderr.contains(&token), "the token must never be printed");

    let bad = dir.join("bad.json");
    std::fs::write(&bad, r#"{"token":"short","controller":"http://h","vmid":1001}"#).unwrap();
    let (code, _, stderr) = runner(&["check"], Some(&bad));
    assert_eq!(code, 1);
    assert!(stderr.contains("bad bootstrap descriptor") && stderr.contains("256 random bits"), "{stderr}");

    let (code, _, stderr) = runner(&["check"], Some(&dir.join("missing.json")));
    assert_eq!(code, 1);
    assert!(stderr.contains("cannot read bootstrap descriptor"), "{stderr}");
    let _ = std::fs::remove_dir_all(dir);
}
