//! The Proxmox side of a workspace: its holder VM and volume, and the volume's place in a
//! sandbox's config. Every step reads Proxmox first and does only what is missing, so a
//! step cut short by a crash is finished by running it again.

use super::{HOLDER_TAG, SLOT, WorkspaceContext};
use crate::model::{ErrorCode, Refusal};
use crate::store::WorkspaceRecord;
use agentlab_proxmox::PveError;
use agentlab_proxmox::types::{ConfigChange, DestroyOptions, VmConfig};
use std::collections::BTreeMap;

fn pve_refusal(what: &str) -> impl FnOnce(PveError) -> Refusal + '_ {
    move |e| Refusal::new(ErrorCode::ProxmoxUnavailable, format!("{what}: {e}"))
}

pub async fn first_online_node(ctx: &WorkspaceContext) -> Result<String, Refusal> {
    let nodes = ctx.gateway.nodes().await.map_err(pve_refusal("cannot list the Proxmox nodes"))?;
    nodes.into_iter().find(|n| n.status == "online").map(|n| n.node).ok_or_else(|| {
        Refusal::new(ErrorCode::ProxmoxUnavailable, "no Proxmox node is online; `agentlab status` shows the nodes")
    })
}

/// The config of `vmid`, or `None` when the VM does not exist. A config still locked by
/// the create or clone that makes it (one started before a restart) is waited for: until
/// that task ends it has no tags yet.
pub(super) async fn config_of(ctx: &WorkspaceContext, node: &str, vmid: u32) -> Result<Option<VmConfig>, Refusal> {
    for _ in 0..CREATE_LOCK_POLLS {
        match ctx.gateway.vm_config(node, vmid).await {
            Ok(config) if matches!(config.get("lock"), Some("create" | "clone")) => {
                tokio::time::sleep(CREATE_LOCK_POLL).await;
            }
            Ok(config) => return Ok(Some(config)),
            Err(PveError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(pve_refusal("cannot read a VM's config")(e)),
        }
    }
    Err(Refusal::new(
        ErrorCode::ProxmoxUnavailable,
        format!("VM {vmid} is still locked by its create or clone task; try again once it ends"),
    ))
}

/// How long a config locked `create`/`clone` is waited for (a large full clone takes minutes).
const CREATE_LOCK_POLLS: u32 = 1800;
const CREATE_LOCK_POLL: std::time::Duration = std::time::Duration::from_millis(200);

/// The keys of `config` whose value is the volume `volid` (a disk or an `unusedN`).
pub fn keys_of(config: &VmConfig, volid: &str) -> Vec<String> {
    config
        .values
        .iter()
        .filter(|(_, v)| v.split(',').next() == Some(volid))
        .map(|(k, _)| k.clone())
        .filter(|k| k != "vmstate")
        .collect()
}

pub(super) fn is_holder(config: &VmConfig) -> bool {
    config.tags().iter().any(|t| t.eq_ignore_ascii_case(HOLDER_TAG))
}

/// Makes sure the holder VM exists with the volume as its `scsi0`; returns the volume id.
pub async fn ensure_holder(ctx: &WorkspaceContext, rec: &WorkspaceRecord) -> Result<String, Refusal> {
    let vmid = rec.holder_vmid;
    let config = match config_of(ctx, &rec.node, vmid).await? {
        Some(config) => config,
        None if rec.fork_of.is_some() => {
            clone_holder(ctx, rec).await?;
            config_of(ctx, &rec.node, vmid).await?.ok_or_else(|| {
                Refusal::new(ErrorCode::ProxmoxUnavailable, format!("holder VM {vmid} vanished after its clone"))
            })?
        }
        None => {
            let description = description(rec);
            let config = BTreeMap::from([
                ("name".to_string(), format!("agentlab-ws-{}", rec.name)),
                ("tags".to_string(), format!("{};{HOLDER_TAG}", crate::sandbox::OWNER_TAG)),
                ("protection".to_string(), "1".to_string()),
                ("onboot".to_string(), "0".to_string()),
                ("memory".to_string(), "64".to_string()),
                ("description".to_string(), description),
                ("scsi0".to_string(), format!("{}:{}", rec.storage, rec.size_gb)),
            ]);
            ctx.gateway.create_vm(&rec.node, vmid, config).await.map_err(|e| {
                Refusal::new(
                    ErrorCode::ProxmoxUnavailable,
                    format!(
                        "cannot create holder VM {vmid} with a {} GiB volume on storage `{}` of node `{}`: {e}",
                        rec.size_gb, rec.storage, rec.node
                    ),
                )
            })?;
            config_of(ctx, &rec.node, vmid).await?.ok_or_else(|| {
                Refusal::new(ErrorCode::ProxmoxUnavailable, format!("holder VM {vmid} vanished after its creation"))
            })?
        }
    };
    if !is_holder(&config) {
        return Err(Refusal::new(
            ErrorCode::Conflict,
            format!("VMID {vmid} is a VM that is not a workspace holder (no `{HOLDER_TAG}` tag); it is left alone"),
        ));
    }
    let volid = config.get("scsi0").and_then(|v| v.split(',').next()).filter(|v| v.contains(':'));
    volid.map(str::to_string).ok_or_else(|| {
        Refusal::new(
            ErrorCode::Conflict,
            format!("holder VM {vmid} has no volume in scsi0; `agentlab workspace check` says more"),
        )
    })
}

fn description(rec: &WorkspaceRecord) -> String {
    format!(
        "AgentLab workspace `{}` ({}): this VM only holds the workspace's volume and is never started. Remove it with `agentlab workspace destroy {}`.",
        rec.name, rec.id, rec.name
    )
}

/// A fork's holder: a full clone of the source's holder (as it is, or as it was in the
/// snapshot), so the volume is copied by Proxmox and owned by the new holder. The clone
/// keeps the source's tags and protection.
async fn clone_holder(ctx: &WorkspaceContext, rec: &WorkspaceRecord) -> Result<(), Refusal> {
    let fork_of = rec.fork_of.as_deref().unwrap_or_default();
    let (source_id, snapshot) = match fork_of.split_once('@') {
        Some((id, snap)) => (id, Some(snap.to_string())),
        None => (fork_of, None),
    };
    let source = super::find(&ctx.store, source_id)?;
    let spec = agentlab_proxmox::types::CloneSpec {
        newid: rec.holder_vmid,
        name: Some(format!("agentlab-ws-{}", rec.name)),
        description: Some(description(rec)),
        full: Some(true),
        snapname: snapshot,
        ..Default::default()
    };
    ctx.gateway.clone_vm(&source.node, source.holder_vmid, spec).await.map_err(|e| {
        Refusal::new(
            ErrorCode::ProxmoxUnavailable,
            format!("cannot clone holder VM {} of workspace `{}`: {e}", source.holder_vmid, source.name),
        )
    })?;
    Ok(())
}

/// The holder's snapshots (the `current` pseudo entry left out).
pub async fn snapshots(
    ctx: &WorkspaceContext,
    rec: &WorkspaceRecord,
) -> Result<Vec<agentlab_proxmox::types::Snapshot>, Refusal> {
    let list =
        ctx.gateway.snapshots(&rec.node, rec.holder_vmid).await.map_err(pve_refusal("cannot list the snapshots"))?;
    Ok(list.into_iter().filter(|s| s.name != "current").collect())
}

pub async fn snapshot(ctx: &WorkspaceContext, rec: &WorkspaceRecord, name: &str) -> Result<(), Refusal> {
    if snapshots(ctx, rec).await?.iter().any(|s| s.name == name) {
        return Err(Refusal::new(
            ErrorCode::Conflict,
            format!("workspace `{}` already has a snapshot `{name}`", rec.name),
        ));
    }
    ctx.gateway
        .create_snapshot(&rec.node, rec.holder_vmid, name, Some("agentlab workspace snapshot"))
        .await
        .map_err(pve_refusal("cannot take the snapshot"))
}

pub async fn restore(ctx: &WorkspaceContext, rec: &WorkspaceRecord, name: &str) -> Result<(), Refusal> {
    if !snapshots(ctx, rec).await?.iter().any(|s| s.name == name) {
        return Err(Refusal::new(
            ErrorCode::InvalidValue,
            format!(
                "workspace `{}` has no snapshot `{name}`; `agentlab workspace snapshot list {}`",
                rec.name, rec.name
            ),
        ));
    }
    ctx.gateway.rollback(&rec.node, rec.holder_vmid, name).await.map_err(pve_refusal("cannot restore the snapshot"))
}

/// Makes sure sandbox `vmid` has the volume as its `scsi1` (a leftover `unusedN` of it, as a
/// rollback leaves, is dropped in the same change).
pub async fn ensure_attached(
    ctx: &WorkspaceContext,
    rec: &WorkspaceRecord,
    volid: &str,
    vmid: u32,
) -> Result<(), Refusal> {
    let config = config_of(ctx, &rec.node, vmid).await?.ok_or_else(|| {
        Refusal::new(
            ErrorCode::SandboxNotFound,
            format!("VM {vmid} does not exist on node `{}`, where workspace `{}` is", rec.node, rec.name),
        )
    })?;
    let keys = keys_of(&config, volid);
    if keys.iter().any(|k| k == SLOT) {
        return Ok(());
    }
    if let Some(other) = config.get(SLOT) {
        return Err(Refusal::new(
            ErrorCode::Conflict,
            format!("sandbox {vmid} already has a disk in {SLOT} ({other}); a workspace goes there"),
        ));
    }
    let mut change = ConfigChange::default().set(SLOT, volid.to_string());
    change.delete = keys.into_iter().filter(|k| k.starts_with("unused")).collect();
    ctx.gateway.update_config(&rec.node, vmid, change).await.map_err(pve_refusal("cannot attach the workspace"))
}

/// Makes sure sandbox `vmid` no longer names the volume. The volume is another VM's, so
/// Proxmox only drops the key (QemuServer.pm vmconfig_register_unused_drive,
/// try_deallocate_drive): nothing is freed.
pub async fn ensure_detached(
    ctx: &WorkspaceContext,
    rec: &WorkspaceRecord,
    volid: &str,
    vmid: u32,
) -> Result<(), Refusal> {
    let Some(config) = config_of(ctx, &rec.node, vmid).await? else { return Ok(()) };
    let keys = keys_of(&config, volid);
    if keys.is_empty() {
        return Ok(());
    }
    let change = ConfigChange { delete: keys, ..ConfigChange::default() };
    ctx.gateway.update_config(&rec.node, vmid, change).await.map_err(pve_refusal("cannot detach the workspace"))
}

/// Destroys the holder VM and with it the volume (its own): protection off, then destroy.
pub async fn destroy_holder(ctx: &WorkspaceContext, rec: &WorkspaceRecord) -> Result<(), Refusal> {
    let vmid = rec.holder_vmid;
    let Some(config) = config_of(ctx, &rec.node, vmid).await? else { return Ok(()) };
    if !is_holder(&config) {
        // Never destroy a VM that is not ours: the record goes, the VM stays.
        return Ok(());
    }
    if config.get("protection") == Some("1") {
        let change = ConfigChange::default().set("protection", "0");
        ctx.gateway.update_config(&rec.node, vmid, change).await.map_err(pve_refusal("cannot unprotect the holder"))?;
    }
    let options = DestroyOptions { purge: true, destroy_unreferenced_disks: true, skiplock: false };
    ctx.gateway.destroy_vm(&rec.node, vmid, options).await.map_err(pve_refusal("cannot destroy the holder VM"))?;
    Ok(())
}
