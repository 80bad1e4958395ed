//! `pvesh`, `qm` and `pvesm` as the simulator's personalities: they send the request to a
//! running simulator (`PVE_SIM_ADMIN`, e.g. `http://127.0.0.1:8007`) and print what the real
//! commands print (`proxmox/contract/behaviors.md` §8): compact JSON of `data`; for async calls the task
//! log, then the UPID, exit 0 even if the task failed (error on stderr); parameter errors as
//! `400 Parameter verification failed.` plus `<param>: <msg>` lines, exit 255.

use super::admin::CallResult;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Personality {
    Pvesh,
    Qm,
    Pvesm,
}

impl Personality {
    pub fn from_program(name: &str) -> Option<Personality> {
        match name {
            "pvesh" => Some(Personality::Pvesh),
            "qm" => Some(Personality::Qm),
            "pvesm" => Some(Personality::Pvesm),
            _ => None,
        }
    }
}

const FAIL: u8 = 255;

/// Runs the command; the process exit code.
pub fn run(personality: Personality, args: &[String]) -> u8 {
    let Ok(admin) = std::env::var("PVE_SIM_ADMIN") else {
        eprintln!(
            "ipcc_send_rec[1] failed: Connection refused\nUnable to load access control list: Connection refused (PVE_SIM_ADMIN is not set: point it at a running pve-sim's admin listener)"
        );
        return FAIL;
    };
    agentlab_proxmox::install_crypto_provider();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return FAIL;
        }
    };
    runtime.block_on(async move {
        let cli = Cli { admin, http: reqwest::Client::new() };
        match personality {
            Personality::Pvesh => cli.pvesh(args).await,
            Personality::Qm => cli.qm(args).await,
            Personality::Pvesm => cli.pvesm(args).await,
        }
    })
}

struct Cli {
    admin: String,
    http: reqwest::Client,
}

/// `--key value` pairs after the positional arguments (a bare `--flag` means `1`).
fn options(args: &[String]) -> (Vec<String>, Vec<(String, String)>, String) {
    let mut positional = Vec::new();
    let mut pairs = Vec::new();
    let mut format = "text".to_string();
    let mut i = 0;
    while i < args.len() {
        if let Some(key) = args[i].strip_prefix("--") {
            let value = match args.get(i + 1) {
                Some(v) if !v.starts_with("--") => {
                    i += 1;
                    v.clone()
                }
                _ => "1".to_string(),
            };
            if key == "output-format" {
                format = value;
            } else {
                pairs.push((key.to_string(), value));
            }
        } else {
            positional.push(args[i].clone());
        }
        i += 1;
    }
    (positional, pairs, format)
}

impl Cli {
    async fn call(&self, method: &str, path: &str, params: Vec<(String, String)>) -> Result<CallResult, u8> {
        self.call_as(method, path, params, false).await
    }

    async fn call_as(
        &self,
        method: &str,
        path: &str,
        params: Vec<(String, String)>,
        raw_path: bool,
    ) -> Result<CallResult, u8> {
        let body = serde_json::json!({"method": method, "path": path, "params": params, "raw_path": raw_path});
        let response = self.http.post(format!("{}/admin/call", self.admin)).json(&body).send().await.map_err(|e| {
            eprintln!("ipcc_send_rec[1] failed: Connection refused ({e})");
            FAIL
        })?;
        response.json::<CallResult>().await.map_err(|e| {
            eprintln!("unexpected answer from pve-sim: {e}");
            FAIL
        })
    }

    /// Prints an error as the real commands do; the exit code.
    fn fail(result: &CallResult) -> u8 {
        match (&result.errors, result.status) {
            (Some(errors), 400) => {
                eprintln!("400 Parameter verification failed.");
                for (param, msg) in errors {
                    eprintln!("{param}: {}", msg.trim_end());
                }
            }
            (_, 501) => eprintln!("501 {}", result.message.clone().unwrap_or_default()),
            _ => eprintln!("{}", result.message.clone().unwrap_or_default().trim_end()),
        }
        FAIL
    }

