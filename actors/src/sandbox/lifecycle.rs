//! A sandbox's life: provisioning driven one recorded step at a time, its failure, the
//! teardown, destroy requests, and answering whoever waits for provisioning to end.

use super::actor::{SandboxActor, SandboxActorState, Waiter};
use super::decide::{self, OnReconcile};
use super::error::{ProvisionFailure, SandboxError};
use super::msg::{AfterTeardown, OpReply, SandboxMsg, Settled};
use super::pipeline::{self, StepOutcome};
use super::teardown;
use crate::model::EventKind;
use crate::model::{
    Admission, ErrorCode, Intent, Operation, Refusal, SandboxEvent, SandboxNotice, SandboxState, Step, sandbox_ops,
};
use crate::store::{NewEvent, SandboxPatch, SandboxRecord, Stage, StoreError};
use ractor::{ActorRef, RpcReplyPort};
use std::sync::Arc;

impl SandboxActor {
    pub(super) fn on_reconcile(
        &self,
        me: &ActorRef<SandboxMsg>,
        state: &mut SandboxActorState,
    ) -> Result<(), StoreError> {
        let rec = self.load(state.vmid)?;
        self.publish(state, &rec);
        match decide::on_reconcile(&rec) {
            OnReconcile::ResumeDestroy => self.start_teardown(me, state, AfterTeardown::Destroyed),
            OnReconcile::ContinueProvisioning => {
                self.arm_timers(me, state, &rec);
                self.arm_provisioning_deadline(me, state, &rec);
                self.provision(me, state)?;
            }
            OnReconcile::FinishCleanup => self.start_teardown(me, state, AfterTeardown::KeepState),
            OnReconcile::ExpireLease => {
                let _ = me.send_message(SandboxMsg::LeaseTimerFired);
            }
            OnReconcile::Stop => me.stop(Some("sandbox destroyed".into())),
            OnReconcile::Watch => {
                self.arm_timers(me, state, &rec);
                // The self-check (does the VM still exist, run, have its address?) is the
                // census's next round, which runs at once at daemon start: one cluster read
                // for every sandbox, not one status call each.
            }
        }
        Ok(())
    }

    pub(super) fn on_wait_settled(
        &self,
        state: &mut SandboxActorState,
        reply: RpcReplyPort<Settled>,
    ) -> Result<(), StoreError> {
        state.settle_waiters.push(Waiter::Settled(reply));
        if !state.busy() {
            self.settle(state, &self.load(state.vmid)?);
        }
        Ok(())
    }

    /// Arms the provisioning deadline: the whole `provisioning_timeout` for a re-boot (the
    /// sandbox booted before), what is left of it since creation for a first provisioning.
    pub(super) fn arm_provisioning_deadline(
        &self,
        me: &ActorRef<SandboxMsg>,
        state: &mut SandboxActorState,
        rec: &SandboxRecord,
    ) {
        let timeout = self.ctx.settings.provisioning_timeout;
        let remaining = if rec.has_booted() {
            timeout
        } else {
            timeout.saturating_sub(self.ctx.settings.clock.since(rec.created_at))
        };
        if let Some((_, timer)) = state.provisioning_deadline.take() {
            timer.abort();
        }
        state.deadlines_armed += 1;
        let number = state.deadlines_armed;
        let timer = me.send_after(remaining, move || SandboxMsg::ProvisioningTimedOut { deadline: number });
        state.provisioning_deadline = Some((number, timer));
    }

    pub(super) fn disarm_provisioning_deadline(state: &mut SandboxActorState) {
        if let Some((_, timer)) = state.provisioning_deadline.take() {
            timer.abort();
        }
    }

