//! The `events` actor: appends the events that belong to no entity actor (actor restarts,
//! daemon start and stop, Proxmox reachability) off the caller's path, so the root and the
//! gateway never wait on SQLite for telemetry. Entity actors write their own events,
//! usually in the same transaction as the record change they describe (see
//! `Store::transition_sandbox`, `Store::patch_sandbox`): they wait on SQLite for the record
//! anyway. Followers are told of new events by `Store::watch_events`, whoever wrote them.

use crate::store::{NewEvent, Store};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::sync::Arc;

pub const EVENTS_ACTOR: &str = "events";

pub enum EventsMsg {
    /// Persist (a failure is logged: telemetry never takes the actor down).
    Append(NewEvent),
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
