//! Firewall: datacenter options, security groups and their rules, VM options and rules, the
//! host firewall of each node (pve-firewall `src/PVE/API2/Firewall/Host.pm`), and cluster IP
//! sets (`ipset.rs`). Rules are checked as `verify_rule` does (`src/PVE/Firewall.pm`
//! 1740-1933) and always inserted at position 0, disabled unless `enable` is given
//! (`src/PVE/API2/Firewall/Rules.pm` create_rule, 301-308). Every answer is what Proxmox
//! reads back from the `.fw` file it wrote (format_rules, Firewall.pm 3698-3736).

use super::{Answer, Sim, ipset};
use crate::contract::Contract;
use crate::engine::SimError;
use crate::http::Req;
use crate::world::{FirewallRuleEntry, SecurityGroupEntry, World};
use serde_json::{Map, Value, json};
use std::sync::Arc;

/// Where a rule list lives; `rule_env` in Firewall.pm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    Group,
    Vm,
    Host,
}

impl Scope {
    fn env(self) -> &'static str {
        match self {
            Scope::Group => "group",
            Scope::Vm => "vm",
            Scope::Host => "host",
        }
    }

    /// `$rule_env_direction_lookup` (Firewall.pm 1730-1737).
    fn types(self) -> &'static [&'static str] {
        match self {
            Scope::Group => &["in", "out", "forward"],
            Scope::Vm => &["in", "out", "group"],
            Scope::Host => &["in", "out", "forward", "group"],
        }
    }

    /// `$rule_env_iface_lookup` (Firewall.pm 1721-1728).
    fn allows_iface(self) -> bool {
        self != Scope::Group
    }
}

pub async fn dispatch(sim: &Arc<Sim>, req: &Req, endpoint: &str) -> Answer {
    let scope = if endpoint.contains("/cluster/firewall/groups/{group}") {
        Scope::Group
    } else if endpoint.contains("/qemu/{vmid}/") {
        Scope::Vm
    } else {
        Scope::Host
    };
    match endpoint {
        "GET /cluster/firewall/options" => Ok(Value::Object(sim.world().cluster_firewall.clone())),
        "PUT /cluster/firewall/options" => set_options(&mut sim.world().cluster_firewall, req, Enable::Cluster),
        "GET /cluster/firewall/groups" => list_groups(sim),
        "POST /cluster/firewall/groups" => create_group(sim, req),
        "DELETE /cluster/firewall/groups/{group}" => delete_group(sim, req),
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
                Some(vm) => set_options(&mut vm.firewall_options, req, Enable::Flag),
                None => Ok(Value::Null),
            }
        }
        // Host.pm index, 40-48.
        "GET /nodes/{node}/firewall" => Ok(json!([{"name": "rules"}, {"name": "options"}, {"name": "log"}])),
        // Host.pm get_options, 83-90: the options of host.fw and their digest.
        "GET /nodes/{node}/firewall/options" => {
            let world = sim.world();
            let options = world.host_firewall.get(req.node()).map(|h| h.options.clone()).unwrap_or_default();
            let digest = digest_of(std::slice::from_ref(&options));
            let mut answer = options;
            answer.insert("digest".into(), digest.into());
            Ok(Value::Object(answer))
        }
        // Host.pm set_options, 117-153.
        "PUT /nodes/{node}/firewall/options" => {
            let mut world = sim.world();
            let host = world.host_firewall.entry(req.node().to_string()).or_default();
            assert_if_modified(&digest_of(std::slice::from_ref(&host.options)), req)?;
            set_options(&mut host.options, req, Enable::Flag)
        }
        "GET /cluster/firewall/groups/{group}"
        | "GET /nodes/{node}/qemu/{vmid}/firewall/rules"
        | "GET /nodes/{node}/firewall/rules" => list_rules(sim, req, scope),
        "POST /cluster/firewall/groups/{group}"
        | "POST /nodes/{node}/qemu/{vmid}/firewall/rules"
        | "POST /nodes/{node}/firewall/rules" => create_rule(sim, req, scope),
        "GET /cluster/firewall/groups/{group}/{pos}"
        | "GET /nodes/{node}/qemu/{vmid}/firewall/rules/{pos}"
        | "GET /nodes/{node}/firewall/rules/{pos}" => get_rule(sim, req, scope),
        "PUT /cluster/firewall/groups/{group}/{pos}"
        | "PUT /nodes/{node}/qemu/{vmid}/firewall/rules/{pos}"
        | "PUT /nodes/{node}/firewall/rules/{pos}" => update_rule(sim, req, scope),
        "DELETE /cluster/firewall/groups/{group}/{pos}"
        | "DELETE /nodes/{node}/qemu/{vmid}/firewall/rules/{pos}"
        | "DELETE /nodes/{node}/firewall/rules/{pos}" => delete_rule(sim, req, scope),
        other if other.contains("/ipset") => ipset::dispatch(sim, req, other),
        other => Err(SimError::status(501, format!("Method '{other}' not implemented"))),
    }
}

