//! The shell backend: `pvesh` (and later `qm`/`pvesm`) run on the Proxmox host through
//! `tokio::process` with argument vectors, never a shell string.

use crate::{Pve, PveError, PveFuture, PveVersion};
use serde::de::DeserializeOwned;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct ShellConfig {
    /// `pvesh`, or a path to it.
    pub pvesh: PathBuf,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct ShellClient {
    config: ShellConfig,
}

impl ShellClient {
    pub fn new(config: ShellConfig) -> ShellClient {
        ShellClient { config }
    }

    /// `pvesh get PATH --output-format json`, decoded.
    pub async fn pvesh_get<T: DeserializeOwned>(&self, path: &str) -> Result<T, PveError> {
        let mut command = tokio::process::Command::new(&self.config.pvesh);
        command.args(["get", path, "--output-format", "json"]).kill_on_drop(true);
        let output = tokio::time::timeout(self.config.timeout, command.output())
            .await
            .map_err(|_| PveError::Timeout(self.config.timeout))?
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    PveError::Transient(format!(
                        "`{}` not found: the shell backend runs on the Proxmox host itself; use proxmox_backend: api elsewhere",
                        self.config.pvesh.display()
                    ))
                } else {
                    PveError::Transient(format!("cannot run {}: {e}", self.config.pvesh.display()))
                }
            })?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let text = stderr.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("pvesh failed").to_string();
            return Err(classify_cli(&text));
        }
        serde_json::from_slice(&output.stdout)
            .map_err(|e| PveError::Other(format!("unexpected output from pvesh get {path}: {e}")))
    }
}

/// CLI errors carry the same texts as the API's (the CLI runs the same handlers).
fn classify_cli(text: &str) -> PveError {
    let lower = text.to_ascii_lowercase();
    if lower.contains("permission check failed") || lower.contains("authentication failed") {
        PveError::Auth(text.to_string())
    } else if lower.contains("parameter verification failed") {
        PveError::Validation { param: String::new(), message: text.to_string() }
    } else {
        PveError::from_status(500, text, None)
    }
}

impl Pve for ShellClient {
    fn backend(&self) -> &'static str {
        "shell"
    }

    fn endpoint(&self) -> String {
        self.config.pvesh.display().to_string()
    }

    fn version(&self) -> PveFuture<'_, PveVersion> {
        Box::pin(self.pvesh_get("/version"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_pvesh_says_where_the_shell_backend_runs() {
        let client = ShellClient::new(ShellConfig {
            pvesh: PathBuf::from("/nonexistent/pvesh"),
            timeout: Duration::from_secs(5),
        });
        let err = client.version().await.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("runs on the Proxmox host"), "{err}");
    }

    #[tokio::test]
    async fn pvesh_output_is_decoded() {
        let dir = tempfile_dir();
        let script = dir.join("pvesh");
        std::fs::write(
            &script,
            "#!/bin/sh\necho '{\"version\":\"9.1.2\",\"release\":\"9.1\",\"repoid\":\"abcdef12\"}'\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        make_executable(&script);
        let client = ShellClient::new(ShellConfig { pvesh: script, timeout: Duration::from_secs(5) });
        let version = client.version().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(version.release, "9.1");
        let _ = std::fs::remove_dir_all(dir);
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("agentlab-shell-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        dir
    }

    fn make_executable(path: &std::path::Path) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap_or_else(|e| panic!("{e}"));
    }
}
