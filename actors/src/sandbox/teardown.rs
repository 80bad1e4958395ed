//! Removing a sandbox's resources: its VM (only if it is AgentLab's), its snippet file and
//! its bootstrap tokens. Every part tolerates "already gone", so a teardown interrupted by
//! a crash simply runs again.

use super::error::SandboxError;
use super::{SandboxContext, is_ours, snippet};
use crate::model::EventKind;
use crate::store::{NewEvent, SandboxPatch, SandboxRecord, Stage};
use agentlab_proxmox::PveError;
use agentlab_proxmox::types::{DestroyOptions, VmAction};
use std::sync::Arc;

pub async fn teardown(ctx: Arc<SandboxContext>, rec: SandboxRecord) -> Result<(), SandboxError> {
    // The workspace goes first: its record must not name a VM that is gone (its volume is
    // its holder's, so the destroy would not free it either way). The guest is shut down
    // cleanly before: a disk unplugged from, or a VM killed with, a mounted /work loses what
    // the guest had not written out yet.
    if let Some(node) = &rec.node {
        stop_with_workspace(&ctx, node, rec.vmid).await?;
    }
    crate::workspace::detach_from_vm(&ctx.store, rec.vmid).await.map_err(SandboxError::Workspace)?;
    if let Some(node) = &rec.node {
        destroy_vm(&ctx, node, rec.vmid).await?;
    }
    remove_local(&ctx, &rec)
}

/// Stops a running VM that has a workspace attached: a clean shutdown (the guest unmounts
/// /work and its cache reaches the disk), a hard stop only if the shutdown fails.
pub(crate) async fn stop_with_workspace(ctx: &SandboxContext, node: &str, vmid: u32) -> Result<(), SandboxError> {
    if ctx.store.workspace_of_vm(vmid)?.is_none() {
        return Ok(());
    }
    match ctx.gateway.vm_status(node, vmid).await {
        Ok(status) if status.is_running() => {}
        Ok(_) | Err(PveError::NotFound(_)) => return Ok(()),
        Err(e) => return Err(SandboxError::pve("reading the VM's status")(e)),
    }
    if let Err(e) = ctx.gateway.vm_action(node, vmid, VmAction::Shutdown).await {
        tracing::warn!(vmid, "clean shutdown of a VM with a workspace failed ({e}); stopping it");
        match ctx.gateway.vm_action(node, vmid, VmAction::Stop).await {
            Ok(_) | Err(PveError::NotFound(_)) => {}
            Err(e) => return Err(SandboxError::pve("stopping the VM")(e)),
        }
    }
    Ok(())
}

/// Destroys the VM if it is ours: waits behind any operation already queued for this VMID
/// (a clone of an interrupted provisioning), and out of a clone still holding its lock.
pub(crate) async fn destroy_vm(ctx: &SandboxContext, node: &str, vmid: u32) -> Result<(), SandboxError> {
    ctx.gateway
        .run(crate::pve::OpSpec::change("teardown_barrier", vmid), |_, _| Box::pin(async { Ok(()) }))
        .await
        .map_err(SandboxError::pve("waiting for the VM's queued operations"))?;
    let config = match ctx.gateway.config_after_clone(node, vmid, ctx.settings.ip_poll_interval).await {
        Ok(config) => config,
        Err(PveError::NotFound(_)) => return Ok(()),
        Err(e) => return Err(SandboxError::pve("reading the VM's config")(e)),
    };
    let zombie = is_interrupted_destroy(&config);
    if zombie && !ctx.settings.proxmox_is_root {
        return Err(SandboxError::InterruptedDestroy { vmid, node: node.to_string() });
    }
    if !zombie && !is_ours(&config, vmid) {
        return Err(SandboxError::NotOurs { vmid });
    }
    match ctx.gateway.vm_status(node, vmid).await {
        Ok(status) if status.is_running() => match ctx.gateway.vm_action(node, vmid, VmAction::Stop).await {
            Ok(_) | Err(PveError::NotFound(_)) => {}
            Err(e) => return Err(SandboxError::pve("stopping the VM")(e)),
        },
        Ok(_) | Err(PveError::NotFound(_)) => {}
        Err(e) => return Err(SandboxError::pve("reading the VM's status")(e)),
    }
    let options = DestroyOptions { purge: true, destroy_unreferenced_disks: true, skiplock: zombie };
    match ctx.gateway.destroy_vm(node, vmid, options).await {
        Ok(task) => report_warnings(ctx, node, vmid, &task).await,
        Err(PveError::NotFound(_)) => Ok(()),
        Err(e) => Err(SandboxError::pve("destroying the VM")(e)),
    }
}

/// `WARNINGS: n` is a successful destroy, but its warnings say what it left behind (qemu-server
/// QemuServer.pm destroy_vm: "Could not remove disk '<volid>', check manually"): they become
/// an event, listed by `status` among recent failures.
async fn report_warnings(
    ctx: &SandboxContext,
    node: &str,
    vmid: u32,
    task: &agentlab_proxmox::types::TaskStatus,
) -> Result<(), SandboxError> {
    if !task.exitstatus.as_deref().is_some_and(|s| s.starts_with("WARNINGS")) || task.upid.is_empty() {
        return Ok(());
    }
    let log = ctx.gateway.task_log(node, &task.upid).await.unwrap_or_default();
    let warnings: Vec<String> = log.iter().filter_map(|l| l.strip_prefix("WARN: ")).map(str::to_string).collect();
    let text = if warnings.is_empty() {
        format!("VM {vmid} destroyed with warnings; see task {} on node {node}", task.upid)
    } else {
        format!("VM {vmid} destroyed with warnings (check for leftover volumes): {}", warnings.join("; "))
    };
    let event = NewEvent::sandbox(vmid, EventKind::DestroyWarnings, Stage::Lifecycle, text);
    ctx.store.append_event(&event)?;
    Ok(())
}

/// What an interrupted destroy leaves: the config replaced by `lock: destroyed` alone, no
/// tag, no description (qemu-server API2/Qemu.pm destroy_vm, 2863-2887). It is ours here
/// because only a teardown — of a VMID the store says is ours — looks at it; only
/// root@pam (`skiplock`) can remove it.
fn is_interrupted_destroy(config: &agentlab_proxmox::types::VmConfig) -> bool {
    let mut keys = config.values.keys().filter(|k| *k != "digest");
    config.get("lock") == Some("destroyed") && keys.all(|k| k == "lock")
}

/// The snippet file and the tokens; the record forgets the snippet once it is gone.
pub fn remove_local(ctx: &SandboxContext, rec: &SandboxRecord) -> Result<(), SandboxError> {
    if let Some(path) = &rec.snippet_path {
        snippet::remove(std::path::Path::new(path)).map_err(|source| SandboxError::File {
            what: "cannot remove snippet",
            path: path.clone(),
            source,
        })?;
        ctx.store.patch_sandbox(rec.vmid, &SandboxPatch { snippet_path: Some(None), ..Default::default() }, None)?;
    }
    Ok(ctx.store.delete_bootstrap_tokens(rec.vmid)?)
}
