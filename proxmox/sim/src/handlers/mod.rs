//! Endpoint handlers: Proxmox's behaviour per operation, with its exact texts
//! (`proxmox/contract/behaviors.md` §5). `dispatch` maps every endpoint of the contract.

mod agent;
mod clone;
mod cluster;
mod create;
mod disks;
mod firewall;
mod ipset;
mod lifecycle;
mod qemu;
mod snapshots;
mod storage;
mod tasks;

use super::engine::{Sim, SimError};
use super::http::Req;
use super::world::{PowerState, Vm};
use serde_json::Value;
use std::sync::Arc;

pub type Answer = Result<Value, SimError>;

pub async fn dispatch(sim: &Arc<Sim>, req: &Req) -> Answer {
    match req.endpoint.as_str() {
        "GET /version" => cluster::version(),
        "GET /access/permissions" => cluster::permissions(sim, req),
        "GET /nodes" => cluster::nodes(sim),
        "GET /cluster/nextid" => cluster::nextid(sim, req),
        "GET /cluster/resources" => cluster::resources(sim, req),
        "GET /cluster/tasks" => tasks::cluster_tasks(sim),
        "GET /storage" => storage::cluster_storages(sim, req),
        "GET /storage/{storage}" => storage::cluster_storage(sim, req),
        "GET /nodes/{node}/qemu" => qemu::list(sim, req),
        "POST /nodes/{node}/qemu" => create::create(sim, req),
        "GET /nodes/{node}/qemu/{vmid}" => qemu::index(),
        "DELETE /nodes/{node}/qemu/{vmid}" => lifecycle::destroy(sim, req),
        "POST /nodes/{node}/qemu/{vmid}/clone" => clone::clone(sim, req),
        "GET /nodes/{node}/qemu/{vmid}/config" => qemu::get_config(sim, req),
        "POST /nodes/{node}/qemu/{vmid}/config" => qemu::update_config(sim, req, true).await,
        "PUT /nodes/{node}/qemu/{vmid}/config" => qemu::update_config(sim, req, false).await,
        "GET /nodes/{node}/qemu/{vmid}/pending" => qemu::pending(sim, req),
        "PUT /nodes/{node}/qemu/{vmid}/resize" => disks::resize(sim, req),
        "PUT /nodes/{node}/qemu/{vmid}/unlink" => disks::unlink(sim, req).await,
        "POST /nodes/{node}/qemu/{vmid}/move_disk" => disks::move_disk(sim, req),
        "POST /nodes/{node}/qemu/{vmid}/template" => lifecycle::template(sim, req),
        "GET /nodes/{node}/qemu/{vmid}/status" => qemu::status_index(sim, req),
        "GET /nodes/{node}/qemu/{vmid}/status/current" => qemu::status_current(sim, req),
        "POST /nodes/{node}/qemu/{vmid}/status/start" => lifecycle::start(sim, req),
        "POST /nodes/{node}/qemu/{vmid}/status/stop" => lifecycle::stop(sim, req, false),
        "POST /nodes/{node}/qemu/{vmid}/status/shutdown" => lifecycle::stop(sim, req, true),
        "POST /nodes/{node}/qemu/{vmid}/status/reboot" => lifecycle::reboot(sim, req, "qmreboot"),
        "POST /nodes/{node}/qemu/{vmid}/status/reset" => lifecycle::reboot(sim, req, "qmreset"),
        "POST /nodes/{node}/qemu/{vmid}/status/suspend" => lifecycle::suspend(sim, req),
        "POST /nodes/{node}/qemu/{vmid}/status/resume" => lifecycle::resume(sim, req),
        "GET /nodes/{node}/qemu/{vmid}/snapshot" => snapshots::list(sim, req),
        "POST /nodes/{node}/qemu/{vmid}/snapshot" => snapshots::create(sim, req),
        "GET /nodes/{node}/qemu/{vmid}/snapshot/{snapname}" => snapshots::index(sim, req),
        "DELETE /nodes/{node}/qemu/{vmid}/snapshot/{snapname}" => snapshots::delete(sim, req),
        "GET /nodes/{node}/qemu/{vmid}/snapshot/{snapname}/config" => snapshots::get_config(sim, req),
        "PUT /nodes/{node}/qemu/{vmid}/snapshot/{snapname}/config" => snapshots::set_config(sim, req),
        "POST /nodes/{node}/qemu/{vmid}/snapshot/{snapname}/rollback" => snapshots::rollback(sim, req),
        "GET /nodes/{node}/qemu/{vmid}/agent" => agent::index(sim, req),
        "POST /nodes/{node}/qemu/{vmid}/agent" => agent::command(sim, req).await,
        "POST /nodes/{node}/qemu/{vmid}/agent/ping" => agent::ping(sim, req).await,
        "GET /nodes/{node}/qemu/{vmid}/agent/network-get-interfaces" => agent::interfaces(sim, req).await,
        "GET /nodes/{node}/qemu/{vmid}/agent/info" => agent::info(sim, req).await,
        "GET /nodes/{node}/qemu/{vmid}/agent/get-host-name" => agent::host_name(sim, req).await,
        "GET /nodes/{node}/qemu/{vmid}/agent/get-osinfo" => agent::osinfo(sim, req).await,
        "POST /nodes/{node}/qemu/{vmid}/agent/shutdown" => agent::shutdown(sim, req).await,
        "POST /nodes/{node}/qemu/{vmid}/agent/exec"
        | "GET /nodes/{node}/qemu/{vmid}/agent/exec-status"
        | "GET /nodes/{node}/qemu/{vmid}/agent/file-read"
        | "POST /nodes/{node}/qemu/{vmid}/agent/file-write" => agent::not_simulated(sim, req),
        "GET /nodes/{node}/tasks" => tasks::node_tasks(sim, req),
        "GET /nodes/{node}/tasks/{upid}" => tasks::index(sim, req),
        "DELETE /nodes/{node}/tasks/{upid}" => tasks::stop(sim, req),
        "GET /nodes/{node}/tasks/{upid}/status" => tasks::status(sim, req),
        "GET /nodes/{node}/tasks/{upid}/log" => tasks::log(sim, req),
        "GET /nodes/{node}/storage" => storage::node_storages(sim, req),
        "GET /nodes/{node}/storage/{storage}/status" => storage::status(sim, req),
        "GET /nodes/{node}/storage/{storage}/content" => storage::content(sim, req),
        "POST /nodes/{node}/storage/{storage}/content" => storage::alloc(sim, req),
        "GET /nodes/{node}/storage/{storage}/content/{volume}" => storage::volume_info(sim, req),
        "PUT /nodes/{node}/storage/{storage}/content/{volume}" => storage::volume_update(sim, req),
        "DELETE /nodes/{node}/storage/{storage}/content/{volume}" => storage::free(sim, req),
        "POST /nodes/{node}/storage/{storage}/upload" => storage::upload(),
        other => firewall::dispatch(sim, req, other).await,
    }
}

