//! The shell backend: `pvesh <get|create|set|delete> PATH --key value … --output-format json`
//! run on the Proxmox host through `tokio::process` with an argument vector (never a shell
//! string). `pvesh` calls the same handlers as the API, so errors carry the same texts.
//!
//! pvesh facts (`proxmox/contract/behaviors.md` §8): async endpoints run their task in the
//! foreground, print the task log and then the UPID as a JSON string, and exit 0 even when the
//! task failed, with the task's error on stderr (pve-common `src/PVE/RESTEnvironment.pm`
//! tee_worker, lines 493-497). So a task's outcome is known when pvesh returns: it is kept
//! and answers the task-status poll that follows without another pvesh run. Parameter errors
//! print `400 Parameter verification failed.` and `<param>: <msg>` lines on stderr.
//!
//! What pvesh does not do, and this transport therefore must (pve-fidelity review F1, F10): it does
//! not percent-decode its path (pve-manager `PVE/CLI/pvesh.pm` call_api_method), so paths go
//! to it raw; it proxies another node's paths over SSH and returns their task log and UPID as
//! one string, so only the local node is addressed; and a pvesh killed mid-task kills the
//! worker (SIGPIPE) before its cleanup, so a mutating call may take as long as a task may.

use crate::transport::{Method, Params, Transport, percent_decode};
use crate::{PveError, PveFuture, Upid};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct ShellConfig {
    /// `pvesh`, or a path to it.
    pub pvesh: PathBuf,
    /// For reads and synchronous calls.
    pub timeout: Duration,
    /// For calls that may run a task in the foreground (every non-GET): at least the task
    /// deadline, so pvesh is never killed while its worker runs.
    pub task_deadline: Duration,
    /// This host's node name (`proxmox.node`): the only node pvesh is asked about.
    pub local_node: String,
    /// Extra environment for `pvesh` (e.g. `PVE_SIM_ADMIN` for the simulator's personality).
    pub env: Vec<(String, String)>,
}

/// How many finished tasks are remembered for the status poll that follows their call.
const FINISHED_TASKS_KEPT: usize = 64;

/// A task pvesh ran in the foreground: its exit status (from stderr) and log (stdout).
#[derive(Debug, Clone)]
struct FinishedTask {
    upid: String,
    exitstatus: String,
    log: Vec<String>,
}

#[derive(Debug)]
pub struct ShellTransport {
    config: ShellConfig,
    finished: Mutex<VecDeque<FinishedTask>>,
}

impl ShellTransport {
    pub fn new(config: ShellConfig) -> ShellTransport {
        ShellTransport { config, finished: Mutex::new(VecDeque::new()) }
    }

    async fn run(&self, method: Method, path: String, params: Params) -> Result<Value, PveError> {
        let path = self.raw_path(&path)?;
        if method == Method::Get
            && let Some(answer) = self.finished_answer(&path)
        {
            return Ok(answer);
        }
        let verb = match method {
            Method::Get => "get",
            Method::Post => "create",
            Method::Put => "set",
            Method::Delete => "delete",
        };
        let timeout = if method == Method::Get {
            self.config.timeout
        } else {
            self.config.timeout.max(self.config.task_deadline)
        };
        let mut command = tokio::process::Command::new(&self.config.pvesh);
        command.arg(verb).arg(&path);
        for (key, value) in &params {
            command.arg(format!("--{key}")).arg(value);
        }
        command.args(["--output-format", "json"]).envs(self.config.env.iter().map(|(k, v)| (k, v))).kill_on_drop(true);
        let output = tokio::time::timeout(timeout, command.output())
            .await
            .map_err(|_| PveError::Timeout(timeout))?
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
        if method != Method::Get
            && let Some(task) = finished_task(&stdout, &stderr)
        {
            let upid = task.upid.clone();
            self.remember(task);
            return Ok(Value::String(upid));
        }
        let last = stdout.lines().rev().map(str::trim).find(|l| !l.is_empty());
        match last {
            None => Ok(Value::Null),
            Some(line) => serde_json::from_str(line).or_else(|_| {
                serde_json::from_str(stdout.trim())
                    .map_err(|e| PveError::Other(format!("unexpected output from pvesh {verb} {path}: {e}")))
            }),
        }
    }