/// How an options PUT treats `enable`.
enum Enable {
    /// Cluster.pm set_options, 152-154: a value above 1 becomes the current time.
    Cluster,
    /// VM.pm 147-149, Host.pm 139-141: stored as 0 or 1.
    Flag,
}

/// Options PUT (Cluster.pm 144-160, VM.pm 139-156, Host.pm 131-146): `delete` first, refused
/// only for a key that is not an option of the endpoint; then the options given.
fn set_options(options: &mut Map<String, Value>, req: &Req, enable: Enable) -> Answer {
    let known: Vec<&str> = Contract::get()
        .endpoints
        .iter()
        .find(|e| e.id == req.endpoint)
        .map(|e| {
            e.parameters
                .keys()
                .map(String::as_str)
                .filter(|k| !matches!(*k, "node" | "vmid" | "digest" | "delete"))
                .collect()
        })
        .unwrap_or_default();
    if let Some(delete) = req.get("delete") {
        for key in split_list(delete) {
            if !known.contains(&key) {
                return Err(SimError::param("delete", format!("no such option '{key}'")));
            }
            options.remove(key);
        }
    }
    for (key, values) in &req.params.values {
        if !known.contains(&key.as_str()) {
            continue;
        }
        if let Some(v) = values.first() {
            let mut value = v.parse::<i64>().map(Value::from).unwrap_or_else(|_| Value::String(v.clone()));
            if key == "enable" {
                let n = value.as_i64().unwrap_or(0);
                value = match enable {
                    Enable::Flag => Value::from(i64::from(n != 0)),
                    Enable::Cluster if n > 1 => Value::from(unix_now()),
                    Enable::Cluster => value,
                };
            }
            options.insert(key.clone(), value);
        }
    }
    Ok(Value::Null)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// `PVE::Tools::split_list`: `,`, `;`, whitespace and NUL separate.
fn split_list(text: &str) -> impl Iterator<Item = &str> {
    text.split([',', ';', ' ', '\t', '\n', '\0']).filter(|k| !k.is_empty())
}

/// Perl truth of a parameter: everything but "" and "0".
pub fn truthy(value: &str) -> bool {
    !matches!(value, "" | "0")
}

/// A comment as the `.fw` file gives it back: `# <text>` trimmed, and dropped when blank
/// (written only if `$comment !~ m/^\s*$/`, read with `s/#\s*(.*?)\s*$//`; Firewall.pm
/// 3727-3728, 3165-3167, 3564-3565) or false to Perl.
pub fn comment_of(text: &str) -> Option<String> {
    let trimmed = text.trim();
    truthy(trimmed).then(|| trimmed.to_string())
}

/// A stand-in for `copy_list_with_digest`/`copy_opject_with_digest` (Firewall.pm 1233-1279):
/// a hash over every `key:value` of every item, keys sorted. Any stable hash serves: clients
/// only send it back.
pub fn digest_of(items: &[Map<String, Value>]) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for item in items {
        let mut keys: Vec<&String> = item.keys().collect();
        keys.sort();
        for key in keys {
            let value = match &item[key] {
                Value::String(s) => s.clone(),
                Value::Null => continue,
                other => other.to_string(),
            };
            hasher.update(format!("{key}:{value}\n").as_bytes());
        }
    }
    hasher.finalize().iter().take(20).map(|b| format!("{b:02x}")).collect()
}