    /// Starts the next provisioning step the record calls for; a no-op while work runs.
    pub(super) fn provision(&self, me: &ActorRef<SandboxMsg>, state: &mut SandboxActorState) -> Result<(), StoreError> {
        if state.busy() {
            return Ok(());
        }
        let mut rec = self.load(state.vmid)?;
        if rec.state == SandboxState::Requested {
            self.record_step(rec.vmid, Step::Clone)?;
            rec = self.move_by(rec.vmid, SandboxEvent::BeginProvisioning, None)?.unwrap_or(rec);
        }
        let step = match (rec.state, rec.intent.and_then(Intent::step)) {
            (SandboxState::Provisioning, Some(step)) => step,
            (SandboxState::Provisioning, None) => Step::Clone,
            (SandboxState::Booting, Some(Step::WaitIp)) => Step::WaitIp,
            (SandboxState::Booting, _) => Step::Boot,
            // Not provisioning (any more): whoever waits gets the record as it is.
            _ => {
                Self::disarm_provisioning_deadline(state);
                self.settle(state, &rec);
                return Ok(());
            }
        };
        if step == Step::Boot && rec.state == SandboxState::Provisioning {
            // BOOTING is recorded before the start is asked for.
            rec = self.move_by(rec.vmid, SandboxEvent::Boot, None)?.unwrap_or(rec);
            self.publish(state, &rec);
        }
        let ctx = Arc::clone(&self.ctx);
        self.spawn_work(me, state, pipeline::run_step(ctx, rec, step), move |result, generation| {
            SandboxMsg::StepDone { step, result, generation }
        });
        Ok(())
    }

    /// The intent to run `step`, written before the step starts.
    fn record_step(&self, vmid: u32, step: Step) -> Result<(), StoreError> {
        let event =
            NewEvent::sandbox(vmid, EventKind::ProvisionStep, Stage::Lifecycle, format!("provisioning: {step}"))
                .payload(serde_json::json!({"step": step.as_str()}));
        let patch = SandboxPatch { intent: Some(Some(Intent::Provision(step))), ..Default::default() };
        self.ctx.store.patch_sandbox(vmid, &patch, Some(&event))
    }

    pub(super) fn on_step_done(
        &self,
        me: &ActorRef<SandboxMsg>,
        state: &mut SandboxActorState,
        step: Step,
        result: Result<StepOutcome, SandboxError>,
    ) -> Result<(), StoreError> {
        state.work = None;
        match (result, step.next()) {
            (Ok(StepOutcome::GuestAddress(ip)), _) => self.provisioned(me, state, ip),
            (Ok(StepOutcome::Done), Some(next)) => {
                self.record_step(state.vmid, next)?;
                self.provision(me, state)
            }
            (Ok(StepOutcome::Done), None) => {
                // The last step reports the address; reaching here means it did not.
                let error = SandboxError::NotAllowed("the guest reported no address".into());
                self.provisioning_failed(me, state, ProvisionFailure { step, error })
            }
            (Err(error), _) => self.provisioning_failed(me, state, ProvisionFailure { step, error }),
        }
    }

    /// The guest is up at `ip`: READY.
    fn provisioned(
        &self,
        me: &ActorRef<SandboxMsg>,
        state: &mut SandboxActorState,
        ip: String,
    ) -> Result<(), StoreError> {
        Self::disarm_provisioning_deadline(state);
        let event = NewEvent::sandbox(state.vmid, EventKind::SandboxReady, Stage::Slo, format!("guest address {ip}"))
            .payload(serde_json::json!({"ip": ip}));
        let patch = SandboxPatch { ip: Some(Some(ip)), intent: Some(None), ..Default::default() };
        self.ctx.store.patch_sandbox(state.vmid, &patch, Some(&event))?;
        let rec = self.move_by(state.vmid, SandboxEvent::GuestReady, None)?;
        let rec = match rec {
            Some(rec) => rec,
            None => self.load(state.vmid)?,
        };
        self.publish(state, &rec);
        self.arm_timers(me, state, &rec);
        self.settle(state, &rec);
        Ok(())
    }

    pub(super) fn on_provisioning_timed_out(
        &self,
        me: &ActorRef<SandboxMsg>,
        state: &mut SandboxActorState,
        number: u64,
    ) -> Result<(), StoreError> {
        if state.provisioning_deadline.as_ref().is_none_or(|(armed, _)| *armed != number) {
            return Ok(());
        }
        let rec = self.load(state.vmid)?;
        if !rec.state.is_provisioning() || rec.intent == Some(Intent::Destroy) {
            return Ok(());
        }
        // Aborted, not taken: a teardown awaits the step's task before reading the record
        // (the step may just have recorded its snippet).
        if let Some(work) = &state.work {
            work.abort();
        }
        state.generation.advance();
        let step = rec.intent.and_then(Intent::step).unwrap_or(Step::Clone);
        let error = SandboxError::ProvisioningTimeout(self.ctx.settings.provisioning_timeout);
        self.provisioning_failed(me, state, ProvisionFailure { step, error })
    }

