//! The `jobs` table: a job's record, its state transitions (compare-and-set, each with its
//! event), its phases and its stored log. The job actor rebuilds itself from this.

use super::events::{EventPage, NewEvent, Stage, insert_event};
use super::{FromRow, RowError, Store, StoreError, StoreResult, time_at};
use crate::model::EventKind;
use crate::model::{JobState, time_format};
use crate::protocol::guest::JobPhase;
use crate::protocol::{Agent, EventView, JobMode};
use rusqlite::{OptionalExtension, Row, Transaction, params};
use time::OffsetDateTime;

/// A job as persisted.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    pub id: String,
    pub repo_url: String,
    pub git_ref: Option<String>,
    pub profile: String,
    pub task: String,
    pub mode: JobMode,
    pub agent: Agent,
    pub ttl_minutes: u32,
    pub keepalive: bool,
    pub status: JobState,
    pub sandbox_vmid: Option<u32>,
    /// The workspace the job's sandbox gets.
    pub workspace_id: Option<String>,
    /// Bytes of (redacted) log stored so far; a report's `log_offset` below this is a retry.
    pub log_bytes: u64,
    pub result: Option<serde_json::Value>,
    pub error: Option<String>,
    /// When the host gives up on a guest that went silent.
    pub deadline_at: OffsetDateTime,
    /// The job's end was carried out on its sandbox (destroyed, or kept with keepalive).
    pub sandbox_released: bool,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

impl NewEvent {
    pub fn job(id: &str, kind: EventKind, stage: Stage, msg: impl Into<String>) -> Self {
        NewEvent { job_id: Some(id.to_string()), ..NewEvent::new(kind, stage, msg) }
    }
}

const COLUMNS: &str = "id, repo_url, git_ref, profile, task, mode, agent, ttl_minutes, keepalive, status, \
    sandbox_vmid, log_bytes, result, error, deadline_at, sandbox_released, created_at, updated_at, workspace_id";

impl FromRow for JobRecord {
    fn from_row(row: &Row<'_>) -> Result<JobRecord, RowError> {
        let id: String = row.get(0)?;
        let record = format!("job {id}");
        let corrupt = |what: String| RowError::Corrupt(what).of(&record);
        let corrupt_time = |e: RowError| e.of(&record);
        let status: String = row.get(9)?;
        let status = status.parse::<JobState>().map_err(|e| corrupt(e.to_string()))?;
        let result: Option<String> = row.get(12)?;
        let result = match result {
            Some(text) => Some(serde_json::from_str(&text).map_err(|e| corrupt(format!("result: {e}")))?),
            None => None,
        };
        Ok(JobRecord {
            repo_url: row.get(1)?,
            git_ref: row.get(2)?,
            profile: row.get(3)?,
            task: row.get(4)?,
            mode: row.get::<_, String>(5)?.parse().map_err(|e: crate::protocol::UnknownWord| corrupt(e.to_string()))?,
            agent: row
                .get::<_, String>(6)?
                .parse()
                .map_err(|e: crate::protocol::UnknownWord| corrupt(e.to_string()))?,
            ttl_minutes: row.get(7)?,
            keepalive: row.get(8)?,
            status,
            sandbox_vmid: row.get(10)?,
            log_bytes: row.get::<_, i64>(11)?.max(0) as u64,
            result,
            error: row.get(13)?,
            deadline_at: time_at(row, 14).map_err(corrupt_time)?,
            sandbox_released: row.get(15)?,
            created_at: time_at(row, 16).map_err(corrupt_time)?,
            updated_at: time_at(row, 17).map_err(corrupt_time)?,
            workspace_id: row.get(18)?,
            id,
        })
    }
}

pub(crate) fn job_in(tx: &Transaction<'_>, store: &Store, id: &str) -> StoreResult<JobRecord> {
    store
        .query(tx, &format!("SELECT {COLUMNS} FROM jobs WHERE id = ?1"), &[&id])?
        .pop()
        .ok_or_else(|| StoreError::JobNotFound(id.to_string()))
}

