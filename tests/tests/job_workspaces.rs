//! A job's workspace end to end, in pve-sim's process runtime (the workspace volume is a
//! directory the guest gets as its work directory): what one job writes there, the next
//! job, in a new sandbox, reads.

use agentlab_e2e::eventually;
use agentlab_e2e::jobs::JobBench;
use std::time::Duration;

fn job_id(stderr: &str) -> String {
    stderr.split_whitespace().find(|w| w.starts_with("job_")).unwrap_or_default().to_string()
}

#[test]
fn what_one_job_writes_to_its_workspace_the_next_job_reads_in_a_new_sandbox() {
    let bench = JobBench::with_runner();
    let _daemon = bench.ws.start_daemon();
    let ws = &bench.ws;

    let first = bench.run_job("ws-write", 60, &["--follow", "--workspace", "new:ws1", "--workspace-size", "1G"]);
    assert_eq!(first.code, 0, "{first:?}\n{}", bench.guest_logs());
    let first_job = bench.job(&job_id(&first.stderr));
    let first_vmid = first_job["sandbox_vmid"].as_u64().unwrap_or(0) as u32;
    let workspace = ws.cli(&["--json", "workspace", "show", "ws1"]).json();
    assert_eq!(first_job["workspace_id"], workspace["id"], "{first_job}");
    let holder = workspace["holder_vmid"].as_u64().unwrap_or(0) as u32;
    let volname = format!("vm-{holder}-disk-0");

    // Between the jobs: the first sandbox is gone, the volume is still there, the holder's.
    assert!(eventually(Duration::from_secs(20), || bench.sim.vm(first_vmid).is_none()), "job 1's sandbox destroyed");
    let state = bench.sim.admin_get("/admin/state");
    let volume = &state["world"]["storages"]["local-lvm"]["volumes"][&volname];
    assert_eq!(volume["owner"], holder, "the holder owns the volume: {volume}");
    let workspace = ws.cli(&["--json", "workspace", "show", "ws1"]).json();
    assert!(workspace["attached_vmid"].is_null(), "detached when the sandbox went: {workspace}");

    let second = bench.run_job("ws-read", 60, &["--follow", "--workspace", "ws1"]);
    assert_eq!(second.code, 0, "{second:?}\n{}", bench.guest_logs());
    let second_job = bench.job(&job_id(&second.stderr));
    assert_ne!(second_job["sandbox_vmid"], first_job["sandbox_vmid"], "a new sandbox");
    let expected = format!("read: state from {}", first_job["id"].as_str().unwrap_or_default());
    assert!(second.stdout.contains(&expected), "job 2 read what job 1 wrote: {second:?}");
    // The repository went into the workspace, next to the state.
    assert!(
        second.stdout.contains("reused the existing checkout") || bench.guest_logs().contains("reused"),
        "{second:?}"
    );
}

#[test]
fn a_workspace_in_use_by_a_running_job_is_refused_to_another_job_naming_the_sandbox() {
    let bench = JobBench::with_runner();
    let _daemon = bench.ws.start_daemon();
    let ws = &bench.ws;
    assert_eq!(ws.cli(&["workspace", "create", "--name", "shared", "--size", "1"]).code, 0);
    let running = bench.start_job("slow", 60, &["--workspace", "shared"]);
    let attached = eventually(Duration::from_secs(60), || {
        !ws.cli(&["--json", "workspace", "show", "shared"]).json()["attached_vmid"].is_null()
    });
    assert!(attached, "the running job's sandbox has the workspace");
    let vmid = ws.cli(&["--json", "workspace", "show", "shared"]).json()["attached_vmid"].clone();
    let refused = bench.run_job("main", 60, &["--json", "--workspace", "shared"]);
    assert_eq!(refused.code, 1, "{refused:?}");
    assert_eq!(refused.json()["code"], "v1/workspace/attached", "{refused:?}");
    assert!(refused.stdout.contains(&format!("sandbox {vmid}")), "{refused:?}");
    // With --workspace-wait the next job waits for the running one's sandbox to let go.
    let waited = bench.run_job("main", 60, &["--follow", "--workspace", "shared", "--workspace-wait", "2m"]);
    assert_eq!(waited.code, 0, "{waited:?}");
    assert_eq!(bench.job(&running)["status"], "COMPLETED", "it waited for the first job to end");
    // A new: workspace whose job is refused leaves nothing behind.
    let bad = bench.run_job("a..b", 60, &["--json", "--workspace", "new:orphan", "--workspace-size", "1"]);
    assert_eq!(bad.json()["code"], "v1/validation/invalid_value", "the daemon refuses the ref: {bad:?}");
    let names = ws.cli(&["--json", "workspace", "list"]).json();
    assert!(!names.to_string().contains("orphan"), "{names}");
}

