//! Text output for people: tables and summaries. `--json` bypasses all of this.

use agentlab_model::protocol::{
    DebugActorsResponse, EventView, PoolStatus, ProfilesResponse, SandboxView, SandboxesResponse,
};
use comfy_table::{Table, presets::NOTHING};

fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table.load_style(NOTHING);
    table.set_header(header.iter().copied());
    table
}

fn or_dash(value: Option<&str>) -> String {
    value.filter(|v| !v.is_empty()).unwrap_or("-").to_string()
}

pub fn profiles(p: &ProfilesResponse) -> String {
    let mut t = table(&["NAME", "TEMPLATE", "MODE", "CORES", "MEMORY MB", "TTL MIN", "KEEPALIVE"]);
    for profile in &p.profiles {
        t.add_row(vec![
            profile.name.clone(),
            profile.template_vmid.to_string(),
            profile.network_mode.as_str().to_string(),
            profile.cores.to_string(),
            profile.memory_mb.to_string(),
            profile.ttl_minutes_default.map_or_else(|| "-".into(), |t| t.to_string()),
            profile.keepalive_default.to_string(),
        ]);
    }
    t.to_string()
}

pub fn pool(p: &PoolStatus) -> String {
    let mut out = format!(
        "{} pooled sandboxes (at most {} in all pools, {} provisioning at once)\n",
        p.total, p.max_total, p.refill_concurrency
    );
    if p.profiles.is_empty() {
        out.push_str("no profile has a pool (set `pool.size` in a profile)\n");
        return out;
    }
    let mut t = table(&["PROFILE", "SIZE", "READY", "PROVISIONING", "DRAINING", "VMIDS"]);
    for pool in &p.profiles {
        let vmids: Vec<String> = pool.vmids.iter().map(ToString::to_string).collect();
        t.add_row(vec![
            pool.profile.clone(),
            pool.size.to_string(),
            pool.ready.to_string(),
            pool.provisioning.to_string(),
            pool.draining.to_string(),
            if vmids.is_empty() { "-".into() } else { vmids.join(",") },
        ]);
    }
    out.push_str(&t.to_string());
    out
}

pub fn sandboxes(s: &SandboxesResponse) -> String {
    if s.sandboxes.is_empty() {
        return "no sandboxes\n".to_string();
    }
    let mut t = table(&["VMID", "NAME", "PROFILE", "STATE", "IP", "LEASE"]);
    for sbx in &s.sandboxes {
        t.add_row(vec![
            sbx.vmid.to_string(),
            sbx.name.clone(),
            sbx.profile.clone(),
            if sbx.pooled { format!("{} (pooled)", sbx.state) } else { sbx.state.to_string() },
            or_dash(sbx.ip.as_deref()),
            or_dash(sbx.lease_expires_at.as_deref()),
        ]);
    }
    t.to_string()
}

pub fn sandbox(s: &SandboxView) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<12} {v}\n"));
    line("vmid", s.vmid.to_string());
    line("name", s.name.clone());
    line("profile", s.profile.clone());
    line("state", s.state.to_string());
    line("ip", or_dash(s.ip.as_deref()));
    line("node", or_dash(s.node.as_deref()));
    line("network", format!("{} (group {})", s.network.mode.as_str(), s.network.firewall_group));
    line("resources", format!("{} cores, {} MiB", s.resources.cores, s.resources.memory_mb));
    line("keepalive", s.keepalive.to_string());
    if s.pooled {
        line("pool", "in the warm pool: the next matching `sandbox new` or `job run` takes it".into());
    }
    line("lease", or_dash(s.lease_expires_at.as_deref()));
    line("tags", if s.tags.is_empty() { "-".into() } else { s.tags.join(",") });
    line("job", or_dash(s.job_id.as_deref()));
    line("workspace", or_dash(s.workspace_id.as_deref()));
    if let Some(error) = &s.error {
        line("error", error.clone());
    }
    if !s.pending_changes.is_empty() {
        line("pending", format!("{} (apply at the next start of the VM)", s.pending_changes.join(", ")));
    }
    line("created", s.created_at.clone());
    line("updated", s.updated_at.clone());
    out.push_str(&egress(&s.egress_drops, ""));
    out
}

/// The egress record: what the host ruleset refused this sandbox, most attempts first.
pub fn egress(drops: &[agentlab_model::protocol::EgressDrop], indent: &str) -> String {
    if drops.is_empty() {
        return String::new();
    }
    let mut out = format!("{indent}blocked egress (host ruleset drops):\n");
    for d in drops {
        let target = if d.port == 0 { d.destination.clone() } else { format!("{}:{}", d.destination, d.port) };
        out.push_str(&format!(
            "{indent}  {:<24} {:<5} {:>6} attempts  last {}\n",
            target, d.protocol, d.packets, d.last_seen
        ));
    }
    out
}

