//! The warm pool against `pve-sim` and a real `agentlabd`: claims, refills, the size as a
//! bound at every moment, a `kill -9` with a partly filled pool, a profile change that
//! drains, and jobs that start on pooled sandboxes with tokens of their own.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a broken fixture should fail the test at once, with its cause"
)]

use agentlab_e2e::jobs::JobBench;
use agentlab_e2e::{SimProcess, Workspace, eventually, guest_post, pause};
use std::collections::BTreeSet;
use std::time::Duration;

const POOLED: &str = "name: pooled\ntemplate_vmid: 9000\nresources:\n  cores: 2\n  memory_mb: 2048\n\
                      behavior:\n  ttl_minutes_default: 600\npool:\n  size: 2\n";

fn write_pooled_profile(ws: &Workspace, text: &str) {
    std::fs::write(ws.path().join("profiles/pooled.yaml"), text).unwrap();
}

/// `agentlab pool status --json`, for the `pooled` profile.
fn pool(ws: &Workspace) -> serde_json::Value {
    let out = ws.cli(&["--json", "pool", "status"]);
    assert_eq!(out.code, 0, "{out:?}");
    let status = out.json();
    let found = status["profiles"].as_array().and_then(|p| p.iter().find(|p| p["profile"] == "pooled").cloned());
    found.unwrap_or(serde_json::Value::Null)
}

fn ready(ws: &Workspace) -> u64 {
    pool(ws)["ready"].as_u64().unwrap_or(0)
}

fn sandboxes(ws: &Workspace) -> Vec<serde_json::Value> {
    ws.cli(&["--json", "sandbox", "list"]).json()["sandboxes"].as_array().cloned().unwrap_or_default()
}

/// The live pooled sandboxes (not yet destroyed), by VMID.
fn pooled_vmids(ws: &Workspace) -> BTreeSet<u64> {
    sandboxes(ws)
        .iter()
        .filter(|s| s["pooled"] == true && s["state"] != "DESTROYED")
        .filter_map(|s| s["vmid"].as_u64())
        .collect()
}

/// The most pooled sandboxes seen at once, with what they were at that moment, so a pool
/// above its size says which records made it so.
#[derive(Default)]
struct Most {
    count: usize,
    seen: String,
}

impl Most {
    fn sample(&mut self, ws: &Workspace) {
        let pooled: Vec<String> = sandboxes(ws)
            .iter()
            .filter(|s| s["pooled"] == true && s["state"] != "DESTROYED")
            .map(|s| format!("{} {}", s["vmid"], s["state"].as_str().unwrap_or("?")))
            .collect();
        if pooled.len() > self.count {
            self.count = pooled.len();
            self.seen = pooled.join(", ");
        }
    }

    fn assert_within(&self, size: usize) {
        assert!(self.count <= size, "the pool held {} sandboxes, above its size {size}: {}", self.count, self.seen);
    }
}

/// The VMs in the simulator besides the template.
fn sim_vms(sim: &SimProcess) -> BTreeSet<u64> {
    let state = sim.admin_get("/admin/state");
    let vms = state["world"]["vms"].as_object().cloned().unwrap_or_default();
    vms.keys().filter_map(|k| k.parse().ok()).filter(|v| *v != 9000).collect()
}

