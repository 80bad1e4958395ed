//! Snapshots: list (with the `current` pseudo entry), create, rollback, delete.

use super::{Answer, Sim, check_lock, vm_missing, with_vm};
use crate::engine::SimError;
use crate::http::Req;
use crate::world::{PowerState, SnapshotEntry, StorageKind};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

pub fn list(sim: &Arc<Sim>, req: &Req) -> Answer {
    with_vm(sim, req, |vm| {
        let mut out: Vec<Value> = vm
            .snapshots
            .iter()
            .map(|s| {
                let mut v = json!({"name": s.name, "description": s.description, "snaptime": s.snaptime});
                if let Some(parent) = &s.parent {
                    v["parent"] = parent.clone().into();
                }
                v
            })
            .collect();
        let mut current = json!({"name": "current", "description": "You are here!", "running": u8::from(vm.power != PowerState::Stopped), "digest": vm.digest()});
        if let Some(last) = vm.snapshots.last() {
            current["parent"] = last.name.clone().into();
        }
        out.push(current);
        Ok(Value::Array(out))
    })
}

pub fn index(sim: &Arc<Sim>, req: &Req) -> Answer {
    find(sim, req).map(|_| json!([{"name": "config"}, {"name": "rollback"}]))
}

fn find(sim: &Sim, req: &Req) -> Result<SnapshotEntry, SimError> {
    let name = req.get("snapname").unwrap_or_default();
    with_vm(sim, req, |vm| {
        vm.snapshots
            .iter()
            .find(|s| s.name == name)
            .cloned()
            .ok_or_else(|| SimError::die(format!("snapshot '{name}' does not exist")))
    })
}

pub fn get_config(sim: &Arc<Sim>, req: &Req) -> Answer {
    let snap = find(sim, req)?;
    Ok(Value::Object(snap.config.into_iter().map(|(k, v)| (k, Value::String(v))).collect()))
}

pub fn set_config(sim: &Arc<Sim>, req: &Req) -> Answer {
    let name = req.get("snapname").unwrap_or_default().to_string();
    let description = req.get("description").unwrap_or_default().to_string();
    let mut world = sim.world();
    let vm = world.vm_on_mut(req.node(), req.vmid()).ok_or_else(|| vm_missing(req.node(), req.vmid()))?;
    let snap = vm
        .snapshots
        .iter_mut()
        .find(|s| s.name == name)
        .ok_or_else(|| SimError::die(format!("snapshot '{name}' does not exist")))?;
    snap.description = description;
    Ok(Value::Null)
}

pub fn create(sim: &Arc<Sim>, req: &Req) -> Answer {
    let (node, vmid) = (req.node().to_string(), req.vmid());
    let name = req.get("snapname").unwrap_or_default().to_string();
    if matches!(name.as_str(), "current" | "pending") {
        return Err(SimError::die(format!("unable to use snapshot name '{name}' (reserved name)")));
    }
    with_vm(sim, req, |_| Ok(()))?;
    let description = req.get("description").unwrap_or_default().to_string();
    let task_sim = Arc::clone(sim);
    let upid = sim.spawn_task(req.node(), "qmsnapshot", &vmid.to_string(), &req.user, move |_| async move {
        {
            let mut world = task_sim.world();
            let vm = world.vm_on_mut(&node, vmid).ok_or_else(|| vm_missing(&node, vmid).message)?;
            if vm.template {
                return Err("you can't take a snapshot if it's a template".into());
            }
            check_lock(vm)?;
            if vm.snapshots.iter().any(|s| s.name == name) {
                return Err(format!("snapshot name '{name}' already used"));
            }
            vm.lock = Some("snapshot".into());
        }
        let _flock = task_sim.flock_exclusive(vmid, "config_lock_timeout").await;
        tokio::time::sleep(task_sim.latency("snapshot")).await;
        let disks = crate::world::disk_volumes(&current_config(&task_sim, vmid));
        let content = match &task_sim.config.guest {
            Some(runtime) => crate::guest::snapshot_volumes(runtime, &disks, "-c", &name),
            None => Ok(()),
        };
        if let Err(e) = content {
            if let Some(vm) = task_sim.world().vm_on_mut(&node, vmid) {
                vm.lock = None;
            }
            return Err(e);
        }
        if let Some(runtime) = &task_sim.config.qemu
            && let Err(e) =
                crate::qemu::snapshot_disks(&task_sim, runtime, vmid, "-c", &name, &current_config(&task_sim, vmid))
                    .await
        {
            if let Some(vm) = task_sim.world().vm_on_mut(&node, vmid) {
                vm.lock = None;
            }
            return Err(e);
        }
        let mut world = task_sim.world();
        let vm = world.vm_on_mut(&node, vmid).ok_or_else(|| vm_missing(&node, vmid).message)?;
        vm.lock = None;
        let parent = vm.snapshots.last().map(|s| s.name.clone());
        let snaptime =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let entry = SnapshotEntry {
            name: name.clone(),
            description,
            snaptime,
            parent,
            config: vm.config.clone(),
            power: vm.power,
        };
        vm.snapshots.push(entry);
        Ok(vec![format!("snapshotting 'drive-scsi0' ({name})")])
    });
    Ok(Value::String(upid))
}

