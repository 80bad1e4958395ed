//! Job credentials and artifacts: the bootstrap exchange (consume the one-time token and
//! store the runner and artifact tokens' hashes in one transaction), artifact token
//! lookup, and the artifact rows.

use super::events::{NewEvent, Stage, insert_event};
use super::jobs::phase_in;
use super::{Store, StoreError, StoreResult};
use crate::model::EventKind;
use crate::model::time_format;
use crate::protocol::ArtifactView;
use crate::protocol::guest::{ArtifactInfo, JobPhase};
use rusqlite::{OptionalExtension, params};

/// The hashes minted for a job at bootstrap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MintedTokens {
    pub runner_token_hash: String,
    pub artifact_token_hash: String,
    pub artifact_expires_at: String,
}

/// Whom an artifact token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactGrant {
    pub job_id: String,
    pub vmid: u32,
}

impl Store {
    /// Whether a bootstrap token is valid for `vmid` now (unused, unexpired), without using it.
    pub fn bootstrap_token_valid(&self, token_hash: &str, vmid: u32) -> StoreResult<bool> {
        let now = time_format::now();
        self.read(|c| {
            let found: Option<u32> = c
                .query_row(
                    "SELECT vmid FROM bootstrap_tokens WHERE token_hash = ?1 AND vmid = ?2 AND consumed_at IS NULL AND expires_at > ?3",
                    params![token_hash, vmid, now],
                    |r| r.get(0),
                )
                .optional()
                .map_err(|e| self.err(e))?;
            Ok(found.is_some())
        })
    }

    /// Consumes the bootstrap token and stores the job's new token hashes, atomically: either
    /// the guest gets a payload whose tokens work, or the token stays unused. False when the
    /// token was already used, expired or bound to another VMID.
    pub fn exchange_bootstrap_token(
        &self,
        token_hash: &str,
        vmid: u32,
        job_id: &str,
        minted: &MintedTokens,
    ) -> StoreResult<bool> {
        let now = time_format::now();
        self.write(|tx| {
            if !super::tokens::consume_in(tx, self, token_hash, vmid)? {
                return Ok(false);
            }
            let job = super::jobs::job_in(tx, self, job_id)?;
            if job.sandbox_vmid != Some(vmid) {
                return Err(StoreError::Corrupt(format!("job {job_id} is not bound to sandbox {vmid}")));
            }
            tx.execute(
                "UPDATE jobs SET runner_token_hash = ?2, updated_at = ?3 WHERE id = ?1",
                params![job_id, minted.runner_token_hash, now],
            )
            .map_err(|e| self.err(e))?;
            tx.execute("DELETE FROM artifact_tokens WHERE job_id = ?1", [job_id]).map_err(|e| self.err(e))?;
            tx.execute(
                "INSERT INTO artifact_tokens (token_hash, job_id, vmid, expires_at, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![minted.artifact_token_hash, job_id, vmid, minted.artifact_expires_at, now],
            )
            .map_err(|e| self.err(e))?;
            // A guest that fetches has booted, even if the job actor has not heard yet.
            phase_in(tx, self, &job, JobPhase::SandboxReady)?;
            phase_in(tx, self, &job, JobPhase::BootstrapFetched)?;
            Ok(true)
        })
    }

    /// The job an artifact token was minted for, while it may still upload: unexpired, the
    /// job not ended, its sandbox not destroyed (security review F2: a finished job's token
    /// replaced its result bundle).
    pub fn artifact_grant(&self, token_hash: &str) -> StoreResult<Option<ArtifactGrant>> {
        let now = time_format::now();
        self.read(|c| {
            c.query_row(
                "SELECT t.job_id, t.vmid FROM artifact_tokens t
                 JOIN jobs j ON j.id = t.job_id
                 LEFT JOIN sandboxes s ON s.vmid = t.vmid
                 WHERE t.token_hash = ?1 AND t.expires_at > ?2 AND j.status IN ('QUEUED', 'RUNNING')
                   AND (s.state IS NULL OR s.state != 'DESTROYED')",
                params![token_hash, now],
                |r| Ok(ArtifactGrant { job_id: r.get(0)?, vmid: r.get(1)? }),
            )
            .optional()
            .map_err(|e| self.err(e))
        })
    }

    /// The artifact recorded at `path` for a job, if any.
    pub fn artifact_at(&self, job_id: &str, path: &str) -> StoreResult<Option<ArtifactInfo>> {
        self.read(|c| {
            c.query_row(
                "SELECT name, path, size_bytes, sha256, mime FROM artifacts WHERE job_id = ?1 AND path = ?2",
                params![job_id, path],
                |r| {
                    Ok(ArtifactInfo {
                        name: r.get(0)?,
                        path: r.get(1)?,
                        size_bytes: r.get::<_, i64>(2)?.max(0) as u64,
                        sha256: r.get(3)?,
                        mime: r.get(4)?,
                    })
                },
            )
            .optional()
            .map_err(|e| self.err(e))
        })
    }

    /// Bytes and files a job has stored.
    pub fn artifact_usage(&self, job_id: &str) -> StoreResult<(u64, u64)> {
        self.read(|c| {
            c.query_row(
                "SELECT COALESCE(SUM(size_bytes), 0), COUNT(*) FROM artifacts WHERE job_id = ?1",
                [job_id],
                |r| Ok((r.get::<_, i64>(0)?.max(0) as u64, r.get::<_, i64>(1)?.max(0) as u64)),
            )
            .map_err(|e| self.err(e))
        })
    }

