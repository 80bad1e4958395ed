//! The sandbox actor's decisions, as pure functions of the record (and what Proxmox
//! answered), tested as tables. Handlers read decide → record → act: they call one of
//! these, then write what it says and start the work it names.

use crate::model::{Intent, SandboxState};
use crate::store::SandboxRecord;
use agentlab_proxmox::PveError;
use agentlab_proxmox::types::VmStatus;
use time::OffsetDateTime;

/// What `Reconcile` (a fresh actor, or a record changed from outside) does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnReconcile {
    /// A destroy was in progress: run the teardown again, then DESTROYED.
    ResumeDestroy,
    /// Provisioning is to start or was in progress: continue from the recorded step.
    ContinueProvisioning,
    /// The cleanup after a failed first provisioning was interrupted: finish it, stay FAILED.
    FinishCleanup,
    /// The lease expired and nothing acted on it yet (the daemon was down).
    ExpireLease,
    /// DESTROYED: nothing left to own; the actor stops.
    Stop,
    /// Arm the lease timer and the probe, and check the VM at once.
    Watch,
}

pub fn on_reconcile(rec: &SandboxRecord) -> OnReconcile {
    if rec.intent == Some(Intent::Destroy) {
        return OnReconcile::ResumeDestroy;
    }
    match rec.state {
        state if state.is_provisioning() => OnReconcile::ContinueProvisioning,
        SandboxState::Failed if rec.cleanup_pending() => OnReconcile::FinishCleanup,
        SandboxState::Timeout => OnReconcile::ExpireLease,
        SandboxState::Destroyed => OnReconcile::Stop,
        _ => OnReconcile::Watch,
    }
}

/// What the lease timer firing means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnLeaseTimer {
    /// The lease was renewed after the timer was armed: arm it again.
    NotYet,
    /// A destroy is already under way: let it finish.
    AlreadyDestroying,
    /// The lease is over: TIMEOUT, then `after_expiry`.
    Expire,
}

pub fn on_lease_timer(rec: &SandboxRecord, now: OffsetDateTime) -> OnLeaseTimer {
    // No deadline at all counts as expired: the timer fired for a lease the record no
    // longer has.
    let expired = rec.lease_expires_at.is_none_or(|t| t <= now);
    if !expired && rec.state != SandboxState::Timeout {
        OnLeaseTimer::NotYet
    } else if rec.intent == Some(Intent::Destroy) {
        OnLeaseTimer::AlreadyDestroying
    } else {
        OnLeaseTimer::Expire
    }
}

/// What follows a lease expiry, given the state it left the record in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterExpiry {
    /// Keepalive: stop the VM and keep it (the record becomes STOPPED).
    StopAndKeep,
    Destroy,
    Nothing,
}

pub fn after_expiry(state: SandboxState, keepalive: bool) -> AfterExpiry {
    match (keepalive, state) {
        (true, SandboxState::Timeout) => AfterExpiry::StopAndKeep,
        (true, _) | (false, SandboxState::Destroyed) => AfterExpiry::Nothing,
        (false, _) => AfterExpiry::Destroy,
    }
}

/// What the census entry of a VM means for its sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CensusVerdict {
    /// The list agrees with the record: no call for this VM.
    Agrees,
    /// Something may have changed: ask Proxmox about this VM (`on_probed` decides).
    Check,
}

/// The census table: absent, on another node, or not running while the record says it
/// runs means a check; a suspended sandbox is always checked (the list shows a paused VM
/// as `running`); a stopped one only when absent or moved (a probe would do nothing about
/// it running: `on_probed`). A VM paused behind a READY record is the one case only a
/// probe sees — `sandbox reconcile` probes every sandbox.
pub fn on_census(rec: &SandboxRecord, seen: Option<&super::census::Seen>) -> CensusVerdict {
    let Some(seen) = seen else { return CensusVerdict::Check };
    if rec.node.as_deref() != Some(seen.node.as_str()) {
        return CensusVerdict::Check;
    }
    let agrees = match rec.state {
        SandboxState::Ready | SandboxState::Running => seen.running,
        SandboxState::Stopped => true,
        _ => false,
    };
    if agrees { CensusVerdict::Agrees } else { CensusVerdict::Check }
}

