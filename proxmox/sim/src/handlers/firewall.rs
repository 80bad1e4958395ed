//! Firewall: datacenter options, security groups and their rules, VM options and rules,
//! IP sets. Rules are inserted at position 0 unless `pos` is given, disabled unless
//! `enable=1`.

use super::{Answer, Sim};
use crate::engine::SimError;
use crate::http::Req;
use crate::world::{FirewallRuleEntry, SecurityGroupEntry};
use serde_json::{Map, Value, json};
use std::sync::Arc;

pub async fn dispatch(sim: &Arc<Sim>, req: &Req, endpoint: &str) -> Answer {
    match endpoint {
        "GET /cluster/firewall/options" => Ok(Value::Object(sim.world().cluster_firewall.clone())),
        "PUT /cluster/firewall/options" => set_options(&mut sim.world().cluster_firewall, req),
        "GET /cluster/firewall/groups" => list_groups(sim),
        "POST /cluster/firewall/groups" => create_group(sim, req),
        "GET /cluster/firewall/groups/{group}" => with_group(sim, req, |g| Ok(rules_json(&g.rules))),
        "POST /cluster/firewall/groups/{group}" => {
            let rule = rule_from(req, true)?;
            with_group(sim, req, |g| insert_rule(&mut g.rules, rule, req))
        }
        "DELETE /cluster/firewall/groups/{group}" => delete_group(sim, req),
        "GET /cluster/firewall/groups/{group}/{pos}" => with_group(sim, req, |g| rule_at(&g.rules, req)),
        "PUT /cluster/firewall/groups/{group}/{pos}" => with_group(sim, req, |g| update_rule(&mut g.rules, req)),
        "DELETE /cluster/firewall/groups/{group}/{pos}" => with_group(sim, req, |g| delete_rule(&mut g.rules, req)),
        "GET /nodes/{node}/qemu/{vmid}/firewall" => {
            Ok(json!([{"name": "options"}, {"name": "rules"}, {"name": "ipset"}]))
        }
        // VM firewall options can be written for a VMID without config (no existence check).
        "GET /nodes/{node}/qemu/{vmid}/firewall/options" => Ok(sim
            .world()
            .vms
            .get(&req.vmid())
            .map(|vm| Value::Object(vm.firewall_options.clone()))
            .unwrap_or_else(|| json!({}))),
        "PUT /nodes/{node}/qemu/{vmid}/firewall/options" => {
            let mut world = sim.world();
            match world.vms.get_mut(&req.vmid()) {
                Some(vm) => set_options(&mut vm.firewall_options, req),
                None => Ok(Value::Null),
            }
        }
        "GET /nodes/{node}/qemu/{vmid}/firewall/rules" => {
            Ok(sim.world().vms.get(&req.vmid()).map(|vm| rules_json(&vm.firewall_rules)).unwrap_or_else(|| json!([])))
        }
        "POST /nodes/{node}/qemu/{vmid}/firewall/rules" => {
            let rule = rule_from(req, false)?;
            with_vm_rules(sim, req, |rules| insert_rule(rules, rule, req))
        }
        "GET /nodes/{node}/qemu/{vmid}/firewall/rules/{pos}" => with_vm_rules(sim, req, |rules| rule_at(rules, req)),
        "PUT /nodes/{node}/qemu/{vmid}/firewall/rules/{pos}" => {
            with_vm_rules(sim, req, |rules| update_rule(rules, req))
        }
        "DELETE /nodes/{node}/qemu/{vmid}/firewall/rules/{pos}" => {
            with_vm_rules(sim, req, |rules| delete_rule(rules, req))
        }
        other if other.contains("/ipset") => Err(SimError::die("IP sets are not simulated by pve-sim")),
        other => Err(SimError::status(501, format!("Method '{other}' not implemented"))),
    }
}

fn set_options(options: &mut Map<String, Value>, req: &Req) -> Answer {
    for (key, values) in &req.params.values {
        if matches!(key.as_str(), "node" | "vmid" | "digest" | "delete") {
            continue;
        }
        if let Some(v) = values.first() {
            let value = v.parse::<i64>().map(Value::from).unwrap_or_else(|_| Value::String(v.clone()));
            options.insert(key.clone(), value);
        }
    }
    if let Some(delete) = req.get("delete") {
        for key in delete.split([',', ';', ' ']).filter(|k| !k.is_empty()) {
            if options.remove(key).is_none() {
                return Err(SimError::param("delete", format!("no such option '{key}'")));
            }
        }
    }
    Ok(Value::Null)
}

fn list_groups(sim: &Arc<Sim>) -> Answer {
    let world = sim.world();
    Ok(Value::Array(
        world.groups.iter().map(|(name, g)| json!({"group": name, "comment": g.comment, "digest": "0"})).collect(),
    ))
}

