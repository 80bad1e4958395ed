//! The ops of `sandbox.<op>.<phase>` events, as the model lists them (`EventKind::OPERATIONS`,
//! which docs/reference/events.md is checked against), are the names the sandbox actor's
//! operations really go by.

use agentlab_actors::model::EventKind;
use agentlab_actors::sandbox::SandboxOp;
use std::collections::BTreeSet;

/// One of each operation. A new `SandboxOp` variant fails to compile in the match: add it to
/// the list above it too.
fn every_op() -> Vec<SandboxOp> {
    let ops = vec![
        SandboxOp::Start,
        SandboxOp::Stop,
        SandboxOp::Pause,
        SandboxOp::Resume,
        SandboxOp::Revert { restart: None },
        SandboxOp::SnapshotSave { name: "s".into() },
        SandboxOp::SnapshotRestore { name: "s".into() },
        SandboxOp::Update { cores: None, memory_mb: None, tags: None },
    ];
    for op in &ops {
        match op {
            SandboxOp::Start
            | SandboxOp::Stop
            | SandboxOp::Pause
            | SandboxOp::Resume
            | SandboxOp::Revert { .. }
            | SandboxOp::SnapshotSave { .. }
            | SandboxOp::SnapshotRestore { .. }
            | SandboxOp::Update { .. } => {}
        }
    }
    ops
}

#[test]
fn operation_event_names_are_the_operations_names() {
    let actor: BTreeSet<&str> = every_op().iter().map(SandboxOp::name).collect();
    let model: BTreeSet<&str> = EventKind::OPERATIONS.iter().copied().collect();
    assert_eq!(actor, model, "EventKind::OPERATIONS must list every SandboxOp::name, and nothing else");
}