pub fn created(c: &agentlab_model::protocol::CreateSandboxResponse) -> String {
    let mut out = String::new();
    for t in &c.timings {
        out.push_str(&format!("  {:<10} {:>7} ms\n", t.phase, t.ms));
    }
    out.push_str(&format!(
        "sandbox {} ({}) {} at {}\n",
        c.sandbox.vmid,
        c.sandbox.name,
        c.sandbox.state,
        c.sandbox.ip.as_deref().unwrap_or("-")
    ));
    out
}

pub fn reconcile(report: &serde_json::Value) -> String {
    let mut out = format!(
        "{} {} VMs checked\n",
        if report["dry_run"] == true { "dry run:" } else { "applied:" },
        report["checked"]
    );
    for o in report["orphans"].as_array().cloned().unwrap_or_default() {
        out.push_str(&format!(
            "orphan  {} on {} (first seen {}): {}\n",
            o["vmid"],
            o["node"].as_str().unwrap_or(""),
            o["first_seen"].as_str().unwrap_or(""),
            o["action"].as_str().unwrap_or("")
        ));
    }
    for d in report["drift"].as_array().cloned().unwrap_or_default() {
        out.push_str(&format!(
            "drift   {}: record {} but Proxmox says {}: {}\n",
            d["vmid"],
            d["record_state"].as_str().unwrap_or(""),
            d["proxmox"].as_str().unwrap_or(""),
            d["action"].as_str().unwrap_or("")
        ));
    }
    if report["orphans"].as_array().is_none_or(|a| a.is_empty())
        && report["drift"].as_array().is_none_or(|a| a.is_empty())
    {
        out.push_str("no orphans, no drift\n");
    }
    out
}

/// A line for `sandbox new` on a terminal, for the events that mark a phase.
pub fn progress_line(e: &EventView) -> Option<String> {
    match e.kind.as_str() {
        "sandbox.provision.step" => e.json["step"].as_str().map(|s| format!("  … {s}")),
        "sandbox.state" => e.json["to_state"].as_str().map(|s| format!("  state {s}")),
        "sandbox.slo.ready" => Some(format!("  {}", e.msg)),
        "sandbox.provision_failed" => Some(format!("  FAILED: {}", e.msg)),
        _ => None,
    }
}

pub fn event_line(e: &EventView) -> String {
    format!("{}  {:<24} {}", e.ts, e.kind, e.msg)
}

pub fn actors(a: &DebugActorsResponse) -> String {
    let mut t = table(&["NAME", "KIND", "STATE", "STATUS", "UPTIME S", "RESTARTS", "LEASE"]);
    for actor in &a.actors {
        let indent = if actor.parent.is_some() { "  " } else { "" };
        t.add_row(vec![
            format!("{indent}{}", actor.name),
            actor.kind.clone(),
            actor.state.clone(),
            actor.status.clone(),
            actor.uptime_seconds.to_string(),
            actor.restarts.to_string(),
            or_dash(actor.lease_expires_at.as_deref()),
        ]);
    }
    t.to_string()
}

pub fn exposures(list: &[agentlab_model::protocol::ExposureView]) -> String {
    let mut out = format!("{:<24} {:<6} {:<6} {:<10} {:<22} {}\n", "NAME", "VMID", "PORT", "STATE", "TARGET", "URL");
    for e in list {
        let target = e.target_ip.as_deref().map(|ip| format!("{ip}:{}", e.port)).unwrap_or_else(|| "-".into());
        out.push_str(&format!(
            "{:<24} {:<6} {:<6} {:<10} {:<22} {}\n",
            e.name,
            e.vmid,
            e.port,
            e.state,
            target,
            e.url.as_deref().unwrap_or("-")
        ));
        if let Some(error) = &e.error {
            out.push_str(&format!("  {error}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use agentlab_model::protocol::EgressDrop;

    #[test]
    fn the_egress_record_lists_each_destination_with_its_port_when_it_has_one() {
        assert_eq!(super::egress(&[], ""), "", "nothing dropped, nothing said");
        let drop = |destination: &str, protocol: &str, port| EgressDrop {
            destination: destination.into(),
            protocol: protocol.into(),
            port,
            packets: 3,
            first_seen: "2026-12-02T00:00:00Z".into(),
            last_seen: "2026-12-02T00:01:00Z".into(),
        };
        let text = super::egress(&[drop("192.168.1.10", "tcp", 22), drop("10.0.0.1", "icmp", 0)], "  ");
        assert!(text.starts_with("  blocked egress (host ruleset drops):\n"), "{text}");
        assert!(text.contains("192.168.1.10:22") && text.contains("tcp") && text.contains("3 attempts"), "{text}");
        assert!(text.contains("  10.0.0.1 ") && !text.contains("10.0.0.1:0"), "{text}");
    }
}
