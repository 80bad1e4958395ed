//! VM listing, config read and update, status.

use super::{Answer, Sim, check_lock, normalize_tags, vm_missing, vm_status, with_vm};
use crate::engine::SimError;
use crate::http::Req;
use crate::world::{PowerState, World, is_disk_key};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

pub fn list(sim: &Arc<Sim>, req: &Req) -> Answer {
    let world = sim.world();
    let list: Vec<Value> = world.vms.values().filter(|vm| vm.node == req.node()).map(|vm| vm_status(sim, vm)).collect();
    Ok(Value::Array(list))
}

/// A static index: succeeds for any VMID.
pub fn index() -> Answer {
    let dirs =
        ["config", "pending", "status", "snapshot", "agent", "firewall", "clone", "move_disk", "resize", "unlink"];
    Ok(Value::Array(dirs.iter().map(|d| json!({"subdir": d})).collect()))
}

pub fn status_index(sim: &Arc<Sim>, req: &Req) -> Answer {
    with_vm(sim, req, |_| Ok(json!([{"subdir": "current"}, {"subdir": "start"}, {"subdir": "stop"}])))
}

pub fn status_current(sim: &Arc<Sim>, req: &Req) -> Answer {
    with_vm(sim, req, |vm| Ok(vm_status(sim, vm)))
}

