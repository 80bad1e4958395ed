//! One function per command: ask the daemon, print the answer.

use crate::args::{
    Cli, Command, DebugCommand, LeaseCommand, ListArgs, NewArgs, PoolCommand, ProfileCommand, SandboxCommand, ShowArgs,
    SnapshotCommand,
};
use crate::client::{ClientError, DaemonClient};
use crate::{render, render_status};
use agentlab_model::model::modifiers;
use agentlab_model::protocol::{
    CreateExposureRequest, CreateSandboxRequest, CreateSandboxResponse, DebugActorsResponse, DestroySandboxRequest,
    EventsResponse, ExposureView, ExposuresResponse, NoArguments, PoolStatus, ProfilesResponse, ReconcileRequest,
    RenewLeaseRequest, RenewLeaseResponse, RevertRequest, SandboxView, SandboxesResponse, SnapshotRequest,
    StatusResponse, UpdateRequest,
};
use std::process::ExitCode;

pub fn run(client: &DaemonClient, cli: &Cli) -> Result<(), ClientError> {
    match &cli.command {
        Command::Status => {
            let value = client.get_value("/v1/status")?;
            print_or(cli.json, &value, |v: StatusResponse| render_status::status(&v))
        }
        Command::Profile(ProfileCommand::List) => {
            let value = client.get_value("/v1/profiles")?;
            print_or(cli.json, &value, |v: ProfilesResponse| render::profiles(&v))
        }
        Command::Pool(PoolCommand::Status) => {
            let value = client.get_value("/v1/pool")?;
            print_or(cli.json, &value, |v: PoolStatus| render::pool(&v))
        }
        Command::Sandbox(SandboxCommand::New(args)) | Command::New(args) => sandbox_new(client, cli.json, args),
        Command::Sandbox(SandboxCommand::Destroy(args)) | Command::Rm(args) => {
            let body = DestroySandboxRequest { force: args.force };
            let value = client.post_value(&format!("/v1/sandboxes/{}/destroy", args.vmid), &body)?;
            print_or(cli.json, &value, |v: SandboxView| format!("sandbox {} {}\n", v.vmid, v.state))
        }
        Command::Sandbox(SandboxCommand::Lease(LeaseCommand::Renew { ttl, vmid })) => {
            let body = RenewLeaseRequest { ttl_minutes: *ttl };
            let value = client.post_value(&format!("/v1/sandboxes/{vmid}/lease/renew"), &body)?;
            print_or(cli.json, &value, |v: RenewLeaseResponse| {
                format!("sandbox {} lease until {}\n", v.vmid, v.lease_expires_at.unwrap_or_else(|| "-".into()))
            })
        }
        Command::Sandbox(SandboxCommand::Start(args)) | Command::Start(args) => {
            if !cli.json {
                eprintln!("starting sandbox {} (waits until it is READY)…", args.vmid);
            }
            op(client, cli.json, &format!("/v1/sandboxes/{}/start", args.vmid), NoArguments {})
        }
        Command::Sandbox(SandboxCommand::Stop(args)) | Command::Stop(args) => match args.vmid {
            Some(vmid) => op(client, cli.json, &format!("/v1/sandboxes/{vmid}/stop"), NoArguments {}),
            None => {
                use std::io::IsTerminal;
                if !args.force && (cli.json || !std::io::stdin().is_terminal()) {
                    return Err(ClientError::Usage(
                        "stop --all stops every READY and RUNNING sandbox: add --force to confirm".into(),
                    ));
                }
                if !args.force {
                    eprint!("stop every READY and RUNNING sandbox? type 'yes': ");
                    let mut answer = String::new();
                    let _ = std::io::stdin().read_line(&mut answer);
                    if answer.trim() != "yes" {
                        return Err(ClientError::Usage("not confirmed; nothing was stopped".into()));
                    }
                }
                let value = client.post_value("/v1/sandboxes/stop_all", &NoArguments {})?;
                print_or(cli.json, &value, |v: serde_json::Value| {
                    format!("stopped {} of {} sandboxes\n", v["stopped"], v["total"])
                })
            }
        },
        Command::Sandbox(SandboxCommand::Pause(args)) => {
            op(client, cli.json, &format!("/v1/sandboxes/{}/pause", args.vmid), NoArguments {})
        }
        Command::Sandbox(SandboxCommand::Resume(args)) => {
            op(client, cli.json, &format!("/v1/sandboxes/{}/resume", args.vmid), NoArguments {})
        }
        Command::Sandbox(SandboxCommand::Revert(args)) => {
            let restart = if args.restart {
                Some(true)
            } else if args.no_restart {
                Some(false)
            } else {
                None
            };
            let body = RevertRequest { force: args.force, restart };
            op(client, cli.json, &format!("/v1/sandboxes/{}/revert", args.vmid), body)
        }
        Command::Sandbox(SandboxCommand::Snapshot(SnapshotCommand::Save { force, vmid, name })) => op(
            client,
            cli.json,
            &format!("/v1/sandboxes/{vmid}/snapshots"),
            SnapshotRequest { name: name.clone(), force: *force },
        ),
        Command::Sandbox(SandboxCommand::Snapshot(SnapshotCommand::Restore { force, vmid, name })) => op(
            client,
            cli.json,
            &format!("/v1/sandboxes/{vmid}/snapshots/{name}/restore"),
            SnapshotRequest { name: String::new(), force: *force },
        ),
        Command::Sandbox(SandboxCommand::Snapshot(SnapshotCommand::List { vmid })) => {
            let value = client.get_value(&format!("/v1/sandboxes/{vmid}/snapshots"))?;
            print_or(cli.json, &value, |v: serde_json::Value| {
                let list = v["snapshots"].as_array().cloned().unwrap_or_default();
                if list.is_empty() {
                    return "no snapshots\n".to_string();
                }
                list.iter()
                    .map(|s| {
                        format!("{}  {}\n", s["name"].as_str().unwrap_or(""), s["description"].as_str().unwrap_or(""))
                    })
                    .collect()
            })
        }
        Command::Sandbox(SandboxCommand::Update(args)) => {
            let tags = (!args.tags.is_empty()).then(|| args.tags.clone());
            let body = UpdateRequest { cores: args.cores, memory_mb: args.memory, tags };
            op(client, cli.json, &format!("/v1/sandboxes/{}/update", args.vmid), body)
        }
        Command::Sandbox(SandboxCommand::Reconcile { apply }) => {
            let value = client.post_value("/v1/sandboxes/reconcile", &ReconcileRequest { apply: *apply })?;
            print_or(cli.json, &value, |v: serde_json::Value| render::reconcile(&v))
        }
        Command::Sandbox(SandboxCommand::Expose { vmid, port, name }) => {
            let body = CreateExposureRequest { vmid: *vmid, port: *port, name: name.clone() };
            let value = client.post_value("/v1/exposures", &body)?;
            print_or(cli.json, &value, |v: ExposureView| render::exposures(std::slice::from_ref(&v)))
        }
        Command::Sandbox(SandboxCommand::Exposed) => {
            let value = client.get_value("/v1/exposures")?;
            print_or(cli.json, &value, |v: ExposuresResponse| render::exposures(&v.exposures))
        }
        Command::Sandbox(SandboxCommand::Unexpose { name }) => {
            client.delete(&format!("/v1/exposures/{name}"))?;
            if cli.json {
                println!("{}", serde_json::json!({"removed": name}));
            } else {
                println!("exposure {name} removed");
            }
            Ok(())
        }
        Command::Sandbox(SandboxCommand::Prune) => {
            let value = client.post_value("/v1/sandboxes/prune", &NoArguments {})?;
            print_or(cli.json, &value, |v: serde_json::Value| format!("pruned {} sandboxes\n", v["count"]))
        }
        Command::Sandbox(SandboxCommand::List(args)) | Command::Ls(args) => list(client, cli.json, args),
        Command::Sandbox(SandboxCommand::Show(args)) | Command::Show(args) => show(client, cli.json, args),
        Command::Ssh(args) => crate::ssh::run(client, cli.json, args),
        Command::Logs(args) => crate::follow::logs(client, cli.json, &args.target, args.tail, args.follow),
        Command::Job(command) => crate::jobs::run(client, cli.json, command),
        Command::Workspace(command) => crate::workspaces::run(client, cli.json, command),
        Command::Session(command) => crate::sessions::run(client, cli.json, command),
        Command::Secrets(command) => crate::secrets::run(client, cli.json, command),
        Command::Debug(DebugCommand::Actors) => {
            let value = client.get_value("/v1/debug/actors")?;
            print_or(cli.json, &value, |v: DebugActorsResponse| render::actors(&v))
        }
        Command::Version | Command::Completion { .. } => Ok(()),
    }
}

