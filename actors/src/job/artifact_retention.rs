//! The artifact retention sweep: a periodic pass that deletes the artifacts of ended jobs
//! once they are older than their profile's `artifacts.retention_*`, then, while all
//! artifacts together exceed `artifact_retention_max_total_bytes`, the oldest ones; and
//! drops token rows that can never be used again. A running job's artifacts are never
//! touched. Each job's deletions are one `artifact.expired` event.
//!
//! Crash safety: the decision comes from stored facts (creation time, profile, sizes), so
//! a sweep killed between removing a file and forgetting its row makes the same decision
//! next time, finds the file gone and forgets the row.

use crate::clock::Clock;
use crate::profiles::ProfileRegistry;
use crate::store::{Store, StoreResult, StoredArtifact};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct RetentionSettings {
    pub artifact_dir: PathBuf,
    /// How often the sweep runs.
    pub interval: Duration,
    /// The most all artifacts together may take; `None`: no total cap.
    pub max_total_bytes: Option<u64>,
}

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub expired_files: usize,
    pub expired_bytes: u64,
    pub jobs: usize,
    pub bootstrap_tokens_purged: usize,
    pub artifact_tokens_purged: usize,
}

/// Why an artifact goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Reason {
    Age,
    TotalSize,
}

impl Reason {
    fn describe(self) -> &'static str {
        match self {
            Reason::Age => "past the profile's artifact retention",
            Reason::TotalSize => "oldest beyond artifact_retention_max_total_bytes",
        }
    }
}

/// Which of `artifacts` (oldest first) go, and why.
fn choose(
    artifacts: &[StoredArtifact],
    retention_of: impl Fn(&str) -> Option<Duration>,
    max_total_bytes: Option<u64>,
    all_bytes: u64,
    clock: &Clock,
) -> Vec<(usize, Reason)> {
    let mut chosen = Vec::new();
    let mut left = all_bytes;
    for (i, artifact) in artifacts.iter().enumerate() {
        if retention_of(&artifact.profile).is_some_and(|keep| clock.since(artifact.created_at) >= keep) {
            chosen.push((i, Reason::Age));
            left = left.saturating_sub(artifact.size_bytes);
        }
    }
    if let Some(cap) = max_total_bytes {
        for (i, artifact) in artifacts.iter().enumerate() {
            if left <= cap {
                break;
            }
            if chosen.iter().all(|(c, _)| *c != i) {
                chosen.push((i, Reason::TotalSize));
                left = left.saturating_sub(artifact.size_bytes);
            }
        }
    }
    chosen
}

/// One pass. `all_bytes` counts running jobs' artifacts too: they take disk, but only
/// ended jobs' artifacts are given up to make room.
pub fn sweep(
    store: &Store,
    profiles: &ProfileRegistry,
    settings: &RetentionSettings,
    clock: &Clock,
) -> StoreResult<SweepReport> {
    let artifacts = store.artifacts_of_ended_jobs()?;
    let all_bytes = store.artifact_total_bytes()?;
    let set = profiles.snapshot();
    let retention_of = |profile: &str| {
        let minutes = set.profiles.get(profile)?.profile.artifact_retention_minutes()?;
        Some(Duration::from_secs(minutes.saturating_mul(60)))
    };
    let chosen = choose(&artifacts, retention_of, settings.max_total_bytes, all_bytes, clock);

    let mut by_job: BTreeMap<(&str, Reason), Vec<&StoredArtifact>> = BTreeMap::new();
    for (i, reason) in chosen {
        by_job.entry((artifacts[i].job_id.as_str(), reason)).or_default().push(&artifacts[i]);
    }
    let mut report = SweepReport::default();
    let mut jobs = std::collections::BTreeSet::new();
    for ((job_id, reason), gone) in by_job {
        let job_dir = settings.artifact_dir.join(job_id);
        let mut ids = Vec::new();
        let mut bytes = 0;
        for artifact in gone {
            if remove_artifact_file(&job_dir, &artifact.path) {
                ids.push(artifact.id);
                bytes += artifact.size_bytes;
            }
        }
        if ids.is_empty() {
            continue;
        }
        store.forget_artifacts(job_id, &ids, bytes, reason.describe())?;
        let metrics = crate::metrics::metrics();
        metrics.artifacts_expired.inc_by(ids.len() as u64);
        metrics.artifact_expired_bytes.inc_by(bytes);
        report.expired_files += ids.len();
        report.expired_bytes += bytes;
        jobs.insert(job_id.to_string());
        remove_empty_dirs(&job_dir, &settings.artifact_dir);
    }
    report.jobs = jobs.len();
    let (bootstrap, artifact) = store.purge_expired_tokens(clock.now())?;
    report.bootstrap_tokens_purged = bootstrap;
    report.artifact_tokens_purged = artifact;
    Ok(report)
}

