//! The `job` commands.

use crate::args::{ArtifactsAction, ArtifactsArgs, DownloadArgs, JobCommand, JobRunArgs};
use crate::client::{ClientError, DaemonClient};
use crate::follow::print_event;
use agentlab_model::model::{ErrorCode, ErrorEnvelope, JobState};
use agentlab_model::protocol::guest::DEFAULT_ARTIFACT_NAME;
use agentlab_model::protocol::{
    ArtifactsResponse, CreateJobRequest, CreateWorkspaceRequest, EventsResponse, JobView, JobsResponse,
};
use std::path::PathBuf;

fn job_id(text: &str) -> Result<&str, ClientError> {
    if agentlab_model::protocol::valid_job_id(text) {
        Ok(text)
    } else {
        Err(ClientError::Usage(format!("`{text}` is not a job id (job_ and 16 hex digits)")))
    }
}

pub fn run(client: &DaemonClient, json: bool, command: &JobCommand) -> Result<(), ClientError> {
    match command {
        JobCommand::Run(args) => job_run(client, json, args),
        JobCommand::Show { id, events_tail } => {
            let value = client.get_value(&format!("/v1/jobs/{}?events_tail={events_tail}", job_id(id)?))?;
            crate::commands::print_or(json, &value, |v: JobView| render_job(&v))
        }
        JobCommand::List { filter } => {
            let path = match filter {
                Some(status) => format!("/v1/jobs?status={status}"),
                None => "/v1/jobs".to_string(),
            };
            let value = client.get_value(&path)?;
            crate::commands::print_or(json, &value, |v: JobsResponse| render_jobs(&v))
        }
        JobCommand::Cancel { id } => {
            let value = client
                .post_value(&format!("/v1/jobs/{}/cancel", job_id(id)?), &agentlab_model::protocol::NoArguments {})?;
            crate::commands::print_or(json, &value, |v: JobView| format!("job {} {}\n", v.id, v.status))
        }
        JobCommand::Artifacts(ArtifactsArgs { action: Some(ArtifactsAction::Download(args)), .. }) => {
            download(client, json, args)
        }
        JobCommand::Artifacts(ArtifactsArgs { action: None, id }) => {
            let id =
                id.as_deref().ok_or_else(|| ClientError::Usage("which job? `agentlab job artifacts JOB_ID`".into()))?;
            let value = client.get_value(&format!("/v1/jobs/{}/artifacts", job_id(id)?))?;
            crate::commands::print_or(json, &value, |v: ArtifactsResponse| render_artifacts(&v))
        }
    }
}

/// `--workspace NAME` or `--workspace new:NAME --workspace-size N`.
fn workspace_of(args: &JobRunArgs) -> Result<(Option<String>, Option<CreateWorkspaceRequest>), ClientError> {
    let Some(text) = args.workspace.as_deref() else { return Ok((None, None)) };
    match text.strip_prefix("new:") {
        Some(name) => {
            let size_gb = args.workspace_size.ok_or_else(|| {
                ClientError::Usage(format!("--workspace new:{name} needs --workspace-size (GiB, e.g. 10G)"))
            })?;
            let storage = args.workspace_storage.clone();
            Ok((None, Some(CreateWorkspaceRequest { name: name.to_string(), size_gb, storage, node: None })))
        }
        None if args.workspace_size.is_some() || args.workspace_storage.is_some() => Err(ClientError::Usage(format!(
            "--workspace-size and --workspace-storage are for a new workspace: --workspace new:{text}"
        ))),
        None => Ok((Some(text.to_string()), None)),
    }
}

