//! What AgentLab adds to Proxmox's own time, phase by phase: one sandbox at Proxmox's
//! latencies (the simulator's model at factor 1), on tokio's paused clock, so the figures
//! are exact and the same on every run. Prints the table; fails if waiting on a phase's
//! Proxmox work (polling) costs more than 15% of it plus 0.1 s.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod support;

use agentlab_actors::model::{Intent, SandboxState};
use agentlab_pve_sim::LatencyModel;
use support::Harness;

/// The Proxmox work of each phase in the simulator's model: (phase, operations).
const MODEL: [(&str, &[&str]); 7] = [
    ("clone", &["clone_linked"]),
    ("configure", &["resize"]),
    // No task: API calls of the first sandbox (5 ms each in the model): VM config; the
    // groups, the new group and its 7 rules with a read; node rules, read and 3 added; VM
    // options, rules read, group attached.
    ("firewall", &["api"; 18]),
    ("snippet", &[]),
    ("snapshot", &["snapshot"]),
    ("boot", &["start"]),
    ("wait_ip", &["agent_ready"]),
];

#[tokio::test(start_paused = true)]
async fn each_phase_ends_close_to_its_proxmox_work() {
    let h = Harness::start().await;
    let vmid = h.create_sandbox("yolo-ephemeral", None, false).await;
    // The record's intent names the step running; watched every 5 ms of virtual time.
    let mut marks: Vec<(String, tokio::time::Instant)> = Vec::new();
    loop {
        let rec = h.sandbox(vmid);
        let phase = match (rec.state, rec.intent) {
            (SandboxState::Ready, _) => "ready".to_string(),
            (_, Some(Intent::Provision(step))) => step.as_str().to_string(),
            _ => String::new(),
        };
        if !phase.is_empty() && marks.last().is_none_or(|(last, _)| *last != phase) {
            marks.push((phase.clone(), tokio::time::Instant::now()));
        }
        if phase == "ready" {
            break;
        }
        assert!(rec.state.is_provisioning(), "sandbox {vmid} ended {}: {:?}", rec.state, rec.error);
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let timings: Vec<(String, f64)> =
        marks.windows(2).map(|w| (w[0].0.clone(), (w[1].1 - w[0].1).as_secs_f64())).collect();
    let model = LatencyModel::scaled(1.0);
    let (mut total_model, mut total_taken) = (0.0, 0.0);
    let mut over = Vec::new();
    println!("{:<10} {:>9} {:>9} {:>9}", "phase", "proxmox", "taken", "overhead");
    for (phase, ops) in MODEL {
        let expected: f64 = ops.iter().map(|op| model.base[*op]).sum();
        let taken = timings.iter().find(|(p, _)| p == phase).map(|(_, secs)| *secs).unwrap();
        println!("{phase:<10} {expected:>8.2}s {taken:>8.2}s {:>8.2}s", taken - expected);
        over.extend(
            (taken - expected > expected * 0.15 + 0.1).then(|| format!("{phase}: {taken:.2}s for {expected:.2}s")),
        );
        total_model += expected;
        total_taken += taken;
    }
    let overhead = total_taken - total_model;
    println!(
        "{:<10} {total_model:>8.2}s {total_taken:>8.2}s {overhead:>8.2}s ({:.1}% of Proxmox's time)",
        "total",
        overhead / total_model * 100.0
    );
    assert!(over.is_empty(), "phases that wait too long past their Proxmox work: {over:?}");
    h.stop().await;
}
