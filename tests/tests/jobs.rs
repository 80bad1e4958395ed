//! Jobs end to end with real processes: `pve-sim` running `agent-runner` as each VM's guest,
//! `agentlabd`, `agentlab`, `git` and `age`.

use agentlab_e2e::jobs::{JobBench, SECRET, run};
use agentlab_e2e::{eventually, files_containing, pause};
use std::process::Command;
use std::time::Duration;

const JOB_LIMIT: Duration = Duration::from_secs(120);

#[test]
fn a_job_completes_with_redacted_logs_and_verified_artifacts() {
    let bench = JobBench::with_runner();
    let _daemon = bench.ws.start_daemon();
    let ws = &bench.ws;

    let validate = ws.cli(&["secrets", "validate"]);
    assert_eq!(validate.code, 0, "{validate:?}");
    assert!(validate.stdout.contains("DEMO_SECRET") && !validate.stdout.contains(SECRET), "{validate:?}");

    let out = bench.run_job("main", 60, &["--follow"]);
    assert_eq!(out.code, 0, "{out:?}\n{}", bench.guest_logs());
    assert!(out.stdout.contains("hello from the agent on task: say hello"), "{out:?}");
    assert!(out.stdout.contains("the secret is [REDACTED]"), "{out:?}");
    assert!(out.stderr.contains("COMPLETED"), "{out:?}");
    let id = out.stderr.split_whitespace().find(|w| w.starts_with("job_")).unwrap_or_default().to_string();

    let job = bench.job(&id);
    assert_eq!(job["status"], "COMPLETED", "{job}");
    assert_eq!(job["result"]["exit_code"], 0, "{job}");
    assert!(job["result"]["commit"].as_str().is_some_and(|c| c.len() == 40), "{job}");
    let phases: Vec<&str> =
        job["timeline"].as_array().map(|t| t.iter().filter_map(|p| p["phase"].as_str()).collect()).unwrap_or_default();
    assert_eq!(
        phases,
        [
            "queued",
            "sandbox_ready",
            "bootstrap_fetched",
            "repo_ready",
            "agent_started",
            "agent_finished",
            "artifacts_uploaded"
        ],
        "{job}"
    );
    let vmid = job["sandbox_vmid"].as_u64().unwrap_or(0) as u32;

    // The artifact bundle, downloaded and verified, holds out.txt, report.json and the log.
    let listing = ws.cli(&["--json", "job", "artifacts", &id]).json();
    let sha = listing["artifacts"][0]["sha256"].as_str().unwrap_or_default().to_string();
    let dest = ws.path().join("download.tar.gz");
    let got = ws.cli(&["job", "artifacts", "download", &id, "--bundle", "--out", &dest.display().to_string()]);
    assert_eq!(got.code, 0, "{got:?}");
    assert!(got.stdout.contains(&sha) && got.stdout.contains("verified"), "{got:?}");
    // Into a directory (named with a trailing `/`, created): exactly the bundle, by its name
    // and with the listed SHA-256 (no selector means the bundle); never over a file without
    // --force.
    let into = ws.path().join("into");
    let into_arg = format!("{}/", into.display());
    let got = ws.cli(&["--json", "job", "artifacts", "download", &id, "--out", &into_arg]);
    assert_eq!(got.code, 0, "{got:?}");
    assert_eq!(got.json()["sha256"], sha.as_str(), "{got:?}");
    let files: Vec<String> =
        std::fs::read_dir(&into).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(files, ["agentlab-artifacts.tar.gz"]);
    assert_eq!(std::fs::read(into.join("agentlab-artifacts.tar.gz")).unwrap(), std::fs::read(&dest).unwrap());
    let again = ws.cli(&["job", "artifacts", "download", &id, "--out", &into_arg]);
    assert_eq!(again.code, 2, "{again:?}");
    assert!(again.stderr.contains("already exists") && again.stderr.contains("--force"), "{again:?}");
    let forced = ws.cli(&["job", "artifacts", "download", &id, "--out", &into_arg, "--force"]);
    assert_eq!(forced.code, 0, "{forced:?}");
    assert_eq!(std::fs::read_dir(&into).unwrap().count(), 1, "no .partial left behind");
    let unpacked = ws.path().join("unpacked");
    std::fs::create_dir_all(&unpacked).unwrap();
    run(Command::new("tar").arg("-xzf").arg(&dest).arg("-C").arg(&unpacked));
    for name in ["out.txt", "report.json", "agent-runner.log"] {
        assert!(unpacked.join(name).exists(), "{name} missing from the bundle");
    }
    let notes = std::fs::read_to_string(unpacked.join("notes.txt")).unwrap_or_default();
    assert_eq!(notes, "copied secret: [REDACTED]\n", "a secret the agent wrote into an artifact");
    let log = std::fs::read_to_string(unpacked.join("agent-runner.log")).unwrap_or_default();
    assert!(log.contains("the secret is [REDACTED]"), "{log}");

    // The secret is nowhere: logs, events, the database (stored log), artifacts, the
    // runner's workspace after it wiped its secrets.
    for args in [vec!["logs", &id, "--tail", "1000"], vec!["--json", "logs", &id, "--tail", "1000"]] {
        let logs = ws.cli(&args);
        assert_eq!(logs.code, 0, "{logs:?}");
        assert!(logs.stdout.contains("[REDACTED]") && !logs.stdout.contains(SECRET), "{logs:?}");
    }
    let sandbox_logs = ws.cli(&["logs", &vmid.to_string(), "--tail", "1000"]);
    assert!(!sandbox_logs.stdout.contains(SECRET), "{sandbox_logs:?}");
    assert!(!job.to_string().contains(SECRET), "{job}");
    for dir in [ws.path().join("data"), unpacked.clone()] {
        let hits = files_containing(&dir, SECRET.as_bytes());
        assert!(hits.is_empty(), "the secret leaked into {hits:?}");
    }

    // The sandbox is destroyed after the job (no keepalive).
    assert!(eventually(Duration::from_secs(30), || bench.sim.vm(vmid).is_none()), "VM {vmid} left behind");
    bench.sim.assert_all_requests_valid();
}

