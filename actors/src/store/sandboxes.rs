//! The `sandboxes` table.

use super::events::{NewEvent, Stage, insert_event};
use super::{FromRow, RowError, Store, StoreError, StoreResult, optional_time_at, time_at};
use crate::model::EventKind;
use crate::model::time_format;
use crate::model::{Intent, NetworkMode, SandboxState};
use crate::protocol::{SandboxNetwork, SandboxResources, SandboxView};
use rusqlite::{OptionalExtension, Row, params};
use std::collections::BTreeMap;
use time::OffsetDateTime;

/// A sandbox as persisted. The actor rebuilds itself from this after any restart.
#[derive(Debug, Clone, PartialEq)]
pub struct SandboxRecord {
    pub vmid: u32,
    pub name: String,
    pub profile: String,
    pub state: SandboxState,
    pub ip: Option<String>,
    pub node: Option<String>,
    pub tags: Vec<String>,
    pub keepalive: bool,
    pub lease_expires_at: Option<OffsetDateTime>,
    pub last_used_at: Option<OffsetDateTime>,
    pub network_mode: NetworkMode,
    pub cores: u32,
    pub memory_mb: u32,
    pub job_id: Option<String>,
    pub workspace_id: Option<String>,
    /// The work in progress, recorded before it starts (column `provision_step`).
    pub intent: Option<Intent>,
    /// The cloud-init snippet file, recorded before the VM references it.
    pub snippet_path: Option<String>,
    pub error: Option<String>,
    /// The lease length asked for (renewals reuse it when none is given).
    pub ttl_minutes: Option<u32>,
    /// Carried into the VM's Proxmox description.
    pub description: Option<String>,
    /// `net0`'s MAC as Proxmox assigned it: the sandbox's key in the host ruleset.
    pub mac: Option<String>,
    /// In the warm pool, unassigned: the fingerprint of the profile it was built from.
    pub pool: Option<String>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

impl SandboxRecord {
    /// The sandbox reached READY before (it has an address on record): booting it again is
    /// a re-boot, whose failure stops the VM and keeps its data instead of tearing it down.
    pub fn has_booted(&self) -> bool {
        self.ip.is_some()
    }

    /// A failed first provisioning whose cleanup has not finished: the `Cleanup` intent, or
    /// (records from before it existed, or a crash between FAILED and the intent) a FAILED
    /// record that never booted and still has its snippet, or a node and a provisioning
    /// step. A sandbox that booted and then failed (its job failed) keeps its VM.
    pub fn cleanup_pending(&self) -> bool {
        let legacy = self.ip.is_none()
            && (self.snippet_path.is_some()
                || (self.node.is_some() && self.intent.is_some_and(|i| i.step().is_some())));
        self.state == SandboxState::Failed && (self.intent == Some(Intent::Cleanup) || legacy)
    }

