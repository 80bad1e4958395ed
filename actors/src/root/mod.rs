//! The root supervisor: parent of every actor in the daemon.
//!
//! It spawns the service actors (`events`, `pve`), then one actor per live entity record,
//! and restarts a failed actor from its record with exponential back-off; after
//! `RestartPolicy::max_failures` failures in the window the entity is given up on
//! (its factory marks it FAILED). `debug actors` asks it for the live tree.

mod directory;
mod entity;
mod restart_budget;
#[cfg(test)]
mod tests;

pub use directory::{ActorDirectory, ActorEntry};
pub use entity::{Background, EntityError, EntityFactory, SpawnError, SpawnFuture, entity_name, split_name};
pub use restart_budget::{RestartBudget, RestartPolicy, Verdict};

use crate::events::{EVENTS_ACTOR, EventLog, emit};
use crate::model::EventKind;
use crate::protocol::ActorView;
use crate::pve::{GatewayLimits, PVE_ACTOR, PveGateway, PveGatewayArgs};
use crate::store::{NewEvent, Stage, Store};
use agentlab_proxmox::Pve;
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

pub const ROOT_ACTOR: &str = "root";
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

pub enum RootMsg {
    /// Spawn the actor of an entity whose record was just stored.
    SpawnEntity { kind: String, id: String, reply: RpcReplyPort<Result<(), SpawnError>> },
    /// Restart a failed actor (sent to itself after the back-off delay).
    Respawn { name: String },
    /// The live actor tree.
    DebugActors(RpcReplyPort<Vec<ActorView>>),
}

pub struct RootArgs {
    pub store: Arc<Store>,
    pub pve: Arc<dyn Pve>,
    pub pve_probe_interval: Duration,
    pub pve_limits: GatewayLimits,
    pub factories: Vec<Arc<dyn EntityFactory>>,
    pub directory: ActorDirectory,
    pub policy: RestartPolicy,
}

pub struct RootSupervisor;

pub struct RootState {
    store: Arc<Store>,
    pve: Arc<dyn Pve>,
    pve_probe_interval: Duration,
    pve_limits: GatewayLimits,
    factories: HashMap<&'static str, Arc<dyn EntityFactory>>,
    directory: ActorDirectory,
    budget: RestartBudget,
    /// The factories' background work, aborted when the root stops.
    background: Vec<tokio::task::JoinHandle<()>>,
    /// Actors waiting out their restart back-off: a request (a guest's report) does not
    /// spawn them early (security review F12: reports turned the back-off into a hot loop).
    backing_off: std::collections::HashSet<String>,
}

impl Actor for RootSupervisor {
    type Msg = RootMsg;
    type State = RootState;
    type Arguments = RootArgs;

    async fn pre_start(&self, myself: ActorRef<RootMsg>, args: RootArgs) -> Result<RootState, ActorProcessingErr> {
        args.directory.register(ROOT_ACTOR, "supervisor", None, 0);
        let state = RootState {
            store: args.store,
            pve: args.pve,
            pve_probe_interval: args.pve_probe_interval,
            pve_limits: args.pve_limits,
            factories: args.factories.into_iter().map(|f| (f.kind(), f)).collect(),
            directory: args.directory,
            budget: RestartBudget::new(args.policy),
            background: Vec::new(),
            backing_off: Default::default(),
        };
        spawn_service(&myself, &state, EVENTS_ACTOR).await?;
        spawn_service(&myself, &state, PVE_ACTOR).await?;
        Ok(state)
    }

    async fn post_start(&self, myself: ActorRef<RootMsg>, state: &mut RootState) -> Result<(), ActorProcessingErr> {
        let factories: Vec<Arc<dyn EntityFactory>> = state.factories.values().cloned().collect();
        for factory in factories {
            let ids = factory.live_ids().map_err(|e| format!("cannot list live {} records: {e}", factory.kind()))?;
            tracing::info!(kind = factory.kind(), count = ids.len(), "respawning actors of live records");
            for id in ids {
                spawn_entity(&myself, state, factory.kind(), &id).await;
            }
            if let Some(work) = factory.background() {
                state.background.push(tokio::spawn(work));
            }
        }
        Ok(())
    }

