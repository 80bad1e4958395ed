//! The lease: its timer, what expiry does (destroy, or stop and keep with keepalive),
//! renewal, and the fresh lease a boot on an expired one gets.

use super::actor::{SandboxActor, SandboxActorState};
use super::decide::{self, AfterExpiry, OnLeaseTimer};
use super::error::SandboxError;
use super::msg::{OpReply, SandboxMsg};
use crate::model::EventKind;
use crate::model::{Admission, ErrorCode, Operation, Refusal, SandboxEvent, SandboxNotice, sandbox_ops, time_format};
use crate::store::{NewEvent, SandboxPatch, SandboxRecord, Stage, StoreError};
use agentlab_proxmox::PveError;
use agentlab_proxmox::types::VmAction;
use ractor::ActorRef;
use std::sync::Arc;

impl SandboxActor {
    /// (Re)arms the lease timer from the record. (The VM's health comes from the census,
    /// `census.rs`, not from a timer per sandbox.)
    pub(super) fn arm_timers(&self, me: &ActorRef<SandboxMsg>, state: &mut SandboxActorState, rec: &SandboxRecord) {
        if let Some(timer) = state.lease_timer.take() {
            timer.abort();
        }
        if let Some(expires) = rec.lease_expires_at {
            let delay = self.ctx.settings.clock.until(expires);
            state.lease_timer = Some(me.send_after(delay, || SandboxMsg::LeaseTimerFired));
        }
        self.arm_idle_check(me, state, rec);
    }

    pub(super) fn on_lease_timer(
        &self,
        me: &ActorRef<SandboxMsg>,
        state: &mut SandboxActorState,
    ) -> Result<(), StoreError> {
        let rec = self.load(state.vmid)?;
        match decide::on_lease_timer(&rec, self.ctx.settings.clock.now()) {
            OnLeaseTimer::NotYet => {
                self.arm_timers(me, state, &rec);
                return Ok(());
            }
            OnLeaseTimer::AlreadyDestroying => return Ok(()),
            OnLeaseTimer::Expire => {}
        }
        super::notify_job(&rec, SandboxNotice::LeaseExpired);
        let rec = match self.move_by(state.vmid, SandboxEvent::LeaseExpired, Some("lease expired"))? {
            Some(rec) => {
                let event = NewEvent::sandbox(rec.vmid, EventKind::LeaseExpired, Stage::Lease, "lease expired");
                self.ctx.store.append_event(&event)?;
                rec
            }
            None => rec,
        };
        self.publish(state, &rec);
        match decide::after_expiry(rec.state, rec.keepalive) {
            AfterExpiry::StopAndKeep => self.stop_and_keep(me, state, &rec),
            AfterExpiry::Destroy => self.begin_destroy(me, state, None)?,
            AfterExpiry::Nothing => {}
        }
        self.settle(state, &self.load(state.vmid)?);
        Ok(())
    }

    fn stop_and_keep(&self, me: &ActorRef<SandboxMsg>, state: &mut SandboxActorState, rec: &SandboxRecord) {
        if let Some(work) = state.work.take() {
            work.abort();
        }
        let (ctx, vmid, node) = (Arc::clone(&self.ctx), rec.vmid, rec.node.clone());
        let stop = async move {
            let Some(node) = node else { return Ok(()) };
            match ctx.gateway.vm_action(&node, vmid, VmAction::Stop).await {
                Ok(_) | Err(PveError::NotFound(_)) => Ok(()),
                Err(e) => Err(SandboxError::pve("stopping the VM at lease expiry")(e)),
            }
        };
        self.spawn_work(me, state, stop, |result, generation| SandboxMsg::KeepaliveStopped { result, generation });
    }

    pub(super) fn on_keepalive_stopped(
        &self,
        state: &mut SandboxActorState,
        result: Result<(), SandboxError>,
    ) -> Result<(), StoreError> {
        state.work = None;
        match result {
            Ok(()) => {
                if let Some(rec) = self.move_by(state.vmid, SandboxEvent::Stop, None)? {
                    self.publish(state, &rec);
                }
            }
            Err(e) => {
                let event = NewEvent::sandbox(state.vmid, EventKind::StopFailed, Stage::Lifecycle, e.to_string());
                self.ctx.store.append_event(&event)?;
            }
        }
        Ok(())
    }

    pub(super) fn on_renew_lease(
        &self,
        me: &ActorRef<SandboxMsg>,
        state: &mut SandboxActorState,
        until: time::OffsetDateTime,
        by: Option<u32>,
        reply: OpReply,
    ) -> Result<(), StoreError> {
        let rec = self.load(state.vmid)?;
        if sandbox_ops::check(rec.state, Operation::LeaseRenew) != Admission::Allowed {
            let _ = reply.send(Err(Refusal::new(
                ErrorCode::InvalidState,
                format!(
                    "cannot renew the lease of sandbox {} in state {}: leases are renewed while READY or RUNNING",
                    rec.vmid, rec.state
                ),
            )));
            return Ok(());
        }
        let event = NewEvent::sandbox(
            rec.vmid,
            EventKind::LeaseRenewed,
            Stage::Lease,
            format!("lease renewed until {}", time_format::format(until)),
        )
        .payload(serde_json::json!({"expires_at": time_format::format(until)}))
        .by(by);
        let patch = SandboxPatch { lease_expires_at: Some(Some(until)), ..Default::default() };
        self.ctx.store.patch_sandbox(rec.vmid, &patch, Some(&event))?;
        let rec = self.load(state.vmid)?;
        self.publish(state, &rec);
        self.arm_timers(me, state, &rec);
        let _ = reply.send(Ok(rec.view()));
        Ok(())
    }

    /// The new lease deadline for a boot, when the recorded lease has already expired: a
    /// sandbox booted on an expired lease would time out at once.
    pub(super) fn lease_on_boot(&self, rec: &SandboxRecord) -> Option<time::OffsetDateTime> {
        let minutes = rec.ttl_minutes?;
        let expires = rec.lease_expires_at?;
        let now = self.ctx.settings.clock.now();
        (expires <= now).then(|| now + self.ctx.settings.lease_minute * minutes)
    }
}
