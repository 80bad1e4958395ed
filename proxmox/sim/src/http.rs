//! Request processing shared by the API listener and the CLI personalities: contract
//! lookup (501), parameter parsing and validation (400), fault injection, dispatch, and the
//! `{"data": …}` envelope with Proxmox's error shapes.

use super::engine::{Fault, RequestRecord, Sim, SimError};
use super::handlers;
use crate::contract::{Contract, Params};
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A validated request, as handlers see it.
pub struct Req {
    pub endpoint: String,
    pub path: BTreeMap<String, String>,
    pub params: Params,
    /// Who is calling: `user@realm!token` for API tokens, `root@pam` for the CLI.
    pub user: String,
}

impl Req {
    pub fn node(&self) -> &str {
        self.path.get("node").map(String::as_str).unwrap_or_default()
    }

    pub fn vmid(&self) -> u32 {
        self.path.get("vmid").and_then(|v| v.parse().ok()).unwrap_or(0)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.path.get(name).map(String::as_str).or_else(|| self.params.first(name))
    }

    pub fn flag(&self, name: &str) -> bool {
        matches!(self.get(name), Some("1" | "true" | "yes" | "on"))
    }

    pub fn all(&self, name: &str) -> Vec<String> {
        self.params.values.get(name).cloned().unwrap_or_default()
    }
}

/// What processing produced.
pub enum Outcome {
    Data(Value),
    Error(SimError),
    /// Close the connection without answering.
    Drop,
}

/// Runs one request through the contract and the handlers. `source` labels the request
/// log (`api` or `cli`).
pub async fn execute(sim: &Arc<Sim>, source: &str, method: &str, path: &str, params: Params, user: &str) -> Outcome {
    let contract = Contract::get();
    // Stamped on arrival: rate checks are about when requests came in.
    let mut record = RequestRecord {
        seq: 0,
        at_ms: sim.now_ms().max(1),
        source: source.to_string(),
        method: method.to_string(),
        path: path.to_string(),
        endpoint: None,
        params: params.values.clone(),
        verdict: "ok".into(),
        errors: None,
        status: 200,
    };
    let Some((endpoint, path_params)) = contract.find(method, path) else {
        record.verdict = "not_implemented".into();
        record.status = 501;
        sim.record(record);
        return Outcome::Error(SimError::status(501, format!("Method '{method} {path}' not implemented")));
    };
    record.endpoint = Some(endpoint.id.clone());
    if let Err(errors) = contract.validate(endpoint, &path_params, &params) {
        record.verdict = "rejected".into();
        record.errors = Some(errors.clone());
        record.status = 400;
        sim.record(record);
        return Outcome::Error(SimError::params(errors));
    }
    // After parameter verification, before the handler: where pve-http-server's
    // check_api2_permissions runs (pve-access-control RPCEnvironment.pm 549-566).
    if let Some(privs) = crate::permissions::privileges_of(&sim.config.token_privileges, user) {
        let mut values: BTreeMap<String, String> =
            params.values.iter().filter_map(|(k, v)| v.first().map(|f| (k.clone(), f.clone()))).collect();
        values.extend(path_params.iter().map(|(k, v)| (k.clone(), v.clone())));
        if let Err(denied) = crate::permissions::check(&endpoint.permissions["check"], privs, &values) {
            record.verdict = "forbidden".into();
            record.status = 403;
            sim.record(record);
            return Outcome::Error(denied);
        }
    }
    let mutating = method != "GET";
    if let Some(fault) = sim.pick_fault(mutating) {
        record.verdict = format!(
            "fault:{}",
            serde_json::to_value(fault).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
        );
        let outcome = match fault {
            Fault::Drop => {
                record.status = 0;
                Outcome::Drop
            }
            Fault::Error => {
                // What Proxmox answers while the cluster briefly loses quorum.
                record.status = 500;
                Outcome::Error(SimError::die("cluster not ready - no quorum?"))
            }
            Fault::LockTimeout => {
                record.status = 500;
                Outcome::Error(SimError::die(lock_timeout_text(path, &path_params)))
            }
        };
        sim.record(record);
        return outcome;
    }
    let req = Req { endpoint: endpoint.id.clone(), path: path_params, params, user: user.to_string() };
    if let Some(node) = req.path.get("node")
        && !sim.world().node_exists(node)
    {
        record.status = 500;
        sim.record(record);
        return Outcome::Error(SimError::die(format!(
            "hostname lookup '{node}' failed - failed to get address info for: {node}: Name or service not known"
        )));
    }
    tokio::time::sleep(sim.latency("api")).await;
    let result = handlers::dispatch(sim, &req).await;
    record.status = match &result {
        Ok(_) => 200,
        Err(e) => e.status,
    };
    sim.record(record);
    match result {
        Ok(data) => Outcome::Data(data),
        Err(e) => Outcome::Error(e),
    }
}

