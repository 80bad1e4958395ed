//! Templates as operators really make them (PVE's cloud-init guide, Ubuntu's cloud images):
//! no cloud-init drive, no `agent` key, sometimes no agent in the image. The sandbox actor
//! against `pve-sim` at Proxmox's own latencies, on tokio's paused clock.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod support;

use agentlab_actors::model::SandboxState;
use agentlab_actors::sandbox::Settled;
use std::time::Duration;
use support::{Harness, Options, TEMPLATE_VMID};

/// Takes the cloud-init drive and the agent key off the template; `image_has_agent: false`
/// models an image without qemu-guest-agent.
fn strip_template(h: &Harness, image_has_agent: bool) {
    let mut world = h.sim.world();
    let template = world.vms.get_mut(&TEMPLATE_VMID).unwrap();
    template.config.remove("ide2");
    template.config.remove("agent");
    template.image_has_agent = image_has_agent;
}

/// A sandbox that is expected to fail provisioning: its VMID, the error, and how long it took
/// (virtual time).
async fn failed_provisioning(h: &Harness) -> (u32, String, Duration) {
    let began = tokio::time::Instant::now();
    let vmid = h.create_sandbox("yolo-ephemeral", None, false).await;
    let error = match h.settled(vmid).await {
        Settled::Failed(view) => view.error.unwrap_or_default(),
        Settled::Ready(view) => panic!("expected a failure, got {view:?}"),
    };
    (vmid, error, began.elapsed())
}

#[tokio::test(start_paused = true)]
async fn a_template_without_cloud_init_drive_or_agent_gives_a_ready_sandbox() {
    let h = Harness::start().await;
    strip_template(&h, true);
    let vmid = h.create_sandbox("yolo-ephemeral", None, false).await;
    match h.settled(vmid).await {
        Settled::Ready(view) => assert_eq!(view.state, SandboxState::Ready),
        Settled::Failed(view) => panic!("sandbox {vmid} failed: {:?}", view.error),
    }
    {
        let world = h.sim.world();
        let config = &world.vms[&vmid].config;
        assert_eq!(config.get("agent").map(String::as_str), Some("1"));
        assert_eq!(
            config.get("ide2").map(String::as_str),
            Some(format!("local-lvm:vm-{vmid}-cloudinit,media=cdrom").as_str()),
            "{config:?}"
        );
    }
    // The start generated the ISO: the snippet reached the guest.
    let started = h.sim.tasks().into_iter().find(|t| t.task_type == "qmstart" && t.id == vmid.to_string()).unwrap();
    assert!(started.log.iter().any(|l| l == "generating cloud-init ISO"), "{:?}", started.log);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_template_with_no_slot_for_a_cloud_init_drive_fails_at_once_with_the_fix() {
    let h = Harness::start().await;
    strip_template(&h, true);
    {
        let mut world = h.sim.world();
        let config = &mut world.vms.get_mut(&TEMPLATE_VMID).unwrap().config;
        let keys = (0..=3)
            .map(|n| format!("ide{n}"))
            .chain((1..=30).map(|n| format!("scsi{n}")))
            .chain((0..=5).map(|n| format!("sata{n}")));
        for key in keys {
            config.insert(key, "none,media=cdrom".into());
        }
    }
    let (vmid, error, took) = failed_provisioning(&h).await;
    assert!(took < Duration::from_secs(60), "failed after {took:?}, not within a minute");
    assert!(error.contains(&format!("template VM {TEMPLATE_VMID}")) && error.contains("cloudinit"), "{error}");
    assert!(!h.vm_exists(vmid), "the failed clone is removed");
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_image_without_guest_agent_fails_after_guest_agent_timeout_with_the_fix() {
    let h = Harness::with(Options { guest_agent_timeout: Duration::from_secs(45), ..Options::default() }).await;
    strip_template(&h, false);
    let (_, error, took) = failed_provisioning(&h).await;
    assert!(took < Duration::from_secs(60), "failed after {took:?}: at guest_agent_timeout, not provisioning_timeout");
    assert!(error.contains("qemu-guest-agent") && error.contains(&format!("template VM {TEMPLATE_VMID}")), "{error}");
    h.stop().await;
}
