//! Resize, unlink, and `move_disk` (reassign to another VM).

use super::{Answer, Sim, check_lock, vm_missing, with_vm};
use crate::engine::SimError;
use crate::http::Req;
use crate::world::{PowerState, World, is_disk_key};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

fn parse_size(text: &str) -> Option<(bool, u64)> {
    let (grow, rest) = text.strip_prefix('+').map_or((false, text), |r| (true, r));
    let (number, unit) = rest.find(|c: char| c.is_ascii_alphabetic()).map_or((rest, ""), |i| rest.split_at(i));
    let n: f64 = number.parse().ok()?;
    let mult = match unit {
        "" => 1.0,
        "K" => 1024.0,
        "M" => 1024.0 * 1024.0,
        "G" => 1024.0 * 1024.0 * 1024.0,
        "T" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some((grow, (n * mult) as u64))
}

pub fn resize(sim: &Arc<Sim>, req: &Req) -> Answer {
    let (node, vmid) = (req.node().to_string(), req.vmid());
    with_vm(sim, req, |vm| check_lock(vm).map_err(SimError::die))?;
    let disk = req.get("disk").unwrap_or_default().to_string();
    let size = req.get("size").unwrap_or_default().to_string();
    let task_sim = Arc::clone(sim);
    let upid = sim.spawn_task(req.node(), "resize", &vmid.to_string(), &req.user, move |_| async move {
        let _flock = task_sim.flock_exclusive(vmid, "config_lock_timeout").await?;
        tokio::time::sleep(task_sim.latency("resize")).await;
        let mut world = task_sim.world();
        let value = world
            .vm_on(&node, vmid)
            .ok_or_else(|| vm_missing(&node, vmid).message)?
            .config
            .get(&disk)
            .cloned()
            .ok_or_else(|| format!("disk '{disk}' does not exist"))?;
        if value.contains("media=cdrom") {
            return Err("you can't resize a cdrom".into());
        }
        let volid = value.split(',').next().unwrap_or_default().to_string();
        let (storage, name) = volid.split_once(':').ok_or_else(|| format!("disk '{disk}' has no associated volume"))?;
        let current = world
            .storages
            .get(storage)
            .and_then(|s| s.volumes.get(name))
            .map(|v| v.size)
            .ok_or_else(|| format!("Could not determine current size of volume '{volid}'"))?;
        let (grow, amount) = parse_size(&size).ok_or_else(|| format!("invalid size '{size}'"))?;
        let new_size = if grow { current + amount } else { amount };
        if new_size < current {
            return Err("shrinking disks is not supported".into());
        }
        if let Some(v) = world.storages.get_mut(storage).and_then(|s| s.volumes.get_mut(name)) {
            v.size = new_size;
        }
        let gib = new_size.div_ceil(1024 * 1024 * 1024);
        let mut parts: Vec<String> = value.split(',').filter(|p| !p.starts_with("size=")).map(str::to_string).collect();
        parts.push(format!("size={gib}G"));
        if let Some(vm) = world.vm_on_mut(&node, vmid) {
            vm.config.insert(disk.clone(), parts.join(","));
        }
        Ok(vec![format!("resized disk {disk} to {gib}G")])
    });
    Ok(Value::String(upid))
}

/// Synchronous: drops the keys; owned volumes become `unusedN` (or are freed with force).
pub async fn unlink(sim: &Arc<Sim>, req: &Req) -> Answer {
    let (node, vmid) = (req.node().to_string(), req.vmid());
    with_vm(sim, req, |vm| check_lock(vm).map_err(SimError::die))?;
    let idlist: Vec<String> = req
        .get("idlist")
        .unwrap_or_default()
        .split([',', ';', ' '])
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let _flock = sim.flock_exclusive(vmid, "config_lock_timeout").await.map_err(SimError::die)?;
    let mut world = sim.world();
    super::qemu::apply(&mut world, &node, vmid, &BTreeMap::new(), &idlist, req.flag("force")).map_err(SimError::die)?;
    Ok(Value::Null)
}

pub fn move_disk(sim: &Arc<Sim>, req: &Req) -> Answer {
    let vmid = req.vmid();
    let disk = req.get("disk").unwrap_or_default().to_string();
    let storage = req.get("storage").map(str::to_string);
    let target_vmid: Option<u32> = req.get("target-vmid").and_then(|v| v.parse().ok());
    match (&storage, target_vmid) {
        (Some(_), Some(_)) => {
            let msg = "either set 'storage' or 'target-vmid', but not both";
            return Err(SimError::params(BTreeMap::from([
                ("storage".into(), msg.into()),
                ("target-vmid".into(), msg.into()),
            ])));
        }
        (None, None) => {
            let msg = "both 'storage' and 'target-vmid' missing, either needs to be set";
            return Err(SimError::params(BTreeMap::from([
                ("storage".into(), msg.into()),
                ("target-vmid".into(), msg.into()),
            ])));
        }
        _ => {}
    }
    let Some(target) = target_vmid else {
        return Err(SimError::die(
            "moving a disk between storages is not simulated; pve-sim simulates reassign (target-vmid)",
        ));
    };
    if target == vmid {
        return Err(SimError::param("target-vmid", "must be different than source VMID to reassign disk"));
    }
    let target_disk = req.get("target-disk").unwrap_or(&disk).to_string();
    {
        let world = sim.world();
        let src = world.vms.get(&vmid).ok_or_else(|| SimError::die(format!("could not find VM {vmid}")))?;
        let dst = world.vms.get(&target).ok_or_else(|| SimError::die(format!("could not find target VM {target}")))?;
        if src.node != dst.node {
            return Err(SimError::die(format!("Both VMs need to be on the same node ({} != {})", src.node, dst.node)));
        }
        if src.template || dst.template {
            return Err(SimError::die("Can't move disks from or to template VMs"));
        }
        let value = src
            .config
            .get(&disk)
            .ok_or_else(|| SimError::die(format!("Disk '{disk}' for VM '{vmid}' does not exist")))?;
        if dst.config.contains_key(&target_disk) {
            return Err(SimError::die(format!("Target disk key '{target_disk}' is already in use for VM '{target}'")));
        }
        // qemu-server API2/Qemu.pm move_vm_disk (5049-5051, Drive.pm is_volume_in_use): a
        // volume any snapshot of the source references stays where it is.
        let volid = value.split(',').next().unwrap_or_default();
        if src.snapshots.iter().any(|snap| crate::world::disk_volumes(&snap.config).iter().any(|v| v == volid)) {
            return Err(SimError::die("Can't move disk used by a snapshot to another VM"));
        }
        if src.power != PowerState::Stopped && is_disk_key(&disk) {
            return Err(SimError::die("Cannot move disk to another VM while the source VM is running - detach first"));
        }
        if value.split(',').next().is_none_or(|v| !v.contains(':')) {
            return Err(SimError::die(format!("Disk '{disk}' for VM '{vmid}' does not exist")));
        }
    }
    let task_sim = Arc::clone(sim);
    let id = format!("{vmid}-{disk}>{target}-{target_disk}");
    let upid = sim.spawn_task(req.node(), "qmmove", &id, &req.user, move |_| async move {
        let _a = task_sim.flock_exclusive(vmid, "config_lock_timeout").await?;
        let _b = task_sim.flock_exclusive(target, "config_lock_timeout").await?;
        tokio::time::sleep(task_sim.latency("move_disk")).await;
        let mut world = task_sim.world();
        let value = world
            .vms
            .get_mut(&vmid)
            .and_then(|vm| vm.config.remove(&disk))
            .ok_or_else(|| format!("Disk '{disk}' for VM '{vmid}' does not exist"))?;
        let (volid, opts) = value.split_once(',').map_or((value.as_str(), ""), |(a, b)| (a, b));
        let (storage, name) = volid.split_once(':').ok_or("bad volume")?;
        let new_name = world.next_disk_name(storage, target);
        let volume = world
            .storages
            .get_mut(storage)
            .and_then(|s| s.volumes.remove(name))
            .ok_or_else(|| format!("volume '{volid}' does not exist"))?;
        if let Some(s) = world.storages.get_mut(storage) {
            s.volumes.insert(
                new_name.clone(),
                crate::world::VolumeEntry { volname: new_name.clone(), owner: Some(target), ..volume },
            );
        }
        let opts =
            if opts.is_empty() || target_disk.starts_with("unused") { String::new() } else { format!(",{opts}") };
        if let Some(vm) = world.vms.get_mut(&target) {
            vm.config.insert(target_disk.clone(), format!("{storage}:{new_name}{opts}"));
        }
        let _ = World::owner_of(&new_name);
        Ok(vec![
            format!("reassign disk '{disk}' from VM '{vmid}' as '{target_disk}' to VM '{target}'"),
            format!("removing disk '{disk}' from VM '{vmid}' config"),
            format!("update VM {target}: -{target_disk} {storage}:{new_name}{opts}"),
        ])
    });
    Ok(Value::String(upid))
}