/// POST an operation; print the sandbox it returns.
fn op(client: &DaemonClient, json: bool, path: &str, body: impl serde::Serialize) -> Result<(), ClientError> {
    let value = client.post_value(path, &body)?;
    print_or(json, &value, |v: SandboxView| format!("sandbox {} {}\n", v.vmid, v.state))
}

fn sandbox_new(client: &DaemonClient, json: bool, args: &NewArgs) -> Result<(), ClientError> {
    let profile = match (&args.profile, args.modifiers.is_empty()) {
        (Some(_), false) => return Err(ClientError::Usage("use either --profile or +modifiers, not both".into())),
        (None, true) => {
            return Err(ClientError::Usage(
                "a profile is needed: --profile NAME or +modifiers (see `agentlab profile list`)".into(),
            ));
        }
        (Some(p), true) => p.clone(),
        (None, false) => {
            let profiles: ProfilesResponse = client.get("/v1/profiles")?;
            let names: Vec<String> = profiles.profiles.into_iter().map(|p| p.name).collect();
            modifiers::resolve(&args.modifiers, &names).map_err(|e| ClientError::Usage(e.to_string()))?
        }
    };
    let request = CreateSandboxRequest {
        name: args.name.clone(),
        profile,
        ttl_minutes: args.ttl,
        keepalive: args.keepalive.then_some(true),
        workspace_id: args.workspace.clone(),
        vmid: args.vmid,
        job_id: None,
        tags: args.tags.clone(),
    };
    let body = serde_json::to_value(&request).map_err(|e| ClientError::BadResponse(e.to_string()))?;
    use std::io::IsTerminal;
    if args.and_ssh && (json || !std::io::stdout().is_terminal()) {
        return Err(ClientError::Usage(
            "--and-ssh opens an interactive SSH session: it needs a terminal and no --json".into(),
        ));
    }
    if json || !(args.progress || std::io::stdout().is_terminal()) {
        let value = client.post_value("/v1/sandboxes", &body)?;
        return print_or(json, &value, |v: CreateSandboxResponse| render::created(&v));
    }
    // On a terminal: record it, then follow its events, a line per phase as it happens.
    let accepted: CreateSandboxResponse = serde_json::from_value(client.post_value("/v1/sandboxes?wait=false", &body)?)
        .map_err(|e| ClientError::BadResponse(e.to_string()))?;
    let vmid = accepted.sandbox.vmid;
    println!("sandbox {vmid} from profile `{}`", request.profile);
    let mut after = 0i64;
    loop {
        let page: EventsResponse = client.get(&format!("/v1/sandboxes/{vmid}/events?after={after}&wait=30"))?;
        after = page.last_id;
        for event in &page.events {
            if let Some(line) = render::progress_line(event) {
                println!("{line}");
            }
        }
        let view: SandboxView = client.get(&format!("/v1/sandboxes/{vmid}"))?;
        if !view.state.is_provisioning() {
            // The state changed after the page was read: print what led to it first.
            let rest: EventsResponse = client.get(&format!("/v1/sandboxes/{vmid}/events?after={after}"))?;
            for event in &rest.events {
                if let Some(line) = render::progress_line(event) {
                    println!("{line}");
                }
            }
        }
        match view.state {
            agentlab_model::model::SandboxState::Ready => {
                println!("sandbox {vmid} READY at {}", view.ip.as_deref().unwrap_or("-"));
                if args.and_ssh {
                    return crate::ssh::run(client, false, &crate::args::SshArgs::interactive(vmid));
                }
                return Ok(());
            }
            agentlab_model::model::SandboxState::Failed
            | agentlab_model::model::SandboxState::Timeout
            | agentlab_model::model::SandboxState::Destroyed => {
                let envelope = agentlab_model::model::ErrorEnvelope::new(
                    agentlab_model::model::ErrorCode::ProvisionFailed,
                    format!("sandbox {vmid} {}: {}", view.state, view.error.unwrap_or_default()),
                );
                return Err(ClientError::Api { status: 500, envelope });
            }
            _ => {}
        }
    }
}

