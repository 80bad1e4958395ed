//! `workspace check`: the record against Proxmox. Each finding says what is wrong and the
//! command that fixes it; nothing is changed here.

use super::{WorkspaceContext, holder};
use crate::model::{Refusal, SandboxState};
use crate::protocol::{WorkspaceCheckResponse, WorkspaceFinding};
use crate::store::{WorkspaceRecord, WorkspaceState};

fn finding(code: &str, severity: &str, message: String, remediation: String) -> WorkspaceFinding {
    WorkspaceFinding { code: code.into(), severity: severity.into(), message, remediation }
}

pub async fn check(ctx: &WorkspaceContext, id_or_name: &str) -> Result<WorkspaceCheckResponse, Refusal> {
    let rec = super::find(&ctx.store, id_or_name)?;
    let mut findings = record_findings(&rec);
    if let Some(volid) = holder_findings(ctx, &rec, &mut findings).await? {
        attachment_findings(ctx, &rec, &volid, &mut findings).await?;
    }
    let ok = !findings.iter().any(|f| f.severity == "error");
    Ok(WorkspaceCheckResponse { workspace: rec.name, ok, findings })
}

fn record_findings(rec: &WorkspaceRecord) -> Vec<WorkspaceFinding> {
    let mut findings = Vec::new();
    if rec.state != WorkspaceState::Ready {
        findings.push(finding(
            "not_ready",
            if rec.state == WorkspaceState::Failed { "error" } else { "warning" },
            format!(
                "workspace is {}{}",
                rec.state.as_str(),
                rec.error.as_deref().map(|e| format!(": {e}")).unwrap_or_default()
            ),
            format!("`agentlab workspace destroy {}` removes what was made; create it again", rec.name),
        ));
    }
    if let Some(intent) = rec.intent {
        findings.push(finding(
            "intent_pending",
            "warning",
            format!("a {} is in progress", intent.to_text()),
            "it is finished by the workspace's actor; if it stays, `systemctl restart agentlabd` and check again"
                .into(),
        ));
    }
    findings
}

/// The holder VM and its volume; the volume id when there is one to look for.
async fn holder_findings(
    ctx: &WorkspaceContext,
    rec: &WorkspaceRecord,
    findings: &mut Vec<WorkspaceFinding>,
) -> Result<Option<String>, Refusal> {
    let Some(volid) = rec.volid.clone() else { return Ok(None) };
    match holder::config_of(ctx, &rec.node, rec.holder_vmid).await? {
        None => findings.push(finding(
            "holder_missing",
            "error",
            format!("holder VM {} is gone from node `{}`, and the volume {volid} with it", rec.holder_vmid, rec.node),
            format!(
                "restore the holder from a backup (`qmrestore … {}`), or `agentlab workspace destroy {}`",
                rec.holder_vmid, rec.name
            ),
        )),
        Some(config) if !holder::is_holder(&config) => findings.push(finding(
            "holder_not_ours",
            "error",
            format!("VM {} is not tagged `{}`: it is not this workspace's holder", rec.holder_vmid, super::HOLDER_TAG),
            "find where the holder went (`qm list`); AgentLab will not touch that VM".into(),
        )),
        Some(config) if config.get("scsi0").and_then(|v| v.split(',').next()) != Some(volid.as_str()) => {
            findings.push(finding(
                "volume_missing",
                "error",
                format!("holder VM {} does not hold {volid} as its scsi0", rec.holder_vmid),
                format!("`qm config {}` shows what it holds; put the volume back as scsi0", rec.holder_vmid),
            ))
        }
        Some(_) => {}
    }
    Ok(Some(volid))
}

/// Which live sandboxes on the workspace's node name the volume, against the record.
async fn attachment_findings(
    ctx: &WorkspaceContext,
    rec: &WorkspaceRecord,
    volid: &str,
    findings: &mut Vec<WorkspaceFinding>,
) -> Result<(), Refusal> {
    let sandboxes = ctx.store.list_sandboxes(None).map_err(super::store_refusal)?;
    let live = sandboxes.iter().filter(|s| s.state != SandboxState::Destroyed && s.node.as_deref() == Some(&rec.node));
    let mut attached_seen = false;
    for sandbox in live {
        let Some(config) = holder::config_of(ctx, &rec.node, sandbox.vmid).await? else { continue };
        let keys = holder::keys_of(&config, volid);
        if Some(sandbox.vmid) == rec.attached_vmid {
            attached_seen = true;
            if !keys.iter().any(|k| k == super::SLOT) {
                findings.push(finding(
                    "volume_not_attached",
                    "error",
                    format!("the record says sandbox {} has it, but its {} is not {volid}", sandbox.vmid, super::SLOT),
                    format!(
                        "`agentlab workspace detach {0}` then `agentlab workspace attach {0} {1}`",
                        rec.name, sandbox.vmid
                    ),
                ));
            }
            for key in keys.iter().filter(|k| k.starts_with("unused")) {
                findings.push(finding(
                    "volume_wrong_slot",
                    "warning",
                    format!("sandbox {} also lists the volume as {key}", sandbox.vmid),
                    format!(
                        "`agentlab workspace detach {0}` then `agentlab workspace attach {0} {1}`",
                        rec.name, sandbox.vmid
                    ),
                ));
            }
        } else if !keys.is_empty() {
            findings.push(finding(
                "workspace_multi_attach",
                "error",
                format!("sandbox {} names the volume ({}) but the record does not", sandbox.vmid, keys.join(", ")),
                format!(
                    "`qm set {} --delete {}` (the volume is the holder's: nothing is freed)",
                    sandbox.vmid,
                    keys.join(",")
                ),
            ));
        }
    }
    if let (Some(vmid), false) = (rec.attached_vmid, attached_seen) {
        findings.push(finding(
            "attached_vmid_stale",
            "error",
            format!("the record says sandbox {vmid} has it, but no live sandbox {vmid} is on node `{}`", rec.node),
            format!("`agentlab workspace detach {}`", rec.name),
        ));
    }
    Ok(())
}
