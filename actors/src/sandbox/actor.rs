//! The sandbox actor. Handlers decide (admission table, transition table), record (store),
//! then start the side effect on a task whose completion comes back as a message; the
//! mailbox never waits on Proxmox.

use super::SandboxContext;
use super::generation::WorkGeneration;
use super::operations::{SandboxOp, Then};
use super::pipeline::{self, Failure};
use super::teardown::{self, TeardownError};
use crate::model::{
    Admission, ErrorCode, Operation, SandboxEvent, SandboxState, sandbox_ops, sandbox_state, time_format,
};
use crate::protocol::SandboxView;
use crate::store::{NewEvent, SandboxPatch, SandboxRecord, Stage};
use agentlab_proxmox::PveError;
use ractor::concurrency::JoinHandle;
use ractor::{Actor, ActorProcessingErr, ActorRef, MessagingErr, RpcReplyPort};
use std::sync::Arc;

/// How provisioning ended, for whoever waits on it.
#[derive(Debug, Clone, PartialEq)]
pub enum Settled {
    Ready(SandboxView),
    Failed(SandboxView),
}

/// A refused or failed operation, with the API code it maps to.
#[derive(Debug, Clone, PartialEq)]
pub struct OpError {
    pub code: ErrorCode,
    pub message: String,
}

pub(super) fn op_error(code: ErrorCode, message: impl Into<String>) -> OpError {
    OpError { code, message: message.into() }
}

pub enum SandboxMsg {
    /// First message after (re)start: converge from the record.
    Reconcile,
    Get(RpcReplyPort<Option<SandboxView>>),
    /// Answer once provisioning is over (at once if it already is).
    WaitSettled(RpcReplyPort<Settled>),
    Destroy {
        force: bool,
        by: Option<u32>,
        reply: RpcReplyPort<Result<SandboxView, OpError>>,
    },
    RenewLease {
        until: String,
        by: Option<u32>,
        reply: RpcReplyPort<Result<SandboxView, OpError>>,
    },
    LeaseExpired,
    Probe,
    /// A probe's outcome: the VM's status and, while it runs, the guest's agent-subnet address.
    /// Tagged with the work generation at probe time (see `generation`).
    Probed {
        result: Result<agentlab_proxmox::types::VmStatus, PveError>,
        ip: Option<String>,
        /// The node the VM was found on after a migration outside AgentLab.
        moved_to: Option<String>,
        generation: u64,
    },
    ProvisionDone {
        outcome: Result<(), Failure>,
        generation: u64,
    },
    TeardownDone {
        result: Result<(), TeardownError>,
        then: AfterTeardown,
        generation: u64,
    },
    StopDone {
        result: Result<(), String>,
        generation: u64,
    },
    /// An operator operation (start, stop, pause, resume, revert, snapshots, update).
    Run {
        op: SandboxOp,
        force: bool,
        by: Option<u32>,
        reply: RpcReplyPort<Result<SandboxView, OpError>>,
    },
    RunDone {
        op: SandboxOp,
        result: Result<Then, String>,
        reply: RpcReplyPort<Result<SandboxView, OpError>>,
        generation: u64,
    },
    /// The sandbox's job started or ended (JobStarted, JobCompleted, Fail).
    JobEvent(SandboxEvent),
    /// Test hook: panic inside the handler (debug builds only).
    #[cfg(debug_assertions)]
    Panic,
}

/// A sandbox that reached READY before has an address on record; booting it again is a
/// re-boot, never a first provisioning.
pub(super) fn is_reboot(rec: &SandboxRecord) -> bool {
    rec.ip.is_some()
}

/// Turns an operation's reply into a settle waiter (start and revert answer once booted).
pub(super) fn reply_as_settled(reply: RpcReplyPort<Result<SandboxView, OpError>>) -> RpcReplyPort<Settled> {
    let (port, rx) = ractor::concurrency::oneshot();
    tokio::spawn(async move {
        let answer = match rx.await {
            Ok(Settled::Ready(view)) => Ok(view),
            Ok(Settled::Failed(view)) => Err(op_error(
                ErrorCode::Internal,
                format!("sandbox {} is {}: {}", view.vmid, view.state, view.error.unwrap_or_default()),
            )),
            Err(_) => Err(op_error(ErrorCode::ActorUnavailable, "the sandbox stopped before it booted")),
        };
        let _ = reply.send(answer);
    });
    RpcReplyPort::from(port)
}

