//! Cluster IP sets (`/cluster/firewall/ipset…`), as pve-firewall
//! `src/PVE/API2/Firewall/IPSet.pm` (ClusterIPSetList, ClusterIPset) answers them, with the
//! round trip through `cluster.fw` that every answer goes through (`src/PVE/Firewall.pm`
//! format_ipsets 3770-3800 writes, generic_fw_config_parser 3499-3609 reads back): names
//! are lower-cased, members come back sorted by their text, blank comments are dropped.
//! VM-level IP sets are not simulated; none ever exists.

use super::Answer;
use super::firewall::{assert_if_modified, comment_of, digest_of, truthy};
use crate::engine::{Sim, SimError};
use crate::http::Req;
use crate::world::{IpSetDef, IpSetMember, World};
use serde_json::{Map, Value, json};
use std::sync::Arc;

pub fn dispatch(sim: &Arc<Sim>, req: &Req, endpoint: &str) -> Answer {
    let mut world = sim.world();
    match endpoint {
        "GET /cluster/firewall/ipset" => Ok(Value::Array(list(&world).0)),
        "POST /cluster/firewall/ipset" => create_ipset(&mut world, req),
        "GET /cluster/firewall/ipset/{name}" => Ok(Value::Array(members_json(set(&mut world, req)?).0)),
        "POST /cluster/firewall/ipset/{name}" => create_ip(&mut world, req),
        "DELETE /cluster/firewall/ipset/{name}" => delete_ipset(&mut world, req),
        "GET /cluster/firewall/ipset/{name}/{cidr}" => read_ip(&mut world, req),
        "PUT /cluster/firewall/ipset/{name}/{cidr}" => update_ip(&mut world, req),
        "DELETE /cluster/firewall/ipset/{name}/{cidr}" => remove_ip(&mut world, req),
        // VM IP sets: none can be created here, so every named one is unknown (IPSet.pm
        // VMIPset load_config, 463-472).
        "GET /nodes/{node}/qemu/{vmid}/firewall/ipset" => Ok(json!([])),
        "POST /nodes/{node}/qemu/{vmid}/firewall/ipset" => {
            Err(SimError::die("VM-level IP sets are not simulated by pve-sim (use a cluster IP set)"))
        }
        _ => Err(no_such_ipset(req)),
    }
}

fn name(req: &Req) -> String {
    req.get("name").unwrap_or_default().to_string()
}

/// `die "no such IPSet '$param->{name}'\n"` (IPSet.pm ClusterIPset load_config, 420-428): a 500.
fn no_such_ipset(req: &Req) -> SimError {
    SimError::die(format!("no such IPSet '{}'", name(req)))
}

fn set<'w>(world: &'w mut World, req: &Req) -> Result<&'w mut IpSetDef, SimError> {
    let name = name(req);
    world.ipsets.get_mut(&name).ok_or_else(|| no_such_ipset(req))
}

/// `GET /cluster/firewall/ipset`: sorted by name, `comment` only when set, and the list's
/// digest on every item (IPSet.pm get_ipset_list, 578-595).
fn list(world: &World) -> (Vec<Value>, String) {
    let items: Vec<Map<String, Value>> = world
        .ipsets
        .iter()
        .map(|(name, set)| {
            let mut item = Map::new();
            item.insert("name".into(), name.clone().into());
            if let Some(comment) = &set.comment {
                item.insert("comment".into(), comment.clone().into());
            }
            item
        })
        .collect();
    with_digest(items)
}

/// Members as `GET …/ipset/{name}` lists them: cidr, comment and nomatch (only when set),
/// digest (IPSet.pm get_ipset, 121-127; Firewall.pm copy_list_with_digest, 1253-1279).
fn members_json(set: &IpSetDef) -> (Vec<Value>, String) {
    with_digest(set.members.iter().map(member_map).collect())
}

