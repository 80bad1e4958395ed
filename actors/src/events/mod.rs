//! The `events` actor: appends the events that belong to no entity actor (actor restarts,
//! daemon start and stop, Proxmox reachability) off the caller's path, so the root and the
//! gateway never wait on SQLite for telemetry. Entity actors write their own events,
//! usually in the same transaction as the record change they describe (see
//! `Store::transition_sandbox`, `Store::patch_sandbox`): they wait on SQLite for the record
//! anyway. Followers are told of new events by `Store::watch_events`, whoever wrote them.

use crate::store::{NewEvent, Store};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use std::sync::Arc;
use std::time::Duration;

pub const EVENTS_ACTOR: &str = "events";

pub enum EventsMsg {
    /// Persist (a failure is logged: telemetry never takes the actor down).
    Append(NewEvent),
    /// Answered once every event sent before it is persisted (the mailbox is in order).
    Flush(RpcReplyPort<()>),
}

pub struct EventLog;

pub struct EventLogState {
    store: Arc<Store>,
}

impl Actor for EventLog {
    type Msg = EventsMsg;
    type State = EventLogState;
    type Arguments = Arc<Store>;

    async fn pre_start(
        &self,
        _myself: ActorRef<EventsMsg>,
        store: Arc<Store>,
    ) -> Result<EventLogState, ActorProcessingErr> {
        Ok(EventLogState { store })
    }

    async fn handle(
        &self,
        _myself: ActorRef<EventsMsg>,
        msg: EventsMsg,
        state: &mut EventLogState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            EventsMsg::Append(event) => {
                if let Err(e) = state.store.append_event(&event) {
                    // Losing a telemetry event must not take the actor down; say so loudly.
                    tracing::error!(kind = %event.kind, error = %e, "cannot persist event");
                }
            }
            EventsMsg::Flush(reply) => {
                let _ = reply.send(());
            }
        }
        Ok(())
    }
}

/// Fire-and-forget append through the `events` actor, if it is alive.
pub fn emit(event: NewEvent) {
    match ActorRef::<EventsMsg>::where_is(EVENTS_ACTOR) {
        Some(actor) => {
            if actor.send_message(EventsMsg::Append(event)).is_err() {
                tracing::warn!("events actor is stopping; an event was not recorded");
            }
        }
        None => tracing::warn!(kind = %event.kind, "events actor not running; event not recorded"),
    }
}

/// Waits, at most `limit`, until every event emitted so far is persisted: the daemon calls it
/// before it writes `daemon.stopping`, as stopping the actor drops what its mailbox holds (a
/// stop signal goes before messages), and the stop event must be the last.
pub async fn flush(limit: Duration) -> bool {
    match ActorRef::<EventsMsg>::where_is(EVENTS_ACTOR) {
        Some(actor) => flush_actor(&actor, limit).await,
        None => false,
    }
}

async fn flush_actor(actor: &ActorRef<EventsMsg>, limit: Duration) -> bool {
    matches!(actor.call(EventsMsg::Flush, Some(limit)).await, Ok(ractor::rpc::CallResult::Success(())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::EventKind;
    use crate::store::Stage;

    #[tokio::test]
    async fn a_flush_returns_once_every_event_before_it_is_in_the_store() {
        let (_dir, store) = crate::store::test_support::temp_store();
        let store = Arc::new(store);
        let (actor, handle) = Actor::spawn(None, EventLog, Arc::clone(&store)).await.expect("spawn");
        for n in 0..200 {
            let event = NewEvent::new(EventKind::ActorRestarting, Stage::Lifecycle, format!("event {n}"));
            actor.send_message(EventsMsg::Append(event)).expect("send");
        }
        assert!(flush_actor(&actor, Duration::from_secs(10)).await);
        let written = store.events_of_kind_prefix("actor.", 500).expect("read");
        assert_eq!(written.len(), 200);
        assert_eq!(written.first().map(|e| e.msg.as_str()), Some("event 199"));
        actor.stop(None);
        handle.await.expect("stopped");
    }
}
