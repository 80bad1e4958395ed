//! Operator operations on a sandbox: the Proxmox work each needs, run on a task, and the
//! transitions it leads to. The actor checks the admission table and records the intent
//! before calling `run`.

use super::SandboxContext;
use crate::model::{Operation, SandboxEvent, SandboxState};
use crate::store::SandboxRecord;
use agentlab_proxmox::PveError;
use agentlab_proxmox::types::{ConfigChange, VmAction};
use std::sync::Arc;

/// An operation with its arguments.
#[derive(Debug, Clone, PartialEq)]
pub enum SandboxOp {
    Start,
    Stop,
    Pause,
    Resume,
    /// Roll back to `clean`; restart afterwards when asked (default: if it was running).
    Revert {
        restart: Option<bool>,
    },
    SnapshotSave {
        name: String,
    },
    SnapshotRestore {
        name: String,
    },
    Update {
        cores: Option<u32>,
        memory_mb: Option<u32>,
        tags: Option<Vec<String>>,
    },
}

impl SandboxOp {
    pub fn operation(&self) -> Operation {
        match self {
            SandboxOp::Start => Operation::Start,
            SandboxOp::Stop => Operation::Stop,
            SandboxOp::Pause => Operation::Pause,
            SandboxOp::Resume => Operation::Resume,
            SandboxOp::Revert { .. } => Operation::Revert,
            SandboxOp::SnapshotSave { .. } | SandboxOp::SnapshotRestore { .. } => Operation::Snapshot,
            SandboxOp::Update { .. } => Operation::Update,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            SandboxOp::Start => "start",
            SandboxOp::Stop => "stop",
            SandboxOp::Pause => "pause",
            SandboxOp::Resume => "resume",
            SandboxOp::Revert { .. } => "revert",
            SandboxOp::SnapshotSave { .. } => "snapshot.save",
            SandboxOp::SnapshotRestore { .. } => "snapshot.restore",
            SandboxOp::Update { .. } => "update",
        }
    }
}

/// What the actor does once the Proxmox work is done.
#[derive(Debug, Clone, PartialEq)]
pub enum Then {
    /// Apply these transitions in order (skipping those the table refuses).
    Transitions(Vec<SandboxEvent>),
    /// Boot again (BOOTING, then the pipeline's boot and wait-for-address steps).
    Boot,
}

fn text(e: PveError) -> String {
    e.to_string()
}

/// The Proxmox side of an operation.
pub async fn run(ctx: Arc<SandboxContext>, rec: SandboxRecord, op: SandboxOp) -> Result<Then, String> {
    let node = rec.node.clone().ok_or("the sandbox has no node recorded")?;
    let vmid = rec.vmid;
    let gw = &ctx.gateway;
    // The VMID may have been reused by someone else since the last probe: never act on a
    // VM that is not AgentLab's.
    let config = gw.vm_config(&node, vmid).await.map_err(text)?;
    let ours = config.tags().iter().any(|t| t == super::OWNER_TAG)
        || config.get("description").is_some_and(|d| d.contains(&super::description_marker(vmid)));
    if !ours {
        return Err(format!("VM {vmid} is no longer AgentLab's (no `agentlab` tag): nothing was changed"));
    }
    match op {
        SandboxOp::Start => Ok(Then::Boot),
        SandboxOp::Stop => {
            match gw.vm_action(&node, vmid, VmAction::Stop).await {
                Ok(_) | Err(PveError::NotFound(_)) => {}
                Err(e) => return Err(text(e)),
            }
            Ok(Then::Transitions(vec![SandboxEvent::Stop]))
        }
        SandboxOp::Pause => {
            gw.vm_action(&node, vmid, VmAction::Suspend).await.map_err(text)?;
            Ok(Then::Transitions(vec![SandboxEvent::Suspend]))
        }
        SandboxOp::Resume => {
            gw.vm_action(&node, vmid, VmAction::Resume).await.map_err(text)?;
            let event = if rec.job_id.is_some() { SandboxEvent::JobStarted } else { SandboxEvent::Resume };
            Ok(Then::Transitions(vec![event]))
        }
        SandboxOp::Revert { restart } => {
            let was_running =
                matches!(rec.state, SandboxState::Ready | SandboxState::Running | SandboxState::Suspended);
            match gw.vm_status(&node, vmid).await {
                Ok(status) if status.is_running() => {
                    gw.vm_action(&node, vmid, VmAction::Stop).await.map_err(text)?;
                }
                Ok(_) => {}
                Err(e) => return Err(text(e)),
            }
            // Waited on before anything starts the VM again (the Go version raced here: D4).
            let name = "clean".to_string();
            gw.run(crate::pve::OpSpec::task("rollback", vmid), move |pve, _| {
                let (node, name) = (node.clone(), name.clone());
                Box::pin(async move { pve.rollback_snapshot(&node, vmid, &name).await.map(|_| ()) })
            })
            .await
            .map_err(text)?;
            if restart.unwrap_or(was_running) {
                Ok(Then::Boot)
            } else {
                Ok(Then::Transitions(vec![SandboxEvent::Stop]))
            }
        }
        SandboxOp::SnapshotSave { name } => {
            gw.run(crate::pve::OpSpec::task("snapshot", vmid), move |pve, _| {
                let (node, name) = (node.clone(), name.clone());
                Box::pin(async move { pve.create_snapshot(&node, vmid, &name, None).await.map(|_| ()) })
            })
            .await
            .map_err(text)?;
            Ok(Then::Transitions(Vec::new()))
        }
        SandboxOp::SnapshotRestore { name } => {
            gw.run(crate::pve::OpSpec::task("rollback", vmid), move |pve, _| {
                let (node, name) = (node.clone(), name.clone());
                Box::pin(async move { pve.rollback_snapshot(&node, vmid, &name).await.map(|_| ()) })
            })
            .await
            .map_err(text)?;
            Ok(Then::Transitions(Vec::new()))
        }
        SandboxOp::Update { cores, memory_mb, tags } => {
            let mut change = ConfigChange::default();
            if let Some(c) = cores {
                change = change.set("cores", c.to_string());
            }
            if let Some(m) = memory_mb {
                change = change.set("memory", m.to_string());
            }
            if let Some(tags) = &tags {
                let mut all = vec![super::OWNER_TAG.to_string()];
                all.extend(tags.iter().filter(|t| *t != super::OWNER_TAG).cloned());
                change = change.set("tags", all.join(";"));
            }
            gw.update_config(&node, vmid, change).await.map_err(text)?;
            let patch = crate::store::SandboxPatch { cores, memory_mb, tags, ..Default::default() };
            ctx.store.patch_sandbox(vmid, &patch, None).map_err(|e| e.to_string())?;
            Ok(Then::Transitions(Vec::new()))
        }
    }
}
