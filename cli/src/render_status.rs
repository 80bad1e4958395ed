//! `agentlab status` for people: the daemon, Proxmox (token and its privileges, nodes,
//! firewall, storages), isolation, profiles and templates, counts, listeners, artifacts and
//! the recent failures. `--json` prints the daemon's answer instead.

use crate::render::event_line;
use agentlab_model::protocol::{PrivilegeCheck, StatusResponse, StorageStatus, TemplateReport};

/// Bytes the way an operator reads disk space: `1.5 GiB`.
fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

fn privileges(check: &PrivilegeCheck) -> String {
    if check.missing.is_empty() && check.all_on_root {
        return "token:     has every privilege AgentLab needs\n".into();
    }
    if check.missing.is_empty() {
        return "token:     has every privilege AgentLab needs, some only below / (sandboxes outside those paths fail)\n"
            .into();
    }
    format!(
        "token:     MISSING PRIVILEGES {}\n           create the role and grant it: {}\n           pveum acl modify / --tokens <USER@REALM!TOKENID> --roles AgentLab\n",
        check.missing.join(", "),
        check.role_command
    )
}

fn storages(list: &[StorageStatus]) -> String {
    let mut out = String::new();
    for s in list {
        let space = match (s.avail_bytes, s.total_bytes) {
            (Some(avail), Some(total)) => format!("{} free of {}", size(avail), size(total)),
            (Some(avail), None) => format!("{} free", size(avail)),
            _ => "free space unknown".into(),
        };
        let state = if s.active { "" } else { " INACTIVE" };
        let shared = if s.shared { " shared" } else { "" };
        out.push_str(&format!(
            "storage:   {}/{} ({}{shared}{state}): {space}; {}\n",
            s.node, s.storage, s.kind, s.content
        ));
    }
    out
}

pub fn status(s: &StatusResponse) -> String {
    let mut out = format!(
        "agentlabd {} (pid {}, up {}s since {})\n",
        s.daemon.version, s.daemon.pid, s.daemon.uptime_seconds, s.daemon.started_at
    );
    let px = &s.proxmox;
    if px.reachable && px.token_ok == Some(false) {
        out.push_str(&format!(
            "proxmox:   reachable via {} backend ({}) but the API TOKEN IS REFUSED\n           {}\n",
            px.backend,
            px.endpoint,
            px.error.as_deref().unwrap_or("no reason given")
        ));
    } else if px.reachable {
        out.push_str(&format!(
            "proxmox:   reachable, {} via {} backend ({}), token accepted\n",
            px.version.as_deref().unwrap_or("unknown version"),
            px.backend,
            px.endpoint
        ));
        if let Some(check) = &px.privileges {
            out.push_str(&privileges(check));
        }
        if !px.nodes.is_empty() {
            out.push_str(&format!("nodes:     {}\n", px.nodes.join(", ")));
        }
        out.push_str(&storages(&px.storages));
        if let Some(fw) = &px.firewall {
            let groups: Vec<String> = fw
                .groups
                .iter()
                .map(|(g, exists)| format!("{g} {}", if *exists { "present" } else { "missing" }))
                .collect();
            out.push_str(&format!(
                "firewall:  datacenter {}; groups: {}\n",
                if fw.datacenter_enabled { "enabled" } else { "DISABLED (network modes are not enforced by Proxmox)" },
                groups.join(", ")
            ));
        }
    } else {
        out.push_str(&format!(
            "proxmox:   UNREACHABLE via {} backend ({})\n           {}\n",
            px.backend,
            px.endpoint,
            px.error.as_deref().unwrap_or("no reason given")
        ));
    }
    let net = &s.network;
    let isolation = match net.isolation.as_str() {
        "both" => "both layers (Proxmox firewall and host ruleset)",
        "one_layer" => "ONE LAYER",
        "none" => "NONE: no sandbox is provisioned",
        _ => "unknown",
    };
    out.push_str(&format!("isolation: {isolation}; host ruleset {}\n", net.host_ruleset));
    for line in &net.warnings {
        out.push_str(&format!("           warning: {line}\n"));
    }
    out.push_str(&format!("profiles:  {} loaded from {}\n", s.profiles.count, s.profiles.dir));
    for line in &s.profiles.not_served {
        out.push_str(&format!("           not served: {line}\n"));
    }
    for line in &s.profiles.warnings {
        out.push_str(&format!("           warning: {line}\n"));
    }
    if let Some(error) = &s.profiles.last_reload_error {
        out.push_str(&format!(
            "           last reload refused (previous set in use):\n           {}\n",
            error.replace('\n', "\n           ")
        ));
    }
    out.push_str(&templates(&s.templates));
    let total: u64 = s.sandboxes.values().sum();
    let by_state: Vec<String> = s.sandboxes.iter().filter(|(_, n)| **n > 0).map(|(k, n)| format!("{k} {n}")).collect();
    if by_state.is_empty() {
        out.push_str(&format!("sandboxes: {total}\n"));
    } else {
        out.push_str(&format!("sandboxes: {total} ({})\n", by_state.join(", ")));
    }
    let jobs: Vec<String> = s.jobs.iter().filter(|(_, n)| **n > 0).map(|(k, n)| format!("{k} {n}")).collect();
    let total_jobs: u64 = s.jobs.values().sum();
    if jobs.is_empty() {
        out.push_str(&format!("jobs:      {total_jobs}\n"));
    } else {
        out.push_str(&format!("jobs:      {total_jobs} ({})\n", jobs.join(", ")));
    }
    let a = &s.artifacts;
    let free = a.free_bytes.map(|f| format!(", {} free", size(f))).unwrap_or_default();
    let low = if a.free_bytes.is_some_and(|f| f < a.min_free_bytes) {
        format!(" (BELOW min_free_bytes {}: guest uploads and reports are refused)", size(a.min_free_bytes))
    } else {
        String::new()
    };
    out.push_str(&format!("artifacts: {} in {}{free}{low}\n", size(a.bytes), a.dir));
    out.push_str(&format!("socket:    {}\ndatabase:  {}\n", s.listeners.socket, s.daemon.db_path));
    let l = &s.listeners;
    if !l.bootstrap.is_empty() {
        let guests =
            if l.bootstrap == l.artifact { l.bootstrap.clone() } else { format!("{}, {}", l.bootstrap, l.artifact) };
        out.push_str(&format!("guests:    {guests}\n"));
    }
    if let Some(metrics) = &l.metrics {
        out.push_str(&format!("metrics:   http://{metrics}/metrics\n"));
    }
    if !s.placement.is_empty() {
        out.push_str(&format!("placement: {}\n", s.placement));
    }
    if !s.recent_failures.is_empty() {
        out.push_str("recent failures:\n");
        for event in &s.recent_failures {
            out.push_str(&format!("  {}\n", event_line(event)));
        }
    }
    out
}

