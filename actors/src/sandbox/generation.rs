//! The sandbox actor's work generation: which spawned task's completion still counts.
//!
//! Work (provisioning, teardown, an operation, the keepalive stop) runs on a task and reports
//! back by message. Replacing work aborts the old task, but its completion may already sit in
//! the mailbox; handled, it would clear the new work's handle and act on a stale outcome (a
//! late `ProvisionDone(Err)` starting a second teardown, a probe taken before a start marking
//! the fresh VM stopped). Every completion carries the generation it was spawned under and
//! only the current one is acted on.

/// Counts the work spawned by one actor incarnation.
#[derive(Debug, Default)]
pub(super) struct WorkGeneration(u64);

impl WorkGeneration {
    /// A new piece of work begins: everything spawned before it is superseded.
    pub(super) fn advance(&mut self) -> u64 {
        self.0 += 1;
        self.0
    }

    /// The generation now in force (a probe reads it without starting work).
    pub(super) fn current(&self) -> u64 {
        self.0
    }

    /// Whether a completion tagged `generation` belongs to the work now in force.
    pub(super) fn is_current(&self, generation: u64) -> bool {
        self.0 == generation
    }
}

#[cfg(test)]
mod tests {
    use super::WorkGeneration;

    #[test]
    fn only_the_latest_work_is_current() {
        let mut generation = WorkGeneration::default();
        let provisioning = generation.advance();
        assert!(generation.is_current(provisioning));
        let teardown = generation.advance();
        assert!(!generation.is_current(provisioning), "replaced work's completion must be dropped");
        assert!(generation.is_current(teardown));
    }

    #[test]
    fn a_probe_is_stale_once_work_starts_after_it() {
        let mut generation = WorkGeneration::default();
        let probe = generation.current();
        assert!(generation.is_current(probe));
        generation.advance();
        assert!(!generation.is_current(probe), "a probe taken before new work must not be acted on");
    }
}
