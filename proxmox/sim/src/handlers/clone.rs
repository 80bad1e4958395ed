//! Clone: template-only linked clones, the target locked (`clone`) from the moment its
//! temporary config exists, the source under a shared flock, the storage lock with its
//! timeout, and cleanup of a failed clone.

use super::{Answer, Sim, check_lock, vm_missing};
use crate::engine::SimError;
use crate::http::Req;
use crate::world::{StorageKind, Vm, VolumeEntry, is_disk_key};
use serde_json::Value;
use std::sync::Arc;

pub fn clone(sim: &Arc<Sim>, req: &Req) -> Answer {
    let node = req.node().to_string();
    let source = req.vmid();
    let newid: u32 = req.get("newid").and_then(|v| v.parse().ok()).unwrap_or(0);
    let full;
    let disk_storage;
    let target;
    {
        let mut world = sim.world();
        let src = world.vm_on(&node, source).ok_or_else(|| vm_missing(&node, source))?;
        check_lock(src).map_err(SimError::die)?;
        if let Some(snap) = req.get("snapname")
            && !src.snapshots.iter().any(|s| s.name == snap)
        {
            return Err(SimError::die(format!("snapshot '{snap}' does not exist")));
        }
        full = req.get("full").map(|f| f == "1" || f == "true").unwrap_or(!src.template);
        // The cloud-init drive is regenerated, not cloned: it does not count.
        let first_disk = src
            .config
            .iter()
            .filter(|(k, v)| is_disk_key(k) && !v.contains("media=cdrom") && !v.contains("-cloudinit"))
            .find_map(|(k, v)| v.split(',').next().filter(|id| id.contains(':')).map(|id| (k.clone(), id.to_string())));
        if !full {
            for param in ["storage", "format"] {
                if req.get(param).is_some() {
                    return Err(SimError::die(format!("parameter '{param}' not allowed for linked clones")));
                }
            }
            if !src.template {
                let (drive, volid) =
                    first_disk.clone().unwrap_or_else(|| ("scsi0".into(), format!("local-lvm:vm-{source}-disk-0")));
                return Err(SimError::die(format!("Linked clone feature is not supported for '{volid}' ({drive})")));
            }
        }
        // qemu-server `src/PVE/API2/Qemu.pm` clone_vm (4436-4500): the source config is loaded
        // on the node in the path; `target` (not this node) must exist, a `storage` given
        // with it must be shared, and every volume of the source must be on shared storage.
        target = req.get("target").filter(|t| *t != node && *t != "localhost").map(str::to_string);
        if let Some(target) = &target {
            if !world.node_exists(target) {
                return Err(SimError::die(format!("no such cluster node '{target}'")));
            }
            if let Some(storage) = req.get("storage")
                && world.storages.get(storage).is_some_and(|s| !s.shared)
            {
                return Err(SimError::die(format!("can't clone to non-shared storage '{storage}'")));
            }
            let shared_vm = src.config.iter().filter(|(k, _)| is_disk_key(k)).all(|(_, v)| {
                let volid = v.split(',').next().unwrap_or_default();
                volid == "none"
                    || volid == "cdrom"
                    || !volid.contains(':')
                    || volid.split_once(':').and_then(|(s, _)| world.storages.get(s)).is_some_and(|s| s.shared)
            });
            if !shared_vm {
                return Err(SimError::die(format!("can't clone VM to node '{target}' (VM uses local storage)")));
            }
        }
        if world.vmid_taken(newid) {
            return Err(SimError::die(format!("unable to create VM {newid}: config file already exists")));
        }
        disk_storage = match req.get("storage") {
            Some(s) if !world.storages.contains_key(s) => {
                return Err(SimError::die(format!("storage '{s}' does not exist")));
            }
            Some(s) => s.to_string(),
            None => first_disk
                .and_then(|(_, v)| v.split_once(':').map(|(s, _)| s.to_string()))
                .unwrap_or_else(|| "local-lvm".into()),
        };
        // The target VMID is taken from this moment: its temporary config exists.
        let created_ms = sim.now_ms().max(1);
        let mut target = Vm::new(newid, &node, Default::default(), created_ms);
        target.lock = Some("clone".into());
        world.vms.insert(newid, target);
    }
    let name = req.get("name").map(str::to_string);
    let description = req.get("description").map(str::to_string);
    let snapname = req.get("snapname").map(str::to_string);
    let task_sim = Arc::clone(sim);
    let upid = sim.spawn_task(req.node(), "qmclone", &source.to_string(), &req.user, move |upid| async move {
        let spec = CloneWork { source, newid, full, storage: disk_storage, target, name, description, snapname };
        let result = clone_work(&task_sim, &upid, &node, spec).await;
        if result.is_err() {
            // Partial target volumes and the temporary config are removed.
            let mut world = task_sim.world();
            if let Some(vm) = world.vms.remove(&newid) {
                for (_, volid) in vm.referenced_volumes() {
                    world.free_volume(&volid);
                }
            }
        }
        result.map_err(|e| format!("clone failed: {e}"))
    });
    Ok(Value::String(upid))
}

