//! Restart safety of workspaces: `kill -9` of `agentlabd` at random moments during attach,
//! detach, revert, rebind and create. Afterwards each workspace is attached to exactly the sandbox
//! its record names or to none, its volume exists and is its holder's, and nothing is left
//! half done.

use agentlab_e2e::{Dice, SimProcess, Workspace, eventually, pause};
use std::time::Duration;

fn vmid_of(ws: &Workspace) -> u32 {
    let out = ws.cli(&["--json", "sandbox", "new", "--profile", "yolo-ephemeral", "--ttl", "600"]);
    assert_eq!(out.code, 0, "{out:?}");
    out.json()["vmid"].as_u64().unwrap_or(0) as u32
}

fn workspaces(ws: &Workspace) -> Vec<serde_json::Value> {
    ws.cli(&["--json", "workspace", "list"]).json()["workspaces"].as_array().cloned().unwrap_or_default()
}

#[test]
fn ten_kill_nine_rounds_during_attach_detach_revert_rebind_and_create_lose_no_workspace() {
    let ws = Workspace::new();
    let local = ws.path().join("pve-local");
    let sim = SimProcess::start(ws.path(), &["--local-storage-path", &local.display().to_string()]);
    ws.write_sandbox_config(&sim, "");
    let (a, b) = {
        let _daemon = ws.start_daemon();
        assert_eq!(ws.cli(&["workspace", "create", "--name", "ws1", "--size", "1"]).code, 0);
        (vmid_of(&ws), vmid_of(&ws))
    };
    let mut dice = Dice::from_env("workspace kill test");
    for round in 0..10 {
        let daemon = ws.start_daemon();
        let (a, b) = (a.to_string(), b.to_string());
        let name = format!("extra{round}");
        let args: Vec<&str> = match dice.below(6) {
            0 => vec!["workspace", "attach", "ws1", &a],
            1 => vec!["workspace", "attach", "ws1", &b],
            2 => vec!["workspace", "detach", "ws1"],
            3 => vec!["sandbox", "revert", &a],
            4 => vec!["workspace", "rebind", "ws1", "--profile", "yolo-ephemeral", "--ttl", "600", "--keep-old"],
            _ => vec!["workspace", "create", "--name", &name, "--size", "1"],
        };
        println!("round {round}: {}", args.join(" "));
        let mut client = ws.cli_background(&args);
        pause(Duration::from_millis(dice.below(400)));
        daemon.kill9();
        let _ = client.wait();
    }

    let _daemon = ws.start_daemon();
    let sandboxes_settled = || {
        let list = ws.cli(&["--json", "sandbox", "list"]).json()["sandboxes"].as_array().cloned().unwrap_or_default();
        list.iter().all(|s| !matches!(s["state"].as_str(), Some("REQUESTED" | "PROVISIONING" | "BOOTING")))
    };
    let settled =
        || sandboxes_settled() && workspaces(&ws).iter().all(|w| w["intent"].is_null() && w["state"] != "creating");
    assert!(eventually(Duration::from_secs(60), settled), "workspaces left half done: {:?}", workspaces(&ws));
    let state = sim.admin_get("/admin/state");
    let vms = state["world"]["vms"].as_object().cloned().unwrap_or_default();
    for w in workspaces(&ws) {
        assert_eq!(w["state"], "ready", "{w}");
        let volid = w["volid"].as_str().unwrap_or_default().to_string();
        let holder = w["holder_vmid"].to_string();
        let held = vms.get(&holder).and_then(|vm| vm["config"]["scsi0"].as_str()).unwrap_or_default();
        assert!(held.starts_with(&volid), "holder {holder} holds {volid}: {held}");
        let volname = volid.split_once(':').map(|(_, n)| n).unwrap_or_default();
        assert!(state["world"]["storages"]["local-lvm"]["volumes"][volname].is_object(), "{volid} exists");
        let users: Vec<u32> = vms
            .iter()
            .filter(|(id, _)| **id != holder)
            .filter(|(_, vm)| {
                vm["config"].as_object().is_some_and(|c| {
                    c.values().any(|v| v.as_str().is_some_and(|v| v.split(',').next() == Some(volid.as_str())))
                })
            })
            .filter_map(|(id, _)| id.parse().ok())
            .collect();
        let recorded: Vec<u32> = w["attached_vmid"].as_u64().map(|v| v as u32).into_iter().collect();
        assert_eq!(users, recorded, "{} is in the configs of {users:?}, recorded on {recorded:?}", w["name"]);
        let name = w["name"].as_str().unwrap_or_default();
        let check = ws.cli(&["--json", "workspace", "check", name]);
        assert_eq!(check.code, 0, "workspace check reports no errors: {check:?}");
        if let Some(vmid) = recorded.first() {
            let slot = vms[&vmid.to_string()]["config"]["scsi1"].as_str().unwrap_or_default().to_string();
            assert!(slot.starts_with(&volid), "attached as scsi1, not left as unusedN: {slot}");
        }
    }
    println!("{} workspaces after 10 kill -9 rounds, all consistent", workspaces(&ws).len());
    for w in workspaces(&ws) {
        let name = w["name"].as_str().unwrap_or_default().to_string();
        assert_eq!(ws.cli(&["workspace", "detach", &name]).code, 0);
        let out = ws.cli(&["workspace", "destroy", &name]);
        assert_eq!(out.code, 0, "{out:?}");
    }
    sim.assert_all_requests_valid();
}
