//! The warm pool in the `sandboxes` table: a pooled sandbox is a record whose `pool` column
//! holds the fingerprint of the profile it was built from. A claim clears it, gives the
//! record its owner's name, lease and job, and makes the bootstrap token deliverable again,
//! all in one transaction: two claims never get the same sandbox.

use super::events::{NewEvent, Stage, insert_event};
use super::{SandboxRecord, Store, StoreResult};
use crate::model::{EventKind, time_format};
use rusqlite::{OptionalExtension, params};
use time::OffsetDateTime;

/// The `pool` value of a sandbox the pool is destroying.
pub const DRAINING: &str = "draining";

/// What the claimer decided about the sandbox it takes.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolClaim {
    pub profile: String,
    /// The profile's fingerprint now: a sandbox built from an older version is not handed out.
    pub fingerprint: String,
    /// The owner's name for it; `None` keeps the generated one.
    pub name: Option<String>,
    pub tags: Vec<String>,
    pub keepalive: bool,
    pub ttl_minutes: Option<u32>,
    pub lease_expires_at: Option<OffsetDateTime>,
    pub job_id: Option<String>,
    /// The bootstrap token's new expiry: it counts from the claim, not from the boot.
    pub token_expires_at: OffsetDateTime,
    pub peer_uid: Option<u32>,
}

impl Store {
    /// Every live pooled record, by VMID.
    pub fn pooled_sandboxes(&self) -> StoreResult<Vec<SandboxRecord>> {
        self.read(|conn| {
            self.query(
                conn,
                &format!(
                    "SELECT {} FROM sandboxes WHERE pool IS NOT NULL AND state != 'DESTROYED' ORDER BY vmid",
                    super::sandboxes::COLUMNS
                ),
                &[],
            )
        })
    }

    /// Takes the lowest READY pooled sandbox of the profile, built from its current version,
    /// with no work in flight; `None` when there is none.
    pub fn claim_pooled(&self, claim: &PoolClaim) -> StoreResult<Option<SandboxRecord>> {
        let claimed = self.write(|tx| {
            let vmid: Option<u32> = tx
                .query_row(
                    "SELECT vmid FROM sandboxes WHERE profile = ?1 AND pool = ?2 AND state = 'READY'
                       AND provision_step IS NULL ORDER BY vmid LIMIT 1",
                    params![claim.profile, claim.fingerprint],
                    |r| r.get(0),
                )
                .optional()
                .map_err(|e| self.err(e))?;
            let Some(vmid) = vmid else { return Ok(None) };
            let tags = serde_json::to_string(&claim.tags).map_err(|e| super::StoreError::Corrupt(e.to_string()))?;
            let now = time_format::now();
            tx.execute(
                "UPDATE sandboxes SET pool = NULL, name = COALESCE(?2, name), tags = ?3, keepalive = ?4, ttl_minutes = ?5,
                   lease_expires_at = ?6, job_id = ?7, last_used_at = ?8, updated_at = ?8 WHERE vmid = ?1",
                params![
                    vmid,
                    claim.name,
                    tags,
                    claim.keepalive,
                    claim.ttl_minutes,
                    claim.lease_expires_at.map(time_format::format),
                    claim.job_id,
                    now
                ],
            )
            .map_err(|e| self.err(e))?;
            tx.execute(
                "UPDATE bootstrap_tokens SET expires_at = ?2 WHERE vmid = ?1 AND consumed_at IS NULL",
                params![vmid, time_format::format(claim.token_expires_at)],
            )
            .map_err(|e| self.err(e))?;
            // The job points at its sandbox in the same transaction, so the pooled guest's
            // fetch, woken by this claim, finds the pair complete.
            if let Some(job) = &claim.job_id {
                tx.execute(
                    "UPDATE jobs SET sandbox_vmid = ?2, updated_at = ?3 WHERE id = ?1 AND sandbox_vmid IS NULL",
                    params![job, vmid, now],
                )
                .map_err(|e| self.err(e))?;
            }
            let by = claim.job_id.as_deref().map_or_else(|| "sandbox new".to_string(), |job| format!("job {job}"));
            let event = NewEvent::sandbox(vmid, EventKind::SandboxClaimed, Stage::Lifecycle, format!("claimed from the warm pool by {by}"))
                .payload(serde_json::json!({"profile": claim.profile, "job_id": claim.job_id}))
                .by(claim.peer_uid);
            insert_event(tx, self, &event)?;
            Ok(Some(vmid))
        })?;
        match claimed {
            Some(vmid) => self.get_sandbox(vmid),
            None => Ok(None),
        }
    }