/// Records `phase` once (a retried report does not repeat it). True if it was new.
pub(crate) fn phase_in(tx: &Transaction<'_>, store: &Store, job: &JobRecord, phase: JobPhase) -> StoreResult<bool> {
    let seen: Option<i64> = tx
        .query_row(
            "SELECT id FROM events WHERE job_id = ?1 AND kind = 'job.phase' AND json_extract(payload, '$.phase') = ?2",
            params![job.id, phase.as_str()],
            |r| r.get(0),
        )
        .optional()
        .map_err(|e| store.err(e))?;
    if seen.is_some() {
        return Ok(false);
    }
    let mut event = NewEvent::job(&job.id, EventKind::JobPhase, Stage::Lifecycle, phase.label())
        .payload(serde_json::json!({"phase": phase.as_str()}));
    event.sandbox_vmid = job.sandbox_vmid;
    insert_event(tx, store, &event)?;
    Ok(true)
}

impl Store {
    /// Inserts a QUEUED job with its `queued` phase.
    pub fn insert_job(&self, job: &JobRecord, peer_uid: Option<u32>) -> StoreResult<()> {
        self.write(|tx| {
            tx.execute(
                &format!("INSERT INTO jobs ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)"),
                params![
                    job.id,
                    job.repo_url,
                    job.git_ref,
                    job.profile,
                    job.task,
                    job.mode.as_str(),
                    job.agent.as_str(),
                    job.ttl_minutes,
                    job.keepalive,
                    job.status.as_str(),
                    job.sandbox_vmid,
                    job.log_bytes as i64,
                    job.result.as_ref().map(|r| r.to_string()),
                    job.error,
                    time_format::format(job.deadline_at),
                    job.sandbox_released,
                    time_format::format(job.created_at),
                    time_format::format(job.updated_at),
                    job.workspace_id
                ],
            )
            .map_err(|e| self.err(e))?;
            let event = NewEvent::job(&job.id, EventKind::JobCreated, Stage::Lifecycle, format!("job created for {}", job.repo_url))
                .payload(serde_json::json!({"profile": job.profile, "agent": job.agent}))
                .by(peer_uid);
            insert_event(tx, self, &event)?;
            phase_in(tx, self, job, JobPhase::Queued)?;
            Ok(())
        })
    }

    pub fn get_job(&self, id: &str) -> StoreResult<Option<JobRecord>> {
        self.read(|conn| Ok(self.query(conn, &format!("SELECT {COLUMNS} FROM jobs WHERE id = ?1"), &[&id])?.pop()))
    }

    /// Newest first; `status` filters.
    pub fn list_jobs(&self, status: Option<JobState>, limit: u32) -> StoreResult<Vec<JobRecord>> {
        self.read(|conn| match status {
            Some(s) => self.query(
                conn,
                &format!("SELECT {COLUMNS} FROM jobs WHERE status = ?1 ORDER BY created_at DESC LIMIT ?2"),
                &[&s.as_str(), &limit],
            ),
            None => {
                self.query(conn, &format!("SELECT {COLUMNS} FROM jobs ORDER BY created_at DESC LIMIT ?1"), &[&limit])
            }
        })
    }

    /// Jobs that need an actor: live ones, and ended ones whose sandbox is not released yet.
    pub fn live_job_ids(&self) -> StoreResult<Vec<String>> {
        self.column(
            "SELECT id FROM jobs WHERE status IN ('QUEUED', 'RUNNING') OR sandbox_released = 0 ORDER BY created_at",
        )
    }

