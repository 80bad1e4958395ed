//! Orphans and drift. An orphan is a VM of AgentLab's that no live record owns: tagged
//! `agentlab` (a record lost to a restored backup), or carrying the description marker a
//! clone gets before it is tagged (a clone interrupted before `configure` whose record was
//! lost). A VM with neither is never an orphan and never touched. Drift is a live record that disagrees with Proxmox;
//! each sandbox's actor fixes its own on its next probe, which reconcile asks for.

use super::{OWNER_TAG, SandboxContext, SandboxError, SandboxMsg};
use crate::model::EventKind;
use crate::model::{SandboxState, time_format};
use crate::store::{NewEvent, Stage};
use ractor::ActorRef;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use time::OffsetDateTime;

/// When each orphan was first seen (orphans are destroyed only after the grace period).
#[derive(Debug, Default)]
pub struct OrphanLedger {
    first_seen: Mutex<HashMap<u32, OffsetDateTime>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrphanReport {
    pub vmid: u32,
    pub node: String,
    pub name: Option<String>,
    pub first_seen: String,
    /// `kept` (dry run or within grace), `destroyed`, or `failed: <why>`.
    pub action: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftReport {
    pub vmid: u32,
    pub record_state: SandboxState,
    pub proxmox: String,
    /// What was done: `probe requested` (apply) or `none` (dry run).
    pub action: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReconcileReport {
    pub dry_run: bool,
    pub checked: usize,
    pub orphans: Vec<OrphanReport>,
    pub drift: Vec<DriftReport>,
}

/// Whether a VM no live record owns is AgentLab's: its tag says so, or (untagged) its
/// description carries the clone-time marker. Only untagged VMs AgentLab could have made —
/// a VMID of its range, or of one of its (destroyed) records — are read, so a large
/// cluster's other VMs cost no request.
async fn is_orphan_candidate(
    ctx: &SandboxContext,
    vm: &agentlab_proxmox::types::ClusterVm,
    known: &std::collections::HashSet<u32>,
) -> bool {
    let vmid = vm.vmid as u32;
    if agentlab_proxmox::types::split_tags(vm.tags.as_deref()).iter().any(|t| t.eq_ignore_ascii_case(OWNER_TAG)) {
        return true;
    }
    if !ctx.settings.vmid_range.contains(&vmid) && !known.contains(&vmid) {
        return false;
    }
    match ctx.gateway.vm_config(&vm.node, vmid).await {
        Ok(config) => super::is_ours(&config, vmid),
        Err(_) => false,
    }
}

pub async fn reconcile(
    ctx: &SandboxContext,
    ledger: &OrphanLedger,
    apply: bool,
    grace: Duration,
) -> Result<ReconcileReport, SandboxError> {
    let vms = ctx.gateway.cluster_vms().await.map_err(SandboxError::pve("cannot list the cluster's VMs"))?;
    let records = ctx.store.list_sandboxes(None)?;
    let live: HashMap<u32, SandboxState> =
        records.iter().filter(|r| !matches!(r.state, SandboxState::Destroyed)).map(|r| (r.vmid, r.state)).collect();
    let now = ctx.settings.clock.now();
    let mut report = ReconcileReport { dry_run: !apply, checked: vms.len(), orphans: Vec::new(), drift: Vec::new() };
    let known: std::collections::HashSet<u32> = records.iter().map(|r| r.vmid).collect();
    // A workspace's holder VM is tagged `agentlab` but is no sandbox: never an orphan.
    let holders: std::collections::HashSet<u32> =
        ctx.store.list_workspaces()?.into_iter().map(|w| w.holder_vmid).collect();
    for vm in &vms {
        let vmid = vm.vmid as u32;
        // Only VMs: a container tagged `agentlab` is not ours (we make none), and the VM
        // paths teardown uses would not find it.
        if vm.template || !vm.is_qemu() || live.contains_key(&vmid) || holders.contains(&vmid) {
            continue;
        }
        if !is_orphan_candidate(ctx, vm, &known).await {
            continue;
        }
        let first_seen = {
            let mut seen = crate::sync::lock(&ledger.first_seen);
            *seen.entry(vmid).or_insert(now)
        };
        let old_enough = now - first_seen >= time::Duration::try_from(grace).unwrap_or(time::Duration::ZERO);
        let action = if apply && old_enough {
            // Checked, stopped if running, then destroyed — as a sandbox's own teardown does.
            match super::teardown::destroy_vm(ctx, &vm.node, vmid).await {
                Ok(()) => {
                    let _ = ctx.store.append_event(&NewEvent::sandbox(
                        vmid,
                        EventKind::OrphanDestroyed,
                        Stage::Recovery,
                        format!("orphan VM {vmid} destroyed"),
                    ));
                    "destroyed".to_string()
                }
                Err(e) => format!("failed: {e}"),
            }
        } else {
            "kept".to_string()
        };
        report.orphans.push(OrphanReport {
            vmid,
            node: vm.node.clone(),
            name: vm.name.clone(),
            first_seen: time_format::format(first_seen),
            action,
        });
    }
    // Forget VMs that are no longer orphans, so a later orphan at the same VMID gets its
    // whole grace period.
    {
        let current: std::collections::HashSet<u32> =
            report.orphans.iter().filter(|o| o.action == "kept").map(|o| o.vmid).collect();
        let mut seen = crate::sync::lock(&ledger.first_seen);
        seen.retain(|vmid, _| current.contains(vmid));
    }
    let in_cluster: HashMap<u32, &agentlab_proxmox::types::ClusterVm> =
        vms.iter().filter(|v| v.is_qemu()).map(|v| (v.vmid as u32, v)).collect();
    for record in records.iter().filter(|r| {
        matches!(r.state, SandboxState::Ready | SandboxState::Running | SandboxState::Suspended | SandboxState::Stopped)
    }) {
        let proxmox = match in_cluster.get(&record.vmid) {
            None => "missing".to_string(),
            Some(vm) => vm.status.clone(),
        };
        let drifted = match proxmox.as_str() {
            "missing" => true,
            "stopped" => record.state != SandboxState::Stopped,
            "running" => record.state == SandboxState::Stopped,
            _ => false,
        };
        if !drifted {
            continue;
        }
        let action = if apply {
            match ActorRef::<SandboxMsg>::where_is(format!("{}:{}", super::KIND, record.vmid)) {
                Some(actor) if actor.send_message(SandboxMsg::Probe).is_ok() => "probe requested".to_string(),
                _ => "no live actor".to_string(),
            }
        } else {
            "none".to_string()
        };
        report.drift.push(DriftReport { vmid: record.vmid, record_state: record.state, proxmox, action });
    }
    Ok(report)
}