    /// Bytes of every artifact stored, all jobs together (the disk they take).
    pub fn artifact_total_bytes(&self) -> StoreResult<u64> {
        self.read(|c| {
            c.query_row("SELECT COALESCE(SUM(size_bytes), 0) FROM artifacts", [], |r| {
                Ok(r.get::<_, i64>(0)?.max(0) as u64)
            })
            .map_err(|e| self.err(e))
        })
    }

    /// Records an uploaded artifact with its event and the `artifacts_uploaded` phase. An
    /// artifact is never replaced: a second row for the same path is refused by the table's
    /// key (the upload route checks first and never renames over a file).
    pub fn insert_artifact(&self, job_id: &str, info: &ArtifactInfo) -> StoreResult<()> {
        self.write(|tx| {
            let job = super::jobs::job_in(tx, self, job_id)?;
            tx.execute(
                "INSERT INTO artifacts (job_id, name, path, size_bytes, sha256, mime, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    job_id,
                    info.name,
                    info.path,
                    info.size_bytes as i64,
                    info.sha256,
                    info.mime,
                    time_format::now()
                ],
            )
            .map_err(|e| self.err(e))?;
            let mut event = NewEvent::job(
                job_id,
                EventKind::ArtifactUploaded,
                Stage::Artifact,
                format!("artifact {} uploaded ({} bytes)", info.name, info.size_bytes),
            )
            .payload(serde_json::json!({"name": info.name, "size_bytes": info.size_bytes, "sha256": info.sha256}));
            event.sandbox_vmid = job.sandbox_vmid;
            insert_event(tx, self, &event)?;
            phase_in(tx, self, &job, JobPhase::ArtifactsUploaded)?;
            Ok(())
        })
    }

    /// A job's artifacts, newest first.
    pub fn list_artifacts(&self, job_id: &str) -> StoreResult<Vec<ArtifactView>> {
        self.read(|c| {
            let mut stmt = c
                .prepare(
                    "SELECT name, path, size_bytes, sha256, mime, created_at FROM artifacts WHERE job_id = ?1 ORDER BY created_at DESC, id DESC",
                )
                .map_err(|e| self.err(e))?;
            let rows = stmt
                .query_map([job_id], |r| {
                    Ok(ArtifactView {
                        info: ArtifactInfo {
                            name: r.get(0)?,
                            path: r.get(1)?,
                            size_bytes: r.get::<_, i64>(2)?.max(0) as u64,
                            sha256: r.get(3)?,
                            mime: r.get(4)?,
                        },
                        created_at: r.get(5)?,
                    })
                })
                .map_err(|e| self.err(e))?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(|e| self.err(e))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::jobs::sample_job;
    use crate::store::test_support::temp_store;

    fn minted(n: &str) -> MintedTokens {
        MintedTokens {
            runner_token_hash: format!("runner-{n}"),
            artifact_token_hash: format!("artifact-{n}"),
            artifact_expires_at: "2999-01-01T00:00:00.000000000Z".into(),
        }
    }

    #[test]
    fn the_exchange_is_single_use_and_vmid_bound() {
        let (_dir, store) = temp_store();
        let mut job = sample_job("job_x");
        job.sandbox_vmid = Some(1001);
        store.insert_job(&job, None).unwrap();
        store.insert_bootstrap_token("boot", 1001, "2999-01-01T00:00:00.000000000Z").unwrap();
        assert_eq!(store.bootstrap_token_valid("boot", 1002).ok(), Some(false));
        assert_eq!(store.exchange_bootstrap_token("boot", 1002, "job_x", &minted("a")).ok(), Some(false));
        assert_eq!(store.bootstrap_token_valid("boot", 1001).ok(), Some(true));
        assert_eq!(store.exchange_bootstrap_token("boot", 1001, "job_x", &minted("a")).ok(), Some(true));
        assert_eq!(store.exchange_bootstrap_token("boot", 1001, "job_x", &minted("b")).ok(), Some(false), "replay");
        assert_eq!(store.job_by_runner_token("runner-a").ok().flatten().map(|j| j.id), Some("job_x".to_string()));
        assert_eq!(store.job_by_runner_token("runner-b").ok().flatten(), None);
        let grant = store.artifact_grant("artifact-a").ok().flatten();
        assert_eq!(grant, Some(ArtifactGrant { job_id: "job_x".into(), vmid: 1001 }));
    }

    #[test]
    fn an_artifact_is_never_replaced_and_usage_adds_up() {
        let (_dir, store) = temp_store();
        store.insert_job(&sample_job("job_y"), None).unwrap();
        let info = |sha: &str| ArtifactInfo {
            name: "agentlab-artifacts.tar.gz".into(),
            path: "agentlab-artifacts.tar.gz".into(),
            size_bytes: 10,
            sha256: sha.into(),
            mime: "application/gzip".into(),
        };
        store.insert_artifact("job_y", &info("one")).unwrap();
        assert!(store.insert_artifact("job_y", &info("two")).is_err(), "security review F2: never replaced");
        let list = store.list_artifacts("job_y").unwrap_or_default();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].info.sha256, "one");
        assert_eq!(
            store.artifact_at("job_y", "agentlab-artifacts.tar.gz").unwrap().map(|a| a.sha256),
            Some("one".into())
        );
        assert_eq!(store.artifact_usage("job_y").unwrap(), (10, 1));
    }
}
