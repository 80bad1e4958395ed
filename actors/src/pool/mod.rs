//! The warm pool: sandboxes booted, READY and unassigned, so `sandbox new` and `job run`
//! take Proxmox out of the user's wait.
//!
//! A pooled sandbox is an ordinary sandbox record (its own actor, pipeline, firewall and
//! snippet) with `pool` set to the fingerprint of the profile it was built from, and no
//! lease. Its runner long-polls the bootstrap fetch (`job::bootstrap`) until a claim gives
//! the sandbox a job (or an owner and no job: the runner then idles). A claim
//! (`claim`, called by `sandbox::allocate`) is one store transaction: the record gets its
//! owner's name, tags, lease and job, and its bootstrap token counts from the claim; the
//! runner and artifact tokens are minted at the fetch, as for a cold sandbox.
//!
//! One `pool` actor (`actor.rs`) keeps the pools at their size: `plan.rs` decides, the
//! actor allocates through the same path as a user request (one at a time by default,
//! `pool_refill_concurrency`) and drains what the plan no longer wants.

mod actor;
pub mod plan;

pub use actor::{PoolActor, PoolMsg};

use crate::model::Refusal;
use crate::profiles::ProfileRegistry;
use crate::protocol::{PoolProfileStatus, PoolStatus};
use crate::root::{EntityError, EntityFactory, SpawnFuture};
use crate::sandbox::SandboxContext;
use crate::sandbox::allocate::SandboxRequest;
use crate::store::{PoolClaim, SandboxRecord, Store, StoreError};
use ractor::{Actor, ActorCell, SpawnErr};
use std::sync::Arc;
use std::time::Duration;

pub const KIND: &str = "pool";
/// The one pool actor's id (`pool:main`).
pub const ID: &str = "main";

/// What the pool actor uses.
pub struct PoolContext {
    pub sandboxes: Arc<SandboxContext>,
    pub limits: plan::Limits,
    /// How often the pool looks again without being nudged (a failed refill, a pooled
    /// sandbox that failed).
    pub interval: Duration,
}

/// A profile's fingerprint: its definition without the pool size, so resizing a pool keeps
/// its sandboxes and any other change drains them.
pub fn fingerprint(profile: &crate::model::profile::Profile) -> String {
    let mut p = profile.clone();
    p.pool = Default::default();
    let text = serde_json::to_string(&p).unwrap_or_default();
    crate::tokens::token_hash(&text)[..16].to_string()
}

/// The pools the loaded profiles ask for, by profile name.
pub fn wants(profiles: &ProfileRegistry) -> Vec<plan::Want> {
    let set = profiles.snapshot();
    let mut wants: Vec<plan::Want> = set
        .profiles
        .values()
        .filter(|p| p.profile.pool.size > 0)
        .map(|p| plan::Want {
            profile: p.profile.name.clone(),
            size: p.profile.pool.size,
            fingerprint: fingerprint(&p.profile),
        })
        .collect();
    wants.sort_by(|a, b| a.profile.cmp(&b.profile));
    wants
}

/// Wakes whoever waits for a claim (the held bootstrap fetches of pooled guests): a counter
/// bumped at every claim, and closed when the daemon stops.
#[derive(Clone)]
pub struct ClaimSignal {
    tx: Arc<tokio::sync::watch::Sender<(u64, bool)>>,
}

impl Default for ClaimSignal {
    fn default() -> Self {
        ClaimSignal { tx: Arc::new(tokio::sync::watch::channel((0, false)).0) }
    }
}

impl ClaimSignal {
    pub fn bump(&self) {
        self.tx.send_modify(|(n, _)| *n += 1);
    }

    /// The daemon is stopping: every waiter returns now.
    pub fn close(&self) {
        self.tx.send_modify(|(_, closed)| *closed = true);
    }

    /// A waiter for the next claim from now on: take it before reading the record, so a
    /// claim between the read and the wait is not missed.
    pub fn waiter(&self) -> ClaimWaiter {
        ClaimWaiter(self.tx.subscribe())
    }
}

pub struct ClaimWaiter(tokio::sync::watch::Receiver<(u64, bool)>);

impl ClaimWaiter {
    /// Waits until a claim (or the close) since the waiter was taken, at most `wait`; false
    /// once the daemon is stopping.
    pub async fn wait(mut self, wait: Duration) -> bool {
        // `has_changed` first: a claim since the waiter was taken counts.
        if !self.0.has_changed().unwrap_or(true) && !self.0.borrow().1 {
            let _ = tokio::time::timeout(wait, self.0.changed()).await;
        }
        !self.0.borrow().1
    }
}

