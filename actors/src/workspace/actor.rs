//! One actor per workspace (`workspace:<id>`): the only writer of its record and of the
//! volume's attachment, so two attaches of one workspace cannot race. Each change is
//! written as an intent before Proxmox is asked, and the actor's first act after a
//! (re)start is to finish whatever intent the record holds.

use super::{WorkspaceContext, holder};
use crate::model::{ErrorCode, Refusal, SandboxState};
use crate::store::{WorkspaceIntent, WorkspaceRecord, WorkspaceState};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use std::sync::Arc;

type Reply<T> = RpcReplyPort<Result<T, Refusal>>;

pub enum WorkspaceMsg {
    /// Finish what the record says is in progress.
    Converge,
    /// Create the holder VM and its volume (answers once the workspace is ready).
    Provision(Reply<WorkspaceRecord>),
    Attach(u32, Reply<WorkspaceRecord>),
    /// Detach from whichever sandbox has it, or only from this one.
    Detach(Option<u32>, Reply<WorkspaceRecord>),
    /// Destroy the holder (and the volume) and the record, then stop.
    Destroy(Reply<()>),
    /// Snapshot the detached volume (a snapshot of the holder).
    Snapshot(String, Reply<()>),
    /// Roll the detached volume back to a snapshot.
    Restore(String, Reply<()>),
    /// Record a fork of this (detached) workspace and have its actor clone the holder; this
    /// actor waits, so nothing attaches the source while it is copied.
    Fork(crate::protocol::ForkWorkspaceRequest, Reply<WorkspaceRecord>),
}

pub struct WorkspaceActor {
    pub ctx: Arc<WorkspaceContext>,
}

impl WorkspaceActor {
    fn load(&self, id: &str) -> Result<WorkspaceRecord, Refusal> {
        super::find(&self.ctx.store, id)
    }

    fn save(&self, rec: &WorkspaceRecord) -> Result<(), Refusal> {
        self.ctx.store.save_workspace(rec, self.ctx.clock.now()).map_err(super::store_refusal)
    }

    async fn provision(&self, id: &str) -> Result<WorkspaceRecord, Refusal> {
        let mut rec = self.load(id)?;
        if matches!(rec.state, WorkspaceState::Ready | WorkspaceState::Destroying) {
            return Ok(rec);
        }
        match holder::ensure_holder(&self.ctx, &rec).await {
            Ok(volid) => {
                rec.volid = Some(volid);
                rec.state = WorkspaceState::Ready;
                rec.error = None;
                self.save(&rec)?;
                Ok(rec)
            }
            Err(refusal) => {
                rec.state = WorkspaceState::Failed;
                rec.error = Some(refusal.message.clone());
                self.save(&rec)?;
                Err(refusal)
            }
        }
    }

    /// Finishes a recorded attach or detach.
    async fn finish_intent(&self, mut rec: WorkspaceRecord) -> Result<WorkspaceRecord, Refusal> {
        let (Some(intent), Some(volid)) = (rec.intent, rec.volid.clone()) else { return Ok(rec) };
        match intent {
            WorkspaceIntent::Attach(vmid) => {
                if let Err(refusal) = holder::ensure_attached(&self.ctx, &rec, &volid, vmid).await {
                    // Not attached after all: the intent is dropped so nothing waits on it.
                    rec.intent = None;
                    self.save(&rec)?;
                    return Err(refusal);
                }
                rec.attached_vmid = Some(vmid);
            }
            WorkspaceIntent::Detach(vmid) => {
                holder::ensure_detached(&self.ctx, &rec, &volid, vmid).await?;
                rec.attached_vmid = None;
            }
        }
        rec.intent = None;
        self.save(&rec)?;
        Ok(rec)
    }

    async fn attach(&self, id: &str, vmid: u32) -> Result<WorkspaceRecord, Refusal> {
        let mut rec = self.finish_intent(self.load(id)?).await?;
        if rec.state != WorkspaceState::Ready {
            return Err(super::not_ready(&rec));
        }
        match rec.attached_vmid {
            Some(current) if current == vmid => return Ok(rec),
            Some(current) => return Err(super::attached_refusal(&rec, current)),
            None => {}
        }
        let sandbox = self.ctx.store.get_sandbox(vmid).map_err(super::store_refusal)?;
        match sandbox {
            None => return Err(Refusal::new(ErrorCode::SandboxNotFound, format!("sandbox {vmid} not found"))),
            Some(s) if s.state == SandboxState::Destroyed => {
                return Err(Refusal::new(ErrorCode::SandboxNotFound, format!("sandbox {vmid} is destroyed")));
            }
            Some(s) if s.node.as_deref().is_some_and(|n| n != rec.node) => {
                return Err(Refusal::new(
                    ErrorCode::Conflict,
                    format!(
                        "sandbox {vmid} is on node `{}` and workspace `{}` on node `{}`: Proxmox attaches a volume only on its own node",
                        s.node.unwrap_or_default(),
                        rec.name,
                        rec.node
                    ),
                ));
            }
            Some(_) => {}
        }
        if let Some(other) = self.ctx.store.workspace_of_vm(vmid).map_err(super::store_refusal)?
            && other.id != rec.id
        {
            return Err(Refusal::new(
                ErrorCode::Conflict,
                format!("sandbox {vmid} already has workspace `{}`; a sandbox has one workspace", other.name),
            ));
        }
        rec.intent = Some(WorkspaceIntent::Attach(vmid));
        self.save(&rec)?;
        self.finish_intent(rec).await
    }

