//! Exposures with a recording `tailscale` stand-in (`tests/fixtures/tailscale-standin.sh`):
//! two sandboxes exposing 8080 get distinct host ports; a serve rule that disappears is
//! published again; destroying a sandbox removes its exposure; `unexpose` removes one.

use agentlab_e2e::{SimProcess, Workspace, eventually, repo_root};
use std::path::Path;
use std::time::Duration;

fn rules(dir: &Path) -> Vec<(u16, String)> {
    std::fs::read_to_string(dir.join("serve.rules"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(p, t)| (p.parse().unwrap_or(0), t.to_string())))
        .collect()
}

#[test]
fn two_sandboxes_expose_one_port_on_two_host_ports_and_lost_rules_come_back() {
    let ws = Workspace::new();
    let local = ws.path().join("pve-local");
    let sim = SimProcess::start(ws.path(), &["--local-storage-path", &local.display().to_string()]);
    let ts_dir = ws.path().join("tailscale");
    std::fs::create_dir_all(&ts_dir).unwrap();
    let tailscale = ts_dir.join("tailscale");
    std::fs::copy(repo_root().join("tests/fixtures/tailscale-standin.sh"), &tailscale).unwrap();
    ws.write_sandbox_config(
        &sim,
        &format!("tailscale_command: {}\nexposure_health_interval: 60s\n", tailscale.display()),
    );
    let _daemon = ws.start_daemon();
    for vmid in ["1000", "1001"] {
        let out = ws.cli(&["--json", "sandbox", "new", "--profile", "yolo-ephemeral", "--vmid", vmid]);
        assert_eq!(out.code, 0, "{out:?}");
    }
    let a = ws.cli(&["--json", "sandbox", "expose", "1000", ":8080"]);
    let b = ws.cli(&["--json", "sandbox", "expose", "1001", ":8080"]);
    assert_eq!((a.code, b.code), (0, 0), "{a:?} {b:?}");
    let (a, b) = (a.json(), b.json());
    println!("exposed: {} -> {}, {} -> {}", a["name"], a["url"], b["name"], b["url"]);
    assert_eq!(a["state"], "serving", "{a}");
    assert_ne!(a["host_port"], b["host_port"], "the same guest port gets two host ports");
    assert_eq!(a["url"], format!("tcp://pve1.tail-test.ts.net:{}", a["host_port"]));
    let ip_a = ws.cli(&["--json", "sandbox", "show", "1000"]).json()["ip"].as_str().unwrap().to_string();
    let published = rules(&ts_dir);
    assert!(published.contains(&(a["host_port"].as_u64().unwrap() as u16, format!("{ip_a}:8080"))), "{published:?}");
    assert_eq!(published.len(), 2);
    let calls = std::fs::read_to_string(ts_dir.join("tailscale.calls")).unwrap();
    assert!(calls.lines().any(|l| l.starts_with("serve --bg ")), "published in the background: {calls}");
    let dup = ws.cli(&["--json", "sandbox", "expose", "1000", ":8080"]);
    assert_eq!(dup.json()["code"], "v1/resource/conflict", "{dup:?}");
    let bad = ws.cli(&["sandbox", "expose", "1000", ":0"]);
    assert_ne!(bad.code, 0);

    // The serve rule of 1001 is lost (tailscaled restarted, someone ran `serve reset`).
    let b_port = b["host_port"].as_u64().unwrap() as u16;
    let kept: String = rules(&ts_dir).iter().filter(|(p, _)| *p != b_port).map(|(p, t)| format!("{p} {t}\n")).collect();
    std::fs::write(ts_dir.join("serve.rules"), kept).unwrap();
    let back = eventually(Duration::from_secs(15), || rules(&ts_dir).iter().any(|(p, _)| *p == b_port));
    assert!(back, "the lost rule is published again");
    // The event is written just after the rule: it may be a moment behind it.
    let republished = eventually(Duration::from_secs(5), || {
        ws.cli(&["--json", "logs", "1001"]).stdout.contains("exposure.republished")
    });
    assert!(republished, "{}", ws.cli(&["--json", "logs", "1001"]).stdout);

    // Destroying a sandbox removes its exposure.
    let out = ws.cli(&["sandbox", "destroy", "1000"]);
    assert_eq!(out.code, 0, "{out:?}");
    let a_port = a["host_port"].as_u64().unwrap() as u16;
    let gone = eventually(Duration::from_secs(15), || !rules(&ts_dir).iter().any(|(p, _)| *p == a_port));
    assert!(gone, "the destroyed sandbox's rule is removed");
    let listed = ws.cli(&["--json", "sandbox", "exposed"]).json();
    assert_eq!(listed["exposures"].as_array().map(Vec::len), Some(1), "{listed}");

    let out = ws.cli(&["sandbox", "unexpose", b["name"].as_str().unwrap()]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(rules(&ts_dir).is_empty());
    let listed = ws.cli(&["--json", "sandbox", "exposed"]).json();
    assert_eq!(listed["exposures"].as_array().map(Vec::len), Some(0), "{listed}");
    sim.assert_all_requests_valid();
}
