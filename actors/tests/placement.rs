//! Placement on a cluster: clones asked on the template's node; with the template on shared
//! storage, sandboxes spread by free memory (`target`); with local storage, all on the
//! template's node. Three simulated nodes at Proxmox's latencies, on tokio's paused clock.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod support;

use agentlab_actors::model::SandboxState;
use agentlab_actors::sandbox::Settled;
use agentlab_pve_sim::{PowerState, Storage, StorageKind, Vm};
use std::collections::BTreeMap;
use support::{Harness, Options, TEMPLATE_VMID};

const GIB: u64 = 1024 * 1024 * 1024;

fn three_nodes() -> Options {
    Options { nodes: vec!["pve1".into(), "pve2".into(), "pve3".into()], ..Options::default() }
}

/// Twelve sandboxes at once; the node each ended on.
async fn twelve(h: &Harness) -> BTreeMap<String, usize> {
    let mut vmids = Vec::new();
    for _ in 0..12 {
        vmids.push(h.create_sandbox("yolo-ephemeral", None, false).await);
    }
    let mut per_node = BTreeMap::new();
    for vmid in vmids {
        match h.settled(vmid).await {
            Settled::Ready(view) => {
                assert_eq!(view.state, SandboxState::Ready);
                let node = view.node.unwrap();
                assert_eq!(h.sim.world().vms[&vmid].node, node, "the record follows the VM");
                *per_node.entry(node).or_insert(0) += 1;
            }
            Settled::Failed(view) => panic!("sandbox {vmid} failed: {:?}", view.error),
        }
    }
    per_node
}

fn assert_every_request_valid(h: &Harness) {
    let refused = h.sim.refused_requests();
    assert!(refused.is_empty(), "{refused:?}");
}

#[tokio::test(start_paused = true)]
async fn with_shared_storage_sandboxes_spread_over_the_nodes_by_free_memory() {
    let h = Harness::with(three_nodes()).await;
    {
        let mut world = h.sim.world();
        // A Ceph pool for the template's volumes, and the snippet storage on NFS (shared).
        let mut ceph = Storage::new("ceph", StorageKind::Rbd, vec!["images".into()], None, 2000 * GIB);
        ceph.shared = true;
        let lvm = world.storages.get_mut("local-lvm").unwrap();
        let volumes: Vec<_> = lvm
            .volumes
            .iter()
            .filter(|(_, v)| v.owner == Some(TEMPLATE_VMID))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (name, volume) in volumes {
            lvm.volumes.remove(&name);
            ceph.volumes.insert(name, volume);
        }
        world.storages.insert("ceph".into(), ceph);
        world.storages.get_mut("local").unwrap().shared = true;
        let template = world.vms.get_mut(&TEMPLATE_VMID).unwrap();
        for value in template.config.values_mut() {
            *value = value.replace("local-lvm:", "ceph:");
        }
        // pve1 already runs 24 GiB of someone else's VM.
        let mut busy = Vm::new(500, "pve1", [("memory".to_string(), (24 * 1024).to_string())].into(), 0);
        busy.power = PowerState::Running;
        world.vms.insert(500, busy);
    }
    let per_node = twelve(&h).await;
    eprintln!("12 sandboxes, pve1 with 24 GiB in use: {per_node:?}");
    assert_eq!(per_node.values().sum::<usize>(), 12);
    assert_eq!(per_node.len(), 3, "every node took some: {per_node:?}");
    let (p1, p2, p3) = (per_node["pve1"], per_node["pve2"], per_node["pve3"]);
    assert!(p1 < p2 && p1 < p3, "the busy node took fewer: {per_node:?}");
    assert!(p2.abs_diff(p3) <= 1, "equal nodes took about as many: {per_node:?}");
    // Every clone was asked on the template's node.
    assert!(h.sim.tasks().iter().filter(|t| t.task_type == "qmclone").all(|t| t.node == "pve1"));
    assert_every_request_valid(&h);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn with_local_storage_every_sandbox_lands_on_the_templates_node() {
    let h = Harness::with(three_nodes()).await;
    h.sim.world().vms.get_mut(&TEMPLATE_VMID).unwrap().node = "pve2".into();
    h.sim.world().storages.get_mut("local").unwrap().shared = true;
    let per_node = twelve(&h).await;
    assert_eq!(per_node, BTreeMap::from([("pve2".to_string(), 12)]));
    assert_every_request_valid(&h);
    h.stop().await;
}