    async fn detach(&self, id: &str, only: Option<u32>) -> Result<WorkspaceRecord, Refusal> {
        let mut rec = self.load(id)?;
        // An attach to the same VM that never finished is undone as a detach.
        let current = match rec.intent {
            Some(WorkspaceIntent::Attach(vmid)) | Some(WorkspaceIntent::Detach(vmid)) => Some(vmid),
            None => rec.attached_vmid,
        };
        let Some(vmid) = current.filter(|v| only.is_none_or(|o| o == *v)) else { return Ok(rec) };
        rec.intent = Some(WorkspaceIntent::Detach(vmid));
        self.save(&rec)?;
        self.finish_intent(rec).await
    }

    async fn destroy(&self, id: &str) -> Result<(), Refusal> {
        let mut rec = self.finish_intent(self.load(id)?).await?;
        if let Some(vmid) = rec.attached_vmid {
            return Err(super::attached_refusal(&rec, vmid));
        }
        rec.state = WorkspaceState::Destroying;
        self.save(&rec)?;
        holder::destroy_holder(&self.ctx, &rec).await?;
        self.ctx.store.delete_workspace(&rec.id).map_err(super::store_refusal)?;
        Ok(())
    }

    /// The record, if its volume may be snapshotted, restored or copied now: ready, no
    /// attach or detach in progress, and attached to no sandbox.
    async fn detached(&self, id: &str, what: &str) -> Result<WorkspaceRecord, Refusal> {
        let rec = self.finish_intent(self.load(id)?).await?;
        if rec.state != WorkspaceState::Ready {
            return Err(super::not_ready(&rec));
        }
        if let Some(vmid) = rec.attached_vmid {
            return Err(Refusal::new(
                ErrorCode::WorkspaceAttached,
                format!(
                    "workspace `{}` is attached to sandbox {vmid}: {what} only while detached (`agentlab workspace detach {}`)",
                    rec.name, rec.name
                ),
            ));
        }
        Ok(rec)
    }

    async fn fork(&self, id: &str, req: &crate::protocol::ForkWorkspaceRequest) -> Result<WorkspaceRecord, Refusal> {
        let rec = self.detached(id, "a fork is made").await?;
        if let Some(snapshot) = &req.from_snapshot
            && !holder::snapshots(&self.ctx, &rec).await?.iter().any(|s| &s.name == snapshot)
        {
            return Err(Refusal::new(
                ErrorCode::InvalidValue,
                format!("workspace `{}` has no snapshot `{snapshot}`", rec.name),
            ));
        }
        let fork_of = match &req.from_snapshot {
            Some(snapshot) => format!("{}@{snapshot}", rec.id),
            None => rec.id.clone(),
        };
        let create = crate::protocol::CreateWorkspaceRequest {
            name: req.name.clone(),
            size_gb: rec.size_gb,
            storage: Some(rec.storage.clone()),
            node: Some(rec.node.clone()),
        };
        let new = super::record_new(&self.ctx, &create, Some(fork_of)).await?;
        super::ask(&new.id, WorkspaceMsg::Provision).await
    }

    async fn converge(&self, id: &str) -> Result<(), Refusal> {
        let rec = self.finish_intent(self.load(id)?).await?;
        match rec.state {
            WorkspaceState::Creating => self.provision(id).await.map(|_| ()),
            WorkspaceState::Destroying => self.destroy(id).await,
            WorkspaceState::Ready | WorkspaceState::Failed => Ok(()),
        }
    }
}

impl Actor for WorkspaceActor {
    type Msg = WorkspaceMsg;
    type State = String;
    type Arguments = String;

    async fn pre_start(&self, myself: ActorRef<Self::Msg>, id: String) -> Result<Self::State, ActorProcessingErr> {
        myself.send_message(WorkspaceMsg::Converge)?;
        Ok(id)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        id: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            WorkspaceMsg::Converge => {
                if let Err(refusal) = self.converge(id).await {
                    tracing::warn!(workspace = %id, "workspace did not converge: {}", refusal.message);
                }
            }
            WorkspaceMsg::Provision(reply) => {
                let _ = reply.send(self.provision(id).await);
            }
            WorkspaceMsg::Attach(vmid, reply) => {
                let _ = reply.send(self.attach(id, vmid).await);
            }
            WorkspaceMsg::Detach(only, reply) => {
                let _ = reply.send(self.detach(id, only).await);
            }
            WorkspaceMsg::Snapshot(name, reply) => {
                let outcome = match self.detached(id, "a snapshot is taken").await {
                    Ok(rec) => holder::snapshot(&self.ctx, &rec, &name).await,
                    Err(refusal) => Err(refusal),
                };
                let _ = reply.send(outcome);
            }
            WorkspaceMsg::Restore(name, reply) => {
                let outcome = match self.detached(id, "a snapshot is restored").await {
                    Ok(rec) => holder::restore(&self.ctx, &rec, &name).await,
                    Err(refusal) => Err(refusal),
                };
                let _ = reply.send(outcome);
            }
            WorkspaceMsg::Fork(req, reply) => {
                let _ = reply.send(self.fork(id, &req).await);
            }
            WorkspaceMsg::Destroy(reply) => {
                let outcome = self.destroy(id).await;
                let gone = outcome.is_ok();
                let _ = reply.send(outcome);
                if gone {
                    myself.stop(None);
                }
            }
        }
        Ok(())
    }
}
