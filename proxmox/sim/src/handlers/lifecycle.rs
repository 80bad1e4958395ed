//! Start, stop, shutdown, suspend, resume, reboot, destroy, template: the async VM
//! operations (clone has its own file), with Proxmox's split between synchronous checks (HTTP 500) and task
//! errors (`exitstatus`).

use super::{Answer, Sim, check_lock, vm_missing};
use crate::engine::SimError;
use crate::http::Req;
use crate::world::{PowerState, Vm, World, is_disk_key};
use serde_json::Value;
use std::sync::Arc;
use tokio::time::Instant;

fn not_found_on_node(node: &str, vmid: u32) -> String {
    format!("unable to find configuration file for VM {vmid} on node '{node}'")
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
            // The snippets matter only to a VM with a cloud-init drive.
            crate::world::cloudinit_drive(&vm.config, vmid).map(|_| vm.config.get("cicustom").cloned())
        };
        let _flock = task_sim.flock_exclusive(vmid, "config_lock_timeout").await?;
        if let Some(cicustom) = snippets {
            log.push("generating cloud-init ISO".to_string());
            if let Some(cicustom) = cicustom {
                check_snippets(&task_sim, &node, &cicustom)?;
            }
        }
        tokio::time::sleep(task_sim.latency("start")).await;
        let agent_delay = task_sim.latency("agent_ready");
        let machine = match &task_sim.config.qemu {
            Some(runtime) => Some(crate::qemu::start(&task_sim, runtime, vmid).await?),
            None => None,
        };
        let guest = start_guest(&task_sim, &node, vmid)?;
        let mut world = task_sim.world();
        let pid = machine.unwrap_or_else(|| world.pid());
        // A real VM reports its own address through its agent.
        let ip = match (&guest, &task_sim.config.guest) {
            _ if machine.is_some() => None,
            (Some(_), Some(runtime)) => Some(runtime.address.clone()),
            _ => Some(world.guest_ip_for(vmid)),
        };
        let vm = world.vm_on_mut(&node, vmid).ok_or_else(|| vm_missing(&node, vmid).message)?;
        // vmconfig_apply_pending at start: what waited for it is now the config.
        let pending = std::mem::take(&mut vm.pending);
        vm.config.extend(pending);
        vm.power = PowerState::Running;
        vm.started_at = Some(Instant::now());
        vm.agent_ready_at = Some(Instant::now() + agent_delay);
        vm.pid = Some(pid);
        vm.guest_ip = ip;
        if let Some(pid) = machine {
            log.push(format!("QEMU started (pid {pid})"));
        }
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
        // No cloud-init drive, no ISO: the guest never sees its bootstrap descriptor.
        let cicustom = world
            .vm_on(node, vmid)
            .filter(|vm| crate::world::cloudinit_drive(&vm.config, vmid).is_some())
            .and_then(|vm| vm.config.get("cicustom").cloned());
        cicustom
            .and_then(|c| crate::guest::user_snippet(&c, |s| world.storages.get(s).and_then(|st| st.snippets_dir())))
    };
    let work = {
        let mut world = sim.world();
        let freed = std::mem::take(&mut world.freed_volumes);
        for volid in freed {
            crate::guest::forget_volume(runtime, &volid);
        }
        world.vm_on(node, vmid).and_then(|vm| crate::guest::work_volume(&vm.config))
    };
    match snippet {
        Some(path) => crate::guest::launch(runtime, vmid, &path, work.as_deref())
            .map_err(|e| format!("pve-sim guest runtime: {e}")),
        None => Ok(None),
    }
}

