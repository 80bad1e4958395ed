//! Restart safety: `kill -9` of `agentlabd` at random moments while sandboxes provision,
//! then a restart. Afterwards every VM belongs to a live record, every live record's VM
//! exists, no snippet is left without a record, and no record is stuck provisioning.

use agentlab_e2e::{Dice, SimProcess, Workspace, eventually, pause};
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

#[test]
fn twenty_kill_nine_rounds_while_five_sandboxes_provision_leave_nothing_behind() {
    let ws = Workspace::new();
    let local = ws.path().join("pve-local");
    let sim = SimProcess::start(ws.path(), &["--local-storage-path", &local.display().to_string()]);
    ws.write_sandbox_config(&sim, "");
    let mut dice = Dice::from_env("kill test");
    for _round in 0..20 {
        let daemon = ws.start_daemon();
        let clients: Vec<_> =
            (0..5).map(|_| ws.cli_background(&["--json", "new", "--profile", "small", "--ttl", "600"])).collect();
        pause(Duration::from_millis(dice.below(1500)));
        daemon.kill9();
        for mut client in clients {
            let _ = client.wait();
        }
    }

    let _daemon = ws.start_daemon();
    let records = || ws.cli(&["--json", "sandbox", "list"]).json()["sandboxes"].as_array().cloned().unwrap_or_default();
    let settled =
        || records().iter().all(|r| !matches!(r["state"].as_str(), Some("REQUESTED" | "PROVISIONING" | "BOOTING")));
    assert!(eventually(Duration::from_secs(120), settled), "records stuck provisioning: {:?}", records());

    let records = records();
    let mut by_state: BTreeMap<String, usize> = BTreeMap::new();
    for r in &records {
        *by_state.entry(r["state"].as_str().unwrap_or("?").to_string()).or_default() += 1;
    }
    let live: HashSet<u32> = records
        .iter()
        .filter(|r| r["state"] != "DESTROYED" && r["state"] != "FAILED")
        .filter_map(|r| r["vmid"].as_u64().map(|v| v as u32))
        .collect();
    let state = sim.admin_get("/admin/state");
    let vms: HashSet<u32> = state["world"]["vms"]
        .as_object()
        .map(|m| m.keys().filter_map(|k| k.parse().ok()).filter(|v| *v != 9000).collect())
        .unwrap_or_default();
    println!("{} records after 20 kill -9 rounds: {by_state:?}; {} VMs in the simulator", records.len(), vms.len());
    let orphans: Vec<&u32> = vms.difference(&live).collect();
    assert!(orphans.is_empty(), "VMs without a live record: {orphans:?}");
    let missing: Vec<&u32> = live.difference(&vms).collect();
    assert!(missing.is_empty(), "live records without a VM: {missing:?}");
    let recorded: HashSet<String> =
        records.iter().filter_map(|r| r["vmid"].as_u64()).map(|v| format!("agentlab-{v}-")).collect();
    let files: Vec<String> = std::fs::read_dir(ws.sim_snippets_dir())
        .map(|d| d.filter_map(Result::ok).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    let stray: Vec<String> = files.iter().filter(|f| !recorded.iter().any(|p| f.starts_with(p))).cloned().collect();
    assert!(stray.is_empty(), "snippets without a record: {stray:?}");
    let stale_snippets: Vec<String> =
        files.iter().filter(|f| !live.iter().any(|v| f.starts_with(&format!("agentlab-{v}-")))).cloned().collect();
    assert!(stale_snippets.is_empty(), "snippets of dead sandboxes: {stale_snippets:?}");

    for vmid in &live {
        let out = ws.cli(&["--json", "rm", "--force", &vmid.to_string()]);
        assert_eq!(out.code, 0, "{out:?}");
    }
    let left: Vec<String> = sim.admin_get("/admin/state")["world"]["vms"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    assert_eq!(left, ["9000"], "only the template is left");
    sim.assert_all_requests_valid();
}

#[test]
fn thirty_create_destroy_cycles_under_faults_and_vms_deleted_behind_our_back_end_correct() {
    let ws = Workspace::new();
    let local = ws.path().join("pve-local");
    let sim = SimProcess::start(
        ws.path(),
        &["--local-storage-path", &local.display().to_string(), "--error-rate", "0.05", "--lock-timeout-rate", "0.05"],
    );
    ws.write_sandbox_config(&sim, "");
    let _daemon = ws.start_daemon();
    let mut vanished = Vec::new();
    let mut created = 0;
    for cycle in 0..30 {
        let out = ws.cli(&["--json", "new", "--profile", "small", "--ttl", "600"]);
        let sandbox = out.json();
        let vmid = sandbox["vmid"].as_u64().or_else(|| sandbox["details"]["vmid"].as_u64()).unwrap_or(0) as u32;
        assert!(vmid > 0, "cycle {cycle}: {out:?}");
        if out.code == 0 {
            created += 1;
        }
        if out.code == 0 && (cycle == 7 || cycle == 19) {
            // Someone deletes the VM on the host; the health probe must notice.
            let deleted = sim.vanish(vmid);
            assert!(deleted);
            vanished.push(vmid);
            continue;
        }
        let destroyed = ws.cli(&["--json", "rm", "--force", &vmid.to_string()]);
        assert_eq!(destroyed.code, 0, "cycle {cycle}: {destroyed:?}");
    }
    let state_of = |vmid: u32| {
        ws.cli(&["--json", "show", &vmid.to_string()]).json()["state"].as_str().unwrap_or_default().to_string()
    };
    for vmid in &vanished {
        assert!(
            eventually(Duration::from_secs(30), || state_of(*vmid) == "DESTROYED"),
            "vanished {vmid} is {}",
            state_of(*vmid)
        );
        let logs = ws.cli(&["logs", &vmid.to_string()]).stdout;
        assert!(logs.contains("sandbox.vanished"), "{logs}");
    }
    let records = ws.cli(&["--json", "sandbox", "list"]).json()["sandboxes"].as_array().cloned().unwrap_or_default();
    let wrong: Vec<String> = records
        .iter()
        .filter(|r| !matches!(r["state"].as_str(), Some("DESTROYED" | "FAILED")))
        .map(|r| format!("{} {}", r["vmid"], r["state"]))
        .collect();
    assert!(wrong.is_empty(), "records not ended: {wrong:?}");
    let left: Vec<String> = sim.admin_get("/admin/state")["world"]["vms"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    assert_eq!(left, ["9000"], "VMs left behind");
    let requests = sim.admin_get("/admin/requests");
    let faulted = requests
        .as_array()
        .map(|r| r.iter().filter(|x| x["verdict"].as_str().is_some_and(|v| v.starts_with("fault:"))).count())
        .unwrap_or(0);
    println!(
        "30 cycles: {created} sandboxes READY, 2 deleted behind the daemon's back, {faulted} injected faults; no VM left"
    );
    assert!(faulted > 0);
    sim.assert_all_requests_valid();
}

#[test]
fn after_a_restart_each_sandbox_checks_its_vm_at_once() {
    let ws = Workspace::new();
    let local = ws.path().join("pve-local");
    let sim = SimProcess::start(ws.path(), &["--local-storage-path", &local.display().to_string()]);
    // A probe interval far longer than the test: only the start-up self-check can notice.
    ws.write_sandbox_config(&sim, "sandbox_probe_interval: 100000s\n");
    let daemon = ws.start_daemon();
    let vmid = ws.cli(&["--json", "new", "--profile", "small"]).json()["vmid"].as_u64().unwrap_or(0);
    daemon.stop();
    let deleted = sim.vanish(vmid);
    assert!(deleted);
    let _daemon = ws.start_daemon();
    let state =
        || ws.cli(&["--json", "show", &vmid.to_string()]).json()["state"].as_str().unwrap_or_default().to_string();
    assert!(
        eventually(Duration::from_secs(10), || state() == "DESTROYED"),
        "the restarted actor did not notice: {}",
        state()
    );
}
