//! The sandbox actor: its state, the helpers every handler uses, and `handle`, one line per
//! message. What each message does lives with its concern: `lifecycle` (provisioning,
//! teardown, destroy), `lease`, `health` (the probe), `operate` (operator operations); the
//! decisions themselves are pure functions in `decide`.
//!
//! Invariants: the mailbox never waits on Proxmox (work runs on a task and reports back);
//! only the actor writes the record's state; a completion of superseded work is dropped;
//! a store error is returned (the root restarts the actor from its record).

use super::SandboxContext;
use super::generation::WorkGeneration;
use super::msg::{OpReply, SandboxMsg, Settled};
use crate::model::{SandboxEvent, sandbox_state};
use crate::store::{SandboxRecord, StoreError};
use ractor::concurrency::JoinHandle;
use ractor::{Actor, ActorProcessingErr, ActorRef, MessagingErr, RpcReplyPort};
use std::future::Future;
use std::sync::Arc;

pub struct SandboxActor {
    pub ctx: Arc<SandboxContext>,
}

/// Who is waiting for provisioning to end, and how they want the answer.
pub(super) enum Waiter {
    Settled(RpcReplyPort<Settled>),
    /// An operation that booted the sandbox (start, revert) answers once it is up.
    Operation(OpReply),
}

/// A timer that sends the actor one message.
pub(super) type Timer = JoinHandle<Result<(), MessagingErr<SandboxMsg>>>;

pub struct SandboxActorState {
    pub(super) vmid: u32,
    pub(super) name: String,
    /// The work in flight (a provisioning step, a teardown, an operation, the keepalive stop).
    pub(super) work: Option<tokio::task::JoinHandle<()>>,
    /// Which spawned work's completion is still acted on.
    pub(super) generation: WorkGeneration,
    pub(super) settle_waiters: Vec<Waiter>,
    pub(super) destroy_waiters: Vec<OpReply>,
    pub(super) lease_timer: Option<Timer>,
    pub(super) probing: bool,
    /// The provisioning deadline's timer, and its number (a fired timer of an earlier
    /// provisioning is ignored).
    pub(super) provisioning_deadline: Option<(u64, Timer)>,
    pub(super) deadlines_armed: u64,
    /// The next idle check, when idle-stop applies (`idle`).
    pub(super) idle_timer: Option<Timer>,
    /// When the sandbox was last seen in use (in memory; the record's times count too).
    pub(super) idle_active_at: Option<time::OffsetDateTime>,
    /// An idle probe's failure was recorded; cleared when a probe succeeds.
    pub(super) idle_failure_recorded: bool,
}

impl SandboxActorState {
    /// Work is in flight until its completion has been handled (a task that has finished
    /// but whose message still waits in the mailbox counts: acting before it would
    /// supersede it and drop its outcome). Completion handlers clear `work`.
    pub(super) fn busy(&self) -> bool {
        self.work.is_some()
    }
}

impl SandboxActor {
    pub(super) fn load(&self, vmid: u32) -> Result<SandboxRecord, StoreError> {
        self.ctx.store.get_sandbox(vmid)?.ok_or(StoreError::SandboxNotFound(vmid))
    }

    pub(super) fn publish(&self, state: &SandboxActorState, rec: &SandboxRecord) {
        self.ctx.directory.set_state(&state.name, rec.state.as_str());
        self.ctx.directory.set_lease(&state.name, rec.lease_expires_at);
    }

    /// Whether a completion belongs to the work now in force; a stale one is logged and dropped.
    pub(super) fn is_current(&self, state: &SandboxActorState, generation: u64) -> bool {
        let current = state.generation.is_current(generation);
        if !current {
            tracing::debug!(vmid = state.vmid, generation, "dropping the completion of superseded work");
        }
        current
    }