/// Waits until no sandbox has the workspace (a finished job's sandbox goes a moment later).
fn wait_detached(bench: &JobBench, workspace: &str) {
    let detached = eventually(Duration::from_secs(30), || {
        bench.ws.cli(&["--json", "workspace", "show", workspace]).json()["attached_vmid"].is_null()
    });
    assert!(detached, "workspace {workspace} still attached");
}

/// Reads the workspace's state with a job on `ws-read`; what it printed.
fn read_state(bench: &JobBench, workspace: &str) -> String {
    let out = bench.run_job("ws-read", 60, &["--follow", "--workspace", workspace, "--workspace-wait", "60"]);
    assert_eq!(out.code, 0, "{out:?}\n{}", bench.guest_logs());
    wait_detached(bench, workspace);
    out.stdout.lines().find(|l| l.starts_with("read:")).unwrap_or_default().to_string()
}

/// Writes the job's id into the workspace with a job on `ws-write`; that id.
fn write_state(bench: &JobBench, workspace: &str) -> String {
    let out = bench.run_job("ws-write", 60, &["--follow", "--workspace", workspace, "--workspace-wait", "60"]);
    assert_eq!(out.code, 0, "{out:?}\n{}", bench.guest_logs());
    wait_detached(bench, workspace);
    job_id(&out.stderr)
}

#[test]
fn snapshots_round_trip_a_detached_workspace_and_forks_are_independent_copies() {
    let bench = JobBench::with_runner();
    let _daemon = bench.ws.start_daemon();
    let ws = &bench.ws;
    assert_eq!(ws.cli(&["workspace", "create", "--name", "snap", "--size", "1"]).code, 0);
    let first = write_state(&bench, "snap");
    let taken = ws.cli(&["workspace", "snapshot", "create", "snap", "s1"]);
    assert_eq!(taken.code, 0, "{taken:?}");
    let second = write_state(&bench, "snap");
    assert_eq!(read_state(&bench, "snap"), format!("read: state from {second}"));

    let restored = ws.cli(&["workspace", "snapshot", "restore", "snap", "s1"]);
    assert_eq!(restored.code, 0, "{restored:?}");
    assert_eq!(read_state(&bench, "snap"), format!("read: state from {first}"), "back to s1");
    let listed = ws.cli(&["--json", "workspace", "snapshot", "list", "snap"]).json();
    assert_eq!(listed["snapshots"][0]["name"], "s1", "{listed}");

    // A fork copies the volume as it is now; a fork of s1 as it was then. Each is its own.
    let fork = ws.cli(&["--json", "workspace", "fork", "snap", "--name", "copy"]);
    assert_eq!(fork.code, 0, "{fork:?}");
    assert_ne!(fork.json()["holder_vmid"], ws.cli(&["--json", "workspace", "show", "snap"]).json()["holder_vmid"]);
    let third = write_state(&bench, "snap");
    assert_eq!(read_state(&bench, "copy"), format!("read: state from {first}"), "the copy did not change");
    let from_snapshot = ws.cli(&["workspace", "fork", "snap", "--name", "old", "--from-snapshot", "s1"]);
    assert_eq!(from_snapshot.code, 0, "{from_snapshot:?}");
    assert_eq!(read_state(&bench, "old"), format!("read: state from {first}"));
    assert_eq!(read_state(&bench, "snap"), format!("read: state from {third}"), "the source kept its own");

    // While a job's sandbox has it: no snapshot, no restore, no fork.
    wait_detached(&bench, "snap");
    let running = bench.start_job("slow", 60, &["--workspace", "snap", "--workspace-wait", "60"]);
    assert!(eventually(Duration::from_secs(60), || {
        !ws.cli(&["--json", "workspace", "show", "snap"]).json()["attached_vmid"].is_null()
    }));
    for args in [
        vec!["--json", "workspace", "snapshot", "create", "snap", "s2"],
        vec!["--json", "workspace", "snapshot", "restore", "snap", "s1"],
        vec!["--json", "workspace", "fork", "snap", "--name", "busy"],
    ] {
        let refused = ws.cli(&args);
        assert_eq!(refused.json()["code"], "v1/workspace/attached", "{args:?}: {refused:?}");
    }
    assert_eq!(bench.wait_final(&running, Duration::from_secs(120))["status"], "COMPLETED");
    wait_detached(&bench, "snap");
    let missing = ws.cli(&["--json", "workspace", "snapshot", "restore", "snap", "nope"]);
    assert_eq!(missing.json()["code"], "v1/validation/invalid_value", "{missing:?}");
}
