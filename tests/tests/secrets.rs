//! Secrets bundles end to end, with the real daemon, CLI and runner on pve-sim: a sops bundle
//! sealed by `agentlabd secrets seal` serves a job exactly as an age bundle does, and a
//! tampered one stops the job at the request.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a broken fixture should fail the test at once, with its cause"
)]

use agentlab_e2e::bin;
use agentlab_e2e::jobs::{JobBench, SECRET, run};
use std::process::Command;

/// Replaces the bench's age bundle with a sops one holding the same secret.
fn seal_sops_bundle(bench: &JobBench) -> std::path::PathBuf {
    let root = bench.ws.path();
    let plain = root.join("bundle.yaml");
    std::fs::write(&plain, format!("version: 1\nenv:\n  DEMO_SECRET: \"{SECRET}\"\n")).unwrap();
    let out = root.join("secrets/default.sops.yaml");
    run(Command::new(bin("agentlabd"))
        .args(["secrets", "seal", "--key"])
        .arg(root.join("keys/age.key"))
        .arg("--in")
        .arg(&plain)
        .arg("--out")
        .arg(&out));
    std::fs::remove_file(&plain).unwrap();
    std::fs::remove_file(root.join("secrets/default.age")).unwrap();
    out
}

#[test]
fn a_sops_bundle_serves_a_job_and_a_tampered_one_is_refused_at_the_request() {
    let bench = JobBench::with_runner();
    let sops = seal_sops_bundle(&bench);
    let text = std::fs::read_to_string(&sops).unwrap();
    assert!(text.contains("ENC[AES256_GCM,") && !text.contains(SECRET), "{text}");
    let _daemon = bench.ws.start_daemon();

    let validate = bench.ws.cli(&["secrets", "validate"]);
    assert_eq!(validate.code, 0, "{validate:?}");
    assert!(validate.stdout.contains("DEMO_SECRET") && !validate.stdout.contains(SECRET), "{validate:?}");

    let out = bench.run_job("bundle", 60, &["--follow"]);
    assert_eq!(out.code, 0, "{out:?}\n{}", bench.guest_logs());
    assert!(out.stdout.contains("from the bundle: [REDACTED]"), "{out:?}");
    let id = out.stderr.split_whitespace().find(|w| w.starts_with("job_")).unwrap_or_default().to_string();
    let logs = bench.ws.cli(&["logs", &id, "--tail", "1000"]);
    assert!(logs.stdout.contains("[REDACTED]") && !logs.stdout.contains(SECRET), "{logs:?}");
    assert!(!bench.job(&id).to_string().contains(SECRET));

    // One character of the value's ciphertext changed: the request is refused, naming the key.
    let line = text.lines().find(|l| l.contains("\"DEMO_SECRET\":")).unwrap();
    let at = line.find("data:").unwrap() + 5;
    let mut tampered_line = line.to_string();
    let replacement = if &line[at..=at] == "A" { "B" } else { "A" };
    tampered_line.replace_range(at..=at, replacement);
    std::fs::write(&sops, text.replace(line, &tampered_line)).unwrap();
    let refused = bench.run_job("main", 60, &[]);
    assert_ne!(refused.code, 0, "{refused:?}");
    assert!(refused.stderr.contains("v1/secrets/decrypt_failed"), "{refused:?}");
    assert!(
        refused.stderr.contains("env.DEMO_SECRET") && refused.stderr.contains("authentication failed"),
        "{refused:?}"
    );
    let jobs = bench.ws.cli(&["--json", "job", "list"]);
    assert_eq!(jobs.json()["jobs"].as_array().map(Vec::len), Some(1), "no job was recorded: {jobs:?}");
}
