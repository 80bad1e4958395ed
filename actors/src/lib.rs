//! AgentLab's domain and actors.
//!
//! `model` and `protocol` compile without any runtime dependency and are shared with the
//! CLI and the guest runner. Behind the default `runtime` feature: the profile loader, the
//! SQLite store, and the actor tree (root supervisor, events, the Proxmox gateway).

pub mod model;
pub mod protocol;

#[cfg(feature = "runtime")]
pub mod events;
#[cfg(feature = "runtime")]
pub mod job;
#[cfg(feature = "runtime")]
pub mod profiles;
#[cfg(feature = "runtime")]
pub mod pve;
#[cfg(feature = "runtime")]
pub mod root;
#[cfg(feature = "runtime")]
pub mod sandbox;
#[cfg(feature = "runtime")]
pub mod store;
