//! The whole `agent-runner` flow against a fake daemon and a real local git repository:
//! fetch, clone, run `.agentlab/run.sh`, stream the redacted log, upload, final report.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a broken fixture should fail the test at once, with its cause"
)]

mod support;

use flate2::read::GzDecoder;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::Read;
use std::process::Command;
use std::time::{Duration, SystemTime};
use support::{FakeDaemon, Scratch, contains, origin_with_run_sh};

/// An env value from the payload: must never leave the VM in clear.
const SECRET: &str = "sup3r-s3cret-api-key-0042";
const RUNNER_TOKEN: &str = "runner-token-abcdef-123456";
const ARTIFACT_TOKEN: &str = "artifact-token-abcdef-123456";

const GOOD_SCRIPT: &str = r#"#!/bin/sh
echo "task: $AGENTLAB_TASK"
echo "job $AGENTLAB_JOB_ID in $(pwd)"
echo "the key is $API_KEY"
# The secret in two writes, so the runner reads it in two pieces.
half=${API_KEY%????????????}
printf 'split: %s' "$half"
sleep 0.3
printf '%s\n' "${API_KEY#"$half"}"
echo "to stderr: $API_KEY" >&2
mkdir -p "$AGENTLAB_RUN_DIR/artifacts"
echo "result for $AGENTLAB_JOB_ID" > "$AGENTLAB_RUN_DIR/artifacts/out.txt"
"#;

struct Flow {
    scratch: Scratch,
    daemon: FakeDaemon,
    commit: String,
}

struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

impl Flow {
    /// A repository whose run.sh is `script`, a descriptor, and a daemon serving the payload.
    fn new(name: &str, script: &str) -> Flow {
        let scratch = Scratch::new(name);
        let origin = scratch.path("origin");
        std::fs::create_dir_all(&origin).unwrap();
        let commit = origin_with_run_sh(&origin, script);
        let daemon = FakeDaemon::start((500, String::new()));
        let payload = json!({
            "job": {"id": "job_test", "repo_url": format!("file://{}", origin.display()), "task": "make it better",
                    "mode": "dangerous", "profile": "default", "agent": "custom", "keepalive": false,
                    "ttl_minutes": 10, "timeout_seconds": 60},
            "git": {},
            "env": {"API_KEY": SECRET, "SHORT": "1"},
            "artifact": {"endpoint": daemon.upload_endpoint(), "token": ARTIFACT_TOKEN},
            "runner_token": RUNNER_TOKEN,
            "policy": {"mode": "dangerous", "inner_sandbox": "none"}
        });
        {
            let mut state = daemon.state();
            state.fetch_answer = (200, payload.to_string());
            state.watch_dir = Some(scratch.path("run/secrets"));
        }
        let descriptor = json!({"token": "t".repeat(64), "controller": daemon.url, "vmid": 1001});
        std::fs::write(scratch.path("bootstrap.json"), descriptor.to_string()).unwrap();
        Flow { scratch, daemon, commit }
    }

    fn run(&self, extra: &[(&str, &str)]) -> Ran {
        let started = SystemTime::now();
        let out = Command::new(env!("CARGO_BIN_EXE_agent-runner"))
            .env_remove("AGENTLAB_AGENT_COMMAND")
            .env_remove("AGENTLAB_RUNNER_TIMEOUT_SECONDS")
            .env("AGENTLAB_BOOTSTRAP", self.scratch.path("bootstrap.json"))
            .env("AGENTLAB_SECRETS_DIR", self.scratch.path("run/secrets"))
            .env("AGENTLAB_RUN_DIR", self.scratch.path("run"))
            .env("AGENTLAB_REPO_DIR", self.scratch.path("repo"))
            .env("AGENTLAB_RETRY_BASE_MS", "50")
            .env("AGENTLAB_RUNNER_LOG_INTERVAL_MS", "100")
            .envs(extra.iter().copied())
            .output()
            .unwrap();
        Ran {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            elapsed: started.elapsed().unwrap_or_default(),
        }
    }

    fn final_report(&self) -> Value {
        let state = self.daemon.state();
        let finals: Vec<Value> = state.reports.iter().map(|r| r.json()).filter(|r| r["status"] != "RUNNING").collect();
        assert!(!finals.is_empty(), "no final report among {} reports", state.reports.len());
        finals[finals.len() - 1].clone()
    }