/// `PVE::Tools::assert_if_modified` (pve-common `src/PVE/Tools.pm` 868-874).
pub fn assert_if_modified(current: &str, req: &Req) -> Result<(), SimError> {
    match req.get("digest") {
        Some(given) if !given.is_empty() && given != current => {
            Err(SimError::die("detected modified configuration - file changed by other user? Try again."))
        }
        _ => Ok(()),
    }
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

/// The rule list of the request (load_config in Rules.pm: GroupRules 507-515, HostRules
/// 627-635, VMRules 671-679). A node's host.fw starts empty.
fn rules_of<'w>(world: &'w mut World, req: &Req, scope: Scope) -> Result<&'w mut Vec<FirewallRuleEntry>, SimError> {
    match scope {
        Scope::Group => {
            let name = req.get("group").unwrap_or_default();
            world
                .groups
                .get_mut(name)
                .map(|g| &mut g.rules)
                .ok_or_else(|| SimError::die(format!("no such security group '{name}'")))
        }
        Scope::Vm => world
            .vms
            .get_mut(&req.vmid())
            .map(|vm| &mut vm.firewall_rules)
            .ok_or_else(|| super::vm_missing(req.node(), req.vmid())),
        Scope::Host => Ok(&mut world.host_firewall.entry(req.node().to_string()).or_default().rules),
    }
}

fn rule_map(rule: &FirewallRuleEntry) -> Map<String, Value> {
    match serde_json::to_value(rule) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

/// `GET` of a rule list: every rule with its `pos` and the list's digest (Rules.pm
/// get_rules, 194-203).
fn rules_json(rules: &[FirewallRuleEntry]) -> (Vec<Value>, String) {
    let maps: Vec<Map<String, Value>> = rules.iter().map(rule_map).collect();
    let digest = digest_of(&maps);
    let list = maps
        .into_iter()
        .enumerate()
        .map(|(pos, mut m)| {
            m.insert("pos".into(), pos.into());
            m.insert("digest".into(), digest.clone().into());
            Value::Object(m)
        })
        .collect();
    (list, digest)
}

fn list_rules(sim: &Arc<Sim>, req: &Req, scope: Scope) -> Answer {
    let mut world = sim.world();
    if scope == Scope::Host && !world.host_firewall.contains_key(req.node()) {
        return Ok(json!([]));
    }
    Ok(Value::Array(rules_json(rules_of(&mut world, req, scope)?).0))
}

/// `die "no rule at position $param->{pos}\n"` (Rules.pm 241, 372-373, 461-462).
fn position(rules: &[FirewallRuleEntry], req: &Req) -> Result<usize, SimError> {
    let pos: usize = req.get("pos").and_then(|p| p.parse().ok()).unwrap_or(usize::MAX);
    if pos < rules.len() {
        Ok(pos)
    } else {
        Err(SimError::die(format!("no rule at position {}", req.get("pos").unwrap_or("?"))))
    }
}

fn get_rule(sim: &Arc<Sim>, req: &Req, scope: Scope) -> Answer {
    let mut world = sim.world();
    let rules = rules_of(&mut world, req, scope)?;
    let pos = position(rules, req)?;
    Ok(rules_json(rules).0.swap_remove(pos))
}

/// Rules.pm create_rule, 285-310: load (unknown group → 500), `copy_rule_data`,
/// `verify_rule`, `enable` 0 unless given, `unshift` (any `pos` is ignored).
fn create_rule(sim: &Arc<Sim>, req: &Req, scope: Scope) -> Answer {
    let mut world = sim.world();
    rules_of(&mut world, req, scope)?;
    let mut rule = FirewallRuleEntry {
        kind: String::new(),
        action: String::new(),
        enable: 0,
        source: None,
        dest: None,
        proto: None,
        dport: None,
        sport: None,
        iface: None,
        icmp_type: None,
        comment: None,
        log: None,
        macro_name: None,
        ipversion: None,
    };
    copy_rule_data(&mut rule, req);
    verify_rule(&world, &mut rule, scope)?;
    rules_of(&mut world, req, scope)?.insert(0, stored(rule));
    Ok(Value::Null)
}

/// Rules.pm update_rule, 367-413: digest, position, then either `moveto` or
/// `copy_rule_data` + `delete` + `verify_rule`; nothing is saved if verification fails.
fn update_rule(sim: &Arc<Sim>, req: &Req, scope: Scope) -> Answer {
    let mut world = sim.world();
    let rules = rules_of(&mut world, req, scope)?;
    assert_if_modified(&rules_json(rules).1, req)?;
    let pos = position(rules, req)?;
    if let Some(moveto) = req.get("moveto").and_then(|m| m.parse::<usize>().ok())
        && moveto != pos
    {
        let rule = rules.remove(pos);
        // Inserted before the rule that was at `moveto` (after removal, one less when it
        // came after `pos`); at the end when `moveto` is past it.
        let at = if moveto > pos { moveto - 1 } else { moveto };
        rules.insert(at.min(rules.len()), rule);
        return Ok(Value::Null);
    }
    let mut rule = rules[pos].clone();
    copy_rule_data(&mut rule, req);
    if let Some(delete) = req.get("delete") {
        delete_rule_properties(&mut rule, delete)?;
    }
    verify_rule(&world, &mut rule, scope)?;
    rules_of(&mut world, req, scope)?[pos] = stored(rule);
    Ok(Value::Null)
}

fn delete_rule(sim: &Arc<Sim>, req: &Req, scope: Scope) -> Answer {
    let mut world = sim.world();
    let rules = rules_of(&mut world, req, scope)?;
    assert_if_modified(&rules_json(rules).1, req)?;
    let pos = position(rules, req)?;
    rules.remove(pos);
    Ok(Value::Null)
}

/// The text properties of a rule (`$rule_properties`, Firewall.pm 1544-1634, less `enable`,
/// `pos` and `digest`).
fn text_field<'r>(rule: &'r mut FirewallRuleEntry, key: &str) -> Option<&'r mut Option<String>> {
    Some(match key {
        "source" => &mut rule.source,
        "dest" => &mut rule.dest,
        "proto" => &mut rule.proto,
        "dport" => &mut rule.dport,
        "sport" => &mut rule.sport,
        "iface" => &mut rule.iface,
        "icmp-type" => &mut rule.icmp_type,
        "comment" => &mut rule.comment,
        "log" => &mut rule.log,
        "macro" => &mut rule.macro_name,
        _ => return None,
    })
}

