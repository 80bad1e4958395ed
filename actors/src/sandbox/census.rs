//! One look at the whole cluster per probe interval instead of one probe per sandbox.
//!
//! `GET /cluster/resources?type=vm` lists every VM with its node and status in one call.
//! Each live sandbox's actor gets its VM's entry; only a sandbox whose entry disagrees with
//! its record (absent — vanished, moved, or not listed yet: the list lags up to 10 s —, on
//! another node, stopped or running against the record, or suspended, which the list cannot
//! tell from running) asks Proxmox about its VM itself. The guest address, which the list
//! does not carry, is re-read every `ADDRESS_EVERY` rounds per sandbox (staggered by VMID).
//! 100 READY sandboxes cost 42 probe requests a minute at a 30 s interval, not 400
//! (`actors/tests/probe_load.rs`).

use super::SandboxContext;
use super::msg::SandboxMsg;
use std::collections::HashMap;
use std::sync::Arc;

/// Rounds between two guest-address checks of one sandbox.
pub const ADDRESS_EVERY: u64 = 10;

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
    // The first tick is at once; actors check their VM when they start anyway.
    ticker.tick().await;
    let mut round: u64 = 0;
    loop {
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
        for rec in records.into_iter().filter(|r| r.state.is_probed()) {
            if let Some(actor) = super::actor_of(rec.vmid) {
                let refresh_address = (round + u64::from(rec.vmid)).is_multiple_of(ADDRESS_EVERY);
                let entry = seen.get(&u64::from(rec.vmid)).cloned();
                let _ = actor.send_message(SandboxMsg::Census { seen: entry, refresh_address });
            }
        }
    }
}
