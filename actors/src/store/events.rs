//! The `events` table: an append-only log with monotonic ids, paged by `tail` or `after`.

use super::{Store, StoreError, StoreResult};
use crate::model::{EventKind, time_format};
use crate::protocol::{EVENT_SCHEMA_VERSION, EventView};
use rusqlite::{Row, Transaction, params};

/// Event stages of the envelope kept from the Go version (docs/reference/compatibility.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Lifecycle,
    Lease,
    Slo,
    Recovery,
    Snapshot,
    Report,
    Network,
    Artifact,
    Exposure,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Lifecycle => "lifecycle",
            Stage::Lease => "lease",
            Stage::Slo => "slo",
            Stage::Recovery => "recovery",
            Stage::Snapshot => "snapshot",
            Stage::Report => "report",
            Stage::Network => "network",
            Stage::Artifact => "artifact",
            Stage::Exposure => "exposure",
        }
    }
}

/// An event to append.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub kind: EventKind,
    pub stage: Stage,
    pub sandbox_vmid: Option<u32>,
    pub job_id: Option<String>,
    pub msg: String,
    pub payload: serde_json::Value,
    /// Uid of the control-socket peer whose request caused this, when one did.
    pub peer_uid: Option<u32>,
}

impl NewEvent {
    pub fn new(kind: EventKind, stage: Stage, msg: impl Into<String>) -> Self {
        NewEvent {
            kind,
            stage,
            sandbox_vmid: None,
            job_id: None,
            msg: msg.into(),
            payload: serde_json::json!({}),
            peer_uid: None,
        }
    }

    pub fn sandbox(vmid: u32, kind: EventKind, stage: Stage, msg: impl Into<String>) -> Self {
        NewEvent { sandbox_vmid: Some(vmid), ..NewEvent::new(kind, stage, msg) }
    }

    pub fn payload(mut self, payload: serde_json::Value) -> Self {
        self.payload = payload;
        self
    }

    pub fn by(mut self, peer_uid: Option<u32>) -> Self {
        self.peer_uid = peer_uid;
        self
    }

    /// Whether it reports a failure: its kind says so, or it records a change to FAILED.
    pub fn is_failure(&self) -> bool {
        self.kind.is_failure() || self.payload.get("to_state").and_then(|s| s.as_str()) == Some("FAILED")
    }
}

/// Which events of a sandbox to return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventPage {
    /// The newest `n`, oldest first.
    Tail(u32),
    /// Up to `limit` events with an id greater than `after`, oldest first.
    After { after: i64, limit: u32 },
}

pub(crate) fn insert_event(tx: &Transaction<'_>, store: &Store, event: &NewEvent) -> StoreResult<i64> {
    let payload = serde_json::to_string(&event.payload).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    tx.execute(
        "INSERT INTO events (ts, kind, stage, sandbox_vmid, job_id, msg, payload, peer_uid, failure)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            time_format::now(),
            event.kind.name(),
            event.stage.as_str(),
            event.sandbox_vmid,
            event.job_id,
            event.msg,
            payload,
            event.peer_uid,
            event.is_failure()
        ],
    )
    .map_err(|e| store.err(e))?;
    let id = tx.last_insert_rowid();
    store.note_event(id);
    Ok(id)
}

pub(crate) fn event_view(row: &Row<'_>) -> rusqlite::Result<EventView> {
    let payload: String = row.get(7)?;
    Ok(EventView {
        id: row.get(0)?,
        ts: row.get(1)?,
        kind: row.get(2)?,
        schema_version: EVENT_SCHEMA_VERSION,
        stage: row.get(3)?,
        sandbox_vmid: row.get(4)?,
        job_id: row.get(5)?,
        msg: row.get(6)?,
        // A payload that is not JSON is shown as text rather than hiding the event.
        json: serde_json::from_str(&payload).unwrap_or(serde_json::Value::String(payload)),
    })
}

