//! Sandboxes end to end with real `agentlabd`, `agentlab` and `pve-sim` processes.

use agentlab_e2e::{SimProcess, Workspace, eventually};
use std::time::Duration;

fn sim_for(ws: &Workspace) -> SimProcess {
    let local = ws.path().join("pve-local");
    SimProcess::start(ws.path(), &["--local-storage-path", &local.display().to_string()])
}

#[test]
fn sandbox_new_reaches_ready_with_everything_proxmox_needs_and_destroy_removes_it() {
    let ws = Workspace::new();
    let sim = sim_for(&ws);
    ws.write_sandbox_config(&sim, "");
    let _daemon = ws.start_daemon();

    let out = ws.cli(&["--json", "sandbox", "new", "--profile", "yolo-ephemeral", "--name", "e2e", "--tag", "Team-A"]);
    assert_eq!(out.code, 0, "{out:?}");
    let created = out.json();
    assert_eq!(created["state"], "READY", "{created}");
    let vmid = created["vmid"].as_u64().unwrap_or(0) as u32;
    assert!((1000..=8999).contains(&vmid), "{created}");
    assert!(created["ip"].as_str().is_some_and(|ip| ip.starts_with("10.77.")), "{created}");
    let phases: Vec<&str> = created["timings"]
        .as_array()
        .map(|t| t.iter().filter_map(|p| p["phase"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(phases, ["clone", "configure", "firewall", "snippet", "snapshot", "boot", "wait_ip"], "{created}");

    let vm = sim.vm(vmid).unwrap_or_else(|| panic!("VM {vmid} missing in the simulator"));
    let config = &vm["config"];
    assert!(
        config["scsi0"].as_str().is_some_and(|d| d.starts_with(&format!("local-lvm:vm-{vmid}-disk-"))),
        "a linked clone: {config}"
    );
    let tags = config["tags"].as_str().unwrap_or_default();
    assert!(tags.split(';').any(|t| t == "agentlab") && tags.contains("team-a"), "{tags}");
    // Recorded as Proxmox stores it (GuestHelpers.pm get_unique_tags lower-cases).
    assert_eq!(created["tags"], serde_json::json!(["team-a"]), "{created}");
    assert!(
        config["net0"].as_str().is_some_and(|n| n.contains("bridge=vmbr1") && n.contains("firewall=1")),
        "{config}"
    );
    assert_eq!(vm["firewall_options"]["enable"], 1, "{vm}");
    let rules = vm["firewall_rules"].as_array().cloned().unwrap_or_default();
    assert!(
        rules.iter().any(|r| r["type"] == "group" && r["action"] == "agent_nat_default" && r["enable"] == 1),
        "{rules:?}"
    );
    let snapshots: Vec<&str> =
        vm["snapshots"].as_array().map(|s| s.iter().filter_map(|x| x["name"].as_str()).collect()).unwrap_or_default();
    assert_eq!(snapshots, ["clean"]);
    let cicustom = config["cicustom"].as_str().unwrap_or_default().to_string();
    let file = cicustom.strip_prefix("user=local:snippets/").unwrap_or_else(|| panic!("cicustom {cicustom}"));
    let snippet = ws.sim_snippets_dir().join(file);
    let text = std::fs::read_to_string(&snippet).unwrap_or_default();
    assert!(
        text.contains("/etc/agentlab/bootstrap.json") && text.contains(&format!("\\\"vmid\\\":{vmid}"))
            || text.contains(&format!("\"vmid\":{vmid}")),
        "{text}"
    );
    assert_eq!(vm["power"], "running");
    let groups = sim.admin_get("/admin/state")["world"]["groups"].clone();
    assert!(
        groups["agent_nat_default"]["rules"].as_array().is_some_and(|r| !r.is_empty()),
        "group created with its rules: {groups}"
    );

    let shown = ws.cli(&["--json", "sandbox", "show", &vmid.to_string()]).json();
    assert_eq!(shown["state"], "READY");

    // On a terminal, `new` prints a line per phase as it happens.
    let progress = ws.cli(&["sandbox", "new", "--profile", "small", "--progress"]);
    assert_eq!(progress.code, 0, "{progress:?}");
    for phase in
        ["… clone", "… configure", "… firewall", "… snippet", "… snapshot", "… boot", "… wait_ip", "state READY"]
    {
        assert!(progress.stdout.contains(phase), "{phase} missing:\n{}", progress.stdout);
    }
    assert!(progress.stdout.lines().last().is_some_and(|l| l.contains("READY at 10.77.")), "{}", progress.stdout);

    let destroyed = ws.cli(&["--json", "sandbox", "destroy", &vmid.to_string()]);
    assert_eq!(destroyed.code, 0, "{destroyed:?}");
    assert_eq!(destroyed.json()["state"], "DESTROYED");
    assert!(sim.vm(vmid).is_none(), "the VM is gone");
    assert!(!snippet.exists(), "the snippet is gone");
    let again = ws.cli(&["--json", "sandbox", "destroy", &vmid.to_string()]);
    assert_eq!(again.code, 0, "destroy is idempotent: {again:?}");
    sim.assert_all_requests_valid();
}

#[test]
fn a_vm_without_the_agentlab_tag_is_never_touched() {
    let ws = Workspace::new();
    let sim = sim_for(&ws);
    ws.write_sandbox_config(&sim, "");
    let _daemon = ws.start_daemon();
    assert!(sim.admin_post("/admin/vms", &serde_json::json!({"vmid": 1500, "name": "precious", "running": true})));
    let out = ws.cli(&["--json", "sandbox", "destroy", "--force", "1500"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(out.json()["code"], "v1/sandbox/not_found");
    assert!(sim.vm(1500).is_some_and(|vm| vm["power"] == "running"), "the foreign VM survives");
    // And the allocator never hands out its VMID.
    let created = ws.cli(&["--json", "sandbox", "new", "--profile", "small", "--vmid", "1500"]);
    assert_eq!(created.code, 1, "{created:?}");
    assert_eq!(created.json()["code"], "v1/resource/conflict");
}

#[test]
fn lease_expiry_destroys_a_normal_sandbox_and_stops_a_keepalive_one() {
    let ws = Workspace::new();
    let sim = sim_for(&ws);
    ws.write_sandbox_config(&sim, "");
    let _daemon = ws.start_daemon();
    // Five-minute leases at test_time_scale 0.01: they end 3 s after creation.
    let normal = ws.cli(&["--json", "new", "--profile", "small", "--ttl", "5"]).json();
    let keep = ws.cli(&["--json", "new", "--profile", "small", "--ttl", "5m", "--keepalive"]).json();
    assert_eq!((normal["state"].as_str(), keep["state"].as_str()), (Some("READY"), Some("READY")), "{normal} {keep}");
    let actors = ws.cli(&["--json", "debug", "actors"]).json()["actors"].as_array().cloned().unwrap_or_default();
    let shown = actors.iter().find(|a| a["name"] == format!("sandbox:{}", normal["vmid"])).cloned().unwrap_or_default();
    assert_eq!(shown["lease_expires_at"], normal["lease_expires_at"], "debug actors shows the lease deadline: {shown}");
    assert_eq!(shown["state"], "READY");
    let (a, b) = (normal["vmid"].as_u64().unwrap_or(0) as u32, keep["vmid"].as_u64().unwrap_or(0) as u32);
    assert!(a > 0 && b > 0, "{normal} {keep}");
    let state = |vmid: u32| {
        ws.cli(&["--json", "show", &vmid.to_string()]).json()["state"].as_str().unwrap_or_default().to_string()
    };
    assert!(eventually(Duration::from_secs(20), || state(a) == "DESTROYED"), "normal sandbox is {}", state(a));
    assert!(sim.vm(a).is_none());
    assert!(eventually(Duration::from_secs(20), || state(b) == "STOPPED"), "keepalive sandbox is {}", state(b));
    assert!(sim.vm(b).is_some_and(|vm| vm["power"] == "stopped"), "kept, stopped");
    let logs = ws.cli(&["logs", &a.to_string()]).stdout;
    assert!(logs.contains("sandbox.lease.expired") && logs.contains("TIMEOUT"), "{logs}");
    // Renewal is refused unless RUNNING.
    let renew = ws.cli(&["--json", "sandbox", "lease", "renew", "--ttl", "5", &b.to_string()]);
    assert_eq!(renew.code, 1);
    assert_eq!(renew.json()["code"], "v1/sandbox/invalid_state");
    // Started again, the keepalive sandbox gets its lease length anew instead of timing out
    // at once on the expired one.
    let expired = ws.cli(&["--json", "show", &b.to_string()]).json()["lease_expires_at"].as_str().map(str::to_string);
    let started = ws.cli(&["--json", "sandbox", "start", &b.to_string()]);
    assert_eq!(started.code, 0, "{started:?}");
    let started = started.json();
    assert_eq!(started["state"], "READY", "{started}");
    let renewed = started["lease_expires_at"].as_str().map(str::to_string);
    assert!(renewed.is_some() && renewed > expired, "lease {renewed:?} after start, was {expired:?}");
    assert!(ws.cli(&["logs", &b.to_string()]).stdout.contains("renewed until"), "the renewal is logged");
    assert!(eventually(Duration::from_secs(20), || state(b) == "STOPPED"), "the new lease expires too: {}", state(b));
}

#[test]
fn a_panicking_sandbox_actor_is_restarted_from_its_record_while_others_keep_answering() {
    let ws = Workspace::new();
    let sim = sim_for(&ws);
    ws.write_sandbox_config(&sim, "");
    let _daemon = ws.start_daemon();
    let a = ws.cli(&["--json", "new", "--profile", "small"]).json()["vmid"].as_u64().unwrap_or(0) as u32;
    let b = ws.cli(&["--json", "new", "--profile", "small"]).json()["vmid"].as_u64().unwrap_or(0) as u32;
    assert!(a > 0 && b > 0);
    let panic = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", "--unix-socket"])
        .arg(ws.socket())
        .arg(format!("http://agentlab/v1/debug/sandboxes/{a}/panic"))
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    assert_eq!(panic, "202", "the test hook exists in debug builds");
    // The sibling answers throughout: show, and an actor operation (a snapshot is refused
    // for READY, which still proves its actor answers).
    for _ in 0..10 {
        assert_eq!(ws.cli(&["--json", "show", &b.to_string()]).json()["state"], "READY");
        let refused = ws.cli(&["--json", "sandbox", "snapshot", "save", &b.to_string(), "s1"]);
        assert_eq!(refused.json()["code"], "v1/sandbox/invalid_state", "{refused:?}");
    }
    let restarted = || {
        let actors = ws.cli(&["--json", "debug", "actors"]).json()["actors"].as_array().cloned().unwrap_or_default();
        actors.iter().any(|x| x["name"] == format!("sandbox:{a}") && x["restarts"] == 1 && x["state"] == "READY")
    };
    assert!(eventually(Duration::from_secs(10), restarted), "sandbox:{a} was not restarted from its record");
    assert_eq!(ws.cli(&["--json", "show", &a.to_string()]).json()["state"], "READY");
    let failures = ws.cli(&["--json", "status"]).json()["recent_failures"].clone();
    assert!(failures.to_string().contains(&format!("actor sandbox:{a} failed")), "{failures}");
    // The restarted actor still works: destroy goes through it.
    assert_eq!(ws.cli(&["--json", "rm", &a.to_string()]).json()["state"], "DESTROYED");
}

#[test]
fn reconcile_removes_tagged_orphans_and_never_untagged_vms() {
    let ws = Workspace::new();
    let sim = sim_for(&ws);
    ws.write_sandbox_config(&sim, "orphan_grace_period: 1ms\n");
    assert!(sim.admin_post("/admin/vms", &serde_json::json!({"vmid": 1500, "name": "precious", "running": true})));
    assert!(sim.admin_post("/admin/vms", &serde_json::json!({"vmid": 1600, "name": "lost", "tags": "agentlab"})));
    // A container tagged `agentlab`: /cluster/resources?type=vm lists it too, as Proxmox does.
    let container = serde_json::json!({"vmid": 1700, "name": "ct", "tags": "agentlab", "kind": "lxc", "running": true});
    assert!(sim.admin_post("/admin/vms", &container));
    // A clone interrupted before configure: AgentLab's description marker, no tag yet.
    let interrupted = serde_json::json!({"vmid": 1650, "name": "interrupted",
        "description": "agentlab-sandbox:1650 (profile small) — managed by AgentLab; do not edit"});
    assert!(sim.admin_post("/admin/vms", &interrupted));
    let _daemon = ws.start_daemon();
    let sandbox = ws.cli(&["--json", "new", "--profile", "small"]).json()["vmid"].as_u64().unwrap_or(0);

    let dry = ws.cli(&["--json", "sandbox", "reconcile"]);
    assert_eq!(dry.code, 0, "{dry:?}");
    let report = dry.json();
    assert_eq!(report["dry_run"], true);
    let orphans: Vec<u64> =
        report["orphans"].as_array().map(|o| o.iter().filter_map(|x| x["vmid"].as_u64()).collect()).unwrap_or_default();
    assert_eq!(orphans, [1600, 1650], "the tagged and the marked VM are orphans, not the container: {report}");
    assert!(sim.vm(1600).is_some() && sim.vm(1650).is_some(), "a dry run changes nothing");

    let applied = ws.cli(&["--json", "sandbox", "reconcile", "--apply"]).json();
    assert_eq!(applied["orphans"][0]["action"], "destroyed", "{applied}");
    assert_eq!(applied["orphans"][1]["action"], "destroyed", "{applied}");
    assert!(sim.vm(1600).is_none() && sim.vm(1650).is_none());
    assert_eq!(ws.cli(&["--json", "sandbox", "prune"]).code, 0);
    assert_eq!(ws.cli(&["--json", "rm", "--force", "1500"]).code, 1);
    assert!(
        sim.vm(1500).is_some_and(|vm| vm["power"] == "running"),
        "the untagged VM survives reconcile --apply, prune and destroy --force"
    );
    assert!(sim.vm(sandbox as u32).is_some(), "the live sandbox is untouched");
    let containers = sim.admin_get("/admin/state")["world"]["containers"].clone();
    assert!(containers.get("1700").is_some(), "the container is untouched: {containers}");
    // Its VMID is taken for VMs too: a sandbox never gets it.
    let taken = ws.cli(&["--json", "new", "--profile", "small", "--vmid", "1700"]);
    assert_eq!(taken.code, 1, "{taken:?}");
}

#[test]
fn operations_follow_the_state_table() {
    let ws = Workspace::new();
    let sim = sim_for(&ws);
    ws.write_sandbox_config(&sim, "");
    let _daemon = ws.start_daemon();
    let vmid = ws.cli(&["--json", "new", "--profile", "small"]).json()["vmid"].as_u64().unwrap_or(0).to_string();
    let run = |args: &[&str]| {
        let mut full = vec!["--json"];
        full.extend_from_slice(args);
        ws.cli(&full)
    };
    let state_after = |args: &[&str]| {
        let out = run(args);
        assert_eq!(out.code, 0, "{args:?}: {out:?}");
        out.json()["state"].as_str().unwrap_or_default().to_string()
    };
    assert_eq!(state_after(&["sandbox", "pause", &vmid]), "SUSPENDED");
    assert_eq!(sim.vm(vmid.parse().unwrap_or(0)).map(|vm| vm["power"].clone()), Some(serde_json::json!("paused")));
    assert_eq!(state_after(&["sandbox", "resume", &vmid]), "READY");
    // A snapshot needs a stopped sandbox.
    let refused = run(&["sandbox", "snapshot", "save", &vmid, "before"]);
    assert_eq!(refused.json()["code"], "v1/sandbox/invalid_state", "{refused:?}");
    assert_eq!(state_after(&["stop", &vmid]), "STOPPED");
    assert_eq!(state_after(&["stop", &vmid]), "STOPPED", "stop is idempotent");
    assert_eq!(state_after(&["sandbox", "snapshot", "save", &vmid, "before"]), "STOPPED");
    let names: Vec<String> = run(&["sandbox", "snapshot", "list", &vmid]).json()["snapshots"]
        .as_array()
        .map(|s| s.iter().filter_map(|x| x["name"].as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    assert_eq!(names, ["clean", "before"]);
    let started = run(&["start", &vmid]).json();
    assert_eq!(started["state"], "READY", "{started}");
    assert!(started["ip"].as_str().is_some_and(|ip| ip.starts_with("10.77.")));
    let updated = run(&["sandbox", "update", "--cores", "3", "--memory", "3G", "--tag", "blue", &vmid]).json();
    assert_eq!(
        (updated["resources"]["cores"].as_u64(), updated["resources"]["memory_mb"].as_u64()),
        (Some(3), Some(3072)),
        "{updated}"
    );
    // Running: Proxmox hot-plugs the tags but keeps cores and memory for the next start,
    // and the answer says so instead of claiming them applied.
    let pending: Vec<&str> = updated["pending_changes"]
        .as_array()
        .map(|p| p.iter().filter_map(|k| k.as_str()).collect())
        .unwrap_or_default();
    assert_eq!(pending, ["cores", "memory"], "{updated}");
    let vm = sim.vm(vmid.parse().unwrap_or(0)).unwrap_or_default();
    assert_eq!((vm["config"]["cores"].as_str(), vm["pending"]["cores"].as_str()), (Some("2"), Some("3")), "{vm}");
    assert!(vm["config"]["tags"].as_str().is_some_and(|t| t.contains("agentlab") && t.contains("blue")), "{vm}");
    // Revert rolls back to `clean` (waited on) and, asked to, leaves the VM stopped.
    assert_eq!(state_after(&["sandbox", "revert", "--no-restart", &vmid]), "STOPPED");
    let vm = sim.vm(vmid.parse().unwrap_or(0)).unwrap_or_default();
    assert_eq!(vm["config"]["cores"], "2", "the clean snapshot's config is back");
    assert_eq!(vm["power"], "stopped");
    assert_eq!(state_after(&["start", &vmid]), "READY");
    let stop_all = run(&["stop", "--all", "--force"]).json();
    assert_eq!(stop_all["stopped"], 1, "{stop_all}");
    let refused = ws.cli(&["stop", "--all"]);
    assert_eq!(refused.code, 2, "stop --all without --force and without a terminal is refused: {refused:?}");
    sim.assert_all_requests_valid();
}

/// Regression (review finding): booting again counted the provisioning deadline from the
/// sandbox's creation, so starting one older than `provisioning_timeout` failed at once and
/// tore its VM down.
#[test]
fn starting_a_sandbox_older_than_the_provisioning_timeout_keeps_its_vm() {
    let ws = Workspace::new();
    let sim = sim_for(&ws);
    ws.write_sandbox_config(&sim, "provisioning_timeout: 3s\n");
    let _daemon = ws.start_daemon();
    let vmid = ws.cli(&["--json", "new", "--profile", "small"]).json()["vmid"].as_u64().unwrap_or(0).to_string();
    assert_eq!(ws.cli(&["--json", "stop", &vmid]).json()["state"], "STOPPED");
    agentlab_e2e::pause(Duration::from_millis(3500));
    let started = ws.cli(&["--json", "start", &vmid]);
    assert_eq!(started.code, 0, "{started:?}");
    assert_eq!(started.json()["state"], "READY");
    assert!(sim.vm(vmid.parse().unwrap_or(0)).is_some_and(|vm| vm["power"] == "running"), "the VM survived");
}

#[test]
fn a_vm_migrated_outside_agentlab_is_followed_not_declared_vanished() {
    let ws = Workspace::new();
    let local = ws.path().join("pve-local");
    let sim = SimProcess::start(ws.path(), &["--local-storage-path", &local.display().to_string(), "--nodes", "2"]);
    ws.write_sandbox_config(&sim, "");
    let _daemon = ws.start_daemon();
    let created = ws.cli(&["--json", "new", "--profile", "small"]).json();
    assert_eq!(created["state"], "READY", "{created}");
    let vmid = created["vmid"].as_u64().unwrap_or(0) as u32;
    let from = created["node"].as_str().unwrap_or_default().to_string();
    let to = if from == "pve1" { "pve2" } else { "pve1" };
    assert!(sim.admin_post(&format!("/admin/vms/{vmid}/move"), &serde_json::json!({"node": to})));
    let show = || ws.cli(&["--json", "show", &vmid.to_string()]).json();
    assert!(eventually(Duration::from_secs(20), || show()["node"] == to), "the probe follows the VM: {}", show());
    assert_eq!(show()["state"], "READY", "still the same sandbox");
    let logs = ws.cli(&["logs", &vmid.to_string()]).stdout;
    assert!(logs.contains("sandbox.moved") && !logs.contains("vanished"), "{logs}");
    // Operations go to the node it is on now.
    let destroyed = ws.cli(&["--json", "sandbox", "destroy", &vmid.to_string()]);
    assert_eq!(destroyed.code, 0, "{destroyed:?}");
    assert!(sim.vm(vmid).is_none(), "destroyed on {to}");
}

#[test]
fn ttls_take_durations_and_have_an_upper_bound() {
    let ws = Workspace::new();
    let sim = sim_for(&ws);
    ws.write_sandbox_config(&sim, "max_ttl_minutes: 600\n");
    let _daemon = ws.start_daemon();
    // Far past max_ttl_minutes, and far past any timestamp: a clear refusal, not a panic.
    for ttl in ["4294967295", "601", "11h"] {
        let out = ws.cli(&["--json", "sandbox", "new", "--profile", "small", "--ttl", ttl]);
        assert_eq!(out.code, 1, "--ttl {ttl}: {out:?}");
        assert_eq!(out.json()["code"], "v1/validation/invalid_value", "--ttl {ttl}: {out:?}");
        assert!(out.json()["message"].as_str().unwrap().contains("max_ttl_minutes (600)"), "{out:?}");
    }
    let out = ws.cli(&["--json", "job", "run", "--repo", "/srv/r", "--task", "t", "--profile", "small", "--ttl", "2d"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.json()["message"].as_str().unwrap().contains("max_ttl_minutes"), "{out:?}");
    // Durations are minutes rounded up; the daemon is still there and serving.
    let out = ws.cli(&["--json", "sandbox", "new", "--profile", "small", "--ttl", "90s"]);
    assert_eq!(out.code, 0, "{out:?}");
    let vmid = out.json()["vmid"].as_u64().unwrap_or(0).to_string();
    let renew = ws.cli(&["--json", "sandbox", "lease", "renew", "--ttl", "1000", &vmid]);
    assert_eq!(renew.code, 1, "{renew:?}");
    assert!(renew.json()["message"].as_str().unwrap().contains("max_ttl_minutes"), "{renew:?}");
}

/// Proxmox reads `local`'s snippets from its own directory; a `snippets_dir` elsewhere would
/// fail every start, so the daemon refuses to start, saying which directory to use.
#[test]
fn a_snippets_dir_proxmox_does_not_read_stops_the_daemon_with_the_directory_to_use() {
    let ws = Workspace::new();
    let sim = sim_for(&ws);
    let elsewhere = ws.path().join("elsewhere");
    ws.write_sandbox_config(&sim, &format!("snippets_dir: {}\n", elsewhere.display()));
    let out = ws.run_daemon_to_exit();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let wanted = format!("set snippets_dir to {}", ws.sim_snippets_dir().display());
    assert!(stderr.contains(&wanted) && stderr.contains("snippet_storage `local`"), "{stderr}");
}

/// An interactive sandbox (`sandbox new`, no job) stays READY; its lease can be renewed
/// (docs/reference/compatibility.md: the seed allowed RUNNING only, which such a sandbox never is).
#[test]
fn an_interactive_sandbox_has_its_lease_renewed_while_ready() {
    let ws = Workspace::new();
    let sim = sim_for(&ws);
    ws.write_sandbox_config(&sim, "");
    let _daemon = ws.start_daemon();
    let created = ws.cli(&["--json", "sandbox", "new", "--profile", "small", "--ttl", "30m"]).json();
    assert_eq!(created["state"], "READY", "{created}");
    let vmid = created["vmid"].as_u64().unwrap_or(0).to_string();
    let before = created["lease_expires_at"].as_str().map(str::to_string);
    let renew = ws.cli(&["--json", "sandbox", "lease", "renew", "--ttl", "2h", &vmid]);
    assert_eq!(renew.code, 0, "{renew:?}");
    let after = ws.cli(&["--json", "show", &vmid]).json();
    assert_eq!(after["state"], "READY");
    let renewed = after["lease_expires_at"].as_str().map(str::to_string);
    assert!(renewed.is_some() && renewed > before, "lease {renewed:?}, was {before:?}");
}

/// Profiles written for the seed documents and the Go version load: their no-effect keys
/// are warned about, `balloon` means what it meant, and an `lxc` profile is reported (file,
/// document, field) while every other profile keeps working.
#[test]
fn seed_and_go_profiles_load_and_an_lxc_profile_is_reported_not_fatal() {
    let ws = Workspace::new();
    let sim = sim_for(&ws);
    let file = ws.path().join("profiles/seed.yaml");
    std::fs::write(
        &file,
        "name: seedy\ntemplate_vmid: 9000\nresources:\n  cores: 2\n  memory_mb: 2048\n  balloon: false\n  cpu_over_commit: 2.0\n  allow_burst: true\nartifacts:\n  endpoint: http://10.77.0.1:8846/upload\n---\nname: agent-claude\ntype: lxc\nimage: debian-12-standard\ntemplate_vmid: 9100\n",
    )
    .unwrap();
    ws.write_sandbox_config(&sim, "");
    let _daemon = ws.start_daemon();
    let status = ws.cli(&["--json", "status"]).json();
    let not_served: Vec<String> = serde_json::from_value(status["profiles"]["not_served"].clone()).unwrap_or_default();
    assert_eq!(not_served.len(), 1, "{status}");
    let line = &not_served[0];
    assert!(line.contains(&file.display().to_string()) && line.contains("document 2"), "{line}");
    assert!(line.contains("profile `agent-claude`") && line.contains("field `type`"), "{line}");
    let warnings = status["profiles"]["warnings"].to_string();
    assert!(warnings.contains("resources.cpu_over_commit") && warnings.contains("artifacts.endpoint"), "{warnings}");
    assert!(ws.cli(&["status"]).stdout.contains("not served:"), "the text output names it too");

    let created = ws.cli(&["--json", "sandbox", "new", "--profile", "seedy"]);
    assert_eq!(created.code, 0, "{created:?}");
    let vmid = created.json()["vmid"].as_u64().unwrap_or(0) as u32;
    let vm = sim.vm(vmid).unwrap_or_default();
    assert_eq!(vm["config"]["balloon"], "0", "balloon: false turns the balloon off: {vm}");
    let refused = ws.cli(&["--json", "sandbox", "new", "--profile", "agent-claude"]);
    assert_eq!(refused.json()["code"], "v1/validation/unknown_profile", "{refused:?}");
    assert!(refused.json()["message"].as_str().unwrap_or_default().contains("not served"), "{refused:?}");
}
