//! Operator operations (start, stop, pause, resume, revert, snapshots, update): admission
//! by the table, the recorded intent, the Proxmox half on a task (`perform`), and the
//! transitions its outcome leads to — written by the actor when it reports back.

use super::actor::{SandboxActor, SandboxActorState, Waiter};
use super::error::SandboxError;
use super::msg::{OpReply, SandboxMsg};
use super::{CLEAN_SNAPSHOT, SandboxContext, is_ours, rollback};
use crate::model::{Admission, ErrorCode, Intent, Operation, Refusal, SandboxEvent, SandboxState, Step, sandbox_ops};
use crate::model::{EventKind, OperationPhase};
use crate::store::{NewEvent, SandboxPatch, SandboxRecord, Stage, StoreError};
use agentlab_proxmox::PveError;
use agentlab_proxmox::types::{ConfigChange, VmAction};
use ractor::ActorRef;
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

    /// `--force` lifts the state rule for revert and snapshots (not while provisioning or
    /// once destroyed).
    fn forced_in(&self, state: SandboxState) -> bool {
        matches!(self, SandboxOp::Revert { .. } | SandboxOp::SnapshotSave { .. } | SandboxOp::SnapshotRestore { .. })
            && !state.is_provisioning()
            && state != SandboxState::Destroyed
    }
}

/// What the actor does once the Proxmox work is done.
#[derive(Debug, Clone, PartialEq)]
pub enum AfterOperation {
    /// Apply these transitions in order (skipping those the table refuses).
    Transitions(Vec<SandboxEvent>),
    /// Record these fields (an update applied to the VM); `pending` names the keys
    /// Proxmox keeps for the VM's next start (it was running).
    Record { patch: SandboxPatch, pending: Vec<String> },
    /// Boot again (BOOTING, then the pipeline's boot and wait-for-address steps).
    Boot,
}

impl SandboxActor {
    pub(super) fn on_operate(
        &self,
        me: &ActorRef<SandboxMsg>,
        state: &mut SandboxActorState,
        op: SandboxOp,
        force: bool,
        by: Option<u32>,
        reply: OpReply,
    ) -> Result<(), StoreError> {
        let rec = self.load(state.vmid)?;
        if state.busy() {
            let message = format!("sandbox {} is busy ({}); try again when it settles", rec.vmid, rec.state);
            let _ = reply.send(Err(Refusal::new(ErrorCode::Conflict, message)));
            return Ok(());
        }
        let operation = op.operation();
        match (sandbox_ops::check(rec.state, operation), force && op.forced_in(rec.state)) {
            (Admission::AlreadyDone, _) => {
                let _ = reply.send(Ok(rec.view()));
            }
            (Admission::Refused, false) => {
                let valid: Vec<&str> = sandbox_ops::allowed_states(operation).iter().map(|s| s.as_str()).collect();
                let message = format!(
                    "cannot {} sandbox {} in state {} (valid: {})",
                    operation.as_str(),
                    rec.vmid,
                    rec.state,
                    valid.join(", ")
                );
                let _ = reply.send(Err(Refusal::new(ErrorCode::InvalidState, message)));
            }
            _ => {
                let kind = EventKind::Operation { op: op.name(), phase: OperationPhase::Started };
                let event =
                    NewEvent::sandbox(rec.vmid, kind, Stage::Lifecycle, format!("{} requested", op.name())).by(by);
                self.ctx.store.append_event(&event)?;
                let (ctx, work_op) = (Arc::clone(&self.ctx), op.clone());
                self.spawn_work(me, state, perform(ctx, rec, work_op, force), move |result, generation| {
                    SandboxMsg::Operated { op, result, reply, generation }
                });
            }
        }
        Ok(())
    }

    /// An operation whose work was replaced (a destroy, a lease expiry) before it finished.
    pub(super) fn superseded(state: &SandboxActorState, op: &SandboxOp, reply: OpReply) {
        let message = format!("{} of sandbox {} was superseded by later work", op.name(), state.vmid);
        let _ = reply.send(Err(Refusal::new(ErrorCode::Conflict, message)));
    }

