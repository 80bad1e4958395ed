//! The guest agent: answers only when the config enables it, the VM runs, and the guest
//! has booted far enough (`agent_ready` after start).

use super::{Answer, Sim, with_vm};
use crate::engine::SimError;
use crate::http::Req;
use crate::world::{PowerState, Vm};
use serde_json::{Value, json};
use std::sync::Arc;
use tokio::time::Instant;

/// qemu-server `src/PVE/QemuServer/Agent.pm` assert_agent_available (109-113): no `agent`
/// key is "not configured"; `agent: 0`, or an image without the agent, "not running".
fn ready(vm: &Vm) -> Result<(), SimError> {
    let agent = vm.config.get("agent").ok_or_else(|| SimError::die("No QEMU guest agent configured"))?;
    if vm.power == PowerState::Stopped {
        return Err(SimError::die(format!("VM {} is not running", vm.vmid)));
    }
    let enabled = agent.starts_with('1') || agent.contains("enabled=1");
    let booted = vm.agent_ready_at.is_some_and(|t| Instant::now() >= t);
    if !enabled || !booted || !vm.image_has_agent || vm.power == PowerState::Paused {
        return Err(SimError::die("QEMU guest agent is not running"));
    }
    Ok(())
}

/// Under the QEMU runtime: the VM's real qemu-guest-agent answers (`None` otherwise).
/// Proxmox's checks come first; the answer is wrapped as `{"result": …}` like Proxmox does.
async fn real(sim: &Arc<Sim>, req: &Req, command: &str) -> Option<Answer> {
    sim.config.qemu.as_ref()?;
    let checked = with_vm(sim, req, |vm| {
        let agent = vm.config.get("agent").ok_or_else(|| SimError::die("No QEMU guest agent configured"))?;
        if vm.power == PowerState::Stopped {
            return Err(SimError::die(format!("VM {} is not running", vm.vmid)));
        }
        if !(agent.starts_with('1') || agent.contains("enabled=1")) || vm.power == PowerState::Paused {
            return Err(SimError::die("QEMU guest agent is not running"));
        }
        Ok(Value::Null)
    });
    if let Err(e) = checked {
        return Some(Err(e));
    }
    Some(match crate::qemu::agent(sim, req.vmid(), command, None).await {
        Ok(result) => Ok(json!({"result": result})),
        Err(e) => Err(SimError::die(e)),
    })
}

pub fn index(sim: &Arc<Sim>, req: &Req) -> Answer {
    with_vm(sim, req, |_| Ok(json!([{"name": "ping"}, {"name": "network-get-interfaces"}, {"name": "info"}])))
}

pub async fn ping(sim: &Arc<Sim>, req: &Req) -> Answer {
    if let Some(answer) = real(sim, req, "guest-ping").await {
        return answer;
    }
    with_vm(sim, req, |vm| ready(vm).map(|_| json!({"result": {}})))
}

pub async fn command(sim: &Arc<Sim>, req: &Req) -> Answer {
    match req.get("command") {
        Some("ping") => ping(sim, req).await,
        Some("network-get-interfaces") => interfaces(sim, req).await,
        Some("info") => info(sim, req).await,
        Some("get-host-name") => host_name(sim, req).await,
        Some("get-osinfo") => osinfo(sim, req).await,
        _ => with_vm(sim, req, |vm| ready(vm).and(Err(SimError::die("Agent error: command not simulated by pve-sim")))),
    }
}

pub async fn interfaces(sim: &Arc<Sim>, req: &Req) -> Answer {
    if let Some(answer) = real(sim, req, "guest-network-get-interfaces").await {
        return answer;
    }
    with_vm(sim, req, |vm| {
        ready(vm)?;
        let mac = vm
            .config
            .get("net0")
            .and_then(|n| n.split(',').next())
            .and_then(|p| p.split_once('='))
            .map_or("bc:24:11:00:00:01".to_string(), |(_, m)| m.to_lowercase());
        let mut eth0 = json!({"name": "eth0", "hardware-address": mac, "ip-addresses": [{"ip-address": "fe80::be24:11ff:fe00:1", "ip-address-type": "ipv6", "prefix": 64}]});
        if let Some(ip) = &vm.guest_ip
            && let Some(list) = eth0["ip-addresses"].as_array_mut()
        {
            list.insert(0, json!({"ip-address": ip, "ip-address-type": "ipv4", "prefix": 16}));
        }
        Ok(json!({"result": [
            {"name": "lo", "hardware-address": "00:00:00:00:00:00", "ip-addresses": [{"ip-address": "127.0.0.1", "ip-address-type": "ipv4", "prefix": 8}, {"ip-address": "::1", "ip-address-type": "ipv6", "prefix": 128}]},
            eth0,
        ]}))
    })
}

pub async fn info(sim: &Arc<Sim>, req: &Req) -> Answer {
    if let Some(answer) = real(sim, req, "guest-info").await {
        return answer;
    }
    with_vm(sim, req, |vm| ready(vm).map(|_| json!({"result": {"version": "8.1.3", "supported_commands": []}})))
}

pub async fn host_name(sim: &Arc<Sim>, req: &Req) -> Answer {
    if let Some(answer) = real(sim, req, "guest-get-host-name").await {
        return answer;
    }
    with_vm(sim, req, |vm| ready(vm).map(|_| json!({"result": {"host-name": vm.name()}})))
}

pub async fn osinfo(sim: &Arc<Sim>, req: &Req) -> Answer {
    if let Some(answer) = real(sim, req, "guest-get-osinfo").await {
        return answer;
    }
    with_vm(sim, req, |vm| {
        ready(vm).map(|_| json!({"result": {"id": "debian", "name": "Debian GNU/Linux", "version-id": "12"}}))
    })
}

pub async fn shutdown(sim: &Arc<Sim>, req: &Req) -> Answer {
    let node = req.node().to_string();
    let vmid = req.vmid();
    if sim.config.qemu.is_some() {
        // The agent does not answer guest-shutdown; the VM powers off and QEMU exits.
        return match real(sim, req, "guest-shutdown").await {
            Some(Err(e)) if !e.message.contains("not running") => Err(e),
            _ => Ok(Value::Null),
        };
    }
    with_vm(sim, req, ready)?;
    sim.stop_guest(vmid);
    let mut world = sim.world();
    if let Some(vm) = world.vm_on_mut(&node, vmid) {
        super::lifecycle::power_off(vm);
    }
    Ok(Value::Null)
}

/// exec and file access need a guest; pve-sim says so instead of faking output.
pub fn not_simulated(sim: &Arc<Sim>, req: &Req) -> Answer {
    with_vm(sim, req, |vm| {
        ready(vm).and(Err(SimError::die("Agent error: guest exec and file access are not simulated by pve-sim")))
    })
}
