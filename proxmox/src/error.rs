//! Proxmox errors with stable classes. The class decides what the gateway does (retry,
//! fail at once) and what `status` says; it is chosen from the HTTP status and Proxmox's
//! exact texts, never from our own wording.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    NotFound,
    Locked,
    LockTimeout,
    AlreadyExists,
    NotRunning,
    /// Asked to start a VM that already runs.
    AlreadyRunning,
    /// A resize smaller than the disk (Proxmox never shrinks).
    WouldShrink,
    AgentNotRunning,
    /// The VM has no `agent` key: no agent call can ever succeed (qemu-server
    /// `src/PVE/QemuServer/Agent.pm` assert_agent_available).
    AgentNotConfigured,
    Auth,
    Validation,
    Transient,
    Timeout,
    Tls,
    Other,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::NotFound => "not_found",
            ErrorClass::Locked => "locked",
            ErrorClass::LockTimeout => "lock_timeout",
            ErrorClass::AlreadyExists => "already_exists",
            ErrorClass::NotRunning => "not_running",
            ErrorClass::AlreadyRunning => "already_running",
            ErrorClass::WouldShrink => "would_shrink",
            ErrorClass::AgentNotRunning => "agent_not_running",
            ErrorClass::AgentNotConfigured => "agent_not_configured",
            ErrorClass::Auth => "auth",
            ErrorClass::Validation => "validation",
            ErrorClass::Transient => "transient",
            ErrorClass::Timeout => "timeout",
            ErrorClass::Tls => "tls",
            ErrorClass::Other => "other",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PveError {
    #[error("proxmox: {0}")]
    NotFound(String),
    #[error("proxmox: {0}")]
    Locked(String),
    #[error("proxmox: {0}")]
    LockTimeout(String),
    #[error("proxmox: {0}")]
    AlreadyExists(String),
    #[error("proxmox: {0}")]
    NotRunning(String),
    #[error("proxmox: {0}")]
    AlreadyRunning(String),
    #[error("proxmox: {0}")]
    WouldShrink(String),
    #[error("proxmox: {0}")]
    AgentNotRunning(String),
    #[error("proxmox: {0}")]
    AgentNotConfigured(String),
    #[error(
        "proxmox refused the API token: {0}; check proxmox_api_token (USER@REALM!TOKENID=SECRET) and the token's permissions"
    )]
    Auth(String),
    #[error("proxmox rejected parameter `{param}`: {message}")]
    Validation { param: String, message: String },
    #[error("proxmox unreachable: {0}")]
    Transient(String),
    #[error("proxmox did not answer within {0:?}")]
    Timeout(Duration),
    #[error("TLS to proxmox failed: {0}")]
    Tls(String),
    #[error("proxmox: {0}")]
    Other(String),
    #[error("proxmox client is misconfigured: {0}")]
    Config(String),
}

impl PveError {
    pub fn class(&self) -> ErrorClass {
        match self {
            PveError::NotFound(_) => ErrorClass::NotFound,
            PveError::Locked(_) => ErrorClass::Locked,
            PveError::LockTimeout(_) => ErrorClass::LockTimeout,
            PveError::AlreadyExists(_) => ErrorClass::AlreadyExists,
            PveError::NotRunning(_) => ErrorClass::NotRunning,
            PveError::AlreadyRunning(_) => ErrorClass::AlreadyRunning,
            PveError::WouldShrink(_) => ErrorClass::WouldShrink,
            PveError::AgentNotRunning(_) => ErrorClass::AgentNotRunning,
            PveError::AgentNotConfigured(_) => ErrorClass::AgentNotConfigured,
            PveError::Auth(_) => ErrorClass::Auth,
            PveError::Validation { .. } => ErrorClass::Validation,
            PveError::Transient(_) => ErrorClass::Transient,
            PveError::Timeout(_) => ErrorClass::Timeout,
            PveError::Tls(_) => ErrorClass::Tls,
            PveError::Other(_) | PveError::Config(_) => ErrorClass::Other,
        }
    }

    /// The thing to create is already there: an `AlreadyExists` answer, or a 400 whose
    /// parameter message says so (Proxmox rejects a duplicate security group or VMID as a
    /// parameter error: `group: Security group 'x' already exists`).
    pub fn is_already_there(&self) -> bool {
        match self {
            PveError::AlreadyExists(_) => true,
            PveError::Validation { message, .. } => message.to_ascii_lowercase().contains("already exists"),
            _ => false,
        }
    }

    /// Classifies an error answer by status and Proxmox's text (the `message` member, or
    /// on hosts older than libpve-http-server-perl 5.2.0 the reason phrase).
    pub fn from_status(
        status: u16,
        text: &str,
        errors: Option<&serde_json::Map<String, serde_json::Value>>,
    ) -> PveError {
        let text = text.trim().to_string();
        match status {
            401 => PveError::Auth(if text.is_empty() { "401 Unauthorized".into() } else { text }),
            403 => PveError::Auth(text),
            400 => {
                let first = errors.and_then(|e| e.iter().next());
                match first {
                    Some((param, msg)) => PveError::Validation {
                        param: param.clone(),
                        message: msg.as_str().map(str::to_string).unwrap_or_else(|| msg.to_string()).trim().to_string(),
                    },
                    None => PveError::Validation { param: String::new(), message: text },
                }
            }
            // 595-599: pveproxy could not reach pvedaemon or the node that holds the VM
            // (pve-http-server AnyEvent.pm: AnyEvent::HTTP's pseudo-statuses).
            502..=504 | 595..=599 => PveError::Transient(format!("{status} {text}")),
            _ => classify_message(text),
        }
    }
}