    /// Prints an async call's task log; the task's error (if any) goes to stderr.
    fn print_task(result: &CallResult) {
        for line in result.task_log.iter().filter(|l| !l.starts_with("TASK ")) {
            println!("{line}");
        }
        // pve-common `src/PVE/RESTEnvironment.pm` tee_worker, lines 493-497: a failed task's
        // error goes to stderr, a task with warnings says so there.
        match result.task_exitstatus.as_deref() {
            None | Some("OK") => {}
            Some(exit) => match exit.strip_prefix("WARNINGS: ") {
                Some(n) => eprintln!("Task finished with {n} warning(s)!"),
                None => eprintln!("{exit}"),
            },
        }
    }

    async fn pvesh(&self, args: &[String]) -> u8 {
        let (positional, params, format) = options(args);
        let (Some(verb), Some(path)) = (positional.first(), positional.get(1)) else {
            eprintln!("USAGE: pvesh <get|set|create|delete> <api_path> [OPTIONS] [--output-format json]");
            return FAIL;
        };
        let method = match verb.as_str() {
            "get" | "ls" => "GET",
            "set" => "PUT",
            "create" => "POST",
            "delete" => "DELETE",
            other => {
                eprintln!("unknown command 'pvesh {other}'");
                return FAIL;
            }
        };
        let result = match self.call_as(method, path, params, true).await {
            Ok(r) => r,
            Err(code) => return code,
        };
        if result.status != 200 {
            return Self::fail(&result);
        }
        if is_proxied(path) {
            // Another node's path: pvesh runs itself there over SSH and collects all of its
            // stdout. It decodes that as JSON, and when it is not (a task log followed by the
            // UPID) prints the raw text as one JSON string (pve-manager `PVE/CLI/pvesh.pm`
            // proxy_handler, lines 111-143): the UPID is lost in a blob of log lines.
            let mut text: Vec<String> = result.task_log.iter().filter(|l| !l.starts_with("TASK ")).cloned().collect();
            if !result.task_log.is_empty() || result.task_exitstatus.is_some() {
                text.push(result.data.to_string());
                print_value(&Value::String(text.join("\n")), &format);
            } else {
                print_value(&result.data, &format);
            }
            return 0;
        }
        Self::print_task(&result);
        print_value(&result.data, &format);
        0
    }

    /// The node a VM lives on (the first node for a VMID not found).
    async fn node_of(&self, vmid: Option<&str>) -> String {
        if let Ok(node) = std::env::var("PVE_SIM_NODE") {
            return node;
        }
        let resources = self.call("GET", "/cluster/resources", vec![]).await.map(|r| r.data).unwrap_or(Value::Null);
        let items = resources.as_array().cloned().unwrap_or_default();
        if let Some(vmid) = vmid
            && let Some(node) = items
                .iter()
                .find(|i| i["vmid"].as_u64().map(|v| v.to_string()).as_deref() == Some(vmid))
                .and_then(|i| i["node"].as_str())
        {
            return node.to_string();
        }
        items.iter().find(|i| i["type"] == "node").and_then(|i| i["node"].as_str()).unwrap_or("pve1").to_string()
    }

