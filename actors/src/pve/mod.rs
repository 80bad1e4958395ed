//! The `pve` gateway: the only caller of Proxmox.
//!
//! It never awaits Proxmox in its own handler: each call runs on a spawned task and its
//! result comes back as a message, so `status` answers at once even while Proxmox hangs.
//! For now it probes reachability (`GET /version`) on a timer; the Proxmox issue adds the
//! rate limit, per-VM ordering, clone caps and retries here.

use crate::events;
use crate::model::time_format;
use crate::protocol::ProxmoxStatus;
use crate::store::{NewEvent, Stage};
use agentlab_proxmox::{Pve, PveError, PveVersion};
use ractor::concurrency::JoinHandle;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use std::sync::Arc;
use std::time::Duration;

pub const PVE_ACTOR: &str = "pve";

pub enum PveMsg {
    /// The last known reachability. Before the first probe has finished, the reply waits
    /// for it.
    Health(RpcReplyPort<ProxmoxStatus>),
    /// Check reachability now (also sent by the probe timer).
    Probe,
    /// A probe's outcome.
    Probed(Result<PveVersion, PveError>),
}

pub struct PveGatewayArgs {
    pub pve: Arc<dyn Pve>,
    pub probe_interval: Duration,
}

pub struct PveGateway;

pub struct PveGatewayState {
    pve: Arc<dyn Pve>,
    status: ProxmoxStatus,
    probing: bool,
    probed_once: bool,
    waiting: Vec<RpcReplyPort<ProxmoxStatus>>,
    probe_interval: Duration,
    probe_timer: Option<JoinHandle<()>>,
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
        };
        myself.send_message(PveMsg::Probe)?;
        Ok(PveGatewayState {
            pve: args.pve,
            status,
            probing: false,
            probed_once: false,
            waiting: Vec::new(),
            probe_interval: args.probe_interval,
            probe_timer: None,
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
                    let pve = Arc::clone(&state.pve);
                    let me = myself.clone();
                    tokio::spawn(async move {
                        let result = pve.version().await;
                        // The gateway may have stopped meanwhile; then nobody needs the answer.
                        let _ = me.send_message(PveMsg::Probed(result));
                    });
                }
            }
            PveMsg::Probed(result) => {
                state.probing = false;
                let was_reachable = state.probed_once.then_some(state.status.reachable);
                state.probed_once = true;
                state.status.checked_at = Some(time_format::now());
                match result {
                    Ok(version) => {
                        state.status.reachable = true;
                        state.status.version = Some(format!("{} (release {})", version.version, version.release));
                        state.status.error = None;
                        state.status.error_class = None;
                        if was_reachable == Some(false) {
                            events::emit(NewEvent::new(
                                "proxmox.reachable",
                                Stage::Recovery,
                                "Proxmox is reachable again",
                            ));
                        }
                    }
                    Err(error) => {
                        state.status.reachable = false;
                        state.status.error = Some(error.to_string());
                        state.status.error_class = Some(error.class().as_str().to_string());
                        if was_reachable != Some(false) {
                            tracing::warn!(%error, "proxmox unreachable");
                            events::emit(
                                NewEvent::new("proxmox.unreachable.failed", Stage::Recovery, error.to_string())
                                    .payload(serde_json::json!({"class": error.class().as_str()})),
                            );
                        }
                    }
                }
                for reply in state.waiting.drain(..) {
                    let _ = reply.send(state.status.clone());
                }
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
        for (model, netfilter) in pairs {
            assert_eq!(model.security_group(), netfilter.group_name());
        }
    }
}