/// What a finished teardown leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterTeardown {
    /// The record becomes DESTROYED and the actor stops.
    Destroyed,
    /// The record keeps its state (FAILED after a failed provisioning).
    KeepState,
}

pub struct SandboxActor {
    pub ctx: Arc<SandboxContext>,
}

pub struct SandboxActorState {
    pub(super) vmid: u32,
    pub(super) name: String,
    pub(super) work: Option<tokio::task::JoinHandle<()>>,
    pub(super) settle_waiters: Vec<RpcReplyPort<Settled>>,
    pub(super) destroy_waiters: Vec<RpcReplyPort<Result<SandboxView, OpError>>>,
    pub(super) lease_timer: Option<JoinHandle<Result<(), MessagingErr<SandboxMsg>>>>,
    pub(super) probe_timer: Option<JoinHandle<()>>,
    pub(super) probing: bool,
    /// Which spawned task's completion is still acted on.
    pub(super) generation: WorkGeneration,
}

impl SandboxActor {
    pub(super) fn load(&self, vmid: u32) -> Result<SandboxRecord, ActorProcessingErr> {
        Ok(self.ctx.store.get_sandbox(vmid)?.ok_or_else(|| format!("sandbox {vmid} has no record"))?)
    }

    pub(super) fn publish(&self, state: &SandboxActorState, rec: &SandboxRecord) {
        self.ctx.directory.set_state(&state.name, rec.state.as_str());
        self.ctx.directory.set_lease(&state.name, rec.lease_expires_at.as_deref());
    }

    /// Whether a completion belongs to the work now in force; a stale one is logged and dropped.
    pub(super) fn is_current(&self, state: &SandboxActorState, generation: u64) -> bool {
        let current = state.generation.is_current(generation);
        if !current {
            tracing::debug!(vmid = state.vmid, generation, "dropping the completion of superseded work");
        }
        current
    }

    pub(super) fn busy(state: &SandboxActorState) -> bool {
        state.work.as_ref().is_some_and(|w| !w.is_finished())
    }

    pub(super) fn start_provisioning(
        &self,
        me: &ActorRef<SandboxMsg>,
        state: &mut SandboxActorState,
        rec: &SandboxRecord,
    ) {
        if Self::busy(state) {
            return;
        }
        let ctx = Arc::clone(&self.ctx);
        let vmid = state.vmid;
        let me = me.clone();
        // First provisioning counts from creation; a re-boot (start, revert — the sandbox had
        // an address before) gets the whole timeout from now.
        let remaining = if is_reboot(rec) {
            ctx.settings.provisioning_timeout
        } else {
            let elapsed = time_format::parse(&rec.created_at).map(|t| ctx.settings.clock.since(t)).unwrap_or_default();
            ctx.settings.provisioning_timeout.saturating_sub(elapsed)
        };
        let generation = state.generation.advance();
        state.work = Some(tokio::spawn(async move {
            let outcome = match tokio::time::timeout(remaining, pipeline::provision(Arc::clone(&ctx), vmid)).await {
                Ok(result) => result,
                Err(_) => {
                    let step = ctx
                        .store
                        .get_sandbox(vmid)
                        .ok()
                        .flatten()
                        .and_then(|r| r.provision_step)
                        .unwrap_or_else(|| "?".into());
                    Err(Failure {
                        step,
                        error: format!(
                            "provisioning did not finish within provisioning_timeout ({:?})",
                            ctx.settings.provisioning_timeout
                        ),
                    })
                }
            };
            let _ = me.send_message(SandboxMsg::ProvisionDone { outcome, generation });
        }));
    }

    pub(super) fn start_teardown(
        &self,
        me: &ActorRef<SandboxMsg>,
        state: &mut SandboxActorState,
        rec: SandboxRecord,
        then: AfterTeardown,
    ) {
        let previous = state.work.take();
        if let Some(work) = &previous {
            // An interrupted step is safe: every step is idempotent and teardown tolerates "gone".
            work.abort();
        }
        let ctx = Arc::clone(&self.ctx);
        let me = me.clone();
        let generation = state.generation.advance();
        state.work = Some(tokio::spawn(async move {
            // Let the aborted work stop, then act on the record as it left it (it may have
            // just recorded the node or the snippet).
            if let Some(work) = previous {
                let _ = work.await;
            }
            let rec = ctx.store.get_sandbox(rec.vmid).ok().flatten().unwrap_or(rec);
            let result = teardown::teardown(ctx, rec).await;
            let _ = me.send_message(SandboxMsg::TeardownDone { result, then, generation });
        }));
    }

