//! One actor per session (`session:<id>`): the only one that starts or destroys the
//! session's sandbox, so a `resume` and a `stop` of one session never interleave.

use super::SessionContext;
use crate::model::{ErrorCode, Refusal};
use crate::sandbox::allocate::{SandboxRequest, allocate};
use crate::store::SessionRecord;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use std::sync::Arc;
use std::time::Duration;

type Reply = RpcReplyPort<Result<SessionRecord, Refusal>>;

pub enum SessionMsg {
    /// A fresh sandbox with the workspace attached (the old one destroyed first).
    Resume(Reply),
    /// Destroy the sandbox; the workspace is kept.
    Stop(Reply),
}

pub struct SessionActor {
    pub ctx: Arc<SessionContext>,
}

impl SessionActor {
    fn save(&self, rec: &SessionRecord) -> Result<(), Refusal> {
        self.ctx.store.save_session(rec, self.ctx.sandboxes.settings.clock.now()).map_err(super::store_refusal)
    }

    async fn stop(&self, id: &str) -> Result<SessionRecord, Refusal> {
        let mut rec = super::find(&self.ctx.store, id)?;
        // A sandbox made just before a restart, not yet recorded, is the session's too.
        let current = rec.current_vmid.or(super::sandbox_with(&self.ctx.store, &rec.workspace_id)?);
        if let Some(vmid) = current {
            crate::sandbox::remote::destroy(&self.ctx.store, vmid).await?;
        }
        rec.current_vmid = None;
        rec.state = "stopped".into();
        rec.error = None;
        self.save(&rec)?;
        Ok(rec)
    }

    async fn resume(&self, id: &str) -> Result<SessionRecord, Refusal> {
        let mut rec = self.stop(id).await?;
        let request = SandboxRequest {
            name: Some(format!("session-{}", rec.name)),
            profile: rec.profile.clone(),
            tags: vec!["session".into()],
            workspace_id: Some(rec.workspace_id.clone()),
            ..Default::default()
        };
        let sandbox =
            allocate(&self.ctx.sandboxes, &request).await.map_err(|e| Refusal::new(e.code(), e.to_string()))?;
        rec.current_vmid = Some(sandbox.vmid);
        rec.state = "running".into();
        self.save(&rec)?;
        crate::root::request_spawn(crate::sandbox::KIND, &sandbox.vmid.to_string())
            .await
            .map_err(|e| Refusal::new(ErrorCode::ActorUnavailable, e.to_string()))?;
        let wait = self.ctx.sandboxes.settings.provisioning_timeout + Duration::from_secs(60);
        if let Err(refusal) = crate::sandbox::remote::wait_ready(sandbox.vmid, wait).await {
            rec.error = Some(refusal.message.clone());
            self.save(&rec)?;
            return Err(refusal);
        }
        Ok(rec)
    }
}

impl Actor for SessionActor {
    type Msg = SessionMsg;
    type State = String;
    type Arguments = String;

    async fn pre_start(&self, _me: ActorRef<Self::Msg>, id: String) -> Result<Self::State, ActorProcessingErr> {
        Ok(id)
    }

    async fn handle(
        &self,
        _me: ActorRef<Self::Msg>,
        msg: Self::Msg,
        id: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SessionMsg::Resume(reply) => {
                let _ = reply.send(self.resume(id).await);
            }
            SessionMsg::Stop(reply) => {
                let _ = reply.send(self.stop(id).await);
            }
        }
        Ok(())
    }
}