/// cicustom files are read at start: each must exist in the snippets directory (≤ 1 MiB).
fn check_snippets(sim: &Sim, node: &str, cicustom: &str) -> Result<(), String> {
    let world = sim.world();
    for part in cicustom.split(',') {
        let Some((_, volid)) = part.split_once('=') else { continue };
        let Some((storage, volname)) = volid.split_once(':') else {
            return Err(format!("unable to parse volume ID '{volid}'"));
        };
        let Some(file) = volname.strip_prefix("snippets/") else {
            return Err(format!("{volid} is not in the snippets directory"));
        };
        // Read on the VM's node, from `<path>/<content-dirs.snippets>` (qemu-server
        // Cloudinit.pm read_cloudinit_snippets_file → PVE::Storage::abs_filesystem_path).
        // A node-local storage is another directory on each node: the simulator keeps one
        // copy, so a VM elsewhere than the first node finds nothing there.
        let Some(store) = world.storages.get(storage) else {
            return Err(format!("storage '{storage}' does not exist"));
        };
        if !store.on_node(node) {
            return Err(format!("storage '{storage}' is not available on node '{node}'"));
        }
        let local_copy = store.shared || world.nodes.first().is_some_and(|n| n.name == node);
        let path = store.snippets_dir().filter(|_| local_copy).map(|d| d.join(file));
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
    // qemu-server API2/Qemu.pm vm_shutdown: `timeout` defaults to 180 s (QemuServer.pm
    // vm_stop, `$timeout = 180 if !defined`), forceStop kills after it.
    let stop_mode = if shutdown {
        let timeout = req.get("timeout").and_then(|t| t.parse().ok()).unwrap_or(180);
        crate::qemu::StopMode::Powerdown {
            timeout: std::time::Duration::from_secs(timeout),
            force: req.flag("forceStop"),
        }
    } else {
        crate::qemu::StopMode::Kill
    };
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
        if task_sim.config.qemu.is_some() {
            crate::qemu::stop(&task_sim, vmid, stop_mode).await?;
        }
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
    // The QMP command a real VM gets (qemu-server vm_suspend / vm_resume / vm_reset).
    let qmp = match kind {
        "qmpause" => "stop",
        "qmresume" => "cont",
        _ => "system_reset",
    };
    let upid = sim.spawn_task(req.node(), kind, &vmid.to_string(), &req.user, move |_| async move {
        let _flock = task_sim.flock_exclusive(vmid, "config_lock_timeout").await?;
        tokio::time::sleep(task_sim.latency(op)).await;
        if task_sim.config.qemu.is_some() {
            crate::qemu::monitor_command(&task_sim, vmid, qmp).await?;
        }
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
        // guest-common AbstractConfig.pm check_protection (389-395), called by qemu-server
        // API2/Qemu.pm destroy_vm (2829): refused at once, before any task.
        if vm.config.get("protection").is_some_and(|p| p == "1") {
            return Err(SimError::die(format!("can't remove VM {vmid} - protection mode enabled")));
        }
        if vm.power != PowerState::Stopped {
            return Err(SimError::die(format!("VM {vmid} is running - destroy failed")));
        }
        // qemu-server API2/Qemu.pm destroy_vm (2822-2824): skiplock is root@pam's alone;
        // an API token (`root@pam!id`) is not root@pam.
        if req.flag("skiplock") && req.user != "root@pam" {
            return Err(SimError::param("skiplock", "Only root may use this option."));
        }
        if !req.flag("skiplock") {
            check_lock(vm).map_err(SimError::die)?;
        }
    }
    let task_sim = Arc::clone(sim);
    let upid = sim.spawn_task(req.node(), "qmdestroy", &vmid.to_string(), &req.user, move |_| async move {
        let _flock = task_sim.flock_exclusive(vmid, "config_lock_timeout").await?;
        let volumes;
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
            // qemu-server QemuServer.pm destroy_vm, called with `{ lock => 'destroyed' }`
            // (API2/Qemu.pm 2863-2869): the config is replaced by that zombie (no tags, no
            // description) while the disks go; only the task's last step removes it. A task
            // that dies in between leaves the zombie behind.
            volumes = vm.referenced_volumes();
            vm.config.clear();
            vm.lock = Some("destroyed".into());
        }
        tokio::time::sleep(task_sim.latency("destroy")).await;
        task_sim.stop_guest(vmid);
        if let Some(runtime) = &task_sim.config.qemu {
            // Only the VM's own volumes go (QemuServer.pm destroy_vm 1873-1905 skips a volume
            // whose owner is another VMID): an attached foreign disk keeps its content.
            let owns = |volid: &str| volid.split_once(':').and_then(|(_, n)| World::owner_of(n)) == Some(vmid);
            let owned: Vec<String> =
                volumes.iter().map(|(_, v)| v.clone()).filter(|v| !v.contains("base-") && owns(v)).collect();
            crate::qemu::forget(runtime, vmid, &owned);
        }
        let mut world = task_sim.world();
        world.vms.remove(&vmid).ok_or_else(|| vm_missing(&node, vmid).message)?;
        let mut log = Vec::new();
        for (_, volid) in volumes {
            let owned = world.parse_volid(&volid).and_then(|(_, name)| World::owner_of(name)) == Some(vmid);
            if owned && world.free_volume(&volid) {
                log.push(format!("  Logical volume \"{volid}\" successfully removed."));
            } else if owned {
                // qemu-server QemuServer.pm destroy_vm (1888): a disk that cannot be freed is a
                // warning, and the destroy still succeeds: the volume may be left behind.
                log.push(format!("WARN: Could not remove disk '{volid}', check manually: no such volume '{volid}'"));
            }
        }
        let mut freed = Vec::new();
        if unreferenced {
            for storage in world.storages.values_mut() {
                let stray: Vec<String> =
                    storage.volumes.values().filter(|v| v.owner == Some(vmid)).map(|v| v.volname.clone()).collect();
                for name in stray {
                    storage.volumes.remove(&name);
                    freed.push(format!("{}:{name}", storage.id));
                    log.push(format!("  Logical volume \"{}:{name}\" successfully removed.", storage.id));
                }
            }
        }
        world.freed_volumes.extend(freed);
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
        // qemu-server QemuServer.pm template_create (7896): CD-ROMs (the cloud-init drive among
        // them) are skipped; only disks become base volumes.
        for (key, value) in vm.config.iter().filter(|(k, v)| is_disk_key(k) && !v.contains("media=cdrom")) {
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
