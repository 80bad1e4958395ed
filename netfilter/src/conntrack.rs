//! Established TCP flows to a sandbox, from the host's connection tracking table
//! (`conntrack -L`): the idle-stop probe's evidence that someone is still using SSH.

use crate::program::Program;
use std::net::Ipv4Addr;

#[derive(Debug, thiserror::Error)]
pub enum ConntrackError {
    #[error("cannot run `{program}`: {source} (install the conntrack package; the daemon must run as root)")]
    Spawn { program: String, source: std::io::Error },
    #[error("`conntrack -L` failed: {0}")]
    Failed(String),
}

#[derive(Debug, Clone)]
pub struct Conntrack {
    program: Program,
}

impl Default for Conntrack {
    fn default() -> Self {
        Conntrack::with_command(Vec::new())
    }
}

impl Conntrack {
    /// `command` is the program and any prefix (`ip netns exec NAME conntrack` in tests).
    pub fn with_command(command: Vec<String>) -> Conntrack {
        Conntrack { program: Program::new(command, "conntrack") }
    }

    /// How many ESTABLISHED TCP flows go to `ip:port`.
    pub fn established_to(&self, ip: Ipv4Addr, port: u16) -> Result<usize, ConntrackError> {
        self.established(ip, Some(port))
    }

    /// How many ESTABLISHED TCP flows were opened towards `ip`, on any port (SSH sessions,
    /// exposures in use; not the guest's own connections out).
    pub fn established_inbound(&self, ip: Ipv4Addr) -> Result<usize, ConntrackError> {
        self.established(ip, None)
    }

    fn established(&self, ip: Ipv4Addr, port: Option<u16>) -> Result<usize, ConntrackError> {
        let ip = ip.to_string();
        let port = port.map(|p| p.to_string());
        let mut args = vec!["-L", "-p", "tcp", "--dst", &ip, "--state", "ESTABLISHED"];
        if let Some(port) = &port {
            args.extend(["--dport", port.as_str()]);
        }
        let output = self
            .program
            .command()
            .args(&args)
            .output()
            .map_err(|source| ConntrackError::Spawn { program: self.program.display(), source })?;
        if !output.status.success() {
            return Err(ConntrackError::Failed(String::from_utf8_lossy(&output.stderr).trim().to_string()));
        }
        Ok(count_flows(&String::from_utf8_lossy(&output.stdout)))
    }
}

/// One flow per line of `conntrack -L` (the summary goes to stderr).
fn count_flows(stdout: &str) -> usize {
    stdout.lines().filter(|l| l.starts_with("tcp ")).count()
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_flow_lines_only() {
        let out = "tcp      6 431999 ESTABLISHED src=10.77.0.1 dst=10.77.0.101 sport=40000 dport=22 src=10.77.0.101 \
                   dst=10.77.0.1 sport=22 dport=40000 [ASSURED] mark=0 use=1\n\nconntrack v1.4.7: 1 flow entries\n";
        assert_eq!(super::count_flows(out), 1);
        assert_eq!(super::count_flows(""), 0);
    }
}