    pub fn view(&self) -> SandboxView {
        SandboxView {
            vmid: self.vmid,
            name: self.name.clone(),
            profile: self.profile.clone(),
            state: self.state,
            ip: self.ip.clone(),
            node: self.node.clone(),
            tags: self.tags.clone(),
            keepalive: self.keepalive,
            lease_expires_at: self.lease_expires_at.map(time_format::format),
            last_used_at: self.last_used_at.map(time_format::format),
            network: SandboxNetwork {
                mode: self.network_mode,
                firewall: true,
                firewall_group: self.network_mode.security_group().to_string(),
            },
            resources: SandboxResources { cores: self.cores, memory_mb: self.memory_mb },
            job_id: self.job_id.clone(),
            workspace_id: self.workspace_id.clone(),
            error: self.error.clone(),
            pending_changes: Vec::new(),
            created_at: time_format::format(self.created_at),
            updated_at: time_format::format(self.updated_at),
            egress_drops: Vec::new(),
            pooled: self.pool.is_some(),
        }
    }
}

pub(super) const COLUMNS: &str = "vmid, name, profile, state, ip, node, tags, keepalive, lease_expires_at, last_used_at, \
    network_mode, cores, memory_mb, job_id, workspace_id, provision_step, snippet_path, error, created_at, updated_at, \
    ttl_minutes, description, mac, pool";

impl FromRow for SandboxRecord {
    fn from_row(row: &Row<'_>) -> Result<SandboxRecord, RowError> {
        let vmid: u32 = row.get(0)?;
        let record = format!("sandbox {vmid}");
        let corrupt = |what: String| RowError::Corrupt(what).of(&record);
        let corrupt_time = |e: RowError| e.of(&record);
        let state: String = row.get(3)?;
        let state = state.parse::<SandboxState>().map_err(|e| corrupt(e.to_string()))?;
        let tags: String = row.get(6)?;
        let tags: Vec<String> = serde_json::from_str(&tags).map_err(|e| corrupt(format!("tags: {e}")))?;
        let mode: String = row.get(10)?;
        let network_mode: NetworkMode = serde_json::from_value(serde_json::Value::String(mode.clone()))
            .map_err(|_| corrupt(format!("unknown network mode `{mode}`")))?;
        let intent: Option<String> = row.get(15)?;
        let intent = match intent {
            Some(text) => Some(Intent::parse(&text).ok_or_else(|| corrupt(format!("unknown intent `{text}`")))?),
            None => None,
        };
        Ok(SandboxRecord {
            vmid,
            name: row.get(1)?,
            profile: row.get(2)?,
            state,
            ip: row.get(4)?,
            node: row.get(5)?,
            tags,
            keepalive: row.get(7)?,
            lease_expires_at: optional_time_at(row, 8).map_err(corrupt_time)?,
            last_used_at: optional_time_at(row, 9).map_err(corrupt_time)?,
            network_mode,
            cores: row.get(11)?,
            memory_mb: row.get(12)?,
            job_id: row.get(13)?,
            workspace_id: row.get(14)?,
            intent,
            snippet_path: row.get(16)?,
            error: row.get(17)?,
            created_at: time_at(row, 18).map_err(corrupt_time)?,
            updated_at: time_at(row, 19).map_err(corrupt_time)?,
            ttl_minutes: row.get(20)?,
            description: row.get(21)?,
            mac: row.get(22)?,
            pool: row.get(23)?,
        })
    }
}

impl Store {
    /// Inserts a new record with a `sandbox.state` event (created in `record.state`).
    pub fn insert_sandbox(&self, record: &SandboxRecord, peer_uid: Option<u32>) -> StoreResult<()> {
        self.write(|tx| insert_in(tx, self, record, peer_uid)).inspect(|_| {
            crate::metrics::metrics().sandboxes_created.inc();
        })
    }

    pub fn get_sandbox(&self, vmid: u32) -> StoreResult<Option<SandboxRecord>> {
        self.read(|conn| {
            let mut found = self.query(conn, &format!("SELECT {COLUMNS} FROM sandboxes WHERE vmid = ?1"), &[&vmid])?;
            Ok(found.pop())
        })
    }

    /// Every record (optionally in one state), by VMID.
    pub fn list_sandboxes(&self, state: Option<SandboxState>) -> StoreResult<Vec<SandboxRecord>> {
        self.read(|conn| match state {
            Some(s) => self.query(
                conn,
                &format!("SELECT {COLUMNS} FROM sandboxes WHERE state = ?1 ORDER BY vmid"),
                &[&s.as_str()],
            ),
            None => self.query(conn, &format!("SELECT {COLUMNS} FROM sandboxes ORDER BY vmid"), &[]),
        })
    }

    /// VMIDs of every record that still needs a live actor.
    pub fn live_sandbox_vmids(&self) -> StoreResult<Vec<u32>> {
        self.column("SELECT vmid FROM sandboxes WHERE state != 'DESTROYED' ORDER BY vmid")
    }

