//! The `pve` gateway: the only caller of Proxmox.
//!
//! Operations arrive as `Submit(PveCall)`. The actor only decides their order (one mutating
//! operation per VMID at a time, in arrival order) and spawns them; the policy of
//! `gateway` (clone caps, template exclusion, task cap, retries) runs on each job's own
//! task, and the transport is rate limited (`rate_limit`). So the mailbox never waits on
//! Proxmox, and `status` answers at once even while Proxmox hangs. A timer probes
//! reachability, the token, the nodes and the firewall switches.

mod calls;
mod gateway;
mod probe;
pub mod rate_limit;
mod retry;
pub mod stats;

pub use calls::CLONE_LOCK_POLLS;
pub use gateway::{Gateway, GatewayLimits, OpSpec, PveCall, Shared, Turn};
pub use probe::datacenter_enabled;
use probe::probe;
pub use retry::{RetryPolicy, is_retryable};

use crate::events;
use crate::model::EventKind;

use crate::protocol::ProxmoxStatus;
use crate::store::{NewEvent, Stage};
use agentlab_proxmox::{Pve, PveError};
use ractor::concurrency::JoinHandle;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

pub const PVE_ACTOR: &str = "pve";

pub enum PveMsg {
    /// The last known state of Proxmox. Before the first probe has finished, the reply
    /// waits for it.
    Health(RpcReplyPort<ProxmoxStatus>),
    /// Check Proxmox now (also sent by the probe timer).
    Probe,
    /// A probe's outcome.
    Probed(Box<ProxmoxStatus>),
    /// An operation to schedule.
    Submit(PveCall),
    /// Operation counts and latencies.
    Stats(RpcReplyPort<BTreeMap<(String, String), stats::OpStat>>),
}

pub struct PveGatewayArgs {
    pub pve: Arc<dyn Pve>,
    pub probe_interval: Duration,
    pub limits: GatewayLimits,
}

/// A `Gateway` that submits to the running `pve` actor.
pub fn gateway() -> Gateway {
    Gateway::new(|job| match ActorRef::<PveMsg>::where_is(PVE_ACTOR) {
        Some(actor) => actor
            .send_message(PveMsg::Submit(job))
            .map_err(|_| PveError::Transient("the pve gateway is stopping".into())),
        None => Err(PveError::Transient("the pve gateway is not running".into())),
    })
}

pub struct PveGateway;

pub struct PveGatewayState {
    shared: Arc<Shared>,
    status: ProxmoxStatus,
    probing: bool,
    probed_once: bool,
    waiting: Vec<RpcReplyPort<ProxmoxStatus>>,
    probe_interval: Duration,
    probe_timer: Option<JoinHandle<()>>,
    /// Per VMID: completion of the last operation queued for it.
    tails: HashMap<u32, oneshot::Receiver<()>>,
}

impl Actor for PveGateway {
    type Msg = PveMsg;
    type State = PveGatewayState;
    type Arguments = PveGatewayArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<PveMsg>,
        args: PveGatewayArgs,
    ) -> Result<PveGatewayState, ActorProcessingErr> {
        let status = ProxmoxStatus {
            backend: args.pve.backend().to_string(),
            endpoint: args.pve.endpoint(),
            reachable: false,
            version: None,
            error: Some("not checked yet".to_string()),
            error_class: None,
            checked_at: None,
            token_ok: None,
            nodes: Vec::new(),
            firewall: None,
            privileges: None,
            storages: Vec::new(),
        };
        myself.send_message(PveMsg::Probe)?;
        Ok(PveGatewayState {
            shared: Arc::new(Shared::new(args.pve, args.limits)),
            status,
            probing: false,
            probed_once: false,
            waiting: Vec::new(),
            probe_interval: args.probe_interval,
            probe_timer: None,
            tails: HashMap::new(),
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<PveMsg>,
        state: &mut PveGatewayState,
    ) -> Result<(), ActorProcessingErr> {
        state.probe_timer = Some(myself.send_interval(state.probe_interval, || PveMsg::Probe));
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<PveMsg>,
        state: &mut PveGatewayState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(timer) = state.probe_timer.take() {
            timer.abort();
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<PveMsg>,
        msg: PveMsg,
        state: &mut PveGatewayState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            PveMsg::Health(reply) => {
                if state.probed_once {
                    let _ = reply.send(state.status.clone());
                } else {
                    state.waiting.push(reply);
                }
            }
            PveMsg::Probe => {
                if !state.probing {
                    state.probing = true;
                    let pve = Arc::clone(&state.shared.pve);
                    let base = state.status.clone();
                    let me = myself.clone();
                    tokio::spawn(async move {
                        let status = probe(pve.as_ref(), base).await;
                        // The gateway may have stopped meanwhile; then nobody needs the answer.
                        let _ = me.send_message(PveMsg::Probed(Box::new(status)));
                    });
                }
            }
            PveMsg::Probed(status) => {
                state.probing = false;
                let was_reachable = state.probed_once.then_some(state.status.reachable);
                state.probed_once = true;
                if status.reachable && was_reachable == Some(false) {
                    events::emit(NewEvent::new(
                        EventKind::ProxmoxReachable,
                        Stage::Recovery,
                        "Proxmox is reachable again",
                    ));
                }
                if !status.reachable && was_reachable != Some(false) {
                    let error = status.error.clone().unwrap_or_default();
                    tracing::warn!(%error, "proxmox unreachable");
                    events::emit(
                        NewEvent::new(EventKind::ProxmoxUnreachable, Stage::Recovery, error)
                            .payload(serde_json::json!({"class": status.error_class})),
                    );
                }
                state.status = *status;
                for reply in state.waiting.drain(..) {
                    let _ = reply.send(state.status.clone());
                }
            }
            PveMsg::Submit(job) => {
                let (after, done) = match job.spec.vmid {
                    Some(vmid) => {
                        let (tx, rx) = oneshot::channel();
                        (state.tails.insert(vmid, rx), Some(tx))
                    }
                    None => (None, None),
                };
                // Forget queues whose last operation has finished.
                state
                    .tails
                    .retain(|_, rx| !matches!(rx.try_recv(), Ok(()) | Err(oneshot::error::TryRecvError::Closed)));
                let admission = Turn { shared: Arc::clone(&state.shared), after, done };
                tokio::spawn((job.run)(admission));
            }
            PveMsg::Stats(reply) => {
                let _ = reply.send(state.shared.stats.snapshot());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::model::NetworkMode;
    use agentlab_netfilter::Mode;

    #[test]
    fn the_model_and_netfilter_agree_on_group_names() {
        let pairs =
            [(NetworkMode::Off, Mode::Off), (NetworkMode::Nat, Mode::Nat), (NetworkMode::Allowlist, Mode::Allowlist)];
        assert_eq!(pairs.map(|(model, _)| model), NetworkMode::ALL);
        for (model, netfilter) in pairs {
            assert_eq!(model.security_group(), netfilter.group_name());
        }
    }
}
