//! The shell backend: `pvesh <get|create|set|delete> PATH --key value … --output-format json`
//! run on the Proxmox host through `tokio::process` with an argument vector (never a shell
//! string). `pvesh` calls the same handlers as the API, so errors carry the same texts.
//!
//! pvesh facts (`proxmox/contract/behaviors.md` §8): async endpoints run in the foreground, print the
//! task log and then the UPID as a JSON string, and exit 0 even when the task failed; so the
//! UPID (last line) is returned and the task is waited on like over the API. Parameter errors
//! print `400 Parameter verification failed.` and `<param>: <msg>` lines on stderr.

use crate::transport::{Method, Params, Transport};
use crate::{PveError, PveFuture};
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct ShellConfig {
    /// `pvesh`, or a path to it.
    pub pvesh: PathBuf,
    pub timeout: Duration,
    /// Extra environment for `pvesh` (e.g. `PVE_SIM_ADMIN` for the simulator's personality).
    pub env: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub struct ShellTransport {
    config: ShellConfig,
}

impl ShellTransport {
    pub fn new(config: ShellConfig) -> ShellTransport {
        ShellTransport { config }
    }

    async fn run(&self, method: Method, path: String, params: Params) -> Result<Value, PveError> {
        let verb = match method {
            Method::Get => "get",
            Method::Post => "create",
            Method::Put => "set",
            Method::Delete => "delete",
        };
        let mut command = tokio::process::Command::new(&self.config.pvesh);
        command.arg(verb).arg(&path);
        for (key, value) in &params {
            command.arg(format!("--{key}")).arg(value);
        }
        command.args(["--output-format", "json"]).envs(self.config.env.iter().map(|(k, v)| (k, v))).kill_on_drop(true);
        let output = tokio::time::timeout(self.config.timeout, command.output())
            .await
            .map_err(|_| PveError::Timeout(self.config.timeout))?
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    PveError::Transient(format!(
                        "`{}` not found: the shell backend runs on the Proxmox host itself; use proxmox_backend: api elsewhere",
                        self.config.pvesh.display()
                    ))
                } else {
                    PveError::Transient(format!("cannot run {}: {e}", self.config.pvesh.display()))
                }
            })?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            return Err(classify(&stderr));
        }
        // Async calls print the task log first; the JSON answer is the last non-empty line.
        let last = stdout.lines().rev().map(str::trim).find(|l| !l.is_empty());
        match last {
            None => Ok(Value::Null),
            Some(line) => serde_json::from_str(line).or_else(|_| {
                serde_json::from_str(stdout.trim())
                    .map_err(|e| PveError::Other(format!("unexpected output from pvesh {verb} {path}: {e}")))
            }),
        }
    }
}

/// Turns pvesh's stderr into the same error classes as the API's answers.
pub fn classify(stderr: &str) -> PveError {
    let lines: Vec<&str> = stderr.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let first = lines.first().copied().unwrap_or("pvesh failed without a message");
    if let Some(rest) = first.strip_prefix("400 ") {
        let errors: serde_json::Map<String, Value> = lines[1..]
            .iter()
            .filter_map(|l| l.split_once(": ").map(|(k, v)| (k.to_string(), Value::String(v.to_string()))))
            .filter(|(k, _)| !k.contains(' '))
            .collect();
        return PveError::from_status(400, rest, Some(&errors));
    }
    if let Some((code, rest)) = first.split_once(' ')
        && code.len() == 3
        && let Ok(status) = code.parse::<u16>()
    {
        return PveError::from_status(status, rest, None);
    }
    // pmxcfs down: every line is an ipcc_send_rec warning, then the failure.
    if lines.iter().any(|l| l.contains("ipcc_send_rec")) {
        return PveError::Transient(lines.join("; "));
    }
    let lower = first.to_ascii_lowercase();
    if lower.contains("permission check failed") || lower.contains("authentication failed") {
        return PveError::Auth(first.to_string());
    }
    PveError::from_status(500, first, None)
}

impl Transport for ShellTransport {
    fn kind(&self) -> &'static str {
        "shell"
    }

    fn endpoint(&self) -> String {
        self.config.pvesh.display().to_string()
    }

    fn call(&self, method: Method, path: String, params: Params) -> PveFuture<'_, Value> {
        Box::pin(self.run(method, path, params))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorClass;

    #[test]
    fn stderr_is_classified_like_api_answers() {
        let cases = [
            ("400 Parameter verification failed.\nvmid: VM 123 already exists\n", ErrorClass::Validation),
            (
                "ipcc_send_rec[1] failed: Connection refused\nipcc_send_rec[2] failed: Connection refused\nUnable to load access control list: Connection refused\n",
                ErrorClass::Transient,
            ),
            ("VM is locked (clone)\n", ErrorClass::Locked),
            ("Configuration file 'nodes/pve/qemu-server/101.conf' does not exist\n", ErrorClass::NotFound),
            ("can't lock file '/var/lock/qemu-server/lock-101.conf' - got timeout\n", ErrorClass::LockTimeout),
        ];
        for (stderr, class) in cases {
            assert_eq!(classify(stderr).class(), class, "{stderr}");
        }
        match classify("400 Parameter verification failed.\nvmid: VM 123 already exists\n") {
            PveError::Validation { param, message } => {
                assert_eq!((param.as_str(), message.as_str()), ("vmid", "VM 123 already exists"))
            }
            other => panic!("{other}"),
        }
    }

    #[tokio::test]
    async fn a_missing_pvesh_says_where_the_shell_backend_runs() {
        let t = ShellTransport::new(ShellConfig {
            pvesh: PathBuf::from("/nonexistent/pvesh"),
            timeout: Duration::from_secs(5),
            env: Vec::new(),
        });
        let err = t.call(Method::Get, "/version".into(), vec![]).await.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("runs on the Proxmox host"), "{err}");
    }
}