fn job_run(client: &DaemonClient, json: bool, args: &JobRunArgs) -> Result<(), ClientError> {
    let (workspace_id, workspace_create) = workspace_of(args)?;
    let request = CreateJobRequest {
        workspace_id,
        workspace_create,
        workspace_wait_seconds: args.workspace_wait,
        repo_url: args.repo.clone(),
        git_ref: args.git_ref.clone(),
        profile: args.profile.clone(),
        task: args.task.clone(),
        mode: args.mode.clone(),
        agent: args.agent.clone(),
        ttl_minutes: args.ttl,
        keepalive: args.keepalive.then_some(true),
    };
    let value = client.post_value("/v1/jobs", &request)?;
    let job: JobView = serde_json::from_value(value.clone()).map_err(|e| ClientError::BadResponse(e.to_string()))?;
    if !args.follow {
        if json {
            println!("{}", serde_json::to_string_pretty(&value).unwrap_or_default());
        } else {
            println!("{}", job.id);
        }
        return Ok(());
    }
    if !json {
        eprintln!("==> job {} queued (profile {}); following its log", job.id, job.profile);
    }
    let mut after = 0i64;
    loop {
        let page: EventsResponse = client.get(&format!("/v1/jobs/{}/events?after={after}&wait=30", job.id))?;
        after = page.last_id.max(after);
        for event in &page.events {
            print_event(event, json);
        }
        let current: JobView = client.get(&format!("/v1/jobs/{}?events_tail=0", job.id))?;
        if current.status.is_final() {
            // Events committed with the final state may still be unread.
            let rest: EventsResponse = client.get(&format!("/v1/jobs/{}/events?after={after}", job.id))?;
            for event in &rest.events {
                print_event(event, json);
            }
            return finished(json, &current);
        }
    }
}

/// The end of a followed job: exit 0 only if it COMPLETED with nothing missing (a job that
/// completed without its result bundle carries an error and exits non-zero).
fn finished(json: bool, job: &JobView) -> Result<(), ClientError> {
    if json {
        println!("{}", serde_json::to_string(job).unwrap_or_default());
    } else {
        eprintln!("==> job {} {}", job.id, job.status);
    }
    if job.status == JobState::Completed && job.error.is_none() {
        return Ok(());
    }
    let message =
        format!("job {} ended {}: {}", job.id, job.status, job.error.as_deref().unwrap_or("no reason recorded"));
    Err(ClientError::Api { status: 200, envelope: ErrorEnvelope::new(ErrorCode::JobFinalized, message) })
}

fn download(client: &DaemonClient, json: bool, args: &DownloadArgs) -> Result<(), ClientError> {
    let id = job_id(&args.id)?;
    let listing: ArtifactsResponse = client.get(&format!("/v1/jobs/{id}/artifacts"))?;
    let wanted = match (&args.name, args.latest) {
        (Some(name), _) => listing.artifacts.iter().find(|a| &a.info.name == name),
        (None, true) => listing.artifacts.first(),
        (None, false) => listing.artifacts.iter().find(|a| a.info.name == DEFAULT_ARTIFACT_NAME),
    }
    .ok_or_else(|| {
        let envelope = ErrorEnvelope::new(
            ErrorCode::ArtifactNotFound,
            format!("job {id} has no such artifact; `agentlab job artifacts {id}` lists them"),
        );
        ClientError::Api { status: 404, envelope }
    })?;
    let out = download_target(args.out.as_deref(), &wanted.info.name)?;
    if out.exists() && !args.force {
        return Err(ClientError::Usage(format!(
            "{} already exists; add --force to replace it, or choose another --out",
            out.display()
        )));
    }
    let query =
        format!("/v1/jobs/{id}/artifacts/download?path={}", crate::client::percent_encode(&wanted.info.path, b"/"));
    let got = client.download(&query, &out)?;
    let expected = got.declared_sha256.clone().unwrap_or_else(|| wanted.info.sha256.clone());
    if got.sha256 != expected || got.sha256 != wanted.info.sha256 {
        let _ = std::fs::remove_file(&out);
        let envelope = ErrorEnvelope::new(
            ErrorCode::BadResponse,
            format!(
                "SHA-256 mismatch for {}: got {}, expected {}; the file was removed",
                wanted.info.name, got.sha256, expected
            ),
        );
        return Err(ClientError::Api { status: 200, envelope });
    }
    if json {
        let answer = serde_json::json!({"job_id": id, "path": out, "name": wanted.info.name, "size_bytes": got.size, "sha256": got.sha256, "verified": true});
        println!("{answer}");
    } else {
        println!("{} ({} bytes, sha256 {} verified)", out.display(), got.size, got.sha256);
    }
    Ok(())
}

