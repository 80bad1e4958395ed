//! Workspaces: a volume that outlives sandboxes, one actor per workspace
//! (`workspace:<id>`).
//!
//! Proxmox frees every volume a VM owns when the VM is destroyed, and rolling a VM back
//! turns a disk attached after the snapshot into `unusedN` (F12). So a workspace's volume
//! is owned by a VM that is never a sandbox: its own holder VM, config-only, tagged
//! `agentlab` and `agentlab-workspace`, protected, never started, created with the volume
//! as its `scsi0`. Sandboxes get the volume by volume id as `scsi1`; destroying or
//! reverting one never frees it. One holder per workspace (not one per node) because
//! snapshots and forks of a workspace are snapshots and clones of its holder, and must not
//! touch another workspace's volume.

mod actor;
mod check;
mod holder;
mod rebind;

pub use actor::{WorkspaceActor, WorkspaceMsg};
pub use check::check;
pub use rebind::rebind;

use crate::model::{ErrorCode, Refusal};
use crate::protocol::{
    CreateWorkspaceRequest, ForkWorkspaceRequest, WorkspaceSnapshot, WorkspaceSnapshotsResponse, WorkspaceView,
};
use crate::pve::Gateway;
use crate::root::{EntityError, EntityFactory, SpawnFuture};
use crate::store::{Store, StoreError, WorkspaceRecord, WorkspaceState};
use ractor::{Actor, ActorCell, ActorRef};
use std::sync::Arc;

pub const KIND: &str = "workspace";
/// The tag that marks a holder VM (besides `agentlab`).
pub const HOLDER_TAG: &str = "agentlab-workspace";
/// The sandbox's disk slot for its workspace.
pub const SLOT: &str = "scsi1";
/// How long a caller waits for a workspace's actor (a create or destroy runs Proxmox tasks).
const CALL_TIMEOUT_MS: u64 = 300_000;

pub struct WorkspaceContext {
    pub store: Arc<Store>,
    pub gateway: Gateway,
    /// `workspace_storage`: where volumes go when a request names none.
    pub default_storage: String,
    /// `proxmox_node`, else the first online node.
    pub default_node: Option<String>,
    /// `vmid_min..=vmid_max`: holders take VMIDs from the sandboxes' range.
    pub vmid_range: std::ops::RangeInclusive<u32>,
    pub clock: crate::clock::Clock,
}

pub struct WorkspaceFactory {
    pub ctx: Arc<WorkspaceContext>,
}

impl EntityFactory for WorkspaceFactory {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn live_ids(&self) -> Result<Vec<String>, EntityError> {
        Ok(self.ctx.store.list_workspaces()?.into_iter().map(|w| w.id).collect())
    }

    fn spawn(&self, id: String, name: String, supervisor: ActorCell) -> SpawnFuture {
        let ctx = Arc::clone(&self.ctx);
        Box::pin(async move {
            let (actor, _) = Actor::spawn_linked(Some(name), WorkspaceActor { ctx }, id, supervisor).await?;
            Ok(actor.get_cell())
        })
    }

    fn give_up(&self, id: &str, reason: &str) -> Result<(), EntityError> {
        let Some(mut rec) = self.ctx.store.find_workspace(id)? else {
            return Err(EntityError::NoRecord { kind: KIND, id: id.to_string() });
        };
        rec.error = Some(reason.to_string());
        Ok(self.ctx.store.save_workspace(&rec, self.ctx.clock.now())?)
    }
}

/// Workspace and session names are DNS-label-like: they name VMs (the holder, the
/// session's sandboxes). `what` is the kind, for the message.
pub(crate) fn check_name(what: &str, name: &str) -> Result<(), Refusal> {
    let ok = (1..=40).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(Refusal::new(
            ErrorCode::InvalidValue,
            format!("{what} name `{name}` must be 1-40 lower-case letters, digits and inner dashes"),
        ))
    }
}