    /// A first provisioning fails and its resources are removed (FAILED stays, with the
    /// reason); a re-boot of a sandbox that booted before stops it and keeps its VM and data.
    fn provisioning_failed(
        &self,
        me: &ActorRef<SandboxMsg>,
        state: &mut SandboxActorState,
        failure: ProvisionFailure,
    ) -> Result<(), StoreError> {
        Self::disarm_provisioning_deadline(state);
        let reason = failure.to_string();
        tracing::warn!(vmid = state.vmid, %reason, "sandbox failed");
        let event = NewEvent::sandbox(state.vmid, EventKind::ProvisionFailed, Stage::Recovery, reason.clone())
            .payload(serde_json::json!({"step": failure.step.as_str(), "error": failure.error.to_string()}));
        let rec = self.load(state.vmid)?;
        if rec.has_booted() {
            if let Some(work) = state.work.take() {
                work.abort();
            }
            let patch = SandboxPatch { intent: Some(None), ..Default::default() };
            self.ctx.store.patch_sandbox(state.vmid, &patch, Some(&event))?;
            let rec = self.move_by(state.vmid, SandboxEvent::Stop, Some(&reason))?.unwrap_or(rec);
            self.publish(state, &rec);
            self.settle(state, &rec);
        } else {
            // FAILED first: a crash before the Cleanup intent is written still leaves a
            // record whose cleanup is pending (FAILED, a node and a provisioning step).
            let rec = self.move_by(state.vmid, SandboxEvent::Fail, Some(&reason))?.unwrap_or(rec);
            let patch = SandboxPatch { intent: Some(Some(Intent::Cleanup)), ..Default::default() };
            self.ctx.store.patch_sandbox(state.vmid, &patch, Some(&event))?;
            self.publish(state, &rec);
            self.start_teardown(me, state, AfterTeardown::KeepState);
        }
        Ok(())
    }

    /// Replaces any work with a teardown of the record as the aborted work left it.
    pub(super) fn start_teardown(&self, me: &ActorRef<SandboxMsg>, state: &mut SandboxActorState, then: AfterTeardown) {
        Self::disarm_provisioning_deadline(state);
        let previous = state.work.take();
        if let Some(work) = &previous {
            // An interrupted step is safe: every step is idempotent and teardown tolerates "gone".
            work.abort();
        }
        let (ctx, vmid) = (Arc::clone(&self.ctx), state.vmid);
        let teardown = async move {
            // Let the aborted work stop, then act on the record as it left it (it may have
            // just recorded the node or the snippet).
            if let Some(work) = previous {
                let _ = work.await;
            }
            let rec = ctx.store.get_sandbox(vmid)?.ok_or(StoreError::SandboxNotFound(vmid))?;
            teardown::teardown(ctx, rec).await
        };
        self.spawn_work(me, state, teardown, move |result, generation| SandboxMsg::TeardownDone {
            result,
            then,
            generation,
        });
    }

    pub(super) fn on_destroy(
        &self,
        me: &ActorRef<SandboxMsg>,
        state: &mut SandboxActorState,
        force: bool,
        by: Option<u32>,
        reply: OpReply,
    ) -> Result<(), StoreError> {
        let rec = self.load(state.vmid)?;
        let op = if force { Operation::ForceDestroy } else { Operation::Destroy };
        match sandbox_ops::check(rec.state, op) {
            Admission::AlreadyDone => {
                let _ = reply.send(Ok(rec.view()));
            }
            Admission::Refused => {
                let valid: Vec<&str> = sandbox_ops::allowed_states(op).iter().map(|s| s.as_str()).collect();
                let _ = reply.send(Err(Refusal::new(
                    ErrorCode::InvalidState,
                    format!(
                        "cannot destroy sandbox {} in state {} (valid: {}); use --force to destroy it anyway",
                        rec.vmid,
                        rec.state,
                        valid.join(", ")
                    ),
                )));
            }
            Admission::Allowed => {
                state.destroy_waiters.push(reply);
                if rec.intent != Some(Intent::Destroy) {
                    self.begin_destroy(me, state, by)?;
                }
            }
        }
        Ok(())
    }