fn create_group(sim: &Arc<Sim>, req: &Req) -> Answer {
    let name = req.get("group").unwrap_or_default().to_string();
    let mut world = sim.world();
    if world.groups.contains_key(&name) {
        return Err(SimError::param("group", format!("Security group '{name}' already exists")));
    }
    world
        .groups
        .insert(name, SecurityGroupEntry { comment: req.get("comment").map(str::to_string), rules: Vec::new() });
    Ok(Value::Null)
}

fn delete_group(sim: &Arc<Sim>, req: &Req) -> Answer {
    let name = req.get("group").unwrap_or_default().to_string();
    let mut world = sim.world();
    match world.groups.get(&name) {
        None => Err(SimError::die(format!("no such security group '{name}'"))),
        Some(g) if !g.rules.is_empty() => Err(SimError::die(format!("Security group '{name}' is not empty"))),
        Some(_) => {
            world.groups.remove(&name);
            Ok(Value::Null)
        }
    }
}

fn with_group(sim: &Arc<Sim>, req: &Req, f: impl FnOnce(&mut SecurityGroupEntry) -> Answer) -> Answer {
    let name = req.get("group").unwrap_or_default().to_string();
    let mut world = sim.world();
    let group = world.groups.get_mut(&name).ok_or_else(|| SimError::die(format!("no such security group '{name}'")))?;
    f(group)
}

fn with_vm_rules(sim: &Arc<Sim>, req: &Req, f: impl FnOnce(&mut Vec<FirewallRuleEntry>) -> Answer) -> Answer {
    let mut world = sim.world();
    let vm = world.vms.get_mut(&req.vmid()).ok_or_else(|| super::vm_missing(req.node(), req.vmid()))?;
    f(&mut vm.firewall_rules)
}

fn rule_from(req: &Req, in_group: bool) -> Result<FirewallRuleEntry, SimError> {
    let kind = req.get("type").unwrap_or_default().to_string();
    if in_group && kind == "group" {
        return Err(SimError::param("type", "security groups not allowed"));
    }
    let action = req.get("action").unwrap_or_default().to_string();
    if kind != "group" && !matches!(action.as_str(), "ACCEPT" | "DROP" | "REJECT") {
        return Err(SimError::param("action", format!("unknown action '{action}'")));
    }
    let opt = |k: &str| req.get(k).map(str::to_string);
    Ok(FirewallRuleEntry {
        kind,
        action,
        enable: u8::from(req.flag("enable")),
        source: opt("source"),
        dest: opt("dest"),
        proto: opt("proto"),
        dport: opt("dport"),
        sport: opt("sport"),
        iface: opt("iface"),
        comment: opt("comment"),
        log: opt("log"),
        macro_name: opt("macro"),
    })
}

fn insert_rule(rules: &mut Vec<FirewallRuleEntry>, rule: FirewallRuleEntry, req: &Req) -> Answer {
    let pos: usize = req.get("pos").and_then(|p| p.parse().ok()).unwrap_or(0).min(rules.len());
    rules.insert(pos, rule);
    Ok(Value::Null)
}

fn rules_json(rules: &[FirewallRuleEntry]) -> Value {
    Value::Array(
        rules
            .iter()
            .enumerate()
            .map(|(pos, r)| {
                let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
                v["pos"] = pos.into();
                v
            })
            .collect(),
    )
}

fn position(rules: &[FirewallRuleEntry], req: &Req) -> Result<usize, SimError> {
    let pos: usize = req.get("pos").and_then(|p| p.parse().ok()).unwrap_or(usize::MAX);
    if pos < rules.len() {
        Ok(pos)
    } else {
        Err(SimError::die(format!("no rule at position {}", req.get("pos").unwrap_or("?"))))
    }
}

fn rule_at(rules: &[FirewallRuleEntry], req: &Req) -> Answer {
    let pos = position(rules, req)?;
    let mut v = serde_json::to_value(&rules[pos]).unwrap_or(Value::Null);
    v["pos"] = pos.into();
    Ok(v)
}

fn update_rule(rules: &mut [FirewallRuleEntry], req: &Req) -> Answer {
    let pos = position(rules, req)?;
    if let Some(enable) = req.get("enable") {
        rules[pos].enable = u8::from(enable == "1");
    }
    if let Some(comment) = req.get("comment") {
        rules[pos].comment = Some(comment.to_string());
    }
    Ok(Value::Null)
}

fn delete_rule(rules: &mut Vec<FirewallRuleEntry>, req: &Req) -> Answer {
    let pos = position(rules, req)?;
    rules.remove(pos);
    Ok(Value::Null)
}
