//! The `secrets` commands. The daemon holds the key and does the work; a value to set is read
//! here from stdin (asked for unechoed on a terminal) and sent in the request body over the
//! control socket, so it is never in this process's argv, nor in any other's.

use std::io::{BufRead, IsTerminal, Read, Write};
use std::process::{Command, Stdio};

use agentlab_model::protocol::{
    EditSecretsRequest, EditSecretsResponse, RotateKeyResponse, SecretsChange, SecretsListResponse, ShowSecretsRequest,
    ShowSecretsResponse, ValidateSecretsRequest, ValidateSecretsResponse,
};

use crate::args::SecretsCommand;
use crate::client::{ClientError, DaemonClient};
use crate::commands::print_or;

/// What stdin may hold: a bundle is at most 1 MiB anyway.
const MAX_VALUE_BYTES: u64 = 1024 * 1024;

pub fn run(client: &DaemonClient, json: bool, command: &SecretsCommand) -> Result<(), ClientError> {
    let edit = |bundle: &str, change: SecretsChange| {
        let body = EditSecretsRequest { bundle: bundle.to_string(), change };
        let value = client.post_value("/v1/secrets/edit", &body)?;
        print_or(json, &value, |v: EditSecretsResponse| render_edit(&v))
    };
    match command {
        SecretsCommand::Validate { bundle } => {
            let value =
                client.post_value("/v1/secrets/validate", &ValidateSecretsRequest { bundle: bundle.clone() })?;
            print_or(json, &value, |v: ValidateSecretsResponse| {
                format!("bundle {} ok ({})\n{}", v.bundle, v.path, render_summary(&v.summary))
            })
        }
        SecretsCommand::List => {
            let value = client.get_value("/v1/secrets/bundles")?;
            print_or(json, &value, |v: SecretsListResponse| render_list(&v))
        }
        SecretsCommand::Show { bundle, reveal } => {
            let value = client
                .post_value("/v1/secrets/show", &ShowSecretsRequest { bundle: bundle.clone(), reveal: *reveal })?;
            if *reveal && !json {
                eprintln!("agentlab: the values below were revealed; the daemon recorded it (secrets.revealed)");
            }
            print_or(json, &value, |v: ShowSecretsResponse| render_show(&v))
        }
        SecretsCommand::SetEnv { bundle, name } => {
            let value = read_value(&format!("value for env.{name}"), false)?;
            edit(bundle, SecretsChange::SetEnv { name: name.clone(), value })
        }
        SecretsCommand::UnsetEnv { bundle, name } => edit(bundle, SecretsChange::UnsetEnv { name: name.clone() }),
        SecretsCommand::SetGit { bundle, field } => {
            let multiline = matches!(field.as_str(), "ssh_private_key" | "known_hosts" | "ssh_public_key");
            let value = read_value(&format!("value for git.{field}"), multiline)?;
            edit(bundle, SecretsChange::SetGit { field: field.clone(), value })
        }
        SecretsCommand::AddSshKey { bundle, name, key_type, comment } => {
            let key = read_value(&format!("public key for ssh.keys.{name}"), false)?;
            let change = SecretsChange::AddSshKey {
                name: name.clone(),
                key,
                key_type: key_type.clone(),
                comment: comment.clone(),
            };
            edit(bundle, change)
        }
        SecretsCommand::RemoveSshKey { bundle, name } => {
            edit(bundle, SecretsChange::RemoveSshKey { name: name.clone() })
        }
        SecretsCommand::RotateKey { yes } => {
            if !yes {
                confirm_rotation()?;
            }
            let value = client.post_value("/v1/secrets/rotate-key", &serde_json::json!({}))?;
            print_or(json, &value, |v: RotateKeyResponse| render_rotation(&v))
        }
    }
}

/// A value from stdin: on a terminal asked for with echo off (a line, or up to Ctrl-D when
/// `multiline`), else all of stdin. One trailing newline is dropped from a single-line value;
/// a multi-line value (a key file) ends with one.
fn read_value(what: &str, multiline: bool) -> Result<String, ClientError> {
    let stdin = std::io::stdin();
    let terminal = stdin.is_terminal();
    if terminal {
        let hint = if multiline { " (paste it, then Ctrl-D)" } else { "" };
        eprint!("{what}{hint}: ");
        let _ = std::io::stderr().flush();
        set_echo(false);
    }
    let mut text = String::new();
    let read = if terminal && !multiline {
        stdin.lock().read_line(&mut text).map(|_| ())
    } else {
        stdin.lock().take(MAX_VALUE_BYTES + 1).read_to_string(&mut text).map(|_| ())
    };
    if terminal {
        set_echo(true);
        eprintln!();
    }
    read.map_err(|e| ClientError::Usage(format!("cannot read the {what} from stdin: {e}")))?;
    if text.len() as u64 > MAX_VALUE_BYTES {
        return Err(ClientError::Usage(format!("the {what} is larger than {MAX_VALUE_BYTES} bytes")));
    }
    let value = match multiline {
        true if !text.is_empty() && !text.ends_with('\n') => format!("{text}\n"),
        true => text,
        false => text.strip_suffix("\r\n").or_else(|| text.strip_suffix('\n')).unwrap_or(&text).to_string(),
    };
    if value.trim().is_empty() {
        return Err(ClientError::Usage(format!(
            "no {what} on stdin: pipe it in (`printf %s \"$VALUE\" | agentlab secrets …`) or type it when asked"
        )));
    }
    Ok(value)
}