/// The file to write: `--out` itself, or the artifact's own name inside `--out` when that is
/// a directory (one that exists, or a path ending in `/`, created if missing).
fn download_target(out: Option<&std::path::Path>, artifact: &str) -> Result<PathBuf, ClientError> {
    // The daemon names artifacts; only the last component is used for a local file name.
    let file_name = std::path::Path::new(artifact)
        .file_name()
        .map(PathBuf::from)
        .ok_or_else(|| ClientError::BadResponse(format!("artifact name `{artifact}` is not a file name")))?;
    let Some(out) = out else { return Ok(file_name) };
    let names_a_directory = out.as_os_str().to_string_lossy().ends_with('/');
    if names_a_directory && !out.exists() {
        std::fs::create_dir_all(out)
            .map_err(|e| ClientError::Usage(format!("cannot create directory {}: {e}", out.display())))?;
    }
    Ok(if out.is_dir() { out.join(file_name) } else { out.to_path_buf() })
}

fn render_job(job: &JobView) -> String {
    let mut out = format!("job {}  {}\n", job.id, job.status);
    let line = |k: &str, v: &str| format!("  {k:<10} {v}\n");
    out.push_str(&line("repo", &job.repo_url));
    out.push_str(&line("ref", job.git_ref.as_deref().unwrap_or("(default branch)")));
    out.push_str(&line("profile", &job.profile));
    out.push_str(&line("agent", &format!("{} ({} mode)", job.agent, job.mode)));
    out.push_str(&line("ttl", &format!("{} min{}", job.ttl_minutes, if job.keepalive { ", keepalive" } else { "" })));
    out.push_str(&line("sandbox", &job.sandbox_vmid.map_or("-".to_string(), |v| v.to_string())));
    if let Some(error) = &job.error {
        out.push_str(&line("error", error));
    }
    if let Some(result) = &job.result {
        out.push_str(&line("exit code", &result["exit_code"].to_string()));
        if let Some(commit) = result["commit"].as_str() {
            out.push_str(&line("commit", commit));
        }
    }
    out.push_str("  timeline:\n");
    for entry in &job.timeline {
        out.push_str(&format!("    {}  {}\n", entry.at, entry.label));
    }
    out.push_str(&crate::render::egress(&job.egress_drops, "  "));
    if !job.events.is_empty() {
        out.push_str("  events:\n");
        for event in job.events.iter().filter(|e| e.kind != "job.log") {
            out.push_str(&format!("    {}\n", crate::render::event_line(event)));
        }
    }
    out
}

fn render_jobs(jobs: &JobsResponse) -> String {
    let mut out = format!("{:<22} {:<10} {:<7} {:<18} {}\n", "ID", "STATUS", "VMID", "PROFILE", "REPO");
    for job in &jobs.jobs {
        let vmid = job.sandbox_vmid.map_or("-".to_string(), |v| v.to_string());
        out.push_str(&format!("{:<22} {:<10} {:<7} {:<18} {}\n", job.id, job.status, vmid, job.profile, job.repo_url));
    }
    out
}

fn render_artifacts(list: &ArtifactsResponse) -> String {
    let mut out = format!("{:<32} {:>12} {:<24} {}\n", "NAME", "BYTES", "MIME", "SHA256");
    for a in &list.artifacts {
        out.push_str(&format!("{:<32} {:>12} {:<24} {}\n", a.info.name, a.info.size_bytes, a.info.mime, a.info.sha256));
    }
    out
}
