//! `agentlabd` against a `pve-sim` process over the API backend: with the certificate
//! fingerprint pinned, `status` shows Proxmox reachable with its version, nodes, token and
//! firewall switches; with a wrong pin, a TLS error naming both fingerprints. With neither
//! isolation layer (a fresh Proxmox, no host ruleset) `sandbox new` is refused naming both
//! fixes; with one, `status` warns which layer is missing.

use agentlab_e2e::{SimProcess, Workspace};

#[test]
fn a_pinned_simulator_is_reachable_with_token_nodes_and_firewall_switches() {
    let ws = Workspace::new();
    let sim = SimProcess::start_bare(ws.path(), &["--nodes", "2"]);
    ws.write_sim_config(&sim, &sim.fingerprint, "");
    let _daemon = ws.start_daemon();
    let out = ws.cli(&["--json", "status"]);
    assert_eq!(out.code, 0, "{out:?}");
    let px = &out.json()["proxmox"];
    assert_eq!(px["reachable"], true, "{px}");
    assert_eq!(px["token_ok"], true);
    assert_eq!(px["backend"], "api");
    assert!(px["version"].as_str().unwrap_or_default().contains("9.1"), "{px}");
    assert_eq!(px["nodes"], serde_json::json!(["pve1", "pve2"]));
    assert_eq!(px["firewall"]["datacenter_enabled"], false);
    assert_eq!(px["firewall"]["groups"]["agent_nat_default"], false);
    let text = ws.cli(&["status"]).stdout;
    assert!(text.contains("reachable") && text.contains("token accepted"), "{text}");
    assert!(text.contains("datacenter DISABLED"), "{text}");
    assert!(text.contains("isolation: NONE"), "{text}");

    let status = ws.cli(&["--json", "status"]).json();
    assert_eq!(status["network"]["isolation"], "none", "{status}");
    let out = ws.cli(&["--json", "sandbox", "new", "--profile", "yolo-ephemeral"]);
    assert_ne!(out.code, 0, "{out:?}");
    let body = out.json();
    assert_eq!(body["code"], "v1/network/no_isolation", "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains("pvesh set /cluster/firewall/options --enable 1"), "{message}");
    assert!(message.contains("agentlabd net apply"), "{message}");
    assert!(sim.vm(1000).is_none(), "nothing was cloned");
    sim.assert_all_requests_valid();
}

#[test]
fn with_one_isolation_layer_status_names_the_missing_one() {
    let ws = Workspace::new();
    let sim = SimProcess::start(ws.path(), &[]);
    ws.write_sim_config(&sim, &sim.fingerprint, "");
    let _daemon = ws.start_daemon();
    let status = ws.cli(&["--json", "status"]).json();
    let network = &status["network"];
    assert_eq!(network["isolation"], "one_layer", "{status}");
    assert_eq!(network["datacenter_firewall"], true);
    assert_eq!(network["host_ruleset"], "off (host_ruleset: off)");
    assert!(network["warnings"][0].as_str().unwrap_or_default().contains("agentlabd net apply"), "{network}");
    let text = ws.cli(&["status"]).stdout;
    assert!(text.contains("isolation: ONE LAYER"), "{text}");
}

#[test]
fn a_wrong_fingerprint_is_a_tls_error_naming_expected_and_actual() {
    let ws = Workspace::new();
    let sim = SimProcess::start(ws.path(), &[]);
    let wrong = ["AB"; 32].join(":");
    ws.write_sim_config(&sim, &wrong, "");
    let _daemon = ws.start_daemon();
    let out = ws.cli(&["--json", "status"]);
    assert_eq!(out.code, 0, "{out:?}");
    let px = &out.json()["proxmox"];
    assert_eq!(px["reachable"], false);
    assert_eq!(px["error_class"], "tls");
    let error = px["error"].as_str().unwrap_or_default();
    assert!(error.contains(&wrong), "expected fingerprint missing: {error}");
    assert!(error.contains(&sim.fingerprint), "actual fingerprint missing: {error}");
}

#[test]
fn a_refused_token_is_reported_as_such() {
    let ws = Workspace::new();
    let sim = SimProcess::start(ws.path(), &[]);
    ws.write_sim_config(&sim, &sim.fingerprint, "");
    let config =
        std::fs::read_to_string(ws.config_path()).unwrap_or_default().replace("11111111-2222", "99999999-2222");
    ws.write_raw_config(&config);
    let _daemon = ws.start_daemon();
    let px = ws.cli(&["--json", "status"]).json()["proxmox"].clone();
    assert_eq!(px["token_ok"], false, "{px}");
    assert_eq!(px["error_class"], "auth");
    assert!(ws.cli(&["status"]).stdout.contains("API TOKEN IS REFUSED"));
}

/// A privilege-separated token without `VM.Clone` and `Sys.Modify`: `status` names what is
/// missing with the `pveum` line that fixes it, and Proxmox (the simulator, enforcing the
/// endpoints' permission checks) refuses the sandbox. Storages, listeners, job counts and
/// artifact disk use are in `status` too.
#[test]
fn status_checks_the_tokens_privileges_and_shows_storages_listeners_and_counts() {
    use agentlab_actors::model::pve_role::REQUIRED_PRIVILEGES;
    let ws = Workspace::new();
    let granted: Vec<&str> =
        REQUIRED_PRIVILEGES.iter().copied().filter(|p| !matches!(*p, "VM.Clone" | "Sys.Modify")).collect();
    let token_id = agentlab_e2e::SIM_TOKEN.split_once('=').unwrap().0;
    let privs = format!("{token_id}={}", granted.join(","));
    let sim = SimProcess::start(ws.path(), &["--token-privs", &privs]);
    let metrics_port = agentlab_e2e::jobs::free_port();
    ws.write_sim_config(&sim, &sim.fingerprint, &format!("metrics_listen: 127.0.0.1:{metrics_port}\n"));
    let _daemon = ws.start_daemon();

    let status = ws.cli(&["--json", "status"]).json();
    let px = &status["proxmox"];
    assert_eq!(px["privileges"]["missing"], serde_json::json!(["Sys.Modify", "VM.Clone"]), "{px}");
    assert_eq!(px["privileges"]["all_on_root"], false);
    let local = px["storages"].as_array().unwrap().iter().find(|s| s["storage"] == "local").cloned();
    let local = local.unwrap_or_else(|| panic!("no local storage in {px}"));
    assert_eq!(local["node"], "pve1");
    assert!(local["avail_bytes"].as_u64().unwrap_or(0) > 0, "{local}");
    assert_eq!(status["listeners"]["bootstrap"], format!("127.0.0.1:{}", ws.bootstrap_port));
    assert_eq!(status["listeners"]["metrics"], format!("127.0.0.1:{metrics_port}"));
    assert!(status["jobs"].is_object() && status["artifacts"]["dir"].is_string(), "{status}");

    let text = ws.cli(&["status"]).stdout;
    assert!(text.contains("token:     MISSING PRIVILEGES Sys.Modify, VM.Clone"), "{text}");
    assert!(text.contains("pveum role add AgentLab --privs \"Datastore.AllocateSpace,"), "{text}");
    assert!(text.contains("storage:   pve1/local (dir"), "{text}");
    assert!(text.contains(&format!("metrics:   http://127.0.0.1:{metrics_port}/metrics")), "{text}");
    assert!(text.contains("jobs:      0") && text.contains("artifacts: 0 B in "), "{text}");

    // Proxmox refuses what the token may not do; the sandbox fails saying so.
    let out = ws.cli(&["--json", "sandbox", "new", "--profile", "yolo-ephemeral"]);
    let shown = format!("{} {}", out.stdout, ws.cli(&["--json", "sandbox", "list"]).stdout);
    assert!(shown.contains("Permission check failed"), "{out:?}\n{shown}");
}

/// With every privilege the role lists, nothing is missing, and a sandbox goes from clone
/// to READY and is destroyed with nothing but those privileges (the simulator checks each
/// endpoint's permissions as Proxmox does).
#[test]
fn a_token_with_exactly_the_agentlab_role_is_enough() {
    let ws = Workspace::new();
    let token_id = agentlab_e2e::SIM_TOKEN.split_once('=').unwrap().0;
    let privs = format!("{token_id}={}", agentlab_actors::model::pve_role::REQUIRED_PRIVILEGES.join(","));
    let local = ws.path().join("pve-local").display().to_string();
    let sim = SimProcess::start(ws.path(), &["--token-privs", &privs, "--local-storage-path", &local]);
    ws.write_sandbox_config(&sim, "");
    let _daemon = ws.start_daemon();
    let out = ws.cli(&["--json", "sandbox", "new", "--profile", "yolo-ephemeral"]);
    assert_eq!(out.code, 0, "{out:?}");
    let created = out.json();
    assert_eq!(created["state"], "READY", "{created}");
    let vmid = created["vmid"].as_u64().unwrap().to_string();
    let gone = ws.cli(&["--json", "sandbox", "destroy", &vmid]);
    assert_eq!(gone.code, 0, "{gone:?}");
    sim.assert_all_requests_valid();
    let status = ws.cli(&["--json", "status"]).json();
    assert_eq!(status["proxmox"]["privileges"]["missing"], serde_json::json!([]), "{status}");
    assert_eq!(status["proxmox"]["privileges"]["all_on_root"], true);
    assert!(ws.cli(&["status"]).stdout.contains("token:     has every privilege AgentLab needs\n"));
}
