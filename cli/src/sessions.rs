//! `agentlab session …`.

use crate::args::SessionCommand;
use crate::client::{ClientError, DaemonClient};
use crate::commands::print_or;
use crate::workspaces::segment;
use agentlab_model::protocol::{
    CreateSessionRequest, CreateWorkspaceRequest, ForkSessionRequest, NoArguments, SessionView, SessionsResponse,
};

pub fn run(client: &DaemonClient, json: bool, command: &SessionCommand) -> Result<(), ClientError> {
    match command {
        SessionCommand::Create { name, profile, workspace, workspace_size, workspace_storage } => {
            let (workspace_id, workspace_create) = match workspace.strip_prefix("new:") {
                Some(ws) => {
                    let size_gb = workspace_size.ok_or_else(|| {
                        ClientError::Usage(format!("--workspace new:{ws} needs --workspace-size (GiB, e.g. 10G)"))
                    })?;
                    let create = CreateWorkspaceRequest {
                        name: ws.to_string(),
                        size_gb,
                        storage: workspace_storage.clone(),
                        node: None,
                    };
                    (None, Some(create))
                }
                None if workspace_size.is_some() || workspace_storage.is_some() => {
                    return Err(ClientError::Usage(format!(
                        "--workspace-size and --workspace-storage are for a new workspace: --workspace new:{workspace}"
                    )));
                }
                None => (Some(workspace.clone()), None),
            };
            let body =
                CreateSessionRequest { name: name.clone(), profile: profile.clone(), workspace_id, workspace_create };
            let value = client.post_value("/v1/sessions", &body)?;
            print_or(json, &value, |v: SessionView| show(&v))
        }
        SessionCommand::List => {
            let value = client.get_value("/v1/sessions")?;
            print_or(json, &value, |v: SessionsResponse| list(&v.sessions))
        }
        SessionCommand::Show { session } => {
            let value = client.get_value(&format!("/v1/sessions/{}", segment(session)))?;
            print_or(json, &value, |v: SessionView| show(&v))
        }
        SessionCommand::Resume { session } => {
            let value = client.post_value(&format!("/v1/sessions/{}/resume", segment(session)), &NoArguments {})?;
            print_or(json, &value, |v: SessionView| show(&v))
        }
        SessionCommand::Stop { session } => {
            let value = client.post_value(&format!("/v1/sessions/{}/stop", segment(session)), &NoArguments {})?;
            print_or(json, &value, |v: SessionView| format!("session {} stopped; its workspace is kept\n", v.name))
        }
        SessionCommand::Fork { session, name, workspace, profile } => {
            let body =
                ForkSessionRequest { name: name.clone(), profile: profile.clone(), workspace_id: workspace.clone() };
            let value = client.post_value(&format!("/v1/sessions/{}/fork", segment(session)), &body)?;
            print_or(json, &value, |v: SessionView| show(&v))
        }
    }
}

fn list(sessions: &[SessionView]) -> String {
    let mut out = format!("{:<24} {:<9} {:<20} {:<8} {}\n", "NAME", "STATE", "PROFILE", "SANDBOX", "WORKSPACE");
    for s in sessions {
        let vmid = s.current_vmid.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
        out.push_str(&format!("{:<24} {:<9} {:<20} {:<8} {}\n", s.name, s.state, s.profile, vmid, s.workspace_id));
    }
    out
}

fn show(s: &SessionView) -> String {
    let mut out = format!("session {} ({})\n", s.name, s.id);
    out.push_str(&format!("  state:     {}\n", s.state));
    out.push_str(&format!("  profile:   {}\n", s.profile));
    out.push_str(&format!("  workspace: {}\n", s.workspace_id));
    let vmid = s.current_vmid.map(|v| format!("sandbox {v}")).unwrap_or_else(|| "none".into());
    out.push_str(&format!("  sandbox:   {vmid}\n"));
    if let Some(error) = &s.error {
        out.push_str(&format!("  error:     {error}\n"));
    }
    out
}
