//! What `debug actors` shows about each live actor beyond what ractor knows: its kind, the
//! entity state it last published, when it started and how often it was restarted.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::time::Instant;

#[derive(Debug, Clone)]
pub struct ActorEntry {
    pub kind: String,
    pub parent: Option<String>,
    pub state: String,
    /// Entity-specific facts worth showing (a sandbox's lease deadline).
    pub lease_expires_at: Option<String>,
    pub started_at: Instant,
    pub restarts: u32,
}

/// Shared by the root (which registers and removes) and the entity actors (which publish
/// their state). Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct ActorDirectory {
    entries: Arc<Mutex<BTreeMap<String, ActorEntry>>>,
}

impl ActorDirectory {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, ActorEntry>> {
        crate::sync::lock(&self.entries)
    }

    pub fn register(&self, name: &str, kind: &str, parent: Option<&str>, restarts: u32) {
        self.lock().insert(
            name.to_string(),
            ActorEntry {
                kind: kind.to_string(),
                parent: parent.map(str::to_string),
                state: "-".to_string(),
                lease_expires_at: None,
                started_at: Instant::now(),
                restarts,
            },
        );
    }

    /// Called by an entity actor whenever its state changes.
    pub fn set_state(&self, name: &str, state: &str) {
        if let Some(entry) = self.lock().get_mut(name) {
            entry.state = state.to_string();
        }
    }

    pub fn set_lease(&self, name: &str, lease: Option<time::OffsetDateTime>) {
        if let Some(entry) = self.lock().get_mut(name) {
            entry.lease_expires_at = lease.map(crate::model::time_format::format);
        }
    }

    pub fn remove(&self, name: &str) {
        self.lock().remove(name);
    }

    pub fn get(&self, name: &str) -> Option<ActorEntry> {
        self.lock().get(name).cloned()
    }

    pub fn snapshot(&self) -> BTreeMap<String, ActorEntry> {
        self.lock().clone()
    }
}
