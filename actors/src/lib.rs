//! AgentLab's daemon side: the profile loader, the SQLite store, and the actor tree (root
//! supervisor, events, the Proxmox gateway, one actor per sandbox and job).
//!
//! `model` and `protocol` live in `agentlab-model` (no runtime dependencies, shared with
//! the CLI and the guest runner) and are re-exported here so daemon code names one crate.

pub use agentlab_model::{model, protocol};

pub mod clock;
pub mod events;
pub mod exposure;
pub mod job;
pub mod metrics;
pub mod net;
pub mod pool;
pub mod profiles;
pub mod pve;
pub mod root;
pub mod sandbox;
pub mod session;
pub mod store;
pub mod sync;
pub mod tokens;
pub mod workspace;
