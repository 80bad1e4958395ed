//! The `agentlab` binary on its own: help lists only commands that work, usage errors exit 2.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a broken fixture should fail the test at once, with its cause"
)]

use std::process::Command;

fn agentlab(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_agentlab"))
        .args(args)
        .env_remove("AGENTLAB_SOCKET")
        .output()
        .expect("spawn agentlab");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn help_lists_exactly_the_commands_that_work() {
    let (code, stdout, _) = agentlab(&["--help"]);
    assert_eq!(code, 0);
    let commands: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(
        commands,
        [
            "status",
            "profile",
            "sandbox",
            "pool",
            "new",
            "ls",
            "show",
            "rm",
            "start",
            "stop",
            "job",
            "workspace",
            "session",
            "secrets",
            "logs",
            "ssh",
            "debug",
            "version",
            "completion",
            "help"
        ]
    );
}

#[test]
fn usage_errors_exit_2_and_version_exits_0() {
    assert_eq!(agentlab(&["frobnicate"]).0, 2);
    assert_eq!(agentlab(&["sandbox", "show"]).0, 2);
    assert_eq!(agentlab(&["--timeout", "soon", "status"]).0, 2);
    assert_eq!(agentlab(&["logs", "nope"]).0, 2, "neither a VMID nor a job id");
    assert_eq!(agentlab(&["job", "list", "--filter", "status=DONE"]).0, 2);
    assert_eq!(agentlab(&["job", "run", "--repo", "/r", "--task", "t"]).0, 2, "--profile is required");
    assert_eq!(agentlab(&["job", "show", "job_zz", "--socket", "/nonexistent"]).0, 2, "not a job id");
    let (code, stdout, _) =
        agentlab(&["--json", "--socket", "/nonexistent", "sandbox", "new", "--profile", "p", "--and-ssh"]);
    assert_eq!(code, 2, "--and-ssh needs a terminal and no --json: {stdout}");
    assert!(stdout.contains("--and-ssh"), "{stdout}");
    assert_eq!(agentlab(&["sandbox", "expose", "1000", ":0"]).0, 2, "port 0");
    assert_eq!(agentlab(&["sandbox", "expose", "1000", "http"]).0, 2, "not a port");
    assert_eq!(agentlab(&["ssh", "12"]).0, 2, "not a VMID");
    let (code, stdout, _) = agentlab(&["version", "--json"]);
    assert_eq!(code, 0);
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_default();
    assert_eq!(json["version"], env!("CARGO_PKG_VERSION"));
}

#[test]
fn completions_are_generated_for_three_shells() {
    for shell in ["bash", "zsh", "fish"] {
        let (code, stdout, _) = agentlab(&["completion", shell]);
        assert_eq!(code, 0, "{shell}");
        assert!(stdout.contains("sandbox"), "{shell}");
    }
}

#[test]
fn the_socket_comes_from_the_environment_when_not_given() {
    let out = Command::new(env!("CARGO_BIN_EXE_agentlab"))
        .args(["status"])
        .env("AGENTLAB_SOCKET", "/nonexistent/agentlab-env.sock")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/agentlab-env.sock"));
}