    fn secrets_left(&self) -> usize {
        std::fs::read_dir(self.scratch.path("run/secrets")).map(|d| d.count()).unwrap_or(0)
    }
}

/// The names and contents of the files in an uploaded tarball.
fn unpack(upload: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut archive = tar::Archive::new(GzDecoder::new(upload));
    let mut files = BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().map(|p| p.display().to_string()).unwrap_or_default();
        let mut contents = Vec::new();
        entry.read_to_end(&mut contents).unwrap();
        files.insert(name, contents);
    }
    files
}

#[test]
fn a_job_runs_end_to_end_with_its_secrets_redacted() {
    let flow = Flow::new("complete", GOOD_SCRIPT);
    let ran = flow.run(&[]);
    assert_eq!(ran.code, 0, "stderr: {}", ran.stderr);

    let report = flow.final_report();
    assert_eq!(report["status"], "COMPLETED", "{report}");
    assert_eq!(report["exit_code"], 0);
    assert_eq!(report["message"], "agent finished");
    assert_eq!(report["commit"], flow.commit.as_str());
    assert_eq!((report["job_id"].as_str(), report["vmid"].as_u64()), (Some("job_test"), Some(1001)));

    let state = flow.daemon.state();
    assert_eq!(state.fetches.len(), 1);
    let fetch = state.fetches[0].json();
    assert_eq!((fetch["token"].as_str().map(str::len), fetch["vmid"].as_u64()), (Some(64), Some(1001)));
    let phases: Vec<String> =
        state.reports.iter().filter_map(|r| r.json()["phase"].as_str().map(str::to_string)).collect();
    assert_eq!(phases, ["repo_ready", "agent_started", "agent_finished"]);
    // The secrets (bundle.json, the cached payload) are gone before the job is reported
    // done: whoever acts on COMPLETED (a keepalive sandbox's SSH user) finds none.
    assert_eq!(state.watched_at_final, [0], "files in the secrets dir at the final report");
    for report in &state.reports {
        assert_eq!(report.header("authorization"), Some(format!("Bearer {RUNNER_TOKEN}").as_str()));
    }

    // The upload: one tarball with the agent's file, the report and the log.
    assert_eq!(state.uploads.len(), 1);
    let upload = &state.uploads[0];
    assert_eq!(upload.target, "/upload?path=agentlab-artifacts.tar.gz");
    assert_eq!(upload.header("authorization"), Some(format!("Bearer {ARTIFACT_TOKEN}").as_str()));
    assert_eq!(upload.header("content-type"), Some("application/gzip"));
    let files = unpack(&upload.body);
    let names: Vec<&str> = files.keys().map(String::as_str).collect();
    assert_eq!(names, ["agent-runner.log", "out.txt", "report.json"]);
    assert_eq!(files["out.txt"], b"result for job_test\n");
    let summary: Value = serde_json::from_slice(&files["report.json"]).unwrap_or_default();
    assert_eq!((summary["status"].as_str(), summary["mode"].as_str()), (Some("COMPLETED"), Some("dangerous")));
    assert_eq!(summary["commit"], flow.commit.as_str());
    assert_eq!(report["artifacts"][0]["size_bytes"].as_u64(), Some(upload.body.len() as u64));

    // The log, streamed in order and redacted, also in the runner's stdout.
    let log = std::fs::read(flow.scratch.path("run/agent-runner.log")).unwrap_or_default();
    let log_text = String::from_utf8_lossy(&log);
    assert!(log_text.contains("the key is [REDACTED]") && log_text.contains("split: [REDACTED]"), "{log_text}");
    assert!(log_text.contains("to stderr: [REDACTED]"), "stderr is merged: {log_text}");
    assert!(ran.stdout.contains("the key is [REDACTED]"), "{}", ran.stdout);
    let mut streamed = String::new();
    for report in state.reports.iter().map(|r| r.json()).filter(|r| r["log"].is_string()) {
        assert_eq!(report["log_offset"].as_u64(), Some(streamed.len() as u64), "pieces are contiguous");
        streamed.push_str(report["log"].as_str().unwrap_or_default());
    }
    assert!(streamed.contains("the key is [REDACTED]"), "{streamed}");
    assert!(log_text.starts_with(&streamed), "the streamed log is the file's beginning");

    // The secret is nowhere: not sent, not logged, not uploaded, not printed.
    assert!(!contains(&state.raw, SECRET), "a request carried the secret");
    assert!(!contains(&log, SECRET));
    for (name, contents) in &files {
        assert!(!contains(contents, SECRET), "{name} in the upload holds the secret");
    }
    assert!(!ran.stdout.contains(SECRET) && !ran.stderr.contains(SECRET));
    assert_eq!(flow.secrets_left(), 0, "the secrets directory is wiped");
}