    async fn qm(&self, args: &[String]) -> u8 {
        let (positional, params, _) = options(args);
        let command = positional.first().map(String::as_str).unwrap_or_default();
        let vmid = positional.get(1).map(String::as_str);
        let node = self.node_of(vmid).await;
        let vm = |v: Option<&str>| format!("/nodes/{node}/qemu/{}", v.unwrap_or("0"));
        let (method, path, mut params, async_call) = match command {
            "list" => {
                let result = match self.call("GET", &format!("/nodes/{node}/qemu"), vec![]).await {
                    Ok(r) if r.status == 200 => r,
                    Ok(r) => return Self::fail(&r),
                    Err(c) => return c,
                };
                let mut vms = result.data.as_array().cloned().unwrap_or_default();
                vms.sort_by_key(|v| v["vmid"].as_u64());
                if !vms.is_empty() {
                    println!("      VMID NAME                 STATUS     MEM(MB)    BOOTDISK(GB) PID       ");
                }
                for v in vms {
                    println!(
                        "{:>10} {:<20} {:<10} {:<10} {:>12.2} {:<10}",
                        v["vmid"],
                        v["name"].as_str().unwrap_or(""),
                        v["status"].as_str().unwrap_or(""),
                        v["maxmem"].as_u64().unwrap_or(0) / 1024 / 1024,
                        v["maxdisk"].as_u64().unwrap_or(0) as f64 / 1024.0 / 1024.0 / 1024.0,
                        v["pid"].as_u64().unwrap_or(0)
                    );
                }
                return 0;
            }
            "status" => {
                let result = match self.call("GET", &format!("{}/status/current", vm(vmid)), vec![]).await {
                    Ok(r) if r.status == 200 => r,
                    Ok(r) => return Self::fail(&r),
                    Err(c) => return c,
                };
                println!(
                    "status: {}",
                    result.data["qmpstatus"].as_str().or(result.data["status"].as_str()).unwrap_or("unknown")
                );
                return 0;
            }
            "config" => {
                let result = match self.call("GET", &format!("{}/config", vm(vmid)), params).await {
                    Ok(r) if r.status == 200 => r,
                    Ok(r) => return Self::fail(&r),
                    Err(c) => return c,
                };
                if let Some(map) = result.data.as_object() {
                    for (k, v) in map.iter().filter(|(k, _)| *k != "digest") {
                        println!("{k}: {}", v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()));
                    }
                }
                return 0;
            }
            "start" | "stop" | "shutdown" | "suspend" | "resume" | "reboot" | "reset" => {
                ("POST", format!("{}/status/{command}", vm(vmid)), params, true)
            }
            "destroy" => ("DELETE", vm(vmid), params, true),
            // qm.pm: `create => [create_vm, ['vmid'], {node}, $upid_exit]`.
            "create" => {
                let mut params = params;
                params.insert(0, ("vmid".into(), vmid.unwrap_or_default().to_string()));
                ("POST", format!("/nodes/{node}/qemu"), params, true)
            }
            // qm.pm: `resize => [resize_vm, ['vmid', 'disk', 'size'], {node}, $upid_exit]`.
            "resize" => {
                let mut params = params;
                params.insert(0, ("disk".into(), positional.get(2).cloned().unwrap_or_default()));
                params.insert(1, ("size".into(), positional.get(3).cloned().unwrap_or_default()));
                ("PUT", format!("{}/resize", vm(vmid)), params, true)
            }
            "set" => ("PUT", format!("{}/config", vm(vmid)), params, false),
            "template" => ("POST", format!("{}/template", vm(vmid)), params, false),
            "clone" => {
                let newid = positional.get(2).cloned().unwrap_or_default();
                let mut params = params;
                params.insert(0, ("newid".into(), newid));
                ("POST", format!("{}/clone", vm(vmid)), params, true)
            }
            "snapshot" => {
                let mut params = params;
                params.insert(0, ("snapname".into(), positional.get(2).cloned().unwrap_or_default()));
                ("POST", format!("{}/snapshot", vm(vmid)), params, true)
            }
            "rollback" => (
                "POST",
                format!("{}/snapshot/{}/rollback", vm(vmid), positional.get(2).map_or("", |s| s)),
                params,
                true,
            ),
            "delsnapshot" => {
                ("DELETE", format!("{}/snapshot/{}", vm(vmid), positional.get(2).map_or("", |s| s)), params, true)
            }
            other => {
                eprintln!(
                    "unknown command 'qm {other}' (pve-sim's qm knows list, status, config, create, start, stop, shutdown, suspend, resume, reboot, reset, destroy, set, resize, template, clone, snapshot, rollback, delsnapshot)"
                );
                return FAIL;
            }
        };
        params.retain(|(k, _)| !k.is_empty());
        let result = match self.call(method, &path, params).await {
            Ok(r) => r,
            Err(code) => return code,
        };
        if result.status != 200 {
            return Self::fail(&result);
        }
        Self::print_task(&result);
        // qm exits 255 on a failed task for the commands wrapped with $upid_exit; `template`
        // (not wrapped) exits 0 with the error on stderr only.
        match (&result.task_exitstatus, async_call) {
            (Some(exit), true) if exit != "OK" && !exit.starts_with("WARNINGS") => FAIL,
            _ => 0,
        }
    }

    async fn pvesm(&self, args: &[String]) -> u8 {
        let (positional, params, _) = options(args);
        let node = self.node_of(None).await;
        let command = positional.first().map(String::as_str).unwrap_or_default();
        match command {
            "status" => match self.call("GET", &format!("/nodes/{node}/storage"), params).await {
                Ok(r) if r.status == 200 => {
                    println!(
                        "Name             Type     Status     Total (KiB)      Used (KiB) Available (KiB)        %"
                    );
                    for s in r.data.as_array().cloned().unwrap_or_default() {
                        let total = s["total"].as_u64().unwrap_or(0) / 1024;
                        let used = s["used"].as_u64().unwrap_or(0) / 1024;
                        let pct = if total > 0 { used as f64 * 100.0 / total as f64 } else { 0.0 };
                        println!(
                            "{:<16} {:<8} {:<10} {:>11} {:>15} {:>15} {:>7.2}%",
                            s["storage"].as_str().unwrap_or(""),
                            s["type"].as_str().unwrap_or(""),
                            "active",
                            total,
                            used,
                            total - used,
                            pct
                        );
                    }
                    0
                }
                Ok(r) => Self::fail(&r),
                Err(c) => c,
            },
            "list" => {
                let storage = positional.get(1).cloned().unwrap_or_default();
                match self.call("GET", &format!("/nodes/{node}/storage/{storage}/content"), params).await {
                    Ok(r) if r.status == 200 => {
                        println!("Volid                    Format  Type             Size VMID");
                        for v in r.data.as_array().cloned().unwrap_or_default() {
                            println!(
                                "{} {:<7} {:<9} {:>12} {}",
                                v["volid"].as_str().unwrap_or(""),
                                v["format"].as_str().unwrap_or(""),
                                v["content"].as_str().unwrap_or(""),
                                v["size"],
                                v["vmid"]
                            );
                        }
                        0
                    }
                    Ok(r) => Self::fail(&r),
                    Err(c) => c,
                }
            }
            "alloc" => {
                let get = |i: usize| positional.get(i).cloned().unwrap_or_default();
                let mut p =
                    vec![("vmid".to_string(), get(2)), ("filename".to_string(), get(3)), ("size".to_string(), get(4))];
                p.extend(params);
                match self.call("POST", &format!("/nodes/{node}/storage/{}/content", get(1)), p).await {
                    Ok(r) if r.status == 200 => {
                        println!("successfully created '{}'", r.data.as_str().unwrap_or(""));
                        0
                    }
                    Ok(r) => Self::fail(&r),
                    Err(c) => c,
                }
            }
            "free" => {
                let volid = positional.get(1).cloned().unwrap_or_default();
                let storage = volid.split(':').next().unwrap_or_default().to_string();
                let path =
                    format!("/nodes/{node}/storage/{storage}/content/{}", agentlab_proxmox::transport::segment(&volid));
                match self.call("DELETE", &path, params).await {
                    Ok(r) if r.status == 200 => {
                        Self::print_task(&r);
                        // pvesm free exits 0 even when its task failed.
                        0
                    }
                    Ok(r) => Self::fail(&r),
                    Err(c) => c,
                }
            }
            "path" => {
                let volid = positional.get(1).cloned().unwrap_or_default();
                let Some((storage, name)) = volid.split_once(':') else {
                    eprintln!("unable to parse volume ID '{volid}'");
                    return FAIL;
                };
                match self.call("GET", &format!("/storage/{storage}"), vec![]).await {
                    Ok(r) if r.status == 200 => match r.data["path"].as_str() {
                        Some(base) => {
                            println!("{base}/{name}");
                            0
                        }
                        None => {
                            println!("/dev/pve/{name}");
                            0
                        }
                    },
                    Ok(r) => Self::fail(&r),
                    Err(c) => c,
                }
            }
            other => {
                eprintln!("unknown command 'pvesm {other}' (pve-sim's pvesm knows status, list, alloc, free, path)");
                FAIL
            }
        }
    }
}

/// pvesh output: compact JSON of `data` (nothing for null), or pretty with 3 spaces.
/// Whether a `/nodes/{node}/…` path names a node other than this host (`PVE_SIM_NODE`).
fn is_proxied(path: &str) -> bool {
    let Ok(local) = std::env::var("PVE_SIM_NODE") else { return false };
    let node = path.trim_start_matches('/').strip_prefix("nodes/").and_then(|p| p.split('/').next());
    node.is_some_and(|node| node != local)
}

fn print_value(data: &Value, format: &str) {
    if data.is_null() {
        return;
    }
    match format {
        "json-pretty" => println!("{}", serde_json::to_string_pretty(data).unwrap_or_default()),
        "json" => println!("{data}"),
        _ => match data {
            Value::String(s) => println!("{s}"),
            other => println!("{}", serde_json::to_string_pretty(other).unwrap_or_default()),
        },
    }
}