    /// Count of records by state, every state present.
    pub fn count_sandboxes_by_state(&self) -> StoreResult<BTreeMap<String, u64>> {
        let mut counts: BTreeMap<String, u64> = SandboxState::ALL.iter().map(|s| (s.as_str().to_string(), 0)).collect();
        self.read(|conn| {
            let mut stmt =
                conn.prepare("SELECT state, COUNT(*) FROM sandboxes GROUP BY state").map_err(|e| self.err(e))?;
            let rows =
                stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))).map_err(|e| self.err(e))?;
            for row in rows {
                let (state, n) = row.map_err(|e| self.err(e))?;
                counts.insert(state, u64::try_from(n).unwrap_or(0));
            }
            Ok(())
        })?;
        Ok(counts)
    }

    /// Compare-and-set of the state, with its `sandbox.state` event, in one transaction.
    /// `error` is kept on the record (why it failed) when given.
    pub fn transition_sandbox(
        &self,
        vmid: u32,
        from: SandboxState,
        to: SandboxState,
        error: Option<&str>,
        peer_uid: Option<u32>,
    ) -> StoreResult<()> {
        self.write(|tx| {
            let actual: Option<String> = tx
                .query_row("SELECT state FROM sandboxes WHERE vmid = ?1", [vmid], |r| r.get(0))
                .optional()
                .map_err(|e| self.err(e))?;
            match actual {
                None => return Err(StoreError::SandboxNotFound(vmid)),
                Some(actual) if actual != from.as_str() => {
                    return Err(StoreError::StateConflict { vmid, expected: from.as_str().into(), actual });
                }
                Some(_) => {}
            }
            let now = time_format::now();
            tx.execute(
                "UPDATE sandboxes SET state = ?2, error = COALESCE(?3, error), updated_at = ?4,
                   ip = CASE WHEN ?2 = 'DESTROYED' THEN NULL ELSE ip END
                 WHERE vmid = ?1",
                params![vmid, to.as_str(), error, now],
            )
            .map_err(|e| self.err(e))?;
            let mut msg = format!("{from} -> {to}");
            if let Some(error) = error {
                msg.push_str(": ");
                msg.push_str(error);
            }
            let mut payload = serde_json::json!({"from_state": from.as_str(), "to_state": to.as_str()});
            if let Some(error) = error {
                payload["error"] = serde_json::Value::String(error.to_string());
            }
            insert_event(
                tx,
                self,
                &NewEvent::sandbox(vmid, EventKind::SandboxState, Stage::Lifecycle, msg).payload(payload).by(peer_uid),
            )?;
            Ok(())
        })?;
        if to == SandboxState::Destroyed {
            crate::metrics::metrics().sandboxes_destroyed.inc();
        }
        Ok(())
    }
}

/// Inserts a record (with its creation event) inside a caller's transaction.
pub(crate) fn insert_in(
    tx: &rusqlite::Transaction<'_>,
    store: &Store,
    record: &SandboxRecord,
    peer_uid: Option<u32>,
) -> StoreResult<()> {
    let exists: Option<u32> = tx
        .query_row("SELECT vmid FROM sandboxes WHERE vmid = ?1", [record.vmid], |r| r.get(0))
        .optional()
        .map_err(|e| store.err(e))?;
    if exists.is_some() {
        return Err(StoreError::SandboxExists(record.vmid));
    }
    let tags = serde_json::to_string(&record.tags).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    tx.execute(
                &format!("INSERT INTO sandboxes ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24)"),
                params![
                    record.vmid, record.name, record.profile, record.state.as_str(), record.ip, record.node, tags,
                    record.keepalive, record.lease_expires_at.map(time_format::format), record.last_used_at.map(time_format::format), record.network_mode.as_str(),
                    record.cores, record.memory_mb, record.job_id, record.workspace_id, record.intent.map(Intent::as_str),
                    record.snippet_path, record.error, time_format::format(record.created_at), time_format::format(record.updated_at), record.ttl_minutes,
                    record.description, record.mac, record.pool
                ],
            )
            .map_err(|e| store.err(e))?;
    insert_event(
        tx,
        store,
        &NewEvent::sandbox(
            record.vmid,
            EventKind::SandboxState,
            Stage::Lifecycle,
            format!("sandbox created in {}", record.state),
        )
        .payload(serde_json::json!({"from_state": null, "to_state": record.state.as_str()}))
        .by(peer_uid),
    )?;
    Ok(())
}