#[test]
fn a_large_log_is_streamed_in_pieces_of_at_most_64_kib() {
    let script = r#"#!/bin/sh
i=0
while [ $i -lt 4000 ]; do
  echo "line $i: $API_KEY and some padding to make the log longer than a few reports"
  i=$((i+1))
done
"#;
    let flow = Flow::new("biglog", script);
    let ran = flow.run(&[]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let state = flow.daemon.state();
    let pieces: Vec<Value> = state.reports.iter().map(|r| r.json()).filter(|r| r["log"].is_string()).collect();
    assert!(pieces.len() >= 5, "{} pieces", pieces.len());
    let mut streamed = String::new();
    for piece in &pieces {
        let text = piece["log"].as_str().unwrap_or_default();
        assert!(text.len() <= 64 * 1024, "{} bytes in one report", text.len());
        assert_eq!(piece["log_offset"].as_u64(), Some(streamed.len() as u64));
        streamed.push_str(text);
    }
    let log = std::fs::read_to_string(flow.scratch.path("run/agent-runner.log")).unwrap_or_default();
    assert!(streamed.contains("line 3999: [REDACTED] and some padding"), "the whole agent output was streamed");
    assert!(log.starts_with(&streamed));
    assert!(!streamed.contains(SECRET) && !log.contains(SECRET));
}

#[test]
fn a_restarting_daemon_is_ridden_out() {
    let flow = Flow::new("flaky", GOOD_SCRIPT);
    {
        let mut state = flow.daemon.state();
        state.fail_fetches = 2;
        state.fail_reports = 2;
        state.fail_uploads = 1;
        state.wrong_sha_uploads = 1;
    }
    let ran = flow.run(&[]);
    assert_eq!(ran.code, 0, "stderr: {}", ran.stderr);
    assert_eq!(flow.final_report()["status"], "COMPLETED");
    let state = flow.daemon.state();
    assert_eq!(state.fetches.len(), 3, "two 503s, then the payload");
    assert_eq!(state.uploads.len(), 3, "503, then a sha256 mismatch, then success");
    assert!(ran.stderr.contains("artifact upload failed (attempt 1/6)"), "{}", ran.stderr);
}

#[test]
fn a_failing_agent_is_reported_failed_and_the_runner_exits_0() {
    let flow = Flow::new("exit3", "#!/bin/sh\necho failing\nexit 3\n");
    let ran = flow.run(&[]);
    assert_eq!(ran.code, 0, "the final report was delivered: {}", ran.stderr);
    let report = flow.final_report();
    assert_eq!((report["status"].as_str(), report["exit_code"].as_i64()), (Some("FAILED"), Some(3)));
    assert_eq!(report["message"], "agent exited with code 3");
    assert_eq!(flow.daemon.state().uploads.len(), 1);
    assert_eq!(flow.secrets_left(), 0);
}

#[test]
fn an_agent_past_its_deadline_is_killed_and_reported_timeout() {
    // Ignores SIGTERM, so only the SIGKILL after the grace ends it.
    let flow = Flow::new("timeout", "#!/bin/sh\ntrap '' TERM\necho waiting\nsleep 30\n");
    let ran = flow.run(&[("AGENTLAB_RUNNER_TIMEOUT_SECONDS", "1"), ("AGENTLAB_RUNNER_KILL_GRACE_SECONDS", "1")]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let report = flow.final_report();
    assert_eq!((report["status"].as_str(), report["exit_code"].as_i64()), (Some("TIMEOUT"), Some(124)));
    assert!(ran.elapsed < Duration::from_secs(20), "took {:?}", ran.elapsed);
}

#[test]
fn no_job_exits_0_without_running_anything() {
    let flow = Flow::new("nojob", GOOD_SCRIPT);
    flow.daemon.state().fetch_answer =
        (404, r#"{"error":"job not found","code":"v1/resource/not_found","message":"job not found"}"#.into());
    let ran = flow.run(&[]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert!(ran.stderr.contains("no job assigned to this sandbox"), "{}", ran.stderr);
    let state = flow.daemon.state();
    assert_eq!((state.fetches.len(), state.reports.len(), state.uploads.len()), (1, 0, 0));
    assert!(!flow.scratch.path("repo").exists(), "nothing was cloned");
}

#[test]
fn a_refused_token_is_not_retried() {
    let flow = Flow::new("refused", GOOD_SCRIPT);
    flow.daemon.state().fetch_answer = (
        403,
        r#"{"error":"bootstrap token refused","code":"v1/auth/refused","message":"bootstrap token refused"}"#.into(),
    );
    let ran = flow.run(&[]);
    assert_eq!(ran.code, 1);
    assert!(ran.stderr.contains("bootstrap token refused"), "{}", ran.stderr);
    assert_eq!(flow.daemon.state().fetches.len(), 1);
}

#[test]
fn a_bad_or_missing_descriptor_exits_1_with_a_clear_message() {
    let flow = Flow::new("baddescriptor", GOOD_SCRIPT);
    std::fs::write(flow.scratch.path("bootstrap.json"), r#"{"token":"short","controller":"http://h","vmid":1001}"#)
        .unwrap();
    let ran = flow.run(&[]);
    assert_eq!(ran.code, 1);
    assert!(
        ran.stderr.contains("bad bootstrap descriptor") && ran.stderr.contains("256 random bits"),
        "{}",
        ran.stderr
    );

    let https = json!({"token": "t".repeat(64), "controller": "https://10.77.0.1:8844", "vmid": 1001});
    std::fs::write(flow.scratch.path("bootstrap.json"), https.to_string()).unwrap();
    let ran = flow.run(&[]);
    assert_eq!(ran.code, 1);
    assert!(ran.stderr.contains("plain HTTP on the agent bridge"), "{}", ran.stderr);

    let ran = flow.run(&[("AGENTLAB_BOOTSTRAP", "/nonexistent/bootstrap.json")]);
    assert_eq!(ran.code, 1);
    assert!(ran.stderr.contains("cannot read bootstrap descriptor /nonexistent/bootstrap.json"), "{}", ran.stderr);
    assert_eq!(flow.daemon.state().fetches.len(), 0);
}

#[test]
fn a_restarted_runner_uses_the_cached_payload_without_fetching() {
    let flow = Flow::new("restart", GOOD_SCRIPT);
    let payload = flow.daemon.state().fetch_answer.1.clone();
    let secrets = flow.scratch.path("run/secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::write(secrets.join("bootstrap.json"), payload).unwrap();
    // A second fetch would be refused: the token is single use.
    flow.daemon.state().fetch_answer = (403, r#"{"error":"token already used"}"#.into());
    let ran = flow.run(&[]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(flow.daemon.state().fetches.len(), 0);
    assert_eq!(flow.final_report()["status"], "COMPLETED");
    assert_eq!(flow.secrets_left(), 0, "the cached payload is wiped too");
}

#[test]
fn a_clone_failure_is_reported_failed_after_uploading_what_there_is() {
    let flow = Flow::new("noclone", GOOD_SCRIPT);
    {
        let mut state = flow.daemon.state();
        let mut payload: Value = serde_json::from_str(&state.fetch_answer.1).unwrap_or_default();
        payload["job"]["repo_url"] = json!(flow.scratch.path("missing").display().to_string());
        state.fetch_answer.1 = payload.to_string();
    }
    let ran = flow.run(&[]);
    assert_eq!(ran.code, 1, "{}", ran.stderr);
    let report = flow.final_report();
    assert_eq!(report["status"], "FAILED");
    assert!(report["message"].as_str().unwrap_or_default().contains("cannot prepare the repository"), "{report}");
    let state = flow.daemon.state();
    assert_eq!(state.uploads.len(), 1);
    let files = unpack(&state.uploads[0].body);
    assert!(files.contains_key("agent-runner.log") && files.contains_key("report.json"), "{:?}", files.keys());
    assert_eq!(flow.secrets_left(), 0);
}