const RULE_PROPERTIES: [&str; 15] = [
    "pos",
    "digest",
    "type",
    "action",
    "macro",
    "iface",
    "source",
    "dest",
    "proto",
    "enable",
    "log",
    "sport",
    "dport",
    "comment",
    "icmp-type",
];

/// `copy_rule_data` (Firewall.pm 1937-1951): every rule property sent is copied; `''` and
/// `-` remove it.
fn copy_rule_data(rule: &mut FirewallRuleEntry, req: &Req) {
    for key in RULE_PROPERTIES {
        let Some(value) = req.params.first(key) else { continue };
        let value = (!matches!(value, "" | "-")).then(|| value.to_string());
        match key {
            "type" => rule.kind = value.unwrap_or_default(),
            "action" => rule.action = value.unwrap_or_default(),
            // An absent `enable` is written without `|` and read back as 1 (3705, 3171).
            "enable" => rule.enable = u8::from(value.is_none_or(|v| v.parse::<i64>() != Ok(0))),
            other => {
                if let Some(field) = text_field(rule, other) {
                    *field = value;
                }
            }
        }
    }
}

/// `delete_rule_properties` (Firewall.pm 1648-1660).
fn delete_rule_properties(rule: &mut FirewallRuleEntry, delete: &str) -> Result<(), SimError> {
    for key in split_list(delete) {
        if !RULE_PROPERTIES.contains(&key) {
            return Err(SimError::param("delete", format!("no such property ('{key}')")));
        }
        if matches!(key, "type" | "action") {
            return Err(SimError::param("delete", format!("unable to delete required property '{key}'")));
        }
        if key == "enable" {
            rule.enable = 1;
        } else if let Some(field) = text_field(rule, key) {
            *field = None;
        }
    }
    Ok(())
}

