//! Workspaces: a persistent volume owned by its own holder VM, and where it is attached.

use super::{FromRow, RowError, Store, StoreError, StoreResult, time_at};
use crate::model::time_format;
use crate::protocol::WorkspaceView;
use rusqlite::{OptionalExtension, params};
use std::collections::HashSet;
use time::OffsetDateTime;

/// Where a workspace is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkspaceState {
    /// Recorded; the holder VM and its volume may not exist yet.
    Creating,
    /// The volume exists, owned by the holder.
    Ready,
    /// Being removed: detached, then the holder (and with it the volume) destroyed.
    Destroying,
    /// Creation failed; `workspace destroy` removes what was made.
    Failed,
}

impl WorkspaceState {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkspaceState::Creating => "creating",
            WorkspaceState::Ready => "ready",
            WorkspaceState::Destroying => "destroying",
            WorkspaceState::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<WorkspaceState> {
        [WorkspaceState::Creating, WorkspaceState::Ready, WorkspaceState::Destroying, WorkspaceState::Failed]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

/// An attach or detach written before it is sent to Proxmox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkspaceIntent {
    Attach(u32),
    Detach(u32),
}

impl WorkspaceIntent {
    pub fn to_text(self) -> String {
        match self {
            WorkspaceIntent::Attach(vmid) => format!("attach:{vmid}"),
            WorkspaceIntent::Detach(vmid) => format!("detach:{vmid}"),
        }
    }

