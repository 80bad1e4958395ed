//! Recording a new sandbox: its record built from the profile, and a VMID reserved that
//! neither AgentLab nor the Proxmox cluster uses (checked with Proxmox's own `nextid`,
//! because `/cluster/resources` lags). Used by `sandbox new` and by jobs.

use super::SandboxContext;
use crate::model::SandboxState;
use crate::store::{SandboxRecord, StoreError};
use std::collections::HashSet;

/// What the caller decided about the sandbox.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SandboxRequest {
    pub name: Option<String>,
    pub profile: String,
    pub ttl_minutes: Option<u32>,
    pub keepalive: Option<bool>,
    pub tags: Vec<String>,
    pub vmid: Option<u32>,
    pub job_id: Option<String>,
    /// A workspace id: attached before the first boot.
    pub workspace_id: Option<String>,
    pub peer_uid: Option<u32>,
    /// Built for the warm pool: the profile's fingerprint (`pool::fingerprint`). Never
    /// claimed from the pool itself.
    pub pool: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum AllocateError {
    #[error("profile `{0}` is not loaded")]
    UnknownProfile(String),
    #[error("cannot list the cluster's VMs: {0}; `agentlab status` shows why")]
    Proxmox(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NoIsolation(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AllocateError {
    /// The API code of a refused allocation.
    pub fn code(&self) -> crate::model::ErrorCode {
        use crate::model::ErrorCode;
        match self {
            AllocateError::UnknownProfile(_) => ErrorCode::UnknownProfile,
            AllocateError::Proxmox(_) => ErrorCode::ProxmoxUnavailable,
            AllocateError::Conflict(_) => ErrorCode::Conflict,
            AllocateError::NoIsolation(_) => ErrorCode::NoIsolation,
            AllocateError::Store(_) => ErrorCode::StoreFailed,
        }
    }
}

/// Refuses when neither isolation layer is active (asked of Proxmox and nft each time: a
/// sandbox is not created often, and a stale answer here would be a security hole).
async fn check_isolation(ctx: &SandboxContext) -> Result<(), AllocateError> {
    let options = ctx.gateway.cluster_firewall_options().await.map_err(|e| AllocateError::Proxmox(e.to_string()))?;
    let datacenter = crate::pve::datacenter_enabled(&options);
    let host = crate::net::table_state(ctx.host_table.as_ref()).await;
    match crate::net::isolation(datacenter, host.as_ref()) {
        crate::net::Isolation::None(why) => Err(AllocateError::NoIsolation(why)),
        _ => Ok(()),
    }
}

/// Records the sandbox (REQUESTED) under a free VMID and returns it; its actor is not
/// started here. A request the warm pool can serve gets a READY pooled sandbox instead
/// (`pool::claim`), after the same isolation checks.
pub async fn allocate(ctx: &SandboxContext, req: &SandboxRequest) -> Result<SandboxRecord, AllocateError> {
    let profiles = ctx.profiles.snapshot();
    let profile =
        &profiles.get(&req.profile).ok_or_else(|| AllocateError::UnknownProfile(req.profile.clone()))?.profile;
    // The host ruleset and the node rules cover the agent bridge only.
    if profile.network.bridge != ctx.settings.agent_bridge {
        return Err(AllocateError::NoIsolation(format!(
            "profile `{}` puts sandboxes on bridge `{}`, but the agent bridge is `{}` (agent_bridge): only the agent bridge is isolated; fix the profile's network.bridge",
            profile.name, profile.network.bridge, ctx.settings.agent_bridge
        )));
    }
    check_isolation(ctx).await?;
    if let Some(claimed) = crate::pool::claim(ctx, req)? {
        return Ok(claimed);
    }
    let cluster = ctx.gateway.cluster_vms().await.map_err(|e| AllocateError::Proxmox(e.to_string()))?;
    let mut taken: HashSet<u32> = cluster.iter().map(|v| v.vmid as u32).collect();
    if let Some(vmid) = req.vmid
        && taken.contains(&vmid)
    {
        return Err(AllocateError::Conflict(format!("VMID {vmid} is already used in the Proxmox cluster")));
    }
    let ttl = req.ttl_minutes.or(profile.behavior.ttl_minutes_default);
    let now = ctx.settings.clock.now();
    let lease = ttl.map(|m| now + ctx.settings.lease_minute * m);
    let record = SandboxRecord {
        vmid: 0,
        name: req.name.clone().unwrap_or_default(),
        profile: req.profile.clone(),
        state: SandboxState::Requested,
        ip: None,
        node: None,
        tags: req.tags.clone(),
        keepalive: req.keepalive.unwrap_or(profile.behavior.keepalive_default),
        lease_expires_at: lease,
        last_used_at: None,
        network_mode: profile.network.mode,
        cores: profile.resources.cores,
        memory_mb: profile.resources.memory_mb,
        job_id: req.job_id.clone(),
        workspace_id: req.workspace_id.clone(),
        intent: None,
        snippet_path: None,
        error: None,
        ttl_minutes: ttl,
        description: profile.description.clone(),
        mac: None,
        pool: req.pool.clone(),
        created_at: now,
        updated_at: now,
    };
    let range = ctx.settings.vmid_range.clone();
    // A VMID Proxmox refuses is given up (its record ends DESTROYED) and another is chosen.
    let mut attempts = 0;
    loop {
        let candidate = ctx.store.create_sandbox(record.clone(), req.vmid, range.clone(), &taken, req.peer_uid)?;
        match ctx.gateway.next_vmid(Some(candidate.vmid)).await {
            Ok(_) => return Ok(candidate),
            Err(e) => {
                let why = format!("VMID {} is not free in the cluster: {e}", candidate.vmid);
                ctx.store.transition_sandbox(
                    candidate.vmid,
                    SandboxState::Requested,
                    SandboxState::Destroyed,
                    Some(&why),
                    req.peer_uid,
                )?;
                attempts += 1;
                if req.vmid.is_some() || attempts >= 5 {
                    return Err(AllocateError::Conflict(why));
                }
                taken.insert(candidate.vmid);
            }
        }
    }
}
