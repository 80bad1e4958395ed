//! The job state machine as data.
//!
//! QUEUED → RUNNING → COMPLETED | FAILED | TIMEOUT, and CANCELED (beyond the Go version,
//! which had no cancel) from either live state.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobState {
    Queued,
    Running,
    Completed,
    Failed,
    Timeout,
    Canceled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobEvent {
    /// The runner reported that the agent started.
    RunnerStarted,
    /// The runner reported success.
    Succeeded,
    /// The runner reported failure, or provisioning of the job's sandbox failed.
    Failed,
    /// The agent ran out of time, the sandbox lease expired, or the guest went silent.
    TimedOut,
    /// An operator canceled the job.
    Canceled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("job in state {from} cannot take event {event:?}")]
pub struct InvalidJobTransition {
    pub from: JobState,
    pub event: JobEvent,
}

impl JobState {
    pub const ALL: [JobState; 6] = [
        JobState::Queued,
        JobState::Running,
        JobState::Completed,
        JobState::Failed,
        JobState::Timeout,
        JobState::Canceled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "QUEUED",
            JobState::Running => "RUNNING",
            JobState::Completed => "COMPLETED",
            JobState::Failed => "FAILED",
            JobState::Timeout => "TIMEOUT",
            JobState::Canceled => "CANCELED",
        }
    }

    pub fn is_final(self) -> bool {
        !matches!(self, JobState::Queued | JobState::Running)
    }
}

impl JobEvent {
    pub const ALL: [JobEvent; 5] =
        [JobEvent::RunnerStarted, JobEvent::Succeeded, JobEvent::Failed, JobEvent::TimedOut, JobEvent::Canceled];
}

pub fn transition(from: JobState, event: JobEvent) -> Result<JobState, InvalidJobTransition> {
    use JobEvent as E;
    use JobState as S;
    let to = match (from, event) {
        (S::Queued, E::RunnerStarted) => Some(S::Running),
        // A runner can report its final status without a RUNNING report in between
        // (a very short agent, or a lost RUNNING report): accept it from QUEUED too.
        (S::Queued | S::Running, E::Succeeded) => Some(S::Completed),
        (S::Queued | S::Running, E::Failed) => Some(S::Failed),
        (S::Queued | S::Running, E::TimedOut) => Some(S::Timeout),
        (S::Queued | S::Running, E::Canceled) => Some(S::Canceled),
        (S::Running, E::RunnerStarted) => None,
        (S::Completed | S::Failed | S::Timeout | S::Canceled, _) => None,
    };
    to.ok_or(InvalidJobTransition { from, event })
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown job status `{0}`; valid: QUEUED, RUNNING, COMPLETED, FAILED, TIMEOUT, CANCELED")]
pub struct UnknownJobState(pub String);

impl FromStr for JobState {
    type Err = UnknownJobState;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let upper = s.trim().to_ascii_uppercase();
        JobState::ALL.into_iter().find(|state| state.as_str() == upper).ok_or_else(|| UnknownJobState(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_table_is_exactly_the_documented_one() {
        let mut out = String::new();
        for state in JobState::ALL {
            out.push_str(state.as_str());
            out.push(':');
            for event in JobEvent::ALL {
                let target = transition(state, event).map_or("-", JobState::as_str);
                out.push_str(&format!(" {event:?}->{target}"));
            }
            out.push('\n');
        }
        let expected = "\
QUEUED: RunnerStarted->RUNNING Succeeded->COMPLETED Failed->FAILED TimedOut->TIMEOUT Canceled->CANCELED
RUNNING: RunnerStarted->- Succeeded->COMPLETED Failed->FAILED TimedOut->TIMEOUT Canceled->CANCELED
COMPLETED: RunnerStarted->- Succeeded->- Failed->- TimedOut->- Canceled->-
FAILED: RunnerStarted->- Succeeded->- Failed->- TimedOut->- Canceled->-
TIMEOUT: RunnerStarted->- Succeeded->- Failed->- TimedOut->- Canceled->-
CANCELED: RunnerStarted->- Succeeded->- Failed->- TimedOut->- Canceled->-
";
        assert_eq!(out, expected);
    }

    #[test]
    fn final_states_take_no_event() {
        for state in JobState::ALL.into_iter().filter(|s| s.is_final()) {
            for event in JobEvent::ALL {
                assert!(transition(state, event).is_err());
            }
        }
    }

    #[test]
    fn names_parse_back() {
        for state in JobState::ALL {
            assert_eq!(state.as_str().parse::<JobState>(), Ok(state));
        }
        assert!("DONE".parse::<JobState>().is_err());
    }
}