    /// Records the destroy intent, then tears down.
    pub(super) fn begin_destroy(
        &self,
        me: &ActorRef<SandboxMsg>,
        state: &mut SandboxActorState,
        by: Option<u32>,
    ) -> Result<(), StoreError> {
        let event =
            NewEvent::sandbox(state.vmid, EventKind::DestroyStarted, Stage::Lifecycle, "destroy requested").by(by);
        let patch = SandboxPatch { intent: Some(Some(Intent::Destroy)), ..Default::default() };
        self.ctx.store.patch_sandbox(state.vmid, &patch, Some(&event))?;
        self.start_teardown(me, state, AfterTeardown::Destroyed);
        Ok(())
    }

    pub(super) fn on_teardown_done(
        &self,
        me: &ActorRef<SandboxMsg>,
        state: &mut SandboxActorState,
        result: Result<(), SandboxError>,
        then: AfterTeardown,
    ) -> Result<(), StoreError> {
        state.work = None;
        let rec = self.load(state.vmid)?;
        let clear_intent = SandboxPatch { intent: Some(None), ..Default::default() };
        match (result, then) {
            (Ok(()), AfterTeardown::Destroyed) => {
                // DESTROYED first: a crash right after leaves a finished record.
                let rec = self.move_by(state.vmid, SandboxEvent::Destroy, None)?.unwrap_or(rec);
                self.ctx.store.patch_sandbox(state.vmid, &clear_intent, None)?;
                if let Some(table) = &self.ctx.host_table {
                    table.apply_in_background("a sandbox is destroyed: unbind it");
                }
                crate::exposure::sandbox_gone(&self.ctx.store, state.vmid);
                self.publish(state, &rec);
                for waiter in state.destroy_waiters.drain(..) {
                    let _ = waiter.send(Ok(rec.view()));
                }
                self.settle(state, &rec);
                super::notify_job(&rec, SandboxNotice::Destroyed);
                me.stop(Some("sandbox destroyed".into()));
            }
            (Ok(()), AfterTeardown::KeepState) => {
                self.ctx.store.patch_sandbox(state.vmid, &clear_intent, None)?;
                let rec = self.load(state.vmid)?;
                self.settle(state, &rec);
                self.arm_timers(me, state, &rec);
            }
            (Err(error), then) => {
                let not_ours = matches!(error, SandboxError::NotOurs { .. });
                let kind = if not_ours { EventKind::DestroyRefused } else { EventKind::DestroyFailed };
                let event = NewEvent::sandbox(state.vmid, kind, Stage::Lifecycle, error.to_string());
                if then == AfterTeardown::KeepState && !not_ours {
                    // The cleanup stays pending: the next start of the actor tries again.
                    self.ctx.store.append_event(&event)?;
                } else {
                    self.ctx.store.patch_sandbox(state.vmid, &clear_intent, Some(&event))?;
                }
                for waiter in state.destroy_waiters.drain(..) {
                    let _ = waiter.send(Err(Refusal::new(error.code(), error.to_string())));
                }
                // A teardown that failed mid-provisioning leaves nothing running: the sandbox
                // fails (with the reason) rather than stay provisioning forever.
                let rec = if rec.state.is_provisioning() {
                    self.move_by(state.vmid, SandboxEvent::Fail, Some(&error.to_string()))?.unwrap_or(rec)
                } else {
                    rec
                };
                self.publish(state, &rec);
                self.settle(state, &rec);
            }
        }
        Ok(())
    }

    /// Answers whoever waits for provisioning to end, once it has.
    pub(super) fn settle(&self, state: &mut SandboxActorState, rec: &SandboxRecord) {
        if rec.state.is_provisioning() {
            return;
        }
        let failed = matches!(rec.state, SandboxState::Failed | SandboxState::Destroyed | SandboxState::Timeout);
        for waiter in state.settle_waiters.drain(..) {
            match waiter {
                Waiter::Settled(reply) => {
                    let _ = reply.send(if failed { Settled::Failed(rec.view()) } else { Settled::Ready(rec.view()) });
                }
                Waiter::Operation(reply) => {
                    let answer = if failed {
                        Err(Refusal::new(
                            ErrorCode::Internal,
                            format!("sandbox {} is {}: {}", rec.vmid, rec.state, rec.error.clone().unwrap_or_default()),
                        ))
                    } else {
                        Ok(rec.view())
                    };
                    let _ = reply.send(answer);
                }
            }
        }
    }
}