    /// Takes a pooled sandbox out of the claimable set before the pool destroys it (false:
    /// a claim took it first). The marker never matches a fingerprint, so a restart drains
    /// it again.
    pub fn mark_pool_draining(&self, vmid: u32) -> StoreResult<bool> {
        self.write(|tx| {
            let changed = tx
                .execute("UPDATE sandboxes SET pool = ?2 WHERE vmid = ?1 AND pool IS NOT NULL", params![vmid, DRAINING])
                .map_err(|e| self.err(e))?;
            Ok(changed == 1)
        })
    }

    /// Whether this token was minted for `vmid` and not used yet, expired or not: a pooled
    /// guest waits with it until a claim makes it deliverable.
    pub fn bootstrap_token_unused(&self, token_hash: &str, vmid: u32) -> StoreResult<bool> {
        self.read(|c| {
            c.query_row(
                "SELECT COUNT(*) FROM bootstrap_tokens WHERE token_hash = ?1 AND vmid = ?2 AND consumed_at IS NULL",
                params![token_hash, vmid],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)
            .map_err(|e| self.err(e))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SandboxState;
    use crate::store::test_support::temp_store;

    fn claim(fingerprint: &str) -> PoolClaim {
        PoolClaim {
            profile: "yolo-ephemeral".into(),
            fingerprint: fingerprint.into(),
            name: Some("mine".into()),
            tags: vec!["t".into()],
            keepalive: true,
            ttl_minutes: Some(30),
            lease_expires_at: Some(OffsetDateTime::now_utc() + time::Duration::minutes(30)),
            job_id: None,
            token_expires_at: OffsetDateTime::now_utc() + time::Duration::minutes(10),
            peer_uid: Some(1000),
        }
    }

    fn pooled(vmid: u32, state: SandboxState, fingerprint: &str) -> SandboxRecord {
        SandboxRecord { pool: Some(fingerprint.into()), ..SandboxRecord::sample(vmid, state) }
    }

    #[test]
    fn a_claim_takes_the_lowest_ready_sandbox_of_the_current_profile_once() {
        let (_dir, store) = temp_store();
        store.insert_sandbox(&pooled(1003, SandboxState::Ready, "v2"), None).unwrap();
        store.insert_sandbox(&pooled(1001, SandboxState::Ready, "v1"), None).unwrap();
        store.insert_sandbox(&pooled(1002, SandboxState::Booting, "v2"), None).unwrap();
        store.insert_sandbox(&pooled(1004, SandboxState::Ready, "v2"), None).unwrap();
        store.insert_bootstrap_token("h", 1003, "2000-01-01T00:00:00.000000000Z").unwrap();
        assert_eq!(store.pooled_sandboxes().unwrap().len(), 4);
        let got = store.claim_pooled(&claim("v2")).unwrap().unwrap();
        assert_eq!((got.vmid, got.name.as_str(), got.pool.as_deref(), got.keepalive), (1003, "mine", None, true));
        assert!(got.lease_expires_at.is_some() && got.ttl_minutes == Some(30));
        // The expired token counts from the claim now.
        assert!(store.bootstrap_token_valid("h", 1003).unwrap());
        assert_eq!(store.claim_pooled(&claim("v2")).unwrap().map(|r| r.vmid), Some(1004));
        // Not the booting one, not the one of an older profile.
        assert_eq!(store.claim_pooled(&claim("v2")).unwrap(), None);
        assert!(store.mark_pool_draining(1002).unwrap());
        assert!(!store.mark_pool_draining(1003).unwrap(), "claimed: not the pool's to drain");
        let left: Vec<u32> = store.pooled_sandboxes().unwrap().into_iter().map(|r| r.vmid).collect();
        assert_eq!(left, [1001, 1002]);
        let events = store.sandbox_events(1003, crate::store::EventPage::Tail(5)).unwrap();
        assert!(events.iter().any(|e| e.kind == "sandbox.claimed"), "{events:?}");
    }
}
