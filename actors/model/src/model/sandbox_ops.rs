//! Which operator operations a sandbox accepts in which state.
//!
//! The original product table (show, logs, start, destroy, lease renew;
//! docs/reference/compatibility.md) extended with the operations the product has beyond it
//! (stop, pause, resume, revert, snapshots, update),
//! whose preconditions follow the Go version's manager. A handler asks `check` before it
//! records an intent; it never re-derives these rules with its own `if`s.

use super::sandbox_state::SandboxState;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    Show,
    Logs,
    Start,
    Stop,
    Pause,
    Resume,
    Revert,
    Snapshot,
    Update,
    LeaseRenew,
    Destroy,
    ForceDestroy,
}

/// What `check` decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Do it.
    Allowed,
    /// The sandbox is already where the operation would take it: succeed without acting.
    AlreadyDone,
    /// Refused in this state.
    Refused,
}

impl Operation {
    pub const ALL: [Operation; 12] = [
        Operation::Show,
        Operation::Logs,
        Operation::Start,
        Operation::Stop,
        Operation::Pause,
        Operation::Resume,
        Operation::Revert,
        Operation::Snapshot,
        Operation::Update,
        Operation::LeaseRenew,
        Operation::Destroy,
        Operation::ForceDestroy,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Show => "show",
            Operation::Logs => "logs",
            Operation::Start => "start",
            Operation::Stop => "stop",
            Operation::Pause => "pause",
            Operation::Resume => "resume",
            Operation::Revert => "revert",
            Operation::Snapshot => "snapshot",
            Operation::Update => "update",
            Operation::LeaseRenew => "lease renew",
            Operation::Destroy => "destroy",
            Operation::ForceDestroy => "destroy --force",
        }
    }
}

/// The admission table.
pub fn check(state: SandboxState, op: Operation) -> Admission {
    use Admission::{Allowed as Yes, AlreadyDone as Done, Refused as No};
    use Operation as O;
    use SandboxState as S;
    match (op, state) {
        // Records (and their events) are kept after destruction, so both always work.
        (O::Show | O::Logs, _) => Yes,

        (O::Start, S::Stopped) => Yes,
        (O::Start, S::Booting | S::Ready | S::Running) => Done,
        (O::Start, S::Requested | S::Provisioning | S::Suspended | S::Completed) => No,
        (O::Start, S::Failed | S::Timeout | S::Destroyed) => No,

        (O::Stop, S::Booting | S::Ready | S::Running | S::Suspended) => Yes,
        (O::Stop, S::Completed | S::Failed | S::Timeout) => Yes,
        (O::Stop, S::Stopped) => Done,
        (O::Stop, S::Requested | S::Provisioning | S::Destroyed) => No,

        (O::Pause, S::Ready | S::Running) => Yes,
        (O::Pause, S::Suspended) => Done,
        (O::Pause, S::Requested | S::Provisioning | S::Booting | S::Completed) => No,
        (O::Pause, S::Failed | S::Timeout | S::Stopped | S::Destroyed) => No,

        (O::Resume, S::Suspended) => Yes,
        (O::Resume, S::Ready | S::Running) => Done,
        (O::Resume, S::Requested | S::Provisioning | S::Booting | S::Completed) => No,
        (O::Resume, S::Failed | S::Timeout | S::Stopped | S::Destroyed) => No,

        (O::Revert, S::Ready | S::Running | S::Suspended | S::Stopped) => Yes,
        (O::Revert, S::Completed | S::Failed | S::Timeout) => Yes,
        (O::Revert, S::Requested | S::Provisioning | S::Booting | S::Destroyed) => No,

        (O::Snapshot, S::Stopped) => Yes,
        (O::Snapshot, S::Requested | S::Provisioning | S::Booting | S::Ready) => No,
        (O::Snapshot, S::Running | S::Suspended | S::Completed | S::Failed) => No,
        (O::Snapshot, S::Timeout | S::Destroyed) => No,

        (O::Update, S::Ready | S::Running | S::Suspended | S::Stopped) => Yes,
        (O::Update, S::Requested | S::Provisioning | S::Booting | S::Completed) => No,
        (O::Update, S::Failed | S::Timeout | S::Destroyed) => No,

        // READY too: an interactive sandbox (`sandbox new`, no job) is READY all its life, and
        // its operator must be able to keep it (the seed allowed RUNNING only, where a
        // `sandbox new` sandbox never is; docs/reference/compatibility.md).
        (O::LeaseRenew, S::Ready | S::Running) => Yes,
        (O::LeaseRenew, S::Requested | S::Provisioning | S::Booting) => No,
        (O::LeaseRenew, S::Suspended | S::Completed | S::Failed | S::Timeout) => No,
        (O::LeaseRenew, S::Stopped | S::Destroyed) => No,

        // A plain destroy leaves an in-flight provisioning alone; --force takes it down too.
        (O::Destroy, S::Ready | S::Running | S::Suspended | S::Stopped) => Yes,
        (O::Destroy, S::Completed | S::Failed | S::Timeout) => Yes,
        (O::Destroy, S::Destroyed) => Done,
        (O::Destroy, S::Requested | S::Provisioning | S::Booting) => No,

        (O::ForceDestroy, S::Destroyed) => Done,
        (O::ForceDestroy, _) => Yes,
    }
}

