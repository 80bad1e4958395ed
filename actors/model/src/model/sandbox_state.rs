//! The sandbox state machine as data: one `transition` function over (state, event).
//!
//! The edges are the original product diagram (REQUESTED → PROVISIONING → BOOTING → READY
//! → RUNNING → COMPLETED | FAILED | TIMEOUT → DESTROYED) plus what the product needs beyond it:
//! SUSPENDED (pause/resume), STOPPED → BOOTING (start), a FAILED edge from every
//! pre-terminal state (a provisioning deadline fails the sandbox with its step), and a
//! Destroy edge from every state but DESTROYED.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Where a sandbox is in its life. Serialized in upper case, as the Go version's wire did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SandboxState {
    Requested,
    Provisioning,
    Booting,
    Ready,
    Running,
    Suspended,
    Completed,
    Failed,
    Timeout,
    Stopped,
    Destroyed,
}

/// What happened to a sandbox; the cause of a transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SandboxEvent {
    /// The provisioning pipeline took the request (VMID recorded, clone about to be asked for).
    BeginProvisioning,
    /// The VM was asked to boot: at the end of provisioning, or by `start` from STOPPED.
    Boot,
    /// The guest agent reported an address in the agent subnet.
    GuestReady,
    /// A job started in the sandbox (or a resume found its job still active).
    JobStarted,
    /// `pause`: the VM was suspended to RAM.
    Suspend,
    /// `resume` with no active job.
    Resume,
    /// The job in the sandbox finished successfully.
    JobCompleted,
    /// Provisioning, boot or the job failed.
    Fail,
    /// The lease ran out.
    LeaseExpired,
    /// The VM was stopped, by AgentLab or (seen by the health probe) by someone else.
    Stop,
    /// The VM was destroyed, or found gone.
    Destroy,
}

/// An event that is not allowed in a state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("sandbox in state {from} cannot take event {event:?}")]
pub struct InvalidTransition {
    pub from: SandboxState,
    pub event: SandboxEvent,
}

impl SandboxState {
    pub const ALL: [SandboxState; 11] = [
        SandboxState::Requested,
        SandboxState::Provisioning,
        SandboxState::Booting,
        SandboxState::Ready,
        SandboxState::Running,
        SandboxState::Suspended,
        SandboxState::Completed,
        SandboxState::Failed,
        SandboxState::Timeout,
        SandboxState::Stopped,
        SandboxState::Destroyed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SandboxState::Requested => "REQUESTED",
            SandboxState::Provisioning => "PROVISIONING",
            SandboxState::Booting => "BOOTING",
            SandboxState::Ready => "READY",
            SandboxState::Running => "RUNNING",
            SandboxState::Suspended => "SUSPENDED",
            SandboxState::Completed => "COMPLETED",
            SandboxState::Failed => "FAILED",
            SandboxState::Timeout => "TIMEOUT",
            SandboxState::Stopped => "STOPPED",
            SandboxState::Destroyed => "DESTROYED",
        }
    }

    /// DESTROYED is the only state with no way out; every other record has a live actor.
    pub fn is_terminal(self) -> bool {
        self == SandboxState::Destroyed
    }

    /// Provisioning is under way (first boot or a re-boot): the pipeline owns the sandbox.
    pub fn is_provisioning(self) -> bool {
        matches!(self, SandboxState::Requested | SandboxState::Provisioning | SandboxState::Booting)
    }

    /// The record says the VM is up (booted, and not stopped since).
    pub fn has_vm_running(self) -> bool {
        matches!(self, SandboxState::Ready | SandboxState::Running | SandboxState::Suspended)
    }

    /// The health probe watches the VM: it exists and is either up or stopped on purpose.
    pub fn is_probed(self) -> bool {
        self.has_vm_running() || self == SandboxState::Stopped
    }

    /// The guest is up and its agent-subnet address is worth following.
    pub fn has_guest_address(self) -> bool {
        matches!(self, SandboxState::Ready | SandboxState::Running)
    }
}

