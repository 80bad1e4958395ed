//! The sandbox actor in process, on tokio's paused clock: leases, probes, superseded work
//! and destroy during provisioning, against `pve-sim` at Proxmox's own latencies (virtual
//! time, so each scenario takes well under a second of wall time).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod support;

use agentlab_actors::model::{SandboxEvent, SandboxState};
use agentlab_actors::sandbox::SandboxMsg;
use std::time::Duration;
use support::{Harness, MINUTE, Options, PROBE_INTERVAL, eventually};

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test(start_paused = true)]
async fn a_lease_expiry_destroys_a_normal_sandbox() {
    let h = Harness::start().await;
    let vmid = h.ready_sandbox(Some(30), false).await;
    assert!(h.vm_exists(vmid));
    tokio::time::sleep(29 * MINUTE).await;
    assert_eq!(h.sandbox(vmid).state, SandboxState::Ready, "the lease has a minute left");
    eventually("destroyed at lease expiry", 5 * MINUTE, || h.sandbox(vmid).state == SandboxState::Destroyed).await;
    assert!(!h.vm_exists(vmid), "the VM is destroyed with the sandbox");
    let kinds = h.sandbox_event_kinds(vmid);
    assert!(kinds.iter().any(|k| k == "sandbox.lease.expired"), "{kinds:?}");
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_lease_expiry_stops_and_keeps_a_keepalive_sandbox() {
    let h = Harness::start().await;
    let vmid = h.ready_sandbox(Some(30), true).await;
    eventually("stopped at lease expiry", 35 * MINUTE, || h.sandbox(vmid).state == SandboxState::Stopped).await;
    assert!(h.vm_exists(vmid), "keepalive keeps the VM");
    assert!(!h.vm_running(vmid), "but stops it");
    // It stays STOPPED: the expired lease does not fire again.
    tokio::time::sleep(30 * MINUTE).await;
    assert_eq!(h.sandbox(vmid).state, SandboxState::Stopped);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn renewing_the_lease_re_arms_the_timer() {
    let h = Harness::start().await;
    let vmid = h.ready_sandbox(Some(30), false).await;
    let actor = h.sandbox_actor(vmid);
    // Leases are renewed while RUNNING (a job's agent is at work).
    actor.send_message(SandboxMsg::JobChanged(SandboxEvent::JobStarted)).unwrap();
    eventually("running", MINUTE, || h.sandbox(vmid).state == SandboxState::Running).await;
    let until = h.sandboxes.settings.clock.now() + HOUR;
    let renewed =
        actor.call(|reply| SandboxMsg::RenewLease { until, by: None, reply }, Some(MINUTE)).await.unwrap().unwrap();
    let expected = agentlab_actors::model::time_format::format(until);
    assert_eq!(renewed.unwrap().lease_expires_at.as_deref(), Some(expected.as_str()));
    tokio::time::sleep(45 * MINUTE).await;
    assert_eq!(h.sandbox(vmid).state, SandboxState::Running, "the old 30-minute lease no longer fires");
    eventually("destroyed at the renewed lease", 20 * MINUTE, || h.sandbox(vmid).state == SandboxState::Destroyed)
        .await;
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_vm_deleted_outside_agentlab_is_noticed_by_the_probe() {
    let h = Harness::start().await;
    let vmid = h.ready_sandbox(None, false).await;
    assert!(h.sim.vanish_vm(vmid));
    eventually("vanished noticed", 3 * PROBE_INTERVAL, || h.sandbox(vmid).state == SandboxState::Destroyed).await;
    let kinds = h.sandbox_event_kinds(vmid);
    assert!(kinds.iter().any(|k| k == "sandbox.vanished"), "{kinds:?}");
    assert!(h.sandbox(vmid).snippet_path.is_none(), "its snippet is removed");
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_vm_migrated_outside_agentlab_is_followed() {
    let h = Harness::with(Options { nodes: vec!["pve1".into(), "pve2".into()], ..Options::default() }).await;
    let vmid = h.ready_sandbox(None, false).await;
    assert_eq!(h.sandbox(vmid).node.as_deref(), Some("pve1"));
    h.sim.move_vm(vmid, "pve2").unwrap();
    eventually("the record follows the VM", 3 * PROBE_INTERVAL, || h.sandbox(vmid).node.as_deref() == Some("pve2"))
        .await;
    tokio::time::sleep(3 * PROBE_INTERVAL).await;
    assert_eq!(h.sandbox(vmid).state, SandboxState::Ready, "a moved VM is not a vanished one");
    assert!(h.sandbox_event_kinds(vmid).iter().any(|k| k == "sandbox.moved"));
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_completion_of_superseded_work_is_dropped() {
    let h = Harness::start().await;
    let vmid = h.ready_sandbox(None, false).await;
    // A probe answer tagged with generation 0 was taken before provisioning began: acted on,
    // it would mark the freshly booted VM stopped.
    let stale: agentlab_proxmox::types::VmStatus =
        serde_json::from_value(serde_json::json!({"vmid": vmid, "status": "stopped"})).unwrap();
    h.sandbox_actor(vmid)
        .send_message(SandboxMsg::Probed { result: Ok(stale), ip: None, moved_to: None, generation: 0 })
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(h.sandbox(vmid).state, SandboxState::Ready);
    assert!(h.vm_running(vmid));
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn destroy_during_provisioning_leaves_nothing_behind() {
    let h = Harness::start().await;
    let vmid = h.create_sandbox("yolo-ephemeral", None, false).await;
    eventually("the clone exists", 5 * MINUTE, || h.vm_exists(vmid)).await;
    assert!(matches!(h.sandbox(vmid).state, SandboxState::Provisioning | SandboxState::Requested));
    let actor = h.sandbox_actor(vmid);
    let destroyed = actor
        .call(|reply| SandboxMsg::Destroy { force: true, by: None, reply }, Some(HOUR))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(destroyed.state, SandboxState::Destroyed);
    assert!(!h.vm_exists(vmid), "the half-provisioned VM is destroyed");
    let snippets = std::fs::read_dir(&h.snippets_dir).unwrap().count();
    assert_eq!(snippets, 0, "no snippet is left");
    tokio::time::sleep(HOUR).await;
    assert!(!h.vm_exists(vmid), "nothing re-creates it");
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_cleanup_that_fails_stays_pending_and_finishes_on_the_next_start() {
    let h = Harness::start().await;
    let vmid = h.create_sandbox("yolo-ephemeral", None, false).await;
    let configuring = Some(agentlab_actors::model::Intent::Provision(agentlab_actors::model::Step::Configure));
    eventually("the clone is done", 10 * MINUTE, || h.sandbox(vmid).intent == configuring).await;
    // Proxmox refuses every change from now on: configure fails, and so does the cleanup.
    let refuse = agentlab_pve_sim::FaultConfig { error_rate: 1.0, mutating_only: true, ..Default::default() };
    h.sim.set_faults(refuse);
    eventually("provisioning failed", HOUR, || h.sandbox(vmid).state == SandboxState::Failed).await;
    let cleanup = Some(agentlab_actors::model::Intent::Cleanup);
    eventually("the cleanup gave up", HOUR, || {
        h.sandbox_event_kinds(vmid).iter().any(|k| k == "sandbox.destroy.failed")
    })
    .await;
    assert!(h.vm_exists(vmid));
    assert_eq!(h.sandbox(vmid).intent, cleanup, "the cleanup is still pending");
    // Proxmox is back; the next start of the actor (a daemon restart) finishes the cleanup.
    h.sim.set_faults(agentlab_pve_sim::FaultConfig::default());
    h.sandbox_actor(vmid).send_message(SandboxMsg::Reconcile).unwrap();
    eventually("the VM is removed", HOUR, || !h.vm_exists(vmid)).await;
    eventually("nothing is pending", MINUTE, || h.sandbox(vmid).intent.is_none()).await;
    assert_eq!(h.sandbox(vmid).state, SandboxState::Failed);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_job_failing_while_its_sandbox_boots_ends_the_provisioning() {
    // The guest never shows an address in the agent subnet: `wait_ip` would poll forever.
    let h = Harness::with(Options { agent_subnet: "10.99.0.0/16", ..Options::default() }).await;
    let vmid = h.create_sandbox("yolo-ephemeral", None, true).await;
    let waiting_for_ip = Some(agentlab_actors::model::Intent::Provision(agentlab_actors::model::Step::WaitIp));
    eventually("waiting for the address", 10 * MINUTE, || h.sandbox(vmid).intent == waiting_for_ip).await;
    h.sandbox_actor(vmid).send_message(SandboxMsg::JobChanged(SandboxEvent::Fail)).unwrap();
    match h.settled(vmid).await {
        agentlab_actors::sandbox::Settled::Failed(view) => assert_eq!(view.state, SandboxState::Failed),
        other => panic!("expected Failed, got {other:?}"),
    }
    // Not busy with a step that can no longer finish: an operation is taken.
    let stopped = h
        .sandbox_actor(vmid)
        .call(
            |reply| SandboxMsg::Operate {
                op: agentlab_actors::sandbox::SandboxOp::Stop,
                force: false,
                by: None,
                reply,
            },
            Some(HOUR),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stopped.map(|v| v.state).ok(), Some(SandboxState::Stopped));
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn lock_timeouts_on_the_cluster_firewall_are_waited_out() {
    let h = Harness::start().await;
    // Half of all changes time out on their lock, as under a busy cluster; the datacenter
    // firewall's lock is pmxcfs's (`cfs-lock 'firewall-cluster' …`).
    h.sim.set_faults(agentlab_pve_sim::FaultConfig {
        lock_timeout_rate: 0.5,
        mutating_only: true,
        ..Default::default()
    });
    let vmids = [
        h.create_sandbox("yolo-ephemeral", None, false).await,
        h.create_sandbox("yolo-ephemeral", None, false).await,
        h.create_sandbox("secure-small", None, false).await,
    ];
    for vmid in vmids {
        match h.settled(vmid).await {
            agentlab_actors::sandbox::Settled::Ready(_) => {}
            agentlab_actors::sandbox::Settled::Failed(view) => panic!("sandbox {vmid} failed: {:?}", view.error),
        }
    }
    let firewall_lock_faults = h
        .sim
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/cluster/firewall") && r.verdict == "fault:lock_timeout")
        .count();
    assert!(firewall_lock_faults > 0, "the test must hit the firewall's lock");
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_long_name_becomes_a_vm_name_proxmox_accepts() {
    let h = Harness::start().await;
    // 62 letters, then `-`: a cut at 63 characters ends in `-`, which Proxmox refuses.
    let request = agentlab_actors::sandbox::allocate::SandboxRequest {
        name: Some(format!("{}-tail", "a".repeat(62))),
        profile: "yolo-ephemeral".into(),
        ..Default::default()
    };
    let vmid = agentlab_actors::sandbox::allocate::allocate(&h.sandboxes, &request).await.unwrap().vmid;
    agentlab_actors::root::request_spawn("sandbox", &vmid.to_string()).await.unwrap();
    match h.settled(vmid).await {
        agentlab_actors::sandbox::Settled::Ready(_) => {}
        agentlab_actors::sandbox::Settled::Failed(view) => panic!("{:?}", view.error),
    }
    assert_eq!(h.sim.world().vms[&vmid].config.get("name").map(String::as_str), Some("a".repeat(62).as_str()));
    h.stop().await;
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn template_options_that_break_a_sandbox_are_not_inherited() {
    let h = Harness::start().await;
    {
        let mut world = h.sim.world();
        let template = &mut world.vms.get_mut(&support::TEMPLATE_VMID).unwrap().config;
        for (key, value) in [("protection", "1"), ("onboot", "1"), ("startup", "order=1"), ("balloon", "16384")] {
            template.insert(key.into(), value.into());
        }
    }
    let vmid = h.ready_sandbox(None, false).await;
    {
        let world = h.sim.world();
        let config = &world.vms[&vmid].config;
        assert_eq!(config.get("protection").map(String::as_str), Some("0"));
        assert_eq!(config.get("onboot").map(String::as_str), Some("0"));
        assert!(!config.contains_key("startup"));
        assert_eq!(config.get("balloon").map(String::as_str), Some("6144"), "capped at the profile's memory");
    }
    let destroyed = h
        .sandbox_actor(vmid)
        .call(|reply| SandboxMsg::Destroy { force: false, by: None, reply }, Some(HOUR))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(destroyed.map(|v| v.state).ok(), Some(SandboxState::Destroyed));
    assert!(!h.vm_exists(vmid));
    h.stop().await;
}