/// The states in which `op` is allowed, for "valid states: …" in refusals.
pub fn allowed_states(op: Operation) -> Vec<SandboxState> {
    SandboxState::ALL.into_iter().filter(|state| check(*state, op) == Admission::Allowed).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render() -> String {
        let mut out = String::new();
        for op in Operation::ALL {
            out.push_str(op.as_str());
            out.push(':');
            for state in SandboxState::ALL {
                let mark = match check(state, op) {
                    Admission::Allowed => "+",
                    Admission::AlreadyDone => "=",
                    Admission::Refused => "-",
                };
                out.push_str(&format!(" {state}{mark}"));
            }
            out.push('\n');
        }
        out
    }

    #[test]
    fn admission_table_is_exactly_the_documented_one() {
        let expected = "\
show: REQUESTED+ PROVISIONING+ BOOTING+ READY+ RUNNING+ SUSPENDED+ COMPLETED+ FAILED+ TIMEOUT+ STOPPED+ DESTROYED+
logs: REQUESTED+ PROVISIONING+ BOOTING+ READY+ RUNNING+ SUSPENDED+ COMPLETED+ FAILED+ TIMEOUT+ STOPPED+ DESTROYED+
start: REQUESTED- PROVISIONING- BOOTING= READY= RUNNING= SUSPENDED- COMPLETED- FAILED- TIMEOUT- STOPPED+ DESTROYED-
stop: REQUESTED- PROVISIONING- BOOTING+ READY+ RUNNING+ SUSPENDED+ COMPLETED+ FAILED+ TIMEOUT+ STOPPED= DESTROYED-
pause: REQUESTED- PROVISIONING- BOOTING- READY+ RUNNING+ SUSPENDED= COMPLETED- FAILED- TIMEOUT- STOPPED- DESTROYED-
resume: REQUESTED- PROVISIONING- BOOTING- READY= RUNNING= SUSPENDED+ COMPLETED- FAILED- TIMEOUT- STOPPED- DESTROYED-
revert: REQUESTED- PROVISIONING- BOOTING- READY+ RUNNING+ SUSPENDED+ COMPLETED+ FAILED+ TIMEOUT+ STOPPED+ DESTROYED-
snapshot: REQUESTED- PROVISIONING- BOOTING- READY- RUNNING- SUSPENDED- COMPLETED- FAILED- TIMEOUT- STOPPED+ DESTROYED-
update: REQUESTED- PROVISIONING- BOOTING- READY+ RUNNING+ SUSPENDED+ COMPLETED- FAILED- TIMEOUT- STOPPED+ DESTROYED-
lease renew: REQUESTED- PROVISIONING- BOOTING- READY+ RUNNING+ SUSPENDED- COMPLETED- FAILED- TIMEOUT- STOPPED- DESTROYED-
destroy: REQUESTED- PROVISIONING- BOOTING- READY+ RUNNING+ SUSPENDED+ COMPLETED+ FAILED+ TIMEOUT+ STOPPED+ DESTROYED=
destroy --force: REQUESTED+ PROVISIONING+ BOOTING+ READY+ RUNNING+ SUSPENDED+ COMPLETED+ FAILED+ TIMEOUT+ STOPPED+ DESTROYED=
";
        assert_eq!(render(), expected);
    }

    #[test]
    fn a_lease_is_renewed_while_the_sandbox_is_up() {
        assert_eq!(allowed_states(Operation::LeaseRenew), vec![SandboxState::Ready, SandboxState::Running]);
    }

    #[test]
    fn an_operation_that_moves_state_is_a_legal_transition() {
        use super::super::sandbox_state::{SandboxEvent, transition};
        let pairs = [
            (Operation::Start, SandboxEvent::Boot),
            (Operation::Stop, SandboxEvent::Stop),
            (Operation::Pause, SandboxEvent::Suspend),
            (Operation::Resume, SandboxEvent::Resume),
            (Operation::Destroy, SandboxEvent::Destroy),
            (Operation::ForceDestroy, SandboxEvent::Destroy),
        ];
        for (op, event) in pairs {
            for state in allowed_states(op) {
                assert!(transition(state, event).is_ok(), "{} allowed in {state} but {event:?} is not", op.as_str());
            }
        }
    }
}