pub(crate) const EVENT_COLUMNS: &str = "id, ts, kind, stage, sandbox_vmid, job_id, msg, payload";

/// Bytes of event text (message and payload) one page carries beyond its first event.
pub const PAGE_MAX_BYTES: i64 = 1024 * 1024;

impl Store {
    /// Appends one event; returns its id.
    pub fn append_event(&self, event: &NewEvent) -> StoreResult<i64> {
        self.write(|tx| insert_event(tx, self, event))
    }

    /// The events of one sandbox, oldest first.
    pub fn sandbox_events(&self, vmid: u32, page: EventPage) -> StoreResult<Vec<EventView>> {
        self.events_page("sandbox_vmid", Box::new(vmid), page)
    }

    /// One page of an entity's events, oldest first: at most the page's count and, after the
    /// first event, at most `PAGE_MAX_BYTES` of text (security review F5: 1000 guest-sized
    /// events made each reader hold a gigabyte). A tail page keeps the newest events.
    pub(crate) fn events_page(
        &self,
        column: &'static str,
        key: Box<dyn rusqlite::ToSql>,
        page: EventPage,
    ) -> StoreResult<Vec<EventView>> {
        // The window sums sizes over the rows the count admits, in the page's order; a row
        // is kept while what comes before it is under the cap.
        let size = "LENGTH(CAST(msg AS BLOB)) + LENGTH(CAST(payload AS BLOB))";
        let (order, extra, args): (&str, &str, Vec<Box<dyn rusqlite::ToSql>>) = match page {
            EventPage::Tail(n) => ("DESC", "", vec![key, Box::new(n)]),
            EventPage::After { after, limit } => ("ASC", "AND id > ?3", vec![key, Box::new(limit), Box::new(after)]),
        };
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM (
                SELECT *, SUM({size}) OVER (ORDER BY id {order} ROWS UNBOUNDED PRECEDING) - ({size}) AS before
                FROM (SELECT {EVENT_COLUMNS} FROM events WHERE {column} = ?1 {extra} ORDER BY id {order} LIMIT ?2)
             ) WHERE before < {PAGE_MAX_BYTES} ORDER BY id"
        );
        self.read(|conn| {
            let mut stmt = conn.prepare(&sql).map_err(|e| self.err(e))?;
            let refs: Vec<&dyn rusqlite::ToSql> = args.iter().map(|a| a.as_ref()).collect();
            let rows = stmt.query_map(refs.as_slice(), event_view).map_err(|e| self.err(e))?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(|e| self.err(e))
        })
    }

    /// The newest events whose kind starts with `prefix` (e.g. `secrets.`; no `%` or `_`),
    /// newest first.
    pub fn events_of_kind_prefix(&self, prefix: &str, limit: u32) -> StoreResult<Vec<EventView>> {
        let pattern = format!("{prefix}%");
        self.read(|conn| {
            let mut stmt = conn
                .prepare(&format!("SELECT {EVENT_COLUMNS} FROM events WHERE kind LIKE ?1 ORDER BY id DESC LIMIT ?2"))
                .map_err(|e| self.err(e))?;
            let rows = stmt.query_map(rusqlite::params![pattern, limit], event_view).map_err(|e| self.err(e))?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(|e| self.err(e))
        })
    }

    /// The newest failure events of any entity, newest first.
    pub fn recent_failures(&self, limit: u32) -> StoreResult<Vec<EventView>> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare(&format!("SELECT {EVENT_COLUMNS} FROM events WHERE failure = 1 ORDER BY id DESC LIMIT ?1"))
                .map_err(|e| self.err(e))?;
            let rows = stmt.query_map([limit], event_view).map_err(|e| self.err(e))?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(|e| self.err(e))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::temp_store;

    #[test]
    fn pages_are_capped_by_bytes_as_well_as_count() {
        let (_dir, store) = temp_store();
        let big = "x".repeat(400 * 1024);
        for _ in 0..5 {
            let mut event = NewEvent::new(EventKind::JobLog, Stage::Report, big.clone());
            event.sandbox_vmid = Some(1001);
            store.append_event(&event).unwrap();
        }
        let tail = store.sandbox_events(1001, EventPage::Tail(1000)).unwrap();
        assert_eq!(tail.iter().map(|e| e.id).collect::<Vec<_>>(), [3, 4, 5], "the newest that fit in 1 MiB");
        let first = store.sandbox_events(1001, EventPage::After { after: 0, limit: 1000 }).unwrap();
        assert_eq!(first.iter().map(|e| e.id).collect::<Vec<_>>(), [1, 2, 3]);
        let next = store.sandbox_events(1001, EventPage::After { after: 3, limit: 1000 }).unwrap();
        assert_eq!(next.iter().map(|e| e.id).collect::<Vec<_>>(), [4, 5], "paging goes on from the last one");
        let one = store.sandbox_events(1001, EventPage::Tail(1)).unwrap();
        assert_eq!(one.len(), 1, "the count still applies");
    }

    #[test]
    fn ids_are_monotonic_and_paging_works_both_ways() {
        let (_dir, store) = temp_store();
        let mut ids = Vec::new();
        for i in 0..10 {
            let e = NewEvent::sandbox(1001, EventKind::SandboxState, Stage::Lifecycle, format!("e{i}"));
            ids.push(store.append_event(&e).unwrap_or_else(|err| panic!("{err}")));
        }
        store
            .append_event(&NewEvent::sandbox(1002, EventKind::SandboxState, Stage::Lifecycle, "other"))
            .unwrap_or_default();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));

        let tail = store.sandbox_events(1001, EventPage::Tail(3)).unwrap_or_default();
        let msgs: Vec<&str> = tail.iter().map(|e| e.msg.as_str()).collect();
        assert_eq!(msgs, ["e7", "e8", "e9"]);

        let after = store.sandbox_events(1001, EventPage::After { after: ids[5], limit: 2 }).unwrap_or_default();
        let msgs: Vec<&str> = after.iter().map(|e| e.msg.as_str()).collect();
        assert_eq!(msgs, ["e6", "e7"]);
        let none = store.sandbox_events(1001, EventPage::After { after: ids[9], limit: 5 }).unwrap_or_default();
        assert!(none.is_empty());
    }

    #[test]
    fn followers_are_told_only_of_committed_events() {
        let (_dir, store) = temp_store();
        let mut watch = store.watch_events();
        let id =
            store.append_event(&NewEvent::new(EventKind::DaemonStarted, Stage::Lifecycle, "up")).unwrap_or_default();
        assert!(watch.has_changed().unwrap_or(false));
        assert_eq!(*watch.borrow_and_update(), id);
        let failed: StoreResult<()> = store.write(|tx| {
            insert_event(tx, &store, &NewEvent::new(EventKind::DaemonStarted, Stage::Lifecycle, "rolled back"))?;
            Err(StoreError::Corrupt("abort".into()))
        });
        assert!(failed.is_err());
        assert!(!watch.has_changed().unwrap_or(true));
    }

    #[test]
    fn failures_are_found_newest_first() {
        let (_dir, store) = temp_store();
        store
            .append_event(&NewEvent::sandbox(
                1,
                EventKind::Operation { op: "start", phase: crate::model::OperationPhase::Failed },
                Stage::Lifecycle,
                "a",
            ))
            .unwrap_or_default();
        store.append_event(&NewEvent::sandbox(2, EventKind::SandboxState, Stage::Lifecycle, "ok")).unwrap_or_default();
        store
            .append_event(
                &NewEvent::sandbox(3, EventKind::SandboxState, Stage::Lifecycle, "b")
                    .payload(serde_json::json!({"from_state": "BOOTING", "to_state": "FAILED"})),
            )
            .unwrap_or_default();
        let failures: Vec<String> = store.recent_failures(10).unwrap_or_default().into_iter().map(|e| e.msg).collect();
        assert_eq!(failures, ["b", "a"]);
    }
}
