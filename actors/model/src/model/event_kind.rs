//! Every kind of event the daemon records, as one catalog: the kinds are part of the API
//! (`EVENT_SCHEMA_VERSION`), and whether an event reports a failure is said here, once,
//! not guessed from its name.

use std::borrow::Cow;

/// What an operator operation's event says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperationPhase {
    Started,
    Completed,
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A sandbox record was created or changed state.
    SandboxState,
    /// A provisioning step is about to run.
    ProvisionStep,
    ProvisionFailed,
    /// The guest reported its address: the sandbox is up.
    SandboxReady,
    LeaseRenewed,
    LeaseExpired,
    /// A sandbox was taken from the warm pool by `sandbox new` or a job.
    SandboxClaimed,
    /// The warm pool could not add a sandbox (it tries again later).
    PoolRefillFailed,
    /// The warm pool destroyed a sandbox it no longer wants (a changed or smaller pool, a
    /// failed or stopped pooled sandbox).
    PoolDrained,
    DestroyStarted,
    /// The VM at the sandbox's VMID is not AgentLab's: nothing was destroyed.
    DestroyRefused,
    DestroyFailed,
    /// The VM was destroyed, but Proxmox warned (a disk it could not remove).
    DestroyWarnings,
    /// The keepalive stop at lease expiry failed.
    StopFailed,
    Vanished,
    Moved,
    AddressChanged,
    OrphansFound,
    OrphanDestroyed,
    /// Idle for its window (no SSH flow, CPU under the threshold): stopped, with the evidence.
    IdleStop,
    /// The idle probe cannot tell (no conntrack, Proxmox unanswered): nothing is stopped.
    IdleProbeFailed,
    /// A guest port was published (`exposure.create`), removed (`exposure.delete`), found
    /// lost and published again (`exposure.republished`), or could not be published.
    ExposureCreated,
    ExposureDeleted,
    ExposureRepublished,
    ExposureFailed,
    /// `sandbox.<op>.<phase>` for start, stop, pause, resume, revert, snapshots, update.
    Operation {
        op: &'static str,
        phase: OperationPhase,
    },
    JobCreated,
    JobState,
    JobPhase,
    JobLog,
    /// The job's stored log reached `job_log_max_bytes`.
    JobLogTruncated,
    JobReleaseFailed,
    ArtifactUploaded,
    /// The retention sweep deleted a job's artifacts (past its profile's retention, or
    /// the oldest beyond `artifact_retention_max_total_bytes`).
    ArtifactsExpired,
    /// A job completed without its result bundle.
    JobBundleMissing,
    /// An actor failed and is restarted from its record after a back-off.
    ActorRestarting,
    /// An actor failed too often and its entity was marked FAILED.
    ActorGaveUp,
    DaemonStarted,
    DaemonStopping,
    ProfilesReloaded,
    ProfilesReloadFailed,
    ProxmoxReachable,
    ProxmoxUnreachable,
    /// An operator changed one entry of a secrets bundle (names only).
    SecretsChanged,
    /// An operator had a bundle's values shown (`secrets show --reveal`).
    SecretsRevealed,
    /// The daemon's age key was rotated and every bundle re-sealed to the new one.
    SecretsKeyRotated,
    /// A key rotation stopped before every bundle was re-sealed (both keys kept).
    SecretsRotateFailed,
}