/// What a clone task does, as its request asked.
struct CloneWork {
    source: u32,
    newid: u32,
    full: bool,
    storage: String,
    /// The node the new VM's config moves to at the end.
    target: Option<String>,
    name: Option<String>,
    description: Option<String>,
    /// Clone the VM as it was in this snapshot.
    snapname: Option<String>,
}

async fn clone_work(sim: &Arc<Sim>, upid: &str, node: &str, spec: CloneWork) -> Result<Vec<String>, String> {
    let CloneWork { source, newid, full, storage, target, name, description, snapname } = spec;
    let storage = storage.as_str();
    let _source_flock = sim.flock_shared(source, "clone_flock_timeout").await?;
    let _target_flock = sim.flock_exclusive(newid, "clone_flock_timeout").await?;
    let _storage = sim.storage_lock(storage).await?;
    let held_from = sim.now_ms();
    tokio::time::sleep(sim.latency(if full { "clone_full" } else { "clone_linked" })).await;
    let mut log = Vec::new();
    {
        let mut world = sim.world();
        let src = world.vm_on(node, source).cloned().ok_or_else(|| vm_missing(node, source).message)?;
        // qemu-server API2/Qemu.pm clone_vm: with `snapname` the snapshot's config (and its
        // disks' state then) is what is cloned.
        let src_config = match &snapname {
            Some(s) => src.snapshots.iter().find(|x| &x.name == s).map(|x| x.config.clone()).unwrap_or_default(),
            None => src.config.clone(),
        };
        let mut config = src_config.clone();
        config.retain(|k, _| !k.starts_with("unused"));
        for (key, value) in src_config.iter().filter(|(k, _)| is_disk_key(k)) {
            let (volid, opts) = value.split_once(',').map_or((value.as_str(), ""), |(a, b)| (a, b));
            let Some((src_storage, volname)) = volid.split_once(':') else { continue };
            let target_storage = if full { storage } else { src_storage };
            let kind = world.storages.get(target_storage).map(|s| s.kind).unwrap_or(StorageKind::LvmThin);
            let new_name = if volname.ends_with("-cloudinit") {
                format!("vm-{newid}-cloudinit")
            } else if full || kind != StorageKind::ZfsPool {
                world.next_disk_name(target_storage, newid)
            } else {
                format!("{volname}/{}", world.next_disk_name(target_storage, newid))
            };
            let source_volume = world.storages.get(src_storage).and_then(|s| s.volumes.get(volname));
            let size = source_volume.map_or(0, |v| v.size);
            let image = source_volume.and_then(|v| v.image.clone());
            if !volname.ends_with("-cloudinit") {
                log.push(format!("create {} clone of drive {key} ({volid})", if full { "full" } else { "linked" }));
            }
            if let Some(s) = world.storages.get_mut(target_storage) {
                s.volumes.insert(
                    new_name.clone(),
                    VolumeEntry { image, ..VolumeEntry::new(&new_name, Some(newid), size, "raw") },
                );
            }
            if let Some(runtime) = sim.config.guest.as_ref().filter(|_| full && !volname.ends_with("-cloudinit")) {
                crate::guest::copy_volume(
                    runtime,
                    volid,
                    snapname.as_deref(),
                    &format!("{target_storage}:{new_name}"),
                )?;
            }
            let opts = if opts.is_empty() { String::new() } else { format!(",{opts}") };
            config.insert(key.clone(), format!("{target_storage}:{new_name}{opts}"));
        }
        for (key, value) in config.iter_mut() {
            if key.starts_with("net") {
                *value = regenerate_mac(value, newid);
            }
        }
        config.insert("smbios1".into(), format!("uuid=00000000-0000-4000-8000-{newid:012}"));
        config.insert("name".into(), name.unwrap_or_else(|| format!("Copy-of-VM-{}", src.name())));
        match description {
            Some(d) => config.insert("description".into(), d),
            None => config.remove("description"),
        };
        let vm = world.vms.get_mut(&newid).ok_or("target config vanished during clone")?;
        vm.config = config;
        vm.image_has_agent = src.image_has_agent;
        vm.lock = None;
        if let Some(target) = target {
            // "moving config to target node": the clone's config leaves this node.
            vm.node = target.clone();
            log.push(format!("move config to target node '{target}'"));
        }
    }
    sim.note_storage_hold(upid, storage, held_from, sim.now_ms());
    Ok(log)
}

/// Clones get new MAC addresses (BC:24:11 is Proxmox's prefix).
fn regenerate_mac(net: &str, vmid: u32) -> String {
    let mac = format!("BC:24:11:{:02X}:{:02X}:{:02X}", (vmid >> 16) & 0xff, (vmid >> 8) & 0xff, vmid & 0xff);
    net.split(',')
        .enumerate()
        .map(|(i, part)| match part.split_once('=') {
            Some((k, _)) if i == 0 && !k.is_empty() && k != "bridge" => format!("{k}={mac}"),
            _ => part.to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}
