//! `scale`: many sandbox records, each with its live actor, armed lease timer and census
//! probe. The records are written to the database and their VMs made in the simulator
//! (its admin API, running, tagged `agentlab`) before the daemon starts: creating 10,000
//! sandboxes through Proxmox's pace would take hours and measure the simulator, not us.

use super::{Rig, Run, against, median_p95, round, rss_mib, timed};
use agentlab_actors::model::SandboxState;
use agentlab_actors::store::{SandboxRecord, Store};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::time::Duration;

const FIRST_VMID: u32 = 10_000;

/// `POST <admin>/admin/vms` over a plain socket (thousands of them: no curl per VM).
fn admin_create_vm(admin: &str, vmid: u32) -> bool {
    let authority = admin.trim_start_matches("http://").trim_end_matches('/');
    let Ok(mut stream) = std::net::TcpStream::connect(authority) else { return false };
    let body =
        json!({"vmid": vmid, "node": "pve1", "name": format!("bench-{vmid}"), "tags": "agentlab", "running": true})
            .to_string();
    let request = format!(
        "POST /admin/vms HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 201")
}

/// The records, written before the daemon starts: READY, a lease a day out.
fn seed(rig: &Rig, count: u32) {
    std::fs::create_dir_all(rig.ws.path().join("data")).unwrap();
    let store = Store::open(&rig.ws.db_path()).expect("open the database");
    let lease = time::OffsetDateTime::now_utc() + time::Duration::days(1);
    for vmid in FIRST_VMID..FIRST_VMID + count {
        assert!(admin_create_vm(&rig.sim.admin_url, vmid), "the simulator refused VM {vmid}");
        let record = SandboxRecord {
            profile: "bench".into(),
            tags: vec![],
            cores: 1,
            memory_mb: 512,
            ttl_minutes: Some(1440),
            lease_expires_at: Some(lease),
            ..SandboxRecord::sample(vmid, SandboxState::Ready)
        };
        store.insert_sandbox(&record, None).expect("insert a record");
    }
}

/// How many sandbox actors the daemon runs.
fn sandbox_actors(rig: &Rig) -> usize {
    let out = rig.ws.cli(&["--json", "debug", "actors"]);
    let actors = out.json()["actors"].as_array().cloned().unwrap_or_default();
    actors.iter().filter(|a| a["name"].as_str().is_some_and(|n| n.starts_with("sandbox:"))).count()
}

/// From spawn to every sandbox actor running; then until the simulator stops seeing the
/// start-up probes (its request rate back to the census's).
fn come_up(rig: &mut Rig, count: usize) -> (f64, f64) {
    let started = std::time::Instant::now();
    rig.daemon = Some(rig.ws.spawn_daemon(&[("AGENTLAB_LOG", "info")]));
    rig.wait_socket();
    let up = crate::eventually(Duration::from_secs(1800), || sandbox_actors(rig) >= count);
    assert!(up, "not every sandbox actor started");
    let ready = started.elapsed().as_secs_f64();
    // Settled: two seconds in a row with at most a handful of requests.
    let mut last = rig.requests().len();
    let settled = crate::eventually(Duration::from_secs(1800), || {
        std::thread::sleep(Duration::from_secs(2));
        let now = rig.requests().len();
        let quiet = now - last <= 4;
        last = now;
        quiet
    });
    assert!(settled, "the daemon kept Proxmox busy");
    (ready, started.elapsed().as_secs_f64())
}

fn median_ms_of(rig: &Rig, times: usize, args: &[&str]) -> f64 {
    let mut xs: Vec<f64> = (0..times)
        .map(|_| {
            let (out, took) = timed(|| rig.ws.cli(args));
            assert_eq!(out.code, 0, "{args:?}: {out:?}");
            took.as_secs_f64() * 1000.0
        })
        .collect();
    median_p95(&mut xs).0
}

pub fn scale(run: Run) -> Value {
    let count = run.count(10_000, 1_000);
    // The cheap mode: the simulator's operations at a hundredth of their time.
    let cheap = Run { factor: run.factor.min(0.01), ..run };
    let mut rig = Rig::start(cheap, "", "");
    if let Some(daemon) = rig.daemon.take() {
        daemon.stop();
    }
    let (_, seeding) = timed(|| seed(&rig, count as u32));
    let (first_ready, first_settled) = come_up(&mut rig, count);
    let (rss, _) = rss_mib(rig.daemon_pid());
    let list_ms = median_ms_of(&rig, 5, &["--json", "sandbox", "list"]);
    let status_ms = median_ms_of(&rig, 10, &["status"]);
    let window = Duration::from_secs(run.count(60, 30) as u64);
    let before = rig.requests().len();
    std::thread::sleep(window);
    let probes_per_minute = (rig.requests().len() - before) as f64 * 60.0 / window.as_secs_f64();
    if let Some(daemon) = rig.daemon.take() {
        daemon.stop();
    }
    let (restart_ready, restart_settled) = come_up(&mut rig, count);
    json!({
        "scenario": "scale",
        "sandboxes": count,
        "seeding_seconds": round(seeding.as_secs_f64(), 1),
        "daemon_rss_mib": round(rss, 1),
        "sandbox_list_json_ms": round(list_ms, 1),
        "status_ms": round(status_ms, 1),
        "start_to_all_actors_seconds": round(first_ready, 2),
        "start_to_proxmox_quiet_seconds": round(first_settled, 2),
        "restart_to_all_actors_seconds": round(restart_ready, 2),
        "restart_to_proxmox_quiet_seconds": round(restart_settled, 2),
        "probe_requests_per_minute": round(probes_per_minute, 1),
        "targets": {
            "rss_mib": against(round(rss, 1), "<= 200 (10,000 actors)", rss <= 200.0),
            "sandbox_list_json_ms": against(round(list_ms, 1), "<= 100", list_ms <= 100.0),
            "status_ms": against(round(status_ms, 1), "<= 10", status_ms <= 10.0),
        },
    })
}
