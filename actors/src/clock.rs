//! The clock that leases and deadlines are computed with.
//!
//! Records hold wall-clock times (RFC 3339), because they must mean the same after a
//! restart. Timers, though, run on tokio's clock, which tests pause and advance. A sandbox
//! whose lease timer fired on a paused clock must also *see* its lease as expired, so the
//! actors read "now" from here: the system clock in the daemon, and in tests a wall time
//! that moves with tokio's clock.

use std::time::Duration;
use time::OffsetDateTime;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// `None`: the system clock. `Some`: the wall time at `Instant`, advanced with tokio.
    origin: Option<(OffsetDateTime, Instant)>,
}

impl Clock {
    /// The system clock (the daemon's).
    pub fn system() -> Clock {
        Clock { origin: None }
    }

    /// Starts at the current wall time and moves with tokio's clock (paused in tests).
    pub fn following_tokio() -> Clock {
        Clock { origin: Some((OffsetDateTime::now_utc(), Instant::now())) }
    }

    pub fn now(&self) -> OffsetDateTime {
        match self.origin {
            None => OffsetDateTime::now_utc(),
            Some((wall, at)) => wall + Instant::now().saturating_duration_since(at),
        }
    }

    /// How long from now until `at` (zero if it has passed).
    pub fn until(&self, at: OffsetDateTime) -> Duration {
        (at - self.now()).try_into().unwrap_or(Duration::ZERO)
    }

    /// How long ago `at` was (zero if it is in the future).
    pub fn since(&self, at: OffsetDateTime) -> Duration {
        (self.now() - at).try_into().unwrap_or(Duration::ZERO)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_tokio_clock_moves_with_paused_time_and_the_system_clock_does_not_care() {
        let clock = Clock::following_tokio();
        let start = clock.now();
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert!(clock.since(start) >= Duration::from_secs(3600));
        assert_eq!(clock.until(start), Duration::ZERO);
        assert!(Clock::system().since(start) < Duration::from_secs(60));
    }
}
