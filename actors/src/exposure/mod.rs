//! Port exposures: a sandbox's guest port published on the host's tailnet, one actor per
//! exposure (`exposure:<name>`). Each gets its own host port, so two sandboxes can expose
//! the same guest port (the Go version gave both the same one, D11); the target address
//! is always the sandbox record's, never a caller's; exposures go with their sandbox.

mod actor;
mod publisher;

pub use actor::{ExposureActor, ExposureMsg};
pub use publisher::{PublishError, Publisher, TailscaleServe, forward_of};

use crate::model::{ErrorCode, Refusal, SandboxState};
use crate::protocol::{CreateExposureRequest, ExposureView};
use crate::root::{EntityError, EntityFactory, SpawnFuture};
use crate::store::{Store, StoreError};
use ractor::{Actor, ActorCell, ActorRef};
use std::sync::Arc;
use std::time::Duration;

pub const KIND: &str = "exposure";

pub struct ExposureContext {
    pub store: Arc<Store>,
    pub publisher: Arc<dyn Publisher>,
    /// How often each exposure checks that its rule is still there.
    pub health_interval: Duration,
    /// Host ports handed to exposures, one each.
    pub host_ports: std::ops::RangeInclusive<u16>,
}

pub struct ExposureFactory {
    pub ctx: Arc<ExposureContext>,
}

impl EntityFactory for ExposureFactory {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn live_ids(&self) -> Result<Vec<String>, EntityError> {
        Ok(self.ctx.store.list_exposures(None)?.into_iter().map(|e| e.name).collect())
    }

    fn spawn(&self, id: String, name: String, supervisor: ActorCell) -> SpawnFuture {
        let ctx = Arc::clone(&self.ctx);
        Box::pin(async move {
            let (actor, _) = Actor::spawn_linked(Some(name), ExposureActor { ctx }, id, supervisor).await?;
            Ok(actor.get_cell())
        })
    }

    fn give_up(&self, id: &str, reason: &str) -> Result<(), EntityError> {
        let now = time::OffsetDateTime::now_utc();
        Ok(self.ctx.store.set_exposure_state(id, "failed", None, None, Some(reason), now)?)
    }
}

pub fn actor_of(name: &str) -> Option<ActorRef<ExposureMsg>> {
    ActorRef::<ExposureMsg>::where_is(format!("{KIND}:{name}"))
}

/// `sbx-<vmid>-<port>` unless named; names are DNS-label-like (they end up in URLs).
fn valid_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
}

/// Records the exposure, starts its actor and answers once the first publish is done.
pub async fn create(ctx: &ExposureContext, req: &CreateExposureRequest) -> Result<ExposureView, Refusal> {
    if req.port == 0 {
        return Err(Refusal::new(ErrorCode::InvalidValue, "port must be 1-65535"));
    }
    let name = req.name.clone().unwrap_or_else(|| format!("sbx-{}-{}", req.vmid, req.port));
    if !valid_name(&name) {
        return Err(Refusal::new(
            ErrorCode::InvalidValue,
            format!("exposure name `{name}` must be 1-63 lower-case letters, digits and dashes"),
        ));
    }
    let sandbox = ctx.store.get_sandbox(req.vmid).map_err(store_refusal)?;
    match sandbox.map(|s| s.state) {
        None | Some(SandboxState::Destroyed) => {
            return Err(Refusal::new(ErrorCode::SandboxNotFound, format!("sandbox {} not found", req.vmid)));
        }
        Some(SandboxState::Ready | SandboxState::Running) => {}
        Some(state) => {
            return Err(Refusal::new(
                ErrorCode::InvalidState,
                format!("sandbox {} is {state}: only a READY or RUNNING sandbox has a port to expose", req.vmid),
            ));
        }
    }
    let now = time::OffsetDateTime::now_utc();
    ctx.store.insert_exposure(&name, req.vmid, req.port, ctx.host_ports.clone(), now).map_err(|e| match e {
        StoreError::ExposureExists(_) => Refusal::new(ErrorCode::Conflict, e.to_string()),
        StoreError::NoFreeHostPort { .. } => Refusal::new(ErrorCode::Conflict, e.to_string()),
        other => store_refusal(other),
    })?;
    crate::root::request_spawn(KIND, &name)
        .await
        .map_err(|e| Refusal::new(ErrorCode::ActorUnavailable, format!("cannot start the exposure's actor: {e}")))?;
    let actor = actor_of(&name)
        .ok_or_else(|| Refusal::new(ErrorCode::ActorUnavailable, "the exposure's actor stopped at once"))?;
    match ractor::call_t!(actor, |reply| ExposureMsg::Publish(Some(reply)), 30_000) {
        Ok(view) => Ok(view),
        Err(e) => Err(Refusal::new(ErrorCode::ActorUnavailable, format!("the exposure's actor did not answer: {e}"))),
    }
}

fn store_refusal(e: StoreError) -> Refusal {
    Refusal::new(ErrorCode::StoreFailed, e.to_string())
}

/// Unpublishes and deletes one exposure.
pub async fn remove(ctx: &ExposureContext, name: &str) -> Result<(), Refusal> {
    if ctx.store.get_exposure(name).map_err(store_refusal)?.is_none() {
        return Err(Refusal::new(
            ErrorCode::ExposureNotFound,
            format!("no exposure `{name}`; `agentlab sandbox exposed` lists them"),
        ));
    }
    let actor = crate::root::ensure_actor::<ExposureMsg>(KIND, name)
        .await
        .map_err(|e| Refusal::new(ErrorCode::ActorUnavailable, e.to_string()))?
        .ok_or_else(|| Refusal::new(ErrorCode::ActorUnavailable, "the exposure has no actor"))?;
    match ractor::call_t!(actor, |reply| ExposureMsg::Remove(Some(reply)), 30_000) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(why)) => Err(Refusal::new(ErrorCode::Internal, format!("cannot remove exposure `{name}`: {why}"))),
        Err(e) => Err(Refusal::new(ErrorCode::ActorUnavailable, format!("the exposure's actor did not answer: {e}"))),
    }
}

/// The sandbox is gone: its exposures remove themselves (each actor checks the record too,
/// so one that misses this message goes at its next health check or start).
pub fn sandbox_gone(store: &Store, vmid: u32) {
    for exposure in store.list_exposures(Some(vmid)).unwrap_or_default() {
        if let Some(actor) = actor_of(&exposure.name) {
            let _ = actor.send_message(ExposureMsg::HealthCheck);
        }
    }
}
