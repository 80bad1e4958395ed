//! `agentlab ssh` against a real `sshd` in a guest network namespace, with the daemon's own
//! key (created at first start, put into every sandbox's snippet); and idle-stop seeing that
//! session through the host's real conntrack: kept while the session is open, stopped once
//! it has been closed for the idle window.

use agentlab_e2e::netns::{GuestNs, missing};
use agentlab_e2e::{SimProcess, Workspace, eventually};
use std::time::Duration;

const VMID: &str = "1000";

#[test]
fn ssh_exec_runs_with_the_daemons_key_and_an_open_session_holds_off_idle_stop() {
    if missing(&["ip", "nft", "sshd", "ssh", "ssh-keygen", "conntrack"]).is_some() {
        return;
    }
    let b = 200 + (std::process::id() % 50) as u8;
    // The simulator's address for VMID 1000 in 10.<b>.0.0/16.
    let guest_ip = format!("10.{b}.4.12");
    let mut ws = Workspace::new();
    ws.agent_subnet = Box::leak(format!("10.{b}.0.0/16").into_boxed_str());
    let local = ws.path().join("pve-local");
    let sim = SimProcess::start(
        ws.path(),
        &["--guest-subnet", &format!("10.{b}.0.0"), "--local-storage-path", &local.display().to_string()],
    );
    // One minute is 3 s: the idle window (1 minute) and its check interval are 3 s.
    ws.write_sandbox_config(
        &sim,
        "test_time_scale: 0.05\nidle_stop_enabled: true\nidle_stop_minutes_default: 1\nidle_stop_interval: 60s\nidle_stop_cpu_threshold: 0.2\n",
    );
    let _daemon = ws.start_daemon();
    let key_path = ws.path().join("data/keys/agentlab_id_ed25519.pub");
    assert!(eventually(Duration::from_secs(10), || key_path.exists()), "the daemon makes its key at start");
    let key = std::fs::read_to_string(&key_path).unwrap();
    assert!(key.starts_with("ssh-ed25519 "), "{key}");

    let out = ws.cli(&["--json", "sandbox", "new", "--profile", "yolo-ephemeral", "--vmid", VMID]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.json()["ip"], guest_ip.as_str(), "{out:?}");
    let snippet = std::fs::read_dir(ws.sim_snippets_dir())
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .next()
        .expect("a snippet");
    assert!(snippet.contains(key.trim()), "the daemon's key is in the snippet:\n{snippet}");

    let mut guest = GuestNs::new("s", b, &guest_ip, ws.path());
    guest.start_sshd(key.trim());
    let out = ws.cli(&["ssh", VMID, "--user", "root", "--exec", "uname -a"]);
    println!("agentlab ssh {VMID} --exec 'uname -a': {}", out.stdout.trim());
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("Linux"), "{out:?}");
    let shown = ws.cli(&["--json", "sandbox", "show", VMID]).json();
    assert!(shown["last_used_at"].is_string(), "ssh counts as use: {shown}");

    // The operator's smoke test, run in the sandbox over `agentlab ssh --exec` (the script
    // goes through ssh's stdin). This guest's "host" is the test's namespace, where the
    // test listens as the guest listener and as the Internet; nothing is isolated here, so
    // the LAN and tailnet targets are addresses nobody answers on.
    let listener = std::net::TcpListener::bind(format!("10.{b}.4.1:0")).unwrap();
    let port = listener.local_addr().unwrap().port();
    let smoke = std::process::Command::new("bash")
        .arg(agentlab_e2e::repo_root().join("scripts/net/smoke_test.sh"))
        .args([VMID, "--ssh-user", "root", "--skip-dns", "--gateway", &format!("10.{b}.4.1")])
        .args(["--listener", &port.to_string(), "--wan", &format!("10.{b}.4.1:{port}")])
        .args(["--lan", &format!("10.{b}.4.200:80"), "--tailnet", &format!("10.{b}.4.201:80"), "--host-port", "9"])
        .env("AGENTLAB", agentlab_e2e::bin("agentlab"))
        .env("AGENTLAB_SOCKET", ws.socket())
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&smoke.stdout);
    print!("scripts/net/smoke_test.sh {VMID} over agentlab ssh:\n{report}");
    assert!(smoke.status.success(), "{report}{}", String::from_utf8_lossy(&smoke.stderr));
    assert_eq!(report.lines().filter(|l| l.starts_with("PASS ")).count(), 5, "{report}");
    drop(listener);

    // Printing (no --exec) gives the command an operator would run.
    let printed = ws.cli(&["ssh", VMID]).stdout;
    assert!(printed.starts_with("ssh ") && printed.contains(&format!("agent@{guest_ip}")), "{printed}");

    // An open session (seen by conntrack) keeps the sandbox through four idle windows.
    let mut session = ws.cli_background(&["ssh", VMID, "--user", "root", "--exec", "sleep 30"]);
    let held = eventually(Duration::from_secs(5), || {
        std::process::Command::new("conntrack")
            .args(["-L", "-p", "tcp", "--dst", &guest_ip, "--dport", "22", "--state", "ESTABLISHED"])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("ESTABLISHED"))
    });
    assert!(held, "conntrack sees the session");
    agentlab_e2e::pause(Duration::from_secs(12));
    let state = ws.cli(&["--json", "sandbox", "show", VMID]).json()["state"].clone();
    assert_eq!(state, "READY", "an open SSH session is activity");
    let _ = session.kill();
    let _ = session.wait();
    let stopped = eventually(Duration::from_secs(30), || {
        ws.cli(&["--json", "sandbox", "show", VMID]).json()["state"] == "STOPPED"
    });
    assert!(stopped, "idle-stopped once the session closed");
    let events: Vec<serde_json::Value> =
        ws.cli(&["--json", "logs", VMID]).stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let idle = events.iter().find(|e| e["kind"] == "sandbox.idle_stop").expect("an idle_stop event");
    println!("idle-stop event: {}", idle["msg"]);
    assert_eq!(idle["json"]["ssh_active"], false);
    sim.assert_all_requests_valid();
}