    async fn post_stop(&self, myself: ActorRef<RootMsg>, state: &mut RootState) -> Result<(), ActorProcessingErr> {
        for work in state.background.drain(..) {
            work.abort();
        }
        // Without this, ractor kills linked children without running their post_stop.
        myself.stop_children_and_wait(Some("daemon shutting down".into()), Some(SHUTDOWN_GRACE)).await;
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<RootMsg>,
        msg: RootMsg,
        state: &mut RootState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RootMsg::SpawnEntity { kind, id, reply } => {
                let result = match state.factories.get(kind.as_str()).map(|f| f.kind()) {
                    None => Err(SpawnError::UnknownKind(kind)),
                    Some(kind) if state.backing_off.contains(&entity_name(kind, &id)) => {
                        Err(SpawnError::NotStarted(entity_name(kind, &id)))
                    }
                    Some(kind) => {
                        if spawn_entity(&myself, state, kind, &id).await {
                            Ok(())
                        } else {
                            Err(SpawnError::NotStarted(entity_name(kind, &id)))
                        }
                    }
                };
                let _ = reply.send(result);
            }
            RootMsg::Respawn { name } => {
                // The back-off is over (spawn_entity leaves an actor that is already alive).
                state.backing_off.remove(&name);
                match split_name(&name) {
                    Some((kind, id)) => match state.factories.get(kind).map(|f| f.kind()) {
                        Some(kind) => {
                            let id = id.to_string();
                            spawn_entity(&myself, state, kind, &id).await;
                        }
                        None => tracing::error!(%name, "respawn of an unknown actor kind"),
                    },
                    None => {
                        if let Err(e) = spawn_service(&myself, state, &name).await {
                            on_failure(&myself, state, &name, &e.to_string());
                        }
                    }
                }
            }
            RootMsg::DebugActors(reply) => {
                let _ = reply.send(actor_views(&myself.get_cell(), &state.directory));
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<RootMsg>,
        event: SupervisionEvent,
        state: &mut RootState,
    ) -> Result<(), ActorProcessingErr> {
        // Overridden on purpose: ractor's default stops the supervisor when a child ends.
        match event {
            SupervisionEvent::ActorFailed(cell, error) => {
                let name = cell.get_name().unwrap_or_else(|| format!("unnamed-{}", cell.get_id()));
                on_failure(&myself, state, &name, &error.to_string());
            }
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                if let Some(name) = cell.get_name() {
                    tracing::debug!(%name, ?reason, "actor stopped");
                    state.directory.remove(&name);
                    state.budget.forget(&name);
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// Asks the root to spawn the actor of a stored entity (nothing happens if it is alive).
/// For actors that start other entities (a job starts its sandbox).
pub async fn request_spawn(kind: &str, id: &str) -> Result<(), SpawnError> {
    let root = ActorRef::<RootMsg>::where_is(ROOT_ACTOR).ok_or(SpawnError::RootDown)?;
    let (kind, id) = (kind.to_string(), id.to_string());
    match root.call(|reply| RootMsg::SpawnEntity { kind, id, reply }, Some(Duration::from_secs(30))).await {
        Ok(ractor::rpc::CallResult::Success(result)) => result,
        _ => Err(SpawnError::NoAnswer),
    }
}

/// The live actor of entity `kind:id`, spawned from its record first if it has none;
/// `None` if the entity has no actor even then (its record is final).
pub async fn ensure_actor<M: ractor::Message>(kind: &str, id: &str) -> Result<Option<ActorRef<M>>, SpawnError> {
    let name = entity_name(kind, id);
    if let Some(actor) = ActorRef::<M>::where_is(name.clone()) {
        return Ok(Some(actor));
    }
    request_spawn(kind, id).await?;
    Ok(ActorRef::<M>::where_is(name))
}

/// Spawns a service actor under its fixed name.
async fn spawn_service(myself: &ActorRef<RootMsg>, state: &RootState, name: &str) -> Result<(), ActorProcessingErr> {
    let supervisor = myself.get_cell();
    match name {
        EVENTS_ACTOR => {
            Actor::spawn_linked(Some(name.to_string()), EventLog, Arc::clone(&state.store), supervisor).await?;
        }
        PVE_ACTOR => {
            let args = PveGatewayArgs {
                pve: Arc::clone(&state.pve),
                probe_interval: state.pve_probe_interval,
                limits: state.pve_limits,
            };
            Actor::spawn_linked(Some(name.to_string()), PveGateway, args, supervisor).await?;
        }
        other => return Err(format!("no service actor `{other}`").into()),
    }
    state.directory.register(name, "service", Some(ROOT_ACTOR), state.budget.restarts(name));
    Ok(())
}

/// Spawns one entity actor; a failure to start counts like a crash (ractor sends no
/// supervision event for a panic in `pre_start`). True when it started.
async fn spawn_entity(myself: &ActorRef<RootMsg>, state: &mut RootState, kind: &'static str, id: &str) -> bool {
    let name = entity_name(kind, id);
    let Some(factory) = state.factories.get(kind).cloned() else {
        return false;
    };
    // Already alive (a concurrent request, or a respawn that raced a new request): nothing
    // to do, and not a failure to count.
    if let Some(cell) = ractor::registry::where_is(name.clone())
        && matches!(
            cell.get_status(),
            ractor::ActorStatus::Running | ractor::ActorStatus::Starting | ractor::ActorStatus::Upgrading
        )
    {
        return true;
    }
    // Registered before the spawn so the actor's pre_start can publish its state.
    state.directory.register(&name, kind, Some(ROOT_ACTOR), state.budget.restarts(&name));
    match factory.spawn(id.to_string(), name.clone(), myself.get_cell()).await {
        Ok(_) => true,
        Err(error) => {
            on_failure(myself, state, &name, &format!("start failed: {error}"));
            false
        }
    }
}

/// Decides between a delayed restart and giving up, and records an event either way.
fn on_failure(myself: &ActorRef<RootMsg>, state: &mut RootState, name: &str, reason: &str) {
    tracing::warn!(actor = %name, %reason, "actor failed");
    let verdict = state.budget.record_failure(name, Instant::now());
    let (kind, id) = split_name(name).unwrap_or((name, ""));
    let event = |event_kind: EventKind, msg: String, extra: serde_json::Value| {
        let mut e = NewEvent::new(event_kind, Stage::Recovery, msg)
            .payload(serde_json::json!({"actor": name, "error": reason, "detail": extra}));
        if kind == "sandbox" {
            e.sandbox_vmid = id.parse().ok();
        } else if kind == "job" {
            e.job_id = Some(id.to_string());
        }
        e
    };
    match verdict {
        Verdict::RestartAfter(delay) => {
            crate::metrics::metrics().actor_restarted(kind);
            state.directory.set_state(name, "restarting");
            emit(event(
                EventKind::ActorRestarting,
                format!("actor {name} failed ({reason}); restarting from its record in {delay:?}"),
                serde_json::json!({"delay_ms": delay.as_millis() as u64}),
            ));
            state.backing_off.insert(name.to_string());
            let respawn = name.to_string();
            myself.send_after(delay, move || RootMsg::Respawn { name: respawn });
        }
        Verdict::GiveUp { failures } => {
            state.directory.remove(name);
            match state.factories.get(kind) {
                Some(factory) => {
                    let why = format!("actor failed {failures} times within the restart window; last error: {reason}");
                    if let Err(e) = factory.give_up(id, &why) {
                        tracing::error!(actor = %name, error = %e, "cannot mark entity failed");
                    }
                    emit(event(
                        EventKind::ActorGaveUp,
                        format!("actor {name} failed {failures} times; marked FAILED"),
                        serde_json::json!({"failures": failures}),
                    ));
                }
                None => {
                    // A service actor keeps failing: the daemon cannot work without it.
                    tracing::error!(actor = %name, "service actor keeps failing; stopping the daemon");
                    myself.stop(Some(format!("service actor {name} failed {failures} times: {reason}")));
                }
            }
        }
    }
}

/// The tree below (and including) `root`, depth first.
fn actor_views(root: &ActorCell, directory: &ActorDirectory) -> Vec<ActorView> {
    let mut out = Vec::new();
    let mut stack = vec![(root.clone(), None::<String>)];
    let now = Instant::now();
    while let Some((cell, parent)) = stack.pop() {
        let name = cell.get_name().unwrap_or_else(|| format!("unnamed-{}", cell.get_id()));
        let entry = directory.get(&name);
        let mut children = cell.get_children();
        children.sort_by_key(|c| std::cmp::Reverse(c.get_name()));
        for child in children {
            stack.push((child, Some(name.clone())));
        }
        out.push(ActorView {
            kind: entry.as_ref().map_or_else(|| "unknown".to_string(), |e| e.kind.clone()),
            state: entry.as_ref().map_or_else(|| "-".to_string(), |e| e.state.clone()),
            status: format!("{:?}", cell.get_status()).to_lowercase(),
            uptime_seconds: entry.as_ref().map_or(0, |e| now.duration_since(e.started_at).as_secs()),
            restarts: entry.as_ref().map_or(0, |e| e.restarts),
            lease_expires_at: entry.as_ref().and_then(|e| e.lease_expires_at.clone()),
            mailbox: None,
            parent,
            name,
        });
    }
    out
}
