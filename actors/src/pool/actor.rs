//! The `pool:main` actor: looks at the pools (on a timer, after a claim, after a profile
//! reload, after its own work), and does what `plan` says. Its mailbox never waits on
//! Proxmox: each refill and each drain runs on a task and reports back.
//!
//! A refill counts as in flight from the ask until its record is written (`Allocated`);
//! from then on the provisioning record counts itself, toward its profile's size and
//! `pool_refill_concurrency`. After a restart nothing is in flight and the records count.

use super::{PoolContext, plan};
use crate::model::EventKind;
use crate::sandbox::allocate::{SandboxRequest, allocate};
use crate::store::{NewEvent, Stage, StoreError};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::collections::HashSet;
use std::sync::Arc;

pub struct PoolActor {
    pub ctx: Arc<PoolContext>,
}

pub enum PoolMsg {
    /// Look at the pools and act on the plan.
    Look,
    /// A refill of `profile` has its record now (or failed before it): the record counts
    /// from here on.
    Allocated { profile: String },
    /// A refill ended: the VMID of the sandbox now READY, or why there is none.
    Refilled(Result<u32, String>),
    /// A drain ended (`ok`: the sandbox is destroyed).
    Drained { vmid: u32, ok: bool },
}

pub struct PoolState {
    in_flight: plan::InFlight,
    draining: HashSet<u32>,
    /// The last refill failure recorded, so a failing Proxmox leaves one event, not one per look.
    last_failure: Option<String>,
    timer: Option<tokio::task::JoinHandle<()>>,
}

impl PoolActor {
    fn look(&self, me: &ActorRef<PoolMsg>, state: &mut PoolState) -> Result<(), StoreError> {
        let sandboxes = &self.ctx.sandboxes;
        let members = sandboxes.store.pooled_sandboxes()?;
        let wants = super::wants(&sandboxes.profiles);
        let plan = plan::plan(&wants, &members, self.ctx.limits, &state.in_flight);
        for (vmid, why) in plan.drain {
            if !state.draining.insert(vmid) {
                continue;
            }
            if !sandboxes.store.mark_pool_draining(vmid)? {
                // Claimed since the plan was made: no longer the pool's.
                state.draining.remove(&vmid);
                continue;
            }
            tracing::info!(vmid, %why, "draining a pooled sandbox");
            let event = NewEvent::sandbox(vmid, EventKind::PoolDrained, Stage::Lifecycle, format!("drained: {why}"));
            sandboxes.store.append_event(&event)?;
            let (store, me) = (Arc::clone(&sandboxes.store), me.clone());
            tokio::spawn(async move {
                let _ = me.send_message(PoolMsg::Drained { vmid, ok: drain(&store, vmid).await });
            });
        }
        for profile in plan.fill {
            let Some(want) = wants.iter().find(|w| w.profile == profile) else { continue };
            *state.in_flight.entry(want.profile.clone()).or_default() += 1;
            let request = SandboxRequest {
                profile: want.profile.clone(),
                // No tags: the VM's Proxmox tags are written at clone time, before any owner.
                pool: Some(want.fingerprint.clone()),
                ..Default::default()
            };
            let (ctx, me) = (Arc::clone(sandboxes), me.clone());
            tokio::spawn(async move {
                let _ = me.send_message(PoolMsg::Refilled(refill(&ctx, &request, &me).await));
            });
        }
        Ok(())
    }

    fn on_refilled(
        &self,
        me: &ActorRef<PoolMsg>,
        state: &mut PoolState,
        result: Result<u32, String>,
    ) -> Result<(), StoreError> {
        match result {
            Ok(vmid) => {
                tracing::info!(vmid, "a pooled sandbox is READY");
                state.last_failure = None;
                self.look(me, state)
            }
            // Not retried at once: the next look (the timer's) tries again.
            Err(why) if state.last_failure.as_deref() != Some(why.as_str()) => {
                tracing::warn!(%why, "the warm pool could not add a sandbox");
                let msg = format!("the warm pool could not add a sandbox: {why}");
                self.ctx.sandboxes.store.append_event(&NewEvent::new(
                    EventKind::PoolRefillFailed,
                    Stage::Lifecycle,
                    msg,
                ))?;
                state.last_failure = Some(why);
                Ok(())
            }
            Err(_) => Ok(()),
        }
    }
}

/// Destroys a pooled sandbox the pool no longer wants.
async fn drain(store: &crate::store::Store, vmid: u32) -> bool {
    match crate::sandbox::remote::destroy(store, vmid).await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(vmid, error = %e.message, "draining a pooled sandbox failed; the pool tries again");
            false
        }
    }
}

/// Allocates one pooled sandbox, starts its actor and waits until it is READY.
async fn refill(
    ctx: &crate::sandbox::SandboxContext,
    request: &SandboxRequest,
    pool: &ActorRef<PoolMsg>,
) -> Result<u32, String> {
    let allocated = allocate(ctx, request).await;
    let _ = pool.send_message(PoolMsg::Allocated { profile: request.profile.clone() });
    let record = allocated.map_err(|e| e.to_string())?;
    crate::root::request_spawn(crate::sandbox::KIND, &record.vmid.to_string()).await.map_err(|e| e.to_string())?;
    let wait = ctx.settings.provisioning_timeout + std::time::Duration::from_secs(60);
    crate::sandbox::remote::wait_ready(record.vmid, wait).await.map_err(|e| e.message)?;
    Ok(record.vmid)
}

impl Actor for PoolActor {
    type Msg = PoolMsg;
    type State = PoolState;
    type Arguments = ();

    async fn pre_start(&self, myself: ActorRef<PoolMsg>, _: ()) -> Result<PoolState, ActorProcessingErr> {
        let timer = myself.send_interval(self.ctx.interval, || PoolMsg::Look);
        myself.send_message(PoolMsg::Look)?;
        Ok(PoolState {
            in_flight: plan::InFlight::new(),
            draining: HashSet::new(),
            last_failure: None,
            timer: Some(timer),
        })
    }

    async fn post_stop(&self, _: ActorRef<PoolMsg>, state: &mut PoolState) -> Result<(), ActorProcessingErr> {
        if let Some(timer) = state.timer.take() {
            timer.abort();
        }
        Ok(())
    }

    async fn handle(
        &self,
        me: ActorRef<PoolMsg>,
        msg: PoolMsg,
        state: &mut PoolState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            PoolMsg::Look => self.look(&me, state)?,
            PoolMsg::Allocated { profile } => {
                if let Some(n) = state.in_flight.get_mut(&profile) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        state.in_flight.remove(&profile);
                    }
                }
            }
            PoolMsg::Refilled(result) => self.on_refilled(&me, state, result)?,
            PoolMsg::Drained { vmid, ok } => {
                state.draining.remove(&vmid);
                // A failed drain waits for the timer: no hot loop while Proxmox is away.
                if ok {
                    self.look(&me, state)?;
                }
            }
        }
        Ok(())
    }
}
