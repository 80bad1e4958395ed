//! Removing a sandbox's resources: its VM (only if tagged `agentlab` or carrying our
//! description marker), its snippet file and its bootstrap tokens. Every part tolerates
//! "already gone", so a teardown interrupted by a crash can simply run again.

use super::{OWNER_TAG, SandboxContext, description_marker, snippet};
use crate::store::{SandboxPatch, SandboxRecord};
use agentlab_proxmox::PveError;
use agentlab_proxmox::types::{DestroyOptions, VmAction};
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TeardownError {
    /// The VM at this VMID is not AgentLab's: nothing was touched.
    NotOurs(String),
    Failed(String),
}

impl std::fmt::Display for TeardownError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TeardownError::NotOurs(m) | TeardownError::Failed(m) => f.write_str(m),
        }
    }
}

pub async fn teardown(ctx: Arc<SandboxContext>, rec: SandboxRecord) -> Result<(), TeardownError> {
    if let Some(node) = &rec.node {
        destroy_vm(&ctx, node, rec.vmid).await?;
    }
    remove_local(&ctx, &rec).map_err(TeardownError::Failed)
}

/// Destroys the VM if it is ours: waits behind any operation already queued for this VMID
/// (a clone of an interrupted provisioning), and out of a clone still holding its lock.
pub(crate) async fn destroy_vm(ctx: &SandboxContext, node: &str, vmid: u32) -> Result<(), TeardownError> {
    let failed = |e: PveError| TeardownError::Failed(e.to_string());
    ctx.gateway
        .run(crate::pve::OpSpec::change("teardown_barrier", vmid), |_, _| Box::pin(async { Ok(()) }))
        .await
        .map_err(failed)?;
    let mut config = ctx.gateway.vm_config(node, vmid).await;
    for _ in 0..600 {
        match &config {
            Ok(c) if c.get("lock") == Some("clone") => {
                tokio::time::sleep(ctx.settings.ip_poll_interval).await;
                config = ctx.gateway.vm_config(node, vmid).await;
            }
            _ => break,
        }
    }
    let config = match config {
        Ok(config) => config,
        Err(PveError::NotFound(_)) => return Ok(()),
        Err(e) => return Err(failed(e)),
    };
    let ours = config.tags().iter().any(|t| t == OWNER_TAG)
        || config.get("description").is_some_and(|d| d.contains(&description_marker(vmid)));
    if !ours {
        return Err(TeardownError::NotOurs(format!(
            "VM {vmid} is not tagged `{OWNER_TAG}`: AgentLab never changes or destroys a VM it does not own; remove it by hand if it is yours"
        )));
    }
    match ctx.gateway.vm_status(node, vmid).await {
        Ok(status) if status.is_running() => match ctx.gateway.vm_action(node, vmid, VmAction::Stop).await {
            Ok(_) | Err(PveError::NotFound(_)) => {}
            Err(e) => return Err(failed(e)),
        },
        Ok(_) | Err(PveError::NotFound(_)) => {}
        Err(e) => return Err(failed(e)),
    }
    match ctx.gateway.destroy_vm(node, vmid, DestroyOptions { purge: true, destroy_unreferenced_disks: true }).await {
        Ok(_) | Err(PveError::NotFound(_)) => Ok(()),
        Err(e) => Err(failed(e)),
    }
}

/// The snippet file and the tokens; the record forgets the snippet once it is gone.
pub fn remove_local(ctx: &SandboxContext, rec: &SandboxRecord) -> Result<(), String> {
    if let Some(path) = &rec.snippet_path {
        snippet::remove(std::path::Path::new(path)).map_err(|e| format!("cannot remove snippet {path}: {e}"))?;
        ctx.store
            .patch_sandbox(rec.vmid, &SandboxPatch { snippet_path: Some(None), ..Default::default() }, None)
            .map_err(|e| e.to_string())?;
    }
    ctx.store.delete_bootstrap_tokens(rec.vmid).map_err(|e| e.to_string())
}