    /// The path as pvesh takes it: segments decoded (the operations encode them for HTTP),
    /// and only this host's node.
    fn raw_path(&self, encoded: &str) -> Result<String, PveError> {
        let parts: Vec<&str> = encoded.split('/').collect();
        let mut segments = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            let raw = percent_decode(part);
            if raw.contains('/') && !takes_rest_of_path(&parts, i) {
                return Err(PveError::Config(format!(
                    "pvesh cannot address `{raw}`: it splits its path on `/`; use proxmox_backend: api"
                )));
            }
            segments.push(raw);
        }
        if segments.get(1).map(String::as_str) == Some("nodes")
            && let Some(node) = segments.get(2)
            && !node.is_empty()
            && *node != self.config.local_node
        {
            return Err(PveError::Config(format!(
                "the shell backend runs pvesh on this host (node `{}`) and cannot act on node `{node}`: \
                 pvesh proxies other nodes over SSH and loses their task ids; use proxmox_backend: api for a cluster",
                self.config.local_node
            )));
        }
        Ok(segments.join("/"))
    }

    fn remember(&self, task: FinishedTask) {
        let mut finished = self.finished.lock().unwrap_or_else(|p| p.into_inner());
        if finished.len() >= FINISHED_TASKS_KEPT {
            finished.pop_front();
        }
        finished.push_back(task);
    }

    /// `GET /nodes/{node}/tasks/{upid}/status|log` for a task pvesh already ran to its end.
    fn finished_answer(&self, path: &str) -> Option<Value> {
        let rest = path.strip_prefix("/nodes/")?;
        let (_, rest) = rest.split_once("/tasks/")?;
        let (upid, what) = rest.rsplit_once('/')?;
        let finished = self.finished.lock().unwrap_or_else(|p| p.into_inner());
        let task = finished.iter().find(|t| t.upid == upid)?;
        let parsed = Upid::parse(upid).ok()?;
        match what {
            "status" => Some(json!({
                "upid": task.upid, "node": parsed.node, "status": "stopped",
                "exitstatus": task.exitstatus, "type": parsed.task_type,
            })),
            "log" => {
                Some(Value::Array(task.log.iter().enumerate().map(|(i, t)| json!({"n": i + 1, "t": t})).collect()))
            }
            _ => None,
        }
    }
}

/// Whether segment `i` of a path may hold `/`: the CIDR of `…/ipset/{name}/{cidr}`, the last
/// segment. pve-firewall registers `ipset/{name}` with `fragmentDelimiter => ''`
/// (`src/PVE/API2/Firewall/IPSet.pm` 763-768, 812-817, "because CIDR address contain a
/// slash"), and pve-common joins every fragment after it back into one
/// (`src/PVE/RESTHandler.pm` map_path_to_methods, 413-424): pvesh reaches
/// `/cluster/firewall/ipset/agent_allow/10.0.0.0/8` as the entry `10.0.0.0/8`.
fn takes_rest_of_path(parts: &[&str], i: usize) -> bool {
    i + 1 == parts.len() && i >= 2 && parts[i - 2] == "ipset"
}

