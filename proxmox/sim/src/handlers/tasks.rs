//! `/nodes/{node}/tasks/...` and `/cluster/tasks`.

use super::{Answer, Sim};
use crate::engine::{SimError, TaskEntry};
use crate::http::Req;
use agentlab_proxmox::Upid;
use serde_json::{Value, json};
use std::sync::Arc;

fn task_json(t: &TaskEntry) -> Value {
    let (user, token) = match t.user.split_once('!') {
        Some((u, tok)) => (u.to_string(), Some(tok.to_string())),
        None => (t.user.clone(), None),
    };
    let mut v = json!({
        "upid": t.upid, "node": t.node, "pid": t.pid, "pstart": t.pstart, "starttime": t.starttime,
        "type": t.task_type, "id": t.id, "user": user, "status": if t.running { "running" } else { "stopped" },
    });
    if let Some(token) = token {
        v["tokenid"] = token.into();
    }
    if let Some(exit) = &t.exitstatus {
        v["exitstatus"] = exit.clone().into();
    }
    v
}

fn find(sim: &Sim, req: &Req) -> Result<TaskEntry, SimError> {
    let upid = req.get("upid").unwrap_or_default();
    Upid::parse(upid).map_err(|_| SimError::param("upid", "unable to parse worker upid"))?;
    sim.task(upid).ok_or_else(|| SimError::param("upid", "no such task"))
}

pub fn status(sim: &Arc<Sim>, req: &Req) -> Answer {
    Ok(task_json(&find(sim, req)?))
}

pub fn log(sim: &Arc<Sim>, req: &Req) -> Answer {
    let task = find(sim, req)?;
    let start: usize = req.get("start").and_then(|s| s.parse().ok()).unwrap_or(0);
    let limit: usize = req.get("limit").and_then(|s| s.parse().ok()).unwrap_or(50);
    let lines: Vec<&String> = task.log.iter().collect();
    let take = if limit == 0 { usize::MAX } else { limit };
    let page: Vec<Value> =
        lines.iter().enumerate().skip(start).take(take).map(|(i, t)| json!({"n": i + 1, "t": t})).collect();
    if page.is_empty() && start == 0 {
        return Ok(json!([{"n": 1, "t": "no content"}]));
    }
    Ok(Value::Array(page))
}

pub fn index(sim: &Arc<Sim>, req: &Req) -> Answer {
    find(sim, req)?;
    Ok(json!([{"name": "log"}, {"name": "status"}]))
}

pub fn stop(sim: &Arc<Sim>, req: &Req) -> Answer {
    find(sim, req)?;
    // Stopping a simulated task is not modelled: the task runs to its end.
    Ok(Value::Null)
}

pub fn node_tasks(sim: &Arc<Sim>, req: &Req) -> Answer {
    let node = req.node();
    Ok(Value::Array(sim.tasks().iter().filter(|t| t.node == node).map(task_json).collect()))
}

pub fn cluster_tasks(sim: &Arc<Sim>) -> Answer {
    Ok(Value::Array(sim.tasks().iter().map(task_json).collect()))
}
