//! `agentlab workspace …`.

use crate::args::{WorkspaceCommand, WorkspaceSnapshotCommand};
use crate::client::{ClientError, DaemonClient};
use crate::commands::print_or;
use agentlab_model::protocol::{
    AttachWorkspaceRequest, CreateWorkspaceRequest, ForkWorkspaceRequest, NoArguments, RebindWorkspaceRequest,
    RebindWorkspaceResponse, WorkspaceCheckResponse, WorkspaceSnapshotRequest, WorkspaceSnapshotsResponse,
    WorkspaceView, WorkspacesResponse,
};

pub fn run(client: &DaemonClient, json: bool, command: &WorkspaceCommand) -> Result<(), ClientError> {
    match command {
        WorkspaceCommand::Create { name, size, storage, node } => {
            let body = CreateWorkspaceRequest {
                name: name.clone(),
                size_gb: *size,
                storage: storage.clone(),
                node: node.clone(),
            };
            let value = client.post_value("/v1/workspaces", &body)?;
            print_or(json, &value, |v: WorkspaceView| show(&v))
        }
        WorkspaceCommand::List => {
            let value = client.get_value("/v1/workspaces")?;
            print_or(json, &value, |v: WorkspacesResponse| list(&v.workspaces))
        }
        WorkspaceCommand::Show { workspace } => {
            let value = client.get_value(&format!("/v1/workspaces/{}", segment(workspace)))?;
            print_or(json, &value, |v: WorkspaceView| show(&v))
        }
        WorkspaceCommand::Attach { workspace, vmid } => {
            let path = format!("/v1/workspaces/{}/attach", segment(workspace));
            let value = client.post_value(&path, &AttachWorkspaceRequest { vmid: *vmid })?;
            print_or(json, &value, |v: WorkspaceView| format!("workspace {} attached to sandbox {vmid}\n", v.name))
        }
        WorkspaceCommand::Detach { workspace } => {
            let path = format!("/v1/workspaces/{}/detach", segment(workspace));
            let value = client.post_value(&path, &NoArguments {})?;
            print_or(json, &value, |v: WorkspaceView| format!("workspace {} detached\n", v.name))
        }
        WorkspaceCommand::Snapshot(WorkspaceSnapshotCommand::Create { workspace, name }) => {
            let path = format!("/v1/workspaces/{}/snapshots", segment(workspace));
            let value = client.post_value(&path, &WorkspaceSnapshotRequest { name: name.clone() })?;
            print_or(json, &value, |v: WorkspaceSnapshotsResponse| {
                format!("workspace {} snapshot {name} taken\n", v.workspace)
            })
        }
        WorkspaceCommand::Snapshot(WorkspaceSnapshotCommand::List { workspace }) => {
            let value = client.get_value(&format!("/v1/workspaces/{}/snapshots", segment(workspace)))?;
            print_or(json, &value, |v: WorkspaceSnapshotsResponse| snapshots(&v))
        }
        WorkspaceCommand::Snapshot(WorkspaceSnapshotCommand::Restore { workspace, name }) => {
            let path = format!("/v1/workspaces/{}/snapshots/{}/restore", segment(workspace), segment(name));
            let value = client.post_value(&path, &NoArguments {})?;
            print_or(json, &value, |v: WorkspaceView| format!("workspace {} restored to snapshot {name}\n", v.name))
        }
        WorkspaceCommand::Rebind { workspace, profile, ttl, keep_old } => {
            let body = RebindWorkspaceRequest { profile: profile.clone(), ttl_minutes: *ttl, keep_old: *keep_old };
            let value = client.post_value(&format!("/v1/workspaces/{}/rebind", segment(workspace)), &body)?;
            print_or(json, &value, |v: RebindWorkspaceResponse| {
                let old = v.old_vmid.map(|o| format!(" (was on {o})")).unwrap_or_default();
                format!("workspace {} is on sandbox {}{old}\n", v.workspace.name, v.vmid)
            })
        }
        WorkspaceCommand::Check { workspace } => {
            let value = client.get_value(&format!("/v1/workspaces/{}/check", segment(workspace)))?;
            let report: WorkspaceCheckResponse =
                serde_json::from_value(value.clone()).map_err(|e| ClientError::BadResponse(e.to_string()))?;
            print_or(json, &value, |v: WorkspaceCheckResponse| findings(&v))?;
            if report.ok {
                Ok(())
            } else {
                Err(ClientError::Reported(format!("workspace {} has errors", report.workspace)))
            }
        }
        WorkspaceCommand::Fork { workspace, name, from_snapshot } => {
            let body = ForkWorkspaceRequest { name: name.clone(), from_snapshot: from_snapshot.clone() };
            let value = client.post_value(&format!("/v1/workspaces/{}/fork", segment(workspace)), &body)?;
            print_or(json, &value, |v: WorkspaceView| show(&v))
        }
        WorkspaceCommand::Destroy { workspace } => {
            let value =
                client.post_value(&format!("/v1/workspaces/{}/destroy", segment(workspace)), &NoArguments {})?;
            print_or(json, &value, |v: WorkspaceView| format!("workspace {} destroyed, with its volume\n", v.name))
        }
    }
}

/// A path segment: names are checked by the daemon; anything that is not a plain name is
/// sent encoded.
pub fn segment(text: &str) -> String {
    crate::client::percent_encode(text, b"")
}

fn list(workspaces: &[WorkspaceView]) -> String {
    let mut out =
        format!("{:<24} {:<10} {:>6} {:<8} {:<7} {}\n", "NAME", "STATE", "SIZE", "NODE", "HOLDER", "ATTACHED");
    for w in workspaces {
        let attached = w.attached_vmid.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
        out.push_str(&format!(
            "{:<24} {:<10} {:>5}G {:<8} {:<7} {attached}\n",
            w.name, w.state, w.size_gb, w.node, w.holder_vmid
        ));
    }
    out
}

fn show(w: &WorkspaceView) -> String {
    let mut out = format!("workspace {} ({})\n", w.name, w.id);
    out.push_str(&format!("  state:    {}\n", w.state));
    out.push_str(&format!("  volume:   {} ({} GiB on {})\n", w.volid.as_deref().unwrap_or("-"), w.size_gb, w.storage));
    out.push_str(&format!("  holder:   VM {} on {}\n", w.holder_vmid, w.node));
    let attached = w.attached_vmid.map(|v| format!("sandbox {v}")).unwrap_or_else(|| "no".into());
    out.push_str(&format!("  attached: {attached}\n"));
    if let Some(error) = &w.error {
        out.push_str(&format!("  error:    {error}\n"));
    }
    out
}

fn snapshots(list: &WorkspaceSnapshotsResponse) -> String {
    if list.snapshots.is_empty() {
        return format!("workspace {} has no snapshots\n", list.workspace);
    }
    let mut out = format!("{:<40} {}\n", "NAME", "TAKEN");
    for s in &list.snapshots {
        let taken = s
            .snaptime
            .map(|t| {
                let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(t);
                humantime::format_rfc3339_seconds(at).to_string()
            })
            .unwrap_or_else(|| "-".into());
        out.push_str(&format!("{:<40} {taken}\n", s.name));
    }
    out
}

fn findings(report: &WorkspaceCheckResponse) -> String {
    if report.findings.is_empty() {
        return format!("workspace {}: no findings\n", report.workspace);
    }
    let mut out = String::new();
    for f in &report.findings {
        out.push_str(&format!("{:<7} {:<22} {}\n        fix: {}\n", f.severity, f.code, f.message, f.remediation));
    }
    out
}