fn member_map(member: &IpSetMember) -> Map<String, Value> {
    let mut item = Map::new();
    item.insert("cidr".into(), member.cidr.clone().into());
    if let Some(comment) = &member.comment {
        item.insert("comment".into(), comment.clone().into());
    }
    if member.nomatch {
        item.insert("nomatch".into(), 1.into());
    }
    item
}

fn with_digest(items: Vec<Map<String, Value>>) -> (Vec<Value>, String) {
    let digest = digest_of(&items);
    let list = items
        .into_iter()
        .map(|mut item| {
            item.insert("digest".into(), digest.clone().into());
            Value::Object(item)
        })
        .collect();
    (list, digest)
}

/// `POST /cluster/firewall/ipset` (IPSet.pm BaseIPSetList create_ipset, 669-717).
fn create_ipset(world: &mut World, req: &Req) -> Answer {
    let name = name(req);
    let comment = req.get("comment");
    if let Some(rename) = req.get("rename") {
        assert_if_modified(&list(world).1, req)?;
        if !world.ipsets.contains_key(rename) {
            return Err(SimError::param("name", format!("IPSet '{rename}' does not exist")));
        }
        if world.ipsets.contains_key(&name) && name != rename {
            return Err(SimError::param("name", format!("IPSet '{name}' does already exist")));
        }
        let mut moved = world.ipsets.remove(rename).unwrap_or_default();
        if comment.is_some() {
            moved.comment = comment.and_then(comment_of);
        }
        store(world, &name, moved);
        return Ok(Value::Null);
    }
    // The duplicate check compares the stored (lower-cased) names with the name as given.
    if world.ipsets.contains_key(&name) {
        return Err(SimError::param("name", format!("IPSet '{name}' already exists")));
    }
    store(world, &name, IpSetDef { comment: comment.and_then(comment_of), members: Vec::new() });
    Ok(Value::Null)
}

/// Saves a set under `name` as `cluster.fw` reads it back: `[IPSET <name>]` is lower-cased
/// (Firewall.pm 3499-3501). A mixed-case twin of an existing set is written before it (sorted
/// keys, 3775) and then replaced by it on reading, keeping only its comment if the set has none.
fn store(world: &mut World, name: &str, set: IpSetDef) {
    let key = name.to_ascii_lowercase();
    match world.ipsets.get_mut(&key) {
        Some(existing) if key != name => {
            if existing.comment.is_none() {
                existing.comment = set.comment;
            }
        }
        _ => {
            world.ipsets.insert(key, set);
        }
    }
}

/// `DELETE /cluster/firewall/ipset/{name}` (IPSet.pm delete_ipset, 155-174): a set with
/// members only with `force`. References from rules are not checked.
fn delete_ipset(world: &mut World, req: &Req) -> Answer {
    let set = set(world, req)?;
    if !set.members.is_empty() && !req.flag("force") {
        return Err(SimError::die(format!("IPSet '{}' is not empty", name(req))));
    }
    world.ipsets.remove(&name(req));
    Ok(Value::Null)
}

/// `POST /cluster/firewall/ipset/{name}` (IPSet.pm create_ip, 200-243).
fn create_ip(world: &mut World, req: &Req) -> Answer {
    let set = set(world, req)?;
    let given = req.get("cidr").unwrap_or_default();
    let cidr = match alias_name(given) {
        // resolve_alias dies for an unknown alias (Firewall.pm 3366-3391); pve-sim has none.
        Some(alias) => return Err(SimError::die(format!("no such alias '{alias}'"))),
        None => normalize_cidr(given),
    };
    if set.members.iter().any(|m| m.cidr == cidr) {
        return Err(SimError::param("cidr", format!("address '{cidr}' already exists")));
    }
    if has_zero_prefix(&cidr) {
        return Err(SimError::param("cidr", "a zero prefix is not allowed in ipset entries"));
    }
    let member = IpSetMember {
        cidr,
        comment: req.get("comment").and_then(comment_of),
        nomatch: req.get("nomatch").is_some_and(truthy),
    };
    set.members.push(member);
    set.members.sort_by(|a, b| a.cidr.cmp(&b.cidr));
    Ok(Value::Null)
}