    pub fn parse(text: &str) -> Option<WorkspaceIntent> {
        let (verb, vmid) = text.split_once(':')?;
        let vmid = vmid.parse().ok()?;
        match verb {
            "attach" => Some(WorkspaceIntent::Attach(vmid)),
            "detach" => Some(WorkspaceIntent::Detach(vmid)),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceRecord {
    pub id: String,
    pub name: String,
    pub node: String,
    pub storage: String,
    pub size_gb: u32,
    pub holder_vmid: u32,
    /// The volume, once the holder has it (`<storage>:vm-<holder>-disk-0`).
    pub volid: Option<String>,
    pub state: WorkspaceState,
    pub attached_vmid: Option<u32>,
    pub intent: Option<WorkspaceIntent>,
    pub error: Option<String>,
    /// A fork: its source (`<id>` or `<id>@<snapshot>`), whose holder is cloned.
    pub fork_of: Option<String>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

const COLUMNS: &str = "id, name, node, storage, size_gb, holder_vmid, volid, state, attached_vmid, intent, error, \
    created_at, updated_at, fork_of";

impl FromRow for WorkspaceRecord {
    fn from_row(row: &rusqlite::Row<'_>) -> Result<Self, RowError> {
        let id: String = row.get(0)?;
        let record = format!("workspace {id}");
        let state: String = row.get(7)?;
        let intent: Option<String> = row.get(9)?;
        Ok(WorkspaceRecord {
            name: row.get(1)?,
            node: row.get(2)?,
            storage: row.get(3)?,
            size_gb: row.get(4)?,
            holder_vmid: row.get(5)?,
            volid: row.get(6)?,
            state: WorkspaceState::parse(&state)
                .ok_or_else(|| RowError::Corrupt(format!("{record}: unknown state `{state}`")))?,
            attached_vmid: row.get(8)?,
            intent: match intent {
                None => None,
                Some(text) => Some(
                    WorkspaceIntent::parse(&text)
                        .ok_or_else(|| RowError::Corrupt(format!("{record}: unknown intent `{text}`")))?,
                ),
            },
            error: row.get(10)?,
            created_at: time_at(row, 11).map_err(|e| e.of(&record))?,
            updated_at: time_at(row, 12).map_err(|e| e.of(&record))?,
            fork_of: row.get(13)?,
            id,
        })
    }
}

impl WorkspaceRecord {
    pub fn view(&self) -> WorkspaceView {
        WorkspaceView {
            id: self.id.clone(),
            name: self.name.clone(),
            node: self.node.clone(),
            storage: self.storage.clone(),
            size_gb: self.size_gb,
            holder_vmid: self.holder_vmid,
            volid: self.volid.clone(),
            state: self.state.as_str().to_string(),
            attached_vmid: self.attached_vmid,
            intent: self.intent.map(WorkspaceIntent::to_text),
            error: self.error.clone(),
            created_at: time_format::format(self.created_at),
            updated_at: time_format::format(self.updated_at),
        }
    }
}

/// What a new workspace is, before its holder VMID is chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewWorkspace {
    pub id: String,
    pub name: String,
    pub node: String,
    pub storage: String,
    pub size_gb: u32,
    pub fork_of: Option<String>,
}

impl Store {
    /// Records a workspace (`creating`) with a holder VMID from `range` that no sandbox
    /// record, no other holder and nothing in `exclude` (the cluster's VMs) uses. One
    /// transaction with the sandboxes' own choice, so the two never pick the same VMID.
    pub fn insert_workspace(
        &self,
        new: &NewWorkspace,
        range: std::ops::RangeInclusive<u32>,
        exclude: &HashSet<u32>,
        now: OffsetDateTime,
    ) -> StoreResult<WorkspaceRecord> {
        self.write(|tx| {
            let taken: Option<String> = tx
                .query_row("SELECT id FROM workspaces WHERE name = ?1", [&new.name], |r| r.get(0))
                .optional()
                .map_err(|e| self.err(e))?;
            if taken.is_some() {
                return Err(StoreError::WorkspaceExists(new.name.clone()));
            }
            let used = used_vmids(self, tx)?;
            let holder =
                range.clone().find(|v| !used.contains(v) && !exclude.contains(v)).ok_or(StoreError::NoFreeVmid)?;
            // A DESTROYED sandbox row keeps its VMID only as history.
            tx.execute("DELETE FROM sandboxes WHERE vmid = ?1 AND state = 'DESTROYED'", [holder])
                .map_err(|e| self.err(e))?;
            let now_text = time_format::format(now);
            tx.execute(
                &format!(
                    "INSERT INTO workspaces ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL, 'creating', NULL, NULL, NULL, ?7, ?7, ?8)"
                ),
                params![new.id, new.name, new.node, new.storage, new.size_gb, holder, now_text, new.fork_of],
            )
            .map_err(|e| self.err(e))?;
            Ok(WorkspaceRecord {
                id: new.id.clone(),
                name: new.name.clone(),
                node: new.node.clone(),
                storage: new.storage.clone(),
                size_gb: new.size_gb,
                holder_vmid: holder,
                volid: None,
                state: WorkspaceState::Creating,
                attached_vmid: None,
                intent: None,
                error: None,
                fork_of: new.fork_of.clone(),
                created_at: now,
                updated_at: now,
            })
        })
    }

    /// By id, or else by name.
    pub fn find_workspace(&self, id_or_name: &str) -> StoreResult<Option<WorkspaceRecord>> {
        self.read(|conn| {
            let sql = format!("SELECT {COLUMNS} FROM workspaces WHERE id = ?1 OR name = ?1 ORDER BY id = ?1 DESC");
            Ok(self.query::<WorkspaceRecord>(conn, &sql, &[&id_or_name])?.into_iter().next())
        })
    }

    pub fn list_workspaces(&self) -> StoreResult<Vec<WorkspaceRecord>> {
        self.read(|conn| self.query(conn, &format!("SELECT {COLUMNS} FROM workspaces ORDER BY name"), &[]))
    }

    /// The workspace attached (or being attached) to `vmid`.
    pub fn workspace_of_vm(&self, vmid: u32) -> StoreResult<Option<WorkspaceRecord>> {
        self.read(|conn| {
            let sql = format!(
                "SELECT {COLUMNS} FROM workspaces WHERE attached_vmid = ?1 OR intent = ?2 OR intent = ?3 LIMIT 1"
            );
            let (attach, detach) = (WorkspaceIntent::Attach(vmid).to_text(), WorkspaceIntent::Detach(vmid).to_text());
            Ok(self.query::<WorkspaceRecord>(conn, &sql, &[&vmid, &attach, &detach])?.into_iter().next())
        })
    }

    /// Writes the record's state, volume, attachment, intent and error as they are now.
    pub fn save_workspace(&self, rec: &WorkspaceRecord, now: OffsetDateTime) -> StoreResult<()> {
        self.write(|tx| {
            tx.execute(
                "UPDATE workspaces SET volid = ?2, state = ?3, attached_vmid = ?4, intent = ?5, error = ?6, updated_at = ?7
                 WHERE id = ?1",
                params![
                    rec.id,
                    rec.volid,
                    rec.state.as_str(),
                    rec.attached_vmid,
                    rec.intent.map(WorkspaceIntent::to_text),
                    rec.error,
                    time_format::format(now)
                ],
            )
            .map_err(|e| self.err(e))?;
            Ok(())
        })
    }

    pub fn delete_workspace(&self, id: &str) -> StoreResult<bool> {
        self.write(|tx| {
            let n = tx.execute("DELETE FROM workspaces WHERE id = ?1", [id]).map_err(|e| self.err(e))?;
            Ok(n > 0)
        })
    }
}

/// Every VMID a sandbox record (other than a DESTROYED one) or a workspace holder uses.
pub(super) fn used_vmids(store: &Store, tx: &rusqlite::Transaction<'_>) -> StoreResult<HashSet<u32>> {
    let mut used = HashSet::new();
    for sql in ["SELECT vmid FROM sandboxes WHERE state != 'DESTROYED'", "SELECT holder_vmid FROM workspaces"] {
        let mut stmt = tx.prepare(sql).map_err(|e| store.err(e))?;
        let rows = stmt.query_map([], |r| r.get::<_, u32>(0)).map_err(|e| store.err(e))?;
        for row in rows {
            used.insert(row.map_err(|e| store.err(e))?);
        }
    }
    Ok(used)
}

/// Holder VMIDs, which a new sandbox must not take.
pub(super) fn holder_vmids(store: &Store, tx: &rusqlite::Transaction<'_>) -> StoreResult<HashSet<u32>> {
    let mut stmt = tx.prepare("SELECT holder_vmid FROM workspaces").map_err(|e| store.err(e))?;
    let rows = stmt.query_map([], |r| r.get::<_, u32>(0)).map_err(|e| store.err(e))?;
    rows.collect::<Result<_, _>>().map_err(|e| store.err(e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::temp_store;

    fn new(name: &str) -> NewWorkspace {
        NewWorkspace {
            id: format!("workspace-{name}"),
            name: name.into(),
            node: "pve1".into(),
            storage: "local-lvm".into(),
            size_gb: 1,
            fork_of: None,
        }
    }

    #[test]
    fn holders_get_vmids_no_sandbox_or_cluster_vm_has_and_names_are_unique() {
        let (_dir, store) = temp_store();
        let now = OffsetDateTime::now_utc();
        let exclude = HashSet::from([1000]);
        let a = store.insert_workspace(&new("a"), 1000..=1003, &exclude, now).unwrap();
        assert_eq!(a.holder_vmid, 1001);
        assert!(matches!(
            store.insert_workspace(&new("a"), 1000..=1003, &exclude, now),
            Err(StoreError::WorkspaceExists(_))
        ));
        let b = store.insert_workspace(&new("b"), 1000..=1003, &exclude, now).unwrap();
        assert_eq!(b.holder_vmid, 1002);
        assert_eq!(store.find_workspace("b").unwrap().map(|w| w.id), Some("workspace-b".to_string()));
        assert_eq!(store.find_workspace("workspace-a").unwrap().map(|w| w.holder_vmid), Some(1001));
    }

    #[test]
    fn intents_and_attachments_round_trip() {
        let (_dir, store) = temp_store();
        let now = OffsetDateTime::now_utc();
        let mut rec = store.insert_workspace(&new("a"), 1000..=1003, &HashSet::new(), now).unwrap();
        rec.state = WorkspaceState::Ready;
        rec.volid = Some("local-lvm:vm-1000-disk-0".into());
        rec.intent = Some(WorkspaceIntent::Attach(1005));
        store.save_workspace(&rec, now).unwrap();
        assert_eq!(store.workspace_of_vm(1005).unwrap().map(|w| w.intent), Some(Some(WorkspaceIntent::Attach(1005))));
        rec.intent = None;
        rec.attached_vmid = Some(1005);
        store.save_workspace(&rec, now).unwrap();
        let back = store.find_workspace("a").unwrap().unwrap();
        assert_eq!((back.state, back.attached_vmid, back.intent), (WorkspaceState::Ready, Some(1005), None));
        assert!(store.workspace_of_vm(1006).unwrap().is_none());
    }
}
