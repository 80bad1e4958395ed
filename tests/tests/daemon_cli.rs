//! The daemon and the CLI as real processes: start-up, status without Proxmox, profiles,
//! sandboxes and events from the store, the actor tree, exit codes, config and profile
//! errors, signals.

use agentlab_actors::model::{EventKind, SandboxState};
use agentlab_actors::store::{NewEvent, SandboxRecord, Stage, Store};
use agentlab_e2e::{Workspace, eventually};
use nix::sys::signal::Signal;
use std::time::Duration;

#[test]
fn status_says_proxmox_is_unreachable_and_why_instead_of_dying() {
    let ws = Workspace::new();
    let _daemon = ws.start_daemon();
    let out = ws.cli(&["--json", "status"]);
    assert_eq!(out.code, 0, "{out:?}");
    let status = out.json();
    assert_eq!(status["proxmox"]["reachable"], false, "{status}");
    assert_eq!(status["proxmox"]["backend"], "api");
    let placement = status["placement"].as_str().unwrap_or_default();
    assert!(placement.contains("most free memory") && placement.contains("template's node"), "{status}");
    let error = status["proxmox"]["error"].as_str().unwrap_or_default();
    assert!(error.to_lowercase().contains("refused"), "the reason must be given: {error}");
    assert_eq!(status["profiles"]["count"], 6);
    assert_eq!(status["sandboxes"]["RUNNING"], 0);

    let text = ws.cli(&["status"]);
    assert_eq!(text.code, 0);
    assert!(text.stdout.contains("UNREACHABLE"), "{}", text.stdout);
}

#[test]
fn every_request_is_logged_with_the_peer_uid_from_so_peercred() {
    let ws = Workspace::new();
    let daemon = ws.start_daemon();
    assert_eq!(ws.cli(&["sandbox", "list"]).code, 0);
    let uid = nix::unistd::getuid().as_raw();
    let logged = eventually(Duration::from_secs(5), || {
        daemon.log().lines().any(|l| l.contains("path=/v1/sandboxes") && l.contains(&format!("uid=Some({uid})")))
    });
    assert!(logged, "request line with uid={uid} missing; log:\n{}", daemon.log());
}