/// The rule as the `.fw` file gives it back (format_rules 3698-3736, parse_fw_rule
/// 3157-3230): a `group` rule keeps only its group, `iface` and comment; blank comments go.
fn stored(mut rule: FirewallRuleEntry) -> FirewallRuleEntry {
    if rule.kind == "group" {
        rule.source = None;
        rule.dest = None;
        rule.proto = None;
        rule.dport = None;
        rule.sport = None;
        rule.log = None;
        rule.icmp_type = None;
        rule.macro_name = None;
        rule.ipversion = None;
    }
    rule.comment = rule.comment.as_deref().and_then(comment_of);
    rule
}

/// `$PROTOCOLS_WITH_PORTS` (Firewall.pm 61-72).
const PROTOCOLS_WITH_PORTS: [&str; 10] = ["udp", "17", "udplite", "136", "tcp", "6", "dccp", "33", "sctp", "132"];

/// `$pve_fw_macros` and `$pve_ipv6fw_macros` (Firewall.pm 212-584); a macro is matched
/// case-insensitively and stored under this name (1847-1853).
const MACROS: &[&str] = &[
    "Amanda",
    "Auth",
    "BGP",
    "BitTorrent",
    "BitTorrent32",
    "Ceph",
    "CVS",
    "Citrix",
    "DAAP",
    "DCC",
    "DHCPfwd",
    "DHCPv6",
    "DNS",
    "Distcc",
    "FTP",
    "Finger",
    "GNUnet",
    "GRE",
    "Git",
    "HKP",
    "HTTP",
    "HTTPS",
    "ICPV2",
    "ICQ",
    "IMAP",
    "IMAPS",
    "IPIP",
    "IPsec",
    "IPsecah",
    "IPsecnat",
    "IRC",
    "Jetdirect",
    "L2TP",
    "LDAP",
    "LDAPS",
    "MSNP",
    "MSSQL",
    "Mail",
    "MDNS",
    "Munin",
    "MySQL",
    "NNTP",
    "NNTPS",
    "NTP",
    "NeighborDiscovery",
    "OSPF",
    "OpenVPN",
    "PCA",
    "PMG",
    "POP3",
    "POP3S",
    "PPtP",
    "Ping",
    "PostgreSQL",
    "Printer",
    "RDP",
    "RIP",
    "RNDC",
    "Razor",
    "Rdate",
    "Rsync",
    "SANE",
    "SMB",
    "SMBswat",
    "SMTP",
    "SMTPS",
    "SNMP",
    "SPAMD",
    "SSH",
    "SVN",
    "SixXS",
    "SPICEproxy",
    "Squid",
    "Submission",
    "Syslog",
    "TFTP",
    "Telnet",
    "Telnets",
    "Time",
    "Trcrt",
    "VNC",
    "VNCL",
    "Web",
    "Webcache",
    "Webmin",
    "Whois",
];

