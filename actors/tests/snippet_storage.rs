//! Where snippets are written: the snippet storage's own directory (`content-dirs`
//! honoured), and only for VMs that can read it. Against `pve-sim`, which reads snippets on
//! the VM's node as Proxmox does, on tokio's paused clock.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod support;

use agentlab_actors::model::SandboxState;
use agentlab_actors::sandbox::Settled;
use support::{Harness, Options, TEMPLATE_VMID};

fn two_nodes() -> Options {
    Options { nodes: vec!["pve1".into(), "pve2".into()], ..Options::default() }
}

fn started(h: &Harness, vmid: u32) -> bool {
    h.sim.tasks().iter().any(|t| t.task_type == "qmstart" && t.id == vmid.to_string())
}

#[tokio::test(start_paused = true)]
async fn snippets_go_where_the_storage_keeps_them() {
    let h = Harness::start().await;
    h.sim.world().storages.get_mut("local").unwrap().content_dirs.insert("snippets".into(), "ci-snippets".into());
    let vmid = h.create_sandbox("yolo-ephemeral", None, false).await;
    match h.settled(vmid).await {
        Settled::Ready(view) => assert_eq!(view.state, SandboxState::Ready),
        Settled::Failed(view) => panic!("sandbox {vmid} failed: {:?}", view.error),
    }
    let moved = h.snippets_dir.parent().unwrap().join("ci-snippets");
    let files: Vec<_> = std::fs::read_dir(&moved).unwrap().collect();
    assert_eq!(files.len(), 1, "the snippet is in content-dirs' directory");
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_node_local_snippet_storage_refuses_a_vm_on_another_node_before_its_start() {
    let h = Harness::with(two_nodes()).await;
    h.sim.world().vms.get_mut(&TEMPLATE_VMID).unwrap().node = "pve2".into();
    let vmid = h.create_sandbox("yolo-ephemeral", None, false).await;
    let error = match h.settled(vmid).await {
        Settled::Failed(view) => view.error.unwrap_or_default(),
        Settled::Ready(view) => panic!("expected a failure, got {view:?}"),
    };
    assert!(error.contains("node-local") && error.contains("`pve2`") && error.contains("shared storage"), "{error}");
    assert!(!started(&h, vmid), "refused before the start, not by a failed start");
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_shared_snippet_storage_serves_every_node() {
    let h = Harness::with(two_nodes()).await;
    h.sim.world().vms.get_mut(&TEMPLATE_VMID).unwrap().node = "pve2".into();
    h.sim.world().storages.get_mut("local").unwrap().shared = true;
    let vmid = h.create_sandbox("yolo-ephemeral", None, false).await;
    match h.settled(vmid).await {
        Settled::Ready(view) => assert_eq!(view.node.as_deref(), Some("pve2")),
        Settled::Failed(view) => panic!("sandbox {vmid} failed: {:?}", view.error),
    }
    h.stop().await;
}