pub fn vm_missing(node: &str, vmid: u32) -> SimError {
    SimError::die(format!("Configuration file 'nodes/{node}/qemu-server/{vmid}.conf' does not exist"))
}

/// The VM on the request's node, or Proxmox's "does not exist".
pub fn with_vm<T>(sim: &Sim, req: &Req, f: impl FnOnce(&Vm) -> Result<T, SimError>) -> Result<T, SimError> {
    let world = sim.world();
    let vm = world.vm_on(req.node(), req.vmid()).ok_or_else(|| vm_missing(req.node(), req.vmid()))?;
    f(vm)
}

/// `VM is locked (<reason>)` — no VMID in the text.
pub fn check_lock(vm: &Vm) -> Result<(), String> {
    match &vm.lock {
        Some(reason) => Err(format!("VM is locked ({reason})")),
        None => Ok(()),
    }
}

/// `vmstatus` as status/current and the VM list show it.
pub fn vm_status(sim: &Sim, vm: &Vm) -> Value {
    let running = vm.power != PowerState::Stopped;
    let mut status = serde_json::json!({
        "vmid": vm.vmid,
        "name": vm.name(),
        "status": if running { "running" } else { "stopped" },
        "qmpstatus": match vm.power { PowerState::Stopped => "stopped", PowerState::Running => "running", PowerState::Paused => "paused" },
        "uptime": vm.started_at.map_or(0, |t| t.elapsed().as_secs()),
        "cpu": if running { 0.02 } else { 0.0 },
        "cpus": vm.cores(),
        "maxmem": vm.memory_bytes(),
        "mem": if running { vm.memory_bytes() / 4 } else { 0 },
        "maxdisk": 34_359_738_368u64,
        "disk": 0,
        "netin": 0,
        "netout": 0,
        "agent": if vm.config.get("agent").is_some_and(|a| a.starts_with('1') || a.contains("enabled=1")) { 1 } else { 0 },
        "ha": {"managed": 0},
    });
    if running {
        status["pid"] = vm.pid.into();
    }
    if let Some(lock) = &vm.lock {
        status["lock"] = lock.clone().into();
    }
    if let Some(tags) = vm.config.get("tags") {
        status["tags"] = tags.clone().into();
    }
    if vm.template {
        status["template"] = 1.into();
    }
    let _ = sim;
    status
}

/// Proxmox's tag normalisation (pve-guest-common `src/PVE/GuestHelpers.pm` get_unique_tags,
/// 349-378, default `tag-style`): split on `,`/`;`/space, lower-case, sort, dedupe, join `;`.
pub fn normalize_tags(text: &str) -> String {
    let mut tags: Vec<String> =
        text.split([',', ';', ' ']).filter(|t| !t.is_empty()).map(str::to_ascii_lowercase).collect();
    tags.sort();
    tags.dedup();
    tags.join(";")
}