/// The API listener's handler for everything under `/api2/json/`.
pub async fn api(sim: Arc<Sim>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let Some(path) = uri.path().strip_prefix("/api2/json") else {
        return respond(&sim, Outcome::Error(SimError::status(501, "no such uri")));
    };
    let path = if path.is_empty() { "/" } else { path };
    let Some(user) = authenticate(&sim, &headers) else {
        tokio::time::sleep(sim.latency("auth_failure_delay")).await;
        sim.record(RequestRecord {
            seq: 0,
            at_ms: 0,
            source: "api".into(),
            method: method.to_string(),
            path: path.to_string(),
            endpoint: None,
            params: BTreeMap::new(),
            verdict: "unauthorized".into(),
            errors: None,
            status: 401,
        });
        let reason = if headers.contains_key("authorization") { "Authentication failed!" } else { "No ticket" };
        return with_reason(StatusCode::UNAUTHORIZED, reason, Body::empty());
    };
    let query = Params::from_urlencoded(uri.query().unwrap_or(""));
    let params = if method == Method::GET || method == Method::DELETE {
        if !body.is_empty() {
            return respond(
                &sim,
                Outcome::Error(SimError::status(501, format!("Unexpected content for method '{method}'"))),
            );
        }
        query
    } else {
        let is_json = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("application/json"));
        let mut params = if is_json {
            match serde_json::from_slice::<Value>(&body).ok().and_then(|v| Params::from_json(&v)) {
                Some(p) => p,
                None => return respond(&sim, Outcome::Error(SimError::die("malformed JSON string"))),
            }
        } else {
            Params::from_urlencoded(&String::from_utf8_lossy(&body))
        };
        // Query parameters win over body parameters.
        for (k, v) in query.values {
            params.values.insert(k, v);
        }
        params
    };
    let outcome = execute(&sim, "api", method.as_str(), path, params, &user).await;
    respond(&sim, outcome)
}

/// `Authorization: PVEAPIToken=USER@REALM!ID=SECRET`; the caller's token id when valid.
fn authenticate(sim: &Sim, headers: &HeaderMap) -> Option<String> {
    let value = headers.get("authorization")?.to_str().ok()?;
    let token = value.strip_prefix("PVEAPIToken=").or_else(|| value.strip_prefix("PVEAPIToken "))?;
    sim.config.tokens.iter().find(|t| t.as_str() == token)?;
    token.rsplit_once('=').map(|(id, _)| id.to_string())
}

fn with_reason(status: StatusCode, reason: &str, body: Body) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let first_line = reason.lines().next().unwrap_or("").trim().to_string();
    if let Ok(phrase) = hyper::ext::ReasonPhrase::try_from(first_line.into_bytes()) {
        response.extensions_mut().insert(phrase);
    }
    response
}

/// What Proxmox says when the lock an operation needs is not had in time.
///
/// Cluster-wide state lives in pmxcfs and is locked through it: the datacenter firewall
/// (groups, rules, options) is edited under `cfs_lock_domain("firewall-cluster")`, whose
/// timeout is pve-cluster `src/PVE/Cluster.pm` cfs_lock (lines 628 and 683 in PVE 9):
/// `cfs-lock '<lockid>' error: got lock request timeout`. A VM's config is a local flock
/// (qemu-server `PVE/QemuConfig.pm` lock_config → PVE::Tools::lock_file):
/// `can't lock file '/var/lock/qemu-server/lock-<vmid>.conf' - got timeout`.
pub fn lock_timeout_text(path: &str, path_params: &BTreeMap<String, String>) -> String {
    if path.starts_with("/cluster/firewall") {
        return "cfs-lock 'firewall-cluster' error: got lock request timeout".to_string();
    }
    let vmid = path_params.get("vmid").cloned().unwrap_or_else(|| "0".into());
    format!("can't lock file '/var/lock/qemu-server/lock-{vmid}.conf' - got timeout")
}

/// Marker header: the connection task closes the connection instead of answering.
pub const DROP_HEADER: &str = "x-pve-sim-drop";

pub fn respond(sim: &Sim, outcome: Outcome) -> Response {
    let json = |status: StatusCode, reason: &str, value: Value| {
        let mut response = with_reason(status, reason, Body::from(value.to_string()));
        response
            .headers_mut()
            .insert("content-type", axum::http::HeaderValue::from_static("application/json;charset=UTF-8"));
        response
    };
    match outcome {
        Outcome::Data(data) => json(StatusCode::OK, "OK", serde_json::json!({ "data": data })),
        Outcome::Drop => {
            let mut response = Response::new(Body::empty());
            response.headers_mut().insert(DROP_HEADER, axum::http::HeaderValue::from_static("1"));
            response
        }
        Outcome::Error(e) => {
            let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut body = serde_json::json!({ "data": null });
            if let Some(errors) = &e.errors {
                body["errors"] = serde_json::to_value(errors).unwrap_or(Value::Null);
            }
            // `message` exists only since libpve-http-server-perl 5.2.0.
            if !sim.config.legacy_errors {
                body["message"] = Value::String(format!("{}\n", e.message));
            }
            json(status, &e.message, body)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_timeouts_name_the_lock_proxmox_would_hold() {
        let vm: BTreeMap<String, String> = [("vmid".to_string(), "1001".to_string())].into();
        assert_eq!(
            lock_timeout_text("/nodes/pve1/qemu/1001/config", &vm),
            "can't lock file '/var/lock/qemu-server/lock-1001.conf' - got timeout"
        );
        assert_eq!(
            lock_timeout_text("/cluster/firewall/groups", &BTreeMap::new()),
            "cfs-lock 'firewall-cluster' error: got lock request timeout"
        );
    }
}
