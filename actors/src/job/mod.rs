//! Jobs: one actor per job (`job:<id>`) that provisions the job's sandbox through a sandbox
//! actor, takes the runner's reports, enforces the host-side deadline, and releases the
//! sandbox when the job ends. The record in the store is the truth; a restarted actor
//! continues from it (a QUEUED or RUNNING job survives a daemon restart).

mod actor;
pub mod artifact_retention;
pub mod bootstrap;
pub mod create;
mod error;
mod release;
mod report;
pub mod secrets;

pub use actor::{JobActor, JobMsg};
pub use error::JobError;

use crate::profiles::ProfileRegistry;
use crate::root::{ActorDirectory, EntityError, EntityFactory, SpawnFuture};
use crate::sandbox::SandboxContext;
use crate::store::Store;
use ractor::{Actor, ActorCell, ActorRef, SpawnErr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub const KIND: &str = "job";

/// Minutes of lease a job's sandbox gets beyond the job's TTL: time to upload artifacts and
/// report after the agent was killed at its TTL.
pub const SANDBOX_LEASE_GRACE_MINUTES: u32 = 15;
/// Minutes past the TTL (plus the provisioning timeout) after which the host declares a
/// silent guest's job TIMEOUT.
pub const DEADLINE_GRACE_MINUTES: u32 = 10;

/// Where secrets bundles are and how they are opened.
#[derive(Debug, Clone)]
pub struct SecretsSettings {
    pub dir: PathBuf,
    /// The daemon-wide bundle name (`secrets_bundle`); a profile's `secrets_bundle` wins.
    pub default_bundle: String,
    pub identity_path: PathBuf,
}

/// The daemon settings jobs depend on.
#[derive(Debug, Clone)]
pub struct JobSettings {
    pub secrets: SecretsSettings,
    /// The upload URL handed to guests.
    pub artifact_upload_url: String,
    pub artifact_dir: PathBuf,
    /// How long an artifact token stays valid.
    pub artifact_token_ttl: Duration,
    /// Delay before a failed sandbox release is tried again.
    pub release_retry: Duration,
    /// Log bytes stored per job (`job_log_max_bytes`).
    pub log_max_bytes: u64,
}

/// Everything a job actor uses.
pub struct JobContext {
    pub store: Arc<Store>,
    pub profiles: Arc<ProfileRegistry>,
    pub sandboxes: Arc<SandboxContext>,
    pub settings: JobSettings,
    pub directory: ActorDirectory,
}

impl JobContext {
    /// One minute of job time (shorter under `test_time_scale`).
    pub fn minute(&self) -> Duration {
        self.sandboxes.settings.lease_minute
    }

    /// The clock job deadlines are computed with.
    pub fn clock(&self) -> crate::clock::Clock {
        self.sandboxes.settings.clock
    }
}

/// `job_<16 hex>`, as the Go version's ids.
pub fn new_job_id() -> std::io::Result<String> {
    Ok(format!("job_{}", crate::tokens::random_hex(8)?))
}

pub use crate::protocol::valid_job_id;

pub fn actor_of(id: &str) -> Option<ActorRef<JobMsg>> {
    ActorRef::<JobMsg>::where_is(format!("{KIND}:{id}"))
}

/// The `job` entity kind for the root supervisor.
pub struct JobFactory {
    pub ctx: Arc<JobContext>,
}

impl EntityFactory for JobFactory {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn live_ids(&self) -> Result<Vec<String>, EntityError> {
        Ok(self.ctx.store.live_job_ids()?)
    }

    fn spawn(&self, id: String, name: String, supervisor: ActorCell) -> SpawnFuture {
        let ctx = Arc::clone(&self.ctx);
        Box::pin(async move {
            if !valid_job_id(&id) {
                return Err(SpawnErr::StartupFailed(format!("bad job id {id}").into()));
            }
            let (actor, _) = Actor::spawn_linked(Some(name), JobActor { ctx }, id, supervisor).await?;
            Ok(actor.get_cell())
        })
    }

    fn give_up(&self, id: &str, reason: &str) -> Result<(), EntityError> {
        let job =
            self.ctx.store.get_job(id)?.ok_or_else(|| EntityError::NoRecord { kind: KIND, id: id.to_string() })?;
        if !job.status.is_final() {
            self.ctx.store.transition_job(id, job.status, crate::model::JobState::Failed, Some(reason), None, None)?;
        }
        // Nobody will release the sandbox now; the sandbox's own lease still ends it.
        Ok(self.ctx.store.mark_job_released(id)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_are_checked_strictly() {
        let id = new_job_id().unwrap_or_default();
        assert!(valid_job_id(&id), "{id}");
        for bad in ["job_", "job_../../etc", "job_0123456789abcdeg", "sandbox_0123456789abcdef", ""] {
            assert!(!valid_job_id(bad), "{bad}");
        }
    }
}
