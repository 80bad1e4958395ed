//! The Proxmox VE client AgentLab talks through.
//!
//! `Pve` is the one interface; `api::ApiClient` (HTTPS + API token) and
//! `shell::ShellClient` (`pvesh`/`qm` on the host) implement it with the same error classes.
//! Only the daemon's `pve` gateway actor calls it.

pub mod api;
pub mod contract;
mod error;
pub mod shell;

pub use error::{ErrorClass, PveError};

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

/// What AgentLab needs from Proxmox.
pub trait Pve: Send + Sync {
    /// Which backend this is (`api` or `shell`), for status output.
    fn backend(&self) -> &'static str;
    /// Where it talks to (the API URL, or the `pvesh` path).
    fn endpoint(&self) -> String;
    /// The Proxmox version; also proves the credentials work.
    fn version(&self) -> PveFuture<'_, PveVersion>;
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
