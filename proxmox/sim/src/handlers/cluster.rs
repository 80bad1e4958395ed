//! `/version`, `/nodes`, `/cluster/nextid`, `/cluster/resources`.

use super::{Answer, Sim};
use crate::engine::SimError;
use crate::http::Req;
use crate::world::PowerState;
use serde_json::{Value, json};
use std::sync::Arc;

pub fn version() -> Answer {
    Ok(json!({"version": "9.1.4", "release": "9.1", "repoid": "5a2e7bd3c1f8e9a0"}))
}

/// `GET /access/permissions` (pve-access-control `src/PVE/API2/AccessControl.pm` 509-574):
/// one's own, or an owned token's; anyone else's needs `Sys.Audit` on `/access`.
pub fn permissions(sim: &Arc<Sim>, req: &Req) -> Answer {
    let caller = req.user.as_str();
    let target = req.params.first("userid").unwrap_or(caller);
    let owned = target.split_once('!').is_some_and(|(user, _)| user == caller);
    let own = crate::permissions::privileges_of(&sim.config.token_privileges, caller);
    if target != caller && !owned && own.is_some_and(|p| !p.contains("Sys.Audit")) {
        return Err(SimError::status(403, "Permission check failed (/access, Sys.Audit)"));
    }
    let privs = crate::permissions::privileges_of(&sim.config.token_privileges, target);
    Ok(crate::permissions::effective(privs, req.params.first("path")))
}

pub fn nodes(sim: &Arc<Sim>) -> Answer {
    let world = sim.world();
    let nodes: Vec<Value> = world
        .nodes
        .iter()
        .map(|n| {
            let used: u64 = world
                .vms
                .values()
                .filter(|vm| vm.node == n.name && vm.power != PowerState::Stopped)
                .map(|vm| vm.memory_bytes())
                .sum();
            json!({
                "node": n.name, "status": "online", "cpu": 0.03, "maxcpu": n.maxcpu, "mem": used, "maxmem": n.maxmem,
                "disk": 5_368_709_120u64, "maxdisk": 101_203_873_792u64, "uptime": sim.started.elapsed().as_secs(),
                "level": "", "ssl_fingerprint": sim.fingerprint, "id": format!("node/{}", n.name), "type": "node",
            })
        })
        .collect();
    Ok(Value::Array(nodes))
}

/// A check, not a reservation: two callers can get the same id.
pub fn nextid(sim: &Arc<Sim>, req: &Req) -> Answer {
    let world = sim.world();
    if let Some(wanted) = req.get("vmid") {
        let vmid: u32 = wanted.parse().unwrap_or(0);
        if world.vmid_taken(vmid) {
            return Err(SimError::param("vmid", format!("VM {vmid} already exists")));
        }
        return Ok(Value::String(vmid.to_string()));
    }
    (100u32..1_000_000)
        .find(|id| !world.vmid_taken(*id))
        .map(|id| Value::String(id.to_string()))
        .ok_or_else(|| SimError::die("unable to get any free VMID in range [100, 1000000]"))
}

/// Lags like pvestatd: a VM younger than `resources_lag` shows `status: unknown`, no name.
pub fn resources(sim: &Arc<Sim>, req: &Req) -> Answer {
    let kind = req.get("type");
    let world = sim.world();
    let mut out = Vec::new();
    if kind.is_none() || kind == Some("vm") {
        for vm in world.vms.values() {
            let mut item = json!({"id": format!("qemu/{}", vm.vmid), "type": "qemu", "vmid": vm.vmid, "node": vm.node});
            let fresh =
                vm.created_ms > 0 && vm.created_ms + sim.latency("resources_lag").as_millis() as u64 > sim.now_ms();
            if fresh {
                item["status"] = "unknown".into();
            } else {
                item["name"] = vm.name().into();
                item["status"] = if vm.power == PowerState::Stopped { "stopped" } else { "running" }.into();
                item["maxmem"] = vm.memory_bytes().into();
                item["maxcpu"] = vm.cores().into();
                if vm.template {
                    item["template"] = 1.into();
                }
            }
            if let Some(lock) = &vm.lock {
                item["lock"] = lock.clone().into();
            }
            if let Some(tags) = vm.config.get("tags") {
                item["tags"] = tags.clone().into();
            }
            out.push(item);
        }
        // `type=vm` means every guest: pve-manager API2/Cluster.pm resources lists qemu and
        // lxc entries under it, told apart only by their own `type`.
        for ct in world.containers.values() {
            let status = if ct.running { "running" } else { "stopped" };
            let mut item = json!({"id": format!("lxc/{}", ct.vmid), "type": "lxc", "vmid": ct.vmid, "node": ct.node, "name": ct.name, "status": status});
            if let Some(tags) = &ct.tags {
                item["tags"] = tags.clone().into();
            }
            out.push(item);
        }
    }
    if kind.is_none() || kind == Some("node") {
        for n in &world.nodes {
            out.push(json!({"id": format!("node/{}", n.name), "type": "node", "node": n.name, "status": "online", "maxmem": n.maxmem, "maxcpu": n.maxcpu}));
        }
    }
    if kind.is_none() || kind == Some("storage") {
        for n in &world.nodes {
            for s in world.storages.values() {
                out.push(json!({"id": format!("storage/{}/{}", n.name, s.id), "type": "storage", "node": n.name, "storage": s.id, "status": "available", "plugintype": s.kind.as_str()}));
            }
        }
    }
    Ok(Value::Array(out))
}
