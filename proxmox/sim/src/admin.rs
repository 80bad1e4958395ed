//! The admin listener (plain HTTP, loopback): state and request-log dumps, fault control,
//! VMs created, deleted or migrated behind AgentLab's back, and the call endpoint the `pvesh`, `qm`
//! and `pvesm` personalities use.

use super::engine::{FaultConfig, MoveError, Sim};
use super::http::{Outcome, execute};
use super::world::{ContainerEntry, PowerState, Vm};
use crate::contract::{Contract, Params};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

pub fn router(sim: Arc<Sim>) -> Router {
    Router::new()
        .route("/admin/state", get(|State(sim): State<Arc<Sim>>| async move { Json(sim.snapshot_json()) }))
        .route("/admin/requests", get(|State(sim): State<Arc<Sim>>| async move { Json(sim.requests()) }))
        .route("/admin/tasks", get(|State(sim): State<Arc<Sim>>| async move { Json(sim.tasks()) }))
        .route("/admin/faults", put(set_faults))
        .route("/admin/vms", post(create_vm))
        .route("/admin/vms/{vmid}", delete(vanish_vm))
        .route("/admin/vms/{vmid}/move", post(move_vm))
        .route("/admin/call", post(call))
        .with_state(sim)
}

async fn set_faults(State(sim): State<Arc<Sim>>, Json(faults): Json<FaultConfig>) -> StatusCode {
    sim.set_faults(faults);
    StatusCode::NO_CONTENT
}

/// A VM made outside AgentLab (e.g. without the `agentlab` tag).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewVm {
    pub vmid: u32,
    #[serde(default)]
    pub node: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub tags: Option<String>,
    #[serde(default)]
    pub running: bool,
    /// `lxc` makes a container instead of a VM.
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
}

async fn create_vm(State(sim): State<Arc<Sim>>, Json(new): Json<NewVm>) -> Result<StatusCode, (StatusCode, String)> {
    let mut world = sim.world();
    if world.vmid_taken(new.vmid) {
        return Err((StatusCode::CONFLICT, format!("VM {} already exists", new.vmid)));
    }
    let node = new.node.or_else(|| world.nodes.first().map(|n| n.name.clone())).unwrap_or_default();
    if new.kind.as_deref() == Some("lxc") {
        let name = new.name.unwrap_or_else(|| format!("ct-{}", new.vmid));
        let ct = ContainerEntry { vmid: new.vmid, node, name, tags: new.tags, running: new.running };
        world.containers.insert(new.vmid, ct);
        return Ok(StatusCode::CREATED);
    }
    let mut config = std::collections::BTreeMap::new();
    config.insert("name".to_string(), new.name.unwrap_or_else(|| format!("vm-{}", new.vmid)));
    config.insert("memory".to_string(), "1024".to_string());
    config.insert("cores".to_string(), "1".to_string());
    if let Some(tags) = new.tags {
        config.insert("tags".to_string(), tags);
    }
    if let Some(description) = new.description {
        config.insert("description".to_string(), description);
    }
    let pid = new.running.then(|| world.pid());
    let mut vm = Vm::new(new.vmid, &node, config, 0);
    if new.running {
        vm.power = PowerState::Running;
        vm.pid = pid;
    }
    world.vms.insert(new.vmid, vm);
    Ok(StatusCode::CREATED)
}

/// Deletes a VM and the volumes it owns, as if someone did it on the host.
async fn vanish_vm(State(sim): State<Arc<Sim>>, Path(vmid): Path<u32>) -> StatusCode {
    if sim.vanish_vm(vmid) { StatusCode::NO_CONTENT } else { StatusCode::NOT_FOUND }
}

/// Where a VM is moved to behind AgentLab's back.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoveVm {
    pub node: String,
}

/// Moves a VM to another node, as a migration started outside AgentLab would.
async fn move_vm(
    State(sim): State<Arc<Sim>>,
    Path(vmid): Path<u32>,
    Json(to): Json<MoveVm>,
) -> Result<StatusCode, (StatusCode, String)> {
    match sim.move_vm(vmid, &to.node) {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(MoveError::NoNode) => Err((StatusCode::BAD_REQUEST, format!("no node {}", to.node))),
        Err(MoveError::NoVm) => Err((StatusCode::NOT_FOUND, format!("no VM {vmid}"))),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Call {
    pub method: String,
    pub path: String,
    #[serde(default)]
    pub params: Vec<(String, String)>,
    /// `pvesh`'s path argument, taken as it is; `qm` and `pvesm` call their handlers with
    /// separate parameters and send percent-encoded segments.
    #[serde(default)]
    pub raw_path: bool,
}

/// What a CLI call produced; async calls include their finished task.
#[derive(Debug, Serialize, Deserialize)]
pub struct CallResult {
    pub status: u16,
    pub data: Value,
    pub message: Option<String>,
    pub errors: Option<std::collections::BTreeMap<String, String>>,
    pub task_log: Vec<String>,
    pub task_exitstatus: Option<String>,
}

/// Runs a request as `root@pam` from the host's shell. Like `pvesh`, an async call runs in
/// the foreground: the answer comes when its task has stopped.
async fn call(State(sim): State<Arc<Sim>>, Json(call): Json<Call>) -> Json<CallResult> {
    let mut params = Params::default();
    for (k, v) in call.params {
        params.insert(&k, v);
    }
    // `pvesh` hands its path argument to `PVE::API2->find_handler` as it is: nothing is
    // percent-decoded (pve-manager `PVE/CLI/pvesh.pm` call_api_method, lines 398-460), so
    // `UPID%3Apve%3A…` stays that string and the task handler cannot parse it. Escaping `%`
    // keeps the contract's path matching (which decodes, as pveproxy does) from decoding it.
    let path = if call.raw_path { call.path.replace('%', "%25") } else { call.path };
    let is_async = Contract::get().find(&call.method, &path).is_some_and(|(e, _)| e.is_async);
    let outcome = execute(&sim, "cli", &call.method, &path, params, "root@pam").await;
    let result = match outcome {
        Outcome::Data(data) => {
            let mut result = CallResult {
                status: 200,
                data,
                message: None,
                errors: None,
                task_log: Vec::new(),
                task_exitstatus: None,
            };
            if let (true, Some(upid)) = (is_async, result.data.as_str().map(str::to_string)) {
                loop {
                    match sim.task(&upid) {
                        Some(task) if !task.running => {
                            result.task_log = task.log;
                            result.task_exitstatus = task.exitstatus;
                            break;
                        }
                        Some(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                        None => break,
                    }
                }
            }
            result
        }
        Outcome::Error(e) => CallResult {
            status: e.status,
            data: Value::Null,
            message: Some(e.message),
            errors: e.errors,
            task_log: Vec::new(),
            task_exitstatus: None,
        },
        Outcome::Drop => CallResult {
            status: 500,
            data: Value::Null,
            message: Some("ipcc_send_rec[1] failed: Connection refused".into()),
            errors: None,
            task_log: Vec::new(),
            task_exitstatus: None,
        },
    };
    Json(result)
}

/// JSON helper for tests: `GET /admin/state`'s VM map.
pub fn vms_of(state: &Value) -> Vec<Value> {
    state["world"]["vms"].as_object().map(|m| m.values().cloned().collect()).unwrap_or_else(|| vec![json!([])])
}
