//! How the root spawns, restarts and gives up on the actors of one entity kind.
//!
//! Each kind (sandbox, job, …) registers one factory. The root calls it at start-up for
//! every live record, and again after a failure, so an actor is always rebuilt from its
//! record in the store, never from the state of the actor that died.

use crate::store::StoreError;
use ractor::{ActorCell, SpawnErr};
use std::future::Future;
use std::pin::Pin;

pub type SpawnFuture = Pin<Box<dyn Future<Output = Result<ActorCell, SpawnErr>> + Send>>;

/// Why a factory could not list or give up on its entities.
#[derive(Debug, thiserror::Error)]
pub enum EntityError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("`{id}` is not a valid {kind} id")]
    BadId { kind: &'static str, id: String },
    #[error("{kind} {id} has no record")]
    NoRecord { kind: &'static str, id: String },
}

/// Why an entity's actor could not be had on request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpawnError {
    #[error("the actor root is not running")]
    RootDown,
    #[error("the actor root did not answer")]
    NoAnswer,
    #[error("no actor kind `{0}`")]
    UnknownKind(String),
    #[error("actor {0} did not start; it will be retried")]
    NotStarted(String),
}

pub trait EntityFactory: Send + Sync + 'static {
    /// The registry prefix: actors are named `<kind>:<id>`.
    fn kind(&self) -> &'static str;

    /// Ids of every record that needs a live actor (at start-up).
    fn live_ids(&self) -> Result<Vec<String>, EntityError>;

    /// Spawns the actor for `id` under the registry name `name`, linked to `supervisor`.
    fn spawn(&self, id: String, name: String, supervisor: ActorCell) -> SpawnFuture;

    /// Records that the entity failed for good (too many restarts); its actor is not
    /// spawned again.
    fn give_up(&self, id: &str, reason: &str) -> Result<(), EntityError>;

    /// Work for all entities of this kind at once (the sandboxes' cluster census), run by
    /// the root from its start to its stop.
    fn background(&self) -> Option<Background> {
        None
    }
}

/// A kind's background work.
pub type Background = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'static>>;

/// Splits `kind:id`; service actors (`root`, `pve`, `events`) have no id.
pub fn split_name(name: &str) -> Option<(&str, &str)> {
    name.split_once(':').filter(|(kind, id)| !kind.is_empty() && !id.is_empty())
}

pub fn entity_name(kind: &str, id: &str) -> String {
    format!("{kind}:{id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_at_the_first_colon() {
        assert_eq!(split_name("sandbox:1021"), Some(("sandbox", "1021")));
        assert_eq!(split_name("exposure:sbx-1021-8080"), Some(("exposure", "sbx-1021-8080")));
        assert_eq!(split_name("pve"), None);
        assert_eq!(split_name("sandbox:"), None);
        assert_eq!(entity_name("job", "8f3a"), "job:8f3a");
    }
}
