//! Destroys that do not simply succeed on Proxmox: one interrupted on the host leaves
//! `lock: destroyed` alone in the VM's config, with no tag — AgentLab recognises it as its
//! own (the store says it was destroying that VMID), says how to clear it (root@pam only),
//! and finishes once it is gone; one that ends `WARNINGS` may have left a disk behind, which
//! is reported.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod support;

use agentlab_actors::model::SandboxState;
use support::Harness;

#[tokio::test(start_paused = true)]
async fn an_interrupted_destroy_is_reported_with_the_fix_and_finished_afterwards() {
    let h = Harness::start().await;
    let vmid = h.ready_sandbox(None, false).await;
    h.operate(vmid, agentlab_actors::sandbox::SandboxOp::Stop, false).await.unwrap();
    {
        // What qemu-server's destroy leaves when its task dies between writing the zombie
        // config and removing it.
        let mut world = h.sim.world();
        let vm = world.vms.get_mut(&vmid).unwrap();
        vm.config.clear();
        vm.lock = Some("destroyed".into());
    }
    let destroyed = h.destroy(vmid, false).await;
    let message = destroyed.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("destroy was interrupted") && message.contains(&format!("qm unlock {vmid}")), "{message}");
    assert!(!message.contains("not tagged"), "not called someone else's VM: {message}");
    assert_eq!(h.sandbox(vmid).state, SandboxState::Stopped, "kept, to be destroyed again");
    assert!(h.sandbox_event_kinds(vmid).iter().any(|k| k == "sandbox.destroy.failed"));
    // The operator runs the hint as root; destroying again finishes the cleanup.
    h.sim.world().vms.remove(&vmid);
    let again = h.destroy(vmid, false).await;
    assert_eq!(again.map(|v| v.state).ok(), Some(SandboxState::Destroyed));
    assert_eq!(h.sandbox(vmid).intent, None);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_destroy_that_leaves_a_disk_behind_is_reported() {
    let h = Harness::start().await;
    let vmid = h.ready_sandbox(None, false).await;
    {
        // The disk vanished from the storage behind Proxmox's back: destroy warns.
        let mut world = h.sim.world();
        let lvm = world.storages.get_mut("local-lvm").unwrap();
        lvm.volumes.retain(|name, _| !name.starts_with(&format!("vm-{vmid}-disk")));
    }
    let destroyed = h.destroy(vmid, false).await;
    assert_eq!(destroyed.map(|v| v.state).ok(), Some(SandboxState::Destroyed));
    let events = h.store.sandbox_events(vmid, agentlab_actors::store::EventPage::Tail(1000)).unwrap();
    let warning = events.iter().find(|e| e.kind == "sandbox.destroy.warnings").map(|e| e.msg.clone());
    let warning = warning.unwrap_or_else(|| panic!("no warning event: {events:?}"));
    assert!(warning.contains("Could not remove disk") && warning.contains("check manually"), "{warning}");
    h.stop().await;
}