impl SandboxEvent {
    pub const ALL: [SandboxEvent; 11] = [
        SandboxEvent::BeginProvisioning,
        SandboxEvent::Boot,
        SandboxEvent::GuestReady,
        SandboxEvent::JobStarted,
        SandboxEvent::Suspend,
        SandboxEvent::Resume,
        SandboxEvent::JobCompleted,
        SandboxEvent::Fail,
        SandboxEvent::LeaseExpired,
        SandboxEvent::Stop,
        SandboxEvent::Destroy,
    ];
}

/// The one place that decides whether an event moves a sandbox, and where to.
pub fn transition(from: SandboxState, event: SandboxEvent) -> Result<SandboxState, InvalidTransition> {
    use SandboxEvent as E;
    use SandboxState as S;
    let to = match (from, event) {
        (S::Requested, E::BeginProvisioning) => Some(S::Provisioning),
        (S::Requested, E::Fail) => Some(S::Failed),
        (S::Requested, E::LeaseExpired) => Some(S::Timeout),
        (S::Requested, E::Destroy) => Some(S::Destroyed),
        (S::Requested, E::Boot | E::GuestReady | E::JobStarted | E::Suspend | E::Resume) => None,
        (S::Requested, E::JobCompleted | E::Stop) => None,

        (S::Provisioning, E::Boot) => Some(S::Booting),
        (S::Provisioning, E::Fail) => Some(S::Failed),
        (S::Provisioning, E::LeaseExpired) => Some(S::Timeout),
        (S::Provisioning, E::Destroy) => Some(S::Destroyed),
        (S::Provisioning, E::BeginProvisioning | E::GuestReady | E::JobStarted) => None,
        (S::Provisioning, E::Suspend | E::Resume | E::JobCompleted | E::Stop) => None,

        (S::Booting, E::GuestReady) => Some(S::Ready),
        (S::Booting, E::Fail) => Some(S::Failed),
        (S::Booting, E::LeaseExpired) => Some(S::Timeout),
        (S::Booting, E::Stop) => Some(S::Stopped),
        (S::Booting, E::Destroy) => Some(S::Destroyed),
        (S::Booting, E::BeginProvisioning | E::Boot | E::JobStarted) => None,
        (S::Booting, E::Suspend | E::Resume | E::JobCompleted) => None,

        (S::Ready, E::JobStarted) => Some(S::Running),
        (S::Ready, E::Suspend) => Some(S::Suspended),
        (S::Ready, E::Fail) => Some(S::Failed),
        (S::Ready, E::LeaseExpired) => Some(S::Timeout),
        (S::Ready, E::Stop) => Some(S::Stopped),
        (S::Ready, E::Destroy) => Some(S::Destroyed),
        (S::Ready, E::BeginProvisioning | E::Boot | E::GuestReady) => None,
        (S::Ready, E::Resume | E::JobCompleted) => None,

        (S::Running, E::Suspend) => Some(S::Suspended),
        (S::Running, E::JobCompleted) => Some(S::Completed),
        (S::Running, E::Fail) => Some(S::Failed),
        (S::Running, E::LeaseExpired) => Some(S::Timeout),
        (S::Running, E::Stop) => Some(S::Stopped),
        (S::Running, E::Destroy) => Some(S::Destroyed),
        (S::Running, E::BeginProvisioning | E::Boot | E::GuestReady) => None,
        (S::Running, E::JobStarted | E::Resume) => None,

        (S::Suspended, E::Resume) => Some(S::Ready),
        (S::Suspended, E::JobStarted) => Some(S::Running),
        (S::Suspended, E::Fail) => Some(S::Failed),
        (S::Suspended, E::LeaseExpired) => Some(S::Timeout),
        (S::Suspended, E::Stop) => Some(S::Stopped),
        (S::Suspended, E::Destroy) => Some(S::Destroyed),
        (S::Suspended, E::BeginProvisioning | E::Boot | E::GuestReady) => None,
        (S::Suspended, E::Suspend | E::JobCompleted) => None,

        (S::Completed | S::Failed | S::Timeout, E::Stop) => Some(S::Stopped),
        (S::Completed | S::Failed | S::Timeout, E::Destroy) => Some(S::Destroyed),
        (S::Completed | S::Failed | S::Timeout, E::BeginProvisioning | E::Boot) => None,
        (S::Completed | S::Failed | S::Timeout, E::GuestReady | E::JobStarted) => None,
        (S::Completed | S::Failed | S::Timeout, E::Suspend | E::Resume) => None,
        (S::Completed | S::Failed | S::Timeout, E::JobCompleted | E::Fail) => None,
        (S::Completed | S::Failed | S::Timeout, E::LeaseExpired) => None,

        (S::Stopped, E::Boot) => Some(S::Booting),
        (S::Stopped, E::Destroy) => Some(S::Destroyed),
        (S::Stopped, E::BeginProvisioning | E::GuestReady | E::JobStarted) => None,
        (S::Stopped, E::Suspend | E::Resume | E::JobCompleted | E::Fail) => None,
        (S::Stopped, E::LeaseExpired | E::Stop) => None,

        (S::Destroyed, _) => None,
    };
    to.ok_or(InvalidTransition { from, event })
}