#[test]
fn profile_list_shows_every_shipped_profile() {
    let ws = Workspace::new();
    let _daemon = ws.start_daemon();
    let out = ws.cli(&["profile", "list", "--json"]);
    assert_eq!(out.code, 0, "{out:?}");
    let names: Vec<String> = out.json()["profiles"]
        .as_array()
        .map(|a| a.iter().filter_map(|p| p["name"].as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    assert_eq!(names, ["interactive-dev", "secure", "secure-small", "small", "yolo-ephemeral", "yolo-workspace"]);
}

#[test]
fn sandbox_list_is_empty_on_a_new_daemon() {
    let ws = Workspace::new();
    let _daemon = ws.start_daemon();
    let out = ws.cli(&["sandbox", "list", "--json"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.json(), serde_json::json!({"sandboxes": []}));
    assert_eq!(ws.cli(&["ls"]).stdout.trim(), "no sandboxes");
}

#[test]
fn debug_actors_shows_the_root_and_its_children() {
    let ws = Workspace::new();
    let _daemon = ws.start_daemon();
    let actors = || {
        let out = ws.cli(&["debug", "actors", "--json"]);
        assert_eq!(out.code, 0, "{out:?}");
        out.json()["actors"].as_array().cloned().unwrap_or_default()
    };
    let find = |actors: &[serde_json::Value], name: &str| {
        actors.iter().find(|a| a["name"] == name).cloned().unwrap_or_default()
    };
    let first = actors();
    assert_eq!(find(&first, "root")["kind"], "supervisor");
    for child in ["events", "pve"] {
        assert_eq!(find(&first, child)["parent"], "root", "{first:?}");
    }
    // ractor marks an actor running only after its post_start, which may still be under way
    // when the socket answers the first request: `starting` is true then, and brief.
    let services_running = || {
        let now = actors();
        ["events", "pve"].iter().all(|child| find(&now, child)["status"] == "running")
    };
    assert!(eventually(Duration::from_secs(10), services_running), "{:?}", actors());
}

fn record(vmid: u32, state: SandboxState) -> SandboxRecord {
    SandboxRecord {
        name: format!("sbx-{vmid}"),
        ip: Some("10.77.0.20".into()),
        tags: vec!["e2e".into()],
        ..SandboxRecord::sample(vmid, state)
    }
}

#[test]
fn sandboxes_and_their_events_are_served_from_the_store() {
    let ws = Workspace::new();
    std::fs::create_dir_all(ws.path().join("data")).unwrap();
    {
        let store = Store::open(&ws.db_path()).unwrap();
        store.insert_sandbox(&record(1001, SandboxState::Running), None).unwrap();
        store.insert_sandbox(&record(1002, SandboxState::Stopped), None).unwrap();
        for i in 0..60 {
            let event = NewEvent::sandbox(1001, EventKind::Moved, Stage::Lifecycle, format!("note {i}"));
            store.append_event(&event).unwrap();
        }
    }
    let _daemon = ws.start_daemon();

    let running = ws.cli(&["sandbox", "list", "--filter", "state=running", "--json"]).json();
    let vmids: Vec<u64> = running["sandboxes"]
        .as_array()
        .map(|a| a.iter().filter_map(|s| s["vmid"].as_u64()).collect())
        .unwrap_or_default();
    assert_eq!(vmids, [1001]);

    let shown = ws.cli(&["sandbox", "show", "1002", "--json"]);
    assert_eq!(shown.code, 0, "{shown:?}");
    assert_eq!(shown.json()["state"], "STOPPED");
    assert_eq!(shown.json()["network"]["firewall_group"], "agent_nat_default");
    assert!(ws.cli(&["show", "1001"]).stdout.contains("RUNNING"));

    let logs = ws.cli(&["logs", "1001", "--tail", "5", "--json"]);
    assert_eq!(logs.code, 0, "{logs:?}");
    let lines: Vec<serde_json::Value> =
        logs.stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_default()).collect();
    let msgs: Vec<&str> = lines.iter().filter_map(|e| e["msg"].as_str()).collect();
    assert_eq!(msgs, ["note 55", "note 56", "note 57", "note 58", "note 59"], "NDJSON, oldest first");
    let text = ws.cli(&["logs", "1001"]);
    assert_eq!(text.stdout.lines().count(), 50, "default tail is 50");
}

#[test]
fn exit_codes_are_0_1_2_and_json_errors_go_to_stdout() {
    let ws = Workspace::new();
    let _daemon = ws.start_daemon();
    assert_eq!(ws.cli(&["status"]).code, 0);

    let missing = ws.cli(&["--json", "sandbox", "show", "4242"]);
    assert_eq!(missing.code, 1, "{missing:?}");
    let envelope = missing.json();
    assert_eq!(envelope["code"], "v1/sandbox/not_found");
    assert_eq!(envelope["error"], envelope["message"]);
    let text = ws.cli(&["sandbox", "show", "4242"]);
    assert_eq!(text.code, 1);
    assert!(text.stderr.contains("sandbox 4242 not found"), "{text:?}");

    for usage in [
        vec!["sandbox", "show", "abc"],
        vec!["frobnicate"],
        vec!["sandbox", "list", "--filter", "color=red"],
        vec!["logs", "1001", "--tail", "0"],
    ] {
        let out = ws.cli(&usage);
        assert_eq!(out.code, 2, "{usage:?}: {out:?}");
    }
    assert_eq!(ws.cli(&["version"]).code, 0);
    let completion = ws.cli(&["completion", "bash"]);
    assert_eq!(completion.code, 0);
    assert!(completion.stdout.contains("agentlab"));
}

#[test]
fn a_missing_daemon_is_reported_with_how_to_start_it() {
    let ws = Workspace::new();
    let out = ws.cli(&["status"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("agentlabd is not running"), "{out:?}");
    assert!(out.stderr.contains("systemctl start agentlabd"), "{out:?}");
    let json = ws.cli(&["--json", "status"]);
    assert_eq!(json.code, 1);
    assert_eq!(json.json()["code"], "v1/client/daemon_unavailable");
}

#[test]
fn a_misspelled_config_key_stops_the_daemon_naming_key_line_and_fix() {
    let ws = Workspace::new();
    ws.write_config("profiles_dri: /etc/agentlab/profiles\n");
    let out = ws.run_daemon_to_exit();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown key `profiles_dri`"), "{stderr}");
    // After the base config's 7 lines and the guest listener's 4.
    assert!(stderr.contains("line 12"), "{stderr}");
    assert!(stderr.contains("did you mean `profiles_dir`"), "{stderr}");
}

#[test]
fn a_bad_profile_stops_the_daemon_naming_file_and_field() {
    let ws = Workspace::new();
    let bad = ws.path().join("profiles/team.yaml");
    std::fs::write(&bad, "name: team\ntemplate_vmid: 9000\nresources:\n  cores: many\n").unwrap();
    let out = ws.run_daemon_to_exit();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&bad.display().to_string()), "{stderr}");
    assert!(stderr.contains("field `resources.cores`"), "{stderr}");
    assert!(stderr.contains("profile `team`"), "{stderr}");
}

#[test]
fn a_world_readable_config_is_refused_with_the_chmod() {
    use std::os::unix::fs::PermissionsExt;
    let ws = Workspace::new();
    std::fs::set_permissions(ws.config_path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = ws.run_daemon_to_exit();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("chmod 600 {}", ws.config_path().display())), "{stderr}");
}