pub fn rollback(sim: &Arc<Sim>, req: &Req) -> Answer {
    let (node, vmid) = (req.node().to_string(), req.vmid());
    let name = req.get("snapname").unwrap_or_default().to_string();
    with_vm(sim, req, |_| Ok(()))?;
    let start = req.flag("start");
    let task_sim = Arc::clone(sim);
    let upid = sim.spawn_task(req.node(), "qmrollback", &vmid.to_string(), &req.user, move |_| async move {
        let snap = {
            let mut world = task_sim.world();
            let kinds: std::collections::BTreeMap<String, StorageKind> =
                world.storages.iter().map(|(id, s)| (id.clone(), s.kind)).collect();
            let vm = world.vm_on_mut(&node, vmid).ok_or_else(|| vm_missing(&node, vmid).message)?;
            check_lock(vm)?;
            let snap = vm
                .snapshots
                .iter()
                .find(|s| s.name == name)
                .cloned()
                .ok_or_else(|| format!("snapshot '{name}' does not exist"))?;
            // pve-storage `src/PVE/Storage/ZFSPoolPlugin.pm` volume_rollback_is_possible
            // (588-614): ZFS rolls back only to a volume's most recent snapshot.
            let newer = vm.snapshots.iter().skip_while(|s| s.name != name).skip(1).count();
            if newer > 0 {
                let zfs_volume =
                    vm.referenced_volumes().into_iter().map(|(_, volid)| volid).find(|volid| {
                        volid.split_once(':').and_then(|(s, _)| kinds.get(s)) == Some(&StorageKind::ZfsPool)
                    });
                if let Some(volid) = zfs_volume {
                    return Err(format!("can't rollback, '{name}' is not most recent snapshot on '{volid}'"));
                }
            }
            vm.lock = Some("rollback".into());
            snap
        };
        let _flock = task_sim.flock_exclusive(vmid, "config_lock_timeout").await;
        tokio::time::sleep(task_sim.latency("rollback")).await;
        task_sim.stop_guest(vmid);
        if let Some(runtime) = &task_sim.config.qemu {
            crate::qemu::snapshot_disks(&task_sim, runtime, vmid, "-a", &name, &snap.config).await?;
        }
        if let Some(runtime) = &task_sim.config.guest {
            crate::guest::snapshot_volumes(runtime, &crate::world::disk_volumes(&snap.config), "-a", &name)?;
        }
        let mut world = task_sim.world();
        let vm = world.vm_on_mut(&node, vmid).ok_or_else(|| vm_missing(&node, vmid).message)?;
        vm.lock = None;
        vm.config = rolled_back_config(&vm.config, snap.config);
        // The snapshot's config replaces the pending section too.
        vm.pending.clear();
        // Without a saved RAM state the VM is stopped after a rollback.
        super::lifecycle::power_off(vm);
        if start {
            vm.power = PowerState::Running;
        }
        Ok(vec![format!("rolling back to snapshot '{name}'")])
    });
    Ok(Value::String(upid))
}

pub fn delete(sim: &Arc<Sim>, req: &Req) -> Answer {
    let (node, vmid) = (req.node().to_string(), req.vmid());
    let name = req.get("snapname").unwrap_or_default().to_string();
    with_vm(sim, req, |_| Ok(()))?;
    let task_sim = Arc::clone(sim);
    let upid = sim.spawn_task(req.node(), "qmdelsnapshot", &vmid.to_string(), &req.user, move |_| async move {
        let _flock = task_sim.flock_exclusive(vmid, "config_lock_timeout").await;
        tokio::time::sleep(task_sim.latency("delsnapshot")).await;
        if let Some(runtime) = &task_sim.config.qemu {
            let config = snapshot_config(&task_sim, vmid, &name);
            crate::qemu::snapshot_disks(&task_sim, runtime, vmid, "-d", &name, &config).await?;
        }
        if let Some(runtime) = &task_sim.config.guest {
            let config = snapshot_config(&task_sim, vmid, &name);
            crate::guest::snapshot_volumes(runtime, &crate::world::disk_volumes(&config), "-d", &name)?;
        }
        let mut world = task_sim.world();
        let vm = world.vm_on_mut(&node, vmid).ok_or_else(|| vm_missing(&node, vmid).message)?;
        let before = vm.snapshots.len();
        vm.snapshots.retain(|s| s.name != name);
        if vm.snapshots.len() == before {
            return Err(format!("snapshot '{name}' does not exist"));
        }
        Ok(Vec::new())
    });
    Ok(Value::String(upid))
}

/// The config after a rollback: the snapshot's, keeping the current `unusedN` volumes, and
/// every current disk the snapshot does not reference added as a new `unusedN` (qemu-server
/// `src/PVE/QemuConfig.pm` __snapshot_rollback_get_unused (524-557), used by guest-common
/// AbstractConfig.pm snapshot_rollback (1181-1188)), whoever owns it: so a disk attached
/// after the snapshot is detached, not lost, and a later destroy frees it only if the VM
/// owns it.
pub fn rolled_back_config(
    current: &BTreeMap<String, String>,
    snap: BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let in_snapshot = crate::world::disk_volumes(&snap);
    let mut next = snap;
    next.retain(|k, _| !k.starts_with("unused"));
    next.extend(current.iter().filter(|(k, _)| k.starts_with("unused")).map(|(k, v)| (k.clone(), v.clone())));
    for volid in crate::world::disk_volumes(current).into_iter().filter(|v| !in_snapshot.contains(v)) {
        if next.iter().any(|(k, v)| k.starts_with("unused") && *v == volid) {
            continue;
        }
        if let Some(slot) = (0..256).map(|n| format!("unused{n}")).find(|k| !next.contains_key(k)) {
            next.insert(slot, volid);
        }
    }
    next
}

fn current_config(sim: &Sim, vmid: u32) -> BTreeMap<String, String> {
    sim.world().vms.get(&vmid).map(|vm| vm.config.clone()).unwrap_or_default()
}

fn snapshot_config(sim: &Sim, vmid: u32, name: &str) -> BTreeMap<String, String> {
    let world = sim.world();
    let snap = world.vms.get(&vmid).and_then(|vm| vm.snapshots.iter().find(|s| s.name == name));
    snap.map(|s| s.config.clone()).unwrap_or_default()
}