    pub(super) fn arm_timers(&self, me: &ActorRef<SandboxMsg>, state: &mut SandboxActorState, rec: &SandboxRecord) {
        if let Some(timer) = state.lease_timer.take() {
            timer.abort();
        }
        if let Some(expires) = rec.lease_expires_at.as_deref().and_then(|t| time_format::parse(t).ok()) {
            let delay = self.ctx.settings.clock.until(expires);
            state.lease_timer = Some(me.send_after(delay, || SandboxMsg::LeaseExpired));
        }
        if state.probe_timer.is_none() {
            state.probe_timer = Some(me.send_interval(self.ctx.settings.probe_interval, || SandboxMsg::Probe));
        }
    }

    pub(super) fn settle(&self, state: &mut SandboxActorState, rec: &SandboxRecord) {
        let settled = match rec.state {
            SandboxState::Requested | SandboxState::Provisioning | SandboxState::Booting => return,
            SandboxState::Failed | SandboxState::Destroyed | SandboxState::Timeout => Settled::Failed(rec.view()),
            _ => Settled::Ready(rec.view()),
        };
        for waiter in state.settle_waiters.drain(..) {
            let _ = waiter.send(settled.clone());
        }
    }

    pub(super) fn begin_destroy(
        &self,
        me: &ActorRef<SandboxMsg>,
        state: &mut SandboxActorState,
        rec: SandboxRecord,
        by: Option<u32>,
    ) -> Result<(), ActorProcessingErr> {
        let event =
            NewEvent::sandbox(rec.vmid, "sandbox.destroy.started", Stage::Lifecycle, "destroy requested").by(by);
        self.ctx.store.patch_sandbox(
            rec.vmid,
            &SandboxPatch { provision_step: Some(Some("destroy".into())), ..Default::default() },
            Some(&event),
        )?;
        self.start_teardown(me, state, rec, AfterTeardown::Destroyed);
        Ok(())
    }

    /// Moves the record with `event` from whatever state it is in now; false if the table refuses.
    pub(super) fn move_by(
        &self,
        vmid: u32,
        event: SandboxEvent,
        error: Option<&str>,
    ) -> Result<Option<SandboxRecord>, ActorProcessingErr> {
        let rec = self.load(vmid)?;
        match sandbox_state::transition(rec.state, event) {
            Ok(to) => {
                self.ctx.store.transition_sandbox(vmid, rec.state, to, error, None)?;
                Ok(Some(self.load(vmid)?))
            }
            Err(_) => Ok(None),
        }
    }
}

impl Actor for SandboxActor {
    type Msg = SandboxMsg;
    type State = SandboxActorState;
    type Arguments = u32;

