//! Idle-stop on a paused clock: a READY sandbox with no SSH session and CPU under the
//! threshold is stopped after its window, with the evidence in its event; one with a
//! session is kept; when conntrack cannot run nothing is stopped and the reason is
//! recorded once; a profile's 0 turns it off. (The SSH session of a real `sshd` in a
//! network namespace, seen through the real conntrack, is in the e2e tests.)

mod support;

use agentlab_actors::model::SandboxState;
use agentlab_actors::sandbox::idle::{IdleSettings, SshSessions};
use agentlab_actors::store::EventPage;
use std::sync::{Arc, Mutex};
use support::{FakeSessions, Harness, MINUTE, Options, eventually, let_actors_run};

fn idle_options(sessions: Arc<dyn SshSessions>) -> Options {
    Options {
        idle: IdleSettings { enabled: true, interval: MINUTE, minutes_default: 5, cpu_threshold: 0.2 },
        ssh_sessions: sessions,
        extra_profiles: "name: never-idle\ntemplate_vmid: 9000\nbehavior:\n  idle_stop_minutes_default: 0\n",
        ..Options::default()
    }
}

#[tokio::test(start_paused = true)]
async fn a_quiet_sandbox_is_stopped_after_its_window_with_the_evidence() {
    let sessions = Arc::new(FakeSessions(Mutex::new(Ok(0))));
    let h = Harness::with(idle_options(sessions)).await;
    let vmid = h.ready_sandbox(None, false).await;
    let_actors_run(MINUTE * 3).await;
    assert_eq!(h.sandbox(vmid).state, SandboxState::Ready, "not before its 5 minutes");
    eventually("idle-stop", MINUTE * 5, || h.sandbox(vmid).state == SandboxState::Stopped).await;
    assert!(!h.vm_running(vmid), "the VM is stopped in Proxmox");
    let events = h.store.sandbox_events(vmid, EventPage::Tail(100)).unwrap();
    let stop = events.iter().find(|e| e.kind == "sandbox.idle_stop").expect("an idle_stop event");
    assert_eq!(stop.json["idle_minutes"], 5, "{}", stop.json);
    assert!(stop.json["idle_for_minutes"].as_u64().unwrap_or(0) >= 5, "{}", stop.json);
    assert_eq!(stop.json["ssh_active"], false);
    // The simulator says 2 % of the VM's 4 vCPUs: 0.08 of one core.
    assert!(stop.json["cpu_usage"].as_f64().is_some_and(|c| (c - 0.08).abs() < 1e-9), "{}", stop.json);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_open_ssh_session_keeps_it_running_and_closing_it_lets_it_stop() {
    let sessions = Arc::new(FakeSessions(Mutex::new(Ok(1))));
    let h = Harness::with(idle_options(Arc::clone(&sessions) as Arc<dyn SshSessions>)).await;
    let vmid = h.ready_sandbox(None, false).await;
    let_actors_run(MINUTE * 20).await;
    assert_eq!(h.sandbox(vmid).state, SandboxState::Ready, "an SSH session is activity");
    *sessions.0.lock().unwrap() = Ok(0);
    let_actors_run(MINUTE * 3).await;
    assert_eq!(h.sandbox(vmid).state, SandboxState::Ready, "the window counts from the last session");
    eventually("idle-stop after the session", MINUTE * 5, || h.sandbox(vmid).state == SandboxState::Stopped).await;
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn without_conntrack_nothing_is_stopped_and_the_reason_is_recorded_once() {
    let missing = agentlab_netfilter::conntrack::Conntrack::with_command(vec!["/nonexistent/conntrack".into()]);
    let h = Harness::with(idle_options(Arc::new(missing))).await;
    let vmid = h.ready_sandbox(None, false).await;
    let never = h.create_sandbox("never-idle", None, false).await;
    let _ = h.settled(never).await;
    let_actors_run(MINUTE * 30).await;
    assert_eq!(h.sandbox(vmid).state, SandboxState::Ready);
    assert_eq!(h.sandbox(never).state, SandboxState::Ready);
    let events = h.store.sandbox_events(vmid, EventPage::Tail(1000)).unwrap();
    let failures: Vec<_> = events.iter().filter(|e| e.kind == "sandbox.idle_probe.failed").collect();
    assert_eq!(failures.len(), 1, "recorded once, not every minute");
    assert!(failures[0].msg.contains("/nonexistent/conntrack"), "{}", failures[0].msg);
    assert!(!h.sandbox_event_kinds(never).iter().any(|k| k.starts_with("sandbox.idle")), "0 turns idle-stop off");
    h.stop().await;
}
