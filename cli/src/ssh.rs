//! `agentlab ssh <vmid>`: where the sandbox is (asked of the daemon, which also counts it as
//! used), started first when STOPPED (unless `--no-start`), then `ssh` run in place of this
//! process with `--exec`, or the command printed.

use crate::args::SshArgs;
use crate::client::{ClientError, DaemonClient};
use agentlab_model::model::SandboxState;
use agentlab_model::protocol::{NoArguments, SshTarget};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, SystemTime};

/// How long `--wait` waits for the guest's SSH port.
const SSH_WAIT: Duration = Duration::from_secs(180);

pub fn run(client: &DaemonClient, json: bool, args: &SshArgs) -> Result<(), ClientError> {
    let path = format!("/v1/sandboxes/{}/ssh", args.vmid);
    let ask = || -> Result<SshTarget, ClientError> {
        serde_json::from_value(client.post_value(&path, &NoArguments {})?)
            .map_err(|e| ClientError::BadResponse(e.to_string()))
    };
    let mut target = ask()?;
    if matches!(target.state, SandboxState::Stopped) {
        if args.no_start {
            return Err(ClientError::Usage(format!(
                "sandbox {} is STOPPED; start it (`agentlab sandbox start {}`) or drop --no-start",
                args.vmid, args.vmid
            )));
        }
        if !json {
            eprintln!("sandbox {} is STOPPED: starting it (waits until it is READY)…", args.vmid);
        }
        let _: serde_json::Value = client.post_value(&format!("/v1/sandboxes/{}/start", args.vmid), &NoArguments {})?;
        target = ask()?;
    }
    let ip = match (&target.ip, target.state) {
        (Some(ip), SandboxState::Ready | SandboxState::Running) => ip.clone(),
        _ => {
            return Err(ClientError::Usage(format!(
                "sandbox {} is {} and has no address to SSH to; `agentlab sandbox show {}` says more",
                args.vmid, target.state, args.vmid
            )));
        }
    };
    let user = args.user.clone().unwrap_or_else(|| target.user.clone());
    // A user name that ssh could read as an option (`-oProxyCommand=…`) is refused.
    let plain = |u: &str| {
        u.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && u.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    };
    if !plain(&user) {
        return Err(ClientError::Usage(format!("`{user}` is not a user name")));
    }
    let port = args.port.unwrap_or(target.port);
    let identity =
        args.identity.clone().or_else(|| std::env::var_os("AGENTLAB_SSH_IDENTITY").map(Into::into)).or_else(|| {
            let daemon_key = std::path::PathBuf::from(&target.identity);
            std::fs::File::open(&daemon_key).is_ok().then_some(daemon_key)
        });
    let mut ssh_args: Vec<String> = [
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "ConnectTimeout=10",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(identity) = &identity {
        ssh_args.extend(["-i".into(), identity.display().to_string(), "-o".into(), "IdentitiesOnly=yes".into()]);
    }
    if port != 22 {
        ssh_args.extend(["-p".into(), port.to_string()]);
    }
    // One remote command string: `--exec CMD` is a shell command as written; words after
    // `--` are quoted one by one, so `-- ls 'a b'` lists one file.
    let mut remote: Vec<String> = match &args.exec {
        Some(cmd) if !cmd.is_empty() => vec![cmd.clone()],
        _ => Vec::new(),
    };
    remote.extend(args.command.iter().map(|w| shell_quote(w)));
    if !remote.is_empty() {
        ssh_args.push("-o".into());
        ssh_args.push("BatchMode=yes".into());
    }
    // `--`: nothing after it is an ssh option, whatever it starts with.
    ssh_args.push("--".into());
    ssh_args.push(format!("{user}@{ip}"));
    if !remote.is_empty() {
        ssh_args.push(remote.join(" "));
    }
    if args.wait {
        wait_for_port(&ip, port)?;
    }
    let command = std::iter::once("ssh".to_string()).chain(ssh_args.iter().map(|a| shell_quote(a))).collect::<Vec<_>>();
    if args.exec.is_none() && args.command.is_empty() {
        if json {
            let value = serde_json::json!({
                "vmid": args.vmid, "ip": ip, "user": user, "port": port,
                "identity": identity.map(|p| p.display().to_string()), "args": ssh_args, "command": command.join(" "),
            });
            println!("{value}");
        } else {
            println!("{}", command.join(" "));
        }
        return Ok(());
    }
    exec_ssh(&ssh_args)
}

fn wait_for_port(ip: &str, port: u16) -> Result<(), ClientError> {
    let addr: SocketAddr = format!("{ip}:{port}")
        .parse()
        .or_else(|_| format!("[{ip}]:{port}").parse())
        .map_err(|_| ClientError::BadResponse(format!("`{ip}` is not an address")))?;
    let started = SystemTime::now();
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok() {
            return Ok(());
        }
        if started.elapsed().unwrap_or_default() > SSH_WAIT {
            return Err(ClientError::Usage(format!("{addr} did not accept SSH within {}s", SSH_WAIT.as_secs())));
        }
        // A refused connection returns at once: pace the polls. (The lint keeps wall-clock
        // sleeps out of tests; this is the CLI waiting on a real guest.)
        #[allow(clippy::disallowed_methods)]
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Replaces this process with `ssh` (its exit status becomes ours).
fn exec_ssh(args: &[String]) -> Result<(), ClientError> {
    use std::os::unix::process::CommandExt;
    let error = std::process::Command::new("ssh").args(args).exec();
    Err(ClientError::Usage(format!("cannot run ssh: {error} (install openssh-client)")))
}

/// Quotes a word for a POSIX shell when it needs it.
fn shell_quote(word: &str) -> String {
    if !word.is_empty() && word.bytes().all(|b| b.is_ascii_alphanumeric() || b"@%+=:,./-_".contains(&b)) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn words_are_quoted_only_when_needed() {
        assert_eq!(super::shell_quote("agent@10.77.0.5"), "agent@10.77.0.5");
        assert_eq!(super::shell_quote("uname -a"), "'uname -a'");
        assert_eq!(super::shell_quote("it's"), "'it'\\''s'");
        assert_eq!(super::shell_quote(""), "''");
    }
}