impl EventKind {
    /// The kind as stored and served.
    pub fn name(self) -> Cow<'static, str> {
        use EventKind as K;
        Cow::Borrowed(match self {
            K::SandboxState => "sandbox.state",
            K::ProvisionStep => "sandbox.provision.step",
            K::ProvisionFailed => "sandbox.provision_failed",
            K::SandboxReady => "sandbox.slo.ready",
            K::LeaseRenewed => "sandbox.lease",
            K::LeaseExpired => "sandbox.lease.expired",
            K::SandboxClaimed => "sandbox.claimed",
            K::PoolRefillFailed => "pool.refill.failed",
            K::PoolDrained => "pool.drained",
            K::DestroyStarted => "sandbox.destroy.started",
            K::DestroyRefused => "sandbox.destroy.refused",
            K::DestroyFailed => "sandbox.destroy.failed",
            K::DestroyWarnings => "sandbox.destroy.warnings",
            K::StopFailed => "sandbox.stop.failed",
            K::Vanished => "sandbox.vanished",
            K::Moved => "sandbox.moved",
            K::AddressChanged => "sandbox.ip_changed",
            K::OrphansFound => "sandbox.orphans.found",
            K::OrphanDestroyed => "sandbox.orphan.destroyed",
            K::IdleStop => "sandbox.idle_stop",
            K::IdleProbeFailed => "sandbox.idle_probe.failed",
            K::ExposureCreated => "exposure.create",
            K::ExposureDeleted => "exposure.delete",
            K::ExposureRepublished => "exposure.republished",
            K::ExposureFailed => "exposure.publish.failed",
            K::Operation { op, phase } => {
                let phase = match phase {
                    OperationPhase::Started => "started",
                    OperationPhase::Completed => "completed",
                    OperationPhase::Failed => "failed",
                };
                return Cow::Owned(format!("sandbox.{op}.{phase}"));
            }
            K::JobCreated => "job.created",
            K::JobState => "job.state",
            K::JobPhase => "job.phase",
            K::JobLog => "job.log",
            K::JobLogTruncated => "job.log.truncated",
            K::JobReleaseFailed => "job.release.failed",
            K::ArtifactUploaded => "artifact.upload",
            K::ArtifactsExpired => "artifact.expired",
            K::JobBundleMissing => "job.bundle.missing",
            // The stored names predate the catalog and are kept for the API.
            K::ActorRestarting => "actor.restart.failed",
            K::ActorGaveUp => "actor.gave_up.failed",
            K::DaemonStarted => "daemon.started",
            K::DaemonStopping => "daemon.stopping",
            K::ProfilesReloaded => "profiles.reloaded",
            K::ProfilesReloadFailed => "profiles.reload.failed",
            K::ProxmoxReachable => "proxmox.reachable",
            K::ProxmoxUnreachable => "proxmox.unreachable.failed",
            K::SecretsChanged => "secrets.changed",
            K::SecretsRevealed => "secrets.revealed",
            K::SecretsKeyRotated => "secrets.key_rotated",
            K::SecretsRotateFailed => "secrets.rotate.failed",
        })
    }

    /// Whether the event reports something that went wrong (what `status` lists as recent
    /// failures). A state change to FAILED is one too; the store checks that itself.
    pub fn is_failure(self) -> bool {
        use EventKind as K;
        match self {
            K::ProvisionFailed
            | K::DestroyRefused
            | K::DestroyFailed
            | K::DestroyWarnings
            | K::StopFailed
            | K::Vanished
            | K::JobReleaseFailed
            | K::JobBundleMissing
            | K::IdleProbeFailed
            | K::ExposureFailed
            | K::ActorRestarting
            | K::ActorGaveUp
            | K::ProfilesReloadFailed
            | K::PoolRefillFailed
            | K::SecretsRotateFailed
            | K::ProxmoxUnreachable => true,
            K::Operation { phase, .. } => phase == OperationPhase::Failed,
            K::SandboxState
            | K::ProvisionStep
            | K::SandboxReady
            | K::LeaseRenewed
            | K::LeaseExpired
            | K::SandboxClaimed
            | K::PoolDrained
            | K::DestroyStarted
            | K::Moved
            | K::AddressChanged
            | K::OrphansFound
            | K::OrphanDestroyed
            | K::IdleStop
            | K::ExposureCreated
            | K::ExposureDeleted
            | K::ExposureRepublished
            | K::JobCreated
            | K::JobState
            | K::JobPhase
            | K::JobLog
            | K::JobLogTruncated
            | K::ArtifactUploaded
            | K::ArtifactsExpired
            | K::DaemonStarted
            | K::DaemonStopping
            | K::ProfilesReloaded
            | K::SecretsChanged
            | K::SecretsRevealed
            | K::SecretsKeyRotated
            | K::ProxmoxReachable => false,
        }
    }
}

/// Lists the kinds that carry no data, and fails to compile when one is missing: the match
/// below must name every variant, so a new kind goes here too (and into docs/reference/events.md).
macro_rules! catalog {
    ($($kind:ident),* $(,)?) => {
        const SIMPLE: &[EventKind] = &[$(EventKind::$kind),*];
        const _: fn(EventKind) = |kind| match kind {
            $(EventKind::$kind)|* | EventKind::Operation { .. } => (),
        };
    };
}