    pub(super) fn on_operated(
        &self,
        me: &ActorRef<SandboxMsg>,
        state: &mut SandboxActorState,
        op: SandboxOp,
        result: Result<AfterOperation, SandboxError>,
        reply: OpReply,
    ) -> Result<(), StoreError> {
        state.work = None;
        let completed = |actor: &SandboxActor, state: &SandboxActorState| -> Result<SandboxRecord, StoreError> {
            let rec = actor.load(state.vmid)?;
            let kind = EventKind::Operation { op: op.name(), phase: OperationPhase::Completed };
            actor.ctx.store.append_event(&NewEvent::sandbox(
                rec.vmid,
                kind,
                Stage::Lifecycle,
                format!("{} done", op.name()),
            ))?;
            actor.publish(state, &rec);
            Ok(rec)
        };
        match result {
            Ok(AfterOperation::Transitions(events)) => {
                for event in events {
                    self.move_by(state.vmid, event, None)?;
                }
                let _ = reply.send(Ok(completed(self, state)?.view()));
            }
            Ok(AfterOperation::Record { patch, pending }) => {
                self.ctx.store.patch_sandbox(state.vmid, &patch, None)?;
                let mut view = completed(self, state)?.view();
                if !pending.is_empty() {
                    let message = format!(
                        "{} apply at the next start: Proxmox keeps them pending while the VM runs",
                        pending.join(", ")
                    );
                    self.ctx.store.append_event(&NewEvent::sandbox(
                        state.vmid,
                        EventKind::Operation { op: op.name(), phase: OperationPhase::Completed },
                        Stage::Lifecycle,
                        message,
                    ))?;
                }
                view.pending_changes = pending;
                let _ = reply.send(Ok(view));
            }
            Ok(AfterOperation::Boot) => self.reboot(me, state, reply)?,
            Err(error) => {
                let kind = EventKind::Operation { op: op.name(), phase: OperationPhase::Failed };
                self.ctx.store.append_event(&NewEvent::sandbox(
                    state.vmid,
                    kind,
                    Stage::Lifecycle,
                    error.to_string(),
                ))?;
                let message = format!("{} of sandbox {} failed: {error}", op.name(), state.vmid);
                let _ = reply.send(Err(Refusal::new(error.code(), message)));
            }
        }
        Ok(())
    }

    /// STOPPED (or back to it) → BOOTING, then the pipeline boots it and waits for the
    /// address; the operation answers once the sandbox is up.
    fn reboot(
        &self,
        me: &ActorRef<SandboxMsg>,
        state: &mut SandboxActorState,
        reply: OpReply,
    ) -> Result<(), StoreError> {
        let rec = self.load(state.vmid)?;
        let rec = if rec.state == SandboxState::Stopped {
            rec
        } else {
            self.move_by(state.vmid, SandboxEvent::Stop, None)?.unwrap_or(rec)
        };
        let lease = self.lease_on_boot(&rec);
        let event = lease.map(crate::model::time_format::format).map(|until| {
            NewEvent::sandbox(
                rec.vmid,
                EventKind::LeaseRenewed,
                Stage::Lease,
                format!("the lease had expired; renewed until {until} for the boot"),
            )
            .payload(serde_json::json!({"expires_at": until}))
        });
        let patch = SandboxPatch {
            intent: Some(Some(Intent::Provision(Step::Boot))),
            lease_expires_at: lease.map(Some),
            ..Default::default()
        };
        self.ctx.store.patch_sandbox(rec.vmid, &patch, event.as_ref())?;
        let rec = self.move_by(state.vmid, SandboxEvent::Boot, None)?.unwrap_or(rec);
        self.publish(state, &rec);
        state.settle_waiters.push(Waiter::Operation(reply));
        self.arm_timers(me, state, &rec);
        self.arm_provisioning_deadline(me, state, &rec);
        self.provision(me, state)
    }
}

