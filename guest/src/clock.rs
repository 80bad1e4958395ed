//! Wall-clock time and sleeping for the runner.
//!
//! The workspace bans `std::time::Instant` and `std::thread::sleep` because the daemon uses
//! tokio's pausable clock. `agent-runner` is a plain blocking program with no async runtime
//! (it must stay small and static-friendly), so it uses the std clock, here and nowhere else.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::time::{Duration, Instant};

/// Blocks the calling thread (back-off between retries, the supervision tick).
pub fn sleep(duration: Duration) {
    std::thread::sleep(duration);
}

/// Measures time elapsed since it was started.
#[derive(Debug, Clone, Copy)]
pub struct Stopwatch(Instant);

impl Stopwatch {
    pub fn start() -> Stopwatch {
        Stopwatch(Instant::now())
    }

    pub fn elapsed(&self) -> Duration {
        self.0.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stopwatch_sees_a_sleep() {
        let watch = Stopwatch::start();
        sleep(Duration::from_millis(20));
        assert!(watch.elapsed() >= Duration::from_millis(20));
    }
}