    pub fn count_jobs_by_status(&self) -> StoreResult<std::collections::BTreeMap<String, u64>> {
        let mut counts: std::collections::BTreeMap<String, u64> =
            JobState::ALL.iter().map(|s| (s.as_str().to_string(), 0)).collect();
        self.read(|conn| {
            let mut stmt =
                conn.prepare("SELECT status, COUNT(*) FROM jobs GROUP BY status").map_err(|e| self.err(e))?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?.max(0) as u64)))
                .map_err(|e| self.err(e))?;
            for row in rows {
                let (status, n) = row.map_err(|e| self.err(e))?;
                counts.insert(status, n);
            }
            Ok(counts)
        })
    }

    /// Moves a job from `from` to `to` (compare-and-set) with a `job.state` event; `result`
    /// and `error` are stored with it. Returns the updated record.
    pub fn transition_job(
        &self,
        id: &str,
        from: JobState,
        to: JobState,
        error: Option<&str>,
        result: Option<&serde_json::Value>,
        peer_uid: Option<u32>,
    ) -> StoreResult<JobRecord> {
        self.write(|tx| {
            let job = job_in(tx, self, id)?;
            if job.status != from {
                return Err(StoreError::JobStateConflict {
                    id: id.to_string(),
                    expected: from.to_string(),
                    actual: job.status.to_string(),
                });
            }
            tx.execute(
                "UPDATE jobs SET status = ?2, error = COALESCE(?3, error), result = COALESCE(?4, result), updated_at = ?5 WHERE id = ?1",
                params![id, to.as_str(), error, result.map(|r| r.to_string()), time_format::now()],
            )
            .map_err(|e| self.err(e))?;
            let msg = match error {
                Some(e) => format!("job {from} -> {to}: {e}"),
                None => format!("job {from} -> {to}"),
            };
            let mut event = NewEvent::job(id, EventKind::JobState, Stage::Lifecycle, msg)
                .payload(serde_json::json!({"from_state": from.as_str(), "to_state": to.as_str(), "error": error}))
                .by(peer_uid);
            event.sandbox_vmid = job.sandbox_vmid;
            insert_event(tx, self, &event)?;
            job_in(tx, self, id)
        })
        .inspect(|job| {
            if to.is_final() {
                let lived = time::OffsetDateTime::now_utc() - job.created_at;
                crate::metrics::metrics().job_duration.observe(lived.as_seconds_f64().max(0.0));
            }
        })
    }

    /// Binds the job's sandbox (its VMID is already reserved by the sandbox record).
    pub fn set_job_sandbox(&self, id: &str, vmid: u32) -> StoreResult<()> {
        self.write(|tx| {
            tx.execute(
                "UPDATE jobs SET sandbox_vmid = ?2, updated_at = ?3 WHERE id = ?1",
                params![id, vmid, time_format::now()],
            )
            .map_err(|e| self.err(e))?;
            Ok(())
        })
    }

    pub fn mark_job_released(&self, id: &str) -> StoreResult<()> {
        self.write(|tx| {
            tx.execute(
                "UPDATE jobs SET sandbox_released = 1, updated_at = ?2 WHERE id = ?1",
                params![id, time_format::now()],
            )
            .map_err(|e| self.err(e))?;
            Ok(())
        })
    }

    /// The job whose runner token hashes to `hash`.
    pub fn job_by_runner_token(&self, hash: &str) -> StoreResult<Option<JobRecord>> {
        self.read(|conn| {
            Ok(self.query(conn, &format!("SELECT {COLUMNS} FROM jobs WHERE runner_token_hash = ?1"), &[&hash])?.pop())
        })
    }

    /// Records a phase once; true if it was new.
    pub fn record_job_phase(&self, id: &str, phase: JobPhase) -> StoreResult<bool> {
        self.write(|tx| {
            let job = job_in(tx, self, id)?;
            phase_in(tx, self, &job, phase)
        })
    }

    /// Stores `text` (already de-duplicated with [`fresh_log`] and redacted) as the job's
    /// log up to `raw_end` bytes of what the runner sent. `log_bytes` counts the runner's
    /// bytes (it de-duplicates retries); what is stored stops at about `max_stored`
    /// (security review F1), with one `job.log.truncated` marker.
    pub fn append_job_log(&self, id: &str, raw_end: u64, text: &str, max_stored: u64) -> StoreResult<usize> {
        self.write(|tx| {
            let job = job_in(tx, self, id)?;
            let stored_before = job.log_bytes.min(max_stored);
            let room = usize::try_from(max_stored - stored_before).unwrap_or(usize::MAX);
            let mut keep = text.len().min(room);
            while !text.is_char_boundary(keep) {
                keep -= 1;
            }
            if keep > 0 {
                let mut event = NewEvent::job(id, EventKind::JobLog, Stage::Report, &text[..keep]);
                event.sandbox_vmid = job.sandbox_vmid;
                insert_event(tx, self, &event)?;
            }
            // The first piece that does not fit says so; later ones find log_bytes past the cap.
            if keep < text.len() && job.log_bytes <= max_stored {
                let message = format!(
                    "log truncated at job_log_max_bytes ({max_stored} bytes); the job runs on and its later output is not kept"
                );
                let mut event = NewEvent::job(id, EventKind::JobLogTruncated, Stage::Report, message);
                event.sandbox_vmid = job.sandbox_vmid;
                insert_event(tx, self, &event)?;
            }
            let end = i64::try_from(raw_end.max(job.log_bytes)).unwrap_or(i64::MAX);
            tx.execute("UPDATE jobs SET log_bytes = ?2 WHERE id = ?1", params![id, end]).map_err(|e| self.err(e))?;
            Ok(keep)
        })
    }

    /// The events of one job, oldest first.
    pub fn job_events(&self, id: &str, page: EventPage) -> StoreResult<Vec<EventView>> {
        self.events_page("job_id", Box::new(id.to_string()), page)
    }

    /// The job's phases with the time each was first reached, in phase order.
    pub fn job_phases(&self, id: &str) -> StoreResult<Vec<(JobPhase, String)>> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare("SELECT json_extract(payload, '$.phase'), ts FROM events WHERE job_id = ?1 AND kind = 'job.phase' ORDER BY id")
                .map_err(|e| self.err(e))?;
            let rows = stmt
                .query_map([id], |r| Ok((r.get::<_, Option<String>>(0)?, r.get::<_, String>(1)?)))
                .map_err(|e| self.err(e))?;
            let mut out = Vec::new();
            for row in rows {
                let (phase, ts) = row.map_err(|e| self.err(e))?;
                if let Some(phase) = phase.as_deref().and_then(JobPhase::parse) {
                    out.push((phase, ts));
                }
            }
            out.sort_by_key(|(p, _)| *p);
            Ok(out)
        })
    }

    /// The live (not destroyed) sandbox bound to a job, if one was recorded.
    pub fn sandbox_of_job(&self, id: &str) -> StoreResult<Option<u32>> {
        self.read(|conn| {
            conn.query_row(
                "SELECT vmid FROM sandboxes WHERE job_id = ?1 AND state != 'DESTROYED' ORDER BY created_at DESC LIMIT 1",
                [id],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))
        })
    }
}

