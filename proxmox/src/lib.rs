//! The Proxmox VE client AgentLab talks through, and the contract it is held to.
//!
//! `Pve` (in `ops`) is every operation AgentLab needs, written once over a `Transport`:
//! `api::ApiTransport` (HTTPS + API token, certificate pinning) or `shell::ShellTransport`
//! (`pvesh` on the host). Both give the same typed results and the same error classes.
//! Only the daemon's `pve` gateway actor calls `Pve`. The simulator, and the contract it
//! enforces, live in `agentlab-pve-sim` (`proxmox/sim/`), which the daemon never links.

pub mod api;
mod error;
mod ops;
pub mod shell;
pub mod transport;
pub mod types;
mod upid;

pub use error::{ErrorClass, PveError};
pub use ops::{Pve, PveClient, TaskPolicy};
pub use upid::{Upid, UpidParseError};

use std::future::Future;
use std::pin::Pin;

/// The future every `Pve` method returns (boxed so `Arc<dyn Pve>` works).
pub type PveFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, PveError>> + Send + 'a>>;

/// `GET /version`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct PveVersion {
    pub version: String,
    pub release: String,
    #[serde(default)]
    pub repoid: String,
}

/// Installs rustls' ring provider once per process. Binaries call it first; tests that
/// build a client call it too (they never run `main`).
pub fn install_crypto_provider() {
    static ONCE: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        // Err means another provider is already installed, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
