//! `overhead` (sequential creates: what the control plane adds to Proxmox's time) and
//! `burst` (concurrent creates: the makespan against the storage lock's bound).

use super::{Rig, Run, against, median_p95, round, timed};
use serde_json::{Value, json};
use std::time::Instant;

/// What the simulator's model spends on one sandbox's serial path: the clone, the start,
/// the guest agent's boot, and each asynchronous config update, resize and snapshot it was
/// sent.
/// The simulator's time for a sandbox of the benchmark's profile: clone, the clean
/// snapshot, start, guest agent (`trace` shows each request).
pub fn cold_ideal_seconds(run: Run) -> f64 {
    run.model("clone_linked") + run.model("snapshot") + run.model("start") + run.model("agent_ready")
}

pub fn simulated_seconds(run: Run, requests: &[Value]) -> f64 {
    let is = |r: &Value, method: &str, suffix: &str| {
        r["method"] == method && r["path"].as_str().is_some_and(|p| p.ends_with(suffix))
    };
    // Only the asynchronous form (POST) takes the simulator's `config` time; PUT applies at once.
    let configs = requests.iter().filter(|r| is(r, "POST", "/config")).count() as f64;
    let resizes = requests.iter().filter(|r| is(r, "PUT", "/resize")).count() as f64;
    let snapshots = requests.iter().filter(|r| is(r, "POST", "/snapshot")).count() as f64;
    run.model("clone_linked")
        + run.model("start")
        + run.model("agent_ready")
        + configs * run.model("config")
        + resizes * run.model("resize")
        + snapshots * run.model("snapshot")
}

/// `agentlab --json sandbox new --profile bench`: the VMID, or why not.
pub fn create(rig: &Rig, profile: &str) -> Result<u64, String> {
    let out = rig.ws.cli(&["--json", "sandbox", "new", "--profile", profile]);
    if out.code != 0 {
        return Err(format!("{} {}", out.stdout.trim(), out.stderr.trim()));
    }
    out.json()["vmid"].as_u64().ok_or_else(|| out.stdout.clone())
}

pub fn overhead(run: Run) -> Value {
    let rig = Rig::start(run, "", "");
    let count = run.count(20, 5);
    let (mut control_ms, mut ratios, mut per_sandbox, mut ideals) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut failures = Vec::new();
    for _ in 0..count {
        let before = rig.requests().len();
        let (created, took) = timed(|| create(&rig, "bench"));
        let requests = rig.requests();
        let mine = &requests[before.min(requests.len())..];
        if let Err(e) = created {
            failures.push(e.chars().take(300).collect::<String>());
            continue;
        }
        let simulated = simulated_seconds(run, mine);
        let control = took.as_secs_f64() - simulated;
        control_ms.push(control * 1000.0);
        ratios.push(control / simulated);
        per_sandbox.push(mine.len() as f64);
        ideals.push(simulated);
    }
    let (median_ms, p95_ms) = median_p95(&mut control_ms);
    let (median_ratio, _) = median_p95(&mut ratios);
    let (requests, _) = median_p95(&mut per_sandbox);
    let (ideal, _) = median_p95(&mut ideals);
    let measured = failures.is_empty() && !control_ms.is_empty();
    json!({
        "scenario": "overhead",
        "sandboxes": count,
        "failures": failures,
        "latency_factor": run.factor,
        "ideal_seconds_per_sandbox": round(ideal, 3),
        "control_plane_ms": {"median": round(median_ms, 1), "p95": round(p95_ms, 1)},
        "control_plane_ratio_median": round(median_ratio, 4),
        "proxmox_requests_per_sandbox": requests,
        "targets": {
            "ratio": against(round(median_ratio, 4), "<= 0.02", measured && median_ratio <= 0.02),
            "per_sandbox_ms": against(round(median_ms, 1), "<= 50", measured && median_ms <= 50.0),
        },
    })
}

pub fn burst(run: Run) -> Value {
    let rps = 20.0;
    let rig = Rig::start(run, "", "");
    let count = run.count(50, 10);
    let before = rig.requests().len();
    let start = Instant::now();
    let children: Vec<_> = (0..count)
        .map(|_| {
            std::process::Command::new(crate::bin("agentlab"))
                .args(["--json", "--socket"])
                .arg(rig.ws.socket())
                .args(["sandbox", "new", "--profile", "bench"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn agentlab")
        })
        .collect();
    let mut failures = Vec::new();
    for child in children {
        match child.wait_with_output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => failures.push(String::from_utf8_lossy(&out.stdout).chars().take(300).collect::<String>()),
            Err(e) => failures.push(e.to_string()),
        }
    }
    let makespan = start.elapsed().as_secs_f64();
    let requests = rig.requests().len() - before;
    // The storage lock serialises the clones; the starts and boots overlap them.
    let lock_bound = count as f64 * run.model("clone_linked") + run.model("start") + run.model("agent_ready");
    // The gateway's own limit: every request the burst needed, at `proxmox_rate_limit_rps`.
    let rate_bound = requests as f64 / rps;
    let bound = lock_bound.max(rate_bound);
    let ratio = makespan / bound;
    json!({
        "scenario": "burst",
        "sandboxes": count,
        "latency_factor": run.factor,
        "failures": failures.len(),
        "failure_messages": failures.iter().take(3).collect::<Vec<_>>(),
        "makespan_seconds": round(makespan, 2),
        "storage_lock_bound_seconds": round(lock_bound, 2),
        "rate_limit_bound_seconds": round(rate_bound, 2),
        "makespan_over_bound": round(ratio, 3),
        "proxmox_requests": requests,
        "proxmox_requests_per_second": round(requests as f64 / makespan, 2),
        "targets": {
            "failures": against(failures.len() as f64, "0", failures.is_empty()),
            "makespan_over_bound": against(round(ratio, 3), "<= 1.15", ratio <= 1.15),
        },
    })
}

/// `trace`: one sandbox's Proxmox requests in order, with the time of each (ms from the
/// request for the sandbox) and the simulator's tasks: where the control plane's time goes.
pub fn trace(run: Run) -> Value {
    let rig = Rig::start(run, "", "");
    // Let the daemon's start-up reads pass.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let before = rig.requests().len();
    let tasks_before = rig.sim.admin_get("/admin/tasks").as_array().map_or(0, Vec::len);
    let (created, took) = timed(|| create(&rig, "bench"));
    let requests = rig.requests();
    let mine = &requests[before.min(requests.len())..];
    let t0 = mine.first().and_then(|r| r["at_ms"].as_u64()).unwrap_or(0);
    let lines: Vec<String> = mine
        .iter()
        .map(|r| {
            let at = r["at_ms"].as_u64().unwrap_or(0).saturating_sub(t0);
            format!("{at:>6} {} {}", r["method"].as_str().unwrap_or(""), r["path"].as_str().unwrap_or(""))
        })
        .collect();
    let tasks = rig.sim.admin_get("/admin/tasks").as_array().cloned().unwrap_or_default();
    let mine_tasks: Vec<String> = tasks
        .iter()
        .skip(tasks_before)
        .map(|t| {
            let at = |k: &str| t[k].as_u64().unwrap_or(0).saturating_sub(t0);
            format!("{} {}..{}", t["task_type"].as_str().unwrap_or(""), at("started_ms"), at("ended_ms"))
        })
        .collect();
    json!({
        "scenario": "trace",
        "latency_factor": run.factor,
        "vmid": created.ok(),
        "seconds": round(took.as_secs_f64(), 3),
        "simulated_seconds": round(simulated_seconds(run, mine), 3),
        "requests": lines,
        "tasks": mine_tasks,
    })
}