    /// Runs `work` on a task as the sandbox's new current work (what ran before is
    /// superseded); its outcome comes back as the message `done` makes of it.
    pub(super) fn spawn_work<T: Send + 'static>(
        &self,
        me: &ActorRef<SandboxMsg>,
        state: &mut SandboxActorState,
        work: impl Future<Output = T> + Send + 'static,
        done: impl FnOnce(T, u64) -> SandboxMsg + Send + 'static,
    ) {
        let generation = state.generation.advance();
        let me = me.clone();
        state.work = Some(tokio::spawn(async move {
            let outcome = work.await;
            let _ = me.send_message(done(outcome, generation));
        }));
    }

    /// Moves the record with `event`, from whatever state it is in now. `None` when the
    /// table refuses, which each caller's decision allows for (a job event arriving before
    /// READY, a stop of a sandbox that is already stopped).
    pub(super) fn move_by(
        &self,
        vmid: u32,
        event: SandboxEvent,
        error: Option<&str>,
    ) -> Result<Option<SandboxRecord>, StoreError> {
        let rec = self.load(vmid)?;
        match sandbox_state::transition(rec.state, event) {
            Ok(to) => {
                self.ctx.store.transition_sandbox(vmid, rec.state, to, error, None)?;
                Ok(Some(self.load(vmid)?))
            }
            Err(_) => Ok(None),
        }
    }

    fn on_get(
        &self,
        state: &SandboxActorState,
        reply: RpcReplyPort<Option<crate::protocol::SandboxView>>,
    ) -> Result<(), StoreError> {
        let _ = reply.send(self.ctx.store.get_sandbox(state.vmid)?.map(|r| r.view()));
        Ok(())
    }

    /// The job moved the sandbox. A job that fails while its sandbox is still provisioning
    /// ends the provisioning too: the step in flight is dropped and whoever waits is told.
    fn on_job_changed(&self, state: &mut SandboxActorState, event: SandboxEvent) -> Result<(), StoreError> {
        let before = self.load(state.vmid)?.state;
        if let Some(rec) = self.move_by(state.vmid, event, None)? {
            self.publish(state, &rec);
            if before.is_provisioning() && !rec.state.is_provisioning() {
                if let Some(work) = state.work.take() {
                    work.abort();
                }
                state.generation.advance();
                Self::disarm_provisioning_deadline(state);
                let patch = crate::store::SandboxPatch { intent: Some(None), ..Default::default() };
                self.ctx.store.patch_sandbox(state.vmid, &patch, None)?;
                self.settle(state, &rec);
            }
        }
        Ok(())
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
            generation: WorkGeneration::default(),
            settle_waiters: Vec::new(),
            destroy_waiters: Vec::new(),
            lease_timer: None,
            probing: false,
            provisioning_deadline: None,
            deadlines_armed: 0,
            idle_timer: None,
            idle_active_at: None,
            idle_failure_recorded: false,
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
        if let Some((_, timer)) = state.provisioning_deadline.take() {
            timer.abort();
        }
        if let Some(timer) = state.idle_timer.take() {
            timer.abort();
        }
        // Work in flight is left to the record: the next actor resumes it.
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
        use SandboxMsg as M;
        let me = &myself;
        match msg {
            M::Reconcile => self.on_reconcile(me, state)?,
            M::Get(reply) => self.on_get(state, reply)?,
            M::WaitSettled(reply) => self.on_wait_settled(state, reply)?,
            M::Destroy { force, by, reply } => self.on_destroy(me, state, force, by, reply)?,
            M::RenewLease { until, by, reply } => self.on_renew_lease(me, state, until, by, reply)?,
            M::Operate { op, force, by, reply } => self.on_operate(me, state, op, force, by, reply)?,
            M::JobChanged(event) => self.on_job_changed(state, event)?,
            M::Probe => self.on_probe(me, state)?,
            M::Census { seen, refresh_address } => self.on_census(me, state, seen, refresh_address)?,
            M::LeaseTimerFired => self.on_lease_timer(me, state)?,
            M::IdleCheck => self.on_idle_check(me, state)?,
            M::IdleProbed { evidence, generation } => self.on_idle_probed(me, state, evidence, generation)?,
            M::ProvisioningTimedOut { deadline } => self.on_provisioning_timed_out(me, state, deadline)?,
            M::StepDone { generation, .. } if !self.is_current(state, generation) => {}
            M::StepDone { step, result, .. } => self.on_step_done(me, state, step, result)?,
            M::TeardownDone { generation, .. } if !self.is_current(state, generation) => {}
            M::TeardownDone { result, then, .. } => self.on_teardown_done(me, state, result, then)?,
            M::Operated { op, reply, generation, .. } if !self.is_current(state, generation) => {
                Self::superseded(state, &op, reply)
            }
            M::Operated { op, result, reply, .. } => self.on_operated(me, state, op, result, reply)?,
            M::KeepaliveStopped { generation, .. } if !self.is_current(state, generation) => {}
            M::KeepaliveStopped { result, .. } => self.on_keepalive_stopped(state, result)?,
            M::Probed { result, ip, moved_to, generation } => {
                self.on_probed(me, state, result, ip, moved_to, generation)?
            }
            #[cfg(debug_assertions)]
            M::Panic => panic!("sandbox {} panicked on request (test hook)", state.vmid),
        }
        Ok(())
    }
}
