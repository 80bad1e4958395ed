//! Rolling a sandbox's VM back to a snapshot (revert to `clean`, `snapshot restore`).
//!
//! ZFS rolls a volume back only to its most recent snapshot (pve-storage
//! `src/PVE/Storage/ZFSPoolPlugin.pm` volume_rollback_is_possible, 588-614: "can't rollback,
//! '<snap>' is not most recent snapshot on '<volid>'"), so on ZFS a revert after any
//! `snapshot save` fails. Here it is refused up front, naming the newer snapshots, and with
//! `--force` they are deleted (newest first) before the rollback. LVM-thin, RBD and qcow2
//! have no such rule.

use super::SandboxContext;
use super::error::SandboxError;
use agentlab_proxmox::types::Snapshot;

/// What a rollback to a snapshot must delete first: nothing, or (ZFS, `force`) the newer
/// snapshots. Refused on ZFS with newer snapshots and no `force`. Decided before anything
/// is touched (a revert stops the VM only once this passed).
pub async fn plan(
    ctx: &SandboxContext,
    node: &str,
    vmid: u32,
    name: &str,
    force: bool,
) -> Result<Vec<String>, SandboxError> {
    let snapshots = ctx.gateway.snapshots(node, vmid).await.map_err(SandboxError::pve("listing snapshots"))?;
    let newer = newer_than(&snapshots, name);
    if newer.is_empty() {
        return Ok(Vec::new());
    }
    match zfs_storage(ctx, node, vmid).await? {
        None => Ok(Vec::new()),
        Some(_) if force => Ok(newer),
        Some(storage) => Err(SandboxError::NewerSnapshots { vmid, snapshot: name.to_string(), newer, storage }),
    }
}

/// Deletes `first` (newest first), then rolls back to `name`.
pub async fn apply(
    ctx: &SandboxContext,
    node: &str,
    vmid: u32,
    name: &str,
    first: &[String],
) -> Result<(), SandboxError> {
    for snapshot in first {
        ctx.gateway
            .delete_snapshot(node, vmid, snapshot)
            .await
            .map_err(SandboxError::pve("deleting a newer snapshot"))?;
    }
    // A workspace is detached first and attached again after: the snapshots are from before
    // it was attached, and a rollback must neither roll its content back nor leave it as
    // an `unusedN` of the sandbox.
    let workspace = ctx.store.workspace_of_vm(vmid)?;
    crate::workspace::detach_from_vm(&ctx.store, vmid).await.map_err(SandboxError::Workspace)?;
    ctx.gateway.rollback(node, vmid, name).await.map_err(SandboxError::pve("rolling back"))?;
    if let Some(workspace) = workspace {
        crate::workspace::attach(&ctx.store, &workspace.id, vmid).await.map_err(SandboxError::Workspace)?;
    }
    Ok(())
}

/// Snapshots taken after `name` (its descendants, or later by time), newest first.
fn newer_than(snapshots: &[Snapshot], name: &str) -> Vec<String> {
    let Some(target) = snapshots.iter().find(|s| s.name == name) else { return Vec::new() };
    let descends = |s: &Snapshot| {
        let mut parent = s.parent.as_deref();
        for _ in 0..snapshots.len() {
            match parent {
                Some(p) if p == name => return true,
                Some(p) => parent = snapshots.iter().find(|x| x.name == p).and_then(|x| x.parent.as_deref()),
                None => return false,
            }
        }
        false
    };
    let mut newer: Vec<&Snapshot> =
        snapshots.iter().filter(|s| s.name != name && (descends(s) || s.snaptime > target.snaptime)).collect();
    newer.sort_by(|a, b| b.snaptime.cmp(&a.snaptime).then_with(|| b.name.cmp(&a.name)));
    newer.into_iter().map(|s| s.name.clone()).collect()
}

/// The ZFS storage one of the VM's volumes is on, if any.
async fn zfs_storage(ctx: &SandboxContext, node: &str, vmid: u32) -> Result<Option<String>, SandboxError> {
    let config = ctx.gateway.vm_config(node, vmid).await.map_err(SandboxError::pve("reading the VM's config"))?;
    let storages = super::vm_volumes::volume_storages(&config, true);
    for storage in storages {
        let definition =
            ctx.gateway.storage_config(&storage).await.map_err(SandboxError::pve("reading a storage's definition"))?;
        if definition.kind == "zfspool" {
            return Ok(Some(storage));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(name: &str, parent: Option<&str>, time: u64) -> Snapshot {
        Snapshot { name: name.into(), description: None, parent: parent.map(str::to_string), snaptime: Some(time) }
    }

    #[test]
    fn newer_snapshots_are_the_descendants_and_later_ones_newest_first() {
        let list = [snap("clean", None, 10), snap("s1", Some("clean"), 20), snap("s2", Some("s1"), 20)];
        assert_eq!(newer_than(&list, "clean"), ["s2", "s1"]);
        assert_eq!(newer_than(&list, "s2"), Vec::<String>::new());
        assert_eq!(newer_than(&list, "missing"), Vec::<String>::new());
    }
}
