//! What a sandbox's actor is in the middle of, as recorded before it starts (the
//! write-ahead intent in the record's `provision_step` column).
//!
//! A restarted actor reads it and carries on: the provisioning step it was at, a destroy,
//! or the cleanup after a failed provisioning. Nothing else is inferred from the record.

use std::fmt;

/// One idempotent provisioning step, in pipeline order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    Clone,
    Configure,
    Firewall,
    Snippet,
    Snapshot,
    Boot,
    WaitIp,
}

impl Step {
    pub const ALL: [Step; 7] =
        [Step::Clone, Step::Configure, Step::Firewall, Step::Snippet, Step::Snapshot, Step::Boot, Step::WaitIp];

    pub fn as_str(self) -> &'static str {
        match self {
            Step::Clone => "clone",
            Step::Configure => "configure",
            Step::Firewall => "firewall",
            Step::Snippet => "snippet",
            Step::Snapshot => "snapshot",
            Step::Boot => "boot",
            Step::WaitIp => "wait_ip",
        }
    }

    /// The step after this one; `None` after the last.
    pub fn next(self) -> Option<Step> {
        Step::ALL.iter().position(|s| *s == self).and_then(|i| Step::ALL.get(i + 1)).copied()
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The work a record says is in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Intent {
    /// Provisioning, at this step.
    Provision(Step),
    /// Tearing the sandbox down; DESTROYED follows.
    Destroy,
    /// Removing what a failed first provisioning left; the record stays FAILED.
    Cleanup,
}

impl Intent {
    pub fn as_str(self) -> &'static str {
        match self {
            Intent::Provision(step) => step.as_str(),
            Intent::Destroy => "destroy",
            Intent::Cleanup => "cleanup",
        }
    }

    /// Reads the stored text; `None` for text no version wrote.
    pub fn parse(text: &str) -> Option<Intent> {
        match text {
            "destroy" => Some(Intent::Destroy),
            "cleanup" => Some(Intent::Cleanup),
            other => Step::ALL.into_iter().find(|s| s.as_str() == other).map(Intent::Provision),
        }
    }

    /// The provisioning step, if this is one.
    pub fn step(self) -> Option<Step> {
        match self {
            Intent::Provision(step) => Some(step),
            Intent::Destroy | Intent::Cleanup => None,
        }
    }
}

impl fmt::Display for Intent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_intent_reads_back_from_its_stored_text() {
        let all: Vec<Intent> =
            Step::ALL.into_iter().map(Intent::Provision).chain([Intent::Destroy, Intent::Cleanup]).collect();
        for intent in &all {
            assert_eq!(Intent::parse(intent.as_str()), Some(*intent));
        }
        let texts: Vec<&str> = all.iter().map(|i| i.as_str()).collect();
        assert_eq!(
            texts,
            ["clone", "configure", "firewall", "snippet", "snapshot", "boot", "wait_ip", "destroy", "cleanup"]
        );
        assert_eq!(Intent::parse("reticulate"), None);
    }

    #[test]
    fn steps_run_in_pipeline_order() {
        let mut order = vec![Step::Clone];
        while let Some(next) = order.last().and_then(|s| s.next()) {
            order.push(next);
        }
        assert_eq!(order, Step::ALL);
    }
}