/// `stty [-]echo` on the terminal that is stdin (its argv holds no value).
fn set_echo(on: bool) {
    let _ = Command::new("stty").arg(if on { "echo" } else { "-echo" }).stdin(Stdio::inherit()).status();
}

fn confirm_rotation() -> Result<(), ClientError> {
    if !std::io::stdin().is_terminal() {
        return Err(ClientError::Usage(
            "rotate-key replaces the daemon's age key and re-seals every bundle; pass --yes to go ahead".into(),
        ));
    }
    eprint!("re-seal every bundle to a new age key and drop the old key? type yes: ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    match answer.trim() {
        "yes" => Ok(()),
        _ => Err(ClientError::Usage("not rotated".into())),
    }
}

fn names(value: &serde_json::Value) -> String {
    let listed: Vec<&str> = value.as_array().map(|a| a.iter().filter_map(|s| s.as_str()).collect()).unwrap_or_default();
    if listed.is_empty() { "-".into() } else { listed.join(", ") }
}

fn render_summary(summary: &serde_json::Value) -> String {
    let git: Vec<&str> = summary["git"]
        .as_object()
        .map(|fields| fields.iter().filter(|(_, set)| set.as_bool() == Some(true)).map(|(k, _)| k.as_str()).collect())
        .unwrap_or_default();
    let yes_no = |flag: &serde_json::Value| if flag.as_bool() == Some(true) { "yes" } else { "no" };
    format!(
        "  sections: {}\n  env: {}\n  git: {}\n  ssh keys: {}\n  claude settings: {}\n  tailscale authkey: {}\n",
        names(&summary["sections"]),
        names(&summary["env_names"]),
        if git.is_empty() { "-".into() } else { git.join(", ") },
        names(&summary["ssh_key_names"]),
        yes_no(&summary["claude_settings"]),
        yes_no(&summary["tailscale_authkey"]),
    )
}

fn render_list(list: &SecretsListResponse) -> String {
    let mut out = format!(
        "secrets in {} (default bundle: {})\nkey {}: {}\n\n",
        list.dir,
        list.default_bundle,
        list.key_path,
        if list.recipients.is_empty() { "unreadable".to_string() } else { list.recipients.join(", ") }
    );
    if list.bundles.is_empty() {
        out.push_str("no bundles\n");
    }
    for bundle in &list.bundles {
        let format = bundle.format.as_deref().unwrap_or("-");
        match (&bundle.summary, &bundle.error) {
            (Some(summary), _) => {
                out.push_str(&format!("{} ({format}) ok\n  env: {}\n", bundle.name, names(&summary["env_names"])))
            }
            (None, error) => out.push_str(&format!(
                "{} ({format}) CANNOT BE OPENED: {} ({})\n",
                bundle.name,
                error.as_deref().unwrap_or("?"),
                bundle.code.as_deref().unwrap_or("?")
            )),
        }
    }
    if !list.audit.is_empty() {
        out.push_str("\nrecent changes and reveals:\n");
        for event in &list.audit {
            out.push_str(&format!("  {}  {}  {}\n", event.ts, event.kind, event.msg));
        }
    }
    out
}

fn render_show(show: &ShowSecretsResponse) -> String {
    let mut out = format!("bundle {} ({}, {})\n{}", show.bundle, show.format, show.path, render_summary(&show.summary));
    if let Some(plaintext) = &show.plaintext {
        out.push('\n');
        out.push_str(plaintext);
    }
    out
}

fn render_edit(edit: &EditSecretsResponse) -> String {
    let done = if edit.created { "created with" } else { "changed:" };
    format!(
        "bundle {} {done} {} {} ({}, {}); the next job gets it\n",
        edit.bundle, edit.op, edit.entry, edit.format, edit.path
    )
}

fn render_rotation(rotated: &RotateKeyResponse) -> String {
    format!(
        "age key {} rotated: new recipient {}\nre-sealed {} bundles: {}\ndropped: {}\n",
        rotated.key_path,
        rotated.recipient,
        rotated.bundles.len(),
        if rotated.bundles.is_empty() { "-".into() } else { rotated.bundles.join(", ") },
        rotated.retired.join(", ")
    )
}