/// What a probe found, against what the record says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeFinding {
    /// The VM is gone from the cluster (deleted outside AgentLab): DESTROYED.
    Vanished,
    /// The VM stopped without AgentLab: STOPPED.
    StoppedOutside,
    /// The VM is paused but the record does not know (a crash right after a pause).
    FoundPaused,
    /// The VM runs again although the record says SUSPENDED.
    FoundResumed,
    /// The guest's agent-subnet address changed.
    AddressChanged(String),
    Nothing,
}

pub fn on_probed(rec: &SandboxRecord, result: &Result<VmStatus, PveError>, ip: Option<&str>) -> ProbeFinding {
    let status = match result {
        Err(PveError::NotFound(_)) => return ProbeFinding::Vanished,
        // Proxmox did not answer: nothing is known, the next probe asks again.
        Err(_) => return ProbeFinding::Nothing,
        Ok(status) => status,
    };
    if !status.is_running() && rec.state.has_vm_running() {
        ProbeFinding::StoppedOutside
    } else if status.is_paused() && rec.state.has_guest_address() {
        ProbeFinding::FoundPaused
    } else if !status.is_paused() && rec.state == SandboxState::Suspended {
        ProbeFinding::FoundResumed
    } else {
        match ip.filter(|ip| rec.ip.as_deref() != Some(*ip)) {
            Some(ip) => ProbeFinding::AddressChanged(ip.to_string()),
            None => ProbeFinding::Nothing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Step;

    fn record(state: SandboxState, intent: Option<Intent>) -> SandboxRecord {
        SandboxRecord { intent, ..SandboxRecord::sample(1001, state) }
    }

    #[test]
    fn reconcile_table() {
        let intents = [None, Some(Intent::Provision(Step::Snippet)), Some(Intent::Destroy), Some(Intent::Cleanup)];
        let mut table = String::new();
        for state in SandboxState::ALL {
            let row: Vec<String> = intents.iter().map(|i| format!("{:?}", on_reconcile(&record(state, *i)))).collect();
            table.push_str(&format!("{}: {}\n", state.as_str(), row.join(" ")));
        }
        // Columns: no intent, at a provisioning step, destroying, cleaning up.
        let expected = "\
REQUESTED: ContinueProvisioning ContinueProvisioning ResumeDestroy ContinueProvisioning
PROVISIONING: ContinueProvisioning ContinueProvisioning ResumeDestroy ContinueProvisioning
BOOTING: ContinueProvisioning ContinueProvisioning ResumeDestroy ContinueProvisioning
READY: Watch Watch ResumeDestroy Watch
RUNNING: Watch Watch ResumeDestroy Watch
SUSPENDED: Watch Watch ResumeDestroy Watch
COMPLETED: Watch Watch ResumeDestroy Watch
FAILED: Watch FinishCleanup ResumeDestroy FinishCleanup
TIMEOUT: ExpireLease ExpireLease ResumeDestroy ExpireLease
STOPPED: Watch Watch ResumeDestroy Watch
DESTROYED: Stop Stop ResumeDestroy Stop
";
        assert_eq!(table, expected);
        // A FAILED record from before the Cleanup intent, with its snippet still there.
        let legacy = SandboxRecord { snippet_path: Some("/x.yaml".into()), ..record(SandboxState::Failed, None) };
        assert_eq!(on_reconcile(&legacy), OnReconcile::FinishCleanup);
        // A sandbox that booted and then failed with its job keeps its VM across a restart.
        let booted = SandboxRecord { ip: Some("10.77.0.5".into()), ..legacy };
        assert_eq!(on_reconcile(&booted), OnReconcile::Watch);
    }

    #[test]
    fn lease_timer_and_expiry() {
        let now = OffsetDateTime::now_utc();
        let at = |d: time::Duration| Some(now + d);
        let live =
            SandboxRecord { lease_expires_at: at(time::Duration::minutes(5)), ..record(SandboxState::Ready, None) };
        assert_eq!(on_lease_timer(&live, now), OnLeaseTimer::NotYet);
        let over = SandboxRecord { lease_expires_at: at(-time::Duration::minutes(5)), ..live.clone() };
        assert_eq!(on_lease_timer(&over, now), OnLeaseTimer::Expire);
        let destroying = SandboxRecord { intent: Some(Intent::Destroy), ..over.clone() };
        assert_eq!(on_lease_timer(&destroying, now), OnLeaseTimer::AlreadyDestroying);
        let timed_out = SandboxRecord { state: SandboxState::Timeout, ..live };
        assert_eq!(on_lease_timer(&timed_out, now), OnLeaseTimer::Expire, "TIMEOUT is acted on whatever the clock");

        let table: Vec<String> = [SandboxState::Timeout, SandboxState::Stopped, SandboxState::Destroyed]
            .into_iter()
            .flat_map(|s| [true, false].map(move |k| format!("{} keepalive={k}: {:?}", s.as_str(), after_expiry(s, k))))
            .collect();
        assert_eq!(
            table,
            [
                "TIMEOUT keepalive=true: StopAndKeep",
                "TIMEOUT keepalive=false: Destroy",
                "STOPPED keepalive=true: Nothing",
                "STOPPED keepalive=false: Destroy",
                "DESTROYED keepalive=true: Nothing",
                "DESTROYED keepalive=false: Nothing",
            ]
        );
    }

    #[test]
    fn census_table() {
        use super::super::census::Seen;
        let here = |running| Some(Seen { node: "pve1".into(), running });
        let elsewhere = Some(Seen { node: "pve2".into(), running: true });
        let entries = [("running", here(true)), ("stopped", here(false)), ("moved", elsewhere), ("absent", None)];
        let mut table = String::new();
        for state in SandboxState::ALL.into_iter().filter(|s| s.is_probed()) {
            let rec = SandboxRecord { node: Some("pve1".into()), ..record(state, None) };
            let row: Vec<String> =
                entries.iter().map(|(name, e)| format!("{name}={:?}", on_census(&rec, e.as_ref()))).collect();
            table.push_str(&format!("{}: {}\n", state.as_str(), row.join(" ")));
        }
        let expected = "\
READY: running=Agrees stopped=Check moved=Check absent=Check
RUNNING: running=Agrees stopped=Check moved=Check absent=Check
SUSPENDED: running=Check stopped=Check moved=Check absent=Check
STOPPED: running=Agrees stopped=Agrees moved=Check absent=Check
";
        assert_eq!(table, expected);
    }

    #[test]
    fn probe_table() {
        let status = |status: &str, qmp: &str| -> Result<VmStatus, PveError> {
            Ok(serde_json::from_value(serde_json::json!({"vmid": 1001, "status": status, "qmpstatus": qmp})).unwrap())
        };
        let answers = [
            ("running", status("running", "running")),
            ("paused", status("running", "paused")),
            ("stopped", status("stopped", "stopped")),
            ("gone", Err(PveError::NotFound("Configuration file does not exist".into()))),
            ("unreachable", Err(PveError::Transient("connection refused".into()))),
        ];
        let mut table = String::new();
        for state in SandboxState::ALL.into_iter().filter(|s| s.is_probed()) {
            let rec = SandboxRecord { ip: Some("10.77.0.5".into()), ..record(state, None) };
            let row: Vec<String> =
                answers.iter().map(|(name, a)| format!("{name}={:?}", on_probed(&rec, a, Some("10.77.0.5")))).collect();
            table.push_str(&format!("{}: {}\n", state.as_str(), row.join(" ")));
        }
        let expected = "\
READY: running=Nothing paused=FoundPaused stopped=StoppedOutside gone=Vanished unreachable=Nothing
RUNNING: running=Nothing paused=FoundPaused stopped=StoppedOutside gone=Vanished unreachable=Nothing
SUSPENDED: running=FoundResumed paused=Nothing stopped=StoppedOutside gone=Vanished unreachable=Nothing
STOPPED: running=Nothing paused=Nothing stopped=Nothing gone=Vanished unreachable=Nothing
";
        assert_eq!(table, expected);
        let ready = SandboxRecord { ip: Some("10.77.0.5".into()), ..record(SandboxState::Ready, None) };
        assert_eq!(
            on_probed(&ready, &answers[0].1, Some("10.77.0.9")),
            ProbeFinding::AddressChanged("10.77.0.9".into())
        );
    }
}
