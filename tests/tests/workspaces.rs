//! Workspaces end to end (`agentlabd`, `agentlab`, `pve-sim`): the volume is its holder
//! VM's, so destroying or reverting the sandbox it is attached to never frees it.

use agentlab_e2e::{SimProcess, Workspace};

fn sim_for(ws: &Workspace) -> SimProcess {
    let local = ws.path().join("pve-local");
    SimProcess::start(ws.path(), &["--local-storage-path", &local.display().to_string()])
}

fn volumes(sim: &SimProcess) -> Vec<String> {
    let state = sim.admin_get("/admin/state");
    let volumes = state["world"]["storages"]["local-lvm"]["volumes"].as_object().cloned().unwrap_or_default();
    volumes.keys().cloned().collect()
}

fn new_sandbox(ws: &Workspace) -> u32 {
    let out = ws.cli(&["--json", "sandbox", "new", "--profile", "yolo-ephemeral"]);
    assert_eq!(out.code, 0, "{out:?}");
    out.json()["vmid"].as_u64().unwrap_or(0) as u32
}

#[test]
fn a_workspace_is_held_by_its_own_vm_and_outlives_the_sandboxes_it_is_attached_to() {
    let ws = Workspace::new();
    let sim = sim_for(&ws);
    ws.write_sandbox_config(&sim, "");
    let _daemon = ws.start_daemon();

    let out = ws.cli(&["--json", "workspace", "create", "--name", "ws1", "--size", "1G"]);
    assert_eq!(out.code, 0, "{out:?}");
    let created = out.json();
    assert_eq!(created["state"], "ready", "{created}");
    let holder = created["holder_vmid"].as_u64().unwrap_or(0) as u32;
    let volid = created["volid"].as_str().unwrap_or_default().to_string();
    assert_eq!(volid, format!("local-lvm:vm-{holder}-disk-0"), "{created}");
    let vm = sim.vm(holder).unwrap_or_else(|| panic!("holder VM {holder} missing"));
    let tags = vm["config"]["tags"].as_str().unwrap_or_default();
    assert!(tags.split(';').any(|t| t == "agentlab") && tags.contains("agentlab-workspace"), "{tags}");
    assert_eq!(vm["config"]["protection"], "1", "{vm}");
    assert_eq!(vm["power"], "stopped", "a holder is never started: {vm}");

    let first = new_sandbox(&ws);
    assert_ne!(first, holder, "a sandbox never gets a holder's VMID");
    assert_eq!(ws.cli(&["workspace", "attach", "ws1", &first.to_string()]).code, 0);
    let scsi1 = sim.vm(first).map(|vm| vm["config"]["scsi1"].clone()).unwrap_or_default();
    assert!(scsi1.as_str().is_some_and(|d| d.starts_with(&volid)), "{scsi1}");

    // Attached elsewhere: refused, naming the sandbox that has it.
    let second = new_sandbox(&ws);
    let refused = ws.cli(&["--json", "workspace", "attach", "ws1", &second.to_string()]);
    assert_eq!(refused.code, 1, "{refused:?}");
    assert_eq!(refused.json()["code"], "v1/workspace/attached", "{refused:?}");
    assert!(refused.stdout.contains(&format!("attached to sandbox {first}")), "{refused:?}");
    let destroy_refused = ws.cli(&["--json", "workspace", "destroy", "ws1"]);
    assert_eq!(destroy_refused.json()["code"], "v1/workspace/attached", "{destroy_refused:?}");

    // A revert rolls back to `clean` (taken before the attach): the workspace is attached
    // again afterwards, not left as an unusedN.
    assert_eq!(ws.cli(&["sandbox", "revert", &first.to_string()]).code, 0);
    let config = sim.vm(first).map(|vm| vm["config"].clone()).unwrap_or_default();
    assert!(config["scsi1"].as_str().is_some_and(|d| d.starts_with(&volid)), "{config}");
    assert!(config["unused0"].is_null(), "{config}");

    // Destroying the sandbox detaches the workspace; its volume stays, the holder's.
    assert_eq!(ws.cli(&["sandbox", "destroy", &first.to_string()]).code, 0);
    assert!(sim.vm(first).is_none());
    let volname = volid.trim_start_matches("local-lvm:").to_string();
    assert!(volumes(&sim).contains(&volname), "the volume survived: {:?}", volumes(&sim));
    let shown = ws.cli(&["--json", "workspace", "show", "ws1"]).json();
    assert!(shown["attached_vmid"].is_null(), "{shown}");

    // Now free: the other sandbox gets it.
    assert_eq!(ws.cli(&["workspace", "attach", "ws1", &second.to_string()]).code, 0);
    let check = ws.cli(&["--json", "workspace", "check", "ws1"]);
    assert_eq!((check.code, check.json()["ok"].clone()), (0, serde_json::json!(true)), "{check:?}");
    // Someone moves the disk by hand (`qm set`): check says so, with the fix.
    let moved = serde_json::json!({"method": "PUT", "path": format!("/nodes/pve1/qemu/{second}/config"),
        "params": [["delete", "scsi1"], ["scsi2", volid.clone()]]});
    assert!(sim.admin_post("/admin/call", &moved));
    let check = ws.cli(&["--json", "workspace", "check", "ws1"]);
    assert_eq!(check.code, 1, "errors make check fail: {check:?}");
    let codes: Vec<String> = check.json()["findings"]
        .as_array()
        .map(|f| f.iter().filter_map(|x| x["code"].as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    assert_eq!(codes, ["volume_not_attached"], "{check:?}");
    assert!(check.stdout.contains(&format!("agentlab workspace attach ws1 {second}")), "{check:?}");
    assert_eq!(ws.cli(&["workspace", "detach", "ws1"]).code, 0);
    let config = sim.vm(second).map(|vm| vm["config"].clone()).unwrap_or_default();
    assert!(config["scsi1"].is_null() && config["scsi2"].is_null(), "detach drops every key naming it: {config}");
    assert_eq!(ws.cli(&["workspace", "check", "ws1"]).code, 0);
    assert!(sim.vm(second).is_some_and(|vm| vm["config"]["scsi1"].is_null()));

    // `sandbox new --workspace` attaches it before the first boot.
    let out = ws.cli(&["--json", "sandbox", "new", "--profile", "yolo-ephemeral", "--workspace", "ws1"]);
    assert_eq!(out.code, 0, "{out:?}");
    let third = out.json()["vmid"].as_u64().unwrap_or(0) as u32;
    let scsi1 = sim.vm(third).map(|vm| vm["config"]["scsi1"].clone()).unwrap_or_default();
    assert!(scsi1.as_str().is_some_and(|d| d.starts_with(&volid)), "{scsi1}");
    let busy = ws.cli(&["--json", "sandbox", "new", "--profile", "yolo-ephemeral", "--workspace", "ws1"]);
    assert_eq!(busy.json()["code"], "v1/workspace/attached", "{busy:?}");
    assert_eq!(ws.cli(&["sandbox", "destroy", &third.to_string()]).code, 0);

    // The orphan scan leaves the holder alone.
    let report = ws.cli(&["--json", "sandbox", "reconcile"]).json();
    let orphans = report["orphans"].as_array().cloned().unwrap_or_default();
    assert!(orphans.iter().all(|o| o["vmid"] != holder), "{report}");

    let destroyed = ws.cli(&["workspace", "destroy", "ws1"]);
    assert_eq!(destroyed.code, 0, "{destroyed:?}");
    assert!(sim.vm(holder).is_none(), "the holder is gone");
    assert!(!volumes(&sim).contains(&volname), "and with it the volume");
    let missing = ws.cli(&["--json", "workspace", "show", "ws1"]);
    assert_eq!(missing.json()["code"], "v1/workspace/not_found", "{missing:?}");
    sim.assert_all_requests_valid();
}

#[test]
fn bad_workspace_requests_get_clear_errors() {
    let ws = Workspace::new();
    let sim = sim_for(&ws);
    ws.write_sandbox_config(&sim, "");
    let _daemon = ws.start_daemon();
    let bad_name = ws.cli(&["--json", "workspace", "create", "--name", "Bad Name", "--size", "1"]);
    assert_eq!(bad_name.json()["code"], "v1/validation/invalid_value", "{bad_name:?}");
    let bad_size = ws.cli(&["workspace", "create", "--name", "ok", "--size", "lots"]);
    assert_eq!(bad_size.code, 2, "clap refuses it: {bad_size:?}");
    let bad_storage = ws.cli(&["--json", "workspace", "create", "--name", "ok", "--size", "1", "--storage", "nope"]);
    assert_eq!(bad_storage.code, 1, "{bad_storage:?}");
    assert!(bad_storage.stdout.contains("storage `nope`"), "{bad_storage:?}");
    let listed = ws.cli(&["--json", "workspace", "list"]).json();
    let states: Vec<&str> = listed["workspaces"]
        .as_array()
        .map(|l| l.iter().filter_map(|w| w["state"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(states, ["failed"], "the failed one is kept for `workspace destroy`: {listed}");
    let destroyed = ws.cli(&["workspace", "destroy", "ok"]);
    assert_eq!(destroyed.code, 0, "{destroyed:?}");
    let twice = ws.cli(&["--json", "workspace", "create", "--name", "ok", "--size", "1"]);
    assert_eq!(twice.code, 0, "{twice:?}");
    let dup = ws.cli(&["--json", "workspace", "create", "--name", "ok", "--size", "1"]);
    assert_eq!(dup.json()["code"], "v1/resource/conflict", "{dup:?}");
    let unknown = ws.cli(&["--json", "workspace", "attach", "nope", "1000"]);
    assert_eq!(unknown.json()["code"], "v1/workspace/not_found", "{unknown:?}");
    let no_sandbox = ws.cli(&["--json", "workspace", "attach", "ok", "4321"]);
    assert_eq!(no_sandbox.json()["code"], "v1/sandbox/not_found", "{no_sandbox:?}");
}

#[test]
fn rebind_moves_a_workspace_to_a_fresh_sandbox_and_destroys_or_keeps_the_old_one() {
    let ws = Workspace::new();
    let sim = sim_for(&ws);
    ws.write_sandbox_config(&sim, "");
    let _daemon = ws.start_daemon();
    assert_eq!(ws.cli(&["workspace", "create", "--name", "rb", "--size", "1"]).code, 0);
    let out = ws.cli(&["--json", "sandbox", "new", "--profile", "yolo-ephemeral", "--workspace", "rb"]);
    assert_eq!(out.code, 0, "{out:?}");
    let first = out.json()["vmid"].as_u64().unwrap_or(0) as u32;
    let volid = ws.cli(&["--json", "workspace", "show", "rb"]).json()["volid"].as_str().unwrap_or_default().to_string();
    let scsi1 = |vmid: u32| sim.vm(vmid).and_then(|vm| vm["config"]["scsi1"].as_str().map(str::to_string));

    let moved = ws.cli(&["--json", "workspace", "rebind", "rb", "--profile", "yolo-ephemeral"]);
    assert_eq!(moved.code, 0, "{moved:?}");
    let moved = moved.json();
    let second = moved["vmid"].as_u64().unwrap_or(0) as u32;
    assert_eq!(moved["old_vmid"], first, "{moved}");
    assert!(sim.vm(first).is_none(), "the old sandbox is destroyed");
    assert!(scsi1(second).is_some_and(|d| d.starts_with(&volid)), "the new one has it");

    let kept = ws.cli(&["--json", "workspace", "rebind", "rb", "--profile", "yolo-ephemeral", "--keep-old"]).json();
    let third = kept["vmid"].as_u64().unwrap_or(0) as u32;
    assert!(sim.vm(second).is_some() && scsi1(second).is_none(), "kept, without the workspace");
    assert!(scsi1(third).is_some_and(|d| d.starts_with(&volid)));
    assert_eq!(ws.cli(&["workspace", "check", "rb"]).code, 0);
}
