//! The sandbox actor's handling of operator operations: admission, the recorded intent,
//! the Proxmox work on a task (`operations::run`), then the transitions it leads to.

use super::SandboxMsg;
use super::actor::{OpError, SandboxActor, SandboxActorState, op_error, reply_as_settled};
use super::operations::{self, SandboxOp, Then};
use crate::model::{Admission, ErrorCode, SandboxEvent, SandboxState, sandbox_ops, time_format};
use crate::protocol::SandboxView;
use crate::store::{NewEvent, SandboxPatch, SandboxRecord, Stage};
use ractor::{ActorProcessingErr, ActorRef, RpcReplyPort};
use std::sync::Arc;

impl SandboxActor {
    pub(super) fn on_run(
        &self,
        myself: &ActorRef<SandboxMsg>,
        state: &mut SandboxActorState,
        op: SandboxOp,
        force: bool,
        by: Option<u32>,
        reply: RpcReplyPort<Result<SandboxView, OpError>>,
    ) -> Result<(), ActorProcessingErr> {
        let rec = self.load(state.vmid)?;
        if Self::busy(state) {
            let _ = reply.send(Err(op_error(
                ErrorCode::Conflict,
                format!("sandbox {} is busy ({}); try again when it settles", rec.vmid, rec.state),
            )));
            return Ok(());
        }
        let operation = op.operation();
        let admission = sandbox_ops::check(rec.state, operation);
        // --force lifts the state rule for revert and snapshots, as the Go version did.
        let forced = force
            && matches!(
                op,
                SandboxOp::Revert { .. } | SandboxOp::SnapshotSave { .. } | SandboxOp::SnapshotRestore { .. }
            )
            && !matches!(
                rec.state,
                SandboxState::Requested | SandboxState::Provisioning | SandboxState::Booting | SandboxState::Destroyed
            );
        match (admission, forced) {
            (Admission::AlreadyDone, _) => {
                let _ = reply.send(Ok(rec.view()));
            }
            (Admission::Refused, false) => {
                let valid: Vec<&str> = sandbox_ops::allowed_states(operation).iter().map(|s| s.as_str()).collect();
                let _ = reply.send(Err(op_error(
                    ErrorCode::InvalidState,
                    format!(
                        "cannot {} sandbox {} in state {} (valid: {})",
                        operation.as_str(),
                        rec.vmid,
                        rec.state,
                        valid.join(", ")
                    ),
                )));
            }
            _ => {
                let event = NewEvent::sandbox(
                    rec.vmid,
                    &format!("sandbox.{}.started", op.name()),
                    Stage::Lifecycle,
                    format!("{} requested", op.name()),
                )
                .by(by);
                self.ctx.store.append_event(&event)?;
                let (ctx, me) = (Arc::clone(&self.ctx), myself.clone());
                let generation = state.generation.advance();
                state.work = Some(tokio::spawn(async move {
                    let result = operations::run(ctx, rec, op.clone()).await;
                    let _ = me.send_message(SandboxMsg::RunDone { op, result, reply, generation });
                }));
            }
        }
        Ok(())
    }

    pub(super) fn on_run_done(
        &self,
        myself: &ActorRef<SandboxMsg>,
        state: &mut SandboxActorState,
        op: SandboxOp,
        result: Result<Then, String>,
        reply: RpcReplyPort<Result<SandboxView, OpError>>,
    ) -> Result<(), ActorProcessingErr> {
        state.work = None;
        match result {
            Ok(Then::Transitions(events)) => {
                for event in events {
                    self.move_by(state.vmid, event, None)?;
                }
                let rec = self.load(state.vmid)?;
                self.ctx.store.append_event(&NewEvent::sandbox(
                    rec.vmid,
                    &format!("sandbox.{}.completed", op.name()),
                    Stage::Lifecycle,
                    format!("{} done", op.name()),
                ))?;
                self.publish(state, &rec);
                let _ = reply.send(Ok(rec.view()));
            }
            Ok(Then::Boot) => {
                // STOPPED (or back to it) → BOOTING, then boot and wait for the address.
                let rec = self.load(state.vmid)?;
                let rec = if rec.state == SandboxState::Stopped {
                    rec
                } else {
                    self.move_by(state.vmid, SandboxEvent::Stop, None)?.unwrap_or(rec)
                };
                // A sandbox whose lease ran out (a keepalive one stopped at TIMEOUT) gets its
                // lease length again: booted on an expired lease, it would time out at once.
                let lease = self.lease_on_boot(&rec);
                let event = lease.as_ref().map(|until| {
                    NewEvent::sandbox(
                        rec.vmid,
                        "sandbox.lease",
                        Stage::Lease,
                        format!("the lease had expired; renewed until {until} for the boot"),
                    )
                    .payload(serde_json::json!({"expires_at": until}))
                });
                self.ctx.store.patch_sandbox(
                    rec.vmid,
                    &SandboxPatch {
                        provision_step: Some(Some("boot".into())),
                        lease_expires_at: lease.map(Some),
                        ..Default::default()
                    },
                    event.as_ref(),
                )?;
                let rec = self.move_by(state.vmid, SandboxEvent::Boot, None)?.unwrap_or(rec);
                self.publish(state, &rec);
                state.settle_waiters.push(reply_as_settled(reply));
                self.start_provisioning(myself, state, &rec);
            }
            Err(error) => {
                let rec = self.load(state.vmid)?;
                self.ctx.store.append_event(&NewEvent::sandbox(
                    rec.vmid,
                    &format!("sandbox.{}.failed", op.name()),
                    Stage::Lifecycle,
                    error.clone(),
                ))?;
                let _ = reply.send(Err(op_error(
                    ErrorCode::Internal,
                    format!("{} of sandbox {} failed: {error}", op.name(), rec.vmid),
                )));
            }
        }
        Ok(())
    }

    /// The new lease deadline for a boot, when the recorded lease has already expired.
    fn lease_on_boot(&self, rec: &SandboxRecord) -> Option<String> {
        let minutes = rec.ttl_minutes?;
        let expires = time_format::parse(rec.lease_expires_at.as_deref()?).ok()?;
        let now = self.ctx.settings.clock.now();
        (expires <= now).then(|| time_format::format(now + self.ctx.settings.lease_minute * minutes))
    }
}
