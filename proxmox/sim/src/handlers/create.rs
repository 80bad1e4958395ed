//! `POST /nodes/{node}/qemu` (`qm create`), and the `import-from` checks it shares with a
//! config update (qemu-server `src/PVE/API2/Qemu.pm` create_vm, 1159-1600).

use super::{Answer, Sim};
use crate::engine::SimError;
use crate::http::Req;
use crate::world::{Vm, World, is_disk_key};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// create_vm's own parameters; everything else is a VM property.
const NOT_CONFIG: [&str; 11] = [
    "node",
    "vmid",
    "archive",
    "storage",
    "force",
    "start",
    "pool",
    "unique",
    "live-restore",
    "bwlimit",
    "import-working-storage",
];

/// `$check_drive_param` (Qemu.pm 110-160) and `$check_storage_access` (163-250) for
/// `import-from`: the drive must be `<storage>:0,import-from=…`, and an absolute path as the
/// source is root@pam's alone (pve-storage `src/PVE/Storage.pm` check_volume_access
/// 650-652). Both run before any task.
pub fn check_imports(set: &BTreeMap<String, String>, user: &str) -> Result<(), SimError> {
    for (key, value) in set.iter().filter(|(k, _)| is_disk_key(k)) {
        let Some(source) = value.split(',').find_map(|p| p.strip_prefix("import-from=")) else { continue };
        let file = value.split(',').next().unwrap_or_default();
        if file.split_once(':').is_none_or(|(_, size)| size != "0") {
            return Err(SimError::param(
                key,
                "'import-from' requires special syntax - use <storage ID>:0,import-from=<source>",
            ));
        }
        if source.starts_with('/') && user != "root@pam" {
            return Err(SimError::die(
                "Only root can pass arbitrary filesystem paths. at /usr/share/perl5/PVE/Storage.pm line 651.",
            ));
        }
    }
    Ok(())
}

/// `virtio,bridge=…` gets a MAC (PVE::QemuServer::Network::add_random_macs, with the
/// datacenter's default prefix BC:24:11).
fn with_mac(net: &str, vmid: u32, index: u32) -> String {
    let (first, rest) = net.split_once(',').map_or((net, ""), |(a, b)| (a, b));
    if first.contains('=') {
        return net.to_string();
    }
    let mac = format!("BC:24:11:{:02X}:{:02X}:{:02X}", (vmid >> 8) & 0xff, vmid & 0xff, index & 0xff);
    if rest.is_empty() { format!("{first}={mac}") } else { format!("{first}={mac},{rest}") }
}

pub fn create(sim: &Arc<Sim>, req: &Req) -> Answer {
    let node = req.node().to_string();
    let vmid: u32 = req
        .get("vmid")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| SimError::param("vmid", "property is missing and it is not optional"))?;
    if req.get("archive").is_some() {
        return Err(SimError::die("pve-sim does not simulate restoring a backup (archive)"));
    }
    if req.flag("start") {
        return Err(SimError::param("start", "pve-sim: start the VM with a separate `qm start`"));
    }
    let mut set = super::qemu::vm_properties(req, &NOT_CONFIG);
    check_imports(&set, &req.user)?;
    for (key, value) in set.iter_mut() {
        if let Some(index) = key.strip_prefix("net").and_then(|n| n.parse().ok()) {
            *value = with_mac(value, vmid, index);
        }
    }
    {
        // create_and_lock_config (pve-guest-common AbstractConfig.pm) → pve-cluster
        // check_vmid_unused: synchronous, before the worker (Qemu.pm 1374-1376).
        let mut world = sim.world();
        if let Some(vm) = world.vms.get(&vmid) {
            return Err(SimError::die(format!(
                "unable to create VM {vmid} - VM {vmid} already exists on node '{}'",
                vm.node
            )));
        }
        if world.containers.contains_key(&vmid) {
            return Err(SimError::die(format!("unable to create VM {vmid} - CT {vmid} already exists")));
        }
        if !world.node_exists(&node) {
            return Err(SimError::die(format!("no such node '{node}'")));
        }
        let created = sim.now_ms();
        let mut vm = Vm::new(vmid, &node, BTreeMap::new(), created);
        vm.lock = Some("create".into());
        world.vms.insert(vmid, vm);
    }
    let task_sim = Arc::clone(sim);
    let upid = sim.spawn_task(req.node(), "qmcreate", &vmid.to_string(), &req.user, move |_| async move {
        let _flock = task_sim.flock_exclusive(vmid, "config_lock_timeout").await?;
        tokio::time::sleep(task_sim.latency("config")).await;
        let mut world = task_sim.world();
        let outcome = fill(&mut world, &node, vmid, &set);
        match outcome {
            Ok(log) => Ok(log),
            Err(e) => {
                // Qemu.pm 1589-1597: the config file is removed, the new volumes freed.
                if let Some(vm) = world.vms.remove(&vmid) {
                    for (_, volid) in vm.referenced_volumes() {
                        world.free_volume(&volid);
                    }
                }
                Err(format!("unable to create VM {vmid} - {e}"))
            }
        }
    });
    Ok(Value::String(upid))
}

/// Disks allocated (or imported), defaults filled in, the lock released.
fn fill(world: &mut World, node: &str, vmid: u32, set: &BTreeMap<String, String>) -> Result<Vec<String>, String> {
    if let Some(vm) = world.vm_on_mut(node, vmid) {
        vm.lock = None;
    }
    let log = super::qemu::apply(world, node, vmid, set, &[], false)?;
    let vm = world.vm_on_mut(node, vmid).ok_or("the new config vanished")?;
    if !vm.config.contains_key("boot") {
        // get_default_bootdevices: the disks, then the first NIC.
        let mut devices: Vec<String> = vm.config.keys().filter(|k| is_disk_key(k)).cloned().collect();
        devices.extend(vm.config.keys().filter(|k| k.as_str() == "net0").cloned());
        vm.config.insert("boot".into(), format!("order={}", devices.join(";")));
    }
    vm.config.entry("smbios1".into()).or_insert_with(|| format!("uuid=00000000-0000-4000-8000-{vmid:012}"));
    vm.config.entry("vmgenid".into()).or_insert_with(|| format!("00000000-0000-4000-9000-{vmid:012}"));
    Ok(log)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_and_import_checks() {
        assert_eq!(with_mac("virtio,bridge=vmbr1", 9000, 0), "virtio=BC:24:11:23:28:00,bridge=vmbr1");
        assert_eq!(with_mac("virtio=AA:BB:CC:DD:EE:FF,bridge=vmbr1", 9000, 0), "virtio=AA:BB:CC:DD:EE:FF,bridge=vmbr1");
        let set = |v: &str| BTreeMap::from([("scsi0".to_string(), v.to_string())]);
        assert!(check_imports(&set("local-lvm:0,import-from=/img/a.raw"), "root@pam").is_ok());
        let token = check_imports(&set("local-lvm:0,import-from=/img/a.raw"), "root@pam!agentlab").unwrap_err();
        assert!(token.message.starts_with("Only root can pass arbitrary filesystem paths."), "{}", token.message);
        let syntax = check_imports(&set("local-lvm:8,import-from=/img/a.raw"), "root@pam").unwrap_err();
        assert_eq!(syntax.status, 400);
    }
}