/// `template 9000 (pve1): accepted`, each finding indented below it.
fn templates(reports: &[TemplateReport]) -> String {
    let mut out = String::new();
    for template in reports {
        let node = template.node.as_deref().map(|n| format!(" ({n})")).unwrap_or_default();
        out.push_str(&format!("template {}{node}: {}\n", template.vmid, template.outcome()));
        for finding in &template.findings {
            out.push_str(&format!("           {}\n", finding.line()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentlab_model::protocol::{FindingLevel, TemplateFinding};

    #[test]
    fn each_template_has_its_verdict_line_and_its_findings_below() {
        let finding = |level, code: &str| TemplateFinding { level, code: code.into(), message: "do this".into() };
        let reports = [
            TemplateReport::new(9000, Some("pve1".into()), vec![finding(FindingLevel::Warning, "agent_disabled")]),
            TemplateReport::new(9001, None, vec![finding(FindingLevel::Error, "not_found")]),
        ];
        assert_eq!(
            templates(&reports),
            "template 9000 (pve1): accepted\n           warning agent_disabled: do this\n\
             template 9001: refused (1 error)\n           error not_found: do this\n"
        );
    }

    #[test]
    fn sizes_read_like_disk_space() {
        assert_eq!(size(512), "512 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }

    #[test]
    fn missing_privileges_say_how_to_grant_them() {
        let check = PrivilegeCheck {
            missing: vec!["VM.Clone".into()],
            all_on_root: false,
            role_command: "pveum role add AgentLab --privs \"VM.Clone\"".into(),
        };
        let text = privileges(&check);
        assert!(text.contains("MISSING PRIVILEGES VM.Clone"), "{text}");
        assert!(text.contains("pveum role add AgentLab") && text.contains("pveum acl modify /"), "{text}");
    }
}