fn store_refusal(e: StoreError) -> Refusal {
    match e {
        StoreError::WorkspaceExists(_) => Refusal::new(ErrorCode::Conflict, e.to_string()),
        StoreError::NoFreeVmid => Refusal::new(ErrorCode::Conflict, e.to_string()),
        other => Refusal::new(ErrorCode::StoreFailed, other.to_string()),
    }
}

/// The record of `id_or_name`, or a `workspace/not_found` refusal.
pub fn find(store: &Store, id_or_name: &str) -> Result<WorkspaceRecord, Refusal> {
    store.find_workspace(id_or_name).map_err(store_refusal)?.ok_or_else(|| {
        Refusal::new(
            ErrorCode::WorkspaceNotFound,
            format!("no workspace `{id_or_name}`; `agentlab workspace list` shows them"),
        )
    })
}

async fn actor_for(id: &str) -> Result<ActorRef<WorkspaceMsg>, Refusal> {
    crate::root::ensure_actor::<WorkspaceMsg>(KIND, id)
        .await
        .map_err(|e| Refusal::new(ErrorCode::ActorUnavailable, e.to_string()))?
        .ok_or_else(|| Refusal::new(ErrorCode::ActorUnavailable, format!("workspace {id} has no actor")))
}

async fn ask<T: Send + 'static>(
    id: &str,
    msg: impl FnOnce(ractor::RpcReplyPort<Result<T, Refusal>>) -> WorkspaceMsg,
) -> Result<T, Refusal> {
    let actor = actor_for(id).await?;
    match ractor::call_t!(actor, msg, CALL_TIMEOUT_MS) {
        Ok(answer) => answer,
        Err(e) => Err(Refusal::new(ErrorCode::ActorUnavailable, format!("workspace {id}'s actor did not answer: {e}"))),
    }
}

/// Records the workspace, then its actor creates the holder VM with the volume.
pub async fn create(ctx: &WorkspaceContext, req: &CreateWorkspaceRequest) -> Result<WorkspaceView, Refusal> {
    let rec = record_new(ctx, req, None).await?;
    let rec = ask(&rec.id, WorkspaceMsg::Provision).await?;
    Ok(rec.view())
}

/// A new workspace's record (`creating`), with its holder VMID; a fork names its source.
async fn record_new(
    ctx: &WorkspaceContext,
    req: &CreateWorkspaceRequest,
    fork_of: Option<String>,
) -> Result<WorkspaceRecord, Refusal> {
    check_name("workspace", &req.name)?;
    if req.size_gb == 0 || req.size_gb > 65_536 {
        return Err(Refusal::new(ErrorCode::InvalidValue, "size_gb must be 1-65536 (GiB)"));
    }
    let storage = req.storage.clone().unwrap_or_else(|| ctx.default_storage.clone());
    let node = match req.node.clone().or_else(|| ctx.default_node.clone()) {
        Some(node) => node,
        None => holder::first_online_node(ctx).await?,
    };
    let cluster = ctx
        .gateway
        .cluster_vms()
        .await
        .map_err(|e| Refusal::new(ErrorCode::ProxmoxUnavailable, format!("cannot list the cluster's VMs: {e}")))?;
    let taken = cluster.iter().map(|v| v.vmid as u32).collect();
    let new = crate::store::NewWorkspace {
        id: format!(
            "workspace-{}",
            crate::tokens::random_hex(8)
                .map_err(|e| Refusal::new(ErrorCode::Internal, format!("no randomness for an id: {e}")))?
        ),
        name: req.name.clone(),
        node,
        storage,
        size_gb: req.size_gb,
        fork_of,
    };
    ctx.store.insert_workspace(&new, ctx.vmid_range.clone(), &taken, ctx.clock.now()).map_err(store_refusal)
}

/// Snapshots a detached workspace (a snapshot of its holder: its volume alone).
pub async fn snapshot(store: &Store, id_or_name: &str, name: &str) -> Result<(), Refusal> {
    let rec = find(store, id_or_name)?;
    ask(&rec.id, |reply| WorkspaceMsg::Snapshot(name.to_string(), reply)).await
}

