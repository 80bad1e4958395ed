//! Where exposures are published. `TailscaleServe` drives `tailscale serve` (a TCP
//! forwarder per exposure on its own tailnet port, `--bg` so the rule outlives the call);
//! tests put a recording stand-in of the `tailscale` binary in its place.

use std::net::SocketAddrV4;
use std::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("cannot run `{program}`: {source} (install Tailscale, or set tailscale_command)")]
    Spawn { program: String, source: std::io::Error },
    #[error("`{command}` failed: {stderr}")]
    Failed { command: String, stderr: String },
    #[error("cannot read `tailscale {what} --json`: {why}")]
    Json { what: &'static str, why: String },
}

pub trait Publisher: Send + Sync {
    /// Publishes `target` on the host's `host_port`; returns the URL to reach it by.
    fn publish(&self, host_port: u16, target: SocketAddrV4) -> Result<String, PublishError>;
    /// Removes the rule of `host_port` (a rule that is not there is not an error).
    fn unpublish(&self, host_port: u16) -> Result<(), PublishError>;
    /// Whether `host_port` forwards to `target` now.
    fn is_published(&self, host_port: u16, target: SocketAddrV4) -> Result<bool, PublishError>;
}

pub struct TailscaleServe {
    pub program: String,
}

impl TailscaleServe {
    fn run(&self, args: &[&str]) -> Result<String, PublishError> {
        let out = Command::new(&self.program)
            .args(args)
            .output()
            .map_err(|source| PublishError::Spawn { program: self.program.clone(), source })?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(PublishError::Failed {
                command: format!("{} {}", self.program, args.join(" ")),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            })
        }
    }

    /// This node's MagicDNS name (`tailscale status --json` `Self.DNSName`).
    fn dns_name(&self) -> Result<String, PublishError> {
        let text = self.run(&["status", "--json"])?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| PublishError::Json { what: "status", why: e.to_string() })?;
        let name = value["Self"]["DNSName"].as_str().unwrap_or_default().trim_end_matches('.').to_string();
        if name.is_empty() {
            return Err(PublishError::Json { what: "status", why: "no Self.DNSName (is MagicDNS on?)".into() });
        }
        Ok(name)
    }
}

/// The forward target of `host_port` in `tailscale serve status --json` (`TCP.<port>.TCPForward`).
pub fn forward_of(status_json: &str, host_port: u16) -> Result<Option<String>, PublishError> {
    if status_json.trim().is_empty() {
        return Ok(None);
    }
    let value: serde_json::Value = serde_json::from_str(status_json)
        .map_err(|e| PublishError::Json { what: "serve status", why: e.to_string() })?;
    Ok(value["TCP"][host_port.to_string()]["TCPForward"].as_str().map(str::to_string))
}

impl Publisher for TailscaleServe {
    fn publish(&self, host_port: u16, target: SocketAddrV4) -> Result<String, PublishError> {
        self.run(&["serve", "--bg", "--yes", &format!("--tcp={host_port}"), &format!("tcp://{target}")])?;
        Ok(format!("tcp://{}:{host_port}", self.dns_name()?))
    }

    fn unpublish(&self, host_port: u16) -> Result<(), PublishError> {
        match self.run(&["serve", &format!("--tcp={host_port}"), "off"]) {
            Err(PublishError::Failed { stderr, .. })
                if stderr.contains("not found") || stderr.contains("does not exist") =>
            {
                Ok(())
            }
            other => other.map(|_| ()),
        }
    }

    fn is_published(&self, host_port: u16, target: SocketAddrV4) -> Result<bool, PublishError> {
        let status = self.run(&["serve", "status", "--json"])?;
        Ok(forward_of(&status, host_port)?.is_some_and(|t| t == target.to_string()))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_forward_of_a_port_from_serve_status() {
        let json = r#"{"TCP": {"10000": {"TCPForward": "10.77.0.5:8080"}, "10001": {"HTTPS": true}}}"#;
        assert_eq!(super::forward_of(json, 10000).unwrap().as_deref(), Some("10.77.0.5:8080"));
        assert_eq!(super::forward_of(json, 10001).unwrap(), None);
        assert_eq!(super::forward_of("", 10000).unwrap(), None, "no serve config at all");
        assert!(super::forward_of("not json", 1).is_err());
    }
}