fn list(client: &DaemonClient, json: bool, args: &ListArgs) -> Result<(), ClientError> {
    let path = match args.filter {
        Some(state) => format!("/v1/sandboxes?state={state}"),
        None => "/v1/sandboxes".to_string(),
    };
    let value = client.get_value(&path)?;
    print_or(json, &value, |v: SandboxesResponse| render::sandboxes(&v))
}

fn show(client: &DaemonClient, json: bool, args: &ShowArgs) -> Result<(), ClientError> {
    let value = client.get_value(&format!("/v1/sandboxes/{}", args.vmid))?;
    print_or(json, &value, |v: SandboxView| render::sandbox(&v))
}

/// `--json`: the daemon's body, indented. Otherwise: decode and render for people.
pub fn print_or<T: serde::de::DeserializeOwned>(
    json: bool,
    value: &serde_json::Value,
    render: impl FnOnce(T) -> String,
) -> Result<(), ClientError> {
    if json {
        println!("{}", serde_json::to_string_pretty(value).unwrap_or_default());
        return Ok(());
    }
    let decoded: T = serde_json::from_value(value.clone()).map_err(|e| ClientError::BadResponse(e.to_string()))?;
    // Rendered text mixes what the daemon and the guests wrote: shown, never obeyed.
    let text = crate::terminal::escape(&render(decoded)).into_owned();
    print!("{text}");
    if !text.ends_with('\n') {
        println!();
    }
    Ok(())
}

pub fn version(json: bool) -> ExitCode {
    let version = env!("CARGO_PKG_VERSION");
    if json {
        println!("{}", serde_json::json!({"version": version}));
    } else {
        println!("agentlab {version}");
    }
    ExitCode::SUCCESS
}