catalog!(
    SandboxState,
    ProvisionStep,
    ProvisionFailed,
    SandboxReady,
    LeaseRenewed,
    LeaseExpired,
    SandboxClaimed,
    PoolRefillFailed,
    PoolDrained,
    DestroyStarted,
    DestroyRefused,
    DestroyFailed,
    DestroyWarnings,
    StopFailed,
    Vanished,
    Moved,
    AddressChanged,
    OrphansFound,
    OrphanDestroyed,
    IdleStop,
    IdleProbeFailed,
    ExposureCreated,
    ExposureDeleted,
    ExposureRepublished,
    ExposureFailed,
    JobCreated,
    JobState,
    JobPhase,
    JobLog,
    JobLogTruncated,
    JobReleaseFailed,
    ArtifactUploaded,
    ArtifactsExpired,
    JobBundleMissing,
    ActorRestarting,
    ActorGaveUp,
    DaemonStarted,
    DaemonStopping,
    ProfilesReloaded,
    ProfilesReloadFailed,
    ProxmoxReachable,
    ProxmoxUnreachable,
    SecretsChanged,
    SecretsRevealed,
    SecretsKeyRotated,
    SecretsRotateFailed,
);

const PHASES: [OperationPhase; 3] = [OperationPhase::Started, OperationPhase::Completed, OperationPhase::Failed];

impl EventKind {
    /// The `op` of every `Operation` event (`sandbox.<op>.<phase>`): the names the sandbox
    /// actor's operations go by (`SandboxOp::name`; `actors/tests/operation_events.rs` holds
    /// the two lists together).
    pub const OPERATIONS: &'static [&'static str] =
        &["start", "stop", "pause", "resume", "revert", "snapshot.save", "snapshot.restore", "update"];

    /// Every kind the daemon records: each kind without data once, and `Operation` once per
    /// op and phase.
    pub const ALL: &'static [EventKind] = &{
        let mut all = [EventKind::SandboxState; SIMPLE.len() + EventKind::OPERATIONS.len() * PHASES.len()];
        let mut i = 0;
        while i < SIMPLE.len() {
            all[i] = SIMPLE[i];
            i += 1;
        }
        let mut op = 0;
        while op < EventKind::OPERATIONS.len() {
            let mut phase = 0;
            while phase < PHASES.len() {
                all[i] = EventKind::Operation { op: EventKind::OPERATIONS[op], phase: PHASES[phase] };
                i += 1;
                phase += 1;
            }
            op += 1;
        }
        all
    };
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_names_are_unique_and_every_operation_phase_is_there() {
        let mut seen = std::collections::BTreeSet::new();
        let shared: Vec<String> =
            EventKind::ALL.iter().map(|k| k.name().into_owned()).filter(|name| !seen.insert(name.clone())).collect();
        // Known: the keepalive stop at lease expiry and a failed `sandbox stop` share one name
        // (docs/reference/events.md says so); no other two kinds may.
        assert_eq!(shared, ["sandbox.stop.failed"], "two kinds share a name");
        let names = seen;
        assert!(names.contains("sandbox.snapshot.restore.failed") && names.contains("job.log"));
    }

    #[test]
    fn names_and_failures() {
        let op = |phase| EventKind::Operation { op: "snapshot.save", phase };
        let kinds = [
            EventKind::SandboxState,
            EventKind::ProvisionFailed,
            EventKind::Vanished,
            EventKind::ActorRestarting,
            EventKind::JobLog,
            op(OperationPhase::Started),
            op(OperationPhase::Failed),
        ];
        let table: Vec<String> = kinds.iter().map(|k| format!("{} {}", k.name(), k.is_failure())).collect();
        assert_eq!(
            table,
            [
                "sandbox.state false",
                "sandbox.provision_failed true",
                "sandbox.vanished true",
                "actor.restart.failed true",
                "job.log false",
                "sandbox.snapshot.save.started false",
                "sandbox.snapshot.save.failed true",
            ]
        );
    }
}
