//! How a job and its sandbox tell each other what happened, written down once.
//!
//! Sandbox → job (`SandboxNotice`): the sandbox's lease expired, its VM vanished (deleted
//! outside AgentLab), or it was destroyed while the job still needed it. Each ends a live
//! job at once — without them, a job whose VM is gone waits out its whole deadline.
//! Job → sandbox (`sandbox_event_for`): the job started, completed or failed, which moves
//! the sandbox RUNNING, COMPLETED or FAILED.

use super::job_state::{JobEvent, JobState};
use super::sandbox_state::SandboxEvent;

/// What a sandbox tells its job. A job that already ended ignores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxNotice {
    /// The sandbox's lease ran out (it is destroyed, or stopped with keepalive).
    LeaseExpired,
    /// The sandbox's VM was deleted outside AgentLab.
    Vanished,
    /// The sandbox was destroyed (an operator's `sandbox destroy`, a reconcile).
    Destroyed,
}

impl SandboxNotice {
    pub const ALL: [SandboxNotice; 3] =
        [SandboxNotice::LeaseExpired, SandboxNotice::Vanished, SandboxNotice::Destroyed];

    /// The job's transition.
    pub fn job_event(self) -> JobEvent {
        match self {
            SandboxNotice::LeaseExpired => JobEvent::TimedOut,
            SandboxNotice::Vanished | SandboxNotice::Destroyed => JobEvent::Failed,
        }
    }

    /// The job's error, naming the sandbox.
    pub fn reason(self, vmid: u32) -> String {
        match self {
            SandboxNotice::LeaseExpired => format!("the lease of sandbox {vmid} expired"),
            SandboxNotice::Vanished => {
                format!("sandbox {vmid} vanished: its VM was deleted outside AgentLab while the job ran")
            }
            SandboxNotice::Destroyed => format!("sandbox {vmid} was destroyed while the job ran"),
        }
    }
}

/// What a job's new state means for its sandbox (none while QUEUED or after a cancel,
/// whose release destroys the sandbox anyway).
pub fn sandbox_event_for(job: JobState) -> Option<SandboxEvent> {
    match job {
        JobState::Running => Some(SandboxEvent::JobStarted),
        JobState::Completed => Some(SandboxEvent::JobCompleted),
        JobState::Failed | JobState::Timeout => Some(SandboxEvent::Fail),
        JobState::Queued | JobState::Canceled => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::job_state::transition;

    #[test]
    fn every_notice_ends_a_live_job_and_names_the_sandbox() {
        for notice in SandboxNotice::ALL {
            for live in [JobState::Queued, JobState::Running] {
                let to = transition(live, notice.job_event());
                assert!(to.is_ok_and(|s| s.is_final()), "{notice:?} from {live}: {to:?}");
            }
            assert!(notice.reason(1234).contains("sandbox 1234"), "{notice:?}");
        }
        let table: Vec<String> = SandboxNotice::ALL.iter().map(|n| format!("{n:?} -> {:?}", n.job_event())).collect();
        assert_eq!(table, ["LeaseExpired -> TimedOut", "Vanished -> Failed", "Destroyed -> Failed"]);
    }

    #[test]
    fn job_states_map_to_sandbox_events() {
        let table: Vec<String> = JobState::ALL.iter().map(|s| format!("{s} -> {:?}", sandbox_event_for(*s))).collect();
        assert_eq!(
            table,
            [
                "QUEUED -> None",
                "RUNNING -> Some(JobStarted)",
                "COMPLETED -> Some(JobCompleted)",
                "FAILED -> Some(Fail)",
                "TIMEOUT -> Some(Fail)",
                "CANCELED -> None",
            ]
        );
    }
}