#[cfg(test)]
pub(crate) fn sample_job(id: &str) -> JobRecord {
    JobRecord {
        id: id.to_string(),
        repo_url: "https://example.invalid/repo.git".into(),
        git_ref: None,
        profile: "yolo-ephemeral".into(),
        task: "fix the bug".into(),
        mode: JobMode::Dangerous,
        agent: Agent::Custom,
        ttl_minutes: 60,
        keepalive: false,
        status: JobState::Queued,
        sandbox_vmid: None,
        workspace_id: None,
        log_bytes: 0,
        result: None,
        error: None,
        deadline_at: time::macros::datetime!(2999-01-01 0:00 UTC),
        sandbox_released: false,
        created_at: OffsetDateTime::now_utc(),
        updated_at: OffsetDateTime::now_utc(),
    }
}

/// The part of a log piece at `offset` not stored yet, given `log_bytes` already received,
/// and where the runner's log ends with it (saturating: a bogus offset cannot wrap).
pub fn fresh_log(log_bytes: u64, offset: Option<u64>, text: &str) -> (&str, u64) {
    let skip = offset.map_or(0, |o| log_bytes.saturating_sub(o));
    let mut start = usize::try_from(skip).unwrap_or(usize::MAX).min(text.len());
    while !text.is_char_boundary(start) {
        start += 1;
    }
    let fresh = &text[start..];
    let end = offset.map_or(log_bytes.saturating_add(fresh.len() as u64), |o| o.saturating_add(text.len() as u64));
    (fresh, end.max(log_bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::temp_store;

    #[test]
    fn jobs_round_trip_and_transitions_are_compare_and_set() {
        let (_dir, store) = temp_store();
        store.insert_job(&sample_job("job_a"), Some(1000)).unwrap();
        assert_eq!(store.live_job_ids().unwrap_or_default(), ["job_a"]);
        let job = store.transition_job("job_a", JobState::Queued, JobState::Running, None, None, None).unwrap();
        assert_eq!(job.status, JobState::Running);
        let stale = store.transition_job("job_a", JobState::Queued, JobState::Canceled, None, None, None);
        assert!(matches!(stale, Err(StoreError::JobStateConflict { .. })));
        let result = serde_json::json!({"exit_code": 0});
        let job =
            store.transition_job("job_a", JobState::Running, JobState::Completed, None, Some(&result), None).unwrap();
        assert_eq!(job.result, Some(result));
        assert_eq!(store.live_job_ids().unwrap_or_default(), ["job_a"], "sandbox not released yet");
        store.mark_job_released("job_a").unwrap();
        assert!(store.live_job_ids().unwrap_or_default().is_empty());
        assert_eq!(store.count_jobs_by_status().unwrap_or_default().get("COMPLETED"), Some(&1));
    }

    #[test]
    fn phases_are_recorded_once_and_logs_skip_retried_bytes() {
        let (_dir, store) = temp_store();
        store.insert_job(&sample_job("job_b"), None).unwrap();
        assert_eq!(store.record_job_phase("job_b", JobPhase::RepoReady).ok(), Some(true));
        assert_eq!(store.record_job_phase("job_b", JobPhase::RepoReady).ok(), Some(false));
        let phases: Vec<JobPhase> = store.job_phases("job_b").unwrap_or_default().into_iter().map(|p| p.0).collect();
        assert_eq!(phases, [JobPhase::Queued, JobPhase::RepoReady]);

        let append = |offset: Option<u64>, text: &str, cap: u64| {
            let log_bytes = store.get_job("job_b").unwrap().unwrap().log_bytes;
            let (fresh, end) = fresh_log(log_bytes, offset, text);
            store.append_job_log("job_b", end, fresh, cap).ok()
        };
        assert_eq!(append(Some(0), "hello ", 1 << 20), Some(6));
        assert_eq!(append(Some(0), "hello ", 1 << 20), Some(0), "a retry stores nothing");
        assert_eq!(append(Some(3), "lo world", 1 << 20), Some(5), "overlap is trimmed");
        let log: String = store
            .job_events("job_b", EventPage::Tail(50))
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e.kind == "job.log")
            .map(|e| e.msg)
            .collect();
        assert_eq!(log, "hello world");
        assert_eq!(store.get_job("job_b").ok().flatten().map(|j| j.log_bytes), Some(11));
        // Past the cap nothing more is stored, and one marker says so.
        assert_eq!(append(Some(11), "0123456789", 16), Some(5));
        assert_eq!(append(Some(21), "more", 16), Some(0));
        let kinds: Vec<String> =
            store.job_events("job_b", EventPage::Tail(50)).unwrap_or_default().into_iter().map(|e| e.kind).collect();
        assert_eq!(kinds.iter().filter(|k| *k == "job.log.truncated").count(), 1, "{kinds:?}");
        // A bogus offset (F16) saturates instead of wrapping.
        assert_eq!(fresh_log(25, Some(u64::MAX), "x"), ("x", u64::MAX));
    }
}