impl SandboxRecord {
    /// A record in `state` on node `pve1` with profile `yolo-ephemeral`, for tests and
    /// fixtures (one definition, so a new field is added in one place).
    pub fn sample(vmid: u32, state: SandboxState) -> SandboxRecord {
        let now = OffsetDateTime::now_utc();
        SandboxRecord {
            vmid,
            name: format!("sandbox-{vmid}"),
            profile: "yolo-ephemeral".into(),
            state,
            ip: None,
            node: Some("pve1".into()),
            tags: vec!["team-a".into()],
            keepalive: false,
            lease_expires_at: None,
            last_used_at: None,
            network_mode: NetworkMode::Nat,
            cores: 4,
            memory_mb: 6144,
            job_id: None,
            workspace_id: None,
            intent: None,
            snippet_path: None,
            error: None,
            ttl_minutes: None,
            description: None,
            mac: None,
            pool: None,
            created_at: now,
            updated_at: now,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::temp_store;

    #[test]
    fn insert_get_list_and_count() {
        let (_dir, store) = temp_store();
        store.insert_sandbox(&SandboxRecord::sample(1002, SandboxState::Ready), Some(1000)).unwrap();
        store.insert_sandbox(&SandboxRecord::sample(1001, SandboxState::Running), None).unwrap();
        assert!(matches!(
            store.insert_sandbox(&SandboxRecord::sample(1001, SandboxState::Ready), None),
            Err(StoreError::SandboxExists(1001))
        ));
        let got = store.get_sandbox(1002).ok().flatten();
        assert_eq!(got.as_ref().map(|r| r.tags.clone()), Some(vec!["team-a".to_string()]));
        let all: Vec<u32> = store.list_sandboxes(None).unwrap_or_default().into_iter().map(|r| r.vmid).collect();
        assert_eq!(all, [1001, 1002]);
        let running = store.list_sandboxes(Some(SandboxState::Running)).unwrap_or_default();
        assert_eq!(running.len(), 1);
        let counts = store.count_sandboxes_by_state().unwrap_or_default();
        assert_eq!(counts.get("READY"), Some(&1));
        assert_eq!(counts.get("DESTROYED"), Some(&0));
        assert_eq!(counts.len(), 11);
    }

    #[test]
    fn transition_is_compare_and_set_and_leaves_an_event() {
        let (_dir, store) = temp_store();
        store.insert_sandbox(&SandboxRecord::sample(1001, SandboxState::Running), None).unwrap();
        store
            .transition_sandbox(1001, SandboxState::Running, SandboxState::Failed, Some("guest went silent"), Some(0))
            .unwrap();
        let lost_race = store.transition_sandbox(1001, SandboxState::Running, SandboxState::Stopped, None, None);
        assert!(matches!(lost_race, Err(StoreError::StateConflict { .. })));
        let rec = store.get_sandbox(1001).ok().flatten();
        assert_eq!(rec.as_ref().map(|r| r.state), Some(SandboxState::Failed));
        assert_eq!(rec.and_then(|r| r.error), Some("guest went silent".to_string()));
        let events = store.sandbox_events(1001, crate::store::EventPage::Tail(10)).unwrap_or_default();
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].json["to_state"], "FAILED");
        assert!(store.live_sandbox_vmids().unwrap_or_default().contains(&1001));
    }

    #[test]
    fn an_unreadable_row_is_reported_not_hidden() {
        let (_dir, store) = temp_store();
        store.insert_sandbox(&SandboxRecord::sample(1001, SandboxState::Ready), None).unwrap();
        store.write(|tx| tx.execute("UPDATE sandboxes SET state = 'BOGUS'", []).map_err(|e| store.err(e))).unwrap();
        assert!(matches!(store.get_sandbox(1001), Err(StoreError::Corrupt(_))));
    }
}