#[test]
fn the_agent_reads_the_bundle_file_and_it_is_gone_after_the_job() {
    let bench = JobBench::with_runner();
    let _daemon = bench.ws.start_daemon();
    let out = bench.run_job("bundle", 60, &["--follow"]);
    assert_eq!(out.code, 0, "{out:?}\n{}", bench.guest_logs());
    assert!(out.stdout.contains("from the bundle: [REDACTED]"), "{out:?}");
    assert!(out.stdout.contains("bundle mode 600"), "{out:?}");
    assert!(!out.stdout.contains(SECRET), "{out:?}");
    let path = out.stdout.lines().find_map(|l| l.strip_prefix("bundle file: ")).unwrap_or_default().trim();
    assert!(path.ends_with("/secrets/bundle.json"), "{out:?}");
    assert!(!std::path::Path::new(path).exists(), "{path} is still there after the job");
}

#[test]
fn timeout_failure_and_cancel_end_jobs_as_they_should() {
    let bench = JobBench::with_runner();
    let daemon = bench.ws.start_daemon();

    // ttl 1 minute is 0.6 s at test_time_scale 0.01: run.sh sleeps past it.
    let slow = bench.start_job("sleep", 1, &[]);
    let failing = bench.start_job("fail", 60, &[]);
    let canceled = bench.start_job("sleep", 60, &[]);

    let job = bench.wait_final(&slow, JOB_LIMIT);
    assert_eq!(job["status"], "TIMEOUT", "{job}\n{}", bench.guest_logs());
    assert_eq!(job["result"]["exit_code"], 124, "{job}");

    let job = bench.wait_final(&failing, JOB_LIMIT);
    assert_eq!(job["status"], "FAILED", "{job}");
    assert_eq!(job["result"]["exit_code"], 3, "{job}");
    assert!(job["error"].as_str().is_some_and(|e| e.contains("exit code 3")), "{job}");

    let started = eventually(JOB_LIMIT, || {
        let job = bench.job(&canceled);
        job["timeline"].as_array().is_some_and(|t| t.iter().any(|p| p["phase"] == "agent_started"))
    });
    assert!(started, "{}", bench.guest_logs());
    let vmid = bench.job(&canceled)["sandbox_vmid"].as_u64().unwrap_or(0) as u32;
    let out = bench.ws.cli(&["--json", "job", "cancel", &canceled]);
    assert_eq!(out.code, 0, "{out:?}\ndaemon log:\n{}", daemon.log());
    assert_eq!(out.json()["status"], "CANCELED");
    assert!(eventually(Duration::from_secs(30), || bench.sim.vm(vmid).is_none()), "VM {vmid} not destroyed");
    let again = bench.ws.cli(&["--json", "job", "cancel", &canceled]);
    assert_eq!(again.code, 1, "{again:?}");
    assert_eq!(again.json()["code"], "v1/job/finalized");

    let list = bench.ws.cli(&["--json", "job", "list", "--filter", "status=CANCELED"]).json();
    let ids: Vec<&str> =
        list["jobs"].as_array().map(|j| j.iter().filter_map(|x| x["id"].as_str()).collect()).unwrap_or_default();
    assert_eq!(ids, [canceled.as_str()]);
}