/// Rolls a detached workspace back to a snapshot.
pub async fn restore(store: &Store, id_or_name: &str, name: &str) -> Result<(), Refusal> {
    let rec = find(store, id_or_name)?;
    ask(&rec.id, |reply| WorkspaceMsg::Restore(name.to_string(), reply)).await
}

pub async fn snapshots(ctx: &WorkspaceContext, id_or_name: &str) -> Result<WorkspaceSnapshotsResponse, Refusal> {
    let rec = find(&ctx.store, id_or_name)?;
    let list = holder::snapshots(ctx, &rec).await?;
    let snapshots = list.into_iter().map(|s| WorkspaceSnapshot { name: s.name, snaptime: s.snaptime }).collect();
    Ok(WorkspaceSnapshotsResponse { workspace: rec.name, snapshots })
}

/// A new workspace holding a copy of a detached one's volume.
pub async fn fork(store: &Store, id_or_name: &str, req: &ForkWorkspaceRequest) -> Result<WorkspaceView, Refusal> {
    let rec = find(store, id_or_name)?;
    Ok(ask(&rec.id, |reply| WorkspaceMsg::Fork(req.clone(), reply)).await?.view())
}

/// The workspace a new sandbox or job asks for, if it can have it now: ready and not
/// attached (the attach itself checks again, in the workspace's actor).
pub fn claimable(store: &Store, id_or_name: &str) -> Result<WorkspaceRecord, Refusal> {
    let rec = find(store, id_or_name)?;
    if rec.state != WorkspaceState::Ready {
        return Err(not_ready(&rec));
    }
    if let Some(vmid) = rec.attached_vmid {
        return Err(attached_refusal(&rec, vmid));
    }
    Ok(rec)
}

/// Attaches the workspace to sandbox `vmid` (its `scsi1`).
pub async fn attach(store: &Store, id_or_name: &str, vmid: u32) -> Result<WorkspaceView, Refusal> {
    let rec = find(store, id_or_name)?;
    Ok(ask(&rec.id, |reply| WorkspaceMsg::Attach(vmid, reply)).await?.view())
}

/// Detaches the workspace from whatever sandbox has it (a no-op when detached).
pub async fn detach(store: &Store, id_or_name: &str) -> Result<WorkspaceView, Refusal> {
    let rec = find(store, id_or_name)?;
    Ok(ask(&rec.id, |reply| WorkspaceMsg::Detach(None, reply)).await?.view())
}

/// Detaches the workspace attached to sandbox `vmid`, if any: every path that destroys or
/// reverts a sandbox calls this first.
pub async fn detach_from_vm(store: &Store, vmid: u32) -> Result<(), Refusal> {
    let Some(rec) = store.workspace_of_vm(vmid).map_err(store_refusal)? else { return Ok(()) };
    ask(&rec.id, |reply| WorkspaceMsg::Detach(Some(vmid), reply)).await.map(|_| ())
}

/// Removes the workspace: refused while attached; the holder VM (and with it the volume)
/// is destroyed, then the record.
pub async fn destroy(store: &Store, id_or_name: &str) -> Result<(), Refusal> {
    let rec = find(store, id_or_name)?;
    if let Some(vmid) = rec.attached_vmid {
        return Err(attached_refusal(&rec, vmid));
    }
    ask(&rec.id, WorkspaceMsg::Destroy).await
}

pub(crate) fn attached_refusal(rec: &WorkspaceRecord, vmid: u32) -> Refusal {
    Refusal::new(
        ErrorCode::WorkspaceAttached,
        format!(
            "workspace `{}` is attached to sandbox {vmid}; `agentlab workspace detach {}` (or destroying sandbox {vmid}) frees it",
            rec.name, rec.name
        ),
    )
}

pub(crate) fn not_ready(rec: &WorkspaceRecord) -> Refusal {
    let why = rec.error.as_deref().map(|e| format!(": {e}")).unwrap_or_default();
    Refusal::new(
        ErrorCode::InvalidState,
        format!("workspace `{}` is {}{why}", rec.name, WorkspaceState::as_str(rec.state)),
    )
}
