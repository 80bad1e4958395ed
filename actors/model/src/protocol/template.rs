//! The template check's report: what `agentlabd template check` prints and what `status`
//! lists for each profile template. The check itself is in the daemon
//! (`actors::sandbox::template_check`); the CLI only shows it.

use serde::{Deserialize, Serialize};

/// An error refuses the template (clones of it would not come up); a warning is something
/// AgentLab works around on every clone, or that the image itself must provide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingLevel {
    Error,
    Warning,
}

impl FindingLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            FindingLevel::Error => "error",
            FindingLevel::Warning => "warning",
        }
    }
}

/// One thing the check found. `code` is stable (scripts may match on it; a text, so a CLI
/// older than the daemon still shows codes it does not know); `message` says what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateFinding {
    pub level: FindingLevel,
    pub code: String,
    pub message: String,
}

/// The check of one template VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateReport {
    pub vmid: u32,
    /// The node it is on; absent when it was not found (or Proxmox could not be asked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// No finding is an error.
    pub accepted: bool,
    #[serde(default)]
    pub findings: Vec<TemplateFinding>,
}

impl TemplateReport {
    /// A report whose verdict follows from its findings.
    pub fn new(vmid: u32, node: Option<String>, findings: Vec<TemplateFinding>) -> TemplateReport {
        let accepted = !findings.iter().any(|f| f.level == FindingLevel::Error);
        TemplateReport { vmid, node, accepted, findings }
    }

    pub fn errors(&self) -> usize {
        self.findings.iter().filter(|f| f.level == FindingLevel::Error).count()
    }

    /// `accepted` or `refused (2 errors)`.
    pub fn outcome(&self) -> String {
        match self.errors() {
            0 => "accepted".to_string(),
            1 => "refused (1 error)".to_string(),
            n => format!("refused ({n} errors)"),
        }
    }

    /// `template 9000: accepted` or `template 9000: refused (2 errors)`.
    pub fn verdict(&self) -> String {
        format!("template {}: {}", self.vmid, self.outcome())
    }
}

impl TemplateFinding {
    /// `error no_boot_disk: …`
    pub fn line(&self) -> String {
        format!("{} {}: {}", self.level.as_str(), self.code, self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(level: FindingLevel) -> TemplateFinding {
        TemplateFinding { level, code: "c".into(), message: "m".into() }
    }

    #[test]
    fn the_verdict_counts_errors_only() {
        let warned = TemplateReport::new(9000, None, vec![finding(FindingLevel::Warning)]);
        assert!(warned.accepted);
        assert_eq!(warned.verdict(), "template 9000: accepted");
        let refused = TemplateReport::new(9000, None, vec![finding(FindingLevel::Error), finding(FindingLevel::Error)]);
        assert!(!refused.accepted);
        assert_eq!(refused.verdict(), "template 9000: refused (2 errors)");
        assert_eq!(refused.findings[0].line(), "error c: m");
    }

    #[test]
    fn a_report_without_node_or_findings_decodes() {
        let report: Result<TemplateReport, _> = serde_json::from_str(r#"{"vmid":9000,"accepted":true}"#);
        assert_eq!(report.ok(), Some(TemplateReport::new(9000, None, vec![])));
    }
}
