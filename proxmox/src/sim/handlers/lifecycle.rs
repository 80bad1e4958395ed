//! Clone, start, stop, shutdown, suspend, resume, reboot, destroy, template: the async
//! VM operations, with Proxmox's split between synchronous checks (HTTP 500) and task
//! errors (`exitstatus`).

use super::{Answer, Sim, check_lock, vm_missing};
use crate::sim::engine::SimError;
use crate::sim::http::Req;
use crate::sim::world::{PowerState, StorageKind, Vm, VolumeEntry, World, is_disk_key};
use serde_json::Value;
use std::sync::Arc;
use tokio::time::Instant;

fn not_found_on_node(node: &str, vmid: u32) -> String {
    format!("unable to find configuration file for VM {vmid} on node '{node}'")
}

pub fn clone(sim: &Arc<Sim>, req: &Req) -> Answer {
    let node = req.node().to_string();
    let source = req.vmid();
    let newid: u32 = req.get("newid").and_then(|v| v.parse().ok()).unwrap_or(0);
    let full;
    let disk_storage;
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
        if let Some(target) = req.get("target")
            && target != node
        {
            return Err(SimError::die(format!("can't clone VM to node '{target}' (VM uses local storage)")));
        }
        if world.vms.contains_key(&newid) {
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
        world.vms.insert(
            newid,
            Vm {
                vmid: newid,
                node: node.clone(),
                config: Default::default(),
                template: false,
                power: PowerState::Stopped,
                lock: Some("clone".into()),
                snapshots: Vec::new(),
                firewall_options: Default::default(),
                firewall_rules: Vec::new(),
                agent_ready_at: None,
                started_at: None,
                guest_ip: None,
                pid: None,
                created_ms,
            },
        );
    }
    let name = req.get("name").map(str::to_string);
    let description = req.get("description").map(str::to_string);
    let task_sim = Arc::clone(sim);
    let upid = sim.spawn_task(req.node(), "qmclone", &source.to_string(), &req.user, move |upid| async move {
        let result = clone_work(&task_sim, &upid, &node, source, newid, full, &disk_storage, name, description).await;
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

#[allow(clippy::too_many_arguments)]
async fn clone_work(
    sim: &Arc<Sim>,
    upid: &str,
    node: &str,
    source: u32,
    newid: u32,
    full: bool,
    storage: &str,
    name: Option<String>,
    description: Option<String>,
) -> Result<Vec<String>, String> {
    let _source_flock = sim.flock_shared(source, "clone_flock_timeout").await?;
    let _target_flock = sim.flock_exclusive(newid, "clone_flock_timeout").await?;
    let _storage = sim.storage_lock(storage).await?;
    let held_from = sim.now_ms();
    tokio::time::sleep(sim.latency(if full { "clone_full" } else { "clone_linked" })).await;
    let mut log = Vec::new();
    {
        let mut world = sim.world();
        let src = world.vm_on(node, source).cloned().ok_or_else(|| vm_missing(node, source).message)?;
        let mut config = src.config.clone();
        config.retain(|k, _| !k.starts_with("unused"));
        for (key, value) in src.config.iter().filter(|(k, _)| is_disk_key(k)) {
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
            let size = world.storages.get(src_storage).and_then(|s| s.volumes.get(volname)).map_or(0, |v| v.size);
            if !volname.ends_with("-cloudinit") {
                log.push(format!("create {} clone of drive {key} ({volid})", if full { "full" } else { "linked" }));
            }
            if let Some(s) = world.storages.get_mut(target_storage) {
                s.volumes.insert(
                    new_name.clone(),
                    VolumeEntry {
                        volname: new_name.clone(),
                        owner: Some(newid),
                        size,
                        format: "raw".into(),
                        content: "images".into(),
                    },
                );
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
        vm.lock = None;
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

pub fn start(sim: &Arc<Sim>, req: &Req) -> Answer {
    let (node, vmid) = (req.node().to_string(), req.vmid());
    let task_sim = Arc::clone(sim);
    let upid = sim.spawn_task(req.node(), "qmstart", &vmid.to_string(), &req.user, move |_| async move {
        let mut log = Vec::new();
        let snippets = {
            let world = task_sim.world();
            let vm = world.vm_on(&node, vmid).ok_or_else(|| vm_missing(&node, vmid).message)?;
            if vm.template {
                return Err("you can't start a vm if it's a template".into());
            }
            check_lock(vm)?;
            if vm.power != PowerState::Stopped {
                return Err(format!("VM {vmid} already running"));
            }
            vm.config.get("cicustom").cloned()
        };
        let _flock = task_sim.flock_exclusive(vmid, "config_lock_timeout").await?;
        if let Some(cicustom) = snippets {
            log.push("generating cloud-init ISO".to_string());
            check_snippets(&task_sim, &cicustom)?;
        }
        tokio::time::sleep(task_sim.latency("start")).await;
        let agent_delay = task_sim.latency("agent_ready");
        let guest = start_guest(&task_sim, &node, vmid)?;
        let mut world = task_sim.world();
        let pid = world.pid();
        let ip = match (&guest, &task_sim.config.guest) {
            (Some(_), Some(runtime)) => runtime.address.clone(),
            _ => world.guest_ip_for(vmid),
        };
        let vm = world.vm_on_mut(&node, vmid).ok_or_else(|| vm_missing(&node, vmid).message)?;
        vm.power = PowerState::Running;
        vm.started_at = Some(Instant::now());
        vm.agent_ready_at = Some(Instant::now() + agent_delay);
        vm.pid = Some(pid);
        vm.guest_ip = Some(ip);
        if let Some(child) = guest {
            log.push(format!("guest process started (pid {})", child.id().unwrap_or(0)));
            task_sim.add_guest(vmid, child);
        }
        Ok(log)
    });
    Ok(Value::String(upid))
}

/// With the VM runtime on: the guest process of a VM whose user snippet carries a
/// bootstrap descriptor.
fn start_guest(sim: &Sim, node: &str, vmid: u32) -> Result<Option<tokio::process::Child>, String> {
    let Some(runtime) = &sim.config.guest else { return Ok(None) };
    let snippet = {
        let world = sim.world();
        let cicustom = world.vm_on(node, vmid).and_then(|vm| vm.config.get("cicustom").cloned());
        cicustom
            .and_then(|c| crate::sim::guest::user_snippet(&c, |s| world.storages.get(s).and_then(|st| st.path.clone())))
    };
    match snippet {
        Some(path) => {
            crate::sim::guest::launch(runtime, vmid, &path).map_err(|e| format!("pve-sim guest runtime: {e}"))
        }
        None => Ok(None),
    }
}

/// cicustom files are read at start: each must exist in the snippets directory (≤ 1 MiB).
fn check_snippets(sim: &Sim, cicustom: &str) -> Result<(), String> {
    let world = sim.world();
    for part in cicustom.split(',') {
        let Some((_, volid)) = part.split_once('=') else { continue };
        let Some((storage, volname)) = volid.split_once(':') else {
            return Err(format!("unable to parse volume ID '{volid}'"));
        };
        let Some(file) = volname.strip_prefix("snippets/") else {
            return Err(format!("{volid} is not in the snippets directory"));
        };
        let path = world.storages.get(storage).and_then(|s| s.path.clone()).map(|p| p.join("snippets").join(file));
        match path.and_then(|p| std::fs::metadata(p).ok()) {
            Some(meta) if meta.len() > 1024 * 1024 => return Err("Cloud-Init sum of snippets too big (> 3 MiB)".into()),
            Some(_) => {}
            None => return Err(format!("volume '{volid}' does not exist")),
        }
    }
    Ok(())
}

pub fn stop(sim: &Arc<Sim>, req: &Req, shutdown: bool) -> Answer {
    let (node, vmid) = (req.node().to_string(), req.vmid());
    if shutdown && !req.flag("forceStop") {
        let world = sim.world();
        if world.vm_on(&node, vmid).is_some_and(|vm| vm.power == PowerState::Paused) {
            return Err(SimError::die("VM is paused - cannot shutdown"));
        }
    }
    let task_sim = Arc::clone(sim);
    let kind = if shutdown { "qmshutdown" } else { "qmstop" };
    let upid = sim.spawn_task(req.node(), kind, &vmid.to_string(), &req.user, move |_| async move {
        {
            let world = task_sim.world();
            let vm = world.vm_on(&node, vmid).ok_or_else(|| not_found_on_node(&node, vmid))?;
            check_lock(vm)?;
            if vm.power == PowerState::Stopped {
                return Ok(Vec::new());
            }
        }
        let _flock = task_sim.flock_exclusive(vmid, "config_lock_timeout").await?;
        tokio::time::sleep(task_sim.latency(if shutdown { "shutdown" } else { "stop" })).await;
        task_sim.stop_guest(vmid);
        let mut world = task_sim.world();
        if let Some(vm) = world.vm_on_mut(&node, vmid) {
            power_off(vm);
        }
        Ok(Vec::new())
    });
    Ok(Value::String(upid))
}

pub fn power_off(vm: &mut Vm) {
    vm.power = PowerState::Stopped;
    vm.started_at = None;
    vm.agent_ready_at = None;
    vm.pid = None;
}

fn require_running(sim: &Sim, node: &str, vmid: u32) -> Result<PowerState, SimError> {
    let world = sim.world();
    let vm = world.vm_on(node, vmid).ok_or_else(|| SimError::die(not_found_on_node(node, vmid)))?;
    if vm.power == PowerState::Stopped {
        return Err(SimError::die(format!("VM {vmid} not running")));
    }
    Ok(vm.power)
}

pub fn suspend(sim: &Arc<Sim>, req: &Req) -> Answer {
    let (node, vmid) = (req.node().to_string(), req.vmid());
    require_running(sim, &node, vmid)?;
    power_task(sim, req, "qmpause", "suspend", PowerState::Paused)
}

pub fn resume(sim: &Arc<Sim>, req: &Req) -> Answer {
    let (node, vmid) = (req.node().to_string(), req.vmid());
    require_running(sim, &node, vmid)?;
    power_task(sim, req, "qmresume", "resume", PowerState::Running)
}

pub fn reboot(sim: &Arc<Sim>, req: &Req, kind: &str) -> Answer {
    let (node, vmid) = (req.node().to_string(), req.vmid());
    require_running(sim, &node, vmid)?;
    power_task(sim, req, kind, "start", PowerState::Running)
}

fn power_task(sim: &Arc<Sim>, req: &Req, kind: &str, op: &'static str, to: PowerState) -> Answer {
    let (node, vmid) = (req.node().to_string(), req.vmid());
    let task_sim = Arc::clone(sim);
    let upid = sim.spawn_task(req.node(), kind, &vmid.to_string(), &req.user, move |_| async move {
        let _flock = task_sim.flock_exclusive(vmid, "config_lock_timeout").await?;
        tokio::time::sleep(task_sim.latency(op)).await;
        let mut world = task_sim.world();
        let vm = world.vm_on_mut(&node, vmid).ok_or_else(|| not_found_on_node(&node, vmid))?;
        check_lock(vm)?;
        vm.power = to;
        Ok(Vec::new())
    });
    Ok(Value::String(upid))
}

pub fn destroy(sim: &Arc<Sim>, req: &Req) -> Answer {
    let (node, vmid) = (req.node().to_string(), req.vmid());
    let unreferenced = req.flag("destroy-unreferenced-disks");
    {
        let world = sim.world();
        let vm = world.vm_on(&node, vmid).ok_or_else(|| vm_missing(&node, vmid))?;
        if vm.power != PowerState::Stopped {
            return Err(SimError::die(format!("VM {vmid} is running - destroy failed")));
        }
        if !req.flag("skiplock") {
            check_lock(vm).map_err(SimError::die)?;
        }
    }
    let task_sim = Arc::clone(sim);
    let upid = sim.spawn_task(req.node(), "qmdestroy", &vmid.to_string(), &req.user, move |_| async move {
        let _flock = task_sim.flock_exclusive(vmid, "config_lock_timeout").await?;
        {
            let mut world = task_sim.world();
            let base_in_use =
                world.vms.values().filter(|v| v.vmid != vmid).flat_map(|v| v.referenced_volumes()).find_map(
                    |(_, volid)| {
                        volid.split_once(':').and_then(|(_, name)| {
                            name.split('/')
                                .next()
                                .filter(|b| b.starts_with(&format!("base-{vmid}-")))
                                .map(|b| b.to_string())
                        })
                    },
                );
            if let Some(base) = base_in_use {
                return Err(format!("base volume '{base}' is still in use by linked cloned"));
            }
            let vm = world.vm_on_mut(&node, vmid).ok_or_else(|| vm_missing(&node, vmid).message)?;
            vm.lock = Some("destroyed".into());
        }
        tokio::time::sleep(task_sim.latency("destroy")).await;
        task_sim.stop_guest(vmid);
        let mut world = task_sim.world();
        let vm = world.vms.remove(&vmid).ok_or_else(|| vm_missing(&node, vmid).message)?;
        let mut log = Vec::new();
        for (_, volid) in vm.referenced_volumes() {
            let owned = world.parse_volid(&volid).and_then(|(_, name)| World::owner_of(name)) == Some(vmid);
            if owned && world.free_volume(&volid) {
                log.push(format!("  Logical volume \"{volid}\" successfully removed."));
            }
        }
        if unreferenced {
            for storage in world.storages.values_mut() {
                let stray: Vec<String> =
                    storage.volumes.values().filter(|v| v.owner == Some(vmid)).map(|v| v.volname.clone()).collect();
                for name in stray {
                    storage.volumes.remove(&name);
                    log.push(format!("  Logical volume \"{}:{name}\" successfully removed.", storage.id));
                }
            }
        }
        log.push(format!("purging VM {vmid} from related configurations.."));
        Ok(log)
    });
    Ok(Value::String(upid))
}

pub fn template(sim: &Arc<Sim>, req: &Req) -> Answer {
    let (node, vmid) = (req.node().to_string(), req.vmid());
    super::with_vm(sim, req, |vm| check_lock(vm).map_err(SimError::die))?;
    let task_sim = Arc::clone(sim);
    let upid = sim.spawn_task(req.node(), "qmtemplate", &vmid.to_string(), &req.user, move |_| async move {
        let _flock = task_sim.flock_exclusive(vmid, "config_lock_timeout").await?;
        tokio::time::sleep(task_sim.latency("template")).await;
        let mut world = task_sim.world();
        let vm = world.vm_on(&node, vmid).cloned().ok_or_else(|| vm_missing(&node, vmid).message)?;
        if vm.power != PowerState::Stopped {
            return Err("you can't convert a VM to template if VM is running".into());
        }
        let mut config = vm.config.clone();
        for (key, value) in vm.config.iter().filter(|(k, _)| is_disk_key(k)) {
            let volid = value.split(',').next().unwrap_or_default();
            let Some((storage, name)) = volid.split_once(':') else { continue };
            if let Some(base) = name.strip_prefix("vm-").map(|rest| format!("base-{rest}"))
                && let Some(s) = world.storages.get_mut(storage)
                && let Some(mut volume) = s.volumes.remove(name)
            {
                volume.volname = base.clone();
                s.volumes.insert(base.clone(), volume);
                config.insert(key.clone(), value.replacen(name, &base, 1));
            }
        }
        let vm = world.vm_on_mut(&node, vmid).ok_or("vanished")?;
        vm.config = config;
        vm.template = true;
        Ok(Vec::new())
    });
    Ok(Value::String(upid))
}
