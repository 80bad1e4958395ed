//! Writes to a sandbox record other than state transitions: provisioning intent, the
//! snippet path, the address, the lease; and VMID allocation.

use super::events::{NewEvent, insert_event};
use super::{SandboxRecord, Store, StoreError, StoreResult};
use crate::model::{Intent, time_format};
use rusqlite::{OptionalExtension, params};
use std::collections::HashSet;
use time::OffsetDateTime;

/// Fields to change; `None` leaves a field as it is, `Some(None)` clears it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SandboxPatch {
    pub intent: Option<Option<Intent>>,
    pub snippet_path: Option<Option<String>>,
    pub ip: Option<Option<String>>,
    pub mac: Option<Option<String>>,
    pub node: Option<Option<String>>,
    pub lease_expires_at: Option<Option<OffsetDateTime>>,
    pub last_used_at: Option<Option<OffsetDateTime>>,
    pub error: Option<Option<String>>,
    pub tags: Option<Vec<String>>,
    pub cores: Option<u32>,
    pub memory_mb: Option<u32>,
}

impl Store {
    /// Applies `patch` (and records `event`, if given) in one transaction.
    pub fn patch_sandbox(&self, vmid: u32, patch: &SandboxPatch, event: Option<&NewEvent>) -> StoreResult<()> {
        self.write(|tx| {
            let exists: Option<u32> = tx
                .query_row("SELECT vmid FROM sandboxes WHERE vmid = ?1", [vmid], |r| r.get(0))
                .optional()
                .map_err(|e| self.err(e))?;
            if exists.is_none() {
                return Err(StoreError::SandboxNotFound(vmid));
            }
            let mut sets: Vec<String> = Vec::new();
            let mut values: Vec<Box<dyn rusqlite::ToSql>> = Vec::new();
            let mut text = |column: &str, value: &Option<Option<String>>| {
                if let Some(v) = value {
                    sets.push(format!("{column} = ?{}", values.len() + 1));
                    values.push(Box::new(v.clone()));
                }
            };
            text("provision_step", &patch.intent.map(|i| i.map(|i| i.as_str().to_string())));
            text("snippet_path", &patch.snippet_path);
            text("ip", &patch.ip);
            text("mac", &patch.mac);
            text("node", &patch.node);
            let time = |t: Option<Option<OffsetDateTime>>| t.map(|t| t.map(time_format::format));
            text("lease_expires_at", &time(patch.lease_expires_at));
            text("last_used_at", &time(patch.last_used_at));
            text("error", &patch.error);
            if let Some(tags) = &patch.tags {
                sets.push(format!("tags = ?{}", values.len() + 1));
                values.push(Box::new(serde_json::to_string(tags).map_err(|e| StoreError::Corrupt(e.to_string()))?));
            }
            if let Some(cores) = patch.cores {
                sets.push(format!("cores = ?{}", values.len() + 1));
                values.push(Box::new(cores));
            }
            if let Some(memory) = patch.memory_mb {
                sets.push(format!("memory_mb = ?{}", values.len() + 1));
                values.push(Box::new(memory));
            }
            sets.push(format!("updated_at = ?{}", values.len() + 1));
            values.push(Box::new(time_format::now()));
            let sql = format!("UPDATE sandboxes SET {} WHERE vmid = ?{}", sets.join(", "), values.len() + 1);
            values.push(Box::new(vmid));
            let refs: Vec<&dyn rusqlite::ToSql> = values.iter().map(|v| v.as_ref()).collect();
            tx.execute(&sql, refs.as_slice()).map_err(|e| self.err(e))?;
            if let Some(event) = event {
                insert_event(tx, self, event)?;
            }
            Ok(())
        })
    }

