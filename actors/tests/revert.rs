//! Reverting a sandbox to `clean`: a fresh bootstrap token and snippet (the snapshot
//! predates the first boot, so cloud-init runs again); on ZFS, where Proxmox rolls back only
//! to the newest snapshot, refused up front naming the newer snapshots, done with `--force`
//! after deleting them. Against `pve-sim`, on tokio's paused clock.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod support;

use agentlab_actors::model::SandboxState;
use agentlab_actors::sandbox::SandboxOp;
use agentlab_pve_sim::{Storage, StorageKind};
use support::{Harness, TEMPLATE_VMID};

const GIB: u64 = 1024 * 1024 * 1024;

fn template_on_zfs(h: &Harness) {
    let mut world = h.sim.world();
    let mut zfs = Storage::new("local-zfs", StorageKind::ZfsPool, vec!["images".into()], None, 500 * GIB);
    let lvm = world.storages.get_mut("local-lvm").unwrap();
    let names: Vec<String> =
        lvm.volumes.iter().filter(|(_, v)| v.owner == Some(TEMPLATE_VMID)).map(|(k, _)| k.clone()).collect();
    for name in names {
        let volume = lvm.volumes.remove(&name).unwrap();
        zfs.volumes.insert(name, volume);
    }
    world.storages.insert("local-zfs".into(), zfs);
    for value in world.vms.get_mut(&TEMPLATE_VMID).unwrap().config.values_mut() {
        *value = value.replace("local-lvm:", "local-zfs:");
    }
}

#[tokio::test(start_paused = true)]
async fn a_zfs_revert_past_newer_snapshots_names_them_and_force_removes_them() {
    let h = Harness::start().await;
    template_on_zfs(&h);
    let vmid = h.ready_sandbox(None, false).await;
    assert!(h.sim.world().vms[&vmid].config["scsi0"].starts_with("local-zfs:"));
    h.operate(vmid, SandboxOp::Stop, false).await.unwrap();
    h.operate(vmid, SandboxOp::SnapshotSave { name: "before-deps".into() }, false).await.unwrap();

    let refused = h.operate(vmid, SandboxOp::Revert { restart: Some(false) }, false).await.err().unwrap();
    let text = refused.to_string();
    assert!(
        text.contains("ZFS storage `local-zfs`") && text.contains("before-deps") && text.contains("--force"),
        "{text}"
    );
    assert_eq!(h.sandbox(vmid).state, SandboxState::Stopped, "nothing changed");
    assert!(h.sim.world().vms[&vmid].snapshots.iter().any(|s| s.name == "before-deps"));

    let reverted = h.operate(vmid, SandboxOp::Revert { restart: Some(false) }, true).await.unwrap();
    assert_eq!(reverted.state, SandboxState::Stopped);
    let names: Vec<String> = h.sim.world().vms[&vmid].snapshots.iter().map(|s| s.name.clone()).collect();
    assert_eq!(names, ["clean"], "the newer snapshot was deleted, clean kept");
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_revert_mints_a_new_bootstrap_token_and_rewrites_the_snippet() {
    let h = Harness::start().await;
    let vmid = h.ready_sandbox(None, false).await;
    let path = std::path::PathBuf::from(h.sandbox(vmid).snippet_path.unwrap());
    let before = std::fs::read_to_string(&path).unwrap();
    let reverted = h.operate(vmid, SandboxOp::Revert { restart: Some(true) }, false).await.unwrap();
    assert_eq!(reverted.state, SandboxState::Ready);
    let after = std::fs::read_to_string(&path).unwrap();
    assert_ne!(before, after, "the snippet carries a new token");
    assert_eq!(h.store.bootstrap_token_count(vmid).unwrap(), 1, "only the new token is valid");
    let config = h.sim.world().vms[&vmid].config.clone();
    assert!(config.get("cicustom").is_some_and(|c| c.contains(path.file_name().unwrap().to_str().unwrap())));
    h.stop().await;
}