pub fn get_config(sim: &Arc<Sim>, req: &Req) -> Answer {
    // Without `current=1` the answer has the pending values in place (qemu-server
    // API2/Qemu.pm vm_config: "Get current values (instead of pending values)").
    let current = req.flag("current");
    with_vm(sim, req, |vm| {
        let mut merged = vm.config.clone();
        if !current {
            merged.extend(vm.pending.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        let mut config: serde_json::Map<String, Value> = merged
            .iter()
            .map(|(k, v)| {
                // Integer-typed keys come back as numbers, property strings as text.
                let value = match k.as_str() {
                    "cores" | "sockets" | "template" => {
                        v.parse::<u64>().map(Value::from).unwrap_or_else(|_| v.clone().into())
                    }
                    _ => Value::String(v.clone()),
                };
                (k.clone(), value)
            })
            .collect();
        if vm.template {
            config.insert("template".into(), 1.into());
        }
        if let Some(lock) = &vm.lock {
            config.insert("lock".into(), lock.clone().into());
        }
        config.insert("digest".into(), vm.digest().into());
        Ok(Value::Object(config))
    })
}

/// `[{key, value, pending?}]`: the current value, and the one waiting for the next start.
pub fn pending(sim: &Arc<Sim>, req: &Req) -> Answer {
    with_vm(sim, req, |vm| {
        let mut keys: Vec<&String> = vm.config.keys().chain(vm.pending.keys()).collect();
        keys.sort();
        keys.dedup();
        let entries = keys
            .into_iter()
            .map(|k| {
                let mut entry = json!({"key": k});
                if let Some(v) = vm.config.get(k) {
                    entry["value"] = v.clone().into();
                }
                if let Some(p) = vm.pending.get(k) {
                    entry["pending"] = p.clone().into();
                }
                entry
            })
            .collect();
        Ok(Value::Array(entries))
    })
}

/// Keys a running VM takes at once: qemu-server QemuServer.pm `$fast_plug_option` (4594-4611,
/// plus the cloud-init options) and what vmconfig_hotplug_pending hot-plugs with the default
/// `hotplug: network,disk,usb` (net*, disks, cpulimit, cpuunits, agent, balloon). The rest
/// (`cores`, `memory` without memory hotplug, …) stays pending until the next start.
fn applies_while_running(key: &str, hotplug: &str) -> bool {
    const FAST: [&str; 12] = [
        "description",
        "hookscript",
        "lock",
        "migrate_downtime",
        "migrate_speed",
        "name",
        "onboot",
        "protection",
        "shares",
        "startup",
        "tags",
        "vmstatestorage",
    ];
    const CLOUDINIT: [&str; 9] = [
        "cicustom",
        "cipassword",
        "citype",
        "ciupgrade",
        "ciuser",
        "nameserver",
        "searchdomain",
        "sshkeys",
        "ipconfig",
    ];
    let feature = |f: &str| hotplug.split(',').any(|h| h.trim() == f);
    FAST.contains(&key)
        || CLOUDINIT.iter().any(|c| key.starts_with(c))
        || matches!(key, "cpulimit" | "cpuunits" | "agent" | "balloon")
        || (key.starts_with("net") && feature("network"))
        || (is_disk_key(key) && feature("disk"))
        || (key == "memory" && feature("memory"))
        || (key == "vcpus" && feature("cpu"))
}

const NOT_CONFIG: [&str; 8] = ["node", "vmid", "delete", "digest", "revert", "force", "skiplock", "background_delay"];

/// The request's VM properties: every parameter but the endpoint's own (`excluded`).
pub fn vm_properties(req: &Req, excluded: &[&str]) -> BTreeMap<String, String> {
    req.params
        .values
        .iter()
        .filter(|(k, _)| !excluded.contains(&k.as_str()))
        .filter_map(|(k, v)| v.first().map(|v| (k.clone(), v.clone())))
        .collect()
}

/// POST (async, `qmconfig` task) and PUT (synchronous) config.
pub async fn update_config(sim: &Arc<Sim>, req: &Req, as_task: bool) -> Answer {
    let node = req.node().to_string();
    let vmid = req.vmid();
    let set = vm_properties(req, &NOT_CONFIG);
    let delete: Vec<String> = req
        .get("delete")
        .map(|d| d.split([',', ';', ' ']).filter(|s| !s.is_empty()).map(str::to_string).collect())
        .unwrap_or_default();
    if set.is_empty() && delete.is_empty() {
        return Err(SimError::die("no options specified"));
    }
    if let Some(both) = delete.iter().find(|d| set.contains_key(*d)) {
        return Err(SimError::param("delete", format!("you can't use '-{both}' and -delete {both}' at the same time")));
    }
    // qemu-server API2/Qemu.pm $check_vm_modify_config_perm: `affinity` is in none of the
    // privilege sets (789-861), so it falls through to "only root can set" (1037) unless the
    // authenticated user is exactly root@pam. A token's user is its token id
    // (`root@pam!agentlab`), never root@pam; pvesh on the host runs as root@pam.
    if set.contains_key("affinity") && req.user != "root@pam" {
        return Err(SimError::die("only root can set 'affinity' config"));
    }
    super::create::check_imports(&set, &req.user)?;
    if let Some(privs) = crate::permissions::privileges_of(&sim.config.token_privileges, &req.user) {
        let options = set.iter().map(|(k, v)| (k.as_str(), Some(v.as_str())));
        crate::permissions::check_config(options.chain(delete.iter().map(|k| (k.as_str(), None))), vmid, privs)?;
        // qemu-server API2/Qemu.pm $check_storage_access (194) and the unusedN check (270).
        for (key, value) in &set {
            if let Some((volid, owner)) = existing_image(key, value) {
                crate::permissions::check_volume_access(volid, vmid, owner, privs)?;
            }
        }
    }
    let force = req.flag("force");
    with_vm(sim, req, |vm| {
        check_lock(vm).map_err(SimError::die)?;
        if let Some(digest) = req.get("digest")
            && digest != vm.digest()
        {
            return Err(SimError::die("checksum mismatch (file change by other user?)"));
        }
        Ok(())
    })?;
    if as_task {
        let task_sim = Arc::clone(sim);
        let upid = sim.spawn_task(req.node(), "qmconfig", &vmid.to_string(), &req.user, move |_| async move {
            let _flock = task_sim.flock_exclusive(vmid, "config_lock_timeout").await?;
            tokio::time::sleep(task_sim.latency("config")).await;
            let mut world = task_sim.world();
            apply(&mut world, &node, vmid, &set, &delete, force)
        });
        return Ok(Value::String(upid));
    }
    let _flock = sim.flock_exclusive(vmid, "config_lock_timeout").await.map_err(SimError::die)?;
    let mut world = sim.world();
    apply(&mut world, &node, vmid, &set, &delete, force).map_err(SimError::die)?;
    Ok(Value::Null)
}

/// Applies a config change; returns the log lines.
pub fn apply(
    world: &mut World,
    node: &str,
    vmid: u32,
    set: &BTreeMap<String, String>,
    delete: &[String],
    force: bool,
) -> Result<Vec<String>, String> {
    if world.vm_on(node, vmid).is_none() {
        return Err(vm_missing(node, vmid).message);
    }
    // qemu-server API2/Qemu.pm (update_vm, 2243-2247 in PVE 9): the balloon target may not
    // exceed the memory the VM ends up with.
    if let Some(vm) = world.vm_on(node, vmid) {
        let value = |key: &str| -> Option<u64> {
            let text = set.get(key).or_else(|| vm.config.get(key).filter(|_| !delete.iter().any(|d| d == key)))?;
            text.trim_start_matches("current=").split(',').next()?.parse().ok()
        };
        let memory = value("memory").unwrap_or(512);
        if value("balloon").is_some_and(|balloon| balloon > memory) {
            return Err("balloon value too large (must be smaller than assigned memory)".into());
        }
    }
    let mut log = vec![format!("update VM {vmid}: {}", describe(set, delete))];
    for key in delete {
        let Some(old) = world.vm_on_mut(node, vmid).and_then(|vm| vm.config.remove(key)) else {
            log.push(format!("cannot delete '{key}' - not set in current configuration!"));
            continue;
        };
        let volid = old.split(',').next().unwrap_or_default().to_string();
        let owned = world.parse_volid(&volid).and_then(|(_, name)| World::owner_of(name)) == Some(vmid);
        if (is_disk_key(key) || key.starts_with("unused")) && owned && !old.contains("media=cdrom") {
            if force || key.starts_with("unused") {
                world.free_volume(&volid);
                log.push(format!("removed volume '{volid}'"));
            } else if let Some(vm) = world.vm_on_mut(node, vmid) {
                let slot = (0..256).map(|n| format!("unused{n}")).find(|k| !vm.config.contains_key(k));
                match slot {
                    Some(slot) => {
                        vm.config.insert(slot, volid);
                    }
                    None => return Err("Too many unused volumes - please delete them first.".into()),
                }
            }
        }
    }
    let running = world.vm_on(node, vmid).is_some_and(|vm| vm.power != PowerState::Stopped);
    let hotplug = world
        .vm_on(node, vmid)
        .and_then(|vm| vm.config.get("hotplug").cloned())
        .unwrap_or_else(|| "network,disk,usb".into());
    for (key, value) in set {
        if running && !applies_while_running(key, &hotplug) {
            if let Some(vm) = world.vm_on_mut(node, vmid) {
                vm.pending.insert(key.clone(), value.clone());
            }
            continue;
        }
        let value = if key == "tags" {
            normalize_tags(value)
        } else if is_disk_key(key) && is_new_cloudinit(value) {
            allocate_cloudinit(world, node, vmid, key, value, &mut log)?
        } else if is_disk_key(key) {
            allocate_if_new(world, vmid, value, &mut log)?
        } else {
            value.clone()
        };
        if let Some(vm) = world.vm_on_mut(node, vmid) {
            vm.config.insert(key.clone(), value);
        }
    }
    Ok(log)
}

/// A disk or `unusedN` value naming an existing disk image (`STORAGE:vm-N-disk-M`), and
/// the VMID that owns it.
fn existing_image<'a>(key: &str, value: &'a str) -> Option<(&'a str, u32)> {
    if !(is_disk_key(key) || key.starts_with("unused")) || value.contains("media=cdrom") {
        return None;
    }
    let volid = value.split(',').next()?;
    let (_, volname) = volid.split_once(':')?;
    World::owner_of(volname).filter(|_| !volname.ends_with("-cloudinit")).map(|owner| (volid, owner))
}

fn is_new_cloudinit(value: &str) -> bool {
    value.split(',').next().and_then(|f| f.split_once(':')).is_some_and(|(_, name)| name == "cloudinit")
}

/// `STORAGE:cloudinit` creates the VM's cloud-init drive `vm-<vmid>-cloudinit` (qcow2 on a
/// directory storage), attached as a CD-ROM; a second one is refused (qemu-server
/// `src/PVE/API2/Qemu.pm` create_disks, 478-513).
fn allocate_cloudinit(
    world: &mut World,
    node: &str,
    vmid: u32,
    key: &str,
    value: &str,
    log: &mut Vec<String>,
) -> Result<String, String> {
    let storage = value.split(':').next().unwrap_or_default().to_string();
    if let Some(existing) = world.vm_on(node, vmid).and_then(|vm| crate::world::cloudinit_drive(&vm.config, vmid))
        && existing != key
    {
        return Err(format!("{key} - cloud-init drive is already attached at '{existing}'"));
    }
    let Some(store) = world.storages.get_mut(&storage) else {
        return Err(format!("storage '{storage}' does not exist"));
    };
    let name =
        if store.path.is_some() { format!("{vmid}/vm-{vmid}-cloudinit.qcow2") } else { format!("vm-{vmid}-cloudinit") };
    store.volumes.insert(
        name.clone(),
        crate::world::VolumeEntry::new(
            &name,
            Some(vmid),
            4 * 1024 * 1024,
            if name.ends_with(".qcow2") { "qcow2" } else { "raw" },
        ),
    );
    let drive = format!("{storage}:{name},media=cdrom");
    log.push(format!("{key}: successfully created disk '{drive}'"));
    Ok(drive)
}

/// `STORAGE:SIZE_GiB[,opts]` allocates a new `vm-<vmid>-disk-N`; `STORAGE:0,import-from=PATH`
/// allocates one the size of the image and records the image as its content (qemu-server
/// API2/Qemu.pm create_disks, 520-625: `do_import`, then `size=` from the image); anything
/// else is kept.
fn allocate_if_new(world: &mut World, vmid: u32, value: &str, log: &mut Vec<String>) -> Result<String, String> {
    let (first, rest) = value.split_once(',').map_or((value, ""), |(a, b)| (a, b));
    let Some((storage, size)) = first.split_once(':') else {
        return Ok(value.to_string());
    };
    let Ok(gib) = size.parse::<f64>() else {
        // An existing volume must be there, and the drive records its size (Qemu.pm
        // create_disks 710-715: "volume … does not exist").
        let Some(bytes) = world.storages.get(storage).and_then(|s| s.volumes.get(size)).map(|v| v.size) else {
            if World::owner_of(size).is_some() {
                return Err(format!("volume {first} does not exist"));
            }
            return Ok(value.to_string());
        };
        let rest: String =
            rest.split(',').filter(|p| !p.is_empty() && !p.starts_with("size=")).map(|p| format!(",{p}")).collect();
        return Ok(format!("{first}{rest},size={}", size_text(bytes)));
    };
    if !world.storages.contains_key(storage) {
        return Err(format!("storage '{storage}' does not exist"));
    }
    let import = rest.split(',').find_map(|p| p.strip_prefix("import-from=")).map(std::path::PathBuf::from);
    let rest: Vec<&str> = rest.split(',').filter(|p| !p.is_empty() && !p.starts_with("import-from=")).collect();
    let name = world.next_disk_name(storage, vmid);
    let (bytes, image) = match import {
        Some(source) => {
            // file_size_info on the source (Qemu.pm 600-603).
            let bytes = crate::qemu::image_size(&source)
                .map_err(|_| format!("could not get file size of {}", source.display()))?;
            log.push(format!("importing disk '{}' to VM {vmid} ...", source.display()));
            log.push(format!("Successfully imported disk as '{storage}:{name}'"));
            (bytes, Some(source))
        }
        None => ((gib * 1024.0 * 1024.0 * 1024.0) as u64, None),
    };
    if let Some(s) = world.storages.get_mut(storage) {
        s.volumes.insert(
            name.clone(),
            crate::world::VolumeEntry { image, ..crate::world::VolumeEntry::new(&name, Some(vmid), bytes, "raw") },
        );
    }
    let opts: String = rest.iter().map(|p| format!(",{p}")).collect();
    Ok(format!("{storage}:{name}{opts},size={}", size_text(bytes)))
}

/// Proxmox's `size=` text: whole GiB as `G`, else `M`, else bytes.
fn size_text(bytes: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    if bytes.is_multiple_of(1024 * MIB) {
        format!("{}G", bytes / (1024 * MIB))
    } else if bytes.is_multiple_of(MIB) {
        format!("{}M", bytes / MIB)
    } else {
        bytes.to_string()
    }
}

fn describe(set: &BTreeMap<String, String>, delete: &[String]) -> String {
    let mut parts: Vec<String> = set.iter().map(|(k, v)| format!("-{k} {v}")).collect();
    if !delete.is_empty() {
        parts.push(format!("-delete {}", delete.join(",")));
    }
    parts.join(" ")
}
