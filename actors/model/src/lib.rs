//! AgentLab's vocabulary, shared by the daemon, the CLI and the guest runner.
//!
//! `model`: the sandbox and job state machines as transition tables, which operation is
//! allowed in which state, the profile schema and its modifiers, stable error codes,
//! redaction, time formatting. `protocol`: every body on the wire — control API requests and
//! answers, and the guest protocol.
//!
//! Architecture invariant: this crate depends on no async runtime, actor framework,
//! database, YAML parser or HTTP stack, so the CLI and the runner baked into VM templates
//! stay small, and the compiler (not a convention) keeps it that way.

pub mod model;
pub mod protocol;