/// The Proxmox side of an operation, on the sandbox's work task.
async fn perform(
    ctx: Arc<SandboxContext>,
    rec: SandboxRecord,
    op: SandboxOp,
    force: bool,
) -> Result<AfterOperation, SandboxError> {
    let node = rec.node.clone().ok_or(SandboxError::NoNode)?;
    let vmid = rec.vmid;
    let gw = &ctx.gateway;
    // The VMID may have been reused by someone else since the last probe: never act on a
    // VM that is not AgentLab's.
    let config = gw.vm_config(&node, vmid).await.map_err(SandboxError::pve("reading the VM's config"))?;
    if !is_ours(&config, vmid) {
        return Err(SandboxError::NotOurs { vmid });
    }
    let transitions = |events: &[SandboxEvent]| Ok(AfterOperation::Transitions(events.to_vec()));
    match op {
        SandboxOp::Start => Ok(AfterOperation::Boot),
        SandboxOp::Stop => {
            match gw.vm_action(&node, vmid, VmAction::Stop).await {
                Ok(_) | Err(PveError::NotFound(_)) => {}
                Err(e) => return Err(SandboxError::pve("stopping the VM")(e)),
            }
            transitions(&[SandboxEvent::Stop])
        }
        SandboxOp::Pause => {
            gw.vm_action(&node, vmid, VmAction::Suspend).await.map_err(SandboxError::pve("pausing the VM"))?;
            transitions(&[SandboxEvent::Suspend])
        }
        SandboxOp::Resume => {
            gw.vm_action(&node, vmid, VmAction::Resume).await.map_err(SandboxError::pve("resuming the VM"))?;
            transitions(&[if rec.job_id.is_some() { SandboxEvent::JobStarted } else { SandboxEvent::Resume }])
        }
        SandboxOp::Revert { restart } => {
            let delete_first = rollback::plan(&ctx, &node, vmid, CLEAN_SNAPSHOT, force).await?;
            super::teardown::stop_with_workspace(&ctx, &node, vmid).await?;
            let status = gw.vm_status(&node, vmid).await.map_err(SandboxError::pve("reading the VM's status"))?;
            if status.is_running() {
                gw.vm_action(&node, vmid, VmAction::Stop).await.map_err(SandboxError::pve("stopping the VM"))?;
            }
            // Waited on before anything starts the VM again.
            rollback::apply(&ctx, &node, vmid, CLEAN_SNAPSHOT, &delete_first).await?;
            // `clean` is from before the first boot: cloud-init runs again at the next start
            // and needs a bootstrap token that was not spent yet.
            super::pipeline::write_snippet(&ctx, &rec).await?;
            if restart.unwrap_or(rec.state.has_vm_running()) {
                Ok(AfterOperation::Boot)
            } else {
                transitions(&[SandboxEvent::Stop])
            }
        }
        SandboxOp::SnapshotSave { name } => {
            gw.create_snapshot(&node, vmid, &name, None).await.map_err(SandboxError::pve("taking the snapshot"))?;
            transitions(&[])
        }
        SandboxOp::SnapshotRestore { name } => {
            let delete_first = rollback::plan(&ctx, &node, vmid, &name, force).await?;
            rollback::apply(&ctx, &node, vmid, &name, &delete_first).await?;
            transitions(&[])
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
            gw.update_config(&node, vmid, change).await.map_err(SandboxError::pve("updating the VM's config"))?;
            // A running VM takes only what it can hot-plug; `cores` and `memory` (without
            // memory hotplug) wait in [PENDING] for the next start, with no error.
            let running = gw.vm_status(&node, vmid).await.is_ok_and(|s| s.is_running());
            let pending = if running {
                gw.pending_keys(&node, vmid).await.map_err(SandboxError::pve("reading the VM's pending changes"))?
            } else {
                Vec::new()
            };
            let patch = SandboxPatch { cores, memory_mb, tags, ..Default::default() };
            Ok(AfterOperation::Record { patch, pending })
        }
    }
}