/// `GET …/{cidr}`: the member whose stored text is exactly `cidr`, no normalisation
/// (IPSet.pm read_ip, 270-280).
fn read_ip(world: &mut World, req: &Req) -> Answer {
    let cidr = req.get("cidr").unwrap_or_default().to_string();
    let (list, _) = members_json(set(world, req)?);
    list.into_iter().find(|m| m["cidr"] == cidr.as_str()).ok_or_else(|| SimError::param("cidr", "no such IP/Network"))
}

/// `PUT …/{cidr}`: sets `nomatch` and `comment` to what was sent, absent ones removed
/// (IPSet.pm update_ip, 311-336).
fn update_ip(world: &mut World, req: &Req) -> Answer {
    let cidr = req.get("cidr").unwrap_or_default().to_string();
    let set = set(world, req)?;
    assert_if_modified(&members_json(set).1, req)?;
    let member =
        set.members.iter_mut().find(|m| m.cidr == cidr).ok_or_else(|| SimError::param("cidr", "no such IP/Network"))?;
    member.nomatch = req.get("nomatch").is_some_and(truthy);
    member.comment = req.get("comment").and_then(comment_of);
    Ok(Value::Null)
}

/// `DELETE …/{cidr}`: removes the member whose stored text is exactly `cidr`; one that is
/// not there is no error (IPSet.pm remove_ip, 365-385).
fn remove_ip(world: &mut World, req: &Req) -> Answer {
    let cidr = req.get("cidr").unwrap_or_default().to_string();
    let set = set(world, req)?;
    assert_if_modified(&members_json(set).1, req)?;
    set.members.retain(|m| m.cidr != cidr);
    Ok(Value::Null)
}

/// `(dc/|guest/)?<alias>`: the alias name (IPSet.pm 211-215).
fn alias_name(cidr: &str) -> Option<&str> {
    let bare = cidr.strip_prefix("dc/").or_else(|| cidr.strip_prefix("guest/")).unwrap_or(cidr);
    let mut chars = bare.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && bare.len() >= 2
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    ok.then_some(bare)
}

/// `m!/0+$!` (IPSet.pm 227-228).
fn has_zero_prefix(cidr: &str) -> bool {
    cidr.rsplit_once('/').is_some_and(|(_, p)| !p.is_empty() && p.bytes().all(|b| b == b'0'))
}

/// What create_ip stores: `clean_cidr` clears the host bits and compresses IPv6 (Firewall.pm
/// 102-114; a prefix of `0` or none leaves the text as it is), then `parse_ip_or_cidr` drops
/// `/32` from IPv4 and `/128` from IPv6 (3393-3409). The client crate's `ipset_cidr` is
/// that rule; the tests below pin it to upstream's results.
pub fn normalize_cidr(cidr: &str) -> String {
    agentlab_proxmox::types::ipset_cidr(cidr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_are_stored_as_create_ip_normalises_them() {
        assert_eq!(normalize_cidr("10.0.0.0/8"), "10.0.0.0/8");
        assert_eq!(normalize_cidr("10.1.2.3/8"), "10.0.0.0/8", "host bits are cleared");
        assert_eq!(normalize_cidr("192.168.1.7/32"), "192.168.1.7", "/32 is dropped");
        assert_eq!(normalize_cidr("192.168.1.7"), "192.168.1.7");
        assert_eq!(normalize_cidr("2001:DB8:0:0::1/64"), "2001:db8::/64", "IPv6 is compressed");
        assert_eq!(normalize_cidr("2001:db8::1/128"), "2001:db8::1");
        assert_eq!(normalize_cidr("0.0.0.0/0"), "0.0.0.0/0", "a zero prefix stays, to be refused");
        assert!(has_zero_prefix("0.0.0.0/0") && has_zero_prefix("10.0.0.0/00") && !has_zero_prefix("10.0.0.0/10"));
        assert_eq!(alias_name("dc/office"), Some("office"));
        assert_eq!(alias_name("10.0.0.1"), None);
    }
}