/// Takes a READY pooled sandbox for `req` when the pool can serve it: no VMID or workspace
/// asked for, the profile has a pool, and a sandbox of its current version is READY.
pub fn claim(ctx: &SandboxContext, req: &SandboxRequest) -> Result<Option<SandboxRecord>, StoreError> {
    if req.vmid.is_some() || req.workspace_id.is_some() || req.pool.is_some() {
        return Ok(None);
    }
    let profiles = ctx.profiles.snapshot();
    let Some(profile) = profiles.get(&req.profile).map(|p| &p.profile) else { return Ok(None) };
    if profile.pool.size == 0 {
        return Ok(None);
    }
    let now = ctx.settings.clock.now();
    let ttl = req.ttl_minutes.or(profile.behavior.ttl_minutes_default);
    let claim = PoolClaim {
        profile: profile.name.clone(),
        fingerprint: fingerprint(profile),
        name: req.name.clone(),
        tags: req.tags.clone(),
        keepalive: req.keepalive.unwrap_or(profile.behavior.keepalive_default),
        ttl_minutes: ttl,
        lease_expires_at: ttl.map(|m| now + ctx.settings.lease_minute * m),
        job_id: req.job_id.clone(),
        token_expires_at: now + ctx.settings.provisioning_timeout,
        peer_uid: req.peer_uid,
    };
    let Some(record) = ctx.store.claim_pooled(&claim)? else { return Ok(None) };
    tracing::info!(vmid = record.vmid, profile = %record.profile, job = ?record.job_id, "claimed from the warm pool");
    crate::metrics::metrics().pool_claims.inc();
    if let Some(sandbox) = crate::sandbox::actor_of(record.vmid) {
        let _ = sandbox.send_message(crate::sandbox::SandboxMsg::Reconcile);
    }
    ctx.claims.bump();
    nudge();
    Ok(Some(record))
}

/// Asks the pool actor to look again now (after a claim, a profile reload).
pub fn nudge() {
    if let Some(pool) = ractor::ActorRef::<PoolMsg>::where_is(format!("{KIND}:{ID}")) {
        let _ = pool.send_message(PoolMsg::Look);
    }
}

/// `GET /v1/pool`: every profile with a pool or pooled sandboxes, from the store.
pub fn status(store: &Store, profiles: &ProfileRegistry, limits: plan::Limits) -> Result<PoolStatus, Refusal> {
    let members =
        store.pooled_sandboxes().map_err(|e| Refusal::new(crate::model::ErrorCode::StoreFailed, e.to_string()))?;
    let wants = wants(profiles);
    let mut names: Vec<String> = wants.iter().map(|w| w.profile.clone()).collect();
    names.extend(members.iter().map(|m| m.profile.clone()));
    names.sort();
    names.dedup();
    let drain = plan::plan(&wants, &members, limits, &plan::InFlight::new()).drain;
    let profiles = names
        .into_iter()
        .map(|name| {
            let want = wants.iter().find(|w| w.profile == name);
            let mine: Vec<&SandboxRecord> = members.iter().filter(|m| m.profile == name).collect();
            let draining = mine.iter().filter(|m| drain.iter().any(|d| d.0 == m.vmid)).count() as u32;
            let ready = mine
                .iter()
                .filter(|m| m.state == crate::model::SandboxState::Ready && !drain.iter().any(|d| d.0 == m.vmid))
                .count() as u32;
            PoolProfileStatus {
                size: want.map_or(0, |w| w.size),
                ready,
                provisioning: mine.iter().filter(|m| m.state.is_provisioning()).count() as u32,
                draining,
                vmids: mine.iter().map(|m| m.vmid).collect(),
                profile: name,
            }
        })
        .collect();
    Ok(PoolStatus {
        max_total: limits.max_total,
        refill_concurrency: limits.concurrency,
        total: members.len() as u32,
        profiles,
    })
}

/// The `pool` entity kind: one actor, always live.
pub struct PoolFactory {
    pub ctx: Arc<PoolContext>,
}

impl EntityFactory for PoolFactory {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn live_ids(&self) -> Result<Vec<String>, EntityError> {
        Ok(vec![ID.to_string()])
    }

    fn spawn(&self, _id: String, name: String, supervisor: ActorCell) -> SpawnFuture {
        let ctx = Arc::clone(&self.ctx);
        Box::pin(async move {
            let (actor, _) = Actor::spawn_linked(Some(name), PoolActor { ctx }, (), supervisor)
                .await
                .map_err(|e| SpawnErr::StartupFailed(e.to_string().into()))?;
            Ok(actor.get_cell())
        })
    }

    fn give_up(&self, _id: &str, reason: &str) -> Result<(), EntityError> {
        // Nothing to mark: the pooled sandboxes keep their own records; claims still work.
        tracing::error!(%reason, "the pool actor keeps failing; the warm pool is not refilled");
        Ok(())
    }
}