#[test]
fn the_pool_fills_hands_out_refills_survives_kill_9_and_drains_on_a_profile_change() {
    let ws = Workspace::new();
    let local = ws.path().join("pve-local");
    let sim = SimProcess::start(ws.path(), &["--local-storage-path", &local.display().to_string()]);
    write_pooled_profile(&ws, POOLED);
    ws.write_sandbox_config(&sim, "pool_refill_concurrency: 2\npool_check_interval: 20s\n");
    let daemon = ws.start_daemon();

    // Filling: sampled all along, the pool never holds more than its size.
    let mut most = Most::default();
    let full = eventually(Duration::from_secs(60), || {
        most.sample(&ws);
        ready(&ws) == 2
    });
    assert!(full, "the pool did not fill: {}\n{}", pool(&ws), daemon.log());
    most.assert_within(2);
    let first = pooled_vmids(&ws);
    let human = ws.cli(&["sandbox", "list"]);
    assert!(human.stdout.contains("READY (pooled)"), "{}", human.stdout);

    // A claim: one of the pooled sandboxes, READY at once, with the caller's name and lease.
    let out = ws.cli(&["--json", "sandbox", "new", "--profile", "pooled", "--name", "mine", "--ttl", "30"]);
    assert_eq!(out.code, 0, "{out:?}");
    let claimed = out.json();
    let vmid = claimed["vmid"].as_u64().unwrap();
    assert!(first.contains(&vmid), "{vmid} was not taken from the pool {first:?}");
    assert_eq!((claimed["state"].as_str(), claimed["name"].as_str()), (Some("READY"), Some("mine")));
    assert_eq!(claimed["pooled"], false);
    assert!(claimed["lease_expires_at"].is_string(), "the claim armed a lease: {claimed}");
    let events = ws.cli(&["--json", "logs", &vmid.to_string()]).stdout;
    assert!(events.contains("sandbox.claimed"), "{events}");

    // The pool refills to its size with a new VM; the claimed one is the caller's now.
    let refilled = eventually(Duration::from_secs(60), || {
        most.sample(&ws);
        ready(&ws) == 2
    });
    assert!(refilled, "no refill: {}", pool(&ws));
    assert!(!pooled_vmids(&ws).contains(&vmid));
    // The lease armed at the claim ends the sandbox like any other (30 scaled minutes).
    let expired = eventually(Duration::from_secs(60), || {
        sandboxes(&ws).iter().any(|s| s["vmid"] == vmid && matches!(s["state"].as_str(), Some("DESTROYED" | "TIMEOUT")))
    });
    assert!(expired, "the claimed sandbox's lease did not run: {:?}", sandboxes(&ws));

    // kill -9 right after a claim, while the refill is under way: after the restart the
    // pool is its size again, not more, and every VM has its record.
    let out = ws.cli(&["--json", "sandbox", "new", "--profile", "pooled", "--ttl", "600"]);
    assert_eq!(out.code, 0, "{out:?}");
    let kept = out.json()["vmid"].as_u64().unwrap();
    pause(Duration::from_millis(50));
    daemon.kill9();
    let daemon = ws.start_daemon();
    let back = eventually(Duration::from_secs(60), || {
        most.sample(&ws);
        ready(&ws) == 2 && pool(&ws)["provisioning"] == 0
    });
    assert!(back, "the pool did not come back after kill -9: {}\n{}", pool(&ws), daemon.log());
    most.assert_within(2);
    let live: BTreeSet<u64> = sandboxes(&ws)
        .iter()
        .filter(|s| !matches!(s["state"].as_str(), Some("DESTROYED" | "FAILED")))
        .filter_map(|s| s["vmid"].as_u64())
        .collect();
    let settled = eventually(Duration::from_secs(30), || sim_vms(&sim) == live);
    assert!(settled, "VMs {:?} against live records {live:?}", sim_vms(&sim));
    assert!(live.contains(&kept) && !pooled_vmids(&ws).contains(&kept));

    // A profile change drains the old pool and builds the new one.
    let old = pooled_vmids(&ws);
    write_pooled_profile(&ws, &POOLED.replace("cores: 2", "cores: 3"));
    daemon.signal(nix::sys::signal::Signal::SIGHUP);
    let rebuilt = eventually(Duration::from_secs(90), || {
        let now = pooled_vmids(&ws);
        ready(&ws) == 2 && now.is_disjoint(&old)
    });
    assert!(rebuilt, "the old pool {old:?} was not replaced: {}", pool(&ws));
    let gone = eventually(Duration::from_secs(30), || sim_vms(&sim).is_disjoint(&old));
    assert!(gone, "drained VMs still exist: {:?}", sim_vms(&sim));
    let events = ws.cli(&["--json", "logs", &old.iter().next().unwrap().to_string()]).stdout;
    assert!(events.contains("pool.drained") && events.contains("changed since"), "{events}");

    // No pool any more: everything pooled goes, the claimed sandbox stays.
    std::fs::remove_file(ws.path().join("profiles/pooled.yaml")).unwrap();
    daemon.signal(nix::sys::signal::Signal::SIGHUP);
    assert!(eventually(Duration::from_secs(60), || pooled_vmids(&ws).is_empty()), "{}", pool(&ws));
    assert!(sim_vms(&sim).contains(&kept));
    sim.assert_all_requests_valid();
}

