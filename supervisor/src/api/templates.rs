//! The template check of `status`: every distinct `template_vmid` of the loaded profiles,
//! read through the gateway. A template that cannot be read is a finding of its report;
//! `status` itself still answers.
//!
//! A check costs the cluster's whole VM list and each template's config (rate-limited
//! Proxmox requests, tens of milliseconds and more with thousands of VMs), so its reports are
//! kept for `REPORTS_TTL` (the gateway's own health interval): `status` answers from memory.

use super::AppState;
use agentlab_actors::protocol::{ProxmoxStatus, TemplateReport};
use agentlab_actors::pve::Gateway;
use agentlab_actors::sandbox::template_check;
use std::time::Duration;

/// A retried Proxmox error would otherwise hold `status` for the gateway's whole retry
/// deadline (two minutes).
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a successful check's reports are shown before `status` checks again.
pub const REPORTS_TTL: Duration = Duration::from_secs(30);

/// The last successful check: when, of which templates, and its reports.
#[derive(Default)]
pub struct ReportCache(tokio::sync::Mutex<Option<Checked>>);

struct Checked {
    at: tokio::time::Instant,
    vmids: Vec<u32>,
    reports: Vec<TemplateReport>,
}

pub async fn reports(app: &AppState, proxmox: &ProxmoxStatus) -> Vec<TemplateReport> {
    let mut vmids: Vec<u32> = app.profiles.snapshot().profiles.values().map(|l| l.profile.template_vmid).collect();
    vmids.sort_unstable();
    vmids.dedup();
    let all_unreadable = |why: &str| vmids.iter().map(|v| template_check::unreadable(*v, None, why)).collect();
    if !proxmox.reachable || proxmox.token_ok == Some(false) {
        return all_unreadable("Proxmox is not reachable with the configured token (see `proxmox` in this status)");
    }
    // Held across the check: concurrent `status` calls share one.
    let mut cached = app.template_reports.0.lock().await;
    if let Some(last) = cached.as_ref()
        && last.at.elapsed() < REPORTS_TTL
        && last.vmids == vmids
    {
        return last.reports.clone();
    }
    match tokio::time::timeout(CHECK_TIMEOUT, read_and_check(&app.gateway, &vmids)).await {
        Ok(Ok(reports)) => {
            *cached = Some(Checked { at: tokio::time::Instant::now(), vmids: vmids.clone(), reports: reports.clone() });
            reports
        }
        Ok(Err(why)) => all_unreadable(&why),
        Err(_) => all_unreadable(&format!("Proxmox did not answer within {}s", CHECK_TIMEOUT.as_secs())),
    }
}

/// Err: the cluster's VM list could not be read (then no template can be located).
async fn read_and_check(gateway: &Gateway, vmids: &[u32]) -> Result<Vec<TemplateReport>, String> {
    let vms = gateway.cluster_vms().await.map_err(|e| format!("listing the cluster's VMs failed: {e}"))?;
    let mut reports = Vec::with_capacity(vmids.len());
    for &vmid in vmids {
        let report = match template_check::locate(vmid, &vms) {
            Err(report) => report,
            Ok(node) => match gateway.vm_config(&node, vmid).await {
                Ok(config) => template_check::check(vmid, Some(&node), &config),
                Err(e) => template_check::unreadable(vmid, Some(&node), &format!("reading its config failed: {e}")),
            },
        };
        reports.push(report);
    }
    Ok(reports)
}
