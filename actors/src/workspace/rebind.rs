//! `workspace rebind`: the workspace moves to a fresh sandbox. The old sandbox is shut down
//! cleanly and the workspace detached from it first (a volume is on one VM at a time), then
//! a new sandbox is allocated with it (attached in its boot step), and the old sandbox is
//! destroyed unless kept. A crash anywhere leaves the workspace on the old sandbox, on the
//! holder alone, or on the new sandbox: the new sandbox's actor finishes its provisioning
//! after a restart, and its boot step attaches the workspace.

use crate::model::{ErrorCode, Refusal};
use crate::protocol::{RebindWorkspaceRequest, RebindWorkspaceResponse};
use crate::sandbox::SandboxContext;
use crate::sandbox::allocate::{SandboxRequest, allocate};
use crate::store::WorkspaceState;
use std::time::Duration;

pub async fn rebind(
    sandboxes: &SandboxContext,
    id_or_name: &str,
    req: &RebindWorkspaceRequest,
) -> Result<RebindWorkspaceResponse, Refusal> {
    let profile = sandboxes.profiles.snapshot().resolve(&req.profile)?.profile.name.clone();
    if let Some(ttl) = req.ttl_minutes {
        sandboxes.settings.check_ttl(ttl, "ttl_minutes")?;
    }
    let rec = super::find(&sandboxes.store, id_or_name)?;
    if rec.state != WorkspaceState::Ready {
        return Err(super::not_ready(&rec));
    }
    let old = rec.attached_vmid;
    if let Some(vmid) = old {
        let node = sandboxes.store.get_sandbox(vmid).ok().flatten().and_then(|s| s.node);
        if let Some(node) = node {
            crate::sandbox::stop_with_workspace(sandboxes, &node, vmid)
                .await
                .map_err(|e| Refusal::new(e.code(), format!("cannot shut down sandbox {vmid}: {e}")))?;
        }
        super::detach_from_vm(&sandboxes.store, vmid).await?;
    }
    let request = SandboxRequest {
        name: Some(format!("ws-{}", rec.name)),
        profile,
        ttl_minutes: req.ttl_minutes,
        tags: vec!["workspace".into()],
        workspace_id: Some(rec.id.clone()),
        ..Default::default()
    };
    let sandbox = allocate(sandboxes, &request).await.map_err(|e| {
        Refusal::new(e.code(), format!("{e}; the workspace is detached, `agentlab workspace attach` puts it back"))
    })?;
    crate::root::request_spawn(crate::sandbox::KIND, &sandbox.vmid.to_string())
        .await
        .map_err(|e| Refusal::new(ErrorCode::ActorUnavailable, e.to_string()))?;
    let wait = sandboxes.settings.provisioning_timeout + Duration::from_secs(60);
    crate::sandbox::remote::wait_ready(sandbox.vmid, wait).await?;
    if let (Some(vmid), false) = (old, req.keep_old) {
        crate::sandbox::remote::destroy(&sandboxes.store, vmid).await?;
    }
    let workspace = super::find(&sandboxes.store, &rec.id)?.view();
    Ok(RebindWorkspaceResponse { workspace, vmid: sandbox.vmid, old_vmid: old })
}
