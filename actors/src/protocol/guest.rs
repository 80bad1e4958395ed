//! The guest side of the protocol: what cloud-init writes into the VM for `agent-runner`.

use serde::{Deserialize, Serialize};

/// `/etc/agentlab/bootstrap.json`: enough to fetch the one-time job payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootstrapDescriptor {
    /// One-time bootstrap token (the daemon keeps only its hash).
    pub token: String,
    /// Base URL of the daemon's guest listener, e.g. `http://10.77.0.1:8844`.
    pub controller: String,
    pub vmid: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DescriptorError {
    #[error("not valid JSON of the form {{\"token\",\"controller\",\"vmid\"}}: {0}")]
    Json(String),
    #[error("`token` must be at least 43 characters (256 random bits)")]
    ShortToken,
    #[error("`controller` must be an http:// or https:// URL with a host, got `{0}`")]
    Controller(String),
    #[error("`vmid` must be a Proxmox VMID (100 or more), got {0}")]
    Vmid(u32),
}

impl BootstrapDescriptor {
    pub fn parse(text: &str) -> Result<BootstrapDescriptor, DescriptorError> {
        let d: BootstrapDescriptor = serde_json::from_str(text).map_err(|e| DescriptorError::Json(e.to_string()))?;
        if d.token.trim().len() < 43 {
            return Err(DescriptorError::ShortToken);
        }
        let host = d.controller.strip_prefix("http://").or_else(|| d.controller.strip_prefix("https://"));
        if !host.is_some_and(|h| !h.is_empty() && !h.starts_with('/')) {
            return Err(DescriptorError::Controller(d.controller.clone()));
        }
        if d.vmid < 100 {
            return Err(DescriptorError::Vmid(d.vmid));
        }
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_good_descriptor_parses_and_bad_ones_say_why() {
        let token = "a".repeat(64);
        let good = format!(r#"{{"token":"{token}","controller":"http://10.77.0.1:8844","vmid":1001}}"#);
        assert!(BootstrapDescriptor::parse(&good).is_ok());
        let cases = [
            (r#"{"token":"x","controller":"http://h","vmid":1001}"#.to_string(), DescriptorError::ShortToken),
            (
                format!(r#"{{"token":"{token}","controller":"ftp://h","vmid":1001}}"#),
                DescriptorError::Controller("ftp://h".into()),
            ),
            (format!(r#"{{"token":"{token}","controller":"http://h","vmid":5}}"#), DescriptorError::Vmid(5)),
        ];
        for (text, want) in cases {
            assert_eq!(BootstrapDescriptor::parse(&text), Err(want));
        }
        assert!(matches!(BootstrapDescriptor::parse("{}"), Err(DescriptorError::Json(_))));
    }
}
