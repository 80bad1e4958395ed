//! The domain model: states, transitions, profiles, error codes. Compiles without tokio,
//! so the CLI and the guest runner can share it.

pub mod error_code;
pub mod event_kind;
pub mod job_links;
pub mod job_state;
pub mod modifiers;
pub mod profile;
pub mod pve_role;
pub mod redact;
pub mod refusal;
pub mod sandbox_intent;
pub mod sandbox_ops;
pub mod sandbox_state;
pub mod suggest;
pub mod tags;
pub mod time_format;

pub use error_code::{ErrorCode, ErrorEnvelope};
pub use event_kind::{EventKind, OperationPhase};
pub use job_links::SandboxNotice;
pub use job_state::{JobEvent, JobState};
pub use profile::{NetworkMode, Profile};
pub use refusal::Refusal;
pub use sandbox_intent::{Intent, Step};
pub use sandbox_ops::{Admission, Operation};
pub use sandbox_state::{SandboxEvent, SandboxState};
