//! One look at the whole cluster per probe interval instead of one probe per sandbox.
//!
//! `GET /cluster/resources?type=vm` lists every VM with its node and status in one call.
//! Each live sandbox's actor gets its VM's entry; only a sandbox whose entry disagrees with
//! its record (absent — vanished, moved, or not listed yet: the list lags up to 10 s —, on
//! another node, stopped or running against the record, or suspended, which the list cannot
//! tell from running) asks Proxmox about its VM itself. The guest address, which the list
//! does not carry, is re-read every `ADDRESS_EVERY` rounds per sandbox (staggered by VMID),
//! and for at most about `MAX_ADDRESS_CHECKS` sandboxes a round: 100 READY sandboxes cost
//! 42 probe requests a minute at a 30 s interval, not 400 (`actors/tests/probe_load.rs`),
//! and 10,000 stay near 120 a minute instead of 4,000 (which would be past the gateway's
//! 20 requests/s and starve every user request; `agentlab-bench scale`).
//!
//! The first round runs as soon as the actors are up: it is also their start-up check (one
//! cluster read for all of them, not one status call each).

use super::SandboxContext;
use super::msg::SandboxMsg;
use std::collections::HashMap;
use std::sync::Arc;

/// Rounds between two guest-address checks of one sandbox.
pub const ADDRESS_EVERY: u64 = 10;

/// About how many sandboxes have their address re-read per round (each costs a status and
/// an agent call): with many sandboxes each one's turn comes less often.
pub const MAX_ADDRESS_CHECKS: u64 = 30;

/// Rounds between two address checks of one sandbox, given how many sandboxes have one.
pub fn address_every(addressed: u64) -> u64 {
    ADDRESS_EVERY.max(addressed.div_ceil(MAX_ADDRESS_CHECKS))
}

/// A sandbox's VM as the cluster list shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub node: String,
    /// `running` in the list (a paused VM is listed `running` too).
    pub running: bool,
}

/// Runs until the task is aborted (the root stops it with the daemon).
pub async fn run(ctx: Arc<SandboxContext>) {
    let mut ticker = tokio::time::interval(ctx.settings.probe_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut round: u64 = 0;
    loop {
        // The first tick is at once: the actors' start-up check.
        ticker.tick().await;
        round += 1;
        // Proxmox unreachable: nothing is learned this round (the gateway's own probe says so).
        let Ok(vms) = ctx.gateway.cluster_vms().await else { continue };
        let seen: HashMap<u64, Seen> = vms
            .into_iter()
            .filter(|v| v.is_qemu())
            .map(|v| (v.vmid, Seen { node: v.node, running: v.status == "running" }))
            .collect();
        let Ok(records) = ctx.store.list_sandboxes(None) else { continue };
        let every = address_every(records.iter().filter(|r| r.state.has_guest_address()).count() as u64);
        for rec in records.into_iter().filter(|r| r.state.is_probed()) {
            if let Some(actor) = super::actor_of(rec.vmid) {
                let refresh_address = (round + u64::from(rec.vmid)).is_multiple_of(every);
                let entry = seen.get(&u64::from(rec.vmid)).cloned();
                let _ = actor.send_message(SandboxMsg::Census { seen: entry, refresh_address });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_checks_per_round_stay_bounded_however_many_sandboxes_there_are() {
        let table = [(0, 10), (1, 10), (100, 10), (300, 10), (301, 11), (1_000, 34), (10_000, 334)];
        for (sandboxes, every) in table {
            assert_eq!(address_every(sandboxes), every, "{sandboxes} sandboxes");
            // Per round: about sandboxes / every address reads, never much above the cap.
            assert!(sandboxes.div_ceil(every) <= MAX_ADDRESS_CHECKS.max(ADDRESS_EVERY), "{sandboxes}");
        }
    }
}