/// A foreground task from pvesh's output: the UPID is the last JSON string on stdout that
/// parses as one; the exit status is `OK`, `WARNINGS: n` or the error text on stderr.
fn finished_task(stdout: &str, stderr: &str) -> Option<FinishedTask> {
    let mut lines: Vec<&str> = stdout.lines().map(str::trim_end).collect();
    let position = lines.iter().rposition(|l| {
        serde_json::from_str::<String>(l.trim()).is_ok_and(|s| s.starts_with("UPID:") && Upid::parse(&s).is_ok())
    })?;
    let upid: String = serde_json::from_str(lines[position].trim()).ok()?;
    lines.truncate(position);
    let errors: Vec<&str> =
        stderr.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with("WARN: ")).collect();
    let exitstatus = match errors.last() {
        None => "OK".to_string(),
        Some(last) => match last.strip_prefix("Task finished with ").and_then(|r| r.strip_suffix(" warning(s)!")) {
            Some(n) => format!("WARNINGS: {n}"),
            None => errors.join("; "),
        },
    };
    // The task log on the host ends with the line pvesh keeps off stdout.
    let end = match exitstatus.as_str() {
        "OK" => "TASK OK".to_string(),
        s if s.starts_with("WARNINGS: ") => format!("TASK {s}"),
        s => format!("TASK ERROR: {s}"),
    };
    let mut log: Vec<String> = lines.into_iter().map(str::to_string).collect();
    // Warnings are in the task log on the host; pvesh shows them on stderr.
    log.extend(stderr.lines().map(str::trim).filter(|l| l.starts_with("WARN: ")).map(str::to_string));
    log.push(end);
    Some(FinishedTask { upid, exitstatus, log })
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

    const UPID: &str = "UPID:pve:00001234:00005678:6750A0B0:qmdestroy:101:root@pam:";

    #[test]
    fn a_foreground_task_is_read_from_stdout_and_stderr() {
        let stdout = format!("  Logical volume \"vm-101-disk-0\" successfully removed.\n\"{UPID}\"\n");
        let ok = finished_task(&stdout, "").map(|t| (t.upid, t.exitstatus, t.log));
        assert_eq!(
            ok,
            Some((
                UPID.to_string(),
                "OK".to_string(),
                vec!["  Logical volume \"vm-101-disk-0\" successfully removed.".to_string(), "TASK OK".to_string()]
            ))
        );
        let warned = finished_task(&stdout, "WARN: Could not remove disk\nTask finished with 1 warning(s)!\n");
        assert_eq!(warned.as_ref().map(|t| t.exitstatus.as_str()), Some("WARNINGS: 1"));
        assert!(warned.is_some_and(|t| t.log.iter().any(|l| l == "WARN: Could not remove disk")), "kept in the log");
        let failed = finished_task(&stdout, "VM 101 is running - destroy failed\n").map(|t| (t.exitstatus, t.log));
        assert_eq!(failed.as_ref().map(|f| f.0.as_str()), Some("VM 101 is running - destroy failed"));
        assert_eq!(
            failed.and_then(|f| f.1.last().cloned()).as_deref(),
            Some("TASK ERROR: VM 101 is running - destroy failed")
        );
        assert!(finished_task("{\"data\":1}\n", "").is_none(), "a synchronous answer is not a task");
    }

    #[test]
    fn paths_go_to_pvesh_raw_and_only_for_this_node() {
        let t = ShellTransport::new(ShellConfig {
            pvesh: PathBuf::from("pvesh"),
            timeout: Duration::from_secs(5),
            task_deadline: Duration::from_secs(5),
            local_node: "pve".into(),
            env: Vec::new(),
        });
        let encoded = format!("/nodes/pve/tasks/{}/status", crate::transport::segment(UPID));
        assert_eq!(t.raw_path(&encoded).ok(), Some(format!("/nodes/pve/tasks/{UPID}/status")));
        assert!(t.raw_path("/cluster/resources").is_ok());
        let slash = t.raw_path("/nodes/pve/storage/local/content/local%3Asnippets%2Fa.yaml");
        assert!(slash.is_err_and(|e| e.to_string().contains("splits its path on `/`")));
        // An IP set entry's CIDR is the one segment that may carry `/`.
        let entry = t.raw_path("/cluster/firewall/ipset/agent_allow/10.0.0.0%2F8");
        assert_eq!(entry.ok().as_deref(), Some("/cluster/firewall/ipset/agent_allow/10.0.0.0/8"));
        assert!(t.raw_path("/cluster/firewall/ipset/a%2Fb/10.0.0.1").is_err(), "not in the set's name");
        let other = t.raw_path("/nodes/pve2/qemu/101/config");
        assert!(other.is_err_and(|e| e.to_string().contains("cannot act on node `pve2`")));
    }

    #[tokio::test]
    async fn a_missing_pvesh_says_where_the_shell_backend_runs() {
        let t = ShellTransport::new(ShellConfig {
            pvesh: PathBuf::from("/nonexistent/pvesh"),
            timeout: Duration::from_secs(5),
            task_deadline: Duration::from_secs(5),
            local_node: "pve".into(),
            env: Vec::new(),
        });
        let err = t.call(Method::Get, "/version".into(), vec![]).await.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("runs on the Proxmox host"), "{err}");
    }
}