fn is_name(text: &str) -> bool {
    let mut chars = text.chars();
    text.len() >= 2
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The IP version a `pve-fw-addr-spec` value fixes (parse_address_list, Firewall.pm
/// 1072-1110): none for an IP set or alias, else that of its addresses.
fn address_version(spec: &str) -> Option<u8> {
    if spec.starts_with('+') {
        return None;
    }
    let first = spec.split([',', '-', '/']).next().unwrap_or(spec);
    match first.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => Some(4),
        Ok(std::net::IpAddr::V6(_)) => Some(6),
        Err(_) => None,
    }
}

/// `verify_rule` (Firewall.pm 1740-1933) without `$noerr`: the first failure is raised as a
/// 400 on its parameter, in upstream's order.
fn verify_rule(world: &World, rule: &mut FirewallRuleEntry, scope: Scope) -> Result<(), SimError> {
    let env = scope.env();
    let fail = |param: &str, msg: String| Err(SimError::param(param, msg));
    if rule.kind.is_empty() {
        return fail("type", "missing property".into());
    }
    if rule.action.is_empty() {
        return fail("action", "missing property".into());
    }
    let (kind, action) = (rule.kind.as_str(), rule.action.as_str());
    if !scope.types().contains(&kind) {
        return fail("type", format!("invalid rule type '{kind}' for rule_env '{env}'"));
    }
    match kind {
        "in" | "out" | "forward" => {
            if kind == "forward" && action == "REJECT" {
                return fail("action", "cannot define REJECT rules on forward chain".into());
            }
            if !matches!(action, "ACCEPT" | "DROP" | "REJECT") {
                return fail("action", format!("unknown action '{action}'"));
            }
        }
        // `security groups not allowed` (1826-1827) is unreachable: a group's rule_env
        // does not list the type `group`.
        _ if !is_name(action) => return fail("action", "invalid characters in security group name".into()),
        _ => {}
    }
    if let Some(iface) = &rule.iface {
        if !scope.allows_iface() {
            return fail("type", "parameter -i not allowed for this rule type".into());
        }
        if scope == Scope::Vm
            && !iface.strip_prefix("net").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        {
            return fail("iface", "value does not match the regex pattern 'net\\d+'".into());
        }
    }
    if let Some(name) = &rule.macro_name {
        match MACROS.iter().find(|m| m.eq_ignore_ascii_case(name)) {
            Some(preferred) => rule.macro_name = Some(preferred.to_string()),
            None => return fail("macro", format!("unknown macro '{name}'")),
        }
    }
    let mut ipversion: Option<u8> = None;
    let proto = rule.proto.clone().unwrap_or_default();
    let is_icmp = matches!(proto.as_str(), "icmp" | "icmpv6" | "ipv6-icmp");
    match proto.as_str() {
        "icmp" => ipversion = Some(4),
        "icmpv6" | "ipv6-icmp" => ipversion = Some(6),
        _ => {}
    }
    let with_ports = PROTOCOLS_WITH_PORTS.contains(&proto.as_str());
    if rule.dport.is_some() {
        if proto.is_empty() {
            return fail("proto", "missing property - 'dport' requires this property".into());
        }
        if !with_ports && !is_icmp {
            return fail("dport", format!("protocol '{proto}' does not support ports"));
        }
    }
    if rule.icmp_type.is_some() {
        if !is_icmp {
            return fail("proto", "missing property - 'icmp-type' requires this property".into());
        }
        if rule.dport.is_some() {
            return fail("icmp-type", "'icmp-type' cannot be specified together with 'dport'".into());
        }
    }
    if rule.sport.is_some() {
        if proto.is_empty() {
            return fail("proto", "missing property - 'sport' requires this property".into());
        }
        if !with_ports {
            return fail("sport", format!("protocol '{proto}' does not support ports"));
        }
    }
    for (param, value) in [("source", rule.source.clone()), ("dest", rule.dest.clone())] {
        let Some(value) = value else { continue };
        if let Some(v) = address_version(&value) {
            if ipversion.is_some_and(|known| known != v) {
                return fail(param, "detected mixed ipv4/ipv6 addresses in rule".into());
            }
            ipversion = Some(v);
        }
        check_ipset_or_alias(world, param, &value)?;
    }
    rule.ipversion = ipversion;
    Ok(())
}

/// `$check_ipset_or_alias_property` (Firewall.pm 1770-1806): `+name` (optionally `+dc/`,
/// `+guest/`, `+sdn/`) must be an IP set of the cluster (or the VM's, or SDN's: pve-sim has
/// neither), matched as written; an alias must exist (pve-sim has none).
fn check_ipset_or_alias(world: &World, param: &str, value: &str) -> Result<(), SimError> {
    if let Some(set) = value.strip_prefix('+') {
        let bare = ["guest/", "dc/", "sdn/"].iter().find_map(|p| set.strip_prefix(p)).unwrap_or(set);
        if !is_name(bare) {
            return Err(SimError::param(param, format!("invalid ipset name '{value}'")));
        }
        if !world.ipsets.contains_key(bare) {
            return Err(SimError::param(param, format!("no such ipset '{bare}'")));
        }
        return Ok(());
    }
    let bare = ["guest/", "dc/"].iter().find_map(|p| value.strip_prefix(p)).unwrap_or(value);
    if is_name(bare) {
        return Err(SimError::param(param, format!("no such alias '{value}'")));
    }
    Ok(())
}