#[test]
fn a_running_job_survives_kill_9_of_the_daemon() {
    let bench = JobBench::with_runner();
    let daemon = bench.ws.start_daemon();
    let id = bench.start_job("slow", 60, &[]);
    let running = eventually(JOB_LIMIT, || bench.job(&id)["status"] == "RUNNING");
    assert!(running, "{}", bench.guest_logs());
    daemon.kill9();
    pause(Duration::from_millis(1500));
    let _daemon = bench.ws.start_daemon();
    let job = bench.wait_final(&id, JOB_LIMIT);
    assert_eq!(job["status"], "COMPLETED", "{job}\n{}", bench.guest_logs());
    let listing = bench.ws.cli(&["--json", "job", "artifacts", &id]).json();
    assert_eq!(listing["artifacts"][0]["name"], "agentlab-artifacts.tar.gz", "{listing}");
}

#[test]
fn a_job_whose_vm_is_deleted_behind_its_back_fails_at_once() {
    let bench = JobBench::with_runner();
    let _daemon = bench.ws.start_daemon();
    // TTL 60 minutes (36 s here): its deadline is far away.
    let id = bench.start_job("sleep", 60, &[]);
    let running = eventually(JOB_LIMIT, || bench.job(&id)["status"] == "RUNNING");
    assert!(running, "{}", bench.guest_logs());
    let vmid = bench.job(&id)["sandbox_vmid"].as_u64().unwrap_or(0);
    // The sandbox follows its job to RUNNING, even when the runner reported before READY.
    let sandbox_running = eventually(Duration::from_secs(10), || {
        bench.ws.cli(&["--json", "sandbox", "show", &vmid.to_string()]).json()["state"] == "RUNNING"
    });
    let sandbox_logs = bench.ws.cli(&["logs", &vmid.to_string(), "--tail", "100"]).stdout;
    assert!(sandbox_running, "sandbox {vmid} never RUNNING:\n{sandbox_logs}");
    assert!(bench.sim.vanish(vmid));
    let job = bench.wait_final(&id, Duration::from_secs(15));
    assert_eq!(job["status"], "FAILED", "{job}");
    let error = job["error"].as_str().unwrap_or_default();
    assert!(error.contains(&format!("sandbox {vmid} vanished")), "{job}");
    let sandbox = bench.ws.cli(&["--json", "sandbox", "show", &vmid.to_string()]).json();
    assert_eq!(sandbox["state"], "DESTROYED", "{sandbox}");
}