impl fmt::Display for SandboxState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A state name that is not one of the eleven.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown sandbox state `{0}`; valid states: REQUESTED, PROVISIONING, BOOTING, READY, RUNNING, SUSPENDED, COMPLETED, FAILED, TIMEOUT, STOPPED, DESTROYED"
)]
pub struct UnknownState(pub String);

impl FromStr for SandboxState {
    type Err = UnknownState;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let upper = s.trim().to_ascii_uppercase();
        SandboxState::ALL.into_iter().find(|state| state.as_str() == upper).ok_or_else(|| UnknownState(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every (state, event) pair, rendered as `STATE: Event->TARGET ...` with `-` for refused.
    fn render_table() -> String {
        let mut out = String::new();
        for state in SandboxState::ALL {
            out.push_str(state.as_str());
            out.push(':');
            for event in SandboxEvent::ALL {
                let target = transition(state, event).map_or("-", SandboxState::as_str);
                out.push_str(&format!(" {event:?}->{target}"));
            }
            out.push('\n');
        }
        out
    }

    #[test]
    fn state_sets_are_exactly_these() {
        let set = |p: fn(SandboxState) -> bool| -> Vec<&str> {
            SandboxState::ALL.into_iter().filter(|s| p(*s)).map(SandboxState::as_str).collect()
        };
        assert_eq!(set(SandboxState::is_provisioning), ["REQUESTED", "PROVISIONING", "BOOTING"]);
        assert_eq!(set(SandboxState::has_vm_running), ["READY", "RUNNING", "SUSPENDED"]);
        assert_eq!(set(SandboxState::is_probed), ["READY", "RUNNING", "SUSPENDED", "STOPPED"]);
        assert_eq!(set(SandboxState::has_guest_address), ["READY", "RUNNING"]);
        assert_eq!(set(SandboxState::is_terminal), ["DESTROYED"]);
    }

    #[test]
    fn transition_table_is_exactly_the_documented_one() {
        let expected = "\
REQUESTED: BeginProvisioning->PROVISIONING Boot->- GuestReady->- JobStarted->- Suspend->- Resume->- JobCompleted->- Fail->FAILED LeaseExpired->TIMEOUT Stop->- Destroy->DESTROYED
PROVISIONING: BeginProvisioning->- Boot->BOOTING GuestReady->- JobStarted->- Suspend->- Resume->- JobCompleted->- Fail->FAILED LeaseExpired->TIMEOUT Stop->- Destroy->DESTROYED
BOOTING: BeginProvisioning->- Boot->- GuestReady->READY JobStarted->- Suspend->- Resume->- JobCompleted->- Fail->FAILED LeaseExpired->TIMEOUT Stop->STOPPED Destroy->DESTROYED
READY: BeginProvisioning->- Boot->- GuestReady->- JobStarted->RUNNING Suspend->SUSPENDED Resume->- JobCompleted->- Fail->FAILED LeaseExpired->TIMEOUT Stop->STOPPED Destroy->DESTROYED
RUNNING: BeginProvisioning->- Boot->- GuestReady->- JobStarted->- Suspend->SUSPENDED Resume->- JobCompleted->COMPLETED Fail->FAILED LeaseExpired->TIMEOUT Stop->STOPPED Destroy->DESTROYED
SUSPENDED: BeginProvisioning->- Boot->- GuestReady->- JobStarted->RUNNING Suspend->- Resume->READY JobCompleted->- Fail->FAILED LeaseExpired->TIMEOUT Stop->STOPPED Destroy->DESTROYED
COMPLETED: BeginProvisioning->- Boot->- GuestReady->- JobStarted->- Suspend->- Resume->- JobCompleted->- Fail->- LeaseExpired->- Stop->STOPPED Destroy->DESTROYED
FAILED: BeginProvisioning->- Boot->- GuestReady->- JobStarted->- Suspend->- Resume->- JobCompleted->- Fail->- LeaseExpired->- Stop->STOPPED Destroy->DESTROYED
TIMEOUT: BeginProvisioning->- Boot->- GuestReady->- JobStarted->- Suspend->- Resume->- JobCompleted->- Fail->- LeaseExpired->- Stop->STOPPED Destroy->DESTROYED
STOPPED: BeginProvisioning->- Boot->BOOTING GuestReady->- JobStarted->- Suspend->- Resume->- JobCompleted->- Fail->- LeaseExpired->- Stop->- Destroy->DESTROYED
DESTROYED: BeginProvisioning->- Boot->- GuestReady->- JobStarted->- Suspend->- Resume->- JobCompleted->- Fail->- LeaseExpired->- Stop->- Destroy->-
";
        assert_eq!(render_table(), expected);
    }

    #[test]
    fn every_state_but_destroyed_has_a_destroy_edge() {
        for state in SandboxState::ALL {
            let destroyed = transition(state, SandboxEvent::Destroy);
            if state.is_terminal() {
                assert!(destroyed.is_err());
            } else {
                assert_eq!(destroyed, Ok(SandboxState::Destroyed), "{state}");
            }
        }
    }

    #[test]
    fn the_seed_diagram_edges_all_hold() {
        use SandboxEvent as E;
        use SandboxState as S;
        let seed = [
            (S::Requested, E::BeginProvisioning, S::Provisioning),
            (S::Provisioning, E::Boot, S::Booting),
            (S::Booting, E::GuestReady, S::Ready),
            (S::Ready, E::JobStarted, S::Running),
            (S::Running, E::JobCompleted, S::Completed),
            (S::Running, E::Fail, S::Failed),
            (S::Running, E::LeaseExpired, S::Timeout),
            (S::Running, E::Stop, S::Stopped),
            (S::Completed, E::Stop, S::Stopped),
            (S::Failed, E::Stop, S::Stopped),
            (S::Timeout, E::Stop, S::Stopped),
            (S::Stopped, E::Destroy, S::Destroyed),
            // Beyond the seed: pause/resume and start.
            (S::Running, E::Suspend, S::Suspended),
            (S::Suspended, E::Resume, S::Ready),
            (S::Stopped, E::Boot, S::Booting),
        ];
        for (from, event, to) in seed {
            assert_eq!(transition(from, event), Ok(to), "{from} --{event:?}-->");
        }
    }

    #[test]
    fn state_names_round_trip_through_text_and_json() {
        for state in SandboxState::ALL {
            assert_eq!(state.as_str().parse::<SandboxState>(), Ok(state));
            assert_eq!(state.as_str().to_lowercase().parse::<SandboxState>(), Ok(state));
            let json = serde_json::to_string(&state).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", state.as_str()));
        }
        assert!("RUNING".parse::<SandboxState>().is_err());
    }
}
