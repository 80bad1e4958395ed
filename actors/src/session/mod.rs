//! Sessions: a workspace and a profile that outlive sandboxes, one actor per session
//! (`session:<id>`). `stop` destroys the session's sandbox (its teardown detaches the
//! workspace, which is kept); `resume` gives it a fresh sandbox with the workspace attached;
//! `fork` starts another session on a copy of the workspace.

mod actor;

pub use actor::{SessionActor, SessionMsg};

use crate::model::{ErrorCode, Refusal, SandboxState};
use crate::protocol::{CreateSessionRequest, ForkSessionRequest, ForkWorkspaceRequest, SessionView};
use crate::root::{EntityError, EntityFactory, SpawnFuture};
use crate::sandbox::SandboxContext;
use crate::store::{SessionRecord, Store, StoreError};
use crate::workspace::WorkspaceContext;
use ractor::{Actor, ActorCell};
use std::sync::Arc;

pub const KIND: &str = "session";
const CALL_TIMEOUT_MS: u64 = 900_000;

pub struct SessionContext {
    pub store: Arc<Store>,
    pub sandboxes: Arc<SandboxContext>,
    pub workspaces: Arc<WorkspaceContext>,
}

pub struct SessionFactory {
    pub ctx: Arc<SessionContext>,
}

impl EntityFactory for SessionFactory {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn live_ids(&self) -> Result<Vec<String>, EntityError> {
        Ok(self.ctx.store.list_sessions()?.into_iter().map(|s| s.id).collect())
    }

    fn spawn(&self, id: String, name: String, supervisor: ActorCell) -> SpawnFuture {
        let ctx = Arc::clone(&self.ctx);
        Box::pin(async move {
            let (actor, _) = Actor::spawn_linked(Some(name), SessionActor { ctx }, id, supervisor).await?;
            Ok(actor.get_cell())
        })
    }

    fn give_up(&self, id: &str, reason: &str) -> Result<(), EntityError> {
        let Some(mut rec) = self.ctx.store.find_session(id)? else {
            return Err(EntityError::NoRecord { kind: KIND, id: id.to_string() });
        };
        rec.error = Some(reason.to_string());
        Ok(self.ctx.store.save_session(&rec, self.ctx.sandboxes.settings.clock.now())?)
    }
}

fn store_refusal(e: StoreError) -> Refusal {
    match e {
        StoreError::SessionExists(_) => Refusal::new(ErrorCode::Conflict, e.to_string()),
        other => Refusal::new(ErrorCode::StoreFailed, other.to_string()),
    }
}

pub fn find(store: &Store, id_or_name: &str) -> Result<SessionRecord, Refusal> {
    store.find_session(id_or_name).map_err(store_refusal)?.ok_or_else(|| {
        Refusal::new(
            ErrorCode::SessionNotFound,
            format!("no session `{id_or_name}`; `agentlab session list` shows them"),
        )
    })
}

async fn ask(
    id: &str,
    msg: impl FnOnce(ractor::RpcReplyPort<Result<SessionRecord, Refusal>>) -> SessionMsg,
) -> Result<SessionView, Refusal> {
    let actor = crate::root::ensure_actor::<SessionMsg>(KIND, id)
        .await
        .map_err(|e| Refusal::new(ErrorCode::ActorUnavailable, e.to_string()))?
        .ok_or_else(|| Refusal::new(ErrorCode::ActorUnavailable, format!("session {id} has no actor")))?;
    match ractor::call_t!(actor, msg, CALL_TIMEOUT_MS) {
        Ok(answer) => answer.map(|rec| rec.view()),
        Err(e) => Err(Refusal::new(ErrorCode::ActorUnavailable, format!("session {id}'s actor did not answer: {e}"))),
    }
}