#[test]
fn sigterm_stops_gracefully_and_removes_the_socket() {
    let ws = Workspace::new();
    let daemon = ws.start_daemon();
    let status = daemon.stop();
    assert!(status.success(), "exit status {status:?}");
    assert!(!ws.socket().exists(), "socket must be deleted at exit");
    let store = Store::open(&ws.db_path()).unwrap();
    let kinds: Vec<String> = store
        .read(|c| {
            let mut stmt = c.prepare("SELECT kind FROM events ORDER BY id").map_err(|e| store_err(&e))?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0)).map_err(|e| store_err(&e))?;
            Ok(rows.filter_map(Result::ok).collect())
        })
        .unwrap_or_default();
    // daemon.started goes through the events actor; the stop flushes it first, so a daemon
    // stopped at once still records both, in order.
    let started = kinds.iter().position(|k| k == "daemon.started");
    assert!(started.is_some(), "{kinds:?}");
    assert_eq!(kinds.last().map(String::as_str), Some("daemon.stopping"), "{kinds:?}");
}

fn store_err(e: &dyn std::fmt::Display) -> agentlab_actors::store::StoreError {
    agentlab_actors::store::StoreError::Corrupt(e.to_string())
}

#[test]
fn a_stale_socket_from_a_killed_daemon_does_not_block_a_restart() {
    let ws = Workspace::new();
    ws.start_daemon().kill9();
    assert!(ws.socket().exists(), "kill -9 leaves the socket file behind");
    let _daemon = ws.start_daemon();
    assert_eq!(ws.cli(&["status"]).code, 0);
}

#[test]
fn a_second_daemon_refuses_to_steal_a_live_socket() {
    let ws = Workspace::new();
    let _first = ws.start_daemon();
    let out = ws.run_daemon_to_exit();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("another agentlabd is already serving"));
    assert_eq!(ws.cli(&["status"]).code, 0, "the first daemon keeps serving");
}

#[test]
fn sighup_reloads_profiles_and_a_bad_reload_keeps_the_old_set() {
    let ws = Workspace::new();
    let daemon = ws.start_daemon();
    let extra = ws.path().join("profiles/extra.yaml");
    std::fs::write(&extra, "name: extra\ntemplate_vmid: 9001\n").unwrap();
    daemon.signal(Signal::SIGHUP);
    let count = || ws.cli(&["--json", "status"]).json()["profiles"]["count"].as_u64().unwrap_or(0);
    assert!(eventually(Duration::from_secs(10), || count() == 7), "reload did not add the profile");

    std::fs::write(&extra, "name: extra\ntemplate_vmid: 9001\nbogus: true\n").unwrap();
    daemon.signal(Signal::SIGHUP);
    let refused = || {
        ws.cli(&["--json", "status"]).json()["profiles"]["last_reload_error"]
            .as_str()
            .unwrap_or_default()
            .contains("bogus")
    };
    assert!(eventually(Duration::from_secs(10), refused), "bad reload not reported");
    assert_eq!(count(), 7, "the previous set stays in use");
}