    /// Inserts `record` under a free VMID: `wanted` if given (refused if a live record has
    /// it), else the lowest VMID in `range` with no record and not in `exclude` (VMIDs
    /// Proxmox already uses), else the oldest destroyed record's VMID (its row is replaced).
    /// The VMID is taken the moment this commits: the write-ahead intent of provisioning.
    pub fn create_sandbox(
        &self,
        mut record: SandboxRecord,
        wanted: Option<u32>,
        range: std::ops::RangeInclusive<u32>,
        exclude: &HashSet<u32>,
        peer_uid: Option<u32>,
    ) -> StoreResult<SandboxRecord> {
        self.write(|tx| {
            let mut states: std::collections::HashMap<u32, String> = std::collections::HashMap::new();
            {
                let mut stmt = tx.prepare("SELECT vmid, state FROM sandboxes").map_err(|e| self.err(e))?;
                let rows = stmt.query_map([], |r| Ok((r.get::<_, u32>(0)?, r.get::<_, String>(1)?))).map_err(|e| self.err(e))?;
                for row in rows {
                    let (vmid, state) = row.map_err(|e| self.err(e))?;
                    states.insert(vmid, state);
                }
            }
            // A workspace's holder VM is never a sandbox.
            let holders = super::workspaces::holder_vmids(self, tx)?;
            let vmid = match wanted {
                Some(v) if states.get(&v).is_some_and(|s| s != "DESTROYED") => return Err(StoreError::SandboxExists(v)),
                Some(v) if holders.contains(&v) => return Err(StoreError::SandboxExists(v)),
                Some(v) => v,
                None => {
                    let fresh = range
                        .clone()
                        .find(|v| !states.contains_key(v) && !exclude.contains(v) && !holders.contains(v));
                    match fresh {
                        Some(v) => v,
                        None => {
                            let reusable: Option<u32> = tx
                                .query_row(
                                    "SELECT vmid FROM sandboxes WHERE state = 'DESTROYED' AND vmid BETWEEN ?1 AND ?2 ORDER BY updated_at LIMIT 1",
                                    params![range.start(), range.end()],
                                    |r| r.get(0),
                                )
                                .optional()
                                .map_err(|e| self.err(e))?;
                            reusable.filter(|v| !exclude.contains(v) && !holders.contains(v)).ok_or(StoreError::NoFreeVmid)?
                        }
                    }
                }
            };
            tx.execute("DELETE FROM sandboxes WHERE vmid = ?1 AND state = 'DESTROYED'", [vmid]).map_err(|e| self.err(e))?;
            record.vmid = vmid;
            if record.name.is_empty() {
                record.name = format!("sandbox-{vmid}");
            }
            super::sandboxes::insert_in(tx, self, &record, peer_uid)?;
            Ok(record)
        })
        .inspect(|_| {
            crate::metrics::metrics().sandboxes_created.inc();
        })
    }

    /// Marks a record updated for a reason that is not a field change (keeps `updated_at`).
    pub fn sandbox_exists(&self, vmid: u32) -> StoreResult<bool> {
        Ok(self.get_sandbox(vmid)?.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SandboxState;
    use crate::store::test_support::temp_store;

    #[test]
    fn allocation_skips_records_and_proxmox_vmids_and_reuses_destroyed_ones_last() {
        let (_dir, store) = temp_store();
        let exclude: HashSet<u32> = [1000].into_iter().collect();
        let a = store.create_sandbox(
            crate::store::SandboxRecord::sample(0, SandboxState::Requested),
            None,
            1000..=1002,
            &exclude,
            None,
        );
        assert_eq!(a.as_ref().map(|r| r.vmid).ok(), Some(1001));
        let b = store.create_sandbox(
            crate::store::SandboxRecord::sample(0, SandboxState::Requested),
            None,
            1000..=1002,
            &exclude,
            None,
        );
        assert_eq!(b.as_ref().map(|r| r.vmid).ok(), Some(1002));
        let full = store.create_sandbox(
            crate::store::SandboxRecord::sample(0, SandboxState::Requested),
            None,
            1000..=1002,
            &exclude,
            None,
        );
        assert!(matches!(full, Err(StoreError::NoFreeVmid)));
        store.transition_sandbox(1001, SandboxState::Requested, SandboxState::Destroyed, None, None).unwrap();
        let reused = store.create_sandbox(
            crate::store::SandboxRecord::sample(0, SandboxState::Requested),
            None,
            1000..=1002,
            &exclude,
            None,
        );
        assert_eq!(reused.map(|r| r.vmid).ok(), Some(1001));
        let taken = store.create_sandbox(
            crate::store::SandboxRecord::sample(0, SandboxState::Requested),
            Some(1002),
            1000..=1002,
            &exclude,
            None,
        );
        assert!(matches!(taken, Err(StoreError::SandboxExists(1002))));
    }

    #[test]
    fn patches_change_only_what_they_name() {
        let (_dir, store) = temp_store();
        store.insert_sandbox(&crate::store::SandboxRecord::sample(1001, SandboxState::Provisioning), None).unwrap();
        let patch = SandboxPatch {
            intent: Some(Some(Intent::Provision(crate::model::Step::Clone))),
            snippet_path: Some(Some("/s/a.yaml".into())),
            ..Default::default()
        };
        store.patch_sandbox(1001, &patch, None).unwrap();
        store
            .patch_sandbox(1001, &SandboxPatch { ip: Some(Some("10.77.0.9".into())), ..Default::default() }, None)
            .unwrap();
        let rec = store.get_sandbox(1001).ok().flatten().unwrap_or_else(|| panic!("gone"));
        assert_eq!(
            (rec.intent.map(Intent::as_str), rec.snippet_path.as_deref(), rec.ip.as_deref()),
            (Some("clone"), Some("/s/a.yaml"), Some("10.77.0.9"))
        );
        assert_eq!(rec.tags, ["team-a"]);
        store.patch_sandbox(1001, &SandboxPatch { snippet_path: Some(None), ..Default::default() }, None).unwrap();
        assert_eq!(store.get_sandbox(1001).ok().flatten().and_then(|r| r.snippet_path), None);
    }
}