fn fetch(bench: &JobBench, token: &str, vmid: u64) -> (u16, serde_json::Value) {
    let url = format!("http://127.0.0.1:{}/v1/bootstrap/fetch", bench.bootstrap_port);
    let body = serde_json::json!({"token": token, "vmid": vmid}).to_string();
    let (code, text) = guest_post(&url, None, body.as_bytes(), "application/json");
    (code, serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
}

fn run_pooled_job(bench: &JobBench, branch: &str) -> String {
    let repo = bench.repo.display().to_string();
    let args = ["job", "run", "--repo", &repo, "--ref", branch, "--task", "t", "--profile", "pooled"];
    let out = bench.ws.cli(&[&args[..], &["--agent", "custom", "--ttl", "30"]].concat());
    assert_eq!(out.code, 0, "{out:?}");
    out.stdout.trim().to_string()
}

#[test]
fn a_pooled_guest_waits_for_a_claim_then_gets_its_own_single_use_tokens() {
    let bench = JobBench::test_plays_the_guest("");
    write_pooled_profile(&bench.ws, &POOLED.replace("size: 2", "size: 1"));
    let _daemon = bench.ws.start_daemon();
    let ws = &bench.ws;
    assert!(eventually(Duration::from_secs(60), || ready(ws) == 1), "{}", pool(ws));
    let vmid = *pooled_vmids(ws).iter().next().unwrap();
    let token = bench.bootstrap_token(vmid);
    assert_eq!(token.len(), 64);

    // Before a claim: the fetch is held, then answered 204 ("ask again"); another token or
    // another VMID is refused as any bad token is.
    let (code, body) = fetch(&bench, &token, vmid);
    assert_eq!(code, 204, "{body}");
    assert_eq!(fetch(&bench, &"0".repeat(64), vmid).0, 403);
    assert_eq!(fetch(&bench, &token, vmid + 1).0, 403);

    // A job claims it: the held fetch gets the job's payload at once.
    let waiting = {
        let url = format!("http://127.0.0.1:{}/v1/bootstrap/fetch", bench.bootstrap_port);
        let body = serde_json::json!({"token": token, "vmid": vmid}).to_string();
        std::thread::spawn(move || guest_post(&url, None, body.as_bytes(), "application/json"))
    };
    pause(Duration::from_millis(100));
    let id = run_pooled_job(&bench, "main");
    let (code, text) = waiting.join().unwrap();
    assert_eq!(code, 200, "{text}");
    let payload: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(payload["job"]["id"], id.as_str());
    assert_eq!(bench.job(&id)["sandbox_vmid"], vmid, "the job runs on the pooled sandbox");
    assert_eq!(fetch(&bench, &token, vmid).0, 403, "the pooled sandbox's token is single use");

    // The next pooled sandbox has a token of its own, and its job tokens of their own.
    assert!(eventually(Duration::from_secs(60), || ready(ws) == 1), "no refill: {}", pool(ws));
    let next = *pooled_vmids(ws).iter().next().unwrap();
    let next_token = bench.bootstrap_token(next);
    assert_ne!(next_token, token);
    let other = run_pooled_job(&bench, "main");
    let (code, second) = fetch(&bench, &next_token, next);
    assert_eq!(code, 200, "{second}");
    assert_eq!(second["job"]["id"], other.as_str());
    for field in [&["runner_token"][..], &["artifact", "token"][..]] {
        let get = |v: &serde_json::Value| field.iter().fold(v.clone(), |v, k| v[*k].clone());
        assert_ne!(get(&payload), get(&second), "{field:?} is fresh for each job");
    }
    let report = format!("http://127.0.0.1:{}/v1/runner/report", bench.bootstrap_port);
    let running = serde_json::json!({"job_id": other, "vmid": next, "status": "RUNNING", "phase": "repo_ready"});
    let wrong = payload["runner_token"].as_str().unwrap();
    let (code, _) = guest_post(&report, Some(wrong), running.to_string().as_bytes(), "application/json");
    assert_eq!(code, 403, "another job's runner token does not report for this one");
}

#[test]
fn jobs_started_on_pooled_sandboxes_complete_with_the_real_runner() {
    let bench = JobBench::with_runner_config("");
    write_pooled_profile(&bench.ws, POOLED);
    let _daemon = bench.ws.start_daemon();
    let ws = &bench.ws;
    assert!(eventually(Duration::from_secs(60), || ready(ws) == 2), "{}\n{}", pool(ws), bench.guest_logs());
    let pooled = pooled_vmids(ws);
    // READY comes from the daemon's probe; the runners start their long poll a moment later.
    // Claiming before both do would let a runner find its job on the first fetch, and the
    // check below is that a pooled runner waits for one.
    let waiting = "warm pool: waiting for a job";
    let both = eventually(Duration::from_secs(30), || bench.guest_logs().matches(waiting).count() >= 2);
    assert!(both, "both pooled runners wait for a job: {}", bench.guest_logs());
    let jobs: Vec<String> = (0..2).map(|_| run_pooled_job(&bench, "main")).collect();
    let mut used = BTreeSet::new();
    for id in &jobs {
        let job = bench.wait_final(id, Duration::from_secs(90));
        assert_eq!(job["status"], "COMPLETED", "{job}\n{}", bench.guest_logs());
        used.insert(job["sandbox_vmid"].as_u64().unwrap());
        let artifacts = ws.cli(&["--json", "job", "artifacts", id]).json();
        let count = artifacts["artifacts"].as_array().map_or(0, Vec::len);
        assert!(count > 0, "the job's artifacts were uploaded: {artifacts}");
    }
    assert_eq!(used, pooled, "both jobs ran on the sandboxes the pool had booted");
    assert!(bench.guest_logs().contains("warm pool: waiting for a job"), "{}", bench.guest_logs());
}

#[test]
fn a_pooled_runner_waits_out_a_daemon_away_for_longer_than_its_retries() {
    // Two fetch attempts 200 ms apart: the retries run out within a second of the daemon going.
    let bench = JobBench::with_runner_env(&["AGENTLAB_BOOTSTRAP_RETRY_MAX=2"]);
    write_pooled_profile(&bench.ws, &POOLED.replace("size: 2", "size: 1"));
    let daemon = bench.ws.start_daemon();
    let ws = &bench.ws;
    assert!(eventually(Duration::from_secs(60), || ready(ws) == 1), "{}\n{}", pool(ws), bench.guest_logs());
    let vmid = *pooled_vmids(ws).iter().next().unwrap();
    let waiting = eventually(Duration::from_secs(30), || bench.guest_logs().contains("waiting for a job"));
    assert!(waiting, "{}", bench.guest_logs());

    daemon.kill9();
    let gone = "the daemon is not answering";
    let noticed = eventually(Duration::from_secs(30), || bench.guest_logs().matches(gone).count() >= 2);
    assert!(noticed, "the runner ran out of retries and keeps asking: {}", bench.guest_logs());

    // Back: the same pooled sandbox takes a job and completes it.
    let _daemon = ws.start_daemon();
    let id = run_pooled_job(&bench, "main");
    let job = bench.wait_final(&id, Duration::from_secs(90));
    assert_eq!(job["status"], "COMPLETED", "{job}\n{}", bench.guest_logs());
    assert_eq!(job["sandbox_vmid"], vmid, "the job ran on the sandbox that waited");
}
