//! What the retention sweep reads and removes: artifacts of ended jobs, and token rows
//! that can never be used again.

use super::events::{NewEvent, Stage, insert_event};
use super::{Store, StoreResult};
use crate::model::time_format;
use crate::model::{EventKind, JobState};
use rusqlite::params;
use time::OffsetDateTime;

/// An artifact the sweep may delete: its job has ended (a running job's artifacts are
/// never touched, it may still be uploading).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredArtifact {
    pub id: i64,
    pub job_id: String,
    pub profile: String,
    /// Relative to the job's artifact directory.
    pub path: String,
    pub size_bytes: u64,
    pub created_at: OffsetDateTime,
}

impl Store {
    /// Every artifact of an ended job, oldest first (ties by id).
    pub fn artifacts_of_ended_jobs(&self) -> StoreResult<Vec<StoredArtifact>> {
        let ended: Vec<String> =
            JobState::ALL.iter().filter(|s| s.is_final()).map(|s| format!("'{}'", s.as_str())).collect();
        let sql = format!(
            "SELECT a.id, a.job_id, j.profile, a.path, a.size_bytes, a.created_at
               FROM artifacts a JOIN jobs j ON j.id = a.job_id
              WHERE j.status IN ({})
              ORDER BY a.created_at, a.id",
            ended.join(", ")
        );
        self.read(|c| {
            let mut stmt = c.prepare(&sql).map_err(|e| self.err(e))?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, i64>(4)?,
                        r.get::<_, String>(5)?,
                    ))
                })
                .map_err(|e| self.err(e))?;
            let mut out = Vec::new();
            for row in rows {
                let (id, job_id, profile, path, size, created) = row.map_err(|e| self.err(e))?;
                let created_at = time_format::parse(&created)
                    .map_err(|e| super::StoreError::Corrupt(format!("artifact {id}: created_at `{created}`: {e}")))?;
                out.push(StoredArtifact { id, job_id, profile, path, size_bytes: size.max(0) as u64, created_at });
            }
            Ok(out)
        })
    }

    /// Forgets `ids` (all of `job_id`) with one `artifact.expired` event saying why. The
    /// files go first (the sweep's decision is the same when it runs again after a crash).
    pub fn forget_artifacts(&self, job_id: &str, ids: &[i64], bytes: u64, why: &str) -> StoreResult<()> {
        self.write(|tx| {
            for id in ids {
                tx.execute("DELETE FROM artifacts WHERE id = ?1 AND job_id = ?2", params![id, job_id])
                    .map_err(|e| self.err(e))?;
            }
            let event = NewEvent::job(
                job_id,
                EventKind::ArtifactsExpired,
                Stage::Artifact,
                format!("{} artifacts ({bytes} bytes) deleted: {why}", ids.len()),
            )
            .payload(serde_json::json!({"count": ids.len(), "bytes": bytes, "reason": why}));
            insert_event(tx, self, &event)?;
            Ok(())
        })
    }

    /// Deletes token rows that can never be used again: bootstrap tokens past their expiry
    /// (used or not) and artifact tokens past theirs. Returns (bootstrap, artifact) counts.
    pub fn purge_expired_tokens(&self, now: OffsetDateTime) -> StoreResult<(usize, usize)> {
        let now = time_format::format(now);
        self.write(|tx| {
            let bootstrap =
                tx.execute("DELETE FROM bootstrap_tokens WHERE expires_at <= ?1", [&now]).map_err(|e| self.err(e))?;
            let artifact =
                tx.execute("DELETE FROM artifact_tokens WHERE expires_at <= ?1", [&now]).map_err(|e| self.err(e))?;
            Ok((bootstrap, artifact))
        })
    }
}
