//! What a sandbox actor is told. Requests are imperative; facts (completions, timers) are in
//! the past tense and carry the work generation they belong to, so a completion of work that
//! was replaced meanwhile is dropped (see `generation`).

use super::error::SandboxError;
use super::operate::{AfterOperation, SandboxOp};
use super::pipeline::StepOutcome;
use crate::model::{Refusal, SandboxEvent, Step};
use crate::protocol::SandboxView;
use agentlab_proxmox::PveError;
use agentlab_proxmox::types::VmStatus;
use ractor::RpcReplyPort;

/// The answer to an operator's request: the sandbox after it, or why not.
pub type OpReply = RpcReplyPort<Result<SandboxView, Refusal>>;

/// How provisioning ended, for whoever waits on it.
#[derive(Debug, Clone, PartialEq)]
pub enum Settled {
    Ready(SandboxView),
    Failed(SandboxView),
}

pub enum SandboxMsg {
    /// First message after a (re)start, and after the record was changed from outside the
    /// actor: converge from the record (see `decide::on_reconcile`).
    Reconcile,
    /// The sandbox as recorded.
    Get(RpcReplyPort<Option<SandboxView>>),
    /// Answer once provisioning is over (at once if it already is).
    WaitSettled(RpcReplyPort<Settled>),
    /// Destroy the sandbox (its VM only if it is AgentLab's); `force` lifts the state rule.
    Destroy { force: bool, by: Option<u32>, reply: OpReply },
    /// Move the lease deadline to `until` (RUNNING only).
    RenewLease { until: time::OffsetDateTime, by: Option<u32>, reply: OpReply },
    /// An operator operation (start, stop, pause, resume, revert, snapshots, update).
    Operate { op: SandboxOp, force: bool, by: Option<u32>, reply: OpReply },
    /// The sandbox's job started or ended: move the record with this event.
    JobChanged(SandboxEvent),
    /// Ask Proxmox how the VM is (sent when the census disagrees or re-reads the address,
    /// and by `sandbox reconcile`).
    Probe,
    /// The cluster census: the VM as `/cluster/resources` lists it (`None`: not listed),
    /// and whether this round re-reads the guest address.
    Census { seen: Option<super::census::Seen>, refresh_address: bool },
    /// The lease timer fired. It may be stale (the lease was renewed after it was armed):
    /// the handler checks the record.
    LeaseTimerFired,
    /// Time for the idle-stop probe (`idle`).
    IdleCheck,
    /// The idle probe's evidence, tagged with the work generation in force when it began.
    IdleProbed { evidence: super::idle::Evidence, generation: u64 },
    /// The provisioning deadline passed.
    /// Carries the number of the deadline it was armed as (not a work generation: the
    /// provisioning's steps advance those while one deadline stands).
    ProvisioningTimedOut { deadline: u64 },
    /// A provisioning step finished.
    StepDone { step: Step, result: Result<StepOutcome, SandboxError>, generation: u64 },
    /// A teardown finished; `then` says what the record becomes.
    TeardownDone { result: Result<(), SandboxError>, then: AfterTeardown, generation: u64 },
    /// The Proxmox half of an operation finished.
    Operated { op: SandboxOp, result: Result<AfterOperation, SandboxError>, reply: OpReply, generation: u64 },
    /// The VM was stopped at lease expiry (keepalive sandboxes are kept, not destroyed).
    KeepaliveStopped { result: Result<(), SandboxError>, generation: u64 },
    /// A probe's outcome: the VM's status and, while it runs, the guest's agent-subnet
    /// address; `moved_to` when it was found on another node (migrated outside AgentLab).
    /// Tagged with the generation in force when the probe started.
    Probed { result: Result<VmStatus, PveError>, ip: Option<String>, moved_to: Option<String>, generation: u64 },
    /// Test hook: panic inside the handler (debug builds only).
    #[cfg(debug_assertions)]
    Panic,
}

/// What a finished teardown leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterTeardown {
    /// The record becomes DESTROYED and the actor stops.
    Destroyed,
    /// The record keeps its state (FAILED after a failed first provisioning).
    KeepState,
}