/// Records the session on its workspace (claimed: ready and detached), then its actor
/// gives it a sandbox.
async fn start_new(
    ctx: &SessionContext,
    name: &str,
    profile: &str,
    workspace_id: String,
) -> Result<SessionView, Refusal> {
    let profiles = ctx.sandboxes.profiles.snapshot();
    let profile = profiles.resolve(profile)?.profile.name.clone();
    let now = ctx.sandboxes.settings.clock.now();
    let id = format!(
        "session_{}",
        crate::tokens::random_hex(8).map_err(|e| Refusal::new(ErrorCode::Internal, format!("no randomness: {e}")))?
    );
    let rec = SessionRecord {
        id,
        name: name.to_string(),
        profile,
        workspace_id,
        current_vmid: None,
        state: "stopped".into(),
        error: None,
        created_at: now,
        updated_at: now,
    };
    ctx.store.insert_session(&rec).map_err(store_refusal)?;
    ask(&rec.id, SessionMsg::Resume).await
}

pub async fn create(ctx: &SessionContext, req: &CreateSessionRequest) -> Result<SessionView, Refusal> {
    crate::workspace::check_name("session", &req.name)?;
    ctx.sandboxes.profiles.snapshot().resolve(&req.profile)?;
    if ctx.store.find_session(&req.name).map_err(store_refusal)?.is_some_and(|s| s.name == req.name) {
        return Err(store_refusal(StoreError::SessionExists(req.name.clone())));
    }
    let workspace = match (&req.workspace_id, &req.workspace_create) {
        (Some(_), Some(_)) => {
            return Err(Refusal::new(ErrorCode::InvalidValue, "give workspace_id or workspace_create, not both"));
        }
        (None, None) => {
            return Err(Refusal::new(
                ErrorCode::InvalidValue,
                "a session needs a workspace: give workspace_id or workspace_create",
            ));
        }
        (Some(id), None) => crate::workspace::claimable(&ctx.store, id)?.id,
        (None, Some(create)) => crate::workspace::create(&ctx.workspaces, create).await?.id,
    };
    start_new(ctx, &req.name, &req.profile, workspace).await
}

pub async fn resume(store: &Store, id_or_name: &str) -> Result<SessionView, Refusal> {
    let rec = find(store, id_or_name)?;
    ask(&rec.id, SessionMsg::Resume).await
}

pub async fn stop(store: &Store, id_or_name: &str) -> Result<SessionView, Refusal> {
    let rec = find(store, id_or_name)?;
    ask(&rec.id, SessionMsg::Stop).await
}

/// A new session on a copy of this one's workspace (it must be stopped: the copy is made
/// of a detached volume), or on the workspace given.
pub async fn fork(ctx: &SessionContext, id_or_name: &str, req: &ForkSessionRequest) -> Result<SessionView, Refusal> {
    crate::workspace::check_name("session", &req.name)?;
    let source = find(&ctx.store, id_or_name)?;
    let profile = req.profile.clone().unwrap_or_else(|| source.profile.clone());
    ctx.sandboxes.profiles.snapshot().resolve(&profile)?;
    let workspace = match &req.workspace_id {
        Some(id) => crate::workspace::claimable(&ctx.store, id)?.id,
        None => {
            let copy = ForkWorkspaceRequest { name: req.name.clone(), from_snapshot: None };
            crate::workspace::fork(&ctx.store, &source.workspace_id, &copy)
                .await
                .map_err(|refusal| {
                    if refusal.code == ErrorCode::WorkspaceAttached {
                        Refusal::new(
                            ErrorCode::WorkspaceAttached,
                            format!(
                                "session `{}` is running: `agentlab session stop {}` first, then fork it",
                                source.name, source.name
                            ),
                        )
                    } else {
                        refusal
                    }
                })?
                .id
        }
    };
    start_new(ctx, &req.name, &profile, workspace).await
}

/// The live sandbox that has (or is getting) the workspace: the session's, even one made
/// just before a restart, before the session recorded it.
fn sandbox_with(store: &Store, workspace_id: &str) -> Result<Option<u32>, Refusal> {
    let sandboxes = store.list_sandboxes(None).map_err(store_refusal)?;
    Ok(sandboxes
        .into_iter()
        .find(|s| s.state != SandboxState::Destroyed && s.workspace_id.as_deref() == Some(workspace_id))
        .map(|s| s.vmid))
}