/// Removes one artifact's file; true when it is gone (already gone counts). A path that
/// leaves the job's directory is refused (the stored path was checked at upload; this
/// guards a corrupted row).
fn remove_artifact_file(job_dir: &Path, relative: &str) -> bool {
    let relative = Path::new(relative);
    if relative.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
        tracing::error!(path = %relative.display(), "artifact row with a path outside its job; left alone");
        return false;
    }
    match std::fs::remove_file(job_dir.join(relative)) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => {
            tracing::warn!(path = %job_dir.join(relative).display(), error = %e, "cannot delete an expired artifact");
            false
        }
    }
}

/// Removes the empty directories under `job_dir` and `job_dir` itself if empty, never
/// `artifact_dir`.
fn remove_empty_dirs(job_dir: &Path, artifact_dir: &Path) {
    fn prune(dir: &Path) -> bool {
        let Ok(entries) = std::fs::read_dir(dir) else { return false };
        let mut empty = true;
        for entry in entries.flatten() {
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            if !(is_dir && prune(&entry.path())) {
                empty = false;
            }
        }
        empty && std::fs::remove_dir(dir).is_ok()
    }
    if job_dir != artifact_dir {
        prune(job_dir);
    }
}

/// Runs `sweep` every `interval` (the first one at once) until the runtime stops.
pub fn spawn_periodic(
    store: Arc<Store>,
    profiles: Arc<ProfileRegistry>,
    settings: RetentionSettings,
    clock: Clock,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(settings.interval.max(Duration::from_secs(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let (store, profiles, settings) = (Arc::clone(&store), Arc::clone(&profiles), settings.clone());
            match tokio::task::spawn_blocking(move || sweep(&store, &profiles, &settings, &clock)).await {
                Ok(Ok(report)) if report.expired_files > 0 => tracing::info!(
                    files = report.expired_files,
                    bytes = report.expired_bytes,
                    jobs = report.jobs,
                    "expired artifacts deleted"
                ),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "artifact retention sweep failed; tried again next interval"),
                Err(e) => tracing::warn!(error = %e, "artifact retention sweep task failed"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::JobState;
    use crate::protocol::guest::ArtifactInfo;
    use crate::store::EventPage;

    const PROFILES: &str = "\
name: short
template_vmid: 9000
artifacts:
  retention_minutes: 60
---
name: forever
template_vmid: 9000
";

    struct Bench {
        _dir: tempfile::TempDir,
        store: Store,
        profiles: ProfileRegistry,
        settings: RetentionSettings,
    }

    fn bench(max_total_bytes: Option<u64>) -> Bench {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("agentlab.db")).unwrap();
        let profiles_dir = dir.path().join("profiles");
        std::fs::create_dir_all(&profiles_dir).unwrap();
        std::fs::write(profiles_dir.join("p.yaml"), PROFILES).unwrap();
        let profiles = ProfileRegistry::load(profiles_dir, crate::profiles::ProfileRules { api_token: true }).unwrap();
        let settings = RetentionSettings {
            artifact_dir: dir.path().join("artifacts"),
            interval: Duration::from_secs(600),
            max_total_bytes,
        };
        Bench { _dir: dir, store, profiles, settings }
    }

    impl Bench {
        /// A job of `profile` ending in `status`, with one artifact per `(path, size)`.
        fn job(&self, id: &str, profile: &str, status: JobState, files: &[(&str, u64)]) {
            let mut job = crate::store::jobs::sample_job(id);
            job.profile = profile.into();
            self.store.insert_job(&job, None).unwrap();
            self.store.transition_job(id, JobState::Queued, JobState::Running, None, None, None).unwrap();
            for (path, size) in files {
                let file = self.settings.artifact_dir.join(id).join(path);
                std::fs::create_dir_all(file.parent().unwrap()).unwrap();
                std::fs::write(&file, vec![b'x'; *size as usize]).unwrap();
                let info = ArtifactInfo {
                    name: path.rsplit('/').next().unwrap().into(),
                    path: (*path).into(),
                    size_bytes: *size,
                    sha256: "0".repeat(64),
                    mime: "text/plain".into(),
                };
                self.store.insert_artifact(id, &info).unwrap();
            }
            if status != JobState::Running {
                self.store.transition_job(id, JobState::Running, status, None, None, None).unwrap();
            }
        }

        /// Stamps `id`'s artifacts with the paused clock's now (the store writes wall time).
        fn stamp(&self, id: &str, clock: &Clock) {
            let at = crate::model::time_format::format(clock.now());
            self.store
                .write(|tx| {
                    tx.execute("UPDATE artifacts SET created_at = ?1 WHERE job_id = ?2", [&at, id]).unwrap();
                    Ok(())
                })
                .unwrap();
        }

        fn on_disk(&self, id: &str, path: &str) -> bool {
            self.settings.artifact_dir.join(id).join(path).exists()
        }

        fn listed(&self, id: &str) -> Vec<String> {
            self.store.list_artifacts(id).unwrap().into_iter().map(|a| a.info.path).collect()
        }

        fn expired_events(&self, id: &str) -> Vec<serde_json::Value> {
            self.store
                .job_events(id, EventPage::Tail(100))
                .unwrap()
                .into_iter()
                .filter(|e| e.kind == "artifact.expired")
                .map(|e| e.json)
                .collect()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn past_retention_goes_and_nothing_else() {
        let b = bench(None);
        let clock = Clock::following_tokio();
        b.job("old-done", "short", JobState::Completed, &[("out/a.txt", 10), ("b.txt", 20)]);
        b.job("old-running", "short", JobState::Running, &[("a.txt", 10)]);
        b.job("old-forever", "forever", JobState::Failed, &[("a.txt", 10)]);

        // Not yet 60 minutes: nothing goes.
        tokio::time::advance(Duration::from_secs(59 * 60)).await;
        let report = sweep(&b.store, &b.profiles, &b.settings, &clock).unwrap();
        assert_eq!(report.expired_files, 0, "{report:?}");
        b.job("young-done", "short", JobState::Completed, &[("a.txt", 10)]);
        b.stamp("young-done", &clock);

        tokio::time::advance(Duration::from_secs(2 * 60)).await;
        let report = sweep(&b.store, &b.profiles, &b.settings, &clock).unwrap();
        assert_eq!((report.expired_files, report.expired_bytes, report.jobs), (2, 30, 1), "{report:?}");
        assert!(b.listed("old-done").is_empty());
        assert!(!b.on_disk("old-done", "out/a.txt") && !b.on_disk("old-done", "b.txt"));
        assert!(!b.settings.artifact_dir.join("old-done").exists(), "the emptied job directory goes too");
        assert_eq!(b.listed("old-running"), ["a.txt"], "a running job's artifacts are never touched");
        assert_eq!(b.listed("old-forever"), ["a.txt"], "a profile without retention keeps them");
        assert_eq!(b.listed("young-done"), ["a.txt"], "younger than the retention");
        assert!(
            b.on_disk("old-running", "a.txt") && b.on_disk("old-forever", "a.txt") && b.on_disk("young-done", "a.txt")
        );
        let events = b.expired_events("old-done");
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!((events[0]["count"].as_u64(), events[0]["bytes"].as_u64()), (Some(2), Some(30)));

        // Again: nothing more to do.
        let report = sweep(&b.store, &b.profiles, &b.settings, &clock).unwrap();
        assert_eq!(report.expired_files, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn beyond_the_total_cap_the_oldest_ended_jobs_artifacts_go_first() {
        let b = bench(Some(25));
        let clock = Clock::following_tokio();
        b.job("first", "forever", JobState::Completed, &[("a.txt", 10)]);
        tokio::time::advance(Duration::from_secs(1)).await;
        b.job("running", "forever", JobState::Running, &[("a.txt", 10)]);
        tokio::time::advance(Duration::from_secs(1)).await;
        b.job("second", "forever", JobState::Completed, &[("a.txt", 10)]);
        tokio::time::advance(Duration::from_secs(1)).await;
        b.job("third", "forever", JobState::Canceled, &[("a.txt", 10)]);

        // 40 bytes, cap 25: the two oldest ended jobs' artifacts go; the running one stays.
        let report = sweep(&b.store, &b.profiles, &b.settings, &clock).unwrap();
        assert_eq!((report.expired_files, report.expired_bytes), (2, 20), "{report:?}");
        assert!(b.listed("first").is_empty() && b.listed("second").is_empty());
        assert_eq!(b.listed("running"), ["a.txt"]);
        assert_eq!(b.listed("third"), ["a.txt"]);
        assert_eq!(b.store.artifact_total_bytes().unwrap(), 20);
        assert_eq!(b.expired_events("first")[0]["reason"], "oldest beyond artifact_retention_max_total_bytes");
    }

    #[tokio::test(start_paused = true)]
    async fn a_sweep_killed_after_removing_files_finishes_next_time() {
        let b = bench(None);
        let clock = Clock::following_tokio();
        b.job("done", "short", JobState::Completed, &[("a.txt", 10)]);
        tokio::time::advance(Duration::from_secs(61 * 60)).await;
        // The crash: the file went, the row stayed.
        std::fs::remove_file(b.settings.artifact_dir.join("done/a.txt")).unwrap();
        let report = sweep(&b.store, &b.profiles, &b.settings, &clock).unwrap();
        assert_eq!(report.expired_files, 1);
        assert!(b.listed("done").is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn expired_token_rows_are_purged_and_live_ones_kept() {
        let b = bench(None);
        let clock = Clock::following_tokio();
        let at = |minutes: i64| crate::model::time_format::format(clock.now() + time::Duration::minutes(minutes));
        b.store.insert_bootstrap_token("soon", 1000, &at(10)).unwrap();
        b.store.insert_bootstrap_token("later", 1001, &at(120)).unwrap();
        tokio::time::advance(Duration::from_secs(11 * 60)).await;
        let report = sweep(&b.store, &b.profiles, &b.settings, &clock).unwrap();
        assert_eq!(report.bootstrap_tokens_purged, 1);
        assert_eq!(b.store.bootstrap_token_count(1000).unwrap(), 0);
        assert_eq!(b.store.bootstrap_token_count(1001).unwrap(), 1);
    }
}