/// Proxmox's texts for the conditions a caller must tell apart (`proxmox/contract/behaviors.md` §5).
fn classify_message(text: String) -> PveError {
    let lower = text.to_ascii_lowercase();
    // A local flock (`can't lock file … - got timeout`) or a pmxcfs lock (pve-cluster
    // Cluster.pm cfs_lock: `cfs-lock '<id>' error: got lock request timeout`, also
    // `'<id>'-locked command timed out - aborting`): both clear when the holder finishes.
    if (lower.contains("can't lock file") && lower.contains("got timeout"))
        || (lower.contains("cfs-lock") && lower.contains("got lock request timeout"))
        || lower.contains("-locked command timed out")
    {
        PveError::LockTimeout(text)
    } else if lower.starts_with("vm is locked") || lower.contains("is locked (") {
        PveError::Locked(text)
    } else if lower.contains("does not exist") || lower.contains("no such") {
        PveError::NotFound(text)
    } else if lower.contains("already exists") || lower.contains("already used") {
        // `snapshot name 'clean' already used` (qemu-server's snapshot_prepare).
        PveError::AlreadyExists(text)
    } else if lower.contains("already running") {
        PveError::AlreadyRunning(text)
    } else if lower.contains("shrinking disks is not supported") {
        PveError::WouldShrink(text)
    } else if lower.contains("qemu guest agent is not running") || lower.contains("guest agent is not running") {
        PveError::AgentNotRunning(text)
    } else if lower.contains("no qemu guest agent configured") {
        PveError::AgentNotConfigured(text)
    } else if lower.contains("not running") {
        PveError::NotRunning(text)
    } else if lower.contains("ipcc_send_rec") || lower.contains("connection refused") || lower.contains("no quorum") {
        PveError::Transient(text)
    } else {
        PveError::Other(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_and_text_pick_the_class() {
        let cases = [
            (401, "No ticket", ErrorClass::Auth),
            (403, "Permission check failed (/vms/101, VM.Allocate)", ErrorClass::Auth),
            (500, "can't lock file '/var/lock/qemu-server/lock-203.conf' - got timeout", ErrorClass::LockTimeout),
            (500, "VM is locked (clone)", ErrorClass::Locked),
            (500, "Configuration file 'nodes/pve/qemu-server/123.conf' does not exist", ErrorClass::NotFound),
            (500, "VM 101 not running", ErrorClass::NotRunning),
            (500, "VM 101 already running", ErrorClass::AlreadyRunning),
            (500, "cfs-lock 'firewall-cluster' error: got lock request timeout", ErrorClass::LockTimeout),
            (500, "clone failed: cfs-lock 'storage-shared' error: got lock request timeout", ErrorClass::LockTimeout),
            (500, "'storage-shared'-locked command timed out - aborting", ErrorClass::LockTimeout),
            (595, "Errors during connection establishment, proxy handshake", ErrorClass::Transient),
            (596, "Broken pipe", ErrorClass::Transient),
            (599, "Too many redirections", ErrorClass::Transient),
            (500, "shrinking disks is not supported", ErrorClass::WouldShrink),
            (500, "snapshot name 'clean' already used", ErrorClass::AlreadyExists),
            (500, "QEMU guest agent is not running", ErrorClass::AgentNotRunning),
            (500, "No QEMU guest agent configured", ErrorClass::AgentNotConfigured),
            (500, "ipcc_send_rec[1] failed: Connection refused", ErrorClass::Transient),
            (500, "cluster not ready - no quorum?", ErrorClass::Transient),
            (503, "Service Unavailable", ErrorClass::Transient),
            (500, "something else", ErrorClass::Other),
        ];
        for (status, text, class) in cases {
            assert_eq!(PveError::from_status(status, text, None).class(), class, "{status} {text}");
        }
    }

    #[test]
    fn a_duplicate_is_already_there_whether_proxmox_says_so_in_a_400_or_a_500() {
        let group = serde_json::json!({"group": "Security group 'agent_nat_off' already exists\n"});
        assert!(PveError::from_status(400, "Parameter verification failed.", group.as_object()).is_already_there());
        assert!(
            PveError::from_status(500, "unable to create VM 101: config file already exists", None).is_already_there()
        );
        let other = serde_json::json!({"cores": "value must have a minimum value of 1\n"});
        assert!(!PveError::from_status(400, "Parameter verification failed.", other.as_object()).is_already_there());
    }

    #[test]
    fn a_400_names_the_first_bad_parameter() {
        let errors = serde_json::json!({"newid": "value must have a minimum value of 100\n"});
        let err = PveError::from_status(400, "Parameter verification failed.", errors.as_object());
        assert_eq!(
            err,
            PveError::Validation { param: "newid".into(), message: "value must have a minimum value of 100".into() }
        );
    }
}