    async fn pre_start(
        &self,
        myself: ActorRef<SandboxMsg>,
        vmid: u32,
    ) -> Result<SandboxActorState, ActorProcessingErr> {
        // Only load here; every Proxmox check happens in handlers so failures reach the root.
        let rec = self.load(vmid)?;
        let state = SandboxActorState {
            vmid,
            name: format!("{}:{vmid}", super::KIND),
            work: None,
            settle_waiters: Vec::new(),
            destroy_waiters: Vec::new(),
            lease_timer: None,
            probe_timer: None,
            probing: false,
            generation: WorkGeneration::default(),
        };
        self.publish(&state, &rec);
        myself.send_message(SandboxMsg::Reconcile)?;
        Ok(state)
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<SandboxMsg>,
        state: &mut SandboxActorState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(timer) = state.lease_timer.take() {
            timer.abort();
        }
        if let Some(timer) = state.probe_timer.take() {
            timer.abort();
        }
        // Provisioning in flight is left to the record: the next start resumes it.
        if let Some(work) = state.work.take() {
            work.abort();
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<SandboxMsg>,
        msg: SandboxMsg,
        state: &mut SandboxActorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SandboxMsg::Reconcile => {
                let rec = self.load(state.vmid)?;
                self.publish(state, &rec);
                if rec.provision_step.as_deref() == Some("destroy") {
                    self.start_teardown(&myself, state, rec, AfterTeardown::Destroyed);
                    return Ok(());
                }
                match rec.state {
                    SandboxState::Requested | SandboxState::Provisioning | SandboxState::Booting => {
                        self.arm_timers(&myself, state, &rec);
                        self.start_provisioning(&myself, state, &rec);
                    }
                    SandboxState::Failed
                        if rec.snippet_path.is_some() || rec.node.is_some() && rec.provision_step.is_some() =>
                    {
                        // A failure whose cleanup was interrupted: finish it.
                        self.start_teardown(&myself, state, rec, AfterTeardown::KeepState);
                    }
                    SandboxState::Timeout => myself.send_message(SandboxMsg::LeaseExpired)?,
                    SandboxState::Destroyed => myself.stop(Some("sandbox destroyed".into())),
                    _ => {
                        self.arm_timers(&myself, state, &rec);
                        // The self-check: does the VM still exist, run, have its address?
                        myself.send_message(SandboxMsg::Probe)?;
                    }
                }
            }
            SandboxMsg::Get(reply) => {
                let _ = reply.send(self.ctx.store.get_sandbox(state.vmid)?.map(|r| r.view()));
            }
            SandboxMsg::WaitSettled(reply) => {
                state.settle_waiters.push(reply);
                let rec = self.load(state.vmid)?;
                if !Self::busy(state) {
                    self.settle(state, &rec);
                }
            }
            SandboxMsg::ProvisionDone { generation, .. } | SandboxMsg::TeardownDone { generation, .. }
                if !self.is_current(state, generation) => {}
            SandboxMsg::ProvisionDone { outcome, .. } => {
                state.work = None;
                match outcome {
                    Ok(()) => {
                        let rec = self.load(state.vmid)?;
                        self.publish(state, &rec);
                        self.arm_timers(&myself, state, &rec);
                        self.settle(state, &rec);
                    }
                    Err(failure) => {
                        let reason = format!("provisioning failed at step {}: {}", failure.step, failure.error);
                        tracing::warn!(vmid = state.vmid, %reason, "sandbox failed");
                        let event =
                            NewEvent::sandbox(state.vmid, "sandbox.provision_failed", Stage::Recovery, reason.clone())
                                .payload(serde_json::json!({"step": failure.step, "error": failure.error}));
                        self.ctx.store.append_event(&event)?;
                        let current = self.load(state.vmid)?;
                        if is_reboot(&current) {
                            // A sandbox that booted before keeps its VM and data: it is stopped,
                            // not torn down.
                            let patch = SandboxPatch { provision_step: Some(None), ..Default::default() };
                            self.ctx.store.patch_sandbox(state.vmid, &patch, None)?;
                            if let Some(rec) = self.move_by(state.vmid, SandboxEvent::Stop, Some(&reason))? {
                                self.publish(state, &rec);
                                self.settle(state, &rec);
                            }
                        } else if let Some(rec) = self.move_by(state.vmid, SandboxEvent::Fail, Some(&reason))? {
                            self.publish(state, &rec);
                            self.start_teardown(&myself, state, rec, AfterTeardown::KeepState);
                        }
                    }
                }
            }
            SandboxMsg::Destroy { force, by, reply } => {
                let rec = self.load(state.vmid)?;
                let op = if force { Operation::ForceDestroy } else { Operation::Destroy };
                match sandbox_ops::check(rec.state, op) {
                    Admission::AlreadyDone => {
                        let _ = reply.send(Ok(rec.view()));
                    }
                    Admission::Refused => {
                        let valid: Vec<&str> = sandbox_ops::allowed_states(op).iter().map(|s| s.as_str()).collect();
                        let _ = reply.send(Err(op_error(
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
                        if rec.provision_step.as_deref() != Some("destroy") {
                            self.begin_destroy(&myself, state, rec, by)?;
                        }
                    }
                }
            }
            SandboxMsg::TeardownDone { result, then, .. } => {
                state.work = None;
                let rec = self.load(state.vmid)?;
                match (result, then) {
                    (Ok(()), AfterTeardown::Destroyed) => {
                        // DESTROYED first: a crash right after leaves a finished record.
                        let rec = match self.move_by(state.vmid, SandboxEvent::Destroy, None)? {
                            Some(rec) => rec,
                            None => rec,
                        };
                        let patch = SandboxPatch { provision_step: Some(None), ..Default::default() };
                        self.ctx.store.patch_sandbox(state.vmid, &patch, None)?;
                        self.publish(state, &rec);
                        for waiter in state.destroy_waiters.drain(..) {
                            let _ = waiter.send(Ok(rec.view()));
                        }
                        self.settle(state, &rec);
                        super::notify_job(&rec, crate::model::SandboxNotice::Destroyed);
                        myself.stop(Some("sandbox destroyed".into()));
                    }
                    (Ok(()), AfterTeardown::KeepState) => {
                        let patch = SandboxPatch { provision_step: Some(None), ..Default::default() };
                        self.ctx.store.patch_sandbox(state.vmid, &patch, None)?;
                        let rec = self.load(state.vmid)?;
                        self.settle(state, &rec);
                        self.arm_timers(&myself, state, &rec);
                    }
                    (Err(error), _) => {
                        let (code, kind) = match &error {
                            TeardownError::NotOurs(_) => (ErrorCode::Conflict, "sandbox.destroy.refused"),
                            TeardownError::Failed(_) => (ErrorCode::Internal, "sandbox.destroy.failed"),
                        };
                        let event = NewEvent::sandbox(state.vmid, kind, Stage::Lifecycle, error.to_string());
                        let patch = SandboxPatch { provision_step: Some(None), ..Default::default() };
                        self.ctx.store.patch_sandbox(state.vmid, &patch, Some(&event))?;
                        for waiter in state.destroy_waiters.drain(..) {
                            let _ = waiter.send(Err(op_error(code, error.to_string())));
                        }
                        // A teardown that failed mid-provisioning leaves nothing running: the
                        // sandbox fails (with the reason) rather than stay provisioning forever.
                        let rec = if matches!(
                            rec.state,
                            SandboxState::Requested | SandboxState::Provisioning | SandboxState::Booting
                        ) {
                            self.move_by(state.vmid, SandboxEvent::Fail, Some(&error.to_string()))?.unwrap_or(rec)
                        } else {
                            rec
                        };
                        self.publish(state, &rec);
                        self.settle(state, &rec);
                    }
                }
            }
            SandboxMsg::RenewLease { until, by, reply } => {
                let rec = self.load(state.vmid)?;
                if sandbox_ops::check(rec.state, Operation::LeaseRenew) != Admission::Allowed {
                    let _ = reply.send(Err(op_error(
                        ErrorCode::InvalidState,
                        format!(
                            "cannot renew the lease of sandbox {} in state {}: leases are renewed only while RUNNING",
                            rec.vmid, rec.state
                        ),
                    )));
                    return Ok(());
                }
                let event =
                    NewEvent::sandbox(rec.vmid, "sandbox.lease", Stage::Lease, format!("lease renewed until {until}"))
                        .payload(serde_json::json!({"expires_at": until}))
                        .by(by);
                self.ctx.store.patch_sandbox(
                    rec.vmid,
                    &SandboxPatch { lease_expires_at: Some(Some(until)), ..Default::default() },
                    Some(&event),
                )?;
                let rec = self.load(state.vmid)?;
                self.publish(state, &rec);
                self.arm_timers(&myself, state, &rec);
                let _ = reply.send(Ok(rec.view()));
            }
            SandboxMsg::LeaseExpired => self.on_lease_expired(&myself, state)?,
            SandboxMsg::StopDone { result, generation } => {
                if self.is_current(state, generation) {
                    self.on_stop_done(state, result)?
                }
            }
            SandboxMsg::Probe => self.on_probe(&myself, state)?,
            SandboxMsg::Probed { result, ip, moved_to, generation } => {
                state.probing = false;
                if self.is_current(state, generation) {
                    self.on_probed(&myself, state, result, ip, moved_to)?
                }
            }
            SandboxMsg::Run { op, force, by, reply } => self.on_run(&myself, state, op, force, by, reply)?,
            SandboxMsg::RunDone { op, reply, generation, .. } if !self.is_current(state, generation) => {
                let _ = reply.send(Err(op_error(
                    ErrorCode::Conflict,
                    format!("{} of sandbox {} was superseded by later work", op.name(), state.vmid),
                )));
            }
            SandboxMsg::RunDone { op, result, reply, .. } => self.on_run_done(&myself, state, op, result, reply)?,
            SandboxMsg::JobEvent(event) => {
                if let Some(rec) = self.move_by(state.vmid, event, None)? {
                    self.publish(state, &rec);
                }
            }
            #[cfg(debug_assertions)]
            SandboxMsg::Panic => panic!("sandbox {} panicked on request (test hook)", state.vmid),
        }
        Ok(())
    }
}
