//! Sessions end to end (`agentlabd`, `agentlab`, `pve-sim`): stop and resume keep the
//! workspace and change the sandbox; a fork gets its own copy of the workspace.

use agentlab_e2e::{SimProcess, Workspace};

fn sim_for(ws: &Workspace) -> SimProcess {
    let local = ws.path().join("pve-local");
    SimProcess::start(ws.path(), &["--local-storage-path", &local.display().to_string()])
}

fn scsi1(sim: &SimProcess, vmid: &serde_json::Value) -> String {
    let vmid = vmid.as_u64().unwrap_or(0) as u32;
    sim.vm(vmid).and_then(|vm| vm["config"]["scsi1"].as_str().map(str::to_string)).unwrap_or_default()
}

#[test]
fn stop_and_resume_keep_the_workspace_and_change_the_sandbox_and_a_fork_is_a_copy() {
    let ws = Workspace::new();
    let sim = sim_for(&ws);
    ws.write_sandbox_config(&sim, "");
    let _daemon = ws.start_daemon();

    let out = ws.cli(&[
        "--json",
        "session",
        "create",
        "--name",
        "dev",
        "--profile",
        "yolo-ephemeral",
        "--workspace",
        "new:devws",
        "--workspace-size",
        "1",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    let created = out.json();
    assert_eq!(created["state"], "running", "{created}");
    let workspace = ws.cli(&["--json", "workspace", "show", "devws"]).json();
    let volid = workspace["volid"].as_str().unwrap_or_default().to_string();
    assert!(scsi1(&sim, &created["current_vmid"]).starts_with(&volid), "the first sandbox has the workspace");

    let stopped = ws.cli(&["--json", "session", "stop", "dev"]).json();
    assert_eq!((stopped["state"].as_str(), stopped["current_vmid"].is_null()), (Some("stopped"), true), "{stopped}");
    let first = created["current_vmid"].as_u64().unwrap_or(0) as u32;
    assert!(sim.vm(first).is_none(), "the sandbox is destroyed");
    assert!(ws.cli(&["--json", "workspace", "show", "devws"]).json()["attached_vmid"].is_null());

    let resumed = ws.cli(&["--json", "session", "resume", "dev"]).json();
    assert_eq!(resumed["state"], "running", "{resumed}");
    assert_ne!(resumed["current_vmid"], created["current_vmid"], "a fresh sandbox");
    assert!(scsi1(&sim, &resumed["current_vmid"]).starts_with(&volid), "with the same workspace");
    let again = ws.cli(&["--json", "session", "resume", "dev"]).json();
    assert_ne!(again["current_vmid"], resumed["current_vmid"], "resume of a running session replaces its sandbox");
    assert!(sim.vm(resumed["current_vmid"].as_u64().unwrap_or(0) as u32).is_none(), "the old one is destroyed");
    assert!(scsi1(&sim, &again["current_vmid"]).starts_with(&volid));

    // A fork copies a detached workspace: a running session is refused, with the fix.
    let refused = ws.cli(&["--json", "session", "fork", "dev", "--name", "dev2"]);
    assert_eq!(refused.json()["code"], "v1/workspace/attached", "{refused:?}");
    assert!(refused.stdout.contains("session stop dev"), "{refused:?}");
    assert_eq!(ws.cli(&["session", "stop", "dev"]).code, 0);
    let fork = ws.cli(&["--json", "session", "fork", "dev", "--name", "dev2"]);
    assert_eq!(fork.code, 0, "{fork:?}");
    let fork = fork.json();
    assert_ne!(fork["workspace_id"], workspace["id"], "its own workspace");
    let copy = ws.cli(&["--json", "workspace", "show", fork["workspace_id"].as_str().unwrap_or_default()]).json();
    assert_ne!(copy["volid"], workspace["volid"], "{copy}");
    assert!(scsi1(&sim, &fork["current_vmid"]).starts_with(copy["volid"].as_str().unwrap_or("?")));

    let listed = ws.cli(&["--json", "session", "list"]).json();
    assert_eq!(listed["sessions"].as_array().map(Vec::len), Some(2), "{listed}");
    let missing = ws.cli(&["--json", "session", "show", "nope"]);
    assert_eq!(missing.json()["code"], "v1/session/not_found", "{missing:?}");
    let dup = ws.cli(&[
        "--json",
        "session",
        "create",
        "--name",
        "dev",
        "--profile",
        "yolo-ephemeral",
        "--workspace",
        "devws",
    ]);
    assert_eq!(dup.json()["code"], "v1/resource/conflict", "{dup:?}");
    sim.assert_all_requests_valid();
}
