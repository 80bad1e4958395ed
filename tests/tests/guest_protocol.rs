//! The guest listener as a hostile guest sees it: the test plays the guest (no runner in
//! the VM) with `curl` against a real `agentlabd`, using the token from the real snippet.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a broken fixture should fail the test at once, with its cause"
)]

use agentlab_e2e::eventually;
use agentlab_e2e::jobs::{JobBench, SECRET};
use std::time::Duration;

use agentlab_e2e::guest_post as call;

fn json(url: &str, bearer: Option<&str>, body: &serde_json::Value) -> (u16, serde_json::Value) {
    let (code, text) = call(url, bearer, body.to_string().as_bytes(), "application/json");
    (code, serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
}

#[test]
fn guest_credentials_are_single_use_bound_and_checked() {
    let bench = JobBench::test_plays_the_guest("artifact_max_bytes: 100000\n");
    let _daemon = bench.ws.start_daemon();
    let id = bench.start_job("main", 60, &[]);
    let other = bench.start_job("main", 60, &[]);
    for job in [&id, &other] {
        let ready = eventually(Duration::from_secs(60), || {
            bench.job(job)["timeline"].as_array().is_some_and(|t| t.iter().any(|p| p["phase"] == "sandbox_ready"))
        });
        assert!(ready, "{}", bench.job(job));
    }
    let vmid = bench.job(&id)["sandbox_vmid"].as_u64().unwrap_or(0);
    let other_vmid = bench.job(&other)["sandbox_vmid"].as_u64().unwrap_or(0);

    // The token cloud-init would have written into the VM.
    let token = bench.bootstrap_token(vmid);
    assert_eq!(token.len(), 64, "{token}");

    let guest = format!("http://127.0.0.1:{}", bench.bootstrap_port);
    let fetch = format!("{guest}/v1/bootstrap/fetch");
    let (code, body) = json(&fetch, None, &serde_json::json!({"token": token, "vmid": other_vmid}));
    assert_eq!(code, 403, "a token for another VMID: {body}");
    let (code, body) = json(&fetch, None, &serde_json::json!({"token": token, "vmid": 999_999}));
    assert_eq!(code, 403, "a VMID without a job looks like any refusal (F15): {body}");
    assert_eq!(body["error"], "invalid or expired bootstrap token");
    let (code, other_body) = json(&fetch, None, &serde_json::json!({"token": "0".repeat(64), "vmid": other_vmid}));
    assert_eq!((code, &other_body["error"]), (403, &body["error"]), "no address or job disclosed");
    let (code, payload) = json(&fetch, None, &serde_json::json!({"token": token, "vmid": vmid}));
    assert_eq!(code, 200, "{payload}");
    assert_eq!(payload["job"]["id"], id.as_str());
    assert_eq!(payload["env"]["DEMO_SECRET"], SECRET, "the daemon decrypted the age bundle");
    let (code, body) = json(&fetch, None, &serde_json::json!({"token": token, "vmid": vmid}));
    assert_eq!(code, 403, "a replayed token: {body}");
    assert_eq!(body["code"], "v1/auth/invalid_token");

    let runner_token = payload["runner_token"].as_str().unwrap_or_default().to_string();
    let artifact_token = payload["artifact"]["token"].as_str().unwrap_or_default().to_string();
    let report = format!("{guest}/v1/runner/report");
    let running = serde_json::json!({"job_id": id, "vmid": vmid, "status": "RUNNING", "phase": "repo_ready",
        "log": format!("cloning… token is {SECRET}\n"), "log_offset": 0});
    let (code, body) = json(&report, None, &running);
    assert_eq!(code, 401, "a report without the runner token: {body}");
    let (code, body) = json(&report, Some(&artifact_token), &running);
    assert_eq!(code, 403, "a report with another token: {body}");
    let (code, body) = json(&report, Some(&runner_token), &running);
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["job_status"], "RUNNING");

    let upload = payload["artifact"]["endpoint"].as_str().unwrap_or_default().to_string();
    let job_dir = bench.ws.path().join("data/artifacts").join(&id);
    let (code, body) = call(&upload, Some(&artifact_token), &vec![7u8; 200_000], "application/gzip");
    assert_eq!(code, 413, "over artifact_max_bytes: {body}");
    let kept: Vec<_> = std::fs::read_dir(&job_dir).into_iter().flatten().flatten().map(|e| e.path()).collect();
    assert!(kept.is_empty(), "nothing may be kept of a refused upload: {kept:?}");
    let (code, body) = call(&format!("{upload}?path=../../escape"), Some(&artifact_token), b"x", "text/plain");
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("v1/artifact/invalid_path"), "{body}");
    assert!(!bench.ws.path().join("data/escape").exists());
    let (code, body) = call(&upload, None, b"x", "text/plain");
    assert_eq!(code, 401, "{body}");
    let (code, body) = call(&format!("{upload}?path=notes.txt"), Some(&artifact_token), b"notes", "text/plain");
    assert_eq!(code, 201, "{body}");
    assert_eq!(std::fs::read_to_string(job_dir.join("notes.txt")).ok().as_deref(), Some("notes"));

    let done = serde_json::json!({"job_id": id, "vmid": vmid, "status": "COMPLETED", "exit_code": 0});
    let (code, body) = json(&report, Some(&runner_token), &done);
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["job_status"], "COMPLETED");
    let (code, body) = json(&report, Some(&runner_token), &done);
    assert_eq!(code, 409, "a report after the end: {body}");

    let logs = bench.ws.cli(&["logs", &id, "--tail", "100"]);
    assert!(logs.stdout.contains("token is [REDACTED]") && !logs.stdout.contains(SECRET), "{logs:?}");
    assert!(eventually(Duration::from_secs(30), || bench.sim.vm(vmid as u32).is_none()), "VM {vmid} left behind");
}
